//! The DynamoDB run store: the single-table layout in docs/aws.md, every transition one
//! `TransactWriteItems` (header conditioned on the expected version, journal and audit items on
//! `attribute_not_exists`), a lost race mapped to a typed conflict. Entity memory and the
//! response cache live in the same table (see `items`).

use async_trait::async_trait;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{AttributeValue, Delete, Put, TransactWriteItem, Update};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use baton_core::audit::digest::AuditDigest;
use baton_core::audit::{AuditRecord, GENESIS_HASH};
use baton_core::engine::{Event, RunStatus};
use baton_core::ids::{RunId, TaskId};
use baton_runtime::StoreError;
use baton_runtime::audit_key::{AuditKey, AuditPublicKey};
use baton_runtime::ports::{
    BusEvent, CacheEntry, Claim, Episode, MemoryFact, OutboxEntry, Precondition, RunHeader, RunQuery, RunStore,
    StoredRun, TaskChange, TaskRecord, Transition,
};

use crate::items::*;
use crate::sdk_error::ok_unless;

mod query;
mod seal;
mod sealed_items;
mod store_cost;
mod table;
mod task_items;

use store_cost::StoreCost;
use task_items::fold_task_changes;

/// The episodes a transition writes: the first per entity and run, as SQLite keeps them.
fn distinct_episodes(t: &Transition) -> Vec<&Episode> {
    let mut seen = std::collections::HashSet::new();
    t.episodes.iter().filter(|e| seen.insert((e.entity.as_str(), e.run_id.as_str()))).collect()
}

/// The key of the outbox row `id` (`<run>/<version>`, see `baton_runtime::outbox_id`).
fn outbox_key(id: &str) -> Result<(String, String), StoreError> {
    let (run, version) = id
        .rsplit_once('/')
        .and_then(|(r, v)| Some((r, v.parse::<u64>().ok()?)))
        .ok_or_else(|| StoreError::Corrupt(format!("bad outbox id {id}")))?;
    Ok((run_pk(&RunId::from(run)), seq_key("OUTBOX", version)))
}

/// The id of event `i` of the `n` a lifecycle-event item (`pk`, `sk`) holds, as
/// `mark_bus_published` reads it back.
fn bus_event_id(pk: &str, sk: &str, i: usize, n: usize) -> String {
    format!("{pk}|{sk}|{i}|{n}")
}

/// How long a cache entry outlives its expiry before the table's TTL removes it: `get_cache`
/// returns expired entries too, and the caller judges their age.
const CACHE_GRACE_SECS: u64 = 7 * 24 * 3600;

/// DynamoDB's limits on one transaction.
const MAX_TRANSACTION_ITEMS: usize = 100;
const MAX_TRANSACTION_BYTES: usize = 4 * 1024 * 1024;

/// A [`RunStore`] on one DynamoDB table.
#[derive(Clone)]
pub struct DynamoStore {
    client: Client,
    table: String,
    claims: Option<crate::claim_check::ClaimCheck>,
    /// Signs a digest at each seal (a commit after which the run has no call in flight).
    audit_key: Option<Arc<AuditKey>>,
    /// The hash of each run's last digest as this store last read or wrote it (the header's
    /// `digest_head`), so a commit links its digest without a read. A stale entry cannot link a
    /// wrong chain: the commit is conditioned on the version the entry came with.
    digest_heads: Arc<Mutex<HashMap<String, String>>>,
    /// Where each seal is also written after its commit (S3 with Object Lock), when set.
    witness: Option<crate::digest_witness::DigestWitness>,
    /// The account each run's last commit wrote (its version and usage), kept for runs whose
    /// next commit comes from this process without a read (calls run inline): the store adds
    /// its own cost to the account as it writes, which the caller's copy lacks.
    written_usage: Arc<Mutex<HashMap<String, (u64, baton_runtime::metering::Usage)>>>,
}

/// Largest payload kept inside an item; bigger ones go to the claim check.
const MAX_INLINE: usize = 350 * 1024;

fn backend<E: std::fmt::Display>(what: &str) -> impl Fn(E) -> StoreError + '_ {
    move |e| StoreError::Backend(format!("DynamoDB {what}: {e}"))
}

fn sdk<E: ProvideErrorMetadata + std::error::Error + 'static, R: std::fmt::Debug>(
    table: &str,
    what: &str,
    e: SdkError<E, R>,
) -> StoreError {
    let detail = match e.as_service_error() {
        Some(s) => format!("{}: {}", s.code().unwrap_or("error"), s.message().unwrap_or_default()),
        // Not an answer from DynamoDB: no endpoint, no credentials, a timeout.
        None => format!("{}", aws_sdk_dynamodb::error::DisplayErrorContext(&e)),
    };
    StoreError::Backend(format!("DynamoDB {what} on table `{table}`: {detail}"))
}

impl DynamoStore {
    fn remember_usage(&self, usages: impl IntoIterator<Item = (String, (u64, baton_runtime::metering::Usage))>) {
        if let Ok(mut m) = self.written_usage.lock() {
            m.extend(usages);
        }
    }

