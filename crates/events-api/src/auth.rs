//! Bearer-token authentication, roles and the per-token rate limit (brief §9).
//!
//! Tokens come from config, either in plain text (`token`) or as the hex SHA-256 of the
//! token (`token_sha256`). Either way only digests are kept in memory, and a presented
//! token is hashed and compared against every configured digest in constant time, so
//! neither the comparison nor the position of the match leaks through timing.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::ApiError;

/// What a token may do. `admin` may do everything.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// May emit events.
    Producer,
    /// May read events, notifications and the catalog, and subscribe to pushes.
    Reader,
    /// May read, and change notifications (seen, claim, status, resolve).
    Agent,
    /// May do everything, including dead letters and webhooks.
    Admin,
}

impl Role {
    /// Whether a holder of `self` may act as `needed`: admin is everything, an agent also reads.
    pub fn grants(self, needed: Role) -> bool {
        self == needed || self == Role::Admin || (self == Role::Agent && needed == Role::Reader)
    }

    /// The lowercase name used in config.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Producer => "producer",
            Role::Reader => "reader",
            Role::Agent => "agent",
            Role::Admin => "admin",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One configured token (`[[auth.tokens]]`).
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenConfig {
    /// A name for logs and rate-limit accounting; never the secret.
    pub name: String,
    /// The token in plain text (convenient; prefer `token_sha256` in shared files).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    /// Hex SHA-256 of the token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_sha256: Option<String>,
    /// What the token may do.
    #[serde(default)]
    pub roles: Vec<Role>,
}

impl fmt::Debug for TokenConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print secrets, not even in debug output.
        f.debug_struct("TokenConfig")
            .field("name", &self.name)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field(
                "token_sha256",
                &self.token_sha256.as_ref().map(|_| "<redacted>"),
            )
            .field("roles", &self.roles)
            .finish()
    }
}

/// The `[auth]` section: no tokens means auth is off (allowed on loopback binds only).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthConfig {
    /// The accepted tokens.
    #[serde(default)]
    pub tokens: Vec<TokenConfig>,
}

/// Why an [`AuthConfig`] cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AuthConfigError {
    /// `auth.tokens[i]` is wrong; the message says which key.
    #[error("auth.tokens[{index}].{key}: {message}")]
    Token {
        /// Position in the list.
        index: usize,
        /// The key at fault.
        key: &'static str,
        /// What is wrong.
        message: String,
    },
}

/// A caller that presented a valid token (or anyone, when auth is off).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// The token's configured name (`anonymous` when auth is off).
    pub name: Arc<str>,
    /// What it may do.
    pub roles: Arc<[Role]>,
}

impl Principal {
    /// Ok if one of the principal's roles grants `needed`, else 403 naming the role.
    pub fn require(&self, needed: Role) -> Result<(), ApiError> {
        if self.roles.iter().any(|role| role.grants(needed)) {
            Ok(())
        } else {
            Err(ApiError::Forbidden(format!(
                "token {:?} lacks the {needed} role this route needs",
                &*self.name
            )))
        }
    }
}

struct Entry {
    digest: [u8; 32],
    principal: Principal,
}

/// Checks bearer tokens against the configured digests.
pub struct Authenticator {
    entries: Vec<Entry>,
}

impl fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Authenticator")
            .field("tokens", &self.entries.len())
            .finish()
    }
}

fn sha256(data: &[u8]) -> [u8; 32] {
    Sha256::digest(data).into()
}

