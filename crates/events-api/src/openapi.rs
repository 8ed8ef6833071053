//! The OpenAPI 3 document, generated from the handlers' `#[utoipa::path]` annotations.

use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::routes::{dead_letters, events, notifications, system};
use crate::{sse, ws};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "event-platform daemon API",
        description = "Event ingest and query, notifications with human and agent status, live pushes over WebSocket and SSE, dead letters. Errors are `{\"error\":{\"code\",\"message\"}}`."
    ),
    paths(
        events::ingest,
        events::query,
        sse::stream,
        system::catalog,
        notifications::list,
        notifications::bulk_seen,
        notifications::get,
        notifications::seen,
        notifications::claim,
        notifications::status,
        notifications::resolve,
        dead_letters::list,
        dead_letters::replay,
        dead_letters::delete,
        ws::upgrade,
        system::health,
        system::ready,
        system::metrics,
        system::openapi_json,
    ),
    components(schemas(crate::ErrorBody, crate::ErrorDetail, crate::ItemError, crate::Readiness)),
    modifiers(&BearerAuth),
    tags(
        (name = "events", description = "ingest, query and stream events"),
        (name = "notifications", description = "notifications and their state machine"),
        (name = "dead-letters", description = "entries the processor gave up on"),
        (name = "push", description = "WebSocket pushes"),
        (name = "catalog", description = "known event types"),
        (name = "system", description = "health, readiness, metrics, this document"),
    )
)]
struct ApiDoc;

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

/// The API's OpenAPI 3 document (what `GET /openapi.json` serves, without extra routes).
pub fn openapi() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_route_is_in_the_spec_and_every_spec_path_is_routed() {
        let doc = serde_json::to_value(openapi()).unwrap();
        assert!(
            doc["openapi"].as_str().unwrap().starts_with("3."),
            "not OpenAPI 3: {}",
            doc["openapi"]
        );
        let paths = doc["paths"].as_object().unwrap();
        let routes = crate::routes();
        for route in &routes {
            let method = route.method.as_str().to_ascii_lowercase();
            assert!(
                paths
                    .get(&route.path)
                    .and_then(|item| item.get(&method))
                    .is_some(),
                "route {} {} missing from openapi.json",
                route.method,
                route.path
            );
        }
        let operations: usize = paths
            .values()
            .map(|item| item.as_object().unwrap().len())
            .sum();
        assert_eq!(
            operations,
            routes.len(),
            "openapi.json documents operations the router does not serve"
        );
    }
}
