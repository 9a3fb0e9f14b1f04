//! The ports: what the coordinator needs from the world. The embedded backend implements them
//! with SQLite and in-process workers; the AWS backend with DynamoDB, SQS and EventBridge.

use async_trait::async_trait;
use baton_core::audit::AuditRecord;
use baton_core::engine::{Event, RunState, RunStatus, StepError};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::StoreError;

/// Optimistic concurrency: what must hold for a write to apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Precondition {
    /// The row must not exist yet (creating a run).
    DoesNotExist,
    /// The row's version must still be this one (every later transition).
    MatchesVersion(u64),
}

/// The run's header row: what lists and filters need without the whole state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunHeader {
    /// Run id.
    pub id: String,
    /// Workflow name.
    pub workflow: String,
    /// Pinned definition hash.
    pub definition: String,
    /// Status.
    pub status: RunStatus,
    /// Version counter, incremented by every transition.
    pub version: u64,
    /// Creation time (ms).
    pub created_at: u64,
    /// Events journaled so far (the next event gets seq `events + 1`).
    pub events: u64,
    /// Scripted tool results, when the run was started with `--mocks`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mocks: Option<Value>,
}

/// A run as stored.
#[derive(Debug, Clone)]
pub struct StoredRun {
    /// Header.
    pub header: RunHeader,
    /// Engine state.
    pub state: RunState,
}

/// A task row: an open or closed human task with its handover summary.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskRecord {
    /// Task id.
    pub id: String,
    /// Run id.
    pub run_id: String,
    /// Node waiting on it.
    pub node: String,
    /// Step id.
    pub step: String,
    /// Current queue.
    pub queue: String,
    /// `open` or `closed`.
    pub status: String,
    /// What is asked.
    pub prompt: String,
    /// Contextual handover summary.
    pub summary: String,
    /// JSON Schema of the answer's data.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub form: Option<Value>,
    /// When it opened (ms).
    pub created_at: u64,
    /// How it closed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcome: Option<String>,
}

/// Changes to the task table that a transition carries.
#[derive(Debug, Clone, PartialEq)]
pub enum TaskChange {
    /// A new task.
    Open(Box<TaskRecord>),
    /// Moved to another queue.
    Reassign {
        /// Task id.
        id: String,
        /// New queue.
        queue: String,
    },
    /// Closed.
    Close {
        /// Task id.
        id: String,
        /// Why.
        outcome: String,
    },
}

/// A lifecycle event for the bus.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BusEvent {
    /// Run id.
    pub run_id: String,
    /// `RunStarted`, `RunSucceeded`, `StepFailed`, ...
    pub name: String,
    /// Detail.
    pub detail: Value,
    /// Time (ms).
    pub at: u64,
}

/// Everything one run's decisions change, written atomically.
#[derive(Debug, Clone)]
pub struct Transition {
    /// The new header (version already incremented).
    pub header: RunHeader,
    /// What must hold for the write to apply.
    pub precondition: Precondition,
    /// The new state.
    pub state: RunState,
    /// Events decided, appended to the journal (seq continues the run's journal).
    pub events: Vec<(u64, Event)>,
    /// Audit records appended.
    pub audit: Vec<AuditRecord>,
    /// Task table changes.
    pub tasks: Vec<TaskChange>,
    /// Lifecycle events to publish with the commit (a transactional outbox).
    pub bus: Vec<BusEvent>,
}

/// Durable run state with optimistic concurrency.
#[async_trait]
pub trait RunStore: Send + Sync {
    /// Stores a definition's source under its hash (idempotent).
    async fn put_definition(&self, hash: &str, name: &str, source: &str) -> Result<(), StoreError>;
    /// A definition's source by workflow name and hash (the hash alone identifies it; the name
    /// lets key-value stores keep definitions under `WF#<name>`).
    async fn get_definition(&self, workflow: &str, hash: &str) -> Result<Option<String>, StoreError>;
    /// Makes `hash` the published version of workflow `name` (what `baton start NAME` and
    /// triggers run). The definition must have been stored with `put_definition`.
    async fn publish_definition(&self, name: &str, hash: &str) -> Result<(), StoreError>;
    /// Every published workflow: (name, definition hash), by name.
    async fn published_definitions(&self) -> Result<Vec<(String, String)>, StoreError>;
    /// Applies transitions. Each transition is atomic; SQLite applies the whole batch atomically,
    /// DynamoDB splits a batch that exceeds one transaction into one transaction per run. A failed
    /// precondition is `StoreError::Conflict`: the caller reloads every run of the batch.
    async fn commit(&self, transitions: &[Transition]) -> Result<(), StoreError>;
    /// Loads a run.
    async fn load_run(&self, id: &str) -> Result<Option<StoredRun>, StoreError>;
    /// Run headers, newest first.
    async fn list_runs(&self, limit: usize) -> Result<Vec<RunHeader>, StoreError>;
    /// Ids of runs that have not ended.
    async fn unfinished_runs(&self) -> Result<Vec<String>, StoreError>;
    /// The run's event journal, in order.
    async fn load_events(&self, id: &str) -> Result<Vec<(u64, Event)>, StoreError>;
    /// The run's audit log, in seq order.
    async fn load_audit(&self, id: &str) -> Result<Vec<AuditRecord>, StoreError>;
    /// Open tasks, oldest first.
    async fn open_tasks(&self) -> Result<Vec<TaskRecord>, StoreError>;
    /// One task.
    async fn get_task(&self, id: &str) -> Result<Option<TaskRecord>, StoreError>;
    /// Lifecycle events published for a run, in order.
    async fn bus_events(&self, run_id: &str) -> Result<Vec<BusEvent>, StoreError>;
    /// Lifecycle events committed but not yet published, oldest first, with their outbox ids.
    async fn unpublished_bus_events(&self, limit: usize) -> Result<Vec<(String, BusEvent)>, StoreError>;
    /// Marks outbox entries as published (idempotent).
    async fn mark_bus_published(&self, ids: &[String]) -> Result<(), StoreError>;
}

/// Where lifecycle events go: EventBridge on AWS. Publishing is at least once; consumers
/// deduplicate by `(run_id, name, seq)` in the detail.
#[async_trait]
pub trait EventBus: Send + Sync {
    /// Publishes events; all or an error naming what failed.
    async fn publish(&self, events: &[BusEvent]) -> Result<(), StoreError>;
}

/// One tool call as a worker receives it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolCall {
    /// Run id.
    pub run_id: String,
    /// Node key.
    pub node: String,
    /// Step id.
    pub step: String,
    /// Attempt.
    pub attempt: u32,
    /// Resolved arguments.
    pub input: Value,
    /// `run/step/iteration/attempt`.
    pub idempotency_key: String,
    /// Per-attempt limit (ms).
    pub timeout_ms: Option<u64>,
}

/// A tool: turns a call into an output or a classified error.
#[async_trait]
pub trait Tool: Send + Sync {
    /// Runs the call.
    async fn call(&self, call: &ToolCall) -> Result<Value, StepError>;
    /// True when the tool is pure and cheap enough to run inside the coordinator.
    fn inline(&self) -> bool {
        false
    }
}

/// Wall-clock time, injectable so tests can control it.
pub trait Clock: Send + Sync {
    /// Milliseconds since the Unix epoch.
    fn now_ms(&self) -> u64;
}
