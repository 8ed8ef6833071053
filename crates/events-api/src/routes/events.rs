//! `POST /api/events` (ingest) and `GET /api/events` (query of the event log).

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use events_envelope::{CatalogError, EventEnvelope, EventLevel};
use events_storage::{EventQuery, StoredEvent};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use serde_json::value::RawValue;
use utoipa::{IntoParams, ToSchema};

use crate::MAX_BATCH;
use crate::error::{ApiError, ItemError};
use crate::extract::{ApiJson, ApiQuery};
use crate::routes::parse_time;
use crate::state::AppState;

/// Where one accepted event landed.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Accepted {
    /// The envelope id.
    id: String,
    /// The transport's entry id (Redis stream id, or `N-0` for the embedded stream).
    stream_id: String,
}

/// `202` answer of an ingest.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct IngestResponse {
    /// One entry per submitted event, in order.
    accepted: Vec<Accepted>,
}

/// Ingest body: one envelope, or `{"events":[envelope, ...]}` (at most 1000).
#[derive(ToSchema)]
#[schema(as = IngestRequest)]
#[allow(dead_code, clippy::large_enum_variant)] // documentation only: the handler reads a raw JSON value
#[serde(untagged)]
pub(crate) enum IngestRequestDoc {
    /// One envelope.
    Single(EnvelopeDoc),
    /// A batch.
    Batch(IngestBatchDoc),
}

/// An event envelope (brief §3); only `event` and `source` are required.
#[derive(ToSchema)]
#[schema(as = EventEnvelope)]
#[allow(dead_code)]
pub(crate) struct EnvelopeDoc {
    /// UUIDv7; assigned when absent.
    #[schema(nullable = false, min_length = 1)]
    id: Option<String>,
    /// Dot-notation type, e.g. `job.completed`.
    #[schema(max_length = 200, pattern = r"^[a-z0-9_-]+(\.[a-z0-9_-]+)+$")]
    event: String,
    /// Payload schema version, default 1.
    #[schema(nullable = false, minimum = 1, maximum = 4294967295.0)]
    version: Option<u32>,
    /// Who emitted it (not blank, at most 200 characters).
    #[schema(max_length = 200, pattern = r"\S")]
    source: String,
    /// RFC 3339 (years 0000..=9999); default now.
    #[schema(nullable = false, format = DateTime, pattern = "^(\\d{4}-(0[1-9]|1[0-2])-(0[1-9]|1\\d|2[0-8])T([01]\\d|2[0-3]):[0-5]\\d:[0-5]\\d(\\.\\d{1,9})?(Z|[+-]([01]\\d|2[0-3]):[0-5]\\d))$")]
    timestamp: Option<String>,
    /// Dedup key; derived from the catalog when absent.
    idempotency_key: Option<String>,
    /// 0..=3 (INFRASTRUCTURE, OPERATIONAL, WORKFLOW, BUSINESS).
    #[schema(nullable = false, minimum = 0, maximum = 3)]
    level: Option<u8>,
    /// Business domain.
    #[schema(nullable = false)]
    domain: Option<String>,
    /// What it is about.
    entity: Option<String>,
    /// One line for people.
    #[schema(nullable = false)]
    description: Option<String>,
    /// `local`, `cluster` or `public`.
    #[schema(nullable = false, pattern = "^(local|cluster|public)$")]
    visibility: Option<String>,
    /// Event data (≤ 256 KiB serialised).
    #[schema(nullable = false, value_type = Option<Object>)]
    payload: Option<serde_json::Value>,
    /// Affordances (carried): action name → descriptor.
    #[schema(value_type = Option<std::collections::HashMap<String, ActionDescriptorDoc>>)]
    actions: Option<serde_json::Value>,
    /// Carried.
    terminal_when: Option<String>,
    /// Carried.
    #[schema(value_type = Option<std::collections::HashMap<String, String>>)]
    resolution_shape: Option<serde_json::Value>,
    /// Flow id.
    correlation_id: Option<String>,
    /// Causing event id.
    causation_id: Option<String>,
}

/// An action a consumer may take on an event (carried, never executed).
#[derive(ToSchema)]
#[schema(as = ActionDescriptor)]
#[allow(dead_code)]
pub(crate) struct ActionDescriptorDoc {
    /// What the action does.
    description: String,
    /// The event type taking the action produces.
    produces: String,
    /// Expected outcome shape: field → type name.
    #[schema(value_type = Option<std::collections::HashMap<String, String>>)]
    outcome_shape: Option<serde_json::Value>,
}

