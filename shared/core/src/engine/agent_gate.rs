//! Approval gates inside an agent's loop. A call of a gated tool (every call, or those whose
//! arguments meet the gate's condition) does not start: a task opens on the gate's hidden
//! `human` step with the proposed call, the model's reason and the conversation so far, and the
//! loop waits on it like on a call. Approving starts the call, with the arguments the person
//! put in the answer's `arguments` if any; rejecting gives the model the person's comment as the
//! call's result; a task that times out unanswered fails the call (the model reads why).

use serde_json::{Value, json};

use super::decider::{Decider, Rec};
use super::keys::role_key;
use super::types::*;
use crate::ids::NodeKey;
use crate::plan::AgentTool;

/// How much of one earlier result the task's conversation shows.
const SHOWN_CHARS: usize = 300;

/// Whether a call of `t` with `arguments` waits for a person: `Some(note)` when it does, the
/// note saying why (the condition held, or could not be evaluated, which gates the call too).
pub(super) fn gated(t: &AgentTool, arguments: &Value) -> Option<String> {
    let gate = t.approval.as_ref()?;
    let Some(when) = &gate.when else {
        return Some(format!("every call of `{}` needs approval", t.name));
    };
    match when.eval_truthy(&json!({"args": arguments})) {
        Ok((true, _)) => Some(format!("`{}` holds for this call", when.source())),
        Ok((false, _)) => None,
        // A gate that cannot decide keeps the call for a person rather than letting it through.
        Err(e) => Some(format!("`{}` could not be evaluated ({e}): asking a person", when.source())),
    }
}

/// The calls so far, one line each, for the person who decides.
fn conversation(state: &AgentState) -> String {
    if state.calls.is_empty() {
        return "(no earlier calls)".to_owned();
    }
    let cut = |v: &Value| {
        let t = v.to_string();
        if t.chars().count() <= SHOWN_CHARS {
            t
        } else {
            format!("{}… (cut)", t.chars().take(SHOWN_CHARS).collect::<String>())
        }
    };
    let lines: Vec<String> = state
        .calls
        .iter()
        .map(|c| {
            let outcome = match (&c.output, &c.error) {
                (Some(o), _) => format!("returned {}", cut(o)),
                (None, Some(e)) => format!("failed ({}): {}", e.kind, e.message),
                (None, None) => "pending".to_owned(),
            };
            format!("- turn {}: {}({}) {outcome}", c.turn, c.tool, c.arguments)
        })
        .collect();
    lines.join("\n")
}

