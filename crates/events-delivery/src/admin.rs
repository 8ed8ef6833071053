//! Webhook management for the admin API (`/api/webhooks`): plain async functions on
//! [`WebhookAdmin`] with serde request/response types, so `events-api` mounts them
//! without this crate knowing HTTP.

use std::time::Duration;

use events_envelope::validate_event_name;
use events_storage::EventDb;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::config::WebhookConfig;
use crate::error::{Error, Result};
use crate::signing::WebhookSecret;
use crate::ssrf::DestinationGuard;
use crate::store::{self, Delivery, DeliveryStatus, NewWebhook, Webhook, WebhookChanges, found};

/// Longest description accepted.
const MAX_DESCRIPTION: usize = 1000;
/// Most event-type patterns one webhook may list.
pub const MAX_EVENT_TYPES: usize = 100;

/// `POST /api/webhooks` body.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CreateWebhook {
    /// Destination (http or https).
    pub url: String,
    /// Event-type globs; absent = `["*"]`.
    #[serde(default)]
    pub event_types: Option<Vec<String>>,
    /// Free text.
    #[serde(default)]
    pub description: Option<String>,
    /// `whsec_...`; generated when absent.
    #[serde(default)]
    pub secret: Option<String>,
}

/// Answer to a create: the webhook and, this once, its secret.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CreatedWebhook {
    /// The stored webhook.
    #[serde(flatten)]
    pub webhook: Webhook,
    /// The signing secret; not shown again.
    pub secret: String,
}

/// `PATCH /api/webhooks/{id}` body; absent fields stay as they are.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateWebhook {
    /// New destination.
    #[serde(default)]
    pub url: Option<String>,
    /// New globs.
    #[serde(default)]
    pub event_types: Option<Vec<String>>,
    /// New description.
    #[serde(default)]
    pub description: Option<String>,
    /// Enable (also clears the failure streak) or disable.
    #[serde(default)]
    pub enabled: Option<bool>,
    /// Rotate the secret: the old one keeps signing for the grace period.
    #[serde(default)]
    pub rotate_secret: bool,
    /// A secret to rotate to (implies `rotate_secret`); generated when rotating without one.
    #[serde(default)]
    pub secret: Option<String>,
}

/// Answer to an update: the webhook and, after a rotation, the new secret.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct UpdatedWebhook {
    /// The stored webhook.
    #[serde(flatten)]
    pub webhook: Webhook,
    /// The new secret, only after a rotation.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
}

/// `GET /api/webhooks/{id}/deliveries` query.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct DeliveryQuery {
    /// Only deliveries in this state.
    #[serde(default)]
    pub status: Option<DeliveryStatus>,
    /// Page backwards: deliveries with a smaller id.
    #[serde(default)]
    pub before_id: Option<i64>,
    /// Page size (default 50, max 200).
    #[serde(default)]
    pub limit: Option<u32>,
}

/// `POST /api/webhooks/{id}/recover` body.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RecoverRequest {
    /// Start of the range (deliveries created at or after).
    #[serde(with = "time::serde::rfc3339")]
    pub since: OffsetDateTime,
    /// End of the range; absent = now.
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub until: Option<OffsetDateTime>,
}

/// Answer to a recovery.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct RecoverResponse {
    /// Failed deliveries re-enqueued.
    pub recovered: u64,
}

/// The webhook admin operations over one database.
#[derive(Debug, Clone)]
pub struct WebhookAdmin {
    db: EventDb,
    guard: DestinationGuard,
    rotation_grace: Duration,
}

impl WebhookAdmin {
    /// Admin over `db`, refusing URLs the guard of `config` refuses.
    pub fn new(db: EventDb, config: &WebhookConfig) -> Self {
        Self {
            db,
            guard: config.guard(),
            rotation_grace: Duration::from_secs(config.rotation_grace_secs),
        }
    }

