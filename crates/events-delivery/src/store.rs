//! SQL of the delivery tables (`webhooks`, `deliveries`, `delivery_attempts`,
//! `telegram_outbox`), as plain functions on a `rusqlite::Connection` so they run inside
//! whatever transaction the caller holds: the processor's batch transaction for the outbox,
//! an [`EventDb::write`](events_storage::EventDb::write) of the worker or the admin API
//! otherwise.

use events_storage::rusqlite::{self, Connection, OptionalExtension, Row, params};
use serde::{Deserialize, Serialize};
use time::format_description::BorrowedFormatItem;
use time::macros::format_description;
use time::{OffsetDateTime, PrimitiveDateTime, UtcOffset};

use crate::error::{Error, Result};

const STORED: &[BorrowedFormatItem<'static>] =
    format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:6]Z");

/// Formats a time like events-storage does (fixed width, so text order is time order).
pub(crate) fn ts(t: OffsetDateTime) -> String {
    t.to_offset(UtcOffset::UTC)
        .format(STORED)
        .unwrap_or_else(|_| "9999-12-31T23:59:59.999999Z".to_owned())
}

fn parse_ts(text: &str) -> rusqlite::Result<OffsetDateTime> {
    PrimitiveDateTime::parse(text, STORED)
        .map(PrimitiveDateTime::assume_utc)
        .or_else(|_| OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339))
        .map_err(|e| {
            rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Text, Box::new(e))
        })
}

fn get_ts(row: &Row<'_>, idx: &str) -> rusqlite::Result<OffsetDateTime> {
    parse_ts(&row.get::<_, String>(idx)?)
}

fn get_opt_ts(row: &Row<'_>, idx: &str) -> rusqlite::Result<Option<OffsetDateTime>> {
    row.get::<_, Option<String>>(idx)?
        .as_deref()
        .map(parse_ts)
        .transpose()
}

/// A webhook subscription as shown by the API (the secret is never part of it).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Webhook {
    /// Row id.
    pub id: i64,
    /// Destination URL.
    pub url: String,
    /// Event-type globs (`job.*`, `*`).
    pub event_types: Vec<String>,
    /// Free text.
    pub description: String,
    /// Disabled endpoints get no new deliveries and their pending ones wait.
    pub enabled: bool,
    /// Why it was disabled automatically (`410 gone`, `N consecutive failed deliveries`).
    pub disabled_reason: Option<String>,
    /// Deliveries that ended failed in a row.
    pub consecutive_failures: u32,
    /// Until when the previous secret still signs, during a rotation.
    #[serde(with = "time::serde::rfc3339::option")]
    pub previous_secret_until: Option<OffsetDateTime>,
    /// Creation time.
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    /// Last change.
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
}

const WEBHOOK_COLUMNS: &str = "id, url, event_types, description, enabled, disabled_reason, \
     consecutive_failures, previous_secret_until, created_at, updated_at";

fn webhook_from_row(row: &Row<'_>) -> rusqlite::Result<Webhook> {
    let event_types: String = row.get("event_types")?;
    Ok(Webhook {
        id: row.get("id")?,
        url: row.get("url")?,
        event_types: serde_json::from_str(&event_types).map_err(|e| {
            rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Text, Box::new(e))
        })?,
        description: row.get("description")?,
        enabled: row.get("enabled")?,
        disabled_reason: row.get("disabled_reason")?,
        consecutive_failures: row.get("consecutive_failures")?,
        previous_secret_until: get_opt_ts(row, "previous_secret_until")?,
        created_at: get_ts(row, "created_at")?,
        updated_at: get_ts(row, "updated_at")?,
    })
}

/// State of one delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryStatus {
    /// Waiting for its next attempt (or being sent).
    Pending,
    /// A receiver answered 2xx.
    Succeeded,
    /// The schedule ran out, the endpoint answered 410, or a manual attempt failed.
    Failed,
}

