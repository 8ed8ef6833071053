//! `/api/webhooks`: webhook subscriptions, their deliveries and attempt logs, manual retry
//! and recovery (brief §10) — thin HTTP over [`WebhookAdmin`] of `events-delivery`.
//!
//! These routes are not in the main route table: the daemon builds them with
//! [`webhook_routes`] and hands them to [`crate::serve_with`] as [`ExtraRoutes`], which puts
//! them behind the admin role and merges their OpenAPI document into `/openapi.json`. That
//! keeps the API usable without delivery (tests, other embedders) while the daemon always
//! serves them.
//!
//! The request and response types here mirror the delivery crate's serde types so that the
//! OpenAPI document describes exactly what is parsed and answered; the conversions are the
//! only place the two meet.

use axum::extract::State;
use axum::http::{Method, StatusCode};
use axum::routing::get;
use axum::{Json, Router};
use events_delivery::{
    Attempt, CreateWebhook, CreatedWebhook, Delivery, DeliveryQuery, DeliveryStatus,
    RecoverRequest, RecoverResponse, Trigger, UpdateWebhook, UpdatedWebhook, Webhook, WebhookAdmin,
};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::{IntoParams, Modify, OpenApi, ToSchema};

use crate::auth::Role;
use crate::error::ApiError;
use crate::extract::{ApiJson, ApiPath, ApiQuery};
use crate::server::{ExtraRoutes, RouteInfo};

/// `POST /api/webhooks` body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct CreateWebhookBody {
    /// Destination, `http://` or `https://`. Private, loopback and link-local addresses are
    /// refused unless allow-listed in `[webhooks] allow_destinations`.
    #[schema(min_length = 1, pattern = "^https?://[^/?#\\s]+")]
    url: String,
    /// Event-type globs (`job.*`, `*`); absent = every event.
    #[serde(default)]
    #[schema(schema_with = event_type_patterns_schema)]
    event_types: Option<Vec<String>>,
    /// Free text.
    #[serde(default)]
    description: Option<String>,
    /// `whsec_` + base64 of 24..=64 bytes; generated when absent.
    #[serde(default)]
    #[schema(schema_with = secret_schema)]
    secret: Option<String>,
}

/// A secret `events-delivery` accepts: `whsec_` + canonical padded base64 (the standard
/// alphabet) of 24..=64 bytes, i.e. 8..=20 full groups with an optional partial one, or 21
/// full groups with an optional one-byte tail. The partial group's last character must
/// leave the unused bits zero, as the decoder insists.
const SECRET_PATTERN: &str = "^whsec_(?:(?:[A-Za-z0-9+/]{4}){8,20}(?:[A-Za-z0-9+/][AQgw]==|[A-Za-z0-9+/]{2}[AEIMQUYcgkosw048]=)?|(?:[A-Za-z0-9+/]{4}){21}(?:[A-Za-z0-9+/][AQgw]==)?)$";

/// The schema of `secret` on create and update: [`SECRET_PATTERN`], or `null` for absent.
fn secret_schema() -> utoipa::openapi::Object {
    use utoipa::openapi::schema::{ObjectBuilder, SchemaType, Type};
    ObjectBuilder::new()
        .schema_type(SchemaType::from_iter([Type::String, Type::Null]))
        .pattern(Some(SECRET_PATTERN))
        .description(Some(
            "`whsec_` + base64 of 24..=64 bytes; generated when absent.",
        ))
        .build()
}

/// The schema of `event_types` on create and update: the same rule `events-delivery` applies
/// (an event name whose segments may contain `*`, or `*` alone), so that a client generated
/// from the spec cannot send a pattern the daemon refuses. `null` means "absent".
fn event_type_patterns_schema() -> utoipa::openapi::Array {
    use utoipa::openapi::schema::{ArrayBuilder, ObjectBuilder, SchemaType, Type};
    ArrayBuilder::new()
        .schema_type(SchemaType::from_iter([Type::Array, Type::Null]))
        .items(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .min_length(Some(1))
                .max_length(Some(events_envelope::MAX_NAME_LEN))
                .pattern(Some(r"^(\*|[a-z0-9_*-]+(\.[a-z0-9_*-]+)+)$")),
        )
        .min_items(Some(1))
        .max_items(Some(events_delivery::MAX_EVENT_TYPES))
        .description(Some("Event-type globs (`job.*`, `*`); absent or null = unchanged on update, every event on create."))
        .build()
}

