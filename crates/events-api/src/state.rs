//! [`AppState`]: everything a handler needs, shared by all connections.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use events_envelope::{DEFAULT_MAX_PAYLOAD_BYTES, EventCatalog};
use events_processor::RawAppend;
use events_producer::Producer;
use events_storage::EventDb;
use metrics_exporter_prometheus::PrometheusHandle;
use serde::Serialize;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use utoipa::ToSchema;

use crate::auth::{AuthConfig, Authenticator, RateLimiter};
use crate::hub::PushHub;
use crate::{DEFAULT_MAX_BODY_BYTES, Result};

/// Limits and timings of the API (`[limits]` in the daemon's config, plus protocol timings
/// tests shorten).
#[derive(Debug, Clone, PartialEq)]
pub struct Limits {
    /// Requests per second per token; 0 = unlimited.
    pub requests_per_second: u32,
    /// Largest request body.
    pub max_body_bytes: usize,
    /// Largest serialised event payload.
    pub max_payload_bytes: usize,
    /// Refuse event types the catalog does not know (422).
    pub strict_catalog: bool,
    /// WebSocket ping interval (30 s).
    pub ws_ping_interval: Duration,
    /// SSE heartbeat comment interval (15 s).
    pub sse_heartbeat: Duration,
    /// How long a WebSocket send may take before the client is considered stuck and dropped.
    pub ws_send_timeout: Duration,
    /// How long a client may take to send a request's headers (10 s) before the connection
    /// is closed: without it, slowloris-style clients hold connections open indefinitely.
    pub header_read_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            requests_per_second: 1000,
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            max_payload_bytes: DEFAULT_MAX_PAYLOAD_BYTES,
            strict_catalog: false,
            ws_ping_interval: Duration::from_secs(30),
            sse_heartbeat: Duration::from_secs(15),
            ws_send_timeout: Duration::from_secs(10),
            header_read_timeout: Duration::from_secs(10),
        }
    }
}

/// One component's answer to "are you ready?" (part of `GET /ready`).
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct Readiness {
    /// Whether this component lets the daemon serve.
    pub ready: bool,
    /// Component-specific detail (e.g. `lag`, `last_error`).
    #[schema(value_type = Object)]
    pub detail: serde_json::Map<String, serde_json::Value>,
}

impl Readiness {
    /// Ready, with no detail.
    pub fn ok() -> Self {
        Self {
            ready: true,
            detail: serde_json::Map::new(),
        }
    }

    /// Not ready, with a message under `detail.error`.
    pub fn failing(message: impl Into<String>) -> Self {
        let mut detail = serde_json::Map::new();
        detail.insert("error".into(), serde_json::Value::String(message.into()));
        Self {
            ready: false,
            detail,
        }
    }

    /// Adds a detail field.
    pub fn with(mut self, key: &str, value: impl Into<serde_json::Value>) -> Self {
        self.detail.insert(key.to_owned(), value.into());
        self
    }
}

/// A component `/ready` asks (Redis, the processor); the database is always checked.
///
/// A trait rather than concrete types so the daemon decides what "ready" means for the
/// transport it runs, and the API stays independent of how the processor reports itself.
pub trait ReadinessCheck: Send + Sync {
    /// The component's current state; should answer quickly (`/ready` bounds it anyway).
    fn check(&self) -> Pin<Box<dyn Future<Output = Readiness> + Send + '_>>;
}

impl<F, Fut> ReadinessCheck for F
where
    F: Fn() -> Fut + Send + Sync,
    Fut: Future<Output = Readiness> + Send + 'static,
{
    fn check(&self) -> Pin<Box<dyn Future<Output = Readiness> + Send + '_>> {
        Box::pin(self())
    }
}

/// Everything handlers share; cheap to clone (all fields are reference-counted).
#[derive(Clone)]
pub struct AppState {
    /// The store: notifications, event log, dead letters.
    pub db: EventDb,
    /// Known event types (validation of ingest, `GET /api/catalog`).
    pub catalog: Arc<EventCatalog>,
    /// Where ingested events go: `RedisProducer` in Redis mode, `EmbeddedProducer` otherwise.
    pub producer: Arc<dyn Producer>,
    /// Where a replayed dead letter's raw fields are appended (the source's stream).
    pub dead_letter_target: Arc<dyn RawAppend>,
    /// Fans pushes out to WebSocket and SSE clients.
    pub hub: PushHub,
    /// Token checks.
    pub auth: Arc<Authenticator>,
    /// Per-token rate limit.
    pub limiter: Arc<RateLimiter>,
    /// Limits and protocol timings.
    pub limits: Arc<Limits>,
    /// Components `/ready` reports besides the database, by name.
    pub readiness: Arc<Vec<(String, Arc<dyn ReadinessCheck>)>>,
    /// Renders `/metrics`; `None` when another recorder owns the process.
    pub metrics: Option<PrometheusHandle>,
    /// Fires when the server shuts down: WebSocket and SSE connections close (1001).
    pub shutdown: CancellationToken,
    /// Open WebSocket connections. They run in tasks of their own once upgraded, outside
    /// the HTTP connection that started them, so the server waits on this to return only
    /// after each has sent its close frame (else the process could exit first and the
    /// client would see a reset instead of 1001).
    pub websockets: TaskTracker,
}

impl fmt::Debug for AppState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AppState")
            .field("epoch", &self.db.epoch())
            .field("catalog", &self.catalog.len())
            .field("hub", &self.hub)
            .field("auth", &self.auth)
            .field("limits", &self.limits)
            .field(
                "readiness",
                &self
                    .readiness
                    .iter()
                    .map(|(name, _)| name.as_str())
                    .collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

impl AppState {
    /// State for `db`, validating `auth`.
    #[allow(clippy::too_many_arguments)]
    // one call site (the daemon); a builder would only add ceremony The metrics handle is installed process-wide on
    /// first use ([`crate::install_metrics_recorder`]).
    pub fn new(
        db: EventDb,
        catalog: Arc<EventCatalog>,
        producer: Arc<dyn Producer>,
        dead_letter_target: Arc<dyn RawAppend>,
        hub: PushHub,
        auth: &AuthConfig,
        limits: Limits,
    ) -> Result<Self> {
        Ok(Self {
            db,
            catalog,
            producer,
            dead_letter_target,
            hub,
            auth: Arc::new(Authenticator::new(auth)?),
            limiter: Arc::new(RateLimiter::new(limits.requests_per_second)),
            limits: Arc::new(limits),
            readiness: Arc::new(Vec::new()),
            metrics: crate::install_metrics_recorder(),
            shutdown: CancellationToken::new(),
            websockets: TaskTracker::new(),
        })
    }

    /// Adds a component to `/ready`.
    pub fn with_readiness(
        mut self,
        name: impl Into<String>,
        check: impl ReadinessCheck + 'static,
    ) -> Self {
        Arc::make_mut(&mut self.readiness).push((name.into(), Arc::new(check)));
        self
    }

    /// The database identity carried by every push.
    pub fn epoch(&self) -> &str {
        self.db.epoch()
    }
}