impl DeliveryStatus {
    /// Stored text.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
        }
    }

    fn parse(text: &str) -> rusqlite::Result<Self> {
        match text {
            "pending" => Ok(Self::Pending),
            "succeeded" => Ok(Self::Succeeded),
            "failed" => Ok(Self::Failed),
            other => Err(rusqlite::Error::FromSqlConversionFailure(
                0,
                rusqlite::types::Type::Text,
                format!("unknown delivery status {other:?}").into(),
            )),
        }
    }
}

/// Why an attempt was made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Trigger {
    /// By the retry schedule.
    Scheduled,
    /// By an operator (retry of one delivery, recovery of a time range): one shot.
    Manual,
}

impl Trigger {
    /// Stored text.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Scheduled => "scheduled",
            Self::Manual => "manual",
        }
    }

    fn parse(text: &str) -> Self {
        if text == "manual" {
            Self::Manual
        } else {
            Self::Scheduled
        }
    }
}

/// One HTTP exchange with a receiver.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attempt {
    /// When the request started.
    #[serde(with = "time::serde::rfc3339")]
    pub attempted_at: OffsetDateTime,
    /// HTTP status, `None` if there was no answer.
    pub status_code: Option<u16>,
    /// Time to headers and excerpt, in milliseconds.
    pub latency_ms: u64,
    /// First KiB of the response body.
    pub response_excerpt: Option<String>,
    /// Transport error or refusal, if any.
    pub error: Option<String>,
    /// What caused the attempt.
    pub trigger: Trigger,
}

/// One message to one webhook, with its attempt log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Delivery {
    /// Row id (used in the API path).
    pub id: i64,
    /// The `webhook-id` header; receivers dedupe on it.
    pub msg_id: String,
    /// The endpoint.
    pub webhook_id: i64,
    /// Id of the event delivered.
    pub event_id: Option<String>,
    /// Type of the event delivered.
    pub event_type: String,
    /// Current state.
    pub status: DeliveryStatus,
    /// Attempts made so far.
    pub attempts: u32,
    /// When the next attempt is due (pending only).
    #[serde(with = "time::serde::rfc3339::option")]
    pub next_attempt_at: Option<OffsetDateTime>,
    /// Error of the last failed attempt.
    pub last_error: Option<String>,
    /// Enqueue time.
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    /// Last change.
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
    /// Every attempt, oldest first.
    pub attempt_log: Vec<Attempt>,
}

const DELIVERY_COLUMNS: &str = "id, msg_id, webhook_id, event_id, event_type, status, attempts, \
     next_attempt_at, last_error, created_at, updated_at";

fn delivery_from_row(row: &Row<'_>) -> rusqlite::Result<Delivery> {
    Ok(Delivery {
        id: row.get("id")?,
        msg_id: row.get::<_, Option<String>>("msg_id")?.unwrap_or_default(),
        webhook_id: row.get("webhook_id")?,
        event_id: row.get("event_id")?,
        event_type: row.get("event_type")?,
        status: DeliveryStatus::parse(&row.get::<_, String>("status")?)?,
        attempts: row.get("attempts")?,
        next_attempt_at: get_opt_ts(row, "next_attempt_at")?,
        last_error: row.get("last_error")?,
        created_at: get_ts(row, "created_at")?,
        updated_at: get_ts(row, "updated_at")?,
        attempt_log: Vec::new(),
    })
}

// ---------------------------------------------------------------------------------------
// webhooks

pub(crate) struct NewWebhook<'a> {
    pub(crate) url: &'a str,
    pub(crate) event_types: &'a [String],
    pub(crate) description: &'a str,
    pub(crate) secret: &'a str,
}

pub(crate) fn insert_webhook(
    conn: &Connection,
    w: &NewWebhook<'_>,
    now: OffsetDateTime,
) -> Result<i64> {
    let now = ts(now);
    conn.prepare_cached(
        "INSERT INTO webhooks (url, event_types, description, secret, enabled, created_at, updated_at) \
         VALUES (?1, ?2, ?3, ?4, 1, ?5, ?5)",
    )?
    .execute(params![w.url, serde_json::to_string(w.event_types)?, w.description, w.secret, now])?;
    Ok(conn.last_insert_rowid())
}

