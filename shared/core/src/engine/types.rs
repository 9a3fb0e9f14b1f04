//! The engine's vocabulary: run state, events in, commands out.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};

pub use super::timers::{DEADLINE_TIMER, Timer, TimerKind};

use serde::{Deserialize, Serialize};
use serde_json::Value;

pub use super::agent_state::{OfferedTool, Spent};
use super::operator::{OperatorAction, Paused};
use crate::error_kind::ErrorKind;
use crate::ids::{NodeKey, RunId, TaskId};

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
        queue: Vec<NodeKey>,
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
    Fallback(NodeKey),
    /// Undoes the node named here.
    Compensation(NodeKey),
    /// A model turn or a tool call of the agent node named here.
    Agent(NodeKey),
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
    /// A distributed map's source as its reader described it (`count`, `format`,
    /// `header_bytes`); `values` then holds batch descriptors, not items.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<Value>,
    /// A distributed map whose batches all ended: its node's call is now the manifest's.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub closing: bool,
    /// Items that may run at once, read from a templated `max_concurrency` when the step
    /// started; `None`: the plan's number.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
}

/// One step instance: what every state shares, and its state with the data valid in it.
/// Stored in the flat shape it always had (see [`NodeWire`]), so persisted runs read back.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "NodeWire<'static>")]
pub struct Node {
    /// The step's index in the plan.
    pub step: usize,
    /// Loop iteration (1-based) for loop body nodes, 0 otherwise.
    pub iteration: u32,
    /// for_each item index.
    pub index: Option<u32>,
    /// Why the node exists.
    pub role: Role,
    /// Current attempt, from 1 (0 before the first).
    pub attempt: u32,
    /// When it started.
    pub started_at: u64,
    /// for_each bookkeeping of a for_each parent, kept after it ends.
    pub items: Option<Items>,
    /// Current loop iteration (loop nodes).
    pub loop_iteration: u32,
    /// The last call's result was produced by a mock (a failure too, so it holds in any state).
    pub mocked: bool,
    /// An agent node's loop: the turn it is on and what its tool calls returned.
    pub agent: Option<AgentState>,
    /// An agent's tool call: the arguments the model gave (`.args` in the tool's templates).
    pub args: Option<Value>,
    /// Where the node stands, with what is known in that state.
    pub state: NodeState,
}

/// When and in which order a node ended; compensation runs newest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ended {
    /// When it ended.
    pub at: u64,
    /// Order of completion among all nodes of the run.
    pub order: u64,
}

/// A node's state. `error` in a state that does not require one is the last failed attempt's
/// error, kept after a later attempt runs: expressions read it as `.steps.<id>.error`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodeState {
    /// A tool call is in flight (or items / loop iterations / agent turns are running).
    Running {
        /// The last failed attempt's error.
        error: Option<StepError>,
    },
    /// Waiting on a person or an event (`task`), a sleep's timer, or a fallback step (`error`
    /// is then the error that exhausted its attempts).
    Waiting {
        /// Open human task or event wait id.
        task: Option<TaskId>,
        /// The last failed attempt's error.
        error: Option<StepError>,
    },
    /// A failed attempt will be retried when its backoff timer fires.
    RetryScheduled {
        /// Why the attempt failed.
        error: StepError,
    },
    /// Ended with an output.
    Succeeded {
        /// The output.
        output: Value,
        /// The last failed attempt's error, when an earlier attempt failed.
        error: Option<StepError>,
        /// When it ended.
        ended: Ended,
    },
    /// Ended with an error.
    Failed {
        /// Why.
        error: StepError,
        /// Why, in words (none for a failed for_each item).
        reason: Option<String>,
        /// When it ended.
        ended: Ended,
    },
    /// Not run: its condition was false or a need was skipped.
    Skipped {
        /// Why, in words.
        reason: String,
        /// When it was skipped.
        ended: Ended,
    },
    /// Its attempts were exhausted and its fallback step's output stands in.
    FellBack {
        /// The fallback's output (or the cached response).
        output: Value,
        /// The error that exhausted its attempts.
        error: StepError,
        /// Who stood in, in words.
        reason: String,
        /// For output served from the cache (`fallback: cache`): `{cached_at, age_ms}`.
        stale: Option<Value>,
        /// When it ended.
        ended: Ended,
    },
    /// Stopped because the run failed or was cancelled.
    Cancelled {
        /// Why, in words.
        reason: String,
        /// The last failed attempt's error.
        error: Option<StepError>,
        /// When it ended.
        ended: Ended,
    },
}

