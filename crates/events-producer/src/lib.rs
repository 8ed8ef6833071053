//! Emit [`EventEnvelope`]s to the event platform.
//!
//! This is the crate an application adds to publish events: build an envelope with
//! [`events_envelope`], hand it to a [`Producer`]. It is *not* a consumer — reading the stream,
//! running cartridges and storing notifications live in `events-processor` and the daemon —
//! and it never pulls in SQLite, an HTTP server or the pipeline (brief §2).
//!
//! The principal type is the [`Producer`] trait, implemented by:
//!
//! - `RedisProducer` (feature `redis`): one `XADD` per event onto a Redis stream in the wire format of brief
//!   §4; batches are pipelined; `MAXLEN ~` trimming; reconnects on its own.
//! - `MemoryBus` (feature `memory`): an in-process bus with glob subscriptions, for tests and single-process
//!   apps.
//!
//! Every producer validates envelopes before sending ([`Error::Invalid`] names the field and
//! the batch index), so invalid events never reach a stream.
//!
//! A key design decision is that [`Producer`] is object-safe: methods return a boxed future
//! ([`BoxFuture`]) so an application picks its transport at start-up and passes an
//! `Arc<dyn Producer>` around — or installs it once with [`set_global_producer`] and calls
//! [`emit_event`] anywhere. The boxing costs one allocation per call, nothing next to a
//! network round trip, and avoids an `async-trait` dependency.
//!
//! Delivery is at least once: after a transient error ([`Error::is_transient`]) an event may
//! or may not have been written, and retrying may write it twice. The processor deduplicates
//! by envelope id, so retrying is always safe.
//!
//! # Features
//!
//! | feature | default | what it adds |
//! |---|---|---|
//! | `redis` | yes | `RedisProducer`, `RedisProducerConfig`, `ReconnectConfig` (fred + tokio) |
//! | `memory` | no | `MemoryBus`, an in-process bus with glob subscriptions (tokio) |
//! | `http` | no | `HttpProducer`, `HttpProducerConfig`: posts to a running `events-daemon` (reqwest + tokio) |
//!
//! # Example
//!
//! ```no_run
//! use std::sync::Arc;
//! use events_envelope::{EventEnvelope, EventLevel};
//! use events_producer::{RedisProducer, RedisProducerConfig, emit_event, set_global_producer};
//!
//! # async fn run() -> Result<(), events_producer::Error> {
//! let producer = RedisProducer::connect(RedisProducerConfig::new("redis://127.0.0.1:6379")).await?;
//! set_global_producer(Arc::new(producer));
//!
//! let event = EventEnvelope::new("domain.software-development.build.completed", "ci")
//!     .with_level(EventLevel::Workflow)
//!     .with_field("commit", "a1b2c3");
//! let receipt = emit_event(event).await?;
//! println!("{} stored as stream entry {}", receipt.id, receipt.stream_id);
//! # Ok(()) }
//! ```
#![deny(missing_docs)]

mod error;
mod global;
#[cfg(feature = "http")]
mod http;
#[cfg(feature = "memory")]
mod memory;
mod producer;
#[cfg(feature = "redis")]
mod redis;

pub use error::{Error, Result};
pub use events_envelope::{EventEnvelope, ValidationError};
pub use global::{
    clear_global_producer, emit_event, emit_events, global_producer, set_global_producer,
};
#[cfg(feature = "http")]
pub use http::{HttpProducer, HttpProducerConfig, MAX_EVENTS_PER_REQUEST};
#[cfg(feature = "memory")]
pub use memory::{HandlerError, MemoryBus, MemoryBusConfig, SubscriptionId, WaitTimeout};
pub use producer::{BoxFuture, EmitReceipt, Producer, validate_events};
#[cfg(feature = "redis")]
pub use redis::{ReconnectConfig, RedisProducer, RedisProducerConfig};