fn parse_hex_digest(text: &str) -> Option<[u8; 32]> {
    let text = text.trim();
    if text.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(text.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

/// Compares two digests without an early exit.
fn constant_time_eq(a: &[u8; 32], b: &[u8; 32]) -> bool {
    let diff = a
        .iter()
        .zip(b.iter())
        .fold(0u8, |acc, (x, y)| acc | (x ^ y));
    // black_box keeps the optimiser from turning the fold back into a short-circuit compare.
    std::hint::black_box(diff) == 0
}

impl Authenticator {
    /// Builds the authenticator; an error names the `auth.tokens[i]` key at fault.
    pub fn new(config: &AuthConfig) -> Result<Self, AuthConfigError> {
        let mut entries = Vec::with_capacity(config.tokens.len());
        for (index, token) in config.tokens.iter().enumerate() {
            let err = |key, message: &str| AuthConfigError::Token {
                index,
                key,
                message: message.to_owned(),
            };
            if token.name.trim().is_empty() {
                return Err(err("name", "must not be empty"));
            }
            let digest = match (&token.token, &token.token_sha256) {
                (Some(_), Some(_)) => {
                    return Err(err("token", "set either token or token_sha256, not both"));
                }
                (None, None) => return Err(err("token", "missing; set token or token_sha256")),
                (Some(plain), None) if plain.is_empty() => {
                    return Err(err("token", "must not be empty"));
                }
                (Some(plain), None) => sha256(plain.as_bytes()),
                (None, Some(hex)) => parse_hex_digest(hex)
                    .ok_or_else(|| err("token_sha256", "must be 64 hex digits (a SHA-256)"))?,
            };
            if token.roles.is_empty() {
                return Err(err(
                    "roles",
                    "must name at least one of producer, reader, agent, admin",
                ));
            }
            entries.push(Entry {
                digest,
                principal: Principal {
                    name: Arc::from(token.name.as_str()),
                    roles: Arc::from(token.roles.as_slice()),
                },
            });
        }
        Ok(Self { entries })
    }

    /// Whether auth is on (at least one token configured).
    pub fn enabled(&self) -> bool {
        !self.entries.is_empty()
    }

    /// The principal for a presented token; `None` if it matches none.
    pub fn authenticate(&self, presented: &str) -> Option<Principal> {
        let digest = sha256(presented.as_bytes());
        let mut found = None;
        // Compare against every entry, match or not, so timing does not reveal which matched.
        for entry in &self.entries {
            if constant_time_eq(&entry.digest, &digest) && found.is_none() {
                found = Some(entry.principal.clone());
            }
        }
        found
    }

    /// The principal used for every request when auth is off.
    ///
    /// Built once: every request of an auth-less daemon asks for it, and two fresh `Arc`
    /// allocations per request are pure overhead on the hot path.
    pub fn anonymous() -> Principal {
        static ANONYMOUS: std::sync::LazyLock<Principal> = std::sync::LazyLock::new(|| Principal {
            name: Arc::from("anonymous"),
            roles: Arc::from([Role::Admin].as_slice()),
        });
        ANONYMOUS.clone()
    }
}

/// Per-token token bucket: `rate` requests per second, bursts of up to `rate`.
#[derive(Debug)]
pub struct RateLimiter {
    rate: f64,
    buckets: Mutex<HashMap<Arc<str>, Bucket>>,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    refilled: Instant,
}

impl RateLimiter {
    /// A limiter allowing `requests_per_second` per key; 0 turns limiting off.
    pub fn new(requests_per_second: u32) -> Self {
        Self {
            rate: f64::from(requests_per_second),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes one request from `key`'s bucket; on refusal, how long until one is available.
    pub fn check(&self, key: &Arc<str>) -> Result<(), Duration> {
        self.check_at(key, Instant::now())
    }

    fn check_at(&self, key: &Arc<str>, now: Instant) -> Result<(), Duration> {
        if self.rate <= 0.0 {
            return Ok(());
        }
        // A poisoned lock only means another request panicked mid-update; the map is still usable.
        let mut buckets = self
            .buckets
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let bucket = buckets.entry(Arc::clone(key)).or_insert(Bucket {
            tokens: self.rate,
            refilled: now,
        });
        let elapsed = now.saturating_duration_since(bucket.refilled).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * self.rate).min(self.rate);
        bucket.refilled = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - bucket.tokens) / self.rate))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(tokens: Vec<TokenConfig>) -> AuthConfig {
        AuthConfig { tokens }
    }

    fn token(name: &str, plain: &str, roles: &[Role]) -> TokenConfig {
        TokenConfig {
            name: name.into(),
            token: Some(plain.into()),
            token_sha256: None,
            roles: roles.to_vec(),
        }
    }

    #[test]
    fn plain_and_hashed_tokens_authenticate_and_wrong_ones_do_not() {
        let hex: String = sha256(b"s3cret")
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let auth = Authenticator::new(&config(vec![
            token("ops", "admin-token", &[Role::Admin]),
            TokenConfig {
                name: "bot".into(),
                token: None,
                token_sha256: Some(hex),
                roles: vec![Role::Producer],
            },
        ]))
        .unwrap();
        assert!(auth.enabled());
        assert_eq!(&*auth.authenticate("admin-token").unwrap().name, "ops");
        assert_eq!(&*auth.authenticate("s3cret").unwrap().name, "bot");
        assert!(auth.authenticate("s3cret ").is_none());
        assert!(auth.authenticate("").is_none());
    }

    #[test]
    fn bad_token_config_names_the_key() {
        let both = TokenConfig {
            token_sha256: Some("00".into()),
            ..token("a", "x", &[Role::Reader])
        };
        let err =
            Authenticator::new(&config(vec![token("ok", "y", &[Role::Reader]), both])).unwrap_err();
        assert!(
            err.to_string().starts_with("auth.tokens[1].token:"),
            "{err}"
        );
        let bad_hex = TokenConfig {
            name: "h".into(),
            token: None,
            token_sha256: Some("zz".into()),
            roles: vec![Role::Reader],
        };
        assert!(
            Authenticator::new(&config(vec![bad_hex]))
                .unwrap_err()
                .to_string()
                .contains("token_sha256")
        );
        let no_roles = token("r", "t", &[]);
        assert!(
            Authenticator::new(&config(vec![no_roles]))
                .unwrap_err()
                .to_string()
                .contains("roles")
        );
    }

    #[test]
    fn roles_grant_as_documented() {
        assert!(Role::Admin.grants(Role::Producer));
        assert!(Role::Agent.grants(Role::Reader));
        assert!(!Role::Reader.grants(Role::Agent));
        assert!(!Role::Producer.grants(Role::Reader));
        let reader = Principal {
            name: "r".into(),
            roles: Arc::from([Role::Reader].as_slice()),
        };
        assert!(reader.require(Role::Reader).is_ok());
        assert!(matches!(
            reader.require(Role::Admin),
            Err(ApiError::Forbidden(_))
        ));
    }

    #[test]
    fn debug_output_redacts_secrets() {
        let text = format!("{:?}", token("ops", "hunter2", &[Role::Admin]));
        assert!(!text.contains("hunter2"), "{text}");
    }

    #[test]
    fn token_bucket_refuses_after_burst_and_refills() {
        let limiter = RateLimiter::new(2);
        let key: Arc<str> = Arc::from("k");
        let other: Arc<str> = Arc::from("other");
        let start = Instant::now();
        assert!(limiter.check_at(&key, start).is_ok());
        assert!(limiter.check_at(&key, start).is_ok());
        let wait = limiter.check_at(&key, start).unwrap_err();
        assert!(
            wait > Duration::ZERO && wait <= Duration::from_millis(500),
            "{wait:?}"
        );
        assert!(
            limiter.check_at(&other, start).is_ok(),
            "buckets are per key"
        );
        assert!(
            limiter
                .check_at(&key, start + Duration::from_millis(600))
                .is_ok()
        );
    }

    #[test]
    fn zero_rate_means_unlimited() {
        let limiter = RateLimiter::new(0);
        let key: Arc<str> = Arc::from("k");
        for _ in 0..10_000 {
            assert!(limiter.check(&key).is_ok());
        }
    }
}
