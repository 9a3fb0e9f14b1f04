//! The ports: what the coordinator needs from the world. The embedded backend implements them
//! with SQLite and in-process workers; the AWS backend with DynamoDB, SQS and EventBridge.

use async_trait::async_trait;
use baton_core::audit::AuditRecord;
use baton_core::audit::digest::AuditDigest;
use baton_core::audit::seal::SealedField;
use baton_core::engine::{Event, RunState, RunStatus, StepError};
use baton_core::ids::{NodeKey, RunId, TaskId};
use baton_core::plan::tools::ToolInput;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::StoreError;
use crate::metering::Usage;

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
    pub id: RunId,
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
    /// Cloud requests made for this run so far (queue backends; empty when embedded).
    #[serde(default, skip_serializing_if = "Usage::is_empty")]
    pub usage: Usage,
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
    pub id: TaskId,
    /// Run id.
    pub run_id: RunId,
    /// Node waiting on it.
    pub node: NodeKey,
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
    /// For an event wait (`wait_event` step): `{pattern, correlate_event, key}`; such a task
    /// ends when a matching event arrives, not by an answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wait: Option<Value>,
}

/// Changes to the task table that a transition carries.
#[derive(Debug, Clone, PartialEq)]
pub enum TaskChange {
    /// A new task.
    Open(Box<TaskRecord>),
    /// Moved to another queue.
    Reassign {
        /// Task id.
        id: TaskId,
        /// New queue.
        queue: String,
    },
    /// Closed.
    Close {
        /// Task id.
        id: TaskId,
        /// Why.
        outcome: String,
    },
}

/// A lifecycle event for the bus.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BusEvent {
    /// Run id.
    pub run_id: RunId,
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
    /// Work for the outside world (tool calls, timers), written with the commit and delivered
    /// after it; empty when the coordinator carries out its commands in-process.
    pub outbox: Vec<OutboxItem>,
    /// Outbox rows (ids as [`OutboxEntry::id`]) this commit deletes: rows whose work this
    /// process carried out itself (inline calls), finished by this very decision.
    pub clears: Vec<String>,
    /// How many of `outbox`'s calls this process runs itself: the next commit deletes the row
    /// (a store counts that delete into the write, not as a request of its own).
    pub runs_here: usize,
    /// Episodes appended to entities' memory with this commit (a run that ended remembers what
    /// it did in the same write, so a crash can neither lose nor repeat it).
    pub episodes: Vec<Episode>,
    /// True when the run waits or ends after this commit (no call in flight): a signing store
    /// signs its digest (a seal); the commits before it write unsigned links the seal covers.
    pub seal: bool,
    /// Sensitive fields the audit records seal for the first time: stored apart from the log,
    /// in the same write, so they can be erased later without touching a record.
    pub sealed: Vec<SealedField>,
}

/// One fact remembered about an entity (a customer, a case): the latest value per key wins.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MemoryFact {
    /// The entity it is about, e.g. `customer-42`.
    pub entity: String,
    /// What the fact is, e.g. `tier`.
    pub key: String,
    /// Its value.
    pub value: Value,
    /// Where it came from: `<run id>/<step>`, or who wrote it.
    pub source: String,
    /// When it was written (ms).
    pub at: u64,
}

/// What one finished run did, remembered on its entity.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Episode {
    /// The entity.
    pub entity: String,
    /// The run.
    pub run_id: RunId,
    /// Its workflow.
    pub workflow: String,
    /// How it ended (`succeeded`, `failed`, `cancelled`).
    pub status: String,
    /// One or a few lines saying what happened.
    pub summary: String,
    /// When the run ended (ms).
    pub at: u64,
}

/// A step's last good response, kept for `fallback: cache`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CacheEntry {
    /// The request key (a hash of the workflow, the step and its resolved arguments).
    pub key: String,
    /// The output.
    pub value: Value,
    /// When it was stored (ms).
    pub at: u64,
    /// When it stops being served (ms).
    pub expires_at: u64,
}

