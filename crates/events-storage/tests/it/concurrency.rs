//! Concurrent writers never see `database is locked`; a failing batch leaves nothing behind.

use events_storage::{EventDb, NotificationFilter, StorageError};

use crate::new_notification;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_writer_tasks_and_readers_all_succeed() {
    let db = EventDb::open_in_memory().await.unwrap();
    let mut tasks = Vec::new();
    for t in 0..8usize {
        let db = db.clone();
        tasks.push(tokio::spawn(async move {
            for b in 0..25usize {
                db.write(move |tx| {
                    for i in 0..4 {
                        tx.insert_notification(&new_notification(t * 1000 + b * 10 + i))?;
                    }
                    Ok(())
                })
                .await?;
                // readers run alongside the writers
                db.list_notifications(NotificationFilter {
                    limit: Some(5),
                    ..Default::default()
                })
                .await?;
            }
            Ok::<_, StorageError>(())
        }));
    }
    for task in tasks {
        task.await.unwrap().unwrap();
    }
    let page = db
        .list_notifications(NotificationFilter::default())
        .await
        .unwrap();
    assert_eq!(page.total, 8 * 25 * 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_handles_on_one_file_wait_instead_of_failing() {
    // Two EventDb values on the same file have two writer connections: SQLite's lock and the
    // busy timeout serialise them (the situation of two processes).
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("events.db");
    let first = EventDb::open(&path).await.unwrap();
    let second = EventDb::open(&path).await.unwrap();
    let mut tasks = Vec::new();
    for (k, db) in [first.clone(), second.clone(), first.clone(), second]
        .into_iter()
        .enumerate()
    {
        tasks.push(tokio::spawn(async move {
            for b in 0..20usize {
                db.write(move |tx| {
                    for i in 0..5 {
                        tx.insert_notification(&new_notification(k * 1000 + b * 10 + i))?;
                    }
                    Ok(())
                })
                .await?;
            }
            Ok::<_, StorageError>(())
        }));
    }
    for task in tasks {
        task.await.unwrap().unwrap();
    }
    assert_eq!(
        first
            .list_notifications(NotificationFilter::default())
            .await
            .unwrap()
            .total,
        4 * 20 * 5
    );
}

#[tokio::test]
async fn failed_or_panicking_batch_rolls_back_entirely() {
    let db = EventDb::open_in_memory().await.unwrap();
    let err = db
        .write(|tx| {
            tx.insert_notification(&new_notification(1))?;
            tx.mark_processed("s", "1-0")?;
            Err::<(), _>(StorageError::Aborted("cartridge failed".into()))
        })
        .await
        .unwrap_err();
    assert!(matches!(err, StorageError::Aborted(_)), "{err}");
    let panicked = db
        .write(|tx| -> events_storage::Result<()> {
            tx.insert_notification(&new_notification(2))?;
            panic!("cartridge bug")
        })
        .await;
    assert!(
        matches!(&panicked, Err(StorageError::Task(message)) if message.contains("cartridge bug")),
        "{panicked:?}"
    );
    // nothing of either batch is visible, and the writer still works
    assert_eq!(
        db.list_notifications(NotificationFilter::default())
            .await
            .unwrap()
            .total,
        0
    );
    assert!(!db.read(|r| r.is_processed("s", "1-0")).await.unwrap());
    let mut commits = db.commits();
    let before = *commits.borrow_and_update();
    let id = crate::insert(&db, new_notification(3)).await;
    assert!(db.get_notification(id).await.unwrap().is_some());
    assert!(
        *commits.borrow() > before,
        "commits counter advances after a commit"
    );
}

/// A caller's own error type passes through `write_with` unchanged.
#[tokio::test]
async fn write_with_returns_the_callers_error() {
    #[derive(Debug, PartialEq)]
    enum MyError {
        Storage(String),
        Mine(u32),
    }
    impl From<StorageError> for MyError {
        fn from(e: StorageError) -> Self {
            Self::Storage(e.to_string())
        }
    }
    let db = EventDb::open_in_memory().await.unwrap();
    let got = db
        .write_with(|tx| {
            tx.insert_notification(&new_notification(1))
                .map_err(MyError::from)?;
            Err::<(), _>(MyError::Mine(7))
        })
        .await;
    assert_eq!(got, Err(MyError::Mine(7)));
    assert_eq!(
        db.list_notifications(NotificationFilter::default())
            .await
            .unwrap()
            .total,
        0
    );
}

/// `write_then` hands the committed result to its hook exactly once, before the next write
/// transaction starts (the processor relies on this to push in commit order), and never
/// calls it for a transaction that failed.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn write_then_runs_the_hook_after_each_commit_and_never_after_a_failure() {
    use std::sync::{Arc, Mutex};
    let db = EventDb::open_in_memory().await.unwrap();
    let log = Arc::new(Mutex::new(Vec::<String>::new()));
    let mut tasks = Vec::new();
    for k in 0..6usize {
        let (db, in_tx, after) = (db.clone(), Arc::clone(&log), Arc::clone(&log));
        tasks.push(tokio::spawn(async move {
            db.write_then(
                move |tx| {
                    in_tx.lock().unwrap().push(format!("tx {k}"));
                    let id = tx.insert_notification(&new_notification(k))?;
                    Ok::<_, StorageError>((k, id))
                },
                move |(k, _id)| after.lock().unwrap().push(format!("after {k}")),
            )
            .await
        }));
    }
    for task in tasks {
        task.await.unwrap().unwrap();
    }
    let failed_hook = Arc::clone(&log);
    let failed = db
        .write_then(
            |tx| {
                tx.insert_notification(&new_notification(99))?;
                Err::<(), _>(StorageError::Task("refused".into()))
            },
            move |_| failed_hook.lock().unwrap().push("after failed".into()),
        )
        .await;
    assert!(failed.is_err());
    let log = log.lock().unwrap().clone();
    assert_eq!(log.len(), 12, "{log:?}");
    for pair in log.chunks(2) {
        let k = pair[0]
            .strip_prefix("tx ")
            .expect("a transaction body comes first");
        assert_eq!(pair[1], format!("after {k}"), "{log:?}");
    }
    assert_eq!(
        db.list_notifications(NotificationFilter::default())
            .await
            .unwrap()
            .total,
        6
    );
}

/// `queue_then` takes the writer's queue when it is called, not when its future is first
/// polled (the processor queues the next batch behind the one committing that way), and a
/// future dropped unpolled does not withdraw its write.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queue_then_takes_its_place_in_the_queue_when_called() {
    use std::sync::{Arc, Mutex};
    let db = EventDb::open_in_memory().await.unwrap();
    let order = Arc::new(Mutex::new(Vec::<&str>::new()));
    let (first, dropped, last) = (Arc::clone(&order), Arc::clone(&order), Arc::clone(&order));
    let queued_first = db.queue_then(
        move |tx| {
            first.lock().unwrap().push("queued first");
            tx.set_meta("queued", "first")
        },
        |_| {},
    );
    drop(db.queue_then(
        move |tx| {
            dropped.lock().unwrap().push("queued, never polled");
            tx.set_meta("dropped", "still written")
        },
        |_| {},
    ));
    // asked for after both, awaited before the first: it still runs last
    db.write(move |_tx| {
        last.lock().unwrap().push("written last");
        Ok(())
    })
    .await
    .unwrap();
    queued_first.await.unwrap();
    assert_eq!(
        *order.lock().unwrap(),
        ["queued first", "queued, never polled", "written last"]
    );
    let meta = db
        .read(|r| Ok((r.meta("queued")?, r.meta("dropped")?)))
        .await
        .unwrap();
    assert_eq!(meta, (Some("first".into()), Some("still written".into())));
}

