//! `latency`: a steady emit rate; emit → WebSocket `notification_created` per event, against
//! emit → plain `XREADGROUP BLOCK` with no processing at the same rate.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use events_envelope::{EventEnvelope, to_stream_fields};
use events_producer::{Producer, RedisProducer, RedisProducerConfig};
use fred::interfaces::StreamsInterface;
use fred::types::{Key, Value, streams::XReadResponse};
use futures_util::{SinkExt, StreamExt};
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;

use super::Ctx;
use crate::daemon::{Daemon, DaemonOptions};
use crate::mix::{SOURCE, TODO_CREATED};
use crate::raw;
use crate::report::{Report, Target, percentile};
use crate::verify;

fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

/// The fields of a push the measurement reads; serde skips the rest of the JSON without
/// building a `serde_json::Value` of it — less of the harness's CPU on the two cores it
/// shares with the daemon it times.
#[derive(serde::Deserialize)]
struct Probe {
    #[serde(rename = "type")]
    kind: String,
    notification: Option<ProbeNotification>,
}

#[derive(serde::Deserialize)]
struct ProbeNotification {
    created_at: String,
    payload: ProbePayload,
}

#[derive(serde::Deserialize)]
struct ProbePayload {
    sent_us: Option<u64>,
}

/// Microseconds since the epoch of an RFC 3339 timestamp (the daemon's `created_at`).
fn unix_us(text: &str) -> Option<u64> {
    let at =
        time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339).ok()?;
    u64::try_from(at.unix_timestamp_nanos() / 1_000).ok()
}

fn event(prefix: &str, i: u64) -> EventEnvelope {
    EventEnvelope::new(TODO_CREATED, SOURCE)
        .with_field("slug", format!("{prefix}-{i}"))
        .with_field("sent_us", now_us())
}

/// Calls `send(first_index, count)` at a steady `rate` per second for `secs` seconds.
async fn pace<F, Fut>(rate: u64, secs: u64, mut send: F) -> u64
where
    F: FnMut(u64, u64) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let per_tick = (rate / 1000).max(1);
    let period = Duration::from_nanos(per_tick * 1_000_000_000 / rate.max(1));
    let total = rate * secs;
    let mut interval = tokio::time::interval(period);
    let mut sent = 0;
    while sent < total {
        interval.tick().await;
        let count = per_tick.min(total - sent);
        tokio::spawn(send(sent, count));
        sent += count;
    }
    total
}

struct Percentiles {
    p50: f64,
    p90: f64,
    p99: f64,
    max: f64,
}

fn summarize(mut samples_ms: Vec<f64>) -> Percentiles {
    samples_ms.sort_by(f64::total_cmp);
    Percentiles {
        p50: percentile(&samples_ms, 50.0),
        p90: percentile(&samples_ms, 90.0),
        p99: percentile(&samples_ms, 99.0),
        max: samples_ms.last().copied().unwrap_or(f64::NAN),
    }
}

async fn ceiling(ctx: &Ctx) -> anyhow::Result<(Percentiles, u64)> {
    const STREAM: &str = "bench:latency";
    let url = ctx.redis.url();
    let reader = raw::connect(&url).await?;
    let writer = Arc::new(raw::connect(&url).await?);
    raw::create_group(&writer, STREAM, "raw").await?;
    let total = ctx.sizes.latency_rate * ctx.sizes.latency_secs;
    let consumer = tokio::spawn(async move {
        let mut samples = Vec::with_capacity(total as usize);
        let deadline = Instant::now() + Duration::from_secs(ctx_timeout(total));
        while (samples.len() as u64) < total && Instant::now() < deadline {
            let response: XReadResponse<Key, Key, Key, Value> = reader
                .xreadgroup_map("raw", "raw", Some(1000), Some(100), true, STREAM, ">")
                .await?;
            let now = now_us();
            for (_, entries) in response {
                for (_, fields) in entries {
                    let payload = fields
                        .get(&Key::from("payload"))
                        .and_then(|v| v.as_string())
                        .unwrap_or_default();
                    let sent = serde_json::from_str::<serde_json::Value>(&payload)
                        .ok()
                        .and_then(|p| p["sent_us"].as_u64())
                        .unwrap_or(now);
                    samples.push(now.saturating_sub(sent) as f64 / 1000.0);
                }
            }
        }
        Ok::<_, anyhow::Error>(samples)
    });
    pace(
        ctx.sizes.latency_rate,
        ctx.sizes.latency_secs,
        |first, count| {
            let writer = Arc::clone(&writer);
            async move {
                let fields: Vec<_> = (first..first + count)
                    .map(|i| to_stream_fields(&event("raw", i)))
                    .collect();
                if let Err(e) = raw::pipelined_xadd(&writer, STREAM, &fields, 500).await {
                    eprintln!("events-bench: raw XADD failed: {e:#}");
                }
            }
        },
    )
    .await;
    let samples = consumer.await??;
    let received = samples.len() as u64;
    Ok((summarize(samples), received))
}

