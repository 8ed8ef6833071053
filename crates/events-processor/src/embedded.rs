//! The embedded transport: a stream in SQLite (`stream_entries` + `consumer_offsets`) for
//! running without Redis. [`EmbeddedSource`] reads it, [`EmbeddedProducer`] appends to it.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use events_envelope::{EventEnvelope, to_stream_fields};
use events_producer::{BoxFuture, EmitReceipt, Producer, validate_events};
use events_storage::{EmbeddedEntry, EncodedFields, EventDb, StorageError};
use tokio::sync::Notify;

use crate::dead_letters::RawAppend;
use crate::error::{Error, Result};
use crate::source::{Checkpoint, DeadLetterRecord, Source, SourceEntry};

/// Settings of the embedded transport.
#[derive(Debug, Clone)]
pub struct EmbeddedConfig {
    /// Stream name inside `stream_entries` (`events:stream`).
    pub stream: String,
    /// Consumer group whose offset is kept in `consumer_offsets` (`event-processor`).
    pub group: String,
    /// Longest wait for new entries when nobody wakes the source (a producer in another
    /// process, say); bounds shutdown latency too.
    pub poll: Duration,
}

impl Default for EmbeddedConfig {
    fn default() -> Self {
        Self {
            stream: "events:stream".into(),
            group: "event-processor".into(),
            poll: Duration::from_millis(500),
        }
    }
}

/// Reads an embedded stream with the same contract as the Redis source.
///
/// The committed position is the group's offset in `consumer_offsets`, advanced in the
/// batch transaction (see [`Checkpoint::Offset`]) up to the oldest entry still
/// outstanding; entries settled beyond it are in `processed_entries`, so a restart skips
/// them. Delivery counts are kept in memory per entry (they restart at 1 after a process
/// restart — the embedded transport has no durable pending list). New entries are noticed
/// at once when appended through an [`EmbeddedProducer`] of the same process (a shared
/// [`Notify`]), otherwise within [`EmbeddedConfig::poll`].
#[derive(Debug)]
pub struct EmbeddedSource {
    db: EventDb,
    config: EmbeddedConfig,
    notify: Arc<Notify>,
    cursor: Option<u64>,
    outstanding: BTreeMap<u64, ()>,
    retry: BTreeMap<u64, Instant>,
    deliveries: HashMap<u64, u64>,
}

impl EmbeddedSource {
    /// A source over `config.stream` of `db`.
    pub fn new(db: EventDb, config: EmbeddedConfig) -> Self {
        Self {
            db,
            config,
            notify: Arc::new(Notify::new()),
            cursor: None,
            outstanding: BTreeMap::new(),
            retry: BTreeMap::new(),
            deliveries: HashMap::new(),
        }
    }

    /// A producer appending to this source's stream that wakes it on every append.
    pub fn producer(&self) -> EmbeddedProducer {
        EmbeddedProducer {
            db: self.db.clone(),
            stream: self.config.stream.clone(),
            notify: Arc::clone(&self.notify),
            max_payload_bytes: events_envelope::DEFAULT_MAX_PAYLOAD_BYTES,
        }
    }

    async fn load_cursor(&mut self) -> Result<u64> {
        if let Some(cursor) = self.cursor {
            return Ok(cursor);
        }
        let (stream, group) = (self.config.stream.clone(), self.config.group.clone());
        let offset = self
            .db
            .read(move |r| r.consumer_offset(&stream, &group))
            .await?;
        let cursor = offset.as_deref().map(parse_seq).transpose()?.unwrap_or(0);
        self.cursor = Some(cursor);
        Ok(cursor)
    }

    async fn read_after(&self, after: u64, limit: usize) -> Result<Vec<EmbeddedEntry>> {
        let stream = self.config.stream.clone();
        let limit = u32::try_from(limit).unwrap_or(u32::MAX);
        Ok(self
            .db
            .read(move |r| r.read_embedded(&stream, &format!("{after}-0"), limit))
            .await?)
    }

    fn deliver(&mut self, entry: EmbeddedEntry) -> Result<SourceEntry> {
        let seq = parse_seq(&entry.id)?;
        let count = self.deliveries.entry(seq).or_insert(0);
        *count += 1;
        self.outstanding.insert(seq, ());
        Ok(SourceEntry {
            entry_id: entry.id,
            fields: entry.fields.into(),
            delivery_count: *count,
        })
    }

