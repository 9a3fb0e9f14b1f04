//! The JSON bodies on baton's queues. Workers receive a [`ToolCall`](crate::ports::ToolCall);
//! the coordinator queue carries [`CoordinatorMessage`]s and raw EventBridge events (from trigger
//! rules), told apart by the event's `detail-type`.

use baton_core::engine::{EventKind, HumanAnswer, OperatorAction, ParentLink, StepError};
use baton_core::ids::{NodeKey, RunId, TaskId};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::metering::Usage;

/// A step attempt's result as it travels and as a claim stores it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// The tool's output.
    Output(Value),
    /// The classified failure.
    Error(StepError),
}

impl From<Result<Value, StepError>> for Outcome {
    fn from(r: Result<Value, StepError>) -> Self {
        match r {
            Ok(v) => Outcome::Output(v),
            Err(e) => Outcome::Error(e),
        }
    }
}

impl From<Outcome> for Result<Value, StepError> {
    fn from(o: Outcome) -> Self {
        match o {
            Outcome::Output(v) => Ok(v),
            Outcome::Error(e) => Err(e),
        }
    }
}

/// What a step attempt came to: its output or its classified failure.
pub type StepResult = Result<Value, StepError>;

impl Outcome {
    /// The JSON a store keeps for a finished claim.
    pub fn stored(result: &Result<Value, StepError>) -> Result<String, crate::StoreError> {
        serde_json::to_string(&Outcome::from(result.clone())).map_err(|e| crate::StoreError::Corrupt(e.to_string()))
    }

    /// The claim a store reports for an attempt another worker took: `Done` with the result it
    /// kept ([`Outcome::stored`]), or `Busy` while that worker has none yet.
    pub fn claim(stored: Option<&str>) -> Result<crate::ports::Claim, crate::StoreError> {
        match stored {
            Some(s) => {
                let o: Outcome = serde_json::from_str(s).map_err(|e| crate::StoreError::Corrupt(e.to_string()))?;
                Ok(crate::ports::Claim::Done(o.into()))
            }
            None => Ok(crate::ports::Claim::Busy),
        }
    }
}

/// A message for the coordinator.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum CoordinatorMessage {
    /// A worker finished a step attempt.
    Result {
        /// Run id.
        run_id: RunId,
        /// Node key.
        node: NodeKey,
        /// Attempt.
        attempt: u32,
        /// What came of it.
        outcome: Outcome,
        /// Requests spent for the run since its last commit.
        #[serde(default, skip_serializing_if = "Usage::is_empty")]
        usage: Usage,
        /// The tool's account of the call for the audit log.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        report: Option<Value>,
    },
    /// A timer came due (from a schedule or a delayed message).
    Timer {
        /// Run id.
        run_id: RunId,
        /// Timer id.
        timer: String,
        /// Requests spent for the run since its last commit.
        #[serde(default, skip_serializing_if = "Usage::is_empty")]
        usage: Usage,
    },
    /// Re-send outbox rows older than the lease (from a recurring schedule).
    Sweep,
    /// Start a run (a schedule trigger, or `baton start`/`run` on a stack).
    Start {
        /// Workflow name.
        workflow: String,
        /// Definition hash to run (stored beforehand); the published one when absent.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        definition: Option<String>,
        /// Run input.
        #[serde(default)]
        input: Value,
        /// Scripted tool results (`--mocks`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        mocks: Option<Value>,
        /// The run's id, chosen by the sender so it can follow the run; a redelivery then finds
        /// the run there and starts nothing.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        run_id: Option<RunId>,
        /// A key that is the same for redeliveries of one start (Scheduler's execution id), for
        /// senders that cannot choose an id: the run's id derives from it.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        dedupe: Option<String>,
        /// For a child run (`tool: workflow`): the parent's step it answers.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        parent: Option<ParentLink>,
    },
    /// A person's answer to a task (`baton approve`/`reject` on a stack).
    Answer {
        /// Task id.
        task: TaskId,
        /// The answer (checked against the task's form by the sender and again here).
        answer: HumanAnswer,
    },
    /// Cancel a run (`baton cancel` on a stack).
    Cancel {
        /// Run id.
        run_id: RunId,
        /// Why.
        reason: String,
    },
    /// An operator's action on a run (`baton runs redrive|retry|pause|unpause` on a stack).
    Operate {
        /// Run id.
        run_id: RunId,
        /// What to do, e.g. `{"action": "retry", "from": "charge"}`.
        operation: OperatorAction,
        /// Who asked.
        by: String,
        /// Why, when they said.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
}