/// A failing reader must not leave its pooled connection inside a read transaction: that
/// connection would keep serving its old snapshot and never see later commits.
#[tokio::test]
async fn a_failed_read_leaves_no_stale_snapshot_behind() {
    let db = EventDb::open_in_memory().await.unwrap();
    for i in 0..12usize {
        let failed = db
            .read(|r| {
                r.list_notifications(&NotificationFilter::default())?;
                Err::<(), _>(StorageError::Task("reader gave up".into()))
            })
            .await;
        assert!(failed.is_err());
        db.write(move |tx| tx.insert_notification(&new_notification(i)))
            .await
            .unwrap();
        let seen = db
            .list_notifications(NotificationFilter::default())
            .await
            .unwrap()
            .total;
        assert_eq!(
            seen,
            i as u64 + 1,
            "a pooled connection read an old snapshot"
        );
    }
}

/// The writer leaves checkpoints to a background thread: the WAL is copied back into the
/// database and restarted while batches keep coming, instead of growing until the writer's
/// own (far higher) backstop threshold.
#[tokio::test]
async fn the_background_checkpointer_keeps_the_wal_small() {
    let db = EventDb::open_in_memory().await.unwrap();
    for round in 0..6usize {
        for batch in 0..5usize {
            db.write(move |tx| {
                for i in 0..200 {
                    tx.insert_notification(&new_notification(round * 10_000 + batch * 1000 + i))?;
                }
                Ok(())
            })
            .await
            .unwrap();
        }
        // a pause, as between bursts of events: the checkpointer catches up
        tokio::time::sleep(std::time::Duration::from_millis(600)).await;
    }
    let size = |suffix: &str| {
        let mut name = db.path().as_os_str().to_owned();
        name.push(suffix);
        std::fs::metadata(name).map(|m| m.len()).unwrap_or(0)
    };
    let (db_bytes, wal_bytes) = (size(""), size("-wal"));
    let logical_bytes: i64 = db
        .read(|r| {
            Ok(r.connection().query_row(
                "SELECT page_count * page_size FROM pragma_page_count(), pragma_page_size()",
                [],
                |row| row.get(0),
            )?)
        })
        .await
        .unwrap();
    let logical_bytes = u64::try_from(logical_bytes).unwrap();
    // Checkpointed: the database file itself holds (nearly) all pages, not just the WAL.
    assert!(
        db_bytes * 10 >= logical_bytes * 9,
        "database file {db_bytes} bytes of {logical_bytes}: never checkpointed?"
    );
    // Restarted: 30 commits rewrote their index pages again and again; a WAL that was
    // never reset would be several times the database by now.
    assert!(
        wal_bytes < logical_bytes,
        "WAL {wal_bytes} bytes vs {logical_bytes} of data: never restarted?"
    );
}

