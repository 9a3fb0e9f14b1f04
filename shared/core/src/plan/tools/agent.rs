//! `agent`: a bounded tool-calling loop the engine runs. Each model turn is an `llm` call; each
//! tool the model may call is compiled into a hidden role step `<agent>.<tool>` whose templates
//! read the model's arguments as `.args`, so every call is retried and audited like a step.

use std::collections::{BTreeMap, HashSet};

use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::{Value, json};

use super::fields::fields_of;
use super::http::{self, with_http_request};
use super::llm::{self, with_llm_settings};
use super::spec::{CALL_TIMEOUT_MS, StepCx, ToolSpec};
use super::{approval, budget, mcp, memory, workflow};
use crate::plan::types::{AgentTool, McpOffer, PlannedStep, RetryPolicy, StepKind};

/// Model turns an `agent` step takes at most when `max_turns` is not given.
pub(super) const DEFAULT_MAX_TURNS: u32 = 5;

with_llm_settings! {
    /// The `with` of an `agent` step: its own fields, then the `llm` settings its turns share.
    #[derive(Debug, Clone, PartialEq, Deserialize, JsonSchema)]
    #[serde(deny_unknown_fields)]
    pub struct AgentArgs {
        /// What the model works toward (a template).
        pub goal: String,
        /// The tools the model may call.
        #[serde(default)]
        pub tools: Option<Vec<AgentToolArgs>>,
        /// Upper bound on model turns, 1 to 50 (default 5); the last turn must answer.
        #[serde(default)]
        #[schemars(range(min = 1, max = 50))]
        pub max_turns: Option<u32>,
        /// The JSON Schema of the final answer.
        pub output_schema: Value,
        /// What one attempt may spend: `max_input_tokens`, `max_output_tokens`, `max_tokens`,
        /// `max_usd`, `max_tool_calls`, `max_duration`; over it, `budget_exceeded`.
        #[serde(default)]
        pub budget: Option<Value>,
    }
}

/// One tool of an agent: what the model is told, and what a call does (one of `http`,
/// `workflow`, `memory`).
#[derive(Debug, Clone, PartialEq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AgentToolArgs {
    /// The name the model calls it by: letters, digits, `_` or `-` (at most 64).
    pub name: String,
    /// What it does, for the model.
    #[serde(default)]
    pub description: Option<String>,
    /// JSON Schema of the call's arguments (`.args` in the call's templates).
    #[serde(default)]
    pub parameters: Option<Value>,
    /// An API call; without a `body`, a call other than GET or DELETE sends the model's
    /// arguments.
    #[serde(default)]
    pub http: Option<AgentHttpCall>,
    /// A published workflow a call starts, with the arguments as input.
    #[serde(default)]
    pub workflow: Option<String>,
    /// The run's entity's memory: `search` or `read`.
    #[serde(default)]
    pub memory: Option<AgentMemory>,
    /// A tool of an MCP server of `mcp_servers`: `{server, tool}`; the model's arguments are
    /// the tool's.
    #[serde(default)]
    pub mcp: Option<AgentMcpTool>,
    /// A person approves calls first: `required`, a jq condition over the call (`.args`), or
    /// `{when, queue, timeout, escalate}`.
    #[serde(default)]
    pub approval: Option<Value>,
    /// Limit on a call, e.g. `10s`.
    #[serde(default)]
    #[schemars(regex(pattern = r"^[0-9]+(ms|s|m|h|d)$"))]
    pub timeout: Option<String>,
}

with_http_request! {
    /// The API call of an agent's `http` tool; templates read the model's arguments as `.args`.
    #[derive(Debug, Clone, PartialEq, Deserialize, JsonSchema)]
    #[serde(deny_unknown_fields)]
    pub struct AgentHttpCall {}
}

/// The MCP tool an agent's tool calls.
#[derive(Debug, Clone, PartialEq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AgentMcpTool {
    /// A server of the workflow's `mcp_servers`.
    pub server: String,
    /// One tool of the server; without it, the entry offers every tool of the server (its
    /// name, description and input schema as the server lists them), filtered by `allow` and
    /// `deny`.
    #[serde(default)]
    pub tool: Option<String>,
    /// Without `tool`: only these of the server's tools are offered.
    #[serde(default)]
    pub allow: Option<Vec<String>>,
    /// Without `tool`: these of the server's tools are never offered.
    #[serde(default)]
    pub deny: Option<Vec<String>>,
}

