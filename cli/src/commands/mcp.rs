//! `baton mcp serve [--transport stdio|http]`: baton as an MCP server. Each published workflow
//! is a tool `start_<name>` whose `inputSchema` is the workflow's `input_schema`
//! (`{"type": "object"}` when it declares none); `get_run`, `list_tasks` and `answer_task` read
//! runs and answer tasks. Every call is a request to the HTTP API ([`Api`]) over the backend's
//! control, so input validation, starting, showing and answering are the API's own code and
//! its JSON is what MCP clients get.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::{Context, Result};
use baton_runtime::RunControl;
use baton_runtime::api::{Api, ApiBody, ApiRequest};
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, ErrorData, Implementation, JsonObject,
    ListToolsResult, PaginatedRequestParams, ServerCapabilities, ServerConfig, Tool,
};
use rmcp::service::{RequestContext, RoleServer};
use rmcp::{ServerHandler, ServiceExt};
use serde_json::{Value, json};

use crate::backend::{Target, control};
use crate::errors::Usage;

/// How long a stopping server waits for the runs it drives to detach.
const DRAIN: std::time::Duration = std::time::Duration::from_secs(3);

/// How `baton mcp serve` talks to its client.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum McpTransportArg {
    /// JSON-RPC on stdin/stdout (a client starts `baton mcp serve` itself).
    Stdio,
    /// Streamable HTTP at `http://<listen>/mcp`.
    Http,
}

/// The tool that starts a run of workflow `name`: `start_` and the name, with characters MCP
/// tool names do not take as `_`.
pub fn start_tool_name(name: &str) -> String {
    let safe: String =
        name.chars().map(|c| if c.is_ascii_alphanumeric() || c == '_' || c == '-' { c } else { '_' }).collect();
    format!("start_{safe}")
}

/// The MCP server over one backend.
#[derive(Clone)]
struct BatonMcp {
    control: Arc<dyn RunControl>,
    api: Arc<Api>,
}

fn object(v: Value) -> Arc<JsonObject> {
    Arc::new(match v {
        Value::Object(m) => m,
        _ => JsonObject::new(),
    })
}

fn internal(e: impl std::fmt::Display) -> ErrorData {
    ErrorData::internal_error(e.to_string(), None)
}

impl BatonMcp {
    /// The published workflows: tool name, workflow name, and the tool's description and schema.
    async fn workflows(&self) -> Result<Vec<(String, String, Tool)>, ErrorData> {
        let published = self.control.store().published_definitions().await.map_err(internal)?;
        let mut out = Vec::new();
        for (name, _) in published {
            let Some((plan, _)) = self.control.coordinator().published(&name).await.map_err(internal)? else {
                continue;
            };
            let wf = &plan.workflow;
            let schema = wf.input_schema.clone().unwrap_or_else(|| json!({"type": "object"}));
            let about = wf.description.clone().unwrap_or_else(|| format!("Runs the workflow `{name}`."));
            let description = format!(
                "{about} Starts a run of the published workflow `{name}` with the arguments as its input, and answers with the run as `baton runs show` gives it (at most `wait` seconds later; read it again with get_run)."
            );
            let tool_name = start_tool_name(&name);
            out.push((tool_name.clone(), name, Tool::new(tool_name, description, object(schema))));
        }
        Ok(out)
    }

    /// Sends one request to the API; its JSON is the tool's result, a 4xx or 5xx an error result.
    async fn api(&self, method: &str, path: String, query: &str, body: Value) -> CallToolResult {
        let req = ApiRequest {
            method: method.into(),
            path,
            query: query.into(),
            body: if body.is_null() { vec![] } else { body.to_string().into_bytes() },
            ..Default::default()
        };
        let resp = self.api.handle(&req).await;
        let value = match resp.body {
            ApiBody::Json(v) => v,
            ApiBody::Events(_) => json!({"error": "an event stream is not a tool result"}),
        };
        let text = ContentBlock::text(serde_json::to_string_pretty(&value).unwrap_or_default());
        if resp.status >= 400 {
            CallToolResult::error(vec![text])
        } else {
            let mut r = CallToolResult::success(vec![text]);
            r.structured_content = Some(value);
            r
        }
    }
}