pub(crate) fn get_webhook(conn: &Connection, id: i64) -> Result<Option<Webhook>> {
    Ok(conn
        .prepare_cached(&format!(
            "SELECT {WEBHOOK_COLUMNS} FROM webhooks WHERE id = ?1"
        ))?
        .query_row([id], webhook_from_row)
        .optional()?)
}

pub(crate) fn list_webhooks(conn: &Connection) -> Result<Vec<Webhook>> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {WEBHOOK_COLUMNS} FROM webhooks ORDER BY id"
    ))?;
    let rows = stmt.query_map([], webhook_from_row)?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// Fields changed by an update; `None` leaves a field alone.
#[derive(Debug, Default)]
pub(crate) struct WebhookChanges<'a> {
    pub(crate) url: Option<&'a str>,
    pub(crate) event_types: Option<&'a [String]>,
    pub(crate) description: Option<&'a str>,
    pub(crate) enabled: Option<bool>,
    /// New secret and how long the current one keeps signing.
    pub(crate) rotate: Option<(&'a str, OffsetDateTime)>,
}

pub(crate) fn update_webhook(
    conn: &Connection,
    id: i64,
    c: &WebhookChanges<'_>,
    now: OffsetDateTime,
) -> Result<bool> {
    let now_text = ts(now);
    let event_types = c.event_types.map(serde_json::to_string).transpose()?;
    let changed = conn
        .prepare_cached(
            "UPDATE webhooks SET \
               url = COALESCE(?2, url), \
               event_types = COALESCE(?3, event_types), \
               description = COALESCE(?4, description), \
               enabled = COALESCE(?5, enabled), \
               consecutive_failures = CASE WHEN ?5 = 1 AND enabled = 0 THEN 0 ELSE consecutive_failures END, \
               disabled_reason = CASE WHEN ?5 = 1 THEN NULL ELSE disabled_reason END, \
               previous_secret = CASE WHEN ?6 IS NULL THEN previous_secret ELSE secret END, \
               previous_secret_until = CASE WHEN ?6 IS NULL THEN previous_secret_until ELSE ?7 END, \
               secret = COALESCE(?6, secret), \
               updated_at = ?8 \
             WHERE id = ?1",
        )?
        .execute(params![
            id,
            c.url,
            event_types,
            c.description,
            c.enabled,
            c.rotate.map(|(s, _)| s),
            c.rotate.map(|(_, until)| ts(until)),
            now_text,
        ])?;
    Ok(changed > 0)
}

pub(crate) fn delete_webhook(conn: &Connection, id: i64) -> Result<bool> {
    Ok(conn
        .prepare_cached("DELETE FROM webhooks WHERE id = ?1")?
        .execute([id])?
        > 0)
}

/// Enabled webhooks as `(id, event_types)`, for the outbox.
pub(crate) fn enabled_subscriptions(conn: &Connection) -> Result<Vec<(i64, Vec<String>)>> {
    let mut stmt =
        conn.prepare_cached("SELECT id, event_types FROM webhooks WHERE enabled = 1 ORDER BY id")?;
    let rows = stmt.query_map([], |row| {
        Ok((row.get::<_, i64>(0)?, row.get::<_, String>(1)?))
    })?;
    let mut out = Vec::new();
    for row in rows {
        let (id, types) = row?;
        out.push((id, serde_json::from_str(&types)?));
    }
    Ok(out)
}

// ---------------------------------------------------------------------------------------
// deliveries

pub(crate) struct NewDelivery<'a> {
    pub(crate) webhook_id: i64,
    pub(crate) msg_id: &'a str,
    pub(crate) event_id: Option<&'a str>,
    pub(crate) event_type: &'a str,
    pub(crate) payload: &'a str,
}

