//! [`RedisProducer`]: `XADD` to a Redis stream through fred.

use std::{
    fmt,
    fmt::Write as _,
    future::{Future, poll_fn},
    pin::{Pin, pin},
    task::Poll,
    time::Duration,
    vec,
};

use events_envelope::{EventEnvelope, format_timestamp, to_stream_fields};
use fred::{
    bytes::{BufMut, BytesMut},
    clients::{Client, Pipeline},
    error::{Error as RedisError, ErrorKind},
    interfaces::{ClientLike, StreamsInterface},
    types::{
        Builder, Key, Value,
        config::{Config, ReconnectPolicy},
        streams::{XCap, XID},
    },
};

use crate::{
    EmitReceipt, Error, Producer, Result,
    error::redact_url,
    producer::{BoxFuture, validate_events},
};

const BACKEND: &str = "redis";

/// How [`RedisProducer`] reconnects after the connection drops.
///
/// Exponential backoff from `min_delay`, doubling, never longer than `max_delay` between
/// attempts. While it reconnects, emits wait at most the command timeout and then fail with
/// [`Error::Unavailable`]; once Redis answers again, emits succeed without any action from
/// the caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReconnectConfig {
    /// Delay before the first reconnect attempt.
    pub min_delay: Duration,
    /// Upper bound of the delay between two attempts.
    pub max_delay: Duration,
    /// Give up after this many consecutive failed attempts; `0` = never give up.
    ///
    /// A producer that gave up stays broken until it is re-created, so the default is `0`.
    pub max_attempts: u32,
}

impl Default for ReconnectConfig {
    fn default() -> Self {
        Self {
            min_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(5),
            max_attempts: 0,
        }
    }
}

/// Settings of a [`RedisProducer`]; `RedisProducerConfig::new(url)` gives the brief's defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisProducerConfig {
    /// `redis://[user:password@]host:port[/db]` (or `rediss://` when fred is built with TLS).
    pub url: String,
    /// Stream key; default `events:stream`.
    pub stream: String,
    /// Approximate cap on the stream length (`XADD ... MAXLEN ~ n`); default 1,000,000.
    /// `None` or `Some(0)` = never trim.
    ///
    /// `~` lets Redis trim whole radix-tree nodes only, which is much cheaper than an exact
    /// cap; the stream may hold somewhat more than `n` entries.
    pub maxlen: Option<u64>,
    /// Bound on establishing a connection (TCP connect plus handshake); default 5 s.
    pub connect_timeout: Duration,
    /// Bound on one command or one pipelined chunk of a batch, including time spent waiting
    /// for a reconnect; default 10 s. This is what turns a dead Redis into an error instead of
    /// a hang.
    pub command_timeout: Duration,
    /// Reconnect backoff.
    pub reconnect: ReconnectConfig,
    /// How many `XADD`s [`Producer::emit_batch`] pipelines in one round trip; default 500.
    pub batch_chunk_size: usize,
    /// Payload size limit enforced before sending; default 256 KiB (brief §3).
    pub max_payload_bytes: usize,
}

impl RedisProducerConfig {
    /// Defaults for everything but the URL.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            stream: "events:stream".to_owned(),
            maxlen: Some(1_000_000),
            connect_timeout: Duration::from_secs(5),
            command_timeout: Duration::from_secs(10),
            reconnect: ReconnectConfig::default(),
            batch_chunk_size: 500,
            max_payload_bytes: events_envelope::DEFAULT_MAX_PAYLOAD_BYTES,
        }
    }
}

impl Default for RedisProducerConfig {
    /// `redis://127.0.0.1:6379` with the brief's defaults.
    fn default() -> Self {
        Self::new("redis://127.0.0.1:6379")
    }
}

/// Emits events as entries of a Redis stream (wire format: brief §4).
///
/// One connection, multiplexed: `emit` is one `XADD`, concurrent emits from many tasks are
/// pipelined on the connection by fred; `emit_batch` sends chunks of
/// [`batch_chunk_size`](RedisProducerConfig::batch_chunk_size) `XADD`s per round trip.
/// Cheap to share as `Arc<RedisProducer>` / `Arc<dyn Producer>`; it is not `Clone` because
/// dropping it closes the connection.
pub struct RedisProducer {
    client: Client,
    stream: String,
    /// `stream` as a fred key, built once: cloning it per `XADD` bumps a reference count
    /// where `&str` would copy the name into a fresh allocation for every entry.
    stream_key: Key,
    cap: XCap,
    maxlen: Option<u64>,
    /// Redacted, for messages.
    url: String,
    command_timeout: Duration,
    batch_chunk_size: usize,
    max_payload_bytes: usize,
}

