//! The audit log: one record per decision, each naming the reason and the evaluated values behind
//! it, hash-chained so an edited, deleted or reordered record is detected.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::canonical::sha256_hex;

pub mod digest;
pub mod seal;

/// `prev_hash` of the first record of a run.
pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// One audited decision.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditRecord {
    /// Position in the run's log, from 1, without gaps.
    pub seq: u64,
    /// Time of the event that caused the decision (ms since the Unix epoch).
    pub at: u64,
    /// The kind of event that caused it (`run_started`, `step_failed`, `timer_fired`, ...).
    pub kind: String,
    /// What was decided (`dispatch`, `skip`, `retry`, `fall_back`, `complete_run`, ...).
    pub decision: String,
    /// The step concerned, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step: Option<String>,
    /// The node (step instance: loop iteration, for_each item, role) concerned, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    /// Attempt number, from 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attempt: Option<u32>,
    /// Loop iteration, from 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iteration: Option<u32>,
    /// The reason, in words.
    pub reason: String,
    /// The evaluated values behind the decision (condition results, errors, delays, ...).
    #[serde(default, skip_serializing_if = "Value::is_null")]
    pub values: Value,
    /// The commands the decision issued, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub commands: Vec<Value>,
    /// SHA-256 of the event that caused the decision (its canonical JSON, with sensitive values
    /// sealed as in the record): binds the journal to the chain, so replay names an altered
    /// event even when it changes no decision. Empty in records written before it existed.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub event: String,
    /// The commitment of every sensitive field this record seals (see [`seal`]): the value is
    /// stored apart and can be erased without changing this record.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub sealed: std::collections::BTreeMap<String, String>,
    /// Hash of the previous record.
    pub prev_hash: String,
    /// SHA-256 over this record's canonical JSON without `hash`.
    pub hash: String,
}

impl AuditRecord {
    /// The hash this record should carry, computed from its other fields.
    pub fn compute_hash(&self) -> String {
        let mut v = serde_json::to_value(self).unwrap_or(Value::Null);
        if let Value::Object(m) = &mut v {
            m.remove("hash");
        }
        sha256_hex(&v)
    }
}

