//! `http`: `{method, url, headers, body, timeout}` -> `{status, headers, body}`, with errors
//! classified as `http_4xx`, `http_429` (with `Retry-After`), `http_5xx`, `timeout`, `connect`.
//! Every request carries the call's `Idempotency-Key` header, so a retried or re-delivered call
//! can be recognised by the server.

use std::time::Duration;

use async_trait::async_trait;
use baton_core::duration::parse_duration;
use baton_core::engine::StepError;
use serde_json::{Map, Value, json};

use crate::ports::{Tool, ToolCall};

/// Default per-request limit when neither `with.timeout` nor the step's `timeout` is set.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// The HTTP tool, sharing one connection pool.
pub struct HttpTool {
    client: reqwest::Client,
}

impl HttpTool {
    /// A tool with a fresh client.
    pub fn new() -> Self {
        let client = reqwest::Client::builder()
            .user_agent(concat!("baton/", env!("CARGO_PKG_VERSION")))
            .build()
            .unwrap_or_default();
        Self { client }
    }
}

impl Default for HttpTool {
    fn default() -> Self {
        Self::new()
    }
}

fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// `Retry-After` as seconds or an HTTP date, in ms from `now`.
pub(crate) fn retry_after_ms(value: &str) -> Option<u64> {
    if let Ok(secs) = value.trim().parse::<u64>() {
        return Some(secs.saturating_mul(1_000));
    }
    let at = httpdate::parse_http_date(value.trim()).ok()?;
    let now = std::time::SystemTime::now();
    Some(at.duration_since(now).map(|d| d.as_millis() as u64).unwrap_or(0))
}

#[async_trait]
impl Tool for HttpTool {
    async fn call(&self, call: &ToolCall) -> Result<Value, StepError> {
        let input = call.input.as_object().cloned().unwrap_or_default();
        let url = input.get("url").map(text).ok_or_else(|| StepError::new("tool", "`url` is missing"))?;
        let method = input.get("method").map(text).unwrap_or_else(|| "GET".into()).to_ascii_uppercase();
        let method = reqwest::Method::from_bytes(method.as_bytes())
            .map_err(|_| StepError::new("tool", format!("invalid method `{method}`")))?;
        let timeout = input
            .get("timeout")
            .and_then(Value::as_str)
            .and_then(|t| parse_duration(t).ok())
            .map(|m| Duration::from_millis(m.0))
            .or(call.timeout_ms.map(Duration::from_millis))
            .unwrap_or(DEFAULT_TIMEOUT);
        let mut req =
            self.client.request(method, &url).timeout(timeout).header("Idempotency-Key", &call.idempotency_key);
        if let Some(Value::Object(headers)) = input.get("headers") {
            for (k, v) in headers {
                req = req.header(k, text(v));
            }
        }
        match input.get("body") {
            None | Some(Value::Null) => {}
            Some(Value::String(s)) => req = req.body(s.clone()),
            Some(other) => req = req.json(other),
        }
        let resp = req.send().await.map_err(|e| classify(&e, &url))?;
        let status = resp.status();
        let mut headers = Map::new();
        for (k, v) in resp.headers() {
            headers.insert(k.as_str().to_owned(), Value::String(v.to_str().unwrap_or_default().to_owned()));
        }
        let retry_after = resp.headers().get("retry-after").and_then(|v| v.to_str().ok()).and_then(retry_after_ms);
        let bytes = resp.bytes().await.map_err(|e| classify(&e, &url))?;
        let body = serde_json::from_slice::<Value>(&bytes)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
        let code = status.as_u16();
        let kind = match code {
            429 => Some("http_429"),
            500..=599 => Some("http_5xx"),
            400..=499 => Some("http_4xx"),
            _ => None,
        };
        match kind {
            None => Ok(json!({"status": code, "headers": headers, "body": body})),
            Some(kind) => {
                let snippet: String = text(&body).chars().take(200).collect();
                Err(StepError {
                    kind: kind.into(),
                    message: format!("{url} answered {code}: {snippet}"),
                    retry_after_ms: retry_after,
                })
            }
        }
    }
}

pub(crate) fn classify(e: &reqwest::Error, url: &str) -> StepError {
    if e.is_timeout() {
        StepError::new("timeout", format!("{url} did not answer in time"))
    } else if e.is_connect() {
        StepError::new("connect", format!("cannot connect to {url}: {e}"))
    } else if e.is_builder() {
        StepError::new("tool", format!("invalid request to {url}: {e}"))
    } else {
        StepError::new("connect", format!("request to {url} failed: {e}"))
    }
}