fn ctx_timeout(total: u64) -> u64 {
    60 + total / 1000
}

pub(crate) async fn run(ctx: &Ctx) -> anyhow::Result<Report> {
    let total = ctx.sizes.latency_rate * ctx.sizes.latency_secs;
    let (raw_p, raw_received) = ceiling(ctx).await?;

    let daemon = Daemon::start(
        &ctx.daemon,
        &DaemonOptions {
            redis_url: Some(ctx.redis.url()),
        },
    )
    .await?;
    let ws_url = format!("ws://{}/ws", daemon.addr);
    let (mut ws, _) = tokio_tungstenite::connect_async(&ws_url)
        .await
        .with_context(|| format!("connecting {ws_url}"))?;
    ws.send(Message::text(
        json!({"type":"subscribe","topics":["notifications"]}).to_string(),
    ))
    .await?;
    loop {
        let message = tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .context("no answer to subscribe within 10 s")?
            .context("websocket closed before subscribed")??;
        if let Message::Text(text) = message
            && text.contains("\"subscribed\"")
        {
            break;
        }
    }
    let reader = tokio::spawn(async move {
        let mut samples = Vec::with_capacity(total as usize);
        // The two legs of each sample, split at the notification's `created_at` (the
        // daemon's clock inside the batch's transaction; same machine, same clock).
        let mut legs = Vec::with_capacity(total as usize);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(ctx_timeout(total));
        while (samples.len() as u64) < total {
            let Ok(Some(message)) = tokio::time::timeout_at(deadline, ws.next()).await else {
                break;
            };
            let now = now_us();
            let Message::Text(text) = message? else {
                continue;
            };
            let push: Probe = serde_json::from_str(&text)?;
            if push.kind == "notification_created"
                && let Some(notification) = push.notification
                && let Some(sent) = notification.payload.sent_us
            {
                samples.push(now.saturating_sub(sent) as f64 / 1000.0);
                if let Some(created) = unix_us(&notification.created_at) {
                    legs.push((
                        created.saturating_sub(sent) as f64 / 1000.0,
                        now.saturating_sub(created) as f64 / 1000.0,
                    ));
                }
            }
        }
        Ok::<_, anyhow::Error>((samples, legs))
    });
    let mut config = RedisProducerConfig::new(ctx.redis.url());
    config.maxlen = None;
    let producer = Arc::new(RedisProducer::connect(config).await?);
    pace(
        ctx.sizes.latency_rate,
        ctx.sizes.latency_secs,
        |first, count| {
            let producer = Arc::clone(&producer);
            async move {
                let events = (first..first + count).map(|i| event("lat", i)).collect();
                if let Err(e) = producer.emit_batch(events).await {
                    eprintln!("events-bench: emit failed: {e}");
                }
            }
        },
    )
    .await;
    let (samples, legs) = reader.await??;
    let received = samples.len() as u64;
    let p = summarize(samples);
    let to_insert = summarize(legs.iter().map(|(a, _)| *a).collect());
    let to_client = summarize(legs.iter().map(|(_, b)| *b).collect());
    let stored = {
        let conn = verify::open(&daemon.db_path())?;
        let n: i64 = conn.query_row(
            "SELECT count(*) FROM notifications WHERE source = ?1",
            [SOURCE],
            |r| r.get(0),
        )?;
        n as u64
    };
    let state_ok = received == total && stored == total && raw_received == total;
    let state = format!(
        "{received}/{total} pushes received, {stored} notifications stored, {raw_received}/{total} raw entries read"
    );
    Ok(Report {
        scenario: "latency",
        quick: ctx.quick,
        value: p.p99,
        unit: "ms p99",
        ceiling: Some(raw_p.p99),
        ceiling_what: "XADD→XREADGROUP p99",
        ratio: Some(raw_p.p99 / p.p99),
        targets: vec![
            Target::at_most("p99 ms", p.p99, 5.0),
            Target::at_most("p50 ms", p.p50, 1.0),
        ],
        state_ok,
        state,
        details: json!({
            "rate_per_s": ctx.sizes.latency_rate, "secs": ctx.sizes.latency_secs,
            "ws_ms": {"p50": p.p50, "p90": p.p90, "p99": p.p99, "max": p.max},
            "raw_ms": {"p50": raw_p.p50, "p90": raw_p.p90, "p99": raw_p.p99, "max": raw_p.max},
            "emit_to_insert_ms": {"p50": to_insert.p50, "p90": to_insert.p90, "p99": to_insert.p99},
            "insert_to_client_ms": {"p50": to_client.p50, "p90": to_client.p90, "p99": to_client.p99},
        }),
    })
}
