//! The audit log: one record per decision, each naming the reason and the evaluated values behind
//! it, hash-chained so an edited, deleted or reordered record is detected.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::canonical::sha256_hex;

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
