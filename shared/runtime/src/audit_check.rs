//! `audit verify` and `audit replay`: proving the log is intact and that every decision in it
//! follows from the journaled inputs.

use baton_core::audit::digest::{AuditDigest, Signing, verify_digests};
use baton_core::audit::{Anchor, AuditRecord, ChainError, verify_anchored};
use baton_core::engine::{decide, new_run};
use baton_core::ids::RunId;

use crate::coordinator::Coordinator;
use crate::error::{RuntimeError, StoreError};

/// What [`verify`] found in an intact log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verified {
    /// How many records the chain has.
    pub records: usize,
    /// Whether signed digests cover them.
    pub signing: Signing,
    /// How many of the run's seals the store's write-once witness holds; `None` when the store
    /// has no witness.
    pub witnessed: Option<usize>,
    /// Seals in the store that the witness lacks: not tampering (the witness is written after
    /// the commit, and that write may fail), but those seals are protected only by the store.
    pub unwitnessed: usize,
}

/// The first place where replay and the log disagree.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Divergence {
    /// A record differs.
    #[error("record {seq} differs: the log says {logged}, replay decided {replayed}")]
    Record {
        /// Sequence number.
        seq: u64,
        /// As logged (JSON).
        logged: String,
        /// As replayed (JSON).
        replayed: String,
    },
    /// The log has records replay did not produce, or the reverse.
    #[error("the log has {logged} records, replay produced {replayed}")]
    Count {
        /// Logged count.
        logged: usize,
        /// Replayed count.
        replayed: usize,
    },
}

/// Checks the hash chain of a run's audit log against the head its state holds, then the signed
/// digests (when the run has any) against the store's audit key.
pub async fn verify(coordinator: &Coordinator, run_id: &RunId) -> Result<Result<Verified, ChainError>, RuntimeError> {
    let store = coordinator.store();
    let stored = store.load_run(run_id).await?.ok_or_else(|| RuntimeError::UnknownRun(run_id.clone()))?;
    let records = store.load_audit(run_id).await?;
    let state = &stored.state;
    let anchor = Anchor {
        seq: state.audit_seq,
        hash: &state.audit_head,
        status: state.status.as_str(),
        output: state.output.as_ref(),
    };
    if let Err(e) = verify_anchored(&records, &anchor) {
        return Ok(Err(e));
    }
    let digests = store.load_audit_digests(run_id).await?;
    let signing = match (digests.is_empty(), store.audit_public_key()) {
        (true, _) => Signing::Unsigned,
        (false, Some(key)) => match verify_digests(run_id.as_str(), &records, &digests, |d| key.verifies(d)) {
            Ok(s) => s,
            Err(e) => return Ok(Err(e)),
        },
        (false, None) => {
            return Err(StoreError::Corrupt(format!(
                "run {run_id}'s audit log is signed but this store has no audit key to check it with"
            ))
            .into());
        }
    };
    let (witnessed, unwitnessed) = match store.witnessed_digests(run_id).await? {
        None => (None, 0),
        Some(witnessed) => match check_witness(&digests, &witnessed) {
            Ok(n) => (Some(n), digests.iter().filter(|d| d.is_seal()).count().saturating_sub(n)),
            Err(e) => return Ok(Err(e)),
        },
    };
    Ok(Ok(Verified { records: records.len(), signing, witnessed, unwitnessed }))
}

/// How many of the store's `digests` the witness holds. Every witnessed seal must be one of
/// them, exactly: the witness cannot be rewritten, so a difference means the store's was.
fn check_witness(digests: &[AuditDigest], witnessed: &[AuditDigest]) -> Result<usize, ChainError> {
    let last = digests.iter().map(|d| d.count).max().unwrap_or(0);
    let mut witnessed: Vec<&AuditDigest> = witnessed.iter().collect();
    // The lowest count first: that is where the store's history stops matching.
    witnessed.sort_by_key(|w| w.count);
    witnessed.dedup();
    for w in &witnessed {
        match digests.iter().find(|d| d.count == w.count) {
            Some(d) if d == *w => {}
            None if w.count > last => return Err(ChainError::WitnessBeyondLog { count: w.count, last }),
            _ => return Err(ChainError::WitnessMismatch { count: w.count }),
        }
    }
    Ok(witnessed.len())
}

/// Feeds the journaled events through the pure engine again and compares every record.
pub async fn replay(coordinator: &Coordinator, run_id: &RunId) -> Result<Result<usize, Divergence>, RuntimeError> {
    let stored = coordinator.store().load_run(run_id).await?.ok_or_else(|| RuntimeError::UnknownRun(run_id.clone()))?;
    let plan = coordinator.plan_for(&stored.header.workflow, &stored.header.definition).await?;
    let logged = coordinator.store().load_audit(run_id).await?;
    let events = coordinator.store().load_events(run_id).await?.into_iter().map(|(_, e)| e);
    Ok(replay_records(&plan, run_id, stored.header.created_at, events, &logged))
}

/// The records the pure engine decides for `events` (a run of `plan` created at `created_at`),
/// compared with `logged` one by one: the count of identical records, or the first divergence.
/// Needs no store: `audit replay --export` runs it on an export's files.
pub fn replay_records(
    plan: &baton_core::Plan,
    run_id: &RunId,
    created_at: u64,
    events: impl IntoIterator<Item = baton_core::engine::Event>,
    logged: &[AuditRecord],
) -> Result<usize, Divergence> {
    let mut state = new_run(plan, run_id.clone(), created_at);
    let mut replayed: Vec<AuditRecord> = Vec::new();
    for event in events {
        replayed.extend(decide(plan, &mut state, &event).audit);
    }
    for (l, r) in logged.iter().zip(replayed.iter()) {
        if l != r {
            return Err(Divergence::Record {
                seq: l.seq,
                logged: serde_json::to_string(l).unwrap_or_default(),
                replayed: serde_json::to_string(r).unwrap_or_default(),
            });
        }
    }
    if logged.len() != replayed.len() {
        return Err(Divergence::Count { logged: logged.len(), replayed: replayed.len() });
    }
    Ok(logged.len())
}
