//! Shared harness: a database, a transport (embedded or a private redis-server), an
//! emitter of raw entries, a processor task, and an independent model of the projection.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use events_envelope::{
    EventCatalog, EventEnvelope, EventLevel, EventSchema, NotificationLifecycle, to_stream_fields,
};
use events_pipeline::{Cartridge, Pipeline};
use events_processor::{
    EmbeddedConfig, EmbeddedProducer, EmbeddedSource, Processor, ProcessorConfig, ProcessorStatus,
    PushSink, RawAppend, RedisAppender, RedisSourceConfig, RedisStreamSource,
};
use events_storage::EventDb;
use events_testkit::RedisServer;
use fred::prelude::*;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Map, Value, json};
use tempfile::TempDir;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub(crate) const STREAM: &str = "events:stream";
pub(crate) const GROUP: &str = "event-processor";

pub(crate) type Fields = Vec<(String, String)>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Embedded,
    Redis,
}

/// One test setup: database file + transport.
pub(crate) struct Harness {
    pub(crate) kind: Kind,
    pub(crate) dir: TempDir,
    pub(crate) db: EventDb,
    pub(crate) redis: Option<Arc<RedisServer>>,
    embedded_producer: Option<EmbeddedProducer>,
}

impl Harness {
    pub(crate) async fn new(kind: Kind) -> anyhow::Result<Self> {
        Self::with_redis(kind, false).await
    }

    pub(crate) async fn with_redis(kind: Kind, aof: bool) -> anyhow::Result<Self> {
        init_tracing();
        let dir = tempfile::tempdir()?;
        let db = EventDb::open(dir.path().join("events.db")).await?;
        let mut harness = Self {
            kind,
            dir,
            db,
            redis: None,
            embedded_producer: None,
        };
        match kind {
            Kind::Embedded => {
                harness.embedded_producer = Some(EmbeddedProducer::new(harness.db.clone(), STREAM));
            }
            Kind::Redis => {
                harness.redis = Some(Arc::new(RedisServer::builder().aof(aof).start()));
            }
        }
        Ok(harness)
    }

    pub(crate) fn db_path(&self) -> PathBuf {
        self.dir.path().join("events.db")
    }

    pub(crate) fn redis_url(&self) -> Option<String> {
        self.redis.as_ref().map(|r| r.url())
    }

    /// The source configuration of `consumer` on this harness's Redis server, defaults
    /// otherwise.
    pub(crate) fn redis_config(&self, consumer: &str) -> RedisSourceConfig {
        let mut config = RedisSourceConfig::new(self.redis_url().unwrap_or_default());
        config.consumer = consumer.to_owned();
        config
    }

    /// A fresh source of this transport (`consumer` only matters for Redis).
    pub(crate) fn source(&self, consumer: &str, claim_idle: Duration) -> AnySource {
        match self.kind {
            Kind::Embedded => AnySource::Embedded(EmbeddedSource::new(
                self.db.clone(),
                EmbeddedConfig {
                    poll: Duration::from_millis(100),
                    ..EmbeddedConfig::default()
                },
            )),
            Kind::Redis => {
                let mut config = self.redis_config(consumer);
                config.claim_idle = claim_idle;
                config.block = Duration::from_millis(200);
                AnySource::Redis(RedisStreamSource::new(config))
            }
        }
    }

    /// Append raw entries in order (pipelined XADD, or one embedded transaction per chunk).
    pub(crate) async fn emit_raw(&self, entries: &[Fields]) -> anyhow::Result<Vec<String>> {
        let mut ids = Vec::with_capacity(entries.len());
        // a fresh client per call: it survives a redis restart between calls
        let client = match &self.redis {
            Some(redis) => Some(connect(&redis.url()).await?),
            None => None,
        };
        for chunk in entries.chunks(500) {
            match (&self.embedded_producer, &client) {
                (Some(producer), _) => ids.extend(producer.append_fields(chunk.to_vec()).await?),
                (None, Some(client)) => {
                    let pipeline = client.pipeline();
                    for fields in chunk {
                        let () = pipeline
                            .xadd(STREAM, false, None, "*", fields.clone())
                            .await?;
                    }
                    let replies: Vec<String> = pipeline.all().await?;
                    ids.extend(replies);
                }
                (None, None) => bail!("harness without transport"),
            }
        }
        if let Some(client) = client {
            client.quit().await?;
        }
        Ok(ids)
    }

