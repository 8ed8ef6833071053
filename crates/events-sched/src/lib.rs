//! Scheduling policy for the daemon's background threads and its storage writer.
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
//! The storage writer is the other side of the same trade ([`favour_current_thread`]): its
//! single thread runs every transaction, so whatever preempts it delays every event behind
//! it. That thread runs at a raised priority for its whole life (`nice` −10 when the process
//! may lower its niceness; docs/benchmarks.md, session 26: latency p50 and p99 lower in every
//! alternating pair, e2e within 0.6 % or better — fewer preemptions of the writer in the
//! phase where the emitter, Redis and the daemon share the two cores). The daemon's
//! processor, which feeds the writer, keeps a smaller raise on its own threads
//! ([`Favoured::keep`]; session 27). Where producers outside the daemon share the cores
//! (Redis), even `nice` −10 left the writer waiting for a core a fifth of the time, so the
//! daemon puts it under the real-time round-robin policy there
//! ([`make_current_thread_realtime`]; session 27: e2e +7–10 %).
//!
//! What this is not: a priority scheme or a thread pool. It changes how the kernel treats
//! the calling thread and nothing else; where a call is not possible (another system, no
//! permission to raise a priority) it reports an error and the caller carries on as before.

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

/// Puts the calling thread under the real-time round-robin policy (`SCHED_RR`, Linux) at
/// `priority` (1 = the lowest real-time priority): it then runs whenever it is runnable,
/// ahead of every thread of the normal policies, and is never preempted by them. For one
/// thread that everything else waits behind and that sleeps whenever it has nothing to do
/// (the storage writer); the kernel still keeps 5 % of every second for the normal threads
/// (`sched_rt_runtime_us`), and one thread can hold one core at most.
///
/// Needs `CAP_SYS_NICE` or an `RLIMIT_RTPRIO` of at least `priority`; without either this
/// returns the permission error and changes nothing.
pub fn make_current_thread_realtime(priority: i32) -> io::Result<()> {
    #[cfg(target_os = "linux")]
    {
        let param = libc::sched_param {
            sched_priority: priority,
        };
        // SAFETY: `param` is a valid, initialised `sched_param` that outlives the call, and
        // pid 0 names the calling thread (Linux applies policies per thread).
        let rc = unsafe { libc::sched_setscheduler(0, libc::SCHED_RR, &param) };
        if rc == 0 {
            Ok(())
        } else {
            Err(io::Error::last_os_error())
        }
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = priority;
        Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "SCHED_RR is set per thread only on Linux here",
        ))
    }
}

/// The calling thread's nice value, now raised to `nice`, until the returned guard is
/// dropped (which puts the previous value back).
///
/// Linux keeps the nice value per thread, so only the calling thread changes. Lowering a
/// nice value needs `CAP_SYS_NICE` or a high enough `RLIMIT_NICE`; without either this
/// returns the permission error and changes nothing. A `nice` at or above the current value
/// changes nothing either (the guard then restores nothing): this raises, never lowers.
pub fn favour_current_thread(nice: i32) -> io::Result<Favoured> {
    let previous = current_thread_nice()?;
    let restore = (nice < previous).then_some(previous);
    if restore.is_some() {
        set_current_thread_nice(nice)?;
    }
    Ok(Favoured {
        restore,
        _not_send: std::marker::PhantomData,
    })
}

/// Whether this process may raise a thread's priority ([`favour_current_thread`] would
/// succeed): probed on a short-lived thread of its own, so no thread of the caller changes.
/// For callers and tests that expect a favoured thread only where one is possible.
pub fn may_favour_threads() -> bool {
    std::thread::spawn(|| {
        current_thread_nice()
            .and_then(|now| set_current_thread_nice(now - 1))
            .is_ok()
    })
    .join()
    .unwrap_or(false)
}

/// A thread favoured by [`favour_current_thread`]; dropping it restores the nice value the
/// thread had before. Not `Send`: it must be dropped on the thread it changed.
#[derive(Debug)]
#[must_use = "dropping the guard restores the priority at once"]
pub struct Favoured {
    restore: Option<i32>,
    _not_send: std::marker::PhantomData<*const ()>,
}

