//! `command` / `query`: the RESP helper used in assertions.

use events_testkit::{RedisServer, Reply};

#[test]
fn command_renders_every_reply_type() {
    let redis = RedisServer::start();
    assert_eq!(redis.command(&["SET", "k", "a b\r\nc"]), "OK");
    assert_eq!(redis.command(&["GET", "k"]), "a b\r\nc");
    assert_eq!(redis.command(&["GET", "missing"]), "(nil)");
    assert_eq!(redis.command(&["XADD", "s", "1-0", "f", "v"]), "1-0");
    assert_eq!(redis.command(&["XADD", "s", "2-0", "f", "w"]), "2-0");
    assert_eq!(redis.command(&["XLEN", "s"]), "2");
    assert_eq!(redis.command(&["RPUSH", "l", "x", "y"]), "2");
    assert_eq!(redis.command(&["LRANGE", "l", "0", "-1"]), "x\ny");
}

#[test]
fn query_returns_structured_replies() {
    let redis = RedisServer::start();
    redis.command(&["XADD", "s", "5-1", "event", "job.done"]);
    assert_eq!(
        redis.query(&["XRANGE", "s", "-", "+"]),
        Reply::Array(vec![Reply::Array(vec![
            Reply::Bulk(b"5-1".to_vec()),
            Reply::Array(vec![
                Reply::Bulk(b"event".to_vec()),
                Reply::Bulk(b"job.done".to_vec()),
            ]),
        ])])
    );
    assert_eq!(redis.query(&["XLEN", "s"]).as_integer(), Some(1));
    match redis.query(&["NOSUCHCOMMAND"]) {
        Reply::Error(message) => assert!(message.starts_with("ERR"), "{message}"),
        other => panic!("expected an error reply, got {other:?}"),
    }
}

#[test]
#[should_panic(expected = "redis command [\"INCR\", \"k\"] failed")]
fn command_panics_on_error_replies() {
    let redis = RedisServer::start();
    redis.command(&["SET", "k", "not a number"]);
    redis.command(&["INCR", "k"]);
}

#[test]
#[should_panic(expected = "redis command [\"PING\"] to port")]
fn query_panics_when_the_server_is_down() {
    let redis = RedisServer::start();
    redis.kill();
    redis.query(&["PING"]);
}
