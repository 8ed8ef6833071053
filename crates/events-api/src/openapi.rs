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
    let mut doc = ApiDoc::openapi();
    document_common_errors(&mut doc);
    doc
}

/// Adds the error answers every operation can give but no handler lists itself, so that the
/// document does not contradict the server (found by Schemathesis, `scripts/api-fuzz`):
///
/// - 400 wherever there is a path or query parameter or a body (unparsable values);
/// - 401, 403 and 429 wherever the operation needs a token (auth and the per-token rate
///   limit run before the handler);
/// - 413 and 415 wherever there is a request body (body limit, `content-type` check).
///
/// Applied to the merged document, so extra routes (webhooks) get the same treatment.
/// Responses an operation already documents are left alone.
pub(crate) fn document_common_errors(doc: &mut utoipa::openapi::OpenApi) {
    use utoipa::openapi::{ContentBuilder, Ref, ResponseBuilder};
    let error = |description: &str| {
        ResponseBuilder::new()
            .description(description)
            .content(
                "application/json",
                ContentBuilder::new()
                    .schema(Some(Ref::from_schema_name("ErrorBody")))
                    .build(),
            )
            .build()
    };
    for item in doc.paths.paths.values_mut() {
        let shared_params = item.parameters.as_ref().is_some_and(|p| !p.is_empty());
        let operations = [
            item.get.as_mut(),
            item.put.as_mut(),
            item.post.as_mut(),
            item.delete.as_mut(),
            item.patch.as_mut(),
        ];
        for operation in operations.into_iter().flatten() {
            let has_params =
                shared_params || operation.parameters.as_ref().is_some_and(|p| !p.is_empty());
            let has_body = operation.request_body.is_some();
            let secured = operation.security.as_ref().is_some_and(|s| !s.is_empty());
            let mut add = |status: &str, description: &str| {
                operation
                    .responses
                    .responses
                    .entry(status.to_owned())
                    .or_insert_with(|| error(description).into());
            };
            if has_params || has_body {
                add("400", "malformed path, query or body value");
            }
            if secured {
                add("401", "missing or unknown bearer token");
                add("403", "the token lacks the role this operation needs");
                add("429", "the token's rate limit is spent; see `Retry-After`");
            }
            if has_body {
                add("413", "body larger than `limits.max_body_bytes`");
                add("415", "body is not `application/json`");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secured_operations_document_auth_and_body_errors() {
        let doc = serde_json::to_value(openapi()).unwrap();
        let ingest = &doc["paths"]["/api/events"]["post"]["responses"];
        for status in ["400", "401", "403", "413", "415", "429"] {
            assert!(
                ingest.get(status).is_some(),
                "POST /api/events lacks {status}"
            );
        }
        let health = &doc["paths"]["/health"]["get"]["responses"];
        assert!(health.get("401").is_none(), "/health needs no token");
    }

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
