//! The stream wire format (brief §4): one envelope as flat string fields of a stream entry.
//!
//! The same fields are written to Redis Streams (`XADD`) and to the embedded SQLite stream, so
//! both transports share this codec. Encoding is strict and canonical; decoding is tolerant of
//! what producers in other languages write (Python's `datetime.isoformat()` without an offset,
//! `str(IntEnum)` level names, no `id`), because an entry that fails to decode is dead-lettered,
//! and a platform that dead-letters its own ecosystem's producers is not much use.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde_json::{Map, Value};
use time::{Date, Month, OffsetDateTime, PrimitiveDateTime, Time, UtcOffset};
use uuid::Uuid;

use crate::envelope::{
    ActionDescriptor, DEFAULT_MAX_PAYLOAD_BYTES, EventEnvelope, EventLevel, EventVisibility,
};
use crate::error::DecodeError;

/// Namespace of the UUIDv5 ids derived from stream entry ids when an entry carries no `id`.
///
/// Fixed forever: changing it would give re-delivered entries new ids and defeat the
/// event-id deduplication of the event log.
pub const ENTRY_ID_NAMESPACE: Uuid = Uuid::from_u128(0x6f1c_2a7e_94d3_4b0c_8e55_3d2f_a1b7_c9e4);

/// Fields every entry carries, in wire order.
pub const REQUIRED_STREAM_FIELDS: [&str; 10] = [
    "id",
    "event",
    "version",
    "source",
    "timestamp",
    "level",
    "domain",
    "visibility",
    "description",
    "payload",
];

/// Encodes an envelope as stream entry fields (brief §4).
///
/// Always `id event version source timestamp level domain visibility description payload`, in
/// that order, then `idempotency_key entity actions terminal_when resolution_shape
/// correlation_id causation_id` only when present. `payload`, `actions` and `resolution_shape`
/// are compact JSON; `level` and `version` decimal; `timestamp` RFC 3339 in UTC with exactly six
/// fraction digits (`2026-11-24T20:09:13.123456Z`), so the wire keeps microsecond precision —
/// what Python's `datetime` has, and what every consumer can parse.
pub fn to_stream_fields(envelope: &EventEnvelope) -> Vec<(&'static str, String)> {
    let mut fields = Vec::with_capacity(17);
    fields.push(("id", envelope.id.clone()));
    fields.push(("event", envelope.event.clone()));
    fields.push(("version", envelope.version.to_string()));
    fields.push(("source", envelope.source.clone()));
    fields.push(("timestamp", format_timestamp(envelope.timestamp)));
    fields.push(("level", envelope.level.as_u8().to_string()));
    fields.push(("domain", envelope.domain.clone()));
    fields.push(("visibility", envelope.visibility.as_str().to_owned()));
    fields.push(("description", envelope.description.clone()));
    fields.push(("payload", object_to_json(&envelope.payload)));
    if let Some(key) = &envelope.idempotency_key {
        fields.push(("idempotency_key", key.clone()));
    }
    if let Some(entity) = &envelope.entity {
        fields.push(("entity", entity.clone()));
    }
    if let Some(actions) = &envelope.actions {
        fields.push(("actions", actions_to_json(actions)));
    }
    if let Some(terminal_when) = &envelope.terminal_when {
        fields.push(("terminal_when", terminal_when.clone()));
    }
    if let Some(shape) = &envelope.resolution_shape {
        fields.push(("resolution_shape", string_map_to_json(shape)));
    }
    if let Some(id) = &envelope.correlation_id {
        fields.push(("correlation_id", id.clone()));
    }
    if let Some(id) = &envelope.causation_id {
        fields.push(("causation_id", id.clone()));
    }
    fields
}

/// Decodes stream entry fields into a validated envelope, with the default payload limit.
///
/// See [`from_stream_fields_with_limit`] for the rules.
pub fn from_stream_fields<K, V>(
    fields: impl IntoIterator<Item = (K, V)>,
    entry_id: &str,
) -> Result<EventEnvelope, DecodeError>
where
    K: AsRef<str>,
    V: AsRef<str>,
{
    from_stream_fields_with_limit(fields, entry_id, DEFAULT_MAX_PAYLOAD_BYTES)
}

