//! What an operator can ask of a run (redrive, retry from a step, pause, unpause) and the
//! record of a pause: the data only; [`super::operate`] applies the actions.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Who paused a run, when and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Paused {
    /// When (ms since the Unix epoch).
    pub at: u64,
    /// Who asked.
    pub by: String,
    /// Why, when they said.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// What an operator can do to a run besides cancelling it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "action")]
pub enum OperatorAction {
    /// Continue a failed or cancelled run from the steps that did not complete, with fresh
    /// attempts; completed steps keep their outputs.
    Redrive,
    /// Run step `from` and everything downstream of it again; upstream outputs are kept.
    Retry {
        /// The top-level step to run again.
        from: String,
        /// A JSON merge patch over that step's resolved arguments.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        input: Option<Value>,
    },
    /// Stop dispatching and hold timers until unpaused.
    Pause,
    /// Let a paused run go on; held attempts start and held timers fire.
    Unpause,
}

impl OperatorAction {
    /// The action's name (`redrive`, `retry`, `pause`, `unpause`).
    pub fn name(&self) -> &'static str {
        match self {
            OperatorAction::Redrive => "redrive",
            OperatorAction::Retry { .. } => "retry",
            OperatorAction::Pause => "pause",
            OperatorAction::Unpause => "unpause",
        }
    }
}
