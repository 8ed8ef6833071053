//! Notifications: rows, filters, and the human/agent state machine of brief §6.
//!
//! Every function here takes a plain `&Connection` so the same code serves the writer's
//! transaction ([`crate::WriteTx`]) and pooled readers ([`crate::Reader`]).

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;

use events_envelope::{EventEnvelope, EventLevel, EventVisibility};
use rusqlite::types::Value as SqlValue;
use rusqlite::{Connection, Row, params, params_from_iter};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use time::OffsetDateTime;

use crate::error::ParseStatusError;
use crate::statements::Prepare;
use crate::timefmt::{self, serde_ts};
use crate::{Result, StorageError};

/// Whether a human has looked at a notification.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HumanStatus {
    /// New, or changed meaningfully since last seen.
    #[default]
    Unseen,
    /// Looked at.
    Seen,
}

impl HumanStatus {
    /// The stored and wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Unseen => "unseen",
            Self::Seen => "seen",
        }
    }
}

impl fmt::Display for HumanStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for HumanStatus {
    type Err = ParseStatusError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "unseen" => Ok(Self::Unseen),
            "seen" => Ok(Self::Seen),
            _ => Err(ParseStatusError {
                field: "human_status",
                value: s.to_owned(),
                expected: "unseen, seen",
            }),
        }
    }
}

/// Where an agent is with a notification: `none → claimed → in_progress → resolved`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AgentStatus {
    /// Nobody has taken it.
    #[default]
    None,
    /// An agent took it (`agent_id`).
    Claimed,
    /// The claiming agent is working on it.
    InProgress,
    /// Done; final.
    Resolved,
}

impl AgentStatus {
    /// The stored and wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Claimed => "claimed",
            Self::InProgress => "in_progress",
            Self::Resolved => "resolved",
        }
    }
}

impl fmt::Display for AgentStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for AgentStatus {
    type Err = ParseStatusError;
    /// Parses the exact snake_case names; anything else is the API's 400.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "none" => Ok(Self::None),
            "claimed" => Ok(Self::Claimed),
            "in_progress" => Ok(Self::InProgress),
            "resolved" => Ok(Self::Resolved),
            _ => Err(ParseStatusError {
                field: "agent_status",
                value: s.to_owned(),
                expected: "none, claimed, in_progress, resolved",
            }),
        }
    }
}

/// One notification row: every column of brief §6.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Notification {
    /// Row id, assigned on insert.
    pub id: i64,
    /// The event type that created it.
    pub event_type: String,
    /// Payload schema version of that event.
    pub version: u32,
    /// Who emitted the creating event.
    pub source: String,
    /// Level of the creating event.
    pub level: EventLevel,
    /// Business domain.
    pub domain: String,
    /// Who may see it.
    pub visibility: EventVisibility,
    /// What it is about.
    pub entity: Option<String>,
    /// One line for people; replaced by updates.
    pub description: String,
    /// Latest payload (a JSON object); replaced by updates.
    pub payload: Map<String, Value>,
    /// Dedup key of the creating event, unique among notifications.
    pub idempotency_key: Option<String>,
    /// Seen by a human?
    pub human_status: HumanStatus,
    /// Agent progress.
    pub agent_status: AgentStatus,
    /// The agent holding the claim (kept after resolve, cleared on release).
    pub agent_id: Option<String>,
    /// How it was resolved (a JSON object), once resolved.
    pub resolution: Option<Value>,
    /// When it was created.
    #[serde(with = "serde_ts")]
    pub created_at: OffsetDateTime,
    /// When anything about it last changed.
    #[serde(with = "serde_ts")]
    pub updated_at: OffsetDateTime,
    /// When a human last marked it seen.
    #[serde(with = "serde_ts::option")]
    pub seen_at: Option<OffsetDateTime>,
    /// When the current claim was taken.
    #[serde(with = "serde_ts::option")]
    pub claimed_at: Option<OffsetDateTime>,
    /// When it was resolved.
    #[serde(with = "serde_ts::option")]
    pub resolved_at: Option<OffsetDateTime>,
    /// Id of the creating event.
    pub event_id: Option<String>,
    /// Whether agents are expected to act on it (from the catalog).
    pub actionable: bool,
    /// The lifecycle group key field (e.g. `order_id`), if grouped.
    pub group_field: Option<String>,
    /// That field's value in the creating payload.
    pub group_value: Option<String>,
}

/// What [`crate::WriteTx::insert_notification`] stores; ids, statuses and timestamps are set
/// by the store.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NewNotification {
    /// The creating event's type.
    pub event_type: String,
    /// Payload schema version.
    pub version: u32,
    /// Who emitted it.
    pub source: String,
    /// Level.
    pub level: EventLevel,
    /// Business domain.
    pub domain: String,
    /// Visibility.
    pub visibility: EventVisibility,
    /// What it is about.
    pub entity: Option<String>,
    /// One line for people.
    pub description: String,
    /// Event payload.
    pub payload: Map<String, Value>,
    /// Dedup key (unique among notifications when set).
    pub idempotency_key: Option<String>,
    /// Creating event id.
    pub event_id: Option<String>,
    /// Whether agents are expected to act on it.
    pub actionable: bool,
    /// Lifecycle group key field.
    pub group_field: Option<String>,
    /// Lifecycle group key value.
    pub group_value: Option<String>,
}

impl NewNotification {
    /// Copies the envelope's fields; `actionable` and the group are the caller's (catalog's) to set.
    pub fn from_envelope(event: &EventEnvelope) -> Self {
        Self {
            event_type: event.event.clone(),
            version: event.version,
            source: event.source.clone(),
            level: event.level,
            domain: event.domain.clone(),
            visibility: event.visibility,
            entity: event.entity.clone(),
            description: event.description.clone(),
            payload: event.payload.clone(),
            idempotency_key: event.idempotency_key.clone(),
            event_id: Some(event.id.clone()),
            actionable: false,
            group_field: None,
            group_value: None,
        }
    }
}

/// The outcome of a state-machine operation — never a bare bool.
///
/// The HTTP API maps `Changed`/`Unchanged` → 200, `Conflict` → 409, `NotFound` → 404,
/// `Invalid` → 422.
#[derive(Debug, Clone, PartialEq)]
pub enum Transition {
    /// The row changed; here it is afterwards.
    Changed(Notification),
    /// The request was already satisfied (an idempotent repeat); the row as it is.
    Unchanged(Notification),
    /// The current state forbids it (claimed by another agent, or already resolved).
    Conflict {
        /// The row as it is, so the caller can say who holds it.
        current: Notification,
    },
    /// No notification with that id.
    NotFound,
    /// The request itself is wrong for this row (e.g. `in_progress` without a claim, a status
    /// change by an agent that does not hold the claim, an empty agent id).
    Invalid(String),
}

impl Transition {
    /// The notification after the operation, for `Changed` and `Unchanged`.
    pub fn notification(&self) -> Option<&Notification> {
        match self {
            Self::Changed(n) | Self::Unchanged(n) => Some(n),
            _ => None,
        }
    }

    /// Whether the row changed.
    pub fn is_changed(&self) -> bool {
        matches!(self, Self::Changed(_))
    }
}

/// Filters of `GET /api/notifications` (brief §9); `None` = no filter.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct NotificationFilter {
    /// Exact level.
    pub level: Option<EventLevel>,
    /// Exact domain.
    pub domain: Option<String>,
    /// Human status.
    pub human_status: Option<HumanStatus>,
    /// Agent status.
    pub agent_status: Option<AgentStatus>,
    /// Visibility.
    pub visibility: Option<EventVisibility>,
    /// Created at or after this instant.
    #[serde(with = "serde_ts::option")]
    pub since: Option<OffsetDateTime>,
    /// Page size; default [`NotificationFilter::DEFAULT_LIMIT`], capped at [`NotificationFilter::MAX_LIMIT`].
    pub limit: Option<u32>,
    /// Rows to skip (newest first).
    pub offset: Option<u32>,
}

impl NotificationFilter {
    /// Page size when none is given.
    pub const DEFAULT_LIMIT: u32 = 50;
    /// Largest page size honoured; larger requests are clamped, not refused.
    pub const MAX_LIMIT: u32 = 200;

    /// The page size actually used.
    pub fn effective_limit(&self) -> u32 {
        self.limit
            .unwrap_or(Self::DEFAULT_LIMIT)
            .min(Self::MAX_LIMIT)
    }

    /// `WHERE` clause (starting with `WHERE` or empty) and its parameters.
    fn where_clause(&self) -> (String, Vec<SqlValue>) {
        self.where_clause_with(false)
    }

