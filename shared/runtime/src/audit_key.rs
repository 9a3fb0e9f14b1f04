//! The key audit digests are signed with: Ed25519, because its signatures are small (64 bytes),
//! deterministic (signing the same digest twice gives the same bytes, so a replayed commit
//! writes nothing new), fast to make per commit, and checkable by an auditor with any common
//! library (Python's `cryptography`, OpenSSL) from the 32-byte public key alone.
//!
//! Both halves are written as lowercase hex: the private key as its 32-byte seed (the
//! `audit-key` file in the state directory, or `BATON_AUDIT_KEY`), the public key as its 32
//! bytes (`public-key.hex` in an export).

use std::io::Write;
use std::path::{Path, PathBuf};

use baton_core::audit::digest::AuditDigest;
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};

/// Name of the environment variable that gives the signing key instead of the key file.
pub const AUDIT_KEY_ENV: &str = "BATON_AUDIT_KEY";
/// Name of the key file created in the state directory on first use.
pub const AUDIT_KEY_FILE: &str = "audit-key";

/// A key that cannot be read or made.
#[derive(Debug, thiserror::Error)]
pub enum AuditKeyError {
    /// The text is not 64 hex digits (32 bytes).
    #[error("{what} must be 64 hex digits (32 bytes), found {found}")]
    BadFormat {
        /// Which key (`BATON_AUDIT_KEY`, a file name).
        what: String,
        /// What was found instead, described without echoing secret material.
        found: String,
    },
    /// The 32 bytes are not a valid Ed25519 public key.
    #[error("{0} is not an Ed25519 public key")]
    NotAPublicKey(String),
    /// The key file cannot be read or written.
    #[error("cannot {action} {}: {source}", path.display())]
    Io {
        /// `read`, `create`.
        action: &'static str,
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The operating system gave no random bytes for a new key.
    #[error("no random source for a new audit key: {0}")]
    NoRandom(String),
}

/// The private key digests are signed with.
pub struct AuditKey {
    signing: SigningKey,
}

impl std::fmt::Debug for AuditKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The seed never goes into logs; the public half identifies the key.
        f.debug_struct("AuditKey").field("public", &self.public().to_hex()).finish()
    }
}

fn bytes32(text: &str, what: &str) -> Result<[u8; 32], AuditKeyError> {
    let text = text.trim();
    let bad = |found: String| AuditKeyError::BadFormat { what: what.to_owned(), found };
    let bytes = hex::decode(text).map_err(|_| bad(format!("{} characters that are not all hex", text.len())))?;
    bytes.try_into().map_err(|b: Vec<u8>| bad(format!("{} bytes", b.len())))
}

impl AuditKey {
    /// The key whose 32-byte seed is `text` in hex (surrounding whitespace ignored); `what`
    /// names the source in errors.
    pub fn from_seed_hex(text: &str, what: &str) -> Result<Self, AuditKeyError> {
        Ok(Self { signing: SigningKey::from_bytes(&bytes32(text, what)?) })
    }

    /// A new key from the operating system's random source.
    pub fn generate() -> Result<Self, AuditKeyError> {
        let mut seed = [0u8; 32];
        getrandom::fill(&mut seed).map_err(|e| AuditKeyError::NoRandom(e.to_string()))?;
        Ok(Self { signing: SigningKey::from_bytes(&seed) })
    }

    /// `BATON_AUDIT_KEY` when set, else `dir/audit-key`, created (mode 0600) when missing.
    pub fn from_env_or_dir(dir: &Path) -> Result<Self, AuditKeyError> {
        match std::env::var(AUDIT_KEY_ENV) {
            Ok(text) => Self::from_seed_hex(&text, AUDIT_KEY_ENV),
            Err(_) => Self::load_or_create(&dir.join(AUDIT_KEY_FILE)),
        }
    }

