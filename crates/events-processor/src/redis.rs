//! [`RedisStreamSource`]: a Redis Streams consumer group as a [`Source`].

use std::collections::HashMap;
use std::time::{Duration, Instant};

use fred::prelude::*;
use fred::types::config::{ConnectionConfig, PerformanceConfig};

use crate::error::{Error, Result};
use crate::source::{Checkpoint, DeadLetterRecord, EntryFields, Source, SourceEntry};

/// Settings of a [`RedisStreamSource`]. `RedisSourceConfig::new(url)` gives brief §4/§8
/// defaults.
#[derive(Debug, Clone)]
pub struct RedisSourceConfig {
    /// `redis://host:port[/db]`.
    pub url: String,
    /// Stream key (`events:stream`).
    pub stream: String,
    /// Consumer group (`event-processor`).
    pub group: String,
    /// This consumer's name (`{hostname}-{pid}`): must differ between live processors.
    pub consumer: String,
    /// Stream receiving dead letters (`events:dead`).
    pub dead_letter_stream: String,
    /// Entries pending on another consumer longer than this are taken over (30 s).
    pub claim_idle: Duration,
    /// How often to look for such entries (default: half of `claim_idle`, at least 100 ms).
    pub claim_interval: Option<Duration>,
    /// Longest wait of one blocking read (1 s); bounds the shutdown latency too.
    pub block: Duration,
    /// `MAXLEN ~` applied when re-adding entries (dead-letter replay); `None` = no cap.
    pub maxlen: Option<u64>,
}

impl RedisSourceConfig {
    /// Defaults for `url`: stream `events:stream`, group `event-processor`, consumer
    /// `{hostname}-{pid}`, dead letters `events:dead`, claim idle 30 s, block 1 s.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            stream: "events:stream".into(),
            group: "event-processor".into(),
            consumer: default_consumer_name(),
            dead_letter_stream: "events:dead".into(),
            claim_idle: Duration::from_secs(30),
            claim_interval: None,
            block: Duration::from_secs(1),
            maxlen: Some(1_000_000),
        }
    }

    fn claim_every(&self) -> Duration {
        self.claim_interval
            .unwrap_or(self.claim_idle / 2)
            .max(Duration::from_millis(100))
    }
}

/// `{hostname}-{pid}`, the default consumer name of brief §4.
pub fn default_consumer_name() -> String {
    let host = std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| std::fs::read_to_string("/proc/sys/kernel/hostname").ok())
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".into());
    format!("{host}-{}", std::process::id())
}

#[derive(Clone)]
struct Clients {
    /// Only for `XREADGROUP ... BLOCK`, which holds its connection while it waits.
    reader: Client,
    /// Everything else (acks, claims, dead letters, info).
    writer: Client,
}

/// A Redis consumer-group reader (brief §8).
///
/// * On (re)connect: `XGROUP CREATE <stream> <group> 0 MKSTREAM` (BUSYGROUP = fine). The
///   group starts at `0`, not `$`, so entries emitted before the first processor start
///   are processed too.
/// * Own pending entries first (`XREADGROUP ... 0`): after a start, a reconnect, or when
///   [`Source::retry_later`]'s delay is up; then new ones (`>`), blocking at most
///   [`RedisSourceConfig::block`] on a dedicated connection.
/// * Every `claim_interval`, `XAUTOCLAIM` takes over entries idle longer than
///   `claim_idle` (a dead consumer's); delivery counts of re-delivered entries come from
///   `XPENDING`. Entries trimmed away while pending (nil in the reply, or the deleted-ids
///   list of XAUTOCLAIM) are acked and counted in `events_trimmed_pending_total`.
/// * `NOGROUP` (Redis restarted empty, stream deleted): the group is recreated and reading
///   goes on. Any other error drops both connections; the next `read_batch` reconnects
///   (the processor backs off between attempts).
pub struct RedisStreamSource {
    config: RedisSourceConfig,
    clients: Option<Clients>,
    pending_cursor: Option<String>,
    retry_at: Option<Instant>,
    next_claim: Instant,
    claim_cursor: String,
    trimmed: u64,
    /// New entries delivered to us beyond the batch size by a topped-up blocking read
    /// ([`RedisStreamSource::read_new_topped_up`]); handed out by the next read before
    /// anything else is read. Dropped with the connection: they are in our pending list, which
    /// is re-read after a reconnect.
    surplus: Vec<SourceEntry>,
    /// `XACK`s sent and not yet answered ([`Source::ack`] does not wait for the reply: on
    /// the latency benchmark's path, the ack's round trip sat between every commit and the
    /// read of the next entries). At most [`MAX_ACKS_IN_FLIGHT`]; waited for before own
    /// pending entries are read again (so that they do not include acked ones) and by
    /// [`Source::flush_acks`].
    acks_in_flight: tokio::task::JoinSet<()>,
}

