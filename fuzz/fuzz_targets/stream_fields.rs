//! Fuzz target `stream_fields`: see `check_stream_fields` in `src/properties.rs` for the property.
#![no_main]

#[path = "../src/properties.rs"]
#[allow(dead_code)] // each target uses one of the checks
mod properties;

libfuzzer_sys::fuzz_target!(|data: &[u8]| properties::check_stream_fields(data));
