//! The WebSocket message shapes of brief §9, shared by the server and by clients in tests.
//!
//! Client → server: `{"type":"subscribe","topics":[...]}`, `{"type":"unsubscribe","topics":[...]}`,
//! `{"type":"ping"}`. Server → client: `subscribed`, `unsubscribed`, `pong`, `error`, and the
//! pushes `notification_created` / `notification_updated` (`notification`, `epoch`) and
//! `event` (`seq`, `epoch`, `event`).

use std::fmt;

use serde::{Deserialize, Serialize};

/// A topic a WebSocket client can subscribe to.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Topic {
    /// Every notification created or updated.
    Notifications,
    /// Every committed event whose type matches the glob (`events:job.*`, `events:*`).
    Events(String),
}

impl Topic {
    /// Parses `notifications` or `events:<glob>`; the error says what is accepted.
    pub fn parse(text: &str) -> Result<Self, String> {
        if text == "notifications" {
            return Ok(Self::Notifications);
        }
        match text.strip_prefix("events:") {
            Some(glob) if !glob.is_empty() => Ok(Self::Events(glob.to_owned())),
            Some(_) => Err(
                "topic \"events:\" needs a type glob, e.g. \"events:job.*\" or \"events:*\""
                    .to_owned(),
            ),
            None => Err(format!(
                "unknown topic {text:?}; expected \"notifications\" or \"events:<glob>\""
            )),
        }
    }
}

impl fmt::Display for Topic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Notifications => f.write_str("notifications"),
            Self::Events(glob) => write!(f, "events:{glob}"),
        }
    }
}

/// What a client may send.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ClientMessage {
    /// Start receiving pushes for these topics.
    Subscribe {
        /// `notifications` or `events:<glob>`.
        topics: Vec<String>,
    },
    /// Stop receiving pushes for these topics.
    Unsubscribe {
        /// Topics as given to `subscribe`.
        topics: Vec<String>,
    },
    /// Application-level liveness check; answered with `pong`.
    Ping,
}

/// What the server sends that is not a push (pushes are serialised once by the hub).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerMessage {
    /// The topics now subscribed (all of them, after this request).
    Subscribed {
        /// Every topic the connection is subscribed to.
        topics: Vec<String>,
    },
    /// The topics still subscribed after an unsubscribe.
    Unsubscribed {
        /// Every topic the connection is still subscribed to.
        topics: Vec<String>,
    },
    /// Answer to a client `ping`.
    Pong,
    /// A client message could not be understood; the connection stays open.
    Error {
        /// Stable code, e.g. `invalid_message`, `invalid_topic`.
        code: String,
        /// What was wrong.
        message: String,
    },
}

/// WebSocket close code for "try again later": the client could not keep up with its pushes.
pub const CLOSE_TRY_AGAIN_LATER: u16 = 1013;
/// WebSocket close code "going away": the daemon is shutting down.
pub const CLOSE_GOING_AWAY: u16 = 1001;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topics_parse_and_display_round_trip() {
        for text in ["notifications", "events:job.*", "events:*"] {
            assert_eq!(Topic::parse(text).unwrap().to_string(), text);
        }
        assert!(Topic::parse("events:").unwrap_err().contains("glob"));
        assert!(
            Topic::parse("notification")
                .unwrap_err()
                .contains("unknown topic")
        );
    }

    #[test]
    fn client_messages_have_the_documented_shape() {
        let sub: ClientMessage = serde_json::from_str(
            r#"{"type":"subscribe","topics":["notifications","events:job.*"]}"#,
        )
        .unwrap();
        assert_eq!(
            sub,
            ClientMessage::Subscribe {
                topics: vec!["notifications".into(), "events:job.*".into()]
            }
        );
        assert!(serde_json::from_str::<ClientMessage>(r#"{"type":"subscribe"}"#).is_err());
        assert!(serde_json::from_str::<ClientMessage>(r#"{"type":"dance"}"#).is_err());
        let json = serde_json::to_value(ServerMessage::Subscribed {
            topics: vec!["notifications".into()],
        })
        .unwrap();
        assert_eq!(
            json,
            serde_json::json!({"type":"subscribed","topics":["notifications"]})
        );
    }
}
