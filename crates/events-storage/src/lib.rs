//! SQLite storage of the event platform (brief §6): notifications with their human and agent
//! state machine, the event log, the embedded stream transport, idempotency bookkeeping and
//! dead letters — everything the daemon keeps on disk.
//!
//! The principal type is [`EventDb`]. Writes happen in [`EventDb::write`], whose closure
//! receives a [`WriteTx`]: one `BEGIN IMMEDIATE` transaction on the single writer
//! connection. Reads happen in [`EventDb::read`] on a pool of read-only connections
//! ([`Reader`]), or through the async conveniences on [`EventDb`] (`list_notifications`,
//! `claim`, `query_events`, ...), which the HTTP API uses.
//!
//! A key design decision is that **the batch is the unit of writing**: the processor commits
//! a whole batch — notification projection, event log, `processed_entries`, embedded offsets,
//! dead letters, delivery outbox — in one `write` call, so a crash leaves either all of a
//! batch or none of it, and re-delivery is harmless. A single writer connection behind a
//! mutex means writers queue in-process instead of contending for SQLite's lock; WAL lets
//! readers run alongside.
//!
//! State-machine operations return a typed [`Transition`] (`Changed`, `Unchanged`,
//! `Conflict`, `NotFound`, `Invalid`) rather than a bool, so the API can answer 200/409/404/422
//! without guessing.
//!
//! Not here: anything about HTTP, Redis, the catalog or pipeline rules. The crate stores and
//! enforces the §6 state machine; *what* to project is the pipeline's business.
//!
//! Timestamps are stored as RFC 3339 UTC text with exactly six fractional digits and `Z`
//! (`2026-03-01T12:00:00.123456Z`), so text order is time order.
//!
//! ```no_run
//! # async fn demo() -> events_storage::Result<()> {
//! use events_storage::{EventDb, NewNotification, NotificationFilter};
//! let db = EventDb::open("./events-data/events.db").await?;
//! let id = db
//!     .write(|tx| {
//!         tx.insert_notification(&NewNotification {
//!             event_type: "acme.order.placed".into(),
//!             source: "shop".into(),
//!             ..NewNotification::default()
//!         })
//!     })
//!     .await?;
//! db.claim(id, "agent-7").await?;
//! let page = db.list_notifications(NotificationFilter::default()).await?;
//! assert_eq!(page.total, 1);
//! # Ok(()) }
//! ```

mod db;
mod dead_letters;
mod embedded;
mod error;
mod events;
mod migrations;
mod notifications;
mod statements;
mod timefmt;

pub use db::{CHECKPOINT_DELAY, EventDb, Reader, WRITER_NICE, WriteTx};
pub use dead_letters::{DeadLetter, NewDeadLetter};
pub use embedded::{EmbeddedEntry, EncodedFields};
pub use error::{Error, ParseStatusError, Result, StorageError};
pub use events::{EventQuery, StoredEvent};
pub use migrations::LATEST_SCHEMA_VERSION;
pub use notifications::{
    AgentStatus, HumanStatus, NewNotification, Notification, NotificationFilter, NotificationPage,
    OpenInGroup, Transition,
};
/// The rusqlite version this crate links, for callers of [`WriteTx::connection`].
pub use rusqlite;
pub use timefmt::serde_ts;