    /// Creates a webhook; the answer carries the secret (given or generated), once.
    pub async fn create(&self, req: CreateWebhook) -> Result<CreatedWebhook> {
        let url = self.check_url(&req.url)?;
        let event_types =
            check_event_types(req.event_types.unwrap_or_else(|| vec!["*".to_owned()]))?;
        let description = check_description(req.description.unwrap_or_default())?;
        let secret = match req.secret {
            Some(text) => WebhookSecret::parse(&text)?,
            None => WebhookSecret::generate(),
        };
        let secret_text = secret.expose().to_owned();
        let webhook = self
            .db
            .write_with(move |tx| {
                let conn = tx.connection();
                let new = NewWebhook {
                    url: &url,
                    event_types: &event_types,
                    description: &description,
                    secret: &secret_text,
                };
                let id = store::insert_webhook(conn, &new, OffsetDateTime::now_utc())?;
                found(store::get_webhook(conn, id)?, "webhook", id)
            })
            .await?;
        Ok(CreatedWebhook {
            webhook,
            secret: secret.expose().to_owned(),
        })
    }

    /// All webhooks, oldest first.
    pub async fn list(&self) -> Result<Vec<Webhook>> {
        self.db
            .read(|r| Ok(store::list_webhooks(r.connection())))
            .await?
    }

    /// One webhook.
    pub async fn get(&self, id: i64) -> Result<Webhook> {
        found(
            self.db
                .read(move |r| Ok(store::get_webhook(r.connection(), id)))
                .await??,
            "webhook",
            id,
        )
    }

    /// Changes a webhook; see [`UpdateWebhook`].
    pub async fn update(&self, id: i64, req: UpdateWebhook) -> Result<UpdatedWebhook> {
        let url = req.url.as_deref().map(|u| self.check_url(u)).transpose()?;
        let event_types = req.event_types.map(check_event_types).transpose()?;
        let description = req.description.map(check_description).transpose()?;
        // A given secret is a request to rotate to it, with or without `rotate_secret`.
        let rotate = req.rotate_secret || req.secret.is_some();
        let new_secret = match (rotate, req.secret) {
            (false, _) => None,
            (true, Some(text)) => Some(WebhookSecret::parse(&text)?),
            (true, None) => Some(WebhookSecret::generate()),
        };
        let secret_text = new_secret.as_ref().map(|s| s.expose().to_owned());
        let grace = self.rotation_grace;
        let enabled = req.enabled;
        let webhook = self
            .db
            .write_with(move |tx| {
                let conn = tx.connection();
                let now = OffsetDateTime::now_utc();
                let changes = WebhookChanges {
                    url: url.as_deref(),
                    event_types: event_types.as_deref(),
                    description: description.as_deref(),
                    enabled,
                    rotate: secret_text.as_deref().map(|s| (s, now + grace)),
                };
                if !store::update_webhook(conn, id, &changes, now)? {
                    return Err(Error::NotFound {
                        what: "webhook",
                        id: id.to_string(),
                    });
                }
                found(store::get_webhook(conn, id)?, "webhook", id)
            })
            .await?;
        Ok(UpdatedWebhook {
            webhook,
            secret: new_secret.map(|s| s.expose().to_owned()),
        })
    }

    /// Deletes a webhook and its deliveries.
    pub async fn delete(&self, id: i64) -> Result<()> {
        let deleted = self
            .db
            .write_with(move |tx| store::delete_webhook(tx.connection(), id))
            .await?;
        if deleted {
            Ok(())
        } else {
            Err(Error::NotFound {
                what: "webhook",
                id: id.to_string(),
            })
        }
    }

    /// Deliveries of a webhook, newest first, each with its attempt log.
    pub async fn deliveries(&self, webhook_id: i64, query: DeliveryQuery) -> Result<Vec<Delivery>> {
        self.get(webhook_id).await?;
        let limit = query.limit.unwrap_or(50).clamp(1, 200);
        self.db
            .read(move |r| {
                Ok(store::list_deliveries(
                    r.connection(),
                    webhook_id,
                    query.status,
                    query.before_id,
                    limit,
                ))
            })
            .await?
    }

    /// One delivery with its attempts.
    pub async fn delivery(&self, webhook_id: i64, delivery_id: i64) -> Result<Delivery> {
        let d = self
            .db
            .read(move |r| Ok(store::get_delivery(r.connection(), webhook_id, delivery_id)))
            .await??;
        found(d, "delivery", delivery_id)
    }