/// Decodes stream entry fields into an envelope and validates it (payload limit
/// `max_payload_bytes`).
///
/// Tolerant by design (brief §4):
/// - `event`, `source` and `timestamp` are required; everything else has a default
///   (`version` 1, `level` INFRASTRUCTURE, `visibility` local, empty `domain`/`description`,
///   `payload` `{}`).
/// - missing or empty `id`: a UUIDv5 of `entry_id` in [`ENTRY_ID_NAMESPACE`], so a re-delivered
///   entry decodes to the same id and the event log recognises it. Entry ids are unique per
///   stream only: a caller that mixes streams should pass `"{stream}/{entry_id}"`.
/// - `timestamp`: RFC 3339 with `Z` or an offset, or naive (taken as UTC); `T`, `t` or a space
///   between date and time; any number of fraction digits (beyond nine are truncated).
/// - `level`: `2`, `workflow`, `WORKFLOW` or `EventLevel.WORKFLOW`; `visibility` likewise.
/// - optional fields (`entity`, `actions`, ...) that are empty strings count as absent, since
///   some producers write `""` for `None`; `actions`/`resolution_shape` may also be `null`.
/// - unknown fields are ignored; a repeated field keeps its last value.
///
/// The error names the field at fault, e.g. `invalid level: unknown level "7"`.
pub fn from_stream_fields_with_limit<K, V>(
    fields: impl IntoIterator<Item = (K, V)>,
    entry_id: &str,
    max_payload_bytes: usize,
) -> Result<EventEnvelope, DecodeError>
where
    K: AsRef<str>,
    V: AsRef<str>,
{
    let mut raw = RawFields::default();
    for (key, value) in fields {
        let value = value.as_ref();
        let slot = match key.as_ref() {
            "id" => &mut raw.id,
            "event" => &mut raw.event,
            "version" => &mut raw.version,
            "source" => &mut raw.source,
            "timestamp" => &mut raw.timestamp,
            "idempotency_key" => &mut raw.idempotency_key,
            "level" => &mut raw.level,
            "domain" => &mut raw.domain,
            "entity" => &mut raw.entity,
            "description" => &mut raw.description,
            "visibility" => &mut raw.visibility,
            "payload" => &mut raw.payload,
            "actions" => &mut raw.actions,
            "terminal_when" => &mut raw.terminal_when,
            "resolution_shape" => &mut raw.resolution_shape,
            "correlation_id" => &mut raw.correlation_id,
            "causation_id" => &mut raw.causation_id,
            _ => continue,
        };
        *slot = Some(value.to_owned());
    }

    let event = raw
        .event
        .ok_or(DecodeError::MissingField { field: "event" })?;
    let source = raw
        .source
        .ok_or(DecodeError::MissingField { field: "source" })?;
    let timestamp_text = raw
        .timestamp
        .ok_or(DecodeError::MissingField { field: "timestamp" })?;
    let timestamp = parse_timestamp(&timestamp_text)
        .map_err(|message| DecodeError::invalid("timestamp", message))?;

    let id = match non_empty(raw.id) {
        Some(id) => id,
        None => Uuid::new_v5(&ENTRY_ID_NAMESPACE, entry_id.as_bytes()).to_string(),
    };
    let version = match non_empty(raw.version) {
        None => 1,
        Some(text) => text.trim().parse::<u32>().map_err(|_| {
            DecodeError::invalid("version", format!("{text:?} is not a positive integer"))
        })?,
    };
    let level = match non_empty(raw.level) {
        None => EventLevel::default(),
        Some(text) => EventLevel::parse_lenient(&text).ok_or_else(|| {
            DecodeError::invalid(
                "level",
                format!(
                    "unknown level {text:?}; expected 0..=3 or infrastructure|operational|workflow|business"
                ),
            )
        })?,
    };
    let visibility = match non_empty(raw.visibility) {
        None => EventVisibility::default(),
        Some(text) => EventVisibility::parse_lenient(&text).ok_or_else(|| {
            DecodeError::invalid(
                "visibility",
                format!("unknown visibility {text:?}; expected local, cluster or public"),
            )
        })?,
    };
    let payload = match non_empty(raw.payload) {
        None => Map::new(),
        Some(text) => match serde_json::from_str::<Value>(&text) {
            Ok(Value::Object(map)) => map,
            Ok(other) => {
                return Err(DecodeError::invalid(
                    "payload",
                    format!("expected a JSON object, got {}", json_kind(&other)),
                ));
            }
            Err(err) => return Err(DecodeError::invalid("payload", format!("bad JSON: {err}"))),
        },
    };
    let actions = match non_empty(raw.actions) {
        None => None,
        Some(text) => serde_json::from_str::<Option<BTreeMap<String, ActionDescriptor>>>(&text)
            .map_err(|err| DecodeError::invalid("actions", format!("bad JSON: {err}")))?,
    };
    let resolution_shape = match non_empty(raw.resolution_shape) {
        None => None,
        Some(text) => serde_json::from_str::<Option<BTreeMap<String, String>>>(&text)
            .map_err(|err| DecodeError::invalid("resolution_shape", format!("bad JSON: {err}")))?,
    };

    let envelope = EventEnvelope {
        id,
        event,
        version,
        source,
        timestamp,
        idempotency_key: non_empty(raw.idempotency_key),
        level,
        domain: raw.domain.unwrap_or_default(),
        entity: non_empty(raw.entity),
        description: raw.description.unwrap_or_default(),
        visibility,
        payload,
        actions,
        terminal_when: non_empty(raw.terminal_when),
        resolution_shape,
        correlation_id: non_empty(raw.correlation_id),
        causation_id: non_empty(raw.causation_id),
    };
    envelope.validate_with_limit(max_payload_bytes)?;
    Ok(envelope)
}

