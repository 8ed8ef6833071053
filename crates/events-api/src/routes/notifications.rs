//! `/api/notifications…`: list, get, seen (single and bulk), claim, status, resolve.
//!
//! The state machine lives in storage and answers with a [`Transition`]; this module only
//! maps it to HTTP (200 / 404 / 409 / 422) and tells the push hub about changes, so
//! WebSocket clients see `notification_updated` for changes made over HTTP too.

use axum::Json;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use events_envelope::{EventLevel, EventVisibility};
use events_storage::{
    AgentStatus, HumanStatus, Notification, NotificationFilter, NotificationPage, Transition,
};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::error::ApiError;
use crate::extract::{ApiJson, ApiPath, ApiQuery};
use crate::hub::NotificationChange;
use crate::routes::parse_time;
use crate::state::AppState;

/// Filters of `GET /api/notifications` and `POST /api/notifications/seen`.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct NotificationParams {
    /// Exact level: 0..=3 or a name.
    #[param(value_type = Option<String>, pattern = "^ *([0-3]|(EventLevel\\.)?([Ii][Nn][Ff][Rr][Aa][Ss][Tt][Rr][Uu][Cc][Tt][Uu][Rr][Ee]|[Oo][Pp][Ee][Rr][Aa][Tt][Ii][Oo][Nn][Aa][Ll]|[Ww][Oo][Rr][Kk][Ff][Ll][Oo][Ww]|[Bb][Uu][Ss][Ii][Nn][Ee][Ss][Ss])) *$")]
    level: Option<EventLevel>,
    /// Exact domain.
    domain: Option<String>,
    /// `unseen` or `seen`.
    #[param(value_type = Option<String>, pattern = "^(unseen|seen)$")]
    human_status: Option<HumanStatus>,
    /// `none`, `claimed`, `in_progress` or `resolved`.
    #[param(value_type = Option<String>, pattern = "^(none|claimed|in_progress|resolved)$")]
    agent_status: Option<AgentStatus>,
    /// `local`, `cluster` or `public`.
    #[param(value_type = Option<String>, pattern = "^(local|cluster|public)$")]
    visibility: Option<EventVisibility>,
    /// Created at or after this instant (RFC 3339).
    #[param(
        pattern = "^(\\d{4}-(0[1-9]|1[0-2])-(0[1-9]|1\\d|2[0-8])T([01]\\d|2[0-3]):[0-5]\\d:[0-5]\\d(\\.\\d{1,9})?(Z|[+-]([01]\\d|2[0-3]):[0-5]\\d))?$"
    )]
    since: Option<String>,
    /// Page size (default 50; larger values are clamped to 200).
    #[param(value_type = Option<i64>, minimum = 0, maximum = 4294967295.0)]
    limit: Option<u32>,
    /// Rows to skip (newest first).
    #[param(value_type = Option<i64>, minimum = 0, maximum = 4294967295.0)]
    offset: Option<u32>,
}

impl NotificationParams {
    fn into_filter(self) -> Result<NotificationFilter, ApiError> {
        Ok(NotificationFilter {
            level: self.level,
            domain: self.domain,
            human_status: self.human_status,
            agent_status: self.agent_status,
            visibility: self.visibility,
            since: parse_time("since", self.since.as_deref())?,
            limit: self.limit,
            offset: self.offset,
        })
    }
}

/// Documentation of a notification row (every column of brief §6).
#[derive(ToSchema)]
#[schema(as = Notification)]
#[allow(dead_code)] // documentation only: the handlers serialise events_storage::Notification
pub(crate) struct NotificationDoc {
    id: i64,
    event_type: String,
    version: u32,
    source: String,
    /// 0..=3.
    level: u8,
    domain: String,
    /// `local`, `cluster`, `public`.
    visibility: String,
    entity: Option<String>,
    description: String,
    #[schema(value_type = Object)]
    payload: serde_json::Value,
    idempotency_key: Option<String>,
    /// `unseen` or `seen`.
    human_status: String,
    /// `none`, `claimed`, `in_progress`, `resolved`.
    agent_status: String,
    agent_id: Option<String>,
    #[schema(value_type = Option<Object>)]
    resolution: Option<serde_json::Value>,
    created_at: String,
    updated_at: String,
    seen_at: Option<String>,
    claimed_at: Option<String>,
    resolved_at: Option<String>,
    event_id: Option<String>,
    actionable: bool,
    group_field: Option<String>,
    group_value: Option<String>,
}

