//! The [`Producer`] trait and what every implementation shares.

use std::{future::Future, pin::Pin, sync::Arc};

use events_envelope::EventEnvelope;

use crate::{Error, Result};

/// A boxed, `Send` future borrowing from `'a`: what [`Producer`] methods return.
///
/// Boxing keeps the trait object-safe (`Arc<dyn Producer>`) without an `async-trait`
/// dependency; one allocation per emit is noise next to a network round trip.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Where an emitted event landed.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct EmitReceipt {
    /// The envelope's own id (UUIDv7), unchanged by the producer.
    pub id: String,
    /// The id the transport gave the entry, e.g. a Redis stream id `1718000000000-0`
    /// (or `N-0` from the in-process `MemoryBus`).
    pub stream_id: String,
}

/// Something events can be emitted to: Redis, a daemon over HTTP, an in-process bus.
///
/// Implementations validate every envelope before anything is sent
/// ([`validate_events`] does it for them), so an invalid event never reaches the stream and
/// a batch with one invalid event is refused whole with [`Error::Invalid`].
///
/// Delivery is *at least once*: after a transient error part of a batch (or, after a
/// reconnect, a single event) may have been written. Retrying is safe because the processor
/// deduplicates by envelope id.
///
/// Use it as `Arc<dyn Producer>` to pick the transport at start-up:
///
/// ```
/// # #[cfg(feature = "memory")] {
/// use std::sync::Arc;
/// use events_producer::{MemoryBus, Producer};
///
/// let producer: Arc<dyn Producer> = Arc::new(MemoryBus::new());
/// # let _ = producer;
/// # }
/// ```
pub trait Producer: Send + Sync {
    /// The payload size limit this producer enforces (brief §3: 256 KiB unless configured).
    ///
    /// The default [`emit_batch`](Self::emit_batch) validates with it before sending anything.
    fn max_payload_bytes(&self) -> usize {
        events_envelope::DEFAULT_MAX_PAYLOAD_BYTES
    }

    /// Validates and sends one event; the receipt carries the transport's id for it.
    fn emit(&self, event: EventEnvelope) -> BoxFuture<'_, Result<EmitReceipt>>;

    /// Validates every event, then sends them in order; receipts come back in the same order.
    ///
    /// The default sends one at a time; transports that can pipeline override it.
    fn emit_batch(&self, events: Vec<EventEnvelope>) -> BoxFuture<'_, Result<Vec<EmitReceipt>>> {
        Box::pin(async move {
            // Validate the whole batch first so an invalid event at the end does not leave
            // the ones before it written.
            validate_events(&events, self.max_payload_bytes())?;
            let mut receipts = Vec::with_capacity(events.len());
            for event in events {
                receipts.push(self.emit(event).await?);
            }
            Ok(receipts)
        })
    }
}

impl<P: Producer + ?Sized> Producer for Arc<P> {
    fn max_payload_bytes(&self) -> usize {
        (**self).max_payload_bytes()
    }
    fn emit(&self, event: EventEnvelope) -> BoxFuture<'_, Result<EmitReceipt>> {
        (**self).emit(event)
    }
    fn emit_batch(&self, events: Vec<EventEnvelope>) -> BoxFuture<'_, Result<Vec<EmitReceipt>>> {
        (**self).emit_batch(events)
    }
}

impl<P: Producer + ?Sized> Producer for Box<P> {
    fn max_payload_bytes(&self) -> usize {
        (**self).max_payload_bytes()
    }
    fn emit(&self, event: EventEnvelope) -> BoxFuture<'_, Result<EmitReceipt>> {
        (**self).emit(event)
    }
    fn emit_batch(&self, events: Vec<EventEnvelope>) -> BoxFuture<'_, Result<Vec<EmitReceipt>>> {
        (**self).emit_batch(events)
    }
}

/// Validates every envelope against brief §3 with the given payload limit.
///
/// The first invalid one is reported as [`Error::Invalid`] with its position, so a caller
/// can point at the offending item of a batch. Public so producers outside this crate
/// (e.g. the embedded transport) refuse exactly what these refuse.
pub fn validate_events(events: &[EventEnvelope], max_payload_bytes: usize) -> Result<()> {
    for (index, event) in events.iter().enumerate() {
        event
            .validate_with_limit(max_payload_bytes)
            .map_err(|source| Error::Invalid { index, source })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;

    /// A producer that only implements `emit`, to exercise the default `emit_batch`.
    #[derive(Debug, Default)]
    struct Recording {
        sent: Mutex<Vec<String>>,
    }

    impl Producer for Recording {
        fn emit(&self, event: EventEnvelope) -> BoxFuture<'_, Result<EmitReceipt>> {
            Box::pin(async move {
                validate_events(
                    std::slice::from_ref(&event),
                    events_envelope::DEFAULT_MAX_PAYLOAD_BYTES,
                )?;
                let mut sent = self.sent.lock().unwrap_or_else(|e| e.into_inner());
                sent.push(event.id.clone());
                Ok(EmitReceipt {
                    id: event.id,
                    stream_id: format!("{}-0", sent.len()),
                })
            })
        }
    }

    fn block_on<F: Future>(future: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime")
            .block_on(future)
    }

    #[test]
    fn default_emit_batch_refuses_the_whole_batch_before_sending_any() {
        let producer = Recording::default();
        let events = vec![
            EventEnvelope::new("job.started", "test"),
            EventEnvelope::new("job.done", ""),
        ];
        let err = block_on(producer.emit_batch(events)).expect_err("empty source must be refused");
        match err {
            Error::Invalid { index, source } => {
                assert_eq!(index, 1);
                assert_eq!(source.field, "source");
            }
            other => panic!("expected Invalid, got {other:?}"),
        }
        assert!(producer.sent.lock().unwrap().is_empty());
    }

    #[test]
    fn default_emit_batch_keeps_order_and_works_through_arc_dyn() {
        let producer: Arc<dyn Producer> = Arc::new(Recording::default());
        let events: Vec<_> = (0..5)
            .map(|i| EventEnvelope::new("job.step", "test").with_field("i", i))
            .collect();
        let ids: Vec<_> = events.iter().map(|e| e.id.clone()).collect();
        let receipts = block_on(producer.emit_batch(events)).expect("valid batch");
        assert_eq!(
            receipts.iter().map(|r| r.id.clone()).collect::<Vec<_>>(),
            ids
        );
        assert_eq!(receipts[4].stream_id, "5-0");
    }
}
