//! `fanout`: many WebSocket clients subscribed to `notifications`; time from one emit until
//! the last client has the push; daemon RSS.
//!
//! Clients connect from several 127.0.0.x source addresses so that the ephemeral port range
//! of one address is not a limit. No raw ceiling is measured here: a plain broadcast server
//! would need another set of sockets in this process, beyond the per-process fd limit.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use events_envelope::EventEnvelope;
use events_producer::{Producer, RedisProducer, RedisProducerConfig};
use futures_util::{SinkExt, StreamExt};
use serde_json::json;
use tokio::sync::Semaphore;
use tokio_tungstenite::tungstenite::Message;

use super::Ctx;
use crate::daemon::{Daemon, DaemonOptions, rss_kib};
use crate::mix::{SOURCE, TODO_CREATED};
use crate::report::{Report, Target};

const SOURCES: u8 = 4;

/// A client's open WebSocket, handed back with its time of receipt so that it is closed only
/// after every client has reported.
type Connection = tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>;

async fn client(
    index: u64,
    server: SocketAddr,
    handshakes: Arc<Semaphore>,
    ready: Arc<AtomicU64>,
) -> anyhow::Result<(Instant, Connection)> {
    let permit = handshakes.acquire().await?;
    let source = IpAddr::V4(Ipv4Addr::new(
        127,
        0,
        0,
        1 + (index % u64::from(SOURCES)) as u8,
    ));
    let socket = tokio::net::TcpSocket::new_v4()?;
    socket.bind(SocketAddr::new(source, 0))?;
    let stream = socket.connect(server).await?;
    let (mut ws, _) = tokio_tungstenite::client_async(format!("ws://{server}/ws"), stream).await?;
    ws.send(Message::text(
        json!({"type":"subscribe","topics":["notifications"]}).to_string(),
    ))
    .await?;
    loop {
        let message = ws.next().await.context("closed before subscribed")??;
        if let Message::Text(text) = message
            && text.contains("\"subscribed\"")
        {
            break;
        }
    }
    drop(permit);
    ready.fetch_add(1, Ordering::SeqCst);
    // Read until the probe's push arrives (answering pings meanwhile). No "go" signal: waking
    // every client task at the moment of the emit would put the harness's own 20,000
    // wake-ups on the same two cores as the daemon's fan-out it is timing.
    loop {
        let message = ws.next().await.context("closed before the push")??;
        if let Message::Text(text) = message
            && text.contains("notification_created")
            && text.contains("fanout-probe")
        {
            return Ok((Instant::now(), ws));
        }
    }
}

pub(crate) async fn run(ctx: &Ctx) -> anyhow::Result<Report> {
    let k = ctx.sizes.fanout_clients;
    let daemon = Daemon::start(
        &ctx.daemon,
        &DaemonOptions {
            redis_url: Some(ctx.redis.url()),
        },
    )
    .await?;
    let rss_idle = rss_kib(daemon.pid()).map(|(rss, _)| rss / 1024);
    let handshakes = Arc::new(Semaphore::new(256));
    let ready = Arc::new(AtomicU64::new(0));
    let connect_started = Instant::now();
    let mut tasks = Vec::with_capacity(k as usize);
    for i in 0..k {
        tasks.push(tokio::spawn(client(
            i,
            daemon.addr,
            Arc::clone(&handshakes),
            Arc::clone(&ready),
        )));
    }
    let deadline = Instant::now() + Duration::from_secs(120 + k / 100);
    while ready.load(Ordering::SeqCst) < k && Instant::now() < deadline {
        if tasks.iter().all(|t| t.is_finished()) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let connected = ready.load(Ordering::SeqCst);
    let connect_s = connect_started.elapsed().as_secs_f64();
    let rss_connected = rss_kib(daemon.pid()).map(|(rss, _)| rss / 1024);

    let mut config = RedisProducerConfig::new(ctx.redis.url());
    config.maxlen = None;
    let producer = RedisProducer::connect(config).await?;
    let emitted = Instant::now();
    producer
        .emit(EventEnvelope::new(TODO_CREATED, SOURCE).with_field("slug", "fanout-probe"))
        .await?;
    let mut received = 0u64;
    let mut failures = 0u64;
    let mut first_error = None;
    let mut last = emitted;
    // Closing a connection is work on both sides (FIN handshake, freeing the frame buffers):
    // the first profile showed the clients that had their push closing while the last ones
    // still waited for theirs, two thirds of the harness's time in the fan-out window. The
    // scenario times the delivery, so every socket stays open until all have reported.
    let mut open = Vec::with_capacity(tasks.len());
    for task in tasks {
        match tokio::time::timeout_at(
            tokio::time::Instant::from_std(deadline + Duration::from_secs(30)),
            task,
        )
        .await
        {
            Ok(Ok(Ok((at, connection)))) => {
                received += 1;
                last = last.max(at);
                open.push(connection);
            }
            Ok(Ok(Err(e))) => {
                failures += 1;
                first_error.get_or_insert_with(|| format!("{e:#}"));
            }
            Ok(Err(e)) => {
                failures += 1;
                first_error.get_or_insert_with(|| e.to_string());
            }
            Err(_) => failures += 1,
        }
    }
    let to_last_ms = (last - emitted).as_secs_f64() * 1000.0;
    drop(open);
    let peak = rss_kib(daemon.pid()).map(|(_, peak)| peak / 1024);
    let state_ok = received == k;
    let state = format!(
        "{received}/{k} clients got the push ({connected} connected{})",
        first_error
            .map(|e| format!("; first error: {e}"))
            .unwrap_or_default()
    );
    let peak_mib = peak.unwrap_or(0) as f64;
    Ok(Report {
        scenario: "fanout",
        quick: ctx.quick,
        value: to_last_ms,
        unit: "ms to last client",
        ceiling: None,
        ceiling_what: "",
        ratio: None,
        targets: vec![
            Target::at_least("connections", connected as f64, 20_000.0),
            Target::at_most("ms to last", to_last_ms, 500.0),
            Target::at_most("daemon RSS MiB", peak_mib, 1024.0),
        ],
        state_ok,
        state,
        details: json!({
            "clients": k, "connected": connected, "failures": failures,
            "source_addresses": SOURCES, "connect_all_s": connect_s,
            "daemon_rss_mib": {"idle": rss_idle, "connected": rss_connected, "peak": peak},
        }),
    })
}
