//! [`RedisServer`]: one private `redis-server` process per test.

use std::ffi::OsString;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufReader, Read, Seek, SeekFrom, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::thread::sleep;
use std::time::{Duration, Instant};

use tempfile::TempDir;

use crate::resp::{self, Reply};

/// How long a start or restart may take before the helper gives up. Generous on purpose:
/// the CI machine has two cores shared by many test processes, and loading an AOF takes
/// a while.
const DEFAULT_STARTUP_TIMEOUT: Duration = Duration::from_secs(15);
/// How long a graceful stop may take before the process is killed.
const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(10);
/// Fresh ports tried by [`RedisServerBuilder::start`] when another process wins the race
/// for the port between our probe and Redis binding it.
const START_ATTEMPTS: usize = 10;
/// Read/write timeout for [`RedisServer::query`]; commands in tests are small.
const IO_TIMEOUT: Duration = Duration::from_secs(10);
const POLL_INTERVAL: Duration = Duration::from_millis(20);
const LOG_TAIL_LINES: usize = 40;
const INSTALL_HINT: &str =
    "install it with `apt-get install -y redis-server` (scripts/test does this)";
/// Never touch a developer's own Redis.
const REDIS_DEFAULT_PORT: u16 = 6379;

/// Configures a [`RedisServer`] before starting it. Obtained from [`RedisServer::builder`].
///
/// By default the server runs with `--save ''` and `--appendonly no`: nothing is persisted,
/// which is the fastest setting and what most tests want.
#[derive(Debug, Clone)]
pub struct RedisServerBuilder {
    binary: PathBuf,
    aof: bool,
    extra_args: Vec<OsString>,
    startup_timeout: Duration,
}

impl Default for RedisServerBuilder {
    fn default() -> Self {
        Self {
            binary: PathBuf::from("redis-server"),
            aof: false,
            extra_args: Vec::new(),
            startup_timeout: DEFAULT_STARTUP_TIMEOUT,
        }
    }
}

impl RedisServerBuilder {
    /// Turns the append-only file on (`--appendonly yes --appendfsync everysec`), so data
    /// written before [`RedisServer::stop`] — and, barring the last second, before
    /// [`RedisServer::kill`] — is there again after [`RedisServer::restart`].
    pub fn aof(mut self, on: bool) -> Self {
        self.aof = on;
        self
    }

    /// Appends one raw command-line argument (e.g. `"--maxmemory"`, then `"10mb"`). Extra
    /// arguments come after the defaults, so they override them.
    pub fn extra_arg(mut self, arg: impl Into<OsString>) -> Self {
        self.extra_args.push(arg.into());
        self
    }

    /// Uses this `redis-server` executable instead of the one found on `PATH`.
    pub fn binary(mut self, path: impl Into<PathBuf>) -> Self {
        self.binary = path.into();
        self
    }

    /// How long to wait for `PING` on start and restart (default 15 s).
    pub fn startup_timeout(mut self, timeout: Duration) -> Self {
        self.startup_timeout = timeout;
        self
    }

    /// Starts the server on a free loopback port and blocks until it answers `PING`.
    ///
    /// # Panics
    ///
    /// If `redis-server` is not found, the temporary directory cannot be created, or the
    /// server does not come up within the startup timeout (the message then includes the
    /// tail of the server's log).
    pub fn start(self) -> RedisServer {
        let root = tempfile::Builder::new()
            .prefix("events-testkit-redis-")
            .tempdir()
            .unwrap_or_else(|e| panic!("cannot create a temporary directory for redis: {e}"));
        let data_dir = root.path().join("data");
        fs::create_dir(&data_dir)
            .unwrap_or_else(|e| panic!("cannot create {}: {e}", data_dir.display()));
        let log_path = root.path().join("redis.log");

        for _ in 0..START_ATTEMPTS {
            let port = free_port();
            match launch(&self, port, &data_dir, &log_path, Instant::now()) {
                Ok(child) => {
                    return RedisServer {
                        child: Mutex::new(Some(child)),
                        port,
                        settings: self,
                        data_dir,
                        log_path,
                        _root: root,
                    };
                }
                // Another test process took the port between our probe and Redis's bind.
                Err(LaunchError::AddrInUse) => continue,
                Err(LaunchError::Failed(reason)) => panic!(
                    "redis-server on port {port} did not come up: {reason}\n{}",
                    log_tail(&log_path)
                ),
            }
        }
        panic!(
            "redis-server could not bind a free port in {START_ATTEMPTS} attempts\n{}",
            log_tail(&log_path)
        )
    }
}

