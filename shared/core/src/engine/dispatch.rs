//! Rendering a node's tool call: which steps its expressions may read, its resolved arguments
//! (with the connection and network policy an `http` call carries), its cache key, and whether a
//! call is in flight. Pure functions of plan and state, below the decider, so both the decider
//! and `in_flight` (re-issuing calls after a restart) render the same call.

use serde_json::{Value, json};

use super::context::{node_context, visible_for};
use super::keys::idempotency_key;
use super::turn::turn_input;
use super::types::*;
use crate::error_kind::ErrorKind;
use crate::ids::NodeKey;
use crate::plan::tools::{self, AGENT_TURN_TOOL, CallEnv};
use crate::plan::{Limit, Plan, StepKind};

/// The tool call for a node's current attempt. Deterministic: arguments read only steps that
/// ended before the node started, so re-issuing after a restart sends the same call.
pub(super) fn dispatch_for(plan: &Plan, st: &RunState, key: &NodeKey) -> Result<Dispatch, StepError> {
    let node = st.nodes.get(key).ok_or_else(|| StepError::new(ErrorKind::Tool, "no such node"))?;
    let step = &plan.steps[node.step];
    let item = super::context::item_of(st, key);
    let visible = visible_for(plan, st, key);
    let map = step.items_from.as_ref();
    let (tool, input) = match &step.kind {
        StepKind::Tool { .. } if let Some(spec) = map.filter(|_| super::item_source::is_map_node(plan, node)) => {
            super::item_source::map_dispatch(plan, st, key, node, spec)?
        }
        StepKind::Tool { tool, args } => {
            let refs = args.refs();
            let mut ctx = node_context(plan, st, node.iteration, item, Some(&refs), visible);
            // An agent's tool call reads the model's arguments.
            if let (Some(a), Value::Object(m)) = (&node.args, &mut ctx) {
                m.insert("args".into(), a.clone());
            }
            let mut input = args.render(&ctx).map_err(|e| expression_error(&e))?;
            if let Some(patch) = patch_for(st, key) {
                merge_patch(&mut input, patch);
            }
            // What the run adds to a call (a connection, the network policy, the run's entity)
            // is the tool's to say.
            if let Some(spec) = tools::spec(tool) {
                let env = CallEnv {
                    network: plan.workflow.network.as_ref(),
                    secrets: &plan.workflow.secrets,
                    connections: &plan.connections,
                    context: &ctx,
                    memory: st.memory.as_ref(),
                };
                spec.prepare(&mut input, &env).map_err(|e| StepError::new(e.kind, e.message))?;
            }
            if let (Some(spec), Some((descriptor, i)), Value::Object(m)) = (map, item, &mut input) {
                let link = super::item_source::batch_link(plan, st, key, node, spec, descriptor, i)?;
                m.insert("batch".into(), link);
            }
            (tool.clone(), input)
        }
        StepKind::Transform { expr, budget } => {
            let ctx = node_context(plan, st, node.iteration, item, Some(expr.refs()), visible);
            let value = match budget {
                Some(b) => expr.eval_with(&ctx, b),
                None => expr.eval(&ctx),
            }
            .map_err(|e| expression_error(&e))?;
            let mut input = json!({"value": value});
            if let Some(patch) = patch_for(st, key) {
                merge_patch(&mut input, patch);
            }
            (step.kind.tool_name().to_owned(), input)
        }
        StepKind::Agent { args, tools, max_turns, output_schema, .. } => {
            let Role::Agent(agent_key) = &node.role else {
                return Err(StepError::new(ErrorKind::Tool, "an agent node makes no call itself; its turns do"));
            };
            let state = st
                .nodes
                .get(agent_key)
                .and_then(|a| a.agent.as_ref())
                .ok_or_else(|| StepError::new(ErrorKind::Tool, format!("agent `{agent_key}` has no loop")))?;
            let ctx = node_context(plan, st, node.iteration, None, Some(&args.refs()), visible);
            let rendered = args.render(&ctx).map_err(|e| expression_error(&e))?;
            let tools: Vec<_> = super::agent_mcp::model_tools(tools, state).into_iter().map(|(t, _)| t).collect();
            (AGENT_TURN_TOOL.to_owned(), turn_input(&rendered, &tools, state, *max_turns, output_schema))
        }
        StepKind::CacheLookup { of } => {
            let Role::Fallback(target) = &node.role else {
                return Err(StepError::new(ErrorKind::Tool, "a cache look-up runs only as a fallback"));
            };
            let key = cache_key(plan, st, target)?;
            let ttl = plan.steps[*of].cache.map(|t| t.0).unwrap_or(0);
            (step.kind.tool_name().to_owned(), json!({"key": key, "ttl_ms": ttl, "step": plan.steps[*of].id}))
        }
        _ => return Err(StepError::new(ErrorKind::Tool, "this step makes no tool call")),
    };
    Ok(Dispatch {
        node: key.to_owned(),
        step: step.id.clone(),
        attempt: node.attempt,
        tool,
        input,
        idempotency_key: idempotency_key(&st.run_id, node, &step.id, key),
        timeout_ms: match &step.timeout {
            Some(Limit::Fixed(m)) => Some(m.0),
            Some(Limit::Template(_)) => super::limits::attempt_limit(plan, st, key)?,
            None => None,
        },
    })
}