impl fmt::Debug for RedisProducer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisProducer")
            .field("url", &self.url)
            .field("stream", &self.stream)
            .field("maxlen", &self.maxlen)
            .field("connected", &self.client.is_connected())
            .finish_non_exhaustive()
    }
}

impl RedisProducer {
    /// Connects to Redis; fails with [`Error::Unavailable`] if it cannot be reached now.
    ///
    /// Failing fast at start-up surfaces a wrong URL immediately; after a successful
    /// connect, outages are handled by reconnecting (see [`ReconnectConfig`]).
    pub async fn connect(config: RedisProducerConfig) -> Result<Self> {
        let url = redact_url(&config.url);
        // fred would take `http://...` as a host name and fail later with a DNS error;
        // say what is wrong instead.
        let scheme = config
            .url
            .split_once("://")
            .map(|(scheme, _)| scheme)
            .unwrap_or_default();
        if !scheme.starts_with("redis") {
            return Err(Error::Config(format!(
                "invalid redis url {url}: expected redis:// or rediss://"
            )));
        }
        let fred_config = Config::from_url(&config.url)
            .map_err(|e| Error::Config(format!("invalid redis url {url}: {}", reason_text(&e))))?;
        if config.batch_chunk_size == 0 {
            return Err(Error::Config(
                "batch_chunk_size must be at least 1".to_owned(),
            ));
        }
        let cap = match config.maxlen {
            Some(n) if n > 0 => {
                let n = i64::try_from(n)
                    .map_err(|_| Error::Config(format!("maxlen {n} is too large")))?;
                XCap::try_from(("MAXLEN", "~", n))
                    .map_err(|e| Error::Config(format!("maxlen: {}", reason_text(&e))))?
            }
            _ => XCap::from(None::<()>),
        };

        let reconnect = &config.reconnect;
        let policy = ReconnectPolicy::new_exponential(
            reconnect.max_attempts,
            millis_u32(reconnect.min_delay),
            millis_u32(reconnect.max_delay.max(reconnect.min_delay)),
            2,
        );
        let connect_timeout = config.connect_timeout;
        let command_timeout = config.command_timeout;
        let client = Builder::from_config(fred_config)
            .set_policy(policy)
            .with_connection_config(|c| {
                c.connection_timeout = connect_timeout;
                c.internal_command_timeout = connect_timeout;
            })
            .with_performance_config(|p| {
                p.default_command_timeout = command_timeout;
            })
            .build()
            .map_err(|e| Error::Config(format!("redis client for {url}: {}", reason_text(&e))))?;

        // fred bounds each step with `connect_timeout`; the outer bound is a backstop for a
        // handshake that is slow in several steps.
        match tokio::time::timeout(connect_timeout.saturating_mul(3), client.init()).await {
            Ok(Ok(_connection_task)) => {}
            Ok(Err(e)) => {
                return Err(Error::Unavailable {
                    backend: BACKEND,
                    url,
                    reason: reason_text(&e),
                });
            }
            Err(_) => {
                return Err(Error::Unavailable {
                    backend: BACKEND,
                    url,
                    reason: format!(
                        "no connection within {:?}",
                        connect_timeout.saturating_mul(3)
                    ),
                });
            }
        }
        tracing::debug!(%url, stream = %config.stream, "redis producer connected");

        Ok(Self {
            client,
            stream_key: Key::from(config.stream.as_str()),
            stream: config.stream,
            cap,
            maxlen: config.maxlen.filter(|n| *n > 0),
            url,
            command_timeout,
            batch_chunk_size: config.batch_chunk_size,
            max_payload_bytes: config.max_payload_bytes,
        })
    }

    /// The stream key events go to.
    pub fn stream(&self) -> &str {
        &self.stream
    }

