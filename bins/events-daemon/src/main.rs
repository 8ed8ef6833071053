//! `events-daemon`: the event platform's one binary (brief §8, §11).
//!
//! Thin glue: reads the layered config ([`config`]), opens the store, builds the catalog, the
//! transport (embedded SQLite stream by default, Redis with `--redis-url`), the pipeline
//! (dedup → notification projector → delivery outbox), the processor task, the push hub,
//! the delivery workers (webhooks always, Telegram when `[telegram]` is configured) and the
//! HTTP API with the `/api/webhooks` routes, then waits for SIGINT or SIGTERM and shuts down
//! in order — stop accepting requests, close pushes (WebSocket 1001), stop claiming
//! deliveries, let the processor finish and commit its batch — within a bounded time.
//!
//! Exit codes: 0 after a clean shutdown, 2 for a bad configuration (the message names the
//! key or file), 1 for any other failure.

mod config;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use events_api::{AppState, Limits, PushHub, Readiness};
use events_delivery::{
    DeliveryWorker, OutboxCartridge, TelegramRoute, TelegramWorker, WebhookAdmin,
};
use events_envelope::{EventCatalog, EventEnvelope, EventLevel};
use events_pipeline::Pipeline;
use events_processor::{
    EmbeddedConfig, EmbeddedSource, Processor, ProcessorConfig, ProcessorStatus, PushSink,
    RawAppend, RedisAppender, RedisSourceConfig, RedisStreamSource, Source,
};
use events_producer::{Producer, RedisProducer, RedisProducerConfig};
use events_storage::EventDb;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::config::{Config, LogFormat, Overrides};

/// mimalloc instead of glibc malloc: the writer allocates and frees per row (SQLite's own
/// buffers, envelopes, JSON) and glibc's malloc/free/consolidate were ~10 % of its profile
/// (docs/benchmarks.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Longest a graceful shutdown may take before the daemon gives up waiting.
const SHUTDOWN_BUDGET: Duration = Duration::from_secs(10);
/// How often the retention job runs.
const RETENTION_EVERY: Duration = Duration::from_secs(3600);
/// Rows deleted per retention transaction (keeps the writer free for the processor).
const RETENTION_CHUNK: u32 = 1000;
/// How long shutdown waits for delivery requests in flight. Whatever is still in flight
/// then is abandoned: its lease expires and it is sent again after a restart, with the
/// same `webhook-id` (the outbox is at-least-once by design).
const DELIVERY_DRAIN: Duration = Duration::from_secs(5);

/// The event platform daemon: ingest, processing, notifications, HTTP/WS/SSE API.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    /// TOML config file (see events.example.toml).
    #[arg(long, env = "EVENTS_CONFIG")]
    config: Option<PathBuf>,
    /// Address to serve on (default 127.0.0.1:7400).
    #[arg(long)]
    bind: Option<String>,
    /// Directory of the database (default ./events-data).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Use Redis Streams at this URL instead of the embedded transport.
    #[arg(long)]
    redis_url: Option<String>,
    /// Directory of extra catalog *.toml files.
    #[arg(long)]
    catalog_dir: Option<PathBuf>,
    /// Log format on stderr.
    #[arg(long, value_enum)]
    log_format: Option<LogFormat>,
}

/// A start-up failure that is the operator's input (exit 2) rather than the environment (exit 1).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct BadInput(String);

fn main() -> ExitCode {
    let cli = Cli::parse();
    let overrides = Overrides {
        bind: cli.bind,
        data_dir: cli.data_dir,
        redis_url: cli.redis_url,
        catalog_dir: cli.catalog_dir,
        log_format: cli.log_format,
    };
    let config = match Config::load(cli.config.as_deref(), std::env::vars(), &overrides) {
        Ok(config) => config,
        Err(err) => {
            eprintln!("events-daemon: invalid configuration: {err}");
            return ExitCode::from(2);
        }
    };
    init_logging(config.log_format);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("events-daemon: cannot start the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            tracing::error!(
                error = format!("{err:#}"),
                "events-daemon stopped with an error"
            );
            eprintln!("events-daemon: {err:#}");
            if err.downcast_ref::<BadInput>().is_some() {
                ExitCode::from(2)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok().filter(|h| !h.is_empty()))
        .unwrap_or_else(|| "localhost".to_owned())
}

