//! The event log: every event that went through the pipeline, numbered by `seq`.
//!
//! `seq` (SQLite rowid) is what SSE and WebSocket clients resume from; together with the
//! database epoch ([`crate::EventDb::epoch`]) it tells "continue" from "start over".

use events_envelope::{EventEnvelope, EventLevel, EventVisibility};
use rusqlite::types::Value as SqlValue;
use rusqlite::{Connection, Row, params, params_from_iter};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::statements::Prepare;
use crate::timefmt::{self, serde_ts};
use crate::{Result, StorageError};

/// One logged event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredEvent {
    /// Position in the log; strictly increasing, never reused while the file lives
    /// (retention deletes from the old end only).
    pub seq: i64,
    /// When the daemon logged it.
    #[serde(with = "serde_ts")]
    pub received_at: OffsetDateTime,
    /// The transport entry it came from (`1712345678901-0`), if any.
    pub stream_entry_id: Option<String>,
    /// The envelope as processed.
    pub event: EventEnvelope,
}

/// Filters of `GET /api/events` (brief §9); `None` = no filter. Results ascend by `seq`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct EventQuery {
    /// Type glob: `*` matches any run of characters including dots (`job.*`, `*.failed`,
    /// `a.*.c`); every other character is literal.
    pub event_type: Option<String>,
    /// Exact source.
    pub source: Option<String>,
    /// Exact domain.
    pub domain: Option<String>,
    /// Exact level.
    pub level: Option<EventLevel>,
    /// Exact correlation id.
    pub correlation_id: Option<String>,
    /// The event's own `timestamp` at or after this instant.
    #[serde(with = "serde_ts::option")]
    pub since: Option<OffsetDateTime>,
    /// The event's own `timestamp` strictly before this instant (half-open with `since`).
    #[serde(with = "serde_ts::option")]
    pub until: Option<OffsetDateTime>,
    /// Only `seq > after_seq` (resume point).
    pub after_seq: Option<i64>,
    /// Page size; default [`EventQuery::DEFAULT_LIMIT`], capped at [`EventQuery::MAX_LIMIT`].
    pub limit: Option<u32>,
}

impl EventQuery {
    /// Page size when none is given.
    pub const DEFAULT_LIMIT: u32 = 100;
    /// Largest page size honoured; larger requests are clamped.
    pub const MAX_LIMIT: u32 = 1000;

    /// The page size actually used.
    pub fn effective_limit(&self) -> u32 {
        self.limit
            .unwrap_or(Self::DEFAULT_LIMIT)
            .min(Self::MAX_LIMIT)
    }
}

/// Translates a type glob (`*` = any run of characters) to an SQLite `GLOB` pattern in which
/// every other character, including GLOB's own `?`, `[` and `]`, is literal.
pub(crate) fn type_glob_to_sql(pattern: &str) -> String {
    let mut out = String::with_capacity(pattern.len() + 4);
    for c in pattern.chars() {
        match c {
            '?' => out.push_str("[?]"),
            '[' => out.push_str("[[]"),
            // A lone `]` is literal in GLOB, but bracket it anyway for symmetry.
            ']' => out.push_str("[]]"),
            c => out.push(c),
        }
    }
    out
}

const INSERT_SQL: &str = "INSERT INTO events (event_id, stream_entry_id, event_type, version, \
    source, timestamp, idempotency_key, level, domain, entity, description, visibility, payload, \
    actions, terminal_when, resolution_shape, correlation_id, causation_id, received_at) \
    VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19) \
    ON CONFLICT DO NOTHING";

fn json<T: Serialize>(field: &'static str, value: &T) -> Result<String> {
    serde_json::to_string(value).map_err(|source| StorageError::Json { field, source })
}

/// See [`crate::WriteTx::append_event`].
pub(crate) fn append(
    conn: &impl Prepare,
    event: &EventEnvelope,
    stream_entry_id: Option<&str>,
    received_at: &str,
) -> Result<Option<i64>> {
    let actions = event
        .actions
        .as_ref()
        .map(|a| json("actions", a))
        .transpose()?;
    let shape = event
        .resolution_shape
        .as_ref()
        .map(|s| json("resolution_shape", s))
        .transpose()?;
    let payload = json("payload", &event.payload)?;
    let timestamp = timefmt::format(event.timestamp);
    let inserted = conn.with_statement(INSERT_SQL, |stmt| {
        Ok(stmt.execute(params![
            event.id,
            stream_entry_id,
            event.event,
            event.version,
            event.source,
            timestamp,
            event.idempotency_key,
            event.level.as_u8(),
            event.domain,
            event.entity,
            event.description,
            event.visibility.as_str(),
            payload,
            actions,
            event.terminal_when,
            shape,
            event.correlation_id,
            event.causation_id,
            received_at,
        ])?)
    })?;
    Ok((inserted > 0).then(|| conn.last_insert_rowid()))
}

/// See [`crate::WriteTx::idempotency_key_seen`].
pub(crate) fn idempotency_key_seen(conn: &impl Prepare, key: &str) -> Result<bool> {
    conn.with_statement(
        "SELECT EXISTS (SELECT 1 FROM events WHERE idempotency_key = ?1)",
        |stmt| Ok(stmt.query_row([key], |r| r.get(0))?),
    )
}

const COLUMNS: &str = "seq, event_id, stream_entry_id, event_type, version, source, timestamp, \
    idempotency_key, level, domain, entity, description, visibility, payload, actions, \
    terminal_when, resolution_shape, correlation_id, causation_id, received_at";

fn decode_json<T: serde::de::DeserializeOwned>(column: &'static str, text: &str) -> Result<T> {
    serde_json::from_str(text).map_err(|e| StorageError::corrupt(column, e.to_string()))
}

