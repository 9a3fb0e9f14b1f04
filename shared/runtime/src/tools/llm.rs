//! `llm`: unstructured text in, schema-valid JSON out, from any OpenAI-compatible server
//! (`/v1/chat/completions`: OpenAI, Ollama, vLLM, llama.cpp's server). The answer schema goes to
//! the server as `response_format: json_schema` (servers that enforce it answer valid JSON every
//! time) and into the system message (for servers that do not). Every answer is parsed and
//! validated; an invalid one is sent back with the validation errors, up to `max_repairs` times,
//! then the attempt fails with `llm_invalid_output`. 429 and 5xx answers map to `http_429`
//! (with `Retry-After`) and `http_5xx`, so the step's retry policy applies.
//!
//! The step's output is the answer object itself; the prompt, every raw answer with its
//! validation result, the repairs, token usage and the provider's cost (when it reports one) go
//! to the audit record. Answer fields listed in `with.sensitive` are redacted there; the API key
//! never leaves the request.

use std::time::Duration;

use async_trait::async_trait;
use baton_core::engine::StepError;
use serde_json::{Value, json};

use super::http::{classify, retry_after_ms};
use crate::ports::{Tool, ToolCall, ToolOutcome};

/// Repairs when `with.max_repairs` is not set.
pub const DEFAULT_MAX_REPAIRS: u64 = 2;
/// Per-request limit when the step sets no `timeout`.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(120);
const DEFAULT_SYSTEM: &str = "You turn the user's text into exactly one JSON object that matches the JSON Schema below. \
Use only facts stated in the text. Answer with the JSON object alone, no prose, no code fences.";

/// The OpenAI-compatible provider: `OPENAI_BASE_URL` (default `https://api.openai.com/v1`) and
/// `OPENAI_API_KEY` (sent as a bearer token when set).
pub struct LlmTool {
    client: reqwest::Client,
    base_url: String,
    api_key: Option<String>,
}

impl LlmTool {
    /// A provider at `base_url` (ending in `/v1`), with an optional API key.
    pub fn new(base_url: &str, api_key: Option<String>) -> Self {
        let client = reqwest::Client::builder()
            .user_agent(concat!("baton/", env!("CARGO_PKG_VERSION")))
            .build()
            .unwrap_or_default();
        Self { client, base_url: base_url.trim_end_matches('/').to_owned(), api_key }
    }

    /// The provider the environment configures, as the OpenAI SDKs read it.
    pub fn from_env() -> Self {
        let base = std::env::var("OPENAI_BASE_URL").unwrap_or_else(|_| "https://api.openai.com/v1".into());
        Self::new(&base, std::env::var("OPENAI_API_KEY").ok().filter(|k| !k.is_empty()))
    }
}

/// The step's arguments, already resolved.
struct Args {
    prompt: String,
    schema: Value,
    model: String,
    system: String,
    temperature: Option<f64>,
    max_tokens: Option<u64>,
    max_repairs: u64,
    sensitive: Vec<String>,
}

fn args(input: &Value) -> Result<Args, StepError> {
    let text = |k: &str| input.get(k).and_then(Value::as_str).map(str::to_owned);
    let prompt = text("prompt").ok_or_else(|| StepError::new("tool", "`prompt` is missing"))?;
    let schema =
        input.get("output_schema").cloned().ok_or_else(|| StepError::new("tool", "`output_schema` is missing"))?;
    let model = text("model").ok_or_else(|| StepError::new("tool", "`model` is missing"))?;
    let schema_text = serde_json::to_string_pretty(&schema).unwrap_or_default();
    let system = format!("{}\n\nJSON Schema:\n{schema_text}", text("system").unwrap_or_else(|| DEFAULT_SYSTEM.into()));
    Ok(Args {
        prompt,
        schema,
        model,
        system,
        temperature: input.get("temperature").and_then(Value::as_f64),
        max_tokens: input.get("max_tokens").and_then(Value::as_u64),
        max_repairs: input.get("max_repairs").and_then(Value::as_u64).unwrap_or(DEFAULT_MAX_REPAIRS),
        sensitive: input
            .get("sensitive")
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(Value::as_str).map(str::to_owned).collect())
            .unwrap_or_default(),
    })
}

