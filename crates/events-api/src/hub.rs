//! The push hub: fans committed events and notification changes out to WebSocket and SSE
//! clients.
//!
//! The processor calls the hub after a batch commits (it is the processor's [`PushSink`]),
//! in commit order:
//!
//! - an event (`seq`, envelope) is serialised once and sent on a `tokio::sync::broadcast`
//!   channel right there — non-blocking, and in `seq` order, which SSE resume relies on;
//! - a notification change only records the id and wakes the hub's own task, which
//!   broadcasts the row (deduplicated per wake-up), so the processor never waits for a
//!   database read. While anyone listens, the processor reads the rows of its batch inside
//!   the batch's own transaction ([`PushSink::wants_notification_rows`]) and the hub sends
//!   those as they are, unless another commit came after them; otherwise it fetches the
//!   row from storage.
//!
//! Each connection holds a receiver: the channel's capacity is the per-connection queue
//! bound, and a receiver that falls behind it gets `Lagged` — the WebSocket handler then
//! closes with 1013, the SSE stream catches up from the log. Sending never blocks on a slow
//! receiver.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use axum::extract::ws::Utf8Bytes;
use events_envelope::EventEnvelope;
use events_pipeline::NotificationPush;
use events_processor::{CommittedRow, PushSink};
use events_storage::{EventDb, Notification};
use serde::Serialize;
use tokio::sync::{Notify, broadcast};
use tokio_util::sync::CancellationToken;

/// Default per-connection queue bound (pushes a client may fall behind before it is dropped).
pub const DEFAULT_QUEUE_CAPACITY: usize = 4096;
/// Largest number of notification changes the hub keeps waiting for its task; beyond that
/// pushes are dropped (counted in `events_push_dropped_total`) — clients resync over REST.
const MAX_PENDING_NOTIFICATIONS: usize = 100_000;
/// Queue length up to which a change keeps the row its committer handed over. A hub that far
/// behind a burst would send those rows only after later commits (so it reads them again
/// anyway), and a full queue of rows is ~100 MB where a queue of ids is ~3 MB.
const MAX_PENDING_WITH_ROWS: usize = 4096;
/// Most notification rows one wake-up reads on the hub task's own thread (a lookup by
/// primary key each, microseconds); more go to a blocking thread.
const INLINE_FETCH_ROWS: u64 = 64;

/// What a push is about, for routing to subscribers without parsing its JSON.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PushKind {
    /// A committed event with its log position and type.
    Event {
        /// Position in the event log.
        seq: i64,
        /// The event's type, matched against `events:<glob>` topics and SSE `type` filters.
        event_type: String,
    },
    /// A notification was created or updated.
    Notification,
}

/// One push, serialised once for every connection.
#[derive(Debug, Clone)]
pub struct Push {
    /// Routing information.
    pub kind: PushKind,
    /// The message exactly as sent on the wire (WS text frame, SSE `data:`).
    pub json: Utf8Bytes,
}

/// A notification change reported by the processor after commit.
#[derive(Debug, Clone)]
pub struct NotificationChange {
    /// The row that changed.
    pub notification_id: i64,
    /// Whether it was created (else updated).
    pub was_created: bool,
    /// The row as the change committed it, when the committer had it at hand; `None` makes
    /// the hub read it.
    pub row: Option<CommittedRow>,
}

#[derive(Serialize)]
struct EventPushJson<'a> {
    r#type: &'static str,
    seq: i64,
    epoch: &'a str,
    event: &'a EventEnvelope,
}

#[derive(Serialize)]
struct NotificationPushJson<'a> {
    r#type: &'static str,
    notification: &'a Notification,
    epoch: &'a str,
}

/// Serialises an event push: `{"type":"event","seq","epoch","event"}`.
pub fn event_push_json(seq: i64, epoch: &str, event: &EventEnvelope) -> String {
    // Serialising a struct of plain data into a String cannot fail.
    serde_json::to_string(&EventPushJson {
        r#type: "event",
        seq,
        epoch,
        event,
    })
    .unwrap_or_default()
}

struct Inner {
    /// Event pushes (WS `events:<glob>` topics, SSE).
    events: broadcast::Sender<Arc<Push>>,
    /// Notification pushes (WS `notifications` topic). A channel of its own so that a
    /// connection subscribed to one kind is never woken for the other: with 20,000
    /// notification subscribers every event push used to cost 20,000 task wake-ups.
    notifications: broadcast::Sender<Arc<Push>>,
    pending: Mutex<Vec<NotificationChange>>,
    wake: Notify,
    epoch: Arc<str>,
    published_seq: AtomicI64,
    dropped: AtomicU64,
}

