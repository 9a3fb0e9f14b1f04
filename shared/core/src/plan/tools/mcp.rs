//! `mcp`: one call of a tool of an MCP server the workflow declares in `mcp_servers`. The
//! server's definition is compiled into the step's arguments, so a dispatched call carries
//! everything the executor needs (how to start or reach the server, the network policy) and the
//! audited command shows it, `secret()` values as placeholders.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use super::spec::{CALL_TIMEOUT_MS, CallEnv, CallError, StepCx, ToolInput, ToolSpec, read_as};
use crate::model::{McpServer, Network, Workflow};
use crate::plan::problems::Problems;
use crate::plan::structure::did_you_mean;
use crate::plan::types::StepKind;

/// The tool's name.
pub(super) const NAME: &str = "mcp";

/// The `with` of an `mcp` step.
#[derive(Debug, Clone, PartialEq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct McpArgs {
    /// A server of the workflow's `mcp_servers`.
    pub server: String,
    /// The name of the server's tool to call.
    pub tool: String,
    /// The tool's arguments, an object (templates inside; `"{{ jq }}"` alone gives any value).
    #[serde(default)]
    pub arguments: Option<Value>,
    /// Limit on the call, e.g. `10s` (over the server's `timeout`).
    #[serde(default)]
    #[schemars(regex(pattern = r"^[0-9]+(ms|s|m|h|d)$"))]
    pub timeout: Option<String>,
}

/// How the executor reaches a server: a command over stdio or a Streamable HTTP URL.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct McpTransport {
    /// The program to start (stdio).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<String>,
    /// Its arguments.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<String>,
    /// Its environment (values may hold `secret()` placeholders).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
    /// The endpoint (Streamable HTTP).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// Headers of every HTTP request (values may hold `secret()` placeholders).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
    /// Let the network guard pass this server's private addresses.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub allow_private: bool,
}

/// A dispatched `mcp` call, as its executor reads it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct McpCall {
    /// The server's name in `mcp_servers`.
    pub server: String,
    /// The tool called (empty when listing).
    #[serde(default)]
    pub tool: String,
    /// The tool's arguments.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arguments: Option<Value>,
    /// The call's limit (the step's, else the server's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<String>,
    /// How to reach the server.
    pub transport: McpTransport,
    /// The workflow's network policy (HTTP servers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<Network>,
    /// List the server's tools (`{tools: [{name, description, input_schema}]}`) instead of
    /// calling one: what an agent offering a whole server does before its first turn.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub list_tools: bool,
    /// Where the workflow's named secrets may be sent (its `secrets`): a scoped secret goes only
    /// to an HTTP server on one of its hosts.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub secrets: BTreeMap<String, crate::model::SecretScope>,
}

impl ToolInput for McpCall {
    const TOOL: &'static str = NAME;
}

/// MCP calls share the `http` worker: both wait on a network peer, and neither may hold up the
/// coordinator.
pub(super) const SPEC: ToolSpec =
    ToolSpec::worker::<McpArgs>(NAME, "http", compile).prepared_by(prepare).times_out_after(CALL_TIMEOUT_MS);

fn compile(cx: &mut StepCx<'_>) -> Option<StepKind> {
    cx.unknown_args(SPEC.args());
    let wptr = cx.wptr;
    let server = match cx.field("server") {
        Some(Value::String(s)) => Some(s.clone()),
        _ => {
            cx.p.err(format!("{wptr}/server"), "`mcp` needs `with.server`, a server of `mcp_servers`");
            None
        }
    };
    let tool = match cx.field("tool") {
        Some(Value::String(t)) if !t.trim().is_empty() => Some(t.clone()),
        _ => {
            cx.p.err(format!("{wptr}/tool"), "`mcp` needs `with.tool`, the name of the server's tool to call");
            None
        }
    };
    if let Some(a) = cx.field("arguments")
        && !(a.is_object() || a.as_str().is_some_and(|s| s.trim_start().starts_with("{{")))
    {
        cx.p.err(
            format!("{wptr}/arguments"),
            "`arguments` is a mapping of the tool's arguments (or a `{{ jq }}` giving one)",
        );
    }
    if let Some(t) = cx.field("timeout") {
        match t.as_str() {
            Some(d) => {
                cx.p.duration(format!("{wptr}/timeout"), d);
            }
            None => cx.p.err(format!("{wptr}/timeout"), "expected a duration such as `10s`"),
        }
    }
    let transport = server_call(cx.wf, cx.p, &format!("{wptr}/server"), server.as_deref()?)?;
    let mut with = cx.obj().cloned().unwrap_or_default();
    with.insert("tool".into(), Value::String(tool?));
    with.insert("transport".into(), transport);
    Some(StepKind::Tool { tool: NAME.into(), args: cx.p.template(wptr, &Value::Object(with))? })
}

