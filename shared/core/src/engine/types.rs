//! The engine's vocabulary: run state, events in, commands out.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error_kind::ErrorKind;
use crate::ids::{RunId, TaskId};

pub use crate::answer::{HumanAnswer, Verdict};

/// Lifecycle of a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    /// Steps are running, scheduled or waiting (on a person, a timer, an event).
    Running,
    /// Ended with its output.
    Succeeded,
    /// A step failed for good; compensation has run.
    Failed,
    /// Cancelled on request; compensation has run.
    Cancelled,
}

impl RunStatus {
    /// The status as stores write it (`running`, `succeeded`, `failed`, `cancelled`).
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Running => "running",
            RunStatus::Succeeded => "succeeded",
            RunStatus::Failed => "failed",
            RunStatus::Cancelled => "cancelled",
        }
    }

    /// Reads what [`RunStatus::as_str`] wrote.
    pub fn parse(s: &str) -> Option<Self> {
        [RunStatus::Running, RunStatus::Succeeded, RunStatus::Failed, RunStatus::Cancelled]
            .into_iter()
            .find(|st| st.as_str() == s)
    }

    /// True once the run has ended.
    pub fn is_terminal(self) -> bool {
        !matches!(self, RunStatus::Running)
    }
}

/// What the run is doing as a whole.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "phase")]
pub enum Phase {
    /// Scheduling steps as they become ready.
    Active,
    /// A step failed for good or a cancel arrived: no new steps; in-flight ones end, then
    /// compensation runs.
    Stopping {
        /// Final status once stopped (failed or cancelled).
        outcome: RunStatus,
    },
    /// Running the compensation steps, newest completed step first.
    Compensating {
        /// Final status once compensated.
        outcome: RunStatus,
        /// Node keys still to compensate, next first.
        queue: Vec<String>,
    },
    /// The run has ended.
    Done,
}

/// Status of one node (a step instance: the step itself, a loop iteration's step, a for_each item).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NodeStatus {
    /// A tool call is in flight (or items / loop iterations are running).
    Running,
    /// Waiting on a person, a timer or a fallback step.
    Waiting,
    /// A failed attempt will be retried when its backoff timer fires.
    RetryScheduled,
    /// Ended with an output.
    Succeeded,
    /// Ended with an error.
    Failed,
    /// Not run: its condition was false or a need was skipped.
    Skipped,
    /// Its attempts were exhausted and its fallback step's output stands in.
    FellBack,
    /// Stopped because the run failed or was cancelled.
    Cancelled,
}

impl NodeStatus {
    /// True once the node has ended.
    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Succeeded | Self::Failed | Self::Skipped | Self::FellBack | Self::Cancelled)
    }

    /// The status as expressions see it (`.steps.<id>.status`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Running => "running",
            Self::Waiting => "waiting",
            Self::RetryScheduled => "retry_scheduled",
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
            Self::Skipped => "skipped",
            Self::FellBack => "fell_back",
            Self::Cancelled => "cancelled",
        }
    }
}

/// Why a node exists besides the DAG.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "role", content = "of")]
pub enum Role {
    /// Scheduled by the DAG (or as an item / loop body node).
    Dag,
    /// Runs because the node named here exhausted its attempts.
    Fallback(String),
    /// Undoes the node named here.
    Compensation(String),
    /// A model turn or a tool call of the agent node named here.
    Agent(String),
}

/// A step failure as the engine classifies it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepError {
    /// Error kind (`http_5xx`, `timeout`, ...), matched against `retry.on`.
    pub kind: ErrorKind,
    /// What happened.
    pub message: String,
    /// The server's `Retry-After`, in ms, when it sent one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after_ms: Option<u64>,
}

impl StepError {
    /// An error of `kind` with `message`.
    pub fn new(kind: impl Into<ErrorKind>, message: impl Into<String>) -> Self {
        Self { kind: kind.into(), message: message.into(), retry_after_ms: None }
    }
}