/// A `redis-server` child process on `127.0.0.1`, with its own temporary data directory.
///
/// Dropping it kills the process (`SIGKILL`) and removes the directory. All methods take
/// `&self`; share it between threads with an `Arc` if a test needs to kill Redis while
/// another thread is talking to it.
#[derive(Debug)]
pub struct RedisServer {
    /// `None` while stopped or killed.
    child: Mutex<Option<Child>>,
    port: u16,
    settings: RedisServerBuilder,
    data_dir: PathBuf,
    log_path: PathBuf,
    /// Holds `data/` and `redis.log`; removed on drop, after the process is gone.
    _root: TempDir,
}

impl RedisServer {
    /// Starts a server with the default settings; see [`RedisServerBuilder::start`].
    ///
    /// # Panics
    ///
    /// If `redis-server` is not on `PATH` or does not come up.
    pub fn start() -> Self {
        Self::builder().start()
    }

    /// A builder for a server with non-default settings (AOF, extra arguments).
    pub fn builder() -> RedisServerBuilder {
        RedisServerBuilder::default()
    }

    /// `redis://127.0.0.1:PORT`. Stays valid across [`restart`](Self::restart).
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// The TCP port; the same for the server's whole life, restarts included.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The server's `--dir` (RDB and AOF files live here); kept across restarts.
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// The server's log file (stdout and stderr of every launch, appended).
    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    /// The process id while the server runs, `None` after [`stop`](Self::stop) or
    /// [`kill`](Self::kill).
    pub fn pid(&self) -> Option<u32> {
        let mut child = self.lock();
        if running(&mut child) {
            child.as_ref().map(Child::id)
        } else {
            None
        }
    }

    /// Whether the process is alive (it may have exited on its own, e.g. after `SHUTDOWN`).
    pub fn is_running(&self) -> bool {
        running(&mut self.lock())
    }

    /// Stops the server gracefully (`SHUTDOWN NOSAVE`, which still flushes the AOF when it
    /// is on) and waits for the process to exit; kills it if it does not exit within 10 s.
    /// Does nothing if the server is not running.
    pub fn stop(&self) {
        shutdown(&mut self.lock(), self.port);
    }

    /// Kills the server with `SIGKILL`, simulating a crash, and reaps the process.
    /// Does nothing if the server is not running.
    pub fn kill(&self) {
        kill(&mut self.lock());
    }

    /// Starts the server again on the same port with the same data directory and blocks
    /// until it answers `PING`. A running server is stopped gracefully first.
    ///
    /// # Panics
    ///
    /// If the server does not come up within the startup timeout — including when
    /// another process took the port while the server was down.
    pub fn restart(&self) {
        let mut child = self.lock();
        shutdown(&mut child, self.port);
        let started = Instant::now();
        loop {
            match launch(
                &self.settings,
                self.port,
                &self.data_dir,
                &self.log_path,
                started,
            ) {
                Ok(new_child) => {
                    *child = Some(new_child);
                    return;
                }
                // The old socket may linger briefly, or a neighbour may hold the port for a
                // moment; keep trying the same port until the startup timeout.
                Err(LaunchError::AddrInUse)
                    if started.elapsed() < self.settings.startup_timeout =>
                {
                    sleep(Duration::from_millis(100));
                }
                Err(LaunchError::AddrInUse) => panic!(
                    "redis-server could not be restarted: port {} is taken by another process\n{}",
                    self.port,
                    log_tail(&self.log_path)
                ),
                Err(LaunchError::Failed(reason)) => panic!(
                    "redis-server on port {} did not come back up: {reason}\n{}",
                    self.port,
                    log_tail(&self.log_path)
                ),
            }
        }
    }