/// Formats a timestamp the way the wire carries it: UTC, six fraction digits, `Z`.
///
/// Also the canonical text of `timestamp` in idempotency keys, so a key does not depend on
/// which transport (JSON over HTTP or a stream entry) delivered the event.
///
/// Never panics: a timestamp whose UTC form falls outside the representable years (which
/// [`EventEnvelope::validate`] refuses) is written with its own offset instead, still exact.
pub fn format_timestamp(timestamp: OffsetDateTime) -> String {
    if let Some(text) = format_utc_timestamp(timestamp) {
        return text;
    }
    let mut out = String::with_capacity(32);
    // Writing to a String cannot fail.
    let _ = write!(
        out,
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:06}",
        timestamp.year(),
        u8::from(timestamp.month()),
        timestamp.day(),
        timestamp.hour(),
        timestamp.minute(),
        timestamp.second(),
        timestamp.microsecond(),
    );
    let offset = timestamp.offset();
    let (hours, minutes, _) = offset.as_hms();
    let sign = if offset.is_negative() { '-' } else { '+' };
    let _ = write!(
        out,
        "{sign}{:02}:{:02}",
        hours.unsigned_abs(),
        minutes.unsigned_abs()
    );
    out
}

/// `timestamp` in UTC as `YYYY-MM-DDTHH:MM:SS.ffffffZ` (truncated to microseconds), or `None`
/// when its UTC year is outside 0..=9999, which that fixed width cannot hold.
///
/// Written digit by digit rather than through `write!`: every emitted event formats its
/// timestamp, and the formatting machinery was ~2,000 instructions of it (4 % of an emitting
/// process under callgrind). Storage writes its timestamps with this too.
pub fn format_utc_timestamp(timestamp: OffsetDateTime) -> Option<String> {
    let utc = timestamp.checked_to_offset(UtcOffset::UTC)?;
    let year = u32::try_from(utc.year())
        .ok()
        .filter(|year| *year <= 9999)?;
    // The calendar date once: `month()` and `day()` would each convert the day number.
    let (_, month, day) = utc.to_calendar_date();
    let (hour, minute, second, micro) = utc.to_hms_micro();
    let mut out = *b"0000-00-00T00:00:00.000000Z";
    let mut put = |at: usize, width: usize, mut value: u32| {
        for slot in out[at..at + width].iter_mut().rev() {
            *slot = b'0' + (value % 10) as u8;
            value /= 10;
        }
    };
    put(0, 4, year);
    put(5, 2, u32::from(u8::from(month)));
    put(8, 2, u32::from(day));
    put(11, 2, u32::from(hour));
    put(14, 2, u32::from(minute));
    put(17, 2, u32::from(second));
    put(20, 6, micro);
    // ASCII digits and the template's separators only.
    String::from_utf8(out.to_vec()).ok()
}