    /// A store on `table` using `config` (see [`crate::config`]).
    pub fn new(config: &aws_config::SdkConfig, table: impl Into<String>) -> Self {
        Self {
            client: crate::metering::dynamodb(config),
            table: table.into(),
            claims: None,
            audit_key: None,
            digest_heads: Arc::default(),
            witness: None,
            written_usage: Arc::default(),
        }
    }

    /// The same store, sealing each run's audit log with a digest signed by `key` (in the same
    /// transaction as the records it covers, at every commit after which the run has no call in
    /// flight), and checking digests with its public half.
    pub fn with_audit_key(mut self, key: AuditKey) -> Self {
        self.audit_key = Some(Arc::new(key));
        self
    }

    /// Keeps payloads too large for an item (run state, a journal entry, a claimed result) in
    /// the claim check's bucket, with a reference in the item.
    pub fn with_claim_check(mut self, claims: crate::claim_check::ClaimCheck) -> Self {
        self.claims = Some(claims);
        self
    }

    /// A JSON payload as an attribute: inline (deflated when large), or a claim-check reference.
    async fn attr(&self, json: String) -> Result<AttributeValue, StoreError> {
        let inline = payload(json.clone());
        match &self.claims {
            // Under `state/`, which no lifecycle rule expires: a run may wait for months.
            Some(c) if payload_len(&inline) > MAX_INLINE => {
                Ok(AttributeValue::S(c.check_in_under(crate::claim_check::STATE_PREFIX, json).await?))
            }
            _ => Ok(inline),
        }
    }

    /// Reads an attribute written by `attr`.
    async fn read_attr(&self, item: &Item, name: &str) -> Result<String, StoreError> {
        let text = get_payload(item, name)?;
        match (&self.claims, crate::claim_check::reference(&text)) {
            (Some(c), Some(_)) => c.check_out(&text).await,
            (None, Some((bucket, key))) => Err(StoreError::Backend(format!(
                "attribute `{name}` is in s3://{bucket}/{key}, and this store has no claim check"
            ))),
            _ => Ok(text),
        }
    }

