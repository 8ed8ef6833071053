//! [`EventDb`]: one writer connection, a pool of readers, and the transaction types.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use deadpool::managed::{Metrics, RecycleError, RecycleResult};
use deadpool_sqlite::Runtime;
use deadpool_sync::SyncWrapper;
use events_envelope::EventEnvelope;
use rusqlite::{Connection, OpenFlags, OptionalExtension, TransactionBehavior};
use serde_json::{Map, Value};
use time::OffsetDateTime;
use tokio::sync::watch;

use crate::dead_letters::{self, DeadLetter, NewDeadLetter};
use crate::embedded::{self, EmbeddedEntry, EncodedFields};
use crate::events::{self, EventQuery, StoredEvent};
use crate::migrations;
use crate::notifications::{
    self, AgentStatus, CountCache, NewNotification, Notification, NotificationFilter,
    NotificationPage, OpenInGroup, Transition,
};
use crate::statements::TxStatements;
use crate::{Result, StorageError, timefmt};

/// How long a connection waits for a lock before SQLite reports `database is locked`.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);
/// Read connections: enough for the API and SSE on a 2-core machine; WAL lets them all read
/// while the writer writes.
const READ_POOL_SIZE: usize = 4;
/// Statements cached per connection (`prepare_cached`); list queries vary with their filters.
const STATEMENT_CACHE: usize = 128;
/// Address space a read connection maps of the database file. A reader then takes pages of
/// the main file straight from the mapping instead of through SQLite's page cache, whose
/// lookups share one mutex with every other connection of the process (under API load
/// `pcache1Fetch` and the wake-ups on that mutex were a fifth of the daemon's time). Pages
/// still in the WAL are read as before. Address space only: nothing is allocated.
///
/// The writer does not map the file: tried in session 5 (its group lookups `pread` pages
/// its 8 MiB cache lacks), e2e and embedded throughput were the same within noise, and
/// the mapped pages it touched counted in the daemon's RSS (e2e peak 99 → 805 MiB).
const READ_MMAP_BYTES: i64 = 1 << 30;

/// Handle to the daemon's database. Cheap to clone (an `Arc` inside).
///
/// All writes go through [`EventDb::write`] to a single connection owned by one writer
/// thread, so writers queue in-process instead of fighting for SQLite's lock (no `database
/// is locked` under load); reads use a pool of read-only connections and never wait for the
/// writer (WAL).
#[derive(Debug, Clone)]
pub struct EventDb {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    path: PathBuf,
    epoch: String,
    /// The writer thread's queue; `None` once `Drop` has closed it.
    writer: Option<std::sync::mpsc::Sender<WriteJob>>,
    /// The writer thread, joined when the last handle drops (the connection closes with it).
    writer_thread: Option<std::thread::JoinHandle<()>>,
    readers: deadpool::managed::Pool<ReadConnections>,
    commits: Arc<watch::Sender<u64>>,
    /// Checkpoints the background checkpointer has run.
    checkpoints: Arc<AtomicU64>,
    /// Keeps the directory of [`EventDb::open_in_memory`] alive as long as the handle.
    _tempdir: Option<tempfile::TempDir>,
}

fn open_error(path: &Path) -> impl Fn(rusqlite::Error) -> StorageError + '_ {
    move |source| StorageError::Open {
        path: path.to_owned(),
        source,
    }
}

fn configure_common(conn: &Connection) -> rusqlite::Result<()> {
    conn.busy_timeout(BUSY_TIMEOUT)?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
    Ok(())
}

fn open_writer(path: &Path) -> Result<(Connection, String)> {
    let err = open_error(path);
    // The only connection that writes the WAL goes through `events_wal_vfs`, which writes a
    // commit's frames in a few large writes instead of two per page (that crate says why
    // it is safe). Readers and the checkpointer only read the WAL: the default VFS.
    let vfs = events_wal_vfs::register().map_err(&err)?;
    let mut conn =
        Connection::open_with_flags_and_vfs(path, OpenFlags::default(), vfs).map_err(&err)?;
    configure_common(&conn).map_err(&err)?;
    let mode: String = conn
        .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
        .map_err(&err)?;
    if !mode.eq_ignore_ascii_case("wal") {
        tracing::warn!(path = %path.display(), mode, "sqlite refused WAL mode; readers will wait for the writer");
    }
    // NORMAL in WAL mode: a commit survives a process crash; only a power loss may lose the
    // last transactions, never corrupt the file.
    conn.pragma_update(None, "synchronous", "NORMAL")
        .map_err(&err)?;
    // The processor runs every entry of a batch under its own SAVEPOINT; SQLite keeps the
    // statement journal of a savepoint in a temp file unless told otherwise, which the
    // benchmark profile showed as the largest single cost of the writer (a file write per
    // event). Memory is plenty: one batch's journal is small.
    conn.pragma_update(None, "temp_store", "MEMORY")
        .map_err(&err)?;
    // 8 MiB of page cache keeps the hot index pages between batches. Not more: every commit
    // scans the cache's hash table (`pcache1Truncate`, sized by the pages cached), which at
    // 64 MiB was 3.5 % of the daemon at 5,000 events/s in small batches; e2e throughput was
    // the same with either size (docs/benchmarks.md, session 4).
    conn.pragma_update(None, "cache_size", -WRITER_CACHE_KIB)
        .map_err(&err)?;
    // Checkpoints run on a background thread (see `spawn_checkpointer`), so the writer does
    // not copy pages back and fsync inside its commits. This threshold (~200 MiB of WAL) is
    // only a backstop for when that thread cannot keep up. The WAL file keeps its blocks
    // up to `WAL_KEPT_BYTES` (why: see there).
    conn.pragma_update(None, "wal_autocheckpoint", WRITER_BACKSTOP_CHECKPOINT_PAGES)
        .map_err(&err)?;
    conn.pragma_update(None, "journal_size_limit", WAL_KEPT_BYTES)
        .map_err(&err)?;
    migrations::migrate(&mut conn, path)?;
    let candidate = uuid::Uuid::now_v7().to_string();
    conn.execute(
        "INSERT INTO meta (key, value) VALUES ('epoch', ?1) ON CONFLICT (key) DO NOTHING",
        [&candidate],
    )
    .map_err(&err)?;
    let epoch: String = conn
        .query_row("SELECT value FROM meta WHERE key = 'epoch'", [], |r| {
            r.get(0)
        })
        .map_err(&err)?;
    Ok((conn, epoch))
}

