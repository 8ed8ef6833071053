//! One error type for every rejection the API makes, rendered as
//! `{"error":{"code","message"}}` (brief §9).
//!
//! Client faults keep their 4xx status and a message that names the field at fault;
//! storage errors are classified once, in [`From<StorageError>`]; anything else is logged
//! and answered with a generic 500 — which the tests treat as a bug.

use std::time::Duration;

use axum::Json;
use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

/// The body of every error response.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    /// The error itself.
    pub error: ErrorDetail,
}

/// What went wrong: a stable machine-readable `code` and a message for people.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorDetail {
    /// Stable code, e.g. `invalid_json`, `not_found`, `conflict`, `rate_limited`.
    pub code: String,
    /// What went wrong, naming the field at fault where there is one.
    pub message: String,
    /// For a refused batch: what is wrong with each bad item.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub items: Option<Vec<ItemError>>,
}

/// Why one item of a batch was refused.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ItemError {
    /// Position of the item in the submitted batch (0-based).
    pub index: usize,
    /// Stable code, e.g. `invalid_event`, `missing_idempotency_field`, `unknown_event_type`.
    pub code: String,
    /// What is wrong, naming the field.
    pub message: String,
}

/// An API failure; converts into a JSON response with the right status.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ApiError {
    /// The request is malformed (bad JSON, bad id, bad query value): 400.
    #[error("{message}")]
    BadRequest {
        /// Stable code.
        code: &'static str,
        /// Message naming the field.
        message: String,
    },
    /// Well-formed but semantically invalid: 422.
    #[error("{message}")]
    Unprocessable {
        /// Stable code.
        code: &'static str,
        /// Message naming the field.
        message: String,
        /// Per-item errors of a refused batch.
        items: Option<Vec<ItemError>>,
    },
    /// No or unknown bearer token: 401.
    #[error("{0}")]
    Unauthorized(String),
    /// The token lacks the role this route needs: 403.
    #[error("{0}")]
    Forbidden(String),
    /// No such resource: 404.
    #[error("{0}")]
    NotFound(String),
    /// The method is not allowed on this path: 405.
    #[error("method not allowed on this path")]
    MethodNotAllowed,
    /// The resource's state forbids the change: 409.
    #[error("{0}")]
    Conflict(String),
    /// The body is larger than the configured limit: 413.
    #[error("request body larger than the configured limit (limits.max_body_bytes)")]
    PayloadTooLarge,
    /// The body is not `application/json`: 415.
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// The token's rate limit is spent: 429 with `Retry-After`.
    #[error("rate limit exceeded; retry after {} s", retry_after.as_secs().max(1))]
    RateLimited {
        /// How long until a request will be accepted again.
        retry_after: Duration,
    },
    /// A dependency (database, Redis) is unavailable: 503.
    #[error("{0}")]
    Unavailable(String),
    /// A bug or an unexpected failure: logged, answered with a generic 500.
    #[error("internal error: {0}")]
    Internal(String),
}

impl ApiError {
    /// A 400 with `code` and `message`.
    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::BadRequest {
            code,
            message: message.into(),
        }
    }

    /// A 422 with `code` and `message`.
    pub fn unprocessable(code: &'static str, message: impl Into<String>) -> Self {
        Self::Unprocessable {
            code,
            message: message.into(),
            items: None,
        }
    }

    /// The HTTP status this error answers with.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::BadRequest { .. } => StatusCode::BAD_REQUEST,
            Self::Unprocessable { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            Self::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            Self::Forbidden(_) => StatusCode::FORBIDDEN,
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Self::Conflict(_) => StatusCode::CONFLICT,
            Self::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Self::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The stable machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            Self::BadRequest { code, .. } | Self::Unprocessable { code, .. } => code,
            Self::Unauthorized(_) => "unauthorized",
            Self::Forbidden(_) => "forbidden",
            Self::NotFound(_) => "not_found",
            Self::MethodNotAllowed => "method_not_allowed",
            Self::Conflict(_) => "conflict",
            Self::PayloadTooLarge => "payload_too_large",
            Self::UnsupportedMediaType(_) => "unsupported_media_type",
            Self::RateLimited { .. } => "rate_limited",
            Self::Unavailable(_) => "unavailable",
            Self::Internal(_) => "internal",
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let message = match &self {
            Self::Internal(detail) => {
                tracing::error!(error = %detail, "internal error answering a request");
                "internal error; see the daemon log".to_owned()
            }
            other => other.to_string(),
        };
        let retry_after = match &self {
            Self::RateLimited { retry_after } => Some(retry_after.as_secs().max(1)),
            _ => None,
        };
        let code = self.code().to_owned();
        let items = match self {
            Self::Unprocessable { items, .. } => items,
            _ => None,
        };
        let mut response = (
            status,
            Json(ErrorBody {
                error: ErrorDetail {
                    code,
                    message,
                    items,
                },
            }),
        )
            .into_response();
        if let Some(secs) = retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        response
    }
}

