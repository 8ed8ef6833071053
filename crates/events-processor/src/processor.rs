//! The run loop: read → decode → pipeline → one commit → ack → push.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use events_envelope::{EventCatalog, EventEnvelope, from_stream_fields_with_limit};
use events_pipeline::{DedupCartridge, NotificationPush, Pipeline, PipelineContext};
use events_storage::{EventDb, NewDeadLetter, Notification, StorageError, WriteTx};
use time::OffsetDateTime;
use tokio_util::sync::CancellationToken;

use crate::backoff::Backoff;
use crate::error::{Error, Result};
use crate::metrics as m;
use crate::source::{Checkpoint, DeadLetterRecord, Source, SourceEntry};

/// Receives what a committed batch did, to push it to clients (WebSocket, SSE, delivery).
///
/// Called on the storage writer's thread right after the batch's commit, while it still
/// holds the writer (so in commit order, and before the batch's acks and read-ahead round
/// trips to the transport, which clients need not wait for). Implementations therefore
/// **must not block and must stay cheap** — every write transaction waits for them (forward
/// to a bounded channel or a `tokio::sync::broadcast` and return); a panic is caught and
/// logged, never fails the batch.
pub trait PushSink: Send + Sync {
    /// A notification was created or changed.
    fn notification(&self, push: &NotificationPush);
    /// An event was appended to the event log with sequence number `seq`.
    fn event(&self, seq: i64, event: &EventEnvelope);
    /// Whether this sink would read the rows of changed notifications after the commit
    /// (asked before each batch). If any sink says yes, the processor reads them at the end
    /// of the batch's own transaction — where their pages are already in the writer's cache
    /// — and hands them over through [`PushSink::notification_with_row`], instead of every
    /// sink starting a read transaction of its own after the commit.
    fn wants_notification_rows(&self) -> bool {
        false
    }
    /// [`PushSink::notification`] with the notification's row as this batch committed it
    /// (the state after the batch's last change to it).
    fn notification_with_row(&self, push: &NotificationPush, _row: &CommittedRow) {
        self.notification(push);
    }
}

/// A notification row as a batch committed it, for [`PushSink::notification_with_row`].
#[derive(Debug, Clone)]
pub struct CommittedRow {
    /// The row after the batch's last change to it.
    pub notification: Arc<Notification>,
    /// The batch's [`WriteTx::commit_number`]: the row is still the stored one while
    /// [`EventDb::commit_count`] equals it (any later commit, say a PATCH through the API,
    /// may have changed it).
    pub commit: u64,
}

/// Tunables of the run loop. `ProcessorConfig::default()` gives brief §8 defaults.
#[derive(Debug, Clone)]
pub struct ProcessorConfig {
    /// Most entries read and committed together (2,000). A batch only fills up when there is
    /// a backlog, so this bounds the work per commit, not the latency of a quiet stream; at
    /// 2,000 the index pages a commit writes are shared by more events (about 18 % more
    /// events per CPU-second than at 500 in the e2e benchmark).
    pub batch_size: usize,
    /// Deliveries of a failing entry before it is dead-lettered (5).
    pub max_deliveries: u64,
    /// Delay before the first redelivery of a failing entry (200 ms); doubles per delivery.
    pub retry_base: Duration,
    /// Longest delay between redeliveries of a failing entry (10 s).
    pub retry_max: Duration,
    /// First backoff after a transport or storage error (100 ms).
    pub reconnect_base: Duration,
    /// Longest backoff after transport or storage errors (5 s).
    pub reconnect_max: Duration,
    /// Largest accepted payload when decoding (256 KiB).
    pub max_payload_bytes: usize,
    /// How often the consumer lag is measured (5 s).
    pub lag_interval: Duration,
}

impl Default for ProcessorConfig {
    fn default() -> Self {
        Self {
            batch_size: 2000,
            max_deliveries: 5,
            retry_base: Duration::from_millis(200),
            retry_max: Duration::from_secs(10),
            reconnect_base: Duration::from_millis(100),
            reconnect_max: Duration::from_secs(5),
            max_payload_bytes: events_envelope::DEFAULT_MAX_PAYLOAD_BYTES,
            lag_interval: Duration::from_secs(5),
        }
    }
}

/// Live state of a processor for `/ready` and dashboards. Shared (`Arc`), lock-free.
#[derive(Debug)]
pub struct ProcessorStatus {
    connected: AtomicBool,
    running: AtomicBool,
    /// Unix milliseconds of the last committed batch; 0 = none yet.
    last_batch_ms: AtomicI64,
    /// -1 = unknown.
    lag: AtomicI64,
}

impl Default for ProcessorStatus {
    fn default() -> Self {
        Self {
            connected: AtomicBool::new(false),
            running: AtomicBool::new(false),
            last_batch_ms: AtomicI64::new(0),
            lag: AtomicI64::new(-1),
        }
    }
}

impl ProcessorStatus {
    /// Whether the source's transport answered on the last attempt.
    pub fn source_connected(&self) -> bool {
        self.connected.load(Ordering::Relaxed)
    }