    /// One item by key, strongly consistent.
    async fn get_consistent(&self, pk: impl Into<String>, sk: &str) -> Result<Option<Item>, StoreError> {
        let got = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("PK", s(pk))
            .key("SK", s(sk))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| sdk(&self.table, "GetItem", e))?;
        Ok(got.item().cloned())
    }

    async fn unpack<T: serde::de::DeserializeOwned>(&self, items: &[Item]) -> Result<Vec<T>, StoreError> {
        let mut out = Vec::new();
        for item in items {
            out.extend(from_json::<Vec<T>>(&self.read_attr(item, "body").await?)?);
        }
        Ok(out)
    }

    /// The items one transition writes, in order: header first.
    /// Also returns the payload bytes, to keep a transaction under DynamoDB's 4 MB.
    async fn transition_items(
        &self,
        t: &Transition,
    ) -> Result<(Vec<TransactWriteItem>, usize, Option<seal::Seal>, baton_runtime::metering::Usage), StoreError> {
        let h = &t.header;
        let (seal, head) = match self.seal_item(t).await? {
            Some((item, head)) => (Some(item), Some(head)),
            None => (None, None),
        };
        let pk = run_pk(&h.id);
        let state = self.attr(to_json(&t.state)?).await?;
        let mut bytes = payload_len(&state) + 512;
        // The run pays for this write and for the store's work after it; counted from the
        // sizes written here, so the estimate costs no second serialisation.
        let mut cost = StoreCost::default();
        cost.offloaded(&state);
        cost.item(payload_len(&state) + 400);
        // The header is listed in gsi1 (the runs index), which copies it on every write.
        cost.index(payload_len(&state) + 400);
        let mut out = Vec::new();
        let events: Vec<(u64, String)> =
            t.events.iter().map(|(q, e)| Ok((*q, to_json(e)?))).collect::<Result<_, StoreError>>()?;
        let audit: Vec<(u64, String)> =
            t.audit.iter().map(|r| Ok((r.seq, to_json(r)?))).collect::<Result<_, StoreError>>()?;
        for (prefix, entries) in [("EVENT", events), ("AUDIT", audit)] {
            for (first, body) in pack(&entries) {
                let body = self.attr(body).await?;
                cost.offloaded(&body);
                bytes += payload_len(&body) + 128;
                cost.item(payload_len(&body) + 100);
                let mut item = Item::new();
                item.insert("PK".into(), s(&pk));
                item.insert("SK".into(), s(seq_key(prefix, first)));
                item.insert("body".into(), body);
                out.push(self.put_new(item)?);
            }
        }
        if let Some(item) = seal {
            if self.witness.is_some() {
                cost.witnessed();
            }
            cost.item(600);
            bytes += 600;
            out.push(self.put_new(item)?);
        }
        if let Some(item) = self.sealed_item(t)? {
            let size = get_s(&item, "body")?.len() + 100;
            cost.item(size);
            bytes += size;
            out.push(self.put_new(item)?);
        }
        if let Some(first) = t.bus.first() {
            // A transition's lifecycle events share one item, so they never crowd a transaction.
            let body = self.attr(to_json(&t.bus)?).await?;
            cost.offloaded(&body);
            bytes += payload_len(&body) + 256;
            cost.item(payload_len(&body) + 300);
            cost.index(payload_len(&body) + 300);
            cost.flush_bus(payload_len(&body) + 300);
            let mut item = Item::new();
            item.insert("PK".into(), s(&pk));
            item.insert("SK".into(), s(seq_key("BUS", h.version)));
            // Listed under `BUS#pending` in gsi2 until published.
            item.insert("GSI2PK".into(), s("BUS#pending"));
            item.insert("GSI2SK".into(), s(format!("{:015}#{}#{:010}", first.at, h.id, h.version)));
            item.insert("body".into(), body);
            out.push(self.put_new(item)?);
        }
        if !t.outbox.is_empty() {
            let body = self.attr(to_json(&t.outbox)?).await?;
            cost.offloaded(&body);
            bytes += payload_len(&body) + 256;
            cost.item(payload_len(&body) + 200);
            cost.index(payload_len(&body) + 200);
            // Deleted after delivery, or, when the coordinator runs its calls itself, by the
            // next commit (as part of that transaction, counted there).
            if t.runs_here == 0 {
                cost.clear_outbox(payload_len(&body) + 200);
            }
            let at = t.events.last().map(|(_, e)| e.at).unwrap_or(h.created_at);
            let mut item = Item::new();
            item.insert("PK".into(), s(&pk));
            item.insert("SK".into(), s(seq_key("OUTBOX", h.version)));
            // Listed under `OUTBOX#pending` in gsi2 until delivered and deleted: the sweep's view.
            item.insert("GSI2PK".into(), s("OUTBOX#pending"));
            item.insert("GSI2SK".into(), s(format!("{at:015}#{}", baton_runtime::outbox_id(&h.id, h.version))));
            item.insert("created_at".into(), n(at));
            item.insert("body".into(), body);
            out.push(self.put_new(item)?);
        }
        for id in &t.clears {
            let (pk, sk) = outbox_key(id)?;
            let delete = Delete::builder()
                .table_name(&self.table)
                .key("PK", s(pk))
                .key("SK", s(sk))
                .build()
                .map_err(backend("delete"))?;
            out.push(TransactWriteItem::builder().delete(delete).build());
            // A deleted item bills by its size; a row with a call or two is about 1 KB.
            cost.item(1024);
            cost.index_removal();
            bytes += 256;
        }
        // A plain put, not `attribute_not_exists`: the item is the same whenever this episode
        // is written, so a retried or repeated commit rewrites it harmlessly instead of failing.
        for e in distinct_episodes(t) {
            let item_bytes =
                e.entity.len() * 2 + e.run_id.as_str().len() * 2 + e.workflow.len() + e.summary.len() + 128;
            bytes += item_bytes;
            cost.item(item_bytes);
            out.push(self.put(episode_item(e))?);
        }
        // A transaction may touch an item once: fold each task's changes into one write.
        for change in fold_task_changes(&t.tasks) {
            out.push(self.task_item(&change)?);
            cost.item(2048);
            // Open tasks are listed in gsi2: a new or moved task is copied there, a closed one leaves.
            match change {
                // Off gsi2, and off gsi1 for a wait.
                TaskChange::Close { .. } => cost.index_removal(),
                TaskChange::Open(task) if task.wait.is_some() && task.outcome.is_none() => {
                    cost.index(2048);
                    cost.index(2048);
                }
                _ => cost.index(2048),
            }
            bytes += 2048;
        }
        let mut usage = h.usage.clone();
        baton_runtime::metering::add(&mut usage, &cost.usage());
        let header = match t.precondition {
            Precondition::DoesNotExist => {
                let mut item = Item::new();
                item.insert("PK".into(), s(&pk));
                item.insert("SK".into(), s("RUN"));
                item.insert("GSI1PK".into(), s("RUNS"));
                item.insert("GSI1SK".into(), s(format!("{:015}#{}", h.created_at, h.id)));
                item.insert("workflow".into(), s(&h.workflow));
                item.insert("definition".into(), s(&h.definition));
                item.insert("status".into(), s(h.status.as_str()));
                item.insert("version".into(), n(h.version));
                item.insert("created_at".into(), n(h.created_at));
                item.insert("events".into(), n(h.events));
                item.insert("state".into(), state);
                if let Some(m) = &h.mocks {
                    item.insert("mocks".into(), s(to_json(m)?));
                }
                if !usage.is_empty() {
                    item.insert("usage".into(), s(to_json(&usage)?));
                }
                if let Some(head) = &head {
                    item.insert("digest_head".into(), s(&head.head));
                }
                self.put_new(item)?
            }
            Precondition::MatchesVersion(expected) => {
                let set = "SET #st = :st, #v = :v, #ev = :ev, #state = :state, #u = :u";
                let mut update = Update::builder()
                    .table_name(&self.table)
                    .key("PK", s(&pk))
                    .key("SK", s("RUN"))
                    .update_expression(if head.is_some() { format!("{set}, #dh = :dh") } else { set.to_owned() })
                    .condition_expression("#v = :expected")
                    .expression_attribute_names("#st", "status")
                    .expression_attribute_names("#v", "version")
                    .expression_attribute_names("#ev", "events")
                    .expression_attribute_names("#state", "state")
                    .expression_attribute_names("#u", "usage")
                    .expression_attribute_values(":u", s(to_json(&usage)?))
                    .expression_attribute_values(":st", s(h.status.as_str()))
                    .expression_attribute_values(":v", n(h.version))
                    .expression_attribute_values(":ev", n(h.events))
                    .expression_attribute_values(":state", state)
                    .expression_attribute_values(":expected", n(expected));
                if let Some(head) = &head {
                    update = update
                        .expression_attribute_names("#dh", "digest_head")
                        .expression_attribute_values(":dh", s(&head.head));
                }
                TransactWriteItem::builder().update(update.build().map_err(backend("update"))?).build()
            }
        };
        out.insert(0, header);
        Ok((out, bytes, head, usage))
    }

    fn put(&self, item: Item) -> Result<TransactWriteItem, StoreError> {
        let put = Put::builder().table_name(&self.table).set_item(Some(item)).build().map_err(backend("put"))?;
        Ok(TransactWriteItem::builder().put(put).build())
    }

    /// A put that fails the transaction when the item exists (`SK` is part of every key, so its
    /// absence means the item's).
    fn put_new(&self, item: Item) -> Result<TransactWriteItem, StoreError> {
        let put = Put::builder()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(SK)")
            .build()
            .map_err(backend("put"))?;
        Ok(TransactWriteItem::builder().put(put).build())
    }

    /// One transaction; `owners[i]` is the (run, expected version) item `i` belongs to, so a
    /// cancelled transaction names the run whose condition failed.
    async fn write(&self, items: Vec<TransactWriteItem>, owners: Vec<(RunId, u64)>) -> Result<(), StoreError> {
        if items.len() > MAX_TRANSACTION_ITEMS {
            let run_id = owners.first().map_or_else(|| RunId::from("?"), |o| o.0.clone());
            return Err(StoreError::TooLarge {
                run_id,
                detail: format!("{} items, more than DynamoDB's {MAX_TRANSACTION_ITEMS} per transaction", items.len()),
            });
        }
        match self.client.transact_write_items().set_transact_items(Some(items)).send().await {
            Ok(_) => Ok(()),
            Err(e) => {
                let failed = match e.as_service_error() {
                    Some(TransactWriteItemsError::TransactionCanceledException(c)) => {
                        // A failed condition names the run that lost; a transaction that collided with
                        // another on the same items (or was throttled) is retried the same way.
                        let reasons = c.cancellation_reasons();
                        reasons.iter().position(|r| r.code() == Some("ConditionalCheckFailed")).or_else(|| {
                            reasons
                                .iter()
                                .position(|r| matches!(r.code(), Some("TransactionConflict") | Some("ThrottlingError")))
                        })
                    }
                    _ => None,
                };
                match failed.and_then(|i| owners.get(i)) {
                    Some((run_id, expected)) => {
                        Err(StoreError::Conflict { run_id: run_id.clone(), expected: *expected })
                    }
                    None => Err(sdk(&self.table, "TransactWriteItems", e)),
                }
            }
        }
    }

    async fn query_prefix(&self, pk: &str, prefix: &str) -> Result<Vec<Item>, StoreError> {
        let query = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("PK = :pk AND begins_with(SK, :p)")
            .expression_attribute_values(":pk", s(pk))
            .expression_attribute_values(":p", s(prefix))
            .consistent_read(true);
        self.all_pages(query, None).await
    }

    async fn query_index(
        &self,
        index: &str,
        pk_name: &str,
        pk: &str,
        newest_first: bool,
        limit: Option<usize>,
    ) -> Result<Vec<Item>, StoreError> {
        let query = self
            .client
            .query()
            .table_name(&self.table)
            .index_name(index)
            .key_condition_expression("#pk = :pk")
            .expression_attribute_names("#pk", pk_name)
            .expression_attribute_values(":pk", s(pk))
            .scan_index_forward(!newest_first);
        self.all_pages(query, limit).await
    }

    /// The items `query` returns, page after page, up to `limit`.
    async fn all_pages(
        &self,
        query: aws_sdk_dynamodb::operation::query::builders::QueryFluentBuilder,
        limit: Option<usize>,
    ) -> Result<Vec<Item>, StoreError> {
        let mut out = Vec::new();
        let mut start = None;
        loop {
            let page =
                query.clone().set_exclusive_start_key(start).send().await.map_err(|e| sdk(&self.table, "Query", e))?;
            out.extend(page.items().iter().cloned());
            if let Some(l) = limit
                && out.len() >= l
            {
                out.truncate(l);
                return Ok(out);
            }
            match page.last_evaluated_key() {
                Some(k) if !k.is_empty() => start = Some(k.clone()),
                _ => return Ok(out),
            }
        }
    }

    fn header_of(item: &Item) -> Result<RunHeader, StoreError> {
        let pk = get_s(item, "PK")?;
        Ok(RunHeader {
            id: pk.strip_prefix("RUN#").unwrap_or(pk).into(),
            workflow: get_s(item, "workflow")?.to_owned(),
            definition: get_s(item, "definition")?.to_owned(),
            status: RunStatus::parse(get_s(item, "status")?)
                .ok_or_else(|| StoreError::Corrupt("unknown run status".into()))?,
            version: get_n(item, "version")?,
            created_at: get_n(item, "created_at")?,
            events: get_n(item, "events")?,
            mocks: opt_s(item, "mocks").map(|m| from_json(&m)).transpose()?,
            usage: opt_s(item, "usage").map(|u| from_json(&u)).transpose()?.unwrap_or_default(),
        })
    }
}