/// Enqueues a delivery due now; a second delivery of the same event to the same webhook
/// is ignored (returns false).
pub(crate) fn insert_delivery(
    conn: &Connection,
    d: &NewDelivery<'_>,
    now: OffsetDateTime,
) -> Result<bool> {
    let now = ts(now);
    let n = conn
        .prepare_cached(
            "INSERT OR IGNORE INTO deliveries \
               (webhook_id, msg_id, event_id, event_type, payload, status, attempts, next_attempt_at, created_at, updated_at) \
             VALUES (?1, ?2, ?3, ?4, ?5, 'pending', 0, ?6, ?6, ?6)",
        )?
        .execute(params![d.webhook_id, d.msg_id, d.event_id, d.event_type, d.payload, now])?;
    Ok(n > 0)
}

/// A claimed delivery with what it takes to send it.
#[derive(Debug, Clone)]
pub(crate) struct Job {
    pub(crate) delivery_id: i64,
    pub(crate) msg_id: String,
    pub(crate) payload: String,
    pub(crate) attempts: u32,
    pub(crate) trigger: Trigger,
    pub(crate) webhook_id: i64,
    pub(crate) url: String,
    pub(crate) secret: String,
    pub(crate) previous_secret: Option<String>,
}

/// Whether any delivery is due, checked on a read connection before taking the writer.
pub(crate) fn any_due(conn: &Connection, now: OffsetDateTime) -> Result<bool> {
    Ok(conn
        .prepare_cached(
            "SELECT EXISTS (SELECT 1 FROM deliveries d JOIN webhooks w ON w.id = d.webhook_id \
             WHERE d.status = 'pending' AND d.next_attempt_at <= ?1 \
               AND (d.locked_until IS NULL OR d.locked_until <= ?1) AND w.enabled = 1)",
        )?
        .query_row([ts(now)], |r| r.get(0))?)
}

/// Claims up to `limit` due deliveries of enabled webhooks, locking each until `lease_until`.
pub(crate) fn claim_due(
    conn: &Connection,
    now: OffsetDateTime,
    lease_until: OffsetDateTime,
    limit: usize,
) -> Result<Vec<Job>> {
    let now_text = ts(now);
    let mut stmt = conn.prepare_cached(
        "SELECT d.id, d.msg_id, d.payload, d.attempts, d.next_trigger, \
                w.id, w.url, w.secret, \
                CASE WHEN w.previous_secret_until > ?1 THEN w.previous_secret END \
         FROM deliveries d JOIN webhooks w ON w.id = d.webhook_id \
         WHERE d.status = 'pending' AND d.next_attempt_at <= ?1 \
           AND (d.locked_until IS NULL OR d.locked_until <= ?1) AND w.enabled = 1 \
         ORDER BY d.next_attempt_at, d.id LIMIT ?2",
    )?;
    let jobs: Vec<Job> = stmt
        .query_map(
            params![now_text, i64::try_from(limit).unwrap_or(i64::MAX)],
            |row| {
                Ok(Job {
                    delivery_id: row.get(0)?,
                    msg_id: row.get::<_, Option<String>>(1)?.unwrap_or_default(),
                    payload: row.get(2)?,
                    attempts: row.get(3)?,
                    trigger: Trigger::parse(&row.get::<_, String>(4)?),
                    webhook_id: row.get(5)?,
                    url: row.get(6)?,
                    secret: row.get(7)?,
                    previous_secret: row.get(8)?,
                })
            },
        )?
        .collect::<rusqlite::Result<_>>()?;
    let lease = ts(lease_until);
    let mut lock = conn.prepare_cached("UPDATE deliveries SET locked_until = ?2 WHERE id = ?1")?;
    for job in &jobs {
        lock.execute(params![job.delivery_id, lease])?;
    }
    Ok(jobs)
}

