//! The `agent` step: a bounded loop of model turns. Each turn is an `llm` call whose answer,
//! constrained by a JSON Schema, either asks for tool calls or gives the final answer. Each
//! tool call is a node of its own (retried, audited, with its own idempotency key), so a crash
//! in the middle of the loop resumes without repeating a finished call. The last turn may only
//! answer, so the loop ends with a schema-valid answer or a clear failure.

use serde_json::{Value, json};

use super::agent_gate::gated;
use super::agent_mcp::{model_tools, no_such_tool};
use super::decider::{Decider, Rec};
use super::keys::role_key;
use super::turn::CALLS_PER_TURN;
use super::types::*;
use crate::error_kind::ErrorKind;
use crate::ids::NodeKey;
use crate::plan::StepKind;

impl Decider<'_> {
    /// Starts `attempt` of an agent node: a fresh loop, and its first turn.
    pub(super) fn start_agent(&mut self, key: &NodeKey, attempt: u32) {
        let Some(node) = self.st.nodes.get_mut(key) else { return };
        let spent = Spent { started_at: self.at, ..Spent::default() };
        node.agent = Some(AgentState { attempt, turn: 0, calls: vec![], listing: vec![], offered: vec![], spent });
        let (tools, max_turns) = match &self.plan.steps[node.step].kind {
            StepKind::Agent { tools, max_turns, .. } => {
                (tools.iter().map(|t| t.name.clone()).collect::<Vec<_>>(), *max_turns)
            }
            _ => return,
        };
        let why = format!(
            "agent loop started: at most {max_turns} turns, tools: {}",
            if tools.is_empty() { "none".into() } else { tools.join(", ") }
        );
        self.record(Rec::new("start_agent", why).node(key).values(json!({"attempt": attempt})), vec![]);
        if !self.list_offered_tools(key) {
            self.next_turn(key);
        }
    }

    /// Starts the agent's next model turn.
    pub(super) fn next_turn(&mut self, agent_key: &NodeKey) {
        let Some(node) = self.st.nodes.get_mut(agent_key) else { return };
        let max_turns = match &self.plan.steps[node.step].kind {
            StepKind::Agent { max_turns, .. } => *max_turns,
            _ => return,
        };
        if node.agent.is_none() || self.over_budget(agent_key, 0) {
            return;
        }
        let Some(node) = self.st.nodes.get_mut(agent_key) else { return };
        let Some(state) = node.agent.as_mut() else { return };
        if state.turn >= max_turns {
            // Only a scripted answer can get here: the last turn's schema allows no calls.
            let e = StepError::new(ErrorKind::AgentMaxTurns, format!("no answer after {max_turns} turns"));
            self.attempt_exhausted(agent_key, e);
            return;
        }
        state.turn += 1;
        let (turn, attempt, step, iteration) = (state.turn, state.attempt, node.step, node.iteration);
        let turn_key = role_key(&self.plan.steps[step].id, format_args!("{agent_key}.{attempt}.{turn}"));
        let mut fresh = self.fresh_node(step, iteration, None, Role::Agent(agent_key.clone()));
        fresh.iteration = iteration;
        self.st.nodes.insert(turn_key.clone(), fresh);
        self.st.open.insert(turn_key.clone());
        let first = self.first_attempt(&turn_key);
        self.start_attempt(&turn_key, first);
    }

    /// The agent a turn or call belongs to, when that agent still runs the same loop.
    fn live_agent(&self, part: &Node, agent_key: &NodeKey) -> Option<(AgentState, usize)> {
        let agent = self.st.nodes.get(agent_key)?;
        let state = agent.agent.clone()?;
        (agent.status() == NodeStatus::Running && self.st.phase == Phase::Active && part.iteration == agent.iteration)
            .then_some((state, agent.step))
    }

    /// A part of an agent (a turn or a tool call) ended: a turn's decision calls tools or
    /// answers; a call's result goes into the loop, and the turn's last call starts the next.
    pub(super) fn agent_part_ended(&mut self, key: &NodeKey, agent_key: &NodeKey, result: Result<Value, StepError>) {
        let Some(part) = self.st.nodes.get(key).cloned() else { return };
        let Some((state, agent_step)) = self.live_agent(&part, agent_key) else { return };
        if part.step == agent_step {
            match result {
                Ok(decision) => self.on_decision(agent_key, &state, decision),
                // The turn's own retries are spent: the agent's attempt fails (its fallback
                // applies).
                Err(e) => {
                    let e = StepError { message: format!("turn {} failed: {}", state.turn, e.message), ..e };
                    self.attempt_exhausted(agent_key, e);
                }
            }
            return;
        }
        if self.offered_tools_listed(key, agent_key, &result) {
            return;
        }
        let gate = self.approval_ended(key, agent_key, &result);
        let Some(agent) = self.st.nodes.get_mut(agent_key) else { return };
        let Some(st) = agent.agent.as_mut() else { return };
        if !gate && let Some(c) = st.calls.iter_mut().find(|c| c.node.as_ref() == Some(key)) {
            match result {
                Ok(v) => c.output = Some(v),
                Err(e) => c.error = Some(e),
            }
        }
        let turn = st.turn;
        let waiting =
            st.calls.iter().any(|c| c.turn == turn && c.node.is_some() && c.output.is_none() && c.error.is_none());
        if !waiting {
            self.record(
                Rec::new("agent_turn_done", format!("the calls of turn {turn} returned; next turn")).node(agent_key),
                vec![],
            );
            self.next_turn(agent_key);
        }
    }

    /// The model's decision on a turn: the final answer ends the agent; tool calls start.
    fn on_decision(&mut self, agent_key: &NodeKey, state: &AgentState, decision: Value) {
        let turn = state.turn;
        let asked = match decision.get("action").and_then(Value::as_str) {
            Some("answer") => 0,
            _ => decision.get("calls").and_then(Value::as_array).map_or(0, |c| c.len().min(CALLS_PER_TURN)),
        };
        if self.over_budget(agent_key, asked) {
            return;
        }
        match decision.get("action").and_then(Value::as_str) {
            Some("answer") => {
                let answer = decision.get("answer").cloned().unwrap_or(Value::Null);
                let why = format!("the model answered on turn {turn} after {} tool calls", state.calls.len());
                let values = json!({"turns": turn, "calls": state.calls});
                self.succeed(agent_key, answer, &why, values);
            }
            _ => {
                let calls = decision.get("calls").and_then(Value::as_array).cloned().unwrap_or_default();
                let Some(agent) = self.st.nodes.get(agent_key).cloned() else { return };
                let StepKind::Agent { tools, .. } = &self.plan.steps[agent.step].kind else { return };
                let tools = model_tools(tools, state);
                let mut started = Vec::new();
                let mut entries = Vec::new();
                for (i, call) in calls.iter().take(CALLS_PER_TURN).enumerate() {
                    let name = call.get("tool").and_then(Value::as_str).unwrap_or_default().to_owned();
                    let arguments = call.get("arguments").cloned().unwrap_or(Value::Null);
                    // The same call twice in one turn runs once: the model reads one result.
                    if entries.iter().any(|e: &AgentCall| e.tool == name && e.arguments == arguments) {
                        continue;
                    }
                    let mut entry = AgentCall {
                        turn,
                        tool: name.clone(),
                        arguments: arguments.clone(),
                        node: None,
                        approval: None,
                        output: None,
                        error: None,
                    };
                    match tools.iter().find(|(t, _)| t.name == name) {
                        None => entry.error = Some(no_such_tool(&name)),
                        Some((t, _)) if let Some(note) = gated(t, &arguments) => {
                            let reason = call.get("reason").and_then(Value::as_str).unwrap_or("(none given)");
                            if let Some(key) = self.open_approval(agent_key, state, i, t, &arguments, reason) {
                                self.record(
                                    Rec::new(
                                        "agent_approval_requested",
                                        format!("the call of `{name}` waits for a person: {note}"),
                                    )
                                    .node(agent_key)
                                    .values(json!({"tool": name, "arguments": arguments, "reason": reason})),
                                    vec![],
                                );
                                entry.node = Some(key.clone());
                                entry.approval = Some(key.clone());
                                started.push(key);
                            }
                        }
                        Some((t, server_name)) => {
                            let call = format_args!("{agent_key}.{}.{turn}.{i}", state.attempt);
                            let key = role_key(&self.plan.steps[t.step].id, call);
                            let mut fresh =
                                self.fresh_node(t.step, agent.iteration, None, Role::Agent(agent_key.clone()));
                            fresh.iteration = agent.iteration;
                            // A whole server's tool runs the entry's step with the server's
                            // name for it.
                            fresh.args = Some(match server_name {
                                Some(tool) => json!({"tool": tool, "arguments": arguments}),
                                None => arguments,
                            });
                            self.st.nodes.insert(key.clone(), fresh);
                            self.st.open.insert(key.clone());
                            entry.node = Some(key.clone());
                            started.push(key);
                        }
                    }
                    entries.push(entry);
                }
                let names: Vec<String> = entries.iter().map(|e| e.tool.clone()).collect();
                if let Some(st) = self.st.nodes.get_mut(agent_key).and_then(|a| a.agent.as_mut()) {
                    st.calls.extend(entries);
                }
                let why = if names.is_empty() {
                    format!("the model asked for no call on turn {turn}")
                } else {
                    format!("the model called {} on turn {turn}", names.join(", "))
                };
                self.record(Rec::new("agent_calls", why).node(agent_key).values(json!({"calls": calls})), vec![]);
                if started.is_empty() {
                    self.next_turn(agent_key);
                }
                for key in started {
                    let first = self.first_attempt(&key);
                    self.start_attempt(&key, first);
                }
            }
        }
    }
}
