//! Embedded transport, processed entries and dead letters.

use events_storage::{EventDb, NewDeadLetter};

fn fields(n: usize) -> Vec<(String, String)> {
    vec![
        ("event".into(), format!("job.n{n}")),
        ("payload".into(), "{}".into()),
        ("event".into(), "dup-key".into()),
    ]
}

#[tokio::test]
async fn embedded_stream_appends_reads_and_keeps_offsets() {
    let db = EventDb::open_in_memory().await.unwrap();
    let ids = db
        .write(|tx| {
            let mut ids = Vec::new();
            for n in 0..5 {
                ids.push(tx.embedded_append("events:stream", &fields(n))?);
            }
            tx.embedded_append("other", &fields(99))?;
            Ok(ids)
        })
        .await
        .unwrap();
    assert_eq!(ids, vec!["1-0", "2-0", "3-0", "4-0", "5-0"]);
    let first = db
        .read(|r| r.read_embedded("events:stream", "0", 2))
        .await
        .unwrap();
    assert_eq!(
        first.iter().map(|e| e.id.as_str()).collect::<Vec<_>>(),
        vec!["1-0", "2-0"]
    );
    assert_eq!(
        first[0].fields,
        fields(0),
        "fields keep order and duplicates"
    );
    let rest = db
        .read(|r| r.read_embedded("events:stream", "2-0", 100))
        .await
        .unwrap();
    assert_eq!(rest.len(), 3);
    assert!(rest.iter().all(|e| e.stream == "events:stream"));
    assert!(
        db.read(|r| r.read_embedded("events:stream", "$", 1))
            .await
            .is_err()
    );

    assert_eq!(
        db.read(|r| r.consumer_offset("events:stream", "g"))
            .await
            .unwrap(),
        None
    );
    db.write(|tx| tx.set_consumer_offset("events:stream", "g", "2-0"))
        .await
        .unwrap();
    db.write(|tx| tx.set_consumer_offset("events:stream", "g", "4-0"))
        .await
        .unwrap();
    assert_eq!(
        db.read(|r| r.consumer_offset("events:stream", "g"))
            .await
            .unwrap()
            .as_deref(),
        Some("4-0")
    );
    assert!(
        db.write(|tx| tx.set_consumer_offset("events:stream", "g", "latest"))
            .await
            .is_err()
    );
}

#[tokio::test]
async fn processed_entries_make_redelivery_detectable() {
    let db = EventDb::open_in_memory().await.unwrap();
    assert!(db.write(|tx| tx.mark_processed("s", "1-0")).await.unwrap());
    assert!(!db.write(|tx| tx.mark_processed("s", "1-0")).await.unwrap());
    assert!(
        db.write(|tx| tx.mark_processed("t", "1-0")).await.unwrap(),
        "per stream"
    );
    assert!(db.read(|r| r.is_processed("s", "1-0")).await.unwrap());
    assert!(!db.read(|r| r.is_processed("s", "2-0")).await.unwrap());
}

#[tokio::test]
async fn dead_letters_are_stored_listed_and_deleted() {
    let db = EventDb::open_in_memory().await.unwrap();
    let ids = db
        .write(|tx| {
            (0..3)
                .map(|n| {
                    tx.insert_dead_letter(&NewDeadLetter {
                        stream: "events:stream".into(),
                        entry_id: format!("{n}-0"),
                        fields: fields(n),
                        reason: format!("missing field order_id ({n})"),
                        delivery_count: 5,
                    })
                })
                .collect::<Result<Vec<_>, _>>()
        })
        .await
        .unwrap();
    let listed = db.list_dead_letters(0, 10).await.unwrap();
    assert_eq!(listed.iter().map(|d| d.id).collect::<Vec<_>>(), ids);
    assert_eq!(listed[1].fields, fields(1));
    assert_eq!(listed[1].delivery_count, 5);
    assert_eq!(
        db.list_dead_letters(ids[0], 1)
            .await
            .unwrap()
            .iter()
            .map(|d| d.id)
            .collect::<Vec<_>>(),
        vec![ids[1]]
    );
    let one = db.get_dead_letter(ids[2]).await.unwrap().unwrap();
    assert!(one.reason.contains("order_id"));
    assert!(db.delete_dead_letter(ids[2]).await.unwrap());
    assert!(!db.delete_dead_letter(ids[2]).await.unwrap());
    assert!(db.get_dead_letter(ids[2]).await.unwrap().is_none());
}
