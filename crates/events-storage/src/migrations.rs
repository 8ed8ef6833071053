//! Versioned schema migrations on `PRAGMA user_version`.
//!
//! [`MIGRATIONS`] is an ordered list; entry *i* takes the file from version *i* to *i + 1*.
//! Each one runs in its own `BEGIN IMMEDIATE` transaction together with the `user_version`
//! bump, so a crash mid-migration leaves the file at the previous version, never half-way.
//! To extend the schema, append a file to the list; never edit a released entry (files in the
//! field are already at that version, and `tests/fixtures/schema_v1.db` pins version 1).

use std::path::Path;

use rusqlite::{Connection, TransactionBehavior};

use crate::{Result, StorageError};

/// Forward-only migrations, oldest first.
const MIGRATIONS: &[&str] = &[
    include_str!("migrations/0001_core.sql"),
    include_str!("migrations/0002_delivery.sql"),
    include_str!("migrations/0003_delivery_outbox.sql"),
    include_str!("migrations/0004_event_log_retention_by_seq.sql"),
    include_str!("migrations/0005_notifications_newest_first_index.sql"),
    include_str!("migrations/0006_notifications_drop_domain_index.sql"),
];

/// The schema version this build creates and understands.
pub const LATEST_SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

/// Reads `PRAGMA user_version`.
pub(crate) fn schema_version(conn: &Connection) -> rusqlite::Result<i64> {
    conn.query_row("PRAGMA user_version", [], |r| r.get(0))
}

/// Brings the file at `path` to [`LATEST_SCHEMA_VERSION`]; refuses files from a newer build.
///
/// Returns the version the file had before.
pub(crate) fn migrate(conn: &mut Connection, path: &Path) -> Result<i64> {
    let migration_error = |version, source| StorageError::Migration {
        path: path.to_owned(),
        version,
        source,
    };
    let found = schema_version(conn).map_err(|e| migration_error(0, e))?;
    if found > LATEST_SCHEMA_VERSION {
        return Err(StorageError::NewerSchema {
            path: path.to_owned(),
            found,
            latest: LATEST_SCHEMA_VERSION,
        });
    }
    for (index, sql) in MIGRATIONS
        .iter()
        .enumerate()
        .skip(usize::try_from(found).unwrap_or(0))
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
        tx.pragma_update(None, "user_version", target)
            .map_err(|e| migration_error(target, e))?;
        tx.commit().map_err(|e| migration_error(target, e))?;
        tracing::info!(path = %path.display(), version = target, "applied storage migration");
    }
    Ok(found)
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
}
