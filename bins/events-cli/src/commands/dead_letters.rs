//! `events dead-letters ...`: entries the processor gave up on (brief §8).

use std::io::Write;

use reqwest::Method;
use serde_json::Value;

use crate::cli::DeadLettersCommand;
use crate::client::Client;
use crate::output::{Table, cell, rows_of, write_raw};

pub(crate) async fn run(
    client: &Client,
    command: DeadLettersCommand,
    json: bool,
    out: &mut impl Write,
) -> anyhow::Result<()> {
    match command {
        DeadLettersCommand::List { limit } => {
            let reply = client
                .get(
                    &["api", "dead-letters"],
                    &[("limit", Some(limit.to_string()))],
                )
                .await?;
            if json {
                return Ok(write_raw(out, &reply.body)?);
            }
            let rows = rows_of(&reply.json, "dead_letters");
            if rows.is_empty() {
                writeln!(out, "no dead letters")?;
                return Ok(());
            }
            let mut table =
                Table::new(&["ID", "ENTRY", "DELIVERIES", "CREATED", "EVENT", "REASON"]);
            for row in rows {
                table.row(vec![
                    cell(row.get("id")),
                    cell(row.get("entry_id")),
                    cell(row.get("delivery_count")),
                    cell(row.get("created_at")),
                    event_of(row),
                    cell(row.get("reason")),
                ]);
            }
            table.write(out)?;
        }
        DeadLettersCommand::Replay { id } => {
            let reply = client
                .send(
                    Method::POST,
                    &["api", "dead-letters", &id, "replay"],
                    &[],
                    None,
                )
                .await?;
            if json {
                write_raw(out, &reply.body)?;
            } else {
                match reply.json.get("stream_id").and_then(Value::as_str) {
                    Some(stream_id) => {
                        writeln!(out, "dead letter {id} replayed as stream entry {stream_id}")?
                    }
                    None => writeln!(out, "dead letter {id} replayed")?,
                }
            }
        }
        DeadLettersCommand::Delete { id } => {
            let reply = client
                .send(Method::DELETE, &["api", "dead-letters", &id], &[], None)
                .await?;
            if json {
                write_raw(out, &reply.body)?;
            } else {
                writeln!(out, "dead letter {id} deleted")?;
            }
        }
    }
    Ok(())
}

/// The `event` field of the original entry, whether the daemon sends the fields as an
/// object or as `[name, value]` pairs.
fn event_of(row: &Value) -> String {
    let fields = row.get("fields");
    let found = match fields {
        Some(Value::Object(map)) => map.get("event").cloned(),
        Some(Value::Array(pairs)) => {
            pairs
                .iter()
                .find_map(|pair| match pair.as_array().map(Vec::as_slice) {
                    Some([Value::String(name), value]) if name == "event" => Some(value.clone()),
                    _ => None,
                })
        }
        _ => None,
    };
    cell(found.as_ref())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn event_is_found_in_either_field_shape() {
        assert_eq!(event_of(&json!({"fields": {"event": "a.b"}})), "a.b");
        assert_eq!(
            event_of(&json!({"fields": [["id", "x"], ["event", "c.d"]]})),
            "c.d"
        );
        assert_eq!(event_of(&json!({"fields": []})), "-");
    }
}
