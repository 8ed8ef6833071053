//! Migrations from an empty file and from the version-1 fixture; newer files are refused.

use std::path::PathBuf;

use events_storage::{AgentStatus, EventDb, EventQuery, LATEST_SCHEMA_VERSION, StorageError};

fn fixture() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/schema_v1.db")
}

fn user_version(path: &std::path::Path) -> i64 {
    let conn = rusqlite::Connection::open(path).unwrap();
    conn.query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap()
}

#[tokio::test]
async fn empty_file_is_created_with_parents_at_latest_version() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nested/deeper/events.db");
    let db = EventDb::open(&path).await.unwrap();
    let epoch = db.epoch().to_owned();
    assert_eq!(epoch.len(), 36, "{epoch}");
    assert_eq!(
        db.read(|r| r.meta("epoch")).await.unwrap().as_deref(),
        Some(epoch.as_str())
    );
    drop(db);
    assert_eq!(user_version(&path), LATEST_SCHEMA_VERSION);
    let mode: String = rusqlite::Connection::open(&path)
        .unwrap()
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
    let again = EventDb::open(&path).await.unwrap();
    assert_eq!(
        again.epoch(),
        epoch,
        "the epoch is the file's identity and survives reopening"
    );
    let other = EventDb::open_in_memory().await.unwrap();
    assert_ne!(other.epoch(), epoch, "a recreated store has a new epoch");
}

#[tokio::test]
async fn version_1_fixture_upgrades_in_place_keeping_data() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("events.db");
    std::fs::copy(fixture(), &path).unwrap();
    assert_eq!(user_version(&path), 1);
    let db = EventDb::open(&path).await.unwrap();
    assert_eq!(db.epoch(), "01890a5d-ac96-774b-bcce-b302099a8057");
    let n = db
        .get_notification(1)
        .await
        .unwrap()
        .expect("fixture notification survives");
    assert_eq!(n.description, "build 41 passed");
    assert_eq!(n.group_value.as_deref(), Some("41"));
    assert!(n.actionable);
    let events = db.query_events(EventQuery::default()).await.unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].event.idempotency_key.as_deref(), Some("build:41"));
    assert!(
        db.read(|r| r.is_processed("events:stream", "1767323045000-0"))
            .await
            .unwrap()
    );
    // the upgraded file works: state machine and the version-2 tables
    assert_eq!(
        db.claim(1, "a")
            .await
            .unwrap()
            .notification()
            .map(|n| n.agent_status),
        Some(AgentStatus::Claimed)
    );
    let webhooks: i64 = db
        .read(|r| {
            Ok(r.connection()
                .query_row("SELECT count(*) FROM webhooks", [], |row| row.get(0))?)
        })
        .await
        .unwrap();
    assert_eq!(webhooks, 0);
    // version 4: the event log's received_at index is gone (retention walks seq instead)
    let received_at_index: i64 = db
        .read(|r| {
            Ok(r.connection().query_row(
                "SELECT count(*) FROM sqlite_master WHERE name = 'idx_events_received_at'",
                [],
                |row| row.get(0),
            )?)
        })
        .await
        .unwrap();
    assert_eq!(received_at_index, 0);
    drop(db);
    assert_eq!(user_version(&path), LATEST_SCHEMA_VERSION);
}

#[tokio::test]
async fn file_from_a_newer_build_is_refused_with_a_clear_message() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("events.db");
    {
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.pragma_update(None, "user_version", LATEST_SCHEMA_VERSION + 1)
            .unwrap();
    }
    let err = EventDb::open(&path).await.unwrap_err();
    let message = err.to_string();
    assert!(
        matches!(err, StorageError::NewerSchema { found, latest, .. } if found == LATEST_SCHEMA_VERSION + 1 && latest == LATEST_SCHEMA_VERSION),
        "{message}"
    );
    assert!(message.contains(&path.display().to_string()), "{message}");
    assert_eq!(
        user_version(&path),
        LATEST_SCHEMA_VERSION + 1,
        "the file is left alone"
    );
}

#[tokio::test]
async fn unopenable_path_names_the_file() {
    let dir = tempfile::tempdir().unwrap();
    // A directory where the database file should be.
    let path = dir.path().join("events.db");
    std::fs::create_dir(&path).unwrap();
    let err = EventDb::open(&path).await.unwrap_err();
    assert!(err.to_string().contains("events.db"), "{err}");
}
