//! Keeping `llm` requests inside a small model's context window: a cap on unbounded strings in
//! the schema sent for constrained output, repair rounds that resend a shortened answer instead
//! of the whole conversation, and the one trimmed retry a context overflow gets.

use baton_core::engine::{ErrorKind, StepError};
use serde_json::Value;

/// `maxLength` given to string fields without one, when the step sets no `max_string_length`.
pub const DEFAULT_MAX_STRING_LENGTH: u64 = 1_000;

/// How much of an invalid answer, and of the validator's errors, a repair request quotes.
pub const REPAIR_QUOTE_CHARS: usize = 600;

/// `schema` with `maxLength: cap` on every string schema that sets no `maxLength` (and is not
/// an `enum` or `const`, which bound themselves), at any depth; unchanged when `cap` is 0.
pub fn capped_schema(schema: &Value, cap: u64) -> Value {
    let mut out = schema.clone();
    if cap > 0 {
        cap_strings(&mut out, cap);
    }
    out
}

fn cap_strings(v: &mut Value, cap: u64) {
    match v {
        Value::Object(m) => {
            let is_string = match m.get("type") {
                Some(Value::String(t)) => t == "string",
                Some(Value::Array(ts)) => ts.iter().any(|t| t == "string"),
                _ => false,
            };
            if is_string && !m.contains_key("maxLength") && !m.contains_key("enum") && !m.contains_key("const") {
                m.insert("maxLength".into(), Value::from(cap));
            }
            // Sub-schemas sit under these keywords; `properties`, `$defs` and `definitions`
            // map names to schemas, the others hold one schema or a list.
            for (k, sub) in m.iter_mut() {
                match k.as_str() {
                    "properties" | "patternProperties" | "$defs" | "definitions" => {
                        if let Value::Object(named) = sub {
                            named.values_mut().for_each(|s| cap_strings(s, cap));
                        }
                    }
                    "items"
                    | "prefixItems"
                    | "additionalProperties"
                    | "anyOf"
                    | "oneOf"
                    | "allOf"
                    | "not"
                    | "if"
                    | "then"
                    | "else" => cap_strings(sub, cap),
                    _ => {}
                }
            }
        }
        Value::Array(a) => a.iter_mut().for_each(|s| cap_strings(s, cap)),
        _ => {}
    }
}

/// At most `max` characters of `text`, saying how many were cut.
pub fn quote(text: &str, max: usize) -> String {
    let n = text.chars().count();
    if n <= max {
        return text.to_owned();
    }
    let kept: String = text.chars().take(max).collect();
    format!("{kept}… [{} more characters cut]", n - max)
}

/// The repair request after an invalid answer (itself resent quoted short, see [`quote`]): the
/// validator's errors, quoted short too, so a round costs about the same whatever the model
/// produced.
pub fn repair_request(errors: &str) -> String {
    format!(
        "That answer does not match the JSON Schema: {}. Reply with the corrected JSON object only.",
        quote(errors, REPAIR_QUOTE_CHARS)
    )
}

/// Whether a provider's error says the request did not fit the model's context: llama.cpp's
/// server (`exceeds the available context size`), OpenAI (`context_length_exceeded`, `maximum
/// context length`), Bedrock (`Input is too long`, `too many input tokens`).
pub fn is_context_overflow(e: &StepError) -> bool {
    if !matches!(e.kind, ErrorKind::Http4xx | ErrorKind::LlmContextExceeded) && !e.kind.is_aws_name() {
        return false;
    }
    let m = e.message.to_lowercase();
    [
        "exceeds the available context size",
        "context_length_exceeded",
        "maximum context length",
        "context window",
        "input is too long",
        "too many input tokens",
        "prompt is too long",
    ]
    .iter()
    .any(|p| m.contains(p))
}

