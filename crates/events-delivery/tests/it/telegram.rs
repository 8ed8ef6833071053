//! Telegram against a fake Bot API: batching, 429 retry_after, level filter, token hygiene.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::response::{IntoResponse, Response};
use events_delivery::{OutboxCartridge, TelegramConfig, TelegramRoute, TelegramWorker};
use events_envelope::{EventEnvelope, EventLevel};
use events_storage::{EventDb, NewNotification};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use crate::support::open_db;

const TOKEN: &str = "123456:SECRETtokenPART42";

#[derive(Clone)]
struct FakeBot {
    base: String,
    calls: Arc<Mutex<Vec<(String, Value, Instant)>>>,
}

impl FakeBot {
    async fn start(answer: impl Fn(usize) -> Response + Send + Sync + 'static) -> Self {
        let calls: Arc<Mutex<Vec<(String, Value, Instant)>>> = Arc::default();
        let answer = Arc::new(answer);
        let calls_in = Arc::clone(&calls);
        let app = axum::Router::new().route(
            "/{bot}/sendMessage",
            axum::routing::post(
                move |axum::extract::Path(bot): axum::extract::Path<String>,
                      axum::Json(body): axum::Json<Value>| {
                    let (calls, answer) = (Arc::clone(&calls_in), Arc::clone(&answer));
                    async move {
                        let n = {
                            let mut calls = calls.lock().unwrap();
                            calls.push((bot, body, Instant::now()));
                            calls.len() - 1
                        };
                        answer(n)
                    }
                },
            ),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self {
            base: format!("http://{addr}"),
            calls,
        }
    }

    fn calls(&self) -> Vec<(String, Value, Instant)> {
        self.calls.lock().unwrap().clone()
    }

    async fn wait_for(&self, n: usize) -> Vec<(String, Value, Instant)> {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let calls = self.calls();
            if calls.len() >= n {
                return calls;
            }
            assert!(
                Instant::now() < deadline,
                "fake bot saw {} calls, wanted {n}",
                calls.len()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

fn ok() -> Response {
    axum::Json(json!({"ok": true, "result": {"message_id": 1}})).into_response()
}

fn config(base: &str, window_ms: u64) -> TelegramConfig {
    TelegramConfig {
        api_base: base.to_owned(),
        batch_window_ms: window_ms,
        retry_base_ms: 100,
        retry_max_ms: 1000,
        timeout_ms: 2000,
        lease_ms: 5000,
        poll_interval_ms: 20,
        ..TelegramConfig::new(TOKEN, "4242")
    }
}

/// Projects `event` into a notification and enqueues it, as the pipeline would.
async fn notify(db: &EventDb, outbox: &OutboxCartridge, event: EventEnvelope) {
    let outbox = outbox.clone();
    db.write_with(move |tx| {
        let id = tx.insert_notification(&NewNotification::from_envelope(&event))?;
        outbox.enqueue(
            tx.connection(),
            &event,
            &[id],
            time::OffsetDateTime::now_utc(),
        )?;
        Ok::<_, events_delivery::Error>(())
    })
    .await
    .unwrap();
}

fn workflow(i: usize) -> EventEnvelope {
    EventEnvelope::new("job.failed", "ci")
        .with_level(EventLevel::Workflow)
        .with_entity(format!("job-{i}"))
        .with_description(format!("build <{i}> failed"))
}

async fn last_errors(db: &EventDb) -> Vec<String> {
    db.read(|r| {
        let mut stmt = r
            .connection()
            .prepare("SELECT last_error FROM telegram_outbox WHERE last_error IS NOT NULL")?;
        let rows = stmt
            .query_map([], |row| row.get::<_, String>(0))?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(rows)
    })
    .await
    .unwrap()
}

#[tokio::test]
async fn a_burst_within_the_window_arrives_as_one_message_and_the_level_filter_holds() {
    let db = open_db().await;
    let bot = FakeBot::start(|_| ok()).await;
    let cfg = config(&bot.base, 1500);
    let outbox = OutboxCartridge::new().with_telegram(TelegramRoute::from(&cfg));
    let cancel = CancellationToken::new();
    tokio::spawn(
        TelegramWorker::new(db.clone(), cfg)
            .unwrap()
            .run(cancel.clone()),
    );

    // Below the level: never sent.
    notify(
        &db,
        &outbox,
        workflow(99).with_level(EventLevel::Operational),
    )
    .await;
    for i in 0..10 {
        notify(&db, &outbox, workflow(i)).await;
    }
    let calls = bot.wait_for(1).await;
    // Give a second message (if any were wrongly split) time to show up.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let calls_after = bot.calls();
    assert_eq!(
        calls_after.len(),
        1,
        "10 notifications in one window must be one message: {calls_after:?}"
    );
    let (path, body, _) = &calls[0];
    assert_eq!(path, &format!("bot{TOKEN}"));
    assert_eq!(body["chat_id"], "4242");
    assert_eq!(body["parse_mode"], "HTML");
    let text = body["text"].as_str().unwrap();
    assert!(text.starts_with("<b>10 notifications</b>"), "{text}");
    for i in 0..10 {
        assert!(
            text.contains(&format!("build &lt;{i}&gt; failed")),
            "{text}"
        );
    }
    assert!(
        !text.contains("job-99"),
        "operational notification must be filtered out"
    );
    cancel.cancel();
}

#[tokio::test]
async fn a_429_with_retry_after_delays_and_then_succeeds() {
    let db = open_db().await;
    let bot = FakeBot::start(|n| {
        if n == 0 {
            (
                axum::http::StatusCode::TOO_MANY_REQUESTS,
                axum::Json(json!({"ok": false, "error_code": 429, "description": "Too Many Requests: retry after 1", "parameters": {"retry_after": 1}})),
            )
                .into_response()
        } else {
            ok()
        }
    })
    .await;
    let cfg = config(&bot.base, 50);
    let outbox = OutboxCartridge::new().with_telegram(TelegramRoute::from(&cfg));
    let cancel = CancellationToken::new();
    tokio::spawn(
        TelegramWorker::new(db.clone(), cfg)
            .unwrap()
            .run(cancel.clone()),
    );
    notify(&db, &outbox, workflow(1)).await;
    let calls = bot.wait_for(2).await;
    assert!(
        calls[1].2.duration_since(calls[0].2) >= Duration::from_secs(1),
        "retried before retry_after"
    );
    assert_eq!(calls[0].1["text"], calls[1].1["text"]);
    // Sent: no more calls, row marked sent.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(bot.calls().len(), 2);
    let sent: i64 = db
        .read(|r| {
            Ok(r.connection().query_row(
                "SELECT COUNT(*) FROM telegram_outbox WHERE status = 'sent'",
                [],
                |row| row.get(0),
            )?)
        })
        .await
        .unwrap();
    assert_eq!(sent, 1);
    cancel.cancel();
}

#[tokio::test]
async fn the_token_never_appears_in_errors() {
    let db = open_db().await;
    // A Bot API that echoes the token in its error (a proxy might), and one that is down.
    let bot = FakeBot::start(|_| {
        (
            axum::http::StatusCode::UNAUTHORIZED,
            axum::Json(json!({"ok": false, "description": format!("Unauthorized bot{TOKEN}")})),
        )
            .into_response()
    })
    .await;
    let cfg = config(&bot.base, 0);
    let outbox = OutboxCartridge::new().with_telegram(TelegramRoute::from(&cfg));
    notify(&db, &outbox, workflow(1)).await;
    let worker = TelegramWorker::new(db.clone(), cfg).unwrap();
    assert_eq!(worker.run_once().await.unwrap(), 1);
    let unreachable = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let down = config(&format!("http://{unreachable}"), 0);
    let db2 = open_db().await;
    notify(&db2, &outbox, workflow(2)).await;
    TelegramWorker::new(db2.clone(), down.clone())
        .unwrap()
        .run_once()
        .await
        .unwrap();
    let mut errors = last_errors(&db).await;
    errors.extend(last_errors(&db2).await);
    assert_eq!(errors.len(), 2, "{errors:?}");
    for e in &errors {
        assert!(
            !e.contains(TOKEN) && !e.contains("SECRETtokenPART42"),
            "token leaked: {e}"
        );
    }
    assert!(errors[0].contains("401"), "{errors:?}");
    assert!(!format!("{down:?}").contains("SECRET"));
}
