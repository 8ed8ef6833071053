//! Telegram: message formatting ([`format`](mod@format)) and the [`TelegramWorker`] that sends the
//! `telegram_outbox` through the Bot API.

pub mod format;

use std::time::{Duration, Instant};

use events_storage::EventDb;
use serde::Deserialize;
use time::OffsetDateTime;
use tokio_util::sync::CancellationToken;

use crate::config::TelegramConfig;
use crate::error::{Error, Result};
use crate::store;
use crate::webhook::error_chain;

/// Most notifications claimed for one chat at once (they may still become several
/// messages when the text exceeds Telegram's limit).
const MAX_BATCH_ROWS: usize = 200;

/// Sends queued notifications to Telegram, batching per chat.
///
/// Batching is done by the outbox rows themselves: a row becomes due `batch_window_ms`
/// after it was written, and when a chat has a due row the worker takes *every* pending
/// row of that chat, so a burst within the window leaves as one `sendMessage`. Nothing is
/// held in memory, so a restart neither loses nor re-batches anything.
///
/// The bot token is part of the request URL; it is removed from every error message and
/// log line this worker produces.
pub struct TelegramWorker {
    db: EventDb,
    config: TelegramConfig,
    client: reqwest::Client,
    send_url: String,
}

impl std::fmt::Debug for TelegramWorker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TelegramWorker")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Deserialize)]
struct BotResponse {
    ok: bool,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    parameters: Option<BotParameters>,
}

#[derive(Debug, Deserialize)]
struct BotParameters {
    #[serde(default)]
    retry_after: Option<u64>,
}

/// Why one `sendMessage` failed.
#[derive(Debug)]
struct SendFailure {
    /// Redacted message.
    error: String,
    /// Telegram's `retry_after` (429), honoured instead of the backoff.
    retry_after: Option<Duration>,
}

impl TelegramWorker {
    /// A worker with `config` (validated here).
    pub fn new(db: EventDb, config: TelegramConfig) -> Result<Self> {
        config.validate()?;
        let client = reqwest::Client::builder()
            .timeout(Duration::from_millis(config.timeout_ms))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(Error::HttpClient)?;
        let send_url = format!(
            "{}/bot{}/sendMessage",
            config.api_base.trim_end_matches('/'),
            config.bot_token
        );
        Ok(Self {
            db,
            config,
            client,
            send_url,
        })
    }

    /// Runs until `cancel` fires.
    pub async fn run(self, cancel: CancellationToken) -> Result<()> {
        let poll = Duration::from_millis(self.config.poll_interval_ms);
        let mut last_depth = Instant::now() - Duration::from_secs(60);
        while !cancel.is_cancelled() {
            let sent_any = match self.run_once().await {
                Ok(n) => n > 0,
                Err(e) => {
                    tracing::warn!(error = %self.redact(&e.to_string()), "telegram delivery round failed");
                    false
                }
            };
            if last_depth.elapsed() >= Duration::from_secs(1) {
                last_depth = Instant::now();
                if let Ok(depth) = self
                    .db
                    .read(|r| Ok(store::pending_telegram(r.connection()).unwrap_or(0)))
                    .await
                {
                    crate::metrics::depth("telegram", depth);
                }
            }
            if !sent_any {
                tokio::select! {
                    () = cancel.cancelled() => {}
                    () = tokio::time::sleep(poll) => {}
                }
            }
        }
        Ok(())
    }

