//! An agent that works on notifications over HTTP: list → claim → in_progress → resolve.
//!
//! ```text
//! cargo run -p events-daemon                                  # in one terminal
//! cargo run -p events-cli -- emit system.worker.crashed --source me \
//!     --payload '{"worker_name":"w-1"}'                    # something to work on
//! AGENT_ID=bot-1 cargo run -p events-examples --example agent_loop
//! ```
//!
//! The agent polls `GET /api/notifications?human_status=unseen&agent_status=none`, keeps
//! the actionable ones, and for each: claims it (`POST .../claim`; a 409 means another
//! agent was faster — skip it, that is the point of claiming), marks it seen, sets
//! `in_progress`, does its "work", and resolves it with a summary (`POST .../resolve`).
//! Several agents can run this loop against one daemon: the claim makes sure each
//! notification is worked on once.
//!
//! Runs until Ctrl-C; `AGENT_ONCE=1` makes one pass and exits.

use std::time::Duration;

use anyhow::Context as _;
use events_examples::{daemon_url, token};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

/// The daemon's API as this agent uses it.
struct Api {
    http: reqwest::Client,
    base: String,
    token: Option<String>,
}

impl Api {
    /// Sends a request; returns the status and the JSON body (Null when empty).
    async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> anyhow::Result<(StatusCode, Value)> {
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.base))
            .timeout(Duration::from_secs(30));
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request
            .send()
            .await
            .with_context(|| format!("cannot reach the daemon at {}", self.base))?;
        let status = response.status();
        let text = response.text().await?;
        let json = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text)?
        };
        Ok((status, json))
    }

    /// Like `call`, but any non-2xx answer is an error quoting the daemon's message.
    async fn expect_ok(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> anyhow::Result<Value> {
        let (status, json) = self.call(method, path, body).await?;
        anyhow::ensure!(
            status.is_success(),
            "{path}: {status}: {}",
            json["error"]["message"]
        );
        Ok(json)
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let agent = std::env::var("AGENT_ID")
        .unwrap_or_else(|_| format!("example-agent-{}", std::process::id()));
    let once = std::env::var("AGENT_ONCE").is_ok_and(|v| v == "1");
    let api = Api {
        http: reqwest::Client::new(),
        base: daemon_url(),
        token: token(),
    };
    println!("agent {agent} working against {}", api.base);

    loop {
        let page = api
            .expect_ok(
                Method::GET,
                "/api/notifications?human_status=unseen&agent_status=none&limit=50",
                None,
            )
            .await?;
        let open: Vec<&Value> = page["notifications"]
            .as_array()
            .map(|rows| {
                rows.iter()
                    .filter(|n| n["actionable"].as_bool() == Some(true))
                    .collect()
            })
            .unwrap_or_default();
        if open.is_empty() {
            println!("no unseen actionable notifications");
        }
        for notification in open {
            work_on(&api, &agent, notification).await?;
        }
        if once {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}

async fn work_on(api: &Api, agent: &str, notification: &Value) -> anyhow::Result<()> {
    let id = &notification["id"];
    let event_type = notification["event_type"].as_str().unwrap_or("?");
    println!(
        "#{id} {event_type}: {}",
        notification["description"].as_str().unwrap_or("")
    );

    let (status, body) = api
        .call(
            Method::POST,
            &format!("/api/notifications/{id}/claim"),
            Some(json!({ "agent_id": agent })),
        )
        .await?;
    if status == StatusCode::CONFLICT {
        println!(
            "  another agent holds it ({}); skipping",
            body["error"]["message"]
        );
        return Ok(());
    }
    anyhow::ensure!(
        status.is_success(),
        "claim #{id}: {status}: {}",
        body["error"]["message"]
    );
    println!("  claimed");

    api.expect_ok(
        Method::PATCH,
        &format!("/api/notifications/{id}/seen"),
        None,
    )
    .await?;
    let in_progress = json!({ "status": "in_progress", "agent_id": agent });
    api.expect_ok(
        Method::PATCH,
        &format!("/api/notifications/{id}/status"),
        Some(in_progress),
    )
    .await?;
    println!("  in progress: working...");

    // The "work": a real agent would run a job, open a pull request, ask a model...
    tokio::time::sleep(Duration::from_millis(500)).await;
    let summary = format!("handled {event_type} automatically");

    let resolution = json!({ "summary": summary, "resolved_by": agent, "link": "https://example.invalid/runs/1" });
    let resolved = api
        .expect_ok(
            Method::POST,
            &format!("/api/notifications/{id}/resolve"),
            Some(resolution),
        )
        .await?;
    println!(
        "  resolved: agent_status={}",
        resolved["agent_status"].as_str().unwrap_or("?")
    );
    Ok(())
}
