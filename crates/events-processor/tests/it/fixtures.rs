//! Entries as Python producers of the original design write them are processed like
//! native ones; the invalid ones are dead-lettered with a reason.

use std::sync::Arc;
use std::time::Duration;

use events_envelope::{EventCatalog, from_stream_fields};
use serde::Deserialize;

use crate::common::*;

#[derive(Debug, Deserialize)]
struct FixtureFile {
    entries: Vec<FixtureEntry>,
}

#[derive(Debug, Deserialize)]
struct FixtureEntry {
    valid: bool,
    note: String,
    fields: serde_json::Map<String, serde_json::Value>,
}

fn load() -> anyhow::Result<Vec<(bool, String, Fields)>> {
    let file: FixtureFile = serde_json::from_str(&std::fs::read_to_string(fixture_path())?)?;
    Ok(file
        .entries
        .into_iter()
        .map(|e| {
            let fields = e
                .fields
                .into_iter()
                .map(|(k, v)| (k, v.as_str().map_or_else(|| v.to_string(), str::to_owned)))
                .collect();
            (e.valid, e.note, fields)
        })
        .collect())
}

async fn run(harness: &Harness, raw: &[Fields]) -> anyhow::Result<Vec<String>> {
    let running = spawn(
        harness,
        harness.source("c1", Duration::from_secs(30)),
        fast_config(),
        events_pipeline::Pipeline::standard(false),
        vec![],
        Arc::new(EventCatalog::builtin()),
    );
    let ids = harness.emit_raw(raw).await?;
    harness
        .wait_processed(raw.len() as i64, Duration::from_secs(60))
        .await?;
    running.stop().await?;
    Ok(ids)
}

async fn python_entries_are_processed_like_native_ones(kind: Kind) -> anyhow::Result<()> {
    let entries = load()?;
    let raw: Vec<Fields> = entries.iter().map(|(_, _, f)| f.clone()).collect();
    let foreign = Harness::new(kind).await?;
    let ids = run(&foreign, &raw).await?;

    // invalid ones: dead letters, in order, with a reason naming the problem
    let letters = foreign.db.list_dead_letters(0, 100).await?;
    let invalid: Vec<_> = entries
        .iter()
        .zip(&ids)
        .filter(|((valid, _, _), _)| !valid)
        .collect();
    assert_eq!(letters.len(), invalid.len(), "dead letters: {letters:#?}");
    for (((_, note, fields), id), letter) in invalid.iter().zip(&letters) {
        assert_eq!(&&letter.entry_id, id, "{note}");
        assert_eq!(&letter.fields, fields, "{note}");
        assert!(
            letter.reason.starts_with("undecodable entry: "),
            "{note}: {}",
            letter.reason
        );
    }

    // valid ones: the same effect as the same envelopes emitted by a native producer
    let native_events: Vec<_> = entries
        .iter()
        .zip(&ids)
        .filter(|((valid, _, _), _)| *valid)
        .map(|((_, note, fields), id)| {
            from_stream_fields(fields.iter().map(|(k, v)| (k, v)), id)
                .map_err(|e| anyhow::anyhow!("fixture '{note}' should decode: {e}"))
        })
        .collect::<anyhow::Result<_>>()?;
    let native = Harness::new(kind).await?;
    run(&native, &native_events.iter().map(wire).collect::<Vec<_>>()).await?;
    assert!(!native_events.is_empty());
    assert_eq!(table(&foreign.db).await?, table(&native.db).await?);
    let (mut a, mut b) = (
        logged_ids(&foreign.db).await?,
        logged_ids(&native.db).await?,
    );
    a.sort();
    b.sort();
    assert_eq!(a, b);
    assert!(!a.is_empty());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_python_entries_are_processed_like_native_ones() -> anyhow::Result<()> {
    python_entries_are_processed_like_native_ones(Kind::Embedded).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_python_entries_are_processed_like_native_ones() -> anyhow::Result<()> {
    python_entries_are_processed_like_native_ones(Kind::Redis).await
}
