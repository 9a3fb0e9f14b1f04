//! What an agent's loop keeps beside its turns and calls: the tools of the MCP servers it
//! offers whole, and what it has spent for its budget. Part of the run state, so the shapes are
//! stored; both are left out of loops that have none.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A tool of an MCP server an agent offers whole, as the server listed it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OfferedTool {
    /// The name the model calls it by (the server's name for it, made safe).
    pub name: String,
    /// The server's name for it.
    pub tool: String,
    /// Its description, from the server.
    pub description: String,
    /// The JSON Schema of its arguments, from the server.
    pub parameters: Value,
    /// The agent's tool entry that offers it (its position in the plan's tools).
    pub via: usize,
}

impl Spent {
    /// True for a loop stored before budgets were kept.
    pub fn is_unset(&self) -> bool {
        *self == Self::default()
    }
}

/// USD are kept in millionths, so the run state stays exact and comparable.
pub(super) const MICROS: f64 = 1_000_000.0;

/// What an agent's loop has spent so far.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Spent {
    /// When the loop started (ms since the epoch).
    #[serde(default)]
    pub started_at: u64,
    /// Prompt tokens of its turns.
    #[serde(default)]
    pub input_tokens: u64,
    /// Completion tokens of its turns.
    #[serde(default)]
    pub output_tokens: u64,
    /// USD of its turns, in millionths.
    #[serde(default)]
    pub usd_micros: u64,
}

impl Spent {
    /// Adds what one model call reported: `usage.prompt_tokens`, `usage.completion_tokens` and
    /// `cost_usd` (in millionths).
    pub(super) fn add_report(&mut self, report: &Value) {
        let n = |k: &str| report.pointer(&format!("/usage/{k}")).and_then(Value::as_u64).unwrap_or(0);
        let usd = report.get("cost_usd").and_then(Value::as_f64).unwrap_or(0.0);
        self.input_tokens += n("prompt_tokens");
        self.output_tokens += n("completion_tokens");
        self.usd_micros += (usd * MICROS).round().max(0.0) as u64;
    }
}
