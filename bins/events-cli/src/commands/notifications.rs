//! `events notifications ...`: the notification routes of brief §9.

use std::io::Write;

use events_envelope::EventLevel;
use reqwest::Method;
use serde_json::{Value, json};

use crate::cli::{NotificationFilter, NotificationsCommand};
use crate::client::{Client, Reply};
use crate::failure::Failure;
use crate::output::{Table, cell, level_name, write_raw};

pub(crate) async fn run(
    client: &Client,
    command: NotificationsCommand,
    json: bool,
    out: &mut impl Write,
) -> anyhow::Result<()> {
    match command {
        NotificationsCommand::List {
            filter,
            limit,
            offset,
        } => {
            let mut query = filter_query(&filter)?;
            query.push(("limit", Some(limit.to_string())));
            query.push(("offset", Some(offset.to_string())));
            let reply = client.get(&["api", "notifications"], &query).await?;
            if json {
                write_raw(out, &reply.body)?;
            } else {
                write_list(&reply.json, out)?;
            }
        }
        NotificationsCommand::Show { id } => {
            let reply = client
                .get(&["api", "notifications", &id.to_string()], &[])
                .await?;
            if json {
                write_raw(out, &reply.body)?;
            } else {
                write_details(&reply.json, out)?;
            }
        }
        NotificationsCommand::Seen { id: Some(id), .. } => {
            let reply = client
                .send(
                    Method::PATCH,
                    &["api", "notifications", &id.to_string(), "seen"],
                    &[],
                    None,
                )
                .await?;
            write_change(&reply, json, out)?;
        }
        NotificationsCommand::Seen {
            id: None, filter, ..
        } => {
            let query = filter_query(&filter)?;
            let reply = client
                .send(
                    Method::POST,
                    &["api", "notifications", "seen"],
                    &query,
                    None,
                )
                .await?;
            if json {
                write_raw(out, &reply.body)?;
            } else {
                let count = ["updated", "marked", "count"]
                    .iter()
                    .find_map(|key| reply.json.get(*key))
                    .map_or_else(|| "all matching".to_owned(), |n| cell(Some(n)));
                writeln!(out, "marked {count} notifications seen")?;
            }
        }
        NotificationsCommand::Unseen { id } => {
            let query = [("unseen", Some("true".to_owned()))];
            let reply = client
                .send(
                    Method::PATCH,
                    &["api", "notifications", &id.to_string(), "seen"],
                    &query,
                    None,
                )
                .await?;
            write_change(&reply, json, out)?;
        }
        NotificationsCommand::Claim { id, agent } => {
            let body = json!({ "agent_id": agent });
            let reply = client
                .send(
                    Method::POST,
                    &["api", "notifications", &id.to_string(), "claim"],
                    &[],
                    Some(&body),
                )
                .await?;
            write_change(&reply, json, out)?;
        }
        NotificationsCommand::Status { id, status, agent } => {
            let body = json!({ "status": status.as_str(), "agent_id": agent });
            let reply = client
                .send(
                    Method::PATCH,
                    &["api", "notifications", &id.to_string(), "status"],
                    &[],
                    Some(&body),
                )
                .await?;
            write_change(&reply, json, out)?;
        }
        NotificationsCommand::Resolve {
            id,
            summary,
            link,
            agent,
        } => {
            let mut body = json!({ "summary": summary, "resolved_by": agent });
            if let Some(link) = link {
                body["link"] = Value::String(link);
            }
            let reply = client
                .send(
                    Method::POST,
                    &["api", "notifications", &id.to_string(), "resolve"],
                    &[],
                    Some(&body),
                )
                .await?;
            write_change(&reply, json, out)?;
        }
    }
    Ok(())
}

/// The §9 filter query; the level is normalised to its integer here so a typo is caught
/// locally (exit 2) rather than by the daemon.
fn filter_query(
    filter: &NotificationFilter,
) -> anyhow::Result<Vec<(&'static str, Option<String>)>> {
    let level = match &filter.level {
        Some(text) => Some(
            EventLevel::parse_lenient(text)
                .ok_or_else(|| {
                    Failure::bad_input(format!(
                        "--level {text:?} is not a level; use 0..3 or infrastructure, operational, workflow, business"
                    ))
                })?
                .as_u8()
                .to_string(),
        ),
        None => None,
    };
    Ok(vec![
        ("level", level),
        ("domain", filter.domain.clone()),
        (
            "human_status",
            filter.human_status.map(|s| s.as_str().to_owned()),
        ),
        (
            "agent_status",
            filter.agent_status.map(|s| s.as_str().to_owned()),
        ),
        ("visibility", filter.visibility.clone()),
        ("since", filter.since.clone()),
    ])
}

