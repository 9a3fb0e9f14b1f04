//! What the audit log says beyond its records one by one: when each attempt of each node ran
//! and how it ended (the timeline), and the life of each human task (opened, escalated,
//! answered, closed). Pure functions of the records and the run state.

use std::collections::{BTreeMap, HashMap};

use baton_core::Plan;
use baton_core::audit::AuditRecord;
use baton_core::engine::{Role, RunState};
use baton_core::ids::NodeKey;
use baton_core::plan::Scope;
use baton_runtime::ports::TaskRecord;
use serde_json::Value;

/// How an attempt ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// It returned an output (or a person answered).
    Succeeded,
    /// It failed (retried or not).
    Failed,
    /// The run stopped it.
    Cancelled,
    /// It has not ended.
    Open,
}

impl Outcome {
    /// The CSS class and the word for it.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Succeeded => "succeeded",
            Outcome::Failed => "failed",
            Outcome::Cancelled => "cancelled",
            Outcome::Open => "running",
        }
    }
}

/// One attempt of a node on the timeline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttemptBar {
    /// Attempt number, from 1.
    pub attempt: u32,
    /// When it was dispatched (or its task opened, its sleep started).
    pub start: u64,
    /// When it ended, if it has.
    pub end: Option<u64>,
    /// How it ended.
    pub outcome: Outcome,
    /// What it waited on (a person, a timer, an event), in the audit's words.
    pub wait: Option<String>,
}

/// One node (step instance) on the timeline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeRow {
    /// Node key (`step`, `step#2`, `step[0]`, `fallback~step`).
    pub key: String,
    /// Step id.
    pub step: String,
    /// Node status.
    pub status: String,
    /// How many owners it has (an item of a for_each is 1, a fallback of an item 2): the
    /// row's indentation.
    pub depth: usize,
    /// When the node started.
    pub start: u64,
    /// When it ended.
    pub end: Option<u64>,
    /// Its attempts; empty for nodes that make no call themselves (for_each parents, loops,
    /// skipped steps).
    pub attempts: Vec<AttemptBar>,
}

/// Timeline rows: every node of the run, in the order the audit log first names them.
pub fn rows(plan: &Plan, state: &RunState, audit: &[AuditRecord]) -> Vec<NodeRow> {
    let mut first_seen: HashMap<&str, u64> = HashMap::new();
    let mut bars: BTreeMap<(&str, u32), AttemptBar> = BTreeMap::new();
    for r in audit {
        let Some(node) = r.node.as_deref() else { continue };
        first_seen.entry(node).or_insert(r.seq);
        let Some(attempt) = r.attempt else { continue };
        if r.decision == "ignore" {
            // A stale or duplicate result: it changed nothing.
            continue;
        }
        let bar = bars.entry((node, attempt)).or_insert(AttemptBar {
            attempt,
            start: r.at,
            end: None,
            outcome: Outcome::Open,
            wait: None,
        });
        if matches!(r.decision.as_str(), "open_task" | "sleep" | "wait_event") {
            bar.wait = Some(r.reason.clone());
        }
        if bar.end.is_none()
            && let Some(outcome) = ending(r)
        {
            bar.end = Some(r.at);
            bar.outcome = outcome;
        }
    }
    let seen = |k: &NodeKey| first_seen.get(k.as_str()).copied().unwrap_or(u64::MAX);
    let mut rows: Vec<(Vec<(u64, &NodeKey)>, NodeRow)> = state
        .nodes
        .iter()
        .map(|(key, n)| {
            let attempts: Vec<AttemptBar> =
                bars.range((key.as_str(), 0)..=(key.as_str(), u32::MAX)).map(|(_, b)| b.clone()).collect();
            let start = attempts.iter().map(|b| b.start).chain([n.started_at]).min().unwrap_or(n.started_at);
            // Sorting by the chain of owners puts each node right under the one it belongs to.
            let mut path = vec![(seen(key), key)];
            while path.len() < 8
                && let Some((k, _)) =
                    path.last().and_then(|(_, k)| owner(plan, state, k)).and_then(|o| state.nodes.get_key_value(&o))
            {
                path.push((seen(k), k));
            }
            path.reverse();
            let row = NodeRow {
                key: key.to_string(),
                step: plan.steps.get(n.step).map(|s| s.id.clone()).unwrap_or_default(),
                status: n.status().as_str().to_owned(),
                depth: path.len() - 1,
                start,
                end: n.ended_at(),
                attempts,
            };
            (path, row)
        })
        .collect();
    rows.sort_by(|a, b| a.0.cmp(&b.0));
    rows.into_iter().map(|(_, r)| r).collect()
}

