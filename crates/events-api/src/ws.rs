//! `GET /ws`: subscriptions and pushes over WebSocket (brief §9).
//!
//! One task per connection selects over the client's messages, the hub's broadcast
//! receiver, a ping timer and shutdown. The receiver's bound is the connection's queue: when
//! the client cannot keep up (the receiver reports `Lagged`) the connection is closed with
//! 1013 and the client resyncs over REST. A send that does not complete within the send
//! timeout (a client that stopped reading) drops the connection. Malformed client messages
//! are answered with `{"type":"error",...}`, never with a disconnect.

use std::collections::BTreeSet;
use std::sync::Arc;

use axum::extract::State;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::response::{IntoResponse, Response};
use events_envelope::glob_match;
use futures_util::{SinkExt, StreamExt};
use tokio::sync::broadcast;
use tokio::time::{Instant, interval_at, timeout};

use crate::error::ApiError;
use crate::hub::{Push, PushKind};
use crate::state::AppState;
use crate::ws_protocol::{
    CLOSE_GOING_AWAY, CLOSE_TRY_AGAIN_LATER, ClientMessage, ServerMessage, Topic,
};

/// Largest client message (and frame) accepted (subscriptions are small).
const MAX_CLIENT_MESSAGE: usize = 64 * 1024;
/// Read buffer of a connection. tungstenite allocates its default of 128 KiB up front for
/// every connection, which made 2,000 idle connections cost 290 MB (found by the robustness
/// tests); client messages are small, and a larger one is read in several chunks.
const READ_BUFFER: usize = 4 * 1024;