/// A batch of envelopes.
#[derive(ToSchema)]
#[schema(max_properties = 1)]
#[allow(dead_code)]
pub(crate) struct IngestBatchDoc {
    /// 1 to 1000 envelopes; one invalid item refuses the whole batch.
    #[schema(min_items = 1, max_items = 1000)]
    events: Vec<EnvelopeDoc>,
}

fn item_error(index: usize, code: &str, message: impl Into<String>) -> ItemError {
    ItemError {
        index,
        code: code.to_owned(),
        message: message.into(),
    }
}

/// `version` and `level` written as integral floats (`2.0`, as JavaScript and some JSON
/// encoders emit) become integers: JSON does not tell `2` from `2.0`, and neither does the
/// spec's `integer` type (found by Schemathesis).
fn integral_floats_as_integers(mut value: Value) -> Value {
    if let Some(object) = value.as_object_mut() {
        for key in ["version", "level"] {
            if let Some(number) = object.get(key).and_then(Value::as_f64)
                && object.get(key).is_some_and(|v| v.is_f64())
                && number.fract() == 0.0
                && (0.0..=f64::from(u32::MAX)).contains(&number)
            {
                // In range and integral: the conversion is exact.
                object.insert(key.to_owned(), Value::from(number as u64));
            }
        }
    }
    value
}

/// Decodes and validates one submitted item (brief §3 rules, catalog idempotency fields,
/// strict catalog).
fn check_item(state: &AppState, index: usize, raw: &RawValue) -> Result<EventEnvelope, ItemError> {
    let text = raw.get();
    if !text.trim_start().starts_with('{') {
        return Err(item_error(
            index,
            "invalid_event",
            "an event must be a JSON object",
        ));
    }
    // Fast path: the item decodes as it is. Anything else (integral floats to normalise, or
    // a real error) takes the path through `Value`, whose messages name the field without
    // the text decoder's line and column.
    let event = match serde_json::from_str::<EventEnvelope>(text) {
        Ok(event) => event,
        Err(_) => decode_item_slowly(index, text)?,
    };
    validate_item(state, index, event)
}

/// The full decode of one item through `Value`: integral floats of `version`/`level`
/// become integers, and a failure is reported with the path of the offending field.
fn decode_item_slowly(index: usize, text: &str) -> Result<EventEnvelope, ItemError> {
    let value: Value = serde_json::from_str(text)
        .map_err(|err| item_error(index, "invalid_event", err.to_string()))?;
    let value = integral_floats_as_integers(value);
    serde_path_to_error::deserialize(value).map_err(|err| {
        let path = err.path().to_string();
        let message = if path == "." {
            err.inner().to_string()
        } else {
            format!("{path}: {}", err.inner())
        };
        item_error(index, "invalid_event", message)
    })
}

/// Brief §3 rules, strict catalog and catalog idempotency fields of a decoded item.
fn validate_item(
    state: &AppState,
    index: usize,
    event: EventEnvelope,
) -> Result<EventEnvelope, ItemError> {
    event
        .validate_with_limit(state.limits.max_payload_bytes)
        .map_err(|err| item_error(index, "invalid_event", err.to_string()))?;
    if state.limits.strict_catalog && !state.catalog.contains(&event.event) {
        return Err(item_error(
            index,
            "unknown_event_type",
            format!(
                "event: type {:?} is not in the catalog and strict_catalog is on",
                event.event
            ),
        ));
    }
    match state.catalog.build_idempotency_key(&event) {
        Ok(_) => Ok(event),
        Err(err @ CatalogError::MissingIdempotencyField { .. }) => Err(item_error(
            index,
            "missing_idempotency_field",
            err.to_string(),
        )),
        Err(err) => Err(item_error(index, "invalid_event", err.to_string())),
    }
}

fn refuse(items: Vec<ItemError>, batch: bool) -> ApiError {
    let message = if batch {
        format!(
            "{} of the submitted events are invalid; nothing was accepted",
            items.len()
        )
    } else {
        items
            .first()
            .map(|item| item.message.clone())
            .unwrap_or_default()
    };
    let code = if batch {
        "invalid_batch"
    } else {
        "invalid_event"
    };
    ApiError::Unprocessable {
        code,
        message,
        items: Some(items),
    }
}