impl From<CreateWebhookBody> for CreateWebhook {
    fn from(body: CreateWebhookBody) -> Self {
        Self {
            url: body.url,
            event_types: body.event_types,
            description: body.description,
            secret: body.secret,
        }
    }
}

/// `PATCH /api/webhooks/{id}` body; absent fields stay as they are.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct UpdateWebhookBody {
    /// New destination (checked like on create).
    #[serde(default)]
    #[schema(min_length = 1, pattern = "^https?://[^/?#\\s]+")]
    url: Option<String>,
    /// New event-type globs.
    #[serde(default)]
    #[schema(schema_with = event_type_patterns_schema)]
    event_types: Option<Vec<String>>,
    /// New description.
    #[serde(default)]
    description: Option<String>,
    /// `true` enables (and clears the failure streak), `false` disables.
    #[serde(default)]
    enabled: Option<bool>,
    /// Rotate the signing secret; the old one keeps signing during the grace period, so
    /// receivers see both signatures.
    #[serde(default)]
    rotate_secret: bool,
    /// A new secret (`whsec_` + base64 of 24..=64 bytes) to rotate to; giving one rotates
    /// even without `rotate_secret`. Generated when rotating without one.
    #[serde(default)]
    #[schema(schema_with = secret_schema)]
    secret: Option<String>,
}

impl From<UpdateWebhookBody> for UpdateWebhook {
    fn from(body: UpdateWebhookBody) -> Self {
        Self {
            url: body.url,
            event_types: body.event_types,
            description: body.description,
            enabled: body.enabled,
            rotate_secret: body.rotate_secret,
            secret: body.secret,
        }
    }
}

/// `POST /api/webhooks/{id}/recover` body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct RecoverBody {
    /// Start of the range: failed deliveries created at or after this instant (RFC 3339).
    #[schema(value_type = String, format = DateTime)]
    #[serde(with = "time::serde::rfc3339")]
    since: OffsetDateTime,
    /// End of the range (RFC 3339); absent = now.
    #[schema(value_type = Option<String>, format = DateTime)]
    #[serde(default, with = "time::serde::rfc3339::option")]
    until: Option<OffsetDateTime>,
}

/// State filter of the delivery list.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub(crate) enum DeliveryState {
    /// Waiting for its next attempt (or being sent).
    Pending,
    /// A receiver answered 2xx.
    Succeeded,
    /// The schedule ran out, the endpoint answered 410, or a manual attempt failed.
    Failed,
}

impl From<DeliveryState> for DeliveryStatus {
    fn from(state: DeliveryState) -> Self {
        match state {
            DeliveryState::Pending => Self::Pending,
            DeliveryState::Succeeded => Self::Succeeded,
            DeliveryState::Failed => Self::Failed,
        }
    }
}

impl From<DeliveryStatus> for DeliveryState {
    fn from(status: DeliveryStatus) -> Self {
        match status {
            DeliveryStatus::Pending => Self::Pending,
            DeliveryStatus::Succeeded => Self::Succeeded,
            DeliveryStatus::Failed => Self::Failed,
        }
    }
}

/// Paging and filtering of `GET /api/webhooks/{id}/deliveries`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(crate) struct DeliveryParams {
    /// Only deliveries in this state.
    status: Option<DeliveryState>,
    /// Page backwards: only deliveries with a smaller id (pass the last id of a page).
    before_id: Option<i64>,
    /// Page size (default 50; larger values are clamped to 200).
    #[param(value_type = Option<i64>, minimum = 0, maximum = 4294967295.0)]
    limit: Option<u32>,
}

