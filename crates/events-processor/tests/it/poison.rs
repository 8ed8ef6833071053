//! Poison entries end in dead letters with a readable reason while the stream keeps
//! flowing; replay after the fix processes them.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use events_envelope::EventEnvelope;
use events_pipeline::{Cartridge, CartridgeError, LocalBoxFuture, PipelineContext};
use events_processor::replay_dead_letter;

use crate::common::*;

const BOOM: &str = "test.poison.boom";

/// A user cartridge with a bug for one event type, fixed by flipping `broken`.
#[derive(Debug)]
struct Boom {
    broken: AtomicBool,
}

impl Cartridge for Boom {
    fn name(&self) -> &str {
        "boom"
    }

    fn process<'a>(
        &'a self,
        event: EventEnvelope,
        _ctx: &'a mut PipelineContext<'_, '_>,
    ) -> LocalBoxFuture<'a, events_pipeline::Result<Option<EventEnvelope>>> {
        Box::pin(async move {
            if event.event == BOOM && self.broken.load(Ordering::SeqCst) {
                return Err(CartridgeError::failed(
                    "boom",
                    "cannot handle test.poison.boom yet",
                ));
            }
            Ok(Some(event))
        })
    }
}

fn poison_entries() -> Vec<(Fields, &'static str)> {
    let good = wire(&EventEnvelope::new(LOGLINE, "it").with_field("line", 1));
    let with = |key: &str, value: &str| -> Fields {
        good.iter()
            .map(|(k, v)| {
                (
                    k.clone(),
                    if k == key {
                        value.to_owned()
                    } else {
                        v.clone()
                    },
                )
            })
            .collect()
    };
    vec![
        (
            vec![("foo".into(), "bar".into()), ("baz".into(), "qux".into())],
            "missing field `event`",
        ),
        (with("payload", "{not json"), "payload"),
        (with("level", "7"), "level"),
        (
            wire(&EventEnvelope::new(CREATED, "it").with_field("status", "new")),
            "item",
        ),
    ]
}

async fn poison_entries_are_dead_lettered_and_replayable(kind: Kind) -> anyhow::Result<()> {
    let harness = Harness::new(kind).await?;
    let boom = Arc::new(Boom {
        broken: AtomicBool::new(true),
    });
    let running = spawn(
        &harness,
        harness.source("c1", Duration::from_secs(30)),
        fast_config(),
        standard_pipeline(vec![boom.clone()]),
        vec![],
        Arc::new(test_catalog()),
    );

    let valid = workload(600, 3);
    let poison = poison_entries();
    let booms: Vec<EventEnvelope> = (0..3)
        .map(|i| EventEnvelope::new(BOOM, "it").with_field("n", i))
        .collect();
    // interleave: valid, poison, valid, boom, ...
    let mut raw: Vec<Fields> = Vec::new();
    let mut chunks = valid.chunks(100);
    for (fields, _) in &poison {
        raw.extend(chunks.next().unwrap_or_default().iter().map(wire));
        raw.push(fields.clone());
    }
    for b in &booms {
        raw.extend(chunks.next().unwrap_or_default().iter().map(wire));
        raw.push(wire(b));
    }
    harness.emit_raw(&raw).await?;
    harness
        .wait_processed(raw.len() as i64, Duration::from_secs(120))
        .await?;

    // the valid events all took effect, untouched by their poisoned neighbours
    let mut model = Model::default();
    model.apply_all(&valid);
    let letters = harness.db.list_dead_letters(0, 100).await?;
    assert_eq!(
        letters.len(),
        poison.len() + booms.len(),
        "dead letters: {letters:#?}"
    );
    for ((fields, needle), letter) in poison.iter().zip(&letters) {
        assert_eq!(&letter.fields, fields, "original fields are kept");
        assert!(
            letter.reason.contains(needle),
            "reason {:?} should mention {needle:?}",
            letter.reason
        );
        assert_eq!(
            letter.delivery_count, 1,
            "invalid entries are not retried: {letter:?}"
        );
    }
    for letter in &letters[poison.len()..] {
        assert!(
            letter.reason.contains("cannot handle test.poison.boom"),
            "reason: {}",
            letter.reason
        );
        assert_eq!(
            letter.delivery_count, 3,
            "retried up to max_deliveries: {letter:?}"
        );
    }
    if let Some(redis) = &harness.redis {
        assert_eq!(
            redis.command(&["XLEN", "events:dead"]),
            letters.len().to_string()
        );
    }
    assert_eq!(harness.redis_pending(), 0);

    // fix the cartridge, replay the boom letters: they are processed like any entry
    boom.broken.store(false, Ordering::SeqCst);
    let target = harness.replay_target().await?;
    for letter in &letters[poison.len()..] {
        replay_dead_letter(&harness.db, target.as_ref(), letter.id).await?;
    }
    harness
        .wait_processed(raw.len() as i64 + 3, Duration::from_secs(60))
        .await?;
    running.stop().await?;
    for b in &booms {
        model.apply(b);
    }
    assert_matches_model(&harness.db, &model, false).await?;
    assert_eq!(
        harness.db.list_dead_letters(0, 100).await?.len(),
        poison.len()
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_poison_entries_are_dead_lettered_and_replayable() -> anyhow::Result<()> {
    poison_entries_are_dead_lettered_and_replayable(Kind::Embedded).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_poison_entries_are_dead_lettered_and_replayable() -> anyhow::Result<()> {
    poison_entries_are_dead_lettered_and_replayable(Kind::Redis).await
}
