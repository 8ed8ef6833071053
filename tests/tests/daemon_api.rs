//! The real `events-daemon` binary driven over HTTP, WebSocket and SSE (issue 5 acceptance).

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use events_e2e::DaemonProcess;
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

/// Generous bound for anything asynchronous to become visible (shared, noisy 2-core machine).
const DEADLINE: Duration = Duration::from_secs(20);

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

fn todo_created(slug: &str) -> Value {
    json!({
        "event": "domain.software-development.planning.todo_created",
        "source": "e2e",
        "level": 2,
        "domain": "software-development",
        "description": format!("todo {slug}"),
        "payload": {"slug": slug},
    })
}

async fn post(
    client: &reqwest::Client,
    url: String,
    token: Option<&str>,
    body: &Value,
) -> reqwest::Response {
    let mut request = client.post(url).json(body);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    request.send().await.unwrap()
}

async fn error_of(response: reqwest::Response) -> (u16, Value) {
    let status = response.status().as_u16();
    let body: Value = response
        .json()
        .await
        .unwrap_or_else(|err| panic!("status {status}: body is not JSON: {err}"));
    assert!(
        body["error"]["code"].is_string() && body["error"]["message"].is_string(),
        "not an error body: {body}"
    );
    (status, body)
}

/// Polls the notification list until one with `slug` shows up.
async fn wait_for_notification(
    client: &reqwest::Client,
    base: &str,
    token: Option<&str>,
    slug: &str,
) -> Value {
    let deadline = Instant::now() + DEADLINE;
    loop {
        let mut request = client.get(format!("{base}/api/notifications?limit=200"));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let page: Value = request.send().await.unwrap().json().await.unwrap();
        if let Some(found) = page["notifications"]
            .as_array()
            .unwrap()
            .iter()
            .find(|n| n["payload"]["slug"] == slug)
        {
            return found.clone();
        }
        assert!(
            Instant::now() < deadline,
            "notification {slug} not listed within {DEADLINE:?}: {page}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn ws_connect(url: String) -> Ws {
    let (ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    ws
}

async fn ws_next_json(ws: &mut Ws) -> Value {
    loop {
        let message = tokio::time::timeout(DEADLINE, ws.next())
            .await
            .expect("websocket message within deadline");
        match message.expect("websocket open").expect("websocket frame") {
            Message::Text(text) => return serde_json::from_str(text.as_str()).unwrap(),
            Message::Ping(_) | Message::Pong(_) => continue,
            other => panic!("unexpected websocket frame {other:?}"),
        }
    }
}

async fn ws_wait_for(ws: &mut Ws, mut matches: impl FnMut(&Value) -> bool) -> Value {
    loop {
        let message = ws_next_json(ws).await;
        if matches(&message) {
            return message;
        }
    }
}

/// emit → listed → WebSocket `notification_created` → claim / status / resolve with the 409s.
async fn notification_flow(daemon: &DaemonProcess, slug: &str) {
    let http = client();
    let base = daemon.url();
    let mut ws = ws_connect(daemon.ws_url()).await;
    ws.send(Message::text(
        json!({"type":"subscribe","topics":["notifications","events:domain.*"]}).to_string(),
    ))
    .await
    .unwrap();
    let subscribed = ws_next_json(&mut ws).await;
    assert_eq!(subscribed["type"], "subscribed", "{subscribed}");
    // A malformed message is answered, not fatal.
    ws.send(Message::text("{not json")).await.unwrap();
    assert_eq!(ws_next_json(&mut ws).await["type"], "error");

    let response = post(
        &http,
        format!("{base}/api/events"),
        None,
        &todo_created(slug),
    )
    .await;
    assert_eq!(response.status(), 202);
    let accepted: Value = response.json().await.unwrap();
    let event_id = accepted["accepted"][0]["id"].as_str().unwrap().to_owned();
    assert!(accepted["accepted"][0]["stream_id"].is_string());

    let listed = wait_for_notification(&http, &base, None, slug).await;
    let id = listed["id"].as_i64().unwrap();
    assert_eq!(listed["human_status"], "unseen");
    assert_eq!(listed["agent_status"], "none");
    assert!(listed["actionable"].is_boolean());

    // Both pushes arrive, in either order (the event is pushed on commit, the row right after).
    let (mut created, mut event_push) = (None, None);
    while created.is_none() || event_push.is_none() {
        let message = ws_next_json(&mut ws).await;
        if message["type"] == "notification_created" && message["notification"]["id"] == id {
            created = Some(message);
        } else if message["type"] == "event" && message["event"]["id"] == event_id.as_str() {
            event_push = Some(message);
        }
    }
    let (created, event_push) = (created.unwrap(), event_push.unwrap());
    assert!(created["epoch"].is_string());
    assert_eq!(created["epoch"], event_push["epoch"]);
    assert!(event_push["seq"].as_i64().unwrap() > 0);

    let n = format!("{base}/api/notifications/{id}");
    let get: Value = http.get(&n).send().await.unwrap().json().await.unwrap();
    assert_eq!(get["id"], id);
    let seen = http.patch(format!("{n}/seen")).send().await.unwrap();
    assert_eq!(seen.status(), 200);
    assert_eq!(seen.json::<Value>().await.unwrap()["human_status"], "seen");
    let unseen: Value = http
        .patch(format!("{n}/seen?unseen=true"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(unseen["human_status"], "unseen");

    let claim = post(
        &http,
        format!("{n}/claim"),
        None,
        &json!({"agent_id":"agent-a"}),
    )
    .await;
    assert_eq!(claim.status(), 200);
    let again = post(
        &http,
        format!("{n}/claim"),
        None,
        &json!({"agent_id":"agent-a"}),
    )
    .await;
    assert_eq!(again.status(), 200, "same agent claiming again is a no-op");
    let (status, _) = error_of(
        post(
            &http,
            format!("{n}/claim"),
            None,
            &json!({"agent_id":"agent-b"}),
        )
        .await,
    )
    .await;
    assert_eq!(status, 409);
    let progress = http
        .patch(format!("{n}/status"))
        .json(&json!({"status":"in_progress","agent_id":"agent-a"}))
        .send()
        .await
        .unwrap();
    assert_eq!(progress.status(), 200);
    assert_eq!(
        progress.json::<Value>().await.unwrap()["agent_status"],
        "in_progress"
    );
    let updated = ws_wait_for(&mut ws, |m| {
        m["type"] == "notification_updated" && m["notification"]["agent_status"] == "in_progress"
    })
    .await;
    assert_eq!(updated["notification"]["id"], id);
    let (status, _) = error_of(
        http.patch(format!("{n}/status"))
            .json(&json!({"status":"teleported","agent_id":"agent-a"}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 400);

    let resolve = post(
        &http,
        format!("{n}/resolve"),
        None,
        &json!({"summary":"done","link":"https://x.invalid/1","resolved_by":"agent-a"}),
    )
    .await;
    assert_eq!(resolve.status(), 200);
    let resolved: Value = resolve.json().await.unwrap();
    assert_eq!(resolved["agent_status"], "resolved");
    assert_eq!(resolved["resolution"]["summary"], "done");
    let (status, _) = error_of(
        post(
            &http,
            format!("{n}/resolve"),
            None,
            &json!({"summary":"again","resolved_by":"agent-a"}),
        )
        .await,
    )
    .await;
    assert_eq!(status, 409);
    let (status, _) = error_of(
        post(
            &http,
            format!("{n}/claim"),
            None,
            &json!({"agent_id":"agent-c"}),
        )
        .await,
    )
    .await;
    assert_eq!(status, 409);

    let (status, _) = error_of(
        http.get(format!("{base}/api/notifications/999999"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 404);
    let (status, _) = error_of(
        post(
            &http,
            format!("{base}/api/notifications/999999/claim"),
            None,
            &json!({"agent_id":"a"}),
        )
        .await,
    )
    .await;
    assert_eq!(status, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_mode_emit_list_push_and_state_machine() {
    let daemon = DaemonProcess::start();
    notification_flow(&daemon, "embedded-flow").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_mode_emit_list_push_and_state_machine() {
    let redis = events_testkit::RedisServer::start();
    let daemon = DaemonProcess::builder().redis(redis.url()).start();
    let ready: Value = client()
        .get(format!("{}/ready", daemon.url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(ready["components"]["redis"].is_object(), "{ready}");
    notification_flow(&daemon, "redis-flow").await;
}

/// Reads SSE frames until `count` events arrived; returns their `id:` values.
async fn sse_read(response: reqwest::Response, count: usize) -> Vec<i64> {
    assert_eq!(response.status(), 200);
    let mut body = response.bytes_stream();
    let mut buffer = String::new();
    let mut ids = Vec::new();
    while ids.len() < count {
        let chunk = tokio::time::timeout(DEADLINE, body.next())
            .await
            .expect("sse data within deadline")
            .expect("stream open")
            .unwrap();
        buffer.push_str(std::str::from_utf8(&chunk).unwrap());
        while let Some(end) = buffer.find("\n\n") {
            let frame: String = buffer.drain(..end + 2).collect();
            let id = frame
                .lines()
                .find_map(|line| line.strip_prefix("id:"))
                .map(|id| id.trim().parse::<i64>().unwrap());
            let data = frame.lines().find_map(|line| line.strip_prefix("data:"));
            if let (Some(id), Some(data)) = (id, data) {
                let data: Value = serde_json::from_str(data.trim()).unwrap();
                assert_eq!(data["seq"], id);
                assert!(data["epoch"].is_string());
                ids.push(id);
            }
        }
    }
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sse_resumes_with_last_event_id_without_gaps_or_repeats() {
    let daemon = DaemonProcess::start();
    let http = client();
    let base = daemon.url();
    let batch = |from: usize| json!({"events": (from..from + 5).map(|i| json!({"event":"job.step","source":"e2e","payload":{"i":i}})).collect::<Vec<_>>()});
    assert_eq!(
        post(&http, format!("{base}/api/events"), None, &batch(0))
            .await
            .status(),
        202
    );

    // Everything from the start of the log: the restart event plus our five.
    let first = sse_read(
        http.get(format!("{base}/api/events/stream?after_seq=0"))
            .send()
            .await
            .unwrap(),
        6,
    )
    .await;
    let last = *first.last().unwrap();
    // New events while disconnected, then resume from the last id seen.
    assert_eq!(
        post(&http, format!("{base}/api/events"), None, &batch(5))
            .await
            .status(),
        202
    );
    let resumed = http
        .get(format!("{base}/api/events/stream"))
        .header("last-event-id", last.to_string())
        .send()
        .await
        .unwrap();
    let reader = tokio::spawn(sse_read(resumed, 10));
    // Live events after the replay, delivered by the hub.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        post(&http, format!("{base}/api/events"), None, &batch(10))
            .await
            .status(),
        202
    );
    let second = reader.await.unwrap();
    let all: Vec<i64> = first.iter().chain(second.iter()).copied().collect();
    let expected: Vec<i64> = (all[0]..all[0] + all.len() as i64).collect();
    assert_eq!(
        all, expected,
        "seqs must be contiguous with no repeats across the resume"
    );

    // A type filter only passes matching events.
    let filtered = sse_read(
        http.get(format!(
            "{base}/api/events/stream?after_seq=0&type=system.*"
        ))
        .send()
        .await
        .unwrap(),
        1,
    )
    .await;
    assert_eq!(filtered, vec![first[0]]);
    let (status, _) = error_of(
        http.get(format!("{base}/api/events/stream"))
            .header("last-event-id", "abc")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 400);
}

const AUTH_CONFIG: &str = r#"
[[auth.tokens]]
name = "producer"
token = "p-token"
roles = ["producer"]

[[auth.tokens]]
name = "reader"
token = "r-token"
roles = ["reader"]

[[auth.tokens]]
name = "agent"
token = "a-token"
roles = ["agent"]

[[auth.tokens]]
name = "admin"
token_sha256 = "4e7ebd4b4b2c1b3f0b3b9a0b7c6f7f3c5e1f0e6d2a7f0b3d8c9e1a2b3c4d5e6f"
roles = ["admin"]
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_rejection_is_a_json_error_with_the_right_status() {
    let daemon = DaemonProcess::builder().config_toml(AUTH_CONFIG).start();
    let http = client();
    let base = daemon.url();
    let events = format!("{base}/api/events");

    // 401 without or with an unknown token; 403 with the wrong role.
    let (status, _) = error_of(
        http.get(format!("{base}/api/notifications"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 401);
    let (status, _) = error_of(
        http.get(format!("{base}/api/notifications"))
            .bearer_auth("nope")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 401);
    let (status, body) =
        error_of(post(&http, events.clone(), Some("r-token"), &todo_created("x")).await).await;
    assert_eq!(status, 403, "{body}");
    let (status, _) = error_of(
        http.get(format!("{base}/api/dead-letters"))
            .bearer_auth("a-token")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 403);
    assert_eq!(
        http.get(format!("{base}/api/notifications"))
            .bearer_auth("a-token")
            .send()
            .await
            .unwrap()
            .status(),
        200,
        "agents read"
    );
    assert_eq!(
        post(&http, events.clone(), Some("p-token"), &todo_created("ok"))
            .await
            .status(),
        202
    );

    // Malformed JSON 400, wrong content type 415, oversize 413.
    let raw = |body: &'static str, content_type: &'static str| {
        http.post(events.clone())
            .bearer_auth("p-token")
            .header("content-type", content_type)
            .body(body)
            .send()
    };
    let (status, body) = error_of(raw("{\"event\":", "application/json").await.unwrap()).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (400, Some("invalid_json"))
    );
    let (status, _) = error_of(raw("{}", "text/plain").await.unwrap()).await;
    assert_eq!(status, 415);
    let big = format!(
        "{{\"event\":\"job.big\",\"source\":\"e2e\",\"payload\":{{\"blob\":\"{}\"}}}}",
        "x".repeat(2 * 1024 * 1024)
    );
    // Its own client: the server closes the connection after refusing a body it did not read.
    let response = client()
        .post(events.clone())
        .bearer_auth("p-token")
        .header("content-type", "application/json")
        .body(big)
        .send()
        .await;
    match response {
        Ok(response) => assert_eq!(error_of(response).await.0, 413),
        // The server may close the connection while the client is still sending the body.
        Err(err) => assert!(err.is_request() || err.is_body(), "{err}"),
    }

    // Unknown enum value and missing field: 422 naming the field; a batch is refused whole.
    let (status, body) = error_of(
        post(
            &http,
            events.clone(),
            Some("p-token"),
            &json!({"event":"job.x","source":"e2e","visibility":"galaxy"}),
        )
        .await,
    )
    .await;
    assert_eq!(status, 422);
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("visibility"),
        "{body}"
    );
    let (status, body) = error_of(
        post(
            &http,
            events.clone(),
            Some("p-token"),
            &json!({"event":"job.x"}),
        )
        .await,
    )
    .await;
    assert_eq!(status, 422);
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("source"),
        "{body}"
    );
    let batch = json!({"events":[todo_created("b1"), {"event":"NOT VALID","source":"e2e"}, todo_created("b3")]});
    let (status, body) = error_of(post(&http, events.clone(), Some("p-token"), &batch).await).await;
    assert_eq!(status, 422);
    assert_eq!(body["error"]["items"][0]["index"], 1, "{body}");
    // A batch body with stray keys is named as such, not as an envelope missing `event`.
    let stray = json!({"events":[todo_created("b4")], "extra": true});
    let (status, body) = error_of(post(&http, events.clone(), Some("p-token"), &stray).await).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (422, Some("invalid_batch")),
        "{body}"
    );
    assert!(
        body["error"]["message"].as_str().unwrap().contains("extra"),
        "{body}"
    );
    // A top-level array is not an object body, even though serde would take it by position.
    let array = json!([todo_created("b5")]);
    let (status, body) = error_of(post(&http, events.clone(), Some("p-token"), &array).await).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (422, Some("invalid_body")),
        "{body}"
    );
    // Catalog idempotency field missing (todo_created is keyed on slug): 422.
    let no_slug =
        json!({"event":"domain.software-development.planning.todo_created","source":"e2e"});
    let (status, body) =
        error_of(post(&http, events.clone(), Some("p-token"), &no_slug).await).await;
    assert_eq!(
        (status, body["error"]["items"][0]["code"].as_str()),
        (422, Some("missing_idempotency_field")),
        "{body}"
    );

    // Bad ids, bad query values, unknown ids, unknown routes and methods.
    let get = |path: String| {
        http.get(format!("{base}{path}"))
            .bearer_auth("r-token")
            .send()
    };
    assert_eq!(
        error_of(get("/api/notifications/abc".into()).await.unwrap())
            .await
            .0,
        400
    );
    let (status, body) = error_of(
        get("/api/notifications?agent_status=sleeping".into())
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 400);
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("agent_status"),
        "{body}"
    );
    assert_eq!(
        error_of(get("/api/events?since=yesterday".into()).await.unwrap())
            .await
            .0,
        400
    );
    assert_eq!(
        error_of(get("/api/notifications/424242".into()).await.unwrap())
            .await
            .0,
        404
    );
    assert_eq!(
        error_of(get("/no/such/route".into()).await.unwrap())
            .await
            .0,
        404
    );
    assert_eq!(
        error_of(
            http.put(format!("{base}/api/catalog"))
                .bearer_auth("r-token")
                .send()
                .await
                .unwrap()
        )
        .await
        .0,
        405
    );
    let claim = post(
        &http,
        format!("{base}/api/notifications/1/claim"),
        Some("a-token"),
        &json!({"agent":"x"}),
    )
    .await;
    assert_eq!(error_of(claim).await.0, 422);
    // WebSocket without a token is refused; with ?token= it is accepted.
    assert!(
        tokio_tungstenite::connect_async(daemon.ws_url())
            .await
            .is_err()
    );
    let mut ws = ws_connect(format!("{}?token=r-token", daemon.ws_url())).await;
    ws.send(Message::text(r#"{"type":"ping"}"#)).await.unwrap();
    assert_eq!(ws_next_json(&mut ws).await["type"], "pong");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limit_answers_429_with_retry_after() {
    let daemon = DaemonProcess::builder()
        .config_toml(AUTH_CONFIG)
        .env("EVENTS_LIMITS__REQUESTS_PER_SECOND", "3")
        .start();
    let http = client();
    let mut limited = None;
    for _ in 0..50 {
        let response = http
            .get(format!("{}/api/catalog", daemon.url()))
            .bearer_auth("r-token")
            .send()
            .await
            .unwrap();
        if response.status() == 429 {
            limited = Some(response);
            break;
        }
    }
    let response = limited.expect("a 429 within 50 requests at 3 requests per second");
    let retry_after: u64 = response.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(retry_after >= 1);
    assert_eq!(error_of(response).await.1["error"]["code"], "rate_limited");
    // Buckets are per token.
    assert_eq!(
        http.get(format!("{}/api/catalog", daemon.url()))
            .bearer_auth("a-token")
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openapi_is_openapi_3_and_covers_every_route() {
    let daemon = DaemonProcess::start();
    let doc: Value = client()
        .get(format!("{}/openapi.json", daemon.url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        doc["openapi"].as_str().unwrap().starts_with("3."),
        "{}",
        doc["openapi"]
    );
    assert!(doc["info"]["title"].is_string());
    for route in events_api::routes() {
        let operation = &doc["paths"][&route.path][route.method.as_str().to_ascii_lowercase()];
        assert!(
            operation.is_object(),
            "{} {} missing from /openapi.json",
            route.method,
            route.path
        );
        assert!(
            operation["responses"].is_object(),
            "{} {} has no responses",
            route.method,
            route.path
        );
    }
    let metrics = client()
        .get(format!("{}/metrics", daemon.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(metrics.status(), 200);
}

/// The value of an unlabelled counter in Prometheus text, if it is there.
fn counter(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .filter_map(|line| line.strip_prefix(name)?.strip_prefix(' '))
        .find_map(|value| value.trim().parse().ok())
}

/// `/metrics` carries the storage layer's own counts: its commits, and the background
/// checkpoints that copy them back into the database file (fewer: the commits of a few
/// milliseconds share one).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_the_storage_commits_and_checkpoints() {
    let daemon = DaemonProcess::start();
    let base = daemon.url();
    let http = client();
    let accepted = post(
        &http,
        format!("{base}/api/events"),
        None,
        &todo_created("metrics-1"),
    )
    .await;
    assert_eq!(accepted.status(), 202);
    wait_for_notification(&http, &base, None, "metrics-1").await;
    let deadline = Instant::now() + DEADLINE;
    loop {
        let text = http
            .get(format!("{base}/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let commits = counter(&text, "events_storage_commits_total");
        let checkpoints = counter(&text, "events_storage_checkpoints_total");
        // the ingest's append and the processor's batch at least
        if let (Some(commits), Some(checkpoints)) = (commits, checkpoints)
            && commits >= 2.0
            && checkpoints >= 1.0
        {
            assert!(
                checkpoints <= commits,
                "{checkpoints} checkpoints for {commits} commits"
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "commits {commits:?}, checkpoints {checkpoints:?} in /metrics:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_under_load_exits_cleanly_and_loses_no_accepted_event() {
    let mut daemon = DaemonProcess::start();
    let base = daemon.url();
    let http = client();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let load = {
        let (http, base, stop) = (http.clone(), base.clone(), stop.clone());
        tokio::spawn(async move {
            let mut accepted = BTreeSet::new();
            let mut round = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) && round < 2000 {
                round += 1;
                let batch = json!({"events": (0..20).map(|i| json!({"event":"load.tick","source":"e2e","payload":{"round":round,"i":i}})).collect::<Vec<_>>()});
                match http
                    .post(format!("{base}/api/events"))
                    .json(&batch)
                    .send()
                    .await
                {
                    Ok(response) if response.status() == 202 => {
                        let body: Value = response.json().await.unwrap();
                        accepted.extend(
                            body["accepted"]
                                .as_array()
                                .unwrap()
                                .iter()
                                .map(|a| a["id"].as_str().unwrap().to_owned()),
                        );
                    }
                    _ => tokio::time::sleep(Duration::from_millis(5)).await,
                }
            }
            accepted
        })
    };
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let status = tokio::task::spawn_blocking(move || {
        let status = daemon.stop_within(Duration::from_secs(10));
        (daemon, status)
    });
    let (mut daemon, status) = status.await.unwrap();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let accepted = load.await.unwrap();
    let status =
        status.unwrap_or_else(|| panic!("no exit within 10 s of SIGTERM; log:\n{}", daemon.log()));
    assert!(
        status.success(),
        "exit status {status}; log:\n{}",
        daemon.log()
    );
    assert!(!accepted.is_empty(), "the load produced no accepted event");

    daemon.restart();
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut logged = BTreeSet::new();
    let mut after = 0;
    loop {
        let page: Value = http
            .get(format!(
                "{}/api/events?after_seq={after}&limit=1000",
                daemon.url()
            ))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        for row in page["events"].as_array().unwrap() {
            logged.insert(row["event"]["id"].as_str().unwrap().to_owned());
        }
        after = page["next_after_seq"].as_i64().unwrap_or(after);
        if accepted.is_subset(&logged) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{} accepted events missing after restart",
            accepted.difference(&logged).count()
        );
        if page["events"].as_array().unwrap().is_empty() {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// SIGTERM closes a subscribed WebSocket with 1001 "daemon shutting down" (not a dropped
/// socket), also after the connection has already received pushes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_closes_websockets_with_going_away() {
    let mut daemon = DaemonProcess::start();
    let mut ws = ws_connect(daemon.ws_url()).await;
    ws.send(Message::text(
        json!({"type":"subscribe","topics":["notifications"]}).to_string(),
    ))
    .await
    .unwrap();
    ws_wait_for(&mut ws, |m| m["type"] == "subscribed").await;
    let response = post(
        &client(),
        format!("{}/api/events", daemon.url()),
        None,
        &json!({"events": [todo_created("bye")]}),
    )
    .await;
    assert_eq!(response.status(), 202);
    ws_wait_for(&mut ws, |m| m["type"] == "notification_created").await;

    let stopping = std::thread::spawn(move || daemon.stop());
    let close = loop {
        let message = tokio::time::timeout(DEADLINE, ws.next())
            .await
            .expect("a close frame within the deadline");
        match message.expect("websocket open until the close frame") {
            Ok(Message::Close(frame)) => break frame.expect("a close code"),
            Ok(_) => continue,
            Err(e) => panic!("socket failed instead of closing: {e}"),
        }
    };
    assert_eq!(u16::from(close.code), 1001);
    assert_eq!(close.reason.as_str(), "daemon shutting down");
    assert!(stopping.join().unwrap().success());
}

/// One thread of a running daemon as `/proc` shows it.
#[cfg(target_os = "linux")]
#[derive(Debug)]
struct DaemonThread {
    /// Cut to 15 bytes by the kernel: "events-processor" reads "events-processo".
    name: String,
    /// Field 19 of the task's `stat`.
    nice: i32,
    /// Field 41 (`policy`): 0 normal, 2 round-robin real-time, 3 batch.
    policy: u32,
    /// The daemon's main thread (task id = process id), which nothing changes.
    main: bool,
}

#[cfg(target_os = "linux")]
fn daemon_threads(pid: u32) -> Vec<DaemonThread> {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .expect("/proc is mounted")
        .flatten()
        .filter_map(|task| {
            let name = std::fs::read_to_string(task.path().join("comm")).ok()?;
            let stat = std::fs::read_to_string(task.path().join("stat")).ok()?;
            // fields after the parenthesised name (field 2) start at field 3
            let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
            Some(DaemonThread {
                name: name.trim_end().to_owned(),
                nice: fields.get(16)?.parse().ok()?,
                policy: fields.get(38)?.parse().ok()?,
                main: task.file_name().to_str()? == pid.to_string(),
            })
        })
        .collect()
}

/// The scheduling policy of each writer thread among `threads` (there is one).
#[cfg(target_os = "linux")]
fn writer_policies(threads: &[DaemonThread]) -> Vec<u32> {
    threads
        .iter()
        .filter(|t| t.name == "events-writer")
        .map(|t| t.policy)
        .collect()
}

/// With Redis, the daemon's processor runs on threads of its own, favoured (`nice` −5), and
/// its storage writer more so (−10, and real-time round-robin), where the process may raise
/// a priority (as root, in CI), and at the priority the daemon started with where it may
/// not; the main runtime (HTTP API, delivery) is never changed. With the embedded transport
/// the processor stays on the main runtime (see `ProcessorHome` in the daemon).
#[cfg(target_os = "linux")]
#[tokio::test]
async fn the_processor_and_the_writer_run_favoured_where_permitted() {
    let redis = events_testkit::RedisServer::start();
    let daemon = DaemonProcess::builder().redis(redis.url()).start();
    let threads = daemon_threads(daemon.pid());
    let base = threads
        .iter()
        .find(|t| t.main)
        .expect("the main thread")
        .nice;
    let of =
        |name: &str| -> Vec<&DaemonThread> { threads.iter().filter(|t| t.name == name).collect() };
    let (processor, workers, writer) = (
        of("events-processo"),
        of("tokio-rt-worker"),
        of("events-writer"),
    );
    assert!(
        !processor.is_empty(),
        "no processor thread among {threads:?}"
    );
    assert!(
        !workers.is_empty(),
        "no main runtime worker among {threads:?}"
    );
    assert_eq!(writer.len(), 1, "one writer thread among {threads:?}");
    let (want_processor, want_writer) = if events_sched::may_favour_threads() {
        (base.min(-5), base.min(-10))
    } else {
        (base, base)
    };
    let may_be_realtime =
        std::thread::spawn(|| events_sched::make_current_thread_realtime(1).is_ok())
            .join()
            .unwrap();
    assert!(
        processor.iter().all(|t| t.nice == want_processor),
        "processor threads {processor:?}, want nice {want_processor} (started at {base})"
    );
    assert!(
        workers.iter().all(|t| t.nice == base && t.policy == 0),
        "main runtime workers {workers:?}, want nice {base}: unchanged"
    );
    assert_eq!(
        writer[0].nice, want_writer,
        "the writer (started at {base})"
    );
    let want_policy = if may_be_realtime {
        events_sched::REALTIME_POLICY
    } else {
        0
    };
    assert_eq!(
        writer[0].policy, want_policy,
        "the writer's scheduling policy"
    );
}

/// With the embedded transport the processor shares the main runtime with the HTTP API that
/// feeds it: no thread of its own, and the writer keeps the normal policy (the ingest that
/// feeds it needs the cores as much).
#[cfg(target_os = "linux")]
#[tokio::test]
async fn embedded_the_processor_shares_the_main_runtime() {
    let daemon = DaemonProcess::start();
    let threads = daemon_threads(daemon.pid());
    assert!(
        threads.iter().any(|t| t.name == "tokio-rt-worker")
            && !threads.iter().any(|t| t.name == "events-processo"),
        "{threads:?}"
    );
    assert_eq!(
        writer_policies(&threads),
        [0],
        "the writer keeps the normal policy"
    );
}

/// `redis.favour_processing = false` keeps the processor on the main runtime and the writer
/// under the normal policy, with Redis too.
#[cfg(target_os = "linux")]
#[tokio::test]
async fn favour_processing_off_keeps_the_normal_scheduling() {
    let redis = events_testkit::RedisServer::start();
    let daemon = DaemonProcess::builder()
        .redis(redis.url())
        .env("EVENTS_REDIS__FAVOUR_PROCESSING", "false")
        .start();
    let threads = daemon_threads(daemon.pid());
    assert!(
        !threads.iter().any(|t| t.name == "events-processo"),
        "{threads:?}"
    );
    assert_eq!(
        writer_policies(&threads),
        [0],
        "the writer keeps the normal policy"
    );
}
