//! Configuration of the webhook and Telegram workers: the `[webhooks]` and `[telegram]`
//! tables of `events.toml` (brief §11), deserialisable as they are, plus a few tuning
//! knobs with defaults that rarely need changing.

use std::fmt;
use std::time::Duration;

use events_envelope::EventLevel;
use ipnet::IpNet;
use serde::{Deserialize, Deserializer};

use crate::error::{Error, Result};
use crate::retry::{DEFAULT_SCHEDULE_SECS, RetrySchedule};
use crate::ssrf::DestinationGuard;

/// `[webhooks]`: destinations, retry schedule, auto-disable, timeouts.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WebhookConfig {
    /// CIDRs let through the private-range guard, e.g. `["127.0.0.0/8"]`.
    #[serde(deserialize_with = "deserialize_cidrs")]
    pub allow_destinations: Vec<IpNet>,
    /// Delay before each attempt in seconds (fractions allowed); the first is normally 0.
    pub retry_schedule_secs: Vec<f64>,
    /// Each non-zero delay varies by ± this fraction.
    pub retry_jitter: f64,
    /// Consecutive failed deliveries after which an endpoint is disabled.
    pub disable_after_failures: u32,
    /// Per-request timeout (connect + response).
    pub timeout_ms: u64,
    /// How long a claimed delivery stays locked; a worker that dies mid-send leaves the
    /// job to be retried after this. Must exceed `timeout_ms`.
    pub lease_ms: u64,
    /// How often an idle worker looks for due deliveries.
    pub poll_interval_ms: u64,
    /// Requests in flight at once per worker.
    pub concurrency: usize,
    /// After a secret rotation the old secret keeps signing this long.
    pub rotation_grace_secs: u64,
}

impl Default for WebhookConfig {
    fn default() -> Self {
        Self {
            allow_destinations: Vec::new(),
            retry_schedule_secs: DEFAULT_SCHEDULE_SECS.iter().map(|s| *s as f64).collect(),
            retry_jitter: 0.1,
            disable_after_failures: 100,
            timeout_ms: 15_000,
            lease_ms: 60_000,
            poll_interval_ms: 250,
            concurrency: 16,
            rotation_grace_secs: 24 * 3600,
        }
    }
}

impl WebhookConfig {
    /// Checks ranges and relations between values; errors name the key.
    pub fn validate(&self) -> Result<()> {
        if self.retry_schedule_secs.is_empty() {
            return Err(Error::config(
                "webhooks.retry_schedule_secs",
                "must list at least one delay",
            ));
        }
        if let Some(bad) = self
            .retry_schedule_secs
            .iter()
            .find(|s| !s.is_finite() || **s < 0.0 || **s > 30.0 * 86400.0)
        {
            return Err(Error::config(
                "webhooks.retry_schedule_secs",
                format!("{bad} is not in 0..=2592000"),
            ));
        }
        if !(0.0..=1.0).contains(&self.retry_jitter) {
            return Err(Error::config("webhooks.retry_jitter", "must be in 0..=1"));
        }
        if self.disable_after_failures == 0 {
            return Err(Error::config(
                "webhooks.disable_after_failures",
                "must be at least 1",
            ));
        }
        if self.timeout_ms == 0 {
            return Err(Error::config("webhooks.timeout_ms", "must be positive"));
        }
        if self.lease_ms <= self.timeout_ms {
            return Err(Error::config("webhooks.lease_ms", "must exceed timeout_ms"));
        }
        if self.poll_interval_ms == 0 || self.concurrency == 0 {
            return Err(Error::config(
                "webhooks.poll_interval_ms",
                "poll interval and concurrency must be positive",
            ));
        }
        Ok(())
    }

    /// The retry schedule with jitter.
    pub fn schedule(&self) -> RetrySchedule {
        RetrySchedule::new(
            self.retry_schedule_secs
                .iter()
                .map(|s| Duration::from_secs_f64(s.max(0.0)))
                .collect(),
            self.retry_jitter,
        )
    }