    /// The Redis URL, password redacted.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Whether the connection is up right now (false while reconnecting).
    pub fn is_connected(&self) -> bool {
        self.client.is_connected()
    }

    /// Round-trips a `PING`: a readiness check.
    pub async fn ping(&self) -> Result<()> {
        let _: String = self.client.ping(None).await.map_err(|e| self.classify(e))?;
        Ok(())
    }

    /// Closes the connection after in-flight commands finish (dropping the producer does
    /// the same in the background).
    pub async fn close(self) -> Result<()> {
        self.client.quit().await.map_err(|e| self.classify(e))
    }

    async fn xadd(&self, event: EventEnvelope) -> Result<EmitReceipt> {
        validate_events(std::slice::from_ref(&event), self.max_payload_bytes)?;
        let fields = FieldEncoder::with_capacity(SINGLE_BUFFER_BYTES).encode(&event);
        let stream_id: String = self
            .client
            .xadd(
                self.stream_key.clone(),
                false,
                self.cap.clone(),
                XID::Auto,
                fields,
            )
            .await
            .map_err(|e| self.classify(e))?;
        Ok(EmitReceipt {
            id: event.id,
            stream_id,
        })
    }

    /// Validates the whole batch, then sends it chunk by chunk, one round trip in flight.
    ///
    /// The round trip of a chunk is the only thing on the critical path: while chunk N is on
    /// the wire and Redis works through it, this task encodes and queues chunk N+1 and drops
    /// what chunk N-1 left behind (its queued commands and buffers), so a batch costs about
    /// one round trip per chunk instead of round trip + encoding + clean-up. Chunk N+1 is sent
    /// only after every reply of chunk N is in, exactly as before: an error stops the batch
    /// with nothing of the later chunks written, and receipts come back in event order.
    async fn xadd_batch(&self, events: Vec<EventEnvelope>) -> Result<Vec<EmitReceipt>> {
        validate_events(&events, self.max_payload_bytes)?;
        let mut receipts = Vec::with_capacity(events.len());
        let mut events = events.into_iter();
        let mut encoder = FieldEncoder::with_capacity(BATCH_BUFFER_BYTES);
        let mut next = self.queue_chunk(&mut events, &mut encoder).await?;
        let mut retired: Option<QueuedChunk> = None;
        while let Some(mut chunk) = next {
            let meanwhile = async {
                drop(retired.take());
                self.queue_chunk(&mut events, &mut encoder).await
            };
            let (stream_ids, following) = self.round_trip(&chunk, meanwhile).await;
            let stream_ids = stream_ids?;
            receipts.extend(
                chunk
                    .ids
                    .drain(..)
                    .zip(stream_ids)
                    .map(|(id, stream_id)| EmitReceipt { id, stream_id }),
            );
            next = following?;
            retired = Some(chunk);
        }
        Ok(receipts)
    }

    /// Encodes the next (up to) `batch_chunk_size` events of `events` and queues their
    /// `XADD`s in pipelines; nothing is sent yet. `None` when `events` is exhausted.
    async fn queue_chunk(
        &self,
        events: &mut vec::IntoIter<EventEnvelope>,
        encoder: &mut FieldEncoder,
    ) -> Result<Option<QueuedChunk>> {
        let len = events.len().min(self.batch_chunk_size);
        if len == 0 {
            return Ok(None);
        }
        // A fresh pipeline per chunk: fred's `all()`/`try_all()` do not clear the queued
        // commands, so reusing one would resend every earlier chunk.
        let head = self.client.pipeline();
        let tail = (len > 1).then(|| self.client.pipeline());
        let mut ids = Vec::with_capacity(len);
        for (index, mut event) in events.by_ref().take(len).enumerate() {
            let pipeline = match &tail {
                Some(tail) if index + 1 == len => tail,
                _ => &head,
            };
            // Queuing only buffers in memory; errors here are argument conversions.
            let () = pipeline
                .xadd(
                    self.stream_key.clone(),
                    false,
                    self.cap.clone(),
                    XID::Auto,
                    encoder.encode(&event),
                )
                .await
                .map_err(|e| self.classify(e))?;
            // The envelope is ours and dropped right here; its id moves into the receipt.
            ids.push(std::mem::take(&mut event.id));
        }
        Ok(Some(QueuedChunk { head, tail, ids }))
    }

