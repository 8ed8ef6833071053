//! Fuzzing in the normal test suite: the committed inputs under `tests/fixtures/fuzz/<target>/`
//! (crashes the fuzzers found, minimised, and a few interesting corpus entries) are replayed
//! through the same property checks the cargo-fuzz targets run — the checks are this very
//! file's `properties` module, `fuzz/src/properties.rs`, compiled into both. So a property
//! that breaks shows up in CI on stable, without nightly or libFuzzer. How to fuzz, and what
//! the runs found: `docs/reliability.md`. (Needs feature `toml`, as the catalog check does.)

#[path = "../../../../fuzz/src/properties.rs"]
mod properties;

use std::path::PathBuf;

/// Every committed input of `target`, sorted by name so failures are reproducible.
fn inputs(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/fuzz")
        .join(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|err| panic!("cannot read {}: {err}", dir.display()))
        .map(|entry| entry.expect("directory entry").path())
        .collect();
    files.sort();
    assert!(
        !files.is_empty(),
        "no regression inputs in {}",
        dir.display()
    );
    files
        .into_iter()
        .map(|path| {
            let data = std::fs::read(&path).expect("regression input readable");
            (path, data)
        })
        .collect()
}

/// Runs `check` on every input of `target`, naming the file of the first failure.
fn replay(target: &str, check: fn(&[u8])) {
    for (path, data) in inputs(target) {
        let outcome = std::panic::catch_unwind(|| check(&data));
        if let Err(panic) = outcome {
            let message = panic
                .downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| panic.downcast_ref::<&str>().copied())
                .unwrap_or("non-string panic");
            panic!("{} fails: {message}", path.display());
        }
    }
}

#[test]
fn stream_fields_regression_inputs_hold_the_properties() {
    replay("stream_fields", properties::check_stream_fields);
}

#[test]
fn envelope_json_regression_inputs_hold_the_properties() {
    replay("envelope_json", properties::check_envelope_json);
}

#[test]
fn catalog_toml_regression_inputs_hold_the_properties() {
    replay("catalog_toml", properties::check_catalog_toml);
}

#[test]
fn glob_regression_inputs_hold_the_properties() {
    replay("glob", properties::check_glob);
}

#[test]
fn stream_input_format_splits_on_nul() {
    assert_eq!(
        properties::stream_pairs(b"event\0a.b\0source"),
        vec![
            ("event".to_owned(), "a.b".to_owned()),
            ("source".to_owned(), String::new())
        ]
    );
}

#[test]
fn reference_glob_is_the_textbook_definition() {
    let chars = |s: &str| s.chars().collect::<Vec<_>>();
    assert!(properties::reference_glob(
        &chars("job.*"),
        &chars("job.a.b")
    ));
    assert!(properties::reference_glob(&chars("*"), &chars("")));
    assert!(!properties::reference_glob(&chars("job.*"), &chars("job")));
    assert!(!properties::reference_glob(&chars("a*c"), &chars("abd")));
}

// ---- bugs the fuzz targets found (inputs also under tests/fixtures/fuzz/) ----

/// `stream_fields`: an offset that carries the instant past year 9999 made the decoder panic
/// in `time` ("local datetime out of valid range") — a poison entry that would crash the
/// processor on every redelivery. Now it is an ordinary decode error (→ dead letter).
#[test]
fn stream_timestamp_offset_past_year_9999_is_refused_not_panicking() {
    let fields = [
        ("event", "a.b"),
        ("source", "s"),
        ("timestamp", "9999-12-31T23:59:59-01:00"),
    ];
    let err = events_envelope::from_stream_fields(fields, "1-0").expect_err("out of range");
    assert_eq!(err.field(), "timestamp", "{err}");
}

/// `envelope_json`: timestamps whose year is in range in their own offset but not in UTC
/// passed `validate()`, then `to_stream_fields` panicked (year 10000) or wrote `-001-...`,
/// which no decoder reads back (an accepted event that could only be dead-lettered).
#[test]
fn envelope_timestamp_leaving_the_year_range_in_utc_is_invalid() {
    for (json, own_offset) in [
        (
            r#"{"event":"a.b","source":"s","timestamp":"0000-01-01T00:00:00+01:00"}"#,
            "0000-01-01T00:00:00.000000+01:00",
        ),
        (
            r#"{"event":"a.b","source":"s","timestamp":"9999-12-31T23:59:59-01:00"}"#,
            "9999-12-31T23:59:59.000000-01:00",
        ),
    ] {
        let envelope: events_envelope::EventEnvelope =
            serde_json::from_str(json).expect("deserialises");
        let err = envelope.validate().expect_err(json);
        assert_eq!(err.field, "timestamp", "{json}: {err}");
        // Encoding an unvalidated envelope stays panic-free and exact.
        assert_eq!(
            events_envelope::format_timestamp(envelope.timestamp),
            own_offset
        );
    }
}

#[test]
fn timestamps_at_the_edges_of_the_range_round_trip() {
    for (json, wire) in [
        (
            r#"{"event":"a.b","source":"s","timestamp":"0000-01-01T01:00:00+01:00"}"#,
            "0000-01-01T00:00:00.000000Z",
        ),
        (
            r#"{"event":"a.b","source":"s","timestamp":"9999-12-31T22:59:59.999999-01:00"}"#,
            "9999-12-31T23:59:59.999999Z",
        ),
    ] {
        properties::check_envelope_json(json.as_bytes());
        let envelope: events_envelope::EventEnvelope =
            serde_json::from_str(json).expect("deserialises");
        assert_eq!(events_envelope::format_timestamp(envelope.timestamp), wire);
    }
}

/// `envelope_json`: serde_json's default float parsing is not correctly rounded, so an integer
/// too large for u64 (parsed as a float) came back one ULP different after each JSON hop
/// (HTTP → stream → store → API): payloads drifted, and so would idempotency keys built from
/// them. The workspace enables serde_json's `float_roundtrip`; this guards it.
#[test]
fn payload_floats_survive_json_and_stream_round_trips() {
    for number in [
        "137111111111111111111111111111111111111",
        "1.3711111111111109e38",
        "2.2250738585072011e-308",
        "0.1",
    ] {
        let json = format!(r#"{{"event":"a.b","source":"s","payload":{{"n":{number}}}}}"#);
        properties::check_envelope_json(json.as_bytes());
        let envelope: events_envelope::EventEnvelope =
            serde_json::from_str(&json).expect("deserialises");
        let exact: f64 = number.parse().expect("a float literal");
        assert_eq!(envelope.payload["n"].as_f64(), Some(exact), "{number}");
    }
}