/// The request key of a node's call: a hash of the workflow, the step, the tool and the
/// resolved arguments (secrets in them are placeholders, so the key holds no secret).
pub fn cache_key(plan: &Plan, st: &RunState, key: &NodeKey) -> Result<String, StepError> {
    let d = dispatch_for(plan, st, key)?;
    Ok(crate::canonical::sha256_hex(&json!({
        "workflow": plan.workflow.name,
        "step": d.step,
        "tool": d.tool,
        "input": d.input,
    })))
}

/// True when the node's current attempt is a tool call in flight.
pub(super) fn call_in_flight(plan: &Plan, st: &RunState, key: &NodeKey) -> bool {
    st.nodes.get(key).is_some_and(|n| {
        n.status() == NodeStatus::Running
            && !st.held.contains_key(key)
            && n.items.as_ref().is_none_or(super::item_source::writing_manifest)
            && match plan.steps[n.step].kind {
                StepKind::Tool { .. } | StepKind::Transform { .. } | StepKind::CacheLookup { .. } => true,
                // The agent node itself waits on its turns and calls; its turns are calls.
                StepKind::Agent { .. } => matches!(n.role, Role::Agent(_)),
                _ => false,
            }
    })
}

/// A step's expression that failed: `expression_limit` when it ran out of its budget (the
/// message names the limit and its value), the kind it raised with `fail(kind; message)` when
/// an expression may raise that kind, `expression` for any other jq error.
pub(super) fn expression_error(e: &crate::expr::EvalError) -> StepError {
    if e.limit.is_some() {
        return StepError::new(ErrorKind::ExpressionLimit, e.to_string());
    }
    match &e.raised {
        Some(name) => match ErrorKind::raisable(name) {
            Ok(kind) => StepError::new(kind, e.message.clone()),
            Err(why) => StepError::new(ErrorKind::Expression, format!("`{}`: fail(): {why}", e.expr)),
        },
        None => StepError::new(ErrorKind::Expression, e.to_string()),
    }
}

/// [`expression_error`] for an expression of the step's own (`what`: `` `when` ``, `` `until` ``).
pub(super) fn expression_error_in(what: &str, e: &crate::expr::EvalError) -> StepError {
    StepError { message: format!("{what} could not be evaluated: {e}"), ..expression_error(e) }
}

/// An operator's patch for a node's arguments: its own, or its for_each parent's.
fn patch_for<'s>(st: &'s RunState, key: &NodeKey) -> Option<&'s Value> {
    st.patches.get(key).or_else(|| key.item_parent().and_then(|p| st.patches.get(&p)))
}

/// Applies a JSON merge patch (RFC 7386): objects merge key by key, `null` removes a key, any
/// other value replaces what was there.
pub fn merge_patch(target: &mut Value, patch: &Value) {
    let Value::Object(p) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(serde_json::Map::new());
    }
    if let Value::Object(t) = target {
        for (k, v) in p {
            if v.is_null() {
                t.remove(k);
            } else {
                merge_patch(t.entry(k.clone()).or_insert(Value::Null), v);
            }
        }
    }
}