/// Pages of WAL after which the writer checkpoints by itself (if the background
/// checkpointer has fallen that far behind).
const WRITER_BACKSTOP_CHECKPOINT_PAGES: i64 = 50_000;
/// Size up to which the WAL file keeps its blocks after a restart (`journal_size_limit`):
/// above the backstop's ~200 MiB, so a steady load never shrinks it.
///
/// Under a steady write load the background checkpointer rarely finds the WAL fully copied
/// at the start of a write (frames arrive while it copies), so the WAL grows for a while and
/// then restarts from the beginning. With a 64 MiB limit every restart truncated a file of
/// 100–150 MiB inside the committing transaction (a truncate, freeing and discarding blocks)
/// and the WAL then had to allocate them again while growing: those commits took 50–130 ms,
/// and they were the latency benchmark's tail (p99 ~200 ms at 5,000 events/s, 30 ms
/// without the truncation). Reusing the file's blocks costs disk space, not time.
const WAL_KEPT_BYTES: i64 = 256 * 1024 * 1024;
/// The writer connection's page cache in KiB (why this size: see `open_writer`).
const WRITER_CACHE_KIB: i64 = 8 * 1024;

/// How long the checkpointer waits after a commit woke it, so that the commits of those
/// milliseconds share one checkpoint.
///
/// A checkpoint copies the newest version of every page the WAL gained since the last one
/// and then `fsync`s the WAL and the database file. Run straight after every commit
/// (sessions 17–24), its burst of work — mostly kernel time: page copies, writeback — came
/// exactly when the commit's pushes and the next read wanted the two cores, and at 5,000
/// events/s in small batches it meant hundreds of `fsync` pairs a second. Measured with 5 ms
/// against none (docs/benchmarks.md, session 25; same host, alternating): latency at 5,000
/// events/s p50 0.770–0.779 against 0.909–0.922 ms, p99 1.45–1.51 against 1.59–1.67 ms; e2e
/// the same (47.9k / 48.3k against 48.9k / 48.2k events/s, the same daemon CPU) with the
/// largest WAL 330–373 against 680–742 MB. Longer waits copy a page rewritten by several
/// batches back fewer times (20 ms: the checkpointer's kernel time −20 %, 100 ms: −50 %) but
/// make each checkpoint a longer burst, and the tail grew: p99 1.9–2.3 ms at 20 ms, 2.5 ms
/// at 50 ms (17–25 ms at 40 ms in session 17, before the checkpointer was batch work and the
/// WAL was written in large writes), without a faster e2e.
pub const CHECKPOINT_DELAY: Duration = Duration::from_millis(5);

/// Starts the thread that checkpoints the WAL in the background (`PRAGMA
/// wal_checkpoint(PASSIVE)` on its own connection), woken after commits through the
/// returned sender and stopped when it is dropped; it counts its checkpoints in
/// `checkpoints`.
///
/// Woken, it waits [`CHECKPOINT_DELAY`] and then checkpoints everything committed so far;
/// commits made while it works wake it again (the channel holds one wake-up). Checkpoints
/// that keep up also let the writer restart the WAL from its beginning, so the WAL stays
/// far below the writer's own backstop threshold.
///
/// The benchmark profile showed SQLite's automatic checkpoints (page copies plus an
/// fsync, run inside whichever commit crossed the threshold) as ~14 % of the writer's time;
/// here they overlap the writer instead of delaying it. PASSIVE never blocks the writer or
/// readers: it copies what no reader still needs, and the writer restarts the WAL from the
/// beginning once everything has been copied.
fn spawn_checkpointer(
    path: &Path,
    checkpoints: Arc<AtomicU64>,
) -> Result<std::sync::mpsc::SyncSender<()>> {
    let err = open_error(path);
    let conn = Connection::open(path).map_err(&err)?;
    configure_common(&conn).map_err(&err)?;
    let (kick, woken) = std::sync::mpsc::sync_channel::<()>(1);
    let file = path.display().to_string();
    std::thread::Builder::new()
        .name("events-checkpoint".into())
        .spawn(move || {
            // Woken after every commit, it must not run ahead of what that commit made
            // possible (pushes, the next read): see events-sched.
            if let Err(error) = events_sched::mark_current_thread_as_batch() {
                tracing::debug!(%error, "the checkpointer keeps the default scheduling policy");
            }
            while woken.recv().is_ok() {
                std::thread::sleep(CHECKPOINT_DELAY);
                // The wake-ups of the commits made meanwhile: this checkpoint covers them.
                let _ = woken.try_recv();
                if let Err(error) =
                    conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()))
                {
                    tracing::debug!(path = %file, %error, "background checkpoint failed; the next commit retries");
                }
                checkpoints.fetch_add(1, Ordering::Relaxed);
            }
        })
        .map_err(|source| StorageError::Io {
            path: path.to_owned(),
            source,
        })?;
    Ok(kick)
}

/// Creates the pooled read connections and checks them back in.
///
/// deadpool-sqlite's own manager checks every connection on checkout by running
/// `SELECT $1` (prepared afresh) through a second blocking hand-off, so each read paid two
/// thread hops; in the API benchmark's profile that was the largest cost left. Here a
/// checkout only checks that no reader panicked while holding the connection (a poisoned
/// mutex): a read always ends its transaction (`OpenRead`), so a returned connection is
/// otherwise as good as new, and a broken file shows up as an error of the next read.
#[derive(Debug)]
struct ReadConnections {
    path: PathBuf,
}

/// A pooled read-only connection and what it remembers between reads.
#[derive(Debug)]
struct ReadConnection {
    conn: Connection,
    counts: CountCache,
}