/// Most unanswered `XACK`s a source keeps sending before it waits for one of them to be
/// answered.
const MAX_ACKS_IN_FLIGHT: usize = 4;

impl std::fmt::Debug for RedisStreamSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStreamSource")
            .field("config", &self.config)
            .field("connected", &self.clients.is_some())
            .field("pending_cursor", &self.pending_cursor)
            .finish_non_exhaustive()
    }
}

impl RedisStreamSource {
    /// A source that connects lazily on the first `read_batch` (so a daemon can start
    /// while Redis is still down and report it on `/ready`).
    pub fn new(config: RedisSourceConfig) -> Self {
        let next_claim = Instant::now();
        Self {
            config,
            clients: None,
            pending_cursor: Some("0-0".into()),
            retry_at: None,
            next_claim,
            claim_cursor: "0-0".into(),
            trimmed: 0,
            surplus: Vec::new(),
            acks_in_flight: tokio::task::JoinSet::new(),
        }
    }

    /// The configuration in use.
    pub fn config(&self) -> &RedisSourceConfig {
        &self.config
    }

    /// Pending entries that were found trimmed from the stream and acked, since start.
    pub fn trimmed_pending(&self) -> u64 {
        self.trimmed
    }

    async fn connect(&mut self) -> Result<Clients> {
        let broken = self
            .clients
            .as_ref()
            .is_some_and(|c| !c.reader.is_connected() || !c.writer.is_connected());
        if broken {
            tracing::warn!(stream = %self.config.stream, "redis connection lost");
            self.disconnect();
        }
        if self.clients.is_none() {
            let config =
                Config::from_url(&self.config.url).map_err(|e| Error::redis("parse url", e))?;
            let connection = ConnectionConfig {
                connection_timeout: Duration::from_secs(2),
                internal_command_timeout: Duration::from_secs(5),
                max_command_attempts: 1,
                ..Default::default()
            };
            let perf = |timeout| PerformanceConfig {
                default_command_timeout: timeout,
                ..Default::default()
            };
            let reader = Client::new(
                config.clone(),
                Some(perf(self.config.block + Duration::from_secs(3))),
                Some(connection.clone()),
                None,
            );
            let writer = Client::new(
                config,
                Some(perf(Duration::from_secs(10))),
                Some(connection),
                None,
            );
            if let Err(e) = reader.init().await {
                return Err(Error::redis("connect", e));
            }
            if let Err(e) = writer.init().await {
                close(reader);
                return Err(Error::redis("connect", e));
            }
            let clients = Clients { reader, writer };
            create_group(&clients.writer, &self.config).await?;
            tracing::info!(stream = %self.config.stream, group = %self.config.group, consumer = %self.config.consumer, "connected to redis");
            self.clients = Some(clients);
            // whatever was delivered to us before the connection dropped is in our PEL
            self.pending_cursor = Some("0-0".into());
        }
        self.clients
            .clone()
            .ok_or_else(|| Error::Config("redis clients missing after connect".into()))
    }

    fn disconnect(&mut self) {
        self.surplus.clear();
        if let Some(clients) = self.clients.take() {
            close(clients.reader);
            close(clients.writer);
        }
    }