    /// Sends `chunk` and, while its replies are outstanding, runs `meanwhile` on this task.
    ///
    /// Returns the chunk's stream ids in event order (or the error of the first entry that
    /// failed, or of the whole round trip) together with `meanwhile`'s output.
    ///
    /// The chunk goes out as two pipelines, all but its last `XADD` and then the last one,
    /// handed to fred's connection task back to back. fred flushes the socket after a
    /// command when no further command is waiting for it, and a pipeline counts as a single
    /// waiting command: a lone pipeline of 500 is written with one `writev` per `XADD`
    /// (500 syscalls, and as many small reads for Redis). With the tail queued behind it,
    /// the head's commands are buffered and flushed in blocks (measured with strace: ~30
    /// `writev` per chunk of 500 instead of 500, and ~15% less producer CPU). Order is
    /// unchanged: one connection, and fred takes commands in the order they were queued. If
    /// the tail were taken too late, the head would only be flushed per command, as before.
    async fn round_trip<M: Future>(
        &self,
        chunk: &QueuedChunk,
        meanwhile: M,
    ) -> (Result<Vec<String>>, M::Output) {
        let tail_len = usize::from(chunk.tail.is_some());
        let head_len = chunk.ids.len() - tail_len;

        // Futures are lazy: the first poll is what hands a pipeline to the connection task.
        let mut head = pin!(chunk.head.try_all::<String>());
        let head_early = poll_once(head.as_mut()).await;
        // A head that failed before it was sent (client closed) takes the tail down with it:
        // never write the last event of a chunk without the ones before it.
        let head_failed = matches!(&head_early, Some(replies) if replies.len() != head_len);
        let mut tail = pin!(async {
            match &chunk.tail {
                Some(tail) if !head_failed => tail.try_all::<String>().await,
                _ => Vec::new(),
            }
        });
        let tail_early = poll_once(tail.as_mut()).await;

        let output = meanwhile.await;

        let head_replies = match head_early {
            Some(replies) => replies,
            None => head.await,
        };
        let tail_replies = match tail_early {
            Some(replies) => replies,
            None => tail.await,
        };
        let stream_ids = self.replies(head_len, head_replies).and_then(|mut ids| {
            ids.extend(self.replies(tail_len, tail_replies)?);
            Ok(ids)
        });
        (stream_ids, output)
    }

    /// The stream ids of one pipeline's replies, or the error that failed it.
    fn replies(
        &self,
        expected: usize,
        replies: Vec<std::result::Result<String, RedisError>>,
    ) -> Result<Vec<String>> {
        if replies.len() != expected {
            // The whole pipeline failed (connection lost, timeout): one error for all.
            let error = replies
                .into_iter()
                .find_map(std::result::Result::err)
                .unwrap_or_else(|| {
                    RedisError::new(
                        ErrorKind::Protocol,
                        format!("expected {expected} replies to the pipeline"),
                    )
                });
            return Err(self.classify(error));
        }
        replies
            .into_iter()
            .map(|reply| reply.map_err(|e| self.classify(e)))
            .collect()
    }

    /// Sorts a fred error into the transport-neutral [`Error`] variants.
    fn classify(&self, error: RedisError) -> Error {
        let url = self.url.clone();
        match error.kind() {
            // A timeout while the connection is down is an outage, not a slow server.
            ErrorKind::Timeout if !self.client.is_connected() => Error::Unavailable {
                backend: BACKEND,
                url,
                reason: format!(
                    "connection lost; not back within {:?}",
                    self.command_timeout
                ),
            },
            ErrorKind::Timeout => Error::Timeout {
                backend: BACKEND,
                url,
                timeout: self.command_timeout,
            },
            ErrorKind::IO | ErrorKind::Canceled | ErrorKind::Routing | ErrorKind::Backpressure => {
                Error::Unavailable {
                    backend: BACKEND,
                    url,
                    reason: reason_text(&error),
                }
            }
            ErrorKind::Config | ErrorKind::Url => {
                Error::Config(format!("redis at {url}: {}", reason_text(&error)))
            }
            _ => Error::Rejected {
                backend: BACKEND,
                url,
                message: error.details().to_owned(),
            },
        }
    }
}

