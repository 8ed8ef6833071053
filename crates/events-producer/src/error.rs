//! The error type shared by every producer in this crate.

use std::time::Duration;

use events_envelope::ValidationError;

/// Why an emit failed.
///
/// The variants are deliberately transport-neutral (`backend` says which one) so that code
/// holding an `Arc<dyn Producer>` can react the same way whether it talks to Redis, to a
/// daemon over HTTP or to an in-process bus: [`Error::Invalid`] is the caller's fault and
/// retrying is pointless; [`Error::Unavailable`] and [`Error::Timeout`] are transient.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An event broke a rule of the envelope (brief §3); nothing of the call was sent.
    ///
    /// `index` is the position in the batch (always 0 for a single emit).
    #[error("invalid event at index {index}: {source}")]
    Invalid {
        /// Position of the offending event in the batch.
        index: usize,
        /// Which field is at fault and why.
        #[source]
        source: ValidationError,
    },

    /// [`emit_event`](crate::emit_event) was called before
    /// [`set_global_producer`](crate::set_global_producer).
    #[error("no producer configured: call events_producer::set_global_producer(...) at start-up")]
    NotConfigured,

    /// The backend could not be reached (connection refused, connection lost and not back yet, ...).
    #[error("cannot reach {backend} at {url}: {reason}")]
    Unavailable {
        /// Which kind of backend, e.g. `redis`.
        backend: &'static str,
        /// Where it was expected, with any password redacted.
        url: String,
        /// What went wrong, lowercase.
        reason: String,
    },

    /// The backend was connected but did not answer within the command timeout.
    #[error("{backend} at {url} did not answer within {timeout:?}")]
    Timeout {
        /// Which kind of backend, e.g. `redis`.
        backend: &'static str,
        /// Where it was expected, with any password redacted.
        url: String,
        /// The configured bound that elapsed.
        timeout: Duration,
    },

    /// The backend answered but refused the command (e.g. the stream key holds another type).
    #[error("{backend} at {url} refused the command: {message}")]
    Rejected {
        /// Which kind of backend, e.g. `redis`.
        backend: &'static str,
        /// Where it was expected, with any password redacted.
        url: String,
        /// The backend's own message.
        message: String,
    },

    /// The producer's configuration cannot work (e.g. a malformed URL).
    #[error("invalid producer configuration: {0}")]
    Config(String),
}

impl Error {
    /// Whether retrying the same call later may succeed (the backend was down or slow).
    pub fn is_transient(&self) -> bool {
        matches!(self, Error::Unavailable { .. } | Error::Timeout { .. })
    }
}

/// `Result` with this crate's [`Error`] as the default error type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The URL with any password replaced by `***`, for error messages and logs.
///
/// Works on any `scheme://user:pass@host/...` text without a URL parser: this crate keeps its
/// dependency list short (brief §2). Used by every network producer (Redis now, HTTP next).
#[cfg_attr(not(feature = "redis"), allow(dead_code))]
pub(crate) fn redact_url(url: &str) -> String {
    let Some(scheme_end) = url.find("://") else {
        return url.to_owned();
    };
    let rest = &url[scheme_end + 3..];
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = &rest[..authority_end];
    let Some(at) = authority.rfind('@') else {
        return url.to_owned();
    };
    let userinfo = &authority[..at];
    let redacted_userinfo = match userinfo.find(':') {
        Some(colon) => format!("{}:***", &userinfo[..colon]),
        // `redis://secret@host` puts the password where the user would be.
        None if !userinfo.is_empty() => "***".to_owned(),
        None => String::new(),
    };
    format!(
        "{}{}@{}",
        &url[..scheme_end + 3],
        redacted_userinfo,
        &rest[at + 1..]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redact_url_hides_passwords_only() {
        assert_eq!(
            redact_url("redis://127.0.0.1:6379"),
            "redis://127.0.0.1:6379"
        );
        assert_eq!(
            redact_url("redis://user:pw@host:1/0"),
            "redis://user:***@host:1/0"
        );
        assert_eq!(redact_url("redis://:pw@host"), "redis://:***@host");
        assert_eq!(redact_url("redis://pw@host"), "redis://***@host");
        assert_eq!(
            redact_url("rediss://u:p@h/?x=a@b"),
            "rediss://u:***@h/?x=a@b"
        );
        assert_eq!(redact_url("not a url"), "not a url");
    }

    #[test]
    fn messages_name_the_field_and_the_url() {
        let err = Error::Invalid {
            index: 3,
            source: ValidationError::new("source", "must not be empty"),
        };
        assert_eq!(
            err.to_string(),
            "invalid event at index 3: invalid source: must not be empty"
        );
        let err = Error::Unavailable {
            backend: "redis",
            url: "redis://127.0.0.1:1".into(),
            reason: "connection refused".into(),
        };
        assert_eq!(
            err.to_string(),
            "cannot reach redis at redis://127.0.0.1:1: connection refused"
        );
        assert!(err.is_transient());
        assert!(!Error::NotConfigured.is_transient());
    }
}
