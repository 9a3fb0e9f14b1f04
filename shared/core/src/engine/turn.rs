//! What one model turn of an `agent` step is sent: the prompt (goal, tools, earlier calls and
//! their results) and the schema its answer must match. Rendering only: the loop that starts
//! turns and calls is in `agent.rs`, which sits above the dispatch code that uses this.

use serde_json::{Value, json};

use super::types::AgentState;
use crate::plan::AgentTool;

/// How much of one tool result a turn's prompt shows the model.
const RESULT_CHARS: usize = 1_500;

/// Tool calls one turn may ask for.
pub(super) const CALLS_PER_TURN: usize = 4;

/// The JSON Schema of a turn's answer: `{action: call, calls: [{tool, arguments}]}` with each
/// tool's own argument schema, or `{action: answer, answer}`; on the last turn only the answer.
fn decision_schema(tools: &[AgentTool], output_schema: &Value, last: bool) -> Value {
    let answer = json!({
        "type": "object",
        "required": ["action", "answer"],
        "properties": {"action": {"const": "answer"}, "answer": output_schema},
        "additionalProperties": false,
    });
    if last || tools.is_empty() {
        return answer;
    }
    let calls: Vec<Value> = tools
        .iter()
        .map(|t| match t.approval {
            None => json!({
                "type": "object",
                "required": ["tool", "arguments"],
                "properties": {"tool": {"const": t.name}, "arguments": t.parameters},
                "additionalProperties": false,
            }),
            // A person may have to approve the call: the model says why it makes it.
            Some(_) => json!({
                "type": "object",
                "required": ["tool", "arguments", "reason"],
                "properties": {
                    "tool": {"const": t.name}, "arguments": t.parameters,
                    "reason": {"type": "string", "maxLength": 500},
                },
                "additionalProperties": false,
            }),
        })
        .collect();
    let call = json!({
        "type": "object",
        "required": ["action", "calls"],
        "properties": {
            "action": {"const": "call"},
            "calls": {"type": "array", "minItems": 1, "maxItems": CALLS_PER_TURN, "items": {"anyOf": calls}},
        },
        "additionalProperties": false,
    });
    json!({"anyOf": [call, answer]})
}

fn shown(v: &Value) -> String {
    let text = v.to_string();
    if text.chars().count() <= RESULT_CHARS {
        return text;
    }
    let cut: String = text.chars().take(RESULT_CHARS).collect();
    format!("{cut}… (cut)")
}

/// The `llm` arguments of a turn: the rendered `llm` fields of the step, a prompt with the goal,
/// the tools and every earlier call's result, and the decision schema.
pub(super) fn turn_input(
    rendered: &Value,
    tools: &[AgentTool],
    state: &AgentState,
    max_turns: u32,
    output: &Value,
) -> Value {
    let last = state.turn >= max_turns;
    let goal = rendered.get("goal").map(|g| g.as_str().map(str::to_owned).unwrap_or_else(|| g.to_string()));
    let mut prompt = format!("Goal: {}\n\n", goal.unwrap_or_default());
    prompt.push_str(&format!(
        "You work in turns; this is turn {} of {max_turns}. Each turn, either call tools or give the final answer.\n",
        state.turn
    ));
    if !tools.is_empty() {
        prompt.push_str("\nTools:\n");
        for t in tools {
            let gate =
                if t.approval.is_some() { " A person may have to approve a call: give your `reason`." } else { "" };
            prompt.push_str(&format!("- {}: {}{gate} Arguments: {}\n", t.name, t.description, t.parameters));
        }
    }
    if !state.calls.is_empty() {
        prompt.push_str("\nYour earlier calls and what they returned:\n");
        for (i, c) in state.calls.iter().enumerate() {
            let outcome = match (&c.output, &c.error) {
                (Some(out), _) => format!("returned {}", shown(out)),
                (None, Some(e)) => format!("failed ({}): {}", e.kind, e.message),
                (None, None) => "did not return".to_owned(),
            };
            prompt.push_str(&format!("{}. turn {}: {}({}) {outcome}\n", i + 1, c.turn, c.tool, c.arguments));
        }
    }
    prompt.push_str(if last {
        "\nThis is the last turn: give the final answer now, as {\"action\": \"answer\", \"answer\": ...}.\n"
    } else {
        "\nReply with {\"action\": \"call\", \"calls\": [{\"tool\": ..., \"arguments\": {...}}]} to call tools, or {\"action\": \"answer\", \"answer\": ...} when you have what the goal needs.\n"
    });
    let mut input = serde_json::Map::new();
    if let Value::Object(r) = rendered {
        for (k, v) in r {
            if k != "goal" {
                input.insert(k.clone(), v.clone());
            }
        }
    }
    input.insert("prompt".into(), Value::String(prompt));
    input.insert("output_schema".into(), decision_schema(tools, output, last));
    Value::Object(input)
}
