//! The OpenAI-compatible provider: `POST <base>/chat/completions` with the answer schema as
//! `response_format: json_schema` (OpenAI, Ollama, vLLM, llama.cpp's server).

use std::time::Duration;

use async_trait::async_trait;
use baton_core::engine::{ErrorKind, StepError};
use serde_json::{Value, json};

use super::{ChatModel, ChatRequest, Completion, TokenUsage};
use crate::http::{classify, retry_after_ms};
use baton_runtime::ports::ToolCall;

/// Per-request limit when the step sets no `timeout`.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(120);

/// A server speaking the chat completions protocol at `base_url` (ending in `/v1`).
pub struct OpenAiChat {
    client: reqwest::Client,
    base_url: String,
    api_key: Option<String>,
}

impl OpenAiChat {
    /// A provider at `base_url`, with an optional API key (sent as a bearer token).
    pub fn new(base_url: &str, api_key: Option<String>) -> Self {
        let client = reqwest::Client::builder()
            .user_agent(concat!("baton/", env!("CARGO_PKG_VERSION")))
            .build()
            .unwrap_or_default();
        Self { client, base_url: base_url.trim_end_matches('/').to_owned(), api_key }
    }

    /// As the OpenAI SDKs configure it: `OPENAI_BASE_URL` (default `https://api.openai.com/v1`)
    /// and `OPENAI_API_KEY`.
    pub fn from_env() -> Self {
        Self::from_env_with_key(None)
    }

    /// Like [`OpenAiChat::from_env`], with `key` (read from a secret store) before
    /// `OPENAI_API_KEY`.
    pub fn from_env_with_key(key: Option<String>) -> Self {
        let base = std::env::var("OPENAI_BASE_URL").unwrap_or_else(|_| "https://api.openai.com/v1".into());
        let key = key.or_else(|| std::env::var("OPENAI_API_KEY").ok().filter(|k| !k.is_empty()));
        Self::new(&base, key)
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

#[async_trait]
impl ChatModel for OpenAiChat {
    fn name(&self) -> &'static str {
        "openai"
    }

    async fn complete(&self, call: &ToolCall, req: &ChatRequest) -> Result<Completion, StepError> {
        let url = format!("{}/chat/completions", self.base_url);
        let mut messages = vec![json!({"role": "system", "content": req.system})];
        messages.extend(req.turns.iter().map(|t| json!({"role": t.role.as_str(), "content": t.content})));
        let mut body = json!({
            "model": req.model,
            "messages": messages,
            "response_format": {"type": "json_schema", "json_schema": {"name": "answer", "schema": req.schema, "strict": true}},
        });
        if let Some(t) = req.temperature {
            body["temperature"] = json!(t);
        }
        if let Some(m) = req.max_tokens {
            body["max_tokens"] = json!(m);
        }
        let timeout = call.timeout_ms.map(Duration::from_millis).unwrap_or(DEFAULT_TIMEOUT);
        let mut http =
            self.client.post(&url).timeout(timeout).json(&body).header("Idempotency-Key", &call.idempotency_key);
        if let Some(key) = &self.api_key {
            http = http.bearer_auth(key);
        }
        let resp = http.send().await.map_err(|e| classify(&e, &url))?;
        let status = resp.status().as_u16();
        let retry_after = resp.headers().get("retry-after").and_then(|v| v.to_str().ok()).and_then(retry_after_ms);
        let bytes = resp.bytes().await.map_err(|e| classify(&e, &url))?;
        // A redirect the client did not follow is no answer either.
        let kind = ErrorKind::from_http_status(status)
            .or_else(|| (!(200..=299).contains(&status)).then_some(ErrorKind::Http4xx));
        if let Some(kind) = kind {
            let snippet: String = String::from_utf8_lossy(&bytes).chars().take(300).collect();
            return Err(StepError {
                kind,
                message: format!("{url} answered {status}: {snippet}"),
                retry_after_ms: retry_after,
            });
        }
        let body: Value = serde_json::from_slice(&bytes).map_err(|e| {
            StepError::new(ErrorKind::Http5xx, format!("{url} answered 200 with a body that is not JSON: {e}"))
        })?;
        let n = |k: &str| body.pointer(&format!("/usage/{k}")).and_then(Value::as_u64).unwrap_or(0);
        Ok(Completion {
            text: answer_text(&body).unwrap_or_default(),
            finish_reason: body.pointer("/choices/0/finish_reason").and_then(Value::as_str).unwrap_or("").to_owned(),
            model: body.get("model").and_then(Value::as_str).map(str::to_owned),
            usage: TokenUsage { input: n("prompt_tokens"), output: n("completion_tokens"), total: n("total_tokens") },
            // Some OpenAI-compatible services (routers, gateways) report a cost; OpenAI does not.
            cost_usd: body.pointer("/usage/cost").and_then(Value::as_f64),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_answer_comes_from_content_or_a_tool_call() {
        let content = json!({"choices": [{"message": {"content": "{}"}}]});
        assert_eq!(answer_text(&content).as_deref(), Some("{}"));
        let tool = json!({"choices": [{"message": {"content": null, "tool_calls": [{"function": {"name": "answer", "arguments": "{\"x\":1}"}}]}}]});
        assert_eq!(answer_text(&tool).as_deref(), Some("{\"x\":1}"));
    }
}