/// What an agent's memory tool does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum AgentMemory {
    /// Search the entity's facts and episodes.
    Search,
    /// Read a fact.
    Read,
}

pub(super) const SPEC: ToolSpec = ToolSpec::inline::<AgentArgs>("agent", compile)
    .with_defaults(&[
        "provider",
        "model",
        "system",
        "temperature",
        "max_tokens",
        "max_repairs",
        "max_string_length",
        "sensitive",
        "max_turns",
    ])
    .times_out_after(CALL_TIMEOUT_MS);

/// The `llm` settings (with the workflow's `defaults.llm`, then `defaults.agent`), a `goal`,
/// the answer's schema, a bound on turns, and the tools.
fn compile(cx: &mut StepCx<'_>) -> Option<StepKind> {
    cx.unknown_args(SPEC.args());
    let (wptr, ptr, s, wf) = (cx.wptr, cx.ptr, cx.step, cx.wf);
    let mut merged = wf.defaults.as_ref().and_then(|d| d.llm.clone()).unwrap_or_default();
    let agent_defaults = wf.defaults.as_ref().and_then(|d| d.agent.clone()).unwrap_or_default();
    for (k, v) in agent_defaults.into_iter().chain(cx.obj().cloned().unwrap_or_default()) {
        merged.insert(k, v);
    }
    if s.for_each.is_some() {
        cx.p.err(format!("{ptr}/for_each"), "`for_each` cannot go with `agent`: run the agent in a sub-workflow");
    }
    if !matches!(merged.get("goal"), Some(Value::String(g)) if !g.trim().is_empty()) {
        cx.p.err(format!("{wptr}/goal"), "`agent` needs `with.goal`, what the model works toward");
    }
    if !matches!(merged.get("model"), Some(Value::String(m)) if !m.is_empty()) {
        cx.p.err(format!("{wptr}/model"), "`agent` needs `with.model` (or `defaults.llm.model`)");
    }
    if let Some(p) = merged.get("provider")
        && !p.as_str().is_some_and(|p| llm::PROVIDERS.contains(&p))
    {
        cx.p.err(format!("{wptr}/provider"), format!("unknown provider {p}; known: {}", llm::PROVIDERS.join(", ")));
    }
    let output_schema = match merged.remove("output_schema") {
        Some(schema @ Value::Object(_)) => {
            if let Err(e) = jsonschema::validator_for(&schema) {
                cx.p.err(format!("{wptr}/output_schema"), format!("not a valid JSON Schema: {e}"));
            }
            Some(schema)
        }
        _ => {
            cx.p.err(
                format!("{wptr}/output_schema"),
                "`agent` needs `with.output_schema`, the JSON Schema of its answer",
            );
            None
        }
    };
    let max_turns = match merged.remove("max_turns") {
        None => DEFAULT_MAX_TURNS,
        Some(v) => match v.as_u64() {
            Some(n @ 1..=50) => n as u32,
            _ => {
                cx.p.err(format!("{wptr}/max_turns"), "`max_turns` is a whole number from 1 to 50");
                DEFAULT_MAX_TURNS
            }
        },
    };
    let tool_list = match merged.remove("tools") {
        None => vec![],
        Some(Value::Array(t)) => t,
        Some(_) => {
            cx.p.err(
                format!("{wptr}/tools"),
                "`tools` is a list of `{name, description, parameters, http | workflow | memory | mcp}`",
            );
            vec![]
        }
    };
    let mut tools = Vec::new();
    let mut names = HashSet::new();
    for (j, t) in tool_list.iter().enumerate() {
        let tptr = format!("{wptr}/tools/{j}");
        if let Some(tool) = agent_tool(cx, t, &tptr, j, &mut names) {
            tools.push(tool);
        }
    }
    let budget_value = merged.remove("budget");
    let budget = budget::budget(cx, budget_value);
    llm::check_settings(cx.p, &merged, wptr);
    let args = cx.p.template(wptr, &Value::Object(merged))?;
    Some(StepKind::Agent { args, tools, max_turns, output_schema: output_schema?, budget })
}