    /// Handle a command error: recreate the group on NOGROUP (returns Ok), drop the
    /// connections otherwise.
    async fn on_error(&mut self, op: &'static str, e: fred::error::Error) -> Result<()> {
        if e.details().contains("NOGROUP") {
            tracing::warn!(stream = %self.config.stream, group = %self.config.group, "consumer group missing (redis restarted empty?): recreating it");
            if let Some(clients) = self.clients.clone() {
                create_group(&clients.writer, &self.config).await?;
            }
            self.pending_cursor = Some("0-0".into());
            self.claim_cursor = "0-0".into();
            return Ok(());
        }
        self.disconnect();
        Err(Error::redis(op, e))
    }

    async fn read_inner(&mut self, max: usize) -> Result<Vec<SourceEntry>> {
        let max = max.max(1);
        if !self.surplus.is_empty() {
            return Ok(self.take_surplus(max));
        }
        let now = Instant::now();
        if now >= self.next_claim {
            self.next_claim = now + self.config.claim_every();
            let entries = self.autoclaim(max).await?;
            if !entries.is_empty() {
                return Ok(entries);
            }
        }
        let retry_due = self.retry_at.is_none_or(|t| Instant::now() >= t);
        if let (Some(cursor), true) = (self.pending_cursor.clone(), retry_due) {
            // entries acked a moment ago must not come back as pending
            self.flush_acks().await;
            let clients = self.connect().await?;
            let reply = xreadgroup(&clients.writer, &self.config, max, None, &cursor).await;
            let reply = match reply {
                Ok(reply) => reply,
                Err(e) => {
                    return self
                        .on_error("XREADGROUP (pending)", e)
                        .await
                        .map(|()| Vec::new());
                }
            };
            let raw = parse_xread(reply)?;
            if raw.is_empty() {
                self.pending_cursor = None;
                self.retry_at = None;
            } else {
                if let Some((last, _)) = raw.last() {
                    self.pending_cursor = Some(last.clone());
                }
                return self.settle_redelivered(raw).await;
            }
        }
        let mut block = self.config.block;
        let now = Instant::now();
        block = block.min(self.next_claim.saturating_duration_since(now));
        if let (Some(t), Some(_)) = (self.retry_at, &self.pending_cursor) {
            block = block.min(t.saturating_duration_since(now));
        }
        let block_ms = (block.as_millis() as u64).max(1);
        self.read_new_topped_up(max, block_ms).await
    }

    /// Up to `max` surplus entries, oldest first.
    fn take_surplus(&mut self, max: usize) -> Vec<SourceEntry> {
        let rest = self.surplus.split_off(max.min(self.surplus.len()));
        std::mem::replace(&mut self.surplus, rest)
    }

    /// A blocking `XREADGROUP ... >` followed, in the same pipeline, by a non-blocking one.
    ///
    /// Redis answers a blocked reader as soon as the first entry arrives, while a producer's
    /// pipelined batch is still right behind it; Redis runs the second read only after it
    /// has processed the rest of that producer's pipeline, so the second read takes the rest
    /// of the batch — without a round trip of its own after the first answer (a top-up read
    /// sent then was on the path of every event of the latency benchmark). Both may answer
    /// in full when entries are already waiting; what exceeds `max` is kept as
    /// [`RedisStreamSource::surplus`] for the next read. A failed second read is retried by
    /// the next read; the first read's entries are not lost on its account.
    async fn read_new_topped_up(&mut self, max: usize, block_ms: u64) -> Result<Vec<SourceEntry>> {
        let clients = self.connect().await?;
        let pipeline = clients.reader.pipeline();
        for block in [Some(block_ms), None] {
            // queued, not sent: the reply comes from `try_all`
            let _: () = xreadgroup(&pipeline, &self.config, max, block, ">")
                .await
                .map_err(|e| Error::redis("XREADGROUP", e))?;
        }
        let mut replies = pipeline.try_all::<Value>().await.into_iter();
        let first = match replies.next() {
            Some(Ok(reply)) => reply,
            Some(Err(e)) => return self.on_error("XREADGROUP", e).await.map(|()| Vec::new()),
            None => return Err(Error::Config("no reply to a pipelined XREADGROUP".into())),
        };
        let mut entries = self.new_entries(first).await?;
        // Taken even after an empty first answer: an entry that arrived between the block
        // time running out and the second read was delivered to us by it.
        match replies.next() {
            Some(Ok(reply)) => entries.extend(self.new_entries(reply).await?),
            Some(Err(e)) => tracing::debug!(error = %e, "topping up a read failed"),
            None => {}
        }
        if entries.len() > max {
            self.surplus = entries.split_off(max);
        }
        Ok(entries)
    }