    /// Whether the run loop is running.
    pub fn running(&self) -> bool {
        self.running.load(Ordering::Relaxed)
    }

    /// When the last batch was committed (empty reads do not count).
    pub fn last_batch_at(&self) -> Option<OffsetDateTime> {
        match self.last_batch_ms.load(Ordering::Relaxed) {
            0 => None,
            ms => OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000).ok(),
        }
    }

    /// Entries not yet processed by the group, at the last measurement.
    pub fn lag(&self) -> Option<u64> {
        u64::try_from(self.lag.load(Ordering::Relaxed)).ok()
    }
}

/// What one committed batch did, for tests and logs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BatchReport {
    /// Entries read.
    pub read: usize,
    /// Events appended to the event log.
    pub logged: usize,
    /// Events dropped by a cartridge (duplicates included).
    pub dropped: usize,
    /// Of those, duplicates (dedup or an event id already logged).
    pub duplicates: usize,
    /// Entries already processed before (re-deliveries after a crash).
    pub skipped: usize,
    /// Entries dead-lettered.
    pub dead_lettered: usize,
    /// Entries left for a later retry.
    pub retried: usize,
    /// Notification pushes produced.
    pub pushes: usize,
}

/// The processing loop over one [`Source`] (brief §8). See the crate docs for the flow.
pub struct Processor<S: Source> {
    config: ProcessorConfig,
    source: S,
    db: EventDb,
    catalog: Arc<EventCatalog>,
    pipeline: Pipeline,
    /// Shared with the writer's thread, which pushes right after each commit.
    sinks: Arc<[Arc<dyn PushSink>]>,
    status: Arc<ProcessorStatus>,
}

impl<S: Source> fmt::Debug for Processor<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Processor")
            .field("config", &self.config)
            .field("source", &self.source.describe())
            .field("pipeline", &self.pipeline)
            .field("sinks", &self.sinks.len())
            .finish_non_exhaustive()
    }
}

/// The fate of one entry inside the batch transaction.
enum Outcome {
    Logged {
        seq: i64,
        event: Box<EventEnvelope>,
        pushes: Vec<CommittedPush>,
    },
    Dropped {
        duplicate: bool,
    },
    Skipped,
    DeadLettered(DeadLetterRecord),
    Retry(String),
}

/// A notification push with its committed row, if a sink asked for rows.
struct CommittedPush {
    push: NotificationPush,
    row: Option<CommittedRow>,
}

/// What a committed batch still owes the transport: its dead letters published and its
/// entries acknowledged. The run loop pays it while the next batch commits (both are round
/// trips to Redis that the next batch need not wait for); an entry acknowledged late is
/// only redelivered after a crash, and then skipped as processed.
#[derive(Default)]
struct Settlement {
    letters: Vec<DeadLetterRecord>,
    acks: Vec<String>,
    /// The batch's decoded entries and logged outcomes (envelopes and pushes), freed once it
    /// is settled — while the next batch commits — instead of between two commits, where the
    /// writer thread would wait for it (freeing a full batch was ~2 % of the daemon in the
    /// e2e profile). Only `Outcome::Logged`: the other outcomes are consumed or tiny.
    _spent: Option<(Arc<Vec<Prepared>>, Vec<Outcome>)>,
}

struct Prepared {
    entry: SourceEntry,
    /// The entry decoded ahead of its batch, moved out by the first attempt that runs it:
    /// cloning every envelope instead (the batch may run twice, see
    /// [`Processor::commit`]) and freeing the clone was ~2 % of the writer thread in the e2e
    /// benchmark. A later attempt decodes the entry's fields again.
    decoded: Mutex<Option<std::result::Result<EventEnvelope, String>>>,
}

impl Prepared {
    fn new(entry: SourceEntry, max_payload_bytes: usize) -> Self {
        let decoded = decode(&entry, max_payload_bytes);
        Self {
            entry,
            decoded: Mutex::new(Some(decoded)),
        }
    }

    /// The decoded entry for an attempt to run it; an undecodable entry gives its reason.
    fn take_decoded(&self, max_payload_bytes: usize) -> std::result::Result<EventEnvelope, String> {
        let ahead = self
            .decoded
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        ahead.unwrap_or_else(|| decode(&self.entry, max_payload_bytes))
    }
}

fn decode(
    entry: &SourceEntry,
    max_payload_bytes: usize,
) -> std::result::Result<EventEnvelope, String> {
    from_stream_fields_with_limit(entry.fields.iter(), &entry.entry_id, max_payload_bytes)
        .map_err(|e| format!("undecodable entry: {e}"))
}

/// Decodes stream entries into what a batch commits; an undecodable entry keeps its
/// reason (it is dead-lettered by the batch, not dropped here).
fn prepare(entries: Vec<SourceEntry>, max_payload_bytes: usize) -> Vec<Prepared> {
    entries
        .into_iter()
        .map(|entry| Prepared::new(entry, max_payload_bytes))
        .collect()
}

