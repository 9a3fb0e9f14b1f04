//! Sealed sensitive fields on DynamoDB, and their erasure.
//!
//! The fields a commit seals for the first time are one item, `SEALED#<first record's seq>`,
//! written in the commit's transaction (one item whatever their number, so a commit never runs
//! out of its 100 items). An erasure rewrites the run's items that hold a copy of a value
//! (header, journal, lifecycle events, outbox, its tasks), then the sealed items: a crash in
//! between leaves the field unerased, and running the erasure again finishes it.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::AttributeValue;
use baton_core::audit::seal::{SealedField, scrub_text};
use baton_core::engine::{RunState, task_id, wait_id};
use baton_core::ids::RunId;
use baton_runtime::StoreError;
use baton_runtime::ports::Transition;
use serde_json::Value;

use super::{DynamoStore, sdk};
use crate::items::*;

/// Attributes never holding run data: keys and index keys.
const KEYS: &[&str] = &["PK", "SK", "GSI1PK", "GSI1SK", "GSI2PK", "GSI2SK"];

impl DynamoStore {
    /// The item holding the fields `t` seals first, or `None` when it seals none.
    pub(super) fn sealed_item(&self, t: &Transition) -> Result<Option<Item>, StoreError> {
        let (Some(first), false) = (t.audit.first(), t.sealed.is_empty()) else { return Ok(None) };
        let mut item = Item::new();
        item.insert("PK".into(), s(run_pk(&t.header.id)));
        item.insert("SK".into(), s(seq_key("SEALED", first.seq)));
        item.insert("body".into(), s(to_json(&t.sealed)?));
        Ok(Some(item))
    }

    /// Every sealed field of run `id`, by name.
    pub(super) async fn sealed_fields(&self, id: &RunId) -> Result<Vec<(Item, Vec<SealedField>)>, StoreError> {
        let items = self.query_prefix(&run_pk(id), "SEALED#").await?;
        items.into_iter().map(|i| Ok((i.clone(), from_json(get_s(&i, "body")?)?))).collect()
    }

    /// Erases `fields` of run `id` (see `RunStore::erase_sealed`).
    pub(super) async fn erase_fields(
        &self,
        id: &RunId,
        fields: &[String],
        at: u64,
        reason: &str,
    ) -> Result<Vec<String>, StoreError> {
        let stored = self.sealed_fields(id).await?;
        let values: Vec<(String, Value)> = stored
            .iter()
            .flat_map(|(_, fs)| fs.iter())
            .filter(|f| fields.contains(&f.field) && !f.is_erased())
            .filter_map(|f| f.value.clone().map(|v| (f.field.clone(), v)))
            .collect();
        if values.is_empty() {
            return Ok(Vec::new());
        }
        let whole_run = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("PK = :pk")
            .expression_attribute_values(":pk", s(run_pk(id)))
            .consistent_read(true);
        let mut copies = self.all_pages(whole_run, None).await?;
        copies.retain(|i| {
            let sk = opt_s(i, "SK").unwrap_or_default();
            !(sk.starts_with("AUDIT#") || sk.starts_with("DIGEST#") || sk.starts_with("SEALED#"))
        });
        let (tasks, entity) = self.related_keys(id, &copies).await?;
        for task in tasks {
            if let Some(item) = self.get_consistent(format!("TASK#{task}"), "TASK").await? {
                copies.push(item);
            }
        }
        // The entity's facts and episode this run wrote (a fact's source is `<run id>/<step>`).
        if let Some(entity) = entity {
            let mine = format!("{id}/");
            let mut memory = self.query_prefix(&mem_pk(&entity), FACT_PREFIX).await?;
            memory.extend(self.query_prefix(&mem_pk(&entity), EPISODE_PREFIX).await?);
            for item in memory {
                let source = opt_s(&item, "source").unwrap_or_default();
                if source.starts_with(&mine) || opt_s(&item, "run_id").as_deref() == Some(id.as_str()) {
                    copies.push(item);
                }
            }
        }
        for item in &copies {
            self.scrub_item(item, &values).await?;
        }
        let mut erased = Vec::new();
        for (item, mut fs) in stored {
            let mut changed = false;
            for f in fs.iter_mut().filter(|f| fields.contains(&f.field) && !f.is_erased()) {
                (f.value, f.salt, f.erased_at, f.reason) = (None, None, Some(at), Some(reason.to_owned()));
                erased.push(f.field.clone());
                changed = true;
            }
            if changed {
                self.set_attr(&item, "body", s(to_json(&fs)?)).await?;
            }
        }
        erased.sort();
        Ok(erased)
    }

