//! `transform`: a jq expression over the run context, evaluated inline while the step's call is
//! rendered, so it never leaves the engine.

use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::Value;

use super::spec::{StepCx, ToolSpec};
use crate::plan::types::StepKind;

/// The `with` of a `transform` step.
#[derive(Debug, Clone, PartialEq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TransformArgs {
    /// jq expression over the run context; its value is the step's output.
    pub expr: String,
}

pub(super) const SPEC: ToolSpec = ToolSpec::inline::<TransformArgs>("transform", compile);

fn compile(cx: &mut StepCx<'_>) -> Option<StepKind> {
    match cx.field("expr") {
        // Anything besides `expr` is reported alone: the expression is not compiled then.
        _ if cx.obj().is_some_and(|o| o.keys().any(|k| k != "expr")) => {
            cx.unknown_args(SPEC.args());
            None
        }
        Some(Value::String(src)) => Some(StepKind::Transform { expr: cx.p.expr(&cx.at("expr"), src)? }),
        _ => {
            cx.p.err(cx.at("expr"), "`transform` needs `with.expr`, a jq expression");
            None
        }
    }
}
