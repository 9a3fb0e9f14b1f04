//! Sealing a run's audit log on DynamoDB: the signed digest a sealing commit writes, linked to
//! the previous one through the header's `digest_head`.

use baton_core::audit::GENESIS_HASH;
use baton_core::audit::digest::AuditDigest;
use baton_core::ids::RunId;
use baton_runtime::StoreError;
use baton_runtime::ports::{Precondition, Transition};

use super::DynamoStore;
use crate::items::*;

/// A seal a transition writes: what the header's `digest_head` becomes, and what the witness
/// gets once the transaction succeeded.
pub(super) struct Seal {
    pub(super) run_id: String,
    pub(super) count: u64,
    /// The digest's hash: the run's new `digest_head`.
    pub(super) head: String,
    /// The digest's JSON, as the `DIGEST#<count>` item holds it.
    pub(super) body: String,
}

impl DynamoStore {
    pub(super) fn remember_heads(&self, heads: impl IntoIterator<Item = (String, String)>) {
        if let Ok(mut m) = self.digest_heads.lock() {
            m.extend(heads);
        }
    }

    /// The same store, also writing each seal to `witness` (an S3 bucket with Object Lock)
    /// after the transaction that wrote it succeeded, and reading them back for `audit verify`.
    pub fn with_digest_witness(mut self, witness: crate::digest_witness::DigestWitness) -> Self {
        self.witness = Some(witness);
        self
    }

    /// After a successful commit: the new heads, and the seals to the witness. One put at a
    /// time: a commit seals at most one run in the common case.
    pub(super) async fn sealed(&self, seals: impl IntoIterator<Item = Seal>) {
        let seals: Vec<Seal> = seals.into_iter().collect();
        self.remember_heads(seals.iter().map(|s| (s.run_id.clone(), s.head.clone())));
        if let Some(w) = &self.witness {
            for s in &seals {
                w.witness(&s.run_id, s.count, &s.body).await;
            }
        }
    }

    /// The run's seals in the witness: `None` without one (or when its bucket does not exist).
    pub(super) async fn witnessed(&self, id: &RunId) -> Result<Option<Vec<AuditDigest>>, StoreError> {
        match &self.witness {
            Some(w) => w.digests(id.as_str()).await,
            None => Ok(None),
        }
    }

    /// The previous digest's hash for `t`'s run: the cached head, the genesis for a new run, or
    /// the header's `digest_head` read now (a run this store has not loaded).
    async fn prev_digest(&self, t: &Transition) -> Result<String, StoreError> {
        if matches!(t.precondition, Precondition::DoesNotExist) {
            return Ok(GENESIS_HASH.to_owned());
        }
        let cached = self.digest_heads.lock().ok().and_then(|m| m.get(t.header.id.as_str()).cloned());
        if let Some(head) = cached {
            return Ok(head);
        }
        let item = self.get_consistent(run_pk(&t.header.id), "RUN").await?;
        Ok(item.as_ref().and_then(|i| opt_s(i, "digest_head")).unwrap_or_else(|| GENESIS_HASH.to_owned()))
    }

    /// The digest item a sealing transition writes, and the new head: `None` without a key, when
    /// the commit is not a seal, or when it appends no records.
    pub(super) async fn seal_item(&self, t: &Transition) -> Result<Option<(Item, Seal)>, StoreError> {
        let (Some(key), true, Some(last)) = (&self.audit_key, t.seal, t.audit.last()) else { return Ok(None) };
        let prev = self.prev_digest(t).await?;
        let at = t.events.last().map(|(_, e)| e.at).unwrap_or(t.header.created_at);
        let digest = key.digest_sealed(t.header.id.as_str(), last.seq, &last.hash, &prev, at, true);
        let mut item = Item::new();
        item.insert("PK".into(), s(run_pk(&t.header.id)));
        item.insert("SK".into(), s(seq_key("DIGEST", last.seq)));
        let body = to_json(&digest)?;
        item.insert("body".into(), s(&body));
        let seal = Seal { run_id: digest.run_id, count: digest.count, head: digest.hash, body };
        Ok(Some((item, seal)))
    }
}