/// Subscribe to live notifications and events.
///
/// After the upgrade the client sends `{"type":"subscribe","topics":["notifications","events:job.*"]}`
/// and receives `notification_created` / `notification_updated` / `event` pushes, each with
/// the database `epoch` (and `seq` for events). Auth by `Authorization: Bearer` or `?token=`.
#[utoipa::path(
    get, path = "/ws", tag = "push",
    params(("token" = Option<String>, Query, description = "bearer token for clients that cannot set headers")),
    responses(
        (status = 101, description = "switching to the WebSocket protocol"),
        (status = 400, description = "not a WebSocket upgrade request", body = crate::ErrorBody),
        (status = 401, description = "missing or unknown token", body = crate::ErrorBody),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn upgrade(
    State(state): State<AppState>,
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    // A plain GET (no upgrade headers) gets the API's JSON error, not axum's text/plain one.
    let ws = match ws {
        Ok(ws) => ws,
        Err(rejection) => {
            return ApiError::bad_request(
                "websocket_upgrade_required",
                format!("{rejection}; connect with a WebSocket client"),
            )
            .into_response();
        }
    };
    ws.max_message_size(MAX_CLIENT_MESSAGE)
        .max_frame_size(MAX_CLIENT_MESSAGE)
        .read_buffer_size(READ_BUFFER)
        .on_upgrade(move |socket| connection(socket, state))
}

struct Subscriptions {
    topics: BTreeSet<String>,
    notifications: bool,
    globs: Vec<String>,
}

impl Subscriptions {
    fn new() -> Self {
        Self {
            topics: BTreeSet::new(),
            notifications: false,
            globs: Vec::new(),
        }
    }

    fn rebuild(&mut self) {
        self.notifications = false;
        self.globs.clear();
        for text in &self.topics {
            match Topic::parse(text) {
                Ok(Topic::Notifications) => self.notifications = true,
                Ok(Topic::Events(glob)) => self.globs.push(glob),
                Err(_) => {}
            }
        }
    }

    fn wants(&self, push: &Push) -> bool {
        match &push.kind {
            PushKind::Notification => self.notifications,
            PushKind::Event { event_type, .. } => {
                self.globs.iter().any(|glob| glob_match(glob, event_type))
            }
        }
    }

    /// Whether any `events:<glob>` topic is subscribed.
    fn wants_events(&self) -> bool {
        !self.globs.is_empty()
    }

    fn list(&self) -> Vec<String> {
        self.topics.iter().cloned().collect()
    }

    /// Applies a client message; the reply to send back.
    fn handle(&mut self, text: &str) -> ServerMessage {
        let message = match serde_json::from_str::<ClientMessage>(text) {
            Ok(message) => message,
            Err(err) => {
                return ServerMessage::Error {
                    code: "invalid_message".into(),
                    message: format!(
                        "cannot read message ({err}); expected {{\"type\":\"subscribe\"|\"unsubscribe\",\"topics\":[...]}} or {{\"type\":\"ping\"}}"
                    ),
                };
            }
        };
        match message {
            ClientMessage::Ping => ServerMessage::Pong,
            ClientMessage::Subscribe { topics } => {
                let parsed: Result<Vec<Topic>, String> =
                    topics.iter().map(|t| Topic::parse(t)).collect();
                match parsed {
                    Ok(parsed) => {
                        self.topics.extend(parsed.iter().map(Topic::to_string));
                        self.rebuild();
                        ServerMessage::Subscribed {
                            topics: self.list(),
                        }
                    }
                    Err(message) => ServerMessage::Error {
                        code: "invalid_topic".into(),
                        message,
                    },
                }
            }
            ClientMessage::Unsubscribe { topics } => {
                for topic in &topics {
                    self.topics.remove(topic);
                }
                self.rebuild();
                ServerMessage::Unsubscribed {
                    topics: self.list(),
                }
            }
        }
    }
}

fn reply(message: &ServerMessage) -> Message {
    Message::Text(Utf8Bytes::from(
        serde_json::to_string(message).unwrap_or_default(),
    ))
}

fn close(code: u16, reason: &'static str) -> Message {
    Message::Close(Some(CloseFrame {
        code,
        reason: Utf8Bytes::from_static(reason),
    }))
}

async fn connection(socket: WebSocket, state: AppState) {
    // counted until this function returns (the close frame is sent by then)
    let _open = state.websockets.token();
    metrics::gauge!("events_ws_connections").increment(1.0);
    // A receiver per push kind, held only while a topic of that kind is subscribed, so the
    // connection is woken only for pushes it may want.
    let mut events: Option<broadcast::Receiver<Arc<Push>>> = None;
    let mut notifications: Option<broadcast::Receiver<Arc<Push>>> = None;
    let (mut sink, mut stream) = socket.split();
    let mut subscriptions = Subscriptions::new();
    let ping_every = state.limits.ws_ping_interval;
    let send_timeout = state.limits.ws_send_timeout;
    let mut ping = interval_at(Instant::now() + ping_every, ping_every);
    let shutdown = state.shutdown.clone();
    // One wait for shutdown for the connection's life: a fresh `cancelled()` per loop turn
    // would register and unregister a waiter on the token every push, and every connection
    // shares that token (a lock per connection per push in a fan-out).
    let shutting_down = shutdown.cancelled();
    tokio::pin!(shutting_down);

    // Sends one frame, bounded in time so a client that stopped reading cannot hold the task.
    macro_rules! send {
        ($message:expr) => {
            match timeout(send_timeout, sink.send($message)).await {
                Ok(Ok(())) => {}
                _ => break,
            }
        };
    }

    loop {
        let (received, receiver) = tokio::select! {
            () = &mut shutting_down => {
                let _ = timeout(send_timeout, sink.send(close(CLOSE_GOING_AWAY, "daemon shutting down"))).await;
                break;
            }
            incoming = stream.next() => { match incoming {
                Some(Ok(Message::Text(text))) => {
                    let answer = subscriptions.handle(text.as_str());
                    follow(&mut events, subscriptions.wants_events(), || state.hub.subscribe_events());
                    follow(&mut notifications, subscriptions.notifications, || state.hub.subscribe_notifications());
                    send!(reply(&answer));
                }
                Some(Ok(Message::Binary(_))) => {
                    send!(reply(&ServerMessage::Error {
                        code: "invalid_message".into(),
                        message: "binary frames are not supported; send JSON text".into(),
                    }));
                }
                // axum answers pings itself; pongs only prove liveness.
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
                Some(Ok(Message::Close(_))) | Some(Err(_)) | None => break,
            }; continue; }
            received = next_push(&mut events) => (received, &mut events),
            received = next_push(&mut notifications) => (received, &mut notifications),
            _ = ping.tick() => { send!(Message::Ping(Default::default())); continue; }
        };
        let failure = match received {
            // This push and those already queued behind it on the same receiver (a batch's
            // commit publishes all its changes at once) go out in one write: a flush per
            // frame was a system call per notification, and the last one of a batch waited
            // for all the others' (issue 8's `latency`).
            Ok(push) => {
                match feed_queued(&mut sink, push, receiver, &subscriptions, send_timeout).await {
                    Ok(None) => continue,
                    Ok(Some(failure)) => failure,
                    Err(SendFailed) => break,
                }
            }
            Err(failure) => failure,
        };
        match failure {
            broadcast::error::RecvError::Lagged(missed) => {
                metrics::counter!("events_ws_slow_client_closed_total").increment(1);
                tracing::info!(
                    missed,
                    "websocket client fell behind its queue; closing with 1013"
                );
                let _ = timeout(
                    send_timeout,
                    sink.send(close(
                        CLOSE_TRY_AGAIN_LATER,
                        "client too slow; resync over REST",
                    )),
                )
                .await;
                break;
            }
            broadcast::error::RecvError::Closed => {
                let _ = timeout(
                    send_timeout,
                    sink.send(close(CLOSE_GOING_AWAY, "daemon shutting down")),
                )
                .await;
                break;
            }
        }
    }
    drop((events, notifications));
    metrics::gauge!("events_ws_connections").decrement(1.0);
}

/// Most frames a connection queues before it writes them out (~50 KB of notification
/// pushes): bounds the delay of the first frame of a large burst.
const MAX_FRAMES_PER_WRITE: usize = 64;

/// The client did not take a frame within the send timeout, or the socket failed.
struct SendFailed;

/// Queues `first` and the pushes already waiting on `receiver` (at most
/// [`MAX_FRAMES_PER_WRITE`] in all) for the client, then writes them with one flush.
/// `Ok(Some(_))` when the receiver lagged or closed behind the frames that were sent.
async fn feed_queued(
    sink: &mut (impl futures_util::Sink<Message> + Unpin),
    first: Arc<Push>,
    receiver: &mut Option<broadcast::Receiver<Arc<Push>>>,
    subscriptions: &Subscriptions,
    send_timeout: std::time::Duration,
) -> Result<Option<broadcast::error::RecvError>, SendFailed> {
    let mut queued = 0;
    let mut stopped = None;
    let mut next = Some(first);
    while let Some(push) = next.take() {
        if subscriptions.wants(&push) {
            match timeout(send_timeout, sink.feed(Message::Text(push.json.clone()))).await {
                Ok(Ok(())) => queued += 1,
                _ => return Err(SendFailed),
            }
        }
        if queued >= MAX_FRAMES_PER_WRITE {
            break;
        }
        let Some(receiver) = receiver.as_mut() else {
            break;
        };
        match receiver.try_recv() {
            Ok(push) => next = Some(push),
            Err(broadcast::error::TryRecvError::Empty) => {}
            Err(broadcast::error::TryRecvError::Lagged(missed)) => {
                stopped = Some(broadcast::error::RecvError::Lagged(missed));
            }
            Err(broadcast::error::TryRecvError::Closed) => {
                stopped = Some(broadcast::error::RecvError::Closed);
            }
        }
    }
    if queued > 0 && !matches!(timeout(send_timeout, sink.flush()).await, Ok(Ok(()))) {
        return Err(SendFailed);
    }
    Ok(stopped)
}

/// Holds a receiver while `wanted`, subscribing when it becomes wanted and dropping it
/// (which releases its place in the channel) when it no longer is.
fn follow(
    receiver: &mut Option<broadcast::Receiver<Arc<Push>>>,
    wanted: bool,
    subscribe: impl FnOnce() -> broadcast::Receiver<Arc<Push>>,
) {
    match (wanted, receiver.is_some()) {
        (true, false) => *receiver = Some(subscribe()),
        (false, true) => *receiver = None,
        _ => {}
    }
}

/// The next push of `receiver`, or never when there is none (an unsubscribed kind).
async fn next_push(
    receiver: &mut Option<broadcast::Receiver<Arc<Push>>>,
) -> Result<Arc<Push>, broadcast::error::RecvError> {
    match receiver {
        Some(receiver) => receiver.recv().await,
        None => std::future::pending().await,
    }
}

/// Whether a connection wants a push (exposed to the crate's tests).
#[cfg(test)]
fn matches(topics: &[&str], push: &Push) -> bool {
    subscribed(topics).wants(push)
}

/// Subscriptions to `topics` (for the crate's tests).
#[cfg(test)]
fn subscribed(topics: &[&str]) -> Subscriptions {
    let mut subscriptions = Subscriptions::new();
    subscriptions.topics = topics.iter().map(|t| (*t).to_owned()).collect();
    subscriptions.rebuild();
    subscriptions
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event_push(event_type: &str) -> Push {
        Push {
            kind: PushKind::Event {
                seq: 1,
                event_type: event_type.into(),
            },
            json: Utf8Bytes::from_static("{}"),
        }
    }

    /// A client socket that records the frames it is given and how often it is flushed.
    #[derive(Default)]
    struct RecordingSink {
        frames: Vec<String>,
        /// Frames that had been given when each flush happened.
        flushed_at: Vec<usize>,
    }

    impl futures_util::Sink<Message> for RecordingSink {
        type Error = std::convert::Infallible;

        fn poll_ready(
            self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<Result<(), Self::Error>> {
            std::task::Poll::Ready(Ok(()))
        }

        fn start_send(self: std::pin::Pin<&mut Self>, item: Message) -> Result<(), Self::Error> {
            let Message::Text(text) = item else {
                panic!("only text frames are pushed");
            };
            self.get_mut().frames.push(text.as_str().to_owned());
            Ok(())
        }

        fn poll_flush(
            self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<Result<(), Self::Error>> {
            let this = self.get_mut();
            this.flushed_at.push(this.frames.len());
            std::task::Poll::Ready(Ok(()))
        }

        fn poll_close(
            self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<Result<(), Self::Error>> {
            std::task::Poll::Ready(Ok(()))
        }
    }

    fn notification_push(n: usize) -> Arc<Push> {
        Arc::new(Push {
            kind: PushKind::Notification,
            json: Utf8Bytes::from(format!("n{n}")),
        })
    }

    const TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

    #[tokio::test]
    async fn queued_pushes_go_out_in_order_with_one_flush_per_write() {
        let (sender, receiver) = broadcast::channel::<Arc<Push>>(256);
        let mut receiver = Some(receiver);
        for n in 1..=100 {
            sender.send(notification_push(n)).expect("a receiver");
        }
        let subscriptions = subscribed(&["notifications"]);
        let mut sink = RecordingSink::default();
        let first = notification_push(0);
        let stopped = feed_queued(&mut sink, first, &mut receiver, &subscriptions, TIMEOUT).await;
        assert!(matches!(stopped, Ok(None)));
        // the first write takes at most MAX_FRAMES_PER_WRITE frames, flushed once
        let expected: Vec<String> = (0..MAX_FRAMES_PER_WRITE).map(|n| format!("n{n}")).collect();
        assert_eq!(sink.frames, expected);
        assert_eq!(sink.flushed_at, vec![MAX_FRAMES_PER_WRITE]);
        // the rest stay queued, in order, for the next write
        let next = receiver
            .as_mut()
            .expect("subscribed")
            .try_recv()
            .expect("queued");
        let stopped = feed_queued(&mut sink, next, &mut receiver, &subscriptions, TIMEOUT).await;
        assert!(matches!(stopped, Ok(None)));
        let expected: Vec<String> = (0..=100).map(|n| format!("n{n}")).collect();
        assert_eq!(sink.frames, expected);
        assert_eq!(sink.flushed_at, vec![MAX_FRAMES_PER_WRITE, 101]);
    }

    #[tokio::test]
    async fn unwanted_pushes_are_skipped_and_a_lagged_receiver_is_reported_after_the_write() {
        let (sender, receiver) = broadcast::channel::<Arc<Push>>(2);
        let mut receiver = Some(receiver);
        let subscriptions = subscribed(&["events:job.*"]);
        let mut sink = RecordingSink::default();

        // only unwanted pushes: nothing written, nothing flushed
        sender
            .send(Arc::new(event_push("build.done")))
            .expect("a receiver");
        let first = Arc::new(event_push("build.started"));
        let stopped = feed_queued(&mut sink, first, &mut receiver, &subscriptions, TIMEOUT).await;
        assert!(matches!(stopped, Ok(None)));
        assert!(sink.frames.is_empty() && sink.flushed_at.is_empty());

        // the receiver falls behind its bound of 2: what was taken is written, then Lagged
        for _ in 0..5 {
            sender
                .send(Arc::new(event_push("job.done")))
                .expect("a receiver");
        }
        let first = Arc::new(event_push("job.started"));
        let stopped = feed_queued(&mut sink, first, &mut receiver, &subscriptions, TIMEOUT).await;
        assert!(matches!(
            stopped,
            Ok(Some(broadcast::error::RecvError::Lagged(3)))
        ));
        assert_eq!(sink.frames, vec!["{}".to_owned()]);
        assert_eq!(sink.flushed_at, vec![1]);
    }

    #[test]
    fn receivers_follow_the_subscriptions() {
        let (sender, _) = broadcast::channel::<Arc<Push>>(4);
        let mut receiver = None;
        follow(&mut receiver, true, || sender.subscribe());
        assert_eq!(sender.receiver_count(), 1);
        follow(&mut receiver, true, || unreachable!("already subscribed"));
        assert_eq!(sender.receiver_count(), 1);
        follow(&mut receiver, false, || unreachable!("not wanted"));
        assert_eq!(sender.receiver_count(), 0);
        assert!(receiver.is_none());

        let mut subs = Subscriptions::new();
        subs.handle(r#"{"type":"subscribe","topics":["notifications"]}"#);
        assert!(subs.notifications && !subs.wants_events());
        subs.handle(r#"{"type":"subscribe","topics":["events:job.*"]}"#);
        assert!(subs.wants_events());
        subs.handle(r#"{"type":"unsubscribe","topics":["events:job.*"]}"#);
        assert!(!subs.wants_events());
    }

    #[test]
    fn subscriptions_route_by_topic_and_glob() {
        let notification = Push {
            kind: PushKind::Notification,
            json: Utf8Bytes::from_static("{}"),
        };
        assert!(matches(&["notifications"], &notification));
        assert!(!matches(&["events:*"], &notification));
        assert!(matches(&["events:job.*"], &event_push("job.done")));
        assert!(!matches(&["events:job.*"], &event_push("build.done")));
        assert!(matches(&["events:*"], &event_push("build.done")));
    }

    #[test]
    fn client_messages_are_answered_never_fatal() {
        let mut subs = Subscriptions::new();
        assert!(
            matches!(subs.handle("not json"), ServerMessage::Error { code, .. } if code == "invalid_message")
        );
        assert!(
            matches!(subs.handle(r#"{"type":"subscribe","topics":["bogus"]}"#), ServerMessage::Error { code, .. } if code == "invalid_topic")
        );
        assert_eq!(
            subs.handle(r#"{"type":"subscribe","topics":["notifications","events:job.*"]}"#),
            ServerMessage::Subscribed {
                topics: vec!["events:job.*".into(), "notifications".into()]
            }
        );
        assert_eq!(
            subs.handle(r#"{"type":"unsubscribe","topics":["notifications"]}"#),
            ServerMessage::Unsubscribed {
                topics: vec!["events:job.*".into()]
            }
        );
        assert!(!subs.notifications);
        assert_eq!(subs.handle(r#"{"type":"ping"}"#), ServerMessage::Pong);
    }
}