    async fn read_once(&mut self, max: usize) -> Result<Vec<SourceEntry>> {
        let cursor = self.load_cursor().await?;
        let now = Instant::now();
        let due: Vec<u64> = self
            .retry
            .iter()
            .filter(|(_, at)| **at <= now)
            .map(|(seq, _)| *seq)
            .take(max)
            .collect();
        let mut out = Vec::new();
        for seq in due {
            self.retry.remove(&seq);
            match self.read_after(seq - 1, 1).await?.into_iter().next() {
                Some(entry) if parse_seq(&entry.id)? == seq => out.push(self.deliver(entry)?),
                // gone from the table (deleted by hand): nothing left to retry
                _ => {
                    self.outstanding.remove(&seq);
                    self.deliveries.remove(&seq);
                }
            }
        }
        if out.len() < max {
            let fresh = self.read_after(cursor, max - out.len()).await?;
            for entry in fresh {
                let delivered = self.deliver(entry)?;
                let seq = parse_seq(&delivered.entry_id)?;
                self.cursor = Some(seq.max(self.cursor.unwrap_or(0)));
                out.push(delivered);
            }
        }
        Ok(out)
    }
}

impl Source for EmbeddedSource {
    fn describe(&self) -> String {
        format!("embedded {}/{}", self.config.stream, self.config.group)
    }

    fn checkpoint(&self) -> Checkpoint {
        Checkpoint::Offset {
            stream: self.config.stream.clone(),
            group: self.config.group.clone(),
            outstanding: self.outstanding.keys().copied().collect(),
            cursor: self.cursor.unwrap_or(0),
        }
    }

    async fn read_batch(&mut self, max: usize) -> Result<Vec<SourceEntry>> {
        let max = max.max(1);
        let out = self.read_once(max).await?;
        if !out.is_empty() {
            return Ok(out);
        }
        let mut wait = self.config.poll;
        if let Some(next) = self.retry.values().min() {
            wait = wait.min(next.saturating_duration_since(Instant::now()));
        }
        // a permit stored by notify_one between the read and here is not lost
        let _ = tokio::time::timeout(wait, self.notify.notified()).await;
        self.read_once(max).await
    }

    async fn read_ahead(&mut self, max: usize) -> Result<Option<Vec<SourceEntry>>> {
        // `read_once` never waits; the batch in flight is in `outstanding` and past the
        // cursor, so nothing of it is read again.
        self.read_once(max.max(1)).await.map(Some)
    }

    async fn ack(&mut self, ids: &[String]) -> Result<()> {
        for id in ids {
            let seq = parse_seq(id)?;
            self.outstanding.remove(&seq);
            self.retry.remove(&seq);
            self.deliveries.remove(&seq);
        }
        Ok(())
    }

    fn retry_later(&mut self, ids: &[String], delay: Duration) {
        let at = Instant::now() + delay;
        for id in ids {
            if let Ok(seq) = parse_seq(id) {
                self.retry.insert(seq, at);
            }
        }
    }

    async fn publish_dead_letters(&mut self, _letters: &[DeadLetterRecord]) -> Result<()> {
        // the `dead_letters` table, written in the batch transaction, is the only copy
        Ok(())
    }

    fn is_connected(&self) -> bool {
        true
    }

    fn queue_read_ahead(&self) -> bool {
        // producers append through the same storage writer
        false
    }

    async fn lag(&mut self) -> Result<Option<u64>> {
        let stream = self.config.stream.clone();
        let group = self.config.group.clone();
        let lag = self
            .db
            .read(move |r| {
                let offset = r
                    .consumer_offset(&stream, &group)?
                    .map(|o| parse_seq(&o))
                    .transpose();
                let offset = offset.map_err(|e| StorageError::InvalidInput {
                    field: "consumer_offsets.entry_id",
                    message: e.to_string(),
                })?;
                let count: i64 = r.connection().query_row(
                    "SELECT COUNT(*) FROM stream_entries WHERE stream = ?1 AND id > ?2",
                    (
                        &stream,
                        i64::try_from(offset.unwrap_or(0)).unwrap_or(i64::MAX),
                    ),
                    |row| row.get(0),
                )?;
                Ok(count)
            })
            .await?;
        Ok(Some(u64::try_from(lag).unwrap_or(0)))
    }
}

