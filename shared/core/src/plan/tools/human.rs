//! `human`: a task a person answers (approve or reject, with form data). The engine opens it,
//! escalates it along the step's chain, and answers it by default when `on_timeout` says so.

use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::Value;

use super::spec::{StepCx, ToolSpec};
use crate::answer::{HumanAnswer, Verdict};
use crate::model::{OnTimeout, Step, TimeoutDecision};
use crate::plan::problems::Problems;
use crate::plan::types::{StepKind, check_against_schema};

/// The `with` of a `human` step.
#[derive(Debug, Clone, PartialEq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HumanArgs {
    /// The team or person who answers (a template).
    pub queue: String,
    /// What is asked (a template).
    #[serde(default)]
    pub prompt: Option<String>,
    /// `auto` (the default) to give the task the run's handover summary, `false` to leave it out.
    #[serde(default)]
    pub summary: Option<Value>,
    /// JSON Schema of the answer's data.
    #[serde(default)]
    pub form: Option<Value>,
}

pub(super) const SPEC: ToolSpec = ToolSpec::inline::<HumanArgs>("human", compile).escalates().answers_on_timeout();

fn compile(cx: &mut StepCx<'_>) -> Option<StepKind> {
    cx.unknown_args(SPEC.args());
    let wptr = cx.wptr;
    let queue = match cx.field("queue") {
        Some(q @ Value::String(_)) => cx.p.template(&format!("{wptr}/queue"), q),
        _ => {
            cx.p.err(format!("{wptr}/queue"), "`human` needs `with.queue`, the team or person who answers");
            None
        }
    };
    if let Some(sm) = cx.field("summary")
        && sm.as_str() != Some("auto")
        && !sm.is_boolean()
    {
        cx.p.err(format!("{wptr}/summary"), "`summary` is `auto` (or false to leave it out)");
    }
    let prompt = cx.p.template(&format!("{wptr}/prompt"), cx.field("prompt").unwrap_or(&Value::String(String::new())));
    let form = cx.field("form").cloned();
    if let Some(f) = &form
        && let Err(e) = jsonschema::validator_for(f)
    {
        cx.p.err(format!("{wptr}/form"), format!("not a valid JSON Schema: {e}"));
    }
    Some(StepKind::Human {
        queue: queue?,
        prompt: prompt?,
        form,
        summary: cx.field("summary").is_none_or(|v| v != &Value::Bool(false)),
    })
}

/// A step's `on_timeout` answer. On a tool it `applies` to it needs the `timeout` it answers,
/// and approving data must match the task's form, because nobody will be there to fix it.
pub(crate) fn on_timeout_answer(p: &mut Problems, s: &Step, ptr: &str, o: &OnTimeout, applies: bool) -> HumanAnswer {
    if applies && s.timeout.is_none() {
        p.err(format!("{ptr}/on_timeout"), "`on_timeout` answers when `timeout` passes: set `timeout`");
    }
    let decision = match o.decision {
        TimeoutDecision::Approve => Verdict::Approve,
        TimeoutDecision::Reject => Verdict::Reject,
    };
    let data = o.data.clone().unwrap_or_else(|| Value::Object(Default::default()));
    let form = s.with.as_ref().and_then(|w| w.get("form"));
    if decision == Verdict::Approve
        && let Some(form) = form
        && jsonschema::validator_for(form).is_ok()
        && let Err(problems) = check_against_schema(form, &data)
    {
        p.err(format!("{ptr}/on_timeout/data"), format!("does not match the task's form: {}", problems.join("; ")));
    }
    HumanAnswer { decision, data, comment: o.comment.clone(), by: Some("on_timeout".into()), principal: None }
}