/// The node `key` belongs to on the timeline: a for_each item's parent, a loop body node's
/// loop, the node a fallback, compensation or agent node works for.
fn owner(plan: &Plan, state: &RunState, key: &NodeKey) -> Option<NodeKey> {
    let n = state.nodes.get(key)?;
    match &n.role {
        Role::Fallback(of) | Role::Compensation(of) | Role::Agent(of) => return Some(of.clone()),
        Role::Dag => {}
    }
    if n.index.is_some() {
        return key.item_parent();
    }
    match plan.steps.get(n.step)?.scope {
        Scope::Body(l) => plan.steps.get(l).map(|s| NodeKey::new(&s.id)),
        _ => None,
    }
}

/// Whether `r` ends the attempt it names, and how. By decision, not by event kind: the kind is
/// the event that led to the decision, which may be another node's (a fallback is dispatched
/// on its step's `step_failed`). A tool's report comes before the record that decides.
fn ending(r: &AuditRecord) -> Option<Outcome> {
    match r.decision.as_str() {
        "succeed_step" => Some(Outcome::Succeeded),
        "retry" | "attempts_exhausted" | "fail_step" => Some(Outcome::Failed),
        "cancel_step" => Some(Outcome::Cancelled),
        _ => None,
    }
}

/// The resolved arguments of each node's latest dispatch, by node key.
pub fn dispatch_inputs(audit: &[AuditRecord]) -> HashMap<String, Value> {
    let mut out = HashMap::new();
    for c in audit.iter().flat_map(|r| &r.commands) {
        if c["command"] == "dispatch"
            && let Some(node) = c["node"].as_str()
        {
            out.insert(node.to_owned(), c["input"].clone());
        }
    }
    out
}

/// A task moved to another queue.
#[derive(Debug, Clone, PartialEq)]
pub struct Escalation {
    /// The audit record.
    pub seq: u64,
    /// When.
    pub at: u64,
    /// The new queue.
    pub to: String,
}

/// The record that resolved a task: a person's answer, a timeout's answer, or the event.
#[derive(Debug, Clone, PartialEq)]
pub struct Resolution {
    /// The audit record.
    pub seq: u64,
    /// When.
    pub at: u64,
    /// The event kind (`human_resolved`, `event_received`, `timer_fired`).
    pub kind: String,
    /// The audit's words (who answered what).
    pub reason: String,
    /// The answer (`decision`, `data`, `comment`, `by`) or what the event carried.
    pub values: Value,
}

/// A human task or event wait of the run.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskView {
    /// Task id.
    pub id: String,
    /// The run it belongs to, when that is a child run.
    pub child_run: Option<String>,
    /// Node waiting on it.
    pub node: String,
    /// Step id.
    pub step: String,
    /// The node's attempt that opened it.
    pub attempt: Option<u32>,
    /// The queue it opened in.
    pub queue: String,
    /// What is asked.
    pub prompt: String,
    /// JSON Schema of the answer's data.
    pub form: Option<Value>,
    /// For an event wait: what ends it.
    pub wait: Option<Value>,
    /// When it opened.
    pub opened_at: u64,
    /// The audit record that opened it.
    pub opened_seq: Option<u64>,
    /// Queue changes.
    pub escalations: Vec<Escalation>,
    /// What resolved it.
    pub resolution: Option<Resolution>,
    /// How it closed, in the audit's words, with the record.
    pub closed: Option<(u64, String)>,
    /// The stored task record (handover summary, final queue and outcome).
    pub record: Option<TaskRecord>,
    /// Why something is missing.
    pub note: Option<String>,
}

impl TaskView {
    /// A child run's open task, known only from its record.
    pub fn from_child(rec: TaskRecord) -> Self {
        Self {
            id: rec.id.to_string(),
            child_run: Some(rec.run_id.to_string()),
            node: rec.node.to_string(),
            step: rec.step.clone(),
            attempt: None,
            queue: rec.queue.clone(),
            prompt: rec.prompt.clone(),
            form: rec.form.clone(),
            wait: rec.wait.clone(),
            opened_at: rec.created_at,
            opened_seq: None,
            escalations: vec![],
            resolution: None,
            closed: None,
            record: Some(rec),
            note: None,
        }
    }
}

