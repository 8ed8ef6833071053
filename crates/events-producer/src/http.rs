//! [`HttpProducer`]: emits events by posting them to a running `events-daemon`
//! (`POST /api/events`, brief §9).
//!
//! For applications that cannot or should not reach Redis (another network, a daemon in
//! embedded mode, a short-lived script). Batches go in requests of at most
//! [`HttpProducerConfig::max_batch`] events (the daemon's limit is 1000) and at most
//! [`HttpProducerConfig::max_request_bytes`] of JSON. A daemon that is overloaded or
//! rate-limits (503, 429, also 502/504 from a proxy) is retried, honouring `Retry-After`;
//! everything else fails at once with the daemon's own message.

use std::fmt;
use std::time::Duration;

use events_envelope::EventEnvelope;
use reqwest::{StatusCode, header};
use serde_json::Value;

use crate::error::redact_url;
use crate::producer::{BoxFuture, EmitReceipt, Producer, validate_events};
use crate::{Error, Result};

const BACKEND: &str = "events-daemon";

/// The daemon refuses batches of more than this many events.
pub const MAX_EVENTS_PER_REQUEST: usize = 1000;

/// Settings of an [`HttpProducer`]; `HttpProducerConfig::new(url)` gives sensible defaults.
#[derive(Clone, PartialEq, Eq)]
pub struct HttpProducerConfig {
    /// Base URL of the daemon, e.g. `http://127.0.0.1:7400` (the producer appends `/api/events`).
    pub url: String,
    /// Bearer token with the `producer` role; `None` when the daemon runs without auth.
    pub token: Option<String>,
    /// Bound on establishing a connection; default 5 s.
    pub connect_timeout: Duration,
    /// Bound on one request (send and answer); default 30 s.
    pub request_timeout: Duration,
    /// Events per request, at most [`MAX_EVENTS_PER_REQUEST`]; default 1000.
    pub max_batch: usize,
    /// Upper bound on one request body; default 1 MiB, the daemon's default
    /// `limits.max_body_bytes`. A batch is split before it would exceed this.
    pub max_request_bytes: usize,
    /// Retries of one request answered with 429, 502, 503 or 504; default 5. `0` = no retry.
    pub max_retries: u32,
    /// Wait before the first retry when the daemon sends no `Retry-After`; doubles per retry.
    /// Default 200 ms.
    pub retry_base: Duration,
    /// Longest single wait between retries, also capping a `Retry-After`; default 30 s.
    pub retry_max: Duration,
    /// Payload size limit enforced before sending; default 256 KiB (brief §3).
    pub max_payload_bytes: usize,
}

impl fmt::Debug for HttpProducerConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpProducerConfig")
            .field("url", &redact_url(&self.url))
            .field("token", &self.token.as_ref().map(|_| "***"))
            .field("connect_timeout", &self.connect_timeout)
            .field("request_timeout", &self.request_timeout)
            .field("max_batch", &self.max_batch)
            .field("max_request_bytes", &self.max_request_bytes)
            .field("max_retries", &self.max_retries)
            .field("retry_base", &self.retry_base)
            .field("retry_max", &self.retry_max)
            .field("max_payload_bytes", &self.max_payload_bytes)
            .finish()
    }
}

impl HttpProducerConfig {
    /// Defaults for everything but the daemon's URL.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            token: None,
            connect_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(30),
            max_batch: MAX_EVENTS_PER_REQUEST,
            max_request_bytes: 1024 * 1024,
            max_retries: 5,
            retry_base: Duration::from_millis(200),
            retry_max: Duration::from_secs(30),
            max_payload_bytes: events_envelope::DEFAULT_MAX_PAYLOAD_BYTES,
        }
    }

    /// Sets the bearer token.
    pub fn with_token(mut self, token: impl Into<String>) -> Self {
        self.token = Some(token.into());
        self
    }
}

