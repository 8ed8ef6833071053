//! `events tail`: follow `GET /api/events/stream` (Server-Sent Events) and print each event.
//!
//! The connection is expected to drop (daemon restart, proxy timeout, laptop sleep): tail
//! reconnects with backoff and sends `Last-Event-ID` with the last `seq` it printed, so the
//! daemon resumes right after it and nothing is printed twice or skipped. Only the very first
//! connection failing is an error (exit 1) — that is almost always a wrong `--url`.

use std::io::Write;
use std::time::Duration;

use futures_util::StreamExt;
use reqwest::{Method, header};
use serde_json::Value;

use crate::cli::TailArgs;
use crate::client::{Client, error_from_response};
use crate::output::level_name;

/// The daemon sends a heartbeat every 15 s; this much silence means the connection is dead.
const IDLE_LIMIT: Duration = Duration::from_secs(45);
const MIN_BACKOFF: Duration = Duration::from_millis(500);
const MAX_BACKOFF: Duration = Duration::from_secs(30);

pub(crate) async fn run(
    client: &Client,
    args: TailArgs,
    json: bool,
    out: &mut impl Write,
) -> anyhow::Result<()> {
    let mut last_id: Option<String> = args.after_seq.map(|seq| seq.to_string());
    let mut epoch: Option<String> = None;
    let mut connected_once = false;
    let mut backoff = MIN_BACKOFF;
    loop {
        let mut url = client.url(&["api", "events", "stream"]);
        if let Some(glob) = &args.event_type {
            url.query_pairs_mut().append_pair("type", glob);
        }
        let mut request = client
            .request(Method::GET, url)
            .header(header::ACCEPT, "text/event-stream");
        if let Some(id) = &last_id {
            request = request.header("Last-Event-ID", id);
        }
        let problem = match request.send().await {
            Err(err) => {
                let failure = client.transport_failure(&err);
                if !connected_once {
                    return Err(failure.into());
                }
                failure.to_string()
            }
            Ok(response) if !response.status().is_success() => {
                let status = response.status();
                let body = response.text().await.unwrap_or_default();
                let failure = error_from_response(status, &body);
                // A daemon that is up but refuses us (bad glob, bad token) will not change its mind.
                if !connected_once || !status.is_server_error() {
                    return Err(failure.into());
                }
                failure.to_string()
            }
            Ok(response) => {
                if connected_once {
                    eprintln!("events: reconnected to {}", client.base());
                }
                connected_once = true;
                backoff = MIN_BACKOFF;
                let mut body = response.bytes_stream();
                let mut parser = SseParser::default();
                loop {
                    match tokio::time::timeout(IDLE_LIMIT, body.next()).await {
                        Err(_) => break format!("no data for {} s", IDLE_LIMIT.as_secs()),
                        Ok(None) => break "the daemon closed the stream".to_owned(),
                        Ok(Some(Err(err))) => break format!("connection lost: {err}"),
                        Ok(Some(Ok(chunk))) => {
                            for message in parser.feed(&chunk) {
                                if let Some(id) = &message.id {
                                    last_id = Some(id.clone());
                                }
                                print_message(&message, json, &mut epoch, out)?;
                            }
                        }
                    }
                }
            }
        };
        eprintln!(
            "events: {problem}; reconnecting in {:.1} s",
            backoff.as_secs_f64()
        );
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// Prints one SSE message if it carries an event; heartbeats and other kinds are skipped.
fn print_message(
    message: &SseMessage,
    json: bool,
    epoch: &mut Option<String>,
    out: &mut impl Write,
) -> std::io::Result<()> {
    let Ok(data) = serde_json::from_str::<Value>(&message.data) else {
        return Ok(());
    };
    // `{"seq","epoch","event":{envelope}}` per brief §9; a bare envelope is accepted too.
    let envelope = match data.get("event") {
        Some(inner @ Value::Object(_)) => inner,
        Some(Value::String(_)) => &data,
        _ => return Ok(()),
    };
    if let Some(new_epoch) = data.get("epoch").and_then(Value::as_str) {
        if epoch.as_deref().is_some_and(|old| old != new_epoch) {
            eprintln!(
                "events: the daemon's store was recreated (epoch changed); sequence numbers start over"
            );
        }
        *epoch = Some(new_epoch.to_owned());
    }
    if json {
        writeln!(out, "{}", message.data.trim())?;
    } else {
        let seq = data
            .get("seq")
            .map(Value::to_string)
            .or_else(|| message.id.clone())
            .unwrap_or_else(|| "-".into());
        let text = |key: &str| {
            envelope
                .get(key)
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_owned()
        };
        let mut line = format!(
            "#{seq} {} {} {} source={}",
            text("timestamp"),
            level_name(envelope.get("level")),
            text("event"),
            text("source")
        );
        let description = text("description");
        if !description.is_empty() {
            line.push_str(&format!(" \"{description}\""));
        }
        if let Some(payload) = envelope
            .get("payload")
            .filter(|p| p.as_object().is_some_and(|m| !m.is_empty()))
        {
            line.push_str(&format!(" {payload}"));
        }
        writeln!(out, "{line}")?;
    }
    out.flush()
}

/// One dispatched Server-Sent Events message.
#[derive(Debug, Default, PartialEq, Eq)]
struct SseMessage {
    id: Option<String>,
    event: Option<String>,
    data: String,
}

/// An incremental parser of the `text/event-stream` format (WHATWG HTML §9.2): lines
/// `field: value`, `:` comments, a blank line dispatches; chunks may split lines anywhere.
#[derive(Debug, Default)]
struct SseParser {
    buffer: Vec<u8>,
    current: SseMessage,
    has_data: bool,
}

impl SseParser {
    fn feed(&mut self, chunk: &[u8]) -> Vec<SseMessage> {
        self.buffer.extend_from_slice(chunk);
        let mut messages = Vec::new();
        while let Some(end) = self.buffer.iter().position(|b| *b == b'\n' || *b == b'\r') {
            // `\r\n` is one line end; a lone `\r` at the buffer's end may be half of one.
            if self.buffer[end] == b'\r' && end + 1 == self.buffer.len() {
                break;
            }
            let skip = if self.buffer[end] == b'\r' && self.buffer.get(end + 1) == Some(&b'\n') {
                2
            } else {
                1
            };
            let line: Vec<u8> = self.buffer.drain(..end + skip).take(end).collect();
            let line = String::from_utf8_lossy(&line);
            if line.is_empty() {
                if self.has_data {
                    messages.push(std::mem::take(&mut self.current));
                } else {
                    // The id still counts for resumption even without data.
                    let id = self.current.id.take();
                    self.current = SseMessage {
                        id,
                        ..SseMessage::default()
                    };
                }
                self.has_data = false;
                continue;
            }
            if line.starts_with(':') {
                continue;
            }
            let (field, value) = match line.split_once(':') {
                Some((field, value)) => (field, value.strip_prefix(' ').unwrap_or(value)),
                None => (line.as_ref(), ""),
            };
            match field {
                "data" => {
                    if self.has_data {
                        self.current.data.push('\n');
                    }
                    self.current.data.push_str(value);
                    self.has_data = true;
                }
                "id" if !value.contains('\0') => self.current.id = Some(value.to_owned()),
                "event" => self.current.event = Some(value.to_owned()),
                _ => {}
            }
        }
        messages
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_messages_split_across_chunks() {
        let mut parser = SseParser::default();
        assert!(parser.feed(b": heartbeat\n\nid: 4\nevent: ev").is_empty());
        assert!(parser.feed(b"ent\r\ndata: {\"a\":").is_empty());
        let messages = parser.feed(b"1}\r\n\r\n");
        assert_eq!(
            messages,
            vec![SseMessage {
                id: Some("4".into()),
                event: Some("event".into()),
                data: "{\"a\":1}".into()
            }]
        );
    }

    #[test]
    fn multi_line_data_is_joined_with_newlines() {
        let mut parser = SseParser::default();
        let messages = parser.feed(b"data: one\ndata:two\n\n");
        assert_eq!(messages[0].data, "one\ntwo");
    }

    #[test]
    fn prints_envelopes_and_skips_other_messages() {
        let message = SseMessage {
            id: Some("9".into()),
            event: Some("event".into()),
            data: r#"{"seq":9,"epoch":"e1","event":{"event":"job.done","source":"ci","level":2,"timestamp":"2026-01-01T00:00:00Z","description":"done","payload":{"n":1}}}"#.into(),
        };
        let mut epoch = None;
        let mut out = Vec::new();
        print_message(&message, false, &mut epoch, &mut out).expect("write");
        let heartbeat = SseMessage {
            data: "{}".into(),
            ..SseMessage::default()
        };
        print_message(&heartbeat, false, &mut epoch, &mut out).expect("write");
        let text = String::from_utf8(out).expect("utf-8");
        assert_eq!(
            text,
            "#9 2026-01-01T00:00:00Z WORKFLOW job.done source=ci \"done\" {\"n\":1}\n"
        );
        assert_eq!(epoch.as_deref(), Some("e1"));
    }
}