/// Parses the timestamps producers write: RFC 3339 with `Z` or an offset (`+00:00`, `+0000`,
/// `+00`), or naive ISO 8601 taken as UTC; any number of fraction digits. The result is in UTC.
pub fn parse_timestamp(text: &str) -> Result<OffsetDateTime, String> {
    parse_timestamp_inner(text.trim()).ok_or_else(|| {
        format!(
            "{text:?} is not an RFC 3339 timestamp (like 2026-11-24T20:09:13.123456Z, \
             with an offset, or naive = UTC)"
        )
    })
}

fn parse_timestamp_inner(text: &str) -> Option<OffsetDateTime> {
    let bytes = text.as_bytes();
    let mut cursor = Cursor { bytes, pos: 0 };
    let year = cursor.digits(4)?;
    cursor.expect(b'-')?;
    let month = cursor.digits(2)?;
    cursor.expect(b'-')?;
    let day = cursor.digits(2)?;
    match cursor.next()? {
        b'T' | b't' | b' ' => {}
        _ => return None,
    }
    let hour = cursor.digits(2)?;
    cursor.expect(b':')?;
    let minute = cursor.digits(2)?;
    // Seconds are optional in ISO 8601 (`20:09`); Python never omits them, people do.
    let second = if cursor.peek() == Some(b':') {
        cursor.pos += 1;
        cursor.digits(2)?
    } else {
        0
    };
    let mut nanos: u32 = 0;
    if matches!(cursor.peek(), Some(b'.' | b',')) {
        cursor.pos += 1;
        let start = cursor.pos;
        while let Some(d) = cursor.peek().filter(u8::is_ascii_digit) {
            let position = cursor.pos - start;
            if position < 9 {
                nanos += u32::from(d - b'0') * 10u32.pow(8 - position as u32);
            }
            cursor.pos += 1;
        }
        if cursor.pos == start {
            return None;
        }
    }
    let offset = match cursor.next() {
        None => UtcOffset::UTC,
        Some(b'Z' | b'z') => UtcOffset::UTC,
        Some(sign @ (b'+' | b'-')) => {
            // RFC 3339 offsets stop at 23:59 (`UtcOffset` itself would take up to 25:59).
            let hours = cursor.digits(2).filter(|h| *h <= 23)? as i8;
            if cursor.peek() == Some(b':') {
                cursor.pos += 1;
            }
            let minutes = if cursor.pos < bytes.len() {
                cursor.digits(2)? as i8
            } else {
                0
            };
            let (hours, minutes) = if sign == b'-' {
                (-hours, -minutes)
            } else {
                (hours, minutes)
            };
            UtcOffset::from_hms(hours, minutes, 0).ok()?
        }
        Some(_) => return None,
    };
    if cursor.pos != bytes.len() {
        return None;
    }
    let date = Date::from_calendar_date(
        i32::try_from(year).ok()?,
        Month::try_from(u8::try_from(month).ok()?).ok()?,
        u8::try_from(day).ok()?,
    )
    .ok()?;
    let time = Time::from_hms_nano(
        u8::try_from(hour).ok()?,
        u8::try_from(minute).ok()?,
        u8::try_from(second).ok()?,
        nanos,
    )
    .ok()?;
    // Checked: an offset can carry the instant out of time's range (`9999-12-31T23:59-01:00`);
    // an unchecked conversion panicked here, which would crash the processor on every
    // redelivery of such an entry (found by fuzzing).
    PrimitiveDateTime::new(date, time)
        .assume_offset(offset)
        .checked_to_offset(UtcOffset::UTC)
}