/// A coordinator-queue body, parsed.
#[derive(Debug, Clone, PartialEq)]
pub enum Parsed {
    /// An engine event for one run (a step result, a timer, a cancel).
    Event {
        /// Run id.
        run_id: RunId,
        /// The event.
        kind: EventKind,
        /// Requests it carries for the run.
        usage: Usage,
    },
    /// An EventBridge event delivered by a trigger rule.
    Trigger(Value),
    /// Sweep the outbox.
    Sweep,
    /// Start a run.
    Start(StartRun),
    /// Answer a task.
    Answer {
        /// Task id.
        task: TaskId,
        /// Answer.
        answer: HumanAnswer,
        /// The EventBridge `source` of a `HumanTaskResolved` event; none for a baton message.
        source: Option<String>,
    },
}

/// A start request as the coordinator acts on it: the run's id settled (given, or derived from
/// the sender's deduplication key).
#[derive(Debug, Clone, PartialEq)]
pub struct StartRun {
    /// Workflow name.
    pub workflow: String,
    /// Definition hash, or the published one.
    pub definition: Option<String>,
    /// Input.
    pub input: Value,
    /// Scripted tool results.
    pub mocks: Option<Value>,
    /// The run's id, when the sender fixed it.
    pub run_id: Option<RunId>,
    /// The parent's step a child run answers.
    pub parent: Option<ParentLink>,
}

/// The `detail-type` of an EventBridge event that answers a human task (a task inbox, a chat
/// bot): `detail: {task, decision: approve|reject, data?, comment?, by?}`.
pub const TASK_RESOLVED: &str = "HumanTaskResolved";

/// The task and answer of a `HumanTaskResolved` event, or why the event cannot answer anything;
/// `None` for every other event.
pub fn task_resolution(event: &Value) -> Option<Result<(TaskId, HumanAnswer), String>> {
    if event.get("detail-type").and_then(Value::as_str) != Some(TASK_RESOLVED) {
        return None;
    }
    let detail = event.get("detail").cloned().unwrap_or(Value::Null);
    let Some(task) = detail.get("task").and_then(Value::as_str).map(TaskId::from) else {
        return Some(Err(format!("a {TASK_RESOLVED} event needs `detail.task`, the task id")));
    };
    let mut answer = detail;
    if let Value::Object(m) = &mut answer {
        m.remove("task");
        // Who sent it is what the bus says, not what the detail claims.
        let source = event.get("source").and_then(Value::as_str).unwrap_or("unknown");
        let account = event.get("account").and_then(Value::as_str).unwrap_or("unknown");
        m.insert("principal".into(), Value::String(format!("event source `{source}`, account {account}")));
        m.entry("data").or_insert_with(|| serde_json::json!({}));
        if !m.contains_key("by") {
            let source = event.get("source").and_then(Value::as_str).unwrap_or("an event");
            m.insert("by".into(), Value::String(source.to_owned()));
        }
    }
    Some(serde_json::from_value::<HumanAnswer>(answer).map(|a| (task.clone(), a)).map_err(|e| {
        format!(
            "{TASK_RESOLVED} for task `{task}`: `detail` is not an answer ({e}); it needs `decision: approve|reject`"
        )
    }))
}

/// Parses a coordinator-queue body, or says why it can never be handled.
pub fn parse_coordinator(body: &str) -> Result<Parsed, String> {
    let value: Value = serde_json::from_str(body).map_err(|e| format!("body is not JSON: {e}"))?;
    if value.get("detail-type").is_some() && value.get("source").is_some() {
        return match task_resolution(&value) {
            Some(answer) => answer.map(|(task, answer)| {
                let source = value.get("source").and_then(Value::as_str).map(str::to_owned);
                Parsed::Answer { task, answer, source }
            }),
            None => Ok(Parsed::Trigger(value)),
        };
    }
    let msg: CoordinatorMessage = serde_json::from_value(value)
        .map_err(|e| format!("body is neither an EventBridge event nor a baton message: {e}"))?;
    Ok(match msg {
        CoordinatorMessage::Result { run_id, node, attempt, outcome, usage, report } => {
            let kind = match outcome {
                Outcome::Output(output) => EventKind::StepSucceeded { node, attempt, output, mocked: false, report },
                Outcome::Error(error) => EventKind::StepFailed { node, attempt, error, mocked: false, report },
            };
            Parsed::Event { run_id, kind, usage }
        }
        CoordinatorMessage::Timer { run_id, timer, usage } => {
            Parsed::Event { run_id, kind: EventKind::TimerFired { timer }, usage }
        }
        CoordinatorMessage::Sweep => Parsed::Sweep,
        CoordinatorMessage::Start { workflow, definition, input, mocks, run_id, dedupe, parent } => {
            let run_id = run_id.or_else(|| dedupe.map(|k| derived_run_id("s", &k)));
            Parsed::Start(StartRun { workflow, definition, input, mocks, run_id, parent })
        }
        CoordinatorMessage::Answer { task, answer } => Parsed::Answer { task, answer, source: None },
        CoordinatorMessage::Cancel { run_id, reason } => {
            Parsed::Event { run_id, kind: EventKind::CancelRequested { reason }, usage: Usage::new() }
        }
        CoordinatorMessage::Operate { run_id, operation, by, reason } => {
            Parsed::Event { run_id, kind: EventKind::Operated { action: operation, by, reason }, usage: Usage::new() }
        }
    })
}