impl ReadConnection {
    /// Runs `f` in one read transaction (one consistent snapshot).
    fn read<T>(&self, f: impl FnOnce(&Reader<'_>) -> Result<T>) -> Result<T> {
        // BEGIN/COMMIT through the statement cache: `Connection::transaction` parses
        // both for every read, which showed under API load.
        self.conn.prepare_cached("BEGIN")?.execute([])?;
        let open = OpenRead(&self.conn);
        let out = f(&Reader {
            conn: open.0,
            counts: &self.counts,
        })?;
        open.0.prepare_cached("COMMIT")?.execute([])?;
        Ok(out)
    }
}

impl deadpool::managed::Manager for ReadConnections {
    type Type = SyncWrapper<ReadConnection>;
    type Error = rusqlite::Error;

    async fn create(&self) -> std::result::Result<Self::Type, Self::Error> {
        let path = self.path.clone();
        SyncWrapper::new(Runtime::Tokio1, move || {
            let conn = Connection::open(path)?;
            configure_common(&conn)?;
            // Readers must never write: all writes are serialised through the writer.
            conn.pragma_update(None, "query_only", "ON")?;
            conn.pragma_update(None, "mmap_size", READ_MMAP_BYTES)?;
            Ok(ReadConnection {
                conn,
                counts: CountCache::default(),
            })
        })
        .await
    }

    async fn recycle(&self, conn: &mut Self::Type, _: &Metrics) -> RecycleResult<Self::Error> {
        if conn.is_mutex_poisoned() {
            return Err(RecycleError::message(
                "a reader panicked holding this connection",
            ));
        }
        Ok(())
    }
}

impl EventDb {
    /// Opens (creating if needed, with parent directories) the database at `path` and brings
    /// its schema up to date.
    ///
    /// Fails with [`StorageError::NewerSchema`] if the file was written by a newer build.
    pub async fn open(path: impl AsRef<Path>) -> Result<Self> {
        Self::open_inner(path.as_ref().to_owned(), None).await
    }

    /// A fresh private database for tests, in a temporary directory removed when the last
    /// handle is dropped. (A real file, not `:memory:`: WAL and several connections need one.)
    pub async fn open_in_memory() -> Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("events-storage-")
            .tempdir()
            .map_err(|source| StorageError::Io {
                path: std::env::temp_dir(),
                source,
            })?;
        let path = dir.path().join("events.db");
        Self::open_inner(path, Some(dir)).await
    }