    /// `XREADGROUP ... >`: entries never delivered to the group, answered at once.
    async fn read_new(&mut self, max: usize) -> Result<Vec<SourceEntry>> {
        let clients = self.connect().await?;
        let reply = xreadgroup(&clients.reader, &self.config, max, None, ">").await;
        match reply {
            Ok(reply) => self.new_entries(reply).await,
            Err(e) => self.on_error("XREADGROUP", e).await.map(|()| Vec::new()),
        }
    }

    /// The entries of an `XREADGROUP ... >` reply (first deliveries); entries trimmed from
    /// the stream before they could be read are acked.
    async fn new_entries(&mut self, reply: Value) -> Result<Vec<SourceEntry>> {
        let raw = parse_xread(reply)?;
        let mut out = Vec::with_capacity(raw.len());
        let mut trimmed = Vec::new();
        for (id, fields) in raw {
            match fields {
                Some(fields) => out.push(SourceEntry {
                    entry_id: id,
                    fields,
                    delivery_count: 1,
                }),
                None => trimmed.push(id),
            }
        }
        self.ack_trimmed(trimmed).await?;
        Ok(out)
    }

    /// Entries delivered before (own pending or claimed): fetch their delivery counts and
    /// ack the ones trimmed away meanwhile.
    async fn settle_redelivered(&mut self, raw: Vec<RawEntry>) -> Result<Vec<SourceEntry>> {
        let mut trimmed = Vec::new();
        let mut live = Vec::with_capacity(raw.len());
        for (id, fields) in raw {
            match fields {
                Some(fields) => live.push((id, fields)),
                None => trimmed.push(id),
            }
        }
        self.ack_trimmed(trimmed).await?;
        let (Some(first), Some(last)) = (live.first(), live.last()) else {
            return Ok(Vec::new());
        };
        let clients = self.connect().await?;
        let reply = clients
            .writer
            .xpending::<Value, _, _, _>(
                self.config.stream.as_str(),
                self.config.group.as_str(),
                (
                    first.0.as_str(),
                    last.0.as_str(),
                    live.len() as u64 * 2 + 10,
                    self.config.consumer.as_str(),
                ),
            )
            .await;
        let counts = match reply {
            Ok(reply) => parse_pending_counts(reply),
            Err(e) => return self.on_error("XPENDING", e).await.map(|()| Vec::new()),
        };
        Ok(live
            .into_iter()
            .map(|(entry_id, fields)| {
                let delivery_count = counts.get(&entry_id).copied().unwrap_or(1).max(1);
                SourceEntry {
                    entry_id,
                    fields,
                    delivery_count,
                }
            })
            .collect())
    }

    async fn autoclaim(&mut self, max: usize) -> Result<Vec<SourceEntry>> {
        let clients = self.connect().await?;
        let min_idle = self.config.claim_idle.as_millis() as u64;
        let reply = clients
            .writer
            .xautoclaim::<Value, _, _, _, _>(
                self.config.stream.as_str(),
                self.config.group.as_str(),
                self.config.consumer.as_str(),
                min_idle,
                self.claim_cursor.as_str(),
                Some(max as u64),
                false,
            )
            .await;
        let reply = match reply {
            Ok(reply) => reply,
            Err(e) => return self.on_error("XAUTOCLAIM", e).await.map(|()| Vec::new()),
        };
        let mut parts = reply.into_array().into_iter();
        let next = parts
            .next()
            .and_then(|v| v.as_string())
            .unwrap_or_else(|| "0-0".into());
        let entries = parse_entries(parts.next().unwrap_or(Value::Null))?;
        let deleted: Vec<String> = parts
            .next()
            .map(|v| {
                v.into_array()
                    .into_iter()
                    .filter_map(|v| v.as_string())
                    .collect()
            })
            .unwrap_or_default();
        if next != "0-0" {
            // more to claim: come back on the next read
            self.next_claim = Instant::now();
        }
        self.claim_cursor = next;
        if !entries.is_empty() {
            tracing::info!(count = entries.len(), consumer = %self.config.consumer, "claimed entries idle on other consumers");
        }
        self.ack_trimmed(deleted).await?;
        self.settle_redelivered(entries).await
    }

