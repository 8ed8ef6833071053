//! The event envelope (brief §3): what every producer emits and every consumer reads.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use time::{OffsetDateTime, UtcOffset};
use uuid::Uuid;

use crate::error::ValidationError;

/// Largest serialised payload accepted by default (256 KiB); configurable per validation call.
pub const DEFAULT_MAX_PAYLOAD_BYTES: usize = 256 * 1024;
/// Longest accepted `event` name and `source`.
pub const MAX_NAME_LEN: usize = 200;

/// How much a human should care: a notification at WORKFLOW or above reaches people.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
#[repr(u8)]
pub enum EventLevel {
    /// Machine-room noise: restarts, health.
    #[default]
    Infrastructure = 0,
    /// Things operators look at.
    Operational = 1,
    /// Progress of work people follow.
    Workflow = 2,
    /// Decisions and outcomes that matter to the business.
    Business = 3,
}

impl EventLevel {
    /// All levels, lowest first.
    pub const ALL: [EventLevel; 4] = [
        EventLevel::Infrastructure,
        EventLevel::Operational,
        EventLevel::Workflow,
        EventLevel::Business,
    ];

    /// The wire integer (0..=3).
    pub fn as_u8(self) -> u8 {
        self as u8
    }

    /// Upper-case name as Python's IntEnum prints it (`WORKFLOW`).
    pub fn name(self) -> &'static str {
        match self {
            EventLevel::Infrastructure => "INFRASTRUCTURE",
            EventLevel::Operational => "OPERATIONAL",
            EventLevel::Workflow => "WORKFLOW",
            EventLevel::Business => "BUSINESS",
        }
    }

    /// The level for a wire integer, `None` outside 0..=3.
    pub fn from_u8(value: u8) -> Option<Self> {
        Self::ALL.get(usize::from(value)).copied()
    }

    /// Parses `2`, `workflow`, `WORKFLOW` or `EventLevel.WORKFLOW` (what Python < 3.11 writes).
    pub fn parse_lenient(text: &str) -> Option<Self> {
        let text = text.trim();
        if let Ok(n) = text.parse::<u8>() {
            return Self::from_u8(n);
        }
        let name = text.strip_prefix("EventLevel.").unwrap_or(text);
        Self::ALL
            .into_iter()
            .find(|level| level.name().eq_ignore_ascii_case(name))
    }
}

impl fmt::Display for EventLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for EventLevel {
    type Err = ValidationError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse_lenient(s).ok_or_else(|| ValidationError::new("level", format!("unknown level {s:?}; expected 0..=3 or infrastructure|operational|workflow|business")))
    }
}

impl Serialize for EventLevel {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u8(self.as_u8())
    }
}

impl<'de> Deserialize<'de> for EventLevel {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        // Integers are canonical; names are accepted because TOML catalogs and people write them.
        let value = Value::deserialize(d)?;
        let parsed = match &value {
            Value::Number(n) => n
                .as_u64()
                .and_then(|n| u8::try_from(n).ok())
                .and_then(Self::from_u8),
            Value::String(s) => Self::parse_lenient(s),
            _ => None,
        };
        parsed.ok_or_else(|| {
            serde::de::Error::custom(format!(
                "invalid level {value}: expected an integer 0..=3 or a level name"
            ))
        })
    }
}

/// Who may see an event beyond this machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EventVisibility {
    /// This machine only.
    #[default]
    Local,
    /// The operator's cluster.
    Cluster,
    /// Anyone subscribed.
    Public,
}

impl EventVisibility {
    /// The lowercase wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            EventVisibility::Local => "local",
            EventVisibility::Cluster => "cluster",
            EventVisibility::Public => "public",
        }
    }

    /// Parses `local`, `Cluster`, or `EventVisibility.PUBLIC`.
    pub fn parse_lenient(text: &str) -> Option<Self> {
        let text = text.trim();
        let name = text.strip_prefix("EventVisibility.").unwrap_or(text);
        [Self::Local, Self::Cluster, Self::Public]
            .into_iter()
            .find(|v| v.as_str().eq_ignore_ascii_case(name))
    }
}

impl fmt::Display for EventVisibility {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for EventVisibility {
    type Err = ValidationError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse_lenient(s).ok_or_else(|| {
            ValidationError::new(
                "visibility",
                format!("unknown visibility {s:?}; expected local, cluster or public"),
            )
        })
    }
}

