//! Starts the release `events-daemon` on a free port with its own data directory.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

/// How long a daemon may take to exit after `SIGTERM` before it is killed. Generous: under
/// `scripts/bench-instructions` it runs inside valgrind, whose shutdown (writing the profile)
/// takes seconds; a normal daemon exits in well under one.
const STOP_TIMEOUT: Duration = Duration::from_secs(60);

/// A running daemon; stopped with `SIGTERM` on drop (killed if it does not exit in time), so
/// that it shuts down the way an operator stops it and a profiler around it gets to write its
/// output.
#[derive(Debug)]
pub(crate) struct Daemon {
    child: Child,
    pub(crate) base: String,
    pub(crate) addr: std::net::SocketAddr,
    dir: tempfile::TempDir,
}

/// How to start it.
#[derive(Debug, Clone, Default)]
pub(crate) struct DaemonOptions {
    /// Redis transport at this URL; `None` = embedded transport.
    pub(crate) redis_url: Option<String>,
}

fn free_port() -> anyhow::Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").context("finding a free port")?;
    Ok(listener.local_addr()?.port())
}

impl Daemon {
    pub(crate) async fn start(binary: &Path, options: &DaemonOptions) -> anyhow::Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("events-bench-daemon-")
            .tempdir()
            .context("creating the daemon's data directory")?;
        let port = free_port()?;
        let addr: std::net::SocketAddr = ([127, 0, 0, 1], port).into();
        // Benchmarks measure the platform, not the guard rails: no rate limit, no retention
        // job, no stream trimming (MAXLEN ~ would trim entries before they are consumed).
        let mut config = format!(
            "bind = \"{addr}\"\ndata_dir = \"{}\"\n[limits]\nrequests_per_second = 0\n[retention]\nevents_days = 0\n",
            dir.path().display()
        );
        if let Some(url) = &options.redis_url {
            config.push_str(&format!("[redis]\nurl = \"{url}\"\nmaxlen = 0\n"));
        }
        let config_path = dir.path().join("events.toml");
        std::fs::write(&config_path, config).context("writing the daemon config")?;
        let log = std::fs::File::create(dir.path().join("daemon.log"))?;
        let child = Command::new(binary)
            .arg("--config")
            .arg(&config_path)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {}", binary.display()))?;
        let mut daemon = Self {
            child,
            base: format!("http://{addr}"),
            addr,
            dir,
        };
        daemon.wait_ready().await?;
        Ok(daemon)
    }

    async fn wait_ready(&mut self) -> anyhow::Result<()> {
        let client = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = self.child.try_wait()? {
                bail!(
                    "events-daemon exited with {status} during start-up:\n{}",
                    self.log_tail()
                );
            }
            if let Ok(response) = client.get(format!("{}/ready", self.base)).send().await
                && response.status().is_success()
            {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("events-daemon not ready within 60 s:\n{}", self.log_tail());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub(crate) fn db_path(&self) -> PathBuf {
        self.dir.path().join("events.db")
    }

    /// SQLite's write-ahead log: [`Self::db_path`] with `-wal` appended.
    pub(crate) fn wal_path(&self) -> PathBuf {
        let mut path = self.db_path().into_os_string();
        path.push("-wal");
        path.into()
    }

    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Last lines of the daemon's stderr, for error messages.
    pub(crate) fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(self.dir.path().join("daemon.log")).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }

    /// Whether the daemon is still running (it must be, after every scenario).
    pub(crate) fn check_alive(&mut self) -> anyhow::Result<()> {
        if let Some(status) = self.child.try_wait()? {
            bail!("events-daemon exited with {status}:\n{}", self.log_tail());
        }
        Ok(())
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait()
            && terminate(self.child.id())
        {
            let deadline = Instant::now() + STOP_TIMEOUT;
            while Instant::now() < deadline {
                if let Ok(Some(_)) = self.child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            eprintln!(
                "events-bench: events-daemon did not exit within {STOP_TIMEOUT:?} of SIGTERM; killing it"
            );
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Sends `SIGTERM` with kill(1) (the workspace forbids `unsafe`, so no libc); whether it was sent.
fn terminate(pid: u32) -> bool {
    Command::new("kill")
        .arg("-TERM")
        .arg(pid.to_string())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success())
}

/// `VmRSS` and `VmHWM` (peak) of a process, in KiB, from `/proc/PID/status`.
pub(crate) fn rss_kib(pid: u32) -> Option<(u64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|n| n.parse::<u64>().ok())
    };
    Some((field("VmRSS:")?, field("VmHWM:")?))
}

/// CPU time (user + system) a process has used so far, in seconds, from `/proc/PID/stat`.
///
/// On a shared machine wall-clock rates understate the code; events per CPU-second of the
/// process that does the work is the steadier figure (10 ms resolution, `CLK_TCK` = 100).
pub(crate) fn cpu_s(pid: u32) -> Option<f64> {
    cpu_split(pid).map(|(user, sys)| user + sys)
}

/// User and kernel CPU seconds of a process: the kernel share tells syscall and wake-up
/// overhead apart from the work itself.
pub(crate) fn cpu_split(pid: u32) -> Option<(f64, f64)> {
    stat_cpu(Path::new(&format!("/proc/{pid}/stat")))
}

/// User and kernel CPU seconds from a `/proc/.../stat` file (a process's or a thread's).
fn stat_cpu(stat_path: &Path) -> Option<(f64, f64)> {
    let stat = std::fs::read_to_string(stat_path).ok()?;
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime / 100.0, stime / 100.0))
}

