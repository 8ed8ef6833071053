//! Errors a cartridge can return.

use events_storage::StorageError;

/// Why a cartridge could not process an event.
///
/// The processor treats the two families differently: [`CartridgeError::Invalid`] means the
/// event itself is at fault and retrying cannot help, so it is dead-lettered at once with
/// the message as the reason; every other variant is retried (with backoff, up to
/// `max_deliveries`) before it is dead-lettered.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CartridgeError {
    /// The event breaks a rule (missing idempotency field, unknown type under a strict
    /// catalog, ...). Never retried.
    #[error("invalid event: {0}")]
    Invalid(String),
    /// A storage call made by the cartridge failed.
    #[error("storage error in cartridge {cartridge}")]
    Storage {
        /// Name of the cartridge that made the call.
        cartridge: String,
        /// The underlying storage error.
        #[source]
        source: StorageError,
    },
    /// Any other failure of a user cartridge; retried.
    #[error("cartridge {cartridge} failed: {message}")]
    Failed {
        /// Name of the failing cartridge.
        cartridge: String,
        /// What went wrong, lowercase.
        message: String,
    },
}

impl CartridgeError {
    /// A retryable failure of `cartridge`.
    pub fn failed(cartridge: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Failed {
            cartridge: cartridge.into(),
            message: message.into(),
        }
    }

    /// A storage error raised while `cartridge` ran.
    pub fn storage(cartridge: impl Into<String>, source: StorageError) -> Self {
        Self::Storage {
            cartridge: cartridge.into(),
            source,
        }
    }

    /// Whether retrying the same event can succeed (false for [`CartridgeError::Invalid`]).
    pub fn is_retryable(&self) -> bool {
        !matches!(self, Self::Invalid(_))
    }
}

/// Result alias of this crate.
pub type Result<T, E = CartridgeError> = std::result::Result<T, E>;
