//! `RedisProducer` against a private `redis-server` started by events-testkit.

use std::{collections::HashMap, net::TcpListener, sync::Arc, time::Duration};

use events_envelope::{EventEnvelope, from_stream_fields};
use events_producer::{Error, Producer, ReconnectConfig, RedisProducer, RedisProducerConfig};
use events_testkit::RedisServer;
use fred::{
    clients::Client,
    interfaces::{ClientLike, KeysInterface, StreamsInterface},
    types::config::Config,
};

use crate::event;

/// Generous bound on anything that could hang; never a timing assertion.
const BOUND: Duration = Duration::from_secs(30);

fn config(url: &str) -> RedisProducerConfig {
    RedisProducerConfig {
        connect_timeout: Duration::from_secs(2),
        command_timeout: Duration::from_secs(3),
        reconnect: ReconnectConfig {
            min_delay: Duration::from_millis(50),
            max_delay: Duration::from_millis(500),
            max_attempts: 0,
        },
        ..RedisProducerConfig::new(url)
    }
}

async fn reader(server: &RedisServer) -> Client {
    let client = Client::new(
        Config::from_url(&server.url()).expect("url"),
        None,
        None,
        None,
    );
    client.init().await.expect("reader connects");
    client
}

/// Every entry of `stream`, decoded, with its stream id.
async fn read_back(client: &Client, stream: &str) -> Vec<(String, EventEnvelope)> {
    let entries: Vec<(String, HashMap<String, String>)> =
        client.xrange(stream, "-", "+", None).await.expect("XRANGE");
    entries
        .into_iter()
        .map(|(id, fields)| {
            let event = from_stream_fields(fields, &id)
                .unwrap_or_else(|e| panic!("entry {id} decodes: {e}"));
            (id, event)
        })
        .collect()
}

async fn xlen(client: &Client, stream: &str) -> u64 {
    client.xlen(stream).await.expect("XLEN")
}

