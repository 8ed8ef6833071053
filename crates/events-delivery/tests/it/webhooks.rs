//! Webhook delivery: signing, retries, auto-disable, 410, Retry-After, SSRF, crash safety.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::response::IntoResponse;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use events_delivery::OutboxCartridge;
use events_delivery::{
    CreateWebhook, DeliveryQuery, DeliveryStatus, DeliveryWorker, Error, RecoverRequest, Trigger,
    UpdateWebhook, WEBHOOK_DISABLED_EVENT, WebhookAdmin,
};
use events_envelope::{EventCatalog, EventEnvelope};
use events_pipeline::{Cartridge, PipelineContext};
use events_producer::{MemoryBus, Producer};
use events_storage::EventDb;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use tokio_util::sync::CancellationToken;

use crate::support::{Receiver, config, enqueue, open_db, status};

/// Standard Webhooks verification written from the spec, independent of the crate:
/// `base64(HMAC-SHA256(base64decode(secret minus "whsec_"), "{id}.{ts}.{body}"))`, and the
/// header holds space-separated `v1,<sig>` entries of which one must match.
fn verify(secret: &str, id: &str, timestamp: &str, body: &[u8], header: &str) -> bool {
    let key = STANDARD
        .decode(secret.trim_start_matches("whsec_"))
        .expect("secret is base64");
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&key).expect("hmac key");
    mac.update(format!("{id}.{timestamp}.").as_bytes());
    mac.update(body);
    let expected = STANDARD.encode(mac.finalize().into_bytes());
    header
        .split(' ')
        .any(|entry| entry.strip_prefix("v1,") == Some(expected.as_str()))
}

fn event(name: &str) -> EventEnvelope {
    EventEnvelope::new(name, "tests").with_field("status", "done")
}

fn start(worker: DeliveryWorker) -> CancellationToken {
    let cancel = CancellationToken::new();
    tokio::spawn(worker.run(cancel.clone()));
    cancel
}

fn bus() -> (Arc<MemoryBus>, Arc<dyn Producer>) {
    let bus = Arc::new(MemoryBus::new());
    let producer: Arc<dyn Producer> = bus.clone();
    (bus, producer)
}

