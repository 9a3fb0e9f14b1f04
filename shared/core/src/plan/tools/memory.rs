//! `memory`: reads, writes or searches an entity's memory in the coordinator's store; without
//! `entity`, a step works on the run's own entity (the workflow's `memory.entity`).

use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::Value;

use super::spec::{CallEnv, CallError, StepCx, ToolSpec};
use crate::plan::types::StepKind;

/// The `with` of a `memory` step.
#[derive(Debug, Clone, PartialEq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MemoryArgs {
    /// `read` (the default), `write` or `search`.
    #[serde(default)]
    pub op: Option<MemoryOp>,
    /// The entity; the run's own when absent.
    #[serde(default)]
    pub entity: Option<Value>,
    /// The fact's key (`read`: one fact, or every fact without it; `write`: needed).
    #[serde(default)]
    pub key: Option<String>,
    /// The fact's value (`write`).
    #[serde(default)]
    pub value: Option<Value>,
    /// The words to look for (`search`).
    #[serde(default)]
    pub query: Option<String>,
    /// How many results at most.
    #[serde(default)]
    pub limit: Option<Value>,
}

/// What a `memory` step does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum MemoryOp {
    /// Read one fact, or all of them.
    Read,
    /// Write a fact.
    Write,
    /// Search facts and episodes.
    Search,
}

pub(super) const NAME: &str = "memory";

pub(super) const SPEC: ToolSpec = ToolSpec::inline::<MemoryArgs>(NAME, compile).prepared_by(prepare);

/// `op` is read, write or search, with the fields each needs; without `entity`, the workflow's
/// `memory.entity` must be there to stand in.
fn compile(cx: &mut StepCx<'_>) -> Option<StepKind> {
    cx.unknown_args(SPEC.args());
    let wptr = cx.wptr;
    let op = cx.field("op").and_then(Value::as_str).unwrap_or("read");
    match op {
        "read" => {}
        "write" => {
            for f in ["key", "value"] {
                if cx.field(f).is_none() {
                    cx.p.err(format!("{wptr}/{f}"), format!("`op: write` needs `with.{f}`"));
                }
            }
        }
        "search" => {
            if cx.field("query").is_none() {
                cx.p.err(format!("{wptr}/query"), "`op: search` needs `with.query`, the words to look for");
            }
        }
        other => cx.p.err(format!("{wptr}/op"), format!("unknown op `{other}`: read, write or search")),
    }
    if cx.field("entity").is_none() && cx.wf.memory.is_none() {
        cx.p.err(format!("{wptr}/entity"), "`memory` needs `with.entity`, or a workflow-level `memory: {entity: ...}`");
    }
    cx.call_of(NAME)
}

/// A memory step without its own entity works on the run's.
fn prepare(input: &mut Value, env: &CallEnv<'_>) -> Result<(), CallError> {
    if let (Value::Object(m), Some(entity)) = (input, env.memory.and_then(|m| m.get("entity")).filter(|e| !e.is_null()))
        && !m.contains_key("entity")
    {
        m.insert("entity".into(), entity.clone());
    }
    Ok(())
}