/// CPU seconds (user, kernel) of each of a process's threads, busiest first: which kind of
/// work (the daemon's runtime threads, on which the storage writer's batches run, or its
/// checkpointer) took the cores, and how much of it in the kernel.
pub(crate) fn thread_cpu(pid: u32) -> Vec<(String, f64, f64)> {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    let mut threads: Vec<(String, f64, f64)> = tasks
        .flatten()
        .filter_map(|task| {
            let dir = task.path();
            let name = std::fs::read_to_string(dir.join("comm")).ok()?;
            let (user, sys) = stat_cpu(&dir.join("stat"))?;
            Some((name.trim().to_owned(), user, sys))
        })
        .filter(|(_, user, sys)| user + sys > 0.0)
        .collect();
    threads.sort_by(|a, b| (b.1 + b.2).total_cmp(&(a.1 + a.2)));
    threads
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rss_of_this_process_is_readable() {
        let (rss, peak) = rss_kib(std::process::id()).expect("/proc is mounted");
        assert!(rss > 0 && peak >= rss);
    }

    #[test]
    fn threads_of_this_process_are_listed_busiest_first() {
        let busy = std::thread::Builder::new()
            .name("bench-spinner".into())
            .spawn(|| {
                let started = std::time::Instant::now();
                let mut x = 0u64;
                while started.elapsed() < Duration::from_millis(300) {
                    x = std::hint::black_box(x.wrapping_add(1));
                }
                // still alive while listed: the caller reads /proc before joining
                std::thread::sleep(Duration::from_millis(500));
                x
            })
            .unwrap();
        std::thread::sleep(Duration::from_millis(400));
        let threads = thread_cpu(std::process::id());
        busy.join().unwrap();
        let spinner = threads
            .iter()
            .find(|(name, ..)| name == "bench-spinner")
            .expect("the spinning thread is listed by its name");
        assert!(spinner.1 + spinner.2 > 0.0);
        assert!(
            threads
                .windows(2)
                .all(|w| w[0].1 + w[0].2 >= w[1].1 + w[1].2),
            "busiest first: {threads:?}"
        );
    }

    #[test]
    fn cpu_time_of_this_process_grows() {
        let before = cpu_s(std::process::id()).expect("/proc is mounted");
        let mut x = 0u64;
        let started = std::time::Instant::now();
        while started.elapsed() < Duration::from_millis(100) {
            x = x.wrapping_add(std::hint::black_box(1));
        }
        let after = cpu_s(std::process::id()).expect("/proc is mounted");
        assert!(after >= before, "{before} -> {after} ({x})");
    }
}