    async fn ack_trimmed(&mut self, ids: Vec<String>) -> Result<()> {
        if ids.is_empty() {
            return Ok(());
        }
        tracing::warn!(
            count = ids.len(),
            "pending entries were trimmed from the stream before processing: acked"
        );
        metrics::counter!(crate::metrics::TRIMMED_PENDING).increment(ids.len() as u64);
        self.trimmed += ids.len() as u64;
        self.ack(&ids).await
    }
}

impl Source for RedisStreamSource {
    fn describe(&self) -> String {
        format!(
            "redis {}/{} as {}",
            self.config.stream, self.config.group, self.config.consumer
        )
    }

    fn checkpoint(&self) -> Checkpoint {
        Checkpoint::ProcessedEntries {
            stream: self.config.stream.clone(),
        }
    }

    async fn read_batch(&mut self, max: usize) -> Result<Vec<SourceEntry>> {
        self.read_inner(max).await
    }

    async fn read_ahead(&mut self, max: usize) -> Result<Option<Vec<SourceEntry>>> {
        if !self.surplus.is_empty() {
            return Ok(Some(self.take_surplus(max.max(1))));
        }
        // Only plain new entries: while own pending entries are being re-read (after a
        // restart, a reconnect or a retry) or a claim is due, the next read must be the
        // ordinary one, or entries of the batch in flight would be delivered again.
        if self.pending_cursor.is_some()
            || self.clients.is_none()
            || Instant::now() >= self.next_claim
        {
            return Ok(None);
        }
        self.read_new(max.max(1)).await.map(Some)
    }

    fn take_buffered(&mut self, max: usize) -> Vec<SourceEntry> {
        self.take_surplus(max.max(1))
    }

    async fn ack(&mut self, ids: &[String]) -> Result<()> {
        if ids.is_empty() {
            return Ok(());
        }
        let clients = self.connect().await?;
        // Finished acks are reaped, and one waited for when too many are unanswered
        // (Redis is then slower than the batches: back-pressure, not an unbounded queue).
        while self.acks_in_flight.try_join_next().is_some() {}
        while self.acks_in_flight.len() >= MAX_ACKS_IN_FLIGHT {
            self.acks_in_flight.join_next().await;
        }
        let (stream, group) = (self.config.stream.clone(), self.config.group.clone());
        let ids = ids.to_vec();
        self.acks_in_flight.spawn(async move {
            let count = ids.len();
            let result = clients
                .writer
                .xack::<i64, _, _, _>(stream.as_str(), group.as_str(), ids)
                .await;
            // Not retried: an unacked entry is delivered again after a restart or a
            // reconnect and then skipped as processed. A broken connection is found (and
            // replaced) by the next read.
            if let Err(e) = result {
                tracing::warn!(error = %e, count, "acking a committed batch failed");
            }
        });
        Ok(())
    }

    async fn flush_acks(&mut self) {
        while self.acks_in_flight.join_next().await.is_some() {}
    }

    fn retry_later(&mut self, ids: &[String], delay: Duration) {
        if ids.is_empty() {
            return;
        }
        self.pending_cursor = Some("0-0".into());
        let at = Instant::now() + delay;
        self.retry_at = Some(self.retry_at.map_or(at, |t| t.min(at)));
    }

