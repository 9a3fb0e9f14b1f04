//! The stack's audit signing key. With one, the coordinator seals each run's audit log with
//! signed digests in its DynamoDB transactions (see `DynamoStore::with_audit_key`), and whoever
//! verifies (the CLI, `baton dev`, the `api` function) checks them with its public half.

use baton_runtime::audit_key::{AuditKey, AuditKeyError};
use sha2::{Digest, Sha256};

use crate::DynamoStore;

/// The key's 32-byte seed in hex.
pub const AUDIT_KEY_ENV: &str = "BATON_AUDIT_KEY";
/// A Secrets Manager secret holding the key: a 64-character hex seed, or any other string, whose
/// SHA-256 is then the seed (so a secret the template generates works as it is).
pub const AUDIT_KEY_ARN_ENV: &str = "BATON_AUDIT_KEY_ARN";

/// Why the key could not be had.
#[derive(Debug, thiserror::Error)]
pub enum AuditSigningError {
    /// Secrets Manager refused or failed.
    #[error(transparent)]
    Secret(#[from] crate::secrets::SecretError),
    /// `BATON_AUDIT_KEY` is not a hex seed.
    #[error(transparent)]
    Key(#[from] AuditKeyError),
}

/// The key from `BATON_AUDIT_KEY`, else from the secret `BATON_AUDIT_KEY_ARN` names; `None` when
/// neither is set (the stack then writes no digests, and its logs verify as unsigned).
pub async fn audit_key_from_env(config: &aws_config::SdkConfig) -> Result<Option<AuditKey>, AuditSigningError> {
    match crate::secrets::value_from_env(config, AUDIT_KEY_ENV, AUDIT_KEY_ARN_ENV).await? {
        None => Ok(None),
        Some((hex, AUDIT_KEY_ENV)) => Ok(Some(AuditKey::from_seed_hex(&hex, AUDIT_KEY_ENV)?)),
        Some((value, _)) => Ok(Some(key_from_secret(&value)?)),
    }
}

/// A secret's value as a key: a hex seed as it is, anything else through SHA-256.
pub fn key_from_secret(value: &str) -> Result<AuditKey, AuditKeyError> {
    let trimmed = value.trim();
    if trimmed.len() == 64 && trimmed.bytes().all(|b| b.is_ascii_hexdigit()) {
        return AuditKey::from_seed_hex(trimmed, AUDIT_KEY_ARN_ENV);
    }
    let seed: String = Sha256::digest(trimmed.as_bytes()).iter().map(|b| format!("{b:02x}")).collect();
    AuditKey::from_seed_hex(&seed, AUDIT_KEY_ARN_ENV)
}

/// The run store of `stack` ([`crate::handlers::store`]) with the key from the environment.
pub async fn signed_store(config: &aws_config::SdkConfig, stack: &str) -> Result<DynamoStore, AuditSigningError> {
    let store = crate::handlers::store(config, stack);
    Ok(match audit_key_from_env(config).await? {
        Some(key) => store.with_audit_key(key),
        None => store,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hex_seed_is_taken_as_it_is_and_anything_else_is_hashed() {
        let hex = "ab".repeat(32);
        let direct = AuditKey::from_seed_hex(&hex, "t").expect("key").public().to_hex();
        assert_eq!(key_from_secret(&hex).expect("key").public().to_hex(), direct);
        let generated = key_from_secret("a generated password, not hex").expect("key").public().to_hex();
        assert_ne!(generated, direct);
        assert_eq!(key_from_secret(" a generated password, not hex\n").expect("key").public().to_hex(), generated);
    }
}
