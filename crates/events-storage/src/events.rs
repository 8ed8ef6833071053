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
    query_with(conn, q, WINDOW_LIMITS)
}

/// [`query`] with the time-window thresholds as a parameter (tests use small ones).
fn query_with(conn: &Connection, q: &EventQuery, limits: WindowLimits) -> Result<Vec<StoredEvent>> {
    let Some((sql, bound)) = plan(conn, q, limits)? else {
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

/// How [`plan`] reads a time window (`since` / `until`), by how many rows it holds.
#[derive(Debug, Clone, Copy)]
struct WindowLimits {
    /// Fewer rows than this, and no type filter: read through `idx_events_timestamp` and
    /// sorted by `seq`.
    sort: i64,
    /// Fewer rows than this: the walk along `seq` (or along a type's index entries) is
    /// bounded by the window's first and last `seq`, found while counting. The count is an
    /// index-only walk, so this also caps what a wider window pays for finding out.
    bound: i64,
}

const WINDOW_LIMITS: WindowLimits = WindowLimits {
    sort: 10_000,
    bound: 200_000,
};

/// A time window on `idx_events_timestamp`: its rows, counted no further than a cap, and the
/// smallest and largest `seq` among the rows counted (exact when `rows` is below the cap).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct WindowSpan {
    rows: i64,
    first_seq: Option<i64>,
    last_seq: Option<i64>,
}

/// Counts a window's rows (and their `seq` range) on its index, index only, stopping at `cap`;
/// `None` when the query has no time window at all.
fn window_span(
    conn: &Connection,
    since: Option<&str>,
    until: Option<&str>,
    cap: i64,
) -> Result<Option<WindowSpan>> {
    let (window, bounds): (&str, Vec<&str>) = match (since, until) {
        (Some(since), Some(until)) => ("timestamp >= ?1 AND timestamp < ?2", vec![since, until]),
        (Some(since), None) => ("timestamp >= ?1", vec![since]),
        (None, Some(until)) => ("timestamp < ?1", vec![until]),
        (None, None) => return Ok(None),
    };
    let cap_param = bounds.len() + 1;
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT count(*), min(seq), max(seq) FROM (SELECT seq FROM events \
         INDEXED BY idx_events_timestamp WHERE {window} LIMIT ?{cap_param})"
    ))?;
    let params: Vec<SqlValue> = bounds
        .into_iter()
        .map(|b| SqlValue::Text(b.to_owned()))
        .chain([SqlValue::Integer(cap)])
        .collect();
    let span = stmt.query_row(params_from_iter(params.iter()), |r| {
        Ok(WindowSpan {
            rows: r.get(0)?,
            first_seq: r.get(1)?,
            last_seq: r.get(2)?,
        })
    })?;
    Ok(Some(span))
}