    /// The ids of every task and event wait the run opened (derived from its nodes' attempts,
    /// since closed tasks are no longer listed in the state), and the entity its memory is of.
    async fn related_keys(&self, id: &RunId, items: &[Item]) -> Result<(Vec<String>, Option<String>), StoreError> {
        let Some(header) = items.iter().find(|i| opt_s(i, "SK").as_deref() == Some("RUN")) else {
            return Ok((vec![], None));
        };
        let state: RunState = from_json(&self.read_attr(header, "state").await?)?;
        let entity = state.memory.as_ref().and_then(|m| m.get("entity")).and_then(Value::as_str).map(str::to_owned);
        let mut out = Vec::new();
        for (key, node) in &state.nodes {
            for attempt in 1..=node.attempt.max(1) {
                out.push(task_id(id, key.as_str(), attempt).to_string());
                out.push(wait_id(id, key.as_str(), attempt).to_string());
            }
        }
        Ok((out, entity))
    }

    /// Rewrites the attributes of `item` that hold one of `values` (and, in the run's header,
    /// drops the salt secret), deleting an S3 copy the old text was kept in.
    async fn scrub_item(&self, item: &Item, values: &[(String, Value)]) -> Result<(), StoreError> {
        let mut updates: HashMap<String, AttributeValue> = HashMap::new();
        for (name, attr) in item {
            if KEYS.contains(&name.as_str()) || !matches!(attr, AttributeValue::S(_) | AttributeValue::B(_)) {
                continue;
            }
            let raw = get_payload(item, name)?;
            let text = self.read_attr(item, name).await?;
            let mut new = scrub_text(&text, true, values);
            // The run's header also loses its salt secret (see `RunStore::erase_sealed`).
            if name == "state" && opt_s(item, "SK").as_deref() == Some("RUN") {
                let mut state: Value = from_json(new.as_deref().unwrap_or(&text))?;
                if let Some(seals) = state.get_mut("seals").and_then(Value::as_object_mut)
                    && seals.remove("salt").is_some()
                {
                    new = Some(state.to_string());
                }
            }
            let Some(new) = new else { continue };
            updates.insert(name.clone(), self.attr(new).await?);
            self.discard_copy(&raw).await?;
        }
        for (name, value) in updates {
            self.set_attr(item, &name, value).await?;
        }
        Ok(())
    }

    /// Deletes the S3 object a claim-check reference names (nothing for inline text).
    async fn discard_copy(&self, raw: &str) -> Result<(), StoreError> {
        match (&self.claims, crate::claim_check::reference(raw)) {
            (Some(c), Some(_)) => c.discard(raw).await,
            _ => Ok(()),
        }
    }

    async fn set_attr(&self, item: &Item, name: &str, value: AttributeValue) -> Result<(), StoreError> {
        let (Some(pk), Some(sk)) = (item.get("PK").cloned(), item.get("SK").cloned()) else {
            return Err(StoreError::Corrupt("an item without its key".into()));
        };
        self.client
            .update_item()
            .table_name(&self.table)
            .key("PK", pk)
            .key("SK", sk)
            .update_expression("SET #a = :v")
            .expression_attribute_names("#a", name)
            .expression_attribute_values(":v", value)
            .send()
            .await
            .map_err(|e| sdk(&self.table, "UpdateItem", e))?;
        Ok(())
    }
}
