//! [`RedisProducer`]: `XADD` to a Redis stream through fred.

use std::{fmt, time::Duration};

use events_envelope::{EventEnvelope, to_stream_fields};
use fred::{
    clients::Client,
    error::{Error as RedisError, ErrorKind},
    interfaces::{ClientLike, StreamsInterface},
    types::{
        Builder,
        config::{Config, ReconnectPolicy},
        streams::XCap,
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
        let stream_id: String = self
            .client
            .xadd(
                self.stream.as_str(),
                false,
                self.cap.clone(),
                "*",
                to_stream_fields(&event),
            )
            .await
            .map_err(|e| self.classify(e))?;
        Ok(EmitReceipt {
            id: event.id,
            stream_id,
        })
    }

    async fn xadd_batch(&self, events: Vec<EventEnvelope>) -> Result<Vec<EmitReceipt>> {
        validate_events(&events, self.max_payload_bytes)?;
        let mut receipts = Vec::with_capacity(events.len());
        for chunk in events.chunks(self.batch_chunk_size) {
            // A fresh pipeline per chunk: fred's `all()`/`try_all()` do not clear the queued
            // commands, so reusing one would resend every earlier chunk.
            let pipeline = self.client.pipeline();
            for event in chunk {
                // Queuing only buffers in memory; errors here are argument conversions.
                let () = pipeline
                    .xadd(
                        self.stream.as_str(),
                        false,
                        self.cap.clone(),
                        "*",
                        to_stream_fields(event),
                    )
                    .await
                    .map_err(|e| self.classify(e))?;
            }
            let results = pipeline.try_all::<String>().await;
            if results.len() != chunk.len() {
                // The whole pipeline failed (connection lost, timeout): one error for all.
                let error = results
                    .into_iter()
                    .find_map(Result::err)
                    .unwrap_or_else(|| {
                        RedisError::new(
                            ErrorKind::Protocol,
                            format!("expected {} replies to the pipeline", chunk.len()),
                        )
                    });
                return Err(self.classify(error));
            }
            for (event, result) in chunk.iter().zip(results) {
                let stream_id = result.map_err(|e| self.classify(e))?;
                receipts.push(EmitReceipt {
                    id: event.id.clone(),
                    stream_id,
                });
            }
        }
        Ok(receipts)
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