impl<S: Source> Processor<S> {
    /// A processor reading `source`, committing to `db`, running `pipeline` with
    /// `catalog`, and pushing committed changes to `sinks`.
    pub fn new(
        config: ProcessorConfig,
        source: S,
        db: EventDb,
        catalog: Arc<EventCatalog>,
        pipeline: Pipeline,
        sinks: Vec<Arc<dyn PushSink>>,
    ) -> Self {
        Self {
            config,
            source,
            db,
            catalog,
            pipeline,
            sinks: sinks.into(),
            status: Arc::new(ProcessorStatus::default()),
        }
    }

    /// The shared status handle (clone it before [`Processor::run`]).
    pub fn status(&self) -> Arc<ProcessorStatus> {
        Arc::clone(&self.status)
    }

    /// The source (for tests and diagnostics).
    pub fn source(&self) -> &S {
        &self.source
    }

    /// Run until `cancel` fires: read batches, commit, ack, push. Transport and storage
    /// errors are retried with capped backoff, never returned; on cancellation the batch in
    /// flight is finished and acked before returning.
    pub async fn run(mut self, cancel: CancellationToken) -> Result<()> {
        if self.config.max_deliveries == 0 || self.config.batch_size == 0 {
            return Err(Error::Config(
                "max_deliveries and batch_size must be at least 1".into(),
            ));
        }
        self.status.running.store(true, Ordering::Relaxed);
        tracing::info!(source = %self.source.describe(), pipeline = ?self.pipeline.names(), "processor started");
        let mut backoff = Backoff::new(self.config.reconnect_base, self.config.reconnect_max);
        let mut next_lag = Instant::now();
        // Entries read (and decoded) ahead while the previous batch was committing, with
        // their transaction already queued behind it. They are processed even after
        // `cancel` (graceful shutdown finishes what it read, and what the source holds:
        // `Source::take_buffered`), but nothing more is read then.
        let mut ahead: Option<Ahead> = None;
        // What the last committed batch still owes the transport (paid during the next
        // commit, or before waiting for new entries, or on the way out).
        let mut owed = Settlement::default();
        loop {
            let read = if let Some(next) = ahead.take() {
                Ok(next)
            } else if cancel.is_cancelled() {
                // what the source already holds is finished too, then nothing more is read
                let buffered = self.source.take_buffered(self.config.batch_size);
                if buffered.is_empty() {
                    break;
                }
                Ok(Ahead::unqueued(prepare(
                    buffered,
                    self.config.max_payload_bytes,
                )))
            } else {
                // nothing to overlap it with: settle before (perhaps long) waiting
                self.settle(std::mem::take(&mut owed)).await;
                let read = tokio::select! {
                    biased;
                    () = cancel.cancelled() => continue,
                    read = self.source.read_batch(self.config.batch_size) => read,
                };
                read.map(|entries| Ahead::unqueued(prepare(entries, self.config.max_payload_bytes)))
            };
            let batch = match read {
                Ok(batch) => batch,
                Err(e) => {
                    self.status
                        .connected
                        .store(self.source.is_connected(), Ordering::Relaxed);
                    let delay = backoff.next_delay();
                    tracing::warn!(error = %error_chain(&e), retry_in = ?delay, "reading the stream failed");
                    sleep_or_cancel(delay, &cancel).await;
                    continue;
                }
            };
            self.status
                .connected
                .store(self.source.is_connected(), Ordering::Relaxed);
            backoff.reset();
            if !batch.prepared.is_empty() {
                let read_ahead = !cancel.is_cancelled();
                let previous = std::mem::take(&mut owed);
                let Some((report, next, settlement)) =
                    self.run_batch(batch, &cancel, read_ahead, previous).await
                else {
                    break;
                };
                ahead = next;
                owed = settlement;
                tracing::debug!(?report, "batch committed");
            }
            if Instant::now() >= next_lag {
                next_lag = Instant::now() + self.config.lag_interval;
                if let Ok(Some(lag)) = self.source.lag().await {
                    metrics::gauge!(m::CONSUMER_LAG).set(lag as f64);
                    self.status
                        .lag
                        .store(i64::try_from(lag).unwrap_or(i64::MAX), Ordering::Relaxed);
                }
            }
        }
        self.settle(owed).await;
        self.source.flush_acks().await;
        self.status.running.store(false, Ordering::Relaxed);
        tracing::info!(source = %self.source.describe(), "processor stopped");
        Ok(())
    }

    /// Process one batch to the end: commit (retrying transient storage errors until it
    /// succeeds or `cancel` fires), publish dead letters, ack, schedule retries, push.
    /// `None` if cancelled before the commit (the entries stay unacked and are delivered
    /// again later).
    pub async fn process_batch(
        &mut self,
        entries: Vec<SourceEntry>,
        cancel: &CancellationToken,
    ) -> Option<BatchReport> {
        let batch = Ahead::unqueued(prepare(entries, self.config.max_payload_bytes));
        let (report, _, settlement) = self
            .run_batch(batch, cancel, false, Settlement::default())
            .await?;
        self.settle(settlement).await;
        self.source.flush_acks().await;
        Some(report)
    }

