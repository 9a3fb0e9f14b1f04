//! `llm`: one model call whose answer must match a JSON Schema, run on the `llm` worker. The
//! workflow's `defaults.llm` fills in the fields a step leaves out; `agent` steps share the
//! same settings and checks.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::spec::{CALL_TIMEOUT_MS, StepCx, ToolInput, ToolSpec};
use crate::plan::problems::Problems;
use crate::plan::structure::did_you_mean;
use crate::plan::types::StepKind;

/// Model providers an `llm` (or `agent`) step can name.
pub(super) const PROVIDERS: &[&str] = &["openai", "bedrock"];

/// The `with` fields a workflow's `defaults.llm` may set: all but the step's own work.
pub(super) const SETTINGS: &[&str] =
    &["provider", "model", "system", "temperature", "max_tokens", "max_repairs", "max_string_length", "sensitive"];

/// Declares the `with` struct of a tool that calls a model: its own fields, then the settings
/// `llm` and `agent` share (those a workflow's `defaults.llm` may set, [`SETTINGS`]).
macro_rules! with_llm_settings {
    ($(#[$attr:meta])* pub struct $name:ident { $($(#[$fattr:meta])* pub $field:ident: $ty:ty,)* }) => {
        $(#[$attr])*
        pub struct $name {
            $($(#[$fattr])* pub $field: $ty,)*
            /// `openai` (an OpenAI-compatible API, the default) or `bedrock`.
            #[serde(default)]
            pub provider: Option<String>,
            /// The model.
            #[serde(default)]
            pub model: Option<String>,
            /// The system prompt.
            #[serde(default)]
            pub system: Option<String>,
            /// Sampling temperature, 0 to 2.
            #[serde(default)]
            #[schemars(range(min = 0.0, max = 2.0))]
            pub temperature: Option<f64>,
            /// Upper bound on the answer's tokens (at least 1).
            #[serde(default)]
            #[schemars(range(min = 1, max = 1_000_000))]
            pub max_tokens: Option<u32>,
            /// How often an answer that does not match the schema is sent back to be repaired
            /// (0 to 10).
            #[serde(default)]
            #[schemars(range(max = 10))]
            pub max_repairs: Option<u32>,
            /// The `maxLength` given, in the schema sent to the model, to string fields that set
            /// none (1,000 when absent; 0 sends the schema as written): a small model looping
            /// inside an unbounded string then stops at the cap instead of filling its context.
            #[serde(default)]
            #[schemars(range(max = 1_000_000))]
            pub max_string_length: Option<u32>,
            /// Answer field names redacted in the audit log.
            #[serde(default)]
            pub sensitive: Option<Vec<String>>,
        }
    };
}
pub(super) use with_llm_settings;

with_llm_settings! {
    /// The `with` of an `llm` step (`defaults.llm` may set all but `prompt` and `output_schema`).
    #[derive(Debug, Clone, PartialEq, Deserialize, JsonSchema)]
    #[serde(deny_unknown_fields)]
    pub struct LlmArgs {
        /// The text the model works on (a template).
        pub prompt: String,
        /// The JSON Schema every answer must match.
        pub output_schema: Value,
        /// What the call may spend, repairs included: `max_input_tokens`, `max_output_tokens`,
        /// `max_tokens`, `max_usd`; over it, `budget_exceeded`.
        #[serde(default)]
        pub budget: Option<Value>,
    }
}

/// What one `llm` call may spend over all its requests (repairs included).
pub use crate::model::SpendLimits as LlmBudget;

pub(super) const NAME: &str = "llm";

/// An `llm` call as its worker receives it: the step's rendered `with` over the workflow's
/// `defaults.llm`, or one turn of an `agent` step (its settings, with the turn's prompt and
/// decision schema).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LlmCall {
    /// The text the model works on.
    pub prompt: String,
    /// The JSON Schema every answer must match.
    pub output_schema: Value,
    /// The provider; the worker's default when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider: Option<String>,
    /// The model.
    pub model: String,
    /// The system prompt; the tool's own when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system: Option<String>,
    /// Sampling temperature.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f64>,
    /// Upper bound on the answer's tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<u64>,
    /// How often an invalid answer is sent back to be repaired; the tool's default when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_repairs: Option<u64>,
    /// The cap on string fields without `maxLength` in the schema sent to the model; the
    /// tool's default when absent, none when 0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_string_length: Option<u64>,
    /// Answer field names redacted in the audit log.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sensitive: Option<Vec<String>>,
    /// What the call may spend.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget: Option<LlmBudget>,
}

impl ToolInput for LlmCall {
    const TOOL: &'static str = NAME;
}

pub(super) const SPEC: ToolSpec =
    ToolSpec::worker::<LlmArgs>(NAME, "llm", compile).with_defaults(SETTINGS).cached().times_out_after(CALL_TIMEOUT_MS);

/// The workflow's `defaults.llm` under the step's own `with`, checked field by field; the
/// answer schema must compile, since every answer is validated against it.
fn compile(cx: &mut StepCx<'_>) -> Option<StepKind> {
    cx.unknown_args(SPEC.args());
    let wptr = cx.wptr;
    let mut merged = cx.wf.defaults.as_ref().and_then(|d| d.llm.clone()).unwrap_or_default();
    for (k, v) in cx.obj().cloned().unwrap_or_default() {
        merged.insert(k, v);
    }
    let field = |name: &str| merged.get(name);
    if !matches!(field("prompt"), Some(Value::String(p)) if !p.trim().is_empty()) {
        cx.p.err(format!("{wptr}/prompt"), "`llm` needs `with.prompt`, the text the model works on");
    }
    match field("output_schema") {
        Some(schema @ Value::Object(_)) => {
            if let Err(e) = jsonschema::validator_for(schema) {
                cx.p.err(format!("{wptr}/output_schema"), format!("not a valid JSON Schema: {e}"));
            }
        }
        _ => cx.p.err(
            format!("{wptr}/output_schema"),
            "`llm` needs `with.output_schema`, the JSON Schema every answer must match",
        ),
    }
    if !matches!(field("model"), Some(Value::String(m)) if !m.is_empty()) {
        cx.p.err(format!("{wptr}/model"), "`llm` needs `with.model` (or `defaults.llm.model`)");
    }
    if let Some(p) = field("provider")
        && !p.as_str().is_some_and(|p| PROVIDERS.contains(&p))
    {
        let shown = p.as_str().map_or_else(|| p.to_string(), |s| format!("`{s}`"));
        let hint = p.as_str().and_then(|s| did_you_mean(s, PROVIDERS)).map(|s| format!(" (did you mean `{s}`?)"));
        cx.p.err(
            format!("{wptr}/provider"),
            format!("unknown provider {shown}{}; known: {}", hint.unwrap_or_default(), PROVIDERS.join(", ")),
        );
    }
    check_settings(cx.p, &merged, wptr);
    if let Some(b) = merged.remove("budget") {
        let checked = super::budget::budget(cx, Some(b));
        for f in ["max_tool_calls", "max_duration"] {
            if cx.field("budget").and_then(|b| b.get(f)).is_some() {
                cx.p.err(
                    format!("{wptr}/budget/{f}"),
                    format!("`{f}` limits an `agent`; an `llm` step's `timeout` bounds its time"),
                );
            }
        }
        if let Some(b) = checked {
            let call = LlmBudget {
                max_input_tokens: b.max_input_tokens,
                max_output_tokens: b.max_output_tokens,
                max_tokens: b.max_tokens,
                max_usd: b.max_usd,
            };
            merged.insert("budget".into(), serde_json::to_value(call).unwrap_or(Value::Null));
        }
    }
    Some(StepKind::Tool { tool: NAME.into(), args: cx.p.template(wptr, &Value::Object(merged))? })
}

/// The settings an `llm` step and each `agent` turn share: numbers in range, text.
pub(super) fn check_settings(p: &mut Problems, merged: &Map<String, Value>, wptr: &str) {
    let field = |name: &str| merged.get(name);
    let number =
        |v: Option<&Value>, lo: f64, hi: f64| v.is_none_or(|v| v.as_f64().is_some_and(|n| (lo..=hi).contains(&n)));
    let integer =
        |v: Option<&Value>, lo: u64, hi: u64| v.is_none_or(|v| v.as_u64().is_some_and(|n| (lo..=hi).contains(&n)));
    if !number(field("temperature"), 0.0, 2.0) {
        p.err(format!("{wptr}/temperature"), "`temperature` is a number from 0 to 2");
    }
    if !integer(field("max_tokens"), 1, 1_000_000) {
        p.err(format!("{wptr}/max_tokens"), "`max_tokens` is a whole number of at least 1");
    }
    if !integer(field("max_repairs"), 0, 10) {
        p.err(format!("{wptr}/max_repairs"), "`max_repairs` is a whole number from 0 to 10");
    }
    if !integer(field("max_string_length"), 0, 1_000_000) {
        p.err(format!("{wptr}/max_string_length"), "`max_string_length` is a whole number from 0 (no cap) to 1000000");
    }
    if field("system").is_some_and(|v| !v.is_string()) {
        p.err(format!("{wptr}/system"), "`system` is text");
    }
    if field("sensitive").is_some_and(|v| !v.as_array().is_some_and(|a| a.iter().all(Value::is_string))) {
        p.err(format!("{wptr}/sensitive"), "`sensitive` lists answer field names to redact in the audit log");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn calls_as_dispatched_today_read_and_write_back_the_same() {
        let samples = [
            json!({"prompt": "hi", "output_schema": {"type": "object"}, "model": "m"}),
            json!({
                "prompt": "Goal: x", "output_schema": {"anyOf": [{"type": "object"}]}, "provider": "bedrock",
                "model": "m", "system": "be brief", "temperature": 0.2, "max_tokens": 400, "max_repairs": 1,
                "sensitive": ["iban"],
            }),
        ];
        for sample in samples {
            let call = LlmCall::from_input(&sample).expect("reads");
            assert_eq!(call.to_input(), sample);
        }
    }

    #[test]
    fn a_bad_call_names_its_field() {
        let e = LlmCall::from_input(&json!({"output_schema": {}, "model": "m"})).expect_err("prompt is needed");
        assert_eq!(e.message, "invalid `llm` call: missing field `prompt`");
        let e = LlmCall::from_input(&json!({"prompt": "p", "output_schema": {}, "model": "m", "max_tokens": -1}))
            .expect_err("a count");
        assert_eq!(e.message, "invalid `llm` call: `max_tokens`: invalid value: integer `-1`, expected u64");
    }

    #[test]
    fn an_llm_step_takes_a_budget_of_tokens_and_usd_only() {
        let yaml = |budget: &str| {
            format!(
                "name: w\nsteps:\n  - id: s\n    tool: llm\n    with: {{prompt: p, model: m, output_schema: {{type: object}}, budget: {budget}}}\n"
            )
        };
        let plan = crate::plan::load_definition(None, &yaml("{max_tokens: 500, max_usd: 0.01}")).expect("valid");
        let StepKind::Tool { args, .. } = &plan.steps[0].kind else { panic!("a tool step") };
        let call = LlmCall::from_input(&args.render(&json!({})).expect("renders")).expect("reads");
        assert_eq!(call.budget.map(|b| (b.max_tokens, b.max_usd)), Some((Some(500), Some(0.01))));
        let problems = crate::plan::load_definition(None, &yaml("{max_tool_calls: 3}")).expect_err("not for llm");
        assert!(problems.iter().any(|p| p.pointer.ends_with("/budget/max_tool_calls")), "{problems:?}");
    }
}