/// One piece of work a committed transition hands to queues and schedulers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum OutboxItem {
    /// Send a tool call to its tool family's worker queue.
    Call(ToolCall),
    /// Arm a one-time timer that comes back to the coordinator as `TimerFired`.
    Timer {
        /// Run id.
        run_id: RunId,
        /// Timer id (unique within the run).
        id: String,
        /// Due time (ms).
        at: u64,
        /// A retry backoff: short ones ride on a queue's delivery delay instead of a schedule.
        retry: bool,
    },
    /// Disarm a timer that is no longer needed.
    CancelTimer {
        /// Run id.
        run_id: RunId,
        /// Timer id.
        id: String,
    },
    /// A message for the coordinator queue: starting a child run, a child's result for its
    /// parent, a cancel for a child. Written with the commit, so none of them is lost.
    Coordinator {
        /// The message body (the coordinator queue's JSON shapes).
        body: String,
    },
}

/// A committed outbox row: one transition's outside work.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OutboxEntry {
    /// Store-specific id, passed back to [`RunStore::clear_outbox`].
    pub id: String,
    /// Run id.
    pub run_id: RunId,
    /// Commit time (ms): the sweep re-sends rows older than its lease.
    pub created_at: u64,
    /// The work.
    pub items: Vec<OutboxItem>,
}

/// What a worker's claim on a step attempt found.
#[derive(Debug, Clone, PartialEq)]
pub enum Claim {
    /// This worker holds the attempt until the lease ends: run the tool.
    Acquired,
    /// The attempt already ran; this is its result (a duplicate delivery: send it again).
    Done(Result<Value, StepError>),
    /// Another worker holds an unexpired lease: try again later.
    Busy,
}

/// Which runs a paged listing wants: filters and the position after which the page starts.
/// Runs come newest first, ordered by `(created_at, id)` descending.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RunQuery {
    /// Only runs with this status.
    pub status: Option<RunStatus>,
    /// Only runs of this workflow.
    pub workflow: Option<String>,
    /// Only runs created after this time (ms, exclusive).
    pub created_after: Option<u64>,
    /// Only runs created before this time (ms, exclusive).
    pub created_before: Option<u64>,
    /// Only runs that come after this `(created_at, id)` in the order: the last run of the
    /// previous page.
    pub after: Option<(u64, RunId)>,
    /// At most this many runs.
    pub limit: usize,
}

