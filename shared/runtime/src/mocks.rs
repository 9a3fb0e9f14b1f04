//! Scripted tool results (`--mocks FILE`), like Step Functions Local's mock config:
//! `{steps: {<id>: [{output: ...} | {error: <kind>, message: ...}, ...]}}`. The n-th entry answers
//! the n-th call of that step (across attempts, iterations and items); the last entry repeats.
//! `cache: {<id>: {output, age}}` seeds the response a `fallback: cache` look-up finds, and
//! `workflows: {<name>: <mocks>}` scripts the child runs of workflow `<name>` a mocked run starts.

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

/// A kept response a mocks file puts in front of a `fallback: cache` look-up, so the stale path
/// runs offline without an earlier run having kept anything.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CacheSeed {
    /// The response as the step would have returned it.
    pub output: Value,
    /// How old the kept response is when the look-up runs (`3h`, `90s`).
    pub age: String,
}

/// Mocks by step id.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Mocks {
    /// Scripts by step id.
    #[serde(default)]
    pub steps: HashMap<String, Vec<MockEntry>>,
    /// Kept responses by step id, served by the step's `fallback: cache` look-up.
    #[serde(default)]
    pub cache: HashMap<String, CacheSeed>,
    /// Mocks for the child runs of each workflow (by name) this run starts.
    #[serde(default)]
    pub workflows: HashMap<String, Value>,
}

impl Mocks {
    /// Parses a mocks document and checks that every step it names exists in `plan`.
    pub fn parse(value: &Value, plan: &Plan) -> Result<Self, RuntimeError> {
        let mocks: Mocks = serde_json::from_value(value.clone()).map_err(|e| {
            RuntimeError::InvalidMocks(format!(
                "{e}; expected {{steps: {{<id>: [{{output: ...}} | {{error: <kind>, message: ...}}]}}, \
                 cache: {{<id>: {{output: ..., age: 3h}}}}, workflows: {{<name>: {{steps: ...}}}}}}"
            ))
        })?;
        for (id, entries) in &mocks.steps {
            let step = known_step(plan, id, "")?;
            if entries.is_empty() {
                return Err(RuntimeError::InvalidMocks(format!("step `{id}` has an empty list of results")));
            }
            if matches!(step.kind, baton_core::plan::StepKind::WaitEvent { .. }) {
                event_wait_entries(id, step, entries)?;
            }
        }
        for (id, seed) in &mocks.cache {
            let step = known_step(plan, id, "cache: ")?;
            if step.cache.is_none() {
                return Err(RuntimeError::InvalidMocks(format!(
                    "cache: step `{id}` keeps no responses (it has no `cache: {{ttl: ...}}`)"
                )));
            }
            baton_core::duration::parse_duration(&seed.age)
                .map_err(|e| RuntimeError::InvalidMocks(format!("cache: `{id}`: age `{}`: {e}", seed.age)))?;
        }
        Ok(mocks)
    }

    /// The seeded response for `step`'s cache look-up and its age in ms, if the file has one.
    pub fn cached(&self, step: &str) -> Option<(&Value, u64)> {
        let seed = self.cache.get(step)?;
        let age = baton_core::duration::parse_duration(&seed.age).ok()?;
        Some((&seed.output, age.0))
    }

    /// The mocks of a child run of `workflow`: its entry under `workflows`, which also scripts
    /// the children it starts in turn. A mocked parent's child is always mocked (offline too),
    /// with no scripted steps when the file names none for it.
    pub fn for_child(document: &Value, workflow: &str) -> Value {
        let workflows = document.get("workflows");
        let mut child = workflows.and_then(|w| w.get(workflow)).cloned().unwrap_or_else(|| serde_json::json!({}));
        if let (Some(obj), Some(all)) = (child.as_object_mut(), workflows) {
            obj.entry("workflows").or_insert_with(|| all.clone());
        }
        child
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

/// An event wait ends by its event (an `output` entry) or by its timeout: `error: timeout` stands
/// for the timeout, and only a wait that has one can time out.
fn event_wait_entries(
    id: &str,
    step: &baton_core::plan::PlannedStep,
    entries: &[MockEntry],
) -> Result<(), RuntimeError> {
    for e in entries {
        if let MockEntry::Error { error, .. } = e {
            if *error != ErrorKind::Timeout {
                return Err(RuntimeError::InvalidMocks(format!(
                    "step `{id}` is a wait_event: it ends with an event (`output`) or times out \
                     (`error: timeout`), not with `{error}`"
                )));
            }
            if step.timeout.is_none() {
                return Err(RuntimeError::InvalidMocks(format!(
                    "step `{id}` has no `timeout`, so `error: timeout` cannot end its wait"
                )));
            }
        }
    }
    Ok(())
}

/// The step `id` of `plan`, or an error naming the section of the mocks file and a near miss.
fn known_step<'p>(plan: &'p Plan, id: &str, section: &str) -> Result<&'p baton_core::plan::PlannedStep, RuntimeError> {
    plan.step(id).ok_or_else(|| {
        let ids: Vec<&str> = plan.index.keys().map(String::as_str).collect();
        let hint =
            baton_core::plan::did_you_mean(id, &ids).map(|s| format!(" (did you mean `{s}`?)")).unwrap_or_default();
        RuntimeError::InvalidMocks(format!("{section}step `{id}` does not exist in `{}`{hint}", plan.workflow.name))
    })
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

    #[test]
    fn a_wait_with_a_templated_timeout_may_be_scripted_to_time_out() {
        let wait = |timeout: &str| {
            format!(
                "name: w\nsteps:\n  - id: wait\n    tool: wait_event\n{timeout}    with: {{pattern: {{source: [x]}}}}\n"
            )
        };
        let mocks = json!({"steps": {"wait": [{"error": "timeout"}]}});
        for timeout in ["    timeout: 1h\n", "    timeout: '{{ .input.limit }}'\n"] {
            let plan = baton_core::load_definition(None, &wait(timeout)).expect("valid");
            Mocks::parse(&mocks, &plan).unwrap_or_else(|e| panic!("{timeout}: {e}"));
        }
        let plan = baton_core::load_definition(None, &wait("")).expect("valid");
        assert!(Mocks::parse(&mocks, &plan).is_err(), "a wait without a timeout cannot time out");
    }
}
