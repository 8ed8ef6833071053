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

/// Rows of the multi-row claim statements, largest first. A batch is claimed in chunks of
/// these sizes (1,000 entries: 15 × 64, 2 × 16, 2 × 4 = 19 statements): one statement per
/// entry cost ~8,700 instructions of the writer, about 5,000 of them the statement's own
/// set-up and tear-down rather than the insert (docs/benchmarks.md, session 23).
const CLAIM_CHUNK_ROWS: [usize; 4] = [64, 16, 4, 1];

/// The claim statement for `CLAIM_CHUNK_ROWS[size]` entries: `?1` the stream, `?2` the time
/// stamp, `?3…` the entry ids. Without a conflict clause: a row that exists aborts the
/// statement, which undoes all of its rows (the transaction stays open), and the chunk is
/// claimed again one entry at a time to learn which ones were new.
fn claim_sql(size: usize) -> &'static str {
    static SQL: std::sync::OnceLock<[String; CLAIM_CHUNK_ROWS.len()]> = std::sync::OnceLock::new();
    let all = SQL.get_or_init(|| {
        CLAIM_CHUNK_ROWS.map(|rows| {
            let values: Vec<String> = (0..rows).map(|i| format!("(?1, ?{}, ?2)", i + 3)).collect();
            format!(
                "INSERT INTO processed_entries (stream, entry_id, processed_at) VALUES {}",
                values.join(", ")
            )
        })
    });
    &all[size]
}

/// [`mark_processed`] for every entry of `entry_ids`, in order: `true` for an entry claimed
/// now, `false` for one processed before (or listed earlier in `entry_ids`).
pub(crate) fn mark_processed_all(
    conn: &impl Prepare,
    stream: &str,
    entry_ids: &[&str],
    processed_at: &str,
) -> Result<Vec<bool>> {
    let mut claimed = Vec::with_capacity(entry_ids.len());
    let mut rest = entry_ids;
    for (size, rows) in CLAIM_CHUNK_ROWS.into_iter().enumerate() {
        while rest.len() >= rows {
            let (chunk, after) = rest.split_at(rows);
            rest = after;
            if rows > 1 && claim_chunk(conn, claim_sql(size), stream, chunk, processed_at)? {
                claimed.extend(std::iter::repeat_n(true, rows));
                continue;
            }
            for entry_id in chunk {
                claimed.push(mark_processed(conn, stream, entry_id, processed_at)?);
            }
        }
    }
    Ok(claimed)
}

