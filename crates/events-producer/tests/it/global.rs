//! The process-wide producer. The only module of this binary that touches the global, so
//! the "not configured" state is observable.

use std::sync::Arc;

use events_producer::{
    Error, MemoryBus, clear_global_producer, emit_event, emit_events, set_global_producer,
};

use crate::event;

#[tokio::test]
async fn emit_event_without_a_producer_is_not_configured_then_works_once_set() {
    clear_global_producer();
    let err = emit_event(event("job.started", 0))
        .await
        .expect_err("no producer was set");
    assert!(matches!(err, Error::NotConfigured), "{err:?}");
    assert!(
        err.to_string().contains("set_global_producer"),
        "message says what to do: {err}"
    );
    assert!(matches!(
        emit_events(vec![event("job.started", 1)]).await,
        Err(Error::NotConfigured)
    ));

    let bus = MemoryBus::new();
    assert!(set_global_producer(Arc::new(bus.clone())).is_none());
    let receipt = emit_event(event("job.started", 2))
        .await
        .expect("global producer set");
    let receipts = emit_events(vec![event("job.done", 3), event("job.done", 4)])
        .await
        .expect("batch");
    assert_eq!(receipt.stream_id, "1-0");
    assert_eq!(
        receipts
            .iter()
            .map(|r| r.stream_id.as_str())
            .collect::<Vec<_>>(),
        ["2-0", "3-0"]
    );
    assert_eq!(bus.published_events().len(), 3);
    assert_eq!(bus.published_events()[0].id, receipt.id);

    assert!(clear_global_producer().is_some());
    assert!(matches!(
        emit_event(event("job.started", 5)).await,
        Err(Error::NotConfigured)
    ));
}
