//! `mcp`: `{server, tool, arguments, timeout, transport, network}` -> the tool's result
//! `{content, structured_content, text}`, through the official Rust SDK (`rmcp`). Stdio servers
//! run as child processes of the worker and are reused; HTTP servers are reached over the same
//! network guard as the `http` tool. Failures are classified: a server that cannot be started
//! or reached, or whose connection closes, is `connect` (transient: retried); one that does not
//! answer within the call's limit is `timeout` (transient; its connection is dropped, ending a
//! hung process); a protocol error (an unknown tool, bad arguments) or a tool that reports an
//! error is `tool` (permanent). `secret()` values are revealed only for the server and scrubbed
//! from what comes back; the audit report names the server and tool, the arguments as written
//! (secrets as placeholders), a digest of the result and the latency.

mod session;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use baton_core::duration::parse_duration;
use baton_core::engine::{ErrorKind, StepError};
use baton_core::plan::tools::McpCall;
use rmcp::ServiceError;
use rmcp::model::{CallToolRequestParams, CallToolResult, ContentBlock};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::secrets::{EnvSecrets, Revealed, mask, names_in, names_in_str};
use baton_runtime::ports::{SecretSource, Tool, ToolCall, ToolOutcome};
use session::{ServerKey, Sessions, describe};

/// Limit on a call when neither the step, the server nor the step's `timeout` sets one.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// The MCP client tool: one connection per server per process.
pub struct McpTool {
    secrets: Arc<dyn SecretSource>,
    sessions: Sessions,
    refuse_loopback: bool,
}

impl McpTool {
    /// A tool whose `secret("NAME")` values are environment variables.
    pub fn new() -> Self {
        Self::with_secrets(Arc::new(EnvSecrets))
    }

    /// A tool whose `secret("NAME")` values come from `source`.
    pub fn with_secrets(source: Arc<dyn SecretSource>) -> Self {
        Self { secrets: source, sessions: Sessions::default(), refuse_loopback: false }
    }

    /// The same tool refusing loopback HTTP servers whatever a workflow's `network` says (a
    /// worker on AWS Lambda).
    pub fn refusing_loopback(mut self) -> Self {
        self.refuse_loopback = true;
        self
    }
}

impl Default for McpTool {
    fn default() -> Self {
        Self::new()
    }
}

#[async_trait]
impl Tool for McpTool {
    async fn call(&self, call: &ToolCall) -> Result<Value, StepError> {
        self.run(call).await.result
    }

    async fn run(&self, call: &ToolCall) -> ToolOutcome {
        let input: McpCall = match call.input_as() {
            Ok(i) => i,
            Err(e) => return ToolOutcome { result: Err(e), report: None },
        };
        let started = Instant::now();
        let result = self.call_tool(call, &input).await;
        let latency_ms = started.elapsed().as_millis() as u64;
        let report = json!({
            "server": input.server,
            "tool": input.tool,
            "transport": if input.transport.url.is_some() { "http" } else { "stdio" },
            // As dispatched: `secret()` values are still placeholders here.
            "arguments": input.arguments,
            "latency_ms": latency_ms,
            "result_sha256": result.as_ref().ok().map(digest),
            "error": result.as_ref().err().map(|e| json!({"kind": e.kind, "message": e.message})),
        });
        ToolOutcome { result, report: Some(report) }
    }
}

