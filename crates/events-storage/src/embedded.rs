//! The embedded transport (no Redis): an append-only stream table and consumer offsets.
//!
//! Entry ids mimic Redis stream ids (`"42-0"`) so the processor and the dead-letter code
//! treat both transports alike.

use rusqlite::{Connection, OptionalExtension, params};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::statements::Prepare;
use crate::timefmt::{self, serde_ts};
use crate::{Result, StorageError};

/// One entry of an embedded stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EmbeddedEntry {
    /// `"{n}-0"`, increasing across all streams of the file.
    pub id: String,
    /// The stream it belongs to.
    pub stream: String,
    /// Flat string fields in the order they were appended (the wire format of brief §4).
    pub fields: Vec<(String, String)>,
    /// When it was appended.
    #[serde(with = "serde_ts")]
    pub created_at: OffsetDateTime,
}

/// Parses `"42-0"`, `"42"`, `"0"`, `"0-0"` or `"$"`-less Redis-style ids to the row number.
pub(crate) fn parse_entry_id(id: &str) -> Result<i64> {
    let number = id.split_once('-').map_or(id, |(n, _)| n);
    number
        .parse::<i64>()
        .map_err(|_| StorageError::InvalidInput {
            field: "entry_id",
            message: format!("{id:?} is not an embedded stream id like \"42-0\""),
        })
}

fn format_entry_id(n: i64) -> String {
    format!("{n}-0")
}

/// A stream entry's fields as the embedded stream stores them: a JSON array of
/// `[name, value]` pairs. Encoding them before the write transaction keeps the work off the
/// single writer thread (a third of an embedded append's time in the `embedded` profile).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncodedFields(String);

impl EncodedFields {
    /// Encodes `fields` for [`crate::WriteTx::embedded_append_encoded`].
    pub fn encode(fields: &[(String, String)]) -> Result<Self> {
        serde_json::to_string(fields)
            .map(Self)
            .map_err(|source| StorageError::Json {
                field: "fields",
                source,
            })
    }
}

/// `created_at` is the write transaction's time stamp, formatted once per transaction.
pub(crate) fn append(
    conn: &Connection,
    stream: &str,
    fields: &EncodedFields,
    created_at: &str,
) -> Result<String> {
    conn.prepare_cached(
        "INSERT INTO stream_entries (stream, fields, created_at) VALUES (?1, ?2, ?3)",
    )?
    .execute(params![stream, fields.0, created_at])?;
    Ok(format_entry_id(conn.last_insert_rowid()))
}

pub(crate) fn read(
    conn: &Connection,
    stream: &str,
    after_id: &str,
    limit: u32,
) -> Result<Vec<EmbeddedEntry>> {
    let after = parse_entry_id(after_id)?;
    let mut stmt = conn.prepare_cached(
        "SELECT id, fields, created_at FROM stream_entries WHERE stream = ?1 AND id > ?2 \
         ORDER BY id LIMIT ?3",
    )?;
    let mut rows = stmt.query(params![stream, after, limit])?;
    let mut out = Vec::new();
    while let Some(row) = rows.next()? {
        let fields: String = row.get(1)?;
        let created_at: String = row.get(2)?;
        out.push(EmbeddedEntry {
            id: format_entry_id(row.get(0)?),
            stream: stream.to_owned(),
            fields: serde_json::from_str(&fields)
                .map_err(|e| StorageError::corrupt("stream_entries.fields", e.to_string()))?,
            created_at: timefmt::parse("stream_entries.created_at", &created_at)?,
        });
    }
    Ok(out)
}

pub(crate) fn set_offset(
    conn: &Connection,
    stream: &str,
    group: &str,
    entry_id: &str,
) -> Result<()> {
    parse_entry_id(entry_id)?;
    conn.prepare_cached(
        "INSERT INTO consumer_offsets (stream, grp, last_id, updated_at) VALUES (?1, ?2, ?3, ?4) \
         ON CONFLICT (stream, grp) DO UPDATE SET last_id = excluded.last_id, updated_at = excluded.updated_at",
    )?
    .execute(params![stream, group, entry_id, timefmt::format(timefmt::now())])?;
    Ok(())
}

pub(crate) fn offset(conn: &Connection, stream: &str, group: &str) -> Result<Option<String>> {
    Ok(conn
        .prepare_cached("SELECT last_id FROM consumer_offsets WHERE stream = ?1 AND grp = ?2")?
        .query_row(params![stream, group], |r| r.get(0))
        .optional()?)
}

/// `processed_at` is the write transaction's time stamp, formatted once per transaction.
pub(crate) fn mark_processed(
    conn: &impl Prepare,
    stream: &str,
    entry_id: &str,
    processed_at: &str,
) -> Result<bool> {
    let inserted = conn.with_statement(
        "INSERT INTO processed_entries (stream, entry_id, processed_at) VALUES (?1, ?2, ?3) \
         ON CONFLICT DO NOTHING",
        |stmt| Ok(stmt.execute(params![stream, entry_id, processed_at])?),
    )?;
    Ok(inserted > 0)
}

pub(crate) fn is_processed(conn: &Connection, stream: &str, entry_id: &str) -> Result<bool> {
    Ok(conn
        .prepare_cached(
            "SELECT EXISTS (SELECT 1 FROM processed_entries WHERE stream = ?1 AND entry_id = ?2)",
        )?
        .query_row(params![stream, entry_id], |r| r.get(0))?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_ids_parse_like_redis_ids() {
        assert_eq!(parse_entry_id("42-0").unwrap(), 42);
        assert_eq!(parse_entry_id("0").unwrap(), 0);
        assert_eq!(parse_entry_id("0-0").unwrap(), 0);
        assert!(parse_entry_id("$").is_err());
        assert!(parse_entry_id("").is_err());
    }
}
