//! What operators do to a run besides cancelling it: redrive a failed run, retry from a step,
//! pause and unpause. Each arrives as an [`EventKind::Operated`] event in the run's journal, so
//! `audit replay` re-derives it like any other decision, and each is one audit record naming
//! who acted, when and why.
//!
//! Running a node again never reuses an attempt number: the node's last attempt is kept in
//! [`RunState::attempt_base`] and its new attempts count on from there, so idempotency keys,
//! task ids and timer ids of the new attempts are new, while retry policies still count the
//! new attempts from one.

use std::collections::BTreeSet;

use serde_json::{Value, json};

use super::decider::{Decider, Rec};
use super::operator::{OperatorAction, Paused};
use super::types::*;
use crate::duration::format_millis;
use crate::ids::NodeKey;
use crate::plan::{Plan, Scope, StepKind};

/// Why `action` cannot be applied to the run as it stands, or `Ok`. Controls call this before
/// they send the action (so a mistake is refused at once), and the engine again when it
/// decides (so an action that lost a race is recorded as ignored, with the reason).
pub fn check_operation(plan: &Plan, st: &RunState, action: &OperatorAction) -> Result<(), String> {
    let status = st.status.as_str();
    match action {
        OperatorAction::Redrive => match st.status {
            RunStatus::Failed | RunStatus::Cancelled => Ok(()),
            RunStatus::Succeeded => Err(format!(
                "run {} succeeded; there is nothing to redrive (`retry --from STEP` runs steps again)",
                st.run_id
            )),
            RunStatus::Running => {
                Err(format!("run {} has not ended; only a failed or cancelled run is redriven", st.run_id))
            }
        },
        OperatorAction::Retry { from, input } => {
            let Some((ix, step)) = plan.steps.iter().enumerate().find(|(_, s)| s.id == *from) else {
                let known: Vec<&str> = plan.steps_in(Scope::Top).map(|(_, s)| s.id.as_str()).collect();
                return Err(format!(
                    "workflow `{}` has no step `{from}` (steps: {})",
                    plan.workflow.name,
                    known.join(", ")
                ));
            };
            match step.scope {
                Scope::Top => {}
                Scope::Body(l) => {
                    return Err(format!(
                        "`{from}` is in the body of loop `{}`; retry from the loop instead",
                        plan.steps[l].id
                    ));
                }
                Scope::Role => {
                    return Err(format!(
                        "`{from}` runs only as a fallback or compensation; retry from the step it serves"
                    ));
                }
            }
            if matches!(st.phase, Phase::Stopping { .. } | Phase::Compensating { .. }) {
                return Err(format!("run {} is stopping; retry once it has ended", st.run_id));
            }
            if input.is_some() && !takes_arguments(plan, ix) {
                return Err(format!(
                    "step `{from}` ({}) makes no tool call, so it has no input to patch",
                    plan.steps[ix].kind.tool_name()
                ));
            }
            Ok(())
        }
        OperatorAction::Pause if st.status.is_terminal() => Err(format!("run {} already ended ({status})", st.run_id)),
        OperatorAction::Pause if st.paused.is_some() => Err(format!("run {} is already paused", st.run_id)),
        OperatorAction::Pause => Ok(()),
        OperatorAction::Unpause if st.paused.is_none() => Err(format!("run {} is not paused", st.run_id)),
        OperatorAction::Unpause => Ok(()),
    }
}

/// True for steps whose attempts are tool calls with arguments (what `retry --input` patches).
fn takes_arguments(plan: &Plan, ix: usize) -> bool {
    matches!(plan.steps[ix].kind, StepKind::Tool { .. } | StepKind::Transform { .. })
}

/// The top-level step a node belongs to: through the node it stands in for, undoes or serves
/// (fallback, compensation, agent turns), its for_each parent, and its loop.
fn top_owner(plan: &Plan, st: &RunState, key: &NodeKey) -> Option<usize> {
    let mut k = key.clone();
    // Role chains are short (a fallback's compensation at most); the bound guards bad state.
    for _ in 0..16 {
        let n = st.nodes.get(&k)?;
        match &n.role {
            Role::Fallback(of) | Role::Compensation(of) | Role::Agent(of) => {
                k = of.clone();
                continue;
            }
            Role::Dag => {}
        }
        if n.index.is_some()
            && let Some(p) = k.item_parent()
        {
            k = p;
            continue;
        }
        return match plan.steps[n.step].scope {
            Scope::Top => Some(n.step),
            Scope::Body(l) => Some(l),
            Scope::Role => None,
        };
    }
    None
}

