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
/// for_each step reports its items' attempts summed, and `items`: `{"total", <status>: count}`
/// over its items (`{"total": 3, "succeeded": 2, "failed": 1}`), items not yet started counted
/// as `pending`. A step that served a kept response (`fallback: cache`) has `stale`:
/// `{cached_at, age_ms}`. A paused run has `paused`: `{at, by, reason}`.
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
        let mut items = Value::Null;
        let attempts = if let Some(all) = &node.items {
            let prefix = format!("{}[", step.id);
            let of_items: Vec<_> = state
                .nodes
                .range(baton_core::ids::NodeKey::new(&prefix)..)
                .take_while(|(k, _)| k.starts_with(&prefix))
                .map(|(_, n)| n)
                .collect();
            let mut counts = Map::new();
            counts.insert("total".into(), json!(all.values.len()));
            let pending = all.values.len().saturating_sub(of_items.len());
            if pending > 0 {
                counts.insert("pending".into(), json!(pending));
            }
            for n in &of_items {
                let c = counts.entry(n.status().as_str()).or_insert(json!(0));
                *c = json!(c.as_u64().unwrap_or(0) + 1);
            }
            items = Value::Object(counts);
            of_items.iter().map(|n| n.attempt).sum::<u32>()
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
        let mut shown = json!({
            "status": node.status().as_str(),
            "attempts": attempts,
            "output": node.output().cloned().unwrap_or(Value::Null),
            "error": error,
        });
        if !items.is_null() {
            shown["items"] = items;
        }
        if let Some(stale) = node.stale() {
            shown["stale"] = stale.clone();
        }
        steps.insert(step.id.clone(), shown);
    }
    let mut run = json!({
        "run_id": state.run_id,
        "status": status_word(state.status),
        "output": state.output.clone().unwrap_or(Value::Null),
        "error": state.error,
        "steps": steps,
    });
    // Only a paused run carries `paused` (it is still `waiting`: for its unpause).
    if let Some(p) = &state.paused {
        run["paused"] = json!({"at": p.at, "by": p.by, "reason": p.reason});
    }
    run
}
