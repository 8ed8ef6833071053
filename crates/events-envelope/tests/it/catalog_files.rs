//! Catalog TOML files (feature `toml`): good files, errors naming file and line, duplicates.

use std::path::Path;

use events_envelope::{CatalogError, EventCatalog, EventLevel, EventVisibility};

const ORDERS: &str = r#"
[[schema]]
event_type = "acme.order.placed"
description = "An order was placed"
default_level = 2                 # or "workflow"
domain = "acme"
default_visibility = "local"
idempotency_fields = ["order_id"]
actionable = true
[schema.lifecycle]                # absent = not notification-worthy
creates = true
group_key = "order_id"
meaningful_fields = ["status"]
silent_fields = ["progress"]

[[schema]]
event_type = "acme.order.shipped"
description = "An order was shipped"
default_level = "business"
domain = "acme"
"#;

fn write(dir: &Path, name: &str, text: &str) {
    std::fs::write(dir.join(name), text).expect("write catalog file");
}

#[test]
fn good_file_loads_in_the_brief_shape() {
    let dir = tempfile::tempdir().expect("tempdir");
    write(dir.path(), "orders.toml", ORDERS);
    let mut catalog = EventCatalog::builtin();
    let before = catalog.len();
    assert_eq!(catalog.load_dir(dir.path()).expect("loads"), 2);
    assert_eq!(catalog.len(), before + 2);

    let placed = catalog.get("acme.order.placed").expect("placed");
    assert_eq!(placed.default_level, EventLevel::Workflow);
    assert_eq!(placed.default_visibility, EventVisibility::Local);
    assert_eq!(placed.idempotency_fields, ["order_id"]);
    assert!(placed.actionable);
    let lifecycle = placed.lifecycle.as_ref().expect("lifecycle");
    assert!(lifecycle.creates && !lifecycle.updates && !lifecycle.resolves);
    assert_eq!(lifecycle.group_key.as_deref(), Some("order_id"));
    assert_eq!(lifecycle.meaningful_fields, ["status"]);
    assert_eq!(lifecycle.silent_fields, ["progress"]);

    let shipped = catalog.get("acme.order.shipped").expect("shipped");
    assert_eq!(shipped.default_level, EventLevel::Business);
    assert_eq!(shipped.lifecycle, None);
    assert!(!shipped.actionable);
}

#[test]
fn only_toml_files_directly_in_the_dir_are_read_in_name_order() {
    let dir = tempfile::tempdir().expect("tempdir");
    write(
        dir.path(),
        "b.toml",
        "[[schema]]\nevent_type = \"b.one\"\ndescription = \"\"\ndefault_level = 0\ndomain = \"b\"\n",
    );
    write(
        dir.path(),
        "a.toml",
        "[[schema]]\nevent_type = \"a.one\"\ndescription = \"\"\ndefault_level = 0\ndomain = \"a\"\n",
    );
    write(dir.path(), "empty.toml", "# nothing yet\n");
    write(dir.path(), "notes.txt", "not a catalog [[[");
    write(dir.path(), "backup.toml.bak", "not a catalog [[[");
    std::fs::create_dir(dir.path().join("nested")).expect("mkdir");
    write(&dir.path().join("nested"), "c.toml", "not a catalog [[[");
    let mut catalog = EventCatalog::new();
    assert_eq!(catalog.load_dir(dir.path()).expect("loads"), 2);
    let names: Vec<_> = catalog
        .list_all()
        .iter()
        .map(|s| s.event_type.clone())
        .collect();
    assert_eq!(names, ["a.one", "b.one"]);
}

#[test]
fn broken_file_names_file_and_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    write(dir.path(), "a-good.toml", ORDERS);
    let broken = "[[schema]]\nevent_type = \"acme.x\"\ndescription = \"x\"\ndefault_level = \n";
    write(dir.path(), "b-broken.toml", broken);
    let mut catalog = EventCatalog::new();
    let err = catalog.load_dir(dir.path()).expect_err("broken");
    match &err {
        CatalogError::Toml { file, line, .. } => {
            assert!(file.ends_with("b-broken.toml"), "{}", file.display());
            assert_eq!(*line, 4);
        }
        other => panic!("unexpected {other:?}"),
    }
    let message = err.to_string();
    assert!(message.contains("b-broken.toml:4: "), "{message}");
    assert!(
        catalog.is_empty(),
        "a failed load leaves the catalog unchanged"
    );
}

