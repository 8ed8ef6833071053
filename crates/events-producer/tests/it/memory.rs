//! `MemoryBus`: glob subscriptions, ordering, failing handlers, helpers.

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use events_envelope::EventEnvelope;
use events_producer::{Error, MemoryBus, MemoryBusConfig, Producer};

use crate::event;

const WAIT: Duration = Duration::from_secs(20);

/// A handler that records the event types it sees.
fn recorder(bus: &MemoryBus, pattern: Option<&str>) -> Arc<Mutex<Vec<String>>> {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&seen);
    let handler = move |event: EventEnvelope| {
        let sink = Arc::clone(&sink);
        async move {
            sink.lock().unwrap().push(event.event);
            Ok::<_, std::convert::Infallible>(())
        }
    };
    match pattern {
        Some(pattern) => bus.subscribe(pattern, handler),
        None => bus.subscribe_all(handler),
    };
    seen
}

fn seen(list: &Arc<Mutex<Vec<String>>>) -> Vec<String> {
    list.lock().unwrap().clone()
}

#[tokio::test]
async fn wildcard_patterns_select_by_event_type() {
    let bus = MemoryBus::new();
    let jobs = recorder(&bus, Some("job.*"));
    let failures = recorder(&bus, Some("*.failed"));
    let middle = recorder(&bus, Some("job.*.retried"));
    let exact = recorder(&bus, Some("job.started"));
    let everything = recorder(&bus, None);

    let types = [
        "job.started",
        "job.failed",
        "job.step.retried",
        "build.failed",
        "jobs.started",
        "job",
    ];
    for (i, t) in types.iter().enumerate() {
        // "job" is not a valid event type (no dot): it is refused, so nobody sees it.
        let result = bus.emit(event(t, i)).await;
        assert_eq!(result.is_ok(), *t != "job", "{t}: {result:?}");
    }
    bus.wait_idle(WAIT).await.expect("handlers finish");

    assert_eq!(
        seen(&jobs),
        ["job.started", "job.failed", "job.step.retried"]
    );
    assert_eq!(seen(&failures), ["job.failed", "build.failed"]);
    assert_eq!(seen(&middle), ["job.step.retried"]);
    assert_eq!(seen(&exact), ["job.started"]);
    assert_eq!(
        seen(&everything),
        [
            "job.started",
            "job.failed",
            "job.step.retried",
            "build.failed",
            "jobs.started"
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_subscriber_sees_1000_events_in_publish_order() {
    let bus = MemoryBus::new();
    let numbers: Vec<Arc<Mutex<Vec<u64>>>> =
        (0..3).map(|_| Arc::new(Mutex::new(Vec::new()))).collect();
    for (k, list) in numbers.iter().enumerate() {
        let list = Arc::clone(list);
        bus.subscribe("order.*", move |event: EventEnvelope| {
            let list = Arc::clone(&list);
            async move {
                // Vary the handler's pace so an ordering bug would show.
                if event.payload["i"]
                    .as_u64()
                    .unwrap_or(0)
                    .is_multiple_of(7 + k as u64)
                {
                    tokio::task::yield_now().await;
                }
                list.lock()
                    .unwrap()
                    .push(event.payload["i"].as_u64().unwrap_or(u64::MAX));
                Ok::<_, String>(())
            }
        });
    }
    // Half one at a time, half as batches.
    for i in 0..500 {
        bus.emit(event("order.placed", i)).await.expect("emit");
    }
    for chunk in (500..1000).collect::<Vec<_>>().chunks(100) {
        bus.emit_batch(chunk.iter().map(|&i| event("order.placed", i)).collect())
            .await
            .expect("batch");
    }
    bus.wait_idle(WAIT).await.expect("handlers finish");

    let expected: Vec<u64> = (0..1000).collect();
    for list in &numbers {
        assert_eq!(*list.lock().unwrap(), expected);
    }
    let published: Vec<u64> = bus
        .published_events()
        .iter()
        .filter_map(|e| e.payload["i"].as_u64())
        .collect();
    assert_eq!(published, expected);
}

#[tokio::test]
async fn a_failing_or_panicking_handler_does_not_stop_the_others_or_itself() {
    let bus = MemoryBus::new();
    let attempts = Arc::new(Mutex::new(0_u32));
    let counter = Arc::clone(&attempts);
    bus.subscribe("job.*", move |event: EventEnvelope| {
        let counter = Arc::clone(&counter);
        async move {
            *counter.lock().unwrap() += 1;
            match event.payload["i"].as_u64() {
                Some(0) => Err(format!("handler refuses {}", event.id)),
                Some(1) => panic!("handler bug on purpose"),
                _ => Ok(()),
            }
        }
    });
    let healthy = recorder(&bus, Some("job.*"));

    for i in 0..3 {
        bus.emit(event("job.step", i))
            .await
            .expect("emit never fails because of a handler");
    }
    bus.wait_idle(WAIT).await.expect("handlers finish");

    assert_eq!(
        *attempts.lock().unwrap(),
        3,
        "the failing subscription went on to the next events"
    );
    assert_eq!(seen(&healthy), ["job.step"; 3]);
}

#[tokio::test]
async fn helpers_published_events_of_type_clear_and_wait_for() {
    let bus = MemoryBus::new();
    let receipts = bus
        .emit_batch(vec![
            event("job.started", 0),
            event("build.done", 1),
            event("job.done", 2),
        ])
        .await
        .expect("batch");
    assert_eq!(
        receipts
            .iter()
            .map(|r| r.stream_id.as_str())
            .collect::<Vec<_>>(),
        ["1-0", "2-0", "3-0"]
    );

    let published = bus.published_events();
    assert_eq!(
        published.iter().map(|e| e.id.as_str()).collect::<Vec<_>>(),
        receipts.iter().map(|r| r.id.as_str()).collect::<Vec<_>>()
    );
    let jobs: Vec<String> = bus
        .events_of_type("job.*")
        .into_iter()
        .map(|e| e.event)
        .collect();
    assert_eq!(jobs, ["job.started", "job.done"]);
    assert!(bus.events_of_type("deploy.*").is_empty());

    bus.clear();
    assert!(bus.published_events().is_empty());
    let after_clear = bus.emit(event("job.started", 3)).await.expect("emit");
    assert_eq!(
        after_clear.stream_id, "4-0",
        "stream ids keep counting across clear()"
    );

    // wait_for: events emitted from a background task.
    bus.clear();
    let background = bus.clone();
    tokio::spawn(async move {
        for i in 0..5 {
            tokio::time::sleep(Duration::from_millis(5)).await;
            background.emit(event("job.tick", i)).await.expect("emit");
        }
    });
    let events = bus.wait_for(5, WAIT).await.expect("five events arrive");
    assert_eq!(events.len(), 5);

    let err = bus
        .wait_for(6, Duration::from_millis(50))
        .await
        .expect_err("no sixth event");
    assert!(err.to_string().contains("5 of 6 events"), "{err}");
}

#[tokio::test]
async fn invalid_events_are_refused_whole_and_reach_no_subscriber() {
    let bus = MemoryBus::new();
    let everything = recorder(&bus, None);
    let mut bad = event("job.started", 1);
    bad.source = String::new();
    let err = bus
        .emit_batch(vec![event("job.started", 0), bad])
        .await
        .expect_err("empty source");
    match &err {
        Error::Invalid { index, source } => {
            assert_eq!(*index, 1);
            assert_eq!(source.field, "source");
        }
        other => panic!("expected Invalid, got {other:?}"),
    }
    bus.wait_idle(WAIT).await.expect("idle");
    assert!(bus.published_events().is_empty());
    assert!(seen(&everything).is_empty());
}

#[tokio::test]
async fn unsubscribe_stops_delivery_and_history_limit_bounds_memory() {
    let bus = MemoryBus::with_config(MemoryBusConfig {
        history_limit: Some(2),
        ..MemoryBusConfig::default()
    });
    let seen_events = Arc::new(Mutex::new(0_u32));
    let counter = Arc::clone(&seen_events);
    let id = bus.subscribe_all(move |_event: EventEnvelope| {
        let counter = Arc::clone(&counter);
        async move {
            *counter.lock().unwrap() += 1;
            Ok::<_, String>(())
        }
    });
    assert_eq!(bus.subscriber_count(), 1);
    bus.emit(event("job.a", 0)).await.expect("emit");
    bus.wait_idle(WAIT).await.expect("idle");
    assert!(bus.unsubscribe(id));
    assert!(
        !bus.unsubscribe(id),
        "second unsubscribe reports it was gone"
    );
    bus.emit(event("job.b", 1)).await.expect("emit");
    bus.emit(event("job.c", 2)).await.expect("emit");
    bus.wait_idle(WAIT).await.expect("idle");
    assert_eq!(*seen_events.lock().unwrap(), 1);

    let kept: Vec<String> = bus
        .published_events()
        .into_iter()
        .map(|e| e.event)
        .collect();
    assert_eq!(kept, ["job.b", "job.c"], "history keeps the newest two");
}
