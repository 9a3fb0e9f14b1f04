//! An agent that offers whole MCP servers: before its first turn the loop lists each server's
//! tools (a call of the entry's hidden `mcp` step, retried and audited like any), keeps those
//! the entry's `allow`/`deny` let through, and offers them to the model with the names,
//! descriptions and JSON Schemas the server gave. A call of one of them runs the same hidden
//! step with `{tool, arguments}`.

use serde_json::{Value, json};

use super::decider::{Decider, Rec};
use super::keys::role_key;
use super::types::*;
use crate::error_kind::ErrorKind;
use crate::ids::NodeKey;
use crate::plan::{AgentTool, StepKind};

/// The longest tool name a model is given.
const MAX_NAME: usize = 64;

/// The tools the model may call now: the agent's own tools (not the whole-server entries) and
/// the servers' listed tools; for the latter, the server's name for the tool.
pub(super) fn model_tools(tools: &[AgentTool], state: &AgentState) -> Vec<(AgentTool, Option<String>)> {
    let mut out: Vec<(AgentTool, Option<String>)> =
        tools.iter().filter(|t| t.offers.is_none()).map(|t| (t.clone(), None)).collect();
    for o in &state.offered {
        let Some(via) = tools.get(o.via) else { continue };
        let tool = AgentTool {
            name: o.name.clone(),
            description: o.description.clone(),
            parameters: o.parameters.clone(),
            step: via.step,
            offers: None,
            // A whole server's gate applies to each of its tools.
            approval: via.approval.clone(),
        };
        out.push((tool, Some(o.tool.clone())));
    }
    out
}

/// A server's tool name as a model tool name: letters, digits, `_` and `-`, at most 64.
fn safe_name(name: &str) -> String {
    name.chars()
        .map(|c| if c.is_ascii_alphanumeric() || c == '_' || c == '-' { c } else { '_' })
        .take(MAX_NAME)
        .collect()
}

impl Decider<'_> {
    /// Starts listing the tools of the servers the agent offers whole; false when it offers
    /// none (the first turn can start at once).
    pub(super) fn list_offered_tools(&mut self, agent_key: &NodeKey) -> bool {
        let Some(agent) = self.st.nodes.get(agent_key).cloned() else { return false };
        let StepKind::Agent { tools, .. } = &self.plan.steps[agent.step].kind else { return false };
        let Some(attempt) = agent.agent.as_ref().map(|a| a.attempt) else { return false };
        let mut started = Vec::new();
        for (i, t) in tools.iter().enumerate().filter(|(_, t)| t.offers.is_some()) {
            let key = role_key(&self.plan.steps[t.step].id, format_args!("{agent_key}.{attempt}.list.{i}"));
            let mut fresh = self.fresh_node(t.step, agent.iteration, None, Role::Agent(agent_key.clone()));
            fresh.iteration = agent.iteration;
            fresh.args = Some(json!({"list_tools": true}));
            self.st.nodes.insert(key.clone(), fresh);
            self.st.open.insert(key.clone());
            started.push(key);
        }
        if started.is_empty() {
            return false;
        }
        if let Some(st) = self.st.nodes.get_mut(agent_key).and_then(|a| a.agent.as_mut()) {
            st.listing = started.clone();
        }
        for key in started {
            let first = self.first_attempt(&key);
            self.start_attempt(&key, first);
        }
        true
    }

    /// A listing call ended: its tools join the offer; a failed one fails the agent's attempt.
    /// True when `key` was a listing call.
    pub(super) fn offered_tools_listed(
        &mut self,
        key: &NodeKey,
        agent_key: &NodeKey,
        result: &Result<Value, StepError>,
    ) -> bool {
        let Some(agent) = self.st.nodes.get(agent_key).cloned() else { return false };
        let Some(state) = agent.agent.as_ref() else { return false };
        if !state.listing.contains(key) {
            return false;
        }
        let StepKind::Agent { tools, .. } = &self.plan.steps[agent.step].kind else { return true };
        let part_step = self.st.nodes.get(key).map(|n| n.step);
        let Some(via) = tools.iter().position(|t| t.offers.is_some() && Some(t.step) == part_step) else {
            return true;
        };
        let offer = tools[via].offers.clone();
        let server = offer.as_ref().map(|o| o.server.clone()).unwrap_or_default();
        let listed = match result {
            Ok(v) => v.get("tools").and_then(Value::as_array).cloned().unwrap_or_default(),
            Err(e) => {
                let e = StepError {
                    message: format!("cannot list the tools of MCP server `{server}`: {}", e.message),
                    ..e.clone()
                };
                self.attempt_exhausted(agent_key, e);
                return true;
            }
        };
        let mut taken: Vec<String> = model_tools(tools, state).into_iter().map(|(t, _)| t.name).collect();
        let mut added = Vec::new();
        let mut left_out = Vec::new();
        for t in &listed {
            let Some(tool) = t.get("name").and_then(Value::as_str) else { continue };
            if !offer.as_ref().is_some_and(|o| o.offers(tool)) {
                continue;
            }
            let name = safe_name(tool);
            if name.is_empty() || taken.contains(&name) {
                left_out.push(tool.to_owned());
                continue;
            }
            taken.push(name.clone());
            added.push(OfferedTool {
                name,
                tool: tool.to_owned(),
                description: t.get("description").and_then(Value::as_str).unwrap_or_default().to_owned(),
                parameters: t
                    .get("input_schema")
                    .cloned()
                    .filter(Value::is_object)
                    .unwrap_or(json!({"type": "object"})),
                via,
            });
        }
        let names: Vec<String> = added.iter().map(|o| o.name.clone()).collect();
        let Some(st) = self.st.nodes.get_mut(agent_key).and_then(|a| a.agent.as_mut()) else { return true };
        st.listing.retain(|k| k != key);
        st.offered.extend(added);
        let done = st.listing.is_empty();
        let mut why = format!(
            "MCP server `{server}` offers {}",
            if names.is_empty() { "no tools".to_owned() } else { names.join(", ") }
        );
        if !left_out.is_empty() {
            why.push_str(&format!("; left out (name taken): {}", left_out.join(", ")));
        }
        self.record(
            Rec::new("agent_tools_listed", why).node(agent_key).values(json!({"server": server, "tools": names})),
            vec![],
        );
        if done {
            self.next_turn(agent_key);
        }
        true
    }
}

/// The error an agent's call of a tool it was not offered gets.
pub(super) fn no_such_tool(name: &str) -> StepError {
    StepError::new(ErrorKind::Tool, format!("there is no tool `{name}`"))
}