    async fn open_inner(path: PathBuf, tempdir: Option<tempfile::TempDir>) -> Result<Self> {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            tokio::fs::create_dir_all(parent)
                .await
                .map_err(|source| StorageError::Io {
                    path: parent.to_owned(),
                    source,
                })?;
        }
        let writer_path = path.clone();
        let (writer, epoch) = tokio::task::spawn_blocking(move || open_writer(&writer_path))
            .await
            .map_err(|e| StorageError::Task(e.to_string()))??;
        let readers = deadpool::managed::Pool::builder(ReadConnections { path: path.clone() })
            .max_size(READ_POOL_SIZE)
            .runtime(Runtime::Tokio1)
            .build()
            .map_err(|e| StorageError::Pool(e.to_string()))?;
        let commits = Arc::new(watch::channel(0).0);
        let checkpoints = Arc::new(AtomicU64::new(0));
        let checkpoint_kick = spawn_checkpointer(&path, Arc::clone(&checkpoints))?;
        let (jobs, writer_thread) = spawn_writer(
            &path,
            Writer {
                conn: writer,
                commits: Arc::clone(&commits),
                checkpoint_kick,
            },
        )?;
        Ok(Self {
            inner: Arc::new(Inner {
                path,
                epoch,
                writer: Some(jobs),
                writer_thread: Some(writer_thread),
                readers,
                commits,
                checkpoints,
                _tempdir: tempdir,
            }),
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// The database's identity: a UUID made when the file was created. A client that resumes
    /// by `seq` compares it to tell "continue" from "the store was recreated, start over".
    pub fn epoch(&self) -> &str {
        &self.inner.epoch
    }

    /// A receiver whose value increases after every committed [`EventDb::write`]; the
    /// embedded source and SSE wait on it instead of polling.
    pub fn commits(&self) -> watch::Receiver<u64> {
        self.inner.commits.subscribe()
    }

    /// How many checkpoints (WAL pages copied back into the database file) the background
    /// checkpointer has run: fewer than commits, as the commits of [`CHECKPOINT_DELAY`] share
    /// one.
    pub fn checkpoints_run(&self) -> u64 {
        self.inner.checkpoints.load(Ordering::Relaxed)
    }

    /// How many write transactions have committed so far (the value [`EventDb::commits`]
    /// carries). A row read inside transaction [`WriteTx::commit_number`] `n` is still the
    /// current row while this is `n`.
    pub fn commit_count(&self) -> u64 {
        *self.inner.commits.borrow()
    }

    /// Runs `f` in one `BEGIN IMMEDIATE` transaction on the writer connection, on the writer
    /// thread (after the writes asked for before it); commits if it returns `Ok`, rolls back
    /// if it returns `Err` (or panics: that comes back as [`StorageError::Task`]).
    ///
    /// This is the batch API: put a whole batch's writes in one call — one commit, one fsync
    /// at checkpoint. The closure runs inside the calling task's runtime context and may
    /// block (the processor calls `Handle::block_on` in it to run async cartridges) but must
    /// not call `EventDb::write` itself: that write would queue behind this one on the same
    /// thread, and both would wait forever.
    pub async fn write<T, F>(&self, f: F) -> Result<T>
    where
        F: FnOnce(&mut WriteTx<'_>) -> Result<T> + Send + 'static,
        T: Send + 'static,
    {
        self.write_with(f).await
    }

    /// [`EventDb::write`] with the caller's error type, for closures that fail for reasons of
    /// their own (a cartridge error) and want that error back unchanged after the rollback.
    pub async fn write_with<T, E, F>(&self, f: F) -> Result<T, E>
    where
        F: FnOnce(&mut WriteTx<'_>) -> Result<T, E> + Send + 'static,
        T: Send + 'static,
        E: From<StorageError> + Send + 'static,
    {
        self.write_then(f, |_| {}).await
    }

    /// [`EventDb::write_with`], then `after_commit` with the result on the writer's thread,
    /// right after the commit and before any other write transaction begins.
    pub async fn write_then<T, E, F, G>(&self, f: F, after_commit: G) -> Result<T, E>
    where
        F: FnOnce(&mut WriteTx<'_>) -> Result<T, E> + Send + 'static,
        G: FnOnce(&T) + Send + 'static,
        T: Send + 'static,
        E: From<StorageError> + Send + 'static,
    {
        self.queue_then(f, after_commit).await
    }

    /// [`EventDb::write_then`], but the transaction takes its place in the writer's queue
    /// now, when this is called, not when the returned future is first polled; the future
    /// only waits for the outcome. Dropping it does not withdraw the write.
    ///
    /// This is how a caller keeps the writer busy: the next batch waits in the queue while
    /// the one before it commits, instead of being handed over after the caller has been
    /// woken and scheduled (on two shared cores the writer sat idle for a sixth of the e2e
    /// benchmark's emission, partly in that hand-over). A caller that queues writes which
    /// depend on each other has to make the later one check that the earlier one committed.
    pub fn queue_then<T, E, F, G>(
        &self,
        f: F,
        after_commit: G,
    ) -> impl Future<Output = Result<T, E>> + Send + 'static
    where
        F: FnOnce(&mut WriteTx<'_>) -> Result<T, E> + Send + 'static,
        G: FnOnce(&T) + Send + 'static,
        T: Send + 'static,
        E: From<StorageError> + Send + 'static,
    {
        // The closure runs inside the caller's runtime, as it would on a blocking-pool
        // thread: `Handle::current()`, timers and `block_on` there mean the caller's runtime.
        let runtime = tokio::runtime::Handle::try_current().ok();
        let done = self.on_writer_thread(move |writer: &Writer| {
            let _runtime = runtime.as_ref().map(tokio::runtime::Handle::enter);
            // The transaction rolls back while a panic unwinds (its guard drops), so the
            // connection stays sound for the next job; the caller gets the panic as an error.
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                writer.write(f, after_commit)
            }))
            .unwrap_or_else(|panic| {
                Err(E::from(StorageError::Task(format!(
                    "a write transaction panicked: {}",
                    panic_message(panic.as_ref())
                ))))
            })
        });
        async move { done.await.map_err(E::from)? }
    }

    /// Puts the writer's thread under the real-time round-robin policy at `priority`
    /// (`events_sched::make_current_thread_realtime`), after the writes queued before this
    /// call. With it the writer runs whenever it has a transaction, ahead of every thread of
    /// the normal policies, instead of waiting its turn for a core (a fifth of its time in
    /// the e2e benchmark even at `nice` −10, where the producers share the cores; session
    /// 27: e2e +7–10 %). The daemon asks for it when it consumes a Redis stream, where
    /// producers outside the daemon compete for the cores; it is not the default, because a
    /// real-time thread also takes its core from everything else the host runs. Fails with
    /// the permission error (nothing changed) without `CAP_SYS_NICE` or `RLIMIT_RTPRIO`.
    pub async fn make_writer_realtime(&self, priority: i32) -> Result<()> {
        self.on_writer_thread(move |_writer: &Writer| {
            events_sched::make_current_thread_realtime(priority)
        })
        .await?
        .map_err(StorageError::Scheduling)
    }

    /// Queues `job` on the writer thread now (after everything queued before it) and
    /// returns what it returns; the one way onto that thread for transactions and for
    /// changes to the thread itself. A dropped future does not withdraw the job.
    fn on_writer_thread<R: Send + 'static>(
        &self,
        job: impl FnOnce(&Writer) -> R + Send + 'static,
    ) -> impl Future<Output = Result<R>> + Send + 'static {
        let (done, result) = tokio::sync::oneshot::channel();
        let job: WriteJob = Box::new(move |writer: &Writer| {
            // the caller may have stopped waiting; what the job did stands
            let _ = done.send(job(writer));
        });
        let queued = self
            .inner
            .writer
            .as_ref()
            .is_some_and(|writer| writer.send(job).is_ok());
        async move {
            let stopped = || StorageError::Task("the storage writer thread has stopped".into());
            if !queued {
                return Err(stopped());
            }
            result.await.map_err(|_| stopped())
        }
    }

    /// Runs `f` on a pooled read-only connection inside one read transaction, so everything
    /// it reads comes from one consistent snapshot.
    pub async fn read<T, F>(&self, f: F) -> Result<T>
    where
        F: FnOnce(&Reader<'_>) -> Result<T> + Send + 'static,
        T: Send + 'static,
    {
        let conn = self.reader().await?;
        conn.interact(move |conn| conn.read(f))
            .await
            .map_err(|e| StorageError::Task(e.to_string()))?
    }

    /// [`EventDb::read`] on the calling thread, for reads known to be short: one row by key,
    /// one bounded page. Handing such a read to a blocking thread and back costs more than
    /// the read (two thread switches on a busy 2-core machine; they were the largest cost
    /// left in the API benchmark), so the notification list and get routes read here. Scans
    /// of unbounded size (event queries, replay, retention) must use [`EventDb::read`].
    pub async fn read_now<T, F>(&self, f: F) -> Result<T>
    where
        F: FnOnce(&Reader<'_>) -> Result<T>,
    {
        let conn = self.reader().await?;
        let conn = conn
            .lock()
            .map_err(|_| StorageError::Pool("a reader panicked holding this connection".into()))?;
        conn.read(f)
    }

    async fn reader(&self) -> Result<deadpool::managed::Object<ReadConnections>> {
        self.inner
            .readers
            .get()
            .await
            .map_err(|e| StorageError::Pool(e.to_string()))
    }

    /// One notification, `None` if there is no such id.
    pub async fn get_notification(&self, id: i64) -> Result<Option<Notification>> {
        self.read(move |r| r.get_notification(id)).await
    }

    /// A page of notifications matching `filter`, newest first, with the total match count.
    pub async fn list_notifications(&self, filter: NotificationFilter) -> Result<NotificationPage> {
        self.read(move |r| r.list_notifications(&filter)).await
    }

    /// Marks one notification seen (`seen = true`) or unseen; see [`WriteTx::set_seen`].
    pub async fn set_seen(&self, id: i64, seen: bool) -> Result<Transition> {
        self.write(move |tx| tx.set_seen(id, seen)).await
    }

    /// Marks every unseen notification matching `filter` seen; see [`WriteTx::mark_all_seen`].
    pub async fn mark_all_seen(&self, filter: NotificationFilter) -> Result<u64> {
        self.write(move |tx| tx.mark_all_seen(&filter)).await
    }

    /// `agent_id` claims a notification; see [`WriteTx::claim`].
    pub async fn claim(&self, id: i64, agent_id: impl Into<String>) -> Result<Transition> {
        let agent_id = agent_id.into();
        self.write(move |tx| tx.claim(id, &agent_id)).await
    }

    /// Changes the agent status; see [`WriteTx::set_agent_status`].
    pub async fn set_agent_status(
        &self,
        id: i64,
        status: AgentStatus,
        agent_id: impl Into<String>,
    ) -> Result<Transition> {
        let agent_id = agent_id.into();
        self.write(move |tx| tx.set_agent_status(id, status, &agent_id))
            .await
    }

    /// Resolves a notification; see [`WriteTx::resolve_notification`].
    pub async fn resolve(&self, id: i64, resolution: Value) -> Result<Transition> {
        self.write(move |tx| tx.resolve_notification(id, &resolution))
            .await
    }

    /// Logged events matching `query`, ascending by `seq`.
    pub async fn query_events(&self, query: EventQuery) -> Result<Vec<StoredEvent>> {
        self.read(move |r| r.query_events(&query)).await
    }

    /// The highest `seq` logged, 0 for an empty log.
    pub async fn max_seq(&self) -> Result<i64> {
        self.read(|r| r.max_seq()).await
    }

    /// Deletes events *received* before `cutoff` (retention is about how long we keep
    /// them), `chunk` rows per transaction so the writer is never held for long; returns the
    /// number deleted.
    pub async fn delete_events_older_than(
        &self,
        cutoff: OffsetDateTime,
        chunk: u32,
    ) -> Result<u64> {
        let chunk = chunk.max(1);
        let cutoff = timefmt::format(cutoff);
        let mut total = 0;
        loop {
            let cutoff = cutoff.clone();
            let deleted = self
                .write(move |tx| events::delete_chunk_older_than(tx.connection(), &cutoff, chunk))
                .await?;
            total += deleted;
            if deleted < u64::from(chunk) {
                return Ok(total);
            }
            tokio::task::yield_now().await;
        }
    }

    /// Dead letters with `id > after_id`, oldest first.
    pub async fn list_dead_letters(&self, after_id: i64, limit: u32) -> Result<Vec<DeadLetter>> {
        self.read(move |r| r.list_dead_letters(after_id, limit))
            .await
    }

    /// One dead letter.
    pub async fn get_dead_letter(&self, id: i64) -> Result<Option<DeadLetter>> {
        self.read(move |r| r.get_dead_letter(id)).await
    }

    /// Deletes a dead letter; `false` if there was none.
    pub async fn delete_dead_letter(&self, id: i64) -> Result<bool> {
        self.write(move |tx| tx.delete_dead_letter(id)).await
    }
}

/// The nice value the writer's thread runs its transactions at (`events-sched`): every
/// event waits behind the single writer, so on a machine whose cores the daemon shares (the
/// e2e benchmark: emitter, Redis and daemon on two cores) the writer should be the last
/// thread to give way (docs/benchmarks.md, session 26: latency p50 and p99 lower).
pub const WRITER_NICE: i32 = -10;

/// Favours the calling (writer) thread for the guard's life; where the process may not
/// raise a priority, says so once and runs at the normal one.
fn favour_writer_thread() -> Option<events_sched::Favoured> {
    static REFUSAL_LOGGED: AtomicBool = AtomicBool::new(false);
    match events_sched::favour_current_thread(WRITER_NICE) {
        Ok(favoured) => Some(favoured),
        Err(error) => {
            if !REFUSAL_LOGGED.swap(true, Ordering::Relaxed) {
                tracing::info!(%error, nice = WRITER_NICE, "the storage writer runs at the normal priority (raising it is not permitted here)");
            }
            None
        }
    }
}

/// Source of [`WriteTx::transaction_id`].
static NEXT_TRANSACTION_ID: AtomicU64 = AtomicU64::new(1);

/// A job for the writer thread (`EventDb::on_writer_thread`): a write transaction or a
/// change to the thread, its result sent back by the job.
type WriteJob = Box<dyn FnOnce(&Writer) + Send>;

/// What the writer thread owns: the one write connection and what a commit announces.
struct Writer {
    conn: Connection,
    commits: Arc<watch::Sender<u64>>,
    /// Wakes the background checkpointer after a commit (capacity 1: a wake-up already
    /// queued covers later commits too). Dropped with the writer thread, which stops the
    /// checkpointer thread.
    checkpoint_kick: std::sync::mpsc::SyncSender<()>,
}

/// Starts the thread that runs every write transaction, one after another, in the order
/// they were asked for; it stops when the returned sender is dropped.
///
/// One long-lived thread rather than a blocking-pool thread per write: it is favoured by the
/// scheduler for its whole life ([`WRITER_NICE`]) without two priority changes per commit,
/// and it shows up under its own name in `top -H` and in the benchmark's thread figures.
fn spawn_writer(
    path: &Path,
    writer: Writer,
) -> Result<(
    std::sync::mpsc::Sender<WriteJob>,
    std::thread::JoinHandle<()>,
)> {
    let (jobs, queue) = std::sync::mpsc::channel::<WriteJob>();
    let thread = std::thread::Builder::new()
        .name("events-writer".into())
        .spawn(move || {
            let _favoured = favour_writer_thread();
            while let Ok(job) = queue.recv() {
                job(&writer);
            }
        })
        .map_err(|source| StorageError::Io {
            path: path.to_owned(),
            source,
        })?;
    Ok((jobs, thread))
}

impl Drop for Inner {
    fn drop(&mut self) {
        // Closing the queue ends the writer thread after the job it runs; joining it closes
        // the write connection before the handle is gone (and the temporary directory of
        // `open_in_memory` with it). Not from the writer thread itself: a job that held the
        // last handle drops it there, and the thread ends on its own right after.
        self.writer = None;
        if let Some(thread) = self.writer_thread.take()
            && thread.thread().id() != std::thread::current().id()
        {
            let _ = thread.join();
        }
    }
}

impl std::fmt::Debug for Writer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Writer").finish_non_exhaustive()
    }
}

impl Writer {
    fn write<T, E, F, G>(&self, f: F, after_commit: G) -> Result<T, E>
    where
        F: FnOnce(&mut WriteTx<'_>) -> Result<T, E>,
        G: FnOnce(&T),
        E: From<StorageError>,
    {
        let conn = &self.conn;
        // Not `transaction_with_behavior`, which borrows the connection mutably for the
        // transaction's life: the held statements borrow it too. This thread runs one job at
        // a time, which is what rules out a nested transaction here.
        let tx = rusqlite::Transaction::new_unchecked(conn, TransactionBehavior::Immediate)
            .map_err(|e| E::from(e.into()))?;
        let mut wtx = WriteTx {
            statements: TxStatements::new(conn),
            tx,
            id: NEXT_TRANSACTION_ID.fetch_add(1, Ordering::Relaxed),
            received_at: timefmt::format(timefmt::now()),
            // only this thread commits, so no other commit can come in between
            number: *self.commits.borrow() + 1,
        };
        let out = f(&mut wtx)?;
        let WriteTx { statements, tx, .. } = wtx;
        drop(statements);
        tx.commit().map_err(|e| E::from(e.into()))?;
        self.commits.send_modify(|n| *n += 1);
        after_commit(&out);
        // Full = a wake-up is already queued; disconnected cannot happen while `self` lives.
        let _ = self.checkpoint_kick.try_send(());
        Ok(out)
    }
}

/// The text of a panic payload (`panic!` with a literal or with a formatted message).
fn panic_message(panic: &(dyn std::any::Any + Send)) -> &str {
    panic
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| panic.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("(no message)")
}

/// A read transaction on a pooled connection; ends it if the reader fails or panics, so the
/// connection never returns to the pool with a transaction open (and a stale snapshot).
struct OpenRead<'c>(&'c Connection);

impl Drop for OpenRead<'_> {
    fn drop(&mut self) {
        if !self.0.is_autocommit() {
            let _ = self.0.execute_batch("ROLLBACK");
        }
    }
}

