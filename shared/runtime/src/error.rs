//! Runtime errors, split into what a caller may retry and what it must report.

use baton_core::Problem;
use baton_core::ids::{RunId, TaskId};

/// A store failure.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A precondition failed: someone else changed the run. Reload and decide again.
    #[error("conflict: run `{run_id}` changed concurrently (expected version {expected})")]
    Conflict {
        /// The run.
        run_id: RunId,
        /// The version we expected.
        expected: u64,
    },
    /// One transition is more than the store can write at once (DynamoDB: 100 items); the
    /// coordinator splits a batch of events into one transition per event.
    #[error("run `{run_id}`: one transition is too large for the store ({detail})")]
    TooLarge {
        /// The run.
        run_id: RunId,
        /// What limit it passed.
        detail: String,
    },
    /// The database failed.
    #[error("store error: {0}")]
    Backend(String),
    /// Stored data could not be read back.
    #[error("corrupt stored data: {0}")]
    Corrupt(String),
}

impl StoreError {
    /// True when retrying (after reloading) can succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(self, StoreError::Conflict { .. })
    }
}

/// Anything the embedded runtime can fail with.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// The definition is invalid.
    #[error("invalid definition:\n{}", .0.iter().map(|p| format!("  {p}")).collect::<Vec<_>>().join("\n"))]
    InvalidDefinition(Vec<Problem>),
    /// The input does not satisfy `input_schema`.
    #[error("invalid input:\n{}", .0.iter().map(|p| format!("  {p}")).collect::<Vec<_>>().join("\n"))]
    InvalidInput(Vec<String>),
    /// No run with this id.
    #[error("no run `{0}`: list runs with `baton runs list`")]
    UnknownRun(RunId),
    /// No published workflow with this name.
    #[error("no published workflow `{0}`: publish it with `baton publish FILE`")]
    UnknownWorkflow(String),
    /// No open task with this id.
    #[error("no open task `{0}`: list open tasks with `baton tasks`")]
    UnknownTask(TaskId),
    /// A task answer does not satisfy the task's form.
    #[error("answer does not match the task's form:\n{}", .0.join("\n"))]
    InvalidAnswer(Vec<String>),
    /// The mocks file is malformed.
    #[error("invalid mocks: {0}")]
    InvalidMocks(String),
    /// An event to deliver is malformed (e.g. a task answer without a task id).
    #[error("invalid event: {0}")]
    InvalidEvent(String),
    /// An operator's action does not apply to the run as it stands (redrive of a run that
    /// succeeded, retry from a step the workflow lacks, pause of an ended run).
    #[error("{0}")]
    Refused(String),
    /// A distributed map's batch could not be read from its source or its result written.
    #[error("{0}")]
    Batch(String),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl RuntimeError {
    /// True when retrying the same request can never succeed (bad input, unknown names), as
    /// opposed to a store or network failure that may pass.
    pub fn is_permanent(&self) -> bool {
        !matches!(self, RuntimeError::Store(StoreError::Backend(_) | StoreError::Conflict { .. }))
    }
}
