//! Webhooks through the real `events-daemon` binary (issue 6 acceptance, brief §10): the
//! `/api/webhooks` admin API, Standard-Webhooks signatures checked by an implementation
//! written here from the spec (not the code under test), attempt logs, the SSRF guard,
//! and no delivery lost across a SIGKILL.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use events_e2e::DaemonProcess;
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;

/// Generous bound for anything asynchronous to become visible (shared, noisy 2-core machine).
const DEADLINE: Duration = Duration::from_secs(30);

const ADMIN: &str = "admin-token";
const READER: &str = "reader-token";

/// Auth on (admin + reader tokens), loopback receivers allowed, a short retry schedule.
const CONFIG: &str = r#"
[[auth.tokens]]
name = "ops"
token = "admin-token"
roles = ["admin"]

[[auth.tokens]]
name = "viewer"
token = "reader-token"
roles = ["reader"]

[webhooks]
allow_destinations = ["127.0.0.0/8"]
retry_schedule_secs = [0, 0.2, 0.2, 0.2]
timeout_ms = 5000
lease_ms = 10000
"#;

// ---------------------------------------------------------------------------------------
// The receiver

/// What the receiver answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
enum Mode {
    /// 503 to everything (the receiver is "down").
    Down = 0,
    /// 200 after a pause (a slow receiver, so requests are in flight at any moment).
    Slow = 1,
    /// 200 at once.
    Up = 2,
}

/// One request as it arrived.
#[derive(Debug, Clone)]
struct Received {
    id: String,
    timestamp: String,
    signature: String,
    body: Vec<u8>,
    answered: u16,
}

/// A webhook receiver on 127.0.0.1:0 that records every request.
#[derive(Debug, Default)]
struct Receiver {
    mode: AtomicU8,
    /// Answer 500 to this many requests first (then follow `mode`).
    fail_first: AtomicUsize,
    requests: Mutex<Vec<Received>>,
}

impl Receiver {
    async fn start(mode: Mode) -> (Arc<Self>, String) {
        let receiver = Arc::new(Self::default());
        receiver.set_mode(mode);
        let app = axum::Router::new()
            .route("/hook", axum::routing::post(receive))
            .with_state(Arc::clone(&receiver));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr: SocketAddr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        (receiver, format!("http://{addr}/hook"))
    }

    fn set_mode(&self, mode: Mode) {
        self.mode.store(mode as u8, Ordering::SeqCst);
    }

    fn snapshot(&self) -> Vec<Received> {
        self.requests.lock().unwrap().clone()
    }

    /// Distinct `webhook-id`s answered (or being answered) with 200.
    fn delivered_ids(&self) -> HashSet<String> {
        self.requests
            .lock()
            .unwrap()
            .iter()
            .filter(|r| r.answered == 200)
            .map(|r| r.id.clone())
            .collect()
    }
}

async fn receive(
    State(receiver): State<Arc<Receiver>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> StatusCode {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    let failing = receiver
        .fail_first
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok();
    let mode = receiver.mode.load(Ordering::SeqCst);
    let status = if failing {
        StatusCode::INTERNAL_SERVER_ERROR
    } else if mode == Mode::Down as u8 {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        StatusCode::OK
    };
    // Recorded on arrival, like a receiver that processes a message before answering: if
    // the sender dies before it reads the answer, the message comes again (same id).
    receiver.requests.lock().unwrap().push(Received {
        id: header("webhook-id"),
        timestamp: header("webhook-timestamp"),
        signature: header("webhook-signature"),
        body: body.to_vec(),
        answered: status.as_u16(),
    });
    if status == StatusCode::OK && mode == Mode::Slow as u8 {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    status
}

/// Standard Webhooks verification, from the spec: the key is the base64 after `whsec_`;
/// the signed content is `{webhook-id}.{webhook-timestamp}.{body}`; the header holds
/// space-separated `v1,<base64 HMAC-SHA256>` entries, any of which may match; the
/// timestamp must be within five minutes of now.
fn verify(secret: &str, received: &Received) -> bool {
    let Some(key) = secret
        .strip_prefix("whsec_")
        .and_then(|k| B64.decode(k).ok())
    else {
        return false;
    };
    let Ok(timestamp) = received.timestamp.parse::<u64>() else {
        return false;
    };
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    if now.abs_diff(timestamp) > 300 {
        return false;
    }
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).unwrap();
    mac.update(received.id.as_bytes());
    mac.update(b".");
    mac.update(received.timestamp.as_bytes());
    mac.update(b".");
    mac.update(&received.body);
    let expected = B64.encode(mac.finalize().into_bytes());
    received
        .signature
        .split(' ')
        .filter_map(|s| s.strip_prefix("v1,"))
        .any(|s| s == expected)
}

fn body_json(received: &Received) -> Value {
    serde_json::from_slice(&received.body).unwrap()
}

// ---------------------------------------------------------------------------------------
// HTTP helpers

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

async fn call(
    http: &reqwest::Client,
    method: reqwest::Method,
    url: String,
    token: Option<&str>,
    body: Option<&Value>,
) -> (u16, Value) {
    let mut request = http.request(method, url);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    if let Some(body) = body {
        request = request.json(body);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    let value = if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text)
            .unwrap_or_else(|err| panic!("status {status}: body is not JSON ({err}): {text}"))
    };
    (status, value)
}

