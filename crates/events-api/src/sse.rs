//! `GET /api/events/stream`: committed events as Server-Sent Events.
//!
//! Each event is `id: <seq>` + `data: {"type":"event","seq","epoch","event"}`. A client
//! resumes with `Last-Event-ID` (what `EventSource` sends on reconnect) or `?after_seq=`: the
//! stream first replays the log after that point, then switches to live pushes from the hub.
//! The receiver is subscribed *before* the replay starts and every event is forwarded only if
//! its `seq` is above the last one sent, so the hand-over has neither gaps nor repeats. A
//! stream that falls behind the hub's queue catches up from the log the same way instead of
//! dropping events. A comment line is sent every 15 s so proxies keep the connection open.

use std::convert::Infallible;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use events_envelope::glob_match;
use events_storage::EventQuery;
use futures_util::Stream;
use serde::Deserialize;
use tokio::sync::{broadcast, mpsc};
use utoipa::IntoParams;

use crate::error::ApiError;
use crate::extract::ApiQuery;
use crate::hub::{PushKind, event_push_json};
use crate::state::AppState;

/// Events replayed from the log per query.
const REPLAY_PAGE: u32 = 500;
/// Frames buffered between the feeding task and the HTTP body.
const BUFFER: usize = 64;

/// Parameters of the SSE stream.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct StreamParams {
    /// Type glob: only matching events are sent (`job.*`).
    #[serde(rename = "type")]
    #[param(rename = "type")]
    event_type: Option<String>,
    /// Resume after this `seq` (the `Last-Event-ID` header wins when both are given).
    after_seq: Option<i64>,
    /// Bearer token, for clients that cannot set headers (`EventSource`).
    #[allow(dead_code)] // read by the auth middleware from the raw query
    token: Option<String>,
}

/// Live events as Server-Sent Events, with resume.
/// One server-sent event of the stream (the schema of each event, as OpenAPI 3.2's
/// `itemSchema` and Schemathesis read a `text/event-stream` body).
#[derive(utoipa::ToSchema)]
#[schema(as = ServerSentEvent)]
#[allow(dead_code)] // documentation only
pub(crate) struct SseEventDoc {
    /// The event's `seq`.
    id: Option<String>,
    /// Event name; absent = `message`.
    event: Option<String>,
    /// `{"type":"event","seq","epoch","event":{envelope}}` as JSON text.
    data: String,
    /// Reconnect delay in ms.
    retry: Option<u64>,
}

#[utoipa::path(
    get, path = "/api/events/stream", tag = "events",
    params(
        StreamParams,
        ("Last-Event-ID" = Option<String>, Header, nullable = false, pattern = "^[0-9]{1,18}$", description = "resume after this seq"),
    ),
    responses(
        (status = 200, description = "an SSE stream; `id:` is the event's seq", content_type = "text/event-stream", body = SseEventDoc),
        (status = 400, description = "bad Last-Event-ID or after_seq", body = crate::ErrorBody),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn stream(
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiQuery(params): ApiQuery<StreamParams>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    let resume = match headers.get("last-event-id") {
        Some(value) => Some(
            value
                .to_str()
                .ok()
                .and_then(|text| text.trim().parse::<i64>().ok())
                .ok_or_else(|| {
                    ApiError::bad_request("invalid_header", "last-event-id: must be an integer seq")
                })?,
        ),
        None => params.after_seq,
    };
    let glob = params.event_type.filter(|glob| !glob.is_empty());
    // Subscribe before reading anything, so nothing published from now on is missed.
    let receiver = state.hub.subscribe_events();
    let start = resume.unwrap_or_else(|| state.hub.published_seq());
    let (sender, mut frames) = mpsc::channel(BUFFER);
    let heartbeat = state.limits.sse_heartbeat;
    tokio::spawn(feed(state, glob, start, resume.is_some(), receiver, sender));
    let body =
        futures_util::stream::poll_fn(move |cx| frames.poll_recv(cx).map(|frame| frame.map(Ok)));
    Ok(Sse::new(body).keep_alive(KeepAlive::new().interval(heartbeat).text("heartbeat")))
}

struct Feed {
    state: AppState,
    glob: Option<String>,
    /// The highest seq already sent or deliberately skipped.
    last: i64,
    sender: mpsc::Sender<Event>,
}

impl Feed {
    fn frame(&self, seq: i64, json: impl Into<String>) -> Event {
        Event::default().id(seq.to_string()).data(json.into())
    }

    /// Sends every logged event after `last` (matching the glob); false when the client is gone.
    async fn replay(&mut self) -> bool {
        loop {
            let query = EventQuery {
                event_type: self.glob.clone(),
                after_seq: Some(self.last),
                limit: Some(REPLAY_PAGE),
                ..EventQuery::default()
            };
            let page = match self.state.db.query_events(query).await {
                Ok(page) => page,
                Err(err) => {
                    tracing::warn!(error = %err, "sse replay failed; closing the stream so the client resumes");
                    return false;
                }
            };
            for stored in &page {
                let json = event_push_json(stored.seq, self.state.epoch(), &stored.event);
                if self
                    .sender
                    .send(self.frame(stored.seq, json))
                    .await
                    .is_err()
                {
                    return false;
                }
                self.last = stored.seq;
            }
            if page.len() < REPLAY_PAGE as usize {
                return true;
            }
        }
    }
}

async fn feed(
    state: AppState,
    glob: Option<String>,
    start: i64,
    replay_first: bool,
    mut receiver: broadcast::Receiver<std::sync::Arc<crate::Push>>,
    sender: mpsc::Sender<Event>,
) {
    metrics::gauge!("events_sse_connections").increment(1.0);
    let shutdown = state.shutdown.clone();
    let mut feed = Feed {
        state,
        glob,
        last: start,
        sender,
    };
    let mut alive = !replay_first || feed.replay().await;
    while alive {
        tokio::select! {
            () = shutdown.cancelled() => break,
            () = feed.sender.closed() => break,
            received = receiver.recv() => match received {
                Ok(push) => {
                    let PushKind::Event { seq, event_type } = &push.kind else { continue };
                    if *seq <= feed.last {
                        continue;
                    }
                    if feed.glob.as_deref().is_none_or(|glob| glob_match(glob, event_type)) {
                        let frame = feed.frame(*seq, push.json.as_str());
                        if feed.sender.send(frame).await.is_err() {
                            break;
                        }
                    }
                    feed.last = *seq;
                }
                // Fell behind the hub: catch up from the log, then go on live.
                Err(broadcast::error::RecvError::Lagged(_)) => alive = feed.replay().await,
                Err(broadcast::error::RecvError::Closed) => break,
            }
        }
    }
    metrics::gauge!("events_sse_connections").decrement(1.0);
}