/// Appends events to an embedded stream: the [`Producer`] of the no-Redis setup (the
/// daemon's HTTP ingest uses it, tests too). Cheap to clone.
#[derive(Debug, Clone)]
pub struct EmbeddedProducer {
    db: EventDb,
    stream: String,
    notify: Arc<Notify>,
    max_payload_bytes: usize,
}

impl EmbeddedProducer {
    /// A producer for `stream` of `db`. Prefer [`EmbeddedSource::producer`] in the
    /// processor's process, which also wakes the source at once.
    pub fn new(db: EventDb, stream: impl Into<String>) -> Self {
        Self {
            db,
            stream: stream.into(),
            notify: Arc::new(Notify::new()),
            max_payload_bytes: events_envelope::DEFAULT_MAX_PAYLOAD_BYTES,
        }
    }

    /// Refuse payloads above `bytes` (default 256 KiB).
    #[must_use]
    pub fn with_max_payload_bytes(mut self, bytes: usize) -> Self {
        self.max_payload_bytes = bytes;
        self
    }

    /// Append raw field sets (already in wire format) in one transaction; returns their
    /// entry ids in order. Used for dead-letter replay and by tests writing foreign
    /// producers' entries.
    pub async fn append_fields(&self, entries: Vec<Vec<(String, String)>>) -> Result<Vec<String>> {
        let stream = self.stream.clone();
        // encoded here, not on the single writer thread the whole daemon shares
        let encoded = entries
            .iter()
            .map(|fields| EncodedFields::encode(fields))
            .collect::<std::result::Result<Vec<_>, _>>()?;
        let ids = self
            .db
            .write(move |tx| {
                encoded
                    .iter()
                    .map(|fields| tx.embedded_append_encoded(&stream, fields))
                    .collect()
            })
            .await?;
        self.notify.notify_one();
        Ok(ids)
    }
}

fn storage_unavailable(e: Error) -> events_producer::Error {
    events_producer::Error::Unavailable {
        backend: "sqlite",
        url: "embedded stream".into(),
        reason: e.to_string(),
    }
}

impl Producer for EmbeddedProducer {
    fn emit(&self, event: EventEnvelope) -> BoxFuture<'_, events_producer::Result<EmitReceipt>> {
        Box::pin(async move {
            let mut receipts = self.emit_batch(vec![event]).await?;
            receipts.pop().ok_or_else(|| {
                storage_unavailable(Error::Aborted("no receipt for emitted event".into()))
            })
        })
    }

    fn emit_batch(
        &self,
        events: Vec<EventEnvelope>,
    ) -> BoxFuture<'_, events_producer::Result<Vec<EmitReceipt>>> {
        Box::pin(async move {
            validate_events(&events, self.max_payload_bytes)?;
            let fields = events.iter().map(wire_fields).collect();
            let ids = self
                .append_fields(fields)
                .await
                .map_err(storage_unavailable)?;
            Ok(events
                .into_iter()
                .zip(ids)
                .map(|(e, stream_id)| EmitReceipt {
                    id: e.id,
                    stream_id,
                })
                .collect())
        })
    }
}

impl RawAppend for EmbeddedProducer {
    fn append_raw<'a>(&'a self, fields: &'a [(String, String)]) -> BoxFuture<'a, Result<String>> {
        Box::pin(async move {
            let mut ids = self.append_fields(vec![fields.to_vec()]).await?;
            ids.pop()
                .ok_or_else(|| Error::Aborted("no id for appended entry".into()))
        })
    }
}

/// The envelope in stream wire format with owned keys.
pub(crate) fn wire_fields(event: &EventEnvelope) -> Vec<(String, String)> {
    to_stream_fields(event)
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect()
}

/// `"42-0"` / `"42"` → 42.
fn parse_seq(id: &str) -> Result<u64> {
    id.split_once('-')
        .map_or(id, |(n, _)| n)
        .parse()
        .map_err(|_| Error::Aborted(format!("malformed embedded entry id {id:?}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_entry_ids() {
        assert_eq!(parse_seq("42-0").ok(), Some(42));
        assert_eq!(parse_seq("7").ok(), Some(7));
        assert!(parse_seq("x-0").is_err());
    }
}
