//! Dead letters: entries that could not be processed, kept with the reason for replay.

use rusqlite::{Connection, Row, params};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::timefmt::{self, serde_ts};
use crate::{Result, StorageError};

/// A dead letter to store.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NewDeadLetter {
    /// The stream the entry came from.
    pub stream: String,
    /// Its entry id there.
    pub entry_id: String,
    /// Its original fields, in order.
    pub fields: Vec<(String, String)>,
    /// Why it failed (the last error).
    pub reason: String,
    /// How often it was delivered before giving up.
    pub delivery_count: u32,
}

/// A stored dead letter.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeadLetter {
    /// Row id (what replay and delete take).
    pub id: i64,
    /// The stream the entry came from.
    pub stream: String,
    /// Its entry id there.
    pub entry_id: String,
    /// Its original fields, in order.
    pub fields: Vec<(String, String)>,
    /// Why it failed.
    pub reason: String,
    /// Deliveries before giving up.
    pub delivery_count: u32,
    /// When it was dead-lettered.
    #[serde(with = "serde_ts")]
    pub created_at: OffsetDateTime,
}

const COLUMNS: &str = "id, stream, entry_id, fields, reason, delivery_count, created_at";

fn from_row(row: &Row<'_>) -> Result<DeadLetter> {
    let fields: String = row.get(3)?;
    let created_at: String = row.get(6)?;
    Ok(DeadLetter {
        id: row.get(0)?,
        stream: row.get(1)?,
        entry_id: row.get(2)?,
        fields: serde_json::from_str(&fields)
            .map_err(|e| StorageError::corrupt("dead_letters.fields", e.to_string()))?,
        reason: row.get(4)?,
        delivery_count: row.get(5)?,
        created_at: timefmt::parse("dead_letters.created_at", &created_at)?,
    })
}

pub(crate) fn insert(conn: &Connection, d: &NewDeadLetter) -> Result<i64> {
    let fields = serde_json::to_string(&d.fields).map_err(|source| StorageError::Json {
        field: "fields",
        source,
    })?;
    conn.prepare_cached(
        "INSERT INTO dead_letters (stream, entry_id, fields, reason, delivery_count, created_at) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?
    .execute(params![
        d.stream,
        d.entry_id,
        fields,
        d.reason,
        d.delivery_count,
        timefmt::format(timefmt::now())
    ])?;
    Ok(conn.last_insert_rowid())
}

/// Oldest first, `id > after_id`.
pub(crate) fn list(conn: &Connection, after_id: i64, limit: u32) -> Result<Vec<DeadLetter>> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM dead_letters WHERE id > ?1 ORDER BY id LIMIT ?2"
    ))?;
    let mut rows = stmt.query(params![after_id, limit])?;
    let mut out = Vec::new();
    while let Some(row) = rows.next()? {
        out.push(from_row(row)?);
    }
    Ok(out)
}

pub(crate) fn get(conn: &Connection, id: i64) -> Result<Option<DeadLetter>> {
    let mut stmt =
        conn.prepare_cached(&format!("SELECT {COLUMNS} FROM dead_letters WHERE id = ?1"))?;
    let mut rows = stmt.query([id])?;
    match rows.next()? {
        Some(row) => Ok(Some(from_row(row)?)),
        None => Ok(None),
    }
}

pub(crate) fn delete(conn: &Connection, id: i64) -> Result<bool> {
    Ok(conn
        .prepare_cached("DELETE FROM dead_letters WHERE id = ?1")?
        .execute([id])?
        > 0)
}