struct Cursor<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl Cursor<'_> {
    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.pos).copied()
    }
    fn next(&mut self) -> Option<u8> {
        let b = self.peek()?;
        self.pos += 1;
        Some(b)
    }
    fn expect(&mut self, wanted: u8) -> Option<()> {
        (self.next()? == wanted).then_some(())
    }
    fn digits(&mut self, count: usize) -> Option<u32> {
        let mut value = 0u32;
        for _ in 0..count {
            let d = self.next().filter(u8::is_ascii_digit)?;
            value = value * 10 + u32::from(d - b'0');
        }
        Some(value)
    }
}

#[derive(Default)]
struct RawFields {
    id: Option<String>,
    event: Option<String>,
    version: Option<String>,
    source: Option<String>,
    timestamp: Option<String>,
    idempotency_key: Option<String>,
    level: Option<String>,
    domain: Option<String>,
    entity: Option<String>,
    description: Option<String>,
    visibility: Option<String>,
    payload: Option<String>,
    actions: Option<String>,
    terminal_when: Option<String>,
    resolution_shape: Option<String>,
    correlation_id: Option<String>,
    causation_id: Option<String>,
}

fn non_empty(value: Option<String>) -> Option<String> {
    value.filter(|v| !v.is_empty())
}

fn json_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

// The JSON fields are built as `Value`s by hand rather than through `serde_json::to_string`, so
// encoding is infallible by construction (no `Result` to unwrap on the emit path).

fn object_to_json(map: &Map<String, Value>) -> String {
    // `Display` of a `Value` is compact JSON.
    let mut out = String::new();
    let _ = write!(out, "{}", JsonObject(map));
    out
}

struct JsonObject<'a>(&'a Map<String, Value>);

impl std::fmt::Display for JsonObject<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("{")?;
        for (i, (key, value)) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{}:{}", Value::String(key.clone()), value)?;
        }
        f.write_str("}")
    }
}

fn string_map_to_json(map: &BTreeMap<String, String>) -> String {
    let object: Map<String, Value> = map
        .iter()
        .map(|(k, v)| (k.clone(), Value::String(v.clone())))
        .collect();
    Value::Object(object).to_string()
}