    /// The SSRF guard with this allow-list.
    pub fn guard(&self) -> DestinationGuard {
        DestinationGuard::new(self.allow_destinations.clone())
    }
}

fn deserialize_cidrs<'de, D: Deserializer<'de>>(d: D) -> std::result::Result<Vec<IpNet>, D::Error> {
    let texts = Vec::<String>::deserialize(d)?;
    texts
        .iter()
        .map(|t| {
            // A bare address means exactly that host.
            t.parse::<IpNet>()
                .or_else(|_| t.parse::<std::net::IpAddr>().map(IpNet::from))
                .map_err(|_| {
                    serde::de::Error::custom(format!("allow_destinations: {t:?} is not a CIDR"))
                })
        })
        .collect()
}

/// `[telegram]`: where notifications go and how they are batched. Absent = Telegram off.
#[derive(Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TelegramConfig {
    /// Bot token (`123456:ABC...`). Never logged: `Debug` redacts it and every error
    /// message has it removed.
    pub bot_token: String,
    /// Chat to send to.
    pub chat_id: String,
    /// Bot API base URL; tests point it at a local fake.
    #[serde(default = "default_api_base")]
    pub api_base: String,
    /// Only notifications created at this level or above are sent (default WORKFLOW).
    #[serde(default = "default_min_level")]
    pub min_level: EventLevel,
    /// Notifications for one chat within this window go out as one message.
    #[serde(default = "default_batch_window_ms")]
    pub batch_window_ms: u64,
    /// First retry delay after a failed send; doubles per attempt up to `retry_max_ms`.
    #[serde(default = "default_retry_base_ms")]
    pub retry_base_ms: u64,
    /// Longest delay between retries.
    #[serde(default = "default_retry_max_ms")]
    pub retry_max_ms: u64,
    /// Attempts before a message is given up (marked failed).
    #[serde(default = "default_max_attempts")]
    pub max_attempts: u32,
    /// Per-request timeout.
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    /// How long claimed rows stay locked (crash recovery, as for webhooks).
    #[serde(default = "default_lease_ms")]
    pub lease_ms: u64,
    /// How often the worker looks for due messages.
    #[serde(default = "default_poll_interval_ms")]
    pub poll_interval_ms: u64,
}

fn default_api_base() -> String {
    "https://api.telegram.org".to_owned()
}
fn default_min_level() -> EventLevel {
    EventLevel::Workflow
}
fn default_batch_window_ms() -> u64 {
    2000
}
fn default_retry_base_ms() -> u64 {
    1000
}
fn default_retry_max_ms() -> u64 {
    300_000
}
fn default_max_attempts() -> u32 {
    10
}
fn default_timeout_ms() -> u64 {
    15_000
}
fn default_lease_ms() -> u64 {
    60_000
}
fn default_poll_interval_ms() -> u64 {
    200
}

impl TelegramConfig {
    /// A config with defaults for everything but the token and chat.
    pub fn new(bot_token: impl Into<String>, chat_id: impl Into<String>) -> Self {
        Self {
            bot_token: bot_token.into(),
            chat_id: chat_id.into(),
            api_base: default_api_base(),
            min_level: default_min_level(),
            batch_window_ms: default_batch_window_ms(),
            retry_base_ms: default_retry_base_ms(),
            retry_max_ms: default_retry_max_ms(),
            max_attempts: default_max_attempts(),
            timeout_ms: default_timeout_ms(),
            lease_ms: default_lease_ms(),
            poll_interval_ms: default_poll_interval_ms(),
        }
    }