#[tokio::test]
async fn signatures_verify_with_an_independent_implementation_also_during_rotation() {
    let db = open_db().await;
    let receiver = Receiver::start(|_, _| status(204)).await;
    let cfg = config(&[0.0], 100);
    let admin = WebhookAdmin::new(db.clone(), &cfg);
    let created = admin
        .create(CreateWebhook {
            url: receiver.url(),
            event_types: Some(vec!["job.*".into()]),
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(created.secret.starts_with("whsec_"));
    let (_bus, producer) = bus();
    let cancel = start(DeliveryWorker::new(db.clone(), cfg, producer).unwrap());

    assert_eq!(enqueue(&db, event("job.completed")).await, 1);
    assert_eq!(
        enqueue(&db, event("deploy.started")).await,
        0,
        "glob must not match"
    );
    let log = receiver
        .wait_until("first delivery", |l| !l.is_empty())
        .await;
    let first = &log[0];
    assert!(first.id.starts_with("msg_"));
    assert!(verify(
        &created.secret,
        &first.id,
        &first.timestamp,
        &first.body,
        &first.signature
    ));
    let body: serde_json::Value = serde_json::from_slice(&first.body).unwrap();
    assert_eq!(body["type"], "job.completed");
    assert_eq!(body["data"]["payload"]["status"], "done");

    // Rotation: both secrets sign during the grace period.
    let rotated = admin
        .update(
            created.webhook.id,
            UpdateWebhook {
                rotate_secret: true,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let new_secret = rotated.secret.expect("new secret returned once");
    assert!(rotated.webhook.previous_secret_until.is_some());
    enqueue(&db, event("job.failed")).await;
    let log = receiver
        .wait_until("second delivery", |l| l.len() >= 2)
        .await;
    let second = &log[1];
    assert_eq!(second.signature.split(' ').count(), 2);
    assert!(verify(
        &new_secret,
        &second.id,
        &second.timestamp,
        &second.body,
        &second.signature
    ));
    assert!(verify(
        &created.secret,
        &second.id,
        &second.timestamp,
        &second.body,
        &second.signature
    ));
    assert!(!verify(
        "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
        &second.id,
        &second.timestamp,
        &second.body,
        &second.signature
    ));

    // A given secret is rotated to even without `rotate_secret: true`.
    let given = events_delivery::signing::WebhookSecret::generate();
    let rotated_to_given = admin
        .update(
            created.webhook.id,
            UpdateWebhook {
                secret: Some(given.expose().to_owned()),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(rotated_to_given.secret.as_deref(), Some(given.expose()));
    assert!(rotated_to_given.webhook.previous_secret_until.is_some());
    cancel.cancel();
}

#[tokio::test]
async fn a_receiver_failing_three_times_gets_the_fourth_attempt() {
    let db = open_db().await;
    let receiver = Receiver::start(|n, _| if n < 3 { status(500) } else { status(200) }).await;
    let cfg = config(&[0.0, 0.1, 0.1, 0.1, 0.1], 100);
    let admin = WebhookAdmin::new(db.clone(), &cfg);
    let hook = admin
        .create(CreateWebhook {
            url: receiver.url(),
            ..Default::default()
        })
        .await
        .unwrap()
        .webhook;
    let (_bus, producer) = bus();
    let cancel = start(DeliveryWorker::new(db.clone(), cfg, producer).unwrap());
    enqueue(&db, event("job.completed")).await;

    let log = receiver.wait_until("4 attempts", |l| l.len() >= 4).await;
    assert_eq!(
        log.iter().map(|r| r.answered).collect::<Vec<_>>(),
        [500, 500, 500, 200]
    );
    assert_eq!(
        log.iter().map(|r| &r.id).collect::<HashSet<_>>().len(),
        1,
        "same webhook-id on every retry"
    );
    let delivery = wait_for_status(&admin, hook.id, DeliveryStatus::Succeeded).await;
    assert_eq!(delivery.attempts, 4);
    let codes: Vec<_> = delivery.attempt_log.iter().map(|a| a.status_code).collect();
    assert_eq!(codes, [Some(500), Some(500), Some(500), Some(200)]);
    assert!(
        delivery
            .attempt_log
            .iter()
            .all(|a| a.trigger == Trigger::Scheduled)
    );
    assert_eq!(admin.get(hook.id).await.unwrap().consecutive_failures, 0);
    cancel.cancel();
}

async fn wait_for_status(
    admin: &WebhookAdmin,
    webhook_id: i64,
    want: DeliveryStatus,
) -> events_delivery::Delivery {
    for _ in 0..3000 {
        let list = admin
            .deliveries(webhook_id, DeliveryQuery::default())
            .await
            .unwrap();
        if let Some(d) = list.into_iter().find(|d| d.status == want) {
            return d;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("no delivery of webhook {webhook_id} reached {want:?}");
}

#[tokio::test]
async fn an_endpoint_that_always_fails_is_disabled_after_n_and_announced() {
    let db = open_db().await;
    // 503 with a body longer than the 1 KiB excerpt.
    let receiver = Receiver::start(|_, _| {
        (
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            "x".repeat(5000),
        )
            .into_response()
    })
    .await;
    let cfg = config(&[0.0, 0.05], 3);
    let admin = WebhookAdmin::new(db.clone(), &cfg);
    let hook = admin
        .create(CreateWebhook {
            url: receiver.url(),
            ..Default::default()
        })
        .await
        .unwrap()
        .webhook;
    let (bus, producer) = bus();
    let cancel = start(DeliveryWorker::new(db.clone(), cfg, producer).unwrap());
    for _ in 0..5 {
        enqueue(&db, event("job.completed")).await;
    }
    let announced = bus
        .wait_for(1, Duration::from_secs(60))
        .await
        .expect("system.webhook.disabled emitted");
    assert_eq!(announced[0].event, WEBHOOK_DISABLED_EVENT);
    assert_eq!(announced[0].payload["webhook_id"], hook.id);
    let after = admin.get(hook.id).await.unwrap();
    assert!(!after.enabled);
    // Deliveries already in flight when the third failed still finish (and count).
    assert!(after.consecutive_failures >= 3);
    assert!(after.disabled_reason.unwrap().contains("3 consecutive"));
    let failed = admin
        .deliveries(
            hook.id,
            DeliveryQuery {
                status: Some(DeliveryStatus::Failed),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert!(failed.len() >= 3);
    assert!(
        failed.iter().all(|d| d.attempts == 2),
        "each used the whole schedule"
    );
    let excerpt = failed[0].attempt_log[0].response_excerpt.clone().unwrap();
    assert_eq!(
        excerpt.len(),
        events_delivery::EXCERPT_BYTES,
        "excerpt capped at 1 KiB"
    );
    // Disabled: nothing more is sent, nothing new is enqueued.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let seen = receiver.received().len();
    assert_eq!(enqueue(&db, event("job.completed")).await, 0);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(receiver.received().len(), seen);
    assert_eq!(bus.events_of_type(WEBHOOK_DISABLED_EVENT).len(), 1);
    // Manual retry is refused while disabled; re-enabling lets the pending ones go.
    assert!(matches!(
        admin.retry(hook.id, failed[0].id).await,
        Err(Error::WebhookDisabled { .. })
    ));
    cancel.cancel();
}

#[tokio::test]
async fn gone_disables_at_once() {
    let db = open_db().await;
    let receiver = Receiver::start(|_, _| status(410)).await;
    let cfg = config(&[0.0, 0.05, 0.05], 100);
    let admin = WebhookAdmin::new(db.clone(), &cfg);
    let hook = admin
        .create(CreateWebhook {
            url: receiver.url(),
            ..Default::default()
        })
        .await
        .unwrap()
        .webhook;
    let (bus, producer) = bus();
    let cancel = start(DeliveryWorker::new(db.clone(), cfg, producer).unwrap());
    enqueue(&db, event("job.completed")).await;
    let announced = bus
        .wait_for(1, Duration::from_secs(60))
        .await
        .expect("disabled event");
    assert!(
        announced[0].payload["reason"]
            .as_str()
            .unwrap()
            .contains("410")
    );
    let after = admin.get(hook.id).await.unwrap();
    assert!(!after.enabled);
    assert_eq!(receiver.received().len(), 1, "no retry after 410");
    cancel.cancel();
}

#[tokio::test]
async fn retry_after_on_429_is_honoured_as_a_lower_bound() {
    let db = open_db().await;
    let receiver = Receiver::start(|n, _| {
        if n == 0 {
            (
                axum::http::StatusCode::TOO_MANY_REQUESTS,
                [("retry-after", "2")],
                "slow down",
            )
                .into_response()
        } else {
            status(200)
        }
    })
    .await;
    let cfg = config(&[0.0, 0.05, 0.05], 100);
    let admin = WebhookAdmin::new(db.clone(), &cfg);
    let hook = admin
        .create(CreateWebhook {
            url: receiver.url(),
            ..Default::default()
        })
        .await
        .unwrap()
        .webhook;
    let (_bus, producer) = bus();
    let cancel = start(DeliveryWorker::new(db.clone(), cfg, producer).unwrap());
    enqueue(&db, event("job.completed")).await;
    let log = receiver.wait_until("the retry", |l| l.len() >= 2).await;
    assert!(
        log[1].at.duration_since(log[0].at) >= Duration::from_secs(2),
        "retried before Retry-After"
    );
    let d = wait_for_status(&admin, hook.id, DeliveryStatus::Succeeded).await;
    let gap = d.attempt_log[1].attempted_at - d.attempt_log[0].attempted_at;
    assert!(gap >= time::Duration::seconds(2), "{gap}");
    cancel.cancel();
}

#[tokio::test]
async fn ssrf_guard_refuses_internal_destinations_and_allows_the_allow_listed_receiver() {
    let db = open_db().await;
    let cfg = config(&[0.0], 100);
    let admin = WebhookAdmin::new(db.clone(), &cfg);
    for url in ["http://169.254.169.254/", "http://10.0.0.1/"] {
        let err = admin
            .create(CreateWebhook {
                url: url.into(),
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert!(
            matches!(err, Error::DestinationRefused { .. }),
            "{url}: {err}"
        );
    }
    // Without the allow-list, loopback is refused at create and at send time, without a
    // request reaching the receiver.
    let receiver = Receiver::start(|_, _| status(200)).await;
    let strict = events_delivery::WebhookConfig {
        allow_destinations: vec![],
        ..cfg.clone()
    };
    let strict_admin = WebhookAdmin::new(db.clone(), &strict);
    assert!(matches!(
        strict_admin
            .create(CreateWebhook {
                url: receiver.url(),
                ..Default::default()
            })
            .await,
        Err(Error::DestinationRefused { .. })
    ));
    let hook = admin
        .create(CreateWebhook {
            url: receiver.url(),
            ..Default::default()
        })
        .await
        .unwrap()
        .webhook;
    let (_bus, producer) = bus();
    let strict_worker = DeliveryWorker::new(db.clone(), strict, producer.clone()).unwrap();
    enqueue(&db, event("job.completed")).await;
    assert_eq!(strict_worker.run_once().await.unwrap(), 1);
    let refused = admin
        .deliveries(hook.id, DeliveryQuery::default())
        .await
        .unwrap()
        .remove(0);
    assert!(
        refused.attempt_log[0]
            .error
            .as_deref()
            .unwrap()
            .contains("loopback"),
        "{refused:?}"
    );
    assert!(receiver.received().is_empty());
    // A host name resolving to loopback is refused by the resolver at connect time.
    let named = admin
        .create(CreateWebhook {
            url: format!("http://localhost:{}/hook", receiver.addr.port()),
            ..Default::default()
        })
        .await
        .unwrap()
        .webhook;
    admin
        .update(
            hook.id,
            UpdateWebhook {
                enabled: Some(false),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    enqueue(&db, event("job.completed")).await;
    let strict_worker = DeliveryWorker::new(
        db.clone(),
        config(&[0.0], 100).tap_strict(),
        producer.clone(),
    )
    .unwrap();
    strict_worker.run_once().await.unwrap();
    let by_name = admin
        .deliveries(named.id, DeliveryQuery::default())
        .await
        .unwrap()
        .remove(0);
    assert!(
        by_name.attempt_log[0]
            .error
            .as_deref()
            .unwrap()
            .contains("refused"),
        "{by_name:?}"
    );
    assert!(receiver.received().is_empty());
    // The allow-listed worker delivers to the loopback receiver; a manual retry re-sends
    // the refused delivery with trigger `manual`.
    admin
        .update(
            hook.id,
            UpdateWebhook {
                enabled: Some(true),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let worker = DeliveryWorker::new(db.clone(), cfg, producer).unwrap();
    admin.retry(hook.id, refused.id).await.unwrap();
    let cancel = start(worker);
    receiver
        .wait_until("allow-listed delivery", |l| !l.is_empty())
        .await;
    let d = wait_for_status(&admin, hook.id, DeliveryStatus::Succeeded).await;
    assert_eq!(d.attempt_log.last().unwrap().trigger, Trigger::Manual);
    cancel.cancel();
}

trait TapStrict {
    fn tap_strict(self) -> Self;
}

impl TapStrict for events_delivery::WebhookConfig {
    fn tap_strict(mut self) -> Self {
        self.allow_destinations.clear();
        self
    }
}

#[tokio::test]
async fn recovery_re_enqueues_failed_deliveries_of_a_time_range() {
    let db = open_db().await;
    let fail = Arc::new(AtomicBool::new(true));
    let flag = Arc::clone(&fail);
    let receiver = Receiver::start(move |_, _| {
        if flag.load(Ordering::SeqCst) {
            status(500)
        } else {
            status(200)
        }
    })
    .await;
    let cfg = config(&[0.0], 100);
    let admin = WebhookAdmin::new(db.clone(), &cfg);
    let hook = admin
        .create(CreateWebhook {
            url: receiver.url(),
            ..Default::default()
        })
        .await
        .unwrap()
        .webhook;
    let (_bus, producer) = bus();
    let worker = DeliveryWorker::new(db.clone(), cfg, producer).unwrap();
    let since = time::OffsetDateTime::now_utc() - time::Duration::seconds(1);
    for _ in 0..3 {
        enqueue(&db, event("job.completed")).await;
    }
    assert_eq!(worker.run_once().await.unwrap(), 3);
    let failed = admin
        .deliveries(
            hook.id,
            DeliveryQuery {
                status: Some(DeliveryStatus::Failed),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(failed.len(), 3);
    fail.store(false, Ordering::SeqCst);
    let before = RecoverRequest {
        since: since - time::Duration::hours(1),
        until: Some(since),
    };
    assert_eq!(admin.recover(hook.id, before).await.unwrap().recovered, 0);
    let recovered = admin
        .recover(hook.id, RecoverRequest { since, until: None })
        .await
        .unwrap();
    assert_eq!(recovered.recovered, 3);
    assert_eq!(worker.run_once().await.unwrap(), 3);
    let done = admin
        .deliveries(
            hook.id,
            DeliveryQuery {
                status: Some(DeliveryStatus::Succeeded),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(done.len(), 3);
    assert!(
        done.iter()
            .all(|d| d.attempt_log.len() == 2 && d.attempt_log[1].trigger == Trigger::Manual)
    );
}

#[tokio::test]
async fn crashed_worker_leaves_nothing_undelivered() {
    let db = open_db().await;
    let hang = Arc::new(AtomicBool::new(true));
    let acked: Arc<std::sync::Mutex<HashSet<String>>> = Arc::default();
    // While `hang` is set the receiver never answers (the worker is mid-flight when it
    // "crashes"); afterwards it answers 200 and counts distinct webhook-ids.
    let receiver = HangingReceiver::start(Arc::clone(&hang), Arc::clone(&acked)).await;

    let mut cfg = config(&[0.0, 0.05], 100);
    cfg.timeout_ms = 2_000;
    cfg.lease_ms = 3_000;
    cfg.concurrency = 64;
    let admin = WebhookAdmin::new(db.clone(), &cfg);
    admin
        .create(CreateWebhook {
            url: receiver.url(),
            ..Default::default()
        })
        .await
        .unwrap();
    let events: Vec<EventEnvelope> = (0..1000)
        .map(|i| event("job.completed").with_field("i", i))
        .collect();
    db.write_with(move |tx| {
        let outbox = events_delivery::OutboxCartridge::new();
        for e in &events {
            outbox.enqueue(tx.connection(), e, &[], time::OffsetDateTime::now_utc())?;
        }
        Ok::<_, Error>(())
    })
    .await
    .unwrap();

    let (_bus, producer) = bus();
    let first = tokio::spawn(
        DeliveryWorker::new(db.clone(), cfg.clone(), producer.clone())
            .unwrap()
            .run(CancellationToken::new()),
    );
    receiver.wait_for_hung(32).await;
    first.abort(); // the crash: requests in flight are dropped, their leases stay held
    let _ = first.await;
    hang.store(false, Ordering::SeqCst);

    cfg.concurrency = 32;
    let cancel = start(DeliveryWorker::new(db.clone(), cfg, producer).unwrap());
    let deadline = std::time::Instant::now() + Duration::from_secs(180);
    while acked.lock().unwrap().len() < 1000 {
        assert!(
            std::time::Instant::now() < deadline,
            "only {} of 1000 delivered",
            acked.lock().unwrap().len()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(acked.lock().unwrap().len(), 1000);
    // The last results may still be being recorded; wait (bounded) for the table to agree.
    let mut unfinished = -1;
    for _ in 0..1000 {
        unfinished = db
            .read(|r| {
                let sql = "SELECT COUNT(*) FROM deliveries WHERE status <> 'succeeded'";
                Ok(r.connection()
                    .query_row(sql, [], |row| row.get::<_, i64>(0))?)
            })
            .await
            .unwrap();
        if unfinished == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(unfinished, 0);
    cancel.cancel();
}

/// A receiver whose handler sleeps (never answers) while `hang` is set.
struct HangingReceiver {
    addr: std::net::SocketAddr,
    hung: Arc<std::sync::atomic::AtomicUsize>,
}

impl HangingReceiver {
    async fn start(hang: Arc<AtomicBool>, acked: Arc<std::sync::Mutex<HashSet<String>>>) -> Self {
        let hung = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let hung_in = Arc::clone(&hung);
        let app = axum::Router::new().route(
            "/hook",
            axum::routing::post(move |headers: axum::http::HeaderMap| {
                let (hang, acked, hung) =
                    (Arc::clone(&hang), Arc::clone(&acked), Arc::clone(&hung_in));
                async move {
                    if hang.load(Ordering::SeqCst) {
                        hung.fetch_add(1, Ordering::SeqCst);
                        tokio::time::sleep(Duration::from_secs(3600)).await;
                    }
                    let id = headers
                        .get("webhook-id")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or_default();
                    acked.lock().unwrap().insert(id.to_owned());
                    status(200)
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self { addr, hung }
    }

    fn url(&self) -> String {
        format!("http://{}/hook", self.addr)
    }

    async fn wait_for_hung(&self, n: usize) {
        for _ in 0..3000 {
            if self.hung.load(Ordering::SeqCst) >= n {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("worker never had {n} requests in flight");
    }
}

/// Runs `events` through the outbox cartridge in one write transaction, as a processor
/// batch does.
async fn outbox_batch(db: &EventDb, outbox: &OutboxCartridge, events: Vec<EventEnvelope>) {
    let outbox = outbox.clone();
    db.write_with(move |tx| {
        let catalog = EventCatalog::default();
        let handle = tokio::runtime::Handle::current();
        for event in events {
            let mut ctx = PipelineContext::new(&catalog, tx);
            handle.block_on(outbox.process(event, &mut ctx))?;
        }
        Ok::<_, anyhow::Error>(())
    })
    .await
    .expect("outbox batch");
}

/// Deliveries queued per webhook id, ascending.
async fn deliveries_per_webhook(db: &EventDb) -> Vec<(i64, i64)> {
    db.read(|r| {
        let mut stmt = r.connection().prepare(
            "SELECT webhook_id, COUNT(*) FROM deliveries GROUP BY webhook_id ORDER BY webhook_id",
        )?;
        let rows = stmt.query_map([], |row| Ok((row.get(0)?, row.get(1)?)))?;
        Ok(rows.collect::<Result<Vec<_>, _>>()?)
    })
    .await
    .expect("count deliveries")
}

/// The cartridge reads the enabled webhooks once per transaction (not per event), so every
/// event of a batch reaches them, and a webhook created, disabled or re-enabled between two
/// batches counts from the next batch on — never a stale list.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_outbox_cartridge_follows_webhook_changes_between_batches() {
    let db = open_db().await;
    let cfg = config(&[0.0], 100);
    let admin = WebhookAdmin::new(db.clone(), &cfg);
    let create = |path: &str| CreateWebhook {
        url: format!("http://127.0.0.1:9/{path}"),
        ..Default::default()
    };
    let enabled = |on: bool| UpdateWebhook {
        enabled: Some(on),
        ..Default::default()
    };
    let jobs = |n: usize| -> Vec<EventEnvelope> {
        (0..n)
            .map(|i| event("job.completed").with_field("i", i))
            .collect()
    };
    let outbox = OutboxCartridge::new();
    let first = admin.create(create("first")).await.unwrap().webhook.id;

    outbox_batch(&db, &outbox, jobs(3)).await;
    assert_eq!(deliveries_per_webhook(&db).await, vec![(first, 3)]);

    let second = admin.create(create("second")).await.unwrap().webhook.id;
    outbox_batch(&db, &outbox, jobs(2)).await;
    assert_eq!(
        deliveries_per_webhook(&db).await,
        vec![(first, 5), (second, 2)]
    );

    admin.update(first, enabled(false)).await.unwrap();
    outbox_batch(&db, &outbox, jobs(2)).await;
    assert_eq!(
        deliveries_per_webhook(&db).await,
        vec![(first, 5), (second, 4)]
    );

    // re-enabled, and run through a clone of the cartridge (clones share the cache)
    admin.update(first, enabled(true)).await.unwrap();
    outbox_batch(&db, &outbox.clone(), jobs(1)).await;
    assert_eq!(
        deliveries_per_webhook(&db).await,
        vec![(first, 6), (second, 5)]
    );
}