impl NodeState {
    /// The state's status, as expressions and reports show it.
    pub fn status(&self) -> NodeStatus {
        match self {
            Self::Running { .. } => NodeStatus::Running,
            Self::Waiting { .. } => NodeStatus::Waiting,
            Self::RetryScheduled { .. } => NodeStatus::RetryScheduled,
            Self::Succeeded { .. } => NodeStatus::Succeeded,
            Self::Failed { .. } => NodeStatus::Failed,
            Self::Skipped { .. } => NodeStatus::Skipped,
            Self::FellBack { .. } => NodeStatus::FellBack,
            Self::Cancelled { .. } => NodeStatus::Cancelled,
        }
    }

    /// The error the state carries, required or the last one kept.
    pub fn error(&self) -> Option<&StepError> {
        match self {
            Self::Running { error } | Self::Waiting { error, .. } => error.as_ref(),
            Self::Succeeded { error, .. } | Self::Cancelled { error, .. } => error.as_ref(),
            Self::RetryScheduled { error } | Self::Failed { error, .. } | Self::FellBack { error, .. } => Some(error),
            Self::Skipped { .. } => None,
        }
    }

    /// When and in which order the node ended, once it has.
    pub fn ended(&self) -> Option<Ended> {
        match self {
            Self::Succeeded { ended, .. }
            | Self::Failed { ended, .. }
            | Self::Skipped { ended, .. }
            | Self::FellBack { ended, .. }
            | Self::Cancelled { ended, .. } => Some(*ended),
            Self::Running { .. } | Self::Waiting { .. } | Self::RetryScheduled { .. } => None,
        }
    }
}

impl Node {
    /// Current status.
    pub fn status(&self) -> NodeStatus {
        self.state.status()
    }

    /// Output once succeeded (or the fallback's output).
    pub fn output(&self) -> Option<&Value> {
        match &self.state {
            NodeState::Succeeded { output, .. } | NodeState::FellBack { output, .. } => Some(output),
            _ => None,
        }
    }

    /// Last error.
    pub fn error(&self) -> Option<&StepError> {
        self.state.error()
    }

    /// Why it was skipped, failed, fell back or was cancelled, in words.
    pub fn reason(&self) -> Option<&str> {
        match &self.state {
            NodeState::Failed { reason, .. } => reason.as_deref(),
            NodeState::Skipped { reason, .. } | NodeState::FellBack { reason, .. } => Some(reason),
            NodeState::Cancelled { reason, .. } => Some(reason),
            _ => None,
        }
    }

    /// The open human task or event wait the node waits on.
    pub fn task(&self) -> Option<&TaskId> {
        match &self.state {
            NodeState::Waiting { task, .. } => task.as_ref(),
            _ => None,
        }
    }

    /// Runs again (an attempt or a loop iteration starts), keeping the last error.
    pub(crate) fn run(&mut self) {
        self.state = NodeState::Running { error: self.error().cloned() };
    }

    /// Waits on `task` (a person or an event) or on a timer, keeping the last error.
    pub(crate) fn wait(&mut self, task: Option<TaskId>) {
        self.state = NodeState::Waiting { task, error: self.error().cloned() };
    }

    /// For output served from the cache: `{cached_at, age_ms}`.
    pub fn stale(&self) -> Option<&Value> {
        match &self.state {
            NodeState::FellBack { stale, .. } => stale.as_ref(),
            _ => None,
        }
    }