/// Commits that follow each other within `CHECKPOINT_DELAY` share one checkpoint: each
/// checkpoint starts at least that long after the previous one ended, so however slow the
/// machine, no more than `elapsed / CHECKPOINT_DELAY + 1` can have run. (That they copy
/// everything back: `the_background_checkpointer_keeps_the_wal_small`.)
#[tokio::test]
async fn commits_close_together_share_a_checkpoint() {
    let db = EventDb::open_in_memory().await.unwrap();
    let started = std::time::Instant::now();
    let commits = 200u32;
    for i in 0..commits {
        db.write(move |tx| {
            tx.insert_notification(&new_notification(i as usize))
                .map(drop)
        })
        .await
        .unwrap();
    }
    // the last wake-up's checkpoint
    let deadline = started + std::time::Duration::from_secs(30);
    tokio::time::sleep(events_storage::CHECKPOINT_DELAY * 3).await;
    while db.checkpoints_run() == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "no checkpoint ran in 30 s"
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    let elapsed = started.elapsed();
    let run = db.checkpoints_run();
    let most = elapsed.as_millis() / events_storage::CHECKPOINT_DELAY.as_millis() + 1;
    assert!(
        u128::from(run) <= most,
        "{run} checkpoints for {commits} commits in {elapsed:?}: at most {most} if each waits \
         {:?}",
        events_storage::CHECKPOINT_DELAY
    );
}