    async fn publish_dead_letters(&mut self, letters: &[DeadLetterRecord]) -> Result<()> {
        if letters.is_empty() {
            return Ok(());
        }
        let clients = self.connect().await?;
        let pipeline = clients.writer.pipeline();
        for letter in letters {
            let mut fields: Vec<(String, String)> = vec![
                ("entry_id".into(), letter.entry_id.clone()),
                ("stream".into(), self.config.stream.clone()),
                ("reason".into(), letter.reason.clone()),
                ("delivery_count".into(), letter.delivery_count.to_string()),
            ];
            let original = serde_json::to_string(&letter.fields).unwrap_or_default();
            fields.push(("fields".into(), original));
            let cap = stream_cap(self.config.maxlen);
            let queued: std::result::Result<(), _> = pipeline
                .xadd(
                    self.config.dead_letter_stream.as_str(),
                    false,
                    cap,
                    "*",
                    fields,
                )
                .await;
            if let Err(e) = queued {
                return self.on_error("XADD (dead letter)", e).await;
            }
        }
        match pipeline.all::<Value>().await {
            Ok(_) => Ok(()),
            Err(e) => self.on_error("XADD (dead letter)", e).await,
        }
    }

    fn is_connected(&self) -> bool {
        self.clients
            .as_ref()
            .is_some_and(|c| c.reader.is_connected() && c.writer.is_connected())
    }

    async fn lag(&mut self) -> Result<Option<u64>> {
        let Some(clients) = self.clients.clone() else {
            return Ok(None);
        };
        let reply = clients
            .writer
            .xinfo_groups::<Value, _>(self.config.stream.as_str())
            .await;
        let reply = match reply {
            Ok(reply) => reply,
            Err(e) => return self.on_error("XINFO GROUPS", e).await.map(|()| None),
        };
        for group in reply.into_array() {
            let mut map = HashMap::new();
            let mut items = group.into_array().into_iter();
            while let (Some(k), Some(v)) = (items.next(), items.next()) {
                if let Some(k) = k.as_string() {
                    map.insert(k, v);
                }
            }
            if map.get("name").and_then(|v| v.as_string()).as_deref()
                != Some(self.config.group.as_str())
            {
                continue;
            }
            let num = |key: &str| {
                map.get(key)
                    .and_then(|v| v.as_string())
                    .and_then(|s| s.parse::<u64>().ok())
            };
            let pending = num("pending").unwrap_or(0);
            return Ok(num("lag").map(|lag| lag + pending));
        }
        Ok(None)
    }
}

/// `MAXLEN ~ n`, or no cap.
pub(crate) fn stream_cap(maxlen: Option<u64>) -> fred::types::streams::XCap {
    match maxlen {
        Some(n) => ("MAXLEN", "~", i64::try_from(n).unwrap_or(i64::MAX))
            .try_into()
            .unwrap_or_else(|_| None::<()>.into()),
        None => None::<()>.into(),
    }
}

async fn create_group(client: &Client, config: &RedisSourceConfig) -> Result<()> {
    let created: std::result::Result<Value, _> = client
        .xgroup_create(config.stream.as_str(), config.group.as_str(), "0", true)
        .await;
    match created {
        Ok(_) => Ok(()),
        Err(e) if e.details().starts_with("BUSYGROUP") => Ok(()),
        Err(e) => Err(Error::redis("XGROUP CREATE", e)),
    }
}

fn close(client: Client) {
    if let Ok(handle) = tokio::runtime::Handle::try_current() {
        handle.spawn(async move {
            let _ = tokio::time::timeout(Duration::from_secs(1), client.quit()).await;
        });
    }
}

/// `(entry id, fields)`; fields `None` = the entry was deleted (trimmed) from the stream.
type RawEntry = (String, Option<EntryFields>);

/// `XREADGROUP COUNT max [BLOCK block] STREAMS stream id` as this source's group and
/// consumer, sent on a connection or queued on a pipeline.
async fn xreadgroup<C, R>(
    client: &C,
    config: &RedisSourceConfig,
    max: usize,
    block: Option<u64>,
    id: &str,
) -> FredResult<R>
where
    C: StreamsInterface + Sync,
    R: FromValue,
{
    client
        .xreadgroup(
            config.group.as_str(),
            config.consumer.as_str(),
            Some(max as u64),
            block,
            false,
            config.stream.as_str(),
            id,
        )
        .await
}

