//! Every transition of the §6 state machine, including 409 cases and idempotent repeats.

use events_storage::{AgentStatus, EventDb, HumanStatus, Transition};
use serde_json::json;

use crate::{insert, new_notification};

#[track_caller]
fn changed(t: Transition) -> events_storage::Notification {
    match t {
        Transition::Changed(n) => n,
        other => panic!("expected Changed, got {other:?}"),
    }
}

#[track_caller]
fn unchanged(t: Transition) -> events_storage::Notification {
    match t {
        Transition::Unchanged(n) => n,
        other => panic!("expected Unchanged, got {other:?}"),
    }
}

#[track_caller]
fn conflict(t: Transition) -> events_storage::Notification {
    match t {
        Transition::Conflict { current } => current,
        other => panic!("expected Conflict, got {other:?}"),
    }
}

#[track_caller]
fn invalid(t: Transition) -> String {
    match t {
        Transition::Invalid(reason) => reason,
        other => panic!("expected Invalid, got {other:?}"),
    }
}

#[tokio::test]
async fn new_notification_is_unseen_and_unclaimed() {
    let db = EventDb::open_in_memory().await.unwrap();
    let id = insert(&db, new_notification(1)).await;
    let n = db.get_notification(id).await.unwrap().unwrap();
    assert_eq!(n.human_status, HumanStatus::Unseen);
    assert_eq!(n.agent_status, AgentStatus::None);
    assert_eq!(
        (
            n.agent_id,
            n.seen_at,
            n.claimed_at,
            n.resolved_at,
            n.resolution
        ),
        (None, None, None, None, None)
    );
    assert_eq!(n.created_at, n.updated_at);
    assert!(db.get_notification(id + 1).await.unwrap().is_none());
}

#[tokio::test]
async fn seen_and_unseen_toggle_with_idempotent_repeats() {
    let db = EventDb::open_in_memory().await.unwrap();
    let id = insert(&db, new_notification(1)).await;
    let n = changed(db.set_seen(id, true).await.unwrap());
    assert_eq!(n.human_status, HumanStatus::Seen);
    assert!(n.seen_at.is_some());
    let again = unchanged(db.set_seen(id, true).await.unwrap());
    assert_eq!(again, n, "a repeat must not touch the row");
    let n = changed(db.set_seen(id, false).await.unwrap());
    assert_eq!(n.human_status, HumanStatus::Unseen);
    assert_eq!(n.seen_at, None);
    unchanged(db.set_seen(id, false).await.unwrap());
    assert_eq!(
        db.set_seen(id + 100, true).await.unwrap(),
        Transition::NotFound
    );
}

#[tokio::test]
async fn claim_by_same_agent_is_unchanged_and_by_another_conflicts() {
    let db = EventDb::open_in_memory().await.unwrap();
    let id = insert(&db, new_notification(1)).await;
    let n = changed(db.claim(id, "agent-a").await.unwrap());
    assert_eq!(n.agent_status, AgentStatus::Claimed);
    assert_eq!(n.agent_id.as_deref(), Some("agent-a"));
    assert!(n.claimed_at.is_some());
    assert_eq!(unchanged(db.claim(id, "agent-a").await.unwrap()), n);
    let current = conflict(db.claim(id, "agent-b").await.unwrap());
    assert_eq!(
        current.agent_id.as_deref(),
        Some("agent-a"),
        "conflict reports the holder"
    );
    // While in progress, the same rules hold.
    changed(
        db.set_agent_status(id, AgentStatus::InProgress, "agent-a")
            .await
            .unwrap(),
    );
    conflict(db.claim(id, "agent-b").await.unwrap());
    let n = unchanged(db.claim(id, "agent-a").await.unwrap());
    assert_eq!(
        n.agent_status,
        AgentStatus::InProgress,
        "a repeat claim does not step back"
    );
    invalid(db.claim(id, "  ").await.unwrap());
    assert_eq!(
        db.claim(id + 1, "agent-a").await.unwrap(),
        Transition::NotFound
    );
}