impl Favoured {
    /// The nice value the thread runs at now, `None` if it was not changed.
    pub fn raised_to(&self) -> Option<i32> {
        self.restore.and_then(|_| current_thread_nice().ok())
    }

    /// Keeps the raised priority for the rest of the thread's life: nothing is restored.
    /// For threads that are favoured from their start to their end (a runtime's workers),
    /// where there is no scope to hold the guard in.
    pub fn keep(self) {
        std::mem::forget(self);
    }
}

impl Drop for Favoured {
    fn drop(&mut self) {
        if let Some(previous) = self.restore {
            // Raising a nice value (giving priority back) is always permitted.
            let _ = set_current_thread_nice(previous);
        }
    }
}

#[cfg(target_os = "linux")]
fn current_thread_nice() -> io::Result<i32> {
    // SAFETY: `__errno_location` returns the calling thread's errno slot, valid for the
    // thread's life; `getpriority` reads scheduler state only. -1 is a valid nice value, so
    // errno (cleared first) tells a failure from it.
    let nice = unsafe {
        *libc::__errno_location() = 0;
        libc::getpriority(libc::PRIO_PROCESS, 0)
    };
    let error = io::Error::last_os_error();
    if nice == -1 && error.raw_os_error().is_some_and(|code| code != 0) {
        Err(error)
    } else {
        Ok(nice)
    }
}

#[cfg(target_os = "linux")]
fn set_current_thread_nice(nice: i32) -> io::Result<()> {
    // SAFETY: plain system call; `who` 0 = the calling thread (Linux keeps nice per thread).
    let rc = unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, nice) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

#[cfg(not(target_os = "linux"))]
fn current_thread_nice() -> io::Result<i32> {
    Err(nice_unsupported())
}

#[cfg(not(target_os = "linux"))]
fn set_current_thread_nice(_nice: i32) -> io::Result<()> {
    Err(nice_unsupported())
}

#[cfg(not(target_os = "linux"))]
fn nice_unsupported() -> io::Error {
    io::Error::new(
        io::ErrorKind::Unsupported,
        "per-thread nice values are a Linux feature",
    )
}

/// The calling thread's id (the kernel's, as in `/proc/self/task/<tid>`), for
/// [`thread_nice`] and [`thread_policy`]; read from the `/proc/thread-self` link.
pub fn current_thread_id() -> io::Result<u32> {
    let link = std::fs::read_link("/proc/thread-self")?;
    link.file_name()
        .and_then(|name| name.to_str())
        .and_then(|tid| tid.parse().ok())
        .ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "/proc/thread-self points at {}, not <pid>/task/<tid>",
                    link.display()
                ),
            )
        })
}

/// The nice value of a thread of this process as `/proc` reports it (field 19 of
/// `/proc/self/task/<tid>/stat`), for tests and diagnostics.
pub fn thread_nice(tid: u32) -> io::Result<i32> {
    stat_field(tid, 19)
}

/// The scheduling policy of a thread of this process as `/proc` reports it (`policy`, field
/// 41 of `/proc/self/task/<tid>/stat`: 0 = default, 3 = batch), for tests and diagnostics.
pub fn thread_policy(tid: u32) -> io::Result<u32> {
    stat_field(tid, 41)
}

/// Field `number` (1-based, as `man 5 proc` counts) of `/proc/self/task/<tid>/stat`.
fn stat_field<T: std::str::FromStr>(tid: u32, number: usize) -> io::Result<T> {
    let stat = std::fs::read_to_string(format!("/proc/self/task/{tid}/stat"))?;
    let invalid = || io::Error::new(io::ErrorKind::InvalidData, "unexpected /proc stat format");
    // Fields after the parenthesised command name start at field 3.
    let rest = &stat[stat.rfind(')').ok_or_else(invalid)? + 2..];
    rest.split_whitespace()
        .nth(number - 3)
        .and_then(|field| field.parse().ok())
        .ok_or_else(invalid)
}