    /// Publishes a committed batch's dead letters on the transport, then acknowledges its
    /// entries. Failures are logged, not retried: the letters are kept in storage, and
    /// unacknowledged entries are skipped as processed when delivered again.
    async fn settle(&mut self, owed: Settlement) {
        if !owed.letters.is_empty()
            && let Err(e) = self.source.publish_dead_letters(&owed.letters).await
        {
            tracing::warn!(error = %error_chain(&e), "publishing dead letters on the transport failed (kept in storage)");
        }
        if !owed.acks.is_empty()
            && let Err(e) = self.source.ack(&owed.acks).await
        {
            tracing::warn!(error = %error_chain(&e), count = owed.acks.len(), "acking a committed batch failed");
        }
        // after the round trips, so that they are not delayed by it (`Settlement::_spent`)
        drop(owed);
    }

    /// [`Processor::process_batch`] without its settlement: while this batch commits, it
    /// settles the `previous` batch and optionally reads the next entries
    /// ([`Source::read_ahead`]) — on two cores the transport round trips and decoding then
    /// overlap the SQLite work instead of following it — and queues their transaction
    /// behind this one. Returns the report, the batch read ahead (decoded, its commit
    /// queued, its outcome not yet looked at) and what this batch owes the transport.
    async fn run_batch(
        &mut self,
        batch: Ahead,
        cancel: &CancellationToken,
        read_ahead: bool,
        previous: Settlement,
    ) -> Option<(BatchReport, Option<Ahead>, Settlement)> {
        let started = Instant::now();
        let Ahead { prepared, queued } = batch;
        let mut backoff = Backoff::new(self.config.reconnect_base, self.config.reconnect_max);
        let first = queued.unwrap_or_else(|| self.commit(Arc::clone(&prepared), None));
        let first_committed = Arc::clone(&first.committed);
        let batch_size = self.config.batch_size;
        let max_payload_bytes = self.config.max_payload_bytes;
        let transport = async {
            self.settle(previous).await;
            if !read_ahead {
                return None;
            }
            let ahead = self.source.read_ahead(batch_size).await;
            let ahead = ahead
                .unwrap_or_else(|e| {
                    // the ordinary read after this batch retries (and backs off) as usual
                    tracing::debug!(error = %error_chain(&e), "reading ahead failed");
                    None
                })
                .unwrap_or_default();
            // Decoded here, while the writer thread runs this batch's transaction, and
            // queued right away: the writer goes from this batch straight on to the next
            // instead of waiting until this task has been woken, scheduled and has looked
            // at the outcomes (the writer is the e2e benchmark's bottleneck; on two shared
            // cores it sat idle for a sixth of the emission, partly in that hand-over). It
            // commits only after this batch did (`BatchWriter::after`).
            let ahead = prepare(ahead, max_payload_bytes);
            if ahead.is_empty() {
                return None;
            }
            let prepared = Arc::new(ahead);
            let queued = self
                .source
                .queue_read_ahead()
                .then(|| self.commit(Arc::clone(&prepared), Some(first_committed)));
            Some(Ahead { prepared, queued })
        };
        let (mut committed, ahead) = tokio::join!(first.outcome, transport);
        let outcomes = loop {
            match committed {
                Ok(BatchCommit::Committed(outcomes)) => break outcomes,
                // Queued behind a batch that had not committed when its turn came (that
                // batch failed or ran again with savepoints); it has committed since — its
                // `run_batch` returned — so this one runs now, in order.
                Ok(BatchCommit::NotRun) => {
                    committed = self.commit(Arc::clone(&prepared), None).outcome.await;
                }
                Err(e) => {
                    let delay = backoff.next_delay();
                    tracing::warn!(error = %error_chain(&e), retry_in = ?delay, "committing a batch failed");
                    if cancel.is_cancelled() {
                        // `ahead` stays unacked: delivered again after a restart
                        return None;
                    }
                    sleep_or_cancel(delay, cancel).await;
                    committed = self.commit(Arc::clone(&prepared), None).outcome.await;
                }
            }
        };

        let mut report = BatchReport {
            read: prepared.len(),
            ..BatchReport::default()
        };
        let mut settled = Vec::with_capacity(prepared.len());
        let mut retry = Vec::new();
        let mut min_retry_delay: Option<Duration> = None;
        let mut letters = Vec::new();
        let mut logged = Vec::new();
        for (p, outcome) in prepared.iter().zip(outcomes) {
            let id = p.entry.entry_id.clone();
            match outcome {
                Outcome::Logged { ref pushes, .. } => {
                    report.logged += 1;
                    report.pushes += pushes.len();
                    logged.push(outcome);
                    settled.push(id);
                }
                Outcome::Dropped { duplicate } => {
                    report.dropped += 1;
                    report.duplicates += usize::from(duplicate);
                    settled.push(id);
                }
                Outcome::Skipped => {
                    report.skipped += 1;
                    settled.push(id);
                }
                Outcome::DeadLettered(letter) => {
                    tracing::warn!(entry_id = %letter.entry_id, reason = %letter.reason, deliveries = letter.delivery_count, "entry dead-lettered");
                    report.dead_lettered += 1;
                    letters.push(letter);
                    settled.push(id);
                }
                Outcome::Retry(reason) => {
                    let delay = self.retry_delay(p.entry.delivery_count);
                    tracing::warn!(entry_id = %id, %reason, deliveries = p.entry.delivery_count, retry_in = ?delay, "entry failed, will retry");
                    min_retry_delay = Some(min_retry_delay.map_or(delay, |d| d.min(delay)));
                    report.retried += 1;
                    retry.push(id);
                }
            }
        }
        if let Some(delay) = min_retry_delay {
            self.source.retry_later(&retry, delay);
        }

        metrics::counter!(m::PROCESSED).increment(report.logged as u64);
        metrics::counter!(m::DROPPED_DUPLICATE).increment(report.duplicates as u64);
        metrics::counter!(m::PROJECTED).increment(report.pushes as u64);
        metrics::counter!(m::DEAD_LETTERED).increment(report.dead_lettered as u64);
        metrics::histogram!(m::BATCH_SECONDS).record(started.elapsed().as_secs_f64());
        let now_ms = i64::try_from(OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000)
            .unwrap_or(i64::MAX);
        self.status.last_batch_ms.store(now_ms, Ordering::Relaxed);

        let settlement = Settlement {
            letters,
            acks: settled,
            _spent: Some((prepared, logged)),
        };
        Some((report, ahead, settlement))
    }