/// A reader that panics poisons its pooled connection; the pool must throw it away on the
/// next checkout instead of handing it out again (every read after would fail).
#[tokio::test]
async fn a_panicking_reader_does_not_break_the_pool() {
    let db = EventDb::open_in_memory().await.unwrap();
    for _ in 0..6 {
        let panicked = db
            .read(|_| -> Result<(), StorageError> { panic!("reader bug") })
            .await;
        assert!(panicked.is_err());
    }
    db.write(|tx| tx.insert_notification(&new_notification(1)))
        .await
        .unwrap();
    for _ in 0..8 {
        let total = db
            .list_notifications(NotificationFilter::default())
            .await
            .unwrap()
            .total;
        assert_eq!(total, 1);
    }
}

/// A rolled-back transaction and the one after it share their commit number (nothing was
/// committed in between) but never their transaction id, which is what per-transaction
/// caches key on (the delivery outbox's webhook list).
#[tokio::test]
async fn transaction_ids_are_never_shared_even_after_a_rollback() {
    let db = EventDb::open_in_memory().await.unwrap();
    let other = EventDb::open_in_memory().await.unwrap();
    let seen = std::sync::Arc::new(std::sync::Mutex::new(None));
    let record = std::sync::Arc::clone(&seen);
    let failed: Result<(), StorageError> = db
        .write(move |tx| {
            *record.lock().unwrap() = Some((tx.transaction_id(), tx.commit_number()));
            Err(StorageError::Task("rolled back".into()))
        })
        .await;
    assert!(failed.is_err());
    let (failed_id, failed_number) = seen.lock().unwrap().expect("the closure ran");
    let ids = |tx: &mut events_storage::WriteTx<'_>| Ok((tx.transaction_id(), tx.commit_number()));
    let (id, number) = db.write(ids).await.unwrap();
    let (other_id, _) = other.write(ids).await.unwrap();
    assert_eq!(number, failed_number, "nothing committed in between");
    assert_ne!(id, failed_id);
    assert_ne!(
        other_id, id,
        "ids are unique across databases of the process"
    );
    assert_ne!(other_id, failed_id);
}

#[tokio::test]
async fn the_writer_writes_a_commit_in_a_few_wal_writes() {
    // The writer connection goes through events-wal-vfs: a commit of many pages reaches the
    // WAL in a handful of writes, not two per page. Counted on the writer's thread, from the
    // start of the transaction to right after its commit.
    let db = EventDb::open_in_memory().await.unwrap();
    let after = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let seen = std::sync::Arc::clone(&after);
    let before = db
        .write_then(
            |tx| {
                let before = events_wal_vfs::wal_writes_on_this_thread();
                for i in 0..300 {
                    tx.insert_notification(&new_notification(i))?;
                }
                Ok::<_, StorageError>(before)
            },
            move |_| {
                seen.store(
                    events_wal_vfs::wal_writes_on_this_thread(),
                    std::sync::atomic::Ordering::SeqCst,
                );
            },
        )
        .await
        .unwrap();
    let writes = after.load(std::sync::atomic::Ordering::SeqCst) - before;
    assert!(
        (1..=12).contains(&writes),
        "a 300-notification commit took {writes} WAL writes through the VFS"
    );
    let page = db
        .list_notifications(NotificationFilter::default())
        .await
        .unwrap();
    assert_eq!(page.total, 300);
}

