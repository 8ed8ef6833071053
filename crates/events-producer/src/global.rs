//! One process-wide producer, for applications that would rather not thread a handle through.
//!
//! Libraries should take an `Arc<dyn Producer>` instead; the global is for the top of an
//! application (set once in `main`, used everywhere).

use std::sync::{Arc, RwLock};

use events_envelope::EventEnvelope;

use crate::{EmitReceipt, Error, Producer, Result};

/// A `RwLock` rather than a `OnceLock` so tests and long-running apps can replace it
/// (e.g. after building a new producer from reloaded config).
static GLOBAL: RwLock<Option<Arc<dyn Producer>>> = RwLock::new(None);

/// Installs `producer` as the process-wide producer used by [`emit_event`] and
/// [`emit_events`]; returns the one it replaces, if any.
pub fn set_global_producer(producer: Arc<dyn Producer>) -> Option<Arc<dyn Producer>> {
    // A poisoned lock only means another thread panicked while swapping an `Option<Arc>`:
    // the value inside is still whole, so carry on rather than panic here too.
    let mut slot = GLOBAL
        .write()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    slot.replace(producer)
}

/// Removes the process-wide producer; later [`emit_event`] calls fail with
/// [`Error::NotConfigured`]. Returns the one removed.
pub fn clear_global_producer() -> Option<Arc<dyn Producer>> {
    GLOBAL
        .write()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .take()
}

/// The process-wide producer, if one was set.
pub fn global_producer() -> Option<Arc<dyn Producer>> {
    GLOBAL
        .read()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .clone()
}

/// Emits one event through the process-wide producer.
///
/// Fails with [`Error::NotConfigured`] when [`set_global_producer`] was never called, so a
/// forgotten start-up step is reported, not silently dropped.
pub async fn emit_event(event: EventEnvelope) -> Result<EmitReceipt> {
    // Clone the Arc out first: the lock must not be held across the await.
    let producer = global_producer().ok_or(Error::NotConfigured)?;
    producer.emit(event).await
}

/// Emits a batch through the process-wide producer (see [`Producer::emit_batch`]).
pub async fn emit_events(events: Vec<EventEnvelope>) -> Result<Vec<EmitReceipt>> {
    let producer = global_producer().ok_or(Error::NotConfigured)?;
    producer.emit_batch(events).await
}
