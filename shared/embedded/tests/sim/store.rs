//! The real SQLite store behind the fault injector: every call may find the process dead or be
//! throttled before it runs, and every write may lose its reply after it was applied.

use std::sync::Arc;

use async_trait::async_trait;
use baton_core::audit::AuditRecord;
use baton_core::audit::digest::AuditDigest;
use baton_core::audit::seal::SealedField;
use baton_core::engine::Event;
use baton_core::engine::StepError;
use baton_runtime::StoreError;
use baton_runtime::metering::Usage;
use baton_runtime::ports::{
    BusEvent, CacheEntry, Claim, Episode, MemoryFact, OutboxEntry, RunHeader, RunQuery, RunStore, StoredRun,
    TaskRecord, Transition,
};
use baton_runtime::{RunId, TaskId};
use serde_json::Value;

use super::faults::Faults;

/// A store whose calls go through [`Faults`].
pub struct FaultyStore {
    /// The store itself.
    pub inner: Arc<dyn RunStore>,
    /// The injector.
    pub faults: Arc<Faults>,
}

impl FaultyStore {
    async fn read<T>(
        &self,
        op: &str,
        f: impl std::future::Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        self.faults.before(op)?;
        f.await
    }

    async fn write<T>(
        &self,
        op: &str,
        f: impl std::future::Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        self.faults.before(op)?;
        let out = f.await?;
        self.faults.after(op)?;
        Ok(out)
    }
}

#[async_trait]
impl RunStore for FaultyStore {
    async fn put_definition(&self, hash: &str, name: &str, source: &str) -> Result<(), StoreError> {
        self.write("put_definition", self.inner.put_definition(hash, name, source)).await
    }
    async fn get_definition(&self, workflow: &str, hash: &str) -> Result<Option<String>, StoreError> {
        self.read("get_definition", self.inner.get_definition(workflow, hash)).await
    }
    async fn publish_definition(&self, name: &str, hash: &str) -> Result<(), StoreError> {
        self.write("publish_definition", self.inner.publish_definition(name, hash)).await
    }
    async fn published_definitions(&self) -> Result<Vec<(String, String)>, StoreError> {
        self.read("published_definitions", self.inner.published_definitions()).await
    }
    async fn commit(&self, transitions: &[Transition]) -> Result<(), StoreError> {
        self.write("commit", self.inner.commit(transitions)).await
    }
    async fn load_run(&self, id: &RunId) -> Result<Option<StoredRun>, StoreError> {
        self.read("load_run", self.inner.load_run(id)).await
    }
    fn take_written_usage(&self, run_id: &RunId, version: u64) -> Option<Usage> {
        self.inner.take_written_usage(run_id, version)
    }
    async fn list_runs(&self, limit: usize) -> Result<Vec<RunHeader>, StoreError> {
        self.read("list_runs", self.inner.list_runs(limit)).await
    }
    async fn query_runs(&self, query: &RunQuery) -> Result<Vec<RunHeader>, StoreError> {
        self.read("query_runs", self.inner.query_runs(query)).await
    }
    async fn unfinished_runs(&self) -> Result<Vec<RunId>, StoreError> {
        self.read("unfinished_runs", self.inner.unfinished_runs()).await
    }
    async fn load_events(&self, id: &RunId) -> Result<Vec<(u64, Event)>, StoreError> {
        self.read("load_events", self.inner.load_events(id)).await
    }
    async fn load_audit(&self, id: &RunId) -> Result<Vec<AuditRecord>, StoreError> {
        self.read("load_audit", self.inner.load_audit(id)).await
    }
    async fn load_audit_digests(&self, id: &RunId) -> Result<Vec<AuditDigest>, StoreError> {
        self.read("load_audit_digests", self.inner.load_audit_digests(id)).await
    }
    fn audit_public_key(&self) -> Option<baton_runtime::audit_key::AuditPublicKey> {
        self.inner.audit_public_key()
    }
    async fn load_sealed(&self, id: &RunId) -> Result<Vec<SealedField>, StoreError> {
        self.read("load_sealed", self.inner.load_sealed(id)).await
    }
    async fn erase_sealed(
        &self,
        id: &RunId,
        fields: &[String],
        at: u64,
        reason: &str,
    ) -> Result<Vec<String>, StoreError> {
        self.write("erase_sealed", self.inner.erase_sealed(id, fields, at, reason)).await
    }
    async fn open_tasks(&self) -> Result<Vec<TaskRecord>, StoreError> {
        self.read("open_tasks", self.inner.open_tasks()).await
    }
    async fn get_task(&self, id: &TaskId) -> Result<Option<TaskRecord>, StoreError> {
        self.read("get_task", self.inner.get_task(id)).await
    }
    async fn open_waits(&self, keys: &[String]) -> Result<Vec<TaskRecord>, StoreError> {
        self.read("open_waits", self.inner.open_waits(keys)).await
    }
    async fn bus_events(&self, run_id: &RunId) -> Result<Vec<BusEvent>, StoreError> {
        self.read("bus_events", self.inner.bus_events(run_id)).await
    }
    fn bus_event_ids(&self, t: &Transition) -> Option<Vec<String>> {
        self.inner.bus_event_ids(t)
    }
    async fn unpublished_bus_events(&self, limit: usize) -> Result<Vec<(String, BusEvent)>, StoreError> {
        self.read("unpublished_bus_events", self.inner.unpublished_bus_events(limit)).await
    }
    async fn mark_bus_published(&self, ids: &[String]) -> Result<(), StoreError> {
        self.write("mark_bus_published", self.inner.mark_bus_published(ids)).await
    }
    async fn pending_outbox(&self, before: u64, limit: usize) -> Result<Vec<OutboxEntry>, StoreError> {
        self.read("pending_outbox", self.inner.pending_outbox(before, limit)).await
    }
    async fn clear_outbox(&self, ids: &[String]) -> Result<(), StoreError> {
        self.write("clear_outbox", self.inner.clear_outbox(ids)).await
    }
    async fn claim(&self, key: &str, owner: &str, now: u64, lease_until: u64) -> Result<Claim, StoreError> {
        self.write("claim", self.inner.claim(key, owner, now, lease_until)).await
    }
    async fn finish_claim(&self, key: &str, result: &Result<Value, StepError>) -> Result<(), StoreError> {
        self.write("finish_claim", self.inner.finish_claim(key, result)).await
    }
    async fn put_fact(&self, fact: &MemoryFact) -> Result<(), StoreError> {
        self.write("put_fact", self.inner.put_fact(fact)).await
    }
    async fn facts(&self, entity: &str) -> Result<Vec<MemoryFact>, StoreError> {
        self.read("facts", self.inner.facts(entity)).await
    }
    async fn episodes(&self, entity: &str, limit: usize) -> Result<Vec<Episode>, StoreError> {
        self.read("episodes", self.inner.episodes(entity, limit)).await
    }
    async fn put_cache(&self, entry: &CacheEntry) -> Result<(), StoreError> {
        self.write("put_cache", self.inner.put_cache(entry)).await
    }
    async fn get_cache(&self, key: &str) -> Result<Option<CacheEntry>, StoreError> {
        self.read("get_cache", self.inner.get_cache(key)).await
    }
    async fn witnessed_digests(&self, id: &RunId) -> Result<Option<Vec<AuditDigest>>, StoreError> {
        self.read("witnessed_digests", self.inner.witnessed_digests(id)).await
    }
}