    pub(crate) async fn emit(&self, events: &[EventEnvelope]) -> anyhow::Result<Vec<String>> {
        let raw: Vec<Fields> = events.iter().map(wire).collect();
        self.emit_raw(&raw).await
    }

    /// Where dead letters are replayed to.
    pub(crate) async fn replay_target(&self) -> anyhow::Result<Box<dyn RawAppend>> {
        Ok(match self.kind {
            Kind::Embedded => Box::new(EmbeddedProducer::new(self.db.clone(), STREAM)),
            Kind::Redis => Box::new(
                RedisAppender::connect(&self.redis_url().unwrap_or_default(), STREAM, None).await?,
            ),
        })
    }

    pub(crate) async fn processed_count(&self) -> anyhow::Result<i64> {
        count(&self.db, "SELECT COUNT(*) FROM processed_entries").await
    }

    /// Wait until `n` entries are marked processed (generous timeout; never asserts timing).
    pub(crate) async fn wait_processed(&self, n: i64, timeout: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            let done = self.processed_count().await?;
            if done >= n {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("only {done} of {n} entries processed within {timeout:?}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Number of entries pending in the Redis group (0 for embedded).
    pub(crate) fn redis_pending(&self) -> i64 {
        match &self.redis {
            Some(redis) => match redis.query(&["XPENDING", STREAM, GROUP]) {
                events_testkit::Reply::Array(items) => {
                    items.first().and_then(|r| r.as_integer()).unwrap_or(-1)
                }
                // the processor has not created the group yet
                events_testkit::Reply::Error(e) if e.starts_with("NOGROUP") => 0,
                other => panic!("unexpected XPENDING reply {other:?}"),
            },
            None => 0,
        }
    }
}

pub(crate) async fn connect(url: &str) -> anyhow::Result<Client> {
    let client = Builder::from_config(Config::from_url(url)?).build()?;
    client.init().await?;
    Ok(client)
}

pub(crate) async fn count(db: &EventDb, sql: &'static str) -> anyhow::Result<i64> {
    Ok(db
        .read(move |r| {
            Ok(r.connection()
                .query_row(sql, [], |row| row.get::<_, i64>(0))?)
        })
        .await?)
}

pub(crate) fn wire(event: &EventEnvelope) -> Fields {
    to_stream_fields(event)
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect()
}

/// Either source, so test bodies can be generic without boxing the trait.
pub(crate) enum AnySource {
    Embedded(EmbeddedSource),
    Redis(RedisStreamSource),
}

/// A running processor task.
pub(crate) struct Running {
    pub(crate) cancel: CancellationToken,
    pub(crate) handle: JoinHandle<events_processor::Result<()>>,
    pub(crate) status: Arc<ProcessorStatus>,
}

impl Running {
    pub(crate) async fn stop(self) -> anyhow::Result<()> {
        self.cancel.cancel();
        tokio::time::timeout(Duration::from_secs(30), self.handle)
            .await
            .context("processor did not stop")???;
        Ok(())
    }
}

pub(crate) fn spawn(
    harness: &Harness,
    source: AnySource,
    config: ProcessorConfig,
    pipeline: Pipeline,
    sinks: Vec<Arc<dyn PushSink>>,
    catalog: Arc<EventCatalog>,
) -> Running {
    let cancel = CancellationToken::new();
    let db = harness.db.clone();
    match source {
        AnySource::Embedded(s) => spawn_with(
            Processor::new(config, s, db, catalog, pipeline, sinks),
            &cancel,
        ),
        AnySource::Redis(s) => spawn_with(
            Processor::new(config, s, db, catalog, pipeline, sinks),
            &cancel,
        ),
    }
}

/// [`spawn`] with what most tests run: `consumer`'s source (30 s claim idle), the fast
/// config, the standard pipeline without extra cartridges, no sinks, the test catalog.
pub(crate) fn spawn_standard(harness: &Harness, consumer: &str) -> Running {
    spawn(
        harness,
        harness.source(consumer, Duration::from_secs(30)),
        fast_config(),
        standard_pipeline(vec![]),
        vec![],
        Arc::new(test_catalog()),
    )
}

fn spawn_with<S: events_processor::Source>(
    processor: Processor<S>,
    cancel: &CancellationToken,
) -> Running {
    let status = processor.status();
    let handle = tokio::spawn(processor.run(cancel.clone()));
    Running {
        cancel: cancel.clone(),
        handle,
        status,
    }
}

pub(crate) fn fast_config() -> ProcessorConfig {
    ProcessorConfig {
        batch_size: 200,
        max_deliveries: 3,
        retry_base: Duration::from_millis(30),
        retry_max: Duration::from_millis(200),
        reconnect_base: Duration::from_millis(50),
        reconnect_max: Duration::from_millis(500),
        lag_interval: Duration::from_millis(500),
        ..ProcessorConfig::default()
    }
}

pub(crate) fn standard_pipeline(extra: Vec<Arc<dyn Cartridge + Send + Sync>>) -> Pipeline {
    let mut pipeline = Pipeline::standard(false);
    for c in extra {
        pipeline.push(c);
    }
    pipeline
}

// ---------------------------------------------------------------------------------------
// the test catalog and workload

pub(crate) const CREATED: &str = "test.item.created";
pub(crate) const UPDATED: &str = "test.item.updated";
pub(crate) const RESOLVED: &str = "test.item.resolved";
pub(crate) const LOGLINE: &str = "test.log.line";
pub(crate) const UNKNOWN: &str = "test.unknown.thing";

pub(crate) fn test_catalog() -> EventCatalog {
    let mut catalog = EventCatalog::new();
    let schemas = [
        EventSchema::new(CREATED, "item created", EventLevel::Workflow, "test")
            .with_idempotency_fields(["item"])
            .with_actionable(true)
            .with_lifecycle(
                NotificationLifecycle::creates()
                    .with_group_key("item")
                    .with_meaningful_fields(["status"])
                    .with_silent_fields(["progress"]),
            ),
        EventSchema::new(UPDATED, "item updated", EventLevel::Operational, "test").with_lifecycle(
            NotificationLifecycle::updates()
                .with_group_key("item")
                .with_meaningful_fields(["status"])
                .with_silent_fields(["progress"]),
        ),
        EventSchema::new(RESOLVED, "item resolved", EventLevel::Workflow, "test")
            .with_lifecycle(NotificationLifecycle::resolves().with_group_key("item")),
        EventSchema::new(LOGLINE, "a log line", EventLevel::Infrastructure, "test"),
    ];
    for schema in schemas {
        catalog.register(schema).expect("test schema registers");
    }
    catalog
}

pub(crate) fn event(kind: &str, payload: Value) -> EventEnvelope {
    let Value::Object(map) = payload else {
        unreachable!("payload literal is an object")
    };
    EventEnvelope::new(kind, "it")
        .with_domain("test")
        .with_description(format!("{kind} desc"))
        .with_payload(map)
}

/// A deterministic mixed workload: creates, meaningful and silent updates, resolves,
/// pass-through types and ~5 % duplicates (same envelope again, or a second create of an
/// existing item with a fresh id).
pub(crate) fn workload(n: usize, seed: u64) -> Vec<EventEnvelope> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut out: Vec<EventEnvelope> = Vec::with_capacity(n);
    let mut items = 0usize;
    while out.len() < n {
        let roll: u32 = rng.random_range(0..100);
        let next = if roll < 5 && !out.is_empty() {
            if rng.random_bool(0.5) {
                out[rng.random_range(0..out.len())].clone()
            } else if items > 0 {
                event(
                    CREATED,
                    json!({"item": format!("i{}", rng.random_range(0..items)), "status": "new"}),
                )
            } else {
                continue;
            }
        } else if roll < 25 || items == 0 {
            items += 1;
            event(
                CREATED,
                json!({"item": format!("i{}", items - 1), "status": "new", "progress": 0, "title": format!("item {}", items - 1)}),
            )
        } else if roll < 45 {
            let item = format!("i{}", rng.random_range(0..items));
            let status = ["new", "running", "blocked"][rng.random_range(0..3)];
            event(UPDATED, json!({"item": item, "status": status}))
        } else if roll < 65 {
            let item = format!("i{}", rng.random_range(0..items));
            event(
                UPDATED,
                json!({"item": item, "progress": rng.random_range(0..100)}),
            )
        } else if roll < 75 {
            let item = format!("i{}", rng.random_range(0..items + 3));
            event(
                RESOLVED,
                json!({"item": item, "summary": format!("done {}", rng.random_range(0..1000))}),
            )
        } else if roll < 90 {
            event(LOGLINE, json!({"line": rng.random_range(0..1_000_000)}))
        } else {
            event(UNKNOWN, json!({"n": rng.random_range(0..1_000_000)}))
        };
        out.push(next);
    }
    out
}

/// The independently computed result of processing events in order.
#[derive(Debug, Default, Clone, PartialEq)]
pub(crate) struct Model {
    pub(crate) notifications: Vec<ModelNotification>,
    pub(crate) logged: Vec<String>,
    keys: std::collections::HashSet<String>,
    ids: std::collections::HashSet<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ModelNotification {
    pub(crate) item: String,
    pub(crate) event_type: String,
    pub(crate) payload: Map<String, Value>,
    pub(crate) description: String,
    pub(crate) unseen: bool,
    pub(crate) resolved: bool,
    pub(crate) resolution: Option<Value>,
}

impl Model {
    pub(crate) fn apply_all(&mut self, events: &[EventEnvelope]) {
        for e in events {
            self.apply(e);
        }
    }

    pub(crate) fn mark_all_seen(&mut self) {
        for n in &mut self.notifications {
            n.unseen = false;
        }
    }

    pub(crate) fn apply(&mut self, e: &EventEnvelope) {
        if self.ids.contains(&e.id) {
            return; // same envelope again
        }
        let item = e
            .payload
            .get("item")
            .and_then(Value::as_str)
            .map(str::to_owned);
        if e.event == CREATED {
            let key = format!("{CREATED}:{}", item.clone().unwrap_or_default());
            if !self.keys.insert(key) {
                return; // dedup
            }
        }
        self.ids.insert(e.id.clone());
        self.logged.push(e.id.clone());
        fn open<'m>(m: &'m mut Model, item: &str) -> Option<&'m mut ModelNotification> {
            m.notifications
                .iter_mut()
                .rev()
                .find(|n| n.item == item && !n.resolved)
        }
        match e.event.as_str() {
            CREATED => self.notifications.push(ModelNotification {
                item: item.unwrap_or_default(),
                event_type: CREATED.into(),
                payload: e.payload.clone(),
                description: e.description.clone(),
                unseen: true,
                resolved: false,
                resolution: None,
            }),
            UPDATED => {
                if let Some(n) = open(self, item.as_deref().unwrap_or_default()) {
                    if let Some(status) = e.payload.get("status")
                        && n.payload.get("status") != Some(status)
                    {
                        n.unseen = true;
                    }
                    for (k, v) in &e.payload {
                        n.payload.insert(k.clone(), v.clone());
                    }
                    n.description = e.description.clone();
                }
            }
            RESOLVED => {
                if let Some(n) = open(self, item.as_deref().unwrap_or_default()) {
                    n.resolved = true;
                    n.resolution = Some(Value::Object(e.payload.clone()));
                }
            }
            _ => {}
        }
    }
}

/// The notification table as the model sees it, in id order.
pub(crate) async fn table(db: &EventDb) -> anyhow::Result<Vec<ModelNotification>> {
    Ok(db
        .read(|r| {
            let mut stmt = r.connection().prepare(
                "SELECT group_value, event_type, payload, description, human_status, agent_status, resolution \
                 FROM notifications ORDER BY id",
            )?;
            let rows = stmt
                .query_map([], |row| {
                    Ok((
                        row.get::<_, Option<String>>(0)?,
                        row.get::<_, String>(1)?,
                        row.get::<_, String>(2)?,
                        row.get::<_, String>(3)?,
                        row.get::<_, String>(4)?,
                        row.get::<_, String>(5)?,
                        row.get::<_, Option<String>>(6)?,
                    ))
                })?
                .collect::<Result<Vec<_>, _>>()?;
            Ok(rows)
        })
        .await?
        .into_iter()
        .map(|(item, event_type, payload, description, human, agent, resolution)| ModelNotification {
            item: item.unwrap_or_default(),
            event_type,
            payload: serde_json::from_str(&payload).unwrap_or_default(),
            description,
            unseen: human == "unseen",
            resolved: agent == "resolved",
            resolution: resolution.and_then(|r| serde_json::from_str(&r).ok()),
        })
        .collect())
}

/// Event ids of the log in seq order.
pub(crate) async fn logged_ids(db: &EventDb) -> anyhow::Result<Vec<String>> {
    Ok(db
        .read(|r| {
            let mut stmt = r
                .connection()
                .prepare("SELECT event_id FROM events ORDER BY seq")?;
            let ids = stmt
                .query_map([], |row| row.get::<_, String>(0))?
                .collect::<Result<Vec<_>, _>>()?;
            Ok(ids)
        })
        .await?)
}

/// Compare the database with the model; on mismatch, name the first differing row.
pub(crate) async fn assert_matches_model(
    db: &EventDb,
    model: &Model,
    ordered_log: bool,
) -> anyhow::Result<()> {
    let actual = table(db).await?;
    if actual.len() != model.notifications.len() {
        bail!(
            "{} notifications, expected {}",
            actual.len(),
            model.notifications.len()
        );
    }
    for (i, (a, m)) in actual.iter().zip(&model.notifications).enumerate() {
        if a != m {
            bail!("notification #{i} differs:\n actual   {a:?}\n expected {m:?}");
        }
    }
    let mut log = logged_ids(db).await?;
    let mut expected = model.logged.clone();
    if !ordered_log {
        log.sort();
        expected.sort();
    }
    if log != expected {
        bail!(
            "event log has {} events, expected {} (or in another order)",
            log.len(),
            expected.len()
        );
    }
    Ok(())
}

/// Records pushes; with `panic` set it panics now and then (after recording).
#[derive(Debug, Default)]
pub(crate) struct RecordingSink {
    pub(crate) notifications: std::sync::Mutex<Vec<events_pipeline::NotificationPush>>,
    pub(crate) events: std::sync::Mutex<Vec<i64>>,
    pub(crate) panic: bool,
}

impl PushSink for RecordingSink {
    fn notification(&self, push: &events_pipeline::NotificationPush) {
        self.notifications
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(push.clone());
        // every 500th call, so the log stays readable
        if self.panic && push.notification_id % 500 == 1 {
            panic!("sink failure on purpose");
        }
    }

