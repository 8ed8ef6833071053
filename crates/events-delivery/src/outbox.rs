//! [`OutboxCartridge`]: writes delivery jobs inside the processor's batch transaction.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use events_envelope::{EventEnvelope, EventLevel, glob_match};
use events_pipeline::{Cartridge, CartridgeError, LocalBoxFuture, PipelineContext};
use time::OffsetDateTime;

use crate::error::Result;
use crate::store::{self, NewDelivery};
use crate::telegram::format::format_notification;

/// Where notifications for Telegram are queued (the part of
/// [`TelegramConfig`](crate::TelegramConfig) the outbox needs).
#[derive(Debug, Clone)]
pub struct TelegramRoute {
    /// Chat to queue for.
    pub chat_id: String,
    /// Only notifications created at this level or above.
    pub min_level: EventLevel,
    /// A queued row becomes due this long after it was written (the batching window).
    pub batch_window: Duration,
}

impl From<&crate::TelegramConfig> for TelegramRoute {
    fn from(c: &crate::TelegramConfig) -> Self {
        Self {
            chat_id: c.chat_id.clone(),
            min_level: c.min_level,
            batch_window: Duration::from_millis(c.batch_window_ms),
        }
    }
}

/// The last cartridge of the pipeline: for each event it writes one delivery per enabled
/// webhook whose `event_types` match, and for each notification the event *created* at
/// level ≥ `min_level` a Telegram outbox row — in the batch transaction, so the jobs become
/// durable in the same commit as the projection and a crash loses or duplicates none.
///
/// It never drops or changes the event. Put it last so dropped duplicates (dedup) are not
/// delivered and so the projector's pushes are visible.
#[derive(Debug, Clone, Default)]
pub struct OutboxCartridge {
    telegram: Option<TelegramRoute>,
    /// The enabled webhooks as read by the last transaction that asked (see
    /// [`SubscriptionsCache`]); shared by clones.
    subscriptions: Arc<Mutex<SubscriptionsCache>>,
}

/// Enabled webhooks and their `event_types` patterns.
type Subscriptions = Arc<Vec<(i64, Vec<String>)>>;

/// The enabled webhooks read in one write transaction, for the other events of its batch.
///
/// Reading (and JSON-decoding) every webhook's patterns for every event was a statement per
/// event on the writer thread, and grows with the number of webhooks. Inside one
/// transaction the table cannot change under the batch (the pipeline does not write it), so
/// the list is read once per transaction, keyed by [`WriteTx::transaction_id`]
/// (`events_storage::WriteTx`), which no other transaction shares — a change committed
/// between two batches is seen by the next one.
#[derive(Debug, Default)]
struct SubscriptionsCache {
    transaction_id: u64,
    subscriptions: Subscriptions,
}

/// Webhook body: the Standard Webhooks shape `{type, timestamp, data}` with the envelope
/// as `data`.
pub fn webhook_body(event: &EventEnvelope) -> Result<String> {
    let timestamp = event
        .timestamp
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default();
    Ok(serde_json::to_string(&serde_json::json!({
        "type": event.event,
        "timestamp": timestamp,
        "data": event,
    }))?)
}

/// A new `webhook-id`: `msg_` + a UUIDv7, unique across databases (a recreated database
/// restarts row ids; receivers that dedupe must not drop new messages as old ones).
pub(crate) fn new_msg_id() -> String {
    format!("msg_{}", uuid::Uuid::now_v7().simple())
}

impl OutboxCartridge {
    /// Webhooks only.
    pub fn new() -> Self {
        Self::default()
    }

    /// Also queue Telegram messages.
    pub fn with_telegram(mut self, route: TelegramRoute) -> Self {
        self.telegram = Some(route);
        self
    }

    /// Writes the jobs for one event through `conn` (the batch transaction). Public so a
    /// caller without a pipeline can enqueue too; returns how many webhook deliveries.
    pub fn enqueue(
        &self,
        conn: &events_storage::rusqlite::Connection,
        event: &EventEnvelope,
        created_notifications: &[i64],
        now: OffsetDateTime,
    ) -> Result<usize> {
        let subscriptions = store::enabled_subscriptions(conn)?;
        self.enqueue_for(conn, &subscriptions, event, created_notifications, now)
    }

    /// The enabled webhooks as of the transaction `tx` (read once per transaction).
    fn subscriptions(&self, tx: &events_storage::WriteTx<'_>) -> Result<Subscriptions> {
        let mut cache = self
            .subscriptions
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if cache.transaction_id != tx.transaction_id() {
            *cache = SubscriptionsCache {
                transaction_id: tx.transaction_id(),
                subscriptions: Arc::new(store::enabled_subscriptions(tx.connection())?),
            };
        }
        Ok(Arc::clone(&cache.subscriptions))
    }

    fn enqueue_for(
        &self,
        conn: &events_storage::rusqlite::Connection,
        subscriptions: &[(i64, Vec<String>)],
        event: &EventEnvelope,
        created_notifications: &[i64],
        now: OffsetDateTime,
    ) -> Result<usize> {
        let mut deliveries = 0;
        let mut body = None;
        for &(webhook_id, ref patterns) in subscriptions {
            if !patterns.iter().any(|p| glob_match(p, &event.event)) {
                continue;
            }
            let body = match &body {
                Some(b) => b,
                None => body.insert(webhook_body(event)?),
            };
            let msg_id = new_msg_id();
            let new = NewDelivery {
                webhook_id,
                msg_id: &msg_id,
                event_id: Some(&event.id),
                event_type: &event.event,
                payload: body,
            };
            if store::insert_delivery(conn, &new, now)? {
                deliveries += 1;
            }
        }
        if let Some(route) = &self.telegram
            && event.level >= route.min_level
            && !created_notifications.is_empty()
        {
            let text = format_notification(event);
            let due = now + route.batch_window;
            for id in created_notifications {
                store::insert_telegram(conn, Some(*id), &route.chat_id, &text, now, due)?;
            }
        }
        Ok(deliveries)
    }
}

impl Cartridge for OutboxCartridge {
    fn name(&self) -> &str {
        "delivery-outbox"
    }

    fn process<'a>(
        &'a self,
        event: EventEnvelope,
        ctx: &'a mut PipelineContext<'_, '_>,
    ) -> LocalBoxFuture<'a, events_pipeline::Result<Option<EventEnvelope>>> {
        Box::pin(async move {
            // The context is per event, so its pushes are this event's projections.
            let created: Vec<i64> = ctx
                .pushes
                .iter()
                .filter(|p| p.was_created)
                .map(|p| p.notification_id)
                .collect();
            let failed = |e: crate::Error| CartridgeError::failed(self.name(), e.to_string());
            let subscriptions = self.subscriptions(ctx.tx).map_err(failed)?;
            self.enqueue_for(
                ctx.tx.connection(),
                &subscriptions,
                &event,
                &created,
                OffsetDateTime::now_utc(),
            )
            .map_err(failed)?;
            Ok(Some(event))
        })
    }
}