/// The transport of server `name` as call arguments, or a problem at `ptr` naming the servers
/// there are.
pub(super) fn server_call(wf: &Workflow, p: &mut Problems, ptr: &str, name: &str) -> Option<Value> {
    let Some(s) = wf.mcp_servers.get(name) else {
        let known: Vec<&str> = wf.mcp_servers.keys().map(String::as_str).collect();
        let hint = did_you_mean(name, &known).map(|s| format!(" (did you mean `{s}`?)")).unwrap_or_default();
        p.err(ptr, format!("no server `{name}` in `mcp_servers`{hint}"));
        return None;
    };
    let t = McpTransport {
        command: s.command.clone(),
        args: s.args.clone(),
        env: s.env.clone(),
        url: s.url.clone(),
        headers: s.headers.clone(),
        allow_private: s.allow_private,
    };
    let mut v = serde_json::to_value(t).ok()?;
    if let (Some(timeout), Value::Object(m)) = (&s.timeout, &mut v) {
        // Carried beside the transport; `prepare` moves it to the call unless the step sets one.
        m.insert("timeout".into(), Value::String(timeout.clone()));
    }
    Some(v)
}

/// Checks `mcp_servers`: exactly one of `command` and `url`, an http(s) URL, stdio fields only
/// with a command, a duration.
pub(crate) fn check_servers(wf: &Workflow, p: &mut Problems) {
    for (name, s) in &wf.mcp_servers {
        let ptr = format!("/mcp_servers/{name}");
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') {
            p.err(&ptr, "a server's name is letters, digits, `_` or `-`");
        }
        check_server(s, p, &ptr);
    }
}

fn check_server(s: &McpServer, p: &mut Problems, ptr: &str) {
    match (&s.command, &s.url) {
        (None, None) => p.err(ptr, "a server needs `command` (stdio) or `url` (Streamable HTTP)"),
        (Some(_), Some(_)) => p.err(format!("{ptr}/url"), "`command` or `url`, not both"),
        (Some(c), None) => {
            if c.trim().is_empty() {
                p.err(format!("{ptr}/command"), "`command` is the program to start");
            }
            if !s.headers.is_empty() {
                p.err(format!("{ptr}/headers"), "`headers` go with `url`; a stdio server takes `env`");
            }
            if s.allow_private {
                p.err(format!("{ptr}/allow_private"), "`allow_private` goes with `url`");
            }
        }
        (None, Some(u)) => {
            let u = u.trim();
            if !(u.starts_with("https://") || u.starts_with("http://") || u.starts_with("{{")) {
                p.err(format!("{ptr}/url"), "`url` must start with https:// (or http://)");
            }
            if !s.args.is_empty() || !s.env.is_empty() {
                p.err(format!("{ptr}/args"), "`args` and `env` go with `command`; an HTTP server takes `headers`");
            }
        }
    }
    if let Some(t) = &s.timeout {
        p.duration(format!("{ptr}/timeout"), t);
    }
}

/// The call gets the workflow's network policy, and the server's timeout unless the step set
/// its own.
fn prepare(input: &mut Value, env: &CallEnv<'_>) -> Result<(), CallError> {
    let Value::Object(m) = input else {
        return Err(CallError { kind: crate::error_kind::ErrorKind::Tool, message: "invalid `mcp` call".into() });
    };
    let server_timeout = match m.get_mut("transport") {
        Some(Value::Object(t)) => t.remove("timeout"),
        _ => None,
    };
    if !m.contains_key("timeout")
        && let Some(t) = server_timeout
    {
        m.insert("timeout".into(), t);
    }
    if let Some(n) = env.network {
        m.insert("network".into(), serde_json::to_value(n).unwrap_or(Value::Null));
    }
    if !env.secrets.is_empty() {
        m.insert("secrets".into(), serde_json::to_value(env.secrets).unwrap_or(Value::Null));
    }
    // An agent's whole-server tool renders the fields its call does not use as null.
    m.retain(|_, v| !v.is_null());
    let call: McpCall = read_as(NAME, input)?;
    *input = call.to_input();
    Ok(())
}