impl Decider<'_> {
    /// Opens the approval task of a proposed call (the node is created, not started) and
    /// returns its key.
    pub(super) fn open_approval(
        &mut self,
        agent_key: &NodeKey,
        state: &AgentState,
        slot: usize,
        t: &AgentTool,
        arguments: &Value,
        reason: &str,
    ) -> Option<NodeKey> {
        let gate = t.approval.as_ref()?;
        let agent = self.st.nodes.get(agent_key)?.clone();
        let call = format_args!("{agent_key}.{}.{}.{slot}", state.attempt, state.turn);
        let key = role_key(&gate.id, call);
        let mut fresh = self.fresh_node(gate.step, agent.iteration, None, Role::Agent(agent_key.clone()));
        fresh.iteration = agent.iteration;
        fresh.args = Some(json!({
            "agent": self.plan.steps[agent.step].id,
            "tool": t.name,
            "arguments": arguments,
            "reason": reason,
            "turn": state.turn,
            "conversation": conversation(state),
        }));
        self.st.nodes.insert(key.clone(), fresh);
        self.st.open.insert(key.clone());
        Some(key)
    }

    /// An approval task ended: approve starts the call, reject and a failure end it. False when
    /// `key` is not an approval task of the agent.
    pub(super) fn approval_ended(
        &mut self,
        key: &NodeKey,
        agent_key: &NodeKey,
        result: &Result<Value, StepError>,
    ) -> bool {
        let Some(agent) = self.st.nodes.get(agent_key).cloned() else { return false };
        let Some(state) = agent.agent.as_ref() else { return false };
        let Some(i) = state.calls.iter().position(|c| c.approval.as_ref() == Some(key) && c.node.as_ref() == Some(key))
        else {
            return false;
        };
        let entry = state.calls[i].clone();
        let crate::plan::StepKind::Agent { tools, .. } = &self.plan.steps[agent.step].kind else { return true };
        let tools = super::agent_mcp::model_tools(tools, state);
        let answer = match result {
            Ok(a) => a,
            Err(e) => {
                let e = StepError {
                    message: format!("the approval of `{}` failed: {}", entry.tool, e.message),
                    ..e.clone()
                };
                self.record(
                    Rec::new("agent_call_unapproved", format!("`{}` was not approved: {}", entry.tool, e.message))
                        .node(agent_key),
                    vec![],
                );
                if let Some(c) = self.call_mut(agent_key, i) {
                    c.error = Some(e);
                }
                return true;
            }
        };
        let by = answer.get("by").and_then(Value::as_str).unwrap_or("someone").to_owned();
        let comment = answer.get("comment").cloned().unwrap_or(Value::Null);
        if answer.get("decision").and_then(Value::as_str) != Some("approve") {
            let out = json!({"rejected": true, "by": by, "comment": comment});
            self.record(
                Rec::new("agent_call_rejected", format!("{by} rejected the call of `{}`", entry.tool))
                    .node(agent_key)
                    .values(out.clone()),
                vec![],
            );
            if let Some(c) = self.call_mut(agent_key, i) {
                c.output = Some(out);
            }
            return true;
        }
        let edited = answer.get("data").and_then(|d| d.get("arguments")).filter(|a| a.is_object()).cloned();
        let arguments = edited.clone().unwrap_or_else(|| entry.arguments.clone());
        let Some((t, server_name)) = tools.iter().find(|(t, _)| t.name == entry.tool) else {
            // Cannot happen for a tool that was offered when the call was proposed; end the call
            // rather than leave the turn waiting on it.
            if let Some(c) = self.call_mut(agent_key, i) {
                c.error = Some(super::agent_mcp::no_such_tool(&entry.tool));
            }
            return true;
        };
        // Apart from the turn's own call keys (`.<slot>`): `.a<call>` is the approved call.
        let call = format_args!("{agent_key}.{}.{}.a{i}", state.attempt, entry.turn);
        let call_key = role_key(&self.plan.steps[t.step].id, call);
        let mut fresh = self.fresh_node(t.step, agent.iteration, None, Role::Agent(agent_key.clone()));
        fresh.iteration = agent.iteration;
        fresh.args = Some(match server_name {
            Some(tool) => json!({"tool": tool, "arguments": arguments}),
            None => arguments.clone(),
        });
        self.st.nodes.insert(call_key.clone(), fresh);
        self.st.open.insert(call_key.clone());
        let why = match &edited {
            Some(_) => format!("{by} approved the call of `{}` with changed arguments", entry.tool),
            None => format!("{by} approved the call of `{}`", entry.tool),
        };
        self.record(
            Rec::new("agent_call_approved", why)
                .node(agent_key)
                .values(json!({"tool": entry.tool, "arguments": arguments, "comment": comment})),
            vec![],
        );
        if let Some(c) = self.call_mut(agent_key, i) {
            c.node = Some(call_key.clone());
            c.arguments = arguments;
        }
        let first = self.first_attempt(&call_key);
        self.start_attempt(&call_key, first);
        true
    }

    fn call_mut(&mut self, agent_key: &NodeKey, i: usize) -> Option<&mut AgentCall> {
        self.st.nodes.get_mut(agent_key)?.agent.as_mut()?.calls.get_mut(i)
    }
}
