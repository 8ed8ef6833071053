use std::path::Path;

use proptest::prelude::*;
use rusqlite::{Connection, OpenFlags, params};

use super::*;

/// A file in memory, written through; `fail` makes every write fail.
#[derive(Debug, Default)]
struct MemoryFile {
    bytes: Vec<u8>,
    writes: usize,
    fail: bool,
}

impl MemoryFile {
    fn put(bytes: &mut Vec<u8>, data: &[u8], offset: i64) {
        let offset = offset as usize;
        if bytes.len() < offset + data.len() {
            bytes.resize(offset + data.len(), 0);
        }
        bytes[offset..offset + data.len()].copy_from_slice(data);
    }
}

impl Sink for MemoryFile {
    fn write_at(&mut self, data: &[u8], offset: i64) -> c_int {
        if self.fail {
            return ffi::SQLITE_FULL;
        }
        self.writes += 1;
        Self::put(&mut self.bytes, data, offset);
        ffi::SQLITE_OK
    }
}

/// What the file says once the held bytes are in it.
fn overlaid(file: &MemoryFile, pending: &Pending) -> Vec<u8> {
    let mut bytes = file.bytes.clone();
    if !pending.bytes.is_empty() {
        MemoryFile::put(&mut bytes, &pending.bytes, pending.start);
    }
    bytes
}

const PAGE: usize = 512;
const FRAME: usize = FRAME_HEADER_BYTES + PAGE;
const WAL_HEADER: usize = 32;

fn frame_header(commit: bool, fill: u8) -> Vec<u8> {
    let mut header = vec![fill; FRAME_HEADER_BYTES];
    header[4..8].copy_from_slice(&u32::from(commit).to_be_bytes());
    header
}

/// Writes one frame the way SQLite does (header, then page) to both the model and `pending`.
fn write_frame(
    pending: &mut Pending,
    file: &mut MemoryFile,
    model: &mut Vec<u8>,
    index: usize,
    commit: bool,
    fill: u8,
) {
    let offset = (WAL_HEADER + index * FRAME) as i64;
    let header = frame_header(commit, fill);
    let page = vec![fill; PAGE];
    assert_eq!(pending.write(&header, offset, file), ffi::SQLITE_OK);
    MemoryFile::put(model, &header, offset);
    let page_offset = offset + FRAME_HEADER_BYTES as i64;
    assert_eq!(pending.write(&page, page_offset, file), ffi::SQLITE_OK);
    MemoryFile::put(model, &page, page_offset);
}

/// A WAL with its header written (straight through: nothing was written before it), and the
/// written-through model of the same file.
fn with_wal_header() -> (Pending, MemoryFile, Vec<u8>) {
    let mut pending = Pending::new();
    let mut file = MemoryFile::default();
    let mut model = Vec::new();
    assert_eq!(
        pending.write(&[0; WAL_HEADER], 0, &mut file),
        ffi::SQLITE_OK
    );
    MemoryFile::put(&mut model, &[0; WAL_HEADER], 0);
    assert_eq!(file.writes, 1);
    (pending, file, model)
}

#[test]
fn a_transaction_reaches_the_file_with_its_commit_frame() {
    let (mut pending, mut file, mut model) = with_wal_header();
    for index in 0..9 {
        write_frame(
            &mut pending,
            &mut file,
            &mut model,
            index,
            false,
            index as u8,
        );
        assert_eq!(
            file.writes, 1,
            "frame {index} of an open transaction is held"
        );
    }
    write_frame(&mut pending, &mut file, &mut model, 9, true, 9);
    assert_eq!(
        file.writes, 3,
        "the commit frame's header takes everything before it, its page follows at once"
    );
    assert!(pending.bytes.is_empty());
    assert_eq!(file.bytes, model);
    // The next transaction appends again, held until its own commit frame.
    write_frame(&mut pending, &mut file, &mut model, 10, false, 10);
    assert_eq!(file.writes, 3);
    write_frame(&mut pending, &mut file, &mut model, 11, true, 11);
    assert_eq!(file.writes, 5);
    assert_eq!(file.bytes, model);
}

