//! [`MemoryBus`]: an in-process bus implementing [`Producer`], for tests and single-process apps.

use std::{
    collections::VecDeque,
    error::Error as StdError,
    fmt,
    future::Future,
    sync::{
        Arc, Mutex, MutexGuard,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use events_envelope::{EventEnvelope, glob_match};
use tokio::sync::{Notify, mpsc};

use crate::{
    EmitReceipt, Producer, Result,
    producer::{BoxFuture, validate_events},
};

/// The error a subscription handler may return; it is logged, never propagated.
pub type HandlerError = Box<dyn StdError + Send + Sync>;

type Handler =
    Arc<dyn Fn(EventEnvelope) -> BoxFuture<'static, Result<(), HandlerError>> + Send + Sync>;

/// Identifies a subscription, for [`MemoryBus::unsubscribe`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SubscriptionId(u64);

/// Settings of a [`MemoryBus`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemoryBusConfig {
    /// How many published events [`MemoryBus::published_events`] remembers; `None` = all.
    ///
    /// Tests want everything; a long-running app should set a bound.
    pub history_limit: Option<usize>,
    /// Payload size limit enforced on emit, as for the other producers; default 256 KiB.
    pub max_payload_bytes: usize,
}

impl Default for MemoryBusConfig {
    fn default() -> Self {
        Self {
            history_limit: None,
            max_payload_bytes: events_envelope::DEFAULT_MAX_PAYLOAD_BYTES,
        }
    }
}

/// A [`MemoryBus::wait_for`] / [`MemoryBus::wait_idle`] that ran out of time.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("timed out after {timeout:?}: {detail}")]
pub struct WaitTimeout {
    /// The bound that elapsed.
    pub timeout: Duration,
    /// What was still missing.
    pub detail: String,
}

/// An in-process event bus: emit events, subscribe handlers by event-type glob.
///
/// **Delivery model.** Every subscription has its own Tokio task fed by an unbounded
/// channel. `emit` validates the event, records it, and enqueues it for each matching
/// subscriber under one lock, so every subscriber sees events in publish order (also with
/// concurrent emitters), and `emit` never waits for a handler. A slow handler delays only its
/// own subscription. The price is that handlers run *after* `emit` returns: tests use
/// [`wait_idle`](Self::wait_idle) (all handlers done) or [`wait_for`](Self::wait_for)
/// (enough events published) instead of assuming synchronous dispatch.
///
/// A handler's `Err` — or panic — is logged with `tracing::warn!` and the subscription carries
/// on with the next event; other subscriptions are unaffected.
///
/// Clones share the same bus.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// use std::time::Duration;
/// use events_envelope::EventEnvelope;
/// use events_producer::{MemoryBus, Producer};
///
/// let bus = MemoryBus::new();
/// bus.subscribe("job.*", |event: EventEnvelope| async move {
///     println!("{} from {}", event.event, event.source);
///     Ok::<_, std::convert::Infallible>(())
/// });
/// bus.emit(EventEnvelope::new("job.started", "docs")).await.unwrap();
/// bus.wait_idle(Duration::from_secs(5)).await.unwrap();
/// assert_eq!(bus.events_of_type("job.*").len(), 1);
/// # }
/// ```
#[derive(Clone, Default)]
pub struct MemoryBus {
    inner: Arc<Inner>,
}

#[derive(Default)]
struct Inner {
    config: MemoryBusConfig,
    state: Mutex<State>,
    /// Events enqueued to a subscriber and not yet handled.
    in_flight: Arc<AtomicUsize>,
    /// Woken on every publish and every handled event: what the `wait_*` helpers sleep on.
    changed: Arc<Notify>,
}

#[derive(Default)]
struct State {
    /// Stream ids are `N-0` with N counting from 1; never reset, so ids stay unique.
    last_seq: u64,
    next_subscription: u64,
    history: VecDeque<EventEnvelope>,
    subscribers: Vec<Subscriber>,
}

struct Subscriber {
    id: SubscriptionId,
    /// `None` = every event.
    pattern: Option<String>,
    tx: mpsc::UnboundedSender<EventEnvelope>,
}

impl fmt::Debug for MemoryBus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.inner.lock();
        f.debug_struct("MemoryBus")
            .field("published", &state.last_seq)
            .field("history", &state.history.len())
            .field("subscribers", &state.subscribers.len())
            .field("in_flight", &self.inner.in_flight.load(Ordering::Acquire))
            .finish()
    }
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, State> {
        // Nothing in `State` can be left half-updated by a panic in this module's own
        // code paths, so recovering from poisoning is sound.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl MemoryBus {
    /// A bus that keeps every published event (right for tests).
    pub fn new() -> Self {
        Self::default()
    }

    /// A bus with explicit settings.
    pub fn with_config(config: MemoryBusConfig) -> Self {
        Self {
            inner: Arc::new(Inner {
                config,
                ..Inner::default()
            }),
        }
    }

    /// Calls `handler` for every event whose type matches `pattern`
    /// ([`glob_match`]: `job.*`, `*.failed`, `a.*.c`; `*` also spans dots).
    ///
    /// # Panics
    ///
    /// Outside a Tokio runtime, like `tokio::spawn`: the subscription runs on its own task.
    pub fn subscribe<F, Fut, E>(&self, pattern: &str, handler: F) -> SubscriptionId
    where
        F: Fn(EventEnvelope) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), E>> + Send + 'static,
        E: Into<HandlerError>,
    {
        self.add_subscriber(Some(pattern.to_owned()), handler)
    }

    /// Calls `handler` for every event.
    ///
    /// # Panics
    ///
    /// Outside a Tokio runtime, like `tokio::spawn`.
    pub fn subscribe_all<F, Fut, E>(&self, handler: F) -> SubscriptionId
    where
        F: Fn(EventEnvelope) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), E>> + Send + 'static,
        E: Into<HandlerError>,
    {
        self.add_subscriber(None, handler)
    }

    /// Stops a subscription: events already queued for it are still handled, later ones are
    /// not. Returns `false` if it was not subscribed (any more).
    pub fn unsubscribe(&self, id: SubscriptionId) -> bool {
        let mut state = self.inner.lock();
        let before = state.subscribers.len();
        // Dropping the sender ends the subscription's task once its queue is drained.
        state.subscribers.retain(|s| s.id != id);
        state.subscribers.len() != before
    }

    /// How many subscriptions are active.
    pub fn subscriber_count(&self) -> usize {
        self.inner.lock().subscribers.len()
    }

    /// Every event published since creation or the last [`clear`](Self::clear), oldest first
    /// (bounded by [`MemoryBusConfig::history_limit`]).
    pub fn published_events(&self) -> Vec<EventEnvelope> {
        self.inner.lock().history.iter().cloned().collect()
    }

    /// The published events whose type matches the glob `pattern`, oldest first.
    pub fn events_of_type(&self, pattern: &str) -> Vec<EventEnvelope> {
        self.inner
            .lock()
            .history
            .iter()
            .filter(|e| glob_match(pattern, &e.event))
            .cloned()
            .collect()
    }

    /// Forgets the published events (not the subscriptions). Stream ids keep counting up, so
    /// receipts stay unique across a clear.
    pub fn clear(&self) {
        self.inner.lock().history.clear();
    }

    /// Waits until at least `count` events are in the history, then returns them all.
    ///
    /// For code under test that emits from a background task.
    pub async fn wait_for(
        &self,
        count: usize,
        timeout: Duration,
    ) -> Result<Vec<EventEnvelope>, WaitTimeout> {
        let outcome = tokio::time::timeout(timeout, async {
            loop {
                let notified = self.inner.changed.notified();
                tokio::pin!(notified);
                // Register before checking, so a publish between check and await is not missed.
                notified.as_mut().enable();
                {
                    let state = self.inner.lock();
                    if state.history.len() >= count {
                        return state.history.iter().cloned().collect::<Vec<_>>();
                    }
                }
                notified.await;
            }
        })
        .await;
        outcome.map_err(|_| WaitTimeout {
            timeout,
            detail: format!(
                "{} of {count} events published",
                self.inner.lock().history.len()
            ),
        })
    }

    /// Waits until every subscription has handled every event published so far.
    pub async fn wait_idle(&self, timeout: Duration) -> Result<(), WaitTimeout> {
        let outcome = tokio::time::timeout(timeout, async {
            loop {
                let notified = self.inner.changed.notified();
                tokio::pin!(notified);
                notified.as_mut().enable();
                if self.inner.in_flight.load(Ordering::Acquire) == 0 {
                    return;
                }
                notified.await;
            }
        })
        .await;
        outcome.map_err(|_| WaitTimeout {
            timeout,
            detail: format!(
                "{} deliveries still pending",
                self.inner.in_flight.load(Ordering::Acquire)
            ),
        })
    }

    fn add_subscriber<F, Fut, E>(&self, pattern: Option<String>, handler: F) -> SubscriptionId
    where
        F: Fn(EventEnvelope) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), E>> + Send + 'static,
        E: Into<HandlerError>,
    {
        let handler: Handler = Arc::new(move |event| {
            let fut = handler(event);
            Box::pin(async move { fut.await.map_err(Into::into) })
        });
        let (tx, rx) = mpsc::unbounded_channel();
        let id = {
            let mut state = self.inner.lock();
            state.next_subscription += 1;
            let id = SubscriptionId(state.next_subscription);
            state.subscribers.push(Subscriber {
                id,
                pattern: pattern.clone(),
                tx,
            });
            id
        };
        let task = SubscriberTask {
            id,
            pattern: pattern.unwrap_or_else(|| "*".to_owned()),
            handler,
            rx,
            in_flight: Arc::clone(&self.inner.in_flight),
            changed: Arc::clone(&self.inner.changed),
        };
        tokio::spawn(task.run());
        id
    }

    fn publish(&self, events: Vec<EventEnvelope>) -> Result<Vec<EmitReceipt>> {
        validate_events(&events, self.inner.config.max_payload_bytes)?;
        let mut receipts = Vec::with_capacity(events.len());
        {
            let mut state = self.inner.lock();
            for event in events {
                state.last_seq += 1;
                receipts.push(EmitReceipt {
                    id: event.id.clone(),
                    stream_id: format!("{}-0", state.last_seq),
                });
                for subscriber in &state.subscribers {
                    let matches = subscriber
                        .pattern
                        .as_deref()
                        .is_none_or(|p| glob_match(p, &event.event));
                    if matches {
                        // Count before sending so `wait_idle` never sees a gap. A send only
                        // fails if the task is gone (runtime shut down): undo the count.
                        self.inner.in_flight.fetch_add(1, Ordering::AcqRel);
                        if subscriber.tx.send(event.clone()).is_err() {
                            self.inner.in_flight.fetch_sub(1, Ordering::AcqRel);
                        }
                    }
                }
                match self.inner.config.history_limit {
                    Some(0) => {}
                    Some(limit) => {
                        if state.history.len() >= limit {
                            state.history.pop_front();
                        }
                        state.history.push_back(event);
                    }
                    None => state.history.push_back(event),
                }
            }
        }
        self.inner.changed.notify_waiters();
        Ok(receipts)
    }
}

