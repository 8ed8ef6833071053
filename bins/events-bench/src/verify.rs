//! Reads the daemon's database (read-only, beside the running daemon) and compares its final
//! state with the [`Expectation`] computed from the generated mix.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use rusqlite::{Connection, OpenFlags};

use crate::mix::{Expectation, SENTINEL, SOURCE};

pub(crate) fn open(db: &Path) -> anyhow::Result<Connection> {
    let conn = Connection::open_with_flags(
        db,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .with_context(|| format!("opening {} read-only", db.display()))?;
    conn.busy_timeout(Duration::from_secs(10))?;
    Ok(conn)
}

/// Sentinels (`bench.run.finished`) committed so far.
pub(crate) fn sentinels(conn: &Connection) -> anyhow::Result<u64> {
    let n: i64 = conn.query_row(
        "SELECT count(*) FROM events WHERE event_type = ?1 AND source = ?2",
        (SENTINEL, SOURCE),
        |r| r.get(0),
    )?;
    Ok(n as u64)
}

/// Waits until `shards` sentinels are committed; `on_poll` runs between polls (lag sampling).
pub(crate) async fn wait_for_sentinels(
    db: &Path,
    shards: u64,
    timeout: Duration,
    mut on_poll: impl FnMut(),
) -> anyhow::Result<Instant> {
    let deadline = Instant::now() + timeout;
    let mut conn = None;
    loop {
        if conn.is_none() && db.exists() {
            conn = open(db).ok();
        }
        if let Some(c) = &conn
            && sentinels(c).unwrap_or(0) >= shards
        {
            return Ok(Instant::now());
        }
        if Instant::now() > deadline {
            bail!("the daemon did not commit every event within {timeout:?}");
        }
        on_poll();
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Outcome of comparing the database with the expectation.
#[derive(Debug, Clone)]
pub(crate) struct Verdict {
    pub(crate) ok: bool,
    pub(crate) summary: String,
}

/// Compares counts and, for every updated slug, the `dependency` of its last update.
pub(crate) fn check(db: &Path, expect: &Expectation) -> anyhow::Result<Verdict> {
    let conn = open(db)?;
    let count = |sql: &str| -> anyhow::Result<u64> {
        let n: i64 = conn
            .query_row(sql, [SOURCE], |r| r.get(0))
            .with_context(|| sql.to_owned())?;
        Ok(n as u64)
    };
    let logged = count("SELECT count(*) FROM events WHERE source = ?1")?;
    let notifications = count("SELECT count(*) FROM notifications WHERE source = ?1")?;
    let resolved = count(
        "SELECT count(*) FROM notifications WHERE source = ?1 AND agent_status = 'resolved'",
    )?;
    let dead: i64 = conn
        .query_row("SELECT count(*) FROM dead_letters", [], |r| r.get(0))
        .unwrap_or(0);

    let mut problems = Vec::new();
    let mut compare = |what: &str, got: u64, want: u64| {
        if got != want {
            problems.push(format!("{what} {got}, expected {want}"));
        }
    };
    compare("event log rows", logged, expect.logged);
    compare("notifications", notifications, expect.notifications);
    compare("resolved", resolved, expect.resolved);
    compare("dead letters", dead as u64, 0);

    let mut statement = conn.prepare(
        "SELECT group_value, json_extract(payload, '$.dependency') FROM notifications \
         WHERE source = ?1 AND json_extract(payload, '$.dependency') IS NOT NULL",
    )?;
    let mut updated = 0u64;
    let mut mismatched = 0u64;
    let mut example = None;
    let rows = statement.query_map([SOURCE], |r| {
        Ok((r.get::<_, Option<String>>(0)?, r.get::<_, String>(1)?))
    })?;
    for row in rows {
        let (slug, dependency) = row?;
        updated += 1;
        let slug = slug.unwrap_or_default();
        if expect.dependency.get(&slug) != Some(&dependency) {
            mismatched += 1;
            example.get_or_insert_with(|| {
                format!(
                    "{slug}: dependency {dependency}, expected {:?}",
                    expect.dependency.get(&slug)
                )
            });
        }
    }
    compare(
        "updated notifications",
        updated,
        expect.dependency.len() as u64,
    );
    if mismatched > 0 {
        problems.push(format!(
            "{mismatched} notifications with a wrong last update (e.g. {})",
            example.unwrap_or_default()
        ));
    }
    let summary = if problems.is_empty() {
        format!(
            "{logged} logged, {notifications} notifications ({} updated, {resolved} resolved), {} duplicates dropped",
            expect.dependency.len(),
            expect.duplicates
        )
    } else {
        problems.join("; ")
    };
    Ok(Verdict {
        ok: problems.is_empty(),
        summary,
    })
}