/// Fans pushes out to connections; cheap to clone.
#[derive(Clone)]
pub struct PushHub {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for PushHub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PushHub")
            .field("epoch", &self.inner.epoch)
            .field("published_seq", &self.published_seq())
            .field("event_receivers", &self.inner.events.receiver_count())
            .field(
                "notification_receivers",
                &self.inner.notifications.receiver_count(),
            )
            .finish()
    }
}

impl PushHub {
    /// A hub for the database with `epoch` whose log has been published up to `start_seq`
    /// (normally the log's current maximum: clients that want older events replay them).
    /// `capacity` is the per-connection queue bound.
    pub fn new(epoch: impl Into<Arc<str>>, start_seq: i64, capacity: usize) -> Self {
        let (events, _) = broadcast::channel(capacity.max(1));
        let (notifications, _) = broadcast::channel(capacity.max(1));
        Self {
            inner: Arc::new(Inner {
                events,
                notifications,
                pending: Mutex::new(Vec::new()),
                wake: Notify::new(),
                epoch: epoch.into(),
                published_seq: AtomicI64::new(start_seq),
                dropped: AtomicU64::new(0),
            }),
        }
    }

    /// The database identity carried by every push.
    pub fn epoch(&self) -> &str {
        &self.inner.epoch
    }

    /// The highest event `seq` already sent to subscribers.
    pub fn published_seq(&self) -> i64 {
        self.inner.published_seq.load(Ordering::Acquire)
    }

    /// A new receiver of event pushes; it sees every event published from now on.
    pub fn subscribe_events(&self) -> broadcast::Receiver<Arc<Push>> {
        self.inner.events.subscribe()
    }

    /// A new receiver of notification pushes; it sees every one sent from now on.
    pub fn subscribe_notifications(&self) -> broadcast::Receiver<Arc<Push>> {
        self.inner.notifications.subscribe()
    }

    /// Pushes dropped because the hub's own work queue was full.
    pub fn dropped(&self) -> u64 {
        self.inner.dropped.load(Ordering::Relaxed)
    }

    /// Called after a batch commits: records the notification changes and wakes the hub
    /// task, which also picks up the batch's events from the log. Never blocks on I/O.
    ///
    /// Nobody subscribed to notifications: nothing is recorded. The hub task would drop the
    /// changes anyway (a client that connects later resyncs over REST), and this runs on
    /// the storage writer's thread after every commit — in `e2e`, with no client at all,
    /// queuing and waking for nothing was ~1 % of the writer.
    pub fn committed(&self, changes: impl IntoIterator<Item = NotificationChange>) {
        if self.inner.notifications.receiver_count() == 0 {
            return;
        }
        {
            let mut pending = self
                .inner
                .pending
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            for mut change in changes {
                if pending.len() >= MAX_PENDING_NOTIFICATIONS {
                    self.inner.dropped.fetch_add(1, Ordering::Relaxed);
                    metrics::counter!("events_push_dropped_total").increment(1);
                } else {
                    if pending.len() >= MAX_PENDING_WITH_ROWS {
                        change.row = None;
                    }
                    pending.push(change);
                }
            }
        }
        self.inner.wake.notify_one();
    }

    fn send(&self, push: Push) {
        let channel = match push.kind {
            PushKind::Event { .. } => &self.inner.events,
            PushKind::Notification => &self.inner.notifications,
        };
        // No receivers is not an error: nobody is listening right now.
        let _ = channel.send(Arc::new(push));
    }

    /// Publishes a committed event (called in `seq` order by the processor).
    pub fn publish_event(&self, seq: i64, event: &EventEnvelope) {
        // Nobody listening: skip the serialisation, but remember how far the log went.
        if self.inner.events.receiver_count() > 0 {
            let json = event_push_json(seq, self.epoch(), event);
            self.send(Push {
                kind: PushKind::Event {
                    seq,
                    event_type: event.event.clone(),
                },
                json: Utf8Bytes::from(json),
            });
        }
        self.inner.published_seq.fetch_max(seq, Ordering::AcqRel);
    }

    /// Runs the hub task until `shutdown`: fetches changed notifications from `db` and
    /// broadcasts them.
    pub async fn run(self, db: EventDb, shutdown: CancellationToken) {
        loop {
            tokio::select! {
                () = shutdown.cancelled() => break,
                () = self.inner.wake.notified() => {}
            }
            let changes = std::mem::take(
                &mut *self
                    .inner
                    .pending
                    .lock()
                    .unwrap_or_else(|poisoned| poisoned.into_inner()),
            );
            if !changes.is_empty() {
                self.publish_notifications(&db, changes).await;
            }
        }
    }