/// The DAG node a node works for: itself, or the node it stands in for, undoes or serves.
fn dag_node(st: &RunState, key: &NodeKey) -> NodeKey {
    let mut k = key.clone();
    for _ in 0..16 {
        match st.nodes.get(&k).map(|n| &n.role) {
            Some(Role::Fallback(of) | Role::Compensation(of) | Role::Agent(of)) => k = of.clone(),
            _ => break,
        }
    }
    k
}

/// Top-level steps that need `from`, directly or through others.
fn downstream(plan: &Plan, from: usize) -> BTreeSet<usize> {
    let mut set = BTreeSet::from([from]);
    loop {
        let before = set.len();
        for (ix, s) in plan.steps_in(Scope::Top) {
            if s.needs.iter().any(|n| set.contains(n)) {
                set.insert(ix);
            }
        }
        if set.len() == before {
            return set;
        }
    }
}

/// How a reset treats what a step already did.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Reset {
    /// Redrive: for_each items and loop iterations that completed are kept.
    KeepCompleted,
    /// Retry from a step: everything of the step runs again.
    All,
}

impl Decider<'_> {
    /// Applies an operator's action, or records why it was refused.
    pub(super) fn on_operated(&mut self, action: &OperatorAction, by: &str, reason: Option<&str>) {
        if let Err(why) = check_operation(self.plan, self.st, action) {
            self.ignore(format!("{} by {by} refused: {why}", action.name()));
            return;
        }
        match action {
            OperatorAction::Redrive => self.redrive(by, reason),
            OperatorAction::Retry { from, input } => self.retry_from(from, input.as_ref(), by, reason),
            OperatorAction::Pause => self.pause(by, reason),
            OperatorAction::Unpause => self.unpause(by, reason),
        }
    }

    /// Top-level steps a compensation undid: their effects are gone, so they run again.
    fn compensated(&self) -> BTreeSet<usize> {
        self.st
            .nodes
            .iter()
            .filter(|(_, n)| matches!(n.role, Role::Compensation(_)))
            .filter_map(|(k, _)| top_owner(self.plan, self.st, k))
            .collect()
    }

    fn redrive(&mut self, by: &str, reason: Option<&str>) {
        let failed: BTreeSet<usize> = self
            .plan
            .steps_in(Scope::Top)
            .filter(|(_, s)| {
                self.st
                    .nodes
                    .get(s.id.as_str())
                    .is_some_and(|n| matches!(n.status(), NodeStatus::Failed | NodeStatus::Cancelled))
            })
            .map(|(ix, _)| ix)
            .collect();
        let compensated = self.compensated();
        let again: BTreeSet<usize> = failed.union(&compensated).copied().collect();
        let not_started: Vec<String> = self
            .plan
            .steps_in(Scope::Top)
            .filter(|(ix, s)| !again.contains(ix) && !self.st.nodes.contains_key(s.id.as_str()))
            .map(|(_, s)| s.id.clone())
            .collect();
        let names = |set: &BTreeSet<usize>| set.iter().map(|&i| self.plan.steps[i].id.clone()).collect::<Vec<_>>();
        let values = json!({
            "by": by, "reason": reason, "from_status": self.st.status.as_str(),
            "failed": names(&failed), "compensated": names(&compensated), "not_started": not_started,
        });
        let mut why = format!("{by} redrove the run ({})", self.st.status.as_str());
        if let Some(r) = reason {
            why.push_str(&format!(": {r}"));
        }
        why.push_str(&format!(
            "; {} run again with fresh attempts, completed steps keep their outputs",
            list_or_none(&names(&again))
        ));
        if !compensated.is_empty() {
            why.push_str(&format!(" ({} had been compensated)", names(&compensated).join(", ")));
        }
        self.reopen("RunRedriven", Rec::new("redrive_run", why).values(values), by);
        for ix in again {
            self.reset_step(ix, Reset::KeepCompleted);
        }
        self.pend_unstarted();
    }

    fn retry_from(&mut self, from: &str, input: Option<&Value>, by: &str, reason: Option<&str>) {
        let Some(ix) = self.plan.steps.iter().position(|s| s.id == from) else {
            return;
        };
        let mut again = downstream(self.plan, ix);
        let compensated = if self.st.status.is_terminal() { self.compensated() } else { BTreeSet::new() };
        again.extend(compensated.iter().copied());
        let names: Vec<String> = again.iter().map(|&i| self.plan.steps[i].id.clone()).collect();
        let mut why = format!("{by} asked to run `{from}` and what follows it again");
        if let Some(r) = reason {
            why.push_str(&format!(": {r}"));
        }
        why.push_str(&format!("; running again: {}", names.join(", ")));
        if input.is_some() {
            why.push_str(&format!("; `{from}` runs with patched arguments"));
        }
        let values = json!({
            "by": by, "reason": reason, "from": from, "input_patch": input,
            "from_status": self.st.status.as_str(), "steps": names,
        });
        let rec = Rec::new("retry_from", why).values(values);
        if self.st.status.is_terminal() {
            self.reopen("RunRetried", rec, by);
        } else {
            self.record(rec, vec![]);
        }
        let key = NodeKey::new(from);
        match input {
            Some(patch) => {
                self.st.patches.insert(key, patch.clone());
            }
            None => {
                self.st.patches.remove(&key);
            }
        }
        for ix in again {
            self.reset_step(ix, Reset::All);
        }
        self.pend_unstarted();
    }

    /// Makes an ended run active again and records why.
    fn reopen(&mut self, event: &str, rec: Rec, by: &str) {
        self.st.status = RunStatus::Running;
        self.st.phase = Phase::Active;
        self.st.output = None;
        self.st.error = None;
        self.st.ended_at = None;
        self.st.reopened += 1;
        let emit = Command::EmitEvent {
            name: event.to_owned(),
            detail: json!({"run_id": self.st.run_id, "workflow": self.st.workflow, "by": by}),
        };
        self.record(rec, vec![emit]);
    }

    /// Queues every top-level step that has no node (a stopped run cleared its queue).
    fn pend_unstarted(&mut self) {
        let unstarted: Vec<usize> = self
            .plan
            .steps_in(Scope::Top)
            .filter(|(_, s)| !self.st.nodes.contains_key(s.id.as_str()))
            .map(|(ix, _)| ix)
            .collect();
        for ix in unstarted {
            self.st.pending.insert((0, ix));
        }
    }

    /// Forgets what top-level step `ix` did so it runs again (see [`Reset`]).
    fn reset_step(&mut self, ix: usize, how: Reset) {
        let key = NodeKey::new(&self.plan.steps[ix].id);
        let Some(node) = self.st.nodes.get(&key).cloned() else {
            self.st.pending.insert((0, ix));
            return;
        };
        let owned: Vec<NodeKey> =
            self.st.nodes.keys().filter(|k| top_owner(self.plan, self.st, k) == Some(ix)).cloned().collect();
        let is_loop = matches!(self.plan.steps[ix].kind, StepKind::Loop { .. });
        if how == Reset::KeepCompleted && node.items.is_some() {
            // Items that succeeded keep their outputs; the rest start again.
            let drop: Vec<NodeKey> =
                owned.into_iter().filter(|k| *k != key && !self.completed(&dag_node(self.st, k))).collect();
            self.forget(&drop);
            self.restart_node(&key);
            if let Some(items) = self.st.nodes.get_mut(&key).and_then(|n| n.items.as_mut()) {
                items.started = 0;
                items.done = 0;
                items.closing = false;
            }
            self.fill_items(&key);
        } else if how == Reset::KeepCompleted && is_loop {
            // Earlier iterations stand; the iteration that failed runs what did not complete.
            let i = node.loop_iteration;
            let drop: Vec<NodeKey> = owned
                .into_iter()
                .filter(|k| *k != key)
                .filter(|k| {
                    let root = dag_node(self.st, k);
                    // The loop's own fallback runs again too, if the loop fails again.
                    root == key
                        || (self.st.nodes.get(&root).is_some_and(|n| n.iteration >= i) && !self.completed(&root))
                })
                .collect();
            self.forget(&drop);
            self.restart_node(&key);
            for (b, s) in self.plan.steps_in(Scope::Body(ix)) {
                if !self.st.nodes.contains_key(&super::keys::node_key(&s.id, i, None)) {
                    self.st.pending.insert((i, b));
                }
            }
        } else {
            self.forget(&owned);
            self.st.pending.insert((0, ix));
        }
    }

    fn completed(&self, key: &NodeKey) -> bool {
        self.st
            .nodes
            .get(key)
            .is_some_and(|n| matches!(n.status(), NodeStatus::Succeeded | NodeStatus::FellBack | NodeStatus::Skipped))
    }

    /// Puts a kept node back to running (a for_each parent or a loop going on).
    fn restart_node(&mut self, key: &NodeKey) {
        if let Some(n) = self.st.nodes.get_mut(key) {
            n.state = NodeState::Running { error: None };
        }
        self.st.open.insert(key.clone());
    }

    /// Removes nodes, closing their tasks and timers and remembering their last attempts.
    fn forget(&mut self, keys: &[NodeKey]) {
        for key in keys {
            if let Some(task) = self.st.nodes.get(key).and_then(|n| n.task().cloned()) {
                self.close_task(key, &task, "the step runs again");
            }
            let cancels = self.clear_timers(key);
            self.out.commands.extend(cancels);
            if let Some(n) = self.st.nodes.remove(key) {
                let base = self.st.attempt_base.entry(key.clone()).or_insert(0);
                *base = (*base).max(n.attempt);
            }
            self.st.open.remove(key);
            self.st.held.remove(key);
            self.st.retried.remove(key);
        }
    }

    fn pause(&mut self, by: &str, reason: Option<&str>) {
        self.st.paused = Some(Paused { at: self.at, by: by.to_owned(), reason: reason.map(str::to_owned) });
        let in_flight = self.st.open.iter().filter(|k| self.is_call_in_flight(k)).count();
        let mut why = format!("{by} paused the run");
        if let Some(r) = reason {
            why.push_str(&format!(": {r}"));
        }
        why.push_str(&format!(
            "; nothing new is dispatched and no timer fires until unpaused ({in_flight} call{} in flight finish)",
            if in_flight == 1 { "" } else { "s" }
        ));
        let emit = Command::EmitEvent {
            name: "RunPaused".into(),
            detail: json!({"run_id": self.st.run_id, "workflow": self.st.workflow, "by": by, "reason": reason}),
        };
        self.record(
            Rec::new("pause_run", why).values(json!({"by": by, "reason": reason, "in_flight": in_flight})),
            vec![emit],
        );
    }

    fn unpause(&mut self, by: &str, reason: Option<&str>) {
        let Some(paused) = self.st.paused.take() else { return };
        let held = std::mem::take(&mut self.st.held);
        let mut timers: Vec<(u64, String)> = std::mem::take(&mut self.st.held_timers)
            .into_iter()
            .filter_map(|id| self.st.timers.get(&id).map(|t| (t.at, id)))
            .collect();
        timers.sort();
        let mut why = format!(
            "{by} unpaused the run after {} (paused by {})",
            format_millis(self.at.saturating_sub(paused.at)),
            paused.by
        );
        if let Some(r) = reason {
            why.push_str(&format!(": {r}"));
        }
        why.push_str(&format!("; {} held attempt(s) start, {} held timer(s) fire late", held.len(), timers.len()));
        let emit = Command::EmitEvent {
            name: "RunUnpaused".into(),
            detail: json!({"run_id": self.st.run_id, "workflow": self.st.workflow, "by": by}),
        };
        let values = json!({
            "by": by, "reason": reason, "paused_at": paused.at, "paused_by": paused.by,
            "held_attempts": held, "held_timers": timers.iter().map(|(_, id)| id).collect::<Vec<_>>(),
        });
        self.record(Rec::new("unpause_run", why).values(values), vec![emit]);
        for (due, id) in timers {
            self.record(
                Rec::new(
                    "fire_late",
                    format!(
                        "timer `{id}` was due {} ago, while the run was paused; it fires now",
                        format_millis(self.at.saturating_sub(due))
                    ),
                )
                .values(json!({"timer": id, "due": due, "late_ms": self.at.saturating_sub(due)})),
                vec![],
            );
            self.on_timer(&id);
        }
        for (key, attempt) in held {
            let still =
                self.st.nodes.get(&key).is_some_and(|n| n.attempt == attempt && n.status() == NodeStatus::Running);
            if still && self.st.phase != Phase::Done {
                self.start_attempt(&key, attempt);
            }
        }
    }

    /// While paused: holds an attempt about to start; true when it was held.
    pub(super) fn hold_attempt(&mut self, key: &NodeKey, attempt: u32) -> bool {
        if self.st.paused.is_none() {
            return false;
        }
        self.st.held.insert(key.clone(), attempt);
        self.record(
            Rec::new("hold", format!("the run is paused: attempt {attempt} starts when it is unpaused"))
                .node(key)
                .values(json!({"attempt": attempt})),
            vec![],
        );
        true
    }

    /// While paused: holds a timer that came due; true when it was held.
    pub(super) fn hold_timer(&mut self, id: &str) -> bool {
        if self.st.paused.is_none() || !self.st.timers.contains_key(id) {
            return false;
        }
        if self.st.held_timers.insert(id.to_owned()) {
            self.record(
                Rec::new("hold_timer", format!("timer `{id}` came due while the run is paused; it fires on unpause"))
                    .values(json!({"timer": id})),
                vec![],
            );
        }
        true
    }

    /// The first attempt number of a node that starts (again): one after its last, if an
    /// operator made it run again.
    pub(super) fn first_attempt(&self, key: &NodeKey) -> u32 {
        self.st.attempt_base.get(key).copied().unwrap_or(0) + 1
    }

    /// How many attempts of the node's current run have been made (for its retry policy).
    pub(super) fn attempts_made(&self, key: &NodeKey, attempt: u32) -> u32 {
        attempt.saturating_sub(self.st.attempt_base.get(key).copied().unwrap_or(0))
    }
}

fn list_or_none(names: &[String]) -> String {
    if names.is_empty() { "no step needs to".to_owned() } else { names.join(", ") }
}
