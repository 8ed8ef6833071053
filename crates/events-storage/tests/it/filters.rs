//! Listing notifications: every filter, total, pagination, limit cap, bulk seen.

use events_envelope::{EventLevel, EventVisibility};
use events_storage::{AgentStatus, EventDb, HumanStatus, NotificationFilter};
use time::macros::datetime;

use crate::new_notification;

/// 30 rows: level = i % 4, domain alternates, every third public, created one minute apart.
async fn seeded() -> (EventDb, Vec<i64>) {
    let db = EventDb::open_in_memory().await.unwrap();
    let ids = db
        .write(|tx| {
            let mut ids = Vec::new();
            for i in 0..30usize {
                let mut n = new_notification(i);
                n.level = EventLevel::ALL[i % 4];
                n.domain = if i % 2 == 0 {
                    "even".into()
                } else {
                    "odd".into()
                };
                n.visibility = if i % 3 == 0 {
                    EventVisibility::Public
                } else {
                    EventVisibility::Local
                };
                let id = tx.insert_notification(&n)?;
                // Spread creation times so `since` and ordering are observable.
                tx.connection().execute(
                    "UPDATE notifications SET created_at = ?2 WHERE id = ?1",
                    rusqlite_params(id, i),
                )?;
                ids.push(id);
            }
            Ok(ids)
        })
        .await
        .unwrap();
    (db, ids)
}

fn rusqlite_params(id: i64, minute: usize) -> (i64, String) {
    (id, format!("2026-01-01T00:{minute:02}:00.000000Z"))
}

#[tokio::test]
async fn each_filter_narrows_and_total_counts_all_matches() {
    let (db, ids) = seeded().await;
    let all = db
        .list_notifications(NotificationFilter::default())
        .await
        .unwrap();
    assert_eq!(
        (all.total, all.limit, all.offset, all.notifications.len()),
        (30, 50, 0, 30)
    );
    // newest first
    let listed: Vec<i64> = all.notifications.iter().map(|n| n.id).collect();
    let mut expected = ids.clone();
    expected.reverse();
    assert_eq!(listed, expected);

    let by_level = db
        .list_notifications(NotificationFilter {
            level: Some(EventLevel::Workflow),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(by_level.total, 7); // i = 2, 6, ..., 26
    assert!(
        by_level
            .notifications
            .iter()
            .all(|n| n.level == EventLevel::Workflow)
    );

    let by_domain = db
        .list_notifications(NotificationFilter {
            domain: Some("odd".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(by_domain.total, 15);

    let by_visibility = db
        .list_notifications(NotificationFilter {
            visibility: Some(EventVisibility::Public),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(by_visibility.total, 10);

    let since = db
        .list_notifications(NotificationFilter {
            since: Some(datetime!(2026-01-01 00:25 UTC)),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(since.total, 5, "created_at >= since is inclusive");

    db.set_seen(ids[0], true).await.unwrap();
    db.claim(ids[1], "a").await.unwrap();
    db.claim(ids[2], "a").await.unwrap();
    let seen = db
        .list_notifications(NotificationFilter {
            human_status: Some(HumanStatus::Seen),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(
        seen.notifications.iter().map(|n| n.id).collect::<Vec<_>>(),
        vec![ids[0]]
    );
    let claimed = db
        .list_notifications(NotificationFilter {
            agent_status: Some(AgentStatus::Claimed),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(claimed.total, 2);

    let combined = db
        .list_notifications(NotificationFilter {
            domain: Some("even".into()),
            visibility: Some(EventVisibility::Public),
            level: Some(EventLevel::Infrastructure),
            ..Default::default()
        })
        .await
        .unwrap();
    // even, multiple of 3, multiple of 4 → i = 0, 12, 24
    assert_eq!(combined.total, 3);
}

#[tokio::test]
async fn pagination_offsets_and_caps() {
    let (db, ids) = seeded().await;
    let page = db
        .list_notifications(NotificationFilter {
            limit: Some(10),
            offset: Some(25),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(
        (
            page.total,
            page.notifications.len(),
            page.limit,
            page.offset
        ),
        (30, 5, 10, 25)
    );
    assert_eq!(page.notifications.last().map(|n| n.id), Some(ids[0]));
    let past = db
        .list_notifications(NotificationFilter {
            offset: Some(1000),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(
        (past.total, past.notifications.len()),
        (30, 0),
        "offset past the end is empty, not an error"
    );

    db.write(|tx| {
        for i in 0..220 {
            tx.insert_notification(&new_notification(i))?;
        }
        Ok(())
    })
    .await
    .unwrap();
    let capped = db
        .list_notifications(NotificationFilter {
            limit: Some(10_000),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(
        (capped.total, capped.limit, capped.notifications.len()),
        (250, 200, 200)
    );
    let zero = db
        .list_notifications(NotificationFilter {
            limit: Some(0),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!((zero.total, zero.notifications.len()), (250, 0));
}

#[tokio::test]
async fn mark_all_seen_touches_only_unseen_matches() {
    let (db, ids) = seeded().await;
    db.set_seen(ids[1], true).await.unwrap(); // odd domain, already seen
    let changed = db
        .mark_all_seen(NotificationFilter {
            domain: Some("odd".into()),
            limit: Some(1),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(
        changed, 14,
        "limit is ignored; the already-seen row is not counted"
    );
    let unseen = db
        .list_notifications(NotificationFilter {
            human_status: Some(HumanStatus::Unseen),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(unseen.total, 15);
    assert!(unseen.notifications.iter().all(|n| n.domain == "even"));
    assert_eq!(
        db.mark_all_seen(NotificationFilter::default())
            .await
            .unwrap(),
        15
    );
    assert_eq!(
        db.mark_all_seen(NotificationFilter::default())
            .await
            .unwrap(),
        0
    );
}