    /// When it ended.
    pub fn ended_at(&self) -> Option<u64> {
        self.state.ended().map(|e| e.at)
    }

    /// Order of completion among all nodes; compensation runs newest first.
    pub fn end_order(&self) -> Option<u64> {
        self.state.ended().map(|e| e.order)
    }
}

/// A stored node that lacks what its status requires (a failed node without its error, ...).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("stored node in state `{status}` has no `{field}`")]
pub struct IncompleteNode {
    /// The stored status.
    pub status: &'static str,
    /// The missing field.
    pub field: &'static str,
}

/// A node as it is stored: one flat object whose optional fields depend on `status`. The shape
/// (field order included) is what stores and `baton` JSON output have always held. Written
/// from borrowed fields and read into owned ones: a commit serialises every node of the run,
/// and cloning each node's output first would make a long run's commits quadratic.
#[derive(Serialize, Deserialize)]
struct NodeWire<'a> {
    step: usize,
    #[serde(default)]
    iteration: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    index: Option<u32>,
    role: Cow<'a, Role>,
    status: NodeStatus,
    attempt: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    output: Option<Cow<'a, Value>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    error: Option<Cow<'a, StepError>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    reason: Option<Cow<'a, str>>,
    started_at: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    ended_at: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    end_order: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    items: Option<Cow<'a, Items>>,
    #[serde(default)]
    loop_iteration: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    task: Option<Cow<'a, TaskId>>,
    #[serde(default)]
    mocked: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    agent: Option<Cow<'a, AgentState>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    args: Option<Cow<'a, Value>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    stale: Option<Cow<'a, Value>>,
}

fn borrowed<T: ToOwned + ?Sized>(v: Option<&T>) -> Option<Cow<'_, T>> {
    v.map(Cow::Borrowed)
}

fn owned<T: ToOwned + ?Sized>(v: Option<Cow<'_, T>>) -> Option<T::Owned> {
    v.map(Cow::into_owned)
}

impl<'a> From<&'a Node> for NodeWire<'a> {
    fn from(n: &'a Node) -> Self {
        let ended = n.state.ended();
        let (mut output, mut error, mut reason, mut task, mut stale) = (None, None, None, None, None);
        match &n.state {
            NodeState::Running { error: e } => error = e.as_ref(),
            NodeState::Waiting { task: t, error: e } => (task, error) = (t.as_ref(), e.as_ref()),
            NodeState::RetryScheduled { error: e } => error = Some(e),
            NodeState::Succeeded { output: o, error: e, .. } => (output, error) = (Some(o), e.as_ref()),
            NodeState::Failed { error: e, reason: r, .. } => (error, reason) = (Some(e), r.as_deref()),
            NodeState::Skipped { reason: r, .. } => reason = Some(r.as_str()),
            NodeState::FellBack { output: o, error: e, reason: r, stale: s, .. } => {
                (output, error, reason, stale) = (Some(o), Some(e), Some(r.as_str()), s.as_ref())
            }
            NodeState::Cancelled { reason: r, error: e, .. } => (reason, error) = (Some(r.as_str()), e.as_ref()),
        }
        NodeWire {
            step: n.step,
            iteration: n.iteration,
            index: n.index,
            role: Cow::Borrowed(&n.role),
            status: n.status(),
            attempt: n.attempt,
            output: borrowed(output),
            error: borrowed(error),
            reason: borrowed(reason),
            started_at: n.started_at,
            ended_at: ended.map(|e| e.at),
            end_order: ended.map(|e| e.order),
            items: borrowed(n.items.as_ref()),
            loop_iteration: n.loop_iteration,
            task: borrowed(task),
            mocked: n.mocked,
            agent: borrowed(n.agent.as_ref()),
            args: borrowed(n.args.as_ref()),
            stale: borrowed(stale),
        }
    }
}

impl Serialize for Node {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        NodeWire::from(self).serialize(serializer)
    }
}