/// An action a consumer may take on an event; carried through the platform, never executed by it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ActionDescriptor {
    /// What the action does, for people.
    pub description: String,
    /// The event type taking the action produces.
    pub produces: String,
    /// Expected shape of the outcome (field → type name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcome_shape: Option<BTreeMap<String, String>>,
}

/// One event, as emitted by a producer and stored by the daemon.
///
/// Build one with [`EventEnvelope::new`] and the `with_*` setters; call
/// [`EventEnvelope::validate`] before emitting (producers do it for you).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventEnvelope {
    /// UUIDv7, assigned on construction.
    #[serde(default = "new_event_id")]
    pub id: String,
    /// Dot-notation type, e.g. `domain.software-development.build.completed`.
    pub event: String,
    /// Schema version of the payload, ≥ 1.
    #[serde(default = "default_version")]
    pub version: u32,
    /// Who emitted it.
    pub source: String,
    /// When it happened (UTC; RFC 3339 on the wire).
    #[serde(default = "OffsetDateTime::now_utc", with = "time::serde::rfc3339")]
    pub timestamp: OffsetDateTime,
    /// Dedup key; filled from the catalog by the dedup cartridge when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idempotency_key: Option<String>,
    /// How much people should care.
    #[serde(default)]
    pub level: EventLevel,
    /// Business domain, e.g. `software-development`.
    #[serde(default)]
    pub domain: String,
    /// What the event is about, e.g. `telec://todo/event-platform-core`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entity: Option<String>,
    /// One line for people.
    #[serde(default)]
    pub description: String,
    /// Who may see it.
    #[serde(default)]
    pub visibility: EventVisibility,
    /// Event data; always a JSON object.
    #[serde(default)]
    pub payload: Map<String, Value>,
    /// Affordances offered to consumers (carried, not processed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actions: Option<BTreeMap<String, ActionDescriptor>>,
    /// Event type that ends the thing this event started (carried).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub terminal_when: Option<String>,
    /// Expected shape of a resolution (carried).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolution_shape: Option<BTreeMap<String, String>>,
    /// Ties together all events of one flow.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub correlation_id: Option<String>,
    /// The event that caused this one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub causation_id: Option<String>,
}

fn default_version() -> u32 {
    1
}

/// A fresh UUIDv7 as text: time-ordered, so ids sort roughly by creation.
pub fn new_event_id() -> String {
    Uuid::now_v7().to_string()
}

impl EventEnvelope {
    /// A new envelope with a fresh id, `timestamp = now`, level INFRASTRUCTURE and empty payload.
    pub fn new(event: impl Into<String>, source: impl Into<String>) -> Self {
        Self {
            id: new_event_id(),
            event: event.into(),
            version: 1,
            source: source.into(),
            timestamp: OffsetDateTime::now_utc(),
            idempotency_key: None,
            level: EventLevel::default(),
            domain: String::new(),
            entity: None,
            description: String::new(),
            visibility: EventVisibility::default(),
            payload: Map::new(),
            actions: None,
            terminal_when: None,
            resolution_shape: None,
            correlation_id: None,
            causation_id: None,
        }
    }

    /// Sets the level.
    pub fn with_level(mut self, level: EventLevel) -> Self {
        self.level = level;
        self
    }
    /// Sets the domain.
    pub fn with_domain(mut self, domain: impl Into<String>) -> Self {
        self.domain = domain.into();
        self
    }
    /// Sets the entity.
    pub fn with_entity(mut self, entity: impl Into<String>) -> Self {
        self.entity = Some(entity.into());
        self
    }
    /// Sets the description.
    pub fn with_description(mut self, description: impl Into<String>) -> Self {
        self.description = description.into();
        self
    }
    /// Sets the visibility.
    pub fn with_visibility(mut self, visibility: EventVisibility) -> Self {
        self.visibility = visibility;
        self
    }
    /// Sets the payload object.
    pub fn with_payload(mut self, payload: Map<String, Value>) -> Self {
        self.payload = payload;
        self
    }
    /// Sets one payload field.
    pub fn with_field(mut self, key: impl Into<String>, value: impl Into<Value>) -> Self {
        self.payload.insert(key.into(), value.into());
        self
    }
    /// Sets the idempotency key explicitly (otherwise the catalog derives it).
    pub fn with_idempotency_key(mut self, key: impl Into<String>) -> Self {
        self.idempotency_key = Some(key.into());
        self
    }
    /// Sets the correlation id.
    pub fn with_correlation_id(mut self, id: impl Into<String>) -> Self {
        self.correlation_id = Some(id.into());
        self
    }
    /// Sets the causation id.
    pub fn with_causation_id(mut self, id: impl Into<String>) -> Self {
        self.causation_id = Some(id.into());
        self
    }
    /// Marks this event as caused by `parent`: same correlation id (or the parent's id), causation = parent's id.
    pub fn caused_by(mut self, parent: &EventEnvelope) -> Self {
        self.correlation_id = Some(
            parent
                .correlation_id
                .clone()
                .unwrap_or_else(|| parent.id.clone()),
        );
        self.causation_id = Some(parent.id.clone());
        self
    }
    /// Sets the timestamp.
    pub fn with_timestamp(mut self, timestamp: OffsetDateTime) -> Self {
        self.timestamp = timestamp;
        self
    }
    /// Sets the version.
    pub fn with_version(mut self, version: u32) -> Self {
        self.version = version;
        self
    }