/// Everything the transport decision produces.
struct Transport {
    producer: Arc<dyn Producer>,
    replay_target: Arc<dyn RawAppend>,
    processor: JoinHandle<()>,
    status: Arc<ProcessorStatus>,
    redis_url: Option<String>,
}

/// Where the processor's tasks run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ProcessorHome {
    /// The main runtime, beside the HTTP API that feeds it (the embedded transport: ingest
    /// and processing are both this daemon's work, and favouring one half over the other
    /// only moved the wait — embedded ingest was 14 % slower with a favoured processor).
    MainRuntime,
    /// A favoured runtime of its own ([`processor_runtime`]): the stream is fed by other
    /// processes (Redis), which the processor has to keep up with (`redis.favour_processing`).
    OwnRuntime,
}

fn spawn_processor<S: Source>(
    home: ProcessorHome,
    source: S,
    config: &Config,
    db: &EventDb,
    catalog: &Arc<EventCatalog>,
    hub: &PushHub,
    cancel: CancellationToken,
) -> (JoinHandle<()>, Arc<ProcessorStatus>) {
    let mut processor_config = ProcessorConfig {
        max_payload_bytes: config.limits.max_payload_bytes,
        ..ProcessorConfig::default()
    };
    if let Some(redis) = &config.redis {
        processor_config.max_deliveries = redis.max_deliveries;
    }
    let sinks: Vec<Arc<dyn PushSink>> = vec![Arc::new(hub.clone())];
    let processor = Processor::new(
        processor_config,
        source,
        db.clone(),
        Arc::clone(catalog),
        pipeline(config),
        sinks,
    );
    let status = processor.status();
    let run = async move {
        if let Err(err) = processor.run(cancel).await {
            tracing::error!(error = %err, "processor stopped with an error");
        }
    };
    let runtime = match home {
        ProcessorHome::MainRuntime => None,
        ProcessorHome::OwnRuntime => processor_runtime()
            .inspect_err(|err| {
                tracing::warn!(error = %err, "cannot start the processor's own runtime; it shares the main one");
            })
            .ok(),
    };
    let handle = match runtime {
        Some(runtime) => {
            let task = runtime.spawn(run);
            tokio::spawn(async move {
                let _ = task.await;
                // what the processor spawned (its transport's connection tasks) ends here
                runtime.shutdown_background();
            })
        }
        None => tokio::spawn(run),
    };
    (handle, status)
}

/// The storage writer's real-time priority with Redis (`SCHED_RR`; 1 is the lowest, enough
/// to run ahead of every normal thread). Docs/benchmarks.md, session 27: e2e +7–10 %.
const WRITER_REALTIME_PRIORITY: i32 = 1;

/// Producers outside the daemon share the cores: the writer, which every event waits
/// behind, runs ahead of all of them (see `EventDb::make_writer_realtime`), where permitted.
async fn make_writer_realtime(db: &EventDb) {
    match db.make_writer_realtime(WRITER_REALTIME_PRIORITY).await {
        Ok(()) => tracing::info!(
            priority = WRITER_REALTIME_PRIORITY,
            "the storage writer runs with a real-time priority (SCHED_RR)"
        ),
        Err(error) => tracing::info!(
            %error,
            "the storage writer keeps the normal scheduling policy"
        ),
    }
}

/// The nice value of the processor's threads where the process may raise it. The processor
/// reads and decodes the stream ahead of the storage writer (`nice` −10,
/// `events_storage::WRITER_NICE`); on a host shared with the producers — the e2e
/// benchmark's emitter and Redis on the same two cores — at the normal priority it got too
/// little of the core the writer left, the writer waited for its next batch for a sixth of
/// the run, and the other core idled once the producers were done (docs/benchmarks.md,
/// session 27).
const PROCESSOR_NICE: i32 = -5;