impl RunQuery {
    /// True when `h` passes the filters and lies after the cursor.
    pub fn matches(&self, h: &RunHeader) -> bool {
        self.status.is_none_or(|s| s == h.status)
            && self.workflow.as_ref().is_none_or(|w| *w == h.workflow)
            && self.created_after.is_none_or(|t| h.created_at > t)
            && self.created_before.is_none_or(|t| h.created_at < t)
            && self.after.as_ref().is_none_or(|(at, id)| (h.created_at, h.id.as_str()) < (*at, id.as_str()))
    }
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
    /// Applies transitions. A store billed per request adds what the write (and its own work
    /// after it: clearing the outbox row, marking lifecycle events) costs to the stored
    /// header's `usage`. Each transition is atomic; SQLite applies the whole batch atomically,
    /// DynamoDB splits a batch that exceeds one transaction into one transaction per run. A failed
    /// precondition is `StoreError::Conflict`: the caller reloads every run of the batch.
    async fn commit(&self, transitions: &[Transition]) -> Result<(), StoreError>;
    /// Loads a run.
    async fn load_run(&self, id: &RunId) -> Result<Option<StoredRun>, StoreError>;
    /// The account (`usage`) the commit of `run_id` at `version` wrote, when the store added its
    /// own cost to it and kept a copy (a transition with `runs_here`): the next commit of a run
    /// decided without a read starts from it.
    fn take_written_usage(&self, _run_id: &RunId, _version: u64) -> Option<crate::metering::Usage> {
        None
    }
    /// Run headers, newest first.
    async fn list_runs(&self, limit: usize) -> Result<Vec<RunHeader>, StoreError>;
    /// Run headers that match `query`, newest first. This default reads every header and
    /// filters them here, which is right for any store; a store that can filter and seek in its
    /// own index should do so instead.
    async fn query_runs(&self, query: &RunQuery) -> Result<Vec<RunHeader>, StoreError> {
        let all = self.list_runs(usize::MAX).await?;
        Ok(all.into_iter().filter(|h| query.matches(h)).take(query.limit).collect())
    }
    /// Ids of runs that have not ended.
    async fn unfinished_runs(&self) -> Result<Vec<RunId>, StoreError>;
    /// The run's event journal, in order.
    async fn load_events(&self, id: &RunId) -> Result<Vec<(u64, Event)>, StoreError>;
    /// The run's audit log, in seq order.
    async fn load_audit(&self, id: &RunId) -> Result<Vec<AuditRecord>, StoreError>;
    /// The run's signed audit digests, oldest first (one per commit that appended records).
    /// A store that does not sign has none, and its runs verify as unsigned.
    async fn load_audit_digests(&self, _id: &RunId) -> Result<Vec<AuditDigest>, StoreError> {
        Ok(Vec::new())
    }
    /// The public key this store's digests are checked with; `None` when it does not sign.
    fn audit_public_key(&self) -> Option<crate::audit_key::AuditPublicKey> {
        None
    }
    /// The run's sealed sensitive fields (values and salts, or the record of their erasure),
    /// by name.
    async fn load_sealed(&self, id: &RunId) -> Result<Vec<SealedField>, StoreError>;
    /// Erases sealed fields of an ended run: each field's value and salt go, and so does every
    /// copy of the value in the run's state, journal and tasks (replaced by `[erased FIELD]`),
    /// with the run's salt secret; the audit records, their hashes and digests stay as they are.
    /// `fields` are names the run keeps; returns the ones erased now (an erased one is skipped).
    async fn erase_sealed(
        &self,
        id: &RunId,
        fields: &[String],
        at: u64,
        reason: &str,
    ) -> Result<Vec<String>, StoreError>;
    /// Open tasks, oldest first.
    async fn open_tasks(&self) -> Result<Vec<TaskRecord>, StoreError>;
    /// One task.
    async fn get_task(&self, id: &TaskId) -> Result<Option<TaskRecord>, StoreError>;
    /// The open event waits an event listed under `keys` ([`crate::wait_index::event_keys`])
    /// may match: at least those whose [`crate::wait_index::wait_key_of`] is among `keys`, never a
    /// closed one; the caller matches each against its pattern. By default every open wait.
    async fn open_waits(&self, _keys: &[String]) -> Result<Vec<TaskRecord>, StoreError> {
        Ok(self.open_tasks().await?.into_iter().filter(|t| t.wait.is_some()).collect())
    }
    /// Lifecycle events published for a run, in order.
    async fn bus_events(&self, run_id: &RunId) -> Result<Vec<BusEvent>, StoreError>;
    /// The ids [`RunStore::unpublished_bus_events`] would give `t`'s lifecycle events once it is
    /// committed, when the store can tell without a read; `None` makes the caller list them.
    fn bus_event_ids(&self, _t: &Transition) -> Option<Vec<String>> {
        None
    }
    /// Lifecycle events committed but not yet published, oldest first, with their outbox ids.
    async fn unpublished_bus_events(&self, limit: usize) -> Result<Vec<(String, BusEvent)>, StoreError>;
    /// Marks outbox entries as published (idempotent).
    async fn mark_bus_published(&self, ids: &[String]) -> Result<(), StoreError>;
    /// Outbox rows (tool calls, timers) committed at or before `before` (ms) and not yet
    /// cleared, oldest first: the sweep re-sends them.
    async fn pending_outbox(&self, before: u64, limit: usize) -> Result<Vec<OutboxEntry>, StoreError>;
    /// Removes delivered outbox rows (idempotent).
    async fn clear_outbox(&self, ids: &[String]) -> Result<(), StoreError>;
    /// Claims the step attempt `key` (its idempotency key) for `owner` until `lease_until` (ms),
    /// with a conditional write: a new attempt or one whose holder's lease ran out is acquired;
    /// a finished one returns its result.
    async fn claim(&self, key: &str, owner: &str, now: u64, lease_until: u64) -> Result<Claim, StoreError>;
    /// Records the result of a claimed attempt, so duplicate deliveries get it without a call.
    async fn finish_claim(&self, key: &str, result: &Result<Value, StepError>) -> Result<(), StoreError>;
    /// Writes a fact: replaces the entity's fact with the same key (idempotent).
    async fn put_fact(&self, fact: &MemoryFact) -> Result<(), StoreError>;
    /// The entity's facts, by key.
    async fn facts(&self, entity: &str) -> Result<Vec<MemoryFact>, StoreError>;
    /// The entity's episodes, newest first, at most `limit` (episodes are written by `commit`,
    /// one per entity and run: committing the same episode again changes nothing).
    async fn episodes(&self, entity: &str, limit: usize) -> Result<Vec<Episode>, StoreError>;
    /// Stores a step's response under its request key, replacing the older one.
    async fn put_cache(&self, entry: &CacheEntry) -> Result<(), StoreError>;
    /// The response stored under `key`, expired or not (the caller judges its age).
    async fn get_cache(&self, key: &str) -> Result<Option<CacheEntry>, StoreError>;
    /// The run's seals as a write-once witness outside the store holds them (the AWS stack's
    /// S3 bucket with Object Lock), oldest first; `None` when this store has no witness.
    /// `audit verify` checks that each of them is still in [`RunStore::load_audit_digests`].
    async fn witnessed_digests(&self, _id: &RunId) -> Result<Option<Vec<AuditDigest>>, StoreError> {
        Ok(None)
    }
}