#[test]
fn a_rewritten_commit_header_goes_straight_to_the_file() {
    // SQLite's checksum rewrite: read a frame, write its header back, frame after frame;
    // the last header carries the commit mark and no page follows it.
    let (mut pending, mut file, mut model) = with_wal_header();
    for index in 0..3 {
        write_frame(&mut pending, &mut file, &mut model, index, index == 2, 1);
    }
    for index in 0..3 {
        assert_eq!(pending.flush(&mut file), ffi::SQLITE_OK); // xRead
        let offset = (WAL_HEADER + index * FRAME) as i64;
        let header = frame_header(index == 2, 0xee);
        assert_eq!(pending.write(&header, offset, &mut file), ffi::SQLITE_OK);
        MemoryFile::put(&mut model, &header, offset);
        assert!(pending.bytes.is_empty(), "header {index} was held");
    }
    assert_eq!(file.bytes, model);
}

#[test]
fn a_failed_write_keeps_the_held_bytes_and_reports_the_error() {
    let (mut pending, mut file, mut model) = with_wal_header();
    write_frame(&mut pending, &mut file, &mut model, 0, false, 1);
    file.fail = true;
    let offset = (WAL_HEADER + FRAME) as i64;
    assert_eq!(
        pending.write(&frame_header(true, 2), offset, &mut file),
        ffi::SQLITE_FULL,
        "the commit frame's header reports the failed write"
    );
    // SQLite gives up the transaction here; were it to go on, the page is held behind the
    // header, in order.
    let page_offset = offset + FRAME_HEADER_BYTES as i64;
    assert_eq!(
        pending.write(&[2; PAGE], page_offset, &mut file),
        ffi::SQLITE_FULL
    );
    assert_eq!(
        file.bytes.len(),
        WAL_HEADER,
        "nothing of the transaction reached the file"
    );
    assert!(!pending.bytes.is_empty(), "held bytes are kept for a retry");
    // A read (flush) fails as long as the file does, then succeeds and writes them.
    assert_eq!(pending.flush(&mut file), ffi::SQLITE_FULL);
    file.fail = false;
    assert_eq!(pending.flush(&mut file), ffi::SQLITE_OK);
    MemoryFile::put(&mut model, &frame_header(true, 2), offset);
    MemoryFile::put(&mut model, &[2; PAGE], page_offset);
    assert_eq!(file.bytes, model);
}

#[test]
fn size_and_truncate_answer_as_if_written_through() {
    let (mut pending, mut file, mut model) = with_wal_header();
    for index in 0..4 {
        write_frame(&mut pending, &mut file, &mut model, index, false, 3);
    }
    assert_eq!(pending.size(file.bytes.len() as i64), model.len() as i64);
    let cut = (WAL_HEADER + 2 * FRAME + 10) as i64;
    pending.truncate(cut);
    file.bytes.truncate(cut as usize);
    model.truncate(cut as usize);
    assert_eq!(overlaid(&file, &pending), model);
    assert_eq!(pending.size(file.bytes.len() as i64), cut);
}

#[derive(Debug, Clone)]
enum Op {
    /// Append the next frame, committing or not.
    Frame { commit: bool, fill: u8 },
    /// Rewrite a page of an earlier frame of the open transaction.
    RewritePage { frame: usize, fill: u8 },
    /// Rewrite an earlier frame's header (the checksum pass).
    RewriteHeader { frame: usize, commit: bool },
    /// Roll back to an earlier frame count (the next frame is written there).
    Rollback { frames: usize },
    /// A read or sync of the WAL.
    Flush,
    /// Cut the file after this many frames (a WAL reset).
    Truncate { frames: usize },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (any::<bool>(), any::<u8>()).prop_map(|(commit, fill)| Op::Frame { commit, fill }),
        1 => (0usize..40, any::<u8>()).prop_map(|(frame, fill)| Op::RewritePage { frame, fill }),
        1 => (0usize..40, any::<bool>()).prop_map(|(frame, commit)| Op::RewriteHeader { frame, commit }),
        1 => (0usize..40).prop_map(|frames| Op::Rollback { frames }),
        1 => Just(Op::Flush),
        1 => (0usize..40).prop_map(|frames| Op::Truncate { frames }),
    ]
}

