//! Distributed maps (`items_from`). The step's own node makes two calls to the `items` tool,
//! which the coordinator runs: the first reads the source once and answers batch descriptors
//! (item counts and byte ranges, never the items), the last writes the manifest. Between them
//! each batch is an item node: a `workflow` call whose child run the coordinator starts with the
//! batch's items read from the source, and whose result it writes under `results` before the
//! parent hears of it. So the run's state holds one small descriptor and one small result
//! reference per batch, whatever the number of items.

use serde_json::{Map, Value, json};

use super::context::{node_context, visible_for};
use super::decider::{Decider, End, Rec};
use super::types::*;
use crate::error_kind::ErrorKind;
use crate::ids::NodeKey;
use crate::plan::{ItemsFrom, Plan};

/// The tool that reads item sources and writes batch results and manifests.
pub const ITEMS_TOOL: &str = "items";

/// True when the node is a distributed map's own node (not one of its batches).
pub(super) fn is_map_node(plan: &Plan, node: &Node) -> bool {
    node.index.is_none() && node.role == Role::Dag && plan.steps[node.step].items_from.is_some()
}

/// True when every batch of the map ended and its manifest is the call in flight.
pub(super) fn writing_manifest(items: &Items) -> bool {
    items.closing
}

/// The `items` call of a map's own node: the split while it has no batches, else the manifest.
pub(super) fn map_dispatch(
    plan: &Plan,
    st: &RunState,
    key: &NodeKey,
    node: &Node,
    spec: &ItemsFrom,
) -> Result<(String, Value), StepError> {
    let (source, results) = locations(plan, st, key, node, spec)?;
    let Some(items) = &node.items else {
        let format = spec.format.map(|f| f.as_str());
        let input = json!({"op": "split", "source": source, "format": format, "batch_size": spec.batch_size});
        return Ok((ITEMS_TOOL.to_owned(), input));
    };
    let dir = results_dir(&results, st, key);
    let manifest = manifest(st, key, items, &source, &dir);
    Ok((ITEMS_TOOL.to_owned(), json!({"op": "write", "uri": format!("{dir}manifest.json"), "value": manifest})))
}

/// What a batch's `workflow` call carries besides the step's own `with`: where its items are,
/// and where its result goes. The coordinator reads the first and writes the second.
pub(super) fn batch_link(
    plan: &Plan,
    st: &RunState,
    key: &NodeKey,
    node: &Node,
    spec: &ItemsFrom,
    descriptor: &Value,
    index: u32,
) -> Result<Value, StepError> {
    let parent = key.item_parent().and_then(|p| st.nodes.get(&p).map(|n| (p, n)));
    let Some((parent_key, parent)) = parent else {
        return Err(StepError::new(ErrorKind::Tool, format!("batch `{key}` has no map node")));
    };
    let (source, results) = locations(plan, st, &parent_key, parent, spec)?;
    let described = parent.items.as_ref().and_then(|i| i.source.clone()).unwrap_or(Value::Null);
    let dir = results_dir(&results, st, &parent_key);
    Ok(json!({
        "source": source,
        "format": described.get("format"),
        "header_bytes": described.get("header_bytes"),
        "descriptor": descriptor,
        "index": index,
        "results": format!("{dir}{}", batch_file(index, node.attempt)),
    }))
}

/// The source and results prefix, rendered against what the map's node sees.
fn locations(
    plan: &Plan,
    st: &RunState,
    key: &NodeKey,
    node: &Node,
    spec: &ItemsFrom,
) -> Result<(String, String), StepError> {
    let visible = visible_for(plan, st, key);
    let mut refs = spec.source.refs();
    refs.merge(&spec.results.refs());
    let ctx = node_context(plan, st, node.iteration, None, Some(&refs), visible);
    let text = |t: &crate::expr::Template, field: &str| match t.render(&ctx) {
        Ok(Value::String(s)) if !s.trim().is_empty() => Ok(s),
        Ok(other) => Err(StepError::new(
            ErrorKind::Expression,
            format!("`items_from.{field}` must give a URI or a path, got {other}"),
        )),
        Err(e) => Err(StepError::new(ErrorKind::Expression, format!("`items_from.{field}`: {e}"))),
    };
    Ok((text(&spec.source, "source")?, text(&spec.results, "results")?))
}

