//! The properties the fuzz targets check, one function per target, over the raw fuzzer input.
//!
//! This file is compiled twice: into the cargo-fuzz targets of `fuzz/` (nightly, libFuzzer) and,
//! through `#[path]`, into the integration tests of `events-envelope`
//! (`tests/it/fuzz_regressions.rs`), which replay committed inputs through the very same
//! checks on stable in CI. So it depends only on what both have: `events-envelope`,
//! `serde_json` and `time`. A property is violated by panicking (that is how libFuzzer learns
//! of it); every check says which property failed.
//!
//! Input formats (also what the regression files under
//! `crates/events-envelope/tests/fixtures/fuzz/<target>/` contain):
//! - `stream_fields`: UTF-8 (lossy) text of `key NUL value NUL key NUL value ...`; a
//!   trailing key without value gets `""`.
//! - `envelope_json`: raw bytes handed to `serde_json::from_slice`.
//! - `catalog_toml`: UTF-8 text of a catalog file (non-UTF-8 inputs are skipped).
//! - `glob`: UTF-8 `pattern NUL text` (no NUL: pattern = text = the whole input).

use events_envelope::{
    CatalogError, EventCatalog, EventEnvelope, from_stream_fields, glob_match, to_stream_fields,
};
use time::OffsetDateTime;

/// The entry id the decoder derives missing event ids from; any fixed value will do.
const ENTRY_ID: &str = "1700000000000-0";

/// Splits a `stream_fields` input into `(key, value)` pairs.
pub(crate) fn stream_pairs(data: &[u8]) -> Vec<(String, String)> {
    let text = String::from_utf8_lossy(data);
    let parts: Vec<&str> = text.split('\0').collect();
    parts
        .chunks(2)
        .map(|pair| {
            (
                pair[0].to_owned(),
                pair.get(1).copied().unwrap_or("").to_owned(),
            )
        })
        .collect()
}

/// `stream_fields`: the tolerant decoder never panics; what it accepts is valid, re-encodes
/// canonically and decodes again to the same envelope (timestamps keep microseconds on the
/// wire); what it refuses names a known field.
pub(crate) fn check_stream_fields(data: &[u8]) {
    let pairs = stream_pairs(data);
    let decoded = match from_stream_fields(pairs.iter().map(|(k, v)| (k, v)), ENTRY_ID) {
        Ok(envelope) => envelope,
        Err(err) => {
            assert!(
                KNOWN_FIELDS.contains(&err.field()),
                "decode error names unknown field {:?}: {err}",
                err.field()
            );
            assert!(
                err.to_string().contains(err.field()),
                "decode error text does not name its field: {err}"
            );
            return;
        }
    };
    // Decoding is deterministic, including the id derived from the entry id.
    let again = from_stream_fields(pairs.iter().map(|(k, v)| (k, v)), ENTRY_ID)
        .expect("decoding the same fields twice gives the same result");
    assert_eq!(again, decoded, "decoding is not deterministic");
    decoded
        .validate()
        .expect("a decoded envelope passes validate()");
    assert_wire_round_trip(&decoded);
    assert_json_round_trip(&decoded);
}

/// `envelope_json`: any bytes → `EventEnvelope` via serde never panics; a valid envelope survives
/// JSON (exactly) and the stream wire format (to the microsecond); a refusal names its field.
pub(crate) fn check_envelope_json(data: &[u8]) {
    let Ok(envelope) = serde_json::from_slice::<EventEnvelope>(data) else {
        return;
    };
    match envelope.validate() {
        Ok(()) => {
            assert_json_round_trip(&envelope);
            assert_wire_round_trip(&envelope);
        }
        Err(err) => {
            assert!(
                KNOWN_FIELDS.contains(&err.field),
                "validation error names unknown field {:?}: {err}",
                err.field
            );
            assert!(!err.message.is_empty(), "validation error without message");
        }
    }
}