#[async_trait]
impl RunStore for DynamoStore {
    async fn put_definition(&self, hash: &str, name: &str, source: &str) -> Result<(), StoreError> {
        let put = self
            .client
            .put_item()
            .table_name(&self.table)
            .item("PK", s(format!("WF#{name}")))
            .item("SK", s(format!("DEF#{hash}")))
            .item("source", s(source))
            .condition_expression("attribute_not_exists(SK)")
            .send()
            .await;
        // Definitions are immutable and content-addressed: already there is success.
        ok_unless("ConditionalCheckFailedException", put, |e| sdk(&self.table, "PutItem", e))
    }

    async fn publish_definition(&self, name: &str, hash: &str) -> Result<(), StoreError> {
        // `WF#<name>` / `LATEST` points at the published hash; gsi1 lists every workflow.
        self.client
            .put_item()
            .table_name(&self.table)
            .item("PK", s(format!("WF#{name}")))
            .item("SK", s("LATEST"))
            .item("GSI1PK", s("WORKFLOWS"))
            .item("GSI1SK", s(name))
            .item("name", s(name))
            .item("hash", s(hash))
            .send()
            .await
            .map_err(|e| sdk(&self.table, "PutItem", e))?;
        Ok(())
    }

    async fn published_definitions(&self) -> Result<Vec<(String, String)>, StoreError> {
        let items = self.query_index(RUNS_INDEX, "GSI1PK", "WORKFLOWS", false, None).await?;
        items.iter().map(|i| Ok((get_s(i, "name")?.to_owned(), get_s(i, "hash")?.to_owned()))).collect()
    }

