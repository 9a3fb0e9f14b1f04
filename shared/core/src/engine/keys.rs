//! Names the engine gives what it creates: node keys, task and wait ids, idempotency keys.
//! Kept apart so every other engine module can name nodes without importing the engine's root.

use super::types::{Node, Role};
use crate::ids::{NodeKey, RunId, TaskId};

/// Key of a node: `step`, `step#iteration` in loop bodies, `...[index]` for for_each items, and
/// `role_step~node` for fallback and compensation runs, and for an agent's turns
/// (`agent~node.<attempt>.<turn>`) and tool calls (`agent.tool~node.<attempt>.<turn>.<n>`).
pub fn node_key(step: &str, iteration: u32, index: Option<u32>) -> NodeKey {
    let k = NodeKey::new(if iteration > 0 { format!("{step}#{iteration}") } else { step.to_owned() });
    match index {
        Some(i) => k.item(i),
        None => k,
    }
}

/// Key of a node that step `step` runs for another node (`of`: the node it stands in for or
/// undoes, or an agent's node with the attempt, turn and call after it): `step~of`.
pub fn role_key(step: &str, of: impl std::fmt::Display) -> NodeKey {
    NodeKey::new(format!("{step}~{of}"))
}

/// Id of the task a human node opens for `attempt`: short, stable, derived from run and node.
pub fn task_id(run_id: &RunId, node: &str, attempt: u32) -> TaskId {
    TaskId::new(format!("t-{}", attempt_hash(run_id, node, attempt)))
}

/// Event wait id of attempt `attempt` of `node` (`w-` and the same hash as its task id would be).
pub fn wait_id(run_id: &RunId, node: &str, attempt: u32) -> TaskId {
    TaskId::new(format!("w-{}", attempt_hash(run_id, node, attempt)))
}

fn attempt_hash(run_id: &RunId, node: &str, attempt: u32) -> String {
    let h = crate::canonical::sha256_hex_bytes(format!("{run_id}/{node}/{attempt}").as_bytes());
    h[..12].to_owned()
}

/// `run/step/iteration/attempt` (the step part names the item for for_each nodes).
pub fn idempotency_key(run_id: &RunId, node: &Node, plan_step_id: &str, key: &NodeKey) -> String {
    let step_part = match (node.index, &node.role) {
        (_, Role::Fallback(_) | Role::Compensation(_) | Role::Agent(_)) => key.to_string(),
        (Some(i), _) => format!("{plan_step_id}[{i}]"),
        (None, _) => plan_step_id.to_owned(),
    };
    format!("{run_id}/{step_part}/{}/{}", node.iteration, node.attempt)
}