#[tokio::test]
async fn single_emit_reads_back_equal() {
    let server = RedisServer::start();
    let producer = RedisProducer::connect(config(&server.url()))
        .await
        .expect("connect");
    let sent = event("job.started", 1)
        .with_entity("telec://todo/x")
        .with_correlation_id("corr-1")
        .with_idempotency_key("job.started:1");

    let receipt = producer.emit(sent.clone()).await.expect("emit");

    assert_eq!(receipt.id, sent.id);
    let reader = reader(&server).await;
    let entries = read_back(&reader, "events:stream").await;
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].0, receipt.stream_id);
    assert_eq!(entries[0].1, sent);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_of_10000_lands_in_order_and_decodes_equal() {
    let server = RedisServer::start();
    let producer = RedisProducer::connect(RedisProducerConfig {
        stream: "batch:test".into(),
        ..config(&server.url())
    })
    .await
    .expect("connect");
    let events: Vec<EventEnvelope> = (0..10_000).map(|i| event("job.step", i)).collect();

    let receipts = tokio::time::timeout(BOUND, producer.emit_batch(events.clone()))
        .await
        .expect("batch finishes")
        .expect("batch succeeds");

    assert_eq!(receipts.len(), events.len());
    let reader = reader(&server).await;
    let entries = read_back(&reader, "batch:test").await;
    assert_eq!(entries.len(), events.len());
    for (i, ((stream_id, decoded), (sent, receipt))) in
        entries.iter().zip(events.iter().zip(&receipts)).enumerate()
    {
        assert_eq!(decoded, sent, "entry {i} decodes back equal");
        assert_eq!(stream_id, &receipt.stream_id, "receipt {i} names its entry");
        assert_eq!(receipt.id, sent.id);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_killed_mid_batch_gives_an_error_not_a_hang() {
    let server = Arc::new(RedisServer::start());
    // Small chunks: many round trips, so the kill lands in the middle.
    let producer = RedisProducer::connect(RedisProducerConfig {
        batch_chunk_size: 50,
        ..config(&server.url())
    })
    .await
    .expect("connect");
    let reader = reader(&server).await;
    let events: Vec<EventEnvelope> = (0..50_000).map(|i| event("job.step", i)).collect();

    let batch = tokio::spawn(async move { producer.emit_batch(events).await });
    // Kill as soon as the first entries are in.
    tokio::time::timeout(BOUND, async {
        while xlen(&reader, "events:stream").await == 0 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    })
    .await
    .expect("the batch starts writing");
    server.kill();

    let outcome = tokio::time::timeout(BOUND, batch)
        .await
        .expect("an error, not a hang")
        .expect("task");
    let err = outcome.expect_err("the batch cannot complete against a dead redis");
    assert!(err.is_transient(), "{err:?}");
    assert!(err.to_string().contains(&server.url()), "{err}");
}

#[tokio::test]
async fn emits_succeed_again_after_redis_restarts() {
    let server = RedisServer::start();
    let producer = RedisProducer::connect(config(&server.url()))
        .await
        .expect("connect");
    producer
        .emit(event("job.started", 0))
        .await
        .expect("first emit");

    server.restart();

    // Bounded retry: the first emits after the restart may land while fred reconnects.
    let mut last_error = None;
    let mut receipt = None;
    for _ in 0..30 {
        match tokio::time::timeout(BOUND, producer.emit(event("job.started", 1)))
            .await
            .expect("bounded")
        {
            Ok(r) => {
                receipt = Some(r);
                break;
            }
            Err(e) => {
                assert!(
                    e.is_transient(),
                    "only transient errors while reconnecting: {e:?}"
                );
                last_error = Some(e);
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
    let receipt = receipt
        .unwrap_or_else(|| panic!("no emit succeeded after restart; last error: {last_error:?}"));
    let reader = reader(&server).await;
    let entries = read_back(&reader, "events:stream").await;
    assert!(
        entries.iter().any(|(id, _)| *id == receipt.stream_id),
        "the new entry is in the restarted redis"
    );
}

#[tokio::test]
async fn nothing_listening_is_unavailable_with_the_url() {
    let port = {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.local_addr().expect("addr").port()
    };
    let url = format!("redis://127.0.0.1:{port}");

    let err = tokio::time::timeout(BOUND, RedisProducer::connect(config(&url)))
        .await
        .expect("connect gives up in time")
        .expect_err("nothing listens there");

    match &err {
        Error::Unavailable { url: in_error, .. } => assert_eq!(in_error, &url),
        other => panic!("expected Unavailable, got {other:?}"),
    }
    assert_eq!(
        err.to_string(),
        format!("cannot reach redis at {url}: connection refused")
    );
}

#[tokio::test]
async fn maxlen_trims_approximately_and_none_keeps_everything() {
    let server = RedisServer::start();
    let reader = reader(&server).await;

    let capped = RedisProducer::connect(RedisProducerConfig {
        stream: "capped".into(),
        maxlen: Some(100),
        ..config(&server.url())
    })
    .await
    .expect("connect");
    capped
        .emit_batch((0..1_000).map(|i| event("job.step", i)).collect())
        .await
        .expect("batch");
    for i in 0..10 {
        capped.emit(event("job.step", i)).await.expect("emit");
    }
    let len = xlen(&reader, "capped").await;
    // `~` trims whole nodes (100 entries each by default): at least the cap, well below 1,010.
    assert!(
        (100..=300).contains(&len),
        "approximately 100 entries kept, got {len}"
    );
    let newest = read_back(&reader, "capped").await;
    assert_eq!(
        newest.last().map(|(_, e)| e.payload["i"].as_u64()),
        Some(Some(9)),
        "the newest entries are kept"
    );

    for maxlen in [None, Some(0)] {
        let stream = format!("uncapped-{maxlen:?}");
        let uncapped = RedisProducer::connect(RedisProducerConfig {
            stream: stream.clone(),
            maxlen,
            ..config(&server.url())
        })
        .await
        .expect("connect");
        uncapped
            .emit_batch((0..1_000).map(|i| event("job.step", i)).collect())
            .await
            .expect("batch");
        assert_eq!(
            xlen(&reader, &stream).await,
            1_000,
            "{maxlen:?} never trims"
        );
    }
}

#[tokio::test]
async fn invalid_envelopes_are_refused_before_anything_is_sent() {
    let server = RedisServer::start();
    let reader = reader(&server).await;
    let producer = RedisProducer::connect(RedisProducerConfig {
        max_payload_bytes: 1_024,
        ..config(&server.url())
    })
    .await
    .expect("connect");

    let mut bad_name = event("job.started", 0);
    bad_name.event = "Not A Valid Name".into();
    let err = producer.emit(bad_name).await.expect_err("bad event name");
    assert!(
        matches!(&err, Error::Invalid { index: 0, source } if source.field == "event"),
        "{err:?}"
    );
    assert!(err.to_string().contains("invalid event"), "{err}");

    let big = event("job.started", 1).with_field("blob", "x".repeat(2_000));
    let err = producer
        .emit_batch(vec![event("job.started", 0), event("job.started", 1), big])
        .await
        .expect_err("oversized payload");
    match &err {
        Error::Invalid { index, source } => {
            assert_eq!(*index, 2);
            assert_eq!(source.field, "payload");
        }
        other => panic!("expected Invalid, got {other:?}"),
    }

    let mut empty_source = event("job.started", 2);
    empty_source.source = " ".into();
    let err = producer.emit(empty_source).await.expect_err("empty source");
    assert!(err.to_string().contains("source"), "{err}");

    assert_eq!(
        xlen(&reader, "events:stream").await,
        0,
        "nothing of a refused call reaches redis"
    );
}

#[tokio::test]
async fn a_wrong_type_key_is_rejected_with_redis_message() {
    let server = RedisServer::start();
    let reader = reader(&server).await;
    let () = reader
        .set("not-a-stream", "plain string", None, None, false)
        .await
        .expect("SET");
    let producer = RedisProducer::connect(RedisProducerConfig {
        stream: "not-a-stream".into(),
        ..config(&server.url())
    })
    .await
    .expect("connect");

    let err = producer
        .emit(event("job.started", 0))
        .await
        .expect_err("WRONGTYPE");
    assert!(matches!(err, Error::Rejected { .. }), "{err:?}");
    assert!(!err.is_transient());
    let err = producer
        .emit_batch(vec![event("job.started", 0)])
        .await
        .expect_err("WRONGTYPE in a batch");
    assert!(err.to_string().contains("WRONGTYPE"), "{err}");
}

/// `emit_batch` queues each chunk as two pipelines (all but the last `XADD`, then the last)
/// and encodes chunk N+1 while chunk N is in flight: for every chunk size and every way a
/// batch can end (a full chunk, a chunk of one, a short chunk), entries land in event order
/// and every receipt names the entry of its own event.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunk_boundaries_keep_order_and_receipts() {
    let server = RedisServer::start();
    let reader = reader(&server).await;
    for chunk in 1..=4 {
        let stream = format!("chunks-{chunk}");
        let producer = RedisProducer::connect(RedisProducerConfig {
            stream: stream.clone(),
            batch_chunk_size: chunk,
            ..config(&server.url())
        })
        .await
        .expect("connect");
        let mut sent = Vec::new();
        for len in 1..=9 {
            let events: Vec<EventEnvelope> = (0..len)
                .map(|i| event("job.step", sent.len() + i))
                .collect();
            let receipts = tokio::time::timeout(BOUND, producer.emit_batch(events.clone()))
                .await
                .expect("batch finishes")
                .expect("batch succeeds");
            assert_eq!(receipts.len(), len);
            sent.extend(events.into_iter().zip(receipts));
        }
        let entries = read_back(&reader, &stream).await;
        assert_eq!(entries.len(), sent.len(), "chunk {chunk}");
        for (i, ((stream_id, decoded), (event, receipt))) in entries.iter().zip(&sent).enumerate() {
            assert_eq!(decoded, event, "chunk {chunk}: entry {i} is event {i}");
            assert_eq!(&receipt.id, &event.id, "chunk {chunk}: receipt {i} id");
            assert_eq!(
                stream_id, &receipt.stream_id,
                "chunk {chunk}: receipt {i} names its entry"
            );
        }
    }
}

/// A rejection in a later chunk stops the batch there: the error is Redis's, and no chunk
/// after the failing one is written (the next chunk is only ever sent after the replies of
/// the previous one are in).
#[tokio::test]
async fn a_rejected_chunk_stops_the_batch() {
    let server = RedisServer::start();
    let reader = reader(&server).await;
    let producer = RedisProducer::connect(RedisProducerConfig {
        stream: "flip".into(),
        batch_chunk_size: 10,
        ..config(&server.url())
    })
    .await
    .expect("connect");
    // The key is a string: every XADD of the first chunk fails, none may follow.
    let () = reader
        .set("flip", "plain string", None, None, false)
        .await
        .expect("SET");
    let err = producer
        .emit_batch((0..35).map(|i| event("job.step", i)).collect())
        .await
        .expect_err("WRONGTYPE");
    assert!(matches!(err, Error::Rejected { .. }), "{err:?}");
    assert!(err.to_string().contains("WRONGTYPE"), "{err}");
    let value: String = reader.get("flip").await.expect("GET");
    assert_eq!(value, "plain string");
}