/// Where a chain first goes wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChainError {
    /// A sensitive field stored apart does not match the log.
    #[error(transparent)]
    Sealed(#[from] seal::SealError),
    /// A record's sequence number is not the next one (deleted or reordered record).
    #[error("record at position {position} has seq {found}, expected {expected} (a record was deleted or reordered)")]
    Gap {
        /// 1-based position in the list.
        position: usize,
        /// Expected seq.
        expected: u64,
        /// Found seq.
        found: u64,
    },
    /// A record's `prev_hash` does not match the previous record's hash.
    #[error(
        "record {seq} does not link to record {prev}: prev_hash differs (a record was removed, inserted or reordered)"
    )]
    BrokenLink {
        /// The record.
        seq: u64,
        /// The record before it.
        prev: u64,
    },
    /// A record's content does not match its hash.
    #[error("record {seq} was modified: its content does not match its hash")]
    Tampered {
        /// The record.
        seq: u64,
    },
    /// The log ends before the head the run's state holds (written in the same commit as the
    /// records): its last records were deleted.
    #[error(
        "the log ends at record {found} but the run's state holds head {expected}: records {} to {expected} were deleted",
        found + 1
    )]
    Truncated {
        /// The head's sequence number (the count of records the run wrote).
        expected: u64,
        /// The last sequence number in the log.
        found: u64,
    },
    /// The log has records past the head the run's state holds.
    #[error("the log has {found} records but the run's state holds head {expected}: record {} was added", expected + 1)]
    Extended {
        /// The head's sequence number.
        expected: u64,
        /// The last sequence number in the log.
        found: u64,
    },
    /// The last record's hash is not the head the run's state holds (the tail was rewritten
    /// and its hashes recomputed).
    #[error("record {seq} is not the head the run's state holds: its hash differs (the log's tail was rewritten)")]
    HeadMismatch {
        /// The last record.
        seq: u64,
    },
    /// The run's stored status or output is not what its last record decided.
    #[error("the run's stored {field} is not what record {seq} decided")]
    OutcomeMismatch {
        /// The deciding record.
        seq: u64,
        /// `status` or `output`.
        field: &'static str,
    },
    /// A digest's content does not match its own hash.
    #[error("the digest signed at record {count} was modified: its content does not match its hash")]
    DigestAltered {
        /// The record count the digest claims.
        count: u64,
    },
    /// A digest's signature does not verify with the audit key.
    #[error(
        "the digest signed at record {count} does not verify with the audit key (the digest was replaced, or signed by another key)"
    )]
    BadSignature {
        /// The record count the digest claims.
        count: u64,
    },
    /// A digest names another run.
    #[error("the digest signed at record {count} belongs to run {run_id} (it was moved between runs)")]
    DigestOfOtherRun {
        /// The record count the digest claims.
        count: u64,
        /// The run it names.
        run_id: String,
    },
    /// A digest does not link to the previous one.
    #[error(
        "the digest signed at record {count} does not link to the digest before it (a digest was removed, inserted or reordered)"
    )]
    DigestLink {
        /// The record count the digest claims.
        count: u64,
    },
    /// A record's hash differs from the one a digest signed, though the chain itself is intact.
    #[error(
        "records {from} to {to} do not match the signed digest at record {to}: the log was rewritten and its hashes recomputed without the signing key"
    )]
    RewrittenWithoutKey {
        /// First record the digest covers that the previous digest does not.
        from: u64,
        /// The record the digest signed.
        to: u64,
    },
    /// A digest signs a record the log no longer has.
    #[error("a digest signs record {count} but the log ends at record {last}: records {} to {count} were deleted", last + 1)]
    SignedBeyondLog {
        /// The record count the digest claims.
        count: u64,
        /// The last sequence number in the log.
        last: u64,
    },
    /// Records after the last digest: appended without the key, or their digest was deleted.
    #[error(
        "records {} to {last} are covered by no signed digest (added without the signing key, or their digest was deleted)",
        signed + 1
    )]
    UnsignedTail {
        /// The last record a digest signs.
        signed: u64,
        /// The last sequence number in the log.
        last: u64,
    },
    /// The log ends its run but its last records are under no signature: every run's last
    /// commit is sealed, so the seal was stripped or the records were rewritten without the key.
    #[error(
        "records {} to {last} end the run but no signed digest seals them (signatures stripped, or the records rewritten without the signing key)",
        sealed + 1
    )]
    UnsealedEnd {
        /// The last record a signed digest covers.
        sealed: u64,
        /// The last sequence number in the log.
        last: u64,
    },
    /// The write-once witness (the AWS stack's S3 bucket with Object Lock) holds a seal past the
    /// table's last one: the table's seals, and the records they signed, were cut after it.
    #[error(
        "the S3 witness holds the seal signed at record {count}, but the table's seals end at record {last}: the log's history after record {last} was cut from the table"
    )]
    WitnessBeyondLog {
        /// The record count the witnessed seal signs.
        count: u64,
        /// The record count of the table's last seal (0 when it has none).
        last: u64,
    },
    /// The witness holds a seal at a count where the table has another seal, or none: the
    /// table's seal there was replaced or deleted.
    #[error(
        "the S3 witness holds the seal signed at record {count}, and the table's seal at record {count} differs or is missing: the table's history was rewritten"
    )]
    WitnessMismatch {
        /// The record count the witnessed seal signs.
        count: u64,
    },
}

