//! Error types of the envelope crate.

use std::path::PathBuf;

/// An envelope (or one of its fields) breaks a rule of brief §3; `field` names which.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {field}: {message}")]
pub struct ValidationError {
    /// The envelope field at fault (`event`, `level`, `source`, `payload`, ...).
    pub field: &'static str,
    /// What is wrong with it, lowercase, no trailing period.
    pub message: String,
}

impl ValidationError {
    /// A new error for `field`.
    pub fn new(field: &'static str, message: impl Into<String>) -> Self {
        Self {
            field,
            message: message.into(),
        }
    }
}

/// A stream entry that cannot become an envelope (brief §4); the processor dead-letters the entry
/// with this error's text as the reason, so every variant names the field at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// A field without a default is absent (`event`, `source`, `timestamp`).
    #[error("missing field `{field}`")]
    MissingField {
        /// The absent field.
        field: &'static str,
    },
    /// A field is present but cannot be parsed (bad JSON in `payload`, unknown level "7", ...).
    #[error("invalid {field}: {message}")]
    InvalidField {
        /// The field at fault.
        field: &'static str,
        /// Why, lowercase.
        message: String,
    },
    /// The decoded envelope breaks a rule of brief §3 (event name, empty source, payload size).
    #[error(transparent)]
    Invalid(#[from] ValidationError),
}

impl DecodeError {
    pub(crate) fn invalid(field: &'static str, message: impl Into<String>) -> Self {
        DecodeError::InvalidField {
            field,
            message: message.into(),
        }
    }

    /// The field at fault, for metrics labels and structured dead-letter reasons.
    pub fn field(&self) -> &'static str {
        match self {
            DecodeError::MissingField { field } | DecodeError::InvalidField { field, .. } => field,
            DecodeError::Invalid(err) => err.field,
        }
    }
}

/// Errors of the event catalog: registration, idempotency keys and catalog files.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CatalogError {
    /// An event type is registered twice; `existing` says where the first one came from
    /// (`built-in`, `register`, or `file:line`).
    #[error("duplicate event type `{event_type}`: already registered from {existing}")]
    Duplicate {
        /// The event type registered twice.
        event_type: String,
        /// Origin of the schema already in the catalog.
        existing: String,
    },
    /// A schema breaks a rule (invalid `event_type` name, empty idempotency field name, ...).
    #[error("invalid schema `{event_type}`: {source}")]
    InvalidSchema {
        /// The schema's event type, as given.
        event_type: String,
        /// What is wrong, naming the schema field.
        #[source]
        source: ValidationError,
    },
    /// An event lacks a field its schema declares in `idempotency_fields`, in the payload and
    /// among the envelope's own fields; the event is invalid (HTTP 422, dead letter).
    #[error(
        "event `{event_type}` lacks idempotency field `{field}` (looked in payload and envelope)"
    )]
    MissingIdempotencyField {
        /// The event's type.
        event_type: String,
        /// The declared field that was not found.
        field: String,
    },
    /// A catalog file is not valid TOML or not in the schema shape.
    #[error("{}:{line}: {message}", file.display())]
    Toml {
        /// The file at fault (or the origin given to `load_toml_str`).
        file: PathBuf,
        /// 1-based line of the error.
        line: usize,
        /// The parser's message.
        message: String,
    },
    /// A schema in a catalog file was refused (duplicate, invalid); `line` is where it starts.
    #[error("{}:{line}: {source}", file.display())]
    InFile {
        /// The file holding the refused schema.
        file: PathBuf,
        /// 1-based line where the `[[schema]]` table starts.
        line: usize,
        /// Why it was refused.
        #[source]
        source: Box<CatalogError>,
    },
    /// A catalog directory or file cannot be read.
    #[error("cannot read catalog {}: {source}", path.display())]
    Io {
        /// The directory or file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
}