/// The arguments of an agent's MCP tool: for one tool, the model's arguments are the tool's;
/// for a whole server, the loop passes `{tool, arguments}` of a call, or `{list_tools: true}`.
pub(super) fn agent_call(server: &str, tool: Option<&str>, transport: Value) -> Value {
    let mut m = Map::new();
    m.insert("server".into(), json!(server));
    match tool {
        Some(tool) => {
            m.insert("tool".into(), json!(tool));
            m.insert("arguments".into(), json!("{{ .args }}"));
        }
        None => {
            m.insert("tool".into(), json!("{{ .args.tool }}"));
            m.insert("arguments".into(), json!("{{ .args.arguments }}"));
            m.insert("list_tools".into(), json!("{{ .args.list_tools }}"));
        }
    }
    m.insert("transport".into(), transport);
    Value::Object(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(yaml: &str) -> Result<crate::plan::Plan, Vec<crate::diagnostics::Problem>> {
        crate::plan::load_definition(None, yaml)
    }

    #[test]
    fn a_step_carries_its_server_and_the_network_policy() {
        let yaml = r#"
name: w
network: {allow_hosts: [mcp.example.com]}
mcp_servers:
  crm: {url: "https://mcp.example.com/mcp", headers: {Authorization: 'Bearer {{ secret("CRM") }}'}, timeout: 5s}
steps:
  - id: s
    tool: mcp
    with: {server: crm, tool: find, arguments: {q: "{{ .input.q }}"}}
"#;
        let plan = load(yaml).expect("valid");
        let StepKind::Tool { args, .. } = &plan.steps[0].kind else { panic!("a tool step") };
        let mut input = args.render(&json!({"input": {"q": "acme"}})).expect("renders");
        let env = CallEnv {
            network: plan.workflow.network.as_ref(),
            secrets: &Default::default(),
            connections: &Default::default(),
            context: &json!({}),
            memory: None,
        };
        prepare(&mut input, &env).expect("prepared");
        let call = McpCall::from_input(&input).expect("reads");
        assert_eq!(call.timeout.as_deref(), Some("5s"));
        assert_eq!(call.arguments, Some(json!({"q": "acme"})));
        assert_eq!(call.transport.url.as_deref(), Some("https://mcp.example.com/mcp"));
        assert!(call.transport.headers["Authorization"].contains("baton-secret:CRM"));
        assert_eq!(call.network.map(|n| n.allow_hosts), Some(vec!["mcp.example.com".to_owned()]));
    }

    #[test]
    fn bad_servers_and_steps_are_reported_at_their_fields() {
        let yaml = r#"
name: w
mcp_servers:
  both: {command: x, url: "https://a"}
  none: {}
  ftp: {url: "ftp://a", env: {A: b}}
steps:
  - id: s
    tool: mcp
    with: {server: bothh, tool: ""}
"#;
        let problems = load(yaml).expect_err("invalid");
        let at: Vec<(&str, &str)> = problems.iter().map(|d| (d.pointer.as_str(), d.message.as_str())).collect();
        let has = |p: &str, m: &str| at.iter().any(|(pp, mm)| *pp == p && mm.contains(m));
        assert!(has("/mcp_servers/both/url", "not both"), "{at:?}");
        assert!(has("/mcp_servers/none", "needs `command`"), "{at:?}");
        assert!(has("/mcp_servers/ftp/url", "https://"), "{at:?}");
        assert!(has("/mcp_servers/ftp/args", "go with `command`"), "{at:?}");
        assert!(has("/steps/0/with/server", "did you mean `both`"), "{at:?}");
        assert!(has("/steps/0/with/tool", "needs `with.tool`"), "{at:?}");
    }

    #[test]
    fn an_agent_offers_one_tool_or_a_whole_server() {
        let yaml = r#"
name: w
mcp_servers:
  crm: {command: crm-server}
steps:
  - id: a
    tool: agent
    with:
      goal: g
      model: m
      output_schema: {type: object}
      tools:
        - {name: find, mcp: {server: crm, tool: find_customer}}
        - {name: crm, mcp: {server: crm, deny: [delete_customer]}}
"#;
        let plan = load(yaml).expect("valid");
        let StepKind::Agent { tools, .. } = &plan.steps[0].kind else { panic!("an agent") };
        assert_eq!(tools[0].offers, None);
        let offer = tools[1].offers.as_ref().expect("a whole server");
        assert!(offer.offers("find_customer") && !offer.offers("delete_customer"));
        let StepKind::Tool { args, .. } = &plan.steps[tools[0].step].kind else { panic!("a hidden step") };
        let one = args.render(&json!({"args": {"name": "Acme"}})).expect("renders");
        assert_eq!((one["tool"].as_str(), &one["arguments"]), (Some("find_customer"), &json!({"name": "Acme"})));

        let bad = yaml
            .replace("deny: [delete_customer]", "tool: x, allow: [y]")
            .replace("server: crm, tool: find_customer", "server: crn");
        let problems = load(&bad).expect_err("invalid");
        let at: Vec<(&str, &str)> = problems.iter().map(|d| (d.pointer.as_str(), d.message.as_str())).collect();
        assert!(at.iter().any(|(p, m)| p.ends_with("/tools/1/mcp/tool") && m.contains("filter")), "{at:?}");
        assert!(at.iter().any(|(p, m)| p.ends_with("/tools/0/mcp/server") && m.contains("no server `crn`")), "{at:?}");
    }
}
