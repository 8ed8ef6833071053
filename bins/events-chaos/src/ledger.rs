//! What the daemons stored, read back over the public API, and the comparison with what
//! the producers were told was acknowledged.

use std::collections::{HashMap, HashSet};

use anyhow::{Context, bail};
use serde_json::Value;

/// Event type of every event the producers emit (registered by the driver's catalog file
/// with `creates = true`, so each one must yield exactly one notification).
pub(crate) const EVENT_TYPE: &str = "chaos.item.created";
/// Domain of those events and their notifications.
pub(crate) const DOMAIN: &str = "chaos";
/// `GET /api/events` page size (the API's maximum).
const EVENTS_PAGE: u32 = 1000;
/// `GET /api/notifications` page size (the API's maximum).
const NOTIFICATIONS_PAGE: u32 = 200;

/// The event log as seen so far, read incrementally by `seq`.
#[derive(Debug, Default)]
pub(crate) struct EventLog {
    /// Highest `seq` read.
    pub(crate) after_seq: i64,
    /// Rows per event id (more than one would be a duplicated effect).
    pub(crate) rows: HashMap<String, u32>,
}

impl EventLog {
    /// Reads every chaos event logged after [`Self::after_seq`]; returns how many were new.
    ///
    /// Reading by `seq` is complete: one SQLite writer at a time means rows commit in `seq`
    /// order, so no lower `seq` can appear after a higher one was read.
    pub(crate) async fn catch_up(
        &mut self,
        http: &reqwest::Client,
        base: &str,
    ) -> anyhow::Result<usize> {
        let mut added = 0;
        loop {
            let page: Value = http
                .get(format!(
                    "{base}/api/events?type={EVENT_TYPE}&after_seq={}&limit={EVENTS_PAGE}",
                    self.after_seq
                ))
                .send()
                .await
                .context("GET /api/events")?
                .error_for_status()
                .context("GET /api/events")?
                .json()
                .await
                .context("GET /api/events: body")?;
            let events = page["events"]
                .as_array()
                .context("GET /api/events: no `events` array")?;
            if events.is_empty() {
                return Ok(added);
            }
            for row in events {
                let seq = row["seq"].as_i64().context("event row without seq")?;
                let id = row["event"]["id"]
                    .as_str()
                    .context("event row without event.id")?;
                *self.rows.entry(id.to_owned()).or_default() += 1;
                self.after_seq = self.after_seq.max(seq);
                added += 1;
            }
        }
    }
}

/// Notifications of the chaos domain per `event_id`.
pub(crate) async fn notifications(
    http: &reqwest::Client,
    base: &str,
) -> anyhow::Result<HashMap<String, u32>> {
    let mut per_event: HashMap<String, u32> = HashMap::new();
    let mut offset: u64 = 0;
    loop {
        let page: Value = http
            .get(format!(
                "{base}/api/notifications?domain={DOMAIN}&limit={NOTIFICATIONS_PAGE}&offset={offset}"
            ))
            .send()
            .await
            .context("GET /api/notifications")?
            .error_for_status()
            .context("GET /api/notifications")?
            .json()
            .await
            .context("GET /api/notifications: body")?;
        let rows = page["notifications"]
            .as_array()
            .context("GET /api/notifications: no `notifications` array")?;
        if rows.is_empty() {
            return Ok(per_event);
        }
        for row in rows {
            let Some(event_id) = row["event_id"].as_str() else {
                bail!("notification {} without event_id", row["id"]);
            };
            *per_event.entry(event_id.to_owned()).or_default() += 1;
        }
        offset += rows.len() as u64;
    }
}

/// The verdict.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Comparison {
    /// Events whose emit returned Ok.
    pub(crate) acknowledged: u64,
    /// Chaos rows in the event log.
    pub(crate) stored: u64,
    /// Acknowledged events missing from the log or without their notification.
    pub(crate) lost: u64,
    /// Extra rows: a second log row or a second notification for one event.
    pub(crate) duplicated: u64,
    /// Stored events whose emit never returned Ok (the ack was lost with Redis): allowed.
    pub(crate) unacknowledged_stored: u64,
    /// Notifications of the chaos domain.
    pub(crate) notifications: u64,
}

impl Comparison {
    /// Compares the acknowledged ids with the log rows and notifications.
    pub(crate) fn new(
        acknowledged: &HashSet<String>,
        log: &HashMap<String, u32>,
        notifications: &HashMap<String, u32>,
    ) -> Self {
        let mut c = Self {
            acknowledged: acknowledged.len() as u64,
            ..Self::default()
        };
        for id in acknowledged {
            let in_log = log.get(id).copied().unwrap_or(0);
            let notified = notifications.get(id).copied().unwrap_or(0);
            if in_log == 0 || notified == 0 {
                c.lost += 1;
            }
        }
        for (id, &rows) in log {
            c.stored += u64::from(rows);
            c.duplicated += u64::from(rows.saturating_sub(1));
            if !acknowledged.contains(id) {
                c.unacknowledged_stored += 1;
            }
        }
        for &count in notifications.values() {
            c.notifications += u64::from(count);
            c.duplicated += u64::from(count.saturating_sub(1));
        }
        c
    }

    /// Nothing lost, nothing applied twice.
    pub(crate) fn clean(&self) -> bool {
        self.lost == 0 && self.duplicated == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(ids: &[&str]) -> HashSet<String> {
        ids.iter().map(|s| (*s).to_owned()).collect()
    }

    fn counts(pairs: &[(&str, u32)]) -> HashMap<String, u32> {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), *v)).collect()
    }

    #[test]
    fn a_clean_run_counts_everything_once() {
        let c = Comparison::new(
            &set(&["a", "b"]),
            &counts(&[("a", 1), ("b", 1), ("c", 1)]),
            &counts(&[("a", 1), ("b", 1), ("c", 1)]),
        );
        assert_eq!(
            c,
            Comparison {
                acknowledged: 2,
                stored: 3,
                lost: 0,
                duplicated: 0,
                unacknowledged_stored: 1,
                notifications: 3,
            }
        );
        assert!(c.clean());
    }

    #[test]
    fn a_missing_row_or_notification_is_lost() {
        let c = Comparison::new(
            &set(&["a", "b", "c"]),
            &counts(&[("a", 1), ("b", 1)]),
            &counts(&[("a", 1)]),
        );
        assert_eq!(c.lost, 2);
        assert!(!c.clean());
    }

    #[test]
    fn a_second_notification_is_a_duplicate() {
        let c = Comparison::new(&set(&["a"]), &counts(&[("a", 1)]), &counts(&[("a", 2)]));
        assert_eq!((c.lost, c.duplicated), (0, 1));
        assert!(!c.clean());
    }
}
