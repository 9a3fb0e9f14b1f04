//! Handover summaries written by the workflow's model: when a workflow configures one
//! (`defaults.llm` with a `model`), the person who gets a task reads a short account written by
//! that model from the deterministic handover (core's `handover_summary`), citing the audit
//! records it used, above the deterministic text itself. Any failure of the model (down, slow,
//! invalid answer, citing records that do not exist) leaves the deterministic text alone: a
//! task never waits on a summary.

use std::collections::BTreeSet;

use baton_core::Plan;
use baton_core::ids::{RunId, TaskId};
use baton_core::plan::tools::{LLM_TOOL, LlmCall, ToolInput};
use serde_json::{Value, json};

use crate::ports::{Clock, Tool, ToolCall};

/// How long a summary may take; the task opens without one after that.
pub const SUMMARY_TIMEOUT_MS: u64 = 15_000;

const INSTRUCTION: &str = "Write a short handover for the person who must decide the task below: what the case is, \
what happened and why, and what they are asked. At most 5 sentences, plain words, facts only from the text. \
List in `cited` the numbers N of the [audit #N] records you used.";

/// The audit record numbers the deterministic handover cites (`[audit #N]`).
fn cited_in(text: &str) -> BTreeSet<u64> {
    text.split("[audit #").skip(1).filter_map(|rest| rest.split(']').next()?.parse().ok()).collect()
}

/// The summary with the model's account on top, or `None` when the workflow has no model or the
/// model did not give a usable answer (the caller keeps `base`).
pub async fn model_summary(
    llm: &dyn Tool,
    clock: &dyn Clock,
    plan: &Plan,
    run_id: &RunId,
    task: &TaskId,
    base: &str,
) -> Option<String> {
    let defaults = plan.workflow.defaults.as_ref()?.llm.as_ref()?;
    let text = |k: &str| defaults.get(k).and_then(Value::as_str).map(str::to_owned);
    // The workflow's provider and model with the summary's own settings: short,
    // deterministic, one repair at most, the tool's system prompt.
    let input = LlmCall {
        prompt: format!("{INSTRUCTION}\n\n{base}"),
        output_schema: json!({
            "type": "object", "additionalProperties": false, "required": ["summary", "cited"],
            "properties": {
                "summary": {"type": "string", "minLength": 1, "maxLength": 1200},
                "cited": {"type": "array", "maxItems": 12, "items": {"type": "integer", "minimum": 1}}
            }
        }),
        provider: text("provider"),
        model: text("model")?,
        system: None,
        temperature: Some(0.0),
        max_tokens: Some(400),
        max_repairs: Some(1),
        max_string_length: None,
        sensitive: None,
        budget: None,
    };
    let call = ToolCall {
        run_id: run_id.clone(),
        node: format!("handover:{task}").into(),
        step: "handover".into(),
        attempt: 1,
        tool: LLM_TOOL.into(),
        input: input.to_input(),
        idempotency_key: format!("{run_id}/handover/{task}"),
        timeout_ms: Some(SUMMARY_TIMEOUT_MS),
        usage: Default::default(),
    };
    let deadline = clock.now_ms().saturating_add(SUMMARY_TIMEOUT_MS);
    let out = tokio::select! {
        o = llm.run(&call) => Ok(o),
        () = clock.sleep_until(deadline) => Err(()),
    };
    let answer = match out {
        Ok(o) => match o.result {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!(%run_id, %task, kind = %e.kind, error = %e.message, "the model wrote no handover; keeping the deterministic one");
                return None;
            }
        },
        Err(_) => {
            tracing::warn!(%run_id, %task, "the model's handover took too long; keeping the deterministic one");
            return None;
        }
    };
    let text = answer.get("summary")?.as_str()?.trim();
    let known = cited_in(base);
    let cited: Vec<u64> =
        answer.get("cited")?.as_array()?.iter().filter_map(Value::as_u64).filter(|n| known.contains(n)).collect();
    let model = defaults.get("model").and_then(Value::as_str).unwrap_or("the model");
    let sources = if cited.is_empty() {
        "cites no audit record".to_owned()
    } else {
        format!("cites {}", cited.iter().map(|n| format!("[audit #{n}]")).collect::<Vec<_>>().join(", "))
    };
    Some(format!("## Summary (written by `{model}`; {sources})\n{text}\n\n{base}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cited_records_are_read_from_the_deterministic_text() {
        let base = "- [audit #4] `a`: x\n- [audit #16] `b`: y\n- [audit #x] bad";
        assert_eq!(cited_in(base), BTreeSet::from([4, 16]));
    }
}