/// A page of notifications, newest first.
#[derive(ToSchema)]
#[schema(as = NotificationPage)]
#[allow(dead_code)]
pub(crate) struct NotificationPageDoc {
    notifications: Vec<NotificationDoc>,
    total: u64,
    limit: u32,
    offset: u32,
}

/// List notifications.
#[utoipa::path(
    get, path = "/api/notifications", tag = "notifications",
    params(NotificationParams),
    responses(
        (status = 200, description = "a page of notifications", body = NotificationPageDoc),
        (status = 400, description = "bad filter value", body = crate::ErrorBody),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn list(
    State(state): State<AppState>,
    ApiQuery(params): ApiQuery<NotificationParams>,
) -> Result<Response, ApiError> {
    let filter = params.into_filter()?;
    let body = state
        .db
        .read_now(|r| NotificationPage::read_json(r, &filter))
        .await?;
    Ok(json_body(body))
}

/// A 200 with a JSON body the storage layer already wrote, with the headers `Json` sets.
///
/// Lists and gets are the API's hot path: `NotificationPage::read_json` /
/// `Notification::read_json` write the exact JSON `Json<NotificationPage>` /
/// `Json<Notification>` would, straight from the rows (read on the request's own thread,
/// `EventDb::read_now`), instead of building the structs and serialising them here (a
/// quarter of the daemon's time under the `api` benchmark).
fn json_body(body: Vec<u8>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        Body::from(body),
    )
        .into_response()
}

/// Answer of the bulk seen.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct BulkSeenResponse {
    /// How many notifications became seen.
    updated: u64,
}

