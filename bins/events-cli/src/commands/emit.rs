//! `events emit`: build one envelope from flags, check it locally, send it.

use std::io::{Read, Write};
use std::path::Path;

use events_envelope::{EventCatalog, EventEnvelope, EventLevel, EventVisibility};
use events_producer::{
    EmitReceipt, Error as ProducerError, HttpProducer, HttpProducerConfig, Producer, RedisProducer,
    RedisProducerConfig,
};
use serde_json::{Map, Value, json};

use crate::cli::EmitArgs;
use crate::client::{Client, error_from_status};
use crate::failure::Failure;

pub(crate) async fn run(
    client: &Client,
    args: EmitArgs,
    json: bool,
    out: &mut impl Write,
) -> anyhow::Result<()> {
    let envelope = build_envelope(&args)?;
    let (event_type, id) = (envelope.event.clone(), envelope.id.clone());
    let receipt = match &args.redis_url {
        Some(redis_url) => emit_to_redis(redis_url, &args.stream, envelope).await?,
        None => emit_to_daemon(client, envelope).await?,
    };
    if json {
        // The shape of the daemon's 202 answer, whichever transport was used.
        let answer = json!({ "accepted": [{ "id": receipt.id, "stream_id": receipt.stream_id }] });
        writeln!(out, "{answer}")?;
    } else {
        let target = match &args.redis_url {
            Some(_) => format!(" (redis stream {})", args.stream),
            None => String::new(),
        };
        writeln!(
            out,
            "emitted {event_type} id={id} stream_id={}{target}",
            receipt.stream_id
        )?;
    }
    Ok(())
}

/// The envelope the flags describe; catalog defaults fill level, domain and visibility.
/// Everything wrong here is the user's input (exit 2), caught before any network traffic.
pub(crate) fn build_envelope(args: &EmitArgs) -> anyhow::Result<EventEnvelope> {
    let catalog = EventCatalog::builtin();
    let schema = catalog.get(&args.event_type);

    let level = match &args.level {
        Some(text) => EventLevel::parse_lenient(text).ok_or_else(|| {
            Failure::bad_input(format!(
                "--level {text:?} is not a level; use 0..3 or infrastructure, operational, workflow, business"
            ))
        })?,
        None => schema.map(|s| s.default_level).unwrap_or_default(),
    };
    let visibility = match &args.visibility {
        Some(text) => EventVisibility::parse_lenient(text).ok_or_else(|| {
            Failure::bad_input(format!(
                "--visibility {text:?} is not a visibility; use local, cluster or public"
            ))
        })?,
        None => schema.map(|s| s.default_visibility).unwrap_or_default(),
    };
    let payload = match (&args.payload, &args.payload_file) {
        (Some(text), _) => parse_payload(text, "--payload")?,
        (None, Some(path)) => parse_payload(
            &read_payload_file(path)?,
            &format!("--payload-file {}", path.display()),
        )?,
        (None, None) => Map::new(),
    };

    let mut envelope = EventEnvelope::new(&args.event_type, &args.source)
        .with_level(level)
        .with_visibility(visibility)
        .with_payload(payload);
    if let Some(domain) = args
        .domain
        .clone()
        .or_else(|| schema.map(|s| s.domain.clone()))
    {
        envelope = envelope.with_domain(domain);
    }
    if let Some(entity) = &args.entity {
        envelope = envelope.with_entity(entity);
    }
    if let Some(description) = &args.description {
        envelope = envelope.with_description(description);
    }
    if let Some(key) = &args.idempotency_key {
        envelope = envelope.with_idempotency_key(key);
    }
    if let Some(id) = &args.correlation_id {
        envelope = envelope.with_correlation_id(id);
    }
    envelope
        .validate()
        .map_err(|err| Failure::bad_input(format!("invalid event: {err}")))?;
    Ok(envelope)
}

/// Parses a payload; the message names the flag and serde's line and column.
fn parse_payload(text: &str, what: &str) -> anyhow::Result<Map<String, Value>> {
    let value: Value = serde_json::from_str(text)
        .map_err(|err| Failure::bad_input(format!("{what} is not valid JSON: {err}")))?;
    match value {
        Value::Object(map) => Ok(map),
        other => Err(Failure::bad_input(format!(
            "{what} must be a JSON object like '{{\"key\":\"value\"}}', not {}",
            json_kind(&other)
        ))
        .into()),
    }
}

