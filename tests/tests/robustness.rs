//! Resource bounds of the real `events-daemon` (issue 9, item 4): oversized bodies, huge
//! batches and deeply nested JSON are refused with a JSON error and leave the daemon healthy;
//! slow headers are timed out; a WebSocket client that never reads is closed; many idle
//! WebSocket connections keep the daemon's memory within a documented bound.
//!
//! Memory is the resident set size (`VmRSS` in `/proc/PID/status`) of the daemon process.
//! The bound asserted here, [`RSS_BOUND_KIB`], is deliberately generous (a debug build on a
//! shared machine); the measured figures are printed (run with `--nocapture`) and recorded
//! in `docs/reliability.md`.
//!
//! `EVENTS_ROBUSTNESS_WS_CONNECTIONS` sets the number of idle WebSocket connections (default
//! 2,000 to keep CI quick; the documented run uses 10,000).

use std::time::{Duration, Instant};

use events_e2e::DaemonProcess;
use futures_util::{SinkExt, StreamExt, stream};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

/// Generous bound for anything asynchronous (shared, noisy 2-core machine).
const DEADLINE: Duration = Duration::from_secs(60);
/// Resident memory the daemon must stay under in every test here: 512 MiB.
const RSS_BOUND_KIB: u64 = 512 * 1024;
/// Idle WebSocket connections held by default.
const DEFAULT_IDLE_CONNECTIONS: usize = 2_000;

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap()
}

/// A daemon without a request rate limit: these tests are about size and time bounds, and
/// thousands of WebSocket upgrades in a second would otherwise be answered 429.
fn unlimited_daemon() -> DaemonProcess {
    DaemonProcess::builder()
        .env("EVENTS_LIMITS__REQUESTS_PER_SECOND", "1000000")
        .start()
}

/// The daemon's pid, found by its `--bind` argument (`DaemonProcess` does not expose it).
fn daemon_pid(daemon: &DaemonProcess) -> u32 {
    let bind = format!("127.0.0.1:{}", daemon.port());
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .find(|pid| {
            let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
                return false;
            };
            let args: Vec<&[u8]> = cmdline.split(|&b| b == 0).collect();
            args.iter().any(|a| a.ends_with(b"events-daemon"))
                && args
                    .windows(2)
                    .any(|w| w[0] == b"--bind" && w[1] == bind.as_bytes())
        })
        .unwrap_or_else(|| panic!("no events-daemon process with --bind {bind}"))
}

/// `VmRSS` of `pid` in KiB.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no VmRSS in /proc/{pid}/status"))
}

/// `/health` answers 200 on a fresh connection (a refused upload may leave the pooled one
/// closed by the server, which says nothing about the daemon).
async fn assert_healthy(_client: &reqwest::Client, daemon: &DaemonProcess) {
    let response = client()
        .get(format!("{}/health", daemon.url()))
        .send()
        .await
        .expect("daemon still answers");
    assert_eq!(response.status(), 200, "log:\n{}", daemon.log());
}

/// Status and body of a refused request, which must be the API's JSON error shape.
async fn json_error(response: reqwest::Response) -> (u16, Value) {
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    let body: Value = serde_json::from_str(&text)
        .unwrap_or_else(|err| panic!("status {status}: body is not JSON ({err}): {text:.200}"));
    assert!(
        body["error"]["code"].is_string() && body["error"]["message"].is_string(),
        "status {status}: not an error body: {body}"
    );
    (status, body)
}