#[tokio::test]
async fn status_changes_follow_the_claim() {
    let db = EventDb::open_in_memory().await.unwrap();
    let id = insert(&db, new_notification(1)).await;
    // in_progress without a claim
    let reason = invalid(
        db.set_agent_status(id, AgentStatus::InProgress, "a")
            .await
            .unwrap(),
    );
    assert!(reason.contains("claim"), "{reason}");
    // none → none is a no-op; status claimed works as a claim
    unchanged(
        db.set_agent_status(id, AgentStatus::None, "a")
            .await
            .unwrap(),
    );
    let n = changed(
        db.set_agent_status(id, AgentStatus::Claimed, "a")
            .await
            .unwrap(),
    );
    assert_eq!(
        (n.agent_status, n.agent_id.as_deref()),
        (AgentStatus::Claimed, Some("a"))
    );
    // a non-claimer may not change the status
    let reason = invalid(
        db.set_agent_status(id, AgentStatus::InProgress, "b")
            .await
            .unwrap(),
    );
    assert!(reason.contains("claimed by a"), "{reason}");
    invalid(
        db.set_agent_status(id, AgentStatus::None, "b")
            .await
            .unwrap(),
    );
    // claimer: claimed → in_progress → (repeat) → claimed
    let n = changed(
        db.set_agent_status(id, AgentStatus::InProgress, "a")
            .await
            .unwrap(),
    );
    assert_eq!(n.agent_status, AgentStatus::InProgress);
    unchanged(
        db.set_agent_status(id, AgentStatus::InProgress, "a")
            .await
            .unwrap(),
    );
    let n = changed(
        db.set_agent_status(id, AgentStatus::Claimed, "a")
            .await
            .unwrap(),
    );
    assert_eq!(n.agent_status, AgentStatus::Claimed);
    // status none by the claimer releases it, after which another agent can claim
    let n = changed(
        db.set_agent_status(id, AgentStatus::None, "a")
            .await
            .unwrap(),
    );
    assert_eq!(
        (n.agent_status, n.agent_id, n.claimed_at),
        (AgentStatus::None, None, None)
    );
    let n = changed(db.claim(id, "b").await.unwrap());
    assert_eq!(n.agent_id.as_deref(), Some("b"));
    // resolved is not a status one sets; resolve records a resolution
    invalid(
        db.set_agent_status(id, AgentStatus::Resolved, "b")
            .await
            .unwrap(),
    );
    invalid(
        db.set_agent_status(id, AgentStatus::Claimed, "")
            .await
            .unwrap(),
    );
    assert_eq!(
        db.set_agent_status(id + 1, AgentStatus::Claimed, "a")
            .await
            .unwrap(),
        Transition::NotFound
    );
}

#[tokio::test]
async fn nothing_happens_after_resolved() {
    let db = EventDb::open_in_memory().await.unwrap();
    let id = insert(&db, new_notification(1)).await;
    changed(db.claim(id, "a").await.unwrap());
    let resolution = json!({"summary": "fixed", "resolved_by": "a"});
    let n = changed(db.resolve(id, resolution.clone()).await.unwrap());
    assert_eq!(n.agent_status, AgentStatus::Resolved);
    assert_eq!(n.resolution, Some(resolution));
    assert!(n.resolved_at.is_some());
    assert_eq!(
        n.agent_id.as_deref(),
        Some("a"),
        "the resolver's claim is kept for the record"
    );
    conflict(db.resolve(id, json!({"summary": "again"})).await.unwrap());
    conflict(db.claim(id, "a").await.unwrap());
    conflict(db.claim(id, "b").await.unwrap());
    for status in [
        AgentStatus::None,
        AgentStatus::Claimed,
        AgentStatus::InProgress,
        AgentStatus::Resolved,
    ] {
        conflict(db.set_agent_status(id, status, "a").await.unwrap());
    }
    // the human side is independent
    changed(db.set_seen(id, true).await.unwrap());
    let after = db.get_notification(id).await.unwrap().unwrap();
    assert_eq!(after.resolution, n.resolution);
}

#[tokio::test]
async fn resolve_works_unclaimed_and_rejects_non_objects() {
    let db = EventDb::open_in_memory().await.unwrap();
    let id = insert(&db, new_notification(1)).await;
    invalid(db.resolve(id, json!("done")).await.unwrap());
    let n = changed(db.resolve(id, json!({})).await.unwrap());
    assert_eq!((n.agent_status, n.agent_id), (AgentStatus::Resolved, None));
    assert_eq!(
        db.resolve(id + 1, json!({})).await.unwrap(),
        Transition::NotFound
    );
}