/// `<results><run id>/<map node>/`: one run's map never overwrites another's, nor one loop
/// iteration's (`score#2`) another's.
fn results_dir(results: &str, st: &RunState, map: &NodeKey) -> String {
    let sep = if results.ends_with('/') { "" } else { "/" };
    format!("{results}{sep}{}/{map}/", st.run_id)
}

/// The file a batch's result is written to; a later attempt writes its own, so a child of an
/// earlier attempt that ends late cannot overwrite it.
fn batch_file(index: u32, attempt: u32) -> String {
    if attempt <= 1 { format!("batch-{index:06}.json") } else { format!("batch-{index:06}-attempt-{attempt}.json") }
}

/// Items in the batch a descriptor names.
fn batch_count(descriptor: &Value) -> u64 {
    descriptor.get("count").and_then(Value::as_u64).unwrap_or(0)
}

/// Items in the source, as its reader counted them.
fn item_total(items: &Items) -> u64 {
    items.source.as_ref().and_then(|s| s.get("count")).and_then(Value::as_u64).unwrap_or(0)
}

/// Items in the map's succeeded batches and in its failed ones: what the tolerance, the
/// manifest and the step's output count.
fn counts(st: &RunState, key: &NodeKey, items: &Items) -> (u64, u64) {
    let (mut ok, mut failed) = (0, 0);
    for (i, d) in items.values.iter().enumerate() {
        match st.nodes.get(&key.item(i as u32)).map(|n| n.status()) {
            Some(NodeStatus::Succeeded) => ok += batch_count(d),
            Some(NodeStatus::Failed) => failed += batch_count(d),
            _ => {}
        }
    }
    (ok, failed)
}

/// What became of each batch: its items, how it ended, where its result is.
fn manifest(st: &RunState, key: &NodeKey, items: &Items, source: &str, dir: &str) -> Value {
    let (succeeded, failed) = counts(st, key, items);
    let batches: Vec<Value> = items
        .values
        .iter()
        .enumerate()
        .map(|(i, d)| {
            let node = st.nodes.get(&key.item(i as u32));
            let count = batch_count(d);
            let mut entry = Map::new();
            entry.insert("index".into(), json!(i));
            entry.insert("first".into(), d.get("first").cloned().unwrap_or(Value::Null));
            entry.insert("count".into(), json!(count));
            match node.map(|n| (n.status(), n.output(), n.error())) {
                Some((NodeStatus::Succeeded, out, _)) => {
                    entry.insert("status".into(), json!("succeeded"));
                    entry.insert("results".into(), out.and_then(|o| o.get("results")).cloned().unwrap_or(Value::Null));
                }
                Some((status, _, error)) => {
                    entry.insert("status".into(), json!(status.as_str()));
                    entry.insert("error".into(), json!(error));
                }
                None => {
                    entry.insert("status".into(), json!("not_run"));
                }
            }
            Value::Object(entry)
        })
        .collect();
    json!({
        "run_id": st.run_id, "step": key.as_str(), "source": source, "results": dir,
        "items": item_total(items), "succeeded": succeeded, "failed": failed, "batches": batches,
    })
}