impl TryFrom<NodeWire<'_>> for Node {
    type Error = IncompleteNode;

    /// Fields the status does not use are dropped; fields it requires must be there, except an
    /// output, which stores have always dropped when it was null.
    fn try_from(w: NodeWire<'_>) -> Result<Self, IncompleteNode> {
        let status = w.status.as_str();
        let missing = |field| IncompleteNode { status, field };
        let (ended_at, end_order) = (w.ended_at, w.end_order);
        let ended = || -> Result<Ended, IncompleteNode> {
            Ok(Ended { at: ended_at.ok_or(missing("ended_at"))?, order: end_order.ok_or(missing("end_order"))? })
        };
        let output = owned(w.output).unwrap_or(Value::Null);
        let (error, reason) = (owned(w.error), owned(w.reason));
        let state = match w.status {
            NodeStatus::Running => NodeState::Running { error },
            NodeStatus::Waiting => NodeState::Waiting { task: owned(w.task), error },
            NodeStatus::RetryScheduled => NodeState::RetryScheduled { error: error.ok_or(missing("error"))? },
            NodeStatus::Succeeded => NodeState::Succeeded { output, error, ended: ended()? },
            NodeStatus::Failed => NodeState::Failed { error: error.ok_or(missing("error"))?, reason, ended: ended()? },
            NodeStatus::Skipped => NodeState::Skipped { reason: reason.ok_or(missing("reason"))?, ended: ended()? },
            NodeStatus::FellBack => NodeState::FellBack {
                output,
                error: error.ok_or(missing("error"))?,
                reason: reason.ok_or(missing("reason"))?,
                stale: owned(w.stale),
                ended: ended()?,
            },
            NodeStatus::Cancelled => {
                NodeState::Cancelled { reason: reason.ok_or(missing("reason"))?, error, ended: ended()? }
            }
        };
        Ok(Node {
            step: w.step,
            iteration: w.iteration,
            index: w.index,
            role: w.role.into_owned(),
            attempt: w.attempt,
            started_at: w.started_at,
            items: owned(w.items),
            loop_iteration: w.loop_iteration,
            mocked: w.mocked,
            agent: owned(w.agent),
            args: owned(w.args),
            state,
        })
    }
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
    /// The calls listing the tools of the MCP servers the agent offers whole, until they
    /// return; the first turn starts after them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub listing: Vec<NodeKey>,
    /// The tools those servers listed that the model is offered.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub offered: Vec<OfferedTool>,
    /// What the loop has spent, for its `budget` (left out of loops stored before budgets).
    #[serde(default, skip_serializing_if = "Spent::is_unset")]
    pub spent: Spent,
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
    /// The node running it (none when the call could not be made); while the call waits for
    /// approval, the approval task's node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<NodeKey>,
    /// The approval task's node, when the call needed one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approval: Option<NodeKey>,
    /// Its output, once it succeeded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<Value>,
    /// Why it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<StepError>,
}

/// The engine revision new runs follow. 1: a `transform` step (outside `for_each`) is evaluated
/// and succeeds within the decision that starts it, instead of going out as a call and coming
/// back as an event: a chain of transforms is one decision and one commit.
pub const ENGINE_REVISION: u32 = 1;

/// The revision from which transforms complete within the decision that starts them.
pub const INLINE_TRANSFORMS: u32 = 1;