    fn retry_delay(&self, delivery_count: u64) -> Duration {
        let exp = u32::try_from(delivery_count.saturating_sub(1))
            .unwrap_or(u32::MAX)
            .min(20);
        self.config
            .retry_base
            .saturating_mul(1u32 << exp)
            .min(self.config.retry_max)
    }

    /// Queues the batch transaction on the writer now and returns its pending outcome,
    /// which holds no borrow of `self` (so a `Processor` is `Send` whenever its source is,
    /// without the source being `Sync`). With `after`, the transaction commits only if the
    /// batch that flag belongs to committed before its turn came; otherwise it leaves
    /// everything untouched and reports [`BatchCommit::NotRun`].
    ///
    /// Optimistic first: the batch runs without a savepoint per entry, because a savepoint
    /// makes SQLite copy every page an entry touches into the statement journal (a large
    /// part of the writer's time in the benchmark profile). Nearly every entry succeeds; when
    /// one needs its own writes undone (it failed, or turned out to be a duplicate event id
    /// after projecting), that attempt is rolled back whole and the batch runs again with a
    /// savepoint per entry, which gives exactly the per-entry outcomes of the careful path.
    fn commit(&self, prepared: Arc<Vec<Prepared>>, after: Option<Arc<AtomicBool>>) -> QueuedCommit {
        let batch = Arc::new(BatchWriter {
            handle: tokio::runtime::Handle::current(),
            catalog: Arc::clone(&self.catalog),
            pipeline: self.pipeline.clone(),
            checkpoint: self.source.checkpoint(),
            max_deliveries: self.config.max_deliveries,
            max_payload_bytes: self.config.max_payload_bytes,
            read_rows: self.sinks.iter().any(|sink| sink.wants_notification_rows()),
            after,
            prepared,
        });
        let committed = Arc::new(AtomicBool::new(false));
        // Pushed on the writer's thread as soon as the commit is durable: waiting for this
        // future would add the thread hand-back and the batch's transport round trips
        // (`run_batch` joins them) to every client's latency.
        let after_commit = {
            let (sinks, committed) = (Arc::clone(&self.sinks), Arc::clone(&committed));
            move |outcomes: &Vec<Outcome>| {
                committed.store(true, Ordering::Release);
                push_all(&sinks, outcomes);
            }
        };
        let db = self.db.clone();
        let optimistic = Arc::clone(&batch);
        let first = db.queue_then(
            move |tx| optimistic.write(tx, Isolation::Batch),
            after_commit.clone(),
        );
        let outcome = async move {
            match first.await {
                Ok(outcomes) => Ok(BatchCommit::Committed(outcomes)),
                Err(Attempt::NotRun) => Ok(BatchCommit::NotRun),
                Err(Attempt::Failed(e)) => Err(e),
                Err(Attempt::NeedsEntrySavepoints) => {
                    metrics::counter!(m::CAREFUL_BATCHES).increment(1);
                    db.write_then(move |tx| batch.write(tx, Isolation::PerEntry), after_commit)
                        .await
                        .map(BatchCommit::Committed)
                        .map_err(Attempt::into_error)
                }
            }
        };
        QueuedCommit {
            committed,
            outcome: Box::pin(outcome),
        }
    }
}

/// Entries decoded and ready to commit, perhaps with their transaction already queued.
struct Ahead {
    prepared: Arc<Vec<Prepared>>,
    /// Queued behind the batch before, while that one committed ([`Processor::run_batch`]).
    queued: Option<QueuedCommit>,
}

impl Ahead {
    fn unqueued(prepared: Vec<Prepared>) -> Self {
        Self {
            prepared: Arc::new(prepared),
            queued: None,
        }
    }
}