/// A runtime of its own for the processor — its run loop, its transport's connections and
/// acks, its reads of the embedded stream — on one worker thread favoured for its life
/// ([`PROCESSOR_NICE`]; where raising a priority is not permitted, said once, and the
/// threads run at the normal priority). The HTTP API and the delivery workers stay on the
/// main runtime at the normal priority: favouring the whole daemon cost the API and the
/// embedded ingest as much as it gave the stream (the benchmark's load clients share the
/// cores with it).
fn processor_runtime() -> std::io::Result<tokio::runtime::Runtime> {
    static REFUSED: std::sync::Once = std::sync::Once::new();
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("events-processor")
        .enable_all()
        .on_thread_start(|| match events_sched::favour_current_thread(PROCESSOR_NICE) {
            Ok(favoured) => favoured.keep(),
            Err(error) => REFUSED.call_once(|| {
                tracing::info!(%error, nice = PROCESSOR_NICE, "the processor runs at the normal priority (raising it is not permitted here)");
            }),
        })
        .build()
}

/// dedup → notification projector → delivery outbox. The outbox is last so that dropped
/// duplicates are never delivered and the notifications it queues for Telegram exist; it
/// writes its jobs in the batch transaction, so they are durable exactly when the
/// projection is.
fn pipeline(config: &Config) -> Pipeline {
    let mut pipeline = Pipeline::standard(config.strict_catalog);
    let mut outbox = OutboxCartridge::new();
    if let Some(telegram) = &config.telegram {
        outbox = outbox.with_telegram(TelegramRoute::from(telegram));
    }
    pipeline.push(Arc::new(outbox));
    pipeline
}

/// Starts the delivery workers under `cancel`: webhooks always (an empty `webhooks` table
/// costs one read per poll), Telegram when configured. `producer` is the ingest producer, so
/// `system.webhook.disabled` goes through the pipeline like any other event.
fn spawn_delivery(
    config: &Config,
    db: &EventDb,
    producer: Arc<dyn Producer>,
    cancel: &CancellationToken,
) -> anyhow::Result<Vec<JoinHandle<()>>> {
    let mut tasks = Vec::new();
    let webhooks = DeliveryWorker::new(db.clone(), config.webhooks.clone(), producer)
        .context("starting the webhook delivery worker")?;
    let token = cancel.clone();
    tasks.push(tokio::spawn(async move {
        if let Err(err) = webhooks.run(token).await {
            tracing::error!(error = %err, "webhook delivery worker stopped with an error");
        }
    }));
    if let Some(telegram) = &config.telegram {
        let worker = TelegramWorker::new(db.clone(), telegram.clone())
            .context("starting the telegram delivery worker")?;
        let token = cancel.clone();
        tasks.push(tokio::spawn(async move {
            if let Err(err) = worker.run(token).await {
                tracing::error!(error = %err, "telegram delivery worker stopped with an error");
            }
        }));
    }
    Ok(tasks)
}

async fn build_transport(
    config: &Config,
    db: &EventDb,
    catalog: &Arc<EventCatalog>,
    hub: &PushHub,
    cancel: CancellationToken,
) -> anyhow::Result<Transport> {
    match &config.redis {
        None => {
            let source = EmbeddedSource::new(db.clone(), EmbeddedConfig::default());
            let producer = Arc::new(
                source
                    .producer()
                    .with_max_payload_bytes(config.limits.max_payload_bytes),
            );
            let (processor, status) = spawn_processor(
                ProcessorHome::MainRuntime,
                source,
                config,
                db,
                catalog,
                hub,
                cancel,
            );
            Ok(Transport {
                producer: producer.clone(),
                replay_target: producer,
                processor,
                status,
                redis_url: None,
            })
        }
        Some(redis) => {
            let maxlen = (redis.maxlen > 0).then_some(redis.maxlen);
            let mut producer_config = RedisProducerConfig::new(redis.url.clone());
            producer_config.stream = redis.stream.clone();
            producer_config.maxlen = maxlen;
            producer_config.max_payload_bytes = config.limits.max_payload_bytes;
            let producer = RedisProducer::connect(producer_config)
                .await
                .with_context(|| format!("connecting to redis at {} (redis.url)", redis.url))?;
            let appender = RedisAppender::connect(&redis.url, redis.stream.clone(), maxlen)
                .await
                .with_context(|| format!("connecting to redis at {} (redis.url)", redis.url))?;
            let mut source_config = RedisSourceConfig::new(redis.url.clone());
            source_config.stream = redis.stream.clone();
            source_config.group = redis.group.clone();
            source_config.dead_letter_stream = redis.dead_letter_stream.clone();
            source_config.claim_idle = Duration::from_millis(redis.claim_idle_ms);
            source_config.maxlen = maxlen;
            let source = RedisStreamSource::new(source_config);
            // `redis.favour_processing`: the consumer keeps up with producers on the host
            let home = if redis.favour_processing {
                make_writer_realtime(db).await;
                ProcessorHome::OwnRuntime
            } else {
                ProcessorHome::MainRuntime
            };
            let (processor, status) =
                spawn_processor(home, source, config, db, catalog, hub, cancel);
            Ok(Transport {
                producer: Arc::new(producer),
                replay_target: Arc::new(appender),
                processor,
                status,
                redis_url: Some(redis.url.clone()),
            })
        }
    }
}

