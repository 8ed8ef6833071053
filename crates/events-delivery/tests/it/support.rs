//! Shared fixtures: a database with the delivery schema, a scriptable webhook receiver,
//! test configs.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use events_delivery::{OutboxCartridge, WebhookConfig};
use events_envelope::EventEnvelope;
use events_storage::EventDb;
use time::OffsetDateTime;

pub(crate) async fn open_db() -> EventDb {
    EventDb::open_in_memory().await.expect("open db")
}

/// Config with a short schedule, loopback allow-listed, no jitter.
pub(crate) fn config(schedule: &[f64], disable_after: u32) -> WebhookConfig {
    WebhookConfig {
        allow_destinations: vec!["127.0.0.0/8".parse().expect("cidr")],
        retry_schedule_secs: schedule.to_vec(),
        retry_jitter: 0.0,
        disable_after_failures: disable_after,
        timeout_ms: 5_000,
        lease_ms: 6_000,
        poll_interval_ms: 20,
        concurrency: 16,
        rotation_grace_secs: 3600,
    }
}

/// Enqueues `event` through the outbox as the processor would (one write transaction).
pub(crate) async fn enqueue(db: &EventDb, event: EventEnvelope) -> usize {
    db.write_with(move |tx| {
        OutboxCartridge::new().enqueue(tx.connection(), &event, &[], OffsetDateTime::now_utc())
    })
    .await
    .expect("enqueue")
}

/// One request as the receiver saw it.
#[derive(Debug, Clone)]
pub(crate) struct Received {
    pub(crate) id: String,
    pub(crate) timestamp: String,
    pub(crate) signature: String,
    pub(crate) body: Bytes,
    pub(crate) at: Instant,
    pub(crate) answered: u16,
}

type Behaviour = dyn Fn(usize, &str) -> Response + Send + Sync;
type ReceiverState = (Arc<Mutex<Vec<Received>>>, Arc<Behaviour>);

/// A local HTTP receiver: `behaviour(n, webhook_id)` answers the n-th request (0-based).
#[derive(Clone)]
pub(crate) struct Receiver {
    pub(crate) addr: SocketAddr,
    log: Arc<Mutex<Vec<Received>>>,
}

impl Receiver {
    pub(crate) async fn start(
        behaviour: impl Fn(usize, &str) -> Response + Send + Sync + 'static,
    ) -> Self {
        let log: Arc<Mutex<Vec<Received>>> = Arc::default();
        let behaviour: Arc<Behaviour> = Arc::new(behaviour);
        let state = (Arc::clone(&log), behaviour);
        let app = axum::Router::new()
            .route(
                "/hook",
                axum::routing::post(
                    |axum::extract::State((log, behaviour)): axum::extract::State<
                        ReceiverState,
                    >,
                     headers: HeaderMap,
                     body: Bytes| async move {
                        let header = |name: &str| {
                            headers
                                .get(name)
                                .and_then(|v| v.to_str().ok())
                                .unwrap_or_default()
                                .to_owned()
                        };
                        let id = header("webhook-id");
                        let n = log.lock().unwrap().len();
                        let response = behaviour(n, &id);
                        log.lock().unwrap().push(Received {
                            id,
                            timestamp: header("webhook-timestamp"),
                            signature: header("webhook-signature"),
                            body,
                            at: Instant::now(),
                            answered: response.status().as_u16(),
                        });
                        response
                    },
                ),
            )
            .with_state(state);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self { addr, log }
    }

    pub(crate) fn url(&self) -> String {
        format!("http://{}/hook", self.addr)
    }

    pub(crate) fn received(&self) -> Vec<Received> {
        self.log.lock().unwrap().clone()
    }

    /// Waits (bounded) until `pred` holds for the log.
    pub(crate) async fn wait_until(
        &self,
        what: &str,
        pred: impl Fn(&[Received]) -> bool,
    ) -> Vec<Received> {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let log = self.received();
            if pred(&log) {
                return log;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}; receiver saw {} requests",
                log.len()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

pub(crate) fn status(code: u16) -> Response {
    StatusCode::from_u16(code).expect("status").into_response()
}