/// Parse an XREADGROUP reply (RESP2 nested arrays or RESP3 map) for a single stream.
fn parse_xread(reply: Value) -> Result<Vec<RawEntry>> {
    if reply.is_null() {
        return Ok(Vec::new());
    }
    let mut out = Vec::new();
    let streams = reply.into_array();
    // RESP2: [[key, entries], ...]; a RESP3 map flattens to [key, entries, ...]
    if streams
        .first()
        .is_some_and(|v| matches!(v, Value::Array(_)))
    {
        for stream in streams {
            let mut parts = stream.into_array().into_iter();
            let _key = parts.next();
            out.extend(parse_entries(parts.next().unwrap_or(Value::Null))?);
        }
    } else {
        let mut parts = streams.into_iter();
        while let (Some(_key), Some(entries)) = (parts.next(), parts.next()) {
            out.extend(parse_entries(entries)?);
        }
    }
    Ok(out)
}

fn parse_entries(entries: Value) -> Result<Vec<RawEntry>> {
    if entries.is_null() {
        return Ok(Vec::new());
    }
    let mut out = Vec::new();
    for entry in entries.into_array() {
        if entry.is_null() {
            continue; // Redis 6.2 XAUTOCLAIM: deleted entry without id
        }
        let mut parts = entry.into_array().into_iter();
        let id = parts
            .next()
            .and_then(|v| v.as_string())
            .ok_or_else(|| Error::Reply {
                op: "XREADGROUP",
                message: "entry without id".into(),
            })?;
        let fields = match parts.next() {
            None | Some(Value::Null) => None,
            Some(v) => {
                let flat = v.into_array();
                fn text(v: &Value) -> std::borrow::Cow<'_, str> {
                    v.as_str().unwrap_or_default()
                }
                let bytes = flat.iter().map(|v| text(v).len()).sum();
                let mut fields = EntryFields::with_capacity(flat.len() / 2, bytes);
                for pair in flat.chunks_exact(2) {
                    fields.push(&text(&pair[0]), &text(&pair[1]));
                }
                Some(fields)
            }
        };
        out.push((id, fields));
    }
    Ok(out)
}

/// Parse an extended XPENDING reply into id → delivery count.
fn parse_pending_counts(reply: Value) -> HashMap<String, u64> {
    let mut counts = HashMap::new();
    for row in reply.into_array() {
        let row = row.into_array();
        if let (Some(id), Some(count)) = (row.first().and_then(|v| v.as_string()), row.get(3)) {
            let count = match count {
                Value::Integer(n) => u64::try_from(*n).unwrap_or(1),
                other => other.as_string().and_then(|s| s.parse().ok()).unwrap_or(1),
            };
            counts.insert(id, count);
        }
    }
    counts
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(text: &str) -> Value {
        Value::String(text.into())
    }

    #[test]
    fn parses_resp2_xread_with_trimmed_entry() {
        let reply = Value::Array(vec![Value::Array(vec![
            s("events:stream"),
            Value::Array(vec![
                Value::Array(vec![
                    s("1-0"),
                    Value::Array(vec![s("event"), s("a.b"), s("source"), s("x")]),
                ]),
                Value::Array(vec![s("2-0"), Value::Null]),
            ]),
        ])]);
        let parsed = parse_xread(reply).expect("parse");
        assert_eq!(parsed.len(), 2);
        assert_eq!(parsed[0].0, "1-0");
        let fields = parsed[0].1.as_ref().expect("live entry");
        assert_eq!(
            fields.iter().collect::<Vec<_>>(),
            [("event", "a.b"), ("source", "x")]
        );
        assert_eq!(parsed[1], ("2-0".to_owned(), None));
        assert!(parse_xread(Value::Null).expect("nil").is_empty());
    }

    #[test]
    fn parses_pending_counts() {
        let reply = Value::Array(vec![
            Value::Array(vec![
                s("1-0"),
                s("c1"),
                Value::Integer(10),
                Value::Integer(3),
            ]),
            Value::Array(vec![
                s("2-0"),
                s("c1"),
                Value::Integer(10),
                Value::Integer(1),
            ]),
        ]);
        let counts = parse_pending_counts(reply);
        assert_eq!(counts.get("1-0"), Some(&3));
        assert_eq!(counts.get("2-0"), Some(&1));
    }

    #[test]
    fn consumer_name_has_pid() {
        assert!(default_consumer_name().ends_with(&format!("-{}", std::process::id())));
    }
}