/// Emits events over HTTP to an `events-daemon`.
///
/// Creating one makes no request (HTTP needs no session), so a daemon that is down shows up
/// on the first emit as [`Error::Unavailable`]. Connections are pooled and reused; share one
/// producer as `Arc<HttpProducer>` / `Arc<dyn Producer>`.
///
/// Errors: [`Error::Invalid`] (caught locally, nothing sent), [`Error::Unavailable`] (no
/// connection, or still 503/429 after the retries) and [`Error::Timeout`] are transient;
/// [`Error::Rejected`] carries any other refusal (422 for an event the catalog refuses,
/// 401/403 for the token, ...) with a message of the stable form
/// `<status> <reason>: <code>: <message>` (e.g. `422 Unprocessable Entity: invalid_batch: ...`),
/// so callers can recover the status and the daemon's own words.
pub struct HttpProducer {
    client: reqwest::Client,
    endpoint: String,
    /// Redacted, for messages.
    url: String,
    token: Option<String>,
    config: HttpProducerConfig,
}

impl fmt::Debug for HttpProducer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpProducer")
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

impl HttpProducer {
    /// A producer for the daemon at `config.url`; fails only on a malformed configuration.
    pub fn new(config: HttpProducerConfig) -> Result<Self> {
        let url = redact_url(&config.url);
        let parsed = reqwest::Url::parse(&config.url)
            .map_err(|e| Error::Config(format!("invalid daemon url {url}: {e}")))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(Error::Config(format!(
                "daemon url {url} must start with http:// or https://"
            )));
        }
        if config.max_batch == 0 || config.max_batch > MAX_EVENTS_PER_REQUEST {
            return Err(Error::Config(format!(
                "max_batch must be between 1 and {MAX_EVENTS_PER_REQUEST}, not {}",
                config.max_batch
            )));
        }
        let client = reqwest::Client::builder()
            .connect_timeout(config.connect_timeout)
            .timeout(config.request_timeout)
            .user_agent(concat!("events-producer/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| Error::Config(format!("http client for {url}: {}", root_cause(&e))))?;
        let endpoint = format!("{}/api/events", config.url.trim_end_matches('/'));
        let token = config.token.clone().filter(|t| !t.is_empty());
        Ok(Self {
            client,
            endpoint,
            url,
            token,
            config,
        })
    }

    /// The daemon's base URL, any password redacted.
    pub fn url(&self) -> &str {
        &self.url
    }

    async fn send_all(&self, events: Vec<EventEnvelope>) -> Result<Vec<EmitReceipt>> {
        validate_events(&events, self.config.max_payload_bytes)?;
        let encoded: Vec<Vec<u8>> = events
            .iter()
            .map(serde_json::to_vec)
            .collect::<std::result::Result<_, _>>()
            .map_err(|e| Error::Config(format!("cannot serialise an event: {e}")))?;
        let mut receipts = Vec::with_capacity(events.len());
        for range in chunk_ranges(
            &encoded,
            self.config.max_batch,
            self.config.max_request_bytes,
        ) {
            let body = batch_body(&encoded[range.clone()]);
            let ids: Vec<&str> = events[range.clone()]
                .iter()
                .map(|e| e.id.as_str())
                .collect();
            receipts.extend(self.post(body, &ids, range.start).await?);
        }
        Ok(receipts)
    }

    /// Posts one batch body, retrying on 429/502/503/504; `first_index` is the batch
    /// position of its first event, for error messages.
    async fn post(
        &self,
        body: Vec<u8>,
        ids: &[&str],
        first_index: usize,
    ) -> Result<Vec<EmitReceipt>> {
        let mut attempt: u32 = 0;
        loop {
            let mut request = self
                .client
                .post(&self.endpoint)
                .header(header::CONTENT_TYPE, "application/json")
                .body(body.clone());
            if let Some(token) = &self.token {
                request = request.bearer_auth(token);
            }
            let response = request.send().await.map_err(|e| self.transport_error(&e))?;
            let status = response.status();
            let retry_after = response
                .headers()
                .get(header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(parse_retry_after);
            let text = response
                .text()
                .await
                .map_err(|e| self.transport_error(&e))?;
            if status.is_success() {
                return self.receipts(&text, ids);
            }
            let message = error_message(status, &text, first_index);
            if !is_retryable(status) {
                return Err(Error::Rejected {
                    backend: BACKEND,
                    url: self.url.clone(),
                    message,
                });
            }
            if attempt >= self.config.max_retries {
                return Err(Error::Unavailable {
                    backend: BACKEND,
                    url: self.url.clone(),
                    reason: format!(
                        "{message} (gave up after {} retries)",
                        self.config.max_retries
                    ),
                });
            }
            let backoff = self
                .config
                .retry_base
                .saturating_mul(2u32.saturating_pow(attempt));
            let delay = retry_after.unwrap_or(backoff).min(self.config.retry_max);
            tracing::debug!(url = %self.url, %status, ?delay, attempt, "daemon busy, retrying");
            tokio::time::sleep(delay).await;
            attempt += 1;
        }
    }

    /// The receipts of a 202 answer `{"accepted":[{"id","stream_id"}...]}`, in batch order.
    fn receipts(&self, text: &str, ids: &[&str]) -> Result<Vec<EmitReceipt>> {
        let unexpected = |why: &str| Error::Rejected {
            backend: BACKEND,
            url: self.url.clone(),
            message: format!(
                "unexpected answer to POST /api/events ({why}): {}",
                excerpt(text)
            ),
        };
        let answer: Value = serde_json::from_str(text).map_err(|_| unexpected("not JSON"))?;
        let accepted = answer
            .get("accepted")
            .and_then(Value::as_array)
            .ok_or_else(|| unexpected("no `accepted` list"))?;
        if accepted.len() != ids.len() {
            return Err(unexpected(&format!(
                "{} receipts for {} events",
                accepted.len(),
                ids.len()
            )));
        }
        accepted
            .iter()
            .zip(ids)
            .map(|(item, id)| {
                let stream_id = item
                    .get("stream_id")
                    .and_then(Value::as_str)
                    .ok_or_else(|| unexpected("receipt without `stream_id`"))?;
                Ok(EmitReceipt {
                    id: (*id).to_owned(),
                    stream_id: stream_id.to_owned(),
                })
            })
            .collect()
    }

    fn transport_error(&self, err: &reqwest::Error) -> Error {
        if err.is_timeout() {
            return Error::Timeout {
                backend: BACKEND,
                url: self.url.clone(),
                timeout: self.config.request_timeout,
            };
        }
        Error::Unavailable {
            backend: BACKEND,
            url: self.url.clone(),
            reason: root_cause(err),
        }
    }
}

impl Producer for HttpProducer {
    fn emit(&self, event: EventEnvelope) -> BoxFuture<'_, Result<EmitReceipt>> {
        Box::pin(async move {
            let mut receipts = self.send_all(vec![event]).await?;
            receipts.pop().ok_or_else(|| Error::Rejected {
                backend: BACKEND,
                url: self.url.clone(),
                message: "the daemon accepted the event without a receipt".to_owned(),
            })
        })
    }

    fn emit_batch(&self, events: Vec<EventEnvelope>) -> BoxFuture<'_, Result<Vec<EmitReceipt>>> {
        Box::pin(self.send_all(events))
    }
}

