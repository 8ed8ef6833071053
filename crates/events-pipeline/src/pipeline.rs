//! The [`Cartridge`] trait, the [`PipelineContext`] a cartridge works in, and the
//! [`Pipeline`] that runs cartridges in order.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use events_envelope::{EventCatalog, EventEnvelope};
use events_storage::WriteTx;

use crate::error::Result;

/// A boxed future that need not be `Send`.
///
/// Cartridges run on the storage writer's blocking thread (driven there with
/// `tokio::runtime::Handle::block_on`) while they hold `&mut WriteTx`, which is not `Send`;
/// so the future they return is not required to be `Send` either.
pub type LocalBoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + 'a>>;

/// What a projected notification change tells the push side once the batch has committed:
/// the tuple `(notification_id, event_type, was_created, is_meaningful)` of brief §7.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotificationPush {
    /// Row id of the notification that was created or changed.
    pub notification_id: i64,
    /// Event type that caused the change.
    pub event_type: String,
    /// True when the notification was created by this event.
    pub was_created: bool,
    /// True when the change should draw attention again (creation, a meaningful field
    /// changed, or resolution).
    pub is_meaningful: bool,
}

/// Everything a cartridge may touch while it processes one event.
///
/// `tx` is the storage transaction of the whole batch: whatever a cartridge writes becomes
/// visible together with the event-log entry and the processed-entry mark, or not at all.
/// Cartridges must not run anything that outlives the call (no spawned tasks holding
/// data), and must not push to clients themselves: they append to [`Self::pushes`], which
/// the processor hands to its push sinks only after the commit.
pub struct PipelineContext<'a, 'c> {
    /// The event catalog (built-in schemas plus operator files).
    pub catalog: &'a EventCatalog,
    /// The batch transaction.
    pub tx: &'a mut WriteTx<'c>,
    /// Notification changes to push after the commit, in order.
    pub pushes: Vec<NotificationPush>,
    dropped_by: Option<String>,
}

impl fmt::Debug for PipelineContext<'_, '_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PipelineContext")
            .field("pushes", &self.pushes)
            .field("dropped_by", &self.dropped_by)
            .finish_non_exhaustive()
    }
}

impl<'a, 'c> PipelineContext<'a, 'c> {
    /// A fresh context for one event.
    pub fn new(catalog: &'a EventCatalog, tx: &'a mut WriteTx<'c>) -> Self {
        Self {
            catalog,
            tx,
            pushes: Vec::new(),
            dropped_by: None,
        }
    }

    /// Name of the cartridge that dropped the last event run through
    /// [`Pipeline::execute`], if it was dropped. The processor uses it to count duplicates.
    pub fn dropped_by(&self) -> Option<&str> {
        self.dropped_by.as_deref()
    }

    /// Forget the pushes and drop marker of the previous event (the processor reuses
    /// nothing across events, but user code driving a pipeline by hand may).
    pub fn reset(&mut self) {
        self.pushes.clear();
        self.dropped_by = None;
    }
}

/// One processing step. Returning `Ok(None)` drops the event: later cartridges do not see
/// it and it is not written to the event log.
///
/// Implementations should be cheap to call and do their I/O through `ctx.tx`. An error
/// rolls back everything this event wrote (the processor wraps each event in a savepoint).
pub trait Cartridge {
    /// Short stable name, used in logs, metrics and error messages.
    fn name(&self) -> &str;

    /// Process one event.
    fn process<'a>(
        &'a self,
        event: EventEnvelope,
        ctx: &'a mut PipelineContext<'_, '_>,
    ) -> LocalBoxFuture<'a, Result<Option<EventEnvelope>>>;
}

/// An ordered list of cartridges. Cheap to clone (the cartridges are shared).
#[derive(Clone, Default)]
pub struct Pipeline {
    cartridges: Vec<Arc<dyn Cartridge + Send + Sync>>,
}

impl fmt::Debug for Pipeline {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(self.cartridges.iter().map(|c| c.name()))
            .finish()
    }
}

impl Pipeline {
    /// A pipeline running `cartridges` in the given order.
    pub fn new(cartridges: Vec<Arc<dyn Cartridge + Send + Sync>>) -> Self {
        Self { cartridges }
    }

    /// The built-in pipeline: [`crate::DedupCartridge`] then
    /// [`crate::NotificationProjector`] (`strict_catalog` refuses unknown event types).
    pub fn standard(strict_catalog: bool) -> Self {
        Self::new(vec![
            Arc::new(crate::DedupCartridge::new()),
            Arc::new(crate::NotificationProjector::new().strict_catalog(strict_catalog)),
        ])
    }

    /// Append a cartridge at the end.
    pub fn push(&mut self, cartridge: Arc<dyn Cartridge + Send + Sync>) {
        self.cartridges.push(cartridge);
    }

    /// Insert a cartridge at `index` (0 = first).
    ///
    /// # Panics
    /// If `index > len`, like [`Vec::insert`].
    pub fn insert(&mut self, index: usize, cartridge: Arc<dyn Cartridge + Send + Sync>) {
        self.cartridges.insert(index, cartridge);
    }

    /// Names of the cartridges, in order.
    pub fn names(&self) -> Vec<&str> {
        self.cartridges.iter().map(|c| c.name()).collect()
    }

    /// Run `event` through every cartridge in order, stopping at the first that drops it.
    pub async fn execute(
        &self,
        mut event: EventEnvelope,
        ctx: &mut PipelineContext<'_, '_>,
    ) -> Result<Option<EventEnvelope>> {
        ctx.dropped_by = None;
        for cartridge in &self.cartridges {
            match cartridge.process(event, ctx).await? {
                Some(next) => event = next,
                None => {
                    tracing::trace!(cartridge = cartridge.name(), "event dropped");
                    ctx.dropped_by = Some(cartridge.name().to_owned());
                    return Ok(None);
                }
            }
        }
        Ok(Some(event))
    }
}
