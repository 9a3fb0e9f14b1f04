//! A workflow's `budget`: what all of a run's model calls (`llm` steps, agent turns, their
//! repairs) may spend, as the `llm` tool reports each call. The call that takes the run over a
//! limit still counts (it happened); then the run stops as a failure stops it: no new step or
//! turn starts, the ones in flight end, completed steps are compensated, and the run fails with
//! `budget_exceeded`.

use serde_json::{Value, json};

use super::agent_budget::{MICROS, over_spend};
use super::decider::{Decider, Rec};
use super::types::*;
use crate::error_kind::ErrorKind;
use crate::ids::NodeKey;

impl Decider<'_> {
    /// Adds what a call of `key` reported to the run's spending, and stops the run when that
    /// takes it over the workflow's budget.
    pub(super) fn add_run_usage(&mut self, key: &NodeKey, report: Option<&Value>) {
        let (Some(budget), Some(report)) = (self.plan.budget.as_ref(), report) else { return };
        if !report.get("usage").is_some_and(Value::is_object) {
            return;
        }
        let spent = self.st.spent.get_or_insert_with(Spent::default);
        spent.add_report(report);
        let Some(what) = over_spend(budget, spent) else { return };
        if self.st.phase != Phase::Active {
            return;
        }
        let figures = json!({
            "input_tokens": spent.input_tokens, "output_tokens": spent.output_tokens,
            "usd": spent.usd_micros as f64 / MICROS, "limit": what,
        });
        let step = self.st.nodes.get(key).map(|n| self.plan.steps[n.step].id.clone());
        let message = format!("the run is over its budget: {what}");
        let reason =
            format!("{message}; no new steps start, in-flight steps end, then completed steps are compensated");
        self.stop_failed(
            RunError { step, kind: ErrorKind::BudgetExceeded, message },
            Rec::new("run_budget_exceeded", reason).node(key).values(figures),
        );
    }
}