fn load_catalog(config: &Config) -> anyhow::Result<EventCatalog> {
    let mut catalog = EventCatalog::builtin();
    if let Some(dir) = &config.catalog_dir {
        let added = catalog
            .load_dir(dir)
            .map_err(|err| BadInput(format!("catalog_dir {}: {err}", dir.display())))?;
        tracing::info!(dir = %dir.display(), added, "loaded catalog files");
    }
    Ok(catalog)
}

async fn retention(db: EventDb, days: u32, cancel: CancellationToken) {
    if days == 0 {
        return;
    }
    loop {
        let cutoff = time::OffsetDateTime::now_utc() - time::Duration::days(i64::from(days));
        match db.delete_events_older_than(cutoff, RETENTION_CHUNK).await {
            Ok(0) => {}
            Ok(deleted) => {
                tracing::info!(deleted, days, "retention removed old events from the log")
            }
            Err(err) => tracing::warn!(error = %err, "retention job failed; will retry"),
        }
        tokio::select! {
            () = cancel.cancelled() => return,
            () = tokio::time::sleep(RETENTION_EVERY) => {}
        }
    }
}

/// Awaits every task (their own errors were logged inside).
async fn futures_join(tasks: Vec<JoinHandle<()>>) {
    for task in tasks {
        let _ = task.await;
    }
}

async fn shutdown_signal() -> anyhow::Result<&'static str> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    Ok(tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
    })
}

