//! What users see of a run: the `--json` object of `run`, `runs show`, `resume`, `approve`.

use baton_core::Plan;
use baton_core::engine::{NodeStatus, RunState, RunStatus};
use baton_core::plan::{Scope, StepKind};
use serde_json::{Map, Value, json};

/// The status word of the JSON contract: a run that has not ended is `waiting` (for a person, an
/// event, a timer, or a `resume` after it was detached).
pub fn status_word(status: RunStatus) -> &'static str {
    match status {
        RunStatus::Running => "waiting",
        RunStatus::Succeeded => "succeeded",
        RunStatus::Failed => "failed",
        RunStatus::Cancelled => "cancelled",
    }
}

/// `{"run_id", "status", "output", "steps": {<id>: {"status", "attempts", "output", "error"}}}`.
/// Steps that never started are absent. Loop body steps report their last iteration; a
/// for_each step reports its items' attempts summed.
pub fn run_json(plan: &Plan, state: &RunState) -> Value {
    let mut steps = Map::new();
    for (ix, step) in plan.steps.iter().enumerate() {
        let node = match step.scope {
            Scope::Top => state.nodes.get(step.id.as_str()),
            Scope::Body(l) => {
                let iteration = state.nodes.get(plan.steps[l].id.as_str()).map(|n| n.loop_iteration).unwrap_or(0);
                (1..=iteration).rev().find_map(|i| state.nodes.get(&baton_core::engine::node_key(&step.id, i, None)))
            }
            // A role step may run many times (an agent's tool, calls in turns): show the latest.
            Scope::Role => state
                .nodes
                .iter()
                .filter(|(k, _)| k.starts_with(&format!("{}~", step.id)))
                .max_by_key(|(_, n)| (n.started_at, n.end_order().unwrap_or(u64::MAX)))
                .map(|(_, n)| n),
        };
        let Some(node) = node else { continue };
        let attempts = if node.items.is_some() {
            let prefix = format!("{}[", step.id);
            state
                .nodes
                .range(baton_core::ids::NodeKey::new(&prefix)..)
                .take_while(|(k, _)| k.starts_with(&prefix))
                .map(|(_, n)| n.attempt)
                .sum::<u32>()
        } else if matches!(plan.steps[ix].kind, StepKind::Loop { .. }) {
            node.loop_iteration
        } else {
            node.attempt
        };
        let error = match (node.error(), node.status()) {
            (Some(e), NodeStatus::Failed | NodeStatus::FellBack | NodeStatus::RetryScheduled) => {
                json!({"kind": e.kind, "message": e.message})
            }
            _ => Value::Null,
        };
        steps.insert(
            step.id.clone(),
            json!({
                "status": node.status().as_str(),
                "attempts": attempts,
                "output": node.output().cloned().unwrap_or(Value::Null),
                "error": error,
            }),
        );
    }
    json!({
        "run_id": state.run_id,
        "status": status_word(state.status),
        "output": state.output.clone().unwrap_or(Value::Null),
        "error": state.error,
        "steps": steps,
    })
}