#[test]
fn unknown_status_strings_fail_to_parse() {
    let err = "done".parse::<AgentStatus>().unwrap_err();
    assert!(err.to_string().contains("\"done\""), "{err}");
    assert!(err.to_string().contains("in_progress"), "{err}");
    assert_eq!(
        "in_progress".parse::<AgentStatus>().unwrap(),
        AgentStatus::InProgress
    );
    assert!("Seen".parse::<HumanStatus>().is_err());
    assert_eq!(
        serde_json::to_value(AgentStatus::InProgress).unwrap(),
        json!("in_progress")
    );
}

#[tokio::test]
async fn meaningful_update_resets_unseen_and_silent_does_not() {
    let db = EventDb::open_in_memory().await.unwrap();
    let id = insert(&db, new_notification(1)).await;
    changed(db.set_seen(id, true).await.unwrap());
    let payload = json!({"order_id": 1, "progress": 50})
        .as_object()
        .cloned()
        .unwrap();
    let p = payload.clone();
    db.write(move |tx| tx.update_notification(id, &p, "half way", false))
        .await
        .unwrap();
    let n = db.get_notification(id).await.unwrap().unwrap();
    assert_eq!(
        (n.human_status, n.payload.clone(), n.description.as_str()),
        (HumanStatus::Seen, payload, "half way")
    );
    assert!(n.seen_at.is_some());
    let p = json!({"order_id": 1, "status": "shipped"})
        .as_object()
        .cloned()
        .unwrap();
    db.write(move |tx| tx.update_notification(id, &p, "shipped", true))
        .await
        .unwrap();
    let m = db.get_notification(id).await.unwrap().unwrap();
    assert_eq!((m.human_status, m.seen_at), (HumanStatus::Unseen, None));
    assert!(m.updated_at >= n.updated_at);
    // a meaningful update of a row that is unseen already (the statement that leaves
    // `human_status` alone) still replaces the content
    let p = json!({"order_id": 1, "status": "delivered"})
        .as_object()
        .cloned()
        .unwrap();
    let expected = p.clone();
    db.write(move |tx| tx.update_notification(id, &p, "delivered", true))
        .await
        .unwrap();
    let u = db.get_notification(id).await.unwrap().unwrap();
    assert_eq!(
        (u.human_status, u.seen_at, u.payload, u.description.as_str()),
        (HumanStatus::Unseen, None, expected, "delivered")
    );
    let p = serde_json::Map::new();
    let err = db
        .write(move |tx| tx.update_notification(id + 9, &p, "", true))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("no notification"), "{err}");
}

#[tokio::test]
async fn upsert_by_idempotency_key_reports_creation_once() {
    let db = EventDb::open_in_memory().await.unwrap();
    let mut n = new_notification(1);
    n.idempotency_key = Some("order:1".into());
    let first = n.clone();
    let (id, created) = db
        .write(move |tx| tx.upsert_by_idempotency_key(&first))
        .await
        .unwrap();
    assert!(created);
    db.claim(id, "a").await.unwrap();
    n.description = "order 1 again".into();
    let second = n.clone();
    let (id2, created) = db
        .write(move |tx| tx.upsert_by_idempotency_key(&second))
        .await
        .unwrap();
    assert_eq!((id2, created), (id, false));
    let row = db.get_notification(id).await.unwrap().unwrap();
    assert_eq!(row.description, "order 1 again");
    assert_eq!(
        row.agent_status,
        AgentStatus::Claimed,
        "an upsert keeps the state"
    );
    // a plain insert of the same key violates the unique constraint and rolls back
    let third = n.clone();
    assert!(
        db.write(move |tx| tx.insert_notification(&third))
            .await
            .is_err()
    );
    // without a key, every upsert creates
    n.idempotency_key = None;
    let (a, b) = (n.clone(), n);
    let (_, c1) = db
        .write(move |tx| tx.upsert_by_idempotency_key(&a))
        .await
        .unwrap();
    let (_, c2) = db
        .write(move |tx| tx.upsert_by_idempotency_key(&b))
        .await
        .unwrap();
    assert!(c1 && c2);
}