/// Read-only methods shared by [`Reader`] and [`WriteTx`] (inside a write transaction they
/// see its uncommitted writes).
macro_rules! read_methods {
    () => {
        /// One notification, `None` if there is no such id.
        pub fn get_notification(&self, id: i64) -> Result<Option<Notification>> {
            notifications::get(self.conn(), id)
        }

        /// A page of notifications matching `filter`, newest (`created_at`, then id) first;
        /// `total` counts all matches.
        pub fn list_notifications(&self, filter: &NotificationFilter) -> Result<NotificationPage> {
            notifications::list(self.conn(), self.counts(), filter)
        }

        /// The newest notification of `(domain, group_field, group_value)` that is not resolved.
        pub fn find_open_by_group(
            &self,
            domain: &str,
            group_field: &str,
            group_value: &str,
        ) -> Result<Option<Notification>> {
            notifications::find_open_by_group(self.conn(), domain, group_field, group_value)
        }

        /// [`Self::find_open_by_group`] as the lifecycle projector needs it: the id and the
        /// payload (as stored), not the whole row.
        pub fn find_open_in_group(
            &self,
            domain: &str,
            group_field: &str,
            group_value: &str,
        ) -> Result<Option<OpenInGroup>> {
            notifications::find_open_in_group(self.prepared(), domain, group_field, group_value)
        }

        /// Logged events matching `query`, ascending by `seq`.
        pub fn query_events(&self, query: &EventQuery) -> Result<Vec<StoredEvent>> {
            events::query(self.conn(), query)
        }

        /// One logged event by `seq`.
        pub fn get_event(&self, seq: i64) -> Result<Option<StoredEvent>> {
            events::get_by_seq(self.conn(), seq)
        }

        /// The highest `seq` logged, 0 for an empty log.
        pub fn max_seq(&self) -> Result<i64> {
            events::max_seq(self.conn())
        }

        /// Whether an event with this idempotency key is in the event log (the dedup check).
        pub fn idempotency_key_seen(&self, key: &str) -> Result<bool> {
            events::idempotency_key_seen(self.prepared(), key)
        }

        /// Whether `(stream, entry_id)` was already processed.
        pub fn is_processed(&self, stream: &str, entry_id: &str) -> Result<bool> {
            embedded::is_processed(self.conn(), stream, entry_id)
        }

        /// Up to `limit` embedded entries of `stream` after `after_id` (`"0"` = from the start).
        pub fn read_embedded(
            &self,
            stream: &str,
            after_id: &str,
            limit: u32,
        ) -> Result<Vec<EmbeddedEntry>> {
            embedded::read(self.conn(), stream, after_id, limit)
        }

        /// The last entry id `group` committed on `stream`, `None` if it never did.
        pub fn consumer_offset(&self, stream: &str, group: &str) -> Result<Option<String>> {
            embedded::offset(self.conn(), stream, group)
        }

        /// Dead letters with `id > after_id`, oldest first.
        pub fn list_dead_letters(&self, after_id: i64, limit: u32) -> Result<Vec<DeadLetter>> {
            dead_letters::list(self.conn(), after_id, limit)
        }

        /// One dead letter.
        pub fn get_dead_letter(&self, id: i64) -> Result<Option<DeadLetter>> {
            dead_letters::get(self.conn(), id)
        }

        /// A value of the `meta` table (e.g. `epoch`).
        pub fn meta(&self, key: &str) -> Result<Option<String>> {
            Ok(self
                .conn()
                .prepare_cached("SELECT value FROM meta WHERE key = ?1")?
                .query_row([key], |r| r.get(0))
                .optional()?)
        }
    };
}

