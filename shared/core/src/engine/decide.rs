//! Entry points: create a run, apply one event, re-issue in-flight work after a restart.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Value, json};

use super::decider::{Decider, Rec};
use super::dispatch::{cache_key, call_in_flight, dispatch_for};
use super::types::*;
use crate::audit::GENESIS_HASH;
use crate::error_kind::ErrorKind;
use crate::ids::{NodeKey, RunId, TaskId};
use crate::plan::StepKind;
use crate::plan::{Plan, Scope};

/// The state of a run before its `RunStarted` event.
pub fn new_run(plan: &Plan, run_id: impl Into<RunId>, at: u64) -> RunState {
    RunState {
        run_id: run_id.into(),
        workflow: plan.workflow.name.clone(),
        definition: plan.hash.clone(),
        status: RunStatus::Running,
        phase: Phase::Active,
        input: Value::Null,
        output: None,
        error: None,
        created_at: at,
        ended_at: None,
        nodes: BTreeMap::new(),
        pending: BTreeSet::new(),
        open: BTreeSet::new(),
        timers: BTreeMap::new(),
        tasks: BTreeMap::new(),
        audit_seq: 0,
        audit_head: GENESIS_HASH.to_owned(),
        seals: Default::default(),
        rng: 0,
        nonce: String::new(),
        end_counter: 0,
        memory: None,
        parent: None,
        paused: None,
        held: BTreeMap::new(),
        held_timers: BTreeSet::new(),
        attempt_base: BTreeMap::new(),
        retried: BTreeMap::new(),
        patches: BTreeMap::new(),
        reopened: 0,
        engine: 0,
        spent: None,
    }
}

/// Applies `event` to `state` (updated in place) and returns the commands and audit records.
pub fn decide(plan: &Plan, state: &mut RunState, event: &Event) -> Decision {
    let mut d = Decider {
        plan,
        st: state,
        at: event.at,
        event: event.kind.name(),
        source: event,
        event_hash: None,
        out: Decision::default(),
    };
    if d.st.phase == Phase::Done && !event.kind.reopens() {
        // The log of an ended run is closed: late results and timers change nothing.
        return d.out;
    }
    match &event.kind {
        EventKind::RunStarted { input, seed, memory, engine } => d.on_started(input, *seed, memory.as_ref(), *engine),
        EventKind::StepSucceeded { node, attempt, output, mocked, report } => {
            d.on_succeeded(node, *attempt, output, *mocked, report.as_ref())
        }
        EventKind::StepFailed { node, attempt, error, mocked, report } => {
            d.on_failed(node, *attempt, error, *mocked, report.as_ref())
        }
        EventKind::TimerFired { timer } => d.on_timer(timer),
        EventKind::HumanResolved { task, answer } => d.on_answer(task, answer),
        EventKind::EventReceived { task, payload } => d.on_event_received(task, payload),
        EventKind::CancelRequested { reason } => d.on_cancel(reason),
        EventKind::Operated { action, by, reason } => d.on_operated(action, by, reason.as_deref()),
    }
    d.advance();
    d.out
}

/// True when the run has a tool call out (not held by a pause): it moves without the outside
/// world. Cheap: nothing is rendered.
pub fn calls_in_flight(plan: &Plan, state: &RunState) -> bool {
    state.open.iter().any(|key| call_in_flight(plan, state, key))
}

/// Commands a driver re-issues after a restart: the current attempt of every in-flight tool call
/// (same idempotency key) and every pending timer.
pub fn in_flight(plan: &Plan, state: &RunState) -> Vec<Command> {
    let mut commands = Vec::new();
    for key in state.open.iter() {
        if call_in_flight(plan, state, key)
            && let Ok(dispatch) = dispatch_for(plan, state, key)
        {
            commands.push(Command::Dispatch(dispatch));
        }
    }
    // Timers held by a pause fire on unpause, not on a restart.
    for (id, t) in state.timers.iter().filter(|(id, _)| !state.held_timers.contains(*id)) {
        commands.push(Command::ScheduleTimer { id: id.clone(), at: t.at });
    }
    commands
}

