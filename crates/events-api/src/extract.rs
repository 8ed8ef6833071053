//! Extractors whose rejections are [`ApiError`]s, so malformed input never produces axum's
//! plain-text rejections (or a 500): bad JSON is a 400, a wrong content type 415, an
//! oversize body 413, a value of the wrong type or an unknown enum value 422 naming the
//! field (axum runs serde through `serde_path_to_error`, so the message carries the path).

use axum::extract::{FromRequest, FromRequestParts};

use crate::error::ApiError;

/// `axum::Json` with JSON error responses, for bodies that are JSON objects.
///
/// serde's derived `Deserialize` also accepts a JSON *array* for a struct (fields by
/// position), so `[null, null]` would pass as an empty update; every body of this API is an
/// object, so a top-level array is refused with 422 (found by schemathesis).
#[derive(Debug, Clone, Copy, Default)]
pub struct ApiJson<T>(pub T);

impl<T, S> FromRequest<S> for ApiJson<T>
where
    T: serde::de::DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: axum::extract::Request, state: &S) -> Result<Self, ApiError> {
        let (parts, body) = req.into_parts();
        let request = axum::extract::Request::from_parts(parts.clone(), body);
        let bytes = axum::body::Bytes::from_request(request, state)
            .await
            .map_err(|e| ApiError::from(axum::extract::rejection::JsonRejection::from(e)))?;
        let is_array = bytes.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'[');
        let request = axum::extract::Request::from_parts(parts, axum::body::Body::from(bytes));
        // axum::Json keeps its content-type (415) and syntax (400) checks and their order.
        let axum::Json(value) = axum::Json::<T>::from_request(request, state).await?;
        if is_array {
            return Err(ApiError::unprocessable(
                "invalid_body",
                "the body must be a JSON object, not an array",
            ));
        }
        Ok(Self(value))
    }
}

/// `axum::extract::Query` with JSON error responses naming the parameter.
#[derive(Debug, Clone, Copy, Default, FromRequestParts)]
#[from_request(via(axum::extract::Query), rejection(ApiError))]
pub struct ApiQuery<T>(pub T);

/// `axum::extract::Path` with JSON error responses naming the bad segment.
#[derive(Debug, Clone, Copy, Default, FromRequestParts)]
#[from_request(via(axum::extract::Path), rejection(ApiError))]
pub struct ApiPath<T>(pub T);