    /// Whether any filter other than `since` is set: only those can pull the planner away
    /// from the `created_at` index (see [`PagePlan`]).
    fn has_equality_filters(&self) -> bool {
        self.level.is_some()
            || self.domain.is_some()
            || self.human_status.is_some()
            || self.agent_status.is_some()
            || self.visibility.is_some()
    }

    /// [`NotificationFilter::where_clause`]; with `unindexed`, the equality terms are written
    /// `+column = ?`, SQLite's way of saying "do not use an index for this term", which
    /// leaves the `created_at` index as the only candidate (the result is the same: the
    /// bound values have the column's storage class, so dropping the affinity changes no
    /// comparison).
    fn where_clause_with(&self, unindexed: bool) -> (String, Vec<SqlValue>) {
        let mut clauses: Vec<String> = Vec::new();
        let mut values: Vec<SqlValue> = Vec::new();
        let plus = if unindexed { "+" } else { "" };
        let mut equal = |column: &str, value: SqlValue| {
            clauses.push(format!("{plus}{column} = ?"));
            values.push(value);
        };
        if let Some(level) = self.level {
            equal("level", SqlValue::Integer(i64::from(level.as_u8())));
        }
        if let Some(domain) = &self.domain {
            equal("domain", SqlValue::Text(domain.clone()));
        }
        if let Some(status) = self.human_status {
            equal("human_status", SqlValue::Text(status.as_str().to_owned()));
        }
        if let Some(status) = self.agent_status {
            equal("agent_status", SqlValue::Text(status.as_str().to_owned()));
        }
        if let Some(visibility) = self.visibility {
            equal("visibility", SqlValue::Text(visibility.as_str().to_owned()));
        }
        if let Some(since) = self.since {
            clauses.push("created_at >= ?".to_owned());
            values.push(SqlValue::Text(timefmt::format(since)));
        }
        if clauses.is_empty() {
            (String::new(), values)
        } else {
            (format!("WHERE {}", clauses.join(" AND ")), values)
        }
    }
}

/// One page of notifications plus the number of all matches.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NotificationPage {
    /// Newest first.
    pub notifications: Vec<Notification>,
    /// How many rows match the filters, ignoring limit and offset.
    pub total: u64,
    /// The page size used (after clamping).
    pub limit: u32,
    /// The offset used.
    pub offset: u32,
}

const COLUMNS: &str = "id, event_type, version, source, level, domain, visibility, entity, \
    description, payload, idempotency_key, human_status, agent_status, agent_id, resolution, \
    created_at, updated_at, seen_at, claimed_at, resolved_at, event_id, actionable, group_field, \
    group_value";

fn json_object(column: &'static str, text: &str) -> Result<Map<String, Value>> {
    match serde_json::from_str(text) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(other) => Err(StorageError::corrupt(
            column,
            format!("expected a JSON object, found {other}"),
        )),
        Err(e) => Err(StorageError::corrupt(column, e.to_string())),
    }
}

fn opt_ts(column: &'static str, text: Option<String>) -> Result<Option<OffsetDateTime>> {
    text.map(|t| timefmt::parse(column, &t)).transpose()
}

fn from_row(row: &Row<'_>) -> Result<Notification> {
    let level: i64 = row.get(4)?;
    let visibility: String = row.get(6)?;
    let payload: String = row.get(9)?;
    let human: String = row.get(11)?;
    let agent: String = row.get(12)?;
    let resolution: Option<String> = row.get(14)?;
    let created_at: String = row.get(15)?;
    let updated_at: String = row.get(16)?;
    Ok(Notification {
        id: row.get(0)?,
        event_type: row.get(1)?,
        version: row.get(2)?,
        source: row.get(3)?,
        level: u8::try_from(level)
            .ok()
            .and_then(EventLevel::from_u8)
            .ok_or_else(|| {
                StorageError::corrupt("notifications.level", format!("{level} is not 0..=3"))
            })?,
        domain: row.get(5)?,
        visibility: visibility
            .parse()
            .map_err(|e| StorageError::corrupt("notifications.visibility", format!("{e}")))?,
        entity: row.get(7)?,
        description: row.get(8)?,
        payload: json_object("notifications.payload", &payload)?,
        idempotency_key: row.get(10)?,
        human_status: human
            .parse()
            .map_err(|e| StorageError::corrupt("notifications.human_status", format!("{e}")))?,
        agent_status: agent
            .parse()
            .map_err(|e| StorageError::corrupt("notifications.agent_status", format!("{e}")))?,
        agent_id: row.get(13)?,
        resolution: resolution
            .map(|r| serde_json::from_str(&r))
            .transpose()
            .map_err(|e| StorageError::corrupt("notifications.resolution", e.to_string()))?,
        created_at: timefmt::parse("notifications.created_at", &created_at)?,
        updated_at: timefmt::parse("notifications.updated_at", &updated_at)?,
        seen_at: opt_ts("notifications.seen_at", row.get(17)?)?,
        claimed_at: opt_ts("notifications.claimed_at", row.get(18)?)?,
        resolved_at: opt_ts("notifications.resolved_at", row.get(19)?)?,
        event_id: row.get(20)?,
        actionable: row.get(21)?,
        group_field: row.get(22)?,
        group_value: row.get(23)?,
    })
}

fn encode_payload(payload: &Map<String, Value>) -> Result<String> {
    serde_json::to_string(payload).map_err(|source| StorageError::Json {
        field: "payload",
        source,
    })
}

/// Built once: formatting it for every lookup showed in the push path's profile.
static GET_SQL: std::sync::LazyLock<String> =
    std::sync::LazyLock::new(|| format!("SELECT {COLUMNS} FROM notifications WHERE id = ?1"));

pub(crate) fn get(conn: &Connection, id: i64) -> Result<Option<Notification>> {
    let mut stmt = conn.prepare_cached(&GET_SQL)?;
    let mut rows = stmt.query([id])?;
    match rows.next()? {
        Some(row) => Ok(Some(from_row(row)?)),
        None => Ok(None),
    }
}

/// `get` straight to the JSON of [`Notification`] (see [`write_row_json`]).
fn get_json(conn: &Connection, id: i64) -> Result<Option<Vec<u8>>> {
    let mut stmt = conn.prepare_cached(&GET_SQL)?;
    let mut rows = stmt.query([id])?;
    match rows.next()? {
        Some(row) => {
            let mut out = Vec::with_capacity(ROW_JSON_CAPACITY);
            write_row_json(row, &mut out)?;
            Ok(Some(out))
        }
        None => Ok(None),
    }
}

/// How one page of a list is read; both plans return the same rows in the same order
/// (`created_at DESC, id DESC` is a total order), they differ only in cost.
///
/// Without `ANALYZE` statistics SQLite assumes an equality term matches a handful of rows,
/// so for `?human_status=unseen` it reads *every* match through that column's index and
/// sorts them all to return 50 — about 200 ms with 100,000 unseen notifications. Walking
/// the `created_at` index newest first and filtering instead stops after `offset + limit`
/// matches, but reads the whole table when matches are rare (`agent_status=resolved`).
/// `total` (which the page reports anyway) tells the two cases apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PagePlan {
    /// No rows can be on the page (`limit` 0, or `offset` past the matches): no query.
    Empty,
    /// Let SQLite choose (no equality filters, or few matches: read them all and sort).
    Planner,
    /// Walk `created_at` newest first, filtering (many matches).
    NewestFirst,
}

/// Walking newest first examines about `(offset + limit) * all / total` rows, reading the
/// matches through their index about `total`; prefer the walk when it is cheaper by this
/// factor, which leaves room for matches that cluster among the older rows.
const NEWEST_FIRST_MARGIN: u128 = 4;

/// The shared first half of `list` and `list_json`: the match count, then which plan.
struct PageQuery {
    total: u64,
    limit: u32,
    offset: u32,
    plan: PagePlan,
}

/// Match counts a read connection has computed, kept while the database is unchanged.
///
/// Every list answer carries `total`, and `count(*)` walks the whole matching index (for an
/// unfiltered list all of it: a third of the time of a list over 100,000 notifications in
/// the API benchmark). A dashboard asks for the same lists over and over between writes, so
/// each read connection remembers the counts it made, tagged with SQLite's `data_version`
/// — which changes, seen from a connection, exactly when another connection committed —
/// and counts again after any commit. Read inside the same read transaction as the page, so
/// a remembered total is always the total of the snapshot the rows come from.
///
/// The same holds for whole list answers: between two commits the same filter gives the
/// same bytes, so the JSON of the last few lists is remembered too (a dashboard polling
/// its first page costs a copy, not 50 rows read and escaped). Under a steady write load
/// every commit clears them, and a list costs what it did without.
#[derive(Debug, Default)]
pub(crate) struct CountCache {
    /// The `data_version` the totals and pages belong to.
    version: Cell<Option<i64>>,
    /// `WHERE` clause and its values (debug-printed) → match count.
    totals: RefCell<HashMap<String, u64>>,
    /// Filter (debug-printed) → the list's JSON.
    pages: RefCell<HashMap<String, Vec<u8>>>,
}

