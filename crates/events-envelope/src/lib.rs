//! The event envelope of event-platform: the one type every producer emits and every
//! consumer reads, its stream wire codec, and the catalog of known event types.
//!
//! This crate is the small core that applications depend on (directly, or through
//! `events-producer`). It is for:
//!
//! - building and validating events: [`EventEnvelope`] with [`EventLevel`],
//!   [`EventVisibility`] and [`ActionDescriptor`]; [`EventEnvelope::validate`] returns a
//!   [`ValidationError`] naming the field at fault;
//! - the stream wire format shared by Redis Streams and the embedded SQLite stream:
//!   [`to_stream_fields`] and the tolerant [`from_stream_fields`], which accepts what
//!   producers in other languages write and otherwise fails with a [`DecodeError`] naming the
//!   field (the processor dead-letters such entries with that text as the reason);
//! - the [`EventCatalog`] of [`EventSchema`]s: idempotency keys
//!   ([`EventCatalog::build_idempotency_key`]) and [`NotificationLifecycle`]s, with the
//!   built-in set of [`builtin_schemas`];
//! - [`glob_match`], the single wildcard dialect (`job.*`) used by every filter of the platform.
//!
//! It is **not** for transport, storage or processing: no tokio, no network, no database, and
//! no I/O at all except reading catalog TOML files when asked to ([`EventCatalog::load_dir`]).
//! Its dependencies are serde, serde_json, time, uuid and thiserror (plus toml behind a
//! feature), so adding it to an application costs next to nothing.
//!
//! A key design decision is that the envelope is plain data with public fields and the wire
//! codec is a pair of free functions over `(name, value)` string pairs: producers and
//! consumers in any runtime (fred, redis-rs, SQLite rows, tests) use them without adapters,
//! and the decoder's leniency lives in one place.
//!
//! ```
//! use events_envelope::{EventCatalog, EventEnvelope, EventLevel, from_stream_fields, to_stream_fields};
//!
//! let event = EventEnvelope::new("domain.software-development.planning.todo_created", "prepare-worker")
//!     .with_level(EventLevel::Workflow)
//!     .with_domain("software-development")
//!     .with_field("slug", "event-platform-core");
//! event.validate()?;
//!
//! let key = EventCatalog::builtin().build_idempotency_key(&event)?;
//! assert_eq!(key.as_deref(), Some("domain.software-development.planning.todo_created:event-platform-core"));
//!
//! let fields = to_stream_fields(&event);
//! let decoded = from_stream_fields(fields.iter().map(|(k, v)| (*k, v.as_str())), "1-0")?;
//! assert_eq!(decoded.payload, event.payload);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Features
//!
//! | feature | default | what it adds |
//! |---|---|---|
//! | `toml` | yes | [`EventCatalog::load_toml_str`] and [`EventCatalog::load_dir`]: extra schemas from `[[schema]]` TOML files (dependency `toml`) |
#![deny(missing_docs)]

mod catalog;
#[cfg(feature = "toml")]
mod catalog_file;
mod codec;
mod envelope;
mod error;
mod glob;

pub use catalog::{EventCatalog, EventSchema, NotificationLifecycle, builtin_schemas};
pub use codec::{
    ENTRY_ID_NAMESPACE, REQUIRED_STREAM_FIELDS, format_timestamp, format_utc_timestamp,
    from_stream_fields, from_stream_fields_with_limit, parse_timestamp, to_stream_fields,
};
pub use envelope::{
    ActionDescriptor, DEFAULT_MAX_PAYLOAD_BYTES, EventEnvelope, EventLevel, EventVisibility,
    MAX_NAME_LEN, new_event_id, validate_event_name,
};
pub use error::{CatalogError, DecodeError, ValidationError};
pub use glob::glob_match;