    async fn get_definition(&self, workflow: &str, hash: &str) -> Result<Option<String>, StoreError> {
        // Consistent: a definition stored just before the start message that names it.
        let got = self.get_consistent(format!("WF#{workflow}"), &format!("DEF#{hash}")).await?;
        got.as_ref().map(|i| get_s(i, "source").map(str::to_owned)).transpose()
    }

    async fn commit(&self, transitions: &[Transition]) -> Result<(), StoreError> {
        let mut per_run = Vec::with_capacity(transitions.len());
        for t in transitions {
            let expected = match t.precondition {
                Precondition::DoesNotExist => 0,
                Precondition::MatchesVersion(v) => v,
            };
            let (items, bytes, head, usage) = self.transition_items(t).await?;
            let usage = (t.runs_here > 0).then(|| (t.header.id.to_string(), (t.header.version, usage)));
            per_run.push((t.header.id.clone(), expected, items, bytes, head, usage));
        }
        let total: usize = per_run.iter().map(|r| r.2.len()).sum();
        let bytes: usize = per_run.iter().map(|r| r.3).sum();
        // A transaction may touch an item once: runs remembering the same episode (a child's,
        // say) go in transactions of their own.
        let mut episodes = std::collections::HashSet::new();
        let touched_once = transitions
            .iter()
            .flat_map(distinct_episodes)
            .all(|e| episodes.insert((e.entity.as_str(), e.at, e.run_id.as_str())));
        if touched_once && total <= MAX_TRANSACTION_ITEMS && bytes <= MAX_TRANSACTION_BYTES {
            let mut items = Vec::with_capacity(total);
            let mut owners = Vec::with_capacity(total);
            let mut heads = Vec::new();
            let mut usages = Vec::new();
            for (run_id, expected, its, _, head, usage) in per_run {
                heads.extend(head);
                usages.extend(usage);
                owners.extend(std::iter::repeat_n((run_id, expected), its.len()));
                items.extend(its);
            }
            self.write(items, owners).await?;
            self.sealed(heads).await;
            self.remember_usage(usages);
            return Ok(());
        }
        // Too big for one transaction: one per run, each still atomic.
        let mut first_error = None;
        for (run_id, expected, items, _, head, usage) in per_run {
            let owners = vec![(run_id.clone(), expected); items.len()];
            match self.write(items, owners).await {
                Ok(()) => {
                    self.sealed(head).await;
                    self.remember_usage(usage);
                }
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    fn bus_event_ids(&self, t: &Transition) -> Option<Vec<String>> {
        // The item `transition_items` writes them to, and each event's place in it.
        let (pk, sk, n) = (run_pk(&t.header.id), seq_key("BUS", t.header.version), t.bus.len());
        Some((0..n).map(|i| bus_event_id(&pk, &sk, i, n)).collect())
    }

    fn take_written_usage(&self, run_id: &RunId, version: u64) -> Option<baton_runtime::metering::Usage> {
        let (v, usage) = self.written_usage.lock().ok()?.remove(run_id.as_str())?;
        (v == version).then_some(usage)
    }

    async fn load_run(&self, id: &RunId) -> Result<Option<StoredRun>, StoreError> {
        let Some(item) = self.get_consistent(run_pk(id), "RUN").await? else { return Ok(None) };
        if self.audit_key.is_some() {
            let head = opt_s(&item, "digest_head").unwrap_or_else(|| GENESIS_HASH.to_owned());
            self.remember_heads([(id.to_string(), head)]);
        }
        Ok(Some(StoredRun {
            header: Self::header_of(&item)?,
            state: from_json(&self.read_attr(&item, "state").await?)?,
        }))
    }

    async fn list_runs(&self, limit: usize) -> Result<Vec<RunHeader>, StoreError> {
        let items = self.query_index(RUNS_INDEX, "GSI1PK", "RUNS", true, Some(limit)).await?;
        items.iter().map(Self::header_of).collect()
    }

    async fn query_runs(&self, query: &RunQuery) -> Result<Vec<RunHeader>, StoreError> {
        self.query_runs_indexed(query).await
    }

    async fn unfinished_runs(&self) -> Result<Vec<RunId>, StoreError> {
        let items = self.query_index(RUNS_INDEX, "GSI1PK", "RUNS", false, None).await?;
        let mut out = Vec::new();
        for item in &items {
            let h = Self::header_of(item)?;
            // The index is eventually consistent: confirm with a strongly consistent read.
            if h.status == RunStatus::Running
                && let Some(run) = self.load_run(&h.id).await?
                && run.header.status == RunStatus::Running
            {
                out.push(h.id);
            }
        }
        Ok(out)
    }

    async fn load_events(&self, id: &RunId) -> Result<Vec<(u64, Event)>, StoreError> {
        let items = self.query_prefix(&run_pk(id), "EVENT#").await?;
        let events: Vec<Event> = self.unpack(&items).await?;
        Ok(events.into_iter().enumerate().map(|(i, e)| (i as u64 + 1, e)).collect())
    }

    async fn load_audit(&self, id: &RunId) -> Result<Vec<AuditRecord>, StoreError> {
        let items = self.query_prefix(&run_pk(id), "AUDIT#").await?;
        self.unpack(&items).await
    }

    async fn load_audit_digests(&self, id: &RunId) -> Result<Vec<AuditDigest>, StoreError> {
        let items = self.query_prefix(&run_pk(id), "DIGEST#").await?;
        items.iter().map(|i| from_json(get_s(i, "body")?)).collect()
    }

    fn audit_public_key(&self) -> Option<AuditPublicKey> {
        self.audit_key.as_ref().map(|k| k.public())
    }

    async fn load_sealed(&self, id: &RunId) -> Result<Vec<baton_core::audit::seal::SealedField>, StoreError> {
        let mut out: Vec<_> = self.sealed_fields(id).await?.into_iter().flat_map(|(_, fs)| fs).collect();
        out.sort_by(|a, b| a.field.cmp(&b.field));
        Ok(out)
    }

    async fn erase_sealed(
        &self,
        id: &RunId,
        fields: &[String],
        at: u64,
        reason: &str,
    ) -> Result<Vec<String>, StoreError> {
        self.erase_fields(id, fields, at, reason).await
    }

    async fn witnessed_digests(&self, id: &RunId) -> Result<Option<Vec<AuditDigest>>, StoreError> {
        self.witnessed(id).await
    }

    async fn open_tasks(&self) -> Result<Vec<TaskRecord>, StoreError> {
        let items = self.query_index(TASKS_INDEX, "GSI2PK", "TASKS#open", false, None).await?;
        let mut out = Vec::new();
        for item in &items {
            let mut task: TaskRecord = from_json(get_s(item, "body")?)?;
            if let Some(q) = opt_s(item, "queue") {
                task.queue = q;
            }
            out.push(task);
        }
        Ok(out)
    }

    async fn open_waits(&self, keys: &[String]) -> Result<Vec<TaskRecord>, StoreError> {
        let mut out: Vec<TaskRecord> = Vec::new();
        for key in keys {
            for item in &self.query_index(RUNS_INDEX, "GSI1PK", &wait_pk(key), false, None).await? {
                let task: TaskRecord = from_json(get_s(item, "body")?)?;
                if !out.iter().any(|t| t.id == task.id) {
                    out.push(task);
                }
            }
        }
        Ok(out)
    }

    async fn get_task(&self, id: &TaskId) -> Result<Option<TaskRecord>, StoreError> {
        let Some(item) = self.get_consistent(format!("TASK#{id}"), "TASK").await? else { return Ok(None) };
        let item = &item;
        let mut task: TaskRecord = from_json(get_s(item, "body")?)?;
        if let Some(q) = opt_s(item, "queue") {
            task.queue = q;
        }
        if let Some(o) = opt_s(item, "outcome") {
            task.status = "closed".into();
            task.outcome = Some(o);
        }
        Ok(Some(task))
    }

    async fn bus_events(&self, run_id: &RunId) -> Result<Vec<BusEvent>, StoreError> {
        let items = self.query_prefix(&run_pk(run_id), "BUS#").await?;
        self.unpack(&items).await
    }

    async fn unpublished_bus_events(&self, limit: usize) -> Result<Vec<(String, BusEvent)>, StoreError> {
        // Whole items (a transition's events), so marking an item published marks all of them.
        let items = self.query_index(TASKS_INDEX, "GSI2PK", "BUS#pending", false, Some(limit)).await?;
        let mut out = Vec::new();
        for item in &items {
            let (pk, sk) = (get_s(item, "PK")?, get_s(item, "SK")?);
            let events: Vec<BusEvent> = from_json(&self.read_attr(item, "body").await?)?;
            let done: Vec<String> = match item.get("published_idx") {
                Some(AttributeValue::Ns(v)) => v.clone(),
                _ => Vec::new(),
            };
            let n = events.len();
            // Each event's id names its item, its index and the item's event count.
            out.extend(
                events
                    .into_iter()
                    .enumerate()
                    .filter(|(i, _)| !done.contains(&i.to_string()))
                    .map(|(i, e)| (bus_event_id(pk, sk, i, n), e)),
            );
        }
        Ok(out)
    }

    async fn mark_bus_published(&self, ids: &[String]) -> Result<(), StoreError> {
        // Group the events by item: a flush marks all of an item's events at once, which takes
        // it off the pending index in one update; a partial mark records the indices first.
        let mut items: std::collections::BTreeMap<(String, String, usize), std::collections::BTreeSet<usize>> =
            Default::default();
        for id in ids {
            let bad = || StoreError::Corrupt(format!("bad outbox id {id}"));
            let mut parts = id.split('|');
            let (pk, sk) = (parts.next().ok_or_else(bad)?, parts.next().ok_or_else(bad)?);
            let i: usize = parts.next().and_then(|v| v.parse().ok()).ok_or_else(bad)?;
            let n: usize = parts.next().and_then(|v| v.parse().ok()).ok_or_else(bad)?;
            items.entry((pk.to_owned(), sk.to_owned(), n)).or_default().insert(i);
        }
        for ((pk, sk, n), idx) in items {
            let complete = if idx.len() == n {
                true
            } else {
                let got = self
                    .client
                    .update_item()
                    .table_name(&self.table)
                    .key("PK", s(&pk))
                    .key("SK", s(&sk))
                    .update_expression("ADD published_idx :i")
                    .expression_attribute_values(":i", AttributeValue::Ns(idx.iter().map(|i| i.to_string()).collect()))
                    .return_values(aws_sdk_dynamodb::types::ReturnValue::UpdatedNew)
                    .send()
                    .await
                    .map_err(|e| sdk(&self.table, "UpdateItem", e))?;
                matches!(got.attributes().and_then(|a| a.get("published_idx")), Some(AttributeValue::Ns(v)) if v.len() >= n)
            };
            if complete {
                self.client
                    .update_item()
                    .table_name(&self.table)
                    .key("PK", s(&pk))
                    .key("SK", s(&sk))
                    .update_expression("REMOVE GSI2PK, GSI2SK")
                    .send()
                    .await
                    .map_err(|e| sdk(&self.table, "UpdateItem", e))?;
            }
        }
        Ok(())
    }

    async fn pending_outbox(&self, before: u64, limit: usize) -> Result<Vec<OutboxEntry>, StoreError> {
        let page = self
            .client
            .query()
            .table_name(&self.table)
            .index_name(TASKS_INDEX)
            .key_condition_expression("GSI2PK = :pk AND GSI2SK <= :before")
            .expression_attribute_values(":pk", s("OUTBOX#pending"))
            // Every key of a row committed at `before` sorts below this bound.
            .expression_attribute_values(":before", s(format!("{before:015}#~")))
            .limit(limit.min(1000) as i32)
            .send()
            .await
            .map_err(|e| sdk(&self.table, "Query", e))?;
        let mut out = Vec::new();
        for item in page.items() {
            let pk = get_s(item, "PK")?;
            let run_id = RunId::from(pk.strip_prefix("RUN#").unwrap_or(pk));
            let sk = get_s(item, "SK")?;
            let version: u64 = sk
                .strip_prefix("OUTBOX#")
                .and_then(|v| v.parse().ok())
                .ok_or_else(|| StoreError::Corrupt(format!("bad outbox key {sk}")))?;
            out.push(OutboxEntry {
                id: baton_runtime::outbox_id(&run_id, version),
                created_at: get_n(item, "created_at")?,
                items: from_json(&self.read_attr(item, "body").await?)?,
                run_id,
            });
        }
        Ok(out)
    }

    async fn clear_outbox(&self, ids: &[String]) -> Result<(), StoreError> {
        for id in ids {
            let (pk, sk) = outbox_key(id)?;
            self.client
                .delete_item()
                .table_name(&self.table)
                .key("PK", s(pk))
                .key("SK", s(sk))
                .send()
                .await
                .map_err(|e| sdk(&self.table, "DeleteItem", e))?;
        }
        Ok(())
    }

    async fn claim(&self, key: &str, owner: &str, now: u64, lease_until: u64) -> Result<Claim, StoreError> {
        let put = self
            .client
            .put_item()
            .table_name(&self.table)
            .item("PK", s(format!("CLAIM#{key}")))
            .item("SK", s("CLAIM"))
            .item("owner", s(owner))
            .item("lease_until", n(lease_until))
            // Claims expire a week after the lease (the table's TTL attribute).
            .item("ttl", n(lease_until / 1000 + 7 * 24 * 3600))
            .condition_expression("attribute_not_exists(PK) OR (attribute_not_exists(#r) AND lease_until < :now)")
            .expression_attribute_names("#r", "result")
            .expression_attribute_values(":now", n(now))
            .return_values_on_condition_check_failure(
                aws_sdk_dynamodb::types::ReturnValuesOnConditionCheckFailure::AllOld,
            )
            .send()
            .await;
        let old = match put {
            Ok(_) => return Ok(Claim::Acquired),
            Err(e) => match e.as_service_error() {
                Some(aws_sdk_dynamodb::operation::put_item::PutItemError::ConditionalCheckFailedException(c)) => {
                    c.item().cloned()
                }
                _ => return Err(sdk(&self.table, "PutItem", e)),
            },
        };
        let old = match old {
            Some(item) => Some(item),
            // Endpoints that do not return the old item on a failed condition: read it.
            None => self.get_consistent(format!("CLAIM#{key}"), "CLAIM").await?,
        };
        let stored = match old.as_ref().filter(|i| i.contains_key("result")) {
            Some(i) => Some(self.read_attr(i, "result").await?),
            None => None,
        };
        baton_runtime::messages::Outcome::claim(stored.as_deref())
    }

    async fn finish_claim(&self, key: &str, result: &baton_runtime::messages::StepResult) -> Result<(), StoreError> {
        let body = baton_runtime::messages::Outcome::stored(result)?;
        self.client
            .update_item()
            .table_name(&self.table)
            .key("PK", s(format!("CLAIM#{key}")))
            .key("SK", s("CLAIM"))
            .update_expression("SET #r = :r")
            .expression_attribute_names("#r", "result")
            .expression_attribute_values(":r", self.attr(body).await?)
            .send()
            .await
            .map_err(|e| sdk(&self.table, "UpdateItem", e))?;
        Ok(())
    }

    async fn put_fact(&self, fact: &MemoryFact) -> Result<(), StoreError> {
        self.client
            .put_item()
            .table_name(&self.table)
            .item("PK", s(mem_pk(&fact.entity)))
            .item("SK", s(format!("{FACT_PREFIX}{}", fact.key)))
            .item("entity", s(&fact.entity))
            .item("key", s(&fact.key))
            .item("value", self.attr(to_json(&fact.value)?).await?)
            .item("source", s(&fact.source))
            .item("at", n(fact.at))
            .send()
            .await
            .map_err(|e| sdk(&self.table, "PutItem", e))?;
        Ok(())
    }

    async fn facts(&self, entity: &str) -> Result<Vec<MemoryFact>, StoreError> {
        let items = self.query_prefix(&mem_pk(entity), FACT_PREFIX).await?;
        let mut out = Vec::with_capacity(items.len());
        for item in &items {
            out.push(MemoryFact {
                entity: get_s(item, "entity")?.to_owned(),
                key: get_s(item, "key")?.to_owned(),
                value: from_json(&self.read_attr(item, "value").await?)?,
                source: get_s(item, "source")?.to_owned(),
                at: get_n(item, "at")?,
            });
        }
        Ok(out)
    }

    async fn episodes(&self, entity: &str, limit: usize) -> Result<Vec<Episode>, StoreError> {
        let mut out = Vec::new();
        let mut start = None;
        // A page ends at `limit` items or at 1 MB, whichever comes first: page on until `limit`.
        while out.len() < limit {
            let page = self
                .client
                .query()
                .table_name(&self.table)
                .key_condition_expression("PK = :pk AND begins_with(SK, :p)")
                .expression_attribute_values(":pk", s(mem_pk(entity)))
                .expression_attribute_values(":p", s(EPISODE_PREFIX))
                .scan_index_forward(false)
                .limit((limit - out.len()).min(i32::MAX as usize) as i32)
                .consistent_read(true)
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(|e| sdk(&self.table, "Query", e))?;
            for item in page.items() {
                out.push(episode_of(item)?);
            }
            match page.last_evaluated_key() {
                Some(k) if !k.is_empty() => start = Some(k.clone()),
                _ => break,
            }
        }
        out.truncate(limit);
        Ok(out)
    }

    async fn put_cache(&self, entry: &CacheEntry) -> Result<(), StoreError> {
        self.client
            .put_item()
            .table_name(&self.table)
            .item("PK", s(cache_pk(&entry.key)))
            .item("SK", s("CACHE"))
            .item("value", self.attr(to_json(&entry.value)?).await?)
            .item("at", n(entry.at))
            .item("expires_at", n(entry.expires_at))
            .item("ttl", n((entry.expires_at / 1000).saturating_add(CACHE_GRACE_SECS)))
            .send()
            .await
            .map_err(|e| sdk(&self.table, "PutItem", e))?;
        Ok(())
    }

    async fn get_cache(&self, key: &str) -> Result<Option<CacheEntry>, StoreError> {
        let Some(item) = self.get_consistent(cache_pk(key), "CACHE").await? else { return Ok(None) };
        Ok(Some(CacheEntry {
            key: key.to_owned(),
            value: from_json(&self.read_attr(&item, "value").await?)?,
            at: get_n(&item, "at")?,
            expires_at: get_n(&item, "expires_at")?,
        }))
    }
}