/// A webhook subscription (its secret is shown only on create and rotation).
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct WebhookRow {
    /// Id used in the paths.
    id: i64,
    /// Destination URL.
    url: String,
    /// Event-type globs.
    event_types: Vec<String>,
    /// Free text.
    description: String,
    /// Disabled endpoints get no new deliveries; their pending ones wait.
    enabled: bool,
    /// Why it was disabled automatically (`410 gone`, too many failures in a row).
    disabled_reason: Option<String>,
    /// Deliveries that ended failed in a row.
    consecutive_failures: u32,
    /// Until when the previous secret still signs, during a rotation (RFC 3339).
    #[schema(value_type = Option<String>, format = DateTime)]
    #[serde(with = "time::serde::rfc3339::option")]
    previous_secret_until: Option<OffsetDateTime>,
    /// Creation time (RFC 3339).
    #[schema(value_type = String, format = DateTime)]
    #[serde(with = "time::serde::rfc3339")]
    created_at: OffsetDateTime,
    /// Last change (RFC 3339).
    #[schema(value_type = String, format = DateTime)]
    #[serde(with = "time::serde::rfc3339")]
    updated_at: OffsetDateTime,
}

impl From<Webhook> for WebhookRow {
    fn from(w: Webhook) -> Self {
        Self {
            id: w.id,
            url: w.url,
            event_types: w.event_types,
            description: w.description,
            enabled: w.enabled,
            disabled_reason: w.disabled_reason,
            consecutive_failures: w.consecutive_failures,
            previous_secret_until: w.previous_secret_until,
            created_at: w.created_at,
            updated_at: w.updated_at,
        }
    }
}

/// Answer to a create, or to an update that rotated the secret: the webhook and its
/// (new) signing secret, shown this once.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct WebhookWithSecret {
    /// The webhook.
    #[serde(flatten)]
    webhook: WebhookRow,
    /// `whsec_...`; keep it, it is not shown again. Absent after an update without rotation.
    #[serde(skip_serializing_if = "Option::is_none")]
    secret: Option<String>,
}

impl From<CreatedWebhook> for WebhookWithSecret {
    fn from(c: CreatedWebhook) -> Self {
        Self {
            webhook: c.webhook.into(),
            secret: Some(c.secret),
        }
    }
}

impl From<UpdatedWebhook> for WebhookWithSecret {
    fn from(u: UpdatedWebhook) -> Self {
        Self {
            webhook: u.webhook.into(),
            secret: u.secret,
        }
    }
}

/// All webhooks.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct WebhookList {
    /// Oldest first.
    webhooks: Vec<WebhookRow>,
}

/// What caused an attempt.
#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub(crate) enum AttemptTrigger {
    /// The retry schedule.
    Scheduled,
    /// An operator (retry of one delivery, recovery of a range).
    Manual,
}

/// One HTTP exchange with the receiver.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct AttemptRow {
    /// When the request started (RFC 3339).
    #[schema(value_type = String, format = DateTime)]
    #[serde(with = "time::serde::rfc3339")]
    attempted_at: OffsetDateTime,
    /// HTTP status; absent when there was no answer.
    status_code: Option<u16>,
    /// Time to headers and excerpt.
    latency_ms: u64,
    /// First KiB of the response body.
    response_excerpt: Option<String>,
    /// Transport error or refusal.
    error: Option<String>,
    /// What caused the attempt.
    trigger: AttemptTrigger,
}

impl From<Attempt> for AttemptRow {
    fn from(a: Attempt) -> Self {
        Self {
            attempted_at: a.attempted_at,
            status_code: a.status_code,
            latency_ms: a.latency_ms,
            response_excerpt: a.response_excerpt,
            error: a.error,
            trigger: match a.trigger {
                Trigger::Manual => AttemptTrigger::Manual,
                Trigger::Scheduled => AttemptTrigger::Scheduled,
            },
        }
    }
}