/// Splits encoded events into consecutive ranges of at most `max_events` events whose batch
/// body stays within `max_bytes`; an event too large on its own gets a range to itself (the
/// daemon will answer 413, which is the clearest error for it).
fn chunk_ranges(
    encoded: &[Vec<u8>],
    max_events: usize,
    max_bytes: usize,
) -> Vec<std::ops::Range<usize>> {
    // `{"events":[` + `]}` around the comma-separated events.
    const ENVELOPE_BYTES: usize = 13;
    let mut ranges = Vec::new();
    let mut start = 0;
    let mut bytes = ENVELOPE_BYTES;
    for (i, event) in encoded.iter().enumerate() {
        let added = event.len() + usize::from(i > start);
        let full = i - start == max_events || (i > start && bytes + added > max_bytes);
        if full {
            ranges.push(start..i);
            start = i;
            bytes = ENVELOPE_BYTES + event.len();
        } else {
            bytes += added;
        }
    }
    if start < encoded.len() {
        ranges.push(start..encoded.len());
    }
    ranges
}

/// `{"events":[e1,e2,...]}` from already encoded events.
fn batch_body(encoded: &[Vec<u8>]) -> Vec<u8> {
    let mut body = Vec::with_capacity(13 + encoded.iter().map(|e| e.len() + 1).sum::<usize>());
    body.extend_from_slice(br#"{"events":["#);
    for (i, event) in encoded.iter().enumerate() {
        if i > 0 {
            body.push(b',');
        }
        body.extend_from_slice(event);
    }
    body.extend_from_slice(b"]}");
    body
}

/// Statuses that mean "not now": the daemon or a proxy in front of it is overloaded.
fn is_retryable(status: StatusCode) -> bool {
    matches!(
        status,
        StatusCode::TOO_MANY_REQUESTS
            | StatusCode::BAD_GATEWAY
            | StatusCode::SERVICE_UNAVAILABLE
            | StatusCode::GATEWAY_TIMEOUT
    )
}

/// `Retry-After` in delay-seconds; the HTTP-date form is rare for APIs and falls back to backoff.
fn parse_retry_after(value: &str) -> Option<Duration> {
    value.trim().parse::<u64>().ok().map(Duration::from_secs)
}

/// `<status>: <code>: <message>` from the daemon's JSON error (brief §9), with per-item
/// errors of a refused batch re-indexed to the caller's batch.
fn error_message(status: StatusCode, text: &str, first_index: usize) -> String {
    let parsed: Option<Value> = serde_json::from_str(text).ok();
    let Some(error) = parsed.as_ref().and_then(|v| v.get("error")) else {
        return format!("{status}: {}", excerpt(text));
    };
    let code = error.get("code").and_then(Value::as_str).unwrap_or("error");
    let message = error.get("message").and_then(Value::as_str).unwrap_or("");
    let mut line = format!("{status}: {code}: {message}");
    for item in error
        .get("items")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let index = item.get("index").and_then(Value::as_u64).map_or_else(
            || "?".to_owned(),
            |i| (i as usize + first_index).to_string(),
        );
        let item_code = item
            .get("code")
            .and_then(Value::as_str)
            .unwrap_or("invalid");
        let item_message = item.get("message").and_then(Value::as_str).unwrap_or("");
        line.push_str(&format!("; event {index}: {item_code}: {item_message}"));
    }
    line
}

