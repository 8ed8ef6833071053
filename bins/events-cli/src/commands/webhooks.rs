//! `events webhooks ...`: webhook subscriptions and their delivery log (brief §10).

use std::io::Write;

use reqwest::Method;
use serde_json::{Value, json};

use crate::cli::WebhooksCommand;
use crate::client::Client;
use crate::output::{Table, cell, rows_of, write_raw};

pub(crate) async fn run(
    client: &Client,
    command: WebhooksCommand,
    json: bool,
    out: &mut impl Write,
) -> anyhow::Result<()> {
    match command {
        WebhooksCommand::Add {
            endpoint,
            event_types,
            description,
            secret,
        } => {
            let mut body = json!({ "url": endpoint });
            if !event_types.is_empty() {
                body["event_types"] = json!(event_types);
            }
            if let Some(description) = description {
                body["description"] = Value::String(description);
            }
            if let Some(secret) = secret {
                body["secret"] = Value::String(secret);
            }
            let reply = client
                .send(Method::POST, &["api", "webhooks"], &[], Some(&body))
                .await?;
            if json {
                return Ok(write_raw(out, &reply.body)?);
            }
            let hook = reply.json.get("webhook").unwrap_or(&reply.json);
            writeln!(
                out,
                "webhook {} created for {}",
                cell(hook.get("id")),
                cell(hook.get("url"))
            )?;
            if let Some(secret) = reply
                .json
                .get("secret")
                .or_else(|| hook.get("secret"))
                .and_then(Value::as_str)
            {
                writeln!(out, "signing secret (shown only now, store it): {secret}")?;
            }
        }
        WebhooksCommand::List => {
            let reply = client.get(&["api", "webhooks"], &[]).await?;
            if json {
                return Ok(write_raw(out, &reply.body)?);
            }
            let rows = rows_of(&reply.json, "webhooks");
            if rows.is_empty() {
                writeln!(out, "no webhooks")?;
                return Ok(());
            }
            let mut table = Table::new(&["ID", "ENABLED", "EVENT TYPES", "URL", "DESCRIPTION"]);
            for row in rows {
                let types = row
                    .get("event_types")
                    .and_then(Value::as_array)
                    .map(|types| {
                        types
                            .iter()
                            .map(|t| cell(Some(t)))
                            .collect::<Vec<_>>()
                            .join(",")
                    })
                    .unwrap_or_else(|| "-".to_owned());
                let enabled = match row.get("enabled").and_then(Value::as_bool) {
                    Some(true) => "yes".to_owned(),
                    Some(false) => match row.get("disabled_reason").and_then(Value::as_str) {
                        Some(reason) => format!("no ({reason})"),
                        None => "no".to_owned(),
                    },
                    None => cell(row.get("status")),
                };
                table.row(vec![
                    cell(row.get("id")),
                    enabled,
                    types,
                    cell(row.get("url")),
                    cell(row.get("description")),
                ]);
            }
            table.write(out)?;
        }
        WebhooksCommand::Rm { id } => {
            let reply = client
                .send(Method::DELETE, &["api", "webhooks", &id], &[], None)
                .await?;
            if json {
                write_raw(out, &reply.body)?;
            } else {
                writeln!(out, "webhook {id} deleted")?;
            }
        }
        WebhooksCommand::Deliveries { id } => {
            let reply = client
                .get(&["api", "webhooks", &id, "deliveries"], &[])
                .await?;
            if json {
                return Ok(write_raw(out, &reply.body)?);
            }
            let rows = rows_of(&reply.json, "deliveries");
            if rows.is_empty() {
                writeln!(out, "no deliveries for webhook {id}")?;
                return Ok(());
            }
            let mut table = Table::new(&[
                "ID",
                "STATUS",
                "ATTEMPTS",
                "NEXT ATTEMPT",
                "EVENT TYPE",
                "LAST ERROR",
            ]);
            for row in rows {
                table.row(vec![
                    cell(row.get("id")),
                    cell(row.get("status")),
                    cell(row.get("attempts")),
                    cell(row.get("next_attempt_at")),
                    cell(row.get("event_type")),
                    cell(row.get("last_error")),
                ]);
            }
            table.write(out)?;
        }
    }
    Ok(())
}
