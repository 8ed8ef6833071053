//! Standard Webhooks signing (<https://www.standardwebhooks.com/>).
//!
//! A message is signed as `base64(HMAC-SHA256(key, "{webhook-id}.{webhook-timestamp}.{body}"))`
//! where `key` is the base64-decoded part of the secret after `whsec_`. The
//! `webhook-signature` header carries `v1,<signature>`; during a secret rotation the
//! previous secret signs too and the header lists both, space-separated, so a receiver
//! that still has the old secret keeps verifying.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::error::{Error, Result};

/// Prefix of every secret, as in Svix and the Standard Webhooks reference libraries.
pub const SECRET_PREFIX: &str = "whsec_";

/// Header names of the Standard Webhooks spec.
pub const HEADER_ID: &str = "webhook-id";
/// Unix seconds at which the message was signed.
pub const HEADER_TIMESTAMP: &str = "webhook-timestamp";
/// `v1,<base64>` signatures, space-separated.
pub const HEADER_SIGNATURE: &str = "webhook-signature";

/// Length of generated secrets in bytes (the spec asks for 24..=64).
const GENERATED_SECRET_BYTES: usize = 32;
const MIN_SECRET_BYTES: usize = 24;
const MAX_SECRET_BYTES: usize = 64;

/// A parsed `whsec_...` secret: the text form is what users see and store, the key
/// bytes are what signs.
#[derive(Clone, PartialEq, Eq)]
pub struct WebhookSecret {
    text: String,
    key: Vec<u8>,
}

impl std::fmt::Debug for WebhookSecret {
    // A secret must not end up in logs through a `{:?}` of some struct holding it.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WebhookSecret(whsec_…)")
    }
}

impl WebhookSecret {
    /// A fresh secret: `whsec_` + base64 of 32 random bytes.
    pub fn generate() -> Self {
        let key: [u8; GENERATED_SECRET_BYTES] = rand::random();
        let text = format!("{SECRET_PREFIX}{}", BASE64.encode(key));
        Self {
            text,
            key: key.to_vec(),
        }
    }

    /// Parses `whsec_<base64>`; the decoded key must be 24..=64 bytes.
    pub fn parse(text: &str) -> Result<Self> {
        let encoded = text
            .strip_prefix(SECRET_PREFIX)
            .ok_or_else(|| Error::InvalidSecret(format!("must start with {SECRET_PREFIX:?}")))?;
        let key = BASE64.decode(encoded).map_err(|e| {
            Error::InvalidSecret(format!(
                "the part after {SECRET_PREFIX:?} is not base64: {e}"
            ))
        })?;
        if !(MIN_SECRET_BYTES..=MAX_SECRET_BYTES).contains(&key.len()) {
            return Err(Error::InvalidSecret(format!(
                "key is {} bytes, expected {MIN_SECRET_BYTES}..={MAX_SECRET_BYTES}",
                key.len()
            )));
        }
        Ok(Self {
            text: text.to_owned(),
            key,
        })
    }

    /// The `whsec_...` text (shown once on create; stored).
    pub fn expose(&self) -> &str {
        &self.text
    }

    /// `v1,<base64 signature>` of one message under this secret.
    pub fn sign(&self, msg_id: &str, timestamp: i64, body: &[u8]) -> String {
        // HMAC accepts keys of any length, so `new_from_slice` cannot fail; `<Hmac as
        // KeyInit>::new` would need a fixed-size key.
        let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(&self.key) else {
            unreachable!("hmac takes keys of any length")
        };
        mac.update(msg_id.as_bytes());
        mac.update(b".");
        mac.update(timestamp.to_string().as_bytes());
        mac.update(b".");
        mac.update(body);
        format!("v1,{}", BASE64.encode(mac.finalize().into_bytes()))
    }
}

/// The three headers of a signed message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedHeaders {
    /// `webhook-id`: the delivery id; receivers dedupe on it.
    pub id: String,
    /// `webhook-timestamp`: unix seconds.
    pub timestamp: i64,
    /// `webhook-signature`: one `v1,...` per active secret, space-separated.
    pub signature: String,
}

/// Signs `body` with the current secret and, during a rotation grace period, the
/// previous one too (current first).
pub fn sign_message(
    msg_id: &str,
    timestamp: i64,
    body: &[u8],
    current: &WebhookSecret,
    previous: Option<&WebhookSecret>,
) -> SignedHeaders {
    let mut signature = current.sign(msg_id, timestamp, body);
    if let Some(previous) = previous {
        signature.push(' ');
        signature.push_str(&previous.sign(msg_id, timestamp, body));
    }
    SignedHeaders {
        id: msg_id.to_owned(),
        timestamp,
        signature,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_the_standard_webhooks_reference_vector() {
        // Test vector of the Standard Webhooks reference libraries (svix/standard-webhooks).
        let secret = WebhookSecret::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let body = br#"{"test": 2432232314}"#;
        let signed = secret.sign("msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body);
        assert_eq!(signed, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    }

    #[test]
    fn generated_secrets_parse_and_differ() {
        let a = WebhookSecret::generate();
        let b = WebhookSecret::generate();
        assert!(a.expose().starts_with(SECRET_PREFIX));
        assert_ne!(a, b);
        assert_eq!(WebhookSecret::parse(a.expose()).unwrap(), a);
    }

    #[test]
    fn rejects_malformed_secrets() {
        for bad in [
            "",
            "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
            "whsec_!!!!",
            "whsec_c2hvcnQ=",
        ] {
            assert!(WebhookSecret::parse(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn rotation_signs_with_both_secrets_current_first() {
        let old = WebhookSecret::generate();
        let new = WebhookSecret::generate();
        let headers = sign_message("msg_1", 10, b"{}", &new, Some(&old));
        let parts: Vec<&str> = headers.signature.split(' ').collect();
        assert_eq!(
            parts,
            [new.sign("msg_1", 10, b"{}"), old.sign("msg_1", 10, b"{}")]
        );
        let single = sign_message("msg_1", 10, b"{}", &new, None);
        assert!(!single.signature.contains(' '));
    }

    #[test]
    fn debug_does_not_leak_the_secret() {
        let s = WebhookSecret::generate();
        assert!(!format!("{s:?}").contains(&s.expose()[6..]));
    }
}