/// A read transaction on a pooled read-only connection (see [`EventDb::read`]).
#[derive(Debug)]
pub struct Reader<'c> {
    conn: &'c Connection,
    counts: &'c CountCache,
}

impl Reader<'_> {
    fn conn(&self) -> &Connection {
        self.conn
    }

    fn prepared(&self) -> &Connection {
        self.conn
    }

    /// Match counts this connection remembers (see [`CountCache`]).
    pub(crate) fn counts(&self) -> Option<&CountCache> {
        Some(self.counts)
    }

    read_methods!();

    /// The raw connection (read-only: `PRAGMA query_only` is on), for queries this crate
    /// does not offer, such as the delivery tables.
    pub fn connection(&self) -> &Connection {
        self.conn
    }
}

/// The write transaction of one [`EventDb::write`] call.
///
/// Every method uses cached prepared statements; nothing commits until the closure returns.
#[derive(Debug)]
pub struct WriteTx<'c> {
    /// Before `tx`: the statements go back to the connection's cache before the
    /// transaction ends, also when it is dropped (rolled back).
    statements: TxStatements<'c>,
    tx: rusqlite::Transaction<'c>,
    /// See [`WriteTx::transaction_id`].
    id: u64,
    /// `received_at` of every event appended in this transaction.
    received_at: String,
    /// What [`EventDb::commit_count`] becomes when this transaction commits.
    number: u64,
}