/// A batch transaction in the writer's queue ([`Processor::commit`]).
struct QueuedCommit {
    /// Set on the writer's thread when the batch commits (either attempt), before the next
    /// transaction in the queue begins.
    committed: Arc<AtomicBool>,
    outcome: Pin<Box<dyn Future<Output = Result<BatchCommit>> + Send>>,
}

/// What became of a queued batch transaction.
enum BatchCommit {
    Committed(Vec<Outcome>),
    /// It was queued behind a batch that had not committed when its turn came, and left
    /// everything as it was: run it again once that batch has committed.
    NotRun,
}

/// Whether an entry's claim ([`WriteTx::mark_processed`]) is already made when it runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Claim {
    /// [`Isolation::Batch`]: claimed with its batch; `false` = processed before (skip it).
    Made(bool),
    /// [`Isolation::PerEntry`]: the entry claims itself under its savepoint.
    UnderSavepoint,
}

/// How the writes of one entry are isolated from the rest of its batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Isolation {
    /// No savepoints: an entry that needs its writes undone aborts the attempt.
    Batch,
    /// A savepoint per entry: a failing entry rolls back alone.
    PerEntry,
}

/// Why a batch attempt did not commit.
enum Attempt {
    /// An entry needs its own writes rolled back: run again with [`Isolation::PerEntry`].
    NeedsEntrySavepoints,
    /// The batch it was queued behind had not committed (see [`BatchWriter::after`]).
    NotRun,
    /// Storage failed (retried by the caller with backoff).
    Failed(Error),
}

impl Attempt {
    fn into_error(self) -> Error {
        match self {
            Self::Failed(e) => e,
            // `PerEntry` never asks for savepoints it already has.
            Self::NeedsEntrySavepoints => {
                Error::Aborted("internal: per-entry pass asked for savepoints".into())
            }
            // only the first attempt is queued behind another batch
            Self::NotRun => Error::Aborted("internal: per-entry pass was not run".into()),
        }
    }
}

impl From<StorageError> for Attempt {
    fn from(e: StorageError) -> Self {
        Self::Failed(e.into())
    }
}

impl From<Error> for Attempt {
    fn from(e: Error) -> Self {
        Self::Failed(e)
    }
}

/// Everything one batch transaction needs, shared by its optimistic and careful attempts.
struct BatchWriter {
    handle: tokio::runtime::Handle,
    catalog: Arc<EventCatalog>,
    pipeline: Pipeline,
    checkpoint: Checkpoint,
    max_deliveries: u64,
    /// For decoding an entry again when a previous attempt took its envelope.
    max_payload_bytes: usize,
    /// Read the committed rows of changed notifications for the sinks.
    read_rows: bool,
    /// Set when the batch this one was queued behind has committed: the order of batches is
    /// the order of the stream (an update must find the notification its create made), so
    /// this one touches nothing unless that one committed first.
    after: Option<Arc<AtomicBool>>,
    prepared: Arc<Vec<Prepared>>,
}

impl BatchWriter {
    fn write(
        &self,
        tx: &mut WriteTx<'_>,
        isolation: Isolation,
    ) -> std::result::Result<Vec<Outcome>, Attempt> {
        if let Some(after) = &self.after
            && !after.load(Ordering::Acquire)
        {
            return Err(Attempt::NotRun);
        }
        let mut outcomes = Vec::with_capacity(self.prepared.len());
        let mut settled_seqs = HashSet::new();
        // The optimistic attempt claims the whole batch up front, in a few multi-row
        // statements; it is all or nothing, so a claim never outlives its entry's writes. The
        // careful one claims each entry under the entry's own savepoint.
        let claims: Vec<Claim> = match isolation {
            Isolation::Batch => {
                let entry_ids: Vec<&str> = self
                    .prepared
                    .iter()
                    .map(|p| p.entry.entry_id.as_str())
                    .collect();
                let claimed = tx.mark_processed_all(self.checkpoint.stream(), &entry_ids)?;
                if claimed.len() != entry_ids.len() {
                    return Err(Attempt::Failed(Error::Aborted(format!(
                        "internal: {} claims answered for {} entries",
                        claimed.len(),
                        entry_ids.len()
                    ))));
                }
                claimed.into_iter().map(Claim::Made).collect()
            }
            Isolation::PerEntry => vec![Claim::UnderSavepoint; self.prepared.len()],
        };
        for (p, claim) in self.prepared.iter().zip(claims) {
            let outcome = process_entry(tx, self, p, claim)?;
            if let (false, Some(seq)) = (
                matches!(outcome, Outcome::Retry(_)),
                entry_seq(&p.entry.entry_id),
            ) {
                settled_seqs.insert(seq);
            }
            outcomes.push(outcome);
        }
        let offset = self
            .checkpoint
            .safe_offset(|seq| settled_seqs.contains(&seq));
        if let (Checkpoint::Offset { stream, group, .. }, Some(offset @ 1..)) =
            (&self.checkpoint, offset)
        {
            tx.set_consumer_offset(stream, group, &format!("{offset}-0"))?;
        }
        if self.read_rows {
            attach_rows(tx, &mut outcomes)?;
        }
        Ok(outcomes)
    }
}