    fn event(&self, seq: i64, _event: &EventEnvelope) {
        self.events
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(seq);
        if self.panic && seq % 500 == 1 {
            panic!("sink failure on purpose");
        }
    }
}

/// Asks for the committed rows and records every push with the row it came with.
#[derive(Debug, Default)]
pub(crate) struct RowSink {
    pub(crate) rows: std::sync::Mutex<Vec<(i64, Option<events_processor::CommittedRow>)>>,
}

impl PushSink for RowSink {
    fn notification(&self, push: &events_pipeline::NotificationPush) {
        self.rows
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push((push.notification_id, None));
    }

    fn event(&self, _seq: i64, _event: &EventEnvelope) {}

    fn wants_notification_rows(&self) -> bool {
        true
    }

    fn notification_with_row(
        &self,
        push: &events_pipeline::NotificationPush,
        row: &events_processor::CommittedRow,
    ) {
        self.rows
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push((push.notification_id, Some(row.clone())));
    }
}

pub(crate) fn fixture_path() -> &'static Path {
    Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/python-producer-entries.json"
    ))
}

/// Logs to the test output when `RUST_LOG` is set (e.g. `RUST_LOG=events_processor=debug`).
pub(crate) fn init_tracing() {
    if std::env::var_os("RUST_LOG").is_some() {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_test_writer()
            .try_init();
    }
}
