//! Delivery of events and notifications to where people and systems are (brief §10):
//! Standard-Webhooks-signed webhooks and Telegram, through a durable outbox.
//!
//! # How it fits
//!
//! ```text
//! processor batch tx ──► OutboxCartridge ──► deliveries / telegram_outbox rows (same commit)
//!                                                  │
//!                  DeliveryWorker / TelegramWorker ◄┘ claim (lease) → send → record attempt
//! ```
//!
//! * [`OutboxCartridge`] is the last cartridge of the pipeline. Inside the batch
//!   transaction it writes one delivery per matching enabled webhook and one Telegram row
//!   per notification created at level ≥ `min_level`, so jobs are durable exactly when the
//!   projection is.
//! * [`DeliveryWorker`] claims due deliveries with a lease (`locked_until`), signs and sends
//!   them (15 s timeout, no redirects, [SSRF guard](ssrf)), records each [`Attempt`],
//!   schedules retries on the Svix schedule ([`RetrySchedule`]), disables endpoints that
//!   answer 410 or fail N deliveries in a row and then emits `system.webhook.disabled`.
//! * [`TelegramWorker`] sends the Telegram outbox, batching a chat's notifications within a
//!   window into one message.
//! * [`WebhookAdmin`] is the management API as plain async functions with serde types;
//!   `events-api` mounts them under `/api/webhooks`.
//!
//! # Key design decision: the outbox *is* the queue
//!
//! There is no in-memory queue anywhere: every job is a row written in the same SQLite
//! transaction as the projection that caused it, and workers claim rows with a lease. A
//! crash at any point loses nothing; a crash mid-send means the row is sent again after the
//! lease expires, with the same `webhook-id`, which receivers dedupe on (at-least-once, as
//! every webhook system). Telegram batching likewise lives in the rows (a row becomes due
//! at the end of its window), not in timers.
//!
//! # Not here
//!
//! HTTP routing (`events-api`), config file parsing (`events-daemon`; [`WebhookConfig`] and
//! [`TelegramConfig`] deserialise from its `[webhooks]` / `[telegram]` tables), the
//! schema migrations (`events-storage`).
//!
//! # Metrics
//!
//! `deliveries_total{target,outcome}`, `delivery_attempt_seconds{target}`,
//! `delivery_outbox_depth{target}` (see [`metrics`]).

mod admin;
mod config;
mod error;
pub mod metrics;
mod outbox;
pub mod retry;
pub mod signing;
pub mod ssrf;
mod store;
pub mod telegram;
mod webhook;

pub use admin::{
    CreateWebhook, CreatedWebhook, DeliveryQuery, MAX_EVENT_TYPES, RecoverRequest, RecoverResponse,
    UpdateWebhook, UpdatedWebhook, WebhookAdmin, check_event_types,
};
pub use config::{TelegramConfig, WebhookConfig};
pub use error::{Error, Result};
pub use outbox::{OutboxCartridge, TelegramRoute, webhook_body};
pub use retry::{RetrySchedule, Verdict};
pub use signing::{SignedHeaders, WebhookSecret, sign_message};
pub use ssrf::DestinationGuard;
pub use store::{Attempt, Delivery, DeliveryStatus, Trigger, Webhook};
pub use telegram::TelegramWorker;
pub use webhook::{DeliveryWorker, EXCERPT_BYTES, WEBHOOK_DISABLED_EVENT};
