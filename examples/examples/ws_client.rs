//! A WebSocket client that prints notifications as the daemon pushes them.
//!
//! ```text
//! cargo run -p events-daemon                                  # in one terminal
//! cargo run -p events-examples --example ws_client            # in another
//! cargo run -p events-cli -- emit system.worker.crashed --source me \
//!     --payload '{"worker_name":"w-1"}'                    # in a third
//! ```
//!
//! Protocol (brief §9): connect to `/ws` (token as `Authorization: Bearer` or `?token=`),
//! send `{"type":"subscribe","topics":["notifications"]}`, receive `subscribed`, then
//! `notification_created` / `notification_updated` pushes carrying the full notification row
//! and the database `epoch`. Add `"events:job.*"` to the topics to get raw events too.
//!
//! The daemon pings every 30 s (tungstenite answers pongs for us) and closes a client that
//! cannot keep up with code 1013; a real client then re-reads `GET /api/notifications` and
//! reconnects. This one just reports the close and exits. Ctrl-C stops it.

use anyhow::Context as _;
use events_examples::{daemon_url, token, ws_url};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let url = ws_url(&daemon_url());
    let mut request = url
        .as_str()
        .into_client_request()
        .with_context(|| format!("bad websocket url {url}"))?;
    if let Some(token) = token() {
        request.headers_mut().insert(
            "Authorization",
            HeaderValue::from_str(&format!("Bearer {token}"))?,
        );
    }
    println!("connecting to {url}");
    let (mut socket, _response) = tokio_tungstenite::connect_async(request)
        .await
        .with_context(|| format!("cannot connect to {url} — is events-daemon running?"))?;

    let subscribe = json!({ "type": "subscribe", "topics": ["notifications"] });
    socket.send(Message::text(subscribe.to_string())).await?;

    while let Some(message) = socket.next().await {
        match message? {
            Message::Text(text) => print_message(&serde_json::from_str(&text)?),
            Message::Close(frame) => {
                match frame {
                    Some(frame) if u16::from(frame.code) == 1013 => {
                        println!("closed: too slow to keep up; resync over REST and reconnect")
                    }
                    Some(frame) => println!(
                        "closed by the daemon: {} {}",
                        u16::from(frame.code),
                        frame.reason
                    ),
                    None => println!("closed by the daemon"),
                }
                break;
            }
            // Pings are answered by tungstenite; binary frames are not part of the protocol.
            _ => {}
        }
    }
    Ok(())
}

fn print_message(message: &Value) {
    let kind = message["type"].as_str().unwrap_or("?");
    match kind {
        "subscribed" => println!(
            "subscribed to {}; waiting for notifications (Ctrl-C stops)",
            message["topics"]
        ),
        "notification_created" | "notification_updated" => {
            let n = &message["notification"];
            println!(
                "{:<21} #{} level={} {} [{} / {}] {}",
                kind,
                n["id"],
                n["level"],
                n["event_type"].as_str().unwrap_or("?"),
                n["human_status"].as_str().unwrap_or("?"),
                n["agent_status"].as_str().unwrap_or("?"),
                n["description"].as_str().unwrap_or(""),
            );
        }
        "error" => println!(
            "the daemon refused a message: {}: {}",
            message["code"], message["message"]
        ),
        _ => println!("{message}"),
    }
}
