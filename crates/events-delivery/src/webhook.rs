//! [`DeliveryWorker`]: claims due webhook deliveries, sends them signed, records every
//! attempt and schedules what comes next.

use std::sync::Arc;
use std::time::{Duration, Instant};

use events_envelope::{EventEnvelope, EventLevel};
use events_producer::Producer;
use events_storage::EventDb;
use reqwest::header::{CONTENT_TYPE, HeaderValue, RETRY_AFTER};
use time::OffsetDateTime;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::config::WebhookConfig;
use crate::error::{Error, Result};
use crate::retry::{RetrySchedule, Verdict, classify};
use crate::signing::{HEADER_ID, HEADER_SIGNATURE, HEADER_TIMESTAMP, WebhookSecret, sign_message};
use crate::ssrf::{DestinationGuard, GuardedResolver, find_refusal};
use crate::store::{self, Attempt, DeliveryStatus, Job, Trigger};

/// Longest response excerpt kept per attempt.
pub const EXCERPT_BYTES: usize = 1024;

/// Event emitted when an endpoint is disabled (410 or too many failures in a row).
pub const WEBHOOK_DISABLED_EVENT: &str = "system.webhook.disabled";

/// Sends webhook deliveries from the outbox.
///
/// Several workers (or several daemons on one database) may run at once: a delivery is
/// *claimed* by writing `locked_until = now + lease` in a write transaction, so only one
/// worker sends it; a worker that dies mid-send leaves the lock to expire and the delivery
/// is sent again — at-least-once, with the same `webhook-id`, which receivers dedupe on.
pub struct DeliveryWorker {
    db: EventDb,
    config: WebhookConfig,
    schedule: RetrySchedule,
    guard: Arc<DestinationGuard>,
    client: reqwest::Client,
    producer: Arc<dyn Producer>,
}

impl std::fmt::Debug for DeliveryWorker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeliveryWorker")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// What one send produced, before it is recorded.
#[derive(Debug)]
struct Sent {
    job: Job,
    attempt: Attempt,
    verdict: Verdict,
    outcome: &'static str,
}