impl CountCache {
    /// Distinct filters remembered at most; a connection that sees more starts over.
    const CAPACITY: usize = 64;
    /// List answers remembered at most (they are up to ~1 MB at the largest `limit`).
    const PAGES: usize = 8;
    /// Larger list answers are not remembered.
    const PAGE_MAX_BYTES: usize = 256 * 1024;

    /// Forgets everything if the database changed since the last call (`data_version`, read
    /// inside the current read transaction).
    fn sync(&self, conn: &Connection) -> Result<()> {
        let version: i64 = conn
            .prepare_cached("PRAGMA data_version")?
            .query_row([], |r| r.get(0))?;
        if self.version.replace(Some(version)) != Some(version) {
            self.totals.borrow_mut().clear();
            self.pages.borrow_mut().clear();
        }
        Ok(())
    }
}

fn count(
    conn: &Connection,
    counts: Option<&CountCache>,
    where_sql: &str,
    values: &[SqlValue],
) -> Result<u64> {
    let Some(cache) = counts else {
        return count_rows(conn, where_sql, values);
    };
    // `cache` was synced with this read transaction by the list that asks (`list`,
    // `list_json`): one `data_version` read per list, however many counts it takes.
    let mut totals = cache.totals.borrow_mut();
    if totals.len() >= CountCache::CAPACITY {
        totals.clear();
    }
    let key = format!("{where_sql}\u{0}{values:?}");
    if let Some(&total) = totals.get(&key) {
        return Ok(total);
    }
    let total = count_rows(conn, where_sql, values)?;
    totals.insert(key, total);
    Ok(total)
}

fn count_rows(conn: &Connection, where_sql: &str, values: &[SqlValue]) -> Result<u64> {
    let total: i64 = conn
        .prepare_cached(&format!("SELECT count(*) FROM notifications {where_sql}"))?
        .query_row(params_from_iter(values.iter()), |r| r.get(0))?;
    Ok(u64::try_from(total).unwrap_or(0))
}

fn plan_page(
    conn: &Connection,
    counts: Option<&CountCache>,
    filter: &NotificationFilter,
) -> Result<PageQuery> {
    let (where_sql, values) = filter.where_clause();
    let total = count(conn, counts, &where_sql, &values)?;
    let limit = filter.effective_limit();
    let offset = filter.offset.unwrap_or(0);
    let plan = if limit == 0 || u64::from(offset) >= total {
        PagePlan::Empty
    } else if filter.has_equality_filters() {
        let all = count(conn, counts, "", &[])?;
        let wanted = u128::from(offset) + u128::from(limit);
        if NEWEST_FIRST_MARGIN * wanted * u128::from(all) <= u128::from(total) * u128::from(total) {
            PagePlan::NewestFirst
        } else {
            PagePlan::Planner
        }
    } else {
        PagePlan::Planner
    };
    Ok(PageQuery {
        total,
        limit,
        offset,
        plan,
    })
}

/// Runs the page query of `page`, handing each row to `each`.
///
/// `LIMIT` is written into the SQL as a literal (it is clamped to 0..=200, so the statement
/// cache holds at most a few variants): SQLite 3.53 reads a bound `LIMIT ?` while planning
/// and marks the statement to be re-prepared whenever that parameter is bound again, which
/// showed as 10 % of the daemon's time under the `api` benchmark (a full parse per list).
/// `OFFSET ?` is not read while planning and stays a parameter.
fn for_each_row(
    conn: &Connection,
    filter: &NotificationFilter,
    page: &PageQuery,
    mut each: impl FnMut(&Row<'_>) -> Result<()>,
) -> Result<()> {
    if page.plan == PagePlan::Empty {
        return Ok(());
    }
    let (where_sql, mut values) = filter.where_clause_with(page.plan == PagePlan::NewestFirst);
    values.push(SqlValue::Integer(i64::from(page.offset)));
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM notifications {where_sql} \
         ORDER BY created_at DESC, id DESC LIMIT {} OFFSET ?",
        page.limit
    ))?;
    let mut rows = stmt.query(params_from_iter(values.iter()))?;
    while let Some(row) = rows.next()? {
        each(row)?;
    }
    Ok(())
}

pub(crate) fn list(
    conn: &Connection,
    counts: Option<&CountCache>,
    filter: &NotificationFilter,
) -> Result<NotificationPage> {
    if let Some(cache) = counts {
        cache.sync(conn)?;
    }
    let page = plan_page(conn, counts, filter)?;
    let mut notifications = Vec::new();
    for_each_row(conn, filter, &page, |row| {
        notifications.push(from_row(row)?);
        Ok(())
    })?;
    Ok(NotificationPage {
        notifications,
        total: page.total,
        limit: page.limit,
        offset: page.offset,
    })
}

/// `list` straight to the JSON of [`NotificationPage`] (see [`write_row_json`]).
fn list_json(
    conn: &Connection,
    counts: Option<&CountCache>,
    filter: &NotificationFilter,
) -> Result<Vec<u8>> {
    let Some(cache) = counts else {
        return write_list_json(conn, None, filter);
    };
    cache.sync(conn)?;
    let key = format!("{filter:?}");
    if let Some(body) = cache.pages.borrow().get(&key) {
        return Ok(body.clone());
    }
    let body = write_list_json(conn, counts, filter)?;
    if body.len() <= CountCache::PAGE_MAX_BYTES {
        let mut pages = cache.pages.borrow_mut();
        if pages.len() >= CountCache::PAGES {
            pages.clear();
        }
        pages.insert(key, body.clone());
    }
    Ok(body)
}

/// The list's JSON; `counts`, if any, synced by the caller.
fn write_list_json(
    conn: &Connection,
    counts: Option<&CountCache>,
    filter: &NotificationFilter,
) -> Result<Vec<u8>> {
    let page = plan_page(conn, counts, filter)?;
    let rows = if page.plan == PagePlan::Empty {
        0
    } else {
        page.limit as usize
    };
    let mut out = Vec::with_capacity(64 + rows * ROW_JSON_CAPACITY);
    out.extend_from_slice(b"{\"notifications\":[");
    let mut first = true;
    for_each_row(conn, filter, &page, |row| {
        if !first {
            out.push(b',');
        }
        first = false;
        write_row_json(row, &mut out)
    })?;
    out.extend_from_slice(b"],\"total\":");
    write_display(&mut out, page.total);
    out.extend_from_slice(b",\"limit\":");
    write_display(&mut out, page.limit);
    out.extend_from_slice(b",\"offset\":");
    write_display(&mut out, page.offset);
    out.push(b'}');
    Ok(out)
}

impl NotificationPage {
    /// The page [`crate::Reader::list_notifications`] returns, as the JSON its `Serialize`
    /// writes, built straight from the rows.
    ///
    /// For the HTTP API: building [`Notification`]s (a dozen strings and a decoded payload
    /// map per row) and serialising them again was a quarter of the daemon's time when
    /// serving lists; here strings are escaped from SQLite's buffers and the stored payload
    /// text is validated and copied, not decoded. Rows that `list_notifications` would
    /// refuse as corrupt are refused here too.
    pub fn read_json(reader: &crate::Reader<'_>, filter: &NotificationFilter) -> Result<Vec<u8>> {
        list_json(reader.connection(), reader.counts(), filter)
    }
}

impl Notification {
    /// [`crate::Reader::get_notification`] as the JSON its `Serialize` writes, `None` if there
    /// is no such id; see [`NotificationPage::read_json`] for why.
    pub fn read_json(reader: &crate::Reader<'_>, id: i64) -> Result<Option<Vec<u8>>> {
        get_json(reader.connection(), id)
    }
}

/// Room reserved per row of JSON (a typical notification is 600–900 bytes), so a page's
/// buffer rarely grows while it is written.
const ROW_JSON_CAPACITY: usize = 1024;

fn write_display(out: &mut Vec<u8>, value: impl fmt::Display) {
    use std::io::Write as _;
    // Writing to a Vec cannot fail.
    let _ = write!(out, "{value}");
}

fn write_key(out: &mut Vec<u8>, key: &str) {
    out.push(b',');
    out.push(b'"');
    out.extend_from_slice(key.as_bytes());
    out.extend_from_slice(b"\":");
}

