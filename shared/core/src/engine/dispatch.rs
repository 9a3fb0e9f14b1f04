//! Rendering a node's tool call: which steps its expressions may read, its resolved arguments
//! (with the connection and network policy an `http` call carries), its cache key, and whether a
//! call is in flight. Pure functions of plan and state, below the decider, so both the decider
//! and `in_flight` (re-issuing calls after a restart) render the same call.

use serde_json::{Value, json};

use super::context::{Visible, node_context};
use super::keys::idempotency_key;
use super::turn::turn_input;
use super::types::*;
use crate::plan::{Plan, StepKind};

/// What a node's expressions may read: its upstream, or everything for fallback and compensation
/// nodes (they run after the DAG stopped).
pub(super) fn visible_for<'p>(plan: &'p Plan, st: &RunState, key: &str) -> Visible<'p> {
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

/// The tool call for a node's current attempt. Deterministic: arguments read only steps that
/// ended before the node started, so re-issuing after a restart sends the same call.
pub(super) fn dispatch_for(plan: &Plan, st: &RunState, key: &str) -> Result<Dispatch, StepError> {
    let node = st.nodes.get(key).ok_or_else(|| StepError::new("tool", "no such node"))?;
    let step = &plan.steps[node.step];
    let parent_items = key.rsplit_once('[').and_then(|(p, _)| st.nodes.get(p)?.items.as_ref());
    let item = match (&node.index, parent_items) {
        (Some(i), Some(items)) => items.values.get(*i as usize).map(|v| (v, *i)),
        _ => None,
    };
    let visible = visible_for(plan, st, key);
    let (tool, input) = match &step.kind {
        StepKind::Tool { tool, args } => {
            let refs = args.refs();
            let mut ctx = node_context(plan, st, node.iteration, item, Some(&refs), visible);
            // An agent's tool call reads the model's arguments.
            if let (Some(a), Value::Object(m)) = (&node.args, &mut ctx) {
                m.insert("args".into(), a.clone());
            }
            let mut input = args.render(&ctx).map_err(|e| StepError::new("expression", e.to_string()))?;
            // The workflow's network policy travels with each call (`network` is not a `with`
            // field users can write), so a worker applies the definition's policy, and the
            // audited command shows it.
            if tool == "http"
                && let (Some(net), Value::Object(m)) = (&plan.workflow.network, &mut input)
            {
                m.insert("network".into(), serde_json::to_value(net).unwrap_or(Value::Null));
            }
            // A memory step without its own entity works on the run's.
            if tool == "memory"
                && let (Value::Object(m), Some(entity)) =
                    (&mut input, st.memory.as_ref().and_then(|m| m.get("entity")).filter(|e| !e.is_null()))
                && !m.contains_key("entity")
            {
                m.insert("entity".into(), entity.clone());
            }
            if tool == "http"
                && let Some(name) = input.get("connection").and_then(Value::as_str).map(str::to_owned)
            {
                let conn = plan
                    .connections
                    .get(&name)
                    .ok_or_else(|| StepError::new("tool", format!("no connection `{name}`")))?;
                let conn = conn.render(&ctx).map_err(|e| StepError::new("expression", e.to_string()))?;
                apply_connection(&mut input, &conn);
            }
            (tool.clone(), input)
        }
        StepKind::Transform { expr } => {
            let ctx = node_context(plan, st, node.iteration, item, Some(expr.refs()), visible);
            let value = expr.eval(&ctx).map_err(|e| StepError::new("expression", e.to_string()))?;
            ("transform".to_owned(), json!({"value": value}))
        }
        StepKind::Agent { args, tools, max_turns, output_schema } => {
            let Role::Agent(agent_key) = &node.role else {
                return Err(StepError::new("tool", "an agent node makes no call itself; its turns do"));
            };
            let state = st
                .nodes
                .get(agent_key)
                .and_then(|a| a.agent.as_ref())
                .ok_or_else(|| StepError::new("tool", format!("agent `{agent_key}` has no loop")))?;
            let ctx = node_context(plan, st, node.iteration, None, Some(&args.refs()), visible);
            let rendered = args.render(&ctx).map_err(|e| StepError::new("expression", e.to_string()))?;
            ("llm".to_owned(), turn_input(&rendered, tools, state, *max_turns, output_schema))
        }
        StepKind::CacheLookup { of } => {
            let Role::Fallback(target) = &node.role else {
                return Err(StepError::new("tool", "a cache look-up runs only as a fallback"));
            };
            let key = cache_key(plan, st, target)?;
            let ttl = plan.steps[*of].cache.map(|t| t.0).unwrap_or(0);
            ("cache".to_owned(), json!({"key": key, "ttl_ms": ttl, "step": plan.steps[*of].id}))
        }
        _ => return Err(StepError::new("tool", "this step makes no tool call")),
    };
    Ok(Dispatch {
        node: key.to_owned(),
        step: step.id.clone(),
        attempt: node.attempt,
        tool,
        input,
        idempotency_key: idempotency_key(&st.run_id, node, &step.id, key),
        timeout_ms: step.timeout.map(|t| t.0),
    })
}

