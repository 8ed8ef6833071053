//! Integration tests of events-storage, one binary (see house style).

mod concurrency;
mod crash;
mod embedded;
mod events_log;
mod filters;
mod migrations;
mod model;
mod transitions;

use events_storage::{EventDb, NewNotification};
use serde_json::json;

/// A notification to insert; `i` varies the type and group.
pub(crate) fn new_notification(i: usize) -> NewNotification {
    NewNotification {
        event_type: format!("acme.order.n{}", i % 3),
        version: 1,
        source: "shop".into(),
        domain: "acme".into(),
        description: format!("order {i}"),
        payload: json!({ "order_id": i, "status": "placed" })
            .as_object()
            .cloned()
            .unwrap_or_default(),
        group_field: Some("order_id".into()),
        group_value: Some(i.to_string()),
        actionable: true,
        ..NewNotification::default()
    }
}

/// Inserts one notification and returns its id.
pub(crate) async fn insert(db: &EventDb, n: NewNotification) -> i64 {
    db.write(move |tx| tx.insert_notification(&n))
        .await
        .unwrap()
}
