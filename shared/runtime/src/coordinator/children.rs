//! Sub-workflows (`tool: workflow`): a step starts a child run linked to it, the child's end is
//! the step's result, and a parent that stops cancels its children. The same rules serve both
//! backends; only the delivery differs (in-process, or messages through the outbox).

use std::collections::BTreeSet;

use baton_core::Plan;
use baton_core::engine::{Dispatch, EventKind, NodeStatus, ParentLink, Phase, RunState, RunStatus, StepError};
use baton_core::ids::RunId;
use baton_core::plan::StepKind;
use serde_json::Value;

use crate::messages::derived_run_id;

/// The tool whose calls start child runs (`tool: workflow`).
pub const WORKFLOW_TOOL: &str = "workflow";

/// What a `workflow` step asks for, read from its resolved arguments.
#[derive(Debug, Clone, PartialEq)]
pub struct ChildRequest {
    /// The published workflow to start; `None` continues as the run's own definition.
    pub name: Option<String>,
    /// The child's input.
    pub input: Value,
    /// The run ends and hands its parent link to the new run.
    pub continue_as_new: bool,
    /// The new run's id, derived from the step attempt's idempotency key, so starting it again
    /// after a crash or a redelivery finds it instead of starting a second one.
    pub run_id: RunId,
    /// A distributed map's batch: where its items are and where its result goes.
    pub batch: Option<Value>,
}

impl ChildRequest {
    /// Reads a `workflow` dispatch.
    pub fn from_dispatch(d: &Dispatch) -> Result<Self, StepError> {
        let name = match d.input.get("name") {
            Some(Value::String(n)) if !n.trim().is_empty() => Some(n.trim().to_owned()),
            None | Some(Value::Null) => None,
            Some(other) => {
                return Err(StepError::new("tool", format!("`with.name` must be a workflow name, not {other}")));
            }
        };
        let continue_as_new = d.input.get("continue_as_new") == Some(&Value::Bool(true));
        if name.is_none() && !continue_as_new {
            return Err(StepError::new("tool", "`with.name` is empty: it names the workflow the child run starts"));
        }
        let mut input = d.input.get("input").cloned().unwrap_or_else(|| Value::Object(Default::default()));
        let batch = d.input.get("batch").filter(|b| b.is_object()).cloned();
        if let Some(b) = &batch {
            // A batch's child gets its items (read as it starts) and its place in the map
            // beside the step's own input fields.
            let Value::Object(fields) = &mut input else {
                return Err(StepError::new(
                    "tool",
                    "with `items_from`, `with.input` must be an object: the child run gets `items` and `batch` beside its fields",
                ));
            };
            if let Some(taken) = ["items", "batch"].into_iter().find(|k| fields.contains_key(*k)) {
                return Err(StepError::new(
                    "tool",
                    format!(
                        "with `items_from`, `with.input` cannot have `{taken}`: the child run gets the batch's `items` and `batch`"
                    ),
                ));
            }
            // Filled with the batch's items as the child starts (see `batches`).
            fields.insert("items".into(), Value::Null);
            let d = &b["descriptor"];
            fields.insert(
                "batch".into(),
                serde_json::json!({"index": b["index"], "first": d["first"], "count": d["count"]}),
            );
        }
        Ok(Self { name, input, continue_as_new, run_id: run_id_for(&d.idempotency_key, continue_as_new), batch })
    }

    /// The link the new run carries: to this step for a child, the run's own link for a
    /// successor (so the parent hears from the last run of the chain).
    pub fn link(&self, d: &Dispatch, run_id: &RunId, state: &RunState) -> Option<ParentLink> {
        if self.continue_as_new {
            state.parent.clone()
        } else {
            Some(ParentLink {
                run_id: run_id.clone(),
                node: d.node.clone(),
                attempt: d.attempt,
                batch: self.batch.clone(),
            })
        }
    }
}