    /// Checks every rule of brief §3 with the default payload limit.
    pub fn validate(&self) -> Result<(), ValidationError> {
        self.validate_with_limit(DEFAULT_MAX_PAYLOAD_BYTES)
    }

    /// Checks every rule of brief §3; the error names the first field at fault.
    pub fn validate_with_limit(&self, max_payload_bytes: usize) -> Result<(), ValidationError> {
        validate_event_name(&self.event)?;
        if self.version == 0 {
            return Err(ValidationError::new("version", "must be ≥ 1"));
        }
        if self.source.trim().is_empty() {
            return Err(ValidationError::new("source", "must not be empty"));
        }
        if self.source.chars().count() > MAX_NAME_LEN {
            return Err(ValidationError::new(
                "source",
                format!("longer than {MAX_NAME_LEN} characters"),
            ));
        }
        if !(0..=9999).contains(&self.timestamp.year()) {
            // RFC 3339 (and so the JSON and stream encodings) cannot express other years.
            return Err(ValidationError::new(
                "timestamp",
                format!("year {} is outside 0..=9999", self.timestamp.year()),
            ));
        }
        // The stream wire format writes the instant in UTC, where an offset can move it out of
        // range (`9999-12-31T23:30:00-01:00` is year 10000 in UTC); found by fuzzing.
        match self.timestamp.checked_to_offset(UtcOffset::UTC) {
            Some(utc) if (0..=9999).contains(&utc.year()) => {}
            _ => {
                return Err(ValidationError::new(
                    "timestamp",
                    "outside years 0..=9999 once converted to UTC",
                ));
            }
        }
        if self.id.is_empty() {
            return Err(ValidationError::new("id", "must not be empty"));
        }
        let payload_len = serialized_len(&self.payload);
        if payload_len > max_payload_bytes {
            return Err(ValidationError::new(
                "payload",
                format!(
                    "{payload_len} bytes serialised, more than the limit of {max_payload_bytes}"
                ),
            ));
        }
        Ok(())
    }
}

/// Bytes of `value` as compact JSON, counted without building the text (every envelope is
/// checked against the payload limit, on the producer's side and again on the daemon's).
fn serialized_len(value: &impl Serialize) -> usize {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0 += bytes.len();
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut count = Count(0);
    match serde_json::to_writer(&mut count, value) {
        Ok(()) => count.0,
        Err(_) => usize::MAX,
    }
}

/// Checks an event type name: `^[a-z0-9_-]+(\.[a-z0-9_-]+)+$`, at most 200 characters.
pub fn validate_event_name(name: &str) -> Result<(), ValidationError> {
    if name.is_empty() {
        return Err(ValidationError::new("event", "must not be empty"));
    }
    if name.len() > MAX_NAME_LEN {
        return Err(ValidationError::new(
            "event",
            format!("longer than {MAX_NAME_LEN} characters"),
        ));
    }
    if is_well_formed_event_name(name.as_bytes()) {
        return Ok(());
    }
    Err(event_name_error(name).unwrap_or_else(|| {
        ValidationError::new("event", format!("{name:?} is not a valid event type"))
    }))
}