fn actions_to_json(actions: &BTreeMap<String, ActionDescriptor>) -> String {
    let object: Map<String, Value> = actions
        .iter()
        .map(|(name, action)| {
            let mut descriptor = Map::new();
            descriptor.insert(
                "description".to_owned(),
                Value::String(action.description.clone()),
            );
            descriptor.insert(
                "produces".to_owned(),
                Value::String(action.produces.clone()),
            );
            if let Some(shape) = &action.outcome_shape {
                let shape: Map<String, Value> = shape
                    .iter()
                    .map(|(k, v)| (k.clone(), Value::String(v.clone())))
                    .collect();
                descriptor.insert("outcome_shape".to_owned(), Value::Object(shape));
            }
            (name.clone(), Value::Object(descriptor))
        })
        .collect();
    Value::Object(object).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use time::macros::datetime;

    fn base_fields() -> Vec<(&'static str, String)> {
        vec![
            ("event", "job.completed".to_owned()),
            ("source", "worker".to_owned()),
            ("timestamp", "2026-11-24T20:09:13.123456Z".to_owned()),
        ]
    }

    fn decode_with(extra: &[(&'static str, &str)]) -> Result<EventEnvelope, DecodeError> {
        let mut fields = base_fields();
        for (key, value) in extra {
            fields.retain(|(k, _)| k != key);
            fields.push((key, (*value).to_owned()));
        }
        from_stream_fields(fields, "1732478953123-0")
    }

    #[test]
    fn encodes_required_fields_in_wire_order_and_optional_ones_only_when_present() {
        let event = EventEnvelope::new("job.completed", "worker")
            .with_timestamp(datetime!(2026-11-24 20:09:13.5 UTC))
            .with_field("n", 1);
        let names: Vec<_> = to_stream_fields(&event).iter().map(|(k, _)| *k).collect();
        assert_eq!(names, REQUIRED_STREAM_FIELDS);

        let event = event
            .with_entity("telec://todo/x")
            .with_correlation_id("c")
            .with_idempotency_key("k");
        let fields = to_stream_fields(&event);
        let names: Vec<_> = fields.iter().map(|(k, _)| *k).collect();
        assert_eq!(
            &names[10..],
            ["idempotency_key", "entity", "correlation_id"]
        );
        let get = |name| {
            fields
                .iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.as_str())
        };
        assert_eq!(get("timestamp"), Some("2026-11-24T20:09:13.500000Z"));
        assert_eq!(get("level"), Some("0"));
        assert_eq!(get("visibility"), Some("local"));
        assert_eq!(get("payload"), Some(r#"{"n":1}"#));
    }

    #[test]
    fn encoded_json_fields_are_compact_and_escaped() {
        let mut shape = BTreeMap::new();
        shape.insert("decision".to_owned(), "str".to_owned());
        let mut actions = BTreeMap::new();
        actions.insert(
            "approve".to_owned(),
            ActionDescriptor {
                description: "Approve \"it\"".to_owned(),
                produces: "review.approved".to_owned(),
                outcome_shape: Some(shape.clone()),
            },
        );
        let mut event = EventEnvelope::new("review.needed", "w").with_field("k\"ey", "é\n");
        event.actions = Some(actions.clone());
        event.resolution_shape = Some(shape.clone());
        let fields = to_stream_fields(&event);
        let get = |name| {
            fields
                .iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.clone())
        };
        assert_eq!(get("payload").as_deref(), Some(r#"{"k\"ey":"é\n"}"#));
        assert_eq!(
            get("resolution_shape").as_deref(),
            Some(r#"{"decision":"str"}"#)
        );
        let actions_back: BTreeMap<String, ActionDescriptor> =
            serde_json::from_str(&get("actions").unwrap_or_default()).expect("actions JSON");
        assert_eq!(actions_back, actions);
    }

    #[test]
    fn timestamps_are_accepted_in_every_producer_form() {
        let expected = datetime!(2026-11-24 20:09:13.123456 UTC);
        for text in [
            "2026-11-24T20:09:13.123456Z",
            "2026-11-24T20:09:13.123456",
            "2026-11-24 20:09:13.123456",
            "2026-11-24T20:09:13.123456+00:00",
            "2026-11-24T21:09:13.123456+01:00",
            "2026-11-24T21:09:13.123456+0100",
            "2026-11-24T18:09:13.123456-02",
            "2026-11-24t20:09:13.123456z",
            "2026-11-24T20:09:13.123456000Z",
            "2026-11-24T20:09:13.1234560009Z",
            " 2026-11-24T20:09:13.123456Z ",
        ] {
            assert_eq!(parse_timestamp(text), Ok(expected), "{text}");
        }
        assert_eq!(
            parse_timestamp("2026-11-24T20:09:13.1Z"),
            Ok(datetime!(2026-11-24 20:09:13.1 UTC))
        );
        assert_eq!(
            parse_timestamp("2026-11-24T20:09:13Z"),
            Ok(datetime!(2026-11-24 20:09:13 UTC))
        );
        assert_eq!(
            parse_timestamp("2026-11-24T20:09"),
            Ok(datetime!(2026-11-24 20:09:00 UTC))
        );
        let decoded = parse_timestamp("2026-11-24T21:09:13+01:00").expect("offset");
        assert_eq!(
            decoded.offset(),
            UtcOffset::UTC,
            "decoded timestamps are normalised to UTC"
        );
    }

    #[test]
    fn malformed_timestamps_are_refused() {
        for text in [
            "",
            "yesterday",
            "2026-11-24",
            "2026-13-01T00:00:00Z",
            "2026-02-30T00:00:00Z",
            "2026-11-24T25:00:00Z",
            "2026-11-24T20:09:13.Z",
            "2026-11-24T20:09:13Zjunk",
            "2026-11-24T20:09:13+25:00",
            "2026-11-24T20:09:60Z",
            "١٢٣٤-11-24T20:09:13Z",
        ] {
            assert!(parse_timestamp(text).is_err(), "{text:?} should be refused");
        }
    }

    #[test]
    fn formatting_always_writes_utc_with_microseconds() {
        let t = datetime!(2026-01-02 03:04:05.000000789 +02:00);
        assert_eq!(format_timestamp(t), "2026-01-02T01:04:05.000000Z");
    }

    #[test]
    fn an_instant_whose_utc_year_has_five_digits_keeps_its_own_offset() {
        let t = datetime!(9999-12-31 23:30:00 -01:00);
        assert_eq!(format_utc_timestamp(t), None);
        assert_eq!(format_timestamp(t), "9999-12-31T23:30:00.000000-01:00");
        let t = datetime!(0000-01-01 00:30:00 +01:00);
        assert_eq!(format_utc_timestamp(t), None);
        assert_eq!(format_timestamp(t), "0000-01-01T00:30:00.000000+01:00");
    }

    proptest::proptest! {
        #[test]
        fn the_digit_writer_agrees_with_the_time_crate(
            secs in -62_167_219_200i64..253_402_300_800,
            nanos in 0u32..1_000_000_000,
            offset_minutes in -1439i32..1440,
        ) {
            let reference = time::macros::format_description!(
                "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:6]Z"
            );
            let utc = OffsetDateTime::from_unix_timestamp(secs).unwrap().replace_nanosecond(nanos).unwrap();
            let t = utc.to_offset(UtcOffset::from_whole_seconds(offset_minutes * 60).unwrap());
            let expected = utc.format(reference).unwrap();
            proptest::prop_assert_eq!(format_utc_timestamp(t), Some(expected.clone()));
            proptest::prop_assert_eq!(format_timestamp(t), expected);
        }
    }

    #[test]
    fn level_accepts_decimal_and_names() {
        for (text, level) in [
            ("2", EventLevel::Workflow),
            ("workflow", EventLevel::Workflow),
            ("WORKFLOW", EventLevel::Workflow),
            ("EventLevel.WORKFLOW", EventLevel::Workflow),
            ("3", EventLevel::Business),
            ("0", EventLevel::Infrastructure),
        ] {
            assert_eq!(
                decode_with(&[("level", text)]).map(|e| e.level),
                Ok(level),
                "{text}"
            );
        }
    }

    #[test]
    fn level_7_is_refused_naming_the_level_field() {
        let err = decode_with(&[("level", "7")]).expect_err("level 7");
        assert_eq!(err.field(), "level");
        assert!(err.to_string().contains("unknown level \"7\""), "{err}");
        assert!(decode_with(&[("level", "-1")]).is_err());
        assert!(decode_with(&[("level", "EventLevel.URGENT")]).is_err());
    }

    #[test]
    fn visibility_is_lenient_about_case_and_enum_prefix() {
        for text in ["cluster", "CLUSTER", "EventVisibility.CLUSTER"] {
            assert_eq!(
                decode_with(&[("visibility", text)]).map(|e| e.visibility),
                Ok(EventVisibility::Cluster)
            );
        }
        let err = decode_with(&[("visibility", "galaxy")]).expect_err("galaxy");
        assert_eq!(err.field(), "visibility");
    }

    #[test]
    fn missing_required_fields_are_named() {
        for field in ["event", "source", "timestamp"] {
            let fields: Vec<_> = base_fields()
                .into_iter()
                .filter(|(k, _)| *k != field)
                .collect();
            let err = from_stream_fields(fields, "1-0").expect_err(field);
            assert_eq!(err, DecodeError::MissingField { field });
            assert_eq!(err.to_string(), format!("missing field `{field}`"));
        }
    }

    #[test]
    fn absent_optional_fields_get_defaults() {
        let event = decode_with(&[]).expect("minimal entry");
        assert_eq!(event.version, 1);
        assert_eq!(event.level, EventLevel::Infrastructure);
        assert_eq!(event.visibility, EventVisibility::Local);
        assert!(event.payload.is_empty());
        assert_eq!(event.domain, "");
        assert_eq!(event.entity, None);
        assert_eq!(event.actions, None);
    }

    #[test]
    fn empty_optional_fields_count_as_absent() {
        let event = decode_with(&[
            ("entity", ""),
            ("actions", ""),
            ("resolution_shape", "null"),
            ("correlation_id", ""),
            ("payload", ""),
        ])
        .expect("empty optionals");
        assert_eq!(event.entity, None);
        assert_eq!(event.actions, None);
        assert_eq!(event.resolution_shape, None);
        assert_eq!(event.correlation_id, None);
        assert!(event.payload.is_empty());
    }

    #[test]
    fn missing_id_is_derived_stably_from_the_entry_id() {
        let fields = base_fields();
        let first = from_stream_fields(fields.clone(), "1732478953123-0").expect("decode");
        let again = from_stream_fields(fields.clone(), "1732478953123-0").expect("decode");
        let other = from_stream_fields(fields, "1732478953123-1").expect("decode");
        assert_eq!(first.id, again.id, "re-delivery must give the same id");
        assert_ne!(first.id, other.id);
        let uuid = Uuid::parse_str(&first.id).expect("a uuid");
        assert_eq!(uuid.get_version_num(), 5);
        let explicit = decode_with(&[("id", "given-id")]).expect("decode");
        assert_eq!(explicit.id, "given-id");
    }

    #[test]
    fn unknown_fields_are_ignored_and_repeated_fields_keep_the_last() {
        let event = decode_with(&[("trace_id", "abc"), ("x", "y")]).expect("unknown fields");
        assert_eq!(event.event, "job.completed");
        let mut fields = base_fields();
        fields.push(("source", "second".to_owned()));
        assert_eq!(
            from_stream_fields(fields, "1-0").map(|e| e.source),
            Ok("second".to_owned())
        );
    }

    #[test]
    fn payload_must_be_a_json_object() {
        let err = decode_with(&[("payload", "{not json")]).expect_err("bad JSON");
        assert_eq!(err.field(), "payload");
        assert!(
            err.to_string().starts_with("invalid payload: bad JSON"),
            "{err}"
        );
        let err = decode_with(&[("payload", "[1,2]")]).expect_err("array");
        assert_eq!(
            err.to_string(),
            "invalid payload: expected a JSON object, got an array"
        );
        let ok = decode_with(&[("payload", r#"{"a":{"b":[1,null,"é"]}}"#)]).expect("object");
        assert_eq!(ok.payload.get("a"), Some(&json!({"b": [1, null, "é"]})));
    }

    #[test]
    fn bad_version_actions_and_shape_name_their_field() {
        for (field, value) in [
            ("version", "x"),
            ("version", "-1"),
            ("actions", "{\"a\": 1}"),
            ("resolution_shape", "[1]"),
        ] {
            let err = decode_with(&[(field, value)]).expect_err(field);
            assert_eq!(err.field(), field, "{err}");
        }
        let err = decode_with(&[("version", "0")]).expect_err("version 0");
        assert_eq!(err.field(), "version");
    }

    #[test]
    fn decoded_envelopes_are_validated() {
        let err = decode_with(&[("event", "TodoCreated")]).expect_err("bad name");
        assert_eq!(err.field(), "event");
        let err = decode_with(&[("source", "  ")]).expect_err("blank source");
        assert_eq!(err.field(), "source");
        assert!(err.to_string().contains("source"), "{err}");
    }

    #[test]
    fn payload_limit_is_configurable() {
        let big = format!(r#"{{"blob":"{}"}}"#, "x".repeat(2_000));
        let mut fields = base_fields();
        fields.push(("payload", big));
        let err = from_stream_fields_with_limit(fields.clone(), "1-0", 1_000).expect_err("too big");
        assert_eq!(err.field(), "payload");
        assert!(from_stream_fields_with_limit(fields, "1-0", 10_000).is_ok());
    }

    #[test]
    fn bytes_keys_from_owned_strings_work() {
        // Callers pass whatever their client hands out: owned Strings here.
        let fields: Vec<(String, String)> = base_fields()
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .collect();
        assert!(from_stream_fields(fields, "1-0").is_ok());
    }
}