/// Inserts the claims of `chunk` in one statement; `false` (and nothing inserted) if any of
/// them exists already.
fn claim_chunk(
    conn: &impl Prepare,
    sql: &'static str,
    stream: &str,
    chunk: &[&str],
    processed_at: &str,
) -> Result<bool> {
    conn.with_statement(sql, |stmt| {
        stmt.raw_bind_parameter(1, stream)?;
        stmt.raw_bind_parameter(2, processed_at)?;
        for (i, entry_id) in chunk.iter().enumerate() {
            stmt.raw_bind_parameter(i + 3, entry_id)?;
        }
        match stmt.raw_execute() {
            Ok(_) => Ok(true),
            Err(rusqlite::Error::SqliteFailure(e, _))
                if e.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY =>
            {
                Ok(false)
            }
            Err(e) => Err(e.into()),
        }
    })
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
    use std::collections::BTreeSet;

    use proptest::prelude::*;

    use super::*;
    use crate::migrations::migrated_in_memory as open;

    const AT: &str = "2026-12-07T00:00:00.000Z";

    fn claims(conn: &Connection, stream: &str) -> BTreeSet<String> {
        conn.prepare("SELECT entry_id FROM processed_entries WHERE stream = ?1")
            .unwrap()
            .query_map([stream], |r| r.get(0))
            .unwrap()
            .map(Result::unwrap)
            .collect()
    }

    fn ids(range: std::ops::Range<usize>) -> Vec<String> {
        range.map(|n| format!("{n}-0")).collect()
    }

    #[test]
    fn a_batch_is_claimed_in_chunks_and_every_entry_lands_once() {
        let conn = open();
        // 64 + 64 + 16 + 4 + 4 + 1 + 1 + 1: every chunk size, several of some
        let batch = ids(0..155);
        let refs: Vec<&str> = batch.iter().map(String::as_str).collect();
        let claimed = mark_processed_all(&conn, "s", &refs, AT).unwrap();
        assert_eq!(claimed, vec![true; 155]);
        assert_eq!(claims(&conn, "s"), batch.iter().cloned().collect());
        assert_eq!(
            mark_processed_all(&conn, "s", &refs, AT).unwrap(),
            vec![false; 155],
            "claimed again: none is new"
        );
        assert!(
            mark_processed_all(&conn, "other", &refs[..3], AT).unwrap() == [true; 3],
            "claims are per stream"
        );
    }

    #[test]
    fn an_entry_processed_before_fails_only_itself_and_its_chunk_mates_stay_claimed() {
        let conn = open();
        for old in ["3-0", "70-0", "150-0"] {
            assert!(mark_processed(&conn, "s", old, AT).unwrap());
        }
        let batch = ids(0..155);
        let refs: Vec<&str> = batch.iter().map(String::as_str).collect();
        let claimed = mark_processed_all(&conn, "s", &refs, AT).unwrap();
        for (i, was_new) in claimed.iter().enumerate() {
            assert_eq!(*was_new, ![3, 70, 150].contains(&i), "entry {i}");
        }
        assert_eq!(claims(&conn, "s").len(), 155);
    }

    #[test]
    fn an_entry_listed_twice_is_claimed_the_first_time_only() {
        let conn = open();
        let mut batch = ids(0..70);
        batch[40] = "7-0".to_owned();
        let refs: Vec<&str> = batch.iter().map(String::as_str).collect();
        let claimed = mark_processed_all(&conn, "s", &refs, AT).unwrap();
        assert!(claimed[7]);
        assert!(!claimed[40]);
        assert_eq!(claimed.iter().filter(|c| **c).count(), 69);
        assert_eq!(claims(&conn, "s").len(), 69);
    }

    proptest! {
        /// The chunked claim answers exactly what claiming one entry at a time answers, for any
        /// mix of new, old and repeated entries.
        #[test]
        fn batch_claims_agree_with_one_at_a_time(
            before in proptest::collection::vec(0u16..300, 0..40),
            batch in proptest::collection::vec(0u16..300, 0..200),
        ) {
            let (chunked, single) = (open(), open());
            // as the writer claims: inside a transaction that already holds earlier writes,
            // which an aborted chunk must leave alone
            let tx = chunked.unchecked_transaction().unwrap();
            for n in &before {
                let id = format!("{n}-0");
                mark_processed(&*tx, "s", &id, AT).unwrap();
                mark_processed(&single, "s", &id, AT).unwrap();
            }
            let batch: Vec<String> = batch.iter().map(|n| format!("{n}-0")).collect();
            let refs: Vec<&str> = batch.iter().map(String::as_str).collect();
            let expected: Vec<bool> = refs
                .iter()
                .map(|id| mark_processed(&single, "s", id, AT).unwrap())
                .collect();
            prop_assert_eq!(mark_processed_all(&*tx, "s", &refs, AT).unwrap(), expected);
            tx.commit().unwrap();
            prop_assert_eq!(claims(&chunked, "s"), claims(&single, "s"));
        }
    }

    #[test]
    fn entry_ids_parse_like_redis_ids() {
        assert_eq!(parse_entry_id("42-0").unwrap(), 42);
        assert_eq!(parse_entry_id("0").unwrap(), 0);
        assert_eq!(parse_entry_id("0-0").unwrap(), 0);
        assert!(parse_entry_id("$").is_err());
        assert!(parse_entry_id("").is_err());
    }
}