fn write_str(out: &mut Vec<u8>, text: &str) -> Result<()> {
    serde_json::to_writer(&mut *out, text).map_err(|source| StorageError::Json {
        field: "notification",
        source,
    })
}

fn write_opt_str(out: &mut Vec<u8>, text: Option<&str>) -> Result<()> {
    match text {
        Some(text) => write_str(out, text),
        None => {
            out.extend_from_slice(b"null");
            Ok(())
        }
    }
}

fn text_at<'r>(row: &'r Row<'_>, index: usize) -> Result<&'r str> {
    row.get_ref(index)?.as_str().map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(index, rusqlite::types::Type::Text, Box::new(e))
            .into()
    })
}

fn opt_text_at<'r>(row: &'r Row<'_>, index: usize) -> Result<Option<&'r str>> {
    row.get_ref(index)?.as_str_or_null().map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(index, rusqlite::types::Type::Text, Box::new(e))
            .into()
    })
}

/// Copies stored JSON text after checking it parses (and, with `object`, that it is an
/// object), so a corrupt column fails the request as [`from_row`] does instead of breaking
/// the response. The stored text was written by `serde_json` (compact), so copying it gives
/// the bytes re-serialising the decoded value would.
fn write_json_text(
    out: &mut Vec<u8>,
    column: &'static str,
    text: &str,
    object: bool,
) -> Result<()> {
    if let Err(e) = serde_json::from_str::<serde::de::IgnoredAny>(text) {
        return Err(StorageError::corrupt(column, e.to_string()));
    }
    let text = text.trim_matches([' ', '\t', '\n', '\r']);
    if object && !text.starts_with('{') {
        // the same message as `json_object`
        return json_object(column, text).map(|_| ());
    }
    out.extend_from_slice(text.as_bytes());
    Ok(())
}

/// Whether `text` is a valid timestamp in exactly the stored form, which is then also what
/// `serde_ts` would write for it (parsing and formatting it again changes nothing).
fn is_stored_form(text: &str) -> bool {
    let b = text.as_bytes();
    if b.len() != 27 {
        return false;
    }
    let digits = |range: std::ops::Range<usize>| {
        b[range].iter().try_fold(0u32, |n, &c| {
            c.is_ascii_digit().then(|| n * 10 + u32::from(c - b'0'))
        })
    };
    let punctuation = [
        (4, b'-'),
        (7, b'-'),
        (10, b'T'),
        (13, b':'),
        (16, b':'),
        (19, b'.'),
        (26, b'Z'),
    ];
    if punctuation.iter().any(|&(at, c)| b[at] != c) {
        return false;
    }
    let (Some(year), Some(month), Some(day), Some(hour), Some(minute), Some(second), Some(micro)) = (
        digits(0..4),
        digits(5..7),
        digits(8..10),
        digits(11..13),
        digits(14..16),
        digits(17..19),
        digits(20..26),
    ) else {
        return false;
    };
    let date = u8::try_from(month)
        .ok()
        .and_then(|m| time::Month::try_from(m).ok())
        .and_then(|m| time::Date::from_calendar_date(year as i32, m, day as u8).ok());
    date.is_some()
        && time::Time::from_hms_micro(hour as u8, minute as u8, second as u8, micro).is_ok()
}

fn write_ts(out: &mut Vec<u8>, column: &'static str, text: &str) -> Result<()> {
    if is_stored_form(text) {
        out.push(b'"');
        out.extend_from_slice(text.as_bytes());
        out.push(b'"');
        Ok(())
    } else {
        // hand-edited or legacy text: exactly what the typed path does
        write_str(out, &timefmt::format(timefmt::parse(column, text)?))
    }
}

fn write_opt_ts(out: &mut Vec<u8>, column: &'static str, text: Option<&str>) -> Result<()> {
    match text {
        Some(text) => write_ts(out, column, text),
        None => {
            out.extend_from_slice(b"null");
            Ok(())
        }
    }
}

/// Writes one row (columns in [`COLUMNS`] order) as the JSON `Serialize` gives its
/// [`Notification`]: the same keys in the same order, the same values, the same checks
/// (`from_row`'s corrupt-column errors). `row_json_matches_serde` in the tests holds the two
/// together, byte for byte.
fn write_row_json(row: &Row<'_>, out: &mut Vec<u8>) -> Result<()> {
    let level: i64 = row.get(4)?;
    let level = u8::try_from(level)
        .ok()
        .and_then(EventLevel::from_u8)
        .ok_or_else(|| {
            StorageError::corrupt("notifications.level", format!("{level} is not 0..=3"))
        })?;
    let visibility: EventVisibility = text_at(row, 6)?
        .parse()
        .map_err(|e| StorageError::corrupt("notifications.visibility", format!("{e}")))?;
    let human: HumanStatus = text_at(row, 11)?
        .parse()
        .map_err(|e| StorageError::corrupt("notifications.human_status", format!("{e}")))?;
    let agent: AgentStatus = text_at(row, 12)?
        .parse()
        .map_err(|e| StorageError::corrupt("notifications.agent_status", format!("{e}")))?;
    let id: i64 = row.get(0)?;
    let version: u32 = row.get(2)?;
    let actionable: bool = row.get(21)?;

    out.extend_from_slice(b"{\"id\":");
    write_display(out, id);
    write_key(out, "event_type");
    write_str(out, text_at(row, 1)?)?;
    write_key(out, "version");
    write_display(out, version);
    write_key(out, "source");
    write_str(out, text_at(row, 3)?)?;
    write_key(out, "level");
    write_display(out, level.as_u8());
    write_key(out, "domain");
    write_str(out, text_at(row, 5)?)?;
    write_key(out, "visibility");
    write_str(out, visibility.as_str())?;
    write_key(out, "entity");
    write_opt_str(out, opt_text_at(row, 7)?)?;
    write_key(out, "description");
    write_str(out, text_at(row, 8)?)?;
    write_key(out, "payload");
    write_json_text(out, "notifications.payload", text_at(row, 9)?, true)?;
    write_key(out, "idempotency_key");
    write_opt_str(out, opt_text_at(row, 10)?)?;
    write_key(out, "human_status");
    write_str(out, human.as_str())?;
    write_key(out, "agent_status");
    write_str(out, agent.as_str())?;
    write_key(out, "agent_id");
    write_opt_str(out, opt_text_at(row, 13)?)?;
    write_key(out, "resolution");
    match opt_text_at(row, 14)? {
        Some(text) => write_json_text(out, "notifications.resolution", text, false)?,
        None => out.extend_from_slice(b"null"),
    }
    write_key(out, "created_at");
    write_ts(out, "notifications.created_at", text_at(row, 15)?)?;
    write_key(out, "updated_at");
    write_ts(out, "notifications.updated_at", text_at(row, 16)?)?;
    write_key(out, "seen_at");
    write_opt_ts(out, "notifications.seen_at", opt_text_at(row, 17)?)?;
    write_key(out, "claimed_at");
    write_opt_ts(out, "notifications.claimed_at", opt_text_at(row, 18)?)?;
    write_key(out, "resolved_at");
    write_opt_ts(out, "notifications.resolved_at", opt_text_at(row, 19)?)?;
    write_key(out, "event_id");
    write_opt_str(out, opt_text_at(row, 20)?)?;
    write_key(out, "actionable");
    out.extend_from_slice(if actionable { b"true" } else { b"false" });
    write_key(out, "group_field");
    write_opt_str(out, opt_text_at(row, 22)?)?;
    write_key(out, "group_value");
    write_opt_str(out, opt_text_at(row, 23)?)?;
    out.push(b'}');
    Ok(())
}

const INSERT_SQL: &str = "INSERT INTO notifications (event_type, version, source, level, domain, \
    visibility, entity, description, payload, idempotency_key, created_at, updated_at, event_id, \
    actionable, group_field, group_value) \
    VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?11, ?12, ?13, ?14, ?15)";

/// [`INSERT_SQL`] that inserts nothing (and reports no change) when a row with the same
/// idempotency key exists.
const INSERT_UNLESS_KEY_EXISTS_SQL: &str = "INSERT INTO notifications (event_type, version, \
    source, level, domain, visibility, entity, description, payload, idempotency_key, \
    created_at, updated_at, event_id, actionable, group_field, group_value) \
    VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?11, ?12, ?13, ?14, ?15) \
    ON CONFLICT (idempotency_key) DO NOTHING";

