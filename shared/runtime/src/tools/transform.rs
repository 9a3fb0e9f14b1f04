//! `transform`: the engine evaluates `with.expr` while resolving arguments, so the tool only hands
//! the value back. It runs inside the coordinator, without a queue hop.

use async_trait::async_trait;
use baton_core::engine::StepError;
use serde_json::Value;

use crate::ports::{Tool, ToolCall};

/// Returns the already evaluated `value` of the call's input.
pub struct TransformTool;

#[async_trait]
impl Tool for TransformTool {
    async fn call(&self, call: &ToolCall) -> Result<Value, StepError> {
        Ok(call.input.get("value").cloned().unwrap_or(Value::Null))
    }

    fn inline(&self) -> bool {
        true
    }
}
