//! A thin HTTP client for the daemon's API that turns every failure into a one-line
//! [`Failure`] saying what to do.

use std::time::Duration;

use reqwest::{Method, RequestBuilder, StatusCode, Url};
use serde_json::Value;

use crate::failure::Failure;

/// How long one ordinary request may take; `tail` streams and sets no overall bound.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// The daemon's API at one base URL, with an optional bearer token.
#[derive(Debug, Clone)]
pub(crate) struct Client {
    http: reqwest::Client,
    base: Url,
    token: Option<String>,
}

/// A successful answer: the status, the raw body (what `--json` prints) and its parse.
#[derive(Debug)]
pub(crate) struct Reply {
    pub(crate) body: String,
    pub(crate) json: Value,
}

impl Client {
    /// A client for the daemon at `url`; a malformed URL is the user's mistake (exit 2).
    pub(crate) fn new(url: &str, token: Option<String>) -> anyhow::Result<Self> {
        let base = Url::parse(url).map_err(|err| {
            Failure::bad_input(format!(
                "--url {url:?} is not a valid URL ({err}); expected e.g. http://127.0.0.1:7400"
            ))
        })?;
        if !matches!(base.scheme(), "http" | "https") || base.cannot_be_a_base() {
            return Err(Failure::bad_input(format!(
                "--url {url:?} must be an http:// or https:// URL"
            ))
            .into());
        }
        let http = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .user_agent(concat!("events-cli/", env!("CARGO_PKG_VERSION")))
            .build()?;
        let token = token.filter(|t| !t.is_empty());
        Ok(Self { http, base, token })
    }

    /// The bearer token, if one was given.
    pub(crate) fn token(&self) -> Option<&str> {
        self.token.as_deref()
    }

    /// The base URL as the user gave it, for messages.
    pub(crate) fn base(&self) -> &str {
        self.base.as_str().trim_end_matches('/')
    }

    /// The URL of an API path given as segments (each one percent-encoded), e.g.
    /// `["api", "notifications", "42"]`, below the base URL's own path.
    pub(crate) fn url(&self, segments: &[&str]) -> Url {
        let mut url = self.base.clone();
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty().extend(segments);
        }
        url
    }

    /// A request with the bearer token attached; the caller sets timeouts and body.
    pub(crate) fn request(&self, method: Method, url: Url) -> RequestBuilder {
        let builder = self.http.request(method, url);
        match &self.token {
            Some(token) => builder.bearer_auth(token),
            None => builder,
        }
    }

    /// `GET` with query parameters (pairs with `None` values are left out).
    pub(crate) async fn get(
        &self,
        segments: &[&str],
        query: &[(&str, Option<String>)],
    ) -> anyhow::Result<Reply> {
        self.send(Method::GET, segments, query, None).await
    }

    /// Sends one request and reads the whole answer; any non-2xx status becomes a [`Failure`].
    pub(crate) async fn send(
        &self,
        method: Method,
        segments: &[&str],
        query: &[(&str, Option<String>)],
        body: Option<&Value>,
    ) -> anyhow::Result<Reply> {
        let mut url = self.url(segments);
        let present: Vec<(&str, &str)> = query
            .iter()
            .filter_map(|(k, v)| v.as_deref().map(|v| (*k, v)))
            .collect();
        if !present.is_empty() {
            url.query_pairs_mut().extend_pairs(present);
        }
        let mut request = self.request(method, url).timeout(REQUEST_TIMEOUT);
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request
            .send()
            .await
            .map_err(|err| self.transport_failure(&err))?;
        let status = response.status();
        let body = response
            .text()
            .await
            .map_err(|err| self.transport_failure(&err))?;
        if !status.is_success() {
            return Err(error_from_response(status, &body).into());
        }
        let json = if body.trim().is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&body).map_err(|err| {
                Failure::server(format!(
                    "the daemon at {} answered with invalid JSON ({err})",
                    self.base()
                ))
            })?
        };
        Ok(Reply { body, json })
    }

    /// The one-line message for a request that got no HTTP answer at all.
    pub(crate) fn transport_failure(&self, err: &reqwest::Error) -> Failure {
        if err.is_timeout() {
            return Failure::server(format!(
                "the daemon at {} did not answer in time — is it overloaded or stuck? check its logs",
                self.base()
            ));
        }
        if err.is_connect() {
            return Failure::server(format!(
                "cannot reach the daemon at {}: {} — is events-daemon running?",
                self.base(),
                root_cause(err)
            ));
        }
        Failure::server(format!(
            "request to the daemon at {} failed: {}",
            self.base(),
            root_cause(err)
        ))
    }
}