/// The run's nonce: the next SplitMix64 number after the seed, moved off the jitter's sequence
/// (a bijection: it scrambles the seed, it does not hide it; the seed is in the run's first
/// audit record anyway). What keeps a token from being made up is that the seed is random and
/// only the run's readers see it.
fn nonce_of(seed: u64) -> String {
    let mut state = seed ^ 0x7461_736b_2d74_6f6b;
    format!("{:016x}", crate::retry::next_random(&mut state))
}

impl Decider<'_> {
    fn on_started(&mut self, input: &Value, seed: u64, memory: Option<&Value>, engine: u32) {
        if self.st.audit_seq > 0 {
            self.ignore("duplicate start: the run already started");
            return;
        }
        self.st.engine = engine;
        self.st.input = input.clone();
        self.st.memory = memory.cloned();
        self.st.rng = seed;
        self.st.nonce = nonce_of(seed);
        let plan = self.plan;
        self.st.pending = plan.steps_in(Scope::Top).map(|(i, _)| (0, i)).collect();
        let emit = Command::EmitEvent {
            name: "RunStarted".into(),
            detail: json!({"run_id": self.st.run_id, "workflow": self.st.workflow, "definition": self.st.definition}),
        };
        let n = self.st.pending.len();
        let reason =
            format!("run of `{}` started with {n} top-level step{}", self.st.workflow, if n == 1 { "" } else { "s" });
        let mut values = json!({"input": input, "seed": seed});
        if let Some(m) = memory {
            // What the run knew from the start is part of why it decided what it did.
            values["memory"] = m.clone();
        }
        let mut commands = vec![emit];
        if let Some(limit) = plan.deadline {
            commands.push(self.arm(TimerKind::Deadline, self.at + limit.0));
        }
        self.record(Rec::new("start_run", reason).values(values), commands);
    }

    /// The workflow's `deadline` passed with the run still going: it stops as a failure would
    /// stop it (no new steps, in-flight steps end, completed steps are compensated).
    fn on_deadline(&mut self, due: u64) {
        if !matches!(self.st.phase, Phase::Active) {
            self.ignore("the deadline passed while the run was already stopping");
            return;
        }
        let limit = self.plan.deadline.map(|m| crate::duration::format_millis(m.0)).unwrap_or_default();
        let message = format!("the run did not end within its deadline of {limit}");
        let reason =
            format!("{message}; no new steps start, in-flight steps end, then completed steps are compensated");
        self.stop_failed(
            RunError { step: None, kind: ErrorKind::Timeout, message },
            Rec::new("deadline_run", reason).values(json!({"deadline": limit, "due": due})),
        );
    }

    /// Checks that a result names the current attempt of a node that is waiting for it.
    fn current_call(&mut self, key: &NodeKey, attempt: u32) -> bool {
        let stale = match self.st.nodes.get(key) {
            None => Some("no such node".to_owned()),
            Some(n) if n.status().is_terminal() => Some(format!("the node already ended ({})", n.status().as_str())),
            Some(n) if n.attempt != attempt => {
                Some(format!("attempt {attempt} is not current (current: {})", n.attempt))
            }
            Some(n) if n.status() != NodeStatus::Running || !self.is_call_in_flight(key) => {
                Some(format!("no call is in flight (status {})", n.status().as_str()))
            }
            Some(_) => None,
        };
        if let Some(why) = stale {
            let mut rec = Rec::new("ignore", format!("stale or duplicate result ignored: {why}"))
                .values(json!({"attempt": attempt}));
            if self.st.nodes.contains_key(key) {
                rec = rec.node(key);
            }
            self.record(rec, vec![]);
            return false;
        }
        true
    }

    fn on_succeeded(&mut self, key: &NodeKey, attempt: u32, output: &Value, mocked: bool, report: Option<&Value>) {
        if !self.current_call(key, attempt) {
            return;
        }
        if let Some(n) = self.st.nodes.get_mut(key) {
            n.mocked = mocked;
        }
        if self.map_call_succeeded(key, output) {
            return;
        }
        // Keep the response for `fallback: cache` (scripted answers never stand in for real ones).
        if let Some(node) = self.st.nodes.get(key)
            && node.role == Role::Dag
            && !mocked
            && let Some(ttl) = self.plan.steps[node.step].cache
            && let Ok(cache_key) = cache_key(self.plan, self.st, key)
        {
            self.out.commands.push(Command::PutCache { key: cache_key, value: output.clone(), ttl_ms: ttl.0 });
        }
        self.add_turn_usage(key, report);
        self.add_run_usage(key, report);
        let why = if mocked { "the tool call returned (mocked)" } else { "the tool call returned" };
        let mut values = json!({"mocked": mocked});
        if let Some(r) = report {
            values["tool"] = r.clone();
        }
        self.succeed(key, output.clone(), why, values);
    }

    fn on_failed(&mut self, key: &NodeKey, attempt: u32, error: &StepError, mocked: bool, report: Option<&Value>) {
        if !self.current_call(key, attempt) {
            return;
        }
        if let Some(n) = self.st.nodes.get_mut(key) {
            n.mocked = mocked;
        }
        self.add_turn_usage(key, report);
        self.add_run_usage(key, report);
        if let Some(r) = report {
            // What the tool saw (a model's raw answers and repairs) is evidence for the decision
            // that follows: record it first, in its own record.
            let why = format!("attempt {attempt} failed with `{}`; the tool's account of the call", error.kind);
            self.record(Rec::new("tool_report", why).node(key).values(json!({"tool": r})), vec![]);
        }
        self.attempt_failed(key, error.clone());
    }

    pub(super) fn on_timer(&mut self, id: &str) {
        if self.hold_timer(id) {
            return;
        }
        let Some(timer) = self.st.timers.remove(id) else {
            self.ignore(format!("timer `{id}` is not pending (fired twice or no longer needed)"));
            return;
        };
        let Some(key) = timer.kind.node().cloned() else {
            self.on_deadline(timer.at);
            return;
        };
        let Some(node) = self.st.nodes.get(&key).cloned() else {
            self.ignore(format!("timer `{id}` names no node"));
            return;
        };
        match timer.kind {
            TimerKind::Retry { attempt, .. } => {
                if node.status() == NodeStatus::RetryScheduled && node.attempt + 1 == attempt {
                    self.start_attempt(&key, attempt);
                } else {
                    self.ignore_for(&key, format!("retry timer for attempt {attempt} is stale"));
                }
            }
            TimerKind::Timeout { attempt, .. } => {
                // A waiting node is limited while it waits on a task, not while it waits for its
                // fallback to finish.
                let limited = match node.status() {
                    NodeStatus::Running => true,
                    NodeStatus::Waiting => node.task().is_some(),
                    _ => false,
                };
                if node.attempt == attempt && limited {
                    let limit = super::limits::attempt_limit(self.plan, self.st, &key).ok().flatten().unwrap_or(0);
                    let within = crate::duration::format_millis(limit);
                    let default_answer = self.plan.steps[node.step].on_timeout.clone();
                    if let (Some(task), Some(answer)) = (node.task().cloned(), default_answer) {
                        // Nobody answered: the definition's default answer stands in, and the
                        // audit record says so (the answer's `by` is `on_timeout`).
                        self.close_task(&key, &task, "timed out; on_timeout answered");
                        let verdict = answer.decision.as_str();
                        let answer_json = serde_json::to_value(&answer).unwrap_or(Value::Null);
                        let why = format!("no answer to task `{task}` within {within}: `on_timeout` answers {verdict}");
                        self.succeed(&key, answer_json.clone(), &why, answer_json);
                        return;
                    }
                    let msg = format!("attempt {attempt} did not finish within {within}");
                    if let Some(task) = node.task().cloned() {
                        self.close_task(&key, &task, "timed out");
                    }
                    self.attempt_failed(&key, StepError::new(ErrorKind::Timeout, msg));
                } else {
                    self.ignore_for(&key, format!("timeout of attempt {attempt} is stale"));
                }
            }
            TimerKind::Escalate { attempt, level, .. } => self.escalate(&key, &node, attempt, level),
            TimerKind::Heartbeat { attempt, beat, .. } => {
                let task = node.task().cloned();
                match task {
                    Some(task) if node.attempt == attempt && node.status() == NodeStatus::Waiting => {
                        // Read once already when the wait started (which failed it if unreadable).
                        let every =
                            super::limits::heartbeat_every(self.plan, self.st, &key).ok().flatten().unwrap_or(0);
                        let within = crate::duration::format_millis(every);
                        let msg = format!("no heartbeat within {within} ({beat} received before)");
                        self.close_task(&key, &task, "no heartbeat");
                        self.attempt_failed(&key, StepError::new(ErrorKind::Timeout, msg));
                    }
                    _ => self.ignore_for(&key, format!("heartbeat timer of attempt {attempt} is stale")),
                }
            }
            TimerKind::Deadline => {}
            TimerKind::Wake { attempt, .. } => {
                if node.attempt == attempt && node.status() == NodeStatus::Waiting {
                    self.succeed(&key, json!({"woke_at": self.at}), "the sleep ended", json!({"due": timer.at}));
                } else {
                    self.ignore_for(&key, "wake-up timer is stale");
                }
            }
        }
    }

    fn escalate(&mut self, key: &NodeKey, node: &Node, attempt: u32, level: u32) {
        let chain = &self.plan.steps[node.step].escalate;
        let (Some(task), Some((after, to))) = (node.task().cloned(), chain.get(level as usize).cloned()) else {
            self.ignore_for(key, "escalation no longer applies");
            return;
        };
        if node.attempt != attempt || node.status() != NodeStatus::Waiting {
            self.ignore_for(key, "escalation timer is stale");
            return;
        }
        let from = self.st.tasks.get(task.as_str()).map(|t| t.queue.clone()).unwrap_or_default();
        if let Some(t) = self.st.tasks.get_mut(task.as_str()) {
            t.queue = to.clone();
        }
        let reason = format!(
            "task `{task}` unanswered for {}: escalated from `{from}` to `{to}`",
            crate::duration::format_millis(after.0)
        );
        let emit = Command::EmitEvent {
            name: "TaskEscalated".into(),
            detail: json!({"run_id": self.st.run_id, "task": task, "from": from, "to": to, "level": level + 1}),
        };
        self.record(
            Rec::new("escalate", reason)
                .node(key)
                .values(json!({"after_ms": after.0, "from": from, "to": to, "level": level + 1})),
            vec![Command::ReassignTask { task, to }, emit],
        );
    }

    fn on_event_received(&mut self, task: &TaskId, payload: &Value) {
        let Some(open) = self.st.tasks.get(task).cloned().filter(|t| t.event_wait) else {
            self.ignore(format!("wait `{task}` is not open (already ended, or not a wait)"));
            return;
        };
        let key = open.node.clone();
        let text = |k: &str| payload.get(k).and_then(Value::as_str).unwrap_or("?").to_owned();
        if let Some(step) = self.st.nodes.get(&key).map(|n| &self.plan.steps[n.step])
            && let StepKind::WaitEvent { pattern, heartbeat: Some(h), .. } = &step.kind
            && crate::pattern::matches(&h.pattern, payload)
            && !crate::pattern::matches(pattern, payload)
        {
            // Read once already when the wait started (which failed it if unreadable).
            let every = super::limits::heartbeat_every(self.plan, self.st, &key).ok().flatten().unwrap_or(0);
            self.heartbeat(&key, every, task, payload);
            return;
        }
        self.close_task(&key, task, "event received");
        let why = format!("event `{}` from `{}` ended wait `{task}`", text("detail-type"), text("source"));
        let values = json!({"event_id": payload.get("id"), "source": payload.get("source"), "detail_type": payload.get("detail-type")});
        self.succeed(&key, payload.clone(), &why, values);
    }

    /// A heartbeat of the wait on `key`: its clock restarts, and the wait goes on.
    fn heartbeat(&mut self, key: &NodeKey, every: u64, task: &TaskId, payload: &Value) {
        let Some(attempt) = self.st.nodes.get(key).map(|n| n.attempt) else {
            return;
        };
        let current = self.st.timers.iter().find_map(|(id, t)| match &t.kind {
            TimerKind::Heartbeat { node, attempt: a, beat } if node == key && *a == attempt => {
                Some((id.clone(), *beat))
            }
            _ => None,
        });
        let mut commands = Vec::new();
        let beat = match current {
            Some((id, beat)) => {
                self.st.timers.remove(&id);
                commands.push(Command::CancelTimer { id });
                beat + 1
            }
            None => 1,
        };
        let due = self.at + every;
        commands.push(self.arm(TimerKind::Heartbeat { node: key.clone(), attempt, beat }, due));
        let text = |k: &str| payload.get(k).and_then(Value::as_str).unwrap_or("?").to_owned();
        let why = format!(
            "event `{}` from `{}` is heartbeat {beat} of wait `{task}`: the wait goes on, the next heartbeat due within {}",
            text("detail-type"),
            text("source"),
            crate::duration::format_millis(every)
        );
        let values = json!({"event_id": payload.get("id"), "beat": beat, "next_due": due});
        self.record(Rec::new("heartbeat", why).node(key).values(values), commands);
    }

    fn on_answer(&mut self, task: &TaskId, answer: &HumanAnswer) {
        let Some(open) = self.st.tasks.get(task).cloned() else {
            self.ignore(format!("task `{task}` is not open (already answered or closed)"));
            return;
        };
        if open.event_wait {
            self.ignore(format!("`{task}` is an event wait: an event ends it, not an answer"));
            return;
        }
        let key = open.node.clone();
        self.close_task(&key, task, "answered");
        let answer_json = serde_json::to_value(answer).unwrap_or(Value::Null);
        let by = answer.by.clone().unwrap_or_else(|| "someone".into());
        if open.loop_escalation {
            match answer.decision {
                Verdict::Approve => {
                    let out = self.loop_output(&key);
                    self.succeed(&key, out, &format!("{by} approved continuing after the loop's bound"), answer_json);
                }
                Verdict::Reject => {
                    let err = StepError::new(ErrorKind::Rejected, format!("{by} rejected the loop after its bound"));
                    self.fail_for_good(&key, err);
                }
            }
        } else {
            let verdict = if answer.decision == Verdict::Approve { "approved" } else { "rejected" };
            self.succeed(&key, answer_json.clone(), &format!("{by} {verdict} task `{task}`"), answer_json);
        }
    }

    fn on_cancel(&mut self, reason: &str) {
        if !matches!(self.st.phase, Phase::Active) {
            self.ignore("the run is already stopping");
            return;
        }
        self.st.phase = Phase::Stopping { outcome: RunStatus::Cancelled };
        self.st.error = Some(RunError { step: None, kind: ErrorKind::Cancelled, message: reason.to_owned() });
        self.record(
            Rec::new(
                "cancel_run",
                format!("cancel requested: {reason}; in-flight steps end, then completed steps are compensated"),
            ),
            vec![],
        );
    }
}
