//! The crate's error type.

use std::net::IpAddr;

/// Everything that can go wrong in delivery: bad configuration or input, a refused
/// destination, a storage failure, or a failed HTTP exchange.
///
/// Delivery *outcomes* (a receiver answering 500, a timeout) are not errors: they are
/// recorded as attempts and scheduled for retry. This enum is for what the caller must see.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A webhook secret is not `whsec_` followed by base64 of 24..=64 bytes.
    #[error("invalid webhook secret: {0}")]
    InvalidSecret(String),

    /// A webhook URL cannot be parsed or uses a scheme other than http/https.
    #[error("invalid url {url:?}: {reason}")]
    InvalidUrl {
        /// The URL as given.
        url: String,
        /// Why it was refused.
        reason: String,
    },

    /// The destination resolves to an address in a range the SSRF guard refuses.
    #[error(
        "destination {host:?} refused: {addr} is a {range} address and not in allow_destinations"
    )]
    DestinationRefused {
        /// Host part of the URL.
        host: String,
        /// The offending address.
        addr: IpAddr,
        /// Which kind of range (loopback, private, link-local, ...).
        range: &'static str,
    },

    /// The destination host did not resolve.
    #[error("cannot resolve {host:?}: {reason}")]
    Resolve {
        /// Host part of the URL.
        host: String,
        /// Resolver message.
        reason: String,
    },

    /// A request field is invalid (names the field).
    #[error("invalid {field}: {message}")]
    Invalid {
        /// The field at fault.
        field: &'static str,
        /// What is wrong with it.
        message: String,
    },

    /// A configuration value is invalid (names the key).
    #[error("invalid config {key}: {message}")]
    Config {
        /// The config key at fault.
        key: &'static str,
        /// What is wrong with it.
        message: String,
    },

    /// No webhook or delivery with this id.
    #[error("{what} {id:?} not found")]
    NotFound {
        /// `webhook` or `delivery`.
        what: &'static str,
        /// The id looked up.
        id: String,
    },

    /// The webhook is disabled; enable it before retrying or recovering its deliveries.
    #[error("webhook {id} is disabled; enable it first")]
    WebhookDisabled {
        /// The webhook.
        id: i64,
    },

    /// The delivery is being sent right now; retry after the attempt is recorded.
    #[error("delivery {id} is being sent right now")]
    InFlight {
        /// The delivery.
        id: i64,
    },

    /// The database failed.
    #[error("storage: {0}")]
    Storage(#[from] events_storage::StorageError),

    /// A SQL statement of this crate failed.
    #[error("delivery sql: {0}")]
    Sql(#[from] events_storage::rusqlite::Error),

    /// A stored JSON column or a body could not be (de)serialized.
    #[error("json: {0}")]
    Json(#[from] serde_json::Error),

    /// An HTTP client could not be built.
    #[error("http client: {0}")]
    HttpClient(#[source] reqwest::Error),
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub(crate) fn invalid(field: &'static str, message: impl Into<String>) -> Self {
        Self::Invalid {
            field,
            message: message.into(),
        }
    }

    pub(crate) fn config(key: &'static str, message: impl Into<String>) -> Self {
        Self::Config {
            key,
            message: message.into(),
        }
    }
}