/// axum's messages start with a capital letter ("Failed to ..."); ours are lowercase.
fn lowercase_first(text: &str) -> String {
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_lowercase().chain(chars).collect(),
        None => String::new(),
    }
}

impl From<JsonRejection> for ApiError {
    fn from(rejection: JsonRejection) -> Self {
        let status = rejection.status();
        let message = lowercase_first(&rejection.body_text());
        match status {
            StatusCode::PAYLOAD_TOO_LARGE => Self::PayloadTooLarge,
            StatusCode::UNSUPPORTED_MEDIA_TYPE => Self::UnsupportedMediaType(
                "expected a request with `content-type: application/json`".to_owned(),
            ),
            StatusCode::UNPROCESSABLE_ENTITY => Self::unprocessable("invalid_field", message),
            StatusCode::BAD_REQUEST => Self::bad_request("invalid_json", message),
            _ => Self::bad_request("invalid_body", message),
        }
    }
}

impl From<QueryRejection> for ApiError {
    fn from(rejection: QueryRejection) -> Self {
        Self::bad_request("invalid_query", lowercase_first(&rejection.body_text()))
    }
}

impl From<PathRejection> for ApiError {
    fn from(rejection: PathRejection) -> Self {
        Self::bad_request("invalid_path", lowercase_first(&rejection.body_text()))
    }
}

impl From<events_storage::StorageError> for ApiError {
    /// The one place storage failures are classified: busy/locked/pool exhaustion are
    /// transient (503), constraint violations conflicts (409), bad arguments the caller's
    /// fault (400); everything else is a bug or a broken disk (500, logged).
    fn from(err: events_storage::StorageError) -> Self {
        use events_storage::StorageError as S;
        use events_storage::rusqlite::{Error as SqlError, ErrorCode};
        match &err {
            S::Sqlite(SqlError::SqliteFailure(failure, _)) => match failure.code {
                ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked => {
                    Self::Unavailable("the database is busy; retry shortly".to_owned())
                }
                ErrorCode::ConstraintViolation => {
                    Self::Conflict(format!("conflicts with stored data: {err}"))
                }
                _ => Self::Internal(err.to_string()),
            },
            S::Pool(_) => Self::Unavailable(format!("database unavailable: {err}")),
            S::InvalidInput { .. } => Self::bad_request("invalid_input", err.to_string()),
            _ => Self::Internal(err.to_string()),
        }
    }
}

impl From<events_delivery::Error> for ApiError {
    /// Webhook admin failures: a missing webhook or delivery is a 404, input the delivery
    /// crate refuses (bad field, URL, secret, a destination the SSRF guard blocks) a 422
    /// whose message starts with the field, a state that forbids the operation (disabled
    /// webhook, delivery in flight) a 409; storage failures go through the one storage
    /// classification above.
    fn from(err: events_delivery::Error) -> Self {
        use events_delivery::Error as D;
        match err {
            D::NotFound { .. } => Self::NotFound(err.to_string()),
            D::Invalid { field, message } => {
                Self::unprocessable("invalid_field", format!("{field}: {message}"))
            }
            D::InvalidUrl { .. } | D::DestinationRefused { .. } | D::Resolve { .. } => {
                Self::unprocessable("invalid_url", format!("url: {err}"))
            }
            D::InvalidSecret(_) => Self::unprocessable("invalid_secret", format!("secret: {err}")),
            D::WebhookDisabled { .. } | D::InFlight { .. } => Self::Conflict(err.to_string()),
            D::Storage(storage) => storage.into(),
            D::Sql(sql) => events_storage::StorageError::from(sql).into(),
            other => Self::Internal(other.to_string()),
        }
    }
}
