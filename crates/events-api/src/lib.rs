//! The HTTP, WebSocket and SSE face of the event platform (brief §9): what `events-daemon`
//! serves and what agents, humans and the `events` CLI talk to.
//!
//! It is for *serving*: event ingest (through whichever [`Producer`] the daemon picked —
//! Redis or the embedded stream), queries of the event log and of notifications, the
//! notification state machine over HTTP, live pushes over WebSocket (`/ws`) and SSE
//! (`/api/events/stream`), dead letters, health, readiness, Prometheus metrics and the
//! OpenAPI document generated from the handlers themselves. It is **not** for processing
//! (that is `events-processor`; the API only reads what the processor committed) nor for
//! configuration files and signals (that is `events-daemon`).
//!
//! The principal types are [`AppState`] — everything a handler needs, cheap to clone — and
//! [`PushHub`], which the processor calls after each commit and which fans pushes out to
//! connections. [`serve`] runs the server until a [`CancellationToken`] fires; [`router`]
//! gives the bare `axum::Router` for tests.
//!
//! Key design decisions:
//!
//! - **One error type.** Every rejection, including axum's own (malformed JSON, wrong content
//!   type, oversize body, bad path or query values, unknown routes and methods), becomes an
//!   [`ApiError`] rendered as `{"error":{"code","message"}}`; a 500 is always a bug.
//! - **Pushes never block the daemon.** The processor only records work for the hub; the hub
//!   reads the committed rows itself and broadcasts serialised messages; a connection that
//!   falls more than its queue bound behind is closed (WebSocket 1013) or resumes from the
//!   log (SSE), never waited for.
//! - **Gap-free resume.** Events are pushed in log order (`seq`) with the database `epoch`;
//!   SSE replays from the log and switches to live pushes without gaps or repeats.
//! - **The route table is data.** Routes are registered through one table that also feeds
//!   [`routes`], so a test can check that every route is in `/openapi.json`.
#![deny(missing_docs)]

mod auth;
mod error;
mod extract;
mod hub;
mod metrics_export;
mod openapi;
mod routes;
mod server;
mod sse;
mod state;
mod ws;
pub mod ws_protocol;

pub use auth::{
    AuthConfig, AuthConfigError, Authenticator, Principal, RateLimiter, Role, TokenConfig,
};
pub use error::{ApiError, ErrorBody, ErrorDetail, ItemError};
pub use events_producer::Producer;
pub use extract::{ApiJson, ApiPath, ApiQuery};
pub use hub::{
    DEFAULT_QUEUE_CAPACITY, NotificationChange, Push, PushHub, PushKind, event_push_json,
};
pub use metrics_export::install_metrics_recorder;
pub use openapi::openapi;
pub use routes::webhooks::webhook_routes;
pub use server::{ExtraRoutes, RouteInfo, router, router_with, routes, serve, serve_with};
pub use state::{AppState, Limits, Readiness, ReadinessCheck};
pub use tokio_util::sync::CancellationToken;

/// Default request body limit (1 MiB, brief §9).
pub const DEFAULT_MAX_BODY_BYTES: usize = 1024 * 1024;
/// Largest number of events in one ingest batch.
pub const MAX_BATCH: usize = 1000;

/// Why the server could not run.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Serving on the listener failed.
    #[error("serving http on {addr}: {source}")]
    Serve {
        /// The listener's address.
        addr: String,
        /// What the OS said.
        #[source]
        source: std::io::Error,
    },
    /// The auth section of the config is unusable.
    #[error(transparent)]
    Auth(#[from] AuthConfigError),
    /// Storage failed while setting up.
    #[error(transparent)]
    Storage(#[from] events_storage::StorageError),
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
