//! Who may report a step's result. On a queue backend anything that can send to the
//! coordinator queue could otherwise forge one ("the call succeeded with this output"). The
//! stack's workers and coordinator share a message key; every message they send carries an
//! HMAC-SHA256 of its body (an SQS message attribute), and the coordinator refuses a result
//! whose signature is missing or wrong: it is dead-lettered with the reason, and the run is
//! unchanged. Workers do not check the calls on their queues (only the coordinator's role may
//! send there), and clients without the key (the CLI, the `api` function) send unsigned
//! messages, whose answers keep no authenticated principal.

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

/// The SQS message attribute that carries a body's signature.
pub const SIGNATURE_ATTRIBUTE: &str = "baton-signature";

/// The fewest bytes a message key may have.
pub const MIN_KEY_BYTES: usize = 16;

/// Why a key cannot be used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum MessageKeyError {
    /// Too short to resist guessing.
    #[error("a message key needs at least {MIN_KEY_BYTES} bytes, got {0}")]
    TooShort(usize),
}

/// The shared key of a stack's coordinator and workers.
#[derive(Clone)]
pub struct MessageKey {
    keyed: Hmac<Sha256>,
}

impl std::fmt::Debug for MessageKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MessageKey(..)")
    }
}

impl MessageKey {
    /// A key from its bytes (a secret's value, or random bytes for a single-process host).
    pub fn new(secret: &[u8]) -> Result<Self, MessageKeyError> {
        if secret.len() < MIN_KEY_BYTES {
            return Err(MessageKeyError::TooShort(secret.len()));
        }
        let keyed = <Hmac<Sha256> as KeyInit>::new_from_slice(secret).map_err(|_| MessageKeyError::TooShort(0))?;
        Ok(Self { keyed })
    }

    /// A fresh random key, for a host whose senders and receiver share one process (`baton dev`).
    pub fn random() -> Self {
        let bytes: Vec<u8> = (0..2).flat_map(|_| uuid::Uuid::new_v4().into_bytes()).collect();
        let keyed = <Hmac<Sha256> as KeyInit>::new_from_slice(&bytes).expect("HMAC takes a key of any length");
        Self { keyed }
    }

    /// The body's signature: lowercase hex of HMAC-SHA256.
    pub fn sign(&self, body: &str) -> String {
        let mut mac = self.keyed.clone();
        mac.update(body.as_bytes());
        hex::encode(mac.finalize().into_bytes())
    }

    /// True when `signature` is this key's signature of `body` (compared in constant time).
    pub fn verify(&self, body: &str, signature: &str) -> bool {
        let Ok(given) = hex::decode(signature) else {
            return false;
        };
        let mut mac = self.keyed.clone();
        mac.update(body.as_bytes());
        mac.verify_slice(&given).is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signature_verifies_only_for_its_body_and_key() {
        let key = MessageKey::new(b"0123456789abcdef-stack-key").expect("key");
        let body = r#"{"kind":"result","run_id":"r","node":"n","attempt":1}"#;
        let sig = key.sign(body);
        assert_eq!(sig.len(), 64);
        assert!(key.verify(body, &sig));
        assert!(!key.verify(&body.replace("\"attempt\":1", "\"attempt\":2"), &sig), "another body");
        assert!(!MessageKey::random().verify(body, &sig), "another key");
        assert!(!key.verify(body, "not hex"));
        assert!(!key.verify(body, ""));
    }

    #[test]
    fn short_keys_are_refused() {
        assert_eq!(MessageKey::new(b"short").err(), Some(MessageKeyError::TooShort(5)));
    }
}