pub(crate) fn insert_attempt(conn: &Connection, delivery_id: i64, a: &Attempt) -> Result<()> {
    conn.prepare_cached(
        "INSERT INTO delivery_attempts \
           (delivery_id, attempted_at, status_code, latency_ms, response_excerpt, error, trigger) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )?
    .execute(params![
        delivery_id,
        ts(a.attempted_at),
        a.status_code,
        i64::try_from(a.latency_ms).unwrap_or(i64::MAX),
        a.response_excerpt,
        a.error,
        a.trigger.as_str(),
    ])?;
    Ok(())
}

/// Records the end state after an attempt: `next` = `Some(due)` keeps it pending.
pub(crate) fn finish_attempt(
    conn: &Connection,
    delivery_id: i64,
    status: DeliveryStatus,
    next: Option<OffsetDateTime>,
    last_error: Option<&str>,
    now: OffsetDateTime,
) -> Result<()> {
    conn.prepare_cached(
        "UPDATE deliveries SET status = ?2, attempts = attempts + 1, next_attempt_at = ?3, \
           locked_until = NULL, next_trigger = 'scheduled', last_error = ?4, updated_at = ?5 \
         WHERE id = ?1",
    )?
    .execute(params![
        delivery_id,
        status.as_str(),
        next.map(ts),
        last_error,
        ts(now)
    ])?;
    Ok(())
}

/// Resets an endpoint's failure streak (after a success).
pub(crate) fn reset_failures(conn: &Connection, webhook_id: i64) -> Result<()> {
    conn.prepare_cached(
        "UPDATE webhooks SET consecutive_failures = 0 WHERE id = ?1 AND consecutive_failures <> 0",
    )?
    .execute([webhook_id])?;
    Ok(())
}

/// Adds a failed delivery to the streak; returns the new count.
pub(crate) fn add_failure(conn: &Connection, webhook_id: i64) -> Result<u32> {
    Ok(conn
        .prepare_cached(
            "UPDATE webhooks SET consecutive_failures = consecutive_failures + 1 WHERE id = ?1 \
             RETURNING consecutive_failures",
        )?
        .query_row([webhook_id], |r| r.get(0))
        .optional()?
        .unwrap_or(0))
}

/// Disables an enabled endpoint; returns its URL if this call disabled it.
pub(crate) fn disable_webhook(
    conn: &Connection,
    webhook_id: i64,
    reason: &str,
    now: OffsetDateTime,
) -> Result<Option<String>> {
    Ok(conn
        .prepare_cached(
            "UPDATE webhooks SET enabled = 0, disabled_reason = ?2, updated_at = ?3 \
             WHERE id = ?1 AND enabled = 1 RETURNING url",
        )?
        .query_row(params![webhook_id, reason, ts(now)], |r| r.get(0))
        .optional()?)
}

pub(crate) fn get_delivery(
    conn: &Connection,
    webhook_id: i64,
    delivery_id: i64,
) -> Result<Option<Delivery>> {
    let delivery = conn
        .prepare_cached(&format!(
            "SELECT {DELIVERY_COLUMNS} FROM deliveries WHERE id = ?1 AND webhook_id = ?2"
        ))?
        .query_row([delivery_id, webhook_id], delivery_from_row)
        .optional()?;
    let Some(mut delivery) = delivery else {
        return Ok(None);
    };
    delivery.attempt_log = attempts_of(conn, delivery.id)?;
    Ok(Some(delivery))
}

fn attempts_of(conn: &Connection, delivery_id: i64) -> Result<Vec<Attempt>> {
    let mut stmt = conn.prepare_cached(
        "SELECT attempted_at, status_code, latency_ms, response_excerpt, error, trigger \
         FROM delivery_attempts WHERE delivery_id = ?1 ORDER BY id",
    )?;
    let rows = stmt.query_map([delivery_id], |row| {
        Ok(Attempt {
            attempted_at: get_ts(row, "attempted_at")?,
            status_code: row.get("status_code")?,
            latency_ms: u64::try_from(row.get::<_, i64>("latency_ms")?).unwrap_or(0),
            response_excerpt: row.get("response_excerpt")?,
            error: row.get("error")?,
            trigger: Trigger::parse(&row.get::<_, String>("trigger")?),
        })
    })?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// Newest first; `before_id` pages backwards.
pub(crate) fn list_deliveries(
    conn: &Connection,
    webhook_id: i64,
    status: Option<DeliveryStatus>,
    before_id: Option<i64>,
    limit: u32,
) -> Result<Vec<Delivery>> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {DELIVERY_COLUMNS} FROM deliveries \
         WHERE webhook_id = ?1 AND (?2 IS NULL OR status = ?2) AND (?3 IS NULL OR id < ?3) \
         ORDER BY id DESC LIMIT ?4"
    ))?;
    let rows = stmt.query_map(
        params![
            webhook_id,
            status.map(DeliveryStatus::as_str),
            before_id,
            limit
        ],
        delivery_from_row,
    )?;
    let mut out: Vec<Delivery> = rows.collect::<rusqlite::Result<_>>()?;
    for d in &mut out {
        d.attempt_log = attempts_of(conn, d.id)?;
    }
    Ok(out)
}

