//! Decoding the stream entries Python producers of the original design write
//! (`tests/fixtures/python-producer-entries.json`, a copy of the shared fixture).

use std::collections::BTreeMap;

use events_envelope::{
    DecodeError, EventCatalog, EventEnvelope, EventLevel, EventVisibility, from_stream_fields,
};
use serde::Deserialize;

#[derive(Deserialize)]
struct FixtureFile {
    entries: Vec<Fixture>,
}

#[derive(Deserialize)]
struct Fixture {
    valid: bool,
    note: String,
    fields: BTreeMap<String, String>,
}

fn fixtures() -> Vec<Fixture> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/python-producer-entries.json"
    );
    let text = std::fs::read_to_string(path).expect("fixture file readable");
    let file: FixtureFile = serde_json::from_str(&text).expect("fixture file is JSON");
    assert!(file.entries.len() >= 10, "fixture file unexpectedly small");
    file.entries
}

fn decode(fixture: &Fixture, entry_id: &str) -> Result<EventEnvelope, DecodeError> {
    from_stream_fields(&fixture.fields, entry_id)
}

fn find<'a>(fixtures: &'a [Fixture], note_part: &str) -> &'a Fixture {
    fixtures
        .iter()
        .find(|f| f.note.contains(note_part))
        .unwrap_or_else(|| panic!("no fixture with note containing {note_part:?}"))
}

#[test]
fn valid_entries_decode_and_invalid_ones_are_errors() {
    for (i, fixture) in fixtures().iter().enumerate() {
        let result = decode(fixture, &format!("1732478953123-{i}"));
        match (fixture.valid, result) {
            (true, Ok(event)) => {
                assert_eq!(event.validate(), Ok(()), "{}", fixture.note);
                assert_eq!(
                    event.timestamp.offset(),
                    time::UtcOffset::UTC,
                    "{}",
                    fixture.note
                );
            }
            (false, Err(err)) => {
                // The dead-letter reason names the field at fault.
                assert!(
                    err.to_string().contains(err.field()),
                    "{}: {err}",
                    fixture.note
                );
            }
            (true, Err(err)) => panic!("valid fixture {:?} refused: {err}", fixture.note),
            (false, Ok(event)) => panic!("invalid fixture {:?} accepted: {event:?}", fixture.note),
        }
    }
}

#[test]
fn invalid_entries_name_the_right_field() {
    let fixtures = fixtures();
    for (note, field) in [
        ("missing event", "event"),
        ("missing source", "source"),
        ("level out of range", "level"),
        ("payload is not JSON", "payload"),
        ("payload is a JSON array", "payload"),
        ("timestamp unparseable", "timestamp"),
        ("visibility unknown", "visibility"),
        ("event name not dot notation", "event"),
    ] {
        let err = decode(find(&fixtures, note), "1-0").expect_err(note);
        assert_eq!(err.field(), field, "{note}: {err}");
    }
    let err = decode(find(&fixtures, "level out of range"), "1-0").expect_err("level 9");
    assert!(err.to_string().contains("unknown level \"9\""), "{err}");
}

#[test]
fn naive_timestamp_without_id_decodes_as_utc_with_a_stable_id() {
    let fixtures = fixtures();
    let fixture = find(&fixtures, "naive timestamp");
    assert!(!fixture.fields.contains_key("id"));
    let event = decode(fixture, "1732478953123-0").expect("decodes");
    assert_eq!(
        event.timestamp,
        time::macros::datetime!(2026-11-24 20:09:13.123456 UTC)
    );
    assert_eq!(event.level, EventLevel::Workflow);
    assert_eq!(
        event.entity.as_deref(),
        Some("telec://todo/event-platform-core")
    );
    assert_eq!(event.payload["slug"], "event-platform-core");
    let again = decode(fixture, "1732478953123-0").expect("decodes");
    assert_eq!(
        event.id, again.id,
        "re-delivery of the same entry keeps its id"
    );
    assert_ne!(
        event.id,
        decode(fixture, "1732478953124-0").expect("decodes").id
    );
}

#[test]
fn offset_and_z_timestamps_decode_to_the_same_instant_form() {
    let fixtures = fixtures();
    let restarted = decode(find(&fixtures, "offset timestamp"), "1-0").expect("decodes");
    assert_eq!(
        restarted.timestamp,
        time::macros::datetime!(2026-11-24 20:09:13.123456 UTC)
    );
    assert_eq!(restarted.visibility, EventVisibility::Cluster);
    let crashed = decode(find(&fixtures, "Z timestamp"), "1-0").expect("decodes");
    assert_eq!(
        crashed.timestamp,
        time::macros::datetime!(2026-11-24 20:09:13.123 UTC)
    );
}

#[test]
fn optional_fields_and_unknown_fields() {
    let fixtures = fixtures();
    let decision = decode(find(&fixtures, "all present"), "1-0").expect("decodes");
    assert_eq!(decision.level, EventLevel::Business);
    assert_eq!(
        decision.idempotency_key.as_deref(),
        Some("domain.software-development.review.needs_decision:auth-refactor")
    );
    let actions = decision.actions.as_ref().expect("actions");
    assert_eq!(
        actions["approve"].produces,
        "domain.software-development.review.approved"
    );
    assert_eq!(
        actions["approve"]
            .outcome_shape
            .as_ref()
            .map(|s| s["note"].as_str()),
        Some("str")
    );
    assert_eq!(actions["reject"].outcome_shape, None);
    assert_eq!(
        decision.terminal_when.as_deref(),
        Some("domain.software-development.review.approved")
    );
    assert_eq!(decision.resolution_shape.as_ref().map(|s| s.len()), Some(2));

    let unicode = decode(find(&fixtures, "unicode"), "1-0").expect("decodes");
    assert_eq!(unicode.payload["slug"], "événements");
    assert_eq!(unicode.payload["files"][0]["path"], "docs/ü.md");

    let explicit = decode(find(&fixtures, "explicit UUIDv7"), "1-0").expect("decodes");
    assert_eq!(explicit.id, "019ab7c4-6d1e-7f3a-9c41-2b8e5f0a7d13");

    let by_name = decode(find(&fixtures, "level by name"), "1-0").expect("decodes");
    assert_eq!(by_name.level, EventLevel::Workflow);
}

#[test]
fn python_entries_get_the_catalog_idempotency_keys() {
    let fixtures = fixtures();
    let catalog = EventCatalog::builtin();
    let key = |note: &str| {
        let event = decode(find(&fixtures, note), "1-0").expect("decodes");
        catalog.build_idempotency_key(&event).expect("key")
    };
    assert_eq!(
        key("offset timestamp").as_deref(),
        Some("system.daemon.restarted:mozart:4242")
    );
    // The payload's `timestamp` wins over the envelope's.
    assert_eq!(
        key("Z timestamp").as_deref(),
        Some("system.worker.crashed:prepare:2026-11-24T20:09:13Z")
    );
}

#[test]
fn re_encoding_a_python_entry_is_a_fixed_point() {
    for (i, fixture) in fixtures().iter().filter(|f| f.valid).enumerate() {
        let event = decode(fixture, &format!("9-{i}")).expect("decodes");
        let fields = events_envelope::to_stream_fields(&event);
        let again = from_stream_fields(fields.iter().map(|(k, v)| (*k, v.as_str())), "other")
            .expect("re-decodes");
        assert_eq!(again, event, "{}", fixture.note);
    }
}
