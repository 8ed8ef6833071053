//! The deduplication cartridge: a hard gate on idempotency keys.

use events_envelope::EventEnvelope;

use crate::error::{CartridgeError, Result};
use crate::pipeline::{Cartridge, LocalBoxFuture, PipelineContext};

/// Drops an event whose idempotency key is already in the event log.
///
/// The key is the envelope's own `idempotency_key` when the producer set one, otherwise
/// the catalog builds it from the schema's `idempotency_fields` (brief §5) and stores it on
/// the envelope, so the projector and the event log see the same key. Event types with no
/// idempotency fields (and no producer key) pass through untouched.
///
/// The check reads the event log (`events.idempotency_key`) through the batch
/// transaction, so a duplicate later in the same batch is caught too. A dropped duplicate
/// is not written to the event log; the processor still marks its stream entry processed.
///
/// A declared idempotency field found neither in the payload nor among the envelope's
/// fields makes the event invalid ([`CartridgeError::Invalid`]): it is dead-lettered with
/// that reason, never retried.
#[derive(Debug, Default, Clone)]
pub struct DedupCartridge {
    _private: (),
}

impl DedupCartridge {
    /// Name reported by [`Cartridge::name`]; the processor counts drops by this name as
    /// duplicates.
    pub const NAME: &'static str = "dedup";

    /// A new dedup cartridge.
    pub fn new() -> Self {
        Self::default()
    }

    async fn run(
        &self,
        mut event: EventEnvelope,
        ctx: &mut PipelineContext<'_, '_>,
    ) -> Result<Option<EventEnvelope>> {
        let key = match event.idempotency_key.clone() {
            Some(key) => Some(key),
            None => ctx
                .catalog
                .build_idempotency_key(&event)
                .map_err(|e| CartridgeError::Invalid(e.to_string()))?,
        };
        let Some(key) = key else {
            return Ok(Some(event));
        };
        let seen = ctx
            .tx
            .idempotency_key_seen(&key)
            .map_err(|e| CartridgeError::storage(Self::NAME, e))?;
        if seen {
            tracing::debug!(event_id = %event.id, idempotency_key = %key, "duplicate dropped");
            return Ok(None);
        }
        event.idempotency_key = Some(key);
        Ok(Some(event))
    }
}

impl Cartridge for DedupCartridge {
    fn name(&self) -> &str {
        Self::NAME
    }

    fn process<'a>(
        &'a self,
        event: EventEnvelope,
        ctx: &'a mut PipelineContext<'_, '_>,
    ) -> LocalBoxFuture<'a, Result<Option<EventEnvelope>>> {
        Box::pin(self.run(event, ctx))
    }
}
