//! The processor of the event platform (brief §8): stream sources and the run loop that
//! takes every entry through the pipeline with an exactly-once effect.
//!
//! Principal types: [`Processor`] (the loop), the [`Source`] trait with
//! [`RedisStreamSource`] (a Redis consumer group, via fred) and [`EmbeddedSource`] (a
//! stream in the SQLite file, with [`EmbeddedProducer`] to append to it), [`PushSink`]
//! (where committed changes go: WebSocket, SSE, delivery; [`BroadcastSink`] forwards to a
//! `tokio::sync::broadcast`), [`ProcessorStatus`] (for
//! `/ready`), and dead-letter functions ([`replay_dead_letter`] & co).
//!
//! Not here: what happens to an event (that is `events-pipeline`), how it is stored
//! (`events-storage`), HTTP (`events-api`).
//!
//! # One batch
//!
//! 1. `read_batch`: own pending / claimed entries first, then new ones.
//! 2. Decode each entry (`events_envelope::from_stream_fields`). An undecodable one is
//!    dead-lettered with the decode error as reason — never fatal, never retried.
//! 3. **One** `EventDb::write` for the whole batch, on the storage writer's blocking
//!    thread; the async pipeline is driven there (one poll; `Handle::block_on` only if a
//!    cartridge waits). Every entry is claimed in `processed_entries` before it runs (an
//!    entry already there is skipped); then pipeline, then the event log. The batch first
//!    runs without savepoints (they make SQLite journal every page an entry touches) and
//!    claims all of its entries up front in a few multi-row inserts; if an entry fails or
//!    turns out to be a duplicate event id, that attempt is rolled back and the batch runs
//!    again with a `SAVEPOINT` per entry, so a failing entry rolls back alone and never
//!    blocks the rest of the batch: it is left for a retry (with backoff, up to
//!    `max_deliveries`) or dead-lettered (in `dead_letters`, same transaction). The
//!    embedded source's offset advances in this same transaction. While the batch commits,
//!    the next one is read ahead ([`Source::read_ahead`]) and its transaction queued on the
//!    writer behind it (`EventDb::queue_then`, unless [`Source::queue_read_ahead`] says no),
//!    to commit only if this one did.
//! 4. After the commit: [`PushSink`]s called, dead letters published on the transport
//!    (`events:dead`), entries acked (`XACK`), retries scheduled.
//!
//! A key design decision is that **the database decides, the transport only delivers**:
//! effects, event log and the processed mark commit together, so a crash anywhere
//! (before the commit, between commit and ack) leads to a re-delivery that
//! `processed_entries` turns into a no-op. That is what "every entry takes effect exactly
//! once" rests on; acks are an optimisation that keeps re-delivery rare. Pushes happen
//! only after the commit and are at-most-once (a crash between commit and push loses the
//! push, not the change; clients resync over REST/SSE with `seq`).
//!
//! Transport or storage trouble never ends [`Processor::run`]: it backs off (capped),
//! reconnects and goes on; `ProcessorStatus::source_connected` says so meanwhile.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use std::sync::Arc;
//! use events_envelope::EventCatalog;
//! use events_pipeline::Pipeline;
//! use events_processor::{BroadcastSink, Processor, ProcessorConfig, RedisSourceConfig, RedisStreamSource};
//! use tokio_util::sync::CancellationToken;
//!
//! let db = events_storage::EventDb::open("./events-data/events.db").await?;
//! let source = RedisStreamSource::new(RedisSourceConfig::new("redis://127.0.0.1:6379"));
//! let pushes = BroadcastSink::new(1024);
//! let mut updates = pushes.subscribe();
//! let processor = Processor::new(
//!     ProcessorConfig::default(),
//!     source,
//!     db,
//!     Arc::new(EventCatalog::builtin()),
//!     Pipeline::standard(false),
//!     vec![Arc::new(pushes)],
//! );
//! let status = processor.status(); // for /ready
//! let cancel = CancellationToken::new();
//! let task = tokio::spawn(processor.run(cancel.clone()));
//! # let _ = (&mut updates, status);
//! cancel.cancel(); // on SIGTERM: finishes and acks the batch in flight
//! task.await??;
//! # Ok(()) }
//! ```

mod backoff;
mod broadcast;
mod dead_letters;
mod embedded;
mod error;
pub mod metrics;
mod processor;
mod redis;
mod source;

pub use backoff::Backoff;
pub use broadcast::{BroadcastSink, PushMessage};
pub use dead_letters::{
    RawAppend, RedisAppender, delete_dead_letter, list_dead_letters, replay_dead_letter,
};
pub use embedded::{EmbeddedConfig, EmbeddedProducer, EmbeddedSource};
pub use error::{Error, Result};
pub use processor::{
    BatchReport, CommittedRow, Processor, ProcessorConfig, ProcessorStatus, PushSink,
};
pub use redis::{RedisSourceConfig, RedisStreamSource, default_consumer_name};
pub use source::{Checkpoint, DeadLetterRecord, EntryFields, Source, SourceEntry};