/// Where lifecycle events go: EventBridge on AWS. Publishing is at least once; consumers
/// deduplicate by `(run_id, name, seq)` in the detail.
#[async_trait]
pub trait EventBus: Send + Sync {
    /// Publishes events; all or an error naming what failed.
    async fn publish(&self, events: &[BusEvent]) -> Result<(), StoreError>;
    /// The requests publishing `n` events costs.
    fn expected_usage(&self, _n: usize) -> Usage {
        Usage::new()
    }
}

/// One tool call as a worker receives it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolCall {
    /// Run id.
    pub run_id: RunId,
    /// Node key.
    pub node: NodeKey,
    /// Step id.
    pub step: String,
    /// Attempt.
    pub attempt: u32,
    /// Tool name (routes the call to its worker queue).
    #[serde(default)]
    pub tool: String,
    /// Resolved arguments.
    pub input: Value,
    /// `run/step/iteration/attempt`.
    pub idempotency_key: String,
    /// Per-attempt limit (ms).
    pub timeout_ms: Option<u64>,
    /// Requests spent for the run that no commit has counted yet (travels back with the result).
    #[serde(default, skip_serializing_if = "Usage::is_empty")]
    pub usage: Usage,
}

impl ToolCall {
    /// The call's input as the typed call its tool takes; a bad input fails the attempt as a
    /// `tool` error that names the field.
    pub fn input_as<T: ToolInput>(&self) -> Result<T, StepError> {
        T::from_input(&self.input).map_err(|e| StepError::new(e.kind, e.message))
    }
}

/// What a tool call came to: the result, and the tool's own account of the call for the audit
/// log (a model step's prompt, raw answers, repairs and token usage).
#[derive(Debug, Clone, PartialEq)]
pub struct ToolOutcome {
    /// The output or the classified error.
    pub result: Result<Value, StepError>,
    /// The audit report, for tools that keep one.
    pub report: Option<Value>,
}

/// A tool: turns a call into an output or a classified error.
#[async_trait]
pub trait Tool: Send + Sync {
    /// Runs the call.
    async fn call(&self, call: &ToolCall) -> Result<Value, StepError>;
    /// Runs the call and says what happened in it; tools with something to audit override this.
    async fn run(&self, call: &ToolCall) -> ToolOutcome {
        ToolOutcome { result: self.call(call).await, report: None }
    }
    /// True when the tool is pure and cheap enough to run inside the coordinator.
    fn inline(&self) -> bool {
        false
    }
}

/// Wall-clock time, injectable so tests can control it.
pub trait Clock: Send + Sync {
    /// Milliseconds since the Unix epoch.
    fn now_ms(&self) -> u64;

    /// Completes once the clock reads `at_ms` or later. Everything in the runtime that waits
    /// for a time (the drive loop's next timer, call timeouts, rate limits) waits here, so a
    /// simulated clock moves them all.
    fn sleep_until(&self, at_ms: u64) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send + '_>>;
}