impl Decider<'_> {
    /// A result of a map node's own call: the split (the batches start) or the manifest (the
    /// step succeeds). False when `key` is not a map node.
    pub(super) fn map_call_succeeded(&mut self, key: &NodeKey, output: &Value) -> bool {
        let Some(node) = self.st.nodes.get(key) else { return false };
        if !is_map_node(self.plan, node) {
            return false;
        }
        let Some(items) = &node.items else {
            self.split_arrived(key, output);
            return true;
        };
        let (succeeded, failed) = counts(self.st, key, items);
        let (total, batches) = (item_total(items), items.values.len());
        let manifest = output.get("uri").cloned().unwrap_or(Value::Null);
        let results = manifest.as_str().and_then(|m| m.strip_suffix("manifest.json")).map(str::to_owned);
        let out = json!({
            "manifest": manifest, "results": results, "items": total,
            "succeeded": succeeded, "failed": failed, "batches": batches,
        });
        let why =
            format!("all {batches} batches ended ({succeeded} items succeeded, {failed} failed); manifest written");
        self.succeed(key, out, &why, json!({"manifest": manifest}));
        true
    }

    /// The reader's batches: kept as the map's items, then as many start as may run at once.
    fn split_arrived(&mut self, key: &NodeKey, output: &Value) {
        let batches = match output.get("batches") {
            Some(Value::Array(b)) if b.iter().all(|d| d.get("count").and_then(Value::as_u64).is_some()) => b.clone(),
            _ => {
                let e = StepError::new(ErrorKind::Tool, "the item source's reader answered no `batches` list");
                return self.attempt_failed(key, e);
            }
        };
        let count = output.get("count").cloned().unwrap_or(json!(0));
        let mut source = Map::new();
        for field in ["count", "format", "header_bytes"] {
            if let Some(v) = output.get(field).filter(|v| !v.is_null()) {
                source.insert(field.into(), v.clone());
            }
        }
        if self.st.phase != Phase::Active {
            // The run is stopping: no batch starts, and the map ends with the run.
            let cancels = self.end_node(key, End::Cancelled);
            self.record(Rec::new("cancel_step", "the run is stopping: the map starts no batch").node(key), cancels);
            return;
        }
        let n = batches.len();
        let size =
            self.st.nodes.get(key).and_then(|n| self.plan.steps[n.step].items_from.as_ref()).map(|s| s.batch_size);
        if let Some(node) = self.st.nodes.get_mut(key) {
            node.items = Some(Items {
                values: batches,
                started: 0,
                done: 0,
                source: Some(Value::Object(source)),
                closing: false,
                limit: None,
            });
        }
        // The split's limit is over; each batch's call carries its own.
        let cancels = self.clear_timers(key);
        self.record(
            Rec::new("fan_out", format!("the source holds {count} items: {n} batches of up to {}", size.unwrap_or(0)))
                .node(key)
                .values(json!({"count": count, "batches": n})),
            cancels,
        );
        if n == 0 {
            self.write_manifest(key);
        } else {
            self.fill_items(key);
        }
    }

    /// Every batch ended: the map node's last call writes the manifest. Its attempts are
    /// counted afresh, so the split's retries do not use up the manifest's.
    pub(super) fn write_manifest(&mut self, key: &NodeKey) {
        let Some(node) = self.st.nodes.get_mut(key) else { return };
        let current = node.attempt;
        if let Some(items) = node.items.as_mut() {
            items.closing = true;
        }
        self.st.attempt_base.insert(key.clone(), current);
        self.st.retried.remove(key);
        self.start_attempt(key, current + 1);
    }

    /// A batch failed for good: within the step's tolerance the map goes on (the batch counts
    /// as ended), past it the map fails with `tolerance_exceeded`. False when `parent` is not
    /// a map node.
    pub(super) fn map_batch_failed(&mut self, parent: &NodeKey, index: u32, error: &StepError) -> bool {
        let Some(node) = self.st.nodes.get(parent) else { return false };
        if !is_map_node(self.plan, node) {
            return false;
        }
        let (Some(spec), Some(items)) = (&self.plan.steps[node.step].items_from, &node.items) else { return false };
        let total = item_total(items);
        let (_, failed) = counts(self.st, parent, items);
        let by_count = spec.tolerated_failures.unwrap_or(0);
        let by_share = spec.tolerated_failure_percent.map(|p| (p / 100.0 * total as f64).floor() as u64).unwrap_or(0);
        let tolerated = by_count.max(by_share);
        if failed > tolerated {
            let msg = format!(
                "{failed} of {total} items failed, more than the {tolerated} tolerated; batch {index} failed with `{}`: {}",
                error.kind, error.message
            );
            self.attempt_exhausted(parent, StepError::new(ErrorKind::ToleranceExceeded, msg));
            return true;
        }
        self.record(
            Rec::new(
                "tolerate",
                format!("batch {index} failed ({failed} of {total} items failed so far, {tolerated} tolerated); the map goes on"),
            )
            .node(&parent.item(index))
            .values(json!({"failed_items": failed, "tolerated": tolerated, "error": error})),
            vec![],
        );
        self.item_ended(parent);
        true
    }
}
