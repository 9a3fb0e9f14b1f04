//! The run state machine: `decide(plan, state, event) -> Decision`. Pure and deterministic: the
//! same plan, state and event always give the same new state, commands and audit records.

mod agent;
mod agent_budget;
mod agent_gate;
mod agent_mcp;
mod agent_state;
mod context;
mod decide;
mod decider;
mod dispatch;
mod item_source;
mod keys;
mod limits;
mod operate;
mod operator;
mod outcome;
mod progress;
mod run_budget;
mod sealing;
mod timers;
mod turn;
mod types;

pub use crate::error_kind::ErrorKind;
pub use context::{Visible, node_context};
pub use decide::{calls_in_flight, decide, in_flight, new_run};
pub use dispatch::merge_patch;
pub use item_source::ITEMS_TOOL;
pub use keys::{idempotency_key, node_key, task_id, wait_id};
pub use operate::check_operation;
pub use operator::{OperatorAction, Paused};
pub use sealing::current_fields;
pub use types::*;