/// The share of the request to keep: from the two token counts the server gives, when it does
/// (llama.cpp: `request (5210 tokens) exceeds the available context size (4096 tokens)`; OpenAI:
/// `maximum context length is 8192 tokens. However, your messages resulted in 9000 tokens`),
/// with a margin for the answer; a half otherwise.
pub fn keep_fraction(message: &str) -> f64 {
    let mut counts: Vec<f64> = Vec::new();
    let bytes = message.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i].is_ascii_digit() {
            let start = i;
            while i < bytes.len() && bytes[i].is_ascii_digit() {
                i += 1;
            }
            if message[i..].starts_with(" tokens")
                && let Ok(n) = message[start..i].parse::<f64>()
            {
                counts.push(n);
            }
        } else {
            i += 1;
        }
    }
    match counts.as_slice() {
        [a, b, ..] if a != b && a.min(*b) > 0.0 => (a.min(*b) / a.max(*b) * 0.75).clamp(0.05, 0.9),
        _ => 0.5,
    }
}

/// The prompt cut to `fraction` of its characters (the start kept: instructions and the text
/// usually open a prompt), saying that it was cut.
pub fn trim_prompt(prompt: &str, fraction: f64) -> String {
    let n = prompt.chars().count();
    let keep = ((n as f64) * fraction).floor() as usize;
    if keep >= n {
        return prompt.to_owned();
    }
    let kept: String = prompt.chars().take(keep).collect();
    format!("{kept}\n[… the rest of the text, {} characters, was cut to fit the model's context]", n - keep)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn unbounded_strings_get_the_cap_at_any_depth() {
        let schema = json!({
            "type": "object",
            "properties": {
                "topic": {"type": "string"},
                "short": {"type": "string", "maxLength": 20},
                "kind": {"type": "string", "enum": ["a", "b"]},
                "tags": {"type": "array", "items": {"type": "string"}},
                "who": {"anyOf": [{"type": ["string", "null"]}, {"$ref": "#/$defs/p"}]}
            },
            "$defs": {"p": {"type": "object", "properties": {"name": {"type": "string"}}}}
        });
        let capped = capped_schema(&schema, 300);
        assert_eq!(capped["properties"]["topic"]["maxLength"], 300);
        assert_eq!(capped["properties"]["short"]["maxLength"], 20);
        assert!(capped["properties"]["kind"].get("maxLength").is_none());
        assert_eq!(capped["properties"]["tags"]["items"]["maxLength"], 300);
        assert_eq!(capped["properties"]["who"]["anyOf"][0]["maxLength"], 300);
        assert_eq!(capped["$defs"]["p"]["properties"]["name"]["maxLength"], 300);
        assert_eq!(capped_schema(&schema, 0), schema);
    }

    #[test]
    fn repairs_quote_a_looping_answer_short() {
        let answer = format!("{{\"topic\": \"{}", "refund ".repeat(2_000));
        let q = quote(&answer, REPAIR_QUOTE_CHARS);
        assert!(q.chars().count() < 700 && q.ends_with("more characters cut]"), "{q}");
        let r = repair_request(&"/topic: too long; ".repeat(100));
        assert!(r.chars().count() < 800 && r.contains("more characters cut]"), "{r}");
        assert!(repair_request("/: missing `customer_name`").contains("missing `customer_name`"));
    }

    #[test]
    fn overflows_are_told_from_other_refusals_and_sized_from_the_message() {
        let llama = StepError::new(
            ErrorKind::Http4xx,
            "http://127.0.0.1:8089/v1/chat/completions answered 400: {\"error\":{\"code\":400,\"message\":\"request (5210 tokens) exceeds the available context size (4096 tokens), try increasing it\"}}",
        );
        assert!(is_context_overflow(&llama));
        let f = keep_fraction(&llama.message);
        assert!((f - 4096.0 / 5210.0 * 0.75).abs() < 1e-9, "{f}");
        assert!(!is_context_overflow(&StepError::new(ErrorKind::Http4xx, "answered 400: bad model name")));
        assert!(!is_context_overflow(&StepError::new(ErrorKind::Http5xx, "maximum context length")));
        assert_eq!(keep_fraction("prompt is too long"), 0.5);
        let t = trim_prompt(&"x".repeat(1_000), 0.25);
        assert!(t.starts_with(&"x".repeat(250)) && t.contains("750 characters, was cut"));
    }
}