/// The request key of a node's call: a hash of the workflow, the step, the tool and the
/// resolved arguments (secrets in them are placeholders, so the key holds no secret).
pub fn cache_key(plan: &Plan, st: &RunState, key: &str) -> Result<String, StepError> {
    let d = dispatch_for(plan, st, key)?;
    Ok(crate::canonical::sha256_hex(&json!({
        "workflow": plan.workflow.name,
        "step": d.step,
        "tool": d.tool,
        "input": d.input,
    })))
}

/// Merges a rendered connection into an `http` call: the URL is the base URL plus `path`, the
/// connection's headers (with its auth header) go under the step's own, its timeout applies
/// unless the step sets one, and `allow_private` opens the network guard for this call. The
/// call keeps `connection` so the audited command says which API it went to.
fn apply_connection(input: &mut Value, conn: &Value) {
    let Value::Object(m) = input else { return };
    let path = m.remove("path").map(|p| match p {
        Value::String(s) => s,
        other => other.to_string(),
    });
    let base = conn.get("url").and_then(Value::as_str).unwrap_or_default();
    m.insert("url".into(), Value::String(format!("{base}{}", path.unwrap_or_default())));
    let mut headers = conn.get("headers").and_then(Value::as_object).cloned().unwrap_or_default();
    if let Some(Value::Object(own)) = m.get("headers") {
        for (k, v) in own {
            headers.retain(|h, _| !h.eq_ignore_ascii_case(k));
            headers.insert(k.clone(), v.clone());
        }
    }
    if !headers.is_empty() {
        m.insert("headers".into(), Value::Object(headers));
    }
    if !m.contains_key("timeout")
        && let Some(t) = conn.get("timeout").filter(|t| !t.is_null())
    {
        m.insert("timeout".into(), t.clone());
    }
    // Signing, rate limit and circuit breaker are the worker's to apply, per connection.
    if let Some(s) = conn.get("sigv4").filter(|s| !s.is_null()) {
        m.insert("sigv4".into(), s.clone());
    }
    if let Some(Value::Object(l)) = conn.get("limits")
        && !l.is_empty()
    {
        m.insert("limits".into(), Value::Object(l.clone()));
    }
    if conn.get("allow_private") == Some(&Value::Bool(true)) {
        let net = m.entry("network").or_insert_with(|| json!({}));
        if let Value::Object(n) = net {
            n.insert("allow_private".into(), Value::Bool(true));
        }
    }
}

/// True when the node's current attempt is a tool call in flight.
pub(super) fn call_in_flight(plan: &Plan, st: &RunState, key: &str) -> bool {
    st.nodes.get(key).is_some_and(|n| {
        n.status == NodeStatus::Running
            && n.items.is_none()
            && match plan.steps[n.step].kind {
                StepKind::Tool { .. } | StepKind::Transform { .. } | StepKind::CacheLookup { .. } => true,
                // The agent node itself waits on its turns and calls; its turns are calls.
                StepKind::Agent { .. } => matches!(n.role, Role::Agent(_)),
                _ => false,
            }
    })
}