/// The checkpointer runs as batch work (events-sched): its wake-up after each commit does not
/// preempt the threads that push the commit's notifications.
#[cfg(target_os = "linux")]
#[tokio::test]
async fn the_checkpointer_thread_is_batch_work() {
    let _db = EventDb::open_in_memory().await.unwrap();
    let checkpointers = || -> Vec<u32> {
        std::fs::read_dir("/proc/self/task")
            .unwrap()
            .flatten()
            .filter(|task| {
                // thread names are cut to 15 bytes: "events-checkpoint" reads "events-checkpoi"
                std::fs::read_to_string(task.path().join("comm"))
                    .is_ok_and(|name| name.trim_end() == "events-checkpoi")
            })
            .filter_map(|task| task.file_name().to_str()?.parse().ok())
            .collect()
    };
    // the thread names itself and sets its policy as it starts; give it a moment
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let policies: Vec<u32> = checkpointers()
            .iter()
            .filter_map(|&tid| events_sched::thread_policy(tid).ok())
            .collect();
        if !policies.is_empty() && policies.iter().all(|&p| p == events_sched::BATCH_POLICY) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "checkpointer policies {policies:?} (none: no checkpointer thread found), want {} \
             (SCHED_BATCH)",
            events_sched::BATCH_POLICY
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

fn current_tid() -> u32 {
    events_sched::current_thread_id().expect("/proc is mounted")
}

/// Every transaction runs on the one writer thread, favoured (`WRITER_NICE`) where the
/// process may raise a priority (as root, in CI) and at the normal priority where it may
/// not; the caller's thread is untouched.
#[tokio::test]
async fn transactions_run_on_one_favoured_writer_thread() {
    let permitted = events_sched::may_favour_threads();
    let caller = current_tid();
    let caller_before = events_sched::thread_nice(caller).unwrap();
    let db = EventDb::open_in_memory().await.unwrap();
    let mut threads = std::collections::BTreeSet::new();
    for i in 0..3 {
        let (tid, name, nice) = db
            .write(move |tx| {
                tx.insert_notification(&new_notification(i))?;
                let tid = current_tid();
                let name = std::thread::current().name().map(str::to_owned);
                Ok((tid, name, events_sched::thread_nice(tid).unwrap()))
            })
            .await
            .unwrap();
        assert_eq!(name.as_deref(), Some("events-writer"));
        if permitted {
            assert_eq!(nice, events_storage::WRITER_NICE, "favoured");
        } else {
            assert_eq!(nice, caller_before, "not permitted: the normal priority");
        }
        threads.insert(tid);
    }
    assert_eq!(threads.len(), 1, "one writer thread: {threads:?}");
    assert_eq!(events_sched::thread_nice(caller).unwrap(), caller_before);
}

/// A write closure runs inside the caller's runtime (as on a blocking-pool thread), so it
/// can reach that runtime with `Handle::current()` and drive a future to the end with a timer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_runs_inside_the_callers_runtime() {
    let db = EventDb::open_in_memory().await.unwrap();
    let caller_runtime = tokio::runtime::Handle::current().id();
    let (runtime, waited) = db
        .write(move |tx| {
            tx.insert_notification(&new_notification(1))?;
            let handle = tokio::runtime::Handle::current();
            let waited = handle.block_on(async {
                tokio::time::sleep(std::time::Duration::from_millis(2)).await;
                5
            });
            Ok((handle.id(), waited))
        })
        .await
        .unwrap();
    assert_eq!(runtime, caller_runtime);
    assert_eq!(waited, 5);
}

/// The writer's thread can be made real-time (the daemon does so with Redis): it then runs
/// round-robin where the process may set that, and where it may not the call says so and
/// the writer keeps its policy; writes go on either way, on the same thread.
#[tokio::test]
async fn the_writer_can_run_real_time_where_permitted() {
    let db = EventDb::open_in_memory().await.unwrap();
    let policy_of_writer = || {
        db.write(|tx| {
            tx.insert_notification(&new_notification(7))?;
            Ok(events_sched::thread_policy(current_tid()).unwrap())
        })
    };
    assert_eq!(
        policy_of_writer().await.unwrap(),
        0,
        "the default policy at first"
    );
    let made = db.make_writer_realtime(1).await;
    let policy = policy_of_writer().await.unwrap();
    match made {
        Ok(()) => assert_eq!(policy, events_sched::REALTIME_POLICY),
        Err(e) => {
            assert!(matches!(e, StorageError::Scheduling(_)), "{e}");
            assert_eq!(policy, 0, "refused: unchanged");
        }
    }
}
