//! An agent's `budget`: what its turns spent (the token counts and USD the `llm` tool reports
//! for each turn, failed ones included), how many tool calls the model asked for, and how long
//! the loop has run. Over any limit, the attempt fails with `budget_exceeded` and the figures.

use serde_json::{Value, json};

use super::decider::{Decider, Rec};
use super::types::*;
use crate::error_kind::ErrorKind;
use crate::ids::NodeKey;
use crate::plan::{Budget, StepKind};

pub(super) use super::agent_state::MICROS;

impl Decider<'_> {
    /// Adds what a turn's call reported to its agent's spending.
    pub(super) fn add_turn_usage(&mut self, key: &NodeKey, report: Option<&Value>) {
        let (Some(report), Some(node)) = (report, self.st.nodes.get(key)) else { return };
        let Role::Agent(agent_key) = &node.role else { return };
        let Some(agent) = self.st.nodes.get(agent_key) else { return };
        if agent.step != node.step {
            return;
        }
        let agent_key = agent_key.clone();
        if let Some(st) = self.st.nodes.get_mut(&agent_key).and_then(|a| a.agent.as_mut()) {
            st.spent.add_report(report);
        }
    }

    /// Fails the agent's attempt when it is over its budget, counting `new_calls` more tool
    /// calls; true when it did.
    pub(super) fn over_budget(&mut self, agent_key: &NodeKey, new_calls: usize) -> bool {
        let Some(agent) = self.st.nodes.get(agent_key) else { return false };
        let StepKind::Agent { budget: Some(budget), .. } = &self.plan.steps[agent.step].kind else { return false };
        let Some(state) = agent.agent.as_ref() else { return false };
        let Some(what) = exceeded(budget, state, new_calls, self.at) else { return false };
        let s = &state.spent;
        let figures = json!({
            "input_tokens": s.input_tokens, "output_tokens": s.output_tokens,
            "usd": s.usd_micros as f64 / MICROS, "tool_calls": state.calls.len() + new_calls,
            "elapsed_ms": self.at.saturating_sub(s.started_at), "limit": what,
        });
        let e = StepError::new(ErrorKind::BudgetExceeded, format!("over budget: {what} (spent {figures})"));
        self.record(Rec::new("agent_budget_exceeded", e.message.clone()).node(agent_key).values(figures), vec![]);
        self.attempt_exhausted(agent_key, e);
        true
    }
}

/// The first limit the loop is over, in words.
fn exceeded(b: &Budget, st: &AgentState, new_calls: usize, now: u64) -> Option<String> {
    let s = &st.spent;
    if let Some(what) = over_spend(b, s) {
        return Some(what);
    }
    let calls = st.calls.len() + new_calls;
    if let Some(l) = b.max_tool_calls.filter(|l| calls > *l as usize) {
        return Some(format!("{calls} tool calls > max_tool_calls {l}"));
    }
    let elapsed = now.saturating_sub(s.started_at);
    if let Some(l) = b.max_duration.filter(|l| elapsed > l.0) {
        return Some(format!("{elapsed} ms > max_duration {} ms", l.0));
    }
    None
}

/// The first token or USD limit `s` is over, in words (shared by an agent's and a run's budget).
pub(super) fn over_spend(b: &Budget, s: &Spent) -> Option<String> {
    let over = |limit: Option<u64>, v: u64| limit.filter(|l| v > *l);
    if let Some(l) = over(b.max_input_tokens, s.input_tokens) {
        return Some(format!("{} input tokens > max_input_tokens {l}", s.input_tokens));
    }
    if let Some(l) = over(b.max_output_tokens, s.output_tokens) {
        return Some(format!("{} output tokens > max_output_tokens {l}", s.output_tokens));
    }
    if let Some(l) = over(b.max_tokens, s.input_tokens + s.output_tokens) {
        return Some(format!("{} tokens > max_tokens {l}", s.input_tokens + s.output_tokens));
    }
    if let Some(l) = b.max_usd.filter(|l| s.usd_micros as f64 / MICROS > *l) {
        return Some(format!("{} USD > max_usd {l}", s.usd_micros as f64 / MICROS));
    }
    None
}