/// State of for_each items under their parent node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Items {
    /// The evaluated array.
    pub values: Vec<Value>,
    /// Items started so far (they start in index order).
    pub started: u32,
    /// Items ended successfully.
    pub done: u32,
}

/// One step instance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Node {
    /// The step's index in the plan.
    pub step: usize,
    /// Loop iteration (1-based) for loop body nodes, 0 otherwise.
    #[serde(default)]
    pub iteration: u32,
    /// for_each item index.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub index: Option<u32>,
    /// Why the node exists.
    pub role: Role,
    /// Current status.
    pub status: NodeStatus,
    /// Current attempt, from 1 (0 before the first).
    pub attempt: u32,
    /// Output once succeeded (or the fallback's output).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<Value>,
    /// Last error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<StepError>,
    /// Why it was skipped or failed, in words.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// When it started.
    pub started_at: u64,
    /// When it ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ended_at: Option<u64>,
    /// Order of completion among all nodes; compensation runs newest first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_order: Option<u64>,
    /// for_each bookkeeping.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub items: Option<Items>,
    /// Current loop iteration (loop nodes).
    #[serde(default)]
    pub loop_iteration: u32,
    /// Open human task id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task: Option<String>,
    /// The last result was produced by a mock.
    #[serde(default)]
    pub mocked: bool,
    /// An agent node's loop: the turn it is on and what its tool calls returned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<AgentState>,
    /// An agent's tool call: the arguments the model gave (`.args` in the tool's templates).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub args: Option<Value>,
    /// For output served from the cache (`fallback: cache`): `{cached_at, age_ms}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stale: Option<Value>,
}

/// Where an agent's loop stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentState {
    /// The agent node's attempt this loop belongs to.
    pub attempt: u32,
    /// The current model turn (1-based).
    pub turn: u32,
    /// Every tool call so far, in order, with what came of it.
    pub calls: Vec<AgentCall>,
}

/// One tool call an agent's model asked for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentCall {
    /// The turn that asked for it.
    pub turn: u32,
    /// The tool's name.
    pub tool: String,
    /// The model's arguments.
    pub arguments: Value,
    /// The node running it (none when the call could not be made).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    /// Its output, once it succeeded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<Value>,
    /// Why it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<StepError>,
}

/// What a timer is for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum TimerKind {
    /// Start the next attempt of `node`.
    Retry {
        /// Node key.
        node: String,
        /// The attempt to start.
        attempt: u32,
    },
    /// End `attempt` of `node` with error kind `timeout`.
    Timeout {
        /// Node key.
        node: String,
        /// The attempt it limits.
        attempt: u32,
    },
    /// Reassign the task of `node` to escalation level `level` (0-based).
    Escalate {
        /// Node key.
        node: String,
        /// The attempt whose task escalates.
        attempt: u32,
        /// Index into the step's escalation chain.
        level: u32,
    },
    /// A `sleep` step's wake-up.
    Wake {
        /// Node key.
        node: String,
        /// The attempt.
        attempt: u32,
    },
}

impl TimerKind {
    /// The node the timer belongs to.
    pub fn node(&self) -> &str {
        match self {
            TimerKind::Retry { node, .. }
            | TimerKind::Timeout { node, .. }
            | TimerKind::Escalate { node, .. }
            | TimerKind::Wake { node, .. } => node,
        }
    }

    /// Stable id: the same timer always gets the same id, so scheduling is idempotent.
    pub fn id(&self) -> String {
        match self {
            TimerKind::Retry { node, attempt } => format!("retry/{node}/{attempt}"),
            TimerKind::Timeout { node, attempt } => format!("timeout/{node}/{attempt}"),
            TimerKind::Escalate { node, attempt, level } => format!("escalate/{node}/{attempt}/{level}"),
            TimerKind::Wake { node, attempt } => format!("wake/{node}/{attempt}"),
        }
    }
}