fn excerpt(text: &str) -> String {
    let text: String = text.trim().chars().take(200).collect();
    if text.is_empty() {
        "(empty body)".to_owned()
    } else {
        text
    }
}

/// The innermost cause, e.g. `connection refused` instead of reqwest's layered message.
fn root_cause(err: &(dyn std::error::Error + 'static)) -> String {
    let mut cause: &(dyn std::error::Error + 'static) = err;
    while let Some(next) = cause.source() {
        if let Some(io) = next.downcast_ref::<std::io::Error>() {
            return match io.kind() {
                std::io::ErrorKind::ConnectionRefused => "connection refused".to_owned(),
                _ => io.to_string().to_lowercase(),
            };
        }
        cause = next;
    }
    cause.to_string()
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    use super::*;

    /// One scripted answer: status, extra headers, body (`ACCEPT` = echo receipts).
    type Scripted = (u16, Vec<(&'static str, String)>, String);

    /// A scripted HTTP/1.1 server: answers requests with `responses` in order (the last one
    /// repeats) and records each request's headers and body.
    struct FakeDaemon {
        url: String,
        requests: Arc<Mutex<Vec<(String, Value)>>>,
    }

    impl FakeDaemon {
        async fn start(responses: Vec<Scripted>) -> Self {
            let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
            let url = format!("http://{}", listener.local_addr().expect("addr"));
            let requests = Arc::new(Mutex::new(Vec::new()));
            let recorded = Arc::clone(&requests);
            tokio::spawn(async move {
                let mut served = 0;
                while let Ok((mut socket, _)) = listener.accept().await {
                    // One request per connection (`Connection: close`), enough for these tests.
                    let mut data = Vec::new();
                    let mut buf = [0u8; 8192];
                    let (head, body) = loop {
                        let Ok(n) = socket.read(&mut buf).await else {
                            break (String::new(), Vec::new());
                        };
                        if n == 0 {
                            break (String::new(), Vec::new());
                        }
                        data.extend_from_slice(&buf[..n]);
                        let Some(end) = data.windows(4).position(|w| w == b"\r\n\r\n") else {
                            continue;
                        };
                        let head = String::from_utf8_lossy(&data[..end]).to_string();
                        let length = head
                            .lines()
                            .find_map(|l| {
                                l.to_ascii_lowercase()
                                    .strip_prefix("content-length:")
                                    .map(|v| v.trim().parse::<usize>().unwrap_or(0))
                            })
                            .unwrap_or(0);
                        if data.len() >= end + 4 + length {
                            break (head, data[end + 4..end + 4 + length].to_vec());
                        }
                    };
                    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                    recorded.lock().expect("lock").push((head, body.clone()));
                    let (status, headers, mut text) =
                        responses[served.min(responses.len() - 1)].clone();
                    served += 1;
                    if text == "ACCEPT" {
                        // Echo receipts for the events received.
                        let n = body["events"].as_array().map_or(0, Vec::len);
                        let accepted: Vec<Value> = (0..n).map(|i| serde_json::json!({"id": body["events"][i]["id"], "stream_id": format!("{i}-0")})).collect();
                        text = serde_json::json!({ "accepted": accepted }).to_string();
                    }
                    let mut answer = format!(
                        "HTTP/1.1 {status} X\r\ncontent-length: {}\r\ncontent-type: application/json\r\nconnection: close\r\n",
                        text.len()
                    );
                    for (name, value) in headers {
                        answer.push_str(&format!("{name}: {value}\r\n"));
                    }
                    answer.push_str("\r\n");
                    answer.push_str(&text);
                    let _ = socket.write_all(answer.as_bytes()).await;
                    let _ = socket.shutdown().await;
                }
            });
            Self { url, requests }
        }

        fn request_count(&self) -> usize {
            self.requests.lock().expect("lock").len()
        }
    }

    fn event(i: usize) -> EventEnvelope {
        EventEnvelope::new("test.http.emitted", "http-test").with_field("i", i)
    }

    fn fast_config(url: &str) -> HttpProducerConfig {
        let mut config = HttpProducerConfig::new(url);
        config.retry_base = Duration::from_millis(1);
        config
    }

    #[tokio::test]
    async fn emit_posts_with_the_token_and_returns_the_stream_id() {
        let daemon = FakeDaemon::start(vec![(202, vec![], "ACCEPT".into())]).await;
        let producer =
            HttpProducer::new(fast_config(&daemon.url).with_token("s3cret")).expect("valid config");
        let sent = event(1);
        let receipt = producer.emit(sent.clone()).await.expect("accepted");
        assert_eq!(
            receipt,
            EmitReceipt {
                id: sent.id.clone(),
                stream_id: "0-0".into()
            }
        );
        let requests = daemon.requests.lock().expect("lock");
        let (head, body) = &requests[0];
        assert!(head.starts_with("POST /api/events HTTP/1.1"), "{head}");
        assert!(
            head.to_ascii_lowercase()
                .contains("authorization: bearer s3cret"),
            "{head}"
        );
        assert_eq!(body["events"][0]["id"], sent.id.as_str());
    }

    #[tokio::test]
    async fn batches_are_split_at_1000_events_and_receipts_keep_order() {
        let daemon = FakeDaemon::start(vec![(202, vec![], "ACCEPT".into())]).await;
        let producer = HttpProducer::new(fast_config(&daemon.url)).expect("valid config");
        let events: Vec<_> = (0..2500).map(event).collect();
        let ids: Vec<_> = events.iter().map(|e| e.id.clone()).collect();
        let receipts = producer.emit_batch(events).await.expect("accepted");
        assert_eq!(
            receipts.iter().map(|r| r.id.clone()).collect::<Vec<_>>(),
            ids
        );
        let sizes: Vec<usize> = daemon
            .requests
            .lock()
            .expect("lock")
            .iter()
            .map(|(_, b)| b["events"].as_array().map_or(0, Vec::len))
            .collect();
        assert_eq!(sizes, vec![1000, 1000, 500]);
    }

    #[tokio::test]
    async fn busy_daemon_is_retried_honouring_retry_after() {
        let busy = r#"{"error":{"code":"unavailable","message":"database busy"}}"#.to_owned();
        let daemon = FakeDaemon::start(vec![
            (503, vec![("retry-after", "0".into())], busy.clone()),
            (429, vec![("retry-after", "0".into())], busy),
            (202, vec![], "ACCEPT".into()),
        ])
        .await;
        let producer = HttpProducer::new(fast_config(&daemon.url)).expect("valid config");
        producer
            .emit(event(0))
            .await
            .expect("accepted after two retries");
        assert_eq!(daemon.request_count(), 3);
    }

    #[tokio::test]
    async fn retries_are_bounded_and_end_as_unavailable() {
        let daemon = FakeDaemon::start(vec![(
            503,
            vec![],
            r#"{"error":{"code":"unavailable","message":"redis down"}}"#.into(),
        )])
        .await;
        let mut config = fast_config(&daemon.url);
        config.max_retries = 2;
        let producer = HttpProducer::new(config).expect("valid config");
        let err = producer.emit(event(0)).await.expect_err("never accepted");
        assert!(err.is_transient(), "{err}");
        assert!(
            err.to_string().contains("unavailable: redis down")
                && err.to_string().contains("gave up after 2 retries"),
            "{err}"
        );
        assert_eq!(daemon.request_count(), 3);
    }

    #[tokio::test]
    async fn refused_batches_name_the_event_in_the_callers_batch() {
        let refused = r#"{"error":{"code":"invalid_batch","message":"1 event refused","items":[{"index":0,"code":"missing_idempotency_field","message":"lacks job_id"}]}}"#;
        let daemon = FakeDaemon::start(vec![(422, vec![], refused.into())]).await;
        let producer = HttpProducer::new(fast_config(&daemon.url)).expect("valid config");
        let err = producer.emit(event(0)).await.expect_err("refused");
        assert!(matches!(err, Error::Rejected { .. }), "{err:?}");
        assert!(!err.is_transient());
        assert!(
            err.to_string()
                .contains("event 0: missing_idempotency_field: lacks job_id"),
            "{err}"
        );
        assert_eq!(daemon.request_count(), 1, "4xx is not retried");
    }

    #[tokio::test]
    async fn unreachable_daemon_is_unavailable_and_invalid_events_are_not_sent() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        drop(listener);
        let producer = HttpProducer::new(fast_config(&url)).expect("valid config");
        let err = producer.emit(event(0)).await.expect_err("nobody listens");
        assert!(
            matches!(&err, Error::Unavailable { reason, .. } if reason == "connection refused"),
            "{err:?}"
        );

        let err = producer
            .emit(EventEnvelope::new("NoDots", "x"))
            .await
            .expect_err("invalid");
        assert!(matches!(err, Error::Invalid { .. }), "{err:?}");
    }

    #[test]
    fn bad_configuration_is_refused() {
        assert!(matches!(
            HttpProducer::new(HttpProducerConfig::new("redis://h:1")),
            Err(Error::Config(_))
        ));
        assert!(matches!(
            HttpProducer::new(HttpProducerConfig::new("not a url")),
            Err(Error::Config(_))
        ));
        let mut config = HttpProducerConfig::new("http://h:1");
        config.max_batch = 1001;
        assert!(matches!(HttpProducer::new(config), Err(Error::Config(_))));
        let debug = format!(
            "{:?}",
            HttpProducerConfig::new("http://u:pw@h:1").with_token("tok")
        );
        assert!(!debug.contains("pw") && !debug.contains("tok\""), "{debug}");
    }

    #[test]
    fn chunks_respect_both_the_count_and_the_byte_limit() {
        let encoded: Vec<Vec<u8>> = (0..5).map(|_| vec![b'x'; 100]).collect();
        assert_eq!(chunk_ranges(&encoded, 2, 1 << 20), vec![0..2, 2..4, 4..5]);
        // 13 bytes of wrapper + 100 + 1 + 100 = 214 fits in 250, a third event does not.
        assert_eq!(chunk_ranges(&encoded, 1000, 250), vec![0..2, 2..4, 4..5]);
        // An event larger than the limit still goes, alone.
        assert_eq!(
            chunk_ranges(&encoded, 1000, 50),
            vec![0..1, 1..2, 2..3, 3..4, 4..5]
        );
        let body = batch_body(&[b"{}".to_vec(), b"{}".to_vec()]);
        assert_eq!(body, br#"{"events":[{},{}]}"#);
        assert_eq!(body.len(), 13 + 2 + 1 + 2);
    }

    #[test]
    fn retry_after_seconds_are_parsed() {
        assert_eq!(parse_retry_after(" 3 "), Some(Duration::from_secs(3)));
        assert_eq!(parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"), None);
    }
}