/// The coordinator-queue body that delivers an engine event to a run: a step result, a timer,
/// a cancel or an operator's action. `None` for the other events, which travel in their own shapes (`Start`,
/// `Answer`, EventBridge events).
pub fn event_body(run_id: &RunId, kind: EventKind) -> Option<String> {
    let run_id = run_id.clone();
    Some(match kind {
        EventKind::StepSucceeded { node, attempt, output, report, .. } => body_of(&CoordinatorMessage::Result {
            run_id,
            node,
            attempt,
            outcome: Outcome::Output(output),
            usage: Usage::new(),
            report,
        }),
        EventKind::StepFailed { node, attempt, error, report, .. } => body_of(&CoordinatorMessage::Result {
            run_id,
            node,
            attempt,
            outcome: Outcome::Error(error),
            usage: Usage::new(),
            report,
        }),
        EventKind::TimerFired { timer } => body_of(&CoordinatorMessage::Timer { run_id, timer, usage: Usage::new() }),
        EventKind::CancelRequested { reason } => body_of(&CoordinatorMessage::Cancel { run_id, reason }),
        EventKind::Operated { action, by, reason } => {
            body_of(&CoordinatorMessage::Operate { run_id, operation: action, by, reason })
        }
        EventKind::RunStarted { .. } | EventKind::HumanResolved { .. } | EventKind::EventReceived { .. } => {
            return None;
        }
    })
}

/// A run id derived from a key that stays the same across redeliveries (an event's id, a
/// schedule's name and time): `<prefix>-<first 32 hex digits of its SHA-256>`.
pub fn derived_run_id(prefix: &str, key: &str) -> RunId {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(key.as_bytes());
    let hex: String = digest.iter().take(16).map(|b| format!("{b:02x}")).collect();
    RunId::new(format!("{prefix}-{hex}"))
}

/// The body of a message (JSON), infallible for these types.
pub fn body_of<T: Serialize>(value: &T) -> String {
    serde_json::to_string(value).unwrap_or_else(|e| format!("{{\"unserializable\":\"{e}\"}}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results_timers_triggers_and_poison_are_told_apart() {
        let r = body_of(&CoordinatorMessage::Result {
            run_id: "r".into(),
            node: "a".into(),
            attempt: 2,
            outcome: Outcome::Output(serde_json::json!({"x": 1})),
            usage: Usage::new(),
            report: None,
        });
        assert!(matches!(
            parse_coordinator(&r),
            Ok(Parsed::Event { kind: EventKind::StepSucceeded { attempt: 2, .. }, .. })
        ));
        let resolved = serde_json::json!({
            "source": "acme.inbox", "detail-type": "HumanTaskResolved",
            "detail": {"task": "t-1", "decision": "reject", "comment": "no"}
        });
        match parse_coordinator(&resolved.to_string()) {
            Ok(Parsed::Answer { task, answer, source }) => {
                assert_eq!((task.as_str(), answer.by.as_deref()), ("t-1", Some("acme.inbox")));
                assert_eq!(source.as_deref(), Some("acme.inbox"));
                assert_eq!(answer.principal.as_deref(), Some("event source `acme.inbox`, account unknown"));
            }
            other => panic!("not an answer: {other:?}"),
        }
        let bad = serde_json::json!({"source": "x", "detail-type": "HumanTaskResolved", "detail": {"task": "t-1", "decision": "maybe"}});
        assert!(parse_coordinator(&bad.to_string()).unwrap_err().contains("decision: approve|reject"));
        let no_task = serde_json::json!({"source": "x", "detail-type": "HumanTaskResolved", "detail": {}});
        assert!(parse_coordinator(&no_task.to_string()).unwrap_err().contains("detail.task"));
        let t = body_of(&CoordinatorMessage::Timer { run_id: "r".into(), timer: "t1".into(), usage: Usage::new() });
        assert!(matches!(parse_coordinator(&t), Ok(Parsed::Event { kind: EventKind::TimerFired { .. }, .. })));
        let ev = r#"{"source":"shop","detail-type":"OrderPlaced","detail":{}}"#;
        assert!(matches!(parse_coordinator(ev), Ok(Parsed::Trigger(_))));
        assert!(parse_coordinator("not json").unwrap_err().contains("not JSON"));
        assert!(parse_coordinator(r#"{"kind":"result"}"#).unwrap_err().contains("neither"));
    }
}