proptest! {
    /// Whatever SQLite writes, the file plus the held bytes is the written-through file, and
    /// after the page of a commit frame nothing is held.
    #[test]
    fn held_bytes_never_change_what_the_file_says(ops in proptest::collection::vec(op(), 1..120)) {
        let (mut pending, mut file, mut model) = with_wal_header();
        let mut next = 0usize;
        for op in ops {
            match op {
                Op::Frame { commit, fill } => {
                    write_frame(&mut pending, &mut file, &mut model, next, commit, fill);
                    next += 1;
                    if commit {
                        prop_assert!(pending.bytes.is_empty(), "a commit frame left bytes held");
                        prop_assert_eq!(&file.bytes, &model);
                    }
                }
                Op::RewritePage { frame, fill } if frame < next => {
                    let offset = (WAL_HEADER + frame * FRAME + FRAME_HEADER_BYTES) as i64;
                    prop_assert_eq!(pending.write(&[fill; PAGE], offset, &mut file), ffi::SQLITE_OK);
                    MemoryFile::put(&mut model, &[fill; PAGE], offset);
                }
                Op::RewriteHeader { frame, commit } if frame < next => {
                    prop_assert_eq!(pending.flush(&mut file), ffi::SQLITE_OK);
                    let offset = (WAL_HEADER + frame * FRAME) as i64;
                    let header = frame_header(commit, 0xaa);
                    prop_assert_eq!(pending.write(&header, offset, &mut file), ffi::SQLITE_OK);
                    MemoryFile::put(&mut model, &header, offset);
                    if commit {
                        prop_assert!(pending.bytes.is_empty(), "a rewritten commit header was held");
                    }
                }
                Op::Rollback { frames } if frames < next => next = frames,
                Op::Flush => {
                    prop_assert_eq!(pending.flush(&mut file), ffi::SQLITE_OK);
                    prop_assert_eq!(&file.bytes, &model);
                }
                Op::Truncate { frames } => {
                    let size = WAL_HEADER + frames * FRAME;
                    pending.truncate(size as i64);
                    file.bytes.resize(size, 0);
                    model.resize(size, 0);
                    next = next.min(frames);
                }
                _ => {}
            }
            prop_assert_eq!(overlaid(&file, &pending), model.clone());
            prop_assert!(pending.bytes.len() <= CAPACITY);
        }
    }
}

// SQLite through the VFS: a writer of ours, readers and checkpoints of the default VFS.

fn open_writer(path: &Path) -> Connection {
    let vfs = register().expect("register the VFS");
    let conn = Connection::open_with_flags_and_vfs(path, OpenFlags::default(), vfs)
        .expect("open through the VFS");
    let mode: String = conn
        .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
    conn.execute_batch(
        "PRAGMA synchronous = NORMAL;
         PRAGMA wal_autocheckpoint = 0;
         CREATE TABLE IF NOT EXISTS t (id INTEGER PRIMARY KEY, batch INTEGER NOT NULL, body BLOB NOT NULL);
         CREATE INDEX IF NOT EXISTS t_batch ON t (batch);",
    )
    .unwrap();
    conn
}

fn insert_batch(conn: &Connection, batch: i64, rows: usize, bytes: usize) {
    let tx = conn.unchecked_transaction().unwrap();
    {
        let mut insert = tx
            .prepare_cached("INSERT INTO t (batch, body) VALUES (?1, randomblob(?2))")
            .unwrap();
        for _ in 0..rows {
            insert.execute(params![batch, bytes as i64]).unwrap();
        }
    }
    tx.commit().unwrap();
}

/// `rows` rows of `bytes` random bytes in one statement (many pages in one go).
fn insert_rows(conn: &Connection, batch: i64, rows: i64, bytes: i64) {
    conn.execute(
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?2) \
         INSERT INTO t (batch, body) SELECT ?1, randomblob(?3) FROM n",
        params![batch, rows, bytes],
    )
    .unwrap();
}

fn rows_of(conn: &Connection) -> (i64, i64) {
    conn.query_row("SELECT count(*), coalesce(sum(batch), 0) FROM t", [], |r| {
        Ok((r.get(0)?, r.get(1)?))
    })
    .unwrap()
}

