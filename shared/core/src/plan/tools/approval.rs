//! Approval gates on an agent's tools: `approval: required`, a jq condition over the call
//! (`'.args.amount > 500'`), or `{when, queue, timeout, escalate}`. A gated call waits on a
//! hidden `human` step, `<agent>.<tool>.approval`, so its task has the timeouts, escalations,
//! handover summary and audit of any task.

use serde_json::{Value, json};

use super::spec::StepCx;
use crate::plan::types::{ApprovalGate, PlannedStep, RetryPolicy, StepKind};

/// The queue a gate's tasks go to unless it names one.
pub(super) const DEFAULT_QUEUE: &str = "approvals";

/// What the person reads: the proposed call, the model's reason and the conversation so far.
const PROMPT: &str = "The agent of step `{{ .args.agent }}` asks to call `{{ .args.tool }}` (turn {{ .args.turn }}).\n\nArguments: {{ .args.arguments }}\n\nIts reason: {{ .args.reason }}\n\nThe conversation so far:\n{{ .args.conversation }}\n\nApprove to run the call (put changed arguments in the answer's `arguments`), or reject with a comment: the model reads the comment as the call's result.";

/// The gate of agent tool `t` (at `tptr`, tool id `id`), and its hidden task step; `None`
/// without `approval` or when it is wrong (reported).
pub(super) fn gate(
    cx: &mut StepCx<'_>,
    t: &serde_json::Map<String, Value>,
    tptr: &str,
    id: &str,
) -> Option<(ApprovalGate, PlannedStep)> {
    let aptr = format!("{tptr}/approval");
    let (when, queue, timeout, escalate) = match t.get("approval")? {
        Value::String(s) if s == "required" => (None, None, None, None),
        Value::String(cond) => (Some(cond.clone()), None, None, None),
        Value::Object(o) => {
            cx.p.unknown_args(Some(o), &aptr, &["when", "queue", "timeout", "escalate"]);
            let text = |k: &str| o.get(k).and_then(Value::as_str).map(str::to_owned);
            (text("when"), text("queue"), text("timeout"), o.get("escalate").cloned())
        }
        _ => {
            cx.p.err(
                &aptr,
                "`approval` is `required`, a jq condition over `.args`, or `{when, queue, timeout, escalate}`",
            );
            return None;
        }
    };
    let when = match when {
        None => None,
        Some(src) => Some(cx.p.expr(&format!("{aptr}/when"), &src)?),
    };
    let timeout = timeout.and_then(|d| cx.p.duration(format!("{aptr}/timeout"), &d));
    let mut levels = Vec::new();
    let list = match escalate {
        None => vec![],
        Some(Value::Array(a)) => a,
        Some(one @ Value::Object(_)) => vec![one],
        Some(_) => {
            cx.p.err(format!("{aptr}/escalate"), "`escalate` is `{after, to}` or a list of them");
            vec![]
        }
    };
    for (n, level) in list.iter().enumerate() {
        let after = level.get("after").and_then(Value::as_str);
        let to = level.get("to").and_then(Value::as_str);
        match (after, to) {
            (Some(a), Some(to)) => {
                if let Some(ms) = cx.p.duration(format!("{aptr}/escalate/{n}/after"), a) {
                    levels.push((ms, to.to_owned()));
                }
            }
            _ => cx.p.err(format!("{aptr}/escalate/{n}"), "an escalation is `{after, to}`"),
        }
    }
    levels.sort_by_key(|(after, _)| after.0);
    let queue = cx.p.template(&format!("{aptr}/queue"), &json!(queue.unwrap_or_else(|| DEFAULT_QUEUE.to_owned())))?;
    let prompt = cx.p.template(&aptr, &json!(PROMPT))?;
    let form = json!({
        "type": "object",
        "properties": {"arguments": {"type": "object", "description": "the call's arguments, changed"}},
    });
    let step_id = format!("{id}.approval");
    let kind = StepKind::Human { queue, prompt, form: Some(form), summary: true };
    let mut step =
        PlannedStep::hidden(step_id.clone(), kind, RetryPolicy { max_attempts: 1, ..Default::default() }, timeout);
    step.escalate = levels;
    Some((ApprovalGate { when, id: step_id, step: usize::MAX }, step))
}
