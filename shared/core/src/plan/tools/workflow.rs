//! `workflow`: a child run of a published workflow, started by the coordinator; with
//! `continue_as_new`, this run's successor instead.

use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::Value;

use super::spec::{CHILD_RUN_TIMEOUT_MS, StepCx, ToolSpec};
use crate::plan::types::{Scope, StepKind};

/// The `with` of a `workflow` step.
#[derive(Debug, Clone, PartialEq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WorkflowArgs {
    /// The published workflow the child run starts (this workflow when continuing as new).
    #[serde(default)]
    pub name: Option<String>,
    /// The child run's input (a template).
    #[serde(default)]
    pub input: Option<Value>,
    /// End this run and continue as a new run of the workflow, which inherits its parent link.
    #[serde(default)]
    pub continue_as_new: Option<bool>,
}

pub(super) const NAME: &str = "workflow";

pub(super) const SPEC: ToolSpec = ToolSpec::inline::<WorkflowArgs>(NAME, compile).times_out_after(CHILD_RUN_TIMEOUT_MS);

/// A successor must be a plain top-level step: one run cannot continue as several.
fn compile(cx: &mut StepCx<'_>) -> Option<StepKind> {
    cx.unknown_args(SPEC.args());
    let (wptr, ptr, s) = (cx.wptr, cx.ptr, cx.step);
    let continues = match cx.field("continue_as_new") {
        None | Some(Value::Bool(false)) => false,
        Some(Value::Bool(true)) => true,
        Some(_) => {
            cx.p.err(format!("{wptr}/continue_as_new"), "`continue_as_new` is true or false");
            false
        }
    };
    match cx.field("name") {
        Some(Value::String(n)) if !n.trim().is_empty() => {}
        None if continues => {}
        _ => cx
            .p
            .err(format!("{wptr}/name"), "`workflow` needs `with.name`, the published workflow the child run starts"),
    }
    if continues {
        if cx.scope == Scope::Top {
            cx.continues = true;
        } else {
            cx.p.err(
                format!("{wptr}/continue_as_new"),
                "`continue_as_new` goes on a top-level step, not in a loop or as a fallback or compensation",
            );
        }
        for (field, set) in [("for_each", s.for_each.is_some()), ("fallback", s.fallback.is_some())] {
            if set {
                cx.p.err(
                    format!("{ptr}/{field}"),
                    format!("`{field}` cannot go with `continue_as_new`: a run continues as one new run"),
                );
            }
        }
    }
    cx.call_of(NAME)
}