/// `catalog_toml`: loading never panics; it is all or nothing; an error carries a 1-based line
/// inside the document; every schema it accepts passes `EventSchema::validate`.
pub(crate) fn check_catalog_toml(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    // Against an empty catalog and against the built-ins (duplicates are an error path too).
    for mut catalog in [EventCatalog::new(), EventCatalog::builtin()] {
        let before: Vec<_> = catalog.list_all().into_iter().cloned().collect();
        match catalog.load_toml_str(text, "fuzz.toml") {
            Ok(added) => {
                assert_eq!(
                    catalog.len(),
                    before.len() + added,
                    "load_toml_str reported {added} schemas added"
                );
                for schema in catalog.list_all() {
                    schema
                        .validate()
                        .expect("a schema accepted from TOML passes validate()");
                }
            }
            Err(err) => {
                let last_line = text.matches('\n').count() + 1;
                let line = match &err {
                    CatalogError::Toml { line, .. } | CatalogError::InFile { line, .. } => *line,
                    other => panic!("load_toml_str gave an error without a line: {other:?}"),
                };
                assert!(
                    (1..=last_line).contains(&line),
                    "error line {line} outside 1..={last_line}: {err}"
                );
                assert!(
                    err.to_string().starts_with(&format!("fuzz.toml:{line}: ")),
                    "error does not start with file:line: {err}"
                );
                let after: Vec<_> = catalog.list_all().into_iter().cloned().collect();
                assert_eq!(after, before, "a failed load changed the catalog");
            }
        }
    }
}

/// Longest pattern/text (in characters) checked against the quadratic reference matcher.
const GLOB_REFERENCE_MAX: usize = 300;

/// `glob`: `glob_match` agrees with an obviously-correct per-character dynamic-programming
/// matcher (which also checks that matching bytes equals matching characters).
pub(crate) fn check_glob(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (pattern, subject) = text.split_once('\0').unwrap_or((text, text));
    let got = glob_match(pattern, subject);
    let pattern: Vec<char> = pattern.chars().collect();
    let subject: Vec<char> = subject.chars().collect();
    if pattern.len() <= GLOB_REFERENCE_MAX && subject.len() <= GLOB_REFERENCE_MAX {
        assert_eq!(
            got,
            reference_glob(&pattern, &subject),
            "glob_match disagrees with the reference"
        );
    }
}

/// `matches[i][j]`: does `pattern[i..]` match `text[j..]`? Filled from the end; O(n·m).
pub(crate) fn reference_glob(pattern: &[char], text: &[char]) -> bool {
    let (n, m) = (pattern.len(), text.len());
    let mut matches = vec![vec![false; m + 1]; n + 1];
    matches[n][m] = true;
    for i in (0..n).rev() {
        for j in (0..=m).rev() {
            matches[i][j] = if pattern[i] == '*' {
                // The star matches nothing, or one more character.
                matches[i + 1][j] || (j < m && matches[i][j + 1])
            } else {
                j < m && pattern[i] == text[j] && matches[i + 1][j + 1]
            };
        }
    }
    matches[0][0]
}

/// Every field name an envelope error may name (brief §3).
const KNOWN_FIELDS: [&str; 17] = [
    "id",
    "event",
    "version",
    "source",
    "timestamp",
    "idempotency_key",
    "level",
    "domain",
    "entity",
    "description",
    "visibility",
    "payload",
    "actions",
    "terminal_when",
    "resolution_shape",
    "correlation_id",
    "causation_id",
];

/// Stream wire round trip of a valid envelope: decode(encode(e)) = e with the timestamp cut to
/// microseconds, and the encoding of that is a fixed point.
fn assert_wire_round_trip(envelope: &EventEnvelope) {
    let fields = to_stream_fields(envelope);
    let decoded = from_stream_fields(fields.iter().map(|(k, v)| (*k, v.as_str())), ENTRY_ID)
        .unwrap_or_else(|err| panic!("re-decoding {fields:?} failed: {err}"));
    let mut expected = envelope.clone();
    expected.timestamp = to_micros(envelope.timestamp);
    assert_eq!(decoded, expected, "stream round trip changed the envelope");
    assert_eq!(
        to_stream_fields(&decoded),
        fields,
        "stream encoding is not canonical"
    );
}

/// JSON round trip of a valid envelope is exact.
fn assert_json_round_trip(envelope: &EventEnvelope) {
    let json = serde_json::to_vec(envelope).expect("a valid envelope serialises to JSON");
    let back: EventEnvelope =
        serde_json::from_slice(&json).expect("serialised envelope deserialises");
    assert_eq!(&back, envelope, "JSON round trip changed the envelope");
    back.validate()
        .expect("JSON round trip of a valid envelope stays valid");
}

fn to_micros(timestamp: OffsetDateTime) -> OffsetDateTime {
    let nanos = timestamp.nanosecond();
    timestamp
        .replace_nanosecond(nanos - nanos % 1_000)
        .expect("a truncated nanosecond is in range")
}