fn write_list(page: &Value, out: &mut impl Write) -> std::io::Result<()> {
    let rows = page
        .get("notifications")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    let mut table = Table::new(&[
        "ID",
        "LEVEL",
        "SEEN",
        "AGENT",
        "EVENT TYPE",
        "DOMAIN",
        "CREATED",
        "DESCRIPTION",
    ]);
    for row in rows {
        let agent = match row.get("agent_id").and_then(Value::as_str) {
            Some(agent_id) => format!("{} ({agent_id})", cell(row.get("agent_status"))),
            None => cell(row.get("agent_status")),
        };
        table.row(vec![
            cell(row.get("id")),
            level_name(row.get("level")),
            cell(row.get("human_status")),
            agent,
            cell(row.get("event_type")),
            cell(row.get("domain")),
            cell(row.get("created_at")),
            cell(row.get("description")),
        ]);
    }
    if table.is_empty() {
        writeln!(out, "no notifications match")?;
    } else {
        table.write(out)?;
    }
    let total = page.get("total").and_then(Value::as_u64);
    let offset = page.get("offset").and_then(Value::as_u64).unwrap_or(0);
    if let Some(total) = total {
        let shown = rows.len() as u64;
        if offset + shown < total {
            writeln!(
                out,
                "{shown} of {total} shown; next page: --offset {}",
                offset + shown
            )?;
        }
    }
    Ok(())
}

/// Every field of a notification, one per line, JSON objects pretty-printed.
fn write_details(row: &Value, out: &mut impl Write) -> std::io::Result<()> {
    let Some(fields) = row.as_object() else {
        return writeln!(out, "{row}");
    };
    let width = fields.keys().map(String::len).max().unwrap_or(0);
    for (key, value) in fields {
        let text = match value {
            Value::Object(map) if !map.is_empty() => {
                let pretty =
                    serde_json::to_string_pretty(value).unwrap_or_else(|_| value.to_string());
                pretty.replace('\n', &format!("\n{:width$}  ", ""))
            }
            _ if key == "level" => format!("{} ({})", level_name(Some(value)), cell(Some(value))),
            _ => cell(Some(value)),
        };
        writeln!(out, "{key:width$}  {text}")?;
    }
    Ok(())
}

/// One line summarising the notification a state change returned.
fn write_change(reply: &Reply, json: bool, out: &mut impl Write) -> std::io::Result<()> {
    if json {
        return write_raw(out, &reply.body);
    }
    // Some routes may wrap the row; accept both shapes.
    let row = reply.json.get("notification").unwrap_or(&reply.json);
    let mut line = format!(
        "notification {}: {}, {}",
        cell(row.get("id")),
        cell(row.get("human_status")),
        cell(row.get("agent_status"))
    );
    if let Some(agent_id) = row.get("agent_id").and_then(Value::as_str) {
        line.push_str(&format!(" by {agent_id}"));
    }
    writeln!(out, "{line}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_shows_rows_and_the_next_page_hint() {
        let page = json!({
            "notifications": [{
                "id": 7, "level": 2, "human_status": "unseen", "agent_status": "claimed", "agent_id": "bot",
                "event_type": "job.failed", "domain": "ci", "created_at": "2026-01-01T00:00:00Z", "description": "it broke"
            }],
            "total": 3, "limit": 1, "offset": 0
        });
        let mut out = Vec::new();
        write_list(&page, &mut out).expect("write");
        let text = String::from_utf8(out).expect("utf-8");
        let row = text.lines().nth(1).expect("one row");
        for part in [
            "7",
            "WORKFLOW",
            "unseen",
            "claimed (bot)",
            "job.failed",
            "it broke",
        ] {
            assert!(row.contains(part), "{part} missing in {row}");
        }
        assert!(
            text.contains("1 of 3 shown; next page: --offset 1"),
            "{text}"
        );
    }

    #[test]
    fn level_filter_is_checked_locally() {
        let filter = NotificationFilter {
            level: Some("workflow".into()),
            ..NotificationFilter::default()
        };
        let query = filter_query(&filter).expect("valid");
        assert_eq!(query[0], ("level", Some("2".to_owned())));
        let filter = NotificationFilter {
            level: Some("loud".into()),
            ..NotificationFilter::default()
        };
        assert_eq!(
            crate::failure::exit_code_of(&filter_query(&filter).expect_err("bad level")),
            2
        );
    }
}