impl Producer for RedisProducer {
    fn max_payload_bytes(&self) -> usize {
        self.max_payload_bytes
    }

    fn emit(&self, event: EventEnvelope) -> BoxFuture<'_, Result<EmitReceipt>> {
        Box::pin(self.xadd(event))
    }

    fn emit_batch(&self, events: Vec<EventEnvelope>) -> BoxFuture<'_, Result<Vec<EmitReceipt>>> {
        Box::pin(self.xadd_batch(events))
    }
}

impl Drop for RedisProducer {
    fn drop(&mut self) {
        // Without QUIT fred's connection task would keep reconnecting forever. QUIT is
        // bounded by the command timeout, so the spawned task always ends.
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let client = self.client.clone();
            runtime.spawn(async move {
                let _ = client.quit().await;
            });
        }
    }
}

/// fred's message, lowercased at the start and without the `(os error N)` suffix:
/// `"connection refused"` reads better in our messages than `"Connection refused (os error 111)"`.
fn reason_text(error: &RedisError) -> String {
    let details = error.details().trim();
    // IO errors arrive as the Debug text of `io::Error`:
    // `Os { code: 111, kind: ConnectionRefused, message: "Connection refused" }` or
    // `Custom { kind: Uncategorized, error: "failed to lookup address information: ..." }`.
    let quoted = ["message: \"", "error: \""]
        .iter()
        .find_map(|marker| details.split_once(marker));
    let details = match quoted {
        Some((_, rest)) => rest.split_once('"').map_or(rest, |(inner, _)| inner),
        None => details,
    };
    let details = match details.rfind(" (os error ") {
        Some(pos) if details.ends_with(')') => &details[..pos],
        _ => details,
    };
    let mut chars = details.chars();
    match chars.next() {
        Some(first) => first.to_lowercase().chain(chars).collect(),
        None => format!("{:?} error", error.kind()).to_lowercase(),
    }
}

fn millis_u32(duration: Duration) -> u32 {
    u32::try_from(duration.as_millis()).unwrap_or(u32::MAX)
}

/// Polls `future` once: `Some(output)` if that finished it, `None` if it is pending (its
/// waker is registered with the current task, so a later `.await` picks it up).
async fn poll_once<F: Future>(mut future: Pin<&mut F>) -> Option<F::Output> {
    poll_fn(|cx| match future.as_mut().poll(cx) {
        Poll::Ready(output) => Poll::Ready(Some(output)),
        Poll::Pending => Poll::Ready(None),
    })
    .await
}

/// One chunk of a batch, encoded and queued in pipelines, not sent yet.
struct QueuedChunk {
    /// Every `XADD` of the chunk but the last (all of them for a chunk of one).
    head: Pipeline<Client>,
    /// The last `XADD`, in a pipeline of its own (see [`RedisProducer::round_trip`]).
    tail: Option<Pipeline<Client>>,
    /// The envelope ids, in order, for the receipts.
    ids: Vec<String>,
}

/// Bytes reserved at a time for the field values of a batch: one allocation holds the
/// values of ~150 typical entries (and is grown for a bigger payload).
const BATCH_BUFFER_BYTES: usize = 64 * 1024;
/// The same for a single emit.
const SINGLE_BUFFER_BYTES: usize = 1024;

/// Field names, static: no allocation or copy per entry.
mod field {
    use fred::types::Key;

    pub(super) const ID: Key = Key::from_static_str("id");
    pub(super) const EVENT: Key = Key::from_static_str("event");
    pub(super) const VERSION: Key = Key::from_static_str("version");
    pub(super) const SOURCE: Key = Key::from_static_str("source");
    pub(super) const TIMESTAMP: Key = Key::from_static_str("timestamp");
    pub(super) const LEVEL: Key = Key::from_static_str("level");
    pub(super) const DOMAIN: Key = Key::from_static_str("domain");
    pub(super) const VISIBILITY: Key = Key::from_static_str("visibility");
    pub(super) const DESCRIPTION: Key = Key::from_static_str("description");
    pub(super) const PAYLOAD: Key = Key::from_static_str("payload");
    pub(super) const IDEMPOTENCY_KEY: Key = Key::from_static_str("idempotency_key");
    pub(super) const ENTITY: Key = Key::from_static_str("entity");
    pub(super) const TERMINAL_WHEN: Key = Key::from_static_str("terminal_when");
    pub(super) const CORRELATION_ID: Key = Key::from_static_str("correlation_id");
    pub(super) const CAUSATION_ID: Key = Key::from_static_str("causation_id");
}