/// A queue message as handlers see it (an SQS record, or an in-process equivalent).
#[derive(Debug, Clone, PartialEq)]
pub struct Inbound {
    /// Message id (what a partial batch failure names).
    pub id: String,
    /// Body.
    pub body: String,
    /// How many times it has been received, this time included.
    pub receive_count: u32,
    /// The sender's signature of the body (the `baton-signature` message attribute), if any.
    pub signature: Option<String>,
    /// Requests spent to deliver it (an event source mapping's receive and delete, carried on
    /// the first message of each batch).
    pub usage: Usage,
}

/// What a handler did with a batch.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BatchReport {
    /// Messages to leave on the queue for redelivery (the rest are done).
    pub failed: Vec<String>,
    /// Messages moved to the dead-letter queue, with the reason.
    pub dead_lettered: Vec<(String, String)>,
}

/// A message found on a dead-letter queue.
#[derive(Debug, Clone, PartialEq)]
pub struct DeadLetter {
    /// The queue it was meant for: a worker family (`http`, `llm`) or `coordinator`.
    pub queue: String,
    /// The message, its body and signature as they were sent.
    pub message: Inbound,
    /// Why baton moved it there itself (a body it could not read, a forged result); `None`
    /// when the queue's redrive policy moved it, after its receives ran out.
    pub reason: Option<String>,
    /// What [`Dispatcher::settle_dead_letter`] needs to find it again (an SQS receipt handle).
    pub handle: String,
}

/// Where outbox work goes: tool queues, the coordinator queue, schedules, the DLQ.
#[async_trait]
pub trait Dispatcher: Send + Sync {
    /// True when a worker serves `tool` in this deployment.
    fn serves(&self, tool: &str) -> bool;
    /// The requests delivering `items` costs.
    fn expected_usage(&self, _items: &[OutboxItem], _now: u64) -> Usage {
        Usage::new()
    }
    /// The requests one batch of results to the coordinator costs.
    fn send_usage(&self) -> Usage {
        Usage::new()
    }
    /// Delivers outbox items (calls in batches per tool queue, timers as schedules or delayed
    /// messages, cancellations as schedule deletions). At least once: sending again is harmless.
    async fn deliver(&self, items: &[OutboxItem], now: u64) -> Result<(), StoreError>;
    /// Sends messages to the coordinator queue (worker results).
    async fn to_coordinator(&self, bodies: &[String]) -> Result<(), StoreError>;
    /// Moves a message that can never be handled to the dead-letter queue of `queue`, with the
    /// reason as a message attribute.
    async fn dead_letter(&self, queue: &str, message: &Inbound, reason: &str) -> Result<(), StoreError>;
    /// Up to `max` messages of each dead-letter queue, for the sweep to fail the steps they
    /// leave waiting. None where nothing is dead-lettered (the default).
    async fn dead_letters(&self, _max: usize) -> Result<Vec<DeadLetter>, StoreError> {
        Ok(Vec::new())
    }
    /// Removes a dead letter the coordinator carried out (`done`), or leaves it for an operator,
    /// visible again at once (`!done`).
    async fn settle_dead_letter(&self, _letter: &DeadLetter, _done: bool) -> Result<(), StoreError> {
        Ok(())
    }
}

/// A secret store could not answer (a missing secret is `Ok(None)`, not an error). Messages
/// name the secret, never a value.
#[derive(Debug, thiserror::Error)]
pub enum SecretLookupError {
    /// The name cannot name a secret in this source.
    #[error("`{0}` cannot name a secret here")]
    InvalidName(String),
    /// The store failed or refused access.
    #[error("cannot read the secret `{name}`: {message}")]
    Backend {
        /// The secret's name.
        name: String,
        /// What the store said.
        message: String,
    },
}

/// Where `{{ secret("NAME") }}` values come from. Tools ask right before they use a value, so
/// it never enters run state, the journal or the audit log.
#[async_trait]
pub trait SecretSource: Send + Sync {
    /// The value of secret `name`, or `None` when there is no such secret.
    async fn get(&self, name: &str) -> Result<Option<String>, SecretLookupError>;
}