    /// Sends one due chat batch if there is one; returns how many notifications it carried.
    pub async fn run_once(&self) -> Result<usize> {
        let due = self
            .db
            .read(|r| {
                Ok(store::any_telegram_due(
                    r.connection(),
                    OffsetDateTime::now_utc(),
                ))
            })
            .await??;
        if !due {
            return Ok(0);
        }
        let lease = Duration::from_millis(self.config.lease_ms);
        let batch = self
            .db
            .write_with(move |tx| {
                let now = OffsetDateTime::now_utc();
                store::claim_telegram(tx.connection(), now, now + lease, MAX_BATCH_ROWS)
            })
            .await?;
        let Some(batch) = batch else { return Ok(0) };
        let texts: Vec<String> = batch.rows.iter().map(|(_, _, text)| text.clone()).collect();
        let mut sent_ids = Vec::new();
        let mut failed: Option<(Vec<i64>, SendFailure, u32)> = None;
        for message in format::pack_messages(&texts) {
            let ids: Vec<i64> = message.items.iter().map(|i| batch.rows[*i].0).collect();
            if failed.is_some() {
                // After one part failed, later parts wait with it (order is kept).
                if let Some((pending, _, _)) = failed.as_mut() {
                    pending.extend(ids);
                }
                continue;
            }
            let started = Instant::now();
            match self.send(&batch.chat_id, &message.text).await {
                Ok(()) => {
                    crate::metrics::attempt("telegram", "success", started.elapsed());
                    sent_ids.extend(ids);
                }
                Err(failure) => {
                    let outcome = if failure.retry_after.is_some() {
                        "rate_limited"
                    } else {
                        "failure"
                    };
                    crate::metrics::attempt("telegram", outcome, started.elapsed());
                    tracing::warn!(chat_id = %batch.chat_id, error = %failure.error, "telegram send failed");
                    let attempts = message
                        .items
                        .iter()
                        .map(|i| batch.rows[*i].1)
                        .max()
                        .unwrap_or(0)
                        + 1;
                    failed = Some((ids, failure, attempts));
                }
            }
        }
        let count = batch.rows.len();
        let max_attempts = self.config.max_attempts;
        let failed = failed.map(|(ids, failure, attempts)| {
            let next = if attempts >= max_attempts {
                None
            } else {
                let delay = failure
                    .retry_after
                    .unwrap_or_else(|| self.config.backoff(attempts));
                Some(OffsetDateTime::now_utc() + delay)
            };
            (ids, next, failure.error)
        });
        self.db
            .write_with(move |tx| {
                let conn = tx.connection();
                store::telegram_sent(conn, &sent_ids, OffsetDateTime::now_utc())?;
                if let Some((ids, next, error)) = &failed {
                    store::telegram_failed(conn, ids, *next, error)?;
                }
                Ok::<_, Error>(())
            })
            .await?;
        Ok(count)
    }

    async fn send(&self, chat_id: &str, text: &str) -> std::result::Result<(), SendFailure> {
        let body = serde_json::json!({
            "chat_id": chat_id,
            "text": text,
            "parse_mode": "HTML",
            "disable_web_page_preview": true,
        });
        let response = self
            .client
            .post(&self.send_url)
            .json(&body)
            .send()
            .await
            .map_err(|e| SendFailure {
                // `without_url`: the URL contains the token.
                error: self.redact(&format!("sendMessage: {}", error_chain(&e.without_url()))),
                retry_after: None,
            })?;
        let status = response.status();
        let parsed: Option<BotResponse> = response.json().await.ok();
        if status.is_success() && parsed.as_ref().is_none_or(|r| r.ok) {
            return Ok(());
        }
        let description = parsed
            .as_ref()
            .and_then(|r| r.description.clone())
            .unwrap_or_default();
        let retry_after = parsed
            .as_ref()
            .and_then(|r| r.parameters.as_ref())
            .and_then(|p| p.retry_after)
            .filter(|_| status.as_u16() == 429)
            .map(Duration::from_secs);
        Err(SendFailure {
            error: self.redact(&format!("sendMessage answered {status}: {description}")),
            retry_after,
        })
    }

    fn redact(&self, text: &str) -> String {
        redact_token(text, &self.config.bot_token)
    }
}

/// Replaces every occurrence of the bot token (and of its secret part after `:`) with
/// `<redacted>`.
pub(crate) fn redact_token(text: &str, token: &str) -> String {
    let mut out = text.to_owned();
    if !token.is_empty() {
        out = out.replace(token, "<redacted>");
    }
    if let Some((_, secret)) = token.split_once(':')
        && secret.len() >= 8
    {
        out = out.replace(secret, "<redacted>");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redaction_removes_the_token_and_its_secret_half() {
        let token = "123456:ABCdefGHIjklMNO";
        assert_eq!(
            redact_token(
                "POST https://api/bot123456:ABCdefGHIjklMNO/sendMessage failed",
                token
            ),
            "POST https://api/bot<redacted>/sendMessage failed"
        );
        assert_eq!(
            redact_token("leaked ABCdefGHIjklMNO", token),
            "leaked <redacted>"
        );
    }
}