pub(crate) fn insert(
    conn: &impl Prepare,
    n: &NewNotification,
    upsert: bool,
) -> Result<(i64, bool)> {
    let payload = encode_payload(&n.payload)?;
    let now = timefmt::format(timefmt::now());
    let version = if n.version == 0 { 1 } else { n.version };
    let args = params![
        n.event_type,
        version,
        n.source,
        n.level.as_u8(),
        n.domain,
        n.visibility.as_str(),
        n.entity,
        n.description,
        payload,
        n.idempotency_key,
        now,
        n.event_id,
        n.actionable,
        n.group_field,
        n.group_value,
    ];
    if !upsert || n.idempotency_key.is_none() {
        conn.with_statement(INSERT_SQL, |stmt| Ok(stmt.execute(args)?))?;
        return Ok((conn.last_insert_rowid(), true));
    }
    // Nearly every upsert creates its row: try the insert first, so that the common case is
    // one statement (the unique index answers the existence check while inserting).
    if conn.with_statement(INSERT_UNLESS_KEY_EXISTS_SQL, |stmt| Ok(stmt.execute(args)?))? > 0 {
        return Ok((conn.last_insert_rowid(), true));
    }
    // An existing row keeps its id, statuses and history; its content is refreshed from the
    // newer event, as an upsert promises.
    let id: i64 = conn.with_statement(
        "SELECT id FROM notifications WHERE idempotency_key = ?1",
        |stmt| Ok(stmt.query_row([&n.idempotency_key], |r| r.get(0))?),
    )?;
    conn.with_statement(
        "UPDATE notifications SET payload = ?2, description = ?3, updated_at = ?4 WHERE id = ?1",
        |stmt| Ok(stmt.execute(params![id, payload, n.description, now])?),
    )?;
    Ok((id, false))
}

pub(crate) fn find_open_by_group(
    conn: &Connection,
    domain: &str,
    group_field: &str,
    group_value: &str,
) -> Result<Option<Notification>> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM notifications \
         WHERE domain = ?1 AND group_field = ?2 AND group_value = ?3 AND agent_status != 'resolved' \
         ORDER BY id DESC LIMIT 1"
    ))?;
    let mut rows = stmt.query(params![domain, group_field, group_value])?;
    match rows.next()? {
        Some(row) => Ok(Some(from_row(row)?)),
        None => Ok(None),
    }
}

/// The newest open notification of a group as the projector needs it: its id and its
/// payload, nothing else. Reading the whole row (two dozen columns, each copied into a
/// `String`) for every update and resolve was a tenth of the projector's time in the e2e
/// profile.
pub(crate) fn find_open_in_group(
    conn: &impl Prepare,
    domain: &str,
    group_field: &str,
    group_value: &str,
) -> Result<Option<OpenInGroup>> {
    conn.with_statement(
        "SELECT id, payload FROM notifications \
         WHERE domain = ?1 AND group_field = ?2 AND group_value = ?3 AND agent_status != 'resolved' \
         ORDER BY id DESC LIMIT 1",
        |stmt| {
            let mut rows = stmt.query(params![domain, group_field, group_value])?;
            match rows.next()? {
                Some(row) => Ok(Some(OpenInGroup {
                    id: row.get(0)?,
                    payload: row.get(1)?,
                })),
                None => Ok(None),
            }
        },
    )
}

/// An open notification found by [`crate::WriteTx::find_open_in_group`]: the payload stays JSON text until
/// someone needs it (a resolve does not).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenInGroup {
    /// The notification's id.
    pub id: i64,
    payload: String,
}

impl OpenInGroup {
    /// The stored payload, parsed.
    pub fn payload(&self) -> Result<Map<String, Value>> {
        json_object("payload", &self.payload)
    }
}

/// Resolves a notification the caller found open in this same transaction (the lifecycle
/// projector): one guarded `UPDATE`, without reading the row before and after as
/// [`resolve`] does for the API's answer. `false` if it is missing or already resolved.
pub(crate) fn resolve_found(
    conn: &impl Prepare,
    id: i64,
    resolution: &Map<String, Value>,
) -> Result<bool> {
    let text = serde_json::to_string(resolution).map_err(|source| StorageError::Json {
        field: "resolution",
        source,
    })?;
    let now = timefmt::format(timefmt::now());
    let changed = conn.with_statement(
        "UPDATE notifications SET agent_status = 'resolved', resolution = ?2, \
         resolved_at = ?3, updated_at = ?3 WHERE id = ?1 AND agent_status != 'resolved'",
        |stmt| Ok(stmt.execute(params![id, text, now])?),
    )?;
    Ok(changed > 0)
}

pub(crate) fn update_content(
    conn: &impl Prepare,
    id: i64,
    payload: &Map<String, Value>,
    description: &str,
    meaningful: bool,
) -> Result<bool> {
    let payload = encode_payload(payload)?;
    let now = timefmt::format(timefmt::now());
    let args = params![id, payload, description, now];
    if !meaningful {
        let changed = conn.with_statement(
            "UPDATE notifications SET payload = ?2, description = ?3, updated_at = ?4 \
             WHERE id = ?1",
            |stmt| Ok(stmt.execute(args)?),
        )?;
        return Ok(changed > 0);
    }
    // A meaningful update makes the row unseen. Most rows it reaches are unseen already,
    // and SQLite rewrites the entry of every index whose column is assigned, changed or not:
    // assigning `human_status` moved a leaf page of its index into the WAL for nothing (600
    // updates of random rows: 1,008 WAL frames with the assignment, 579 without). So the
    // unseen case leaves the column out, and only a seen row takes the second statement.
    let changed = conn.with_statement(
        "UPDATE notifications SET payload = ?2, description = ?3, updated_at = ?4 \
         WHERE id = ?1 AND human_status = 'unseen'",
        |stmt| Ok(stmt.execute(args)?),
    )?;
    if changed > 0 {
        return Ok(true);
    }
    let changed = conn.with_statement(
        "UPDATE notifications SET payload = ?2, description = ?3, updated_at = ?4, \
         human_status = 'unseen', seen_at = NULL WHERE id = ?1",
        |stmt| Ok(stmt.execute(args)?),
    )?;
    Ok(changed > 0)
}

fn require(conn: &Connection, id: i64) -> Result<std::result::Result<Notification, Transition>> {
    Ok(get(conn, id)?.ok_or(Transition::NotFound))
}

fn changed(conn: &Connection, id: i64) -> Result<Transition> {
    Ok(match get(conn, id)? {
        Some(n) => Transition::Changed(n),
        None => Transition::NotFound,
    })
}

/// See [`crate::WriteTx::set_seen`].
pub(crate) fn set_seen(conn: &Connection, id: i64, seen: bool) -> Result<Transition> {
    let current = match require(conn, id)? {
        Ok(n) => n,
        Err(t) => return Ok(t),
    };
    let target = if seen {
        HumanStatus::Seen
    } else {
        HumanStatus::Unseen
    };
    if current.human_status == target {
        return Ok(Transition::Unchanged(current));
    }
    let now = timefmt::format(timefmt::now());
    let seen_at = seen.then(|| now.clone());
    conn.prepare_cached(
        "UPDATE notifications SET human_status = ?2, seen_at = ?3, updated_at = ?4 WHERE id = ?1",
    )?
    .execute(params![id, target.as_str(), seen_at, now])?;
    changed(conn, id)
}

/// See [`crate::WriteTx::mark_all_seen`].
pub(crate) fn mark_all_seen(conn: &Connection, filter: &NotificationFilter) -> Result<u64> {
    let filter = NotificationFilter {
        human_status: None,
        ..filter.clone()
    };
    let (where_sql, filter_values) = filter.where_clause();
    let unseen = if where_sql.is_empty() {
        "WHERE human_status = 'unseen'"
    } else {
        " AND human_status = 'unseen'"
    };
    // `?1` first: SQLite numbers each later bare `?` one past the largest index seen so far.
    let mut values = vec![SqlValue::Text(timefmt::format(timefmt::now()))];
    values.extend(filter_values);
    let sql = format!(
        "UPDATE notifications SET human_status = 'seen', seen_at = ?1, updated_at = ?1 \
         {where_sql}{unseen}"
    );
    let changed = conn
        .prepare_cached(&sql)?
        .execute(params_from_iter(values.iter()))?;
    Ok(changed as u64)
}

fn empty_agent(agent_id: &str) -> Option<Transition> {
    agent_id
        .trim()
        .is_empty()
        .then(|| Transition::Invalid("agent_id must not be empty".to_owned()))
}