/// Encodes envelopes into `XADD` fields exactly as [`to_stream_fields`] does (the wire
/// format, brief §4), but without an allocation per field.
///
/// [`to_stream_fields`] returns an owned `String` per field, which fred then wraps, and it
/// renders the payload through `Display` (a key clone per payload entry); on the emit path
/// that was about a third of the samples inside `emit_batch` (perf). Here every value is
/// written into one shared buffer and split off as a reference-counted slice, the field
/// names are static, and the payload is serialised straight into the buffer. Envelopes with
/// `actions` or a `resolution_shape` (rare, and encoded by private helpers of the codec) go
/// through [`to_stream_fields`] itself. `tests::encoder_matches_the_codec` holds the two
/// together.
#[derive(Debug)]
struct FieldEncoder {
    buf: BytesMut,
}

impl FieldEncoder {
    fn with_capacity(bytes: usize) -> Self {
        Self {
            buf: BytesMut::with_capacity(bytes),
        }
    }

    fn encode(&mut self, event: &EventEnvelope) -> Vec<(Key, Value)> {
        if event.actions.is_some() || event.resolution_shape.is_some() {
            return canonical_fields(event);
        }
        let optional = [
            &event.idempotency_key,
            &event.entity,
            &event.terminal_when,
            &event.correlation_id,
            &event.causation_id,
        ];
        let present = optional.iter().filter(|value| value.is_some()).count();
        let mut fields = Vec::with_capacity(10 + present);
        fields.push((field::ID, self.text(&event.id)));
        fields.push((field::EVENT, self.text(&event.event)));
        fields.push((field::VERSION, self.display(event.version)));
        fields.push((field::SOURCE, self.text(&event.source)));
        fields.push((
            field::TIMESTAMP,
            self.text(&format_timestamp(event.timestamp)),
        ));
        fields.push((field::LEVEL, self.display(event.level.as_u8())));
        fields.push((field::DOMAIN, self.text(&event.domain)));
        fields.push((
            field::VISIBILITY,
            Value::from_static_str(event.visibility.as_str()),
        ));
        fields.push((field::DESCRIPTION, self.text(&event.description)));
        // Serialising a `Map` of JSON values cannot fail and writing into memory cannot
        // either; should it ever, the codec's own encoding is the answer.
        if serde_json::to_writer((&mut self.buf).writer(), &event.payload).is_err() {
            self.buf.clear();
            return canonical_fields(event);
        }
        fields.push((field::PAYLOAD, self.split()));
        // The codec's order: idempotency_key entity actions terminal_when resolution_shape
        // correlation_id causation_id (`actions` and `resolution_shape` are absent here).
        let names = [
            field::IDEMPOTENCY_KEY,
            field::ENTITY,
            field::TERMINAL_WHEN,
            field::CORRELATION_ID,
            field::CAUSATION_ID,
        ];
        for (name, value) in names.into_iter().zip(optional) {
            if let Some(value) = value {
                fields.push((name, self.text(value)));
            }
        }
        fields
    }

    fn text(&mut self, text: &str) -> Value {
        self.buf.extend_from_slice(text.as_bytes());
        self.split()
    }

    fn display(&mut self, number: impl fmt::Display) -> Value {
        // Writing into a `BytesMut` cannot fail.
        let _ = write!(self.buf, "{number}");
        self.split()
    }

    /// What was written since the last split, as a value sharing the buffer.
    fn split(&mut self) -> Value {
        Value::Bytes(self.buf.split().freeze())
    }
}