impl DeliveryWorker {
    /// A worker over `db` with `config` (validated here); `producer` receives
    /// `system.webhook.disabled` events.
    pub fn new(db: EventDb, config: WebhookConfig, producer: Arc<dyn Producer>) -> Result<Self> {
        config.validate()?;
        let guard = Arc::new(config.guard());
        let client = reqwest::Client::builder()
            // Redirects are failures (a 3xx could point the signed payload at an internal
            // address); proxies would resolve names themselves and bypass the guard.
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .timeout(Duration::from_millis(config.timeout_ms))
            .dns_resolver(GuardedResolver::new(Arc::clone(&guard)))
            .user_agent(concat!("events-delivery/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(Error::HttpClient)?;
        Ok(Self {
            db,
            schedule: config.schedule(),
            config,
            guard,
            client,
            producer,
        })
    }

    /// Runs until `cancel` fires: claims due deliveries while fewer than `concurrency` are
    /// in flight, records each result as it arrives. On cancel it stops claiming and waits
    /// for the requests in flight (bounded by the request timeout).
    pub async fn run(self, cancel: CancellationToken) -> Result<()> {
        let this = Arc::new(self);
        let mut inflight: JoinSet<Sent> = JoinSet::new();
        let poll = Duration::from_millis(this.config.poll_interval_ms);
        let mut last_depth = Instant::now() - Duration::from_secs(60);
        loop {
            if !cancel.is_cancelled() {
                let free = this.config.concurrency.saturating_sub(inflight.len());
                if free > 0 {
                    match this.claim(free).await {
                        Ok(jobs) => {
                            for job in jobs {
                                let worker = Arc::clone(&this);
                                inflight.spawn(async move { worker.send(job).await });
                            }
                        }
                        Err(e) => tracing::warn!(error = %e, "claiming webhook deliveries failed"),
                    }
                }
            } else if inflight.is_empty() {
                return Ok(());
            }
            if last_depth.elapsed() >= Duration::from_secs(1) {
                last_depth = Instant::now();
                if let Ok(depth) = this
                    .db
                    .read(|r| Ok(store::pending_deliveries(r.connection()).unwrap_or(0)))
                    .await
                {
                    crate::metrics::depth("webhook", depth);
                }
            }
            tokio::select! {
                Some(joined) = inflight.join_next(), if !inflight.is_empty() => match joined {
                    Ok(sent) => {
                        if let Err(e) = this.record(sent).await {
                            // The lease expires and the delivery is sent again: at-least-once.
                            tracing::warn!(error = %e, "recording a webhook attempt failed");
                        }
                    }
                    Err(e) => tracing::error!(error = %e, "webhook send task failed"),
                },
                () = cancel.cancelled(), if !cancel.is_cancelled() => {}
                () = tokio::time::sleep(poll), if inflight.len() < this.config.concurrency => {}
            }
        }
    }

    /// One round without the loop: claims what is due (up to `concurrency`), sends it all,
    /// records the results; returns how many deliveries were attempted.
    pub async fn run_once(&self) -> Result<usize> {
        let jobs = self.claim(self.config.concurrency).await?;
        let n = jobs.len();
        let sends = jobs.into_iter().map(|job| self.send(job));
        for sent in futures_util::future::join_all(sends).await {
            self.record(sent).await?;
        }
        Ok(n)
    }

    async fn claim(&self, limit: usize) -> Result<Vec<Job>> {
        let lease = Duration::from_millis(self.config.lease_ms);
        // A read first: an idle worker must not take the single writer every poll.
        let due = self
            .db
            .read(|r| Ok(store::any_due(r.connection(), OffsetDateTime::now_utc())))
            .await??;
        if !due {
            return Ok(Vec::new());
        }
        self.db
            .write_with(move |tx| {
                let now = OffsetDateTime::now_utc();
                store::claim_due(tx.connection(), now, now + lease, limit)
            })
            .await
    }

    async fn send(&self, job: Job) -> Sent {
        let attempted_at = OffsetDateTime::now_utc();
        let started = Instant::now();
        let trigger = job.trigger;
        let attempt = |status_code, excerpt, error| Attempt {
            attempted_at,
            status_code,
            latency_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
            response_excerpt: excerpt,
            error,
            trigger,
        };
        let failure = |job: Job, attempt: Attempt, outcome| Sent {
            job,
            attempt,
            verdict: Verdict::Retry { retry_after: None },
            outcome,
        };
        // IP literals never reach the guarded resolver: check them here, before connecting.
        if let Err(e) = self.guard.check_url(&job.url) {
            return failure(job, attempt(None, None, Some(e.to_string())), "refused");
        }
        let secrets = WebhookSecret::parse(&job.secret).and_then(|s| {
            Ok((
                s,
                job.previous_secret
                    .as_deref()
                    .map(WebhookSecret::parse)
                    .transpose()?,
            ))
        });
        let (current, previous) = match secrets {
            Ok(s) => s,
            Err(e) => {
                return failure(
                    job,
                    attempt(None, None, Some(format!("stored secret: {e}"))),
                    "failure",
                );
            }
        };
        let signed = sign_message(
            &job.msg_id,
            attempted_at.unix_timestamp(),
            job.payload.as_bytes(),
            &current,
            previous.as_ref(),
        );
        let request = self
            .client
            .post(&job.url)
            .header(CONTENT_TYPE, HeaderValue::from_static("application/json"))
            .header(HEADER_ID, &signed.id)
            .header(HEADER_TIMESTAMP, signed.timestamp.to_string())
            .header(HEADER_SIGNATURE, &signed.signature)
            .body(job.payload.clone());
        let response = match request.send().await {
            Ok(r) => r,
            Err(e) => {
                let (error, outcome) = match find_refusal(&e) {
                    Some(refusal) => (refusal.to_string(), "refused"),
                    None => (error_chain(&e.without_url()), "failure"),
                };
                return failure(job, attempt(None, None, Some(error)), outcome);
            }
        };
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let (excerpt, body_error) = read_excerpt(response).await;
        let verdict = classify(status, retry_after.as_deref(), OffsetDateTime::now_utc());
        let outcome = match verdict {
            Verdict::Success => "success",
            Verdict::Gone => "gone",
            Verdict::Retry { .. } => "failure",
        };
        Sent {
            job,
            attempt: attempt(Some(status), Some(excerpt), body_error),
            verdict,
            outcome,
        }
    }

    async fn record(&self, sent: Sent) -> Result<()> {
        crate::metrics::attempt(
            "webhook",
            sent.outcome,
            Duration::from_millis(sent.attempt.latency_ms),
        );
        let schedule = self.schedule.clone();
        let disable_after = self.config.disable_after_failures;
        let disabled = self
            .db
            .write_with(move |tx| record_attempt(tx.connection(), &sent, &schedule, disable_after))
            .await?;
        if let Some(disabled) = disabled {
            tracing::warn!(webhook_id = disabled.webhook_id, reason = %disabled.reason, "webhook disabled");
            let event = EventEnvelope::new(WEBHOOK_DISABLED_EVENT, "events-delivery")
                .with_level(EventLevel::Operational)
                .with_domain("system")
                .with_entity(format!("webhook:{}", disabled.webhook_id))
                .with_description(format!(
                    "webhook {} disabled: {}",
                    disabled.url, disabled.reason
                ))
                .with_field("webhook_id", disabled.webhook_id)
                .with_field("url", disabled.url)
                .with_field("reason", disabled.reason)
                .with_field("consecutive_failures", disabled.consecutive_failures);
            if let Err(e) = self.producer.emit(event).await {
                tracing::warn!(error = %e, "emitting {WEBHOOK_DISABLED_EVENT} failed");
            }
        }
        Ok(())
    }
}

#[derive(Debug)]
struct Disabled {
    webhook_id: i64,
    url: String,
    reason: String,
    consecutive_failures: u32,
}

fn record_attempt(
    conn: &events_storage::rusqlite::Connection,
    sent: &Sent,
    schedule: &RetrySchedule,
    disable_after: u32,
) -> Result<Option<Disabled>> {
    let now = OffsetDateTime::now_utc();
    let job = &sent.job;
    store::insert_attempt(conn, job.delivery_id, &sent.attempt)?;
    let last_error = sent
        .attempt
        .error
        .clone()
        .or_else(|| sent.attempt.status_code.map(|s| format!("http status {s}")));
    let disable = |reason: String, failures: u32| -> Result<Option<Disabled>> {
        Ok(
            store::disable_webhook(conn, job.webhook_id, &reason, now)?.map(|url| Disabled {
                webhook_id: job.webhook_id,
                url,
                reason,
                consecutive_failures: failures,
            }),
        )
    };
    match sent.verdict {
        Verdict::Success => {
            store::finish_attempt(
                conn,
                job.delivery_id,
                DeliveryStatus::Succeeded,
                None,
                None,
                now,
            )?;
            store::reset_failures(conn, job.webhook_id)?;
            Ok(None)
        }
        Verdict::Gone => {
            store::finish_attempt(
                conn,
                job.delivery_id,
                DeliveryStatus::Failed,
                None,
                last_error.as_deref(),
                now,
            )?;
            let failures = store::add_failure(conn, job.webhook_id)?;
            disable("endpoint answered 410 gone".to_owned(), failures)
        }
        Verdict::Retry { retry_after } => {
            let attempts_made = job.attempts.saturating_add(1);
            let next = match job.trigger {
                Trigger::Manual => None,
                Trigger::Scheduled => schedule.next_delay(attempts_made),
            };
            if let Some(delay) = next {
                let delay = retry_after.map_or(delay, |ra| delay.max(ra));
                let due = now + delay;
                store::finish_attempt(
                    conn,
                    job.delivery_id,
                    DeliveryStatus::Pending,
                    Some(due),
                    last_error.as_deref(),
                    now,
                )?;
                return Ok(None);
            }
            store::finish_attempt(
                conn,
                job.delivery_id,
                DeliveryStatus::Failed,
                None,
                last_error.as_deref(),
                now,
            )?;
            let failures = store::add_failure(conn, job.webhook_id)?;
            if failures >= disable_after {
                return disable(
                    format!("{failures} consecutive failed deliveries"),
                    failures,
                );
            }
            Ok(None)
        }
    }
}

/// Reads at most [`EXCERPT_BYTES`] of the body (never the whole of a huge answer).
async fn read_excerpt(mut response: reqwest::Response) -> (String, Option<String>) {
    let mut buf = Vec::new();
    let mut error = None;
    while buf.len() < EXCERPT_BYTES {
        match response.chunk().await {
            Ok(Some(chunk)) => buf.extend_from_slice(&chunk),
            Ok(None) => break,
            Err(e) => {
                error = Some(format!(
                    "reading response body: {}",
                    error_chain(&e.without_url())
                ));
                break;
            }
        }
    }
    buf.truncate(EXCERPT_BYTES);
    let mut text = String::from_utf8_lossy(&buf).into_owned();
    // A multi-byte character cut at the boundary shows up as U+FFFD; drop it.
    if buf.len() == EXCERPT_BYTES && text.ends_with('\u{FFFD}') {
        text.pop();
    }
    (text, error)
}

/// `error: cause: cause`, as one line (reqwest's own `Display` hides the cause).
pub(crate) fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut out = err.to_string();
    let mut source = err.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}