fn from_row(row: &Row<'_>) -> Result<StoredEvent> {
    let timestamp: String = row.get(6)?;
    let level: i64 = row.get(8)?;
    let visibility: String = row.get(12)?;
    let payload: String = row.get(13)?;
    let actions: Option<String> = row.get(14)?;
    let shape: Option<String> = row.get(16)?;
    let received_at: String = row.get(19)?;
    let event = EventEnvelope {
        id: row.get(1)?,
        event: row.get(3)?,
        version: row.get(4)?,
        source: row.get(5)?,
        timestamp: timefmt::parse("events.timestamp", &timestamp)?,
        idempotency_key: row.get(7)?,
        level: u8::try_from(level)
            .ok()
            .and_then(EventLevel::from_u8)
            .ok_or_else(|| {
                StorageError::corrupt("events.level", format!("{level} is not 0..=3"))
            })?,
        domain: row.get(9)?,
        entity: row.get(10)?,
        description: row.get(11)?,
        visibility: EventVisibility::parse_lenient(&visibility)
            .ok_or_else(|| StorageError::corrupt("events.visibility", visibility.clone()))?,
        payload: decode_json("events.payload", &payload)?,
        actions: actions
            .map(|a| decode_json("events.actions", &a))
            .transpose()?,
        terminal_when: row.get(15)?,
        resolution_shape: shape
            .map(|s| decode_json("events.resolution_shape", &s))
            .transpose()?,
        correlation_id: row.get(17)?,
        causation_id: row.get(18)?,
    };
    Ok(StoredEvent {
        seq: row.get(0)?,
        received_at: timefmt::parse("events.received_at", &received_at)?,
        stream_entry_id: row.get(2)?,
        event,
    })
}

pub(crate) fn query(conn: &Connection, q: &EventQuery) -> Result<Vec<StoredEvent>> {
    let mut clauses: Vec<&str> = Vec::new();
    let mut values: Vec<SqlValue> = Vec::new();
    if let Some(pattern) = &q.event_type {
        clauses.push("event_type GLOB ?");
        values.push(SqlValue::Text(type_glob_to_sql(pattern)));
    }
    for (clause, value) in [
        ("source = ?", &q.source),
        ("domain = ?", &q.domain),
        ("correlation_id = ?", &q.correlation_id),
    ] {
        if let Some(v) = value {
            clauses.push(clause);
            values.push(SqlValue::Text(v.clone()));
        }
    }
    if let Some(level) = q.level {
        clauses.push("level = ?");
        values.push(SqlValue::Integer(i64::from(level.as_u8())));
    }
    if let Some(since) = q.since {
        clauses.push("timestamp >= ?");
        values.push(SqlValue::Text(timefmt::format(since)));
    }
    if let Some(until) = q.until {
        clauses.push("timestamp < ?");
        values.push(SqlValue::Text(timefmt::format(until)));
    }
    if let Some(after) = q.after_seq {
        clauses.push("seq > ?");
        values.push(SqlValue::Integer(after));
    }
    let where_sql = if clauses.is_empty() {
        String::new()
    } else {
        format!("WHERE {}", clauses.join(" AND "))
    };
    values.push(SqlValue::Integer(i64::from(q.effective_limit())));
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM events {where_sql} ORDER BY seq ASC LIMIT ?"
    ))?;
    let mut rows = stmt.query(params_from_iter(values.iter()))?;
    let mut out = Vec::new();
    while let Some(row) = rows.next()? {
        out.push(from_row(row)?);
    }
    Ok(out)
}

pub(crate) fn get_by_seq(conn: &Connection, seq: i64) -> Result<Option<StoredEvent>> {
    let mut stmt = conn.prepare_cached(&format!("SELECT {COLUMNS} FROM events WHERE seq = ?1"))?;
    let mut rows = stmt.query([seq])?;
    match rows.next()? {
        Some(row) => Ok(Some(from_row(row)?)),
        None => Ok(None),
    }
}

pub(crate) fn max_seq(conn: &Connection) -> Result<i64> {
    Ok(conn
        .prepare_cached("SELECT coalesce(max(seq), 0) FROM events")?
        .query_row([], |r| r.get(0))?)
}

/// Deletes up to `chunk` events received before `cutoff`, oldest first; returns how many.
///
/// There is no index on `received_at` (schema v4): the writer stamps it once per batch, so
/// it does not decrease along `seq`, and the oldest `chunk` rows by `seq` (the primary key)
/// are the only candidates. Each row is still compared with `cutoff`, so a row newer than
/// the cut-off is never deleted even if the clock once stepped back; a chunk with nothing
/// to delete returns 0 and ends the caller's loop.
pub(crate) fn delete_chunk_older_than(conn: &Connection, cutoff: &str, chunk: u32) -> Result<u64> {
    let deleted = conn
        .prepare_cached(
            "DELETE FROM events WHERE seq IN \
             (SELECT seq FROM (SELECT seq, received_at FROM events ORDER BY seq LIMIT ?2) \
              WHERE received_at < ?1)",
        )?
        .execute(params![cutoff, chunk])?;
    Ok(deleted as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glob_translation_escapes_metacharacters() {
        assert_eq!(type_glob_to_sql("job.*"), "job.*");
        assert_eq!(type_glob_to_sql("a?b[c]"), "a[?]b[[]c[]]");
    }

    #[test]
    fn limits_default_and_clamp() {
        assert_eq!(EventQuery::default().effective_limit(), 100);
        let q = EventQuery {
            limit: Some(5000),
            ..EventQuery::default()
        };
        assert_eq!(q.effective_limit(), 1000);
    }
}
