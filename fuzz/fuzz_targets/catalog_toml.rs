//! Fuzz target `catalog_toml`: see `check_catalog_toml` in `src/properties.rs` for the property.
#![no_main]

#[path = "../src/properties.rs"]
#[allow(dead_code)] // each target uses one of the checks
mod properties;

libfuzzer_sys::fuzz_target!(|data: &[u8]| properties::check_catalog_toml(data));
