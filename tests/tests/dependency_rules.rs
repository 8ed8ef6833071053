//! The crate-boundary rules of brief §2, checked against the real dependency graph with
//! `cargo tree` so that a stray feature or dependency fails CI instead of a code review:
//!
//! - `events-producer` (what applications link) never pulls storage, the pipeline, SQLite,
//!   axum or an HTTP *server*; with default features it pulls no HTTP stack at all.
//! - `events-envelope` does no I/O: no tokio, and only its documented direct dependencies.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

/// Packages reachable through normal (non-dev, non-build) edges, each with the union of
/// the features enabled on it.
struct Tree {
    packages: BTreeMap<String, BTreeSet<String>>,
    listing: String,
}

impl Tree {
    fn contains(&self, name: &str) -> bool {
        self.packages.contains_key(name)
    }

    fn features(&self, name: &str) -> Option<&BTreeSet<String>> {
        self.packages.get(name)
    }

    fn assert_absent(&self, what: &str, forbidden: &[&str]) {
        let found: Vec<&str> = forbidden
            .iter()
            .copied()
            .filter(|name| self.contains(name))
            .collect();
        assert!(
            found.is_empty(),
            "{what} must not depend on {found:?}; `cargo tree` shows:\n{}",
            self.listing
        );
    }
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ lives inside the workspace")
        .to_path_buf()
}

/// `cargo tree -p PACKAGE -e normal` with `extra` arguments, parsed.
fn cargo_tree(package: &str, extra: &[&str]) -> Tree {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let output = Command::new(&cargo)
        .current_dir(workspace_root())
        .args(["tree", "-p", package, "-e", "normal", "--prefix", "none"])
        .args(["--format", "{p} {f}"])
        .args(extra)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cargo:?} tree: {e}"));
    let listing = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "cargo tree -p {package} {extra:?} failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );

    let mut packages: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for line in listing.lines() {
        // `name vX.Y.Z [(path)] [(proc-macro)] [feat1,feat2] [(*)]`
        let mut tokens = line.split_whitespace();
        let Some(name) = tokens.next() else { continue };
        let features = packages.entry(name.to_owned()).or_default();
        for token in tokens.skip(1).filter(|t| !t.starts_with('(')) {
            features.extend(token.split(',').map(str::to_owned));
        }
    }
    assert!(
        packages.contains_key(package),
        "cargo tree -p {package} did not list {package} itself:\n{listing}"
    );
    Tree { packages, listing }
}

/// What the producer must never bring into an application, whatever its features.
const NEVER_IN_PRODUCER: &[&str] = &[
    "events-storage",
    "events-pipeline",
    "events-processor",
    "events-delivery",
    "events-api",
    "rusqlite",
    "libsqlite3-sys",
    "deadpool",
    "deadpool-sqlite",
    "axum",
    "tokio-tungstenite",
];

#[test]
fn producer_with_default_features_pulls_no_storage_pipeline_or_http() {
    let tree = cargo_tree("events-producer", &[]);
    tree.assert_absent("events-producer (default features)", NEVER_IN_PRODUCER);
    // The HTTP client producer is opt-in (feature `http`): by default there is no HTTP at all.
    tree.assert_absent(
        "events-producer (default features)",
        &["hyper", "reqwest", "hyper-util"],
    );
    assert!(tree.contains("events-envelope"), "{}", tree.listing);
}

#[test]
fn producer_with_all_features_still_has_no_http_server() {
    let tree = cargo_tree("events-producer", &["--all-features"]);
    tree.assert_absent("events-producer (all features)", NEVER_IN_PRODUCER);
    // `http` brings hyper as reqwest's *client*; the server half must stay out.
    if let Some(features) = tree.features("hyper") {
        assert!(
            !features.contains("server"),
            "events-producer enables hyper's `server` feature ({features:?}):\n{}",
            tree.listing
        );
    }
}

#[test]
fn envelope_does_no_io() {
    for features in [&[][..], &["--all-features"][..]] {
        let tree = cargo_tree("events-envelope", features);
        tree.assert_absent(
            &format!("events-envelope ({features:?})"),
            &["tokio", "mio", "fred", "reqwest", "hyper", "rusqlite"],
        );
    }
}

#[test]
fn envelope_direct_dependencies_are_the_documented_ones() {
    // Brief §2: serde, serde_json, time, uuid, thiserror; plus `toml` for catalog files.
    let allowed = ["serde", "serde_json", "time", "uuid", "thiserror", "toml"];
    let tree = cargo_tree("events-envelope", &["--all-features", "--depth", "1"]);
    let unexpected: Vec<&String> = tree
        .packages
        .keys()
        .filter(|name| *name != "events-envelope" && !allowed.contains(&name.as_str()))
        .collect();
    assert!(
        unexpected.is_empty(),
        "events-envelope has undocumented dependencies {unexpected:?} (brief §2 allows {allowed:?})"
    );
}
