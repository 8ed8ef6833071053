//! Runnable examples of the event platform, one file each under `examples/`:
//!
//! | example | shows | needs |
//! |---|---|---|
//! | `emit_app` | an application emitting events with `events-producer` only | a daemon (HTTP) or Redis (`EVENTS_REDIS_URL`) |
//! | `custom_cartridge` | a user cartridge plugged into the pipeline next to the built-ins | nothing: runs in-process on an in-memory database |
//! | `ws_client` | a WebSocket client printing notifications live | a daemon |
//! | `agent_loop` | an agent that claims, works on and resolves notifications over HTTP | a daemon |
//!
//! Run one with `cargo run -p events-examples --example NAME` against a daemon started as the
//! README says (`cargo run -p events-daemon`). They read `EVENTS_URL` (default
//! `http://127.0.0.1:7400`) and `EVENTS_TOKEN` (only needed when the daemon has tokens).
//!
//! This library only holds the two helpers the examples share; it is not meant to be
//! depended on. The crate is a workspace member so CI builds every example.

/// Where the daemon listens: `EVENTS_URL`, default `http://127.0.0.1:7400` (the daemon's default bind).
pub fn daemon_url() -> String {
    std::env::var("EVENTS_URL")
        .ok()
        .filter(|url| !url.is_empty())
        .unwrap_or_else(|| "http://127.0.0.1:7400".to_owned())
        .trim_end_matches('/')
        .to_owned()
}

/// The bearer token from `EVENTS_TOKEN`, if set and not empty.
pub fn token() -> Option<String> {
    std::env::var("EVENTS_TOKEN")
        .ok()
        .filter(|token| !token.is_empty())
}

/// The WebSocket URL for an HTTP base URL: `http://h:1` → `ws://h:1/ws`, `https` → `wss`.
pub fn ws_url(http_url: &str) -> String {
    let base = http_url.trim_end_matches('/');
    let rest = base
        .strip_prefix("https://")
        .map(|rest| format!("wss://{rest}"))
        .or_else(|| {
            base.strip_prefix("http://")
                .map(|rest| format!("ws://{rest}"))
        })
        .unwrap_or_else(|| base.to_owned());
    format!("{rest}/ws")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ws_url_swaps_the_scheme_and_appends_the_path() {
        assert_eq!(ws_url("http://127.0.0.1:7400"), "ws://127.0.0.1:7400/ws");
        assert_eq!(ws_url("https://events.example/"), "wss://events.example/ws");
    }
}