fn integrity(conn: &Connection) -> String {
    conn.query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap()
}

#[test]
fn every_commit_is_visible_to_other_connections_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.db");
    let writer = open_writer(&path);
    let reader = Connection::open(&path).unwrap();
    let checkpointer = Connection::open(&path).unwrap();
    let (mut count, mut sum) = (0i64, 0i64);
    // Small commits, one above the held capacity, and checkpoints that make the writer
    // restart the WAL from its beginning (a write that is not an append).
    for (batch, rows, bytes) in [
        (1, 1, 10),
        (2, 5, 3000),
        (3, 1200, 1000),
        (4, 3, 100),
        (5, 40, 4000),
    ] {
        insert_batch(&writer, batch, rows, bytes);
        count += rows as i64;
        sum += batch * rows as i64;
        assert_eq!(rows_of(&reader), (count, sum), "after batch {batch}");
        if batch % 2 == 0 {
            checkpointer
                .query_row("PRAGMA wal_checkpoint(RESTART)", [], |_| Ok(()))
                .unwrap();
        }
    }
    assert_eq!(integrity(&reader), "ok");
}

#[test]
fn spills_and_rollbacks_inside_a_transaction_leave_the_right_rows() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.db");
    let writer = open_writer(&path);
    // A tiny cache makes SQLite write pages into the WAL before the commit (spills), and
    // read them back from it.
    writer.execute_batch("PRAGMA cache_size = 10").unwrap();
    let reader = Connection::open(&path).unwrap();
    insert_batch(&writer, 1, 10, 100);

    let tx = writer.unchecked_transaction().unwrap();
    insert_rows(&tx, 2, 300, 2000);
    tx.execute_batch("SAVEPOINT s").unwrap();
    insert_rows(&tx, 99, 200, 2000);
    tx.execute_batch("ROLLBACK TO s; RELEASE s").unwrap();
    assert_eq!(
        rows_of(&reader),
        (10, 10),
        "nothing of the open transaction is visible"
    );
    tx.commit().unwrap();
    assert_eq!(rows_of(&reader), (310, 10 + 600));

    // A whole transaction rolled back, then one committed at the same WAL position.
    let tx = writer.unchecked_transaction().unwrap();
    insert_rows(&tx, 7, 100, 3000);
    tx.rollback().unwrap();
    insert_batch(&writer, 3, 2, 10);
    assert_eq!(rows_of(&reader), (312, 616));
    assert_eq!(integrity(&reader), "ok");
}

#[test]
fn a_crash_after_commits_loses_none_of_them() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.db");
    let writer = open_writer(&path);
    for batch in 1..=20 {
        insert_batch(&writer, batch, 25, 500);
    }
    // The process "dies": the handle is never closed, so nothing held could be written on
    // the way out. A copy of the files (no shared memory: recovery reads the WAL) must hold
    // every commit.
    let copy = dir.path().join("copy");
    std::fs::create_dir(&copy).unwrap();
    std::fs::copy(&path, copy.join("t.db")).unwrap();
    std::fs::copy(dir.path().join("t.db-wal"), copy.join("t.db-wal")).unwrap();
    std::mem::forget(writer);
    let recovered = Connection::open(copy.join("t.db")).unwrap();
    assert_eq!(rows_of(&recovered), (500, 25 * (1..=20).sum::<i64>()));
    assert_eq!(integrity(&recovered), "ok");
}

#[test]
fn a_commit_of_many_pages_costs_a_few_writes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.db");
    let writer = open_writer(&path);
    insert_batch(&writer, 1, 1, 10);
    let before = wal_writes_on_this_thread();
    // ~100 pages of 4 KiB: two writes per page without this VFS.
    insert_batch(&writer, 2, 100, 3500);
    let writes = wal_writes_on_this_thread() - before;
    assert!(
        (2..=8).contains(&writes),
        "a 100-page commit took {writes} WAL writes"
    );
    let reader = Connection::open(&path).unwrap();
    assert_eq!(rows_of(&reader), (101, 201));
}

#[test]
fn registering_twice_gives_the_same_name() {
    assert_eq!(register().unwrap(), VFS_NAME);
    assert_eq!(register().unwrap(), VFS_NAME);
}