/// What is wrong with an event type name (length aside), segment by segment, for the
/// message; `None` if nothing is.
fn event_name_error(name: &str) -> Option<ValidationError> {
    let mut segments = 0;
    for segment in name.split('.') {
        segments += 1;
        if segment.is_empty() {
            return Some(ValidationError::new(
                "event",
                format!("{name:?} has an empty segment; use dot notation like `job.completed`"),
            ));
        }
        if let Some(bad) = segment
            .chars()
            .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_' || *c == '-'))
        {
            return Some(ValidationError::new(
                "event",
                format!("{name:?} contains {bad:?}; only a-z, 0-9, '_', '-' and '.' are allowed"),
            ));
        }
    }
    if segments < 2 {
        return Some(ValidationError::new(
            "event",
            format!("{name:?} needs at least two dot-separated segments, like `job.completed`"),
        ));
    }
    None
}

/// The grammar of [`validate_event_name`] (`^[a-z0-9_-]+(\.[a-z0-9_-]+)+$`) in one pass over
/// the bytes: every event is checked when it is built, sent and received, and walking it as
/// `char`s segment by segment was ~1,000 instructions of that per event under callgrind.
fn is_well_formed_event_name(name: &[u8]) -> bool {
    let mut segments = 1;
    let mut segment_len = 0;
    for &byte in name {
        match byte {
            b'a'..=b'z' | b'0'..=b'9' | b'_' | b'-' => segment_len += 1,
            b'.' if segment_len > 0 => {
                segments += 1;
                segment_len = 0;
            }
            _ => return false,
        }
    }
    segment_len > 0 && segments >= 2
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use time::macros::datetime;

    #[test]
    fn new_envelope_has_defaults_and_a_v7_id() {
        let event = EventEnvelope::new("job.completed", "worker");
        assert_eq!(event.version, 1);
        assert_eq!(event.level, EventLevel::Infrastructure);
        assert_eq!(event.visibility, EventVisibility::Local);
        assert!(event.payload.is_empty());
        assert_eq!(
            Uuid::parse_str(&event.id).map(|u| u.get_version_num()),
            Ok(7)
        );
        assert_ne!(event.id, EventEnvelope::new("job.completed", "worker").id);
        assert_eq!(event.validate(), Ok(()));
    }

    #[test]
    fn json_uses_brief_names_integer_level_and_lowercase_visibility() {
        let event = EventEnvelope::new("job.completed", "worker")
            .with_level(EventLevel::Workflow)
            .with_visibility(EventVisibility::Cluster)
            .with_timestamp(datetime!(2026-11-24 20:09:13.123456 UTC))
            .with_field("n", 1);
        let value = serde_json::to_value(&event).expect("serialise");
        assert_eq!(value["level"], json!(2));
        assert_eq!(value["visibility"], json!("cluster"));
        assert_eq!(value["timestamp"], json!("2026-11-24T20:09:13.123456Z"));
        assert_eq!(value["payload"], json!({"n": 1}));
        assert!(
            value.get("entity").is_none(),
            "absent optionals are omitted"
        );
        let back: EventEnvelope = serde_json::from_value(value).expect("deserialise");
        assert_eq!(back, event);
    }

    #[test]
    fn json_defaults_fill_everything_but_event_and_source() {
        let event: EventEnvelope =
            serde_json::from_value(json!({"event": "job.completed", "source": "w"}))
                .expect("minimal");
        assert_eq!(event.version, 1);
        assert!(!event.id.is_empty());
        assert_eq!(event.validate(), Ok(()));
    }

    #[test]
    fn level_7_is_refused_in_json() {
        let err = serde_json::from_value::<EventEnvelope>(
            json!({"event": "job.completed", "source": "w", "level": 7}),
        )
        .expect_err("level 7");
        assert!(err.to_string().contains("invalid level 7"), "{err}");
        assert!(serde_json::from_value::<EventLevel>(json!("workflow")).is_ok());
        assert!(serde_json::from_value::<EventLevel>(json!(-1)).is_err());
        assert!(serde_json::from_value::<EventLevel>(json!(2.0)).is_err());
    }

    #[test]
    fn level_parsing_and_names() {
        assert_eq!(
            EventLevel::parse_lenient("EventLevel.BUSINESS"),
            Some(EventLevel::Business)
        );
        assert_eq!(
            EventLevel::parse_lenient(" operational "),
            Some(EventLevel::Operational)
        );
        assert_eq!(EventLevel::parse_lenient("7"), None);
        assert_eq!(EventLevel::from_u8(4), None);
        let err = "7".parse::<EventLevel>().expect_err("7");
        assert_eq!(err.field, "level");
        assert_eq!(EventLevel::Workflow.to_string(), "WORKFLOW");
        assert!(EventLevel::Business > EventLevel::Workflow);
    }

    #[test]
    fn visibility_parsing() {
        assert_eq!(
            "Public".parse::<EventVisibility>(),
            Ok(EventVisibility::Public)
        );
        assert_eq!(
            "galaxy".parse::<EventVisibility>().map_err(|e| e.field),
            Err("visibility")
        );
        assert!(
            serde_json::from_value::<EventVisibility>(json!("LOCAL")).is_err(),
            "JSON is canonical lowercase"
        );
    }

    proptest::proptest! {
        #[test]
        fn the_one_pass_name_check_agrees_with_the_segment_walk(name in "[a-z0-9_.A-Z é-]{0,12}") {
            proptest::prop_assert_eq!(
                is_well_formed_event_name(name.as_bytes()),
                event_name_error(&name).is_none(),
                "{:?}", name
            );
        }
    }

    #[test]
    fn invalid_event_names_are_refused_naming_event() {
        for name in [
            "",
            "TodoCreated",
            "job",
            "job.",
            ".job",
            "job..done",
            "Job.done",
            "job.dóne",
            "job done.x",
        ] {
            let err = validate_event_name(name).expect_err(name);
            assert_eq!(err.field, "event", "{name}");
        }
        let long = format!("a.{}", "b".repeat(MAX_NAME_LEN));
        assert_eq!(
            validate_event_name(&long).map_err(|e| e.field),
            Err("event")
        );
        for name in [
            "job.done",
            "a-b.c_d.0",
            "domain.software-development.build.completed",
        ] {
            assert_eq!(validate_event_name(name), Ok(()), "{name}");
        }
    }

    #[test]
    fn bad_envelopes_are_refused_naming_the_field() {
        let ok = EventEnvelope::new("job.done", "w");
        let cases = [
            (
                EventEnvelope {
                    event: "Bad Name".into(),
                    ..ok.clone()
                },
                "event",
            ),
            (
                EventEnvelope {
                    source: String::new(),
                    ..ok.clone()
                },
                "source",
            ),
            (
                EventEnvelope {
                    source: " ".into(),
                    ..ok.clone()
                },
                "source",
            ),
            (
                EventEnvelope {
                    source: "s".repeat(MAX_NAME_LEN + 1),
                    ..ok.clone()
                },
                "source",
            ),
            (
                EventEnvelope {
                    version: 0,
                    ..ok.clone()
                },
                "version",
            ),
            (
                EventEnvelope {
                    id: String::new(),
                    ..ok.clone()
                },
                "id",
            ),
            (
                ok.clone().with_timestamp(datetime!(-0001-01-01 0:00 UTC)),
                "timestamp",
            ),
            (
                ok.clone()
                    .with_field("blob", "x".repeat(DEFAULT_MAX_PAYLOAD_BYTES)),
                "payload",
            ),
        ];
        for (event, field) in cases {
            let err = event.validate().expect_err(field);
            assert_eq!(err.field, field, "{err}");
            assert!(
                err.to_string().starts_with(&format!("invalid {field}: ")),
                "{err}"
            );
        }
        let small = ok.with_field("blob", "x".repeat(100));
        assert!(small.validate_with_limit(50).is_err());
        assert!(small.validate_with_limit(200).is_ok());
    }

    #[test]
    fn the_payload_limit_counts_compact_json_bytes_exactly() {
        let event = EventEnvelope::new("job.done", "w")
            .with_field("text", "é \" \n\u{1}")
            .with_field("nested", json!({"list": [1, 2.5, null, true], "k": "v"}));
        let bytes = serde_json::to_vec(&event.payload).expect("json").len();
        assert_eq!(serialized_len(&event.payload), bytes);
        assert!(event.validate_with_limit(bytes).is_ok());
        let err = event
            .validate_with_limit(bytes - 1)
            .expect_err("one byte over");
        assert!(
            err.to_string()
                .contains(&format!("{bytes} bytes serialised")),
            "{err}"
        );
    }

    #[test]
    fn caused_by_chains_correlation() {
        let root = EventEnvelope::new("job.started", "w");
        let child = EventEnvelope::new("job.step", "w").caused_by(&root);
        assert_eq!(child.correlation_id.as_deref(), Some(root.id.as_str()));
        assert_eq!(child.causation_id.as_deref(), Some(root.id.as_str()));
        let grandchild = EventEnvelope::new("job.done", "w").caused_by(&child);
        assert_eq!(grandchild.correlation_id.as_deref(), Some(root.id.as_str()));
        assert_eq!(grandchild.causation_id.as_deref(), Some(child.id.as_str()));
    }
}
