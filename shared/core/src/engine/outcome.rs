//! How nodes end (success, skip, retry, fallback, failure) and how the run ends (output,
//! stopping, compensation newest first).

use serde_json::{Value, json};

use super::context::{Visible, node_context};
use super::decider::{Decider, End, Rec};
use super::keys::role_key;
use super::types::*;
use crate::duration::format_millis;
use crate::error_kind::ErrorKind;
use crate::ids::{NodeKey, TaskId};
use crate::plan::Scope;
use crate::retry::backoff_delay;

impl Decider<'_> {
    /// Ends a node with `output`, then lets its parent (items, fallback target) react.
    pub(super) fn succeed(&mut self, key: &NodeKey, output: Value, reason: &str, values: Value) {
        let cancels = self.end_node(key, End::Succeeded(output));
        self.record(Rec::new("succeed_step", reason).node(key).values(values), cancels);
        self.after_end(key);
    }

    pub(super) fn skip(&mut self, key: &NodeKey, reason: String, values: Value) {
        let cancels = self.end_node(key, End::Skipped(reason.clone()));
        self.record(Rec::new("skip", reason).node(key).values(values), cancels);
    }

    /// Marks the node ended; returns commands cancelling its timers.
    pub(super) fn end_node(&mut self, key: &NodeKey, end: End) -> Vec<Command> {
        self.st.end_counter += 1;
        let ended = Ended { at: self.at, order: self.st.end_counter };
        if let Some(n) = self.st.nodes.get_mut(key) {
            let last = n.error().cloned();
            n.state = match end {
                End::Succeeded(output) => NodeState::Succeeded { output, error: last, ended },
                End::Skipped(reason) => NodeState::Skipped { reason, ended },
                End::Failed { error, reason } => NodeState::Failed { error, reason, ended },
                End::FellBack { output, reason, stale } => NodeState::FellBack {
                    output,
                    // A fallback runs only once attempts are exhausted, which records the error.
                    error: last.unwrap_or_else(|| StepError::new(ErrorKind::Tool, "attempts exhausted")),
                    reason,
                    stale,
                    ended,
                },
                End::Cancelled => NodeState::Cancelled { reason: "the run stopped".into(), error: last, ended },
            };
        }
        self.st.open.remove(key);
        self.st.held.remove(key);
        self.clear_timers(key)
    }

    pub(super) fn clear_timers(&mut self, key: &NodeKey) -> Vec<Command> {
        if self.st.timers.is_empty() {
            return vec![];
        }
        let ids: Vec<String> =
            self.st.timers.iter().filter(|(_, t)| t.kind.node() == Some(key)).map(|(id, _)| id.clone()).collect();
        ids.into_iter()
            .map(|id| {
                self.st.timers.remove(&id);
                self.st.held_timers.remove(&id);
                Command::CancelTimer { id }
            })
            .collect()
    }

    pub(super) fn close_task(&mut self, key: &NodeKey, task: &TaskId, outcome: &str) {
        self.st.tasks.remove(task);
        if let Some(NodeState::Waiting { task, .. }) = self.st.nodes.get_mut(key).map(|n| &mut n.state) {
            *task = None;
        }
        self.out.commands.push(Command::CloseTask { task: task.clone(), outcome: outcome.to_owned() });
    }

    /// Reacts to a node that ended well: items report to their parent, fallbacks to their target.
    fn after_end(&mut self, key: &NodeKey) {
        let Some(node) = self.st.nodes.get(key).cloned() else {
            return;
        };
        if let Role::Agent(agent) = &node.role {
            let agent = agent.clone();
            self.agent_part_ended(key, &agent, Ok(node.output().cloned().unwrap_or(Value::Null)));
            return;
        }
        if let Role::Fallback(of) = &node.role
            && matches!(self.plan.steps[node.step].kind, crate::plan::StepKind::CacheLookup { .. })
        {
            let of = of.clone();
            let found = node.output().cloned().unwrap_or(Value::Null);
            let age = found.get("age_ms").and_then(Value::as_u64).unwrap_or(0);
            let stale = json!({"cached_at": found.get("cached_at"), "age_ms": age});
            let error = self.st.nodes.get(&of).and_then(|n| n.error().cloned());
            let why = format!(
                "served the cached response, {} old, because {}",
                format_millis(age),
                error
                    .as_ref()
                    .map(|e| format!("the call failed with `{}`", e.kind))
                    .unwrap_or_else(|| "the call failed".into())
            );
            let out = found.get("value").cloned().unwrap_or(Value::Null);
            let end = End::FellBack { output: out, reason: why.clone(), stale: Some(stale.clone()) };
            let cancels = self.end_node(&of, end);
            self.record(Rec::new("fell_back", why).node(&of).values(json!({"stale": stale, "error": error})), cancels);
            self.after_end(&of);
            return;
        }
        if let Role::Fallback(of) = &node.role {
            let of = of.clone();
            let out = node.output().cloned().unwrap_or(Value::Null);
            let fb_id = self.plan.steps[node.step].id.clone();
            let end = End::FellBack { output: out, reason: format!("fallback `{fb_id}` stood in"), stale: None };
            let cancels = self.end_node(&of, end);
            self.record(
                Rec::new("fell_back", format!("fallback `{fb_id}` succeeded; its output stands in")).node(&of),
                cancels,
            );
            self.after_end(&of);
            return;
        }
        if node.index.is_some()
            && let Some(parent) = key.item_parent()
        {
            if self.st.nodes.get(&parent).is_none_or(|p| p.status() != NodeStatus::Running) {
                // The parent already gave up (fallback running, failed, cancelled): late items
                // are recorded but change nothing.
                return;
            }
            self.item_ended(&parent);
        }
    }

    /// One of `parent`'s items ended (well, or within a map's tolerance): the parent ends when
    /// it was the last, else the next items start.
    pub(super) fn item_ended(&mut self, parent: &NodeKey) {
        let parent = parent.clone();
        let complete = match self.st.nodes.get_mut(&parent).and_then(|p| p.items.as_mut()) {
            Some(items) => {
                items.done += 1;
                items.done as usize == items.values.len()
            }
            None => return,
        };
        if self.st.phase != Phase::Active {
            return;
        }
        if complete && self.st.nodes.get(&parent).is_some_and(|n| super::item_source::is_map_node(self.plan, n)) {
            self.write_manifest(&parent);
        } else if complete {
            let total = self.st.nodes.get(&parent).and_then(|p| p.items.as_ref()).map(|i| i.values.len()).unwrap_or(0);
            let outputs: Vec<Value> = (0..total)
                .map(|i| {
                    self.st.nodes.get(&parent.item(i as u32)).and_then(|n| n.output().cloned()).unwrap_or(Value::Null)
                })
                .collect();
            self.succeed(&parent, Value::Array(outputs), &format!("all {total} items succeeded"), Value::Null);
        } else {
            self.fill_items(&parent);
        }
    }

    /// An attempt failed: retry per policy, else the attempts are exhausted.
    pub(super) fn attempt_failed(&mut self, key: &NodeKey, error: StepError) {
        let Some(node) = self.st.nodes.get(key) else {
            return;
        };
        let policies = &self.plan.steps[node.step].retry;
        let attempt = node.attempt;
        let listed = policies.len() > 1;
        let chosen = policies.iter().enumerate().find(|(_, p)| p.on.iter().any(|on| on.covers(&error.kind)));
        // One policy counts the node's attempts; each policy of a list counts its own.
        let tried = match chosen {
            Some((i, _)) if listed => 1 + self.st.retried.get(key).and_then(|c| c.get(i)).copied().unwrap_or(0),
            _ => self.attempts_made(key, attempt),
        };
        if self.st.phase == Phase::Active
            && let Some((i, policy)) = chosen
            && tried < policy.max_attempts
        {
            let (jittered, base) = backoff_delay(policy, if listed { tried } else { attempt }, &mut self.st.rng);
            let delay = jittered.max(error.retry_after_ms.unwrap_or(0));
            let max_attempts = policy.max_attempts;
            if listed {
                let counts = self.st.retried.entry(key.to_owned()).or_default();
                counts.resize(counts.len().max(i + 1), 0);
                counts[i] += 1;
            }
            if let Some(n) = self.st.nodes.get_mut(key) {
                n.state = NodeState::RetryScheduled { error: error.clone() };
            }
            let mut commands = self.clear_timers(key);
            commands.push(self.arm(TimerKind::Retry { node: key.to_owned(), attempt: attempt + 1 }, self.at + delay));
            let reason = if listed {
                format!(
                    "attempt {attempt} failed with `{}`, which retry policy {} covers: its attempt {tried} of {max_attempts}; attempt {} in {}",
                    error.kind,
                    i + 1,
                    attempt + 1,
                    format_millis(delay)
                )
            } else {
                format!(
                    "attempt {tried} of {max_attempts} failed with `{}`, which is retried; attempt {} in {}",
                    error.kind,
                    attempt + 1,
                    format_millis(delay)
                )
            };
            let mut values = json!({
                "error": error, "backoff_ms": base, "delay_ms": delay,
                "retry_after_ms": error.retry_after_ms, "next_attempt": attempt + 1,
            });
            if listed {
                values["policy"] = json!(i + 1);
            }
            self.record(Rec::new("retry", reason).node(key).values(values), commands);
            return;
        }
        let why = match chosen {
            _ if self.st.phase != Phase::Active => "the run is stopping".to_owned(),
            None if listed => format!("no retry policy covers `{}`", error.kind),
            None => format!("`{}` is not in `retry.on`", error.kind),
            Some((_, p)) if p.max_attempts == 1 => "it had a single attempt".to_owned(),
            Some((i, p)) if listed => format!("retry policy {} used all its {} attempts", i + 1, p.max_attempts),
            Some((_, p)) => format!("all {} attempts used", p.max_attempts),
        };
        self.record(
            Rec::new(
                "attempts_exhausted",
                format!("attempt {attempt} failed with `{}`: {}; {why}", error.kind, error.message),
            )
            .node(key)
            .values(json!({"error": error})),
            vec![],
        );
        self.attempt_exhausted(key, error);
    }

    /// No attempts left: run the fallback if there is one, else fail for good.
    pub(super) fn attempt_exhausted(&mut self, key: &NodeKey, error: StepError) {
        let Some(node) = self.st.nodes.get(key).cloned() else {
            return;
        };
        if node.index.is_some()
            && let Some(parent) = key.item_parent()
        {
            let cancels = self.end_node(key, End::Failed { error: error.clone(), reason: None });
            self.record(Rec::new("fail_step", format!("item failed: {}", error.message)).node(key), cancels);
            if self.st.nodes.get(&parent).is_some_and(|p| p.status() == NodeStatus::Running) {
                if self.map_batch_failed(&parent, node.index.unwrap_or(0), &error) {
                    return;
                }
                let msg = format!("item {} failed: {}", node.index.unwrap_or(0), error.message);
                self.attempt_exhausted(&parent, StepError { message: msg, ..error });
            }
            return;
        }
        let fallback = self.plan.steps[node.step].fallback;
        if let (Some(fb), Role::Dag, Phase::Active) = (fallback, &node.role, &self.st.phase) {
            let fb_key = role_key(&self.plan.steps[fb].id, key);
            if let Some(n) = self.st.nodes.get_mut(key) {
                n.state = NodeState::Waiting { task: None, error: Some(error.clone()) };
            }
            // The failed attempt's limit must not fire on the node while it waits for its
            // fallback: that would fail it again and start the fallback twice.
            let cancels = self.clear_timers(key);
            let mut fresh = self.fresh_node(fb, node.iteration, None, Role::Fallback(key.clone()));
            fresh.iteration = node.iteration;
            self.st.nodes.insert(fb_key.clone(), fresh);
            self.st.open.insert(fb_key.clone());
            let fb_id = self.plan.steps[fb].id.clone();
            self.record(
                Rec::new("fall_back", format!("attempts exhausted with `{}`; running fallback `{fb_id}`", error.kind))
                    .node(key)
                    .values(json!({"error": error})),
                cancels,
            );
            let first = self.first_attempt(&fb_key);
            self.start_attempt(&fb_key, first);
            return;
        }
        self.fail_for_good(key, error);
    }

    /// The node failed and nothing can save it: tell its parent, or stop the run.
    pub(super) fn fail_for_good(&mut self, key: &NodeKey, error: StepError) {
        let Some(node) = self.st.nodes.get(key).cloned() else {
            return;
        };
        let mut cancels = self.end_node(key, End::Failed { error: error.clone(), reason: Some(error.message.clone()) });
        let step_id = self.plan.steps[node.step].id.clone();
        cancels.push(Command::EmitEvent {
            name: "StepFailed".into(),
            detail: json!({"run_id": self.st.run_id, "step": step_id, "node": key, "error": error}),
        });
        self.record(
            Rec::new("fail_step", format!("failed for good: {} ({})", error.message, error.kind))
                .node(key)
                .values(json!({"error": error})),
            cancels,
        );
        match &node.role {
            Role::Fallback(of) => {
                let of = of.clone();
                let e =
                    match (&self.plan.steps[node.step].kind, self.st.nodes.get(&of).and_then(|n| n.error().cloned())) {
                        // No cached response to serve: the step fails with its own error.
                        (crate::plan::StepKind::CacheLookup { .. }, Some(own)) => {
                            StepError { message: format!("{}; {}", own.message, error.message), ..own }
                        }
                        _ => StepError {
                            message: format!("fallback `{step_id}` failed too: {}", error.message),
                            ..error
                        },
                    };
                self.fail_for_good(&of, e);
            }
            Role::Compensation(_) => {}
            Role::Agent(agent) => {
                let agent = agent.clone();
                self.agent_part_ended(key, &agent, Err(error));
            }
            Role::Dag => {
                if let Scope::Body(l) = self.plan.steps[node.step].scope {
                    let loop_key = NodeKey::new(&self.plan.steps[l].id);
                    if self.st.nodes.get(&loop_key).is_some_and(|n| !n.status().is_terminal()) {
                        let e =
                            StepError { message: format!("body step `{step_id}` failed: {}", error.message), ..error };
                        self.attempt_exhausted(&loop_key, e);
                    }
                } else if self.st.phase == Phase::Active {
                    let reason = format!(
                        "step `{step_id}` failed for good; no new steps start, in-flight steps end, then compensation runs"
                    );
                    let error = RunError {
                        step: Some(step_id.clone()),
                        kind: error.kind.clone(),
                        message: error.message.clone(),
                    };
                    self.stop_failed(error, Rec::new("stop_run", reason));
                }
            }
        }
    }

    /// Settles the run after scheduling: complete it, or drive stopping and compensation.
    pub(super) fn settle(&mut self) {
        match self.st.phase.clone() {
            Phase::Active => {
                if self.st.pending.is_empty() && self.st.open.is_empty() {
                    self.complete_success();
                }
            }
            Phase::Stopping { outcome } => {
                self.cancel_waits();
                if self.st.open.iter().any(|k| self.is_call_in_flight(k)) {
                    return;
                }
                let open: Vec<NodeKey> = self.st.open.iter().cloned().collect();
                for key in open {
                    let cancels = self.end_node(&key, End::Cancelled);
                    self.record(Rec::new("cancel_step", "the run stopped before this step ended").node(&key), cancels);
                }
                let mut done: Vec<(u64, NodeKey)> = self
                    .st
                    .nodes
                    .iter()
                    .filter(|(_, n)| {
                        n.status() == NodeStatus::Succeeded
                            && n.role == Role::Dag
                            && n.index.is_none()
                            && self.plan.compensate.contains_key(&n.step)
                    })
                    .map(|(k, n)| (n.end_order().unwrap_or(0), k.clone()))
                    .collect();
                done.sort_by_key(|d| std::cmp::Reverse(d.0));
                let queue: Vec<NodeKey> = done.into_iter().map(|(_, k)| k).collect();
                if !queue.is_empty() {
                    self.record(
                        Rec::new("compensate", format!("compensating {} completed steps, newest first", queue.len()))
                            .values(json!({"order": queue})),
                        vec![],
                    );
                }
                self.st.phase = Phase::Compensating { outcome, queue };
                self.settle();
            }
            Phase::Compensating { outcome, mut queue } => {
                if !self.st.open.is_empty() {
                    return;
                }
                if queue.is_empty() {
                    self.complete_stopped(outcome);
                    return;
                }
                let target = queue.remove(0);
                self.st.phase = Phase::Compensating { outcome, queue };
                let Some(t) = self.st.nodes.get(&target).cloned() else {
                    return self.settle();
                };
                let Some(&comp) = self.plan.compensate.get(&t.step) else {
                    return self.settle();
                };
                let key = role_key(&self.plan.steps[comp].id, &target);
                let fresh = self.fresh_node(comp, t.iteration, None, Role::Compensation(target.clone()));
                self.st.nodes.insert(key.clone(), fresh);
                self.st.open.insert(key.clone());
                let comp_id = self.plan.steps[comp].id.clone();
                self.record(
                    Rec::new("compensate_step", format!("undoing `{target}` with `{comp_id}`")).node(&key),
                    vec![],
                );
                let first = self.first_attempt(&key);
                self.start_attempt(&key, first);
                // A compensation step that cannot even start ends at once; move on.
                if self.st.open.is_empty() {
                    self.settle();
                }
            }
            Phase::Done => {}
        }
    }

    /// Stops everything that waits rather than runs: timers, tasks, retries, sleeps.
    fn cancel_waits(&mut self) {
        self.st.pending.clear();
        let waiting: Vec<NodeKey> = self
            .st
            .open
            .iter()
            .filter(|k| {
                self.st
                    .nodes
                    .get(*k)
                    .is_some_and(|n| matches!(n.status(), NodeStatus::Waiting | NodeStatus::RetryScheduled))
            })
            .filter(|k| !self.waits_on_fallback(k))
            .cloned()
            .collect();
        for key in waiting {
            if let Some(task) = self.st.nodes.get(&key).and_then(|n| n.task().cloned()) {
                self.close_task(&key, &task, "the run stopped");
            }
            let cancels = self.end_node(&key, End::Cancelled);
            self.record(Rec::new("cancel_step", "the run stopped while this step waited").node(&key), cancels);
        }
    }

    /// True when the node's fallback step is running for it; the fallback's result ends it.
    fn waits_on_fallback(&self, key: &NodeKey) -> bool {
        let suffix = format!("~{key}");
        self.st.open.iter().any(|k| {
            k.ends_with(&suffix) && self.st.nodes.get(k).is_some_and(|n| n.role == Role::Fallback(key.clone()))
        })
    }

    /// Stops the run as a failure with `error`, recording `rec` (which says why and what follows):
    /// no new steps start, the ones in flight end, then completed steps are compensated.
    pub(super) fn stop_failed(&mut self, error: RunError, rec: Rec) {
        self.st.phase = Phase::Stopping { outcome: RunStatus::Failed };
        self.st.error = Some(error);
        self.record(rec, vec![]);
    }

    fn complete_success(&mut self) {
        let output = match &self.plan.output {
            Some(expr) => {
                let ctx = node_context(self.plan, self.st, 0, None, Some(expr.refs()), Visible::All);
                match expr.eval(&ctx) {
                    Ok(v) => v,
                    Err(e) => {
                        let StepError { kind, message, .. } = super::dispatch::expression_error_in("`output`", &e);
                        self.stop_failed(
                            RunError { step: None, kind, message: message.clone() },
                            Rec::new("stop_run", message),
                        );
                        return self.settle();
                    }
                }
            }
            None => self.default_output(),
        };
        self.st.status = RunStatus::Succeeded;
        self.st.phase = Phase::Done;
        self.st.output = Some(output.clone());
        self.st.ended_at = Some(self.at);
        let mut commands = vec![
            Command::CompleteRun { status: RunStatus::Succeeded },
            Command::EmitEvent {
                name: "RunSucceeded".into(),
                detail: json!({"run_id": self.st.run_id, "workflow": self.st.workflow, "output": output}),
            },
        ];
        commands.extend(self.drop_deadline());
        self.record(Rec::new("complete_run", "every step ended").values(json!({"output": output})), commands);
    }

    /// An ended run's deadline no longer applies: its timer goes (a redriven run has none).
    fn drop_deadline(&mut self) -> Option<Command> {
        self.st.timers.remove(DEADLINE_TIMER).map(|_| Command::CancelTimer { id: DEADLINE_TIMER.to_owned() })
    }

    /// Without an `output` expression: the outputs of the steps nothing depends on, by id.
    fn default_output(&self) -> Value {
        let top: Vec<(usize, &crate::plan::PlannedStep)> = self.plan.steps_in(Scope::Top).collect();
        let mut out = serde_json::Map::new();
        for (i, s) in &top {
            let needed = top.iter().any(|(_, o)| o.needs.contains(i));
            if !needed {
                let v = self.st.nodes.get(s.id.as_str()).and_then(|n| n.output().cloned()).unwrap_or(Value::Null);
                out.insert(s.id.clone(), v);
            }
        }
        Value::Object(out)
    }

    fn complete_stopped(&mut self, outcome: RunStatus) {
        self.st.status = outcome;
        self.st.phase = Phase::Done;
        self.st.ended_at = Some(self.at);
        let name = if outcome == RunStatus::Cancelled { "RunCancelled" } else { "RunFailed" };
        let error = self.st.error.clone();
        let mut commands = vec![
            Command::CompleteRun { status: outcome },
            Command::EmitEvent {
                name: name.into(),
                detail: json!({"run_id": self.st.run_id, "workflow": self.st.workflow, "error": error}),
            },
        ];
        commands.extend(self.drop_deadline());
        let reason = match &error {
            Some(e) => {
                format!("run {}: {}", if outcome == RunStatus::Cancelled { "cancelled" } else { "failed" }, e.message)
            }
            None => "run stopped".into(),
        };
        self.record(Rec::new("complete_run", reason).values(json!({"error": error})), commands);
    }
}
