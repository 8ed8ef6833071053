//! [`BroadcastSink`]: a ready-made [`PushSink`] that forwards to a `tokio::sync::broadcast`.

use std::sync::Arc;

use events_envelope::EventEnvelope;
use events_pipeline::NotificationPush;
use tokio::sync::broadcast;

use crate::processor::PushSink;

/// One committed change, as broadcast by [`BroadcastSink`].
#[derive(Debug, Clone)]
pub enum PushMessage {
    /// A notification was created or changed.
    Notification(NotificationPush),
    /// An event was appended to the log.
    Event {
        /// Its sequence number in the event log.
        seq: i64,
        /// The event.
        event: Arc<EventEnvelope>,
    },
}

/// Forwards pushes to a bounded broadcast channel; never blocks. A receiver that falls
/// more than `capacity` messages behind gets `RecvError::Lagged` and should resync over
/// REST (the API closes such WebSocket clients with 1013).
#[derive(Debug, Clone)]
pub struct BroadcastSink {
    sender: broadcast::Sender<PushMessage>,
}

impl BroadcastSink {
    /// A sink with room for `capacity` messages per receiver.
    pub fn new(capacity: usize) -> Self {
        let (sender, _) = broadcast::channel(capacity.max(1));
        Self { sender }
    }

    /// A new receiver of everything pushed from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<PushMessage> {
        self.sender.subscribe()
    }
}

impl PushSink for BroadcastSink {
    fn notification(&self, push: &NotificationPush) {
        // no receiver is not an error: nobody is listening right now
        let _ = self.sender.send(PushMessage::Notification(push.clone()));
    }

    fn event(&self, seq: i64, event: &EventEnvelope) {
        let _ = self.sender.send(PushMessage::Event {
            seq,
            event: Arc::new(event.clone()),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forwards_without_receivers_and_to_subscribers() {
        let sink = BroadcastSink::new(4);
        let event = EventEnvelope::new("a.b", "test");
        sink.event(1, &event); // nobody listening: fine
        let mut rx = sink.subscribe();
        sink.event(2, &event);
        sink.notification(&NotificationPush {
            notification_id: 7,
            event_type: "a.b".into(),
            was_created: true,
            is_meaningful: true,
        });
        assert!(matches!(
            rx.try_recv(),
            Ok(PushMessage::Event { seq: 2, .. })
        ));
        assert!(
            matches!(rx.try_recv(), Ok(PushMessage::Notification(p)) if p.notification_id == 7)
        );
        assert!(rx.try_recv().is_err());
    }
}