fn canonical_fields(event: &EventEnvelope) -> Vec<(Key, Value)> {
    to_stream_fields(event)
        .into_iter()
        .map(|(name, value)| (Key::from_static_str(name), Value::from(value)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reason_text_reads_like_our_messages() {
        let e = RedisError::new(ErrorKind::IO, "Connection refused (os error 111)");
        assert_eq!(reason_text(&e), "connection refused");
        let e = RedisError::new(
            ErrorKind::IO,
            "Custom { kind: Uncategorized, error: \"failed to lookup address information: Name or service not known\" }",
        );
        assert_eq!(
            reason_text(&e),
            "failed to lookup address information: Name or service not known"
        );
        let e = RedisError::new(
            ErrorKind::IO,
            "Os { code: 111, kind: ConnectionRefused, message: \"Connection refused\" }",
        );
        assert_eq!(reason_text(&e), "connection refused");
        let e = RedisError::new(ErrorKind::IO, "");
        assert_eq!(reason_text(&e), "io error");
    }

    /// The fast encoder must write byte for byte what the codec writes, for every field the
    /// envelope can carry; otherwise the daemon would read back something else.
    #[test]
    fn encoder_matches_the_codec() {
        use events_envelope::{ActionDescriptor, EventLevel, EventVisibility};
        use std::collections::BTreeMap;
        use time::macros::datetime;

        let plain = EventEnvelope::new("job.started", "test");
        let full = EventEnvelope::new("domain.x.y", "src \"quoted\" é")
            .with_level(EventLevel::Workflow)
            .with_domain("tests")
            .with_description("line\nbreak, tab\t, emoji 🎉")
            .with_visibility(EventVisibility::Public)
            .with_version(7)
            .with_timestamp(datetime!(2026-11-24 21:09:13.123456789 +01:00))
            .with_field("k\"ey", "é\n\u{1}")
            .with_field("int", -42)
            .with_field("big", u64::MAX)
            .with_field("float", 0.1)
            .with_field("exp", 1e300)
            .with_field("neg_zero", -0.0)
            .with_field("null", serde_json::Value::Null)
            .with_field(
                "nested",
                serde_json::json!({"list": [1, "two", null, {"b": false}], "a": {}}),
            )
            .with_field("", "empty key")
            .with_idempotency_key("idem:1")
            .with_entity("telec://todo/x")
            .with_correlation_id("corr")
            .with_causation_id("cause");
        let mut terminal = full.clone();
        terminal.terminal_when = Some("status == 'done'".to_owned());
        terminal.entity = None;
        let mut with_actions = terminal.clone();
        let shape = BTreeMap::from([("decision".to_owned(), "str".to_owned())]);
        with_actions.actions = Some(BTreeMap::from([(
            "approve".to_owned(),
            ActionDescriptor {
                description: "Approve".to_owned(),
                produces: "review.approved".to_owned(),
                outcome_shape: Some(shape.clone()),
            },
        )]));
        let mut with_shape = plain.clone();
        with_shape.resolution_shape = Some(shape);

        // One encoder for all, as in a batch: values must not bleed into each other.
        let mut encoder = FieldEncoder::with_capacity(64);
        for event in [plain, full, terminal, with_actions, with_shape] {
            let ours: Vec<(String, String)> = encoder
                .encode(&event)
                .into_iter()
                .map(|(name, value)| {
                    let name = name.as_str().expect("utf-8 name").to_owned();
                    let value = value.as_bytes_str().expect("utf-8 value").to_string();
                    (name, value)
                })
                .collect();
            let codec: Vec<(String, String)> = to_stream_fields(&event)
                .into_iter()
                .map(|(name, value)| (name.to_owned(), value))
                .collect();
            assert_eq!(ours, codec, "{event:?}");
        }
    }

    #[test]
    fn config_defaults_follow_the_brief() {
        let config = RedisProducerConfig::new("redis://h:1");
        assert_eq!(config.stream, "events:stream");
        assert_eq!(config.maxlen, Some(1_000_000));
        assert_eq!(config.reconnect.max_attempts, 0);
    }

    #[tokio::test]
    async fn a_malformed_url_is_a_config_error_naming_it() {
        let err = RedisProducer::connect(RedisProducerConfig::new("http://nope"))
            .await
            .expect_err("bad scheme");
        assert!(matches!(err, Error::Config(_)), "{err:?}");
        assert!(err.to_string().contains("http://nope"), "{err}");
    }
}