/// Emit one event or a batch.
///
/// Every item is validated first (envelope rules, the catalog's idempotency fields, strict
/// catalog); a batch with any invalid item is refused whole with `error.items`.
#[utoipa::path(
    post, path = "/api/events", tag = "events",
    request_body = IngestRequestDoc,
    responses(
        (status = 202, description = "accepted", body = IngestResponse),
        (status = 400, description = "malformed JSON", body = crate::ErrorBody),
        (status = 413, description = "body too large", body = crate::ErrorBody),
        (status = 415, description = "not application/json", body = crate::ErrorBody),
        (status = 422, description = "invalid event(s); `error.items` says which", body = crate::ErrorBody),
        (status = 503, description = "transport unavailable", body = crate::ErrorBody),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn ingest(
    State(state): State<AppState>,
    ApiJson(body): ApiJson<Box<RawValue>>,
) -> Result<(StatusCode, Json<IngestResponse>), ApiError> {
    // The body is split into raw items first and each item is decoded straight into an
    // envelope: no intermediate `serde_json::Value` tree for a whole batch (building one
    // was the largest cost of ingest in the embedded benchmark's profile).
    let top: Option<BTreeMap<String, &RawValue>> = serde_json::from_str(body.get()).ok();
    let (values, batch): (Vec<&RawValue>, bool) = match top {
        Some(map) if map.len() == 1 && map.contains_key("events") => {
            match map
                .get("events")
                .and_then(|items| serde_json::from_str::<Vec<&RawValue>>(items.get()).ok())
            {
                Some(items) => (items, true),
                None => {
                    return Err(ApiError::unprocessable(
                        "invalid_batch",
                        "events: must be an array of event objects",
                    ));
                }
            }
        }
        // `events` beside other keys but without `event`: a batch with stray keys, not an
        // envelope; say so instead of "missing field `event`".
        Some(map) if map.contains_key("events") && !map.contains_key("event") => {
            let stray: Vec<&str> = map
                .keys()
                .map(String::as_str)
                .filter(|key| *key != "events")
                .collect();
            return Err(ApiError::unprocessable(
                "invalid_batch",
                format!(
                    "a batch body has only `events`; unknown field(s): {}",
                    stray.join(", ")
                ),
            ));
        }
        _ => (vec![&*body], false),
    };
    if values.is_empty() {
        return Err(ApiError::unprocessable(
            "invalid_batch",
            "events: must not be empty",
        ));
    }
    if values.len() > MAX_BATCH {
        return Err(ApiError::unprocessable(
            "batch_too_large",
            format!(
                "events: {} items, more than the limit of {MAX_BATCH}",
                values.len()
            ),
        ));
    }
    let mut events = Vec::with_capacity(values.len());
    let mut errors = Vec::new();
    for (index, value) in values.into_iter().enumerate() {
        match check_item(&state, index, value) {
            Ok(event) => events.push(event),
            Err(err) => errors.push(err),
        }
    }
    if !errors.is_empty() {
        return Err(refuse(errors, batch));
    }
    let count = events.len();
    let receipts = if count == 1 && !batch {
        let event = events
            .pop()
            .ok_or_else(|| ApiError::Internal("empty single ingest".into()))?;
        vec![
            state
                .producer
                .emit(event)
                .await
                .map_err(producer_error(batch))?,
        ]
    } else {
        state
            .producer
            .emit_batch(events)
            .await
            .map_err(producer_error(batch))?
    };
    metrics::counter!("events_ingested_total").increment(count as u64);
    let accepted = receipts
        .into_iter()
        .map(|r| Accepted {
            id: r.id,
            stream_id: r.stream_id,
        })
        .collect();
    Ok((StatusCode::ACCEPTED, Json(IngestResponse { accepted })))
}

fn producer_error(batch: bool) -> impl Fn(events_producer::Error) -> ApiError {
    move |err| match err {
        events_producer::Error::Invalid { index, source } => refuse(
            vec![item_error(index, "invalid_event", source.to_string())],
            batch,
        ),
        events_producer::Error::Unavailable { .. } | events_producer::Error::Timeout { .. } => {
            ApiError::Unavailable(format!("cannot accept events right now: {err}"))
        }
        other => ApiError::Internal(format!("emitting: {other}")),
    }
}

/// Filters of `GET /api/events`.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct EventsParams {
    /// Type glob: `job.*`, `*.failed`.
    #[serde(rename = "type")]
    #[param(rename = "type")]
    event_type: Option<String>,
    /// Exact source.
    source: Option<String>,
    /// Exact domain.
    domain: Option<String>,
    /// Exact level: 0..=3 or a name (`workflow`).
    #[param(value_type = Option<String>, pattern = "^ *([0-3]|(EventLevel\\.)?([Ii][Nn][Ff][Rr][Aa][Ss][Tt][Rr][Uu][Cc][Tt][Uu][Rr][Ee]|[Oo][Pp][Ee][Rr][Aa][Tt][Ii][Oo][Nn][Aa][Ll]|[Ww][Oo][Rr][Kk][Ff][Ll][Oo][Ww]|[Bb][Uu][Ss][Ii][Nn][Ee][Ss][Ss])) *$")]
    level: Option<EventLevel>,
    /// Exact correlation id.
    correlation_id: Option<String>,
    /// The event's timestamp at or after this instant (RFC 3339).
    #[param(
        pattern = "^(\\d{4}-(0[1-9]|1[0-2])-(0[1-9]|1\\d|2[0-8])T([01]\\d|2[0-3]):[0-5]\\d:[0-5]\\d(\\.\\d{1,9})?(Z|[+-]([01]\\d|2[0-3]):[0-5]\\d))?$"
    )]
    since: Option<String>,
    /// The event's timestamp before this instant (RFC 3339).
    #[param(
        pattern = "^(\\d{4}-(0[1-9]|1[0-2])-(0[1-9]|1\\d|2[0-8])T([01]\\d|2[0-3]):[0-5]\\d:[0-5]\\d(\\.\\d{1,9})?(Z|[+-]([01]\\d|2[0-3]):[0-5]\\d))?$"
    )]
    until: Option<String>,
    /// Only events with `seq` greater than this (resume point).
    after_seq: Option<i64>,
    /// Page size (default 100; larger values are clamped to 1000).
    #[param(value_type = Option<i64>, minimum = 0, maximum = 4294967295.0)]
    limit: Option<u32>,
}