/// `SCHED_BATCH` as [`thread_policy`] reports it.
pub const BATCH_POLICY: u32 = 3;

/// `SCHED_RR` as [`thread_policy`] reports it.
pub const REALTIME_POLICY: u32 = 2;

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    fn current_tid() -> u32 {
        current_thread_id().expect("/proc is mounted")
    }

    #[test]
    fn each_thread_has_its_own_id_and_it_names_a_task_of_this_process() {
        let here = current_tid();
        let there = std::thread::spawn(current_tid).join().unwrap();
        assert_ne!(here, there);
        assert!(std::path::Path::new(&format!("/proc/self/task/{here}")).exists());
        assert_eq!(thread_nice(here).unwrap(), current_thread_nice().unwrap());
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

    /// Whether this process may lower a nice value (root, `CAP_SYS_NICE`, `RLIMIT_NICE`):
    /// tried on a throwaway thread.
    #[test]
    fn a_favoured_thread_gets_its_nice_value_back_and_others_are_untouched() {
        let main_tid = current_tid();
        let main_before = thread_nice(main_tid).unwrap();
        let permitted = may_favour_threads();
        let (before, during, after) = std::thread::spawn(move || {
            let tid = current_tid();
            let before = thread_nice(tid).unwrap();
            let guard = favour_current_thread(before - 5);
            let during = thread_nice(tid).unwrap();
            match &guard {
                Ok(guard) => assert_eq!(guard.raised_to(), Some(before - 5)),
                Err(e) => assert!(!permitted, "refused although permitted: {e}"),
            }
            drop(guard);
            (before, during, thread_nice(tid).unwrap())
        })
        .join()
        .unwrap();
        if permitted {
            assert_eq!(during, before - 5, "raised while the guard lives");
        } else {
            assert_eq!(during, before, "a refused raise changes nothing");
        }
        assert_eq!(after, before, "restored when the guard drops");
        assert_eq!(
            thread_nice(main_tid).unwrap(),
            main_before,
            "other threads untouched"
        );
    }

    #[test]
    fn favouring_never_lowers_a_priority() {
        std::thread::spawn(|| {
            let tid = current_tid();
            let before = thread_nice(tid).unwrap();
            let guard = favour_current_thread(before + 3).unwrap();
            assert_eq!(guard.raised_to(), None);
            assert_eq!(thread_nice(tid).unwrap(), before);
            drop(guard);
            assert_eq!(thread_nice(tid).unwrap(), before);
        })
        .join()
        .unwrap();
    }

    #[test]
    fn a_real_time_thread_is_round_robin_or_refused_without_a_change() {
        let main_tid = current_tid();
        let main_before = thread_policy(main_tid).unwrap();
        let (result, policy) = std::thread::spawn(|| {
            let result = make_current_thread_realtime(1);
            (result, thread_policy(current_tid()).unwrap())
        })
        .join()
        .unwrap();
        match result {
            Ok(()) => assert_eq!(policy, REALTIME_POLICY),
            Err(e) => {
                assert_eq!(e.kind(), io::ErrorKind::PermissionDenied, "{e}");
                assert_eq!(policy, 0, "a refused change leaves the default policy");
            }
        }
        assert_eq!(
            thread_policy(main_tid).unwrap(),
            main_before,
            "other threads untouched"
        );
    }

    #[test]
    fn a_kept_favour_outlives_its_guard() {
        let permitted = may_favour_threads();
        let (before, kept) = std::thread::spawn(|| {
            let tid = current_tid();
            let before = thread_nice(tid).unwrap();
            if let Ok(guard) = favour_current_thread(before - 2) {
                guard.keep();
            }
            (before, thread_nice(tid).unwrap())
        })
        .join()
        .unwrap();
        if permitted {
            assert_eq!(kept, before - 2, "kept after the guard is gone");
        } else {
            assert_eq!(kept, before);
        }
    }
}
