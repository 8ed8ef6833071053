//! Versioned schema migrations on `PRAGMA user_version`.
//!
//! [`MIGRATIONS`] is an ordered list; entry *i* takes the file from version *i* to *i + 1*.
//! Each one runs in its own `BEGIN IMMEDIATE` transaction together with the `user_version`
//! bump, so a crash mid-migration leaves the file at the previous version, never half-way.
//! To extend the schema, append a file to the list; never edit a released entry (files in the
//! field are already at that version, and `tests/fixtures/schema_v1.db` pins version 1).
//!
//! Foreign keys are off while migrations run, as SQLite's procedure for rebuilding a table
//! asks (lang_altertable.html §7): with them on, dropping a referenced table runs the
//! references' `ON DELETE` actions. Each migration instead ends with `PRAGMA
//! foreign_key_check`, and a violation rolls it back.

use std::path::Path;

use rusqlite::{Connection, OptionalExtension, TransactionBehavior};

use crate::{Result, StorageError};

/// Forward-only migrations, oldest first.
const MIGRATIONS: &[&str] = &[
    include_str!("migrations/0001_core.sql"),
    include_str!("migrations/0002_delivery.sql"),
    include_str!("migrations/0003_delivery_outbox.sql"),
    include_str!("migrations/0004_event_log_retention_by_seq.sql"),
    include_str!("migrations/0005_notifications_newest_first_index.sql"),
    include_str!("migrations/0006_notifications_drop_domain_index.sql"),
    include_str!("migrations/0007_notifications_agent_status_check_without_in_list.sql"),
];

/// The schema version this build creates and understands.
pub const LATEST_SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

/// Reads `PRAGMA user_version`.
pub(crate) fn schema_version(conn: &Connection) -> rusqlite::Result<i64> {
    conn.query_row("PRAGMA user_version", [], |r| r.get(0))
}

/// The error of the migration to `version` of the file at `path`.
fn migration_error(path: &Path) -> impl Fn(i64, rusqlite::Error) -> StorageError + '_ {
    move |version, source| StorageError::Migration {
        path: path.to_owned(),
        version,
        source,
    }
}

/// Brings the file at `path` to [`LATEST_SCHEMA_VERSION`]; refuses files from a newer build.
///
/// Returns the version the file had before.
pub(crate) fn migrate(conn: &mut Connection, path: &Path) -> Result<i64> {
    migrate_to(conn, path, LATEST_SCHEMA_VERSION)
}

/// [`migrate`] up to version `latest` only (tests build files of an older version with it).
fn migrate_to(conn: &mut Connection, path: &Path, latest: i64) -> Result<i64> {
    let migration_error = migration_error(path);
    let found = schema_version(conn).map_err(|e| migration_error(0, e))?;
    if found > LATEST_SCHEMA_VERSION {
        return Err(StorageError::NewerSchema {
            path: path.to_owned(),
            found,
            latest: LATEST_SCHEMA_VERSION,
        });
    }
    if found >= latest {
        return Ok(found);
    }
    // The pragma is a no-op inside a transaction, so it is switched around them all.
    let foreign_keys: bool = conn
        .query_row("PRAGMA foreign_keys", [], |r| r.get(0))
        .map_err(|e| migration_error(found + 1, e))?;
    conn.pragma_update(None, "foreign_keys", "OFF")
        .map_err(|e| migration_error(found + 1, e))?;
    let applied = apply_pending(conn, path, found, latest);
    let restored = conn.pragma_update(None, "foreign_keys", foreign_keys);
    applied?;
    restored.map_err(|e| migration_error(latest, e))?;
    Ok(found)
}

/// Runs the migrations after version `found` up to `latest`, each in its own transaction.
fn apply_pending(conn: &mut Connection, path: &Path, found: i64, latest: i64) -> Result<()> {
    let migration_error = migration_error(path);
    for (index, sql) in MIGRATIONS
        .iter()
        .enumerate()
        .skip(usize::try_from(found).unwrap_or(0))
        .take(usize::try_from(latest - found).unwrap_or(0))
    {
        let target = index as i64 + 1;
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(|e| migration_error(target, e))?;
        // Another process may have migrated while we waited for the lock.
        let current = schema_version(&tx).map_err(|e| migration_error(target, e))?;
        if current >= target {
            continue;
        }
        tx.execute_batch(sql)
            .map_err(|e| migration_error(target, e))?;
        check_foreign_keys(&tx).map_err(|e| migration_error(target, e))?;
        tx.pragma_update(None, "user_version", target)
            .map_err(|e| migration_error(target, e))?;
        tx.commit().map_err(|e| migration_error(target, e))?;
        tracing::info!(path = %path.display(), version = target, "applied storage migration");
    }
    Ok(())
}