/// The fixed tools beside the workflows'.
fn fixed_tools() -> Vec<Tool> {
    vec![
        Tool::new(
            "get_run",
            "A run's status, steps, output or error, and open tasks, as `baton runs show` gives them.",
            object(json!({"type": "object", "required": ["run_id"], "properties": {"run_id": {"type": "string"}}})),
        ),
        Tool::new(
            "list_tasks",
            "The open human tasks: id, run, step, queue, prompt and the form an answer fills.",
            object(json!({"type": "object"})),
        ),
        Tool::new(
            "answer_task",
            "Approves or rejects an open task; `data` (approve only) must match the task's form.",
            object(json!({
                "type": "object", "required": ["task_id", "decision"],
                "properties": {
                    "task_id": {"type": "string"},
                    "decision": {"enum": ["approve", "reject"]},
                    "data": {"type": "object"},
                    "comment": {"type": "string"},
                    "by": {"type": "string"},
                },
            })),
        ),
    ]
}

fn text_arg(args: &JsonObject, name: &str) -> Result<String, ErrorData> {
    args.get(name)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty() && !s.contains('/'))
        .map(str::to_owned)
        .ok_or_else(|| ErrorData::invalid_params(format!("`{name}` is required: a string"), None))
}

impl ServerHandler for BatonMcp {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(Implementation::new("baton", env!("CARGO_PKG_VERSION")))
            .with_instructions("Start runs of baton's published workflows, follow them, and answer their human tasks.")
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        let mut tools: Vec<Tool> = self.workflows().await?.into_iter().map(|(_, _, t)| t).collect();
        tools.extend(fixed_tools());
        Ok(ListToolsResult::with_all_items(tools))
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let args = request.arguments.clone().unwrap_or_default();
        let result = match request.name.as_ref() {
            "get_run" => self.api("GET", format!("/api/runs/{}", text_arg(&args, "run_id")?), "", Value::Null).await,
            "list_tasks" => self.api("GET", "/api/tasks".into(), "", Value::Null).await,
            "answer_task" => {
                let id = text_arg(&args, "task_id")?;
                let decision = match args.get("decision").and_then(Value::as_str) {
                    Some(d @ ("approve" | "reject")) => d.to_owned(),
                    _ => return Err(ErrorData::invalid_params("`decision` is `approve` or `reject`", None)),
                };
                let mut body = args.clone();
                body.remove("task_id");
                body.remove("decision");
                self.api("POST", format!("/api/tasks/{id}/{decision}"), "", Value::Object(body)).await
            }
            name => {
                let workflows = self.workflows().await?;
                let Some((_, workflow, _)) = workflows.iter().find(|(t, _, _)| t == name) else {
                    return Err(ErrorData::invalid_params(format!("there is no tool `{name}`"), None));
                };
                // The run's first steps get a moment, so a short workflow answers with its output.
                let path = format!("/api/workflows/{workflow}/runs");
                self.api("POST", path, "wait=10", Value::Object(args)).await
            }
        };
        Ok(result.into())
    }
}

/// Serves until the client goes away (stdio) or Ctrl-C / SIGTERM (HTTP).
pub async fn serve(target: &Target, transport: McpTransportArg, listen: SocketAddr) -> Result<u8> {
    let control = control(target, false).await?;
    let api = Arc::new(Api::new(control.clone(), None));
    let server = BatonMcp { control, api: api.clone() };
    // Timers, escalations and schedules of the embedded backend fire while the server runs, as
    // under `baton serve`.
    let host = super::timer_host::spawn(target)?;
    match transport {
        McpTransportArg::Stdio => {
            let running = server
                .serve(rmcp::transport::stdio())
                .await
                .context("the MCP client did not complete the handshake")?;
            let _ = running.waiting().await;
        }
        McpTransportArg::Http => {
            if !listen.ip().is_loopback() {
                return Err(Usage(format!(
                    "`baton mcp serve --transport http` has no authentication yet: it binds loopback addresses only, not {listen}"
                ))
                .into());
            }
            super::mcp_http::serve(server, listen).await?;
        }
    }
    if let Some(h) = host {
        h.stop().await;
    }
    api.shut_down();
    if !api.drained(DRAIN).await {
        eprintln!("stopping with runs still going; `baton resume` continues them");
    }
    Ok(crate::exit::OK)
}
