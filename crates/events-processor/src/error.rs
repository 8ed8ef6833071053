//! Errors of the processor crate.

use events_storage::StorageError;

/// Why a processor operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A Redis command failed (connection refused or lost, timeout, protocol error).
    #[error("redis {op} failed")]
    Redis {
        /// The command or step (`XREADGROUP`, `connect`, ...).
        op: &'static str,
        /// The fred error.
        #[source]
        source: fred::error::Error,
    },
    /// A Redis reply did not have the expected shape.
    #[error("unexpected redis reply to {op}: {message}")]
    Reply {
        /// The command whose reply was malformed.
        op: &'static str,
        /// What was wrong with it.
        message: String,
    },
    /// A storage operation failed.
    #[error("storage error")]
    Storage(#[from] StorageError),
    /// A cartridge panicked or the storage writer task died.
    #[error("batch aborted: {0}")]
    Aborted(String),
    /// No dead letter with this id.
    #[error("dead letter {0} not found")]
    DeadLetterNotFound(i64),
    /// The processor configuration is unusable.
    #[error("invalid processor config: {0}")]
    Config(String),
}

impl Error {
    pub(crate) fn redis(op: &'static str, source: fred::error::Error) -> Self {
        Self::Redis { op, source }
    }
}

/// Result alias of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