    async fn publish_notifications(&self, db: &EventDb, changes: Vec<NotificationChange>) {
        // Nobody listening: nothing to fetch (a client connecting later resyncs over REST).
        if self.inner.notifications.receiver_count() == 0 {
            return;
        }
        // One push per row per wake-up, with the newest state: the row the last change
        // brought, if it is still current — no commit since the one that read it (a PATCH
        // through the API committed after it would otherwise be overwritten on the clients
        // by an older row) — else the row as stored now.
        let mut by_id: BTreeMap<i64, (bool, Option<CommittedRow>)> = BTreeMap::new();
        for change in changes {
            let entry = by_id.entry(change.notification_id).or_default();
            entry.0 |= change.was_created;
            entry.1 = change.row;
        }
        let current = db.commit_count();
        let mut rows = Vec::with_capacity(by_id.len());
        let mut missing = BTreeMap::new();
        for (id, (created, row)) in by_id {
            match row {
                Some(row) if row.commit == current => {
                    rows.push((id, created, Some(row.notification)));
                }
                _ => {
                    missing.insert(id, created);
                }
            }
        }
        if !missing.is_empty()
            && let Some(fetched) = self.fetch(db, missing).await
        {
            rows.extend(fetched);
            rows.sort_unstable_by_key(|(id, ..)| *id);
        }
        self.publish_rows(rows);
    }

    /// Reads the rows of `ids` (id → created) now; `None` if storage failed (the pushes are
    /// dropped and counted).
    async fn fetch(
        &self,
        db: &EventDb,
        by_id: BTreeMap<i64, bool>,
    ) -> Option<Vec<(i64, bool, Option<Arc<Notification>>)>> {
        // All rows of this wake-up in one read (one pooled connection), not one read per
        // notification. A few rows (the common case at any rate a client can follow) are
        // read on this task's thread: the hand-off to a blocking thread and back cost more
        // than the reads and sat between every commit and its push. A large wake-up (a
        // burst of thousands) goes to a blocking thread so that it never stalls the runtime.
        let lost = by_id.len() as u64;
        metrics::counter!("events_push_rows_read_total").increment(lost);
        let fetch = move |r: &events_storage::Reader<'_>| {
            by_id
                .into_iter()
                .map(|(id, created)| Ok((id, created, r.get_notification(id)?.map(Arc::new))))
                .collect::<Result<Vec<_>, _>>()
        };
        let rows = if lost <= INLINE_FETCH_ROWS {
            db.read_now(fetch).await
        } else {
            db.read(fetch).await
        };
        match rows {
            Ok(rows) => Some(rows),
            Err(err) => {
                self.inner.dropped.fetch_add(lost, Ordering::Relaxed);
                metrics::counter!("events_push_dropped_total").increment(lost);
                tracing::warn!(count = lost, error = %err, "cannot read notifications for their pushes; dropped");
                None
            }
        }
    }

    fn publish_rows(&self, rows: Vec<(i64, bool, Option<Arc<Notification>>)>) {
        for (id, created, row) in rows {
            let Some(notification) = row else {
                tracing::debug!(id, "notification gone before its push was sent");
                continue;
            };
            let kind = if created {
                "notification_created"
            } else {
                "notification_updated"
            };
            let json = serde_json::to_string(&NotificationPushJson {
                r#type: kind,
                notification: &notification,
                epoch: self.epoch(),
            })
            .unwrap_or_default();
            self.send(Push {
                kind: PushKind::Notification,
                json: Utf8Bytes::from(json),
            });
        }
    }
}

impl PushSink for PushHub {
    fn notification(&self, push: &NotificationPush) {
        self.committed([NotificationChange {
            notification_id: push.notification_id,
            was_created: push.was_created,
            row: None,
        }]);
    }

    fn wants_notification_rows(&self) -> bool {
        self.inner.notifications.receiver_count() > 0
    }

    fn notification_with_row(&self, push: &NotificationPush, row: &CommittedRow) {
        self.committed([NotificationChange {
            notification_id: push.notification_id,
            was_created: push.was_created,
            row: Some(row.clone()),
        }]);
    }