/// A fresh in-memory database at [`LATEST_SCHEMA_VERSION`], for the unit tests of the
/// modules that query it.
#[cfg(test)]
pub(crate) fn migrated_in_memory() -> Connection {
    let mut conn = Connection::open_in_memory().expect("open an in-memory database");
    migrate(&mut conn, Path::new(":memory:")).expect("migrate an in-memory database");
    conn
}

/// Fails with the first row `PRAGMA foreign_key_check` reports, if any.
fn check_foreign_keys(conn: &Connection) -> rusqlite::Result<()> {
    let violation = conn
        .query_row("PRAGMA foreign_key_check", [], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, Option<i64>>(1)?,
                r.get::<_, String>(2)?,
            ))
        })
        .optional()?;
    match violation {
        None => Ok(()),
        Some((table, rowid, parent)) => Err(rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_CONSTRAINT_FOREIGNKEY),
            Some(format!(
                "foreign key violation after the migration: {table} row {} references a missing {parent} row",
                rowid.map_or_else(|| "?".to_owned(), |r| r.to_string())
            )),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrating_twice_is_a_no_op() {
        let mut conn = Connection::open_in_memory().unwrap();
        assert_eq!(migrate(&mut conn, Path::new(":memory:")).unwrap(), 0);
        assert_eq!(schema_version(&conn).unwrap(), LATEST_SCHEMA_VERSION);
        assert_eq!(
            migrate(&mut conn, Path::new(":memory:")).unwrap(),
            LATEST_SCHEMA_VERSION
        );
    }

    #[test]
    fn newer_file_is_refused_with_both_versions_and_path() {
        let mut conn = Connection::open_in_memory().unwrap();
        conn.pragma_update(None, "user_version", LATEST_SCHEMA_VERSION + 3)
            .unwrap();
        let err = migrate(&mut conn, Path::new("/data/events.db")).unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err, StorageError::NewerSchema { .. }), "{msg}");
        assert!(msg.contains("/data/events.db"), "{msg}");
        assert!(
            msg.contains(&(LATEST_SCHEMA_VERSION + 3).to_string()),
            "{msg}"
        );
        assert!(msg.contains(&LATEST_SCHEMA_VERSION.to_string()), "{msg}");
    }

    fn notifications_shape(conn: &Connection) -> (Vec<String>, Vec<String>) {
        let names = |sql: &str| -> Vec<String> {
            let mut stmt = conn.prepare(sql).unwrap();
            let mut v: Vec<String> = stmt
                .query_map([], |r| r.get::<_, String>(0))
                .unwrap()
                .map(|sql| {
                    sql.unwrap()
                        .split_whitespace()
                        .collect::<Vec<_>>()
                        .join(" ")
                })
                .collect();
            v.sort();
            v
        };
        (
            names(
                "SELECT name || ' ' || type || ' ' || \"notnull\" || ' ' || coalesce(dflt_value, '') FROM pragma_table_info('notifications')",
            ),
            names(
                "SELECT coalesce(sql, name) FROM sqlite_master WHERE type = 'index' AND tbl_name = 'notifications'",
            ),
        )
    }

    fn opcodes(conn: &Connection, sql: &str) -> Vec<String> {
        let mut stmt = conn.prepare(&format!("EXPLAIN {sql}")).unwrap();
        stmt.query_map([], |r| r.get::<_, String>(1))
            .unwrap()
            .map(Result::unwrap)
            .collect()
    }

    const INSERT_MINIMAL: &str = "INSERT INTO notifications (event_type, source, level, created_at, updated_at) \
         VALUES ('build.failed', 'ci', 3, '2026-12-05T00:00:00.000Z', '2026-12-05T00:00:00.000Z')";

    #[test]
    fn version_7_rebuild_keeps_rows_ids_references_and_the_high_water_mark() {
        let mut conn = Connection::open_in_memory().unwrap();
        conn.pragma_update(None, "foreign_keys", "ON").unwrap();
        migrate_to(&mut conn, Path::new(":memory:"), 6).unwrap();
        assert!(
            opcodes(&conn, INSERT_MINIMAL)
                .iter()
                .any(|op| op == "OpenEphemeral"),
            "version 6 builds an ephemeral index per insert (what version 7 removes)"
        );
        for _ in 0..3 {
            conn.execute(INSERT_MINIMAL, []).unwrap();
        }
        conn.execute_batch(
            "UPDATE notifications SET agent_status = 'claimed', agent_id = 'a' WHERE id = 1;
             DELETE FROM notifications WHERE id = 3;
             INSERT INTO telegram_outbox (notification_id, chat_id, text, created_at)
                 VALUES (2, '42', 'hello', '2026-12-05T00:00:00.000Z');",
        )
        .unwrap();
        let shape_before = notifications_shape(&conn);

        assert_eq!(migrate(&mut conn, Path::new(":memory:")).unwrap(), 6);

        assert_eq!(schema_version(&conn).unwrap(), LATEST_SCHEMA_VERSION);
        assert_eq!(
            notifications_shape(&conn),
            shape_before,
            "same columns and indexes"
        );
        let foreign_keys: bool = conn
            .query_row("PRAGMA foreign_keys", [], |r| r.get(0))
            .unwrap();
        assert!(
            foreign_keys,
            "foreign keys are on again after the migrations"
        );
        let outbox_ref: Option<i64> = conn
            .query_row("SELECT notification_id FROM telegram_outbox", [], |r| {
                r.get(0)
            })
            .unwrap();
        assert_eq!(
            outbox_ref,
            Some(2),
            "dropping the old table did not null the reference"
        );
        let rows: Vec<(i64, String)> = conn
            .prepare("SELECT id, agent_status FROM notifications ORDER BY id")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .map(Result::unwrap)
            .collect();
        assert_eq!(rows, [(1, "claimed".to_owned()), (2, "none".to_owned())]);
        conn.execute(INSERT_MINIMAL, []).unwrap();
        assert_eq!(
            conn.last_insert_rowid(),
            4,
            "id 3 is never handed out again"
        );

        let err = conn
            .execute(
                "UPDATE notifications SET agent_status = 'done' WHERE id = 1",
                [],
            )
            .unwrap_err();
        assert!(err.to_string().contains("CHECK constraint failed"), "{err}");
        for sql in [
            INSERT_MINIMAL,
            "UPDATE notifications SET agent_status = 'resolved' WHERE id = 1",
        ] {
            assert!(
                !opcodes(&conn, sql).iter().any(|op| op == "OpenEphemeral"),
                "{sql} builds an ephemeral table"
            );
        }
    }

    #[test]
    fn version_7_keeps_the_high_water_mark_of_an_emptied_table() {
        let mut conn = Connection::open_in_memory().unwrap();
        migrate_to(&mut conn, Path::new(":memory:"), 6).unwrap();
        conn.execute(INSERT_MINIMAL, []).unwrap();
        conn.execute(INSERT_MINIMAL, []).unwrap();
        conn.execute("DELETE FROM notifications", []).unwrap();
        migrate(&mut conn, Path::new(":memory:")).unwrap();
        conn.execute(INSERT_MINIMAL, []).unwrap();
        assert_eq!(conn.last_insert_rowid(), 3);
    }

    #[test]
    fn a_dangling_reference_after_a_migration_is_an_error_naming_the_table() {
        let conn = Connection::open_in_memory().unwrap();
        conn.pragma_update(None, "foreign_keys", "OFF").unwrap();
        conn.execute_batch(
            "CREATE TABLE parent (id INTEGER PRIMARY KEY);
             CREATE TABLE child (parent_id INTEGER REFERENCES parent (id));
             INSERT INTO child VALUES (7);",
        )
        .unwrap();
        let err = check_foreign_keys(&conn).unwrap_err().to_string();
        assert!(
            err.contains("child row 1 references a missing parent row"),
            "{err}"
        );
        conn.execute("INSERT INTO parent VALUES (7)", []).unwrap();
        check_foreign_keys(&conn).unwrap();
    }
}