/// Asserts a JSON error with `status`; returns the message.
fn expect_error(got: (u16, Value), status: u16) -> String {
    assert_eq!(got.0, status, "{}", got.1);
    let message = got.1["error"]["message"].as_str();
    assert!(
        got.1["error"]["code"].is_string() && message.is_some(),
        "not an error body: {}",
        got.1
    );
    message.unwrap_or_default().to_owned()
}

fn event(event_type: &str, n: usize) -> Value {
    json!({"event": event_type, "source": "e2e", "payload": {"n": n}})
}

async fn emit(http: &reqwest::Client, base: &str, token: Option<&str>, events: Vec<Value>) {
    let (status, body) = call(
        http,
        reqwest::Method::POST,
        format!("{base}/api/events"),
        token,
        Some(&json!({ "events": events })),
    )
    .await;
    assert_eq!(status, 202, "{body}");
}

/// Polls `check` every 100 ms until it returns `Some`, failing after [`DEADLINE`] with `what`.
async fn wait_for<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + DEADLINE;
    loop {
        if let Some(found) = check().await {
            return found;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

// ---------------------------------------------------------------------------------------
// Tests

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_api_signed_deliveries_attempt_log_and_rejections() {
    use reqwest::Method;
    let mut daemon = DaemonProcess::builder().config_toml(CONFIG).start();
    let base = daemon.url();
    let http = client();
    let (receiver, hook_url) = Receiver::start(Mode::Up).await;
    let hooks = format!("{base}/api/webhooks");
    let create = json!({"url": hook_url, "event_types": ["e2e.hook.*"], "description": "e2e"});

    // Auth: 401 without a token, 403 for a reader.
    expect_error(
        call(&http, Method::POST, hooks.clone(), None, Some(&create)).await,
        401,
    );
    expect_error(
        call(
            &http,
            Method::POST,
            hooks.clone(),
            Some(READER),
            Some(&create),
        )
        .await,
        403,
    );
    expect_error(
        call(&http, Method::GET, hooks.clone(), Some(READER), None).await,
        403,
    );

    // The SSRF guard: metadata service and private ranges are refused, naming the url.
    for url in ["http://169.254.169.254/", "http://10.0.0.1/hook"] {
        let message = expect_error(
            call(
                &http,
                Method::POST,
                hooks.clone(),
                Some(ADMIN),
                Some(&json!({"url": url})),
            )
            .await,
            422,
        );
        assert!(message.starts_with("url:"), "{message}");
    }
    // Bad input: each a JSON error naming the problem.
    let bad = http
        .post(&hooks)
        .bearer_auth(ADMIN)
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
    let message = expect_error(
        call(
            &http,
            Method::POST,
            hooks.clone(),
            Some(ADMIN),
            Some(&json!({"url": hook_url, "colour": "red"})),
        )
        .await,
        422,
    );
    assert!(message.contains("colour"), "{message}");
    let message = expect_error(
        call(
            &http,
            Method::POST,
            hooks.clone(),
            Some(ADMIN),
            Some(&json!({"url": hook_url, "event_types": []})),
        )
        .await,
        422,
    );
    assert!(message.starts_with("event_types:"), "{message}");
    let message = expect_error(
        call(
            &http,
            Method::POST,
            hooks.clone(),
            Some(ADMIN),
            Some(&json!({"url": hook_url, "secret": "whsec_short"})),
        )
        .await,
        422,
    );
    assert!(message.starts_with("secret:"), "{message}");
    expect_error(
        call(
            &http,
            Method::GET,
            format!("{hooks}/999999"),
            Some(ADMIN),
            None,
        )
        .await,
        404,
    );
    expect_error(
        call(
            &http,
            Method::GET,
            format!("{hooks}/abc"),
            Some(ADMIN),
            None,
        )
        .await,
        400,
    );
    expect_error(
        call(&http, Method::PUT, format!("{hooks}/1"), Some(ADMIN), None).await,
        405,
    );

    // Create: 201, the secret once.
    let (status, created) = call(
        &http,
        Method::POST,
        hooks.clone(),
        Some(ADMIN),
        Some(&create),
    )
    .await;
    assert_eq!(status, 201, "{created}");
    let secret = created["secret"].as_str().unwrap().to_owned();
    assert!(secret.starts_with("whsec_"), "{created}");
    let id = created["id"].as_i64().unwrap();
    assert_eq!(created["enabled"], true);
    let (status, shown) = call(
        &http,
        Method::GET,
        format!("{hooks}/{id}"),
        Some(ADMIN),
        None,
    )
    .await;
    assert_eq!(status, 200);
    assert!(shown.get("secret").is_none(), "secret shown again: {shown}");
    let (_, list) = call(&http, Method::GET, hooks.clone(), Some(ADMIN), None).await;
    assert_eq!(list["webhooks"].as_array().unwrap().len(), 1, "{list}");

    // The receiver fails the first attempt; the second (0.2 s later) succeeds. An event of
    // another type is not delivered.
    receiver.fail_first.store(1, Ordering::SeqCst);
    emit(
        &http,
        &base,
        Some(ADMIN),
        vec![event("e2e.other.thing", 0), event("e2e.hook.fired", 1)],
    )
    .await;
    let delivered = wait_for("a successful delivery", || async {
        receiver.snapshot().into_iter().find(|r| r.answered == 200)
    })
    .await;
    assert!(
        verify(&secret, &delivered),
        "signature does not verify: {delivered:?}"
    );
    assert!(delivered.id.starts_with("msg_"), "{}", delivered.id);
    let body = body_json(&delivered);
    assert_eq!(body["type"], "e2e.hook.fired", "{body}");
    assert_eq!(body["data"]["payload"]["n"], 1, "{body}");
    let all = receiver.snapshot();
    assert_eq!(all.len(), 2, "one failed and one good attempt: {all:?}");
    assert!(
        all.iter()
            .all(|r| r.id == delivered.id && verify(&secret, r))
    );

    // The attempt log shows both attempts.
    let deliveries_url = format!("{hooks}/{id}/deliveries");
    let delivery = wait_for("the delivery to be recorded as succeeded", || async {
        let (_, page) = call(
            &http,
            Method::GET,
            deliveries_url.clone(),
            Some(ADMIN),
            None,
        )
        .await;
        let d = page["deliveries"][0].clone();
        (d["status"] == "succeeded").then_some(d)
    })
    .await;
    assert_eq!(delivery["msg_id"], delivered.id.as_str());
    assert_eq!(delivery["attempts"], 2, "{delivery}");
    let codes: Vec<i64> = delivery["attempt_log"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["status_code"].as_i64().unwrap())
        .collect();
    assert_eq!(codes, vec![500, 200], "{delivery}");
    let message = expect_error(
        call(
            &http,
            Method::GET,
            format!("{deliveries_url}?status=lost"),
            Some(ADMIN),
            None,
        )
        .await,
        400,
    );
    assert!(message.contains("status"), "{message}");

    // Manual retry: the same webhook-id again, logged as manual.
    let delivery_id = delivery["id"].as_i64().unwrap();
    let (status, retried) = call(
        &http,
        Method::POST,
        format!("{deliveries_url}/{delivery_id}/retry"),
        Some(ADMIN),
        None,
    )
    .await;
    assert_eq!(status, 202, "{retried}");
    wait_for("the manual retry to arrive", || async {
        (receiver.snapshot().len() == 3).then_some(())
    })
    .await;
    let third = receiver.snapshot().pop().unwrap();
    assert_eq!(third.id, delivered.id);
    assert!(verify(&secret, &third));
    wait_for("the manual attempt in the log", || async {
        let (_, page) = call(
            &http,
            Method::GET,
            deliveries_url.clone(),
            Some(ADMIN),
            None,
        )
        .await;
        let log = page["deliveries"][0]["attempt_log"].as_array()?.clone();
        (log.len() == 3 && log[2]["trigger"] == "manual").then_some(())
    })
    .await;
    expect_error(
        call(
            &http,
            Method::POST,
            format!("{deliveries_url}/999999/retry"),
            Some(ADMIN),
            None,
        )
        .await,
        404,
    );

    // Disabled: retry and recover are conflicts; recover checks its range.
    let (status, patched) = call(
        &http,
        Method::PATCH,
        format!("{hooks}/{id}"),
        Some(ADMIN),
        Some(&json!({"enabled": false})),
    )
    .await;
    assert_eq!(status, 200, "{patched}");
    assert_eq!(patched["enabled"], false);
    expect_error(
        call(
            &http,
            Method::POST,
            format!("{deliveries_url}/{delivery_id}/retry"),
            Some(ADMIN),
            None,
        )
        .await,
        409,
    );
    let recover_url = format!("{hooks}/{id}/recover");
    let since = json!({"since": "2000-01-01T00:00:00Z"});
    expect_error(
        call(
            &http,
            Method::POST,
            recover_url.clone(),
            Some(ADMIN),
            Some(&since),
        )
        .await,
        409,
    );
    call(
        &http,
        Method::PATCH,
        format!("{hooks}/{id}"),
        Some(ADMIN),
        Some(&json!({"enabled": true})),
    )
    .await;
    let (status, recovered) = call(
        &http,
        Method::POST,
        recover_url.clone(),
        Some(ADMIN),
        Some(&since),
    )
    .await;
    assert_eq!(status, 202, "{recovered}");
    assert_eq!(recovered["recovered"], 0, "nothing failed: {recovered}");
    let message = expect_error(
        call(
            &http,
            Method::POST,
            recover_url.clone(),
            Some(ADMIN),
            Some(&json!({"since": "2001-01-01T00:00:00Z", "until": "2000-01-01T00:00:00Z"})),
        )
        .await,
        422,
    );
    assert!(message.starts_with("until:"), "{message}");
    expect_error(
        call(
            &http,
            Method::POST,
            recover_url,
            Some(ADMIN),
            Some(&json!({"since": "yesterday"})),
        )
        .await,
        422,
    );

    // Secret rotation: the next delivery carries both signatures, each verifying.
    let (status, rotated) = call(
        &http,
        Method::PATCH,
        format!("{hooks}/{id}"),
        Some(ADMIN),
        Some(&json!({"rotate_secret": true})),
    )
    .await;
    assert_eq!(status, 200, "{rotated}");
    let new_secret = rotated["secret"].as_str().unwrap().to_owned();
    assert_ne!(new_secret, secret);
    emit(&http, &base, Some(ADMIN), vec![event("e2e.hook.fired", 2)]).await;
    let after_rotation = wait_for("a delivery after the rotation", || async {
        receiver
            .snapshot()
            .into_iter()
            .find(|r| body_json(r)["data"]["payload"]["n"] == 2)
    })
    .await;
    assert_eq!(after_rotation.signature.split(' ').count(), 2);
    assert!(verify(&new_secret, &after_rotation) && verify(&secret, &after_rotation));

    // Documented, ready, deletable.
    let (_, doc) = call(
        &http,
        Method::GET,
        format!("{base}/openapi.json"),
        None,
        None,
    )
    .await;
    for (path, method) in [
        ("/api/webhooks", "get"),
        ("/api/webhooks", "post"),
        ("/api/webhooks/{id}", "patch"),
        ("/api/webhooks/{id}/deliveries", "get"),
        ("/api/webhooks/{id}/deliveries/{delivery_id}/retry", "post"),
        ("/api/webhooks/{id}/recover", "post"),
    ] {
        assert!(
            doc["paths"][path][method]["responses"].is_object(),
            "{method} {path} missing from /openapi.json"
        );
    }
    let (_, ready) = call(&http, Method::GET, format!("{base}/ready"), None, None).await;
    assert_eq!(ready["components"]["delivery"]["ready"], true, "{ready}");
    assert!(ready["components"]["delivery"]["detail"]["webhook_pending"].is_u64());
    let (status, _) = call(
        &http,
        Method::DELETE,
        format!("{hooks}/{id}"),
        Some(ADMIN),
        None,
    )
    .await;
    assert_eq!(status, 204);
    expect_error(
        call(
            &http,
            Method::GET,
            format!("{hooks}/{id}"),
            Some(ADMIN),
            None,
        )
        .await,
        404,
    );
    expect_error(
        call(
            &http,
            Method::DELETE,
            format!("{hooks}/{id}"),
            Some(ADMIN),
            None,
        )
        .await,
        404,
    );

    let status = daemon.stop();
    assert!(status.success(), "exit {status}; log:\n{}", daemon.log());
}

/// Issue 6 acceptance: SIGKILL while 1,000 deliveries are pending (some in flight), restart,
/// and every one arrives — the receiver counts exactly 1,000 distinct `webhook-id`s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_with_1000_pending_deliveries_loses_none() {
    const N: usize = 1000;
    // A schedule long enough that no delivery runs out while the receiver is down; a lease
    // short enough that deliveries in flight at the crash are due again soon after restart.
    let schedule = vec!["1"; 40].join(", ");
    let config = format!(
        "[webhooks]\nallow_destinations = [\"127.0.0.0/8\"]\nretry_schedule_secs = [0, {schedule}]\n\
         retry_jitter = 0.0\ntimeout_ms = 2000\nlease_ms = 3000\n"
    );
    let mut daemon = DaemonProcess::builder().config_toml(config).start();
    let base = daemon.url();
    let http = client();
    let (receiver, hook_url) = Receiver::start(Mode::Down).await;
    let (status, created) = call(
        &http,
        reqwest::Method::POST,
        format!("{base}/api/webhooks"),
        None,
        Some(&json!({"url": hook_url, "event_types": ["e2e.crash.*"]})),
    )
    .await;
    assert_eq!(status, 201, "{created}");
    let secret = created["secret"].as_str().unwrap().to_owned();

    emit(
        &http,
        &base,
        None,
        (0..N).map(|n| event("e2e.crash.tick", n)).collect(),
    )
    .await;
    // All 1,000 in the outbox and being tried, none delivered (the receiver answers 503).
    wait_for("1,000 pending deliveries", || async {
        let (_, ready) = call(
            &http,
            reqwest::Method::GET,
            format!("{base}/ready"),
            None,
            None,
        )
        .await;
        let pending = ready["components"]["delivery"]["detail"]["webhook_pending"].as_u64()?;
        (pending == N as u64 && receiver.snapshot().len() >= 100).then_some(())
    })
    .await;
    assert!(receiver.delivered_ids().is_empty());

    // A slow receiver: let some through, then kill the daemon with requests in flight.
    receiver.set_mode(Mode::Slow);
    wait_for("the first deliveries to arrive", || async {
        (receiver.delivered_ids().len() >= 50).then_some(())
    })
    .await;
    daemon.kill();
    let before = receiver.delivered_ids().len();
    assert!(before < N, "everything arrived before the crash ({before})");

    receiver.set_mode(Mode::Up);
    daemon.restart();
    wait_for("every delivery after the restart", || async {
        (receiver.delivered_ids().len() >= N).then_some(())
    })
    .await;
    // And the outbox drains: requests in flight at the crash (seen by the receiver, never
    // acknowledged to the dead daemon) are sent again once their lease expires.
    wait_for("an empty outbox", || async {
        let (_, ready) = call(
            &http,
            reqwest::Method::GET,
            format!("{base}/ready"),
            None,
            None,
        )
        .await;
        let pending = ready["components"]["delivery"]["detail"]["webhook_pending"].as_u64()?;
        (pending == 0).then_some(())
    })
    .await;

    let received = receiver.snapshot();
    let good: Vec<&Received> = received.iter().filter(|r| r.answered == 200).collect();
    eprintln!(
        "{before} delivered before the SIGKILL; {} requests in all, {} answered 200 \
         ({} re-sent after the crash)",
        received.len(),
        good.len(),
        good.len() - N
    );
    assert!(
        good.iter().all(|r| verify(&secret, r)),
        "a delivery failed signature verification"
    );
    let ids: HashSet<&str> = good.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(ids.len(), N, "distinct webhook-ids");
    let payloads: BTreeSet<u64> = good
        .iter()
        .map(|r| body_json(r)["data"]["payload"]["n"].as_u64().unwrap())
        .collect();
    assert_eq!(payloads, (0..N as u64).collect(), "every event delivered");
    // Duplicates (re-sends of requests in flight at the crash) carry the same id and body.
    let mut by_id: HashMap<&str, &[u8]> = HashMap::new();
    for r in &good {
        let first = *by_id.entry(r.id.as_str()).or_insert(r.body.as_slice());
        assert_eq!(
            first,
            r.body.as_slice(),
            "webhook-id {} reused for another body",
            r.id
        );
    }
    let status = daemon.stop();
    assert!(status.success(), "exit {status}; log:\n{}", daemon.log());
}