/// See [`crate::WriteTx::claim`].
pub(crate) fn claim(conn: &Connection, id: i64, agent_id: &str) -> Result<Transition> {
    if let Some(t) = empty_agent(agent_id) {
        return Ok(t);
    }
    let current = match require(conn, id)? {
        Ok(n) => n,
        Err(t) => return Ok(t),
    };
    match current.agent_status {
        AgentStatus::None => {
            let now = timefmt::format(timefmt::now());
            conn.prepare_cached(
                "UPDATE notifications SET agent_status = 'claimed', agent_id = ?2, claimed_at = ?3, \
                 updated_at = ?3 WHERE id = ?1",
            )?
            .execute(params![id, agent_id, now])?;
            changed(conn, id)
        }
        AgentStatus::Claimed | AgentStatus::InProgress
            if current.agent_id.as_deref() == Some(agent_id) =>
        {
            Ok(Transition::Unchanged(current))
        }
        AgentStatus::Claimed | AgentStatus::InProgress | AgentStatus::Resolved => {
            Ok(Transition::Conflict { current })
        }
    }
}

/// See [`crate::WriteTx::set_agent_status`].
pub(crate) fn set_agent_status(
    conn: &Connection,
    id: i64,
    status: AgentStatus,
    agent_id: &str,
) -> Result<Transition> {
    if let Some(t) = empty_agent(agent_id) {
        return Ok(t);
    }
    let current = match require(conn, id)? {
        Ok(n) => n,
        Err(t) => return Ok(t),
    };
    if current.agent_status == AgentStatus::Resolved {
        return Ok(Transition::Conflict { current });
    }
    if status == AgentStatus::Resolved {
        return Ok(Transition::Invalid(
            "use resolve to resolve a notification: it records the resolution".to_owned(),
        ));
    }
    let holder = current.agent_id.clone();
    let held_by_caller = holder.as_deref() == Some(agent_id);
    match (current.agent_status, status) {
        (AgentStatus::None, AgentStatus::None) => Ok(Transition::Unchanged(current)),
        (AgentStatus::None, AgentStatus::Claimed) => claim(conn, id, agent_id),
        (AgentStatus::None, _) => Ok(Transition::Invalid(format!(
            "notification {id} is not claimed; claim it before setting status {status}"
        ))),
        (_, _) if !held_by_caller => Ok(Transition::Invalid(format!(
            "notification {id} is claimed by {}; only the claiming agent may change its status",
            holder.as_deref().unwrap_or("another agent")
        ))),
        (from, to) if from == to => Ok(Transition::Unchanged(current)),
        (_, AgentStatus::None) => {
            let now = timefmt::format(timefmt::now());
            conn.prepare_cached(
                "UPDATE notifications SET agent_status = 'none', agent_id = NULL, claimed_at = NULL, \
                 updated_at = ?2 WHERE id = ?1",
            )?
            .execute(params![id, now])?;
            changed(conn, id)
        }
        (_, to) => {
            let now = timefmt::format(timefmt::now());
            conn.prepare_cached(
                "UPDATE notifications SET agent_status = ?2, updated_at = ?3 WHERE id = ?1",
            )?
            .execute(params![id, to.as_str(), now])?;
            changed(conn, id)
        }
    }
}

/// See [`crate::WriteTx::resolve_notification`].
pub(crate) fn resolve(conn: &Connection, id: i64, resolution: &Value) -> Result<Transition> {
    if !resolution.is_object() {
        return Ok(Transition::Invalid(
            "resolution must be a JSON object".to_owned(),
        ));
    }
    let current = match require(conn, id)? {
        Ok(n) => n,
        Err(t) => return Ok(t),
    };
    if current.agent_status == AgentStatus::Resolved {
        return Ok(Transition::Conflict { current });
    }
    let text = serde_json::to_string(resolution).map_err(|source| StorageError::Json {
        field: "resolution",
        source,
    })?;
    let now = timefmt::format(timefmt::now());
    conn.prepare_cached(
        "UPDATE notifications SET agent_status = 'resolved', resolution = ?2, resolved_at = ?3, \
         updated_at = ?3 WHERE id = ?1",
    )?
    .execute(params![id, text, now])?;
    changed(conn, id)
}

#[cfg(test)]
mod tests {
    //! The JSON fast path (`list_json` / `get_json`) against the typed path plus `serde`, the
    //! page plans against each other, and the statement cache against re-preparation.

    use rusqlite::StatementStatus;
    use serde_json::json;

    use super::*;
    use crate::migrations::migrated_in_memory as open;

    fn new(i: usize) -> NewNotification {
        let payload = json!({
            "n": i,
            "slug": format!("slug-{i}"),
            "text": "quote \" backslash \\ newline \n tab \t control \u{1} unicode é ✓ 😀",
            "nested": {"list": [1, 2.5, -3e-7, null, true], "empty": {}},
            "big": 12_345_678_901_234_i64,
        });
        NewNotification {
            event_type: format!("acme.order.n{}", i % 3),
            version: 1 + (i % 2) as u32,
            source: "shop".into(),
            level: EventLevel::ALL[i % 4],
            domain: if i.is_multiple_of(2) { "even" } else { "odd" }.into(),
            visibility: if i.is_multiple_of(3) {
                EventVisibility::Public
            } else {
                EventVisibility::Local
            },
            entity: i.is_multiple_of(2).then(|| format!("order/{i} \"x\"")),
            description: format!("order {i} — «described» \u{7f}"),
            payload: payload.as_object().cloned().unwrap_or_default(),
            idempotency_key: (i % 4 != 1).then(|| format!("key-{i}")),
            event_id: (!i.is_multiple_of(5)).then(|| format!("event-{i}")),
            actionable: i % 2 == 1,
            group_field: (i % 3 != 2).then(|| "order_id".to_owned()),
            group_value: (i % 3 != 2).then(|| i.to_string()),
        }
    }

    /// `n` rows in every state the state machine allows.
    fn seeded(n: usize) -> Connection {
        let conn = open();
        for i in 0..n {
            let (id, _) = insert(&conn, &new(i), false).unwrap();
            match i % 6 {
                1 => assert!(set_seen(&conn, id, true).unwrap().is_changed()),
                2 => assert!(claim(&conn, id, "agent-7").unwrap().is_changed()),
                3 => {
                    claim(&conn, id, "agent \"q\"").unwrap();
                    let t = set_agent_status(&conn, id, AgentStatus::InProgress, "agent \"q\"");
                    assert!(t.unwrap().is_changed());
                }
                4 => {
                    let resolution = json!({"summary": "done ✓", "link": null, "n": [1.5]});
                    assert!(resolve(&conn, id, &resolution).unwrap().is_changed());
                    set_seen(&conn, id, true).unwrap();
                }
                _ => {}
            }
        }
        conn
    }

    fn filters() -> Vec<NotificationFilter> {
        let none = NotificationFilter::default;
        let mut filters = vec![
            none(),
            NotificationFilter {
                limit: Some(7),
                offset: Some(3),
                ..none()
            },
            NotificationFilter {
                limit: Some(0),
                ..none()
            },
            NotificationFilter {
                limit: Some(1000),
                ..none()
            },
            NotificationFilter {
                offset: Some(10_000),
                ..none()
            },
            NotificationFilter {
                level: Some(EventLevel::Workflow),
                ..none()
            },
            NotificationFilter {
                domain: Some("even".into()),
                limit: Some(5),
                offset: Some(2),
                ..none()
            },
            NotificationFilter {
                domain: Some("nowhere".into()),
                ..none()
            },
            NotificationFilter {
                human_status: Some(HumanStatus::Unseen),
                visibility: Some(EventVisibility::Local),
                ..none()
            },
            NotificationFilter {
                since: Some(OffsetDateTime::UNIX_EPOCH),
                agent_status: Some(AgentStatus::None),
                ..none()
            },
            NotificationFilter {
                since: Some(OffsetDateTime::now_utc() + time::Duration::days(1)),
                ..none()
            },
        ];
        for status in [
            AgentStatus::None,
            AgentStatus::Claimed,
            AgentStatus::InProgress,
            AgentStatus::Resolved,
        ] {
            filters.push(NotificationFilter {
                agent_status: Some(status),
                limit: Some(3),
                ..none()
            });
        }
        filters
    }

    fn assert_same_json(conn: &Connection, filter: &NotificationFilter) {
        let typed = serde_json::to_string(&list(conn, None, filter).unwrap()).unwrap();
        let fast = String::from_utf8(list_json(conn, None, filter).unwrap()).unwrap();
        assert_eq!(fast, typed, "list of {filter:?}");
    }