/// Mark every notification matching the filters as seen.
#[utoipa::path(
    post, path = "/api/notifications/seen", tag = "notifications",
    params(NotificationParams),
    responses(
        (status = 200, description = "how many changed", body = BulkSeenResponse),
        (status = 400, description = "bad filter value", body = crate::ErrorBody),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn bulk_seen(
    State(state): State<AppState>,
    ApiQuery(params): ApiQuery<NotificationParams>,
) -> Result<Json<BulkSeenResponse>, ApiError> {
    let filter = params.into_filter()?;
    let updated = state.db.mark_all_seen(filter).await?;
    Ok(Json(BulkSeenResponse { updated }))
}

fn not_found(id: i64) -> ApiError {
    ApiError::NotFound(format!("no notification with id {id}"))
}

/// Maps a state-machine outcome to HTTP and tells the hub about a change.
fn answer(
    state: &AppState,
    id: i64,
    transition: Transition,
) -> Result<Json<Notification>, ApiError> {
    match transition {
        Transition::Changed(notification) => {
            state.hub.committed([NotificationChange {
                notification_id: id,
                was_created: false,
                // read by the hub: a batch of the processor may commit a change to the
                // same row before this push is published
                row: None,
            }]);
            Ok(Json(notification))
        }
        Transition::Unchanged(notification) => Ok(Json(notification)),
        Transition::Conflict { current } => Err(ApiError::Conflict(
            match (&current.agent_status, &current.agent_id) {
                (AgentStatus::Resolved, _) => format!("notification {id} is already resolved"),
                (status, Some(agent)) => {
                    format!("notification {id} is {status} by agent {agent:?}")
                }
                (status, None) => format!("notification {id} is {status}"),
            },
        )),
        Transition::NotFound => Err(not_found(id)),
        Transition::Invalid(message) => Err(ApiError::unprocessable("invalid_transition", message)),
    }
}

/// Get one notification.
#[utoipa::path(
    get, path = "/api/notifications/{id}", tag = "notifications",
    params(("id" = i64, Path, description = "notification id")),
    responses(
        (status = 200, description = "the notification", body = NotificationDoc),
        (status = 400, description = "id is not an integer", body = crate::ErrorBody),
        (status = 404, description = "no such notification", body = crate::ErrorBody),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn get(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<i64>,
) -> Result<Response, ApiError> {
    state
        .db
        .read_now(|r| Notification::read_json(r, id))
        .await?
        .map(json_body)
        .ok_or_else(|| not_found(id))
}

/// `?unseen=true` undoes a seen.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct SeenParams {
    /// Mark unseen instead of seen.
    #[serde(default)]
    unseen: bool,
}

/// Mark a notification seen (or unseen with `?unseen=true`).
#[utoipa::path(
    patch, path = "/api/notifications/{id}/seen", tag = "notifications",
    params(("id" = i64, Path, description = "notification id"), SeenParams),
    responses(
        (status = 200, description = "the notification afterwards", body = NotificationDoc),
        (status = 404, description = "no such notification", body = crate::ErrorBody),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn seen(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<i64>,
    ApiQuery(params): ApiQuery<SeenParams>,
) -> Result<Json<Notification>, ApiError> {
    let transition = state.db.set_seen(id, !params.unseen).await?;
    answer(&state, id, transition)
}

/// Body of a claim.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ClaimRequest {
    /// Who claims it (not blank).
    #[schema(pattern = r"\S")]
    agent_id: String,
}

fn require_non_empty(field: &str, value: &str) -> Result<(), ApiError> {
    if value.trim().is_empty() {
        Err(ApiError::unprocessable(
            "invalid_field",
            format!("{field}: must not be empty"),
        ))
    } else {
        Ok(())
    }
}

/// Claim a notification for an agent (409 if another agent holds it or it is resolved).
#[utoipa::path(
    post, path = "/api/notifications/{id}/claim", tag = "notifications",
    params(("id" = i64, Path, description = "notification id")),
    request_body = ClaimRequest,
    responses(
        (status = 200, description = "claimed (or already claimed by this agent)", body = NotificationDoc),
        (status = 404, description = "no such notification", body = crate::ErrorBody),
        (status = 409, description = "claimed by another agent, or resolved", body = crate::ErrorBody),
        (status = 422, description = "missing or invalid field", body = crate::ErrorBody),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn claim(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<i64>,
    ApiJson(body): ApiJson<ClaimRequest>,
) -> Result<Json<Notification>, ApiError> {
    require_non_empty("agent_id", &body.agent_id)?;
    let transition = state.db.claim(id, body.agent_id).await?;
    answer(&state, id, transition)
}

/// Body of a status change.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct StatusRequest {
    /// `none` (release), `claimed`, `in_progress` or `resolved`.
    #[schema(pattern = "^(none|claimed|in_progress|resolved)$")]
    status: String,
    /// The agent holding the claim (not blank).
    #[schema(pattern = r"\S")]
    agent_id: String,
}

/// Change the agent status (`none` by the claimer releases the claim).
#[utoipa::path(
    patch, path = "/api/notifications/{id}/status", tag = "notifications",
    params(("id" = i64, Path, description = "notification id")),
    request_body = StatusRequest,
    responses(
        (status = 200, description = "the notification afterwards", body = NotificationDoc),
        (status = 400, description = "unknown status", body = crate::ErrorBody),
        (status = 404, description = "no such notification", body = crate::ErrorBody),
        (status = 409, description = "held by another agent, or resolved", body = crate::ErrorBody),
        (status = 422, description = "transition not allowed from the current state", body = crate::ErrorBody),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn status(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<i64>,
    ApiJson(body): ApiJson<StatusRequest>,
) -> Result<Json<Notification>, ApiError> {
    let status: AgentStatus =
        body.status
            .parse()
            .map_err(|err: events_storage::ParseStatusError| {
                ApiError::bad_request("invalid_status", format!("status: {err}"))
            })?;
    require_non_empty("agent_id", &body.agent_id)?;
    let transition = state.db.set_agent_status(id, status, body.agent_id).await?;
    answer(&state, id, transition)
}

/// Body of a resolve.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ResolveRequest {
    /// What was done (not blank).
    #[schema(pattern = r"\S")]
    summary: String,
    /// Where to read more.
    #[serde(default)]
    link: Option<String>,
    /// Who resolved it (not blank).
    #[schema(pattern = r"\S")]
    resolved_by: String,
}

/// Resolve a notification (409 if already resolved).
#[utoipa::path(
    post, path = "/api/notifications/{id}/resolve", tag = "notifications",
    params(("id" = i64, Path, description = "notification id")),
    request_body = ResolveRequest,
    responses(
        (status = 200, description = "resolved", body = NotificationDoc),
        (status = 404, description = "no such notification", body = crate::ErrorBody),
        (status = 409, description = "already resolved", body = crate::ErrorBody),
        (status = 422, description = "missing or invalid field", body = crate::ErrorBody),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn resolve(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<i64>,
    ApiJson(body): ApiJson<ResolveRequest>,
) -> Result<Json<Notification>, ApiError> {
    require_non_empty("summary", &body.summary)?;
    require_non_empty("resolved_by", &body.resolved_by)?;
    let mut resolution = serde_json::Map::new();
    resolution.insert("summary".into(), body.summary.into());
    if let Some(link) = body.link {
        resolution.insert("link".into(), link.into());
    }
    resolution.insert("resolved_by".into(), body.resolved_by.into());
    let transition = state
        .db
        .resolve(id, serde_json::Value::Object(resolution))
        .await?;
    answer(&state, id, transition)
}