/// Replaces the values of `keys`, at any depth, with a marker.
fn redact(v: &Value, keys: &[String]) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .map(|(k, x)| {
                    let x = if keys.contains(k) { Value::String("[redacted]".into()) } else { redact(x, keys) };
                    (k.clone(), x)
                })
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.iter().map(|x| redact(x, keys)).collect()),
        other => other.clone(),
    }
}

/// The answer text of a completion: the message content, or the arguments of its first tool
/// call (servers that answer structured output through a tool).
fn answer_text(body: &Value) -> Option<String> {
    let message = body.pointer("/choices/0/message")?;
    match message.get("content") {
        Some(Value::String(s)) if !s.trim().is_empty() => Some(s.clone()),
        _ => message.pointer("/tool_calls/0/function/arguments").and_then(Value::as_str).map(str::to_owned),
    }
}

/// Parses an answer; tolerates a code fence around the JSON (models without enforced output).
fn parse_answer(raw: &str) -> Result<Value, String> {
    let t = raw.trim();
    let t = t.strip_prefix("```json").or_else(|| t.strip_prefix("```")).unwrap_or(t);
    let t = t.strip_suffix("```").unwrap_or(t).trim();
    serde_json::from_str(t).map_err(|e| format!("the answer is not JSON: {e}"))
}

#[derive(Default)]
struct Usage {
    prompt: u64,
    completion: u64,
    total: u64,
    cost: Option<f64>,
}

impl Usage {
    fn add(&mut self, body: &Value) {
        let n = |k: &str| body.pointer(&format!("/usage/{k}")).and_then(Value::as_u64).unwrap_or(0);
        self.prompt += n("prompt_tokens");
        self.completion += n("completion_tokens");
        self.total += n("total_tokens");
        // Some OpenAI-compatible services (routers, gateways) report a cost; OpenAI does not.
        if let Some(c) = body.pointer("/usage/cost").and_then(Value::as_f64) {
            self.cost = Some(self.cost.unwrap_or(0.0) + c);
        }
    }

    fn json(&self) -> Value {
        json!({"prompt_tokens": self.prompt, "completion_tokens": self.completion, "total_tokens": self.total})
    }
}

impl LlmTool {
    async fn complete(&self, call: &ToolCall, a: &Args, messages: &[Value]) -> Result<Value, StepError> {
        let url = format!("{}/chat/completions", self.base_url);
        let mut body = json!({
            "model": a.model,
            "messages": messages,
            "response_format": {"type": "json_schema", "json_schema": {"name": "answer", "schema": a.schema, "strict": true}},
        });
        if let Some(t) = a.temperature {
            body["temperature"] = json!(t);
        }
        if let Some(m) = a.max_tokens {
            body["max_tokens"] = json!(m);
        }
        let timeout = call.timeout_ms.map(Duration::from_millis).unwrap_or(DEFAULT_TIMEOUT);
        let mut req =
            self.client.post(&url).timeout(timeout).json(&body).header("Idempotency-Key", &call.idempotency_key);
        if let Some(key) = &self.api_key {
            req = req.bearer_auth(key);
        }
        let resp = req.send().await.map_err(|e| classify(&e, &url))?;
        let status = resp.status().as_u16();
        let retry_after = resp.headers().get("retry-after").and_then(|v| v.to_str().ok()).and_then(retry_after_ms);
        let bytes = resp.bytes().await.map_err(|e| classify(&e, &url))?;
        let kind = match status {
            200..=299 => None,
            429 => Some("http_429"),
            500..=599 => Some("http_5xx"),
            _ => Some("http_4xx"),
        };
        if let Some(kind) = kind {
            let snippet: String = String::from_utf8_lossy(&bytes).chars().take(300).collect();
            return Err(StepError {
                kind: kind.into(),
                message: format!("{url} answered {status}: {snippet}"),
                retry_after_ms: retry_after,
            });
        }
        serde_json::from_slice(&bytes)
            .map_err(|e| StepError::new("http_5xx", format!("{url} answered 200 with a body that is not JSON: {e}")))
    }
}

#[async_trait]
impl Tool for LlmTool {
    async fn call(&self, call: &ToolCall) -> Result<Value, StepError> {
        self.run(call).await.result
    }