fn read_payload_file(path: &Path) -> anyhow::Result<String> {
    let mut text = String::new();
    let result = if path == Path::new("-") {
        std::io::stdin().read_to_string(&mut text).map(|_| ())
    } else {
        std::fs::File::open(path)
            .and_then(|mut file| file.read_to_string(&mut text))
            .map(|_| ())
    };
    result.map_err(|err| {
        Failure::bad_input(format!(
            "cannot read --payload-file {}: {err}",
            path.display()
        ))
    })?;
    Ok(text)
}

fn json_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

async fn emit_to_redis(
    url: &str,
    stream: &str,
    envelope: EventEnvelope,
) -> anyhow::Result<EmitReceipt> {
    let mut config = RedisProducerConfig::new(url);
    config.stream = stream.to_owned();
    let producer = RedisProducer::connect(config)
        .await
        .map_err(redis_failure)?;
    Ok(producer.emit(envelope).await.map_err(redis_failure)?)
}

async fn emit_to_daemon(client: &Client, envelope: EventEnvelope) -> anyhow::Result<EmitReceipt> {
    let mut config = HttpProducerConfig::new(client.base());
    config.token = client.token().map(str::to_owned);
    let producer = HttpProducer::new(config).map_err(|err| daemon_failure(client, err))?;
    Ok(producer
        .emit(envelope)
        .await
        .map_err(|err| daemon_failure(client, err))?)
}

/// Redis producer errors: an invalid event or URL is the user's input, the rest Redis's.
fn redis_failure(err: ProducerError) -> Failure {
    match err {
        ProducerError::Invalid { source, .. } => {
            Failure::bad_input(format!("invalid event: {source}"))
        }
        ProducerError::Config(message) => Failure::bad_input(format!("--redis-url: {message}")),
        err @ ProducerError::Unavailable { .. } => {
            Failure::server(format!("{err} — is redis-server running there?"))
        }
        other => Failure::server(other.to_string()),
    }
}

