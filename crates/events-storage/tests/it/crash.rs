//! Crash safety: a child process writing batches is SIGKILLed at random points; after each
//! kill every committed batch is fully present and no batch is partially present.

use std::io::{BufRead, BufReader, Read};
use std::process::{Command, Stdio};
use std::time::Duration;

use events_storage::EventDb;
use rand::Rng;

const ROWS: usize = 200;
const ROUNDS: usize = 5;

/// Runs the writer, kills it after a random number of commits plus a random delay, and
/// returns the last batch it reported as committed.
fn run_and_kill(path: &std::path::Path) -> u64 {
    let mut rng = rand::rng();
    let mut child = Command::new(env!("CARGO_BIN_EXE_storage-crash-writer"))
        .arg(path)
        .arg(ROWS.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn storage-crash-writer");
    let stdout = child.stdout.take().expect("piped stdout");
    let mut lines = BufReader::new(stdout).lines();
    let wanted = rng.random_range(1..=12);
    let mut last = 0;
    for _ in 0..wanted {
        match lines.next() {
            Some(Ok(line)) => last = line.trim().parse().expect("batch number"),
            _ => {
                let mut err = String::new();
                if let Some(mut e) = child.stderr.take() {
                    let _ = e.read_to_string(&mut err);
                }
                panic!("writer stopped early: {err}");
            }
        }
    }
    // Land somewhere inside the next batch (or between batches).
    std::thread::sleep(Duration::from_micros(rng.random_range(0..15_000)));
    child.kill().expect("SIGKILL the writer"); // Child::kill sends SIGKILL on Unix
    // Batches reported before the kill were read from the pipe after the kill too.
    for line in lines.map_while(Result::ok) {
        last = line.trim().parse().expect("batch number");
    }
    let _ = child.wait();
    last
}

async fn check(path: &std::path::Path, reported: u64) -> u64 {
    let db = EventDb::open(path).await.expect("reopen after SIGKILL");
    let (event_batches, notification_batches, processed, meta) = db
        .read(|r| {
            let c = r.connection();
            let grouped = |sql: &str| -> events_storage::Result<Vec<(u64, usize)>> {
                let mut stmt = c.prepare(sql)?;
                let rows = stmt.query_map([], |row| Ok((row.get::<_, i64>(0)? as u64, row.get::<_, i64>(1)? as usize)))?;
                Ok(rows.collect::<Result<_, _>>()?)
            };
            let events = grouped(
                "SELECT json_extract(payload, '$.batch') AS b, count(*) FROM events GROUP BY b ORDER BY b",
            )?;
            let notifications = grouped(
                "SELECT CAST(substr(description, 7) AS INTEGER) AS b, count(*) FROM notifications GROUP BY b ORDER BY b",
            )?;
            let processed: i64 = c.query_row("SELECT count(*) FROM processed_entries WHERE stream = 'crash'", [], |r| r.get(0))?;
            Ok((events, notifications, processed as u64, r.meta("crash_last_batch")?))
        })
        .await
        .unwrap();
    let committed = event_batches.last().map_or(0, |(b, _)| *b);
    assert!(
        committed >= reported,
        "batch {reported} was reported committed but only {committed} is there"
    );
    assert!(
        committed <= reported + 1,
        "at most the batch in flight may be committed unreported"
    );
    let expected: Vec<(u64, usize)> = (1..=committed).map(|b| (b, ROWS)).collect();
    assert_eq!(
        event_batches, expected,
        "every batch has all its event rows, none partial"
    );
    assert_eq!(
        notification_batches, expected,
        "every batch has all its notifications"
    );
    assert_eq!(processed, committed);
    assert_eq!(meta, Some(committed.to_string()).filter(|_| committed > 0));
    let offset = db
        .read(|r| r.consumer_offset("crash", "writer"))
        .await
        .unwrap();
    assert_eq!(offset, Some(format!("{committed}-0")));
    committed
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkilled_writer_leaves_only_whole_batches() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("crash.db");
    let mut previous = 0;
    for round in 0..ROUNDS {
        let p = path.clone();
        let reported = tokio::task::spawn_blocking(move || run_and_kill(&p))
            .await
            .unwrap();
        let committed = check(&path, reported).await;
        assert!(committed > previous, "round {round} made progress");
        previous = committed;
    }
}
