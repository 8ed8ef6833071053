//! Notifications: rows, filters, and the human/agent state machine of brief §6.
//!
//! Every function here takes a plain `&Connection` so the same code serves the writer's
//! transaction ([`crate::WriteTx`]) and pooled readers ([`crate::Reader`]).

use std::fmt;
use std::str::FromStr;

use events_envelope::{EventEnvelope, EventLevel, EventVisibility};
use rusqlite::types::Value as SqlValue;
use rusqlite::{Connection, OptionalExtension, Row, params, params_from_iter};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use time::OffsetDateTime;

use crate::error::ParseStatusError;
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
        let mut clauses: Vec<&str> = Vec::new();
        let mut values: Vec<SqlValue> = Vec::new();
        if let Some(level) = self.level {
            clauses.push("level = ?");
            values.push(SqlValue::Integer(i64::from(level.as_u8())));
        }
        if let Some(domain) = &self.domain {
            clauses.push("domain = ?");
            values.push(SqlValue::Text(domain.clone()));
        }
        if let Some(status) = self.human_status {
            clauses.push("human_status = ?");
            values.push(SqlValue::Text(status.as_str().to_owned()));
        }
        if let Some(status) = self.agent_status {
            clauses.push("agent_status = ?");
            values.push(SqlValue::Text(status.as_str().to_owned()));
        }
        if let Some(visibility) = self.visibility {
            clauses.push("visibility = ?");
            values.push(SqlValue::Text(visibility.as_str().to_owned()));
        }
        if let Some(since) = self.since {
            clauses.push("created_at >= ?");
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

pub(crate) fn get(conn: &Connection, id: i64) -> Result<Option<Notification>> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM notifications WHERE id = ?1"
    ))?;
    let mut rows = stmt.query([id])?;
    match rows.next()? {
        Some(row) => Ok(Some(from_row(row)?)),
        None => Ok(None),
    }
}

pub(crate) fn list(conn: &Connection, filter: &NotificationFilter) -> Result<NotificationPage> {
    let (where_sql, mut values) = filter.where_clause();
    let total: i64 = conn
        .prepare_cached(&format!("SELECT count(*) FROM notifications {where_sql}"))?
        .query_row(params_from_iter(values.iter()), |r| r.get(0))?;
    let limit = filter.effective_limit();
    let offset = filter.offset.unwrap_or(0);
    values.push(SqlValue::Integer(i64::from(limit)));
    values.push(SqlValue::Integer(i64::from(offset)));
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM notifications {where_sql} \
         ORDER BY created_at DESC, id DESC LIMIT ? OFFSET ?"
    ))?;
    let mut rows = stmt.query(params_from_iter(values.iter()))?;
    let mut notifications = Vec::new();
    while let Some(row) = rows.next()? {
        notifications.push(from_row(row)?);
    }
    Ok(NotificationPage {
        notifications,
        total: u64::try_from(total).unwrap_or(0),
        limit,
        offset,
    })
}

const INSERT_SQL: &str = "INSERT INTO notifications (event_type, version, source, level, domain, \
    visibility, entity, description, payload, idempotency_key, created_at, updated_at, event_id, \
    actionable, group_field, group_value) \
    VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?11, ?12, ?13, ?14, ?15)";

pub(crate) fn insert(conn: &Connection, n: &NewNotification, upsert: bool) -> Result<(i64, bool)> {
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
        conn.prepare_cached(INSERT_SQL)?.execute(args)?;
        return Ok((conn.last_insert_rowid(), true));
    }
    // An existing row keeps its id, statuses and history; its content is refreshed from the
    // newer event, as an upsert promises.
    let existing: Option<i64> = conn
        .prepare_cached("SELECT id FROM notifications WHERE idempotency_key = ?1")?
        .query_row([&n.idempotency_key], |r| r.get(0))
        .optional()?;
    match existing {
        Some(id) => {
            conn.prepare_cached(
                "UPDATE notifications SET payload = ?2, description = ?3, updated_at = ?4 WHERE id = ?1",
            )?
            .execute(params![id, payload, n.description, now])?;
            Ok((id, false))
        }
        None => {
            conn.prepare_cached(INSERT_SQL)?.execute(args)?;
            Ok((conn.last_insert_rowid(), true))
        }
    }
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

pub(crate) fn update_content(
    conn: &Connection,
    id: i64,
    payload: &Map<String, Value>,
    description: &str,
    meaningful: bool,
) -> Result<bool> {
    let payload = encode_payload(payload)?;
    let now = timefmt::format(timefmt::now());
    let sql = if meaningful {
        "UPDATE notifications SET payload = ?2, description = ?3, updated_at = ?4, \
         human_status = 'unseen', seen_at = NULL WHERE id = ?1"
    } else {
        "UPDATE notifications SET payload = ?2, description = ?3, updated_at = ?4 WHERE id = ?1"
    };
    let changed = conn
        .prepare_cached(sql)?
        .execute(params![id, payload, description, now])?;
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
