//! Test-only helpers for event-platform: a private `redis-server` per test.
//!
//! **This crate is for tests.** It belongs in `[dev-dependencies]` (or in the `events-e2e`
//! test crate) and never in a library's normal dependencies: it panics on failure, because a
//! test helper that cannot set up its fixture has nothing better to do.
//!
//! The principal type is [`RedisServer`], built by [`RedisServer::start`] or configured with
//! a [`RedisServerBuilder`]. It launches `redis-server` from `PATH` on a free loopback port
//! with its own temporary data directory, waits until the server answers `PING`, and kills
//! the process when dropped. Tests can [`stop`](RedisServer::stop) it gracefully,
//! [`kill`](RedisServer::kill) it with `SIGKILL` to simulate a crash, and
//! [`restart`](RedisServer::restart) it on the same port and data directory so that clients
//! holding the old URL reconnect to the same data (with AOF on, see
//! [`RedisServerBuilder::aof`]). [`RedisServer::command`] and [`RedisServer::query`] speak
//! just enough RESP over a plain TCP socket for assertions such as `XLEN`.
//!
//! ```
//! use events_testkit::RedisServer;
//!
//! let redis = RedisServer::builder().aof(true).start();
//! assert_eq!(redis.command(&["SET", "k", "v"]), "OK");
//! redis.kill();
//! redis.restart();
//! assert_eq!(redis.command(&["GET", "k"]), "v");
//! ```
//!
//! Key design decisions:
//!
//! - **Synchronous API** (`std::process`, `std::net`): the helper works the same from plain
//!   `#[test]`s and from `#[tokio::test]`s without tying this crate to a runtime. All methods
//!   take `&self` (the child process sits behind a mutex), so a server can be shared with
//!   another thread through an `Arc` — for example to kill Redis in the middle of a batch.
//! - **Robust free-port choice under parallel test processes** (nextest runs every test in
//!   its own process): a port is picked by binding `127.0.0.1:0`; if Redis then fails to
//!   bind it because another test took it first, the start is retried on a new port. The
//!   readiness check also compares the `process_id` reported by `INFO server` with our
//!   child's pid, so a test can never mistake a neighbour's Redis for its own.
//! - **Never port 6379**: a developer's own Redis is left alone.

mod resp;
mod server;

pub use resp::Reply;
pub use server::{RedisServer, RedisServerBuilder};