/// One logged event as listed.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct EventRow {
    /// Position in the log.
    seq: i64,
    /// When the daemon logged it (RFC 3339).
    #[schema(value_type = String)]
    #[serde(with = "time::serde::rfc3339")]
    received_at: time::OffsetDateTime,
    /// The envelope.
    #[schema(value_type = EnvelopeDoc)]
    event: EventEnvelope,
}

/// A page of the event log.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct EventsPage {
    /// Events in `seq` order.
    events: Vec<EventRow>,
    /// Pass as `after_seq` to get the next page (`null` if the page is empty and none was given).
    next_after_seq: Option<i64>,
}

/// Query the event log, oldest first.
#[utoipa::path(
    get, path = "/api/events", tag = "events",
    params(EventsParams),
    responses(
        (status = 200, description = "a page of events", body = EventsPage),
        (status = 400, description = "bad filter value", body = crate::ErrorBody),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn query(
    State(state): State<AppState>,
    ApiQuery(params): ApiQuery<EventsParams>,
) -> Result<Json<EventsPage>, ApiError> {
    let query = EventQuery {
        event_type: params.event_type.filter(|t| !t.is_empty()),
        source: params.source,
        domain: params.domain,
        level: params.level,
        correlation_id: params.correlation_id,
        since: parse_time("since", params.since.as_deref())?,
        until: parse_time("until", params.until.as_deref())?,
        after_seq: params.after_seq,
        limit: params.limit,
    };
    let rows = state.db.query_events(query).await?;
    let next_after_seq = rows.last().map(|row| row.seq).or(params.after_seq);
    let events = rows
        .into_iter()
        .map(
            |StoredEvent {
                 seq,
                 received_at,
                 event,
                 ..
             }| EventRow {
                seq,
                received_at,
                event,
            },
        )
        .collect();
    Ok(Json(EventsPage {
        events,
        next_after_seq,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn integral_float_version_and_level_become_integers() {
        let value = integral_floats_as_integers(json!({"version": 860.0, "level": 2.0, "x": 1.0}));
        assert_eq!(value, json!({"version": 860, "level": 2, "x": 1.0}));
        let event: EventEnvelope = serde_json::from_value(integral_floats_as_integers(
            json!({"event": "a.b", "source": "s", "level": 0.0}),
        ))
        .unwrap();
        assert_eq!(event.level, EventLevel::Infrastructure);
    }

    #[test]
    fn fractional_negative_or_huge_numbers_are_left_for_the_decoder_to_refuse() {
        for bad in [json!(1.5), json!(-1.0), json!(1e300)] {
            let value = integral_floats_as_integers(json!({ "version": bad.clone() }));
            assert_eq!(value["version"], bad);
        }
    }
}