/// The statement and bindings of `q`; `None` when no row can match (an empty time window, or
/// a wildcard type filter that matches no logged type).
///
/// A time window is first counted on its index (up to `limits.bound` rows). Without it,
/// SQLite walks the log along `seq` from the start for a window open at the top (`since`
/// alone), however late the window starts: the newest hundred rows of millions, or the
/// last day of a year. A window of fewer than `limits.sort` rows without a type filter is
/// read from its index and sorted; a wider one that was counted to the end is walked from
/// its first `seq` to its last (its rows need not be contiguous: producers' clocks and
/// backfills put timestamps out of `seq` order, so the walk still checks each row); a type
/// filter's branches seek to the same bounds in `idx_events_type`. A window wider than
/// `limits.bound` is left to SQLite's choice, as before.
fn plan(
    conn: &Connection,
    q: &EventQuery,
    limits: WindowLimits,
) -> Result<Option<(String, Vec<SqlValue>)>> {
    let types = match &q.event_type {
        None => TypeFilter::Any,
        Some(pattern) => type_filter(conn, pattern)?,
    };
    let (since, until) = (q.since.map(timefmt::format), q.until.map(timefmt::format));
    let mut table = "events";
    let mut seq_bounds = None;
    if let Some(span) = window_span(conn, since.as_deref(), until.as_deref(), limits.bound)? {
        if span.rows == 0 {
            return Ok(None);
        }
        if matches!(types, TypeFilter::Any) && span.rows < limits.sort {
            table = "events INDEXED BY idx_events_timestamp";
        } else if span.rows < limits.bound {
            seq_bounds = span.first_seq.zip(span.last_seq);
            if matches!(types, TypeFilter::Any) && q.correlation_id.is_none() {
                // The rowid range, not the timestamp index SQLite may otherwise prefer
                // (`NOT INDEXED` leaves the INTEGER PRIMARY KEY usable). With a correlation
                // id its own index stays SQLite's to choose.
                table = "events NOT INDEXED";
            }
        }
    }
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
    if let Some(since) = since {
        clauses.push("timestamp >= ?");
        values.push(SqlValue::Text(since));
    }
    if let Some(until) = until {
        clauses.push("timestamp < ?");
        values.push(SqlValue::Text(until));
    }
    if let Some(after) = q.after_seq {
        clauses.push("seq > ?");
        values.push(SqlValue::Integer(after));
    }
    if let Some((first, last)) = seq_bounds {
        clauses.push("seq >= ?");
        values.push(SqlValue::Integer(first));
        clauses.push("seq <= ?");
        values.push(SqlValue::Integer(last));
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
        format!("SELECT {COLUMNS} FROM {table} {where_sql} ORDER BY seq ASC LIMIT ?")
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
    use proptest::prelude::*;

    use super::*;
    use crate::migrations::migrated_in_memory as open;

    const RECEIVED: &str = "2026-12-07T00:00:00.000Z";

    const LEVELS: [EventLevel; 4] = [
        EventLevel::Infrastructure,
        EventLevel::Operational,
        EventLevel::Workflow,
        EventLevel::Business,
    ];

    /// Logs one event per `(type, source, level)`; their seqs are 1, 2, ….
    fn log(conn: &Connection, events: &[(&str, &str, usize)]) {
        let at: Vec<(&str, &str, usize, i64)> =
            events.iter().map(|&(t, s, l)| (t, s, l, 0)).collect();
        log_at(conn, &at);
    }

    /// An instant `minute` minutes after a fixed one.
    fn minute(minute: i64) -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(1_796_000_000).unwrap()
            + time::Duration::minutes(minute)
    }

    /// [`log`] with each event's own timestamp, in minutes after a fixed instant.
    fn log_at(conn: &Connection, events: &[(&str, &str, usize, i64)]) {
        for (event_type, source, level, at) in events {
            let event = EventEnvelope::new(*event_type, *source)
                .with_level(LEVELS[*level])
                .with_timestamp(minute(*at));
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
        query_plan_with(conn, q, WINDOW_LIMITS)
    }

    fn query_plan_with(conn: &Connection, q: &EventQuery, limits: WindowLimits) -> String {
        let (sql, bound) = plan(conn, q, limits).unwrap().expect("a plan");
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
        fn filters_return_exactly_the_matching_page(
            logged in proptest::collection::vec(
                (0..TYPES.len(), 0..2usize, 0..4usize, 0i64..12),
                0..60,
            ),
            pattern in proptest::option::of(0..PATTERNS.len()),
            after_seq in proptest::option::of(0i64..60),
            level in proptest::option::of(0..4usize),
            source in proptest::option::of(0..2usize),
            since in proptest::option::of(0i64..12),
            until in proptest::option::of(0i64..12),
            limit in 1u32..15,
            sort in 1i64..30,
            bound in 1i64..60,
        ) {
            let conn = open();
            let sources = ["s0", "s1"];
            // timestamps out of `seq` order, as producers' clocks and backfills make them
            let events: Vec<(&str, &str, usize, i64)> = logged
                .iter()
                .map(|&(t, s, l, at)| (TYPES[t], sources[s], l, at))
                .collect();
            log_at(&conn, &events);
            let q = EventQuery {
                event_type: pattern.map(|p| PATTERNS[p].to_owned()),
                source: source.map(|s| sources[s].to_owned()),
                level: level.map(|l| LEVELS[l]),
                since: since.map(minute),
                until: until.map(minute),
                after_seq,
                limit: Some(limit),
                ..EventQuery::default()
            };
            let expected: Vec<i64> = events
                .iter()
                .enumerate()
                .map(|(i, e)| (i as i64 + 1, e))
                .filter(|(seq, (t, s, l, at))| {
                    q.event_type.as_deref().is_none_or(|p| glob_matches(p, t))
                        && q.source.as_deref().is_none_or(|src| src == *s)
                        && level.is_none_or(|want| want == *l)
                        && since.is_none_or(|from| *at >= from)
                        && until.is_none_or(|to| *at < to)
                        && after_seq.is_none_or(|after| *seq > after)
                })
                .map(|(seq, _)| seq)
                .take(limit as usize)
                .collect();
            let found: Vec<i64> = query_with(&conn, &q, WindowLimits { sort, bound })
                .unwrap()
                .iter()
                .map(|e| e.seq)
                .collect();
            prop_assert_eq!(found, expected);
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
                },
                WINDOW_LIMITS
            )
            .unwrap()
            .is_none()
        );
    }

    #[test]
    fn a_time_window_is_read_from_its_index_or_walked_between_its_first_and_last_seq() {
        let conn = open();
        // 40 events a minute apart; seqs 1..=40
        let events: Vec<(&str, &str, usize, i64)> = (0..40).map(|i| ("job.a", "s", 0, i)).collect();
        log_at(&conn, &events);
        let limits = WindowLimits {
            sort: 10,
            bound: 30,
        };
        let newest = EventQuery {
            since: Some(minute(35)),
            ..EventQuery::default()
        };
        let narrow = query_plan_with(&conn, &newest, limits);
        assert!(
            narrow.contains("idx_events_timestamp"),
            "5 rows of 40: {narrow}"
        );
        assert_eq!(seqs(&conn, &newest), [36, 37, 38, 39, 40]);

        // 20 rows: too many to sort, counted to the end, so the walk starts at seq 16
        let late = EventQuery {
            since: Some(minute(15)),
            until: Some(minute(35)),
            limit: Some(3),
            ..EventQuery::default()
        };
        let walk = query_plan_with(&conn, &late, limits);
        assert!(
            walk.contains("USING INTEGER PRIMARY KEY (rowid>? AND rowid<?)"),
            "20 rows of 40: {walk}"
        );
        assert_eq!(
            query_with(&conn, &late, limits)
                .unwrap()
                .iter()
                .map(|e| e.seq)
                .collect::<Vec<_>>(),
            [16, 17, 18]
        );
        // a type filter seeks to the same bounds in its index
        let typed = EventQuery {
            event_type: Some("job.a".to_owned()),
            ..late.clone()
        };
        let seek = query_plan_with(&conn, &typed, limits);
        assert!(
            seek.contains("USING INDEX idx_events_type (event_type=? AND rowid>? AND rowid<?)"),
            "{seek}"
        );
        // wider than the bound: SQLite's choice, no seq bounds
        let wide = EventQuery {
            since: Some(minute(5)),
            ..EventQuery::default()
        };
        let (sql, _) = plan(&conn, &wide, limits).unwrap().expect("a plan");
        assert!(!sql.contains("seq >= ?"), "35 rows of 40, bound 30: {sql}");
        assert_eq!(seqs(&conn, &wide)[..3], [6, 7, 8]);

        // nothing in the window: no statement at all
        let empty = EventQuery {
            since: Some(minute(50)),
            ..EventQuery::default()
        };
        assert!(plan(&conn, &empty, limits).unwrap().is_none());
        assert!(seqs(&conn, &empty).is_empty());

        let span = |since: Option<i64>, until: Option<i64>, cap| {
            let (since, until) = (since.map(minute), until.map(minute));
            let (since, until) = (since.map(timefmt::format), until.map(timefmt::format));
            let s = window_span(&conn, since.as_deref(), until.as_deref(), cap)
                .unwrap()
                .expect("a window");
            (s.rows, s.first_seq, s.last_seq)
        };
        assert_eq!(span(Some(0), Some(40), 100), (40, Some(1), Some(40)));
        assert_eq!(span(None, Some(3), 100), (3, Some(1), Some(3)));
        assert_eq!(span(Some(39), None, 100), (1, Some(40), Some(40)));
        assert_eq!(span(Some(40), None, 100), (0, None, None));
        assert_eq!(
            window_span(&conn, None, None, 100).unwrap(),
            None,
            "no window"
        );
        assert_eq!(
            span(Some(0), None, 7),
            (7, Some(1), Some(7)),
            "counting stops at the cap"
        );
    }

    #[test]
    fn a_window_of_out_of_order_timestamps_is_bounded_by_its_extreme_seqs() {
        let conn = open();
        // seq 1..=6 logged at minutes 9, 0, 5, 1, 8, 2: the window [5, 10) holds seqs 1, 3, 5
        log_at(&conn, &[9, 0, 5, 1, 8, 2].map(|at| ("job.a", "s", 0, at)));
        let q = EventQuery {
            since: Some(minute(5)),
            until: Some(minute(10)),
            ..EventQuery::default()
        };
        let limits = WindowLimits { sort: 1, bound: 10 };
        let (sql, bound) = plan(&conn, &q, limits).unwrap().expect("a plan");
        assert!(sql.contains("seq >= ? AND seq <= ?"), "{sql}");
        assert!(bound.contains(&SqlValue::Integer(1)) && bound.contains(&SqlValue::Integer(5)));
        let found: Vec<i64> = query_with(&conn, &q, limits)
            .unwrap()
            .iter()
            .map(|e| e.seq)
            .collect();
        assert_eq!(found, [1, 3, 5]);
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