/// An open human task.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OpenTask {
    /// The node waiting on it.
    pub node: NodeKey,
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
    pub nodes: BTreeMap<NodeKey, Node>,
    /// Steps not started yet: (iteration, step index) for the top level (0) and loop bodies.
    pub pending: BTreeSet<(u32, usize)>,
    /// Nodes started and not yet ended.
    pub open: BTreeSet<NodeKey>,
    /// Pending timers by id.
    pub timers: BTreeMap<String, Timer>,
    /// Open human tasks by id.
    pub tasks: BTreeMap<TaskId, OpenTask>,
    /// Last audit sequence number used.
    pub audit_seq: u64,
    /// Hash of the last audit record.
    pub audit_head: String,
    /// The run's sensitive fields sealed so far, and the secret their salts derive from.
    #[serde(default, skip_serializing_if = "crate::audit::seal::Seals::is_empty")]
    pub seals: crate::audit::seal::Seals,
    /// State of the jitter generator.
    pub rng: u64,
    /// A value drawn from the run's random seed when it starts (16 hex digits), read as
    /// `.run.nonce`: callback task tokens include it, so a token cannot be made up from the run's
    /// id and a state's name. Empty for runs started before it existed.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub nonce: String,
    /// Completion counter for `Node::end_order`.
    pub end_counter: u64,
    /// The entity's memory loaded at the start (`.memory`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<Value>,
    /// The parent run's step this run answers, for a child run (`tool: workflow`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<ParentLink>,
    /// Set while an operator has paused the run: nothing new is dispatched, no timer fires.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paused: Option<Paused>,
    /// Attempts that would have started while the run was paused (node → attempt); they start
    /// on unpause.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub held: BTreeMap<NodeKey, u32>,
    /// Timers that came due while the run was paused; they fire on unpause, late.
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub held_timers: BTreeSet<String>,
    /// For nodes an operator made run again (redrive, retry from a step): the last attempt
    /// they used, so new attempts carry new numbers (and new idempotency keys) after it.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub attempt_base: BTreeMap<NodeKey, u32>,
    /// For nodes of steps with a list of retry policies: how many retries each policy of the
    /// list has granted in the node's current run (each counts its own attempts).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub retried: BTreeMap<NodeKey, Vec<u32>>,
    /// Arguments an operator patched for a step's next run (`retry --input`): a JSON merge
    /// patch (RFC 7386) applied over the step's resolved arguments.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub patches: BTreeMap<NodeKey, Value>,
    /// The engine revision the run follows (from its `RunStarted` event).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub engine: u32,
    /// How many times an operator reopened the run (redrive or retry).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub reopened: u32,
    /// What the run's model calls have spent, when the workflow has a `budget`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spent: Option<Spent>,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// Where a child run's result goes: the parent's node and attempt that started it. A run that
/// continues as new hands its link to its successor, so the parent hears from the last one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ParentLink {
    /// Parent run id.
    pub run_id: RunId,
    /// The parent's node waiting on the child.
    pub node: NodeKey,
    /// That node's attempt.
    pub attempt: u32,
    /// For a distributed map's batch: where its items are and where its result goes (see
    /// `items_from`); the coordinator reads the one at the start and writes the other at the end.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch: Option<Value>,
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
        /// The engine revision whose rules the run follows ([`ENGINE_REVISION`] for new runs;
        /// 0 for runs journaled before revisions), so a replay decides as the run did.
        #[serde(default, skip_serializing_if = "is_zero")]
        engine: u32,
    },
    /// A tool call returned.
    StepSucceeded {
        /// Node key.
        node: NodeKey,
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
        node: NodeKey,
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
    /// An operator acted on the run: redrive, retry from a step, pause or unpause.
    Operated {
        /// What they did.
        action: OperatorAction,
        /// Who (a user name, an API token's principal).
        by: String,
        /// Why, when they said.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
}

impl EventKind {
    /// True for events that make an ended run go on (redrive, retry from a step).
    pub fn reopens(&self) -> bool {
        matches!(self, EventKind::Operated { action: OperatorAction::Redrive | OperatorAction::Retry { .. }, .. })
    }

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
            EventKind::Operated { action, .. } => match action {
                OperatorAction::Redrive => "redrive_requested",
                OperatorAction::Retry { .. } => "retry_requested",
                OperatorAction::Pause => "pause_requested",
                OperatorAction::Unpause => "unpause_requested",
            },
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
        node: NodeKey,
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
    pub node: NodeKey,
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
    /// Sensitive fields first sealed by these records: the store keeps them apart from the log.
    pub sealed: Vec<crate::audit::seal::SealedField>,
}
