//! The cartridge pipeline of the event platform (brief §7).
//!
//! A [`Pipeline`] runs an event through an ordered list of [`Cartridge`]s; each may change
//! the event, write through the batch's storage transaction, or drop it (`Ok(None)`), which
//! stops the pipeline. Two built-ins make up [`Pipeline::standard`]:
//!
//! * [`DedupCartridge`] — a hard gate on idempotency keys (catalog-built or producer-set);
//! * [`NotificationProjector`] — creates, updates and resolves notifications according to
//!   the schema's [`NotificationLifecycle`](events_envelope::NotificationLifecycle).
//!
//! Users add their own cartridges by implementing [`Cartridge`]:
//!
//! ```
//! use events_envelope::EventEnvelope;
//! use events_pipeline::{Cartridge, LocalBoxFuture, PipelineContext, Result};
//!
//! /// Drops debug chatter before it reaches the log and the projector.
//! struct DropDebug;
//!
//! impl Cartridge for DropDebug {
//!     fn name(&self) -> &str {
//!         "drop-debug"
//!     }
//!
//!     fn process<'a>(
//!         &'a self,
//!         event: EventEnvelope,
//!         _ctx: &'a mut PipelineContext<'_, '_>,
//!     ) -> LocalBoxFuture<'a, Result<Option<EventEnvelope>>> {
//!         Box::pin(async move { Ok((!event.event.starts_with("debug.")).then_some(event)) })
//!     }
//! }
//!
//! let mut pipeline = events_pipeline::Pipeline::standard(false);
//! pipeline.insert(0, std::sync::Arc::new(DropDebug));
//! assert_eq!(pipeline.names(), ["drop-debug", "dedup", "notification-projector"]);
//! ```
//!
//! This crate does **not** read streams, commit, retry or push to clients: that is
//! `events-processor`. It only defines what happens to one event inside a transaction.
//!
//! Key design decision: cartridges run *inside* the storage transaction of the whole batch,
//! on the database writer's blocking thread. [`PipelineContext`] therefore lends them
//! `&mut WriteTx` and [`Cartridge::process`] returns a non-`Send`
//! [`LocalBoxFuture`]; the processor drives it with `Handle::block_on`. Everything an
//! event does — projection, event-log row, processed mark — commits together or not at
//! all, and [`NotificationPush`]es are collected in the context and handed to push sinks
//! only after the commit, so a client is never told about a change that was rolled back.

mod dedup;
mod error;
mod pipeline;
mod projector;

pub use dedup::DedupCartridge;
pub use error::{CartridgeError, Result};
pub use pipeline::{Cartridge, LocalBoxFuture, NotificationPush, Pipeline, PipelineContext};
pub use projector::NotificationProjector;