    /// Sends one command over a fresh connection and returns the raw reply; error replies
    /// are returned as [`Reply::Error`], not panicked on.
    ///
    /// # Panics
    ///
    /// If the server cannot be reached or the reply cannot be read within 10 s.
    pub fn query(&self, args: &[&str]) -> Reply {
        round_trip(self.port, args, IO_TIMEOUT).unwrap_or_else(|e| {
            panic!(
                "redis command {args:?} to port {} failed: {e}\n{}",
                self.port,
                log_tail(&self.log_path)
            )
        })
    }

    /// Sends several commands in a single write on one fresh connection and returns their
    /// replies in order. Redis reads them as one buffer and runs them back to back, before
    /// any other client's command — what a client's pipeline looks like at its best, made
    /// deterministic (a client library may split a pipeline over several writes).
    ///
    /// # Panics
    ///
    /// If the server cannot be reached or a reply cannot be read within 10 s.
    pub fn query_in_one_write(&self, commands: &[Vec<&str>]) -> Vec<Reply> {
        pipelined_round_trip(self.port, commands, IO_TIMEOUT).unwrap_or_else(|e| {
            panic!(
                "redis pipeline of {} commands to port {} failed: {e}\n{}",
                commands.len(),
                self.port,
                log_tail(&self.log_path)
            )
        })
    }