/// Events of the log with this `source`.
async fn logged(client: &reqwest::Client, daemon: &DaemonProcess, source: &str) -> usize {
    let page: Value = client
        .get(format!(
            "{}/api/events?source={source}&limit=1000",
            daemon.url()
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    page["events"].as_array().unwrap().len()
}

fn event(source: &str, payload: Value) -> Value {
    json!({"event": "robustness.test.sent", "source": source, "payload": payload})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_over_one_mib_is_refused_with_413_json() {
    let daemon = unlimited_daemon();
    let client = client();
    let body = serde_json::to_vec(&event(
        "oversized",
        json!({"blob": "x".repeat(1024 * 1024 + 1024)}),
    ))
    .unwrap();
    let response = client
        .post(format!("{}/api/events", daemon.url()))
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    let (status, body) = json_error(response).await;
    assert_eq!(status, 413, "{body}");

    // Without a content-length (chunked) the limit applies while reading.
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        std::iter::once(b"{\"event\":\"a.b\",\"source\":\"s\",\"payload\":{\"blob\":\"".to_vec())
            .chain((0..1100).map(|_| vec![b'x'; 1024]))
            .chain(std::iter::once(b"\"}}".to_vec()))
            .map(Ok)
            .collect();
    let response = client
        .post(format!("{}/api/events", daemon.url()))
        .header("content-type", "application/json")
        .body(reqwest::Body::wrap_stream(stream::iter(chunks)))
        .send()
        .await
        .unwrap();
    let (status, body) = json_error(response).await;
    assert_eq!(status, 413, "{body}");
    assert_healthy(&client, &daemon).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_of_ten_thousand_events_is_refused_whole() {
    let daemon = unlimited_daemon();
    let client = client();
    let events: Vec<Value> = (0..10_000)
        .map(|i| event("huge-batch", json!({"i": i})))
        .collect();
    let body = serde_json::to_vec(&json!({ "events": events })).unwrap();
    assert!(
        body.len() < 1024 * 1024,
        "the batch must fit the body limit"
    );
    let response = client
        .post(format!("{}/api/events", daemon.url()))
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    let (status, body) = json_error(response).await;
    assert!((400..500).contains(&status), "{status}: {body}");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains("1000"), "names the limit: {message}");
    // Refused whole: nothing of it was written.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(logged(&client, &daemon, "huge-batch").await, 0);
    assert_healthy(&client, &daemon).await;
}

/// `[[[...]]]` / `{"a":{"a":...}}` nested `depth` levels.
fn nested(depth: usize, object: bool) -> String {
    let (open, close) = if object { ("{\"a\":", "}") } else { ("[", "]") };
    format!("{}1{}", open.repeat(depth), close.repeat(depth))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deeply_nested_json_is_refused_and_the_daemon_stays_healthy() {
    let daemon = unlimited_daemon();
    let client = client();
    let bodies = [
        // the whole body
        nested(10_000, false),
        nested(10_000, true),
        // inside the payload of an otherwise valid envelope
        format!(
            r#"{{"event":"a.b","source":"deep","payload":{{"deep":{}}}}}"#,
            nested(10_000, false)
        ),
        format!(
            r#"{{"event":"a.b","source":"deep","payload":{}}}"#,
            nested(10_000, true)
        ),
        // inside a batch item
        format!(
            r#"{{"events":[{{"event":"a.b","source":"deep","payload":{{"deep":{}}}}}]}}"#,
            nested(10_000, true)
        ),
    ];
    let pid = daemon_pid(&daemon);
    for body in bodies {
        let response = client
            .post(format!("{}/api/events", daemon.url()))
            .header("content-type", "application/json")
            .body(body.clone())
            .send()
            .await
            .unwrap();
        let (status, error) = json_error(response).await;
        assert!(
            (400..500).contains(&status),
            "{status}: {error} for {:.60}",
            body
        );
        assert_healthy(&client, &daemon).await;
    }
    assert_eq!(logged(&client, &daemon, "deep").await, 0);

    // Moderate nesting (below the parser's limit of 128) is an ordinary payload: it is
    // accepted, processed and read back intact.
    let moderate: Value = serde_json::from_str(&nested(100, true)).unwrap();
    let response = client
        .post(format!("{}/api/events", daemon.url()))
        .json(&event("moderate", json!({ "deep": moderate })))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 202, "{}", response.text().await.unwrap());
    let deadline = Instant::now() + DEADLINE;
    loop {
        let page: Value = client
            .get(format!("{}/api/events?source=moderate", daemon.url()))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if let Some(row) = page["events"].as_array().unwrap().first() {
            assert_eq!(row["event"]["payload"]["deep"], moderate);
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the moderately nested event was not logged; log:\n{}",
            daemon.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let rss = rss_kib(pid);
    eprintln!("nested-json: daemon VmRSS {rss} KiB");
    assert!(rss < RSS_BOUND_KIB, "VmRSS {rss} KiB");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_headers_are_timed_out() {
    let daemon = unlimited_daemon();
    let client = client();
    let mut slow = tokio::net::TcpStream::connect(("127.0.0.1", daemon.port()))
        .await
        .unwrap();
    slow.write_all(b"GET /health HTTP/1.1\r\nhost: 127.0.0.1\r\n")
        .await
        .unwrap();
    // One header byte every 500 ms, never finishing the head: the server must hang up
    // (the default header read timeout is 10 s; allow far more on a busy machine).
    let started = Instant::now();
    let mut buf = [0u8; 1024];
    let mut answered = Vec::new();
    let closed = loop {
        if started.elapsed() > DEADLINE * 2 {
            break false;
        }
        if slow.write_all(b"x").await.is_err() {
            break true;
        }
        match tokio::time::timeout(Duration::from_millis(500), slow.read(&mut buf)).await {
            Err(_) => {}
            Ok(Ok(0)) | Ok(Err(_)) => break true,
            Ok(Ok(n)) => answered.extend_from_slice(&buf[..n]),
        }
    };
    assert!(
        closed,
        "a client trickling its headers was still connected after {:?}",
        started.elapsed()
    );
    let answered = String::from_utf8_lossy(&answered);
    assert!(
        answered.is_empty() || !answered.starts_with("HTTP/1.1 200"),
        "the unfinished request was answered as if complete: {answered}"
    );
    eprintln!(
        "slow headers: connection closed after {:.1}s",
        started.elapsed().as_secs_f64()
    );
    // Ordinary requests on fresh connections are unaffected.
    assert_healthy(&client, &daemon).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_websocket_client_that_never_reads_is_closed_and_memory_stays_bounded() {
    let daemon = unlimited_daemon();
    let client = client();
    let pid = daemon_pid(&daemon);
    let (mut ws, _) = tokio_tungstenite::connect_async(daemon.ws_url())
        .await
        .unwrap();
    ws.send(Message::text(
        json!({"type": "subscribe", "topics": ["events:*"]}).to_string(),
    ))
    .await
    .unwrap();
    let subscribed = tokio::time::timeout(DEADLINE, ws.next())
        .await
        .expect("subscribed in time")
        .expect("a message")
        .unwrap();
    assert!(subscribed.to_text().unwrap().contains("subscribed"));

    // From here on the client never reads. 6,000 events of 4 KiB (24 MiB of pushes) are far
    // more than the socket buffers and the per-connection queue hold together.
    let baseline = rss_kib(pid);
    let blob = "y".repeat(4096);
    let mut peak = baseline;
    for batch in 0..30 {
        let events: Vec<Value> = (0..200)
            .map(|i| event("flood", json!({"batch": batch, "i": i, "blob": blob})))
            .collect();
        let response = client
            .post(format!("{}/api/events", daemon.url()))
            .json(&json!({ "events": events }))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 202, "{}", response.text().await.unwrap());
        peak = peak.max(rss_kib(pid));
    }
    // Let the processor work through the flood while the client still does not read.
    let deadline = Instant::now() + DEADLINE * 2;
    loop {
        peak = peak.max(rss_kib(pid));
        let page: Value = client
            .get(format!(
                "{}/api/events?source=flood&after_seq=5900&limit=1000",
                daemon.url()
            ))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if !page["events"].as_array().unwrap().is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the flood was not processed; log:\n{}",
            daemon.log()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    // The send timeout (10 s) bounds how long a stuck send may take before the drop.
    tokio::time::sleep(Duration::from_secs(12)).await;
    peak = peak.max(rss_kib(pid));

    // Now read what was buffered: the stream must end with a 1013 close or a dropped
    // connection, never just go on.
    let mut received = 0usize;
    let ending = tokio::time::timeout(DEADLINE, async {
        loop {
            match ws.next().await {
                Some(Ok(Message::Close(frame))) => {
                    break format!("close {:?}", frame.map(|f| f.code));
                }
                Some(Ok(_)) => received += 1,
                Some(Err(err)) => break format!("error {err}"),
                None => break "end of stream".to_owned(),
            }
        }
    })
    .await
    .unwrap_or_else(|_| {
        panic!("the never-reading client was not closed; it still had messages after {received}")
    });
    if ending.starts_with("close") {
        assert_eq!(
            ending,
            format!("close {:?}", Some(CloseCode::Again)),
            "closed with 1013"
        );
    }
    eprintln!(
        "slow ws client: {ending} after {received} buffered messages; daemon VmRSS baseline {baseline} KiB, peak {peak} KiB"
    );
    assert!(peak < RSS_BOUND_KIB, "VmRSS peaked at {peak} KiB");
    assert_healthy(&client, &daemon).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_websocket_connections_keep_memory_bounded() {
    let count: usize = std::env::var("EVENTS_ROBUSTNESS_WS_CONNECTIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(DEFAULT_IDLE_CONNECTIONS);
    let daemon = unlimited_daemon();
    let client = client();
    let pid = daemon_pid(&daemon);
    let baseline = rss_kib(pid);
    let url = daemon.ws_url();
    let started = Instant::now();
    let connections: Vec<_> = stream::iter(0..count)
        .map(|_| {
            let url = url.clone();
            async move {
                let (mut ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
                ws.send(Message::text(
                    json!({"type": "subscribe", "topics": ["events:robustness.*"]}).to_string(),
                ))
                .await
                .unwrap();
                ws
            }
        })
        .buffer_unordered(32)
        .collect()
        .await;
    assert_eq!(connections.len(), count);
    let opened_in = started.elapsed();
    assert_healthy(&client, &daemon).await;

    // Every connection still gets pushes: one event reaches the first and the last opened.
    let response = client
        .post(format!("{}/api/events", daemon.url()))
        .json(&event("idle-ws", json!({})))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 202);
    let mut connections = connections;
    let last = connections.len() - 1;
    for index in [0, last] {
        let ws = &mut connections[index];
        let got_event = tokio::time::timeout(DEADLINE, async {
            while let Some(Ok(message)) = ws.next().await {
                if let Ok(text) = message.to_text()
                    && text.contains("\"type\":\"event\"")
                {
                    return true;
                }
            }
            false
        })
        .await
        .unwrap_or(false);
        assert!(got_event, "connection {index} got no push");
    }
    let held = rss_kib(pid);
    eprintln!(
        "idle ws: {count} connections opened in {:.1}s; daemon VmRSS baseline {baseline} KiB, holding {held} KiB ({:.1} KiB per connection)",
        opened_in.as_secs_f64(),
        held.saturating_sub(baseline) as f64 / count as f64
    );
    assert!(
        held < RSS_BOUND_KIB,
        "VmRSS {held} KiB with {count} connections"
    );
    drop(connections);
    assert_healthy(&client, &daemon).await;
}