#[test]
fn unknown_key_is_refused_with_its_line() {
    let text = "[[schema]]\nevent_type = \"acme.x\"\ndescription = \"x\"\ndefault_level = 1\ndomain = \"acme\"\nidempotency_field = [\"id\"]\n";
    let mut catalog = EventCatalog::new();
    let err = catalog
        .load_toml_str(text, "acme.toml")
        .expect_err("unknown key");
    match &err {
        CatalogError::Toml { line, message, .. } => {
            assert_eq!(*line, 6, "{message}");
            assert!(message.contains("idempotency_field"), "{message}");
        }
        other => panic!("unexpected {other:?}"),
    }
    assert!(err.to_string().starts_with("acme.toml:6: "), "{err}");

    let lifecycle_typo = "[[schema]]\nevent_type = \"acme.x\"\ndescription = \"x\"\ndefault_level = 1\ndomain = \"acme\"\n[schema.lifecycle]\ncreate = true\n";
    let err = catalog
        .load_toml_str(lifecycle_typo, "l.toml")
        .expect_err("lifecycle typo");
    assert!(err.to_string().starts_with("l.toml:7: "), "{err}");

    let top_level_typo = "[[schemas]]\nevent_type = \"acme.x\"\n";
    let err = catalog
        .load_toml_str(top_level_typo, "t.toml")
        .expect_err("top-level typo");
    assert!(err.to_string().starts_with("t.toml:1: "), "{err}");
}

#[test]
fn bad_values_name_their_line() {
    let text = "[[schema]]\nevent_type = \"acme.x\"\ndescription = \"x\"\ndefault_level = 7\ndomain = \"acme\"\n";
    let err = EventCatalog::new()
        .load_toml_str(text, "lv.toml")
        .expect_err("level 7");
    assert!(err.to_string().starts_with("lv.toml:4: "), "{err}");
    assert!(err.to_string().contains("level"), "{err}");

    let missing = "[[schema]]\nevent_type = \"acme.x\"\ndefault_level = 1\ndomain = \"acme\"\n";
    let err = EventCatalog::new()
        .load_toml_str(missing, "m.toml")
        .expect_err("no description");
    assert!(err.to_string().contains("description"), "{err}");
}

#[test]
fn invalid_event_type_names_file_and_schema_line() {
    let text = "[[schema]]\nevent_type = \"acme.ok\"\ndescription = \"\"\ndefault_level = 1\ndomain = \"a\"\n\n[[schema]]\nevent_type = \"Acme Bad\"\ndescription = \"\"\ndefault_level = 1\ndomain = \"a\"\n";
    let mut catalog = EventCatalog::new();
    let err = catalog
        .load_toml_str(text, "bad.toml")
        .expect_err("bad name");
    match &err {
        CatalogError::InFile { file, line, source } => {
            assert_eq!(file, Path::new("bad.toml"));
            assert_eq!(*line, 7, "the line of the `[[schema]]` header");
            assert!(
                matches!(**source, CatalogError::InvalidSchema { .. }),
                "{source:?}"
            );
        }
        other => panic!("unexpected {other:?}"),
    }
    assert!(err.to_string().contains("event_type"), "{err}");
    assert!(
        catalog.is_empty(),
        "the valid first schema was not kept either"
    );
}

#[test]
fn duplicates_across_files_name_both_places() {
    let dir = tempfile::tempdir().expect("tempdir");
    write(dir.path(), "1-orders.toml", ORDERS);
    write(
        dir.path(),
        "2-again.toml",
        "# copy\n[[schema]]\nevent_type = \"acme.order.shipped\"\ndescription = \"\"\ndefault_level = 1\ndomain = \"acme\"\n",
    );
    let mut catalog = EventCatalog::new();
    let err = catalog.load_dir(dir.path()).expect_err("duplicate");
    let message = err.to_string();
    assert!(message.contains("2-again.toml:"), "{message}");
    assert!(
        message.contains("duplicate event type `acme.order.shipped`"),
        "{message}"
    );
    assert!(message.contains("2-again.toml:2: "), "{message}");
    assert!(
        message.contains("1-orders.toml:16"),
        "names where the first came from: {message}"
    );
    assert!(catalog.is_empty());

    // A file may not redefine a built-in either.
    let mut catalog = EventCatalog::builtin();
    let err = catalog
        .load_toml_str(
            "[[schema]]\nevent_type = \"system.worker.crashed\"\ndescription = \"\"\ndefault_level = 1\ndomain = \"system\"\n",
            "override.toml",
        )
        .expect_err("duplicate of built-in");
    assert!(
        err.to_string().contains("already registered from built-in"),
        "{err}"
    );
}

#[test]
fn missing_directory_is_an_io_error_naming_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let missing = dir.path().join("nope");
    let err = EventCatalog::new()
        .load_dir(&missing)
        .expect_err("missing dir");
    assert!(matches!(err, CatalogError::Io { .. }), "{err:?}");
    assert!(err.to_string().contains("nope"), "{err}");
}