/// One message to one webhook, with its attempt log.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct DeliveryRow {
    /// Id used in the retry path.
    id: i64,
    /// The `webhook-id` header; receivers dedupe on it.
    msg_id: String,
    /// The webhook.
    webhook_id: i64,
    /// The event delivered.
    event_id: Option<String>,
    /// Its type.
    event_type: String,
    /// Current state.
    status: DeliveryState,
    /// Attempts so far.
    attempts: u32,
    /// When the next attempt is due (pending only; RFC 3339).
    #[schema(value_type = Option<String>, format = DateTime)]
    #[serde(with = "time::serde::rfc3339::option")]
    next_attempt_at: Option<OffsetDateTime>,
    /// Error of the last failed attempt.
    last_error: Option<String>,
    /// Enqueue time (RFC 3339).
    #[schema(value_type = String, format = DateTime)]
    #[serde(with = "time::serde::rfc3339")]
    created_at: OffsetDateTime,
    /// Last change (RFC 3339).
    #[schema(value_type = String, format = DateTime)]
    #[serde(with = "time::serde::rfc3339")]
    updated_at: OffsetDateTime,
    /// Every attempt, oldest first.
    attempt_log: Vec<AttemptRow>,
}

impl From<Delivery> for DeliveryRow {
    fn from(d: Delivery) -> Self {
        Self {
            id: d.id,
            msg_id: d.msg_id,
            webhook_id: d.webhook_id,
            event_id: d.event_id,
            event_type: d.event_type,
            status: d.status.into(),
            attempts: d.attempts,
            next_attempt_at: d.next_attempt_at,
            last_error: d.last_error,
            created_at: d.created_at,
            updated_at: d.updated_at,
            attempt_log: d.attempt_log.into_iter().map(AttemptRow::from).collect(),
        }
    }
}

/// A page of deliveries.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct DeliveryPage {
    /// Newest first.
    deliveries: Vec<DeliveryRow>,
    /// Pass as `before_id` for the next (older) page; absent when this page is the last.
    next_before_id: Option<i64>,
}

/// Answer to a recovery.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct RecoverAnswer {
    /// Failed deliveries re-enqueued for one manual attempt each.
    recovered: u64,
}

impl From<RecoverResponse> for RecoverAnswer {
    fn from(r: RecoverResponse) -> Self {
        Self {
            recovered: r.recovered,
        }
    }
}

/// List webhooks.
#[utoipa::path(
    get, path = "/api/webhooks", tag = "webhooks",
    responses((status = 200, description = "every webhook, oldest first", body = WebhookList)),
    security(("bearer" = []))
)]
pub(crate) async fn list(State(admin): State<WebhookAdmin>) -> Result<Json<WebhookList>, ApiError> {
    let webhooks = admin.list().await?;
    Ok(Json(WebhookList {
        webhooks: webhooks.into_iter().map(WebhookRow::from).collect(),
    }))
}