/// A pending timer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Timer {
    /// Due time (ms since the Unix epoch).
    pub at: u64,
    /// What it does.
    pub kind: TimerKind,
}

/// An open human task.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OpenTask {
    /// The node waiting on it.
    pub node: String,
    /// Current queue (changes on escalation).
    pub queue: String,
    /// True when it decides a loop that hit its bound.
    #[serde(default)]
    pub loop_escalation: bool,
    /// True when it is a `wait_event` step's wait (an event ends it, not a person).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub event_wait: bool,
}

/// Everything the engine knows about one run. Serialisable: the store persists it whole.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunState {
    /// Run id.
    pub run_id: RunId,
    /// Workflow name.
    pub workflow: String,
    /// Definition hash the run is pinned to.
    pub definition: String,
    /// Lifecycle status.
    pub status: RunStatus,
    /// Phase.
    pub phase: Phase,
    /// Run input.
    pub input: Value,
    /// Output once succeeded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<Value>,
    /// Why the run failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<RunError>,
    /// When the run started.
    pub created_at: u64,
    /// When the run ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ended_at: Option<u64>,
    /// Nodes by key.
    pub nodes: BTreeMap<String, Node>,
    /// Steps not started yet: (iteration, step index) for the top level (0) and loop bodies.
    pub pending: BTreeSet<(u32, usize)>,
    /// Nodes started and not yet ended.
    pub open: BTreeSet<String>,
    /// Pending timers by id.
    pub timers: BTreeMap<String, Timer>,
    /// Open human tasks by id.
    pub tasks: BTreeMap<TaskId, OpenTask>,
    /// Last audit sequence number used.
    pub audit_seq: u64,
    /// Hash of the last audit record.
    pub audit_head: String,
    /// State of the jitter generator.
    pub rng: u64,
    /// Completion counter for `Node::end_order`.
    pub end_counter: u64,
    /// The entity's memory loaded at the start (`.memory`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<Value>,
    /// The parent run's step this run answers, for a child run (`tool: workflow`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<ParentLink>,
}

/// Where a child run's result goes: the parent's node and attempt that started it. A run that
/// continues as new hands its link to its successor, so the parent hears from the last one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ParentLink {
    /// Parent run id.
    pub run_id: RunId,
    /// The parent's node waiting on the child.
    pub node: String,
    /// That node's attempt.
    pub attempt: u32,
}

/// Why a run failed or was cancelled.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunError {
    /// The step that failed, if a step did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step: Option<String>,
    /// Error kind: the failed step's, or `cancelled`, or `expression` for the run's `output`.
    pub kind: ErrorKind,
    /// What happened.
    pub message: String,
}

/// Something that happened, with the time it happened. Time, ids and seeds come in here.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// When (ms since the Unix epoch).
    pub at: u64,
    /// What.
    #[serde(flatten)]
    pub kind: EventKind,
}

/// The events `decide` understands.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "event")]
pub enum EventKind {
    /// The run was created with this input; `seed` feeds jitter.
    RunStarted {
        /// Run input (already checked against `input_schema`).
        input: Value,
        /// Random seed.
        seed: u64,
        /// The entity's memory as loaded when the run started (`.memory`), for workflows with
        /// `memory`; journaled, so a replay sees what the run saw.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        memory: Option<Value>,
    },
    /// A tool call returned.
    StepSucceeded {
        /// Node key.
        node: String,
        /// Attempt that produced it.
        attempt: u32,
        /// Tool output.
        output: Value,
        /// Produced by a mock.
        #[serde(default)]
        mocked: bool,
        /// What the tool says about the call for the audit log (a model step's prompt, raw
        /// answers, repairs and token usage); not part of the output.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        report: Option<Value>,
    },
    /// A tool call failed.
    StepFailed {
        /// Node key.
        node: String,
        /// Attempt that failed.
        attempt: u32,
        /// The error.
        error: StepError,
        /// Produced by a mock.
        #[serde(default)]
        mocked: bool,
        /// What the tool says about the failed call for the audit log.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        report: Option<Value>,
    },
    /// A timer came due.
    TimerFired {
        /// Timer id.
        timer: String,
    },
    /// A person answered a task.
    HumanResolved {
        /// Task id.
        task: TaskId,
        /// The answer.
        answer: HumanAnswer,
    },
    /// An outside event matched a `wait_event` step's wait (pattern and correlation key).
    EventReceived {
        /// The wait's task id.
        task: TaskId,
        /// The whole event.
        payload: Value,
    },
    /// Someone asked to cancel the run.
    CancelRequested {
        /// Why.
        reason: String,
    },
}