    fn event(&self, seq: i64, event: &EventEnvelope) {
        self.publish_event(seq, event);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use events_storage::NewNotification;

    async fn db_with_one_notification() -> (EventDb, Notification) {
        let db = EventDb::open_in_memory().await.expect("db");
        let id = db
            .write(|tx| {
                tx.insert_notification(&NewNotification {
                    event_type: "todo_created".into(),
                    source: "test".into(),
                    description: "as stored".into(),
                    ..NewNotification::default()
                })
            })
            .await
            .expect("insert");
        let row = db.get_notification(id).await.expect("get").expect("row");
        (db, row)
    }

    async fn published_description(
        hub: &PushHub,
        db: &EventDb,
        receiver: &mut broadcast::Receiver<Arc<Push>>,
        change: NotificationChange,
    ) -> String {
        hub.publish_notifications(db, vec![change]).await;
        let push = receiver.try_recv().expect("one push");
        let json: serde_json::Value = serde_json::from_str(push.json.as_str()).expect("json");
        json["notification"]["description"]
            .as_str()
            .expect("description")
            .to_owned()
    }

    /// A row handed over by the committer is sent as it is while no commit came after it
    /// (the stored row says something else here, so a read would show), and read again
    /// from storage once one did (a PATCH committed after the batch must not be overwritten
    /// on the clients by the batch's older row).
    #[tokio::test]
    async fn committed_rows_are_sent_while_current_and_read_again_after_a_later_commit() {
        let (db, stored) = db_with_one_notification().await;
        let hub = PushHub::new("epoch", 0, 16);
        let mut receiver = hub.subscribe_notifications();
        let handed_over = |commit| NotificationChange {
            notification_id: stored.id,
            was_created: true,
            row: Some(CommittedRow {
                notification: Arc::new(Notification {
                    description: "as committed".into(),
                    ..stored.clone()
                }),
                commit,
            }),
        };
        let current = db.commit_count();
        assert_eq!(
            published_description(&hub, &db, &mut receiver, handed_over(current)).await,
            "as committed"
        );
        assert_eq!(
            published_description(&hub, &db, &mut receiver, handed_over(current - 1)).await,
            "as stored"
        );
        let without_row = NotificationChange {
            row: None,
            ..handed_over(current)
        };
        assert_eq!(
            published_description(&hub, &db, &mut receiver, without_row).await,
            "as stored"
        );
    }

    /// Behind a long queue the hub keeps ids, not rows: the memory of a queue that far
    /// behind stays that of ids, and the pushes still carry the stored rows.
    #[tokio::test]
    async fn a_long_queue_keeps_ids_not_rows() {
        let (db, stored) = db_with_one_notification().await;
        let hub = PushHub::new("epoch", 0, 16);
        let _listening = hub.subscribe_notifications();
        let change = || NotificationChange {
            notification_id: stored.id,
            was_created: false,
            row: Some(CommittedRow {
                notification: Arc::new(stored.clone()),
                commit: db.commit_count(),
            }),
        };
        hub.committed((0..MAX_PENDING_WITH_ROWS + 10).map(|_| change()));
        let pending = hub.inner.pending.lock().expect("lock");
        assert_eq!(pending.len(), MAX_PENDING_WITH_ROWS + 10);
        assert!(
            pending[..MAX_PENDING_WITH_ROWS]
                .iter()
                .all(|c| c.row.is_some())
        );
        assert!(
            pending[MAX_PENDING_WITH_ROWS..]
                .iter()
                .all(|c| c.row.is_none())
        );
    }

    /// With no notification subscriber a commit's changes are not queued (nor the hub task
    /// woken); once someone subscribes they are.
    #[test]
    fn changes_are_queued_only_while_someone_listens() {
        let hub = PushHub::new("epoch", 0, 16);
        let change = |id| NotificationChange {
            notification_id: id,
            was_created: true,
            row: None,
        };
        let pending = |hub: &PushHub| -> Vec<i64> {
            let pending = hub.inner.pending.lock().expect("lock");
            pending.iter().map(|c| c.notification_id).collect()
        };
        hub.committed([change(1)]);
        assert!(pending(&hub).is_empty());
        let listening = hub.subscribe_notifications();
        hub.committed([change(2)]);
        assert_eq!(pending(&hub), vec![2]);
        drop(listening);
        hub.committed([change(3)]);
        assert_eq!(pending(&hub), vec![2]);
        // an event subscriber alone does not make notification changes worth queuing
        let _events = hub.subscribe_events();
        hub.committed([change(4)]);
        assert_eq!(pending(&hub), vec![2]);
    }

    /// A connection subscribed to one kind of push must never be woken for the other: the
    /// fan-out cost of an event push would otherwise be paid by every notification client.
    #[test]
    fn each_kind_of_push_has_its_own_channel() {
        let hub = PushHub::new("epoch", 0, 16);
        let mut notifications = hub.subscribe_notifications();
        let mut events = hub.subscribe_events();
        hub.publish_event(1, &EventEnvelope::new("job.completed", "test"));
        assert!(matches!(
            notifications.try_recv(),
            Err(broadcast::error::TryRecvError::Empty)
        ));
        let push = events.try_recv().expect("event push");
        assert!(matches!(push.kind, PushKind::Event { seq: 1, .. }));
        assert_eq!(hub.published_seq(), 1);

        hub.send(Push {
            kind: PushKind::Notification,
            json: Utf8Bytes::from_static("{}"),
        });
        assert!(notifications.try_recv().is_ok());
        assert!(matches!(
            events.try_recv(),
            Err(broadcast::error::TryRecvError::Empty)
        ));
    }
}
