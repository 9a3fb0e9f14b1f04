//! Sealing a run's audit log on DynamoDB: the signed digest a sealing commit writes, linked to
//! the previous one through the header's `digest_head`.

use baton_core::audit::GENESIS_HASH;
use baton_runtime::StoreError;
use baton_runtime::ports::{Precondition, Transition};

use super::DynamoStore;
use crate::items::*;

impl DynamoStore {
    pub(super) fn remember_heads(&self, heads: impl IntoIterator<Item = (String, String)>) {
        if let Ok(mut m) = self.digest_heads.lock() {
            m.extend(heads);
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
    pub(super) async fn seal_item(&self, t: &Transition) -> Result<Option<(Item, String)>, StoreError> {
        let (Some(key), true, Some(last)) = (&self.audit_key, t.seal, t.audit.last()) else { return Ok(None) };
        let prev = self.prev_digest(t).await?;
        let at = t.events.last().map(|(_, e)| e.at).unwrap_or(t.header.created_at);
        let digest = key.digest_sealed(t.header.id.as_str(), last.seq, &last.hash, &prev, at, true);
        let mut item = Item::new();
        item.insert("PK".into(), s(run_pk(&t.header.id)));
        item.insert("SK".into(), s(seq_key("DIGEST", last.seq)));
        item.insert("body".into(), s(to_json(&digest)?));
        Ok(Some((item, digest.hash)))
    }
}