/// Makes one delivery due now for a single manual attempt; false if it is being sent
/// right now (locked) or does not exist.
pub(crate) fn schedule_manual(
    conn: &Connection,
    webhook_id: i64,
    delivery_id: i64,
    now: OffsetDateTime,
) -> Result<bool> {
    let now = ts(now);
    Ok(conn
        .prepare_cached(
            "UPDATE deliveries SET status = 'pending', next_attempt_at = ?3, next_trigger = 'manual', updated_at = ?3 \
             WHERE id = ?1 AND webhook_id = ?2 AND (locked_until IS NULL OR locked_until <= ?3)",
        )?
        .execute(params![delivery_id, webhook_id, now])?
        > 0)
}

/// Re-enqueues the failed deliveries of a webhook created in `[since, until]` for one
/// manual attempt each; returns how many.
pub(crate) fn recover(
    conn: &Connection,
    webhook_id: i64,
    since: OffsetDateTime,
    until: OffsetDateTime,
    now: OffsetDateTime,
) -> Result<u64> {
    let n = conn
        .prepare_cached(
            "UPDATE deliveries SET status = 'pending', next_attempt_at = ?4, next_trigger = 'manual', updated_at = ?4 \
             WHERE webhook_id = ?1 AND status = 'failed' AND created_at >= ?2 AND created_at <= ?3",
        )?
        .execute(params![webhook_id, ts(since), ts(until), ts(now)])?;
    Ok(n as u64)
}

pub(crate) fn pending_deliveries(conn: &Connection) -> Result<i64> {
    Ok(conn
        .prepare_cached("SELECT COUNT(*) FROM deliveries WHERE status = 'pending'")?
        .query_row([], |r| r.get(0))?)
}

// ---------------------------------------------------------------------------------------
// telegram

pub(crate) fn insert_telegram(
    conn: &Connection,
    notification_id: Option<i64>,
    chat_id: &str,
    text: &str,
    now: OffsetDateTime,
    due: OffsetDateTime,
) -> Result<()> {
    conn.prepare_cached(
        "INSERT INTO telegram_outbox (notification_id, chat_id, text, status, attempts, next_attempt_at, created_at) \
         VALUES (?1, ?2, ?3, 'pending', 0, ?4, ?5)",
    )?
    .execute(params![notification_id, chat_id, text, ts(due), ts(now)])?;
    Ok(())
}

/// Rows of one chat claimed for one send.
#[derive(Debug, Clone)]
pub(crate) struct TelegramBatch {
    pub(crate) chat_id: String,
    /// `(row id, attempts so far, text)`, oldest first.
    pub(crate) rows: Vec<(i64, u32, String)>,
}

/// Whether any Telegram row is due (read-side check before claiming).
pub(crate) fn any_telegram_due(conn: &Connection, now: OffsetDateTime) -> Result<bool> {
    Ok(conn
        .prepare_cached(
            "SELECT EXISTS (SELECT 1 FROM telegram_outbox WHERE status = 'pending' AND next_attempt_at <= ?1 \
               AND (locked_until IS NULL OR locked_until <= ?1))",
        )?
        .query_row([ts(now)], |r| r.get(0))?)
}