impl ChainError {
    /// The first sequence number that is wrong.
    pub fn first_bad(&self) -> u64 {
        match self {
            ChainError::Sealed(e) => e.seq(),
            ChainError::Gap { found, .. } => *found,
            ChainError::BrokenLink { seq, .. }
            | ChainError::Tampered { seq }
            | ChainError::HeadMismatch { seq }
            | ChainError::OutcomeMismatch { seq, .. } => *seq,
            ChainError::Truncated { found, .. } => found + 1,
            ChainError::Extended { expected, .. } => expected + 1,
            ChainError::DigestAltered { count }
            | ChainError::BadSignature { count }
            | ChainError::DigestOfOtherRun { count, .. }
            | ChainError::DigestLink { count } => *count,
            ChainError::RewrittenWithoutKey { from, .. } => *from,
            ChainError::SignedBeyondLog { last, .. } => last + 1,
            ChainError::UnsignedTail { signed, .. } => signed + 1,
            ChainError::UnsealedEnd { sealed, .. } => sealed + 1,
            ChainError::WitnessBeyondLog { last, .. } => last + 1,
            ChainError::WitnessMismatch { count } => *count,
        }
    }
}

/// What the run's stored state says about its log: the head written in the same commit as the
/// records, and the outcome the last records decided.
#[derive(Debug, Clone, PartialEq)]
pub struct Anchor<'a> {
    /// Sequence number of the last record written (the count of records).
    pub seq: u64,
    /// Hash of the last record written.
    pub hash: &'a str,
    /// The run's stored status word (`succeeded`, `failed`, `cancelled`, `running`).
    pub status: &'a str,
    /// The run's stored output.
    pub output: Option<&'a Value>,
}

/// Checks the chain, then that it ends exactly at the head the run's state holds and that the
/// run's stored status and output are the ones its `complete_run` record decided. A deleted
/// tail, an appended record or a rewritten tail with recomputed hashes is caught here, where
/// [`verify_chain`] alone cannot see it.
pub fn verify_anchored(records: &[AuditRecord], anchor: &Anchor<'_>) -> Result<(), ChainError> {
    verify_chain(records)?;
    let last = records.last().map(|r| r.seq).unwrap_or(0);
    if last < anchor.seq {
        return Err(ChainError::Truncated { expected: anchor.seq, found: last });
    }
    if last > anchor.seq {
        return Err(ChainError::Extended { expected: anchor.seq, found: last });
    }
    if let Some(r) = records.last()
        && r.hash != anchor.hash
    {
        return Err(ChainError::HeadMismatch { seq: r.seq });
    }
    let decided = records.iter().rev().find(|r| r.decision == "complete_run");
    match decided {
        Some(r) => {
            let status = r
                .commands
                .iter()
                .find(|c| c.get("command").and_then(Value::as_str) == Some("complete_run"))
                .and_then(|c| c.get("status"))
                .and_then(Value::as_str);
            if status != Some(anchor.status) {
                return Err(ChainError::OutcomeMismatch { seq: r.seq, field: "status" });
            }
            if let Some(decided_output) = r.values.get("output")
                && anchor.output != Some(decided_output)
            {
                return Err(ChainError::OutcomeMismatch { seq: r.seq, field: "output" });
            }
        }
        None if anchor.status != "running" => {
            return Err(ChainError::OutcomeMismatch { seq: last, field: "status" });
        }
        None => {}
    }
    Ok(())
}

/// Checks that `records` form an intact chain starting at seq 1.
pub fn verify_chain(records: &[AuditRecord]) -> Result<(), ChainError> {
    let mut prev_hash = GENESIS_HASH.to_owned();
    for (i, r) in records.iter().enumerate() {
        let expected = i as u64 + 1;
        if r.compute_hash() != r.hash {
            return Err(ChainError::Tampered { seq: r.seq });
        }
        if r.seq != expected {
            return Err(ChainError::Gap { position: i + 1, expected, found: r.seq });
        }
        if r.prev_hash != prev_hash {
            return Err(ChainError::BrokenLink { seq: r.seq, prev: r.seq.saturating_sub(1) });
        }
        prev_hash = r.hash.clone();
    }
    Ok(())
}