/// Create a webhook; the answer carries its signing secret, shown only this once.
#[utoipa::path(
    post, path = "/api/webhooks", tag = "webhooks",
    request_body = CreateWebhookBody,
    responses(
        (status = 201, description = "created; `secret` is not shown again", body = WebhookWithSecret),
        (status = 400, description = "malformed JSON", body = crate::ErrorBody),
        (status = 422, description = "a field is invalid or the destination is refused", body = crate::ErrorBody),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn create(
    State(admin): State<WebhookAdmin>,
    ApiJson(body): ApiJson<CreateWebhookBody>,
) -> Result<(StatusCode, Json<WebhookWithSecret>), ApiError> {
    let created = admin.create(body.into()).await?;
    Ok((StatusCode::CREATED, Json(created.into())))
}

/// One webhook.
#[utoipa::path(
    get, path = "/api/webhooks/{id}", tag = "webhooks",
    params(("id" = i64, Path, description = "webhook id")),
    responses(
        (status = 200, description = "the webhook", body = WebhookRow),
        (status = 404, description = "no such webhook", body = crate::ErrorBody),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn get_one(
    State(admin): State<WebhookAdmin>,
    ApiPath(id): ApiPath<i64>,
) -> Result<Json<WebhookRow>, ApiError> {
    Ok(Json(admin.get(id).await?.into()))
}

/// Change a webhook: URL, event types, description, enabled, or rotate its secret.
#[utoipa::path(
    patch, path = "/api/webhooks/{id}", tag = "webhooks",
    params(("id" = i64, Path, description = "webhook id")),
    request_body = UpdateWebhookBody,
    responses(
        (status = 200, description = "the changed webhook; `secret` only after a rotation", body = WebhookWithSecret),
        (status = 404, description = "no such webhook", body = crate::ErrorBody),
        (status = 422, description = "a field is invalid or the destination is refused", body = crate::ErrorBody),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn update(
    State(admin): State<WebhookAdmin>,
    ApiPath(id): ApiPath<i64>,
    ApiJson(body): ApiJson<UpdateWebhookBody>,
) -> Result<Json<WebhookWithSecret>, ApiError> {
    Ok(Json(admin.update(id, body.into()).await?.into()))
}

/// Delete a webhook and its deliveries.
#[utoipa::path(
    delete, path = "/api/webhooks/{id}", tag = "webhooks",
    params(("id" = i64, Path, description = "webhook id")),
    responses(
        (status = 204, description = "deleted"),
        (status = 404, description = "no such webhook", body = crate::ErrorBody),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn delete(
    State(admin): State<WebhookAdmin>,
    ApiPath(id): ApiPath<i64>,
) -> Result<StatusCode, ApiError> {
    admin.delete(id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// A webhook's deliveries, newest first, each with its attempt log.
#[utoipa::path(
    get, path = "/api/webhooks/{id}/deliveries", tag = "webhooks",
    params(("id" = i64, Path, description = "webhook id"), DeliveryParams),
    responses(
        (status = 200, description = "a page of deliveries", body = DeliveryPage),
        (status = 400, description = "a bad query value", body = crate::ErrorBody),
        (status = 404, description = "no such webhook", body = crate::ErrorBody),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn deliveries(
    State(admin): State<WebhookAdmin>,
    ApiPath(id): ApiPath<i64>,
    ApiQuery(params): ApiQuery<DeliveryParams>,
) -> Result<Json<DeliveryPage>, ApiError> {
    let query = DeliveryQuery {
        status: params.status.map(DeliveryStatus::from),
        before_id: params.before_id,
        limit: params.limit,
    };
    let limit = params.limit.unwrap_or(50).clamp(1, 200) as usize;
    let page = admin.deliveries(id, query).await?;
    let next_before_id = if page.len() >= limit {
        page.last().map(|d| d.id)
    } else {
        None
    };
    Ok(Json(DeliveryPage {
        deliveries: page.into_iter().map(DeliveryRow::from).collect(),
        next_before_id,
    }))
}

/// Send one delivery again now (one manual attempt, same `webhook-id`).
#[utoipa::path(
    post, path = "/api/webhooks/{id}/deliveries/{delivery_id}/retry", tag = "webhooks",
    params(
        ("id" = i64, Path, description = "webhook id"),
        ("delivery_id" = i64, Path, description = "delivery id"),
    ),
    responses(
        (status = 202, description = "due now; the worker sends it", body = DeliveryRow),
        (status = 404, description = "no such webhook or delivery", body = crate::ErrorBody),
        (status = 409, description = "the webhook is disabled or the delivery is being sent", body = crate::ErrorBody),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn retry(
    State(admin): State<WebhookAdmin>,
    ApiPath((id, delivery_id)): ApiPath<(i64, i64)>,
) -> Result<(StatusCode, Json<DeliveryRow>), ApiError> {
    let delivery = admin.retry(id, delivery_id).await?;
    Ok((StatusCode::ACCEPTED, Json(delivery.into())))
}

/// Re-enqueue the failed deliveries created in `[since, until]` for one manual attempt each.
#[utoipa::path(
    post, path = "/api/webhooks/{id}/recover", tag = "webhooks",
    params(("id" = i64, Path, description = "webhook id")),
    request_body = RecoverBody,
    responses(
        (status = 202, description = "how many deliveries were re-enqueued", body = RecoverAnswer),
        (status = 404, description = "no such webhook", body = crate::ErrorBody),
        (status = 409, description = "the webhook is disabled", body = crate::ErrorBody),
        (status = 422, description = "`until` is before `since` or not a timestamp", body = crate::ErrorBody),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn recover(
    State(admin): State<WebhookAdmin>,
    ApiPath(id): ApiPath<i64>,
    ApiJson(body): ApiJson<RecoverBody>,
) -> Result<(StatusCode, Json<RecoverAnswer>), ApiError> {
    let request = RecoverRequest {
        since: body.since,
        until: body.until,
    };
    let answer = admin.recover(id, request).await?;
    Ok((StatusCode::ACCEPTED, Json(answer.into())))
}

#[derive(OpenApi)]
#[openapi(
    paths(list, create, get_one, update, delete, deliveries, retry, recover),
    components(schemas(DeliveryState, AttemptTrigger)),
    modifiers(&BearerAuth),
    tags((name = "webhooks", description = "signed webhook subscriptions and their deliveries (admin)"))
)]
struct WebhookDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
        );
    }
}

/// The `/api/webhooks` routes over `admin`, ready for [`crate::serve_with`]: the router
/// (admin role applied by the server), its OpenAPI document and its route list.
pub fn webhook_routes(admin: WebhookAdmin) -> ExtraRoutes {
    let router = Router::new()
        .route("/api/webhooks", get(list).post(create))
        .route(
            "/api/webhooks/{id}",
            get(get_one).patch(update).delete(delete),
        )
        .route("/api/webhooks/{id}/deliveries", get(deliveries))
        .route(
            "/api/webhooks/{id}/deliveries/{delivery_id}/retry",
            axum::routing::post(retry),
        )
        .route("/api/webhooks/{id}/recover", axum::routing::post(recover))
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(admin);
    let routes = [
        (Method::GET, "/api/webhooks"),
        (Method::POST, "/api/webhooks"),
        (Method::GET, "/api/webhooks/{id}"),
        (Method::PATCH, "/api/webhooks/{id}"),
        (Method::DELETE, "/api/webhooks/{id}"),
        (Method::GET, "/api/webhooks/{id}/deliveries"),
        (
            Method::POST,
            "/api/webhooks/{id}/deliveries/{delivery_id}/retry",
        ),
        (Method::POST, "/api/webhooks/{id}/recover"),
    ]
    .into_iter()
    .map(|(method, path)| RouteInfo {
        method,
        path: path.to_owned(),
        role: Some(Role::Admin),
    })
    .collect();
    ExtraRoutes {
        router,
        openapi: Some(WebhookDoc::openapi()),
        routes,
    }
}

async fn method_not_allowed() -> ApiError {
    ApiError::MethodNotAllowed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_webhook_route_is_in_the_document_and_nothing_else() {
        let doc = serde_json::to_value(WebhookDoc::openapi()).unwrap();
        let paths = doc["paths"].as_object().unwrap();
        // Build the route list without a database: the table is static.
        let expected = [
            ("get", "/api/webhooks"),
            ("post", "/api/webhooks"),
            ("get", "/api/webhooks/{id}"),
            ("patch", "/api/webhooks/{id}"),
            ("delete", "/api/webhooks/{id}"),
            ("get", "/api/webhooks/{id}/deliveries"),
            ("post", "/api/webhooks/{id}/deliveries/{delivery_id}/retry"),
            ("post", "/api/webhooks/{id}/recover"),
        ];
        for (method, path) in expected {
            assert!(
                paths.get(path).and_then(|p| p.get(method)).is_some(),
                "{method} {path} missing from the webhook document"
            );
        }
        let operations: usize = paths.values().map(|p| p.as_object().unwrap().len()).sum();
        assert_eq!(operations, expected.len());
    }

    /// The spec's patterns must describe exactly what `events-delivery` accepts: a
    /// narrower pattern makes clients refuse valid input, a wider one makes the daemon
    /// refuse spec-valid input (schemathesis reports both).
    #[test]
    fn schema_patterns_match_what_delivery_accepts() {
        let secret = regex::Regex::new(SECRET_PATTERN).unwrap();
        let mut candidates = vec![String::new(), "whsec_".into(), "wh_AAAA".into()];
        for len in 0..=100usize {
            for tail in ["", "=", "==", "Q==", "R==", "AE=", "AF=", "/w==", "+8="] {
                if let Some(fill) = len.checked_sub(tail.len()) {
                    candidates.push(format!("whsec_{}{tail}", "A".repeat(fill)));
                    candidates.push(format!(
                        "whsec_{}{tail}",
                        "z9+/".repeat(fill / 4 + 1)[..fill].to_owned()
                    ));
                }
            }
        }
        candidates.push(
            events_delivery::signing::WebhookSecret::generate()
                .expose()
                .to_owned(),
        );
        for text in &candidates {
            let accepted = events_delivery::signing::WebhookSecret::parse(text).is_ok();
            assert_eq!(secret.is_match(text), accepted, "secret {text:?}");
        }

        let schema = serde_json::to_value(event_type_patterns_schema()).unwrap();
        assert_eq!(schema["maxItems"], events_delivery::MAX_EVENT_TYPES);
        let item = &schema["items"];
        let pattern = regex::Regex::new(item["pattern"].as_str().unwrap()).unwrap();
        let max_len = item["maxLength"].as_u64().unwrap() as usize;
        let long = format!("a.{}", "b".repeat(events_envelope::MAX_NAME_LEN));
        for text in [
            "*",
            "job.*",
            "*.failed",
            "a.*.c",
            "job.completed",
            "a-b.c_d.9",
            "**.x",
            "",
            "job",
            "Job.*",
            "job..x",
            ".job",
            "job.",
            "job.ä",
            "job.a b",
            "*.",
            "?.x",
            long.as_str(),
        ] {
            let spec_valid = pattern.is_match(text) && text.len() <= max_len;
            let accepted = events_delivery::check_event_types(vec![text.to_owned()]).is_ok();
            assert_eq!(spec_valid, accepted, "event type pattern {text:?}");
        }
    }

    #[test]
    fn delivery_errors_map_to_their_status() {
        use events_delivery::Error as D;
        let cases: Vec<(D, u16, &str)> = vec![
            (
                D::NotFound {
                    what: "webhook",
                    id: "7".into(),
                },
                404,
                "webhook",
            ),
            (
                D::Invalid {
                    field: "event_types",
                    message: "must list at least one pattern".into(),
                },
                422,
                "event_types:",
            ),
            (
                D::InvalidUrl {
                    url: "ftp://x".into(),
                    reason: "scheme".into(),
                },
                422,
                "url:",
            ),
            (
                D::DestinationRefused {
                    host: "169.254.169.254".into(),
                    addr: "169.254.169.254".parse().unwrap(),
                    range: "link-local",
                },
                422,
                "url:",
            ),
            (D::InvalidSecret("too short".into()), 422, "secret:"),
            (D::WebhookDisabled { id: 1 }, 409, "webhook 1"),
            (D::InFlight { id: 2 }, 409, "delivery 2"),
        ];
        for (err, status, starts) in cases {
            let api = ApiError::from(err);
            assert_eq!(api.status().as_u16(), status, "{api}");
            assert!(api.to_string().starts_with(starts), "{api}");
        }
    }
}