    #[test]
    fn row_json_matches_serde() {
        let conn = seeded(60);
        for filter in filters() {
            assert_same_json(&conn, &filter);
        }
        let max: i64 = conn
            .query_row("SELECT max(id) FROM notifications", [], |r| r.get(0))
            .unwrap();
        for id in 0..=max + 1 {
            let typed = get(&conn, id)
                .unwrap()
                .map(|n| serde_json::to_string(&n).unwrap());
            let fast = get_json(&conn, id)
                .unwrap()
                .map(|b| String::from_utf8(b).unwrap());
            assert_eq!(fast, typed, "get {id}");
        }
        // the empty table
        assert_same_json(&open(), &NotificationFilter::default());
    }

    #[test]
    fn hand_edited_rows_read_the_same_as_typed() {
        let conn = seeded(3);
        // RFC 3339 forms other than the stored one, and JSON with whitespace.
        conn.execute(
            "UPDATE notifications SET created_at = '2026-03-01T14:00:00+02:00', \
             seen_at = '2026-03-01T12:00:00.5Z', payload = ' { \"b\" : [ 1 , 2 ] , \"a\" : {} } ', \
             resolution = ' null ' WHERE id = 1",
            [],
        )
        .unwrap();
        let filter = NotificationFilter::default();
        let typed = serde_json::to_value(list(&conn, None, &filter).unwrap()).unwrap();
        let fast: Value =
            serde_json::from_slice(&list_json(&conn, None, &filter).unwrap()).unwrap();
        assert_eq!(fast, typed);
        let typed = serde_json::to_value(get(&conn, 1).unwrap()).unwrap();
        let fast: Value = serde_json::from_slice(&get_json(&conn, 1).unwrap().unwrap()).unwrap();
        assert_eq!(fast, typed);
        assert_eq!(fast["created_at"], "2026-03-01T12:00:00.000000Z");
    }

    #[test]
    fn corrupt_rows_fail_both_paths() {
        let corruptions = [
            "payload = '[1, 2]'",
            "payload = '{\"a\": '",
            "payload = '{} {}'",
            "resolution = 'nope'",
            "level = 9",
            "visibility = 'galactic'",
            "updated_at = 'yesterday'",
            "created_at = '2026-02-30T00:00:00.000000Z'",
            "claimed_at = '2026-01-01T24:00:00.000000Z'",
            "version = -1",
            "description = CAST(X'C328' AS TEXT)",
            "event_type = X'00'",
            "entity = X'FF'",
        ];
        for corruption in corruptions {
            let conn = seeded(2);
            // `CHECK` constraints guard the status columns; lift them for this test only.
            conn.execute_batch("PRAGMA ignore_check_constraints = ON")
                .unwrap();
            conn.execute(
                &format!("UPDATE notifications SET {corruption} WHERE id = 2"),
                [],
            )
            .unwrap();
            let filter = NotificationFilter::default();
            assert!(
                list(&conn, None, &filter).is_err(),
                "typed list accepted {corruption}"
            );
            assert!(
                list_json(&conn, None, &filter).is_err(),
                "json list accepted {corruption}"
            );
            assert!(get(&conn, 2).is_err(), "typed get accepted {corruption}");
            assert!(
                get_json(&conn, 2).is_err(),
                "json get accepted {corruption}"
            );
            assert!(
                get_json(&conn, 1).unwrap().is_some(),
                "other rows still read"
            );
        }
    }

    #[test]
    fn stored_form_check_agrees_with_parse_and_format() {
        for text in [
            "2026-03-01T12:00:00.123456Z",
            "0000-01-01T00:00:00.000000Z",
            "9999-12-31T23:59:59.999999Z",
            "2024-02-29T00:00:00.000000Z",
        ] {
            assert!(is_stored_form(text), "{text}");
            let round = timefmt::format(timefmt::parse("t", text).unwrap());
            assert_eq!(round, text);
        }
        for text in [
            "2025-02-29T00:00:00.000000Z",
            "2026-13-01T00:00:00.000000Z",
            "2026-00-01T00:00:00.000000Z",
            "2026-01-00T00:00:00.000000Z",
            "2026-01-01T00:60:00.000000Z",
            "2026-01-01T00:00:60.000000Z",
            "2026-01-01T00:00:00.000000+",
            "2026-01-01 00:00:00.000000Z",
            "2026-01-01T00:00:00.00000Z",
            "2026-01-01T00:00:00.0000000Z",
            "+026-01-01T00:00:00.000000Z",
        ] {
            assert!(!is_stored_form(text), "{text}");
        }
    }

    /// Rows of a page read with `plan`, whatever `plan_page` would choose.
    fn ids_with(conn: &Connection, filter: &NotificationFilter, plan: PagePlan) -> Vec<i64> {
        let mut page = plan_page(conn, None, filter).unwrap();
        if page.plan != PagePlan::Empty {
            page.plan = plan;
        }
        let mut ids = Vec::new();
        for_each_row(conn, filter, &page, |row| {
            ids.push(row.get(0)?);
            Ok(())
        })
        .unwrap();
        ids
    }

    #[test]
    fn both_page_plans_return_the_same_rows() {
        let conn = seeded(120);
        // equal `created_at` for some rows: the id breaks the tie the same way in both plans
        conn.execute(
            "UPDATE notifications SET created_at = '2026-01-01T00:00:00.000000Z' WHERE id % 7 = 0",
            [],
        )
        .unwrap();
        for filter in filters() {
            for (limit, offset) in [(50, 0), (10, 5), (200, 0), (3, 100)] {
                let filter = NotificationFilter {
                    limit: Some(limit),
                    offset: Some(offset),
                    ..filter.clone()
                };
                assert_eq!(
                    ids_with(&conn, &filter, PagePlan::NewestFirst),
                    ids_with(&conn, &filter, PagePlan::Planner),
                    "{filter:?}"
                );
            }
        }
    }

    fn query_plan(conn: &Connection, sql: &str, values: &[SqlValue]) -> String {
        let mut stmt = conn.prepare(&format!("EXPLAIN QUERY PLAN {sql}")).unwrap();
        let rows = stmt
            .query_map(params_from_iter(values.iter()), |r| r.get::<_, String>(3))
            .unwrap();
        rows.collect::<rusqlite::Result<Vec<_>>>()
            .unwrap()
            .join("; ")
    }

    /// The plan of a first page of `filter` (the list query's shape), its equality terms
    /// written `unindexed` or not.
    fn page_query_plan(conn: &Connection, filter: &NotificationFilter, unindexed: bool) -> String {
        let (where_sql, mut values) = filter.where_clause_with(unindexed);
        values.push(SqlValue::Integer(0));
        query_plan(
            conn,
            &format!(
                "SELECT {COLUMNS} FROM notifications {where_sql} \
                 ORDER BY created_at DESC, id DESC LIMIT 10 OFFSET ?"
            ),
            &values,
        )
    }

    #[test]
    fn broad_filters_walk_created_at_and_rare_ones_use_their_index() {
        let conn = seeded(400);
        // two in three rows are unseen
        let unseen = NotificationFilter {
            human_status: Some(HumanStatus::Unseen),
            limit: Some(10),
            ..NotificationFilter::default()
        };
        assert_eq!(
            plan_page(&conn, None, &unseen).unwrap().plan,
            PagePlan::NewestFirst
        );
        let plan = page_query_plan(&conn, &unseen, true);
        assert!(plan.contains("idx_notifications_created_at"), "{plan}");
        // not even for the id tie-break (schema v5's index orders by both)
        assert!(!plan.contains("TEMP B-TREE"), "{plan}");
        let plan = page_query_plan(&conn, &NotificationFilter::default(), false);
        assert!(plan.contains("idx_notifications_created_at"), "{plan}");
        assert!(!plan.contains("TEMP B-TREE"), "{plan}");

        let rare = NotificationFilter {
            domain: Some("even".into()),
            agent_status: Some(AgentStatus::Resolved),
            ..NotificationFilter::default()
        };
        assert_eq!(
            plan_page(&conn, None, &rare).unwrap().plan,
            PagePlan::Planner
        );
        let nothing = NotificationFilter {
            domain: Some("nowhere".into()),
            ..NotificationFilter::default()
        };
        assert_eq!(
            plan_page(&conn, None, &nothing).unwrap().plan,
            PagePlan::Empty
        );
        let deep = NotificationFilter {
            human_status: Some(HumanStatus::Unseen),
            offset: Some(10_000),
            ..NotificationFilter::default()
        };
        assert_eq!(plan_page(&conn, None, &deep).unwrap().plan, PagePlan::Empty);
        assert!(list(&conn, None, &deep).unwrap().notifications.is_empty());
        assert_eq!(
            list(&conn, None, &deep).unwrap().total,
            list(&conn, None, &unseen).unwrap().total
        );
    }

