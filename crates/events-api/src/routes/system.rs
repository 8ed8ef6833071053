//! `/health`, `/ready`, `/metrics`, `/openapi.json` and `/api/catalog`.

use std::time::Duration;

use axum::Json;
use axum::extract::{Extension, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use events_envelope::EventSchema;
use serde::Serialize;
use utoipa::ToSchema;

use crate::error::ApiError;
use crate::state::{AppState, Readiness};

/// How long `/ready` waits for one component.
const CHECK_TIMEOUT: Duration = Duration::from_secs(2);

/// Liveness answer.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Health {
    /// Always `ok` while the process serves.
    status: &'static str,
    /// The database identity.
    epoch: String,
}

/// Liveness: the process is up and serving.
#[utoipa::path(get, path = "/health", tag = "system", responses((status = 200, description = "alive", body = Health)))]
pub(crate) async fn health(State(state): State<AppState>) -> Json<Health> {
    Json(Health {
        status: "ok",
        epoch: state.epoch().to_owned(),
    })
}

/// Readiness answer: every component and the overall verdict.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ReadyReport {
    /// Whether every component is ready.
    ready: bool,
    /// Per component (`database`, `redis`, `processor`, ...).
    #[schema(value_type = Object)]
    components: serde_json::Map<String, serde_json::Value>,
}

/// Readiness per component; 503 when any is not ready.
#[utoipa::path(
    get, path = "/ready", tag = "system",
    responses(
        (status = 200, description = "ready", body = ReadyReport),
        (status = 503, description = "not ready; see the failing component", body = ReadyReport),
    )
)]
pub(crate) async fn ready(State(state): State<AppState>) -> (StatusCode, Json<ReadyReport>) {
    let mut components = serde_json::Map::new();
    let database = match tokio::time::timeout(CHECK_TIMEOUT, state.db.max_seq()).await {
        Ok(Ok(seq)) => Readiness::ok().with("max_seq", seq),
        Ok(Err(err)) => Readiness::failing(err.to_string()),
        Err(_) => Readiness::failing(format!("no answer within {CHECK_TIMEOUT:?}")),
    };
    let mut all_ready = database.ready;
    components.insert(
        "database".into(),
        serde_json::to_value(&database).unwrap_or_default(),
    );
    for (name, check) in state.readiness.iter() {
        let readiness = tokio::time::timeout(CHECK_TIMEOUT, check.check())
            .await
            .unwrap_or_else(|_| Readiness::failing(format!("no answer within {CHECK_TIMEOUT:?}")));
        all_ready &= readiness.ready;
        components.insert(
            name.clone(),
            serde_json::to_value(&readiness).unwrap_or_default(),
        );
    }
    let status = if all_ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        status,
        Json(ReadyReport {
            ready: all_ready,
            components,
        }),
    )
}

/// Prometheus metrics (text exposition format).
#[utoipa::path(
    get, path = "/metrics", tag = "system",
    responses(
        (status = 200, description = "Prometheus text", content_type = "text/plain", body = String),
        (status = 503, description = "no recorder in this process", body = crate::ErrorBody),
    )
)]
pub(crate) async fn metrics(State(state): State<AppState>) -> Result<Response, ApiError> {
    let handle = state.metrics.as_ref().ok_or_else(|| {
        ApiError::Unavailable("metrics recorder not installed in this process".to_owned())
    })?;
    metrics::gauge!("events_push_published_seq").set(state.hub.published_seq() as f64);
    // Kept by the storage layer itself (it records no metrics): read at scrape time.
    metrics::counter!("events_storage_commits_total").absolute(state.db.commit_count());
    metrics::counter!("events_storage_checkpoints_total").absolute(state.db.checkpoints_run());
    Ok((
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        handle.render(),
    )
        .into_response())
}

/// The OpenAPI 3 document of this API, generated from the handlers.
#[utoipa::path(
    get, path = "/openapi.json", tag = "system",
    responses((status = 200, description = "OpenAPI 3 document", body = Object))
)]
pub(crate) async fn openapi_json(Extension(doc): Extension<OpenApiText>) -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        doc.0.to_string(),
    )
        .into_response()
}

/// The served OpenAPI document (this crate's plus any extra routes'), serialised once.
#[derive(Debug, Clone)]
pub(crate) struct OpenApiText(pub(crate) std::sync::Arc<str>);

/// The catalog as served.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct CatalogResponse {
    /// Every known event type, sorted.
    #[schema(value_type = Vec<Object>)]
    schemas: Vec<EventSchema>,
}

/// Every event type the daemon knows (built-in and from the catalog directory).
#[utoipa::path(
    get, path = "/api/catalog", tag = "catalog",
    responses((status = 200, description = "all schemas", body = CatalogResponse)),
    security(("bearer" = []))
)]
pub(crate) async fn catalog(State(state): State<AppState>) -> Json<CatalogResponse> {
    Json(CatalogResponse {
        schemas: state.catalog.list_all().into_iter().cloned().collect(),
    })
}
