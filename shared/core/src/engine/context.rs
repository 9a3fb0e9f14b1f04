//! The expression context a node sees: `.input`, `.steps.<id>.{output,status}`, `.run`, `.item`,
//! `.index`, `.iteration`. Only the steps an expression reads are copied in.

use serde_json::{Map, Value, json};

use super::keys::node_key;
use super::types::{Node, Role, RunState};
use crate::expr::StepRefs;
use crate::ids::NodeKey;
use crate::plan::{Plan, Scope};

/// Which steps an expression may see.
#[derive(Debug, Clone, Copy)]
pub enum Visible<'a> {
    /// Every step (run output, loop `until`, fallback and compensation steps).
    All,
    /// Only these steps: the upstream of the evaluating step, which cannot change any more.
    Only(&'a [usize]),
}

/// The `for_each` item of the node on `key` and its index, when the node is one.
pub(super) fn item_of<'s>(st: &'s RunState, key: &NodeKey) -> Option<(&'s Value, u32)> {
    let i = st.nodes.get(key)?.index?;
    let items = st.nodes.get(&key.item_parent()?)?.items.as_ref()?;
    items.values.get(i as usize).map(|v| (v, i))
}

/// Builds the context for an expression evaluated by a node at `iteration` (0 outside loops),
/// with an optional for_each item. `refs` limits which steps are copied (None: every visible one).
pub fn node_context(
    plan: &Plan,
    state: &RunState,
    iteration: u32,
    item: Option<(&Value, u32)>,
    refs: Option<&StepRefs>,
    visible: Visible<'_>,
) -> Value {
    let mut steps = Map::new();
    let mut add = |id: &str| {
        let Some(&ix) = plan.index.get(id) else {
            return;
        };
        let key = match plan.steps[ix].scope {
            Scope::Body(_) if iteration > 0 => node_key(id, iteration, None),
            _ => NodeKey::new(id),
        };
        if let Some(n) = state.nodes.get(&key) {
            let mut entry = Map::new();
            entry.insert("output".into(), n.output().cloned().unwrap_or(Value::Null));
            entry.insert("status".into(), Value::String(n.status().as_str().into()));
            if let Some(e) = n.error() {
                entry.insert("error".into(), json!({"kind": e.kind, "message": e.message}));
            }
            if let Some(s) = n.stale() {
                entry.insert("stale".into(), s.clone());
            }
            steps.insert(id.to_owned(), Value::Object(entry));
        }
    };
    match (refs, visible) {
        (Some(r), _) if !r.dynamic => r.steps().for_each(&mut add),
        (_, Visible::All) => plan.steps.iter().for_each(|s| add(&s.id)),
        (_, Visible::Only(ixs)) => ixs.iter().for_each(|&i| add(&plan.steps[i].id)),
    }
    let mut ctx = Map::new();
    ctx.insert("input".into(), state.input.clone());
    ctx.insert("steps".into(), Value::Object(steps));
    ctx.insert("run".into(), json!({"id": state.run_id, "workflow": state.workflow, "nonce": state.nonce}));
    if let Some(m) = &state.memory {
        ctx.insert("memory".into(), m.clone());
    }
    if iteration > 0 {
        ctx.insert("iteration".into(), json!(iteration));
    }
    if let Some((v, i)) = item {
        ctx.insert("item".into(), v.clone());
        ctx.insert("index".into(), json!(i));
    }
    Value::Object(ctx)
}

/// What a node's expressions may read: its upstream, or everything for fallback and compensation
/// nodes (they run after the DAG stopped).
pub(super) fn visible_for<'p>(plan: &'p Plan, st: &RunState, key: &NodeKey) -> Visible<'p> {
    match st.nodes.get(key) {
        Some(n) if n.role == Role::Dag => Visible::Only(&plan.steps[n.step].upstream),
        // An agent's turns and calls see what the agent sees, so re-issuing one sends the same.
        Some(Node { role: Role::Agent(agent), .. }) => match st.nodes.get(agent) {
            Some(a) => Visible::Only(&plan.steps[a.step].upstream),
            None => Visible::All,
        },
        _ => Visible::All,
    }
}