    /// Makes a delivery due now for one manual attempt (same `webhook-id`); the worker
    /// sends it. Refused while the webhook is disabled or the delivery is being sent.
    pub async fn retry(&self, webhook_id: i64, delivery_id: i64) -> Result<Delivery> {
        let webhook = self.get(webhook_id).await?;
        if !webhook.enabled {
            return Err(Error::WebhookDisabled { id: webhook_id });
        }
        self.db
            .write_with(move |tx| {
                let conn = tx.connection();
                let delivery = found(
                    store::get_delivery(conn, webhook_id, delivery_id)?,
                    "delivery",
                    delivery_id,
                )?;
                if !store::schedule_manual(
                    conn,
                    webhook_id,
                    delivery_id,
                    OffsetDateTime::now_utc(),
                )? {
                    return Err(Error::InFlight { id: delivery.id });
                }
                found(
                    store::get_delivery(conn, webhook_id, delivery_id)?,
                    "delivery",
                    delivery_id,
                )
            })
            .await
    }

    /// Re-enqueues the failed deliveries created in `[since, until]` for one manual attempt
    /// each.
    pub async fn recover(&self, webhook_id: i64, req: RecoverRequest) -> Result<RecoverResponse> {
        let webhook = self.get(webhook_id).await?;
        if !webhook.enabled {
            return Err(Error::WebhookDisabled { id: webhook_id });
        }
        let now = OffsetDateTime::now_utc();
        let until = req.until.unwrap_or(now);
        if until < req.since {
            return Err(Error::invalid("until", "must not be before since"));
        }
        let recovered = self
            .db
            .write_with(move |tx| {
                store::recover(tx.connection(), webhook_id, req.since, until, now)
            })
            .await?;
        Ok(RecoverResponse { recovered })
    }

    /// Rows waiting in the outboxes: `(webhook deliveries, Telegram messages)` pending, for
    /// the daemon's `/ready` and for operators (the workers also export them as the
    /// `delivery_outbox_depth` gauge).
    pub async fn outbox_depth(&self) -> Result<(u64, u64)> {
        let (webhooks, telegram) = self
            .db
            .read(|r| {
                let conn = r.connection();
                Ok((
                    store::pending_deliveries(conn),
                    store::pending_telegram(conn),
                ))
            })
            .await?;
        let count = |n: i64| u64::try_from(n).unwrap_or(0);
        Ok((count(webhooks?), count(telegram?)))
    }

    fn check_url(&self, url: &str) -> Result<String> {
        Ok(self.guard.check_url(url.trim())?.to_string())
    }
}

/// Checks a webhook's event-type patterns: 1..=[`MAX_EVENT_TYPES`] of them, each `*` or an
/// event name whose segments may contain `*`.
pub fn check_event_types(types: Vec<String>) -> Result<Vec<String>> {
    if types.is_empty() {
        return Err(Error::invalid(
            "event_types",
            "must list at least one pattern (\"*\" for all)",
        ));
    }
    if types.len() > MAX_EVENT_TYPES {
        return Err(Error::invalid(
            "event_types",
            format!("at most {MAX_EVENT_TYPES} patterns"),
        ));
    }
    for t in &types {
        if t == "*" {
            continue;
        }
        // A pattern is an event name whose segments may be `*` (or end in `*`).
        let probe = t.replace('*', "x");
        validate_event_name(&probe)
            .map_err(|e| Error::invalid("event_types", format!("{t:?}: {}", e.message)))?;
    }
    Ok(types)
}

fn check_description(d: String) -> Result<String> {
    if d.chars().count() > MAX_DESCRIPTION {
        return Err(Error::invalid(
            "description",
            format!("at most {MAX_DESCRIPTION} characters"),
        ));
    }
    Ok(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_type_patterns_are_checked() {
        assert!(check_event_types(vec!["*".into(), "job.*".into(), "a.*.c".into()]).is_ok());
        assert!(check_event_types(vec![]).is_err());
        for bad in ["Job.*", "job", "job..x", ""] {
            assert!(check_event_types(vec![bad.into()]).is_err(), "{bad:?}");
        }
    }
}
