//! The crate's error type.

use std::path::PathBuf;

/// Everything that can go wrong in storage.
///
/// Client faults that the HTTP API turns into 4xx (unknown status, bad resolution) are *not*
/// errors here: the state machine reports them as [`crate::Transition::Invalid`], and status
/// strings fail to parse with [`ParseStatusError`] before they reach the store.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StorageError {
    /// SQLite reported an error while running a statement.
    #[error("sqlite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// The database file could not be opened or configured.
    #[error("cannot open database {}: {source}", path.display())]
    Open {
        /// The file at fault.
        path: PathBuf,
        /// What SQLite said.
        #[source]
        source: rusqlite::Error,
    },
    /// A directory for the database could not be created.
    #[error("cannot create directory {}: {source}", path.display())]
    Io {
        /// The directory at fault.
        path: PathBuf,
        /// What the OS said.
        #[source]
        source: std::io::Error,
    },
    /// The writer's thread could not be given the scheduling asked for
    /// ([`crate::EventDb::make_writer_realtime`]); it runs as before.
    #[error("cannot change the storage writer's scheduling: {0}")]
    Scheduling(#[source] std::io::Error),
    /// The file was written by a newer build whose schema this build does not know.
    #[error(
        "database {} has schema version {found}, newer than {latest}, the latest this build knows; \
         run a newer events-daemon or point it at another data directory",
        path.display()
    )]
    NewerSchema {
        /// The file at fault.
        path: PathBuf,
        /// `PRAGMA user_version` of the file.
        found: i64,
        /// The newest migration of this build.
        latest: i64,
    },
    /// A migration failed; the file stays at the version before it.
    #[error("migrating {} to schema version {version} failed: {source}", path.display())]
    Migration {
        /// The file at fault.
        path: PathBuf,
        /// The migration that failed.
        version: i64,
        /// What SQLite said.
        #[source]
        source: rusqlite::Error,
    },
    /// A stored value could not be decoded (a file edited by hand, or a bug).
    #[error("corrupt value in column {column}: {message}")]
    Corrupt {
        /// Table and column, e.g. `notifications.human_status`.
        column: &'static str,
        /// What is wrong with it.
        message: String,
    },
    /// A value could not be encoded as JSON for storage.
    #[error("cannot encode {field} as json: {source}")]
    Json {
        /// The field at fault.
        field: &'static str,
        /// What serde_json said.
        #[source]
        source: serde_json::Error,
    },
    /// An argument was out of range (e.g. a malformed embedded stream id).
    #[error("invalid {field}: {message}")]
    InvalidInput {
        /// The argument at fault.
        field: &'static str,
        /// Why it was refused.
        message: String,
    },
    /// No read connection could be had from the pool.
    #[error("read connection pool: {0}")]
    Pool(String),
    /// The blocking task running a database closure panicked or was cancelled.
    #[error("database task failed: {0}")]
    Task(String),
    /// A caller's closure aborted a write transaction (rolled back) for a reason of its own.
    #[error("transaction aborted: {0}")]
    Aborted(String),
}

/// Short name for [`StorageError`], following the workspace convention.
pub type Error = StorageError;

/// `Result` with [`StorageError`] as the default error.
pub type Result<T, E = StorageError> = std::result::Result<T, E>;

/// An agent or human status string that is not one of the known values (the API answers 400).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {field} {value:?}; expected one of {expected}")]
pub struct ParseStatusError {
    /// `agent_status` or `human_status`.
    pub field: &'static str,
    /// The text that was refused.
    pub value: String,
    /// The accepted values, comma separated.
    pub expected: &'static str,
}

impl StorageError {
    pub(crate) fn corrupt(column: &'static str, message: impl Into<String>) -> Self {
        Self::Corrupt {
            column,
            message: message.into(),
        }
    }
}
