//! Scripted tool results (`--mocks FILE`), like Step Functions Local's mock config:
//! `{steps: {<id>: [{output: ...} | {error: <kind>, message: ...}, ...]}}`. The n-th entry answers
//! the n-th call of that step (across attempts, iterations and items); the last entry repeats.

use std::collections::HashMap;

use baton_core::Plan;
use baton_core::engine::{ErrorKind, StepError};
use serde::Deserialize;
use serde_json::Value;

use crate::error::RuntimeError;

/// One scripted answer.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(untagged, deny_unknown_fields)]
pub enum MockEntry {
    /// The call fails with this kind.
    Error {
        /// Error kind: a built-in one, or the test's own (`my_kind`).
        error: ErrorKind,
        /// Message.
        #[serde(default)]
        message: Option<String>,
        /// Simulated `Retry-After` (ms).
        #[serde(default)]
        retry_after_ms: Option<u64>,
    },
    /// The call returns this output (for human steps: the answer).
    Output {
        /// The output.
        output: Value,
    },
}

/// Mocks by step id.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Mocks {
    /// Scripts by step id.
    pub steps: HashMap<String, Vec<MockEntry>>,
}

impl Mocks {
    /// Parses a mocks document and checks that every step it names exists in `plan`.
    pub fn parse(value: &Value, plan: &Plan) -> Result<Self, RuntimeError> {
        let mocks: Mocks = serde_json::from_value(value.clone()).map_err(|e| {
            RuntimeError::InvalidMocks(format!(
                "{e}; expected {{steps: {{<id>: [{{output: ...}} | {{error: <kind>, message: ...}}]}}}}"
            ))
        })?;
        for (id, entries) in &mocks.steps {
            if plan.step(id).is_none() {
                let ids: Vec<&str> = plan.index.keys().map(String::as_str).collect();
                let hint = baton_core::plan::did_you_mean(id, &ids)
                    .map(|s| format!(" (did you mean `{s}`?)"))
                    .unwrap_or_default();
                return Err(RuntimeError::InvalidMocks(format!(
                    "step `{id}` does not exist in `{}`{hint}",
                    plan.workflow.name
                )));
            }
            if entries.is_empty() {
                return Err(RuntimeError::InvalidMocks(format!("step `{id}` has an empty list of results")));
            }
        }
        Ok(mocks)
    }

    /// The scripted result of call number `n` (0-based) of `step`, if the step is mocked.
    pub fn answer(&self, step: &str, n: usize) -> Option<Result<Value, StepError>> {
        let entries = self.steps.get(step)?;
        let entry = entries.get(n).or_else(|| entries.last())?;
        Some(match entry {
            MockEntry::Output { output } => Ok(output.clone()),
            MockEntry::Error { error, message, retry_after_ms } => Err(StepError {
                kind: error.clone(),
                message: message.clone().unwrap_or_else(|| format!("mocked {error}")),
                retry_after_ms: *retry_after_ms,
            }),
        })
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn a_scripted_error_is_a_built_in_kind_or_the_tests_own() {
        let mocks: Mocks = serde_json::from_value(json!({"steps": {"call": [
            {"error": "http_429", "retry_after_ms": 500},
            {"error": "my_kind", "message": "declined"},
        ]}}))
        .expect("valid mocks");
        let first = mocks.answer("call", 0).and_then(Result::err).expect("an error");
        assert_eq!((first.kind, first.retry_after_ms), (ErrorKind::Http429, Some(500)));
        let second = mocks.answer("call", 1).and_then(Result::err).expect("an error");
        assert_eq!(second.kind, ErrorKind::Other("my_kind".into()));
        assert_eq!(second.message, "declined");
        let stored = serde_json::to_value(&second).expect("serialises");
        assert_eq!(stored, json!({"kind": "my_kind", "message": "declined"}));
    }
}