async fn run(config: Config) -> anyhow::Result<()> {
    let addr = config
        .bind_addr()
        .map_err(|err| BadInput(err.to_string()))?;
    std::fs::create_dir_all(&config.data_dir).map_err(|err| {
        BadInput(format!(
            "data_dir {}: cannot create it: {err}",
            config.data_dir.display()
        ))
    })?;
    let db_path = config.data_dir.join("events.db");
    let db = EventDb::open(&db_path)
        .await
        .with_context(|| format!("opening {}", db_path.display()))?;
    let catalog = Arc::new(load_catalog(&config)?);
    let hub = PushHub::new(
        db.epoch(),
        db.max_seq().await?,
        events_api::DEFAULT_QUEUE_CAPACITY,
    );

    let processor_cancel = CancellationToken::new();
    let delivery_cancel = CancellationToken::new();
    let background = CancellationToken::new();
    let http_cancel = CancellationToken::new();

    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|err| BadInput(format!("bind: cannot listen on {addr}: {err}")))?;
    let transport = build_transport(&config, &db, &catalog, &hub, processor_cancel.clone()).await?;
    let hub_task = tokio::spawn(hub.clone().run(db.clone(), background.clone()));
    let retention_task = tokio::spawn(retention(
        db.clone(),
        config.retention.events_days,
        background.clone(),
    ));

    let limits = Limits {
        requests_per_second: config.limits.requests_per_second,
        max_body_bytes: config.limits.max_body_bytes,
        max_payload_bytes: config.limits.max_payload_bytes,
        strict_catalog: config.strict_catalog,
        ..Limits::default()
    };
    let status = Arc::clone(&transport.status);
    let mut state = AppState::new(
        db.clone(),
        Arc::clone(&catalog),
        Arc::clone(&transport.producer),
        Arc::clone(&transport.replay_target),
        hub.clone(),
        &config.auth,
        limits,
    )
    .map_err(|err| BadInput(err.to_string()))?
    .with_readiness("processor", move || {
        let status = Arc::clone(&status);
        async move {
            let mut readiness = if status.running() {
                Readiness::ok()
            } else {
                Readiness::failing("processor is not running")
            };
            readiness = readiness.with("lag", status.lag());
            if let Some(at) = status.last_batch_at() {
                readiness = readiness.with(
                    "last_batch_at",
                    at.format(&time::format_description::well_known::Rfc3339)
                        .unwrap_or_default(),
                );
            }
            readiness
        }
    });
    if let Some(url) = transport.redis_url.clone() {
        let status = Arc::clone(&transport.status);
        state = state.with_readiness("redis", move || {
            let status = Arc::clone(&status);
            let url = url.clone();
            async move {
                if status.source_connected() {
                    Readiness::ok()
                } else {
                    Readiness::failing(format!(
                        "cannot reach redis at {url}; the processor keeps retrying"
                    ))
                }
            }
        });
    }
    let admin = WebhookAdmin::new(db.clone(), &config.webhooks);
    let depth_admin = admin.clone();
    state = state.with_readiness("delivery", move || {
        let admin = depth_admin.clone();
        async move {
            // Depth is information, not a verdict: a backlog (a receiver down for hours)
            // must not take the API out of a load balancer.
            match admin.outbox_depth().await {
                Ok((webhooks, telegram)) => Readiness::ok()
                    .with("webhook_pending", webhooks)
                    .with("telegram_pending", telegram),
                Err(err) => Readiness::failing(format!("cannot read the delivery outbox: {err}")),
            }
        }
    });
    let delivery_tasks = spawn_delivery(
        &config,
        &db,
        Arc::clone(&transport.producer),
        &delivery_cancel,
    )?;
    let producer = Arc::clone(&transport.producer);
    let mut server = tokio::spawn(events_api::serve_with(
        listener,
        state,
        events_api::webhook_routes(admin),
        http_cancel.clone(),
    ));
    tracing::info!(
        %addr,
        transport = if transport.redis_url.is_some() { "redis" } else { "embedded" },
        telegram = config.telegram.is_some(),
        "events-daemon started"
    );

    let restarted = EventEnvelope::new("system.daemon.restarted", "events-daemon")
        .with_level(EventLevel::Infrastructure)
        .with_domain("system")
        .with_description("events-daemon started")
        .with_field("computer", hostname())
        .with_field("pid", std::process::id());
    if let Err(err) = producer.emit(restarted).await {
        tracing::warn!(error = %err, "could not emit system.daemon.restarted");
    }

    let signal = tokio::select! {
        signal = shutdown_signal() => signal?,
        result = &mut server => {
            return match result {
                Ok(Ok(())) => Err(anyhow::anyhow!("http server stopped unexpectedly")),
                Ok(Err(err)) => Err(err.into()),
                Err(err) => Err(anyhow::anyhow!("http server task failed: {err}")),
            };
        }
    };
    tracing::info!(signal, "shutting down");
    let graceful = async {
        // 1. stop accepting; pushes close (WebSocket 1001); in-flight requests finish.
        //    Delivery workers stop claiming at the same time; their requests in flight get
        //    until step 3 to finish.
        delivery_cancel.cancel();
        http_cancel.cancel();
        match server.await {
            Ok(Ok(())) => {}
            Ok(Err(err)) => tracing::warn!(error = %err, "http server stopped with an error"),
            Err(err) => tracing::warn!(error = %err, "http server task failed"),
        }
        // 2. the processor finishes, commits and acks the batch in flight.
        processor_cancel.cancel();
        let _ = transport.processor.await;
        // 3. delivery: what is still in flight after DELIVERY_DRAIN is abandoned and sent
        //    again after the restart (its lease expires).
        let aborts: Vec<_> = delivery_tasks
            .iter()
            .map(JoinHandle::abort_handle)
            .collect();
        if tokio::time::timeout(DELIVERY_DRAIN, futures_join(delivery_tasks))
            .await
            .is_err()
        {
            tracing::warn!(
                "delivery requests still in flight after {DELIVERY_DRAIN:?}; they will be retried after the restart"
            );
            aborts.iter().for_each(tokio::task::AbortHandle::abort);
        }
        background.cancel();
        let _ = hub_task.await;
        let _ = retention_task.await;
    };
    match tokio::time::timeout(SHUTDOWN_BUDGET, graceful).await {
        Ok(()) => {
            tracing::info!("shutdown complete");
            Ok(())
        }
        Err(_) => Err(anyhow::anyhow!(
            "graceful shutdown did not finish within {SHUTDOWN_BUDGET:?}"
        )),
    }
}
