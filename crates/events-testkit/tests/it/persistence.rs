//! What survives a restart, with and without AOF.

use events_testkit::RedisServer;

#[test]
fn aof_data_survives_graceful_restart() {
    let redis = RedisServer::builder().aof(true).start();
    assert_eq!(
        redis.command(&["CONFIG", "GET", "appendonly"]),
        "appendonly\nyes"
    );
    assert_eq!(
        redis.command(&["CONFIG", "GET", "appendfsync"]),
        "appendfsync\neverysec"
    );
    for i in 0..100 {
        redis.command(&["XADD", "events", "*", "n", &i.to_string()]);
    }
    redis.stop();
    redis.restart();
    assert_eq!(redis.command(&["XLEN", "events"]), "100");
}

#[test]
fn aof_data_survives_kill_with_fsync_always() {
    // `everysec` may lose the last second on SIGKILL; `always` makes the test deterministic.
    // Extra arguments come last, so this one overrides the default.
    let redis = RedisServer::builder()
        .aof(true)
        .extra_arg("--appendfsync")
        .extra_arg("always")
        .start();
    redis.command(&["SET", "k", "v"]);
    redis.kill();
    redis.restart();
    assert_eq!(redis.command(&["GET", "k"]), "v");
}

#[test]
fn without_aof_nothing_survives_a_restart() {
    let redis = RedisServer::start();
    redis.command(&["SET", "k", "v"]);
    redis.stop();
    redis.restart();
    assert_eq!(redis.command(&["GET", "k"]), "(nil)");
    assert_eq!(redis.command(&["DBSIZE"]), "0");
}
