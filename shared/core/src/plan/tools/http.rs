//! `http`: a call to an API, run on the `http` worker. A call names a `url`, or a workflow
//! connection and a `path`; when it is dispatched it carries the workflow's network policy and
//! its connection's base URL, headers and limits, so the worker needs nothing but the call.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::{Value, json};

use super::fields::{fields_of, schema_of};
use super::spec::{CallEnv, CallError, Placement, StepCx, ToolSpec};
use crate::error_kind::ErrorKind;
use crate::plan::structure::did_you_mean;
use crate::plan::types::StepKind;

/// Methods a call may use (in any case; a template is checked when it is rendered).
pub(super) const METHODS: [&str; 7] = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"];

/// The `with` of an `http` step: `url`, or `connection` with `path`.
#[derive(Debug, Clone, PartialEq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HttpArgs {
    /// GET (the default), POST, PUT, PATCH, DELETE, HEAD or OPTIONS.
    #[serde(default)]
    pub method: Option<String>,
    /// The URL to call (a template).
    #[serde(default)]
    pub url: Option<String>,
    /// A connection of the workflow (or its mesh) whose base URL `path` is appended to.
    #[serde(default)]
    pub connection: Option<String>,
    /// With `connection`: the path after its base URL, starting with `/`.
    #[serde(default)]
    pub path: Option<String>,
    /// Request headers (over the connection's).
    #[serde(default)]
    pub headers: Option<BTreeMap<String, Value>>,
    /// The request body; a mapping or list is sent as JSON.
    #[serde(default)]
    pub body: Option<Value>,
    /// Limit on the call, e.g. `10s` (over the connection's).
    #[serde(default)]
    #[schemars(regex(pattern = r"^[0-9]+(ms|s|m|h|d)$"))]
    pub timeout: Option<String>,
}

pub(super) const NAME: &str = "http";

pub(super) const SPEC: ToolSpec = ToolSpec {
    name: NAME,
    placement: Placement::Worker { queue: "http" },
    defaults: &[],
    cache: true,
    escalate: false,
    on_timeout: false,
    args: fields_of::<HttpArgs>,
    with_schema: schema_of::<HttpArgs>,
    compile,
    prepare: Some(prepare),
};

fn compile(cx: &mut StepCx<'_>) -> Option<StepKind> {
    let (obj, wptr, wf) = (cx.obj(), cx.wptr, cx.wf);
    let field = |name: &str| obj.and_then(|o| o.get(name));
    match (field("url"), field("connection")) {
        (Some(Value::String(_)), None) => {}
        (None, Some(Value::String(c))) => {
            if !wf.connections.contains_key(c) {
                let known: Vec<&str> = wf.connections.keys().map(String::as_str).collect();
                let hint = did_you_mean(c, &known).map(|s| format!(" (did you mean `{s}`?)")).unwrap_or_default();
                cx.p.err(format!("{wptr}/connection"), format!("no connection `{c}` in `connections`{hint}"));
            }
            if let Some(p) = field("path").and_then(Value::as_str)
                && !(p.is_empty() || p.starts_with('/') || p.starts_with('?') || p.starts_with("{{"))
            {
                cx.p.err(format!("{wptr}/path"), "`path` is appended to the connection's base URL: start it with `/`");
            }
        }
        (Some(_), Some(_)) => {
            cx.p.err(format!("{wptr}/connection"), "`http` takes `url` or `connection` (with `path`), not both")
        }
        _ => cx.p.err(format!("{wptr}/url"), "`http` needs `with.url`, or `with.connection` and `with.path`"),
    }
    if field("path").is_some() && field("connection").is_none() {
        cx.p.err(format!("{wptr}/path"), "`path` goes with `connection`; with `url` put the path in the URL");
    }
    if let Some(m) = field("method") {
        let ok = m.as_str().is_some_and(|m| m.contains("{{") || METHODS.contains(&m.to_ascii_uppercase().as_str()));
        if !ok {
            cx.p.err(format!("{wptr}/method"), "method must be GET, POST, PUT, PATCH, DELETE, HEAD or OPTIONS");
        }
    }
    if let Some(t) = field("timeout").and_then(Value::as_str) {
        cx.p.duration(format!("{wptr}/timeout"), t);
    }
    cx.unknown_args(SPEC.args());
    Some(StepKind::Tool { tool: NAME.into(), args: cx.p.template(wptr, cx.with)? })
}

/// The workflow's network policy travels with each call (`network` is not a `with` field users
/// can write), so a worker applies the definition's policy and the audited command shows it; a
/// call to a connection gets the connection merged in.
fn prepare(input: &mut Value, env: &CallEnv<'_>) -> Result<(), CallError> {
    if let (Some(net), Value::Object(m)) = (env.network, &mut *input) {
        m.insert("network".into(), serde_json::to_value(net).unwrap_or(Value::Null));
    }
    if let Some(name) = input.get("connection").and_then(Value::as_str).map(str::to_owned) {
        let conn = env
            .connections
            .get(&name)
            .ok_or_else(|| CallError { kind: ErrorKind::Tool, message: format!("no connection `{name}`") })?;
        let conn =
            conn.render(env.context).map_err(|e| CallError { kind: ErrorKind::Expression, message: e.to_string() })?;
        apply_connection(input, &conn);
    }
    Ok(())
}

/// Merges a rendered connection into an `http` call: the URL is the base URL plus `path`, the
/// connection's headers (with its auth header) go under the step's own, its timeout applies
/// unless the step sets one, and `allow_private` opens the network guard for this call. The
/// call keeps `connection` so the audited command says which API it went to.
fn apply_connection(input: &mut Value, conn: &Value) {
    let Value::Object(m) = input else { return };
    let path = m.remove("path").map(|p| match p {
        Value::String(s) => s,
        other => other.to_string(),
    });
    let base = conn.get("url").and_then(Value::as_str).unwrap_or_default();
    m.insert("url".into(), Value::String(format!("{base}{}", path.unwrap_or_default())));
    let mut headers = conn.get("headers").and_then(Value::as_object).cloned().unwrap_or_default();
    if let Some(Value::Object(own)) = m.get("headers") {
        for (k, v) in own {
            headers.retain(|h, _| !h.eq_ignore_ascii_case(k));
            headers.insert(k.clone(), v.clone());
        }
    }
    if !headers.is_empty() {
        m.insert("headers".into(), Value::Object(headers));
    }
    if !m.contains_key("timeout")
        && let Some(t) = conn.get("timeout").filter(|t| !t.is_null())
    {
        m.insert("timeout".into(), t.clone());
    }
    // Signing, rate limit and circuit breaker are the worker's to apply, per connection.
    if let Some(s) = conn.get("sigv4").filter(|s| !s.is_null()) {
        m.insert("sigv4".into(), s.clone());
    }
    if let Some(Value::Object(l)) = conn.get("limits")
        && !l.is_empty()
    {
        m.insert("limits".into(), Value::Object(l.clone()));
    }
    if conn.get("allow_private") == Some(&Value::Bool(true)) {
        let net = m.entry("network").or_insert_with(|| json!({}));
        if let Value::Object(n) = net {
            n.insert("allow_private".into(), Value::Bool(true));
        }
    }
}