#[tokio::test]
async fn find_open_by_group_returns_newest_unresolved() {
    let db = EventDb::open_in_memory().await.unwrap();
    let older = insert(&db, new_notification(7)).await;
    let newer = insert(&db, new_notification(7)).await;
    let _other = insert(&db, new_notification(8)).await;
    let found = db
        .write(|tx| tx.find_open_by_group("acme", "order_id", "7"))
        .await
        .unwrap();
    assert_eq!(found.map(|n| n.id), Some(newer));
    db.resolve(newer, json!({})).await.unwrap();
    let found = db
        .write(|tx| tx.find_open_by_group("acme", "order_id", "7"))
        .await
        .unwrap();
    assert_eq!(found.map(|n| n.id), Some(older));
    db.resolve(older, json!({})).await.unwrap();
    assert!(
        db.write(|tx| tx.find_open_by_group("acme", "order_id", "7"))
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        db.read(|r| r.find_open_by_group("other", "order_id", "8"))
            .await
            .unwrap()
            .is_none()
    );
}

#[tokio::test]
async fn projector_lookup_and_resolve_match_the_full_row_versions() {
    let db = EventDb::open_in_memory().await.unwrap();
    let older = insert(&db, new_notification(7)).await;
    let newer = insert(&db, new_notification(7)).await;
    let open = db
        .write(|tx| tx.find_open_in_group("acme", "order_id", "7"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(open.id, newer);
    assert_eq!(
        serde_json::Value::Object(open.payload().unwrap()),
        json!({ "order_id": 7, "status": "placed" })
    );
    let resolution = json!({ "by": "ci" }).as_object().cloned().unwrap();
    let r = resolution.clone();
    db.write(move |tx| tx.resolve_found_notification(newer, &r))
        .await
        .unwrap();
    let resolved = db.get_notification(newer).await.unwrap().unwrap();
    assert_eq!(resolved.agent_status, AgentStatus::Resolved);
    assert_eq!(resolved.resolution, Some(json!({ "by": "ci" })));
    assert!(resolved.resolved_at.is_some());
    assert_eq!(resolved.updated_at, resolved.resolved_at.unwrap());
    // the next lookup finds the older one; resolving the resolved one again is refused
    let found = db
        .read(|r| r.find_open_in_group("acme", "order_id", "7"))
        .await
        .unwrap();
    assert_eq!(found.map(|o| o.id), Some(older));
    let r = resolution.clone();
    assert!(
        db.write(move |tx| tx.resolve_found_notification(newer, &r))
            .await
            .is_err()
    );
    let still = db.get_notification(newer).await.unwrap().unwrap();
    assert_eq!(still.resolved_at, resolved.resolved_at);
    assert!(
        db.write(move |tx| tx.resolve_found_notification(9_999, &resolution))
            .await
            .is_err()
    );
}

#[tokio::test]
async fn notification_json_has_every_column_with_typed_values() {
    let db = EventDb::open_in_memory().await.unwrap();
    let id = insert(&db, new_notification(3)).await;
    let n = changed(db.resolve(id, json!({"summary": "ok"})).await.unwrap());
    let v = serde_json::to_value(&n).unwrap();
    for column in [
        "id",
        "event_type",
        "version",
        "source",
        "level",
        "domain",
        "visibility",
        "entity",
        "description",
        "payload",
        "idempotency_key",
        "human_status",
        "agent_status",
        "agent_id",
        "resolution",
        "created_at",
        "updated_at",
        "seen_at",
        "claimed_at",
        "resolved_at",
        "event_id",
        "actionable",
        "group_field",
        "group_value",
    ] {
        assert!(v.get(column).is_some(), "missing column {column} in {v}");
    }
    assert_eq!(v["actionable"], json!(true));
    assert_eq!(v["payload"]["order_id"], json!(3));
    assert_eq!(v["resolution"], json!({"summary": "ok"}));
    assert_eq!(v["agent_status"], json!("resolved"));
    let created = v["created_at"].as_str().unwrap();
    assert_eq!(
        created.len(),
        "2026-01-01T00:00:00.000000Z".len(),
        "{created}"
    );
    assert!(created.ends_with('Z'));
    let back: events_storage::Notification = serde_json::from_value(v).unwrap();
    assert_eq!(back, n);
}