/// One tool of an agent: its description for the model, and the hidden step that runs it (its
/// index is filled in once the plan's steps are all in place).
fn agent_tool(cx: &mut StepCx<'_>, t: &Value, tptr: &str, j: usize, names: &mut HashSet<String>) -> Option<AgentTool> {
    let Value::Object(t) = t else {
        cx.p.err(tptr, "a tool is `{name, description, parameters, http | workflow | memory | mcp}`");
        return None;
    };
    cx.p.unknown_args(Some(t), tptr, fields_of::<AgentToolArgs>());
    let name = match t.get("name").and_then(Value::as_str) {
        Some(n)
            if !n.is_empty()
                && n.len() <= 64
                && n.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') =>
        {
            n.to_owned()
        }
        _ => {
            cx.p.err(format!("{tptr}/name"), "a tool needs a `name` of letters, digits, `_` or `-` (at most 64)");
            return None;
        }
    };
    if !names.insert(name.clone()) {
        cx.p.err(format!("{tptr}/name"), format!("two tools are called `{name}`"));
    }
    let id = format!("{}.{name}", cx.step.id);
    if cx.ids.contains_key(&id) {
        cx.p.err(format!("{tptr}/name"), format!("the tool's step id `{id}` is already a step's id"));
    }
    let description = t.get("description").and_then(Value::as_str).unwrap_or_default().to_owned();
    let mut offers = None;
    let kinds: Vec<&str> = ["http", "workflow", "memory", "mcp"].into_iter().filter(|k| t.contains_key(*k)).collect();
    let (tool, args, default_params) = match kinds.as_slice() {
        ["http"] => match t.get("http") {
            Some(Value::Object(h)) => {
                let mut h = h.clone();
                let hptr = format!("{tptr}/http");
                cx.p.unknown_args(Some(&h), &hptr, fields_of::<AgentHttpCall>());
                match (h.contains_key("url"), h.contains_key("connection")) {
                    (false, false) => cx.p.err(&hptr, "an http tool needs `url`, or `connection` and `path`"),
                    (true, true) => {
                        cx.p.err(format!("{hptr}/connection"), "`url` or `connection` (with `path`), not both")
                    }
                    _ => {}
                }
                if let Some(m) = h.get("method")
                    && !m.as_str().is_some_and(|m| http::METHODS.contains(&m.to_ascii_uppercase().as_str()))
                {
                    cx.p.err(format!("{hptr}/method"), "method must be GET, POST, PUT, PATCH, DELETE, HEAD or OPTIONS");
                }
                if t.get("timeout").is_some_and(|v| !v.is_string()) {
                    cx.p.err(format!("{tptr}/timeout"), "expected a duration such as `10s`");
                }
                if let Some(c) = h.get("connection").and_then(Value::as_str)
                    && !cx.wf.connections.contains_key(c)
                {
                    cx.p.err(format!("{tptr}/http/connection"), format!("no connection `{c}` in `connections`"));
                }
                let method = h.get("method").and_then(Value::as_str).unwrap_or("GET").to_ascii_uppercase();
                // Without a body of its own, a call that sends one sends the model's arguments.
                if method != "GET" && method != "DELETE" && !h.contains_key("body") {
                    h.insert("body".into(), Value::String("{{ .args }}".into()));
                }
                if let Some(to) = t.get("timeout") {
                    h.entry("timeout").or_insert(to.clone());
                }
                (http::NAME, Value::Object(h), json!({"type": "object"}))
            }
            _ => {
                cx.p.err(
                    format!("{tptr}/http"),
                    "`http` is the call: `{method, url | connection + path, headers, body}`",
                );
                return None;
            }
        },
        ["workflow"] => match t.get("workflow").and_then(Value::as_str) {
            Some(w) if !w.trim().is_empty() => {
                (workflow::NAME, json!({"name": w, "input": "{{ .args }}"}), json!({"type": "object"}))
            }
            _ => {
                cx.p.err(format!("{tptr}/workflow"), "`workflow` names the published workflow a call starts");
                return None;
            }
        },
        ["memory"] => {
            if cx.wf.memory.is_none() {
                cx.p.err(
                    format!("{tptr}/memory"),
                    "a memory tool reads the run's entity: add `memory: {entity: ...}` to the workflow",
                );
            }
            match t.get("memory").and_then(Value::as_str) {
                Some("search") => (
                    memory::NAME,
                    json!({"op": "search", "query": "{{ .args.query }}"}),
                    json!({"type": "object", "required": ["query"], "properties": {"query": {"type": "string", "maxLength": 200}}}),
                ),
                Some("read") => (
                    memory::NAME,
                    json!({"op": "read", "key": "{{ .args.key }}"}),
                    json!({"type": "object", "properties": {"key": {"type": "string", "maxLength": 100}}}),
                ),
                _ => {
                    cx.p.err(format!("{tptr}/memory"), "`memory` is `search` or `read`");
                    return None;
                }
            }
        }
        ["mcp"] => {
            let mptr = format!("{tptr}/mcp");
            let m = t.get("mcp").and_then(Value::as_object);
            cx.p.unknown_args(m, &mptr, fields_of::<AgentMcpTool>());
            let Some(server) = m.and_then(|m| m.get("server")).and_then(Value::as_str) else {
                cx.p.err(&mptr, "`mcp` is `{server, tool}` (one tool) or `{server, allow, deny}` (the server's tools)");
                return None;
            };
            let names = |field: &str, p: &mut crate::plan::problems::Problems| match m.and_then(|m| m.get(field)) {
                None => vec![],
                Some(Value::Array(a)) if a.iter().all(Value::is_string) => {
                    a.iter().filter_map(Value::as_str).map(str::to_owned).collect()
                }
                Some(_) => {
                    p.err(format!("{mptr}/{field}"), format!("`{field}` is a list of the server's tool names"));
                    vec![]
                }
            };
            let (allow, deny) = (names("allow", cx.p), names("deny", cx.p));
            let tool = m.and_then(|m| m.get("tool")).and_then(Value::as_str).map(str::to_owned);
            if tool.is_some() && (!allow.is_empty() || !deny.is_empty()) {
                cx.p.err(format!("{mptr}/tool"), "`tool` names one tool; `allow` and `deny` filter a whole server's");
            }
            if tool.is_none() {
                offers = Some(McpOffer { server: server.to_owned(), allow, deny });
            }
            let transport = mcp::server_call(cx.wf, cx.p, &format!("{mptr}/server"), server)?;
            let mut call = mcp::agent_call(server, tool.as_deref(), transport);
            if let (Some(to), Value::Object(c)) = (t.get("timeout"), &mut call) {
                c.insert("timeout".into(), to.clone());
            }
            (mcp::NAME, call, json!({"type": "object"}))
        }
        [] => {
            cx.p.err(tptr, "a tool needs one of `http`, `workflow`, `memory` or `mcp`: what a call does");
            return None;
        }
        _ => {
            cx.p.err(tptr, format!("a tool does one thing: it has {}", kinds.join(" and ")));
            return None;
        }
    };
    let parameters = match t.get("parameters") {
        None => default_params,
        Some(p @ Value::Object(_)) => {
            if let Err(e) = jsonschema::validator_for(p) {
                cx.p.err(format!("{tptr}/parameters"), format!("not a valid JSON Schema: {e}"));
            }
            p.clone()
        }
        Some(_) => {
            cx.p.err(format!("{tptr}/parameters"), "`parameters` is the JSON Schema of the call's arguments");
            return None;
        }
    };
    let args = cx.p.template(tptr, &args)?;
    let timeout = t.get("timeout").and_then(Value::as_str).and_then(|d| cx.p.duration(format!("{tptr}/timeout"), d));
    // Calls of the mesh are retried on transient failures; the model sees what is left.
    let retry = RetryPolicy { max_attempts: 3, ..Default::default() };
    let gate = approval::gate(cx, t, tptr, &id);
    let step = PlannedStep::hidden(id, StepKind::Tool { tool: tool.into(), args }, retry, timeout);
    cx.hidden.push((j, step));
    let approval = gate.map(|(gate, task)| {
        cx.hidden.push((j, task));
        gate
    });
    Some(AgentTool { name, description, parameters, step: usize::MAX, offers, approval })
}
