//! The route table, the auth middleware and the server loop.

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{DefaultBodyLimit, Extension, Request, State};
use axum::handler::Handler;
use axum::http::{Method, header};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::{MethodFilter, on};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt;

use crate::auth::{Authenticator, Principal, Role};
use crate::error::ApiError;
use crate::routes as handlers;
use crate::state::AppState;
use crate::{Result, sse, ws};

/// Pause after a failed `accept` (e.g. out of file descriptors) before trying again.
const ACCEPT_BACKOFF: std::time::Duration = std::time::Duration::from_millis(100);

/// One route of the API, as registered (and as `/openapi.json` must list it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteInfo {
    /// HTTP method.
    pub method: Method,
    /// Path in axum/OpenAPI syntax (`/api/notifications/{id}`).
    pub path: String,
    /// Role needed; `None` = open.
    pub role: Option<Role>,
}

/// Routes added by another crate (the webhook endpoints of `events-delivery`): merged into
/// the router behind the admin role, with their OpenAPI paths merged into the document.
#[derive(Default)]
pub struct ExtraRoutes {
    /// The routes, with their own state already applied.
    pub router: Router,
    /// Their OpenAPI description.
    pub openapi: Option<utoipa::openapi::OpenApi>,
    /// Their (method, path) pairs, for the route/spec consistency check.
    pub routes: Vec<RouteInfo>,
}

impl std::fmt::Debug for ExtraRoutes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExtraRoutes")
            .field("routes", &self.routes)
            .finish_non_exhaustive()
    }
}

#[derive(Clone)]
struct Guard {
    state: AppState,
    role: Role,
    /// `?token=` accepted besides the header (WebSocket and EventSource clients cannot set headers).
    query_token: bool,
}

/// Registers routes; with no state it only records them (for [`routes`]).
struct Table {
    router: Router<AppState>,
    routes: Vec<RouteInfo>,
    state: Option<AppState>,
}