impl EventKind {
    /// The event's name in audit records.
    pub fn name(&self) -> &'static str {
        match self {
            EventKind::RunStarted { .. } => "run_started",
            EventKind::StepSucceeded { .. } => "step_succeeded",
            EventKind::StepFailed { .. } => "step_failed",
            EventKind::TimerFired { .. } => "timer_fired",
            EventKind::HumanResolved { .. } => "human_resolved",
            EventKind::EventReceived { .. } => "event_received",
            EventKind::CancelRequested { .. } => "cancel_requested",
        }
    }
}

/// Effects for a driver to carry out. Every command is idempotent under its key.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "command")]
pub enum Command {
    /// Call a tool.
    Dispatch(Dispatch),
    /// Arm a timer (idempotent by id).
    ScheduleTimer {
        /// Timer id.
        id: String,
        /// Due time.
        at: u64,
    },
    /// Disarm a timer that is no longer needed.
    CancelTimer {
        /// Timer id.
        id: String,
    },
    /// Open a human task.
    OpenTask {
        /// Task id (deterministic from run, node and attempt).
        task: TaskId,
        /// Node waiting on it.
        node: String,
        /// Step id.
        step: String,
        /// Queue.
        queue: String,
        /// What is asked.
        prompt: String,
        /// JSON Schema of the answer's data.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        form: Option<Value>,
        /// Attach the contextual handover summary.
        summary: bool,
        /// For a `wait_event` step: what ends the wait (`pattern`, `correlate_event`, `key`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        wait: Option<Value>,
    },
    /// Move an open task to another queue.
    ReassignTask {
        /// Task id.
        task: TaskId,
        /// New queue.
        to: String,
    },
    /// Close a task (answered, timed out or the run stopped).
    CloseTask {
        /// Task id.
        task: TaskId,
        /// Why.
        outcome: String,
    },
    /// Publish a lifecycle event (`RunStarted`, `RunSucceeded`, `RunFailed`, `StepFailed`,
    /// `HumanTaskCreated`, `TaskEscalated`, ...).
    EmitEvent {
        /// Event name.
        name: String,
        /// Event detail.
        detail: Value,
    },
    /// Keep a step's good response under its request key (for `fallback: cache`).
    PutCache {
        /// Request key.
        key: String,
        /// The response.
        value: Value,
        /// How long it may be served (ms).
        ttl_ms: u64,
    },
    /// The run ended.
    CompleteRun {
        /// Final status.
        status: RunStatus,
    },
}

/// A tool call.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Dispatch {
    /// Node key.
    pub node: String,
    /// Step id.
    pub step: String,
    /// Attempt, from 1.
    pub attempt: u32,
    /// Tool name.
    pub tool: String,
    /// Resolved arguments.
    pub input: Value,
    /// `run/step/iteration/attempt`: the same call always carries the same key.
    pub idempotency_key: String,
    /// Per-attempt limit, when the step has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
}

/// The output of one `decide` call.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Decision {
    /// Effects to carry out, in order.
    pub commands: Vec<Command>,
    /// Audit records, chained onto the run's log.
    pub audit: Vec<crate::audit::AuditRecord>,
}