impl Producer for MemoryBus {
    fn max_payload_bytes(&self) -> usize {
        self.inner.config.max_payload_bytes
    }

    fn emit(&self, event: EventEnvelope) -> BoxFuture<'_, Result<EmitReceipt>> {
        let result = self
            .publish(vec![event])
            .map(|mut receipts| receipts.remove(0));
        Box::pin(std::future::ready(result))
    }

    fn emit_batch(&self, events: Vec<EventEnvelope>) -> BoxFuture<'_, Result<Vec<EmitReceipt>>> {
        Box::pin(std::future::ready(self.publish(events)))
    }
}

/// The task behind one subscription: handles its queue in order, one event at a time.
struct SubscriberTask {
    id: SubscriptionId,
    pattern: String,
    handler: Handler,
    rx: mpsc::UnboundedReceiver<EventEnvelope>,
    in_flight: Arc<AtomicUsize>,
    changed: Arc<Notify>,
}

impl SubscriberTask {
    async fn run(mut self) {
        while let Some(event) = self.rx.recv().await {
            let (event_type, event_id) = (event.event.clone(), event.id.clone());
            // Each call runs on its own task so a panicking handler is caught (as a
            // JoinError) instead of ending the subscription; awaiting it keeps the order.
            let handler = Arc::clone(&self.handler);
            match tokio::spawn(async move { handler(event).await }).await {
                Ok(Ok(())) => {}
                Ok(Err(error)) => tracing::warn!(
                    subscription = self.id.0,
                    pattern = %self.pattern,
                    event = %event_type,
                    event_id = %event_id,
                    error = %error,
                    "memory bus handler failed; continuing with the next event"
                ),
                Err(join_error) => tracing::warn!(
                    subscription = self.id.0,
                    pattern = %self.pattern,
                    event = %event_type,
                    event_id = %event_id,
                    error = %join_error,
                    "memory bus handler panicked or was cancelled; continuing with the next event"
                ),
            }
            self.in_flight.fetch_sub(1, Ordering::AcqRel);
            self.changed.notify_waiters();
        }
        // The sender was dropped (unsubscribed or bus gone); anything still counted for this
        // subscription has been handled above, so there is nothing to undo.
    }
}
