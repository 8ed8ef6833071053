//! The event log: every event that went through the pipeline, numbered by `seq`.
//!
//! `seq` (SQLite rowid) is what SSE and WebSocket clients resume from; together with the
//! database epoch ([`crate::EventDb::epoch`]) it tells "continue" from "start over".

use events_envelope::{EventEnvelope, EventLevel, EventVisibility};
use rusqlite::types::Value as SqlValue;
use rusqlite::{Connection, OptionalExtension, Row, params, params_from_iter};
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

/// Most distinct event types a wildcard filter reads as separate ordered branches
/// ([`TypeFilter::Exact`]); a pattern matching more is checked row by row instead.
const MAX_TYPE_BRANCHES: usize = 32;

/// Most distinct logged types looked at (one index seek each) while expanding a wildcard.
const MAX_TYPES_EXAMINED: usize = 512;

/// How a query finds the rows of its type filter.
#[derive(Debug, Clone, PartialEq, Eq)]
enum TypeFilter {
    /// No type filter.
    Any,
    /// Exactly these logged types (none: nothing can match). Each one is read in `seq` order
    /// straight from `idx_events_type`, whose entries are `(event_type, seq)`: a page costs its
    /// own rows, not every row of the type — `event_type GLOB 'a.b'` is a *range* to SQLite,
    /// so it read every row of the type and sorted them (1,000,000 logged events, a page
    /// after the newest thousand: 0.2–1 s instead of well under 1 ms; docs/benchmarks.md,
    /// session 23).
    Exact(Vec<String>),
    /// The glob (as SQL), checked on every row along `seq`: for a wildcard that matches too
    /// many types to read each in order.
    Scan(String),
}

/// Expands the type glob `pattern` to the logged types it matches, walking the distinct
/// types of `idx_events_type` from the literal prefix before the first `*` (one seek each).
/// Readers run in one transaction (`Reader`), so the expansion and the page see the same
/// snapshot: a type first logged in between cannot slip past a resuming client.
fn type_filter(conn: &Connection, pattern: &str) -> Result<TypeFilter> {
    let Some(star) = pattern.find('*') else {
        return Ok(TypeFilter::Exact(vec![pattern.to_owned()]));
    };
    let prefix = &pattern[..star];
    let glob = type_glob_to_sql(pattern);
    let read = |r: &Row<'_>| Ok((r.get::<_, String>(0)?, r.get::<_, bool>(1)?));
    let mut first = conn.prepare_cached(
        "SELECT event_type, event_type GLOB ?2 FROM events WHERE event_type >= ?1 \
         ORDER BY event_type LIMIT 1",
    )?;
    let mut next = conn.prepare_cached(
        "SELECT event_type, event_type GLOB ?2 FROM events WHERE event_type > ?1 \
         ORDER BY event_type LIMIT 1",
    )?;
    let mut matched = Vec::new();
    let mut examined = 0;
    let mut after: Option<String> = None;
    loop {
        let found = match &after {
            None => first.query_row(params![prefix, glob], read).optional()?,
            Some(previous) => next.query_row(params![previous, glob], read).optional()?,
        };
        let Some((logged_type, matches)) = found else {
            break;
        };
        if !logged_type.starts_with(prefix) {
            break;
        }
        examined += 1;
        if matches {
            matched.push(logged_type.clone());
        }
        if matched.len() > MAX_TYPE_BRANCHES || examined >= MAX_TYPES_EXAMINED {
            return Ok(TypeFilter::Scan(glob));
        }
        after = Some(logged_type);
    }
    Ok(TypeFilter::Exact(matched))
}

pub(crate) fn query(conn: &Connection, q: &EventQuery) -> Result<Vec<StoredEvent>> {
    let Some((sql, bound)) = plan(conn, q)? else {
        return Ok(Vec::new());
    };
    let mut stmt = conn.prepare_cached(&sql)?;
    let mut rows = stmt.query(params_from_iter(bound.iter()))?;
    let mut out = Vec::new();
    while let Some(row) = rows.next()? {
        out.push(from_row(row)?);
    }
    Ok(out)
}