/// The innermost cause, phrased for people: `connection refused` rather than
/// `error sending request for url (...): client error (Connect): tcp connect error: ...`.
fn root_cause(err: &(dyn std::error::Error + 'static)) -> String {
    let mut cause: &(dyn std::error::Error + 'static) = err;
    while let Some(next) = cause.source() {
        if let Some(io) = next.downcast_ref::<std::io::Error>() {
            return match io.kind() {
                std::io::ErrorKind::ConnectionRefused => "connection refused".to_owned(),
                std::io::ErrorKind::ConnectionReset => "connection reset".to_owned(),
                std::io::ErrorKind::TimedOut => "connection timed out".to_owned(),
                _ => io.to_string().to_lowercase(),
            };
        }
        cause = next;
    }
    cause.to_string()
}

/// Turns an error answer into a [`Failure`]: `code: message` from the daemon's JSON error
/// body (brief §9) plus a hint for the statuses where the fix is on the user's side.
pub(crate) fn error_from_response(status: StatusCode, body: &str) -> Failure {
    let parsed: Option<Value> = serde_json::from_str(body).ok();
    let error = parsed.as_ref().and_then(|v| v.get("error"));
    let message = match error {
        Some(error) => {
            let code = error.get("code").and_then(Value::as_str).unwrap_or("error");
            let text = error.get("message").and_then(Value::as_str).unwrap_or("");
            let mut line = format!("{code}: {text}");
            for item in error
                .get("items")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                line.push_str(&format!(
                    "; item {}: {}: {}",
                    item.get("index")
                        .map_or_else(|| "?".to_owned(), Value::to_string),
                    item.get("code")
                        .and_then(Value::as_str)
                        .unwrap_or("invalid"),
                    item.get("message").and_then(Value::as_str).unwrap_or(""),
                ));
            }
            line
        }
        None => {
            let excerpt: String = body.trim().chars().take(200).collect();
            let reason = status.canonical_reason().unwrap_or("error");
            if excerpt.is_empty() {
                format!("the daemon answered {} {reason}", status.as_u16())
            } else {
                format!(
                    "the daemon answered {} {reason}: {excerpt}",
                    status.as_u16()
                )
            }
        }
    };
    error_from_status(status, &message)
}

/// The [`Failure`] for an error status with an already extracted `code: message`: a hint
/// where the fix is on the user's side, and exit 2 for statuses that mean "bad input".
pub(crate) fn error_from_status(status: StatusCode, message: &str) -> Failure {
    let hint = match status {
        StatusCode::UNAUTHORIZED => " — pass --token or set EVENTS_TOKEN",
        StatusCode::FORBIDDEN => " — use a token with the role this command needs",
        _ => "",
    };
    let message = format!("{message}{hint}");
    match status {
        StatusCode::BAD_REQUEST
        | StatusCode::UNPROCESSABLE_ENTITY
        | StatusCode::PAYLOAD_TOO_LARGE
        | StatusCode::UNSUPPORTED_MEDIA_TYPE => Failure::bad_input(message),
        _ => Failure::server(message),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_errors_read_code_colon_message() {
        let failure = error_from_response(
            StatusCode::CONFLICT,
            r#"{"error":{"code":"conflict","message":"notification 3 is claimed by agent-a"}}"#,
        );
        assert_eq!(
            failure.to_string(),
            "conflict: notification 3 is claimed by agent-a"
        );
        assert_eq!(failure.exit_code(), 1);
    }

    #[test]
    fn refused_input_exits_2_and_lists_items() {
        let failure = error_from_response(
            StatusCode::UNPROCESSABLE_ENTITY,
            r#"{"error":{"code":"invalid_batch","message":"1 of 2 events refused","items":[{"index":1,"code":"invalid_event","message":"invalid source"}]}}"#,
        );
        assert_eq!(failure.exit_code(), 2);
        assert_eq!(
            failure.to_string(),
            "invalid_batch: 1 of 2 events refused; item 1: invalid_event: invalid source"
        );
    }

    #[test]
    fn unauthorized_says_how_to_authenticate() {
        let failure = error_from_response(
            StatusCode::UNAUTHORIZED,
            r#"{"error":{"code":"unauthorized","message":"missing bearer token"}}"#,
        );
        assert!(
            failure
                .to_string()
                .ends_with("pass --token or set EVENTS_TOKEN"),
            "{failure}"
        );
    }

    #[test]
    fn non_json_errors_keep_the_status() {
        let failure = error_from_response(StatusCode::BAD_GATEWAY, "upstream down");
        assert_eq!(
            failure.to_string(),
            "the daemon answered 502 Bad Gateway: upstream down"
        );
        assert_eq!(failure.exit_code(), 1);
    }

    #[test]
    fn urls_keep_a_base_path_and_encode_segments() {
        let client = Client::new("http://h:1/prefix/", None).expect("valid");
        assert_eq!(
            client.url(&["api", "webhooks", "a/b"]).as_str(),
            "http://h:1/prefix/api/webhooks/a%2Fb"
        );
        let client = Client::new("http://h:1", None).expect("valid");
        assert_eq!(
            client.url(&["api", "catalog"]).as_str(),
            "http://h:1/api/catalog"
        );
    }

    #[test]
    fn bad_urls_are_bad_input() {
        for url in ["not a url", "ftp://h/", "mailto:x@y"] {
            let err = Client::new(url, None).expect_err(url);
            assert_eq!(crate::failure::exit_code_of(&err), 2, "{url}");
        }
    }
}