    /// Checks values; errors name the key (and never contain the token).
    pub fn validate(&self) -> Result<()> {
        if self.bot_token.trim().is_empty() {
            return Err(Error::config("telegram.bot_token", "must not be empty"));
        }
        if self.chat_id.trim().is_empty() {
            return Err(Error::config("telegram.chat_id", "must not be empty"));
        }
        let base = reqwest::Url::parse(&self.api_base).map_err(|e| {
            Error::config(
                "telegram.api_base",
                format!("{:?} is not a url: {e}", self.api_base),
            )
        })?;
        if !matches!(base.scheme(), "http" | "https") {
            return Err(Error::config(
                "telegram.api_base",
                "scheme must be http or https",
            ));
        }
        if self.max_attempts == 0
            || self.retry_base_ms == 0
            || self.retry_max_ms < self.retry_base_ms
        {
            return Err(Error::config(
                "telegram.max_attempts",
                "max_attempts and retry_base_ms must be positive and retry_max_ms >= retry_base_ms",
            ));
        }
        if self.lease_ms <= self.timeout_ms || self.timeout_ms == 0 || self.poll_interval_ms == 0 {
            return Err(Error::config(
                "telegram.lease_ms",
                "must exceed a positive timeout_ms",
            ));
        }
        Ok(())
    }

    /// Delay before retry number `attempts_made` (1 = after the first failure).
    pub(crate) fn backoff(&self, attempts_made: u32) -> Duration {
        let exp = attempts_made.saturating_sub(1).min(20);
        let ms = self
            .retry_base_ms
            .saturating_mul(1u64 << exp)
            .min(self.retry_max_ms);
        Duration::from_millis(ms)
    }
}

impl fmt::Debug for TelegramConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TelegramConfig")
            .field("bot_token", &"<redacted>")
            .field("chat_id", &self.chat_id)
            .field("api_base", &self.api_base)
            .field("min_level", &self.min_level)
            .field("batch_window_ms", &self.batch_window_ms)
            .field("max_attempts", &self.max_attempts)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn webhook_config_reads_the_brief_shape() {
        let cfg: WebhookConfig = serde_json::from_value(serde_json::json!({
            "allow_destinations": ["127.0.0.0/8", "::1"],
            "retry_schedule_secs": [0, 0.5, 2],
            "disable_after_failures": 3,
            "timeout_ms": 1000
        }))
        .unwrap();
        cfg.validate().unwrap();
        assert_eq!(cfg.allow_destinations.len(), 2);
        assert_eq!(cfg.schedule().max_attempts(), 3);
        assert!(cfg.guard().check_addr("127.0.0.1".parse().unwrap()).is_ok());
        assert_eq!(WebhookConfig::default().schedule().max_attempts(), 8);
    }

    #[test]
    fn webhook_config_errors_name_the_key() {
        let err =
            serde_json::from_value::<WebhookConfig>(serde_json::json!({"retries": 3})).unwrap_err();
        assert!(err.to_string().contains("retries"), "{err}");
        let err = serde_json::from_value::<WebhookConfig>(
            serde_json::json!({"allow_destinations": ["nope"]}),
        )
        .unwrap_err();
        assert!(err.to_string().contains("nope"), "{err}");
        let cfg = WebhookConfig {
            lease_ms: 10,
            ..WebhookConfig::default()
        };
        assert!(
            cfg.validate()
                .unwrap_err()
                .to_string()
                .contains("webhooks.lease_ms")
        );
    }

    #[test]
    fn telegram_config_defaults_and_redacts() {
        let cfg: TelegramConfig =
            serde_json::from_value(serde_json::json!({"bot_token": "123:SECRET", "chat_id": "42"}))
                .unwrap();
        cfg.validate().unwrap();
        assert_eq!(cfg.min_level, EventLevel::Workflow);
        assert_eq!(cfg.batch_window_ms, 2000);
        assert!(!format!("{cfg:?}").contains("SECRET"));
        assert_eq!(cfg.backoff(1), Duration::from_secs(1));
        assert_eq!(cfg.backoff(3), Duration::from_secs(4));
        assert_eq!(cfg.backoff(30), Duration::from_secs(300));
    }
}
