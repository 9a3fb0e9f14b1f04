//! A person's answer to a task. Both the plan (a human step's `on_timeout` answer) and the
//! engine (the `HumanResolved` event) speak of answers, so they live below both.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// An answer to a human task.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HumanAnswer {
    /// `approve` or `reject`.
    pub decision: Verdict,
    /// Form data.
    #[serde(default)]
    pub data: Value,
    /// Free text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    /// Who answered, as they said.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub by: Option<String>,
    /// Who answered, as the channel the answer came through vouches for it (a signed task link,
    /// the API's token, an EventBridge source and account); none when no channel does. Set by
    /// the receiving side, never taken from the sender.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub principal: Option<String>,
}

/// A task's verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// Go ahead.
    Approve,
    /// Do not; for a step this is an answer, not a failure.
    Reject,
}

impl Verdict {
    /// `approve` or `reject`, as answers spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Approve => "approve",
            Verdict::Reject => "reject",
        }
    }
}