/// The run's tasks as the audit log tells their story, in the order they opened.
pub fn tasks(audit: &[AuditRecord]) -> Vec<TaskView> {
    let mut out: Vec<TaskView> = Vec::new();
    for r in audit {
        if r.decision != "ignore" && matches!(r.kind.as_str(), "human_resolved" | "event_received" | "timer_fired") {
            resolve(&mut out, r);
        }
        for c in &r.commands {
            let field = |k: &str| c[k].as_str().unwrap_or("").to_owned();
            match c["command"].as_str() {
                Some("open_task") => out.push(TaskView {
                    id: field("task"),
                    child_run: None,
                    node: field("node"),
                    step: field("step"),
                    attempt: r.attempt,
                    queue: field("queue"),
                    prompt: field("prompt"),
                    form: c.get("form").cloned(),
                    wait: c.get("wait").cloned(),
                    opened_at: r.at,
                    opened_seq: Some(r.seq),
                    escalations: vec![],
                    resolution: None,
                    closed: None,
                    record: None,
                    note: None,
                }),
                Some("reassign_task") => {
                    if let Some(t) = out.iter_mut().find(|t| c["task"] == t.id.as_str()) {
                        t.escalations.push(Escalation { seq: r.seq, at: r.at, to: field("to") });
                    }
                }
                Some("close_task") => {
                    if let Some(t) = out.iter_mut().find(|t| c["task"] == t.id.as_str()) {
                        t.closed = Some((r.seq, field("outcome")));
                    }
                }
                _ => {}
            }
        }
    }
    out
}

/// Gives `r` to the latest unresolved task of its node and attempt, if `r` resolves one: an
/// answer (or a timeout's answer) has a `decision`; an event wait ends with its event.
fn resolve(tasks: &mut [TaskView], r: &AuditRecord) {
    let answers = r.values.get("decision").is_some_and(Value::is_string) || r.kind == "event_received";
    let Some(node) = r.node.as_deref() else { return };
    if !answers {
        return;
    }
    let open = tasks.iter_mut().rev().find(|t| {
        t.resolution.is_none()
            && t.node == node
            && (t.attempt.is_none() || r.attempt.is_none() || t.attempt == r.attempt)
            && t.opened_seq.is_some_and(|s| s < r.seq)
    });
    if let Some(t) = open {
        t.resolution = Some(Resolution {
            seq: r.seq,
            at: r.at,
            kind: r.kind.clone(),
            reason: r.reason.clone(),
            values: r.values.clone(),
        });
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn rec(seq: u64, at: u64, kind: &str, decision: &str, node: &str, attempt: Option<u32>) -> AuditRecord {
        AuditRecord {
            seq,
            at,
            kind: kind.into(),
            decision: decision.into(),
            step: Some(node.into()),
            node: Some(node.into()),
            attempt,
            iteration: None,
            reason: format!("{decision} {node}"),
            values: Value::Null,
            commands: vec![],
            event: String::new(),
            sealed: Default::default(),
            prev_hash: String::new(),
            hash: String::new(),
        }
    }

    #[test]
    fn a_task_is_opened_escalated_answered_and_closed() {
        let mut open = rec(3, 100, "step_succeeded", "open_task", "approve", Some(1));
        open.commands = vec![json!({"command": "open_task", "task": "t-1", "node": "approve", "step": "approve",
            "queue": "l1", "prompt": "Refund <b>?</b>"})];
        let mut esc = rec(4, 200, "timer_fired", "escalate", "approve", Some(1));
        esc.commands = vec![json!({"command": "reassign_task", "task": "t-1", "to": "l2"})];
        let mut answer = rec(5, 300, "human_resolved", "succeed_step", "approve", Some(1));
        answer.values = json!({"decision": "approve", "data": {"amount": 3}, "comment": "ok", "by": "dana"});
        answer.commands = vec![json!({"command": "close_task", "task": "t-1", "outcome": "answered"})];
        let tasks = tasks(&[open, esc, answer]);
        assert_eq!(tasks.len(), 1);
        let t = &tasks[0];
        assert_eq!((t.id.as_str(), t.queue.as_str(), t.prompt.as_str()), ("t-1", "l1", "Refund <b>?</b>"));
        assert_eq!(t.escalations, vec![Escalation { seq: 4, at: 200, to: "l2".into() }]);
        let res = t.resolution.as_ref().expect("answered");
        assert_eq!((res.seq, res.values["by"].as_str()), (5, Some("dana")));
        assert_eq!(t.closed, Some((5, "answered".into())));
    }

    #[test]
    fn ending_records_close_attempts_and_tool_reports_do_not() {
        assert_eq!(ending(&rec(2, 10, "step_failed", "tool_report", "a", Some(1))), None);
        assert_eq!(ending(&rec(2, 10, "step_failed", "dispatch", "fb~a", Some(1))), None, "a fallback starts");
        assert_eq!(ending(&rec(3, 10, "step_failed", "retry", "a", Some(1))), Some(Outcome::Failed));
        assert_eq!(ending(&rec(4, 20, "step_succeeded", "succeed_step", "a", Some(2))), Some(Outcome::Succeeded));
        assert_eq!(ending(&rec(5, 20, "step_succeeded", "dispatch", "b", Some(1))), None);
    }
}
