//! `http`: a call to an API, run on the `http` worker. A call names a `url`, or a workflow
//! connection and a `path`; when it is dispatched it carries the workflow's network policy and
//! its connection's base URL, headers and limits, so the worker needs nothing but the call.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::spec::{CALL_TIMEOUT_MS, CallEnv, CallError, StepCx, ToolInput, ToolSpec, read_as};
use crate::error_kind::ErrorKind;
use crate::model::{AwsSigV4, Network};
use crate::plan::structure::did_you_mean;
use crate::plan::types::StepKind;

/// Methods a call may use (in any case; a template is checked when it is rendered).
pub(super) const METHODS: [&str; 7] = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"];

/// Declares a struct that describes an API call as written in a workflow: the request's
/// fields, then its own (an `http` step's `with`, an agent's `http` tool).
macro_rules! with_http_request {
    ($(#[$attr:meta])* pub struct $name:ident { $($(#[$fattr:meta])* pub $field:ident: $ty:ty,)* }) => {
        $(#[$attr])*
        pub struct $name {
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
            $($(#[$fattr])* pub $field: $ty,)*
        }
    };
}
pub(super) use with_http_request;

with_http_request! {
    /// The `with` of an `http` step: `url`, or `connection` with `path`.
    #[derive(Debug, Clone, PartialEq, Deserialize, JsonSchema)]
    #[serde(deny_unknown_fields)]
    pub struct HttpArgs {
        /// Limit on the call, e.g. `10s` (over the connection's).
        #[serde(default)]
        #[schemars(regex(pattern = r"^[0-9]+(ms|s|m|h|d)$"))]
        pub timeout: Option<String>,
        /// Largest response body accepted, in bytes (over the connection's; default 10 MiB).
        #[serde(default)]
        pub max_response_bytes: Option<u64>,
    }
}

pub(super) const NAME: &str = "http";

pub(super) const SPEC: ToolSpec =
    ToolSpec::worker::<HttpArgs>(NAME, "http", compile).cached().prepared_by(prepare).times_out_after(CALL_TIMEOUT_MS);

fn compile(cx: &mut StepCx<'_>) -> Option<StepKind> {
    let (wptr, wf) = (cx.wptr, cx.wf);
    match (cx.field("url"), cx.field("connection")) {
        (Some(Value::String(_)), None) => {}
        (None, Some(Value::String(c))) => {
            if !wf.connections.contains_key(c) {
                let known: Vec<&str> = wf.connections.keys().map(String::as_str).collect();
                let hint = did_you_mean(c, &known).map(|s| format!(" (did you mean `{s}`?)")).unwrap_or_default();
                cx.p.err(format!("{wptr}/connection"), format!("no connection `{c}` in `connections`{hint}"));
            }
            if let Some(p) = cx.field("path").and_then(Value::as_str)
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
    if cx.field("path").is_some() && cx.field("connection").is_none() {
        cx.p.err(format!("{wptr}/path"), "`path` goes with `connection`; with `url` put the path in the URL");
    }
    if let Some(m) = cx.field("method") {
        let ok = m.as_str().is_some_and(|m| m.contains("{{") || METHODS.contains(&m.to_ascii_uppercase().as_str()));
        if !ok {
            cx.p.err(format!("{wptr}/method"), "method must be GET, POST, PUT, PATCH, DELETE, HEAD or OPTIONS");
        }
    }
    // The worker reads the timeout as a duration: anything else would fail every call.
    match cx.field("timeout") {
        None => {}
        Some(Value::String(t)) => _ = cx.p.duration(format!("{wptr}/timeout"), t),
        Some(_) => cx.p.err(format!("{wptr}/timeout"), "expected a duration such as `10s`"),
    }
    cx.unknown_args(SPEC.args());
    cx.call_of(NAME)
}

/// An `http` call as its worker receives it: the step's rendered `with`, with the workflow's
/// network policy and, for a call to a connection, the connection merged in (its URL, headers,
/// timeout, signing and limits), so the worker needs nothing but the call.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HttpCall {
    /// The method, in any case; GET when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    /// The URL to call; `{{ secret("NAME") }}` placeholders are filled in by the worker.
    pub url: String,
    /// The connection the call goes to, kept so the audited command says which API it was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connection: Option<String>,
    /// Request headers; a value that is not text is sent as its JSON.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub headers: Option<BTreeMap<String, Value>>,
    /// The request body: text is sent as is, anything else as JSON.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<Value>,
    /// Limit on the call, e.g. `10s`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<String>,
    /// Largest response body accepted, in bytes; the worker's default when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_response_bytes: Option<u64>,
    /// The network guard's policy for this call.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<Network>,
    /// Sign the request with the worker's AWS credentials.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sigv4: Option<AwsSigV4>,
    /// The connection's rate limit and circuit breaker, applied per connection by the worker.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limits: Option<CallLimits>,
    /// Where the workflow's named secrets may be sent (its `secrets`); the worker refuses a call
    /// that would carry one anywhere else.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub secrets: BTreeMap<String, crate::model::SecretScope>,
}

impl ToolInput for HttpCall {
    const TOOL: &'static str = NAME;
}

/// A connection's limits as an `http` call carries them, in milliseconds.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CallLimits {
    /// At most `requests` calls per `per_ms`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<RateWindow>,
    /// After `failures` failed calls in a row, calls fail at once for `cooldown_ms`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub circuit_breaker: Option<BreakerWindow>,
}

/// A rate limit: `requests` calls per `per_ms`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RateWindow {
    /// Calls allowed per window.
    pub requests: u32,
    /// The window, in ms.
    pub per_ms: u64,
}

/// A circuit breaker: open after `failures` failures in a row, for `cooldown_ms`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct BreakerWindow {
    /// Failed calls in a row that open the circuit.
    pub failures: u32,
    /// How long it stays open, in ms.
    pub cooldown_ms: u64,
}

/// A connection as the plan keeps it (a template of these fields), once rendered for a call.
#[derive(Debug, Deserialize)]
struct Connected {
    url: String,
    #[serde(default)]
    headers: BTreeMap<String, Value>,
    #[serde(default)]
    timeout: Option<String>,
    #[serde(default)]
    allow_private: bool,
    #[serde(default)]
    max_response_bytes: Option<u64>,
    #[serde(default)]
    sigv4: Option<AwsSigV4>,
    #[serde(default)]
    limits: CallLimits,
}

/// The workflow's network policy travels with each call (`network` is not a `with` field users
/// can write), so a worker applies the definition's policy and the audited command shows it; a
/// call to a connection gets the connection merged in.
fn prepare(input: &mut Value, env: &CallEnv<'_>) -> Result<(), CallError> {
    let args: HttpArgs = read_as(NAME, input)?;
    let call = match &args.connection {
        None => HttpCall {
            method: args.method,
            // The step was checked to have a `url` or a `connection`.
            url: args.url.ok_or_else(|| CallError { kind: ErrorKind::Tool, message: "`url` is missing".into() })?,
            connection: None,
            headers: args.headers,
            body: args.body,
            timeout: args.timeout,
            max_response_bytes: args.max_response_bytes,
            network: env.network.cloned(),
            sigv4: None,
            limits: None,
            secrets: BTreeMap::new(),
        },
        Some(name) => {
            // Appended to the base URL, a path that does not start with `/` or `?` could move
            // the call to another host (`@evil.example/`), and a connection's secrets with it.
            if let Some(p) = args.path.as_deref().filter(|p| !(p.starts_with('/') || p.starts_with('?'))) {
                return Err(CallError {
                    kind: ErrorKind::Tool,
                    message: format!(
                        "`path` must start with `/` (or `?`): it is appended to connection `{name}`'s base URL, got `{p}`"
                    ),
                });
            }
            let conn = env
                .connections
                .get(name)
                .ok_or_else(|| CallError { kind: ErrorKind::Tool, message: format!("no connection `{name}`") })?;
            let conn = conn
                .render(env.context)
                .map_err(|e| CallError { kind: ErrorKind::Expression, message: e.to_string() })?;
            let conn: Connected = read_as(NAME, &conn)
                .map_err(|e| CallError { message: format!("connection `{name}`: {}", e.message), ..e })?;
            apply_connection(args, conn, env.network)
        }
    };
    let mut call = call;
    call.secrets = env.secrets.clone();
    *input = call.to_input();
    Ok(())
}

/// Merges a rendered connection into an `http` call: the URL is the base URL plus `path`, the
/// connection's headers (with its auth header) go under the step's own, its timeout applies
/// unless the step sets one, and `allow_private` opens the network guard for this call. The
/// call keeps `connection` so the audited command says which API it went to.
fn apply_connection(args: HttpArgs, conn: Connected, network: Option<&Network>) -> HttpCall {
    let mut headers = conn.headers;
    for (k, v) in args.headers.iter().flatten() {
        headers.retain(|h, _| !h.eq_ignore_ascii_case(k));
        headers.insert(k.clone(), v.clone());
    }
    let network = match (network, conn.allow_private) {
        (net, false) => net.cloned(),
        (net, true) => Some(Network { allow_private: true, ..net.cloned().unwrap_or_default() }),
    };
    let limits = conn.limits;
    HttpCall {
        method: args.method,
        url: format!("{}{}", conn.url, args.path.unwrap_or_default()),
        connection: args.connection,
        headers: if headers.is_empty() { args.headers } else { Some(headers) },
        body: args.body,
        timeout: args.timeout.or(conn.timeout),
        max_response_bytes: args.max_response_bytes.or(conn.max_response_bytes),
        network,
        // Signing, rate limit and circuit breaker are the worker's to apply, per connection.
        sigv4: conn.sigv4,
        limits: (limits != CallLimits::default()).then_some(limits),
        secrets: BTreeMap::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn calls_as_dispatched_today_read_and_write_back_the_same() {
        let samples = [
            json!({"url": "https://example.com/a"}),
            json!({
                "method": "post", "url": "https://api.example.com/v1/orders", "connection": "shop",
                "headers": {"Authorization": "Bearer {{ secret(\"TOKEN\") }}", "X-Count": 5},
                "body": {"id": 1}, "timeout": "10s",
                "network": {"allow_private": true, "strict": false, "allow_hosts": ["*.example.com"]},
                "sigv4": {"service": "execute-api", "region": "eu-west-1"},
                "limits": {"rate_limit": {"requests": 5, "per_ms": 1000}, "circuit_breaker": {"failures": 3, "cooldown_ms": 30000}},
            }),
            json!({"url": "https://example.com", "body": "text", "network": {"allow_private": false, "strict": true}}),
        ];
        for sample in samples {
            let call = HttpCall::from_input(&sample).expect("reads");
            assert_eq!(call.to_input(), sample);
        }
    }

    #[test]
    fn a_call_to_a_connection_carries_the_connection_as_before() {
        let conn = json!({
            "url": "https://api.example.com/v1", "headers": {"Authorization": "Bearer t", "Accept": "a"},
            "timeout": "5s", "allow_private": true, "sigv4": {"service": "execute-api"},
            "limits": {"rate_limit": {"requests": 2, "per_ms": 1000}},
        });
        let connections = [("api".to_owned(), crate::expr::Template::compile(&conn).expect("template"))].into();
        let none = Default::default();
        let env =
            CallEnv { network: None, secrets: &none, connections: &connections, context: &json!({}), memory: None };
        let mut input = json!({"connection": "api", "path": "/orders", "headers": {"accept": "b"}, "method": "POST"});
        prepare(&mut input, &env).expect("prepared");
        assert_eq!(
            input,
            json!({
                "method": "POST", "url": "https://api.example.com/v1/orders", "connection": "api",
                "headers": {"Authorization": "Bearer t", "accept": "b"}, "timeout": "5s",
                "network": {"allow_private": true, "strict": false}, "sigv4": {"service": "execute-api"},
                "limits": {"rate_limit": {"requests": 2, "per_ms": 1000}},
            })
        );
    }

    #[test]
    fn a_bad_call_names_its_field() {
        let e = HttpCall::from_input(&json!({"url": "https://x", "method": 5})).expect_err("method is text");
        assert_eq!(e.kind, ErrorKind::Tool);
        assert_eq!(e.message, "invalid `http` call: `method`: invalid type: integer `5`, expected a string");
        let e = HttpCall::from_input(&json!({"method": "GET"})).expect_err("url is needed");
        assert_eq!(e.message, "invalid `http` call: missing field `url`");
    }
}
