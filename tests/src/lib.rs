//! Cross-crate and whole-daemon tests of event-platform (`events-e2e`).
//!
//! The library holds [`DaemonProcess`]: the real `events-daemon` binary started on a free
//! port with a private data directory, for tests that drive it over HTTP, WebSocket and
//! SSE exactly as users do. It is not for unit tests of one crate (those live with the
//! crate).
//!
//! The binary is found next to the test executable (`target/<profile>/events-daemon`), which
//! `cargo test --workspace` / `cargo nextest run --workspace` build along with the tests; set
//! `EVENTS_DAEMON_BIN` to use another one.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// How long a daemon may take to answer `/health` after spawning.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// How long [`DaemonProcess::stop`] waits after SIGTERM before giving up.
const STOP_TIMEOUT: Duration = Duration::from_secs(20);

/// The path of the `events-daemon` binary to test.
///
/// # Panics
/// If it is not built, with the command that builds it.
pub fn daemon_binary() -> PathBuf {
    if let Some(path) = std::env::var_os("EVENTS_DAEMON_BIN") {
        return PathBuf::from(path);
    }
    let exe = std::env::current_exe().expect("current test executable");
    // target/<profile>/deps/<test>-<hash> → target/<profile>/events-daemon
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("test executable inside target/<profile>/deps");
    let path = profile_dir.join(format!("events-daemon{}", std::env::consts::EXE_SUFFIX));
    assert!(
        path.exists(),
        "{} not found: build it with `cargo build -p events-daemon` (or run the tests with `cargo test --workspace`), \
         or point EVENTS_DAEMON_BIN at a binary",
        path.display()
    );
    path
}

/// A port nobody listens on right now (the OS picks it; released before returning).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free local port")
}

/// How to start a daemon.
#[derive(Debug, Default, Clone)]
pub struct DaemonBuilder {
    args: Vec<String>,
    env: Vec<(String, String)>,
    config: Option<String>,
    data_dir: Option<PathBuf>,
}

impl DaemonBuilder {
    /// An extra command-line argument.
    pub fn arg(mut self, arg: impl Into<String>) -> Self {
        self.args.push(arg.into());
        self
    }

    /// An environment variable for the daemon (e.g. `EVENTS_LIMITS__REQUESTS_PER_SECOND`).
    pub fn env(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.env.push((key.into(), value.into()));
        self
    }

    /// Redis transport at `url`.
    pub fn redis(self, url: impl Into<String>) -> Self {
        self.arg("--redis-url").arg(url)
    }

    /// A config file with this TOML text (written into the daemon's temp dir).
    pub fn config_toml(mut self, text: impl Into<String>) -> Self {
        self.config = Some(text.into());
        self
    }

    /// Use this data directory instead of a fresh one (it is not deleted afterwards).
    pub fn data_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.data_dir = Some(dir.into());
        self
    }

    /// Spawns the daemon and waits until `/health` answers.
    ///
    /// # Panics
    /// If it exits or does not answer within 30 s, with its log.
    pub fn start(self) -> DaemonProcess {
        let temp = tempfile::tempdir().expect("temp dir for the daemon");
        let data_dir = self
            .data_dir
            .clone()
            .unwrap_or_else(|| temp.path().join("data"));
        let mut daemon = DaemonProcess {
            child: None,
            port: free_port(),
            data_dir,
            temp,
            builder: self,
        };
        daemon.spawn();
        daemon
    }
}

/// A running `events-daemon`; killed on drop.
#[derive(Debug)]
pub struct DaemonProcess {
    child: Option<Child>,
    port: u16,
    data_dir: PathBuf,
    temp: tempfile::TempDir,
    builder: DaemonBuilder,
}

impl DaemonProcess {
    /// How to start one.
    pub fn builder() -> DaemonBuilder {
        DaemonBuilder::default()
    }

    /// A daemon with the embedded transport and no config.
    pub fn start() -> Self {
        Self::builder().start()
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// `ws://127.0.0.1:PORT/ws`.
    pub fn ws_url(&self) -> String {
        format!("ws://127.0.0.1:{}/ws", self.port)
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Its process id (for looking at its threads under `/proc`).
    pub fn pid(&self) -> u32 {
        self.child
            .as_ref()
            .expect("the daemon runs until it is stopped")
            .id()
    }

    /// Its data directory.
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// Everything it logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    fn log_path(&self) -> PathBuf {
        self.temp.path().join("daemon.log")
    }

    fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .expect("daemon log file");
        let mut command = Command::new(daemon_binary());
        command
            .arg("--bind")
            .arg(format!("127.0.0.1:{}", self.port))
            .arg("--data-dir")
            .arg(&self.data_dir)
            .args(&self.builder.args)
            .env_remove("EVENTS_CONFIG")
            .envs(self.builder.env.iter().cloned())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log);
        if let Some(text) = &self.builder.config {
            let path = self.temp.path().join("events.toml");
            std::fs::write(&path, text).expect("writing the daemon config");
            command.arg("--config").arg(path);
        }
        let child = command
            .spawn()
            .unwrap_or_else(|err| panic!("spawning {}: {err}", daemon_binary().display()));
        self.child = Some(child);
        self.wait_healthy();
    }

    fn wait_healthy(&mut self) {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                panic!(
                    "events-daemon exited during start with {status}; log:\n{}",
                    self.log()
                );
            }
            if http_status(self.port, "/health") == Some(200) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "events-daemon did not answer /health within {START_TIMEOUT:?}; log:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Sends SIGTERM and waits for the exit (at most 20 s, then kills it and panics).
    pub fn stop(&mut self) -> ExitStatus {
        self.stop_within(STOP_TIMEOUT).unwrap_or_else(|| {
            panic!(
                "events-daemon did not exit within {STOP_TIMEOUT:?} of SIGTERM; log:\n{}",
                self.log()
            )
        })
    }

    /// Sends SIGTERM and waits up to `limit`; `None` (and the process killed) if it did not exit.
    pub fn stop_within(&mut self, limit: Duration) -> Option<ExitStatus> {
        let mut child = self.child.take()?;
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .status();
        let deadline = Instant::now() + limit;
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGKILL, no shutdown.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again on the same port, data directory, arguments and config.
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }
}

impl Drop for DaemonProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Status code of a plain `GET path` (std only, so it works outside any runtime).
pub fn http_status(port: u16, path: &str) -> Option<u16> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_millis(500)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nhost: 127.0.0.1\r\nconnection: close\r\n\r\n"
    )
    .ok()?;
    let mut head = [0u8; 12];
    stream.read_exact(&mut head).ok()?;
    std::str::from_utf8(&head[9..12]).ok()?.parse().ok()
}
