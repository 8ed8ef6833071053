//! Integration tests of `events-envelope`, one binary (see house style).

#[cfg(feature = "toml")]
mod catalog_files;
#[cfg(feature = "toml")]
mod fuzz_regressions;
mod python_fixtures;
mod round_trip;
