//! A distributed map's batches (`items_from`) at the two ends of their child runs: a batch's
//! items are read from the source as its child starts, and its result is written under the
//! map's `results` as it ends, so only a reference reaches the parent's state. Both go through
//! the `items` tool, run here in the coordinator; both are idempotent (the same range read, the
//! same object written), so a start or an end decided again after a crash repeats them safely.

use baton_core::engine::{EventKind, ITEMS_TOOL, ParentLink, RunState, StepError};
use baton_core::ids::RunId;
use serde_json::{Value, json};

use super::Coordinator;
use crate::error::RuntimeError;
use crate::ports::ToolCall;

impl Coordinator {
    /// The child's input with its batch's items, when the run is a batch of a map started by its
    /// parent (`items: null` waiting for them; a successor that continued as new brings its own
    /// input). A read that fails for a child that exists already (a redelivered start) is that
    /// child's start, not a failure.
    pub(super) async fn with_batch_items(
        &self,
        mut input: Value,
        parent: Option<&ParentLink>,
        run_id: Option<&RunId>,
    ) -> Result<Value, RuntimeError> {
        let Some((link, batch)) = parent.and_then(|p| p.batch.as_ref().map(|b| (p, b))) else {
            return Ok(input);
        };
        if input.get("items") != Some(&Value::Null) {
            return Ok(input);
        }
        let read = json!({
            "op": "read", "source": batch["source"], "format": batch["format"],
            "header_bytes": batch["header_bytes"], "batch": batch["descriptor"],
        });
        let index = &batch["index"];
        let out = match self.items_call(link, "read", read).await {
            Ok(out) => out,
            Err(e) => {
                if let Some(id) = run_id
                    && self.store.load_run(id).await?.is_some()
                {
                    return Err(crate::error::StoreError::Conflict { run_id: id.clone(), expected: 0 }.into());
                }
                let why = format!("cannot read batch {index} of {}: {} ({})", batch["source"], e.message, e.kind);
                return Err(RuntimeError::Batch(why));
            }
        };
        let items = out.get("items").cloned().unwrap_or(Value::Array(vec![]));
        if let Value::Object(fields) = &mut input {
            fields.insert("items".into(), items);
        }
        Ok(input)
    }

    /// What an ended child tells its parent; a batch's output is first written to its results
    /// file and the parent gets `{results, items}` instead.
    pub(super) async fn parent_result(&self, plan: &baton_core::Plan, state: &RunState) -> Option<(RunId, EventKind)> {
        let (parent, kind) = super::children::result_for_parent(plan, state)?;
        let Some((link, batch)) = state.parent.as_ref().and_then(|p| p.batch.as_ref().map(|b| (p, b))) else {
            return Some((parent, kind));
        };
        let EventKind::StepSucceeded { node, attempt, output, mocked, report } = kind else {
            return Some((parent, kind));
        };
        let uri = batch["results"].clone();
        let write = json!({"op": "write", "uri": uri, "value": output});
        let kind = match self.items_call(link, "write", write).await {
            Ok(_) => EventKind::StepSucceeded {
                node,
                attempt,
                output: json!({"results": uri, "items": batch["descriptor"]["count"], "child_run": state.run_id}),
                mocked,
                report,
            },
            Err(e) => EventKind::StepFailed {
                node,
                attempt,
                error: StepError { message: format!("cannot write the batch's result to {uri}: {}", e.message), ..e },
                mocked,
                report,
            },
        };
        Some((parent, kind))
    }

    /// One call of the `items` tool on behalf of a batch.
    async fn items_call(&self, link: &ParentLink, op: &str, input: Value) -> Result<Value, StepError> {
        let tool = self.tools.get(ITEMS_TOOL).ok_or_else(|| {
            StepError::new("tool", "this deployment has no `items` tool to read item sources and write results")
        })?;
        let call = ToolCall {
            run_id: link.run_id.clone(),
            node: link.node.clone(),
            step: String::new(),
            attempt: link.attempt,
            tool: ITEMS_TOOL.to_owned(),
            input,
            idempotency_key: format!("{}/{}/{}/{op}", link.run_id, link.node, link.attempt),
            timeout_ms: None,
            usage: Default::default(),
        };
        tool.call(&call).await
    }
}