    /// Sends one command and returns the reply as text, for assertions such as
    /// `assert_eq!(redis.command(&["XLEN", "events"]), "3")`. Integers render as decimal,
    /// nil as `(nil)`, arrays one element per line (see [`Reply`]'s `Display`).
    ///
    /// # Panics
    ///
    /// If the server cannot be reached or answers with an error reply.
    pub fn command(&self, args: &[&str]) -> String {
        match self.query(args) {
            Reply::Error(message) => panic!("redis command {args:?} failed: {message}"),
            reply => reply.to_string(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Option<Child>> {
        // A panic elsewhere while holding the lock leaves the `Option<Child>` consistent.
        self.child.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let child = self.child.get_mut().unwrap_or_else(PoisonError::into_inner);
        kill(child);
    }
}

enum LaunchError {
    /// Redis could not bind the port: some other process holds it.
    AddrInUse,
    /// Anything else; the string says what.
    Failed(String),
}

/// Spawns `redis-server` on `port` and waits until it answers `PING` as itself, or until
/// the startup timeout counted from `started`.
fn launch(
    settings: &RedisServerBuilder,
    port: u16,
    data_dir: &Path,
    log_path: &Path,
    started: Instant,
) -> Result<Child, LaunchError> {
    let mut log = OpenOptions::new()
        .create(true)
        .append(true)
        .open(log_path)
        .map_err(|e| LaunchError::Failed(format!("cannot open {}: {e}", log_path.display())))?;
    // Mark each launch, so the log shows which output belongs to which start.
    let _ = writeln!(
        log,
        "### events-testkit: launching {} on port {port}",
        settings.binary.display()
    );
    let log_offset = log.metadata().map(|m| m.len()).unwrap_or(0);
    let stderr = log
        .try_clone()
        .map_err(|e| LaunchError::Failed(format!("cannot open {}: {e}", log_path.display())))?;

    let mut command = Command::new(&settings.binary);
    command
        .arg("--bind")
        .arg("127.0.0.1")
        .arg("--port")
        .arg(port.to_string())
        .arg("--dir")
        .arg(data_dir)
        .arg("--save")
        .arg("")
        .arg("--daemonize")
        .arg("no");
    if settings.aof {
        command.args(["--appendonly", "yes", "--appendfsync", "everysec"]);
    } else {
        command.args(["--appendonly", "no"]);
    }
    command
        .args(&settings.extra_args)
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(stderr);

    let mut child = match command.spawn() {
        Ok(child) => child,
        Err(e) if e.kind() == io::ErrorKind::NotFound => panic!(
            "{} not found on PATH: {INSTALL_HINT}",
            settings.binary.display()
        ),
        Err(e) => {
            return Err(LaunchError::Failed(format!(
                "cannot run {}: {e}",
                settings.binary.display()
            )));
        }
    };

    loop {
        if let Some(error) = exited(&mut child, log_path, log_offset) {
            kill(&mut Some(child));
            return Err(error);
        }
        match probe(port, child.id()) {
            Probe::Ours => return Ok(child),
            Probe::Foreign => {
                // Our server cannot have bound the port; it is about to exit, if it has not.
                kill(&mut Some(child));
                return Err(LaunchError::AddrInUse);
            }
            Probe::NotReady => {}
        }
        if started.elapsed() >= settings.startup_timeout {
            // A probe may have spent its timeout on a socket that is not ours while our
            // server gave up on the port: report that as such, not as a slow start.
            if let Some(error) = exited(&mut child, log_path, log_offset) {
                kill(&mut Some(child));
                return Err(error);
            }
            kill(&mut Some(child));
            return Err(LaunchError::Failed(format!(
                "no PONG within {:?}",
                settings.startup_timeout
            )));
        }
        sleep(POLL_INTERVAL);
    }
}

/// `Some(error)` if the child has exited: [`LaunchError::AddrInUse`] when its output since
/// `log_offset` says the port was taken.
fn exited(child: &mut Child, log_path: &Path, log_offset: u64) -> Option<LaunchError> {
    match child.try_wait() {
        Ok(None) => None,
        Ok(Some(status)) => {
            let output = read_from(log_path, log_offset);
            Some(if output.contains("Address already in use") {
                LaunchError::AddrInUse
            } else {
                LaunchError::Failed(format!(
                    "redis-server exited with {status} before answering PING"
                ))
            })
        }
        Err(e) => Some(LaunchError::Failed(format!(
            "cannot query the redis-server process: {e}"
        ))),
    }
}

enum Probe {
    /// Our child answered `PING`.
    Ours,
    /// A Redis answered, but with another process id: somebody else holds the port.
    Foreign,
    /// Nothing answered yet, or Redis is still loading its data.
    NotReady,
}

/// `PING`, then `INFO server` to compare `process_id` with our child's pid.
fn probe(port: u16, pid: u32) -> Probe {
    // Short: a socket that accepts but never answers must not stall the start for long.
    let timeout = Duration::from_secs(1);
    match round_trip(port, &["PING"], timeout) {
        Ok(Reply::Simple(pong)) if pong == "PONG" => {}
        _ => return Probe::NotReady,
    }
    let Ok(info) = round_trip(port, &["INFO", "server"], timeout) else {
        return Probe::NotReady;
    };
    let reported = info.as_text().and_then(|text| {
        text.lines()
            .find_map(|line| line.strip_prefix("process_id:"))
            .and_then(|id| id.trim().parse::<u32>().ok())
    });
    match reported {
        Some(id) if id == pid => Probe::Ours,
        Some(_) => Probe::Foreign,
        None => Probe::NotReady,
    }
}

/// One command over a fresh connection.
fn round_trip(port: u16, args: &[&str], timeout: Duration) -> io::Result<Reply> {
    let mut replies = pipelined_round_trip(port, &[args.to_vec()], timeout)?;
    replies
        .pop()
        .ok_or_else(|| io::Error::new(io::ErrorKind::UnexpectedEof, "no reply"))
}

fn pipelined_round_trip(
    port: u16,
    commands: &[Vec<&str>],
    timeout: Duration,
) -> io::Result<Vec<Reply>> {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let mut stream = TcpStream::connect_timeout(&addr, timeout)?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    let request: Vec<u8> = commands
        .iter()
        .flat_map(|args| resp::encode(args))
        .collect();
    stream.write_all(&request)?;
    let mut reader = BufReader::new(stream);
    commands
        .iter()
        .map(|_| resp::read_reply(&mut reader))
        .collect()
}

/// Whether the child exists and has not exited; reaps it (sets `None`) if it has.
fn running(child: &mut Option<Child>) -> bool {
    let alive = child
        .as_mut()
        .is_some_and(|c| matches!(c.try_wait(), Ok(None)));
    if !alive {
        *child = None;
    }
    alive
}

/// Graceful stop: `SHUTDOWN NOSAVE`, wait, then kill if it lingers.
fn shutdown(child: &mut Option<Child>, port: u16) {
    if !running(child) {
        return;
    }
    // The server closes the connection instead of replying when the shutdown succeeds, so
    // the result carries no information; the wait below decides.
    let _ = round_trip(port, &["SHUTDOWN", "NOSAVE"], Duration::from_secs(2));
    let deadline = Instant::now() + SHUTDOWN_TIMEOUT;
    while Instant::now() < deadline {
        if !running(child) {
            return;
        }
        sleep(POLL_INTERVAL);
    }
    kill(child);
}

/// `SIGKILL` and reap; fine to call on an exited or absent child.
fn kill(child: &mut Option<Child>) {
    if let Some(mut c) = child.take() {
        // `kill` fails only if the process has already exited; `wait` reaps it either way.
        let _ = c.kill();
        let _ = c.wait();
    }
}

/// A port that was free a moment ago. Another process may grab it before Redis binds it;
/// [`RedisServerBuilder::start`] retries on a new port in that case.
fn free_port() -> u16 {
    loop {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .unwrap_or_else(|e| panic!("cannot bind a loopback port: {e}"));
        match listener.local_addr() {
            Ok(addr) if addr.port() != REDIS_DEFAULT_PORT => return addr.port(),
            Ok(_) => continue,
            Err(e) => panic!("cannot read the bound loopback port: {e}"),
        }
    }
}

/// The log written since `offset` (lossy; empty if unreadable).
fn read_from(path: &Path, offset: u64) -> String {
    let mut bytes = Vec::new();
    if let Ok(mut file) = File::open(path)
        && file.seek(SeekFrom::Start(offset)).is_ok()
    {
        let _ = file.read_to_end(&mut bytes);
    }
    String::from_utf8_lossy(&bytes).into_owned()
}

/// The last lines of the server log, framed for a panic message.
fn log_tail(path: &Path) -> String {
    let log = read_from(path, 0);
    let lines: Vec<&str> = log.lines().collect();
    let tail = lines[lines.len().saturating_sub(LOG_TAIL_LINES)..].join("\n");
    format!(
        "--- last {LOG_TAIL_LINES} lines of {} ---\n{tail}\n--- end of redis log ---",
        path.display()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch() -> (TempDir, PathBuf, PathBuf) {
        let root = tempfile::tempdir().unwrap();
        let data = root.path().join("data");
        fs::create_dir(&data).unwrap();
        let log = root.path().join("redis.log");
        (root, data, log)
    }

    #[test]
    fn launch_on_a_port_held_by_a_plain_socket_reports_addr_in_use() {
        let holder = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let port = holder.local_addr().unwrap().port();
        let (_root, data, log) = scratch();
        let result = launch(
            &RedisServerBuilder::default(),
            port,
            &data,
            &log,
            Instant::now(),
        );
        assert!(matches!(result, Err(LaunchError::AddrInUse)));
    }

    #[test]
    fn launch_on_a_port_held_by_another_redis_reports_addr_in_use() {
        let neighbour = RedisServer::start();
        let (_root, data, log) = scratch();
        let result = launch(
            &RedisServerBuilder::default(),
            neighbour.port(),
            &data,
            &log,
            Instant::now(),
        );
        assert!(matches!(result, Err(LaunchError::AddrInUse)));
        assert_eq!(neighbour.command(&["PING"]), "PONG");
    }

    #[test]
    fn restart_panics_when_the_port_stays_taken() {
        let redis = RedisServer::builder()
            .startup_timeout(Duration::from_millis(500))
            .start();
        redis.kill();
        let _holder = TcpListener::bind((Ipv4Addr::LOCALHOST, redis.port())).unwrap();
        let payload = std::panic::catch_unwind(|| redis.restart()).unwrap_err();
        let message = payload.downcast_ref::<String>().unwrap();
        assert!(
            message.contains(&format!("port {} is taken", redis.port())),
            "{message}"
        );
    }

    #[test]
    fn free_port_is_bindable_and_never_the_redis_default() {
        let port = free_port();
        assert_ne!(port, REDIS_DEFAULT_PORT);
        TcpListener::bind((Ipv4Addr::LOCALHOST, port)).unwrap();
    }

    #[test]
    fn log_tail_keeps_the_last_lines() {
        let (_root, _data, log) = scratch();
        let text: String = (0..100).map(|i| format!("line {i}\n")).collect();
        fs::write(&log, text).unwrap();
        let tail = log_tail(&log);
        assert!(tail.contains("line 99"));
        assert!(tail.contains(&format!("line {}", 100 - LOG_TAIL_LINES)));
        assert!(!tail.contains(&format!("line {}\n", 99 - LOG_TAIL_LINES)));
        assert_eq!(read_from(&log, 782), "line 99\n");
    }
}