/// Gives every push of the batch the row of its notification as the batch leaves it: read
/// once per notification after all entries ran, so several changes to one row in a batch
/// all carry its final state (what a read after the commit would see, as the writer is the
/// only one).
fn attach_rows(
    tx: &WriteTx<'_>,
    outcomes: &mut [Outcome],
) -> std::result::Result<(), StorageError> {
    let mut rows: HashMap<i64, Option<CommittedRow>> = HashMap::new();
    for outcome in outcomes.iter_mut() {
        let Outcome::Logged { pushes, .. } = outcome else {
            continue;
        };
        for push in pushes {
            let id = push.push.notification_id;
            let row = match rows.get(&id) {
                Some(row) => row.clone(),
                None => {
                    let row = tx.get_notification(id)?.map(|n| CommittedRow {
                        notification: Arc::new(n),
                        commit: tx.commit_number(),
                    });
                    rows.insert(id, row.clone());
                    row
                }
            };
            push.row = row;
        }
    }
    Ok(())
}

/// One entry inside the batch transaction. Under [`Claim::UnderSavepoint`] it runs under its
/// own savepoint so that a failure rolls back only this entry's writes; under
/// [`Claim::Made`] (the optimistic attempt) such an entry aborts the attempt instead.
/// Storage errors abort the whole batch (they are outside any single entry's control).
///
/// The entry is claimed before it runs ([`WriteTx::mark_processed`], or with its batch): the
/// insert that records it as processed is also the check that it was not processed before —
/// no lookup now and insert at the end. A claim is undone with the entry's writes (the
/// batch's rollback, or its savepoint's), so an entry that is retried stays unprocessed.
fn process_entry(
    tx: &mut WriteTx<'_>,
    batch: &BatchWriter,
    p: &Prepared,
    claim: Claim,
) -> std::result::Result<Outcome, Attempt> {
    let stream = batch.checkpoint.stream();
    let entry = &p.entry;
    // Callers claim the entry first: a dead letter settles it.
    let dead_letter = |tx: &mut WriteTx<'_>, reason: String| -> Result<Outcome> {
        tx.insert_dead_letter(&NewDeadLetter {
            stream: stream.to_owned(),
            entry_id: entry.entry_id.clone(),
            fields: entry.fields.to_pairs(),
            reason: reason.clone(),
            delivery_count: u32::try_from(entry.delivery_count).unwrap_or(u32::MAX),
        })?;
        Ok(Outcome::DeadLettered(DeadLetterRecord {
            entry_id: entry.entry_id.clone(),
            reason,
            delivery_count: entry.delivery_count,
            fields: entry.fields.to_pairs(),
        }))
    };
    let event = match p.take_decoded(batch.max_payload_bytes) {
        Ok(event) => event,
        Err(reason) => {
            let claimed = match claim {
                Claim::Made(claimed) => claimed,
                Claim::UnderSavepoint => tx.mark_processed(stream, &entry.entry_id)?,
            };
            if !claimed {
                return Ok(Outcome::Skipped);
            }
            return Ok(dead_letter(tx, reason)?);
        }
    };

    if let Claim::Made(claimed) = claim {
        if !claimed {
            return Ok(Outcome::Skipped);
        }
        return match run_entry(tx, batch, entry, event) {
            EntryResult::Done(outcome) => Ok(outcome),
            EntryResult::DuplicateId | EntryResult::Failed { .. } => {
                Err(Attempt::NeedsEntrySavepoints)
            }
        };
    }
    // Cached statements: parsing these three per event showed up in the profile.
    savepoint(tx, "SAVEPOINT entry")?;
    if !tx.mark_processed(stream, &entry.entry_id)? {
        savepoint(tx, "RELEASE entry")?;
        return Ok(Outcome::Skipped);
    }
    let result = run_entry(tx, batch, entry, event);
    if let EntryResult::Done(outcome) = result {
        savepoint(tx, "RELEASE entry")?;
        return Ok(outcome);
    }
    // undoes the claim too
    savepoint(tx, "ROLLBACK TO entry")?;
    savepoint(tx, "RELEASE entry")?;
    match result {
        EntryResult::Done(_) => Ok(unreachable_outcome()?),
        EntryResult::DuplicateId => {
            // the same event id (or idempotency key) is already logged: a duplicate emit.
            // Its projection was rolled back with the savepoint; only the claim stays.
            tx.mark_processed(stream, &entry.entry_id)?;
            Ok(Outcome::Dropped { duplicate: true })
        }
        EntryResult::Failed { reason, retryable } => {
            if retryable && entry.delivery_count < batch.max_deliveries {
                Ok(Outcome::Retry(reason))
            } else {
                tx.mark_processed(stream, &entry.entry_id)?;
                Ok(dead_letter(tx, reason)?)
            }
        }
    }
}

