//! Start, stop, kill, restart and drop.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpStream};
use std::path::Path;
use std::sync::Arc;

use events_testkit::RedisServer;

fn accepts_connections(port: u16) -> bool {
    TcpStream::connect((Ipv4Addr::LOCALHOST, port)).is_ok()
}

fn process_exists(pid: u32) -> bool {
    Path::new("/proc").join(pid.to_string()).exists()
}

#[test]
fn start_answers_ping_on_its_own_port_and_dir() {
    let redis = RedisServer::start();
    assert!(redis.is_running());
    assert_ne!(redis.port(), 6379);
    assert_eq!(redis.url(), format!("redis://127.0.0.1:{}", redis.port()));
    assert!(redis.data_dir().is_dir());
    assert_eq!(redis.command(&["PING"]), "PONG");
    let info = redis.command(&["INFO", "server"]);
    let pid = redis.pid().expect("running server has a pid");
    assert!(info.contains(&format!("process_id:{pid}")), "{info}");
    let dir = redis.command(&["CONFIG", "GET", "dir"]);
    let reported = dir
        .lines()
        .nth(1)
        .expect("CONFIG GET returns name and value");
    assert_eq!(
        Path::new(reported).canonicalize().unwrap(),
        redis.data_dir().canonicalize().unwrap()
    );
    assert_eq!(
        redis.command(&["CONFIG", "GET", "appendonly"]),
        "appendonly\nno"
    );
}

#[test]
fn parallel_servers_get_distinct_ports_and_dirs() {
    let servers: Vec<RedisServer> = (0..4).map(|_| RedisServer::start()).collect();
    let mut ports: Vec<u16> = servers.iter().map(RedisServer::port).collect();
    ports.sort_unstable();
    ports.dedup();
    assert_eq!(ports.len(), servers.len());
    for (i, redis) in servers.iter().enumerate() {
        redis.command(&["SET", "who", &i.to_string()]);
    }
    for (i, redis) in servers.iter().enumerate() {
        assert_eq!(redis.command(&["GET", "who"]), i.to_string());
    }
}

#[test]
fn stop_shuts_down_and_is_idempotent() {
    let redis = RedisServer::start();
    let pid = redis.pid().unwrap();
    redis.stop();
    assert!(!redis.is_running());
    assert_eq!(redis.pid(), None);
    assert!(!process_exists(pid), "pid {pid} still exists after stop");
    assert!(!accepts_connections(redis.port()));
    redis.stop();
    redis.kill();
    assert!(!redis.is_running());
}

#[test]
fn kill_then_restart_uses_the_same_port_and_dir() {
    let redis = RedisServer::start();
    let (port, dir) = (redis.port(), redis.data_dir().to_path_buf());
    let old_pid = redis.pid().unwrap();
    redis.kill();
    assert!(!redis.is_running());
    assert!(!process_exists(old_pid));
    redis.restart();
    assert!(redis.is_running());
    assert_ne!(redis.pid(), Some(old_pid));
    assert_eq!((redis.port(), redis.data_dir()), (port, dir.as_path()));
    assert_eq!(redis.command(&["PING"]), "PONG");
}

#[test]
fn restart_of_a_running_server_stops_it_first() {
    let redis = RedisServer::start();
    let old_pid = redis.pid().unwrap();
    redis.restart();
    let new_pid = redis.pid().unwrap();
    assert_ne!(old_pid, new_pid);
    assert!(!process_exists(old_pid));
    assert_eq!(redis.command(&["PING"]), "PONG");
}

#[test]
fn server_exiting_on_its_own_is_noticed() {
    let redis = RedisServer::start();
    // SHUTDOWN closes the connection instead of replying, so it bypasses `query`.
    let mut conn = TcpStream::connect((Ipv4Addr::LOCALHOST, redis.port())).unwrap();
    conn.write_all(b"SHUTDOWN NOSAVE\r\n").unwrap();
    let mut rest = Vec::new();
    let _ = conn.read_to_end(&mut rest);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while redis.is_running() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert!(!redis.is_running());
    redis.restart();
    assert!(redis.is_running());
}

#[test]
fn drop_kills_the_process_and_removes_the_dir() {
    let redis = RedisServer::start();
    let pid = redis.pid().unwrap();
    let dir = redis.data_dir().to_path_buf();
    drop(redis);
    assert!(!process_exists(pid), "pid {pid} survived drop");
    assert!(!dir.exists(), "{} survived drop", dir.display());
}

#[test]
fn can_be_killed_from_another_thread() {
    let redis = Arc::new(RedisServer::start());
    let killer = Arc::clone(&redis);
    std::thread::spawn(move || killer.kill()).join().unwrap();
    assert!(!redis.is_running());
    assert!(!accepts_connections(redis.port()));
}

#[test]
#[should_panic(
    expected = "no-such-redis-server-binary not found on PATH: install it with `apt-get install -y redis-server`"
)]
fn missing_binary_panics_with_install_hint() {
    RedisServer::builder()
        .binary("no-such-redis-server-binary")
        .start();
}

#[test]
fn failed_start_panics_with_the_log_tail() {
    let result = std::panic::catch_unwind(|| {
        RedisServer::builder()
            .extra_arg("--no-such-option")
            .extra_arg("1")
            .start()
    });
    let payload = result.expect_err("redis-server must refuse an unknown option");
    let message = payload
        .downcast_ref::<String>()
        .expect("panic message is a String");
    assert!(message.contains("did not come up"), "{message}");
    assert!(message.contains("no-such-option"), "{message}");
    assert!(message.contains("redis.log"), "{message}");
}