    async fn run(&self, call: &ToolCall) -> ToolOutcome {
        let a = match args(&call.input) {
            Ok(a) => a,
            Err(e) => return ToolOutcome { result: Err(e), report: None },
        };
        let validator = match jsonschema::validator_for(&a.schema) {
            Ok(v) => v,
            Err(e) => {
                let err = StepError::new("tool", format!("`output_schema` is not a valid JSON Schema: {e}"));
                return ToolOutcome { result: Err(err), report: None };
            }
        };
        let mut messages =
            vec![json!({"role": "system", "content": a.system}), json!({"role": "user", "content": a.prompt})];
        let mut usage = Usage::default();
        let mut answers: Vec<Value> = Vec::new();
        let mut model = a.model.clone();
        let mut requests = 0u64;
        let outcome = loop {
            requests += 1;
            let body = match self.complete(call, &a, &messages).await {
                Ok(b) => b,
                Err(e) => break Err(e),
            };
            usage.add(&body);
            if let Some(m) = body.get("model").and_then(Value::as_str) {
                model = m.to_owned();
            }
            let finish = body.pointer("/choices/0/finish_reason").and_then(Value::as_str).unwrap_or("").to_owned();
            let raw = answer_text(&body).unwrap_or_default();
            let checked = parse_answer(&raw).and_then(|v| {
                let errors: Vec<String> = validator
                    .iter_errors(&v)
                    .map(|e| {
                        let at = e.instance_path().to_string();
                        format!("{}: {e}", if at.is_empty() { "/".to_owned() } else { at })
                    })
                    .collect();
                if errors.is_empty() { Ok(v) } else { Err(errors.join("; ")) }
            });
            let checked = match (checked, finish.as_str()) {
                (Err(e), "length") => Err(format!("{e} (the answer was cut off at max_tokens)")),
                (c, _) => c,
            };
            let shown =
                parse_answer(&raw).map(|v| redact(&v, &a.sensitive)).unwrap_or_else(|_| Value::String(raw.clone()));
            answers.push(json!({"raw": shown, "valid": checked.is_ok(), "errors": checked.as_ref().err(), "finish_reason": finish}));
            match checked {
                Ok(v) => break Ok(v),
                Err(errors) if (answers.len() as u64) <= a.max_repairs => {
                    messages.push(json!({"role": "assistant", "content": raw}));
                    messages.push(json!({"role": "user", "content": format!(
                        "That answer does not match the JSON Schema: {errors}. Reply with the corrected JSON object only."
                    )}));
                }
                Err(errors) => {
                    break Err(StepError::new(
                        "llm_invalid_output",
                        format!("no valid answer after {} repair(s): {errors}", a.max_repairs),
                    ));
                }
            }
        };
        let report = json!({
            "provider": "openai",
            "model": model,
            "system": a.system,
            "prompt": a.prompt,
            "requests": requests,
            "repairs": answers.len().saturating_sub(1),
            "answers": answers,
            "usage": usage.json(),
            "cost_usd": usage.cost,
        });
        ToolOutcome { result: outcome, report: Some(report) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_parse_with_or_without_code_fences() {
        assert_eq!(parse_answer(" {\"a\": 1} ").unwrap(), json!({"a": 1}));
        assert_eq!(parse_answer("```json\n{\"a\": 1}\n```").unwrap(), json!({"a": 1}));
        assert!(parse_answer("sure! {\"a\": 1}").is_err());
    }

    #[test]
    fn sensitive_fields_are_redacted_at_any_depth() {
        let v = json!({"iban": "DE00", "nested": [{"iban": "x", "ok": 1}], "name": "A"});
        let keys = vec!["iban".to_owned()];
        assert_eq!(
            redact(&v, &keys),
            json!({"iban": "[redacted]", "nested": [{"iban": "[redacted]", "ok": 1}], "name": "A"})
        );
    }

    #[test]
    fn the_answer_comes_from_content_or_a_tool_call() {
        let content = json!({"choices": [{"message": {"content": "{}"}}]});
        assert_eq!(answer_text(&content).as_deref(), Some("{}"));
        let tool = json!({"choices": [{"message": {"content": null, "tool_calls": [{"function": {"name": "answer", "arguments": "{\"x\":1}"}}]}}]});
        assert_eq!(answer_text(&tool).as_deref(), Some("{\"x\":1}"));
    }
}
