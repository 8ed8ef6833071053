//! The raw ceilings: plain fred pipelined `XADD`, plain `XREADGROUP` + `XACK` with no
//! processing, plain SQLite batch inserts. Nothing here decodes an envelope or runs a
//! cartridge; that is the point.

use std::time::{Duration, Instant};

use anyhow::Context;
use fred::{
    clients::Client,
    interfaces::{ClientLike, StreamsInterface},
    types::{Builder, Value, config::Config, streams::XCap},
};

/// A fred client with default settings, connected.
pub(crate) async fn connect(url: &str) -> anyhow::Result<Client> {
    let config = Config::from_url(url).with_context(|| format!("redis url {url}"))?;
    let client = Builder::from_config(config).build()?;
    client
        .init()
        .await
        .with_context(|| format!("connecting to {url}"))?;
    Ok(client)
}

/// Appends pre-encoded entries with one pipeline (one round trip) per `chunk` entries.
pub(crate) async fn pipelined_xadd(
    client: &Client,
    stream: &str,
    entries: &[Vec<(&'static str, String)>],
    chunk: usize,
) -> anyhow::Result<()> {
    for part in entries.chunks(chunk.max(1)) {
        // The same transport as `RedisProducer::emit_batch`: the chunk's last XADD goes in a
        // pipeline of its own, queued right behind the others, so that fred buffers the rest
        // into a few writes instead of flushing after every command. A ceiling must use the
        // best transport the producer has, or the producer could "beat" it.
        let Some((last, rest)) = part.split_last() else {
            continue;
        };
        let (head, tail) = (client.pipeline(), client.pipeline());
        for fields in rest {
            let () = head
                .xadd(stream, false, XCap::from(None::<()>), "*", fields.clone())
                .await?;
        }
        let () = tail
            .xadd(stream, false, XCap::from(None::<()>), "*", last.clone())
            .await?;
        // `join!` polls the head first (sending it), then queues the tail behind it.
        let (head_replies, tail_replies) =
            tokio::join!(head.all::<Vec<Value>>(), tail.all::<Vec<Value>>());
        let answered = head_replies?.len() + tail_replies?.len();
        anyhow::ensure!(
            answered == part.len(),
            "pipeline answered {answered} of {} XADDs",
            part.len()
        );
    }
    Ok(())
}

/// One `XADD` of pre-encoded fields, awaited on its own (concurrent calls share the
/// connection, which fred pipelines).
pub(crate) async fn xadd(
    client: &Client,
    stream: &str,
    fields: Vec<(&'static str, String)>,
) -> anyhow::Result<()> {
    let _id: String = client
        .xadd(stream, false, XCap::from(None::<()>), "*", fields)
        .await?;
    Ok(())
}

/// Creates `group` at the start of `stream` (MKSTREAM), ignoring BUSYGROUP.
pub(crate) async fn create_group(client: &Client, stream: &str, group: &str) -> anyhow::Result<()> {
    let created: Result<Value, _> = client.xgroup_create(stream, group, "0", true).await;
    match created {
        Ok(_) => Ok(()),
        Err(e) if e.details().starts_with("BUSYGROUP") => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Reads with `XREADGROUP COUNT 1000 BLOCK 100` on a dedicated connection and acks every
/// batch with one `XACK` on another, until `total` entries were acked. Returns when done.
pub(crate) async fn consume_and_ack(
    reader: &Client,
    acker: &Client,
    stream: &str,
    group: &str,
    total: u64,
    timeout: Duration,
) -> anyhow::Result<Instant> {
    let deadline = Instant::now() + timeout;
    let mut acked = 0u64;
    while acked < total {
        anyhow::ensure!(
            Instant::now() < deadline,
            "raw consumer acked {acked} of {total} entries within {timeout:?}"
        );
        let reply: Value = reader
            .xreadgroup(group, "raw", Some(1000), Some(100), false, stream, ">")
            .await?;
        let ids = entry_ids(reply);
        if ids.is_empty() {
            continue;
        }
        let n: u64 = acker.xack(stream, group, ids).await?;
        acked += n;
    }
    Ok(Instant::now())
}

/// The entry ids of an `XREADGROUP` reply, fields untouched (the ceiling does no work on
/// them). fred's typed `xreadgroup_map` occasionally failed here with "Cannot convert to
/// map", so the reply is walked by hand: RESP2 `[[key, entries], ...]`, or a RESP3 map
/// flattened to `[key, entries, ...]`; each entry is `[id, fields]`.
fn entry_ids(reply: Value) -> Vec<String> {
    if reply.is_null() {
        return Vec::new();
    }
    let streams = reply.into_array();
    let entry_lists: Vec<Value> = if streams.first().is_some_and(|v| v.is_array()) {
        streams
            .into_iter()
            .filter_map(|s| s.into_array().into_iter().nth(1))
            .collect()
    } else {
        streams.into_iter().skip(1).step_by(2).collect()
    };
    entry_lists
        .into_iter()
        .flat_map(Value::into_array)
        .filter_map(|entry| entry.into_array().into_iter().next()?.as_string())
        .collect()
}

/// Plain SQLite: `count` rows of `row_bytes`-sized JSON text, one transaction and one cached
/// prepared statement per batch, WAL and `synchronous = NORMAL` as the daemon's store uses.
pub(crate) fn sqlite_batch_inserts(rows: &[String], batch: usize) -> anyhow::Result<Duration> {
    let dir = tempfile::tempdir()?;
    let mut conn = rusqlite::Connection::open(dir.path().join("raw.db"))?;
    let _: String = conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))?;
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    conn.execute_batch(
        "CREATE TABLE t (seq INTEGER PRIMARY KEY, event_id TEXT NOT NULL UNIQUE, body TEXT NOT NULL)",
    )?;
    let started = Instant::now();
    for (b, part) in rows.chunks(batch.max(1)).enumerate() {
        let tx = conn.transaction()?;
        {
            let mut insert = tx.prepare_cached("INSERT INTO t (event_id, body) VALUES (?1, ?2)")?;
            for (i, body) in part.iter().enumerate() {
                insert.execute((format!("{b}-{i}"), body))?;
            }
        }
        tx.commit()?;
    }
    Ok(started.elapsed())
}