impl<'c> WriteTx<'c> {
    fn conn(&self) -> &Connection {
        &self.tx
    }

    fn prepared(&self) -> &TxStatements<'c> {
        &self.statements
    }

    /// None: counts inside a write transaction change with its own writes.
    fn counts(&self) -> Option<&CountCache> {
        None
    }

    read_methods!();

    /// What [`EventDb::commit_count`] becomes when this transaction commits: rows read here
    /// can be handed on tagged with it, and stay current as long as the count has not moved.
    pub fn commit_number(&self) -> u64 {
        self.number
    }

    /// A number no other write transaction of this process has or will have (of any
    /// [`EventDb`]; a retried attempt is a new transaction with a new number). Whatever was
    /// read inside this transaction stays true until it ends, except for its own writes, so
    /// a cache keyed by this id needs no invalidation — unlike [`WriteTx::commit_number`],
    /// which a rolled-back attempt and the next transaction share.
    pub fn transaction_id(&self) -> u64 {
        self.id
    }

    /// The raw connection inside this transaction, for tables this crate has no methods for
    /// (the delivery outbox). Do not `COMMIT` or `ROLLBACK` through it.
    pub fn connection(&self) -> &Connection {
        &self.tx
    }

    /// Inserts a notification (`unseen`, agent status `none`); returns its id.
    ///
    /// A duplicate `idempotency_key` fails with a constraint error; use
    /// [`WriteTx::upsert_by_idempotency_key`] when duplicates are expected.
    pub fn insert_notification(&mut self, n: &NewNotification) -> Result<i64> {
        notifications::insert(self.prepared(), n, false).map(|(id, _)| id)
    }

    /// Inserts a notification, or — if one with the same `idempotency_key` exists — refreshes
    /// its payload, description and `updated_at` (statuses untouched). Returns `(id, created)`.
    pub fn upsert_by_idempotency_key(&mut self, n: &NewNotification) -> Result<(i64, bool)> {
        notifications::insert(self.prepared(), n, true)
    }

    /// Replaces payload and description and bumps `updated_at`. A `meaningful` update also
    /// makes it `unseen` again (clearing `seen_at`); a silent one leaves the human status.
    /// An unknown id is an [`StorageError::InvalidInput`] (callers update a row they just
    /// found in the same transaction, so a missing one is a bug, not a race).
    pub fn update_notification(
        &mut self,
        id: i64,
        payload: &Map<String, Value>,
        description: &str,
        meaningful: bool,
    ) -> Result<()> {
        if notifications::update_content(self.prepared(), id, payload, description, meaningful)? {
            Ok(())
        } else {
            Err(StorageError::InvalidInput {
                field: "id",
                message: format!("no notification {id} to update"),
            })
        }
    }

    /// Human status. `seen = true`: `unseen → seen` (sets `seen_at`) is `Changed`, `seen` again
    /// is `Unchanged`. `seen = false` undoes it: `seen → unseen` (clears `seen_at`), `Unchanged`
    /// if already unseen. Independent of the agent status (a resolved notification can still
    /// be marked seen). Unknown id: `NotFound`.
    pub fn set_seen(&mut self, id: i64, seen: bool) -> Result<Transition> {
        notifications::set_seen(self.conn(), id, seen)
    }

    /// Marks every *unseen* notification matching `filter` seen (its `human_status`, `limit`
    /// and `offset` are ignored); returns how many changed.
    pub fn mark_all_seen(&mut self, filter: &NotificationFilter) -> Result<u64> {
        notifications::mark_all_seen(self.conn(), filter)
    }

    /// Claim. Rules:
    /// - empty `agent_id` → `Invalid`;
    /// - `none` → `claimed` by `agent_id` (sets `claimed_at`) → `Changed`;
    /// - `claimed`/`in_progress` by the same agent → `Unchanged` (idempotent repeat);
    /// - `claimed`/`in_progress` by another agent → `Conflict` (409);
    /// - `resolved` → `Conflict` (nothing happens after resolved).
    pub fn claim(&mut self, id: i64, agent_id: &str) -> Result<Transition> {
        notifications::claim(self.conn(), id, agent_id)
    }

    /// Agent status change by `agent_id`. Rules, checked in this order:
    /// - empty `agent_id` → `Invalid`; unknown id → `NotFound`;
    /// - current `resolved` → `Conflict` (409), whatever the target;
    /// - target `resolved` → `Invalid` (use [`WriteTx::resolve_notification`], which records a
    ///   resolution);
    /// - current `none`: target `none` → `Unchanged`; `claimed` → as [`WriteTx::claim`];
    ///   `in_progress` → `Invalid` (claim first);
    /// - current `claimed`/`in_progress` held by *another* agent → `Invalid` (only the claimer
    ///   changes the status; `Conflict` is for a competing *claim*);
    /// - held by `agent_id`: same status → `Unchanged`; `none` → released (`agent_id` and
    ///   `claimed_at` cleared) → `Changed`; `claimed` ⇄ `in_progress` → `Changed`.
    pub fn set_agent_status(
        &mut self,
        id: i64,
        status: AgentStatus,
        agent_id: &str,
    ) -> Result<Transition> {
        notifications::set_agent_status(self.conn(), id, status, agent_id)
    }

    /// Resolve (the API's resolve, or a lifecycle `resolves` event): from `none`, `claimed`
    /// or `in_progress` → `resolved` with `resolution` and `resolved_at` → `Changed`; the
    /// claiming `agent_id` is kept. Already `resolved` → `Conflict` (409). `resolution` not a
    /// JSON object → `Invalid`. Unknown id → `NotFound`.
    pub fn resolve_notification(&mut self, id: i64, resolution: &Value) -> Result<Transition> {
        notifications::resolve(self.conn(), id, resolution)
    }

    /// Resolves a notification found open in this transaction
    /// ([`WriteTx::find_open_in_group`]) with `resolution`, as a lifecycle `resolves` event
    /// does: the same change as [`WriteTx::resolve_notification`] without reading the row
    /// for an answer. An id that is missing or already resolved is an
    /// [`StorageError::InvalidInput`] (the caller just found it open: a bug, not a race).
    pub fn resolve_found_notification(
        &mut self,
        id: i64,
        resolution: &Map<String, Value>,
    ) -> Result<()> {
        if notifications::resolve_found(self.prepared(), id, resolution)? {
            Ok(())
        } else {
            Err(StorageError::InvalidInput {
                field: "id",
                message: format!("no open notification {id} to resolve"),
            })
        }
    }

    /// Appends an event to the log. `Some(seq)` if it is new, `None` if an event with the same
    /// id — or the same idempotency key — is already logged (a re-delivery: harmless).
    pub fn append_event(
        &mut self,
        event: &EventEnvelope,
        stream_entry_id: Option<&str>,
    ) -> Result<Option<i64>> {
        events::append(self.prepared(), event, stream_entry_id, &self.received_at)
    }

    /// Records `(stream, entry_id)` as processed; `false` if it already was (skip the entry).
    pub fn mark_processed(&mut self, stream: &str, entry_id: &str) -> Result<bool> {
        embedded::mark_processed(self.prepared(), stream, entry_id, &self.received_at)
    }

    /// [`WriteTx::mark_processed`] for a whole batch, in far fewer statements: for each entry
    /// in order, `true` if it is claimed now, `false` if it was processed before (or is
    /// listed twice).
    pub fn mark_processed_all(&mut self, stream: &str, entry_ids: &[&str]) -> Result<Vec<bool>> {
        embedded::mark_processed_all(self.prepared(), stream, entry_ids, &self.received_at)
    }

    /// Appends an entry to an embedded stream; returns its id (`"42-0"`).
    pub fn embedded_append(&mut self, stream: &str, fields: &[(String, String)]) -> Result<String> {
        let fields = EncodedFields::encode(fields)?;
        self.embedded_append_encoded(stream, &fields)
    }

    /// [`WriteTx::embedded_append`] of fields encoded before the transaction
    /// ([`EncodedFields::encode`]), so that the writer thread only inserts.
    pub fn embedded_append_encoded(
        &mut self,
        stream: &str,
        fields: &EncodedFields,
    ) -> Result<String> {
        embedded::append(self.conn(), stream, fields, &self.received_at)
    }

    /// Stores `group`'s position on `stream` (in the same transaction as the batch's effects,
    /// so offset and effects commit together).
    pub fn set_consumer_offset(&mut self, stream: &str, group: &str, entry_id: &str) -> Result<()> {
        embedded::set_offset(self.conn(), stream, group, entry_id)
    }

    /// Stores a dead letter; returns its id.
    pub fn insert_dead_letter(&mut self, d: &NewDeadLetter) -> Result<i64> {
        dead_letters::insert(self.conn(), d)
    }

    /// Deletes a dead letter (after replay, or by an operator); `false` if there was none.
    pub fn delete_dead_letter(&mut self, id: i64) -> Result<bool> {
        dead_letters::delete(self.conn(), id)
    }

    /// Sets a value in the `meta` table.
    pub fn set_meta(&mut self, key: &str, value: &str) -> Result<()> {
        self.conn()
            .prepare_cached(
                "INSERT INTO meta (key, value) VALUES (?1, ?2) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            )?
            .execute([key, value])?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A steady load restarts the WAL only after it has grown to about the writer's
    /// backstop; a size limit below that would truncate (and later regrow) the file inside
    /// those commits, the latency tail `WAL_KEPT_BYTES` is there to avoid.
    #[tokio::test]
    async fn the_wal_keeps_its_blocks_beyond_the_backstop() {
        let db = EventDb::open_in_memory().await.unwrap();
        let (limit, backstop, page_size) = db
            .write(|tx| {
                let conn = tx.connection();
                let get = |sql: &str| conn.query_row(sql, [], |r| r.get::<_, i64>(0));
                Ok((
                    get("PRAGMA journal_size_limit")?,
                    get("PRAGMA wal_autocheckpoint")?,
                    get("PRAGMA page_size")?,
                ))
            })
            .await
            .unwrap();
        assert_eq!(limit, WAL_KEPT_BYTES);
        assert_eq!(backstop, WRITER_BACKSTOP_CHECKPOINT_PAGES);
        // frames are a page plus a 24-byte header
        assert!(
            limit > backstop * (page_size + 24),
            "limit {limit} below the backstop's WAL size"
        );
    }
}