/// Claims the pending rows of one chat that has a due row: every unlocked pending row of
/// that chat that is due or has never been tried (so notifications that arrived during the
/// window join the same message).
pub(crate) fn claim_telegram(
    conn: &Connection,
    now: OffsetDateTime,
    lease_until: OffsetDateTime,
    limit: usize,
) -> Result<Option<TelegramBatch>> {
    let now_text = ts(now);
    let chat: Option<String> = conn
        .prepare_cached(
            "SELECT chat_id FROM telegram_outbox WHERE status = 'pending' AND next_attempt_at <= ?1 \
               AND (locked_until IS NULL OR locked_until <= ?1) ORDER BY next_attempt_at LIMIT 1",
        )?
        .query_row([&now_text], |r| r.get(0))
        .optional()?;
    let Some(chat_id) = chat else { return Ok(None) };
    let mut stmt = conn.prepare_cached(
        "SELECT id, attempts, text FROM telegram_outbox \
         WHERE chat_id = ?1 AND status = 'pending' AND (locked_until IS NULL OR locked_until <= ?2) \
           AND (next_attempt_at <= ?2 OR attempts = 0) \
         ORDER BY id LIMIT ?3",
    )?;
    let rows: Vec<(i64, u32, String)> = stmt
        .query_map(
            params![chat_id, now_text, i64::try_from(limit).unwrap_or(i64::MAX)],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )?
        .collect::<rusqlite::Result<_>>()?;
    let lease = ts(lease_until);
    let mut lock =
        conn.prepare_cached("UPDATE telegram_outbox SET locked_until = ?2 WHERE id = ?1")?;
    for (id, _, _) in &rows {
        lock.execute(params![id, lease])?;
    }
    Ok(Some(TelegramBatch { chat_id, rows }))
}

pub(crate) fn telegram_sent(conn: &Connection, ids: &[i64], now: OffsetDateTime) -> Result<()> {
    let mut stmt = conn.prepare_cached(
        "UPDATE telegram_outbox SET status = 'sent', sent_at = ?2, attempts = attempts + 1, \
           locked_until = NULL, last_error = NULL WHERE id = ?1",
    )?;
    let now = ts(now);
    for id in ids {
        stmt.execute(params![id, now])?;
    }
    Ok(())
}

/// Reschedules rows after a failed send, or marks them failed when `next` is `None`.
pub(crate) fn telegram_failed(
    conn: &Connection,
    ids: &[i64],
    next: Option<OffsetDateTime>,
    error: &str,
) -> Result<()> {
    let mut stmt = conn.prepare_cached(
        "UPDATE telegram_outbox SET status = CASE WHEN ?2 IS NULL THEN 'failed' ELSE 'pending' END, \
           next_attempt_at = COALESCE(?2, next_attempt_at), attempts = attempts + 1, \
           locked_until = NULL, last_error = ?3 WHERE id = ?1",
    )?;
    let next = next.map(ts);
    for id in ids {
        stmt.execute(params![id, next, error])?;
    }
    Ok(())
}

pub(crate) fn pending_telegram(conn: &Connection) -> Result<i64> {
    Ok(conn
        .prepare_cached("SELECT COUNT(*) FROM telegram_outbox WHERE status = 'pending'")?
        .query_row([], |r| r.get(0))?)
}

/// Maps a missing row to [`Error::NotFound`].
pub(crate) fn found<T>(value: Option<T>, what: &'static str, id: i64) -> Result<T> {
    value.ok_or(Error::NotFound {
        what,
        id: id.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_fixed_width_and_round_trip() {
        let t = time::macros::datetime!(2026-03-01 12:00:00.123456 UTC);
        assert_eq!(ts(t), "2026-03-01T12:00:00.123456Z");
        assert_eq!(parse_ts(&ts(t)).unwrap(), t);
        let whole = time::macros::datetime!(2026-03-01 12:00:00 UTC);
        assert_eq!(ts(whole), "2026-03-01T12:00:00.000000Z");
    }
}