    /// Schema v6 dropped the single-column `domain` index: the group index, which leads
    /// with `domain`, must still answer domain filters (count and page) without a scan.
    #[test]
    fn domain_filters_use_the_group_index() {
        let conn = seeded(400);
        let filter = NotificationFilter {
            domain: Some("even".into()),
            ..NotificationFilter::default()
        };
        let (where_sql, values) = filter.where_clause();
        let plan = query_plan(
            &conn,
            &format!("SELECT count(*) FROM notifications {where_sql}"),
            &values,
        );
        assert!(plan.contains("idx_notifications_group"), "{plan}");
        let plan = page_query_plan(&conn, &filter, false);
        assert!(plan.contains("idx_notifications_group"), "{plan}");
        assert_eq!(list(&conn, None, &filter).unwrap().total, 200);
    }

    /// SQLite rewrites an index entry whenever its column is assigned, changed or not, so a
    /// meaningful update must not assign `human_status` to a row that is unseen already.
    /// An `UPDATE OF human_status` trigger fires exactly when the column is assigned.
    #[test]
    fn meaningful_update_assigns_human_status_only_to_a_seen_row() {
        let conn = seeded(2); // row 1 unseen, row 2 seen
        conn.execute_batch(
            "CREATE TEMP TABLE assigned (id INTEGER);
             CREATE TEMP TRIGGER human_status_assigned AFTER UPDATE OF human_status
             ON main.notifications BEGIN INSERT INTO assigned VALUES (new.id); END;",
        )
        .unwrap();
        let payload = json!({"step": 2}).as_object().cloned().unwrap();
        for id in [1, 2] {
            assert!(update_content(&conn, id, &payload, "next", true).unwrap());
            let n = get(&conn, id).unwrap().unwrap();
            assert_eq!(
                (n.human_status, n.seen_at, &n.payload),
                (HumanStatus::Unseen, None, &payload)
            );
        }
        assert!(!update_content(&conn, 99, &payload, "next", true).unwrap());
        let assigned: Vec<i64> = conn
            .prepare("SELECT id FROM assigned")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap();
        assert_eq!(assigned, [2]);
    }

    #[test]
    fn list_statement_is_not_reprepared_between_pages() {
        let conn = seeded(30);
        for offset in 0..5 {
            let filter = NotificationFilter {
                offset: Some(offset),
                ..NotificationFilter::default()
            };
            list_json(&conn, None, &filter).unwrap();
            list(&conn, None, &filter).unwrap();
        }
        let stmt = conn
            .prepare_cached(&format!(
                "SELECT {COLUMNS} FROM notifications  \
                 ORDER BY created_at DESC, id DESC LIMIT 50 OFFSET ?"
            ))
            .unwrap();
        assert_eq!(stmt.get_status(StatementStatus::RePrepare), 0);
        assert_eq!(
            stmt.get_status(StatementStatus::Run),
            10,
            "the cached statement ran"
        );
    }

    /// A WAL database file with `n` notifications, its writer and a second connection
    /// reading it (as a pooled reader does).
    fn writer_and_reader(n: usize) -> (tempfile::TempDir, Connection, Connection) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events.db");
        let mut writer = Connection::open(&path).unwrap();
        writer
            .query_row("PRAGMA journal_mode = WAL", [], |_| Ok(()))
            .unwrap();
        crate::migrations::migrate(&mut writer, &path).unwrap();
        for i in 0..n {
            insert(&writer, &new(i), false).unwrap();
        }
        let reader = Connection::open(&path).unwrap();
        (dir, writer, reader)
    }

    /// A read connection answers a list it gave since the last commit with the same bytes
    /// (remembered, not read again), and reads again after any commit of another connection.
    #[test]
    fn remembered_lists_follow_commits_of_other_connections() {
        let (_dir, writer, reader) = writer_and_reader(3);
        let cache = CountCache::default();
        let first_two = NotificationFilter {
            limit: Some(2),
            ..NotificationFilter::default()
        };
        let list = |filter: &NotificationFilter| {
            reader.execute_batch("BEGIN").unwrap();
            let json = list_json(&reader, Some(&cache), filter).unwrap();
            reader.execute_batch("COMMIT").unwrap();
            json
        };
        let page = list(&first_two);
        let parsed: Value = serde_json::from_slice(&page).unwrap();
        assert_eq!(parsed["notifications"].as_array().unwrap().len(), 2);
        assert_eq!(parsed["total"], 3);
        // no commit in between: the remembered bytes are the answer
        cache
            .pages
            .borrow_mut()
            .values_mut()
            .for_each(|body| body.extend_from_slice(b" "));
        assert_eq!(list(&first_two), [page.as_slice(), b" "].concat());
        // another filter is its own answer
        let all: Value = serde_json::from_slice(&list(&NotificationFilter::default())).unwrap();
        assert_eq!(all["notifications"].as_array().unwrap().len(), 3);

        insert(&writer, &new(3), false).unwrap();
        let after: Value = serde_json::from_slice(&list(&first_two)).unwrap();
        assert_eq!(after["total"], 4, "a commit elsewhere: read again");
        assert_ne!(after["notifications"][0], parsed["notifications"][0]);
    }

    /// The remembered totals of a read connection follow every commit of another
    /// connection, and stay for reads in between.
    #[test]
    fn remembered_totals_follow_commits_of_other_connections() {
        let (_dir, writer, reader) = writer_and_reader(10);
        let cache = CountCache::default();
        let unseen = NotificationFilter {
            human_status: Some(HumanStatus::Unseen),
            ..NotificationFilter::default()
        };
        let all = NotificationFilter::default();
        let totals = || {
            reader.execute_batch("BEGIN").unwrap();
            let total = |filter: &NotificationFilter| {
                let json = list_json(&reader, Some(&cache), filter).unwrap();
                let json: Value = serde_json::from_slice(&json).unwrap();
                json["total"].as_u64().unwrap()
            };
            let out = (total(&all), total(&unseen));
            reader.execute_batch("COMMIT").unwrap();
            out
        };
        assert_eq!(totals(), (10, 10));
        assert_eq!(cache.totals.borrow().len(), 2, "both counts remembered");
        // a page read without a commit in between comes from the remembered counts
        // (remembered answers forgotten, or they would answer without counting)
        cache.pages.borrow_mut().clear();
        let remembered = cache.totals.borrow().clone();
        cache
            .totals
            .borrow_mut()
            .values_mut()
            .for_each(|total| *total += 1000);
        assert_eq!(
            totals(),
            (1010, 1010),
            "no commit: counts are not taken again"
        );
        *cache.totals.borrow_mut() = remembered;
        cache.pages.borrow_mut().clear();

        let (id, _) = insert(&writer, &new(10), false).unwrap();
        assert_eq!(totals(), (11, 11));
        set_seen(&writer, id, true).unwrap();
        assert_eq!(totals(), (11, 10));
        writer
            .execute("DELETE FROM notifications WHERE id = ?1", [id])
            .unwrap();
        assert_eq!(totals(), (10, 10));
        // the struct list (`Reader::list_notifications`) follows commits the same way
        insert(&writer, &new(11), false).unwrap();
        reader.execute_batch("BEGIN").unwrap();
        let page = list(&reader, Some(&cache), &all).unwrap();
        reader.execute_batch("COMMIT").unwrap();
        assert_eq!(page.total, 11);
    }

    #[test]
    fn total_follows_inserts_state_changes_and_deletes() {
        let conn = seeded(20);
        let count = |filter: &NotificationFilter| {
            let typed = list(&conn, None, filter).unwrap().total;
            let json: Value =
                serde_json::from_slice(&list_json(&conn, None, filter).unwrap()).unwrap();
            assert_eq!(json["total"], typed);
            typed
        };
        let unseen = NotificationFilter {
            human_status: Some(HumanStatus::Unseen),
            ..NotificationFilter::default()
        };
        let all = NotificationFilter::default();
        let (all0, unseen0) = (count(&all), count(&unseen));
        assert_eq!(all0, 20);
        let (id, _) = insert(&conn, &new(100), false).unwrap();
        assert_eq!((count(&all), count(&unseen)), (all0 + 1, unseen0 + 1));
        set_seen(&conn, id, true).unwrap();
        assert_eq!((count(&all), count(&unseen)), (all0 + 1, unseen0));
        set_seen(&conn, id, false).unwrap();
        assert_eq!(count(&unseen), unseen0 + 1);
        conn.execute("DELETE FROM notifications WHERE id = ?1", [id])
            .unwrap();
        assert_eq!((count(&all), count(&unseen)), (all0, unseen0));
    }
}
