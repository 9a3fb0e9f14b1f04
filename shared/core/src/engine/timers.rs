//! Timers a run arms: retries, per-attempt limits, escalations, wake-ups, heartbeats and the
//! run's deadline, each with a stable id so arming one twice is idempotent.

use serde::{Deserialize, Serialize};

use crate::ids::NodeKey;

/// The id of the run's deadline timer.
pub const DEADLINE_TIMER: &str = "deadline";

/// What a timer is for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum TimerKind {
    /// Start the next attempt of `node`.
    Retry {
        /// Node key.
        node: NodeKey,
        /// The attempt to start.
        attempt: u32,
    },
    /// End `attempt` of `node` with error kind `timeout`.
    Timeout {
        /// Node key.
        node: NodeKey,
        /// The attempt it limits.
        attempt: u32,
    },
    /// Reassign the task of `node` to escalation level `level` (0-based).
    Escalate {
        /// Node key.
        node: NodeKey,
        /// The attempt whose task escalates.
        attempt: u32,
        /// Index into the step's escalation chain.
        level: u32,
    },
    /// A `sleep` step's wake-up.
    Wake {
        /// Node key.
        node: NodeKey,
        /// The attempt.
        attempt: u32,
    },
    /// The workflow's `deadline`: the run stops and fails with `timeout`.
    Deadline,
    /// A `wait_event` with a `heartbeat` went too long without one: `attempt` fails with
    /// `timeout`. Each heartbeat replaces the timer with the next `beat`.
    Heartbeat {
        /// Node key.
        node: NodeKey,
        /// The attempt whose wait it limits.
        attempt: u32,
        /// Heartbeats received before this timer was armed.
        beat: u32,
    },
}

impl TimerKind {
    /// The node the timer belongs to; none for the run's deadline.
    pub fn node(&self) -> Option<&NodeKey> {
        match self {
            TimerKind::Retry { node, .. }
            | TimerKind::Timeout { node, .. }
            | TimerKind::Escalate { node, .. }
            | TimerKind::Wake { node, .. }
            | TimerKind::Heartbeat { node, .. } => Some(node),
            TimerKind::Deadline => None,
        }
    }

    /// Stable id: the same timer always gets the same id, so scheduling is idempotent.
    pub fn id(&self) -> String {
        match self {
            TimerKind::Retry { node, attempt } => format!("retry/{node}/{attempt}"),
            TimerKind::Timeout { node, attempt } => format!("timeout/{node}/{attempt}"),
            TimerKind::Escalate { node, attempt, level } => format!("escalate/{node}/{attempt}/{level}"),
            TimerKind::Wake { node, attempt } => format!("wake/{node}/{attempt}"),
            TimerKind::Deadline => DEADLINE_TIMER.to_owned(),
            TimerKind::Heartbeat { node, attempt, beat } => format!("heartbeat/{node}/{attempt}/{beat}"),
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
