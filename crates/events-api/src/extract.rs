//! Extractors whose rejections are [`ApiError`]s, so malformed input never produces axum's
//! plain-text rejections (or a 500): bad JSON is a 400, a wrong content type 415, an
//! oversize body 413, a value of the wrong type or an unknown enum value 422 naming the
//! field (axum runs serde through `serde_path_to_error`, so the message carries the path).

use axum::extract::{FromRequest, FromRequestParts};

use crate::error::ApiError;

/// `axum::Json` with JSON error responses.
#[derive(Debug, Clone, Copy, Default, FromRequest)]
#[from_request(via(axum::Json), rejection(ApiError))]
pub struct ApiJson<T>(pub T);

/// `axum::extract::Query` with JSON error responses naming the parameter.
#[derive(Debug, Clone, Copy, Default, FromRequestParts)]
#[from_request(via(axum::extract::Query), rejection(ApiError))]
pub struct ApiQuery<T>(pub T);

/// `axum::extract::Path` with JSON error responses naming the bad segment.
#[derive(Debug, Clone, Copy, Default, FromRequestParts)]
#[from_request(via(axum::extract::Path), rejection(ApiError))]
pub struct ApiPath<T>(pub T);
