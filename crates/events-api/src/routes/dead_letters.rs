//! `/api/dead-letters`: entries the processor gave up on, with the reason; replay and delete.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use events_storage::DeadLetter;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::error::ApiError;
use crate::extract::{ApiPath, ApiQuery};
use crate::state::AppState;

/// Paging of the dead-letter list.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct DeadLetterParams {
    /// Only dead letters with `id` greater than this.
    after_id: Option<i64>,
    /// Page size (default 100; larger values are clamped to 1000).
    #[param(value_type = Option<i64>, minimum = 0, maximum = 4294967295.0)]
    limit: Option<u32>,
}

/// One dead letter as listed.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct DeadLetterRow {
    /// Row id (what replay and delete take).
    id: i64,
    /// The stream the entry came from.
    stream: String,
    /// Its entry id there.
    entry_id: String,
    /// Its original fields, as an object (field → text).
    #[schema(value_type = Object)]
    fields: serde_json::Map<String, serde_json::Value>,
    /// Why it failed.
    reason: String,
    /// Deliveries before giving up.
    delivery_count: u32,
    /// When it was dead-lettered (RFC 3339).
    #[schema(value_type = String)]
    #[serde(with = "time::serde::rfc3339")]
    created_at: time::OffsetDateTime,
}

impl From<DeadLetter> for DeadLetterRow {
    fn from(letter: DeadLetter) -> Self {
        Self {
            id: letter.id,
            stream: letter.stream,
            entry_id: letter.entry_id,
            fields: letter
                .fields
                .into_iter()
                .map(|(k, v)| (k, serde_json::Value::String(v)))
                .collect(),
            reason: letter.reason,
            delivery_count: letter.delivery_count,
            created_at: letter.created_at,
        }
    }
}

/// A page of dead letters.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct DeadLetterPage {
    /// Oldest first.
    dead_letters: Vec<DeadLetterRow>,
    /// Pass as `after_id` for the next page.
    next_after_id: Option<i64>,
}

/// List dead letters, oldest first.
#[utoipa::path(
    get, path = "/api/dead-letters", tag = "dead-letters",
    params(DeadLetterParams),
    responses((status = 200, description = "a page of dead letters", body = DeadLetterPage)),
    security(("bearer" = []))
)]
pub(crate) async fn list(
    State(state): State<AppState>,
    ApiQuery(params): ApiQuery<DeadLetterParams>,
) -> Result<Json<DeadLetterPage>, ApiError> {
    let limit = params.limit.unwrap_or(100).clamp(1, 1000);
    let rows = state
        .db
        .list_dead_letters(params.after_id.unwrap_or(0), limit)
        .await?;
    let next_after_id = rows.last().map(|row| row.id).or(params.after_id);
    Ok(Json(DeadLetterPage {
        dead_letters: rows.into_iter().map(DeadLetterRow::from).collect(),
        next_after_id,
    }))
}

/// Answer of a replay.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ReplayResponse {
    /// The dead letter replayed (now deleted).
    id: i64,
    /// The new stream entry id of its fields.
    stream_id: String,
}

fn not_found(id: i64) -> ApiError {
    ApiError::NotFound(format!("no dead letter with id {id}"))
}

/// Re-append a dead letter's original fields as a new stream entry and remove it from the list.
///
/// The entry goes through the pipeline again from delivery 1: replay after fixing the
/// cause (a catalog file, a cartridge).
#[utoipa::path(
    post, path = "/api/dead-letters/{id}/replay", tag = "dead-letters",
    params(("id" = i64, Path, description = "dead letter id")),
    responses(
        (status = 202, description = "re-appended to the stream", body = ReplayResponse),
        (status = 404, description = "no such dead letter", body = crate::ErrorBody),
        (status = 503, description = "transport unavailable", body = crate::ErrorBody),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn replay(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<i64>,
) -> Result<(StatusCode, Json<ReplayResponse>), ApiError> {
    match events_processor::replay_dead_letter(&state.db, state.dead_letter_target.as_ref(), id)
        .await
    {
        Ok(stream_id) => Ok((StatusCode::ACCEPTED, Json(ReplayResponse { id, stream_id }))),
        Err(events_processor::Error::DeadLetterNotFound(_)) => Err(not_found(id)),
        Err(events_processor::Error::Storage(err)) => Err(err.into()),
        Err(err) => Err(ApiError::Unavailable(format!(
            "cannot replay dead letter {id} right now: {err}"
        ))),
    }
}

/// Delete a dead letter without replaying it.
#[utoipa::path(
    delete, path = "/api/dead-letters/{id}", tag = "dead-letters",
    params(("id" = i64, Path, description = "dead letter id")),
    responses(
        (status = 204, description = "deleted"),
        (status = 404, description = "no such dead letter", body = crate::ErrorBody),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn delete(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<i64>,
) -> Result<StatusCode, ApiError> {
    if state.db.delete_dead_letter(id).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(not_found(id))
    }
}
