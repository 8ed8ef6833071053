//! Scheduling policy for the daemon's background threads.
//!
//! The storage layer checkpoints its write-ahead log on a thread of its own, woken after
//! every commit. On a small machine that wake-up competed for the cores with the work the
//! commit had just made possible — the push of the new notification to its WebSocket
//! clients, the next read from the stream — and, being a fresh wake-up, the scheduler let it
//! run first. Marked as batch work (`SCHED_BATCH`) the thread keeps its full, fair share of
//! the CPU under load (so it keeps up and the WAL stays small), but its wake-ups do not
//! preempt running threads (docs/benchmarks.md, session 24: emit → WebSocket p50 lower in
//! every alternating pair of runs on the shared two-core host, by up to 1.5 ms, e2e
//! unchanged or better, the WAL no larger). A lower priority (`nice`) was tried first: it starved the checkpointer under
//! full load, and as only one checkpoint can run at a time the writer's own backstop
//! checkpoint could not run either — the WAL grew to 1.8 GB.
//!
//! What this is not: a priority scheme or a thread pool. It changes how the kernel treats
//! the calling thread and nothing else; on systems without `SCHED_BATCH` it reports
//! [`std::io::ErrorKind::Unsupported`] and the caller carries on as before.

use std::io;

/// Marks the calling thread as batch work (`SCHED_BATCH`, Linux): the same share of the CPU
/// as other threads of its niceness, but its wake-ups do not preempt running threads.
///
/// Unprivileged threads may switch between the default policy and this one, so the call
/// fails only on other systems, or under a security policy that forbids changing the
/// scheduling policy at all; callers treat an error as "keeps the default policy".
pub fn mark_current_thread_as_batch() -> io::Result<()> {
    #[cfg(target_os = "linux")]
    {
        let param = libc::sched_param { sched_priority: 0 };
        // SAFETY: `param` is a valid, initialised `sched_param` that outlives the call, and
        // pid 0 names the calling thread (Linux applies policies per thread).
        let rc = unsafe { libc::sched_setscheduler(0, libc::SCHED_BATCH, &param) };
        if rc == 0 {
            Ok(())
        } else {
            Err(io::Error::last_os_error())
        }
    }
    #[cfg(not(target_os = "linux"))]
    {
        Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "SCHED_BATCH is a Linux scheduling policy",
        ))
    }
}

/// The scheduling policy of a thread of this process as `/proc` reports it (`policy`, field
/// 41 of `/proc/self/task/<tid>/stat`: 0 = default, 3 = batch), for tests and diagnostics.
pub fn thread_policy(tid: u32) -> io::Result<u32> {
    let stat = std::fs::read_to_string(format!("/proc/self/task/{tid}/stat"))?;
    let invalid = || io::Error::new(io::ErrorKind::InvalidData, "unexpected /proc stat format");
    // Fields after the parenthesised command name start at field 3.
    let rest = &stat[stat.rfind(')').ok_or_else(invalid)? + 2..];
    rest.split_whitespace()
        .nth(41 - 3)
        .and_then(|field| field.parse().ok())
        .ok_or_else(invalid)
}

/// `SCHED_BATCH` as [`thread_policy`] reports it.
pub const BATCH_POLICY: u32 = 3;

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    /// The calling thread's id, from `/proc/thread-self` (a link to `<pid>/task/<tid>`).
    fn current_tid() -> u32 {
        let link = std::fs::read_link("/proc/thread-self").expect("/proc is mounted");
        link.file_name()
            .and_then(|name| name.to_str())
            .and_then(|tid| tid.parse().ok())
            .expect("a thread id")
    }

    #[test]
    fn only_the_calling_thread_becomes_batch_work() {
        let main_tid = current_tid();
        let before = thread_policy(main_tid).unwrap();
        let worker = std::thread::spawn(|| {
            let tid = current_tid();
            assert_eq!(thread_policy(tid).unwrap(), 0, "default policy at first");
            mark_current_thread_as_batch().unwrap();
            thread_policy(tid).unwrap()
        });
        assert_eq!(worker.join().unwrap(), BATCH_POLICY);
        assert_eq!(
            thread_policy(main_tid).unwrap(),
            before,
            "other threads untouched"
        );
    }
}