fn unreachable_outcome() -> Result<Outcome> {
    Err(Error::Aborted(
        "internal: finished entry rolled back".into(),
    ))
}

enum EntryResult {
    Done(Outcome),
    DuplicateId,
    Failed { reason: String, retryable: bool },
}

/// Pipeline and event log of one decoded, claimed entry. The caller releases the
/// savepoint on `Done` and rolls it back otherwise.
fn run_entry(
    tx: &mut WriteTx<'_>,
    batch: &BatchWriter,
    entry: &SourceEntry,
    event: EventEnvelope,
) -> EntryResult {
    let (handle, catalog, pipeline) = (&batch.handle, &*batch.catalog, &batch.pipeline);
    let storage = |e: StorageError| EntryResult::Failed {
        reason: format!("storage error: {}", error_chain(&e)),
        retryable: true,
    };
    let mut ctx = PipelineContext::new(catalog, tx);
    let executed = catch_unwind(AssertUnwindSafe(|| {
        run_to_completion(handle, pipeline.execute(event, &mut ctx))
    }));
    let result = match executed {
        Ok(result) => result,
        Err(panic) => {
            return EntryResult::Failed {
                reason: format!("cartridge panicked: {}", panic_message(&panic)),
                retryable: true,
            };
        }
    };
    let dropped_by = ctx.dropped_by().map(str::to_owned);
    let pushes = std::mem::take(&mut ctx.pushes)
        .into_iter()
        .map(|push| CommittedPush { push, row: None })
        .collect();
    drop(ctx);
    match result {
        Ok(Some(event)) => match tx.append_event(&event, Some(&entry.entry_id)) {
            Ok(Some(seq)) => EntryResult::Done(Outcome::Logged {
                seq,
                event: Box::new(event),
                pushes,
            }),
            Ok(None) => EntryResult::DuplicateId,
            Err(e) => storage(e),
        },
        Ok(None) => EntryResult::Done(Outcome::Dropped {
            duplicate: dropped_by.as_deref() == Some(DedupCartridge::NAME),
        }),
        Err(e) => EntryResult::Failed {
            reason: error_chain(&e),
            retryable: e.is_retryable(),
        },
    }
}

/// Runs `future` on this (blocking) thread. The built-in cartridges never wait, so the
/// pipeline is nearly always ready on its first poll: that poll needs no runtime parking
/// machinery, which `Handle::block_on` sets up for every entry (a few hundred instructions
/// and moves of the future each time). A future that does wait is driven to the end by
/// `block_on`, which polls it again with a real waker.
fn run_to_completion<F: Future>(handle: &tokio::runtime::Handle, future: F) -> F::Output {
    let mut future = std::pin::pin!(future);
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    match future.as_mut().poll(&mut cx) {
        std::task::Poll::Ready(output) => output,
        std::task::Poll::Pending => handle.block_on(future),
    }
}

/// Hands a committed batch's logged events and notification changes to every sink, in
/// entry order.
fn push_all(sinks: &[Arc<dyn PushSink>], outcomes: &[Outcome]) {
    for outcome in outcomes {
        let Outcome::Logged { seq, event, pushes } = outcome else {
            continue;
        };
        for sink in sinks {
            call_sink(|| sink.event(*seq, event));
            for push in pushes {
                match &push.row {
                    Some(row) => call_sink(|| sink.notification_with_row(&push.push, row)),
                    None => call_sink(|| sink.notification(&push.push)),
                }
            }
        }
    }
}

fn panic_message(panic: &Box<dyn std::any::Any + Send>) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "non-string panic payload".into())
}

fn call_sink(f: impl FnOnce()) {
    if let Err(panic) = catch_unwind(AssertUnwindSafe(f)) {
        tracing::error!(panic = %panic_message(&panic), "push sink panicked (ignored)");
    }
}

fn entry_seq(id: &str) -> Option<u64> {
    id.split_once('-').map_or(id, |(n, _)| n).parse().ok()
}

async fn sleep_or_cancel(delay: Duration, cancel: &CancellationToken) {
    tokio::select! {
        () = tokio::time::sleep(delay) => {}
        () = cancel.cancelled() => {}
    }
}

/// `error: cause: cause` on one line, for logs and dead-letter reasons.
pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

/// Runs one savepoint statement through the connection's prepared-statement cache.
fn savepoint(tx: &WriteTx<'_>, sql: &str) -> Result<(), StorageError> {
    tx.connection().prepare_cached(sql)?.execute([])?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_future_that_waits_is_driven_to_the_end_on_the_blocking_thread() {
        let handle = tokio::runtime::Handle::current();
        let (ready, waited) = tokio::task::spawn_blocking(move || {
            let ready = run_to_completion(&handle, async { 7 });
            let waited = run_to_completion(&handle, async {
                // Pending on the first poll (a timer of the runtime), ready after it fires.
                tokio::time::sleep(Duration::from_millis(5)).await;
                tokio::task::yield_now().await;
                11
            });
            (ready, waited)
        })
        .await
        .expect("blocking task");
        assert_eq!((ready, waited), (7, 11));
    }
}
