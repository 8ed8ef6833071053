//! One `events-daemon` child process that the driver can kill, pause and restart.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

/// How long a (re)started daemon may take to answer `/health` on a busy 2-core machine.
const START_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a SIGTERM may take before the driver kills the daemon.
const STOP_TIMEOUT: Duration = Duration::from_secs(20);

/// A daemon child process with everything needed to start it again identically.
#[derive(Debug)]
pub(crate) struct Daemon {
    /// `a` or `b`, for the report and the log file name.
    pub(crate) name: &'static str,
    bin: PathBuf,
    port: u16,
    args: Vec<OsString>,
    log_path: PathBuf,
    child: Option<Child>,
    http: reqwest::Client,
}

impl Daemon {
    /// A daemon that will listen on `port` and log (appending, across restarts) to
    /// `log_dir/daemon-{name}.log`; not started yet.
    pub(crate) fn new(
        name: &'static str,
        bin: &Path,
        port: u16,
        args: Vec<OsString>,
        log_dir: &Path,
        http: reqwest::Client,
    ) -> Self {
        Self {
            name,
            bin: bin.to_owned(),
            port,
            args,
            log_path: log_dir.join(format!("daemon-{name}.log")),
            child: None,
            http,
        }
    }

    /// `http://127.0.0.1:PORT`.
    pub(crate) fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Starts the process and waits until `/health` answers 200.
    pub(crate) async fn start(&mut self) -> anyhow::Result<()> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log_path)
            .with_context(|| format!("opening {}", self.log_path.display()))?;
        let child = Command::new(&self.bin)
            .arg("--bind")
            .arg(format!("127.0.0.1:{}", self.port))
            .args(&self.args)
            .env_remove("EVENTS_CONFIG")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .with_context(|| format!("spawning {}", self.bin.display()))?;
        self.child = Some(child);
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                self.child = None;
                bail!(
                    "daemon {} exited during start with {status}; see {}",
                    self.name,
                    self.log_path.display()
                );
            }
            let health = self
                .http
                .get(format!("{}/health", self.url()))
                .timeout(Duration::from_secs(2))
                .send()
                .await;
            if matches!(health, Ok(ref response) if response.status().is_success()) {
                return Ok(());
            }
            if Instant::now() >= deadline {
                bail!(
                    "daemon {} did not answer /health within {START_TIMEOUT:?}; see {}",
                    self.name,
                    self.log_path.display()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// SIGKILL: no shutdown, the batch in flight is neither committed nor acked.
    pub(crate) fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Sends `signal` (`STOP`, `CONT`, `TERM`) with kill(1) — the workspace forbids `unsafe`,
    /// so no libc.
    pub(crate) fn signal(&self, signal: &str) -> anyhow::Result<()> {
        let pid = self
            .child
            .as_ref()
            .map(Child::id)
            .with_context(|| format!("daemon {} is not running", self.name))?;
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(pid.to_string())
            .status()
            .context("running kill(1)")?;
        if !status.success() {
            bail!("kill -{signal} {pid} failed with {status}");
        }
        Ok(())
    }

    /// SIGTERM and wait for a clean exit; kills it if it takes longer than 20 s.
    /// Returns whether it exited by itself.
    pub(crate) fn terminate(&mut self) -> bool {
        if self.signal("TERM").is_err() {
            self.kill();
            return false;
        }
        let Some(mut child) = self.child.take() else {
            return false;
        };
        let deadline = Instant::now() + STOP_TIMEOUT;
        loop {
            if let Ok(Some(_)) = child.try_wait() {
                return true;
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        // SIGKILL also ends a stopped (SIGSTOP) process, so this never leaves one behind.
        self.kill();
    }
}
