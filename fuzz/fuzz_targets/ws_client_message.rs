//! Fuzz target `ws_client_message`: the WebSocket client-message parser of `events-api`
//! (`serde_json` into `ws_protocol::ClientMessage`, then `Topic::parse` per topic — exactly what
//! the connection task does with every text frame).
//!
//! Properties: no input panics; an accepted message survives a JSON round trip unchanged; an
//! accepted topic displays back to the text it was parsed from and re-parses to itself; a
//! refused topic gets a non-empty message (it is sent to the client). Needs feature `api`:
//! `cargo +nightly fuzz run --features api ws_client_message`.
#![no_main]

use events_api::ws_protocol::{ClientMessage, Topic};
use events_envelope::glob_match;

libfuzzer_sys::fuzz_target!(|data: &[u8]| check(data));

fn check(data: &[u8]) {
    let message = match serde_json::from_slice::<ClientMessage>(data) {
        Ok(message) => message,
        Err(err) => {
            // The server quotes the error back to the client.
            assert!(!err.to_string().is_empty());
            return;
        }
    };
    let json = serde_json::to_string(&message).expect("a client message serialises");
    let back: ClientMessage = serde_json::from_str(&json).expect("serialised message parses");
    assert_eq!(back, message, "JSON round trip changed the message");

    let topics = match &message {
        ClientMessage::Subscribe { topics } | ClientMessage::Unsubscribe { topics } => topics,
        ClientMessage::Ping => return,
    };
    for text in topics {
        match Topic::parse(text) {
            Ok(topic) => {
                assert_eq!(&topic.to_string(), text, "topic does not display as parsed");
                assert_eq!(Topic::parse(&topic.to_string()).as_ref(), Ok(&topic));
                if let Topic::Events(glob) = &topic {
                    // The glob is matched against every pushed event type.
                    let _ = glob_match(glob, "domain.software-development.build.completed");
                }
            }
            Err(message) => assert!(!message.is_empty(), "topic refused without a message"),
        }
    }
}
