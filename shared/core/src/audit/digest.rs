//! Signed digests of the audit log. The hash chain alone proves nothing against someone who can
//! write the store: they can edit a record, recompute every hash after it and the head in the
//! run's state. A digest is a statement "run R had C records ending in hash H" signed with a key
//! the store's writer does not hand out, so such a rewrite no longer matches what was signed.
//!
//! This module holds the data and the checks; it does no cryptography itself. The bytes to sign
//! are [`AuditDigest::signed_bytes`], and whoever verifies passes in a function that checks a
//! digest's signature (the runtime does, with Ed25519), so the core stays free of key handling.

use serde::{Deserialize, Serialize};
use serde_json::json;

use super::{AuditRecord, ChainError, GENESIS_HASH};
use crate::canonical::{sha256_hex_bytes, to_canonical_string};

/// One signed statement about a run's audit log, written by the commit that appended records.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditDigest {
    /// The run whose log this is.
    pub run_id: String,
    /// How many records the log had after the commit (the last record's seq).
    pub count: u64,
    /// The hash of record `count`.
    pub head: String,
    /// The `hash` of the run's previous digest; [`GENESIS_HASH`] for its first.
    pub prev: String,
    /// When the commit was decided (ms since the Unix epoch, the time of its last event).
    pub at: u64,
    /// SHA-256 (lowercase hex) of [`AuditDigest::signed_bytes`].
    pub hash: String,
    /// Ed25519 signature (lowercase hex, 64 bytes) of [`AuditDigest::signed_bytes`]; empty for
    /// a link written between seals (see [`AuditDigest::is_seal`]).
    pub signature: String,
}

impl AuditDigest {
    /// A digest whose `hash` is computed and whose signature is `sign(signed bytes)`.
    pub fn new(run_id: &str, count: u64, head: &str, prev: &str, at: u64, sign: impl FnOnce(&[u8]) -> String) -> Self {
        let mut d = Self {
            run_id: run_id.to_owned(),
            count,
            head: head.to_owned(),
            prev: prev.to_owned(),
            at,
            hash: String::new(),
            signature: String::new(),
        };
        let bytes = d.signed_bytes();
        d.hash = sha256_hex_bytes(bytes.as_bytes());
        d.signature = sign(bytes.as_bytes());
        d
    }

    /// An unsigned link (see [`AuditDigest::is_seal`]).
    pub fn link(run_id: &str, count: u64, head: &str, prev: &str, at: u64) -> Self {
        Self::new(run_id, count, head, prev, at, |_| String::new())
    }

    /// What is hashed and signed: the canonical JSON (keys sorted, no whitespace) of
    /// `{"at","count","head","prev","run_id"}`, as UTF-8.
    pub fn signed_bytes(&self) -> String {
        to_canonical_string(&json!({
            "run_id": self.run_id,
            "count": self.count,
            "head": self.head,
            "prev": self.prev,
            "at": self.at,
        }))
    }

    /// True for a signed digest (a seal). Commits between two points where the run waits or
    /// ends write unsigned links: each names its records and the link before it, and the next
    /// seal signs that chain of links, so one signature covers every commit since the last.
    pub fn is_seal(&self) -> bool {
        !self.signature.is_empty()
    }

    /// The hash this digest should carry, computed from its signed fields.
    pub fn compute_hash(&self) -> String {
        sha256_hex_bytes(self.signed_bytes().as_bytes())
    }
}

/// Whether a log is covered by signed digests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signing {
    /// No digests: a run written before signing existed, or by a store that does not sign.
    Unsigned,
    /// Every record is covered by a verified digest.
    Signed {
        /// How many digests (seals and links) were checked.
        digests: usize,
        /// Records after the last seal, covered by unsigned links only: a run still moving
        /// (its next wait or its end seals them). Always 0 for a run that ended.
        unsealed: u64,
    },
}

/// Checks `digests` (oldest first) against `records`, which must already be a verified chain
/// (see [`super::verify_chain`]): each digest is unaltered, correctly signed (`signature_ok`)
/// if it is a seal, belongs to `run_id`, links to the one before it, and names a record that
/// exists with exactly the signed hash; the last digest covers the last record, and a log whose
/// last record ends the run (`complete_run`) is sealed to its end.
pub fn verify_digests(
    run_id: &str,
    records: &[AuditRecord],
    digests: &[AuditDigest],
    signature_ok: impl Fn(&AuditDigest) -> bool,
) -> Result<Signing, ChainError> {
    if digests.is_empty() {
        return Ok(Signing::Unsigned);
    }
    let last = records.last().map(|r| r.seq).unwrap_or(0);
    let mut prev_hash = GENESIS_HASH;
    let mut prev_count = 0;
    let mut sealed = 0;
    for d in digests {
        if d.compute_hash() != d.hash {
            return Err(ChainError::DigestAltered { count: d.count });
        }
        if d.is_seal() && !signature_ok(d) {
            return Err(ChainError::BadSignature { count: d.count });
        }
        if d.run_id != run_id {
            return Err(ChainError::DigestOfOtherRun { count: d.count, run_id: d.run_id.clone() });
        }
        if d.prev != prev_hash || d.count <= prev_count {
            return Err(ChainError::DigestLink { count: d.count });
        }
        // The chain is verified, so record `count` sits at index `count - 1`.
        let signed = usize::try_from(d.count).ok().and_then(|c| c.checked_sub(1)).and_then(|i| records.get(i));
        match signed {
            None => return Err(ChainError::SignedBeyondLog { count: d.count, last }),
            Some(r) if r.hash != d.head => {
                return Err(ChainError::RewrittenWithoutKey { from: prev_count + 1, to: d.count });
            }
            Some(_) => {}
        }
        prev_hash = &d.hash;
        prev_count = d.count;
        if d.is_seal() {
            sealed = d.count;
        }
    }
    if prev_count < last {
        return Err(ChainError::UnsignedTail { signed: prev_count, last });
    }
    let ended = records.last().is_some_and(|r| r.decision == "complete_run");
    if ended && sealed < last {
        return Err(ChainError::UnsealedEnd { sealed, last });
    }
    Ok(Signing::Signed { digests: digests.len(), unsealed: last - sealed })
}