    /// Reads the key at `path`, or makes one there, readable by its owner only, when there is
    /// no file yet.
    pub fn load_or_create(path: &Path) -> Result<Self, AuditKeyError> {
        let io = |action, source| AuditKeyError::Io { action, path: path.to_owned(), source };
        match std::fs::read_to_string(path) {
            Ok(text) => return Self::from_seed_hex(&text, &path.display().to_string()),
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(io("read", e)),
            Err(_) => {}
        }
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|e| io("create", e))?;
        }
        let key = Self::generate()?;
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        match options.open(path) {
            Ok(mut file) => {
                let seed = hex::encode(key.signing.to_bytes());
                file.write_all(format!("{seed}\n").as_bytes()).map_err(|e| io("create", e))?;
                Ok(key)
            }
            // Another process made it first: use theirs, so one directory has one key.
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                let text = std::fs::read_to_string(path).map_err(|e| io("read", e))?;
                Self::from_seed_hex(&text, &path.display().to_string())
            }
            Err(e) => Err(io("create", e)),
        }
    }

    /// The public half, which checks this key's digests.
    pub fn public(&self) -> AuditPublicKey {
        AuditPublicKey { verifying: self.signing.verifying_key() }
    }

    /// A signed digest of `run_id`'s log after `count` records ending in `head`.
    pub fn digest(&self, run_id: &str, count: u64, head: &str, prev: &str, at: u64) -> AuditDigest {
        self.digest_sealed(run_id, count, head, prev, at, true)
    }

    /// A seal (signed) or, with `seal` false, an unsigned link to the next seal.
    pub fn digest_sealed(&self, run_id: &str, count: u64, head: &str, prev: &str, at: u64, seal: bool) -> AuditDigest {
        if !seal {
            return AuditDigest::link(run_id, count, head, prev, at);
        }
        AuditDigest::new(run_id, count, head, prev, at, |bytes| hex::encode(self.signing.sign(bytes).to_bytes()))
    }
}

/// The public key that checks digests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditPublicKey {
    verifying: VerifyingKey,
}

impl AuditPublicKey {
    /// The key whose 32 bytes are `text` in hex (surrounding whitespace ignored).
    pub fn from_hex(text: &str, what: &str) -> Result<Self, AuditKeyError> {
        let bytes = bytes32(text, what)?;
        let verifying = VerifyingKey::from_bytes(&bytes).map_err(|_| AuditKeyError::NotAPublicKey(what.to_owned()))?;
        Ok(Self { verifying })
    }

    /// The 32 bytes as lowercase hex.
    pub fn to_hex(&self) -> String {
        hex::encode(self.verifying.to_bytes())
    }

    /// True when `digest`'s signature is this key's over its signed bytes.
    pub fn verifies(&self, digest: &AuditDigest) -> bool {
        let Ok(bytes) = hex::decode(&digest.signature) else { return false };
        let Ok(signature) = Signature::from_slice(&bytes) else { return false };
        // Strict: rejects the malleable and small-order forms a forger could otherwise use.
        self.verifying.verify_strict(digest.signed_bytes().as_bytes(), &signature).is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use baton_core::audit::GENESIS_HASH;

    #[test]
    fn a_digest_verifies_with_its_key_only_and_not_once_changed() -> Result<(), AuditKeyError> {
        let key = AuditKey::from_seed_hex(&"11".repeat(32), "test")?;
        let d = key.digest("run-1", 3, &"ab".repeat(32), GENESIS_HASH, 1_000);
        assert!(key.public().verifies(&d));
        assert_eq!(d.hash, d.compute_hash());
        let other = AuditKey::generate()?;
        assert!(!other.public().verifies(&d));
        let mut changed = d.clone();
        changed.count = 4;
        assert!(!key.public().verifies(&changed));
        let round = AuditPublicKey::from_hex(&key.public().to_hex(), "round trip")?;
        assert_eq!(round, key.public());
        Ok(())
    }

    #[test]
    fn a_key_file_is_made_once_owner_only_and_read_back() -> Result<(), AuditKeyError> {
        let dir = std::env::temp_dir().join(format!("baton-audit-key-{}", std::process::id()));
        let path = dir.join(AUDIT_KEY_FILE);
        let _ = std::fs::remove_file(&path);
        let made = AuditKey::load_or_create(&path)?;
        let again = AuditKey::load_or_create(&path)?;
        assert_eq!(made.public(), again.public());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode =
                std::fs::metadata(&path).map_err(|e| AuditKeyError::NoRandom(e.to_string()))?.permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let _ = std::fs::remove_dir_all(&dir);
        Ok(())
    }

    #[test]
    fn malformed_keys_are_refused_without_echoing_them() {
        let err = AuditKey::from_seed_hex("not-a-key", AUDIT_KEY_ENV).expect_err("refused");
        assert!(err.to_string().starts_with("BATON_AUDIT_KEY must be 64 hex digits"), "{err}");
        assert!(!err.to_string().contains("not-a-key"));
        assert!(AuditKey::from_seed_hex(&"ab".repeat(31), "short").is_err());
    }
}