impl McpTool {
    async fn call_tool(&self, call: &ToolCall, input: &McpCall) -> Result<Value, StepError> {
        let t = &input.transport;
        let mut names = BTreeSet::new();
        for s in t.command.iter().chain(&t.args).chain(t.env.values()).chain(&t.url).chain(t.headers.values()) {
            names_in_str(s, &mut names)?;
        }
        if let Some(a) = &input.arguments {
            names_in(a, &mut names)?;
        }
        // A scoped secret goes only to an HTTP server on one of its hosts; a server over stdio
        // is a local program no host scope can vouch for.
        let host = t
            .url
            .as_deref()
            .and_then(|u| reqwest::Url::parse(&mask(u)).ok())
            .and_then(|u| u.host_str().map(str::to_owned));
        let to = match &host {
            Some(h) => format!("{h} (MCP server `{}`)", input.server),
            None => format!("the MCP server `{}` (a local program over stdio)", input.server),
        };
        crate::secrets::check_scopes(&input.secrets, &names, host.as_deref(), None, &to)?;
        let secrets = Revealed::fetch(self.secrets.as_ref(), names).await?;
        let limit = match &input.timeout {
            Some(d) => Duration::from_millis(
                parse_duration(d).map_err(|e| StepError::new(ErrorKind::Tool, format!("`timeout`: {e}")))?.0,
            ),
            None => call.timeout_ms.map(Duration::from_millis).unwrap_or(DEFAULT_TIMEOUT),
        };
        let arguments = match input.arguments.as_ref().map(|a| secrets.reveal_value(a)) {
            None => None,
            Some(Value::Object(m)) => Some(m),
            Some(other) => {
                return Err(StepError::new(
                    ErrorKind::Tool,
                    format!("the arguments of `{}` are an object, not {}", input.tool, kind_of(&other)),
                ));
            }
        };
        let key = ServerKey::new(t, input.network.as_ref(), self.refuse_loopback);
        let what = format!("{} (`{}`)", describe(t), input.server);
        let client = self.sessions.get(&key, &secrets, limit).await?;
        if input.list_tools {
            return match tokio::time::timeout(limit, client.list_all_tools()).await {
                Ok(Ok(tools)) => Ok(json!({"tools": tools.iter().map(|t| json!({
                    "name": t.name, "description": t.description, "input_schema": *t.input_schema,
                })).collect::<Vec<_>>()})),
                Ok(Err(e)) => {
                    self.sessions.drop_client(&key).await;
                    Err(classify(&e, &what, "tools/list"))
                }
                Err(_) => {
                    self.sessions.drop_client(&key).await;
                    Err(StepError::new(
                        ErrorKind::Timeout,
                        format!("{what} did not list its tools in {} ms", limit.as_millis()),
                    ))
                }
            };
        }
        let mut params = CallToolRequestParams::new(input.tool.clone());
        if let Some(a) = arguments {
            params = params.with_arguments(a);
        }
        let answered = tokio::time::timeout(limit, client.call_tool(params)).await;
        let out = match answered {
            Err(_) => {
                // A server that hangs on one call may hang on the next: start afresh.
                self.sessions.drop_client(&key).await;
                Err(StepError::new(
                    ErrorKind::Timeout,
                    format!("{what} did not answer `{}` in {} ms", input.tool, limit.as_millis()),
                ))
            }
            Ok(Err(e)) => {
                let err = classify(&e, &what, &input.tool);
                if err.kind == ErrorKind::Connect || err.kind == ErrorKind::Timeout {
                    self.sessions.drop_client(&key).await;
                }
                Err(err)
            }
            Ok(Ok(r)) => result_value(r, &input.tool, &what),
        };
        match out {
            Ok(v) => Ok(secrets.scrub_value(v)),
            Err(mut e) => {
                e.message = secrets.scrub(&e.message);
                Err(e)
            }
        }
    }
}

/// A failed request: the connection's end is transient, the server's refusal is not.
fn classify(e: &ServiceError, what: &str, tool: &str) -> StepError {
    match e {
        ServiceError::McpError(m) => {
            StepError::new(ErrorKind::Tool, format!("{what} refused `{tool}`: {} (code {})", m.message, m.code.0))
        }
        ServiceError::Timeout { .. } => {
            StepError::new(ErrorKind::Timeout, format!("{what} did not answer `{tool}` in time"))
        }
        ServiceError::TransportSend(_) | ServiceError::TransportClosed | ServiceError::Cancelled { .. } => {
            StepError::new(ErrorKind::Connect, format!("{what} closed the connection during `{tool}`: {e}"))
        }
        other => StepError::new(ErrorKind::Tool, format!("{what} answered `{tool}` outside the protocol: {other}")),
    }
}

/// The tool's result as the step's output; a result the tool marks as an error fails the step
/// with its text.
fn result_value(r: CallToolResult, tool: &str, what: &str) -> Result<Value, StepError> {
    let text: Vec<&str> = r
        .content
        .iter()
        .filter_map(|c| match c {
            ContentBlock::Text(t) => Some(t.text.as_str()),
            _ => None,
        })
        .collect();
    let text = text.join("\n");
    if r.is_error == Some(true) {
        let shown: String = text.chars().take(500).collect();
        return Err(StepError::new(ErrorKind::Tool, format!("`{tool}` of {what} failed: {shown}")));
    }
    let content = serde_json::to_value(&r.content).unwrap_or(Value::Null);
    let mut out = json!({"content": content, "text": text});
    if let Some(s) = r.structured_content {
        out["structured_content"] = s;
    }
    Ok(out)
}

fn digest(v: &Value) -> String {
    hex::encode(Sha256::digest(v.to_string().as_bytes()))
}

fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}