/// HTTP producer errors, phrased like every other daemon error of this command.
fn daemon_failure(client: &Client, err: ProducerError) -> Failure {
    match err {
        ProducerError::Invalid { source, .. } => {
            Failure::bad_input(format!("invalid event: {source}"))
        }
        ProducerError::Config(message) => Failure::bad_input(format!("--url: {message}")),
        ProducerError::Unavailable { reason, .. } if reason.contains("gave up after") => {
            Failure::server(format!(
                "the daemon at {} stayed busy: {reason}",
                client.base()
            ))
        }
        ProducerError::Unavailable { reason, .. } => Failure::server(format!(
            "cannot reach the daemon at {}: {reason} — is events-daemon running?",
            client.base()
        )),
        // `HttpProducer` documents its message as `<status> <reason>: <daemon's error>`.
        ProducerError::Rejected { message, .. } => {
            let status = message.get(..3).and_then(|code| code.parse::<u16>().ok());
            let detail = message
                .split_once(": ")
                .map_or(message.as_str(), |(_, rest)| rest);
            match status.and_then(|code| reqwest::StatusCode::from_u16(code).ok()) {
                Some(status) => error_from_status(status, detail),
                None => Failure::server(message),
            }
        }
        other => Failure::server(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::cli::{Cli, Command};

    fn emit_args(extra: &[&str]) -> EmitArgs {
        let mut argv = vec!["events", "emit"];
        argv.extend_from_slice(extra);
        match Cli::try_parse_from(argv).expect("parses").command {
            Command::Emit(args) => args,
            other => panic!("expected emit, got {other:?}"),
        }
    }

    #[test]
    fn bad_payload_json_names_line_and_column() {
        let args = emit_args(&["job.done", "--source", "t", "--payload", "{\"a\":\n  oops}"]);
        let err = build_envelope(&args).expect_err("bad json");
        assert_eq!(crate::failure::exit_code_of(&err), 2);
        let message = err.to_string();
        assert!(
            message.starts_with("--payload is not valid JSON"),
            "{message}"
        );
        assert!(message.contains("line 2 column 3"), "{message}");
    }

    #[test]
    fn payload_must_be_an_object() {
        let args = emit_args(&["job.done", "--source", "t", "--payload", "[1]"]);
        let err = build_envelope(&args).expect_err("array payload");
        assert!(
            err.to_string().contains("must be a JSON object")
                && err.to_string().contains("an array"),
            "{err}"
        );
    }

    #[test]
    fn levels_parse_leniently_and_bad_ones_are_bad_input() {
        let args = emit_args(&[
            "job.done",
            "--source",
            "t",
            "--level",
            "workflow",
            "--payload",
            "{\"n\":1}",
        ]);
        let envelope = build_envelope(&args).expect("valid");
        assert_eq!(envelope.level, EventLevel::Workflow);
        assert_eq!(envelope.payload["n"], 1);

        let args = emit_args(&["job.done", "--source", "t", "--level", "urgent"]);
        let err = build_envelope(&args).expect_err("unknown level");
        assert_eq!(crate::failure::exit_code_of(&err), 2);
        assert!(err.to_string().contains("--level \"urgent\""), "{err}");
    }

    #[test]
    fn catalog_defaults_fill_unset_fields() {
        let catalog = EventCatalog::builtin();
        let schema = catalog
            .list_all()
            .into_iter()
            .next()
            .expect("builtin catalog is not empty")
            .clone();
        let args = emit_args(&[&schema.event_type, "--source", "t"]);
        let envelope = build_envelope(&args).expect("valid");
        assert_eq!(envelope.level, schema.default_level);
        assert_eq!(envelope.domain, schema.domain);
        assert_eq!(envelope.visibility, schema.default_visibility);
    }

    #[test]
    fn invalid_event_names_are_refused_before_sending() {
        let args = emit_args(&["NoDots", "--source", "t"]);
        let err = build_envelope(&args).expect_err("bad name");
        assert_eq!(crate::failure::exit_code_of(&err), 2);
        assert!(err.to_string().starts_with("invalid event:"), "{err}");
    }

    #[test]
    fn payload_file_is_read() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("payload.json");
        std::fs::write(&path, r#"{"from_file": true}"#).expect("write");
        let args = emit_args(&[
            "job.done",
            "--source",
            "t",
            "--payload-file",
            path.to_str().expect("utf-8 path"),
        ]);
        assert_eq!(
            build_envelope(&args).expect("valid").payload["from_file"],
            true
        );

        let args = emit_args(&[
            "job.done",
            "--source",
            "t",
            "--payload-file",
            "/nonexistent/payload.json",
        ]);
        let err = build_envelope(&args).expect_err("missing file");
        assert_eq!(crate::failure::exit_code_of(&err), 2);
    }

    #[test]
    fn daemon_refusals_keep_their_status_and_words() {
        let client = Client::new("http://127.0.0.1:1", None).expect("valid url");
        let rejected = |message: &str| ProducerError::Rejected {
            backend: "events-daemon",
            url: "http://127.0.0.1:1".into(),
            message: message.into(),
        };
        let failure = daemon_failure(
            &client,
            rejected("422 Unprocessable Entity: invalid_batch: refused; event 0: x: y"),
        );
        assert_eq!(failure.exit_code(), 2);
        assert_eq!(failure.to_string(), "invalid_batch: refused; event 0: x: y");
        let failure = daemon_failure(
            &client,
            rejected("401 Unauthorized: unauthorized: missing token"),
        );
        assert_eq!(failure.exit_code(), 1);
        assert_eq!(
            failure.to_string(),
            "unauthorized: missing token — pass --token or set EVENTS_TOKEN"
        );
        let unreachable = ProducerError::Unavailable {
            backend: "events-daemon",
            url: "http://127.0.0.1:1".into(),
            reason: "connection refused".into(),
        };
        assert_eq!(
            daemon_failure(&client, unreachable).to_string(),
            "cannot reach the daemon at http://127.0.0.1:1: connection refused — is events-daemon running?"
        );
    }
}
