//! `audit verify` and `audit replay`: proving the log is intact and that every decision in it
//! follows from the journaled inputs.

use baton_core::audit::digest::{AuditDigest, Signing, verify_digests};
use baton_core::audit::seal::{SealSummary, SealedField, matchers, seal_json, verify_sealed};
use baton_core::audit::{Anchor, AuditRecord, ChainError, verify_anchored};
use baton_core::engine::{decide, new_run};
use baton_core::ids::RunId;

use crate::coordinator::Coordinator;
use crate::error::{RuntimeError, StoreError};

/// What [`verify`] found in an intact log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// How many records the chain has.
    pub records: usize,
    /// Whether signed digests cover them.
    pub signing: Signing,
    /// The sensitive fields the log seals, and which of them were erased.
    pub sealed: SealSummary,
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
    /// A record differs at or after one that sealed a field since erased: decisions computed
    /// from an erased value cannot be re-derived, so replay is checked only up to the record
    /// before.
    #[error(
        "replay matches the first {matched} records; record {seq} comes after erased field(s) {} were sealed, and decisions computed from an erased value cannot be re-derived, so replay stops there",
        fields.join(", ")
    )]
    Erased {
        /// The first record replay cannot re-derive.
        seq: u64,
        /// Records re-derived identically before it.
        matched: usize,
        /// The erased fields sealed up to it.
        fields: Vec<String>,
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

/// What replay knows of a run's sealed fields: the salt secret (absent once a field was
/// erased) and the erased fields.
#[derive(Debug, Clone, Default)]
pub struct ReplaySeals<'a> {
    /// The run's seal salt.
    pub salt: Option<&'a str>,
    /// Names of the erased fields.
    pub erased: Vec<String>,
}

impl<'a> ReplaySeals<'a> {
    /// From the run's salt and its stored sealed fields.
    pub fn of(salt: Option<&'a str>, sealed: &[SealedField]) -> Self {
        Self { salt, erased: sealed.iter().filter(|f| f.is_erased()).map(|f| f.field.clone()).collect() }
    }
}

/// A record with its commitments and hashes blanked: what replay can re-derive without the
/// run's salt.
fn without_commitments(r: &AuditRecord) -> AuditRecord {
    let mut r = r.clone();
    r.sealed.values_mut().for_each(String::clear);
    r.hash.clear();
    r.prev_hash.clear();
    r
}

/// Checks the hash chain of a run's audit log against the head its state holds, then the signed
/// digests (when the run has any) against the store's audit key.
pub async fn verify(coordinator: &Coordinator, run_id: &RunId) -> Result<Result<Verified, ChainError>, RuntimeError> {
    let store = coordinator.store();
    let stored = store.load_run(run_id).await?.ok_or_else(|| RuntimeError::UnknownRun(run_id.clone()))?;
    let records = store.load_audit(run_id).await?;
    let state = &stored.state;
    let sealed = store.load_sealed(run_id).await?;
    // The records hold the output as sealed; the state holds it whole (or erased).
    let output = state.output.clone().map(|mut o| {
        seal_json(&mut o, &matchers(&sealed));
        o
    });
    let anchor = Anchor {
        seq: state.audit_seq,
        hash: &state.audit_head,
        status: state.status.as_str(),
        output: output.as_ref(),
    };
    if let Err(e) = verify_anchored(&records, &anchor) {
        return Ok(Err(e));
    }
    let sealed = match verify_sealed(&records, &sealed) {
        Ok(summary) => summary,
        Err(e) => return Ok(Err(e.into())),
    };
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
    Ok(Ok(Verified { records: records.len(), signing, sealed, witnessed, unwitnessed }))
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
    let sealed = coordinator.store().load_sealed(run_id).await?;
    let seals = ReplaySeals::of(stored.state.seals.salt.as_deref(), &sealed);
    Ok(replay_records(&plan, run_id, stored.header.created_at, &seals, events, &logged))
}

/// The sealed fields `paths` name: a field itself, its later versions (`FIELD~2`) and the fields
/// below a path (`input.customer` for `input.customer.email`). An error names a path that
/// matches none, with the fields the run has.
pub fn fields_under(sealed: &[SealedField], paths: &[String]) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    for path in paths {
        let hits: Vec<String> = sealed
            .iter()
            .map(|f| f.field.clone())
            .filter(|f| {
                f == path
                    || f.strip_prefix(path.as_str()).is_some_and(|rest| rest.starts_with('.') || rest.starts_with('~'))
            })
            .collect();
        if hits.is_empty() {
            let known: Vec<&str> = sealed.iter().map(|f| f.field.as_str()).collect();
            return Err(if known.is_empty() {
                format!(
                    "--field {path}: the run seals no sensitive field (its workflow lists none under `sensitive`, or no value was found there)"
                )
            } else {
                format!(
                    "--field {path}: no sealed field is at or under it; the run's sealed fields: {}",
                    known.join(", ")
                )
            });
        }
        out.extend(hits);
    }
    out.sort();
    out.dedup();
    Ok(out)
}

/// The records the pure engine decides for `events` (a run of `plan` created at `created_at`),
/// compared with `logged` one by one: the count of identical records, or the first divergence.
/// Needs no store: `audit replay --export` runs it on an export's files.
///
/// `salt` is the run's seal salt (see `baton_core::audit::seal`): with it, sealed records are
/// re-derived bit for bit. Without it (erased, or not exported) the commitments cannot be
/// recomputed: records are then compared without their commitments and hashes, which
/// `verify` checks instead.
pub fn replay_records(
    plan: &baton_core::Plan,
    run_id: &RunId,
    created_at: u64,
    seals: &ReplaySeals<'_>,
    events: impl IntoIterator<Item = baton_core::engine::Event>,
    logged: &[AuditRecord],
) -> Result<usize, Divergence> {
    let mut state = new_run(plan, run_id.clone(), created_at);
    state.seals.salt = seals.salt.map(str::to_owned);
    let mut replayed: Vec<AuditRecord> = Vec::new();
    for event in events {
        replayed.extend(decide(plan, &mut state, &event).audit);
    }
    let loose = seals.salt.is_none() && !plan.sensitive.is_empty();
    // From the first record that held an erased value on, decisions may read what is gone (a
    // transform evaluated on the input, a condition), so replay can decide otherwise there.
    let mut seen_erased: Vec<String> = Vec::new();
    for (i, (l, r)) in logged.iter().zip(replayed.iter()).enumerate() {
        let differs = if loose { without_commitments(l) != without_commitments(r) } else { l != r };
        for f in l.sealed.keys().filter(|f| seals.erased.contains(f)) {
            if !seen_erased.contains(f) {
                seen_erased.push(f.clone());
            }
        }
        if differs && !seen_erased.is_empty() {
            return Err(Divergence::Erased { seq: l.seq, matched: i, fields: seen_erased });
        }
        if differs {
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