/// The id of the run a `workflow` call with this idempotency key starts: `c-…` for a child,
/// `n-…` for a successor.
fn run_id_for(idempotency_key: &str, continue_as_new: bool) -> RunId {
    derived_run_id(if continue_as_new { "n" } else { "c" }, idempotency_key)
}

/// The step result a `continue_as_new` step gets at once: the id of the run that goes on.
pub fn continued_output(successor: &RunId) -> Value {
    serde_json::json!({ "continued_as": successor })
}

/// True when the run handed its parent link on (a `continue_as_new` step succeeded).
pub fn continued(plan: &Plan, state: &RunState) -> bool {
    state.nodes.values().any(|n| n.status() == NodeStatus::Succeeded && plan.continues.contains(&n.step))
}

/// The event that tells an ended child's parent how it went, with the parent's id; `None`
/// while the run goes on, for a run without a parent, and for one that continued as new.
pub fn result_for_parent(plan: &Plan, state: &RunState) -> Option<(RunId, EventKind)> {
    let link = state.parent.as_ref()?;
    if !state.status.is_terminal() || continued(plan, state) {
        return None;
    }
    let (node, attempt) = (link.node.clone(), link.attempt);
    let kind = match state.status {
        RunStatus::Succeeded => EventKind::StepSucceeded {
            node,
            attempt,
            output: state.output.clone().unwrap_or(Value::Null),
            mocked: false,
            report: Some(serde_json::json!({ "child_run": state.run_id, "workflow": state.workflow })),
        },
        status => {
            let why =
                state
                    .error
                    .as_ref()
                    .map(|e| {
                        if e.kind == status.as_str() { e.message.clone() } else { format!("{}: {}", e.kind, e.message) }
                    })
                    .unwrap_or_default();
            EventKind::StepFailed {
                node,
                attempt,
                error: StepError::new(
                    "child_failed",
                    format!("child run `{}` of `{}` {}: {why}", state.run_id, state.workflow, status.as_str()),
                ),
                mocked: false,
                report: Some(serde_json::json!({ "child_run": state.run_id, "workflow": state.workflow })),
            }
        }
    };
    Some((link.run_id.clone(), kind))
}

/// Child runs the run is waiting on: one per running `workflow` node (successors are not
/// waited on), none once the run stops (a stopping parent no longer wants them). Read from the
/// state alone, since it runs before every decision: no arguments are rendered.
pub fn live_children(plan: &Plan, state: &RunState) -> BTreeSet<RunId> {
    if state.phase != Phase::Active || state.status.is_terminal() {
        return BTreeSet::new();
    }
    waiting_on(plan, state).collect()
}

/// The child runs of `state`'s running `workflow` nodes, whatever the run's phase.
pub fn waiting_on<'a>(plan: &'a Plan, state: &'a RunState) -> impl Iterator<Item = RunId> + 'a {
    state.open.iter().filter_map(move |key| {
        let n = state.nodes.get(key)?;
        let step = &plan.steps[n.step];
        // A distributed map's own node reads and writes; its batches are the children.
        let is_child = n.status() == NodeStatus::Running
            && !plan.continues.contains(&n.step)
            && (n.index.is_some() || step.items_from.is_none())
            && matches!(&step.kind, StepKind::Tool { tool, .. } if tool == "workflow");
        is_child.then(|| run_id_for(&baton_core::engine::idempotency_key(&state.run_id, n, &step.id, key), false))
    })
}

/// The children to cancel after a decision: those the run waited on before and no longer does
/// (it stopped, or the step's attempt timed out). A child whose result just arrived has ended,
/// and cancelling an ended run changes nothing.
pub fn children_to_cancel(before: &BTreeSet<RunId>, plan: &Plan, after: &RunState) -> Vec<RunId> {
    let still = live_children(plan, after);
    before.difference(&still).cloned().collect()
}

/// Why a child is cancelled, for its audit log.
pub fn cancel_reason(parent: &RunId) -> String {
    format!("the parent run `{parent}` no longer waits for this run")
}
