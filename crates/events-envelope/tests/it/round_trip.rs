//! Property tests: any valid envelope survives JSON and the stream wire format unchanged, and
//! the decoder never panics on arbitrary field maps.

use std::collections::BTreeMap;

use events_envelope::{
    ActionDescriptor, EventEnvelope, EventLevel, EventVisibility, from_stream_fields,
    to_stream_fields,
};
use proptest::prelude::*;
use serde_json::{Map, Value};
use time::OffsetDateTime;

/// Printable text of any script (including empty).
fn text(max: usize) -> impl Strategy<Value = String> {
    proptest::string::string_regex(&format!("\\PC{{0,{max}}}")).expect("regex")
}

/// Non-empty text: empty optional stream fields decode as absent, by design.
fn non_empty_text(max: usize) -> impl Strategy<Value = String> {
    proptest::string::string_regex(&format!("\\PC{{1,{max}}}")).expect("regex")
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        // Quarters are exact in binary and print shortly, so the float survives text.
        any::<i32>().prop_map(|n| Value::from(f64::from(n) / 4.0)),
        text(12).prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            proptest::collection::btree_map(text(8), inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn payload() -> impl Strategy<Value = Map<String, Value>> {
    proptest::collection::btree_map(text(10), json_value(), 0..6)
        .prop_map(|m| m.into_iter().collect())
}

fn string_map() -> impl Strategy<Value = BTreeMap<String, String>> {
    proptest::collection::btree_map(text(8), text(8), 0..4)
}

fn action() -> impl Strategy<Value = ActionDescriptor> {
    (text(20), text(20), proptest::option::of(string_map())).prop_map(
        |(description, produces, outcome_shape)| ActionDescriptor {
            description,
            produces,
            outcome_shape,
        },
    )
}

/// Microsecond instants in years 0..=9999: the wire format's precision and range.
fn timestamp() -> impl Strategy<Value = OffsetDateTime> {
    (-62_167_219_200i64..253_402_300_799, 0i64..1_000_000).prop_map(|(secs, micros)| {
        OffsetDateTime::from_unix_timestamp_nanos(
            i128::from(secs) * 1_000_000_000 + i128::from(micros) * 1_000,
        )
        .expect("in range")
    })
}

fn level() -> impl Strategy<Value = EventLevel> {
    proptest::sample::select(EventLevel::ALL.to_vec())
}

fn visibility() -> impl Strategy<Value = EventVisibility> {
    proptest::sample::select(vec![
        EventVisibility::Local,
        EventVisibility::Cluster,
        EventVisibility::Public,
    ])
}

prop_compose! {
    fn envelope()(
        id in "[0-9a-zA-Z-]{1,40}",
        event in "[a-z0-9_-]{1,12}(\\.[a-z0-9_-]{1,12}){1,4}",
        version in 1u32..,
        source in non_empty_text(40).prop_filter("source must not be blank", |s| !s.trim().is_empty()),
        timestamp in timestamp(),
        idempotency_key in proptest::option::of(non_empty_text(30)),
        level in level(),
        domain in text(20),
        entity in proptest::option::of(non_empty_text(30)),
        description in text(60),
        visibility in visibility(),
        payload in payload(),
        actions in proptest::option::of(proptest::collection::btree_map(text(10), action(), 0..3)),
        terminal_when in proptest::option::of(non_empty_text(30)),
        resolution_shape in proptest::option::of(string_map()),
        correlation_id in proptest::option::of(non_empty_text(36)),
        causation_id in proptest::option::of(non_empty_text(36)),
    ) -> EventEnvelope {
        EventEnvelope {
            id, event, version, source, timestamp, idempotency_key, level, domain, entity,
            description, visibility, payload, actions, terminal_when, resolution_shape,
            correlation_id, causation_id,
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn json_round_trip(event in envelope()) {
        prop_assert_eq!(event.validate(), Ok(()));
        let text = serde_json::to_string(&event).expect("serialise");
        let back: EventEnvelope = serde_json::from_str(&text).expect("deserialise");
        prop_assert_eq!(back, event);
    }

    #[test]
    fn stream_fields_round_trip(event in envelope()) {
        let fields = to_stream_fields(&event);
        let back = from_stream_fields(fields.iter().map(|(k, v)| (*k, v.as_str())), "1-0")
            .expect("decodes");
        prop_assert_eq!(back, event);
    }

    #[test]
    fn stream_field_order_does_not_matter(event in envelope(), seed in any::<u64>()) {
        let mut fields = to_stream_fields(&event);
        // A cheap deterministic shuffle: rotate by the seed.
        let len = fields.len();
        fields.rotate_left((seed % len as u64) as usize);
        let back = from_stream_fields(fields, "1-0").expect("decodes");
        prop_assert_eq!(back, event);
    }

    #[test]
    fn decoder_never_panics_on_arbitrary_fields(
        fields in proptest::collection::vec(
            (proptest::sample::select(vec![
                "id", "event", "version", "source", "timestamp", "level", "domain", "visibility",
                "description", "payload", "actions", "resolution_shape", "entity", "other",
            ]), text(30)),
            0..14,
        ),
        entry_id in text(20),
    ) {
        // Ok or a typed error; an error always names a field it is about.
        if let Err(err) = from_stream_fields(fields, &entry_id) {
            prop_assert!(err.to_string().contains(err.field()), "{}", err);
        }
    }
}