impl Table {
    fn add<H, T>(self, method: Method, path: &'static str, role: Option<Role>, handler: H) -> Self
    where
        H: Handler<T, AppState>,
        T: 'static,
    {
        self.add_inner(method, path, role, false, handler)
    }

    fn add_inner<H, T>(
        mut self,
        method: Method,
        path: &'static str,
        role: Option<Role>,
        query_token: bool,
        handler: H,
    ) -> Self
    where
        H: Handler<T, AppState>,
        T: 'static,
    {
        // Only the standard methods are used here; every one of them converts.
        if let Some(state) = &self.state {
            let filter = MethodFilter::try_from(method.clone()).unwrap_or(MethodFilter::GET);
            let mut method_router = on(filter, handler);
            if let Some(role) = role {
                let guard = Guard {
                    state: state.clone(),
                    role,
                    query_token,
                };
                method_router =
                    method_router.route_layer(middleware::from_fn_with_state(guard, authorize));
            }
            self.router = self.router.route(path, method_router);
        }
        self.routes.push(RouteInfo {
            method,
            path: path.to_owned(),
            role,
        });
        self
    }
}

fn table(state: Option<&AppState>) -> Table {
    use Role::{Admin, Agent, Producer, Reader};
    let table = Table {
        router: Router::new(),
        routes: Vec::new(),
        state: state.cloned(),
    };
    table
        .add(
            Method::POST,
            "/api/events",
            Some(Producer),
            handlers::events::ingest,
        )
        .add(
            Method::GET,
            "/api/events",
            Some(Reader),
            handlers::events::query,
        )
        .add_inner(
            Method::GET,
            "/api/events/stream",
            Some(Reader),
            true,
            sse::stream,
        )
        .add(
            Method::GET,
            "/api/catalog",
            Some(Reader),
            handlers::system::catalog,
        )
        .add(
            Method::GET,
            "/api/notifications",
            Some(Reader),
            handlers::notifications::list,
        )
        .add(
            Method::POST,
            "/api/notifications/seen",
            Some(Agent),
            handlers::notifications::bulk_seen,
        )
        .add(
            Method::GET,
            "/api/notifications/{id}",
            Some(Reader),
            handlers::notifications::get,
        )
        .add(
            Method::PATCH,
            "/api/notifications/{id}/seen",
            Some(Agent),
            handlers::notifications::seen,
        )
        .add(
            Method::POST,
            "/api/notifications/{id}/claim",
            Some(Agent),
            handlers::notifications::claim,
        )
        .add(
            Method::PATCH,
            "/api/notifications/{id}/status",
            Some(Agent),
            handlers::notifications::status,
        )
        .add(
            Method::POST,
            "/api/notifications/{id}/resolve",
            Some(Agent),
            handlers::notifications::resolve,
        )
        .add(
            Method::GET,
            "/api/dead-letters",
            Some(Admin),
            handlers::dead_letters::list,
        )
        .add(
            Method::POST,
            "/api/dead-letters/{id}/replay",
            Some(Admin),
            handlers::dead_letters::replay,
        )
        .add(
            Method::DELETE,
            "/api/dead-letters/{id}",
            Some(Admin),
            handlers::dead_letters::delete,
        )
        .add_inner(Method::GET, "/ws", Some(Reader), true, ws::upgrade)
        .add(Method::GET, "/health", None, handlers::system::health)
        .add(Method::GET, "/ready", None, handlers::system::ready)
        .add(Method::GET, "/metrics", None, handlers::system::metrics)
        .add(
            Method::GET,
            "/openapi.json",
            None,
            handlers::system::openapi_json,
        )
}

/// Every route the router serves (without extra routes), from the same table that builds it.
pub fn routes() -> Vec<RouteInfo> {
    table(None).routes
}

/// The API router with its state applied, for tests (`tower::ServiceExt::oneshot`).
pub fn router(state: AppState) -> Router {
    router_with(state, ExtraRoutes::default())
}

/// The API router plus routes from another crate (guarded by the admin role).
pub fn router_with(state: AppState, extra: ExtraRoutes) -> Router {
    let table = table(Some(&state));
    let mut extra_router = extra.router;
    if !extra.routes.is_empty() {
        let guard = Guard {
            state: state.clone(),
            role: Role::Admin,
            query_token: false,
        };
        extra_router = extra_router.route_layer(middleware::from_fn_with_state(guard, authorize));
    }
    let max_body = state.limits.max_body_bytes;
    let mut doc = crate::openapi();
    if let Some(more) = extra.openapi {
        doc.merge(more);
        crate::openapi::document_common_errors(&mut doc);
    }
    // Serialising a document built from our own types cannot fail; fall back to an empty object.
    let doc =
        handlers::system::OpenApiText(Arc::from(doc.to_json().unwrap_or_else(|_| "{}".to_owned())));
    table
        .router
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(state)
        // ---- merge point: webhook routes of events-delivery ----
        .merge(extra_router)
        .layer(DefaultBodyLimit::max(max_body))
        .layer(Extension(doc))
}

async fn not_found(request: Request) -> ApiError {
    ApiError::NotFound(format!(
        "no route for {} {}",
        request.method(),
        request.uri().path()
    ))
}

async fn method_not_allowed() -> ApiError {
    ApiError::MethodNotAllowed
}

fn bearer(request: &Request, query_token: bool) -> Option<String> {
    if let Some(value) = request.headers().get(header::AUTHORIZATION) {
        let text = value.to_str().ok()?;
        let (scheme, token) = text.split_once(' ')?;
        return scheme
            .eq_ignore_ascii_case("bearer")
            .then(|| token.trim().to_owned());
    }
    if query_token {
        let query = request.uri().query()?;
        return query.split('&').find_map(|pair| {
            let (key, value) = pair.split_once('=')?;
            (key == "token").then(|| percent_decode(value))
        });
    }
    None
}

/// Minimal `%XX` / `+` decoding for a `?token=` value.
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let byte = bytes[i];
        let escaped = (byte == b'%')
            .then(|| bytes.get(i + 1..i + 3))
            .flatten()
            .and_then(|hex| std::str::from_utf8(hex).ok())
            .and_then(|hex| u8::from_str_radix(hex, 16).ok());
        match (byte, escaped) {
            (_, Some(decoded)) => {
                out.push(decoded);
                i += 3;
            }
            (b'+', None) => {
                out.push(b' ');
                i += 1;
            }
            (other, None) => {
                out.push(other);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Authenticates (401), rate-limits (429) and checks the role (403), in that order.
async fn authorize(
    State(guard): State<Guard>,
    mut request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let principal: Principal = if guard.state.auth.enabled() {
        let token = bearer(&request, guard.query_token).ok_or_else(|| {
            ApiError::Unauthorized(
                "missing bearer token; send `authorization: bearer <token>`".to_owned(),
            )
        })?;
        guard
            .state
            .auth
            .authenticate(&token)
            .ok_or_else(|| ApiError::Unauthorized("unknown bearer token".to_owned()))?
    } else {
        Authenticator::anonymous()
    };
    guard
        .state
        .limiter
        .check(&principal.name)
        .map_err(|retry_after| ApiError::RateLimited { retry_after })?;
    principal.require(guard.role)?;
    request.extensions_mut().insert(Arc::new(principal));
    Ok(next.run(request).await)
}

/// Serves the API on `listener` until `shutdown` fires, then stops accepting, closes
/// WebSocket and SSE connections (1001) and waits for in-flight requests.
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    shutdown: CancellationToken,
) -> Result<()> {
    serve_with(listener, state, ExtraRoutes::default(), shutdown).await
}

/// [`serve`] with extra routes merged in.
///
/// The accept loop is ours rather than `axum::serve`'s because axum gives hyper no timer,
/// which silently disables hyper's header read timeout: a client sending its headers one
/// byte at a time (slowloris) would hold its connection forever. Each connection is served
/// by hyper's HTTP/1 builder with a timer, [`Limits::header_read_timeout`](crate::Limits)
/// and upgrades (WebSocket).
pub async fn serve_with(
    listener: TcpListener,
    state: AppState,
    extra: ExtraRoutes,
    shutdown: CancellationToken,
) -> Result<()> {
    let addr = listener
        .local_addr()
        .map(|a| a.to_string())
        .unwrap_or_else(|_| "?".to_owned());
    // Connections watch the state's token; tie it to the caller's.
    let connections = state.shutdown.clone();
    let websockets = state.websockets.clone();
    let header_read_timeout = state.limits.header_read_timeout;
    let app = router_with(state, extra);
    let tracker = TaskTracker::new();
    tracing::info!(%addr, "http api listening");
    loop {
        let stream = tokio::select! {
            () = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _peer)) => stream,
                Err(err) => {
                    // EMFILE and friends: back off instead of spinning; the listener lives on.
                    tracing::warn!(error = %err, %addr, "accepting a connection failed");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let app = app.clone();
        let shutdown = shutdown.clone();
        tracker.spawn(async move {
            let service = service_fn(move |request: Request<Incoming>| {
                app.clone().oneshot(request.map(Body::new))
            });
            let mut builder = http1::Builder::new();
            builder
                .timer(TokioTimer::new())
                .header_read_timeout(header_read_timeout);
            let connection = builder
                .serve_connection(TokioIo::new(stream), service)
                .with_upgrades();
            let mut connection = std::pin::pin!(connection);
            tokio::select! {
                result = connection.as_mut() => {
                    if let Err(err) = result {
                        tracing::debug!(error = %err, "http connection ended with an error");
                    }
                    return;
                }
                () = shutdown.cancelled() => {}
            }
            // Finish the request in flight, then close; upgraded connections (WebSocket)
            // watch the state's token and close themselves with 1001.
            connection.as_mut().graceful_shutdown();
            let _ = connection.await;
        });
    }
    connections.cancel();
    tracker.close();
    tracker.wait().await;
    // WebSockets upgraded from those connections close themselves (each frame bounded by
    // `ws_send_timeout`); wait until they have.
    websockets.close();
    websockets.wait().await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_decoding_of_query_tokens() {
        assert_eq!(percent_decode("abc"), "abc");
        assert_eq!(percent_decode("a%2Bb%3d"), "a+b=");
        assert_eq!(percent_decode("a+b"), "a b");
        assert_eq!(percent_decode("bad%zz%"), "bad%zz%");
    }
}