/// The statement and bindings of `q`; `None` when no row can match (a wildcard type filter
/// that matches no logged type).
fn plan(conn: &Connection, q: &EventQuery) -> Result<Option<(String, Vec<SqlValue>)>> {
    let types = match &q.event_type {
        None => TypeFilter::Any,
        Some(pattern) => type_filter(conn, pattern)?,
    };
    // the filters other than the type, shared by every branch
    let mut clauses: Vec<&str> = Vec::new();
    let mut values: Vec<SqlValue> = Vec::new();
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
    let limit = SqlValue::Integer(i64::from(q.effective_limit()));
    let branch = |type_clause: Option<&str>| -> String {
        let all: Vec<&str> = type_clause
            .into_iter()
            .chain(clauses.iter().copied())
            .collect();
        let where_sql = if all.is_empty() {
            String::new()
        } else {
            format!("WHERE {}", all.join(" AND "))
        };
        format!("SELECT {COLUMNS} FROM events {where_sql} ORDER BY seq ASC LIMIT ?")
    };
    let (sql, bound) = match types {
        TypeFilter::Any => (branch(None), [values, vec![limit]].concat()),
        TypeFilter::Scan(glob) => {
            // `+` keeps SQLite off idx_events_type: this pattern matches too many types to
            // gain from it, and the walk along `seq` stops at the page's last row
            let bound = [vec![SqlValue::Text(glob)], values, vec![limit]].concat();
            (branch(Some("+event_type GLOB ?")), bound)
        }
        TypeFilter::Exact(types) if types.is_empty() => return Ok(None),
        TypeFilter::Exact(types) => {
            // one ordered, limited branch per type, then the page from their union (at most
            // `limit` rows per type to sort)
            let one = branch(Some("event_type = ?"));
            let branches: Vec<String> = (0..types.len())
                .map(|_| format!("SELECT * FROM ({one})"))
                .collect();
            let sql = format!(
                "SELECT * FROM ({}) ORDER BY seq ASC LIMIT ?",
                branches.join(" UNION ALL ")
            );
            let mut bound = Vec::with_capacity(types.len() * (values.len() + 2) + 1);
            for event_type in types {
                bound.push(SqlValue::Text(event_type));
                bound.extend(values.iter().cloned());
                bound.push(limit.clone());
            }
            bound.push(limit);
            (sql, bound)
        }
    };
    Ok(Some((sql, bound)))
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
    use std::path::Path;

    use proptest::prelude::*;

    use super::*;

    const RECEIVED: &str = "2026-12-07T00:00:00.000Z";

    fn open() -> Connection {
        let mut conn = Connection::open_in_memory().unwrap();
        crate::migrations::migrate(&mut conn, Path::new(":memory:")).unwrap();
        conn
    }

    const LEVELS: [EventLevel; 4] = [
        EventLevel::Infrastructure,
        EventLevel::Operational,
        EventLevel::Workflow,
        EventLevel::Business,
    ];

    /// Logs one event per `(type, source, level)`; their seqs are 1, 2, ….
    fn log(conn: &Connection, events: &[(&str, &str, usize)]) {
        for (event_type, source, level) in events {
            let event = EventEnvelope::new(*event_type, *source).with_level(LEVELS[*level]);
            append(conn, &event, None, RECEIVED).unwrap();
        }
    }

    /// The glob semantics of [`EventQuery::event_type`], written out: `*` matches any run of
    /// characters, everything else itself.
    fn glob_matches(pattern: &str, text: &str) -> bool {
        match pattern.split_once('*') {
            None => pattern == text,
            Some((head, rest)) => {
                text.starts_with(head)
                    && (head.len()..=text.len())
                        .any(|at| text.is_char_boundary(at) && glob_matches(rest, &text[at..]))
            }
        }
    }

    fn seqs(conn: &Connection, q: &EventQuery) -> Vec<i64> {
        query(conn, q).unwrap().iter().map(|e| e.seq).collect()
    }

    fn query_plan(conn: &Connection, q: &EventQuery) -> String {
        let (sql, bound) = plan(conn, q).unwrap().expect("a plan");
        let mut stmt = conn.prepare(&format!("EXPLAIN QUERY PLAN {sql}")).unwrap();
        stmt.query_map(params_from_iter(bound.iter()), |r| r.get::<_, String>(3))
            .unwrap()
            .map(Result::unwrap)
            .collect::<Vec<_>>()
            .join("\n")
    }

    const TYPES: [&str; 10] = [
        "job.a", "job.b", "job.a.x", "jobs.a", "x.job.a", "a", "b.failed", "c.failed", "a?b",
        "a[b]",
    ];
    const PATTERNS: [&str; 14] = [
        "job.*",
        "*.failed",
        "job.a",
        "*",
        "job.*.x",
        "jo*",
        "nothing.*",
        "*.a",
        "job.a.x",
        "zzz",
        "a?b",
        "a[b]",
        "a*b",
        "*b*",
    ];

    proptest! {
        /// Every plan (one exact type, ordered branches per type, the row-by-row scan) returns
        /// what the filter means: the matching rows after `after_seq`, ascending, one page.
        #[test]
        fn type_filters_return_exactly_the_matching_page(
            logged in proptest::collection::vec((0..TYPES.len(), 0..2usize, 0..4usize), 0..60),
            pattern in proptest::option::of(0..PATTERNS.len()),
            after_seq in proptest::option::of(0i64..60),
            level in proptest::option::of(0..4usize),
            source in proptest::option::of(0..2usize),
            limit in 1u32..15,
        ) {
            let conn = open();
            let sources = ["s0", "s1"];
            let events: Vec<(&str, &str, usize)> = logged
                .iter()
                .map(|&(t, s, l)| (TYPES[t], sources[s], l))
                .collect();
            log(&conn, &events);
            let q = EventQuery {
                event_type: pattern.map(|p| PATTERNS[p].to_owned()),
                source: source.map(|s| sources[s].to_owned()),
                level: level.map(|l| LEVELS[l]),
                after_seq,
                limit: Some(limit),
                ..EventQuery::default()
            };
            let expected: Vec<i64> = events
                .iter()
                .enumerate()
                .map(|(i, e)| (i as i64 + 1, e))
                .filter(|(seq, (t, s, l))| {
                    q.event_type.as_deref().is_none_or(|p| glob_matches(p, t))
                        && q.source.as_deref().is_none_or(|src| src == *s)
                        && level.is_none_or(|want| want == *l)
                        && after_seq.is_none_or(|after| *seq > after)
                })
                .map(|(seq, _)| seq)
                .take(limit as usize)
                .collect();
            prop_assert_eq!(seqs(&conn, &q), expected);
        }
    }

    #[test]
    fn an_exact_type_reads_its_page_in_seq_order_from_the_index() {
        let conn = open();
        log(
            &conn,
            &[("job.a", "s", 0), ("job.b", "s", 0), ("job.a", "s", 0)],
        );
        for pattern in ["job.a", "job.*"] {
            let plan = query_plan(
                &conn,
                &EventQuery {
                    event_type: Some(pattern.to_owned()),
                    after_seq: Some(1),
                    ..EventQuery::default()
                },
            );
            assert!(
                plan.contains("USING INDEX idx_events_type (event_type=? AND rowid>?)"),
                "{pattern}: {plan}"
            );
        }
        let exact = query_plan(
            &conn,
            &EventQuery {
                event_type: Some("job.a".to_owned()),
                ..EventQuery::default()
            },
        );
        assert!(
            !exact.contains("ORDER BY"),
            "an exact type sorts nothing but its page: {exact}"
        );
    }

    #[test]
    fn a_wildcard_matching_many_types_scans_along_seq_and_stays_correct() {
        let conn = open();
        let types: Vec<String> = (0..MAX_TYPE_BRANCHES + 5)
            .map(|i| format!("t.{i:02}"))
            .collect();
        let events: Vec<(&str, &str, usize)> = types.iter().map(|t| (t.as_str(), "s", 0)).collect();
        log(&conn, &events);
        let q = EventQuery {
            event_type: Some("t.*".to_owned()),
            after_seq: Some(3),
            limit: Some(5),
            ..EventQuery::default()
        };
        assert_eq!(
            type_filter(&conn, "t.*").unwrap(),
            TypeFilter::Scan("t.*".to_owned())
        );
        assert!(
            !query_plan(&conn, &q).contains("idx_events_type"),
            "the scan walks seq"
        );
        assert_eq!(seqs(&conn, &q), [4, 5, 6, 7, 8]);
        assert_eq!(
            type_filter(&conn, "t.0*").unwrap(),
            TypeFilter::Exact((0..10).map(|i| format!("t.{i:02}")).collect()),
            "the literal prefix bounds the walk"
        );
        assert_eq!(
            type_filter(&conn, "u.*").unwrap(),
            TypeFilter::Exact(Vec::new())
        );
        assert!(
            plan(
                &conn,
                &EventQuery {
                    event_type: Some("u.*".to_owned()),
                    ..EventQuery::default()
                }
            )
            .unwrap()
            .is_none()
        );
    }

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
