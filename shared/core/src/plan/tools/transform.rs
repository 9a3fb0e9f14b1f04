//! `transform`: a jq expression over the run context, evaluated inline while the step's call is
//! rendered, so it never leaves the engine.

use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::Value;

use super::spec::{StepCx, ToolSpec};
use crate::expr::Budget;
use crate::plan::types::StepKind;

/// The `with` of a `transform` step.
#[derive(Debug, Clone, PartialEq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TransformArgs {
    /// jq expression over the run context; its value is the step's output.
    pub expr: String,
    /// This step's evaluation budget, over the defaults (10,000,000 steps, 64 MiB of values).
    #[serde(default)]
    pub limits: Option<TransformLimits>,
}

/// A transform's own evaluation budget; past either, the step fails with `expression_limit`.
#[derive(Debug, Clone, PartialEq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TransformLimits {
    /// Evaluation steps (value operations and copies, jq context copies).
    pub steps: Option<u64>,
    /// Bytes of the arrays, objects and strings the evaluation builds.
    pub memory_bytes: Option<u64>,
}

pub(super) const SPEC: ToolSpec = ToolSpec::inline::<TransformArgs>("transform", compile);

fn compile(cx: &mut StepCx<'_>) -> Option<StepKind> {
    match cx.field("expr") {
        // Anything besides `expr` and `limits` is reported alone: the expression is not compiled then.
        _ if cx.obj().is_some_and(|o| o.keys().any(|k| k != "expr" && k != "limits")) => {
            cx.unknown_args(SPEC.args());
            None
        }
        Some(Value::String(src)) => {
            let budget = limits(cx);
            Some(StepKind::Transform { expr: cx.p.expr(&cx.at("expr"), src)?, budget })
        }
        _ => {
            cx.p.err(cx.at("expr"), "`transform` needs `with.expr`, a jq expression");
            None
        }
    }
}

/// `with.limits` as a budget over the defaults; each given limit a whole number above 0.
fn limits(cx: &mut StepCx<'_>) -> Option<Budget> {
    let o = match cx.field("limits")? {
        Value::Object(o) => o.clone(),
        _ => {
            cx.p.err(cx.at("limits"), "`limits` is a mapping of `steps` and `memory_bytes`");
            return None;
        }
    };
    let mut budget = Budget::default();
    for (k, v) in &o {
        let slot = match k.as_str() {
            "steps" => &mut budget.steps,
            "memory_bytes" => &mut budget.memory_bytes,
            other => {
                cx.p.err(
                    format!("{}/{other}", cx.at("limits")),
                    format!("unknown limit `{other}`; limits are `steps` and `memory_bytes`"),
                );
                continue;
            }
        };
        match v.as_u64() {
            Some(n) if n > 0 => *slot = n,
            _ => cx.p.err(format!("{}/{k}", cx.at("limits")), format!("`{k}` is a whole number above 0")),
        }
    }
    Some(budget)
}
