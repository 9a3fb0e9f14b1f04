//! The `http` tool's SSRF guard and `{{ secret("NAME") }}` values, against a local server that
//! echoes each request (method, path, headers, body) in its JSON answer, the way a careless
//! server echoes credentials. Every address contacted is on 127.0.0.1: refused addresses are
//! refused before any packet is sent, and the "allowed with `allow_private`" side is checked in
//! `net_guard`'s unit tests, by the resolver, without connecting (no private address may be a
//! target here).

// The helpers (the echo server) fail the test loudly on any surprise.
#![allow(clippy::unwrap_used)]

#[path = "support/scripted_server.rs"]
mod scripted_server;

use std::collections::BTreeMap;
use std::io::{BufReader, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use baton_core::engine::StepError;
use baton_core::expr::Template;
use baton_runtime::ports::{SecretLookupError, SecretSource, Tool, ToolCall};
use baton_tools::HttpTool;
use serde_json::{Value, json};

const TOKEN: &str = "tok-9f8e7d6c5b4a";
const KEY: &str = "key/with+odd chars";

/// What the server saw: (method, path, lower-case headers, body).
type Seen = Arc<Mutex<Vec<(String, String, BTreeMap<String, String>, String)>>>;

struct Echo {
    base: String,
    port: u16,
    seen: Seen,
}

/// Serves `/echo...` (200, the request as JSON), `/status/<code>` (that status, same body) and
/// `/redirect?to=<url>` (302 to `<url>`).
fn echo_server() -> Echo {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen: Seen = Arc::default();
    let log = seen.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let Some(scripted_server::Seen { method, path, headers, raw: body, .. }) =
                scripted_server::read_request(&mut reader)
            else {
                continue;
            };
            log.lock().unwrap().push((method.clone(), path.clone(), headers.clone(), body.clone()));
            let echoed = json!({"method": method, "path": path, "headers": headers, "body": body}).to_string();
            let (status, extra) = if let Some(to) = path.strip_prefix("/redirect?to=") {
                (302, format!("Location: {to}\r\n"))
            } else if let Some(code) = path.strip_prefix("/status/") {
                (code.split('?').next().unwrap().parse().unwrap(), String::new())
            } else {
                (200, String::new())
            };
            let reply = format!(
                "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nX-Echo-Auth: {}\r\n{extra}Content-Length: {}\r\nConnection: close\r\n\r\n{echoed}",
                headers.get("authorization").cloned().unwrap_or_default(),
                echoed.len()
            );
            let _ = stream.write_all(reply.as_bytes());
        }
    });
    Echo { base: format!("http://127.0.0.1:{port}"), port, seen }
}

/// Answers from a fixed table, the way a test double of a vault would.
struct FakeSecrets;

#[async_trait]
impl SecretSource for FakeSecrets {
    async fn get(&self, name: &str) -> Result<Option<String>, SecretLookupError> {
        Ok(match name {
            "API_TOKEN" => Some(TOKEN.to_owned()),
            "API_KEY" => Some(KEY.to_owned()),
            _ => None,
        })
    }
}

/// The call input as the engine resolves it: `with` rendered by core's templates, so the
/// secrets are the real placeholders, and the workflow's `network` policy added.
fn resolved(with: Value, network: Option<Value>) -> Value {
    let mut input = Template::compile(&with).unwrap().render(&json!({"input": {}})).unwrap();
    if let Some(n) = network {
        input["network"] = n;
    }
    input
}

fn call(input: Value) -> ToolCall {
    ToolCall {
        run_id: "r1".into(),
        node: "fetch".into(),
        step: "fetch".into(),
        attempt: 1,
        tool: "http".into(),
        input,
        idempotency_key: "r1/fetch/0/1".into(),
        timeout_ms: Some(5_000),
        usage: Default::default(),
    }
}

async fn run(input: Value) -> Result<Value, StepError> {
    HttpTool::with_secrets(Arc::new(FakeSecrets)).run(&call(input)).await.result
}

/// The first decision of a run of `yaml` with `input`: the calls it dispatches, as the engine
/// renders them, and the run's state after it.
fn first_decision(yaml: &str, input: Value) -> (baton_core::engine::Decision, baton_core::engine::RunState) {
    let plan = baton_core::load_definition(None, yaml).unwrap_or_else(|p| panic!("{p:#?}"));
    let mut state = baton_core::engine::new_run(&plan, "r1", 0);
    let start = baton_core::engine::Event {
        at: 0,
        kind: baton_core::engine::EventKind::RunStarted { input, seed: 1, memory: None, engine: 0 },
    };
    let d = baton_core::engine::decide(&plan, &mut state, &start);
    (d, state)
}

fn assert_no_values(text: &str) {
    for (what, value) in [
        ("token", TOKEN),
        ("key", KEY),
        ("encoded key", "key%2Fwith%2Bodd%20chars"),
        ("sent key", "key/with+odd%20chars"),
    ] {
        assert!(!text.contains(value), "the {what} leaked: {text}");
    }
}

#[tokio::test]
async fn secrets_reach_the_server_but_only_their_names_come_back() {
    let echo = echo_server();
    let input = resolved(
        json!({
            "method": "POST",
            "url": format!("{}/echo?key={{{{ secret(\"API_KEY\") }}}}", echo.base),
            "headers": {"Authorization": "Bearer {{ secret(\"API_TOKEN\") }}", "X-Plain": "visible"},
            "body": {"nested": ["{{ secret(\"API_TOKEN\") }}"]},
        }),
        None,
    );
    // What the journal and the audit log would hold: placeholders only.
    let journaled = input.to_string();
    assert_no_values(&journaled);
    assert!(journaled.contains("\\u0000baton-secret:API_TOKEN\\u0000"), "{journaled}");

    let out = run(input).await.unwrap();
    let seen = echo.seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 1);
    let (method, path, headers, body) = &seen[0];
    assert_eq!(method, "POST");
    assert_eq!(headers["authorization"], format!("Bearer {TOKEN}"));
    assert_eq!(headers["x-plain"], "visible");
    assert_eq!(serde_json::from_str::<Value>(body).unwrap(), json!({"nested": [TOKEN]}));
    assert!(path.starts_with("/echo?key=key/with+odd%20chars"), "{path}");

    assert_eq!(out["status"], 200);
    assert_no_values(&out.to_string());
    assert_eq!(out["body"]["headers"]["authorization"], "Bearer [secret API_TOKEN]");
    assert_eq!(out["headers"]["x-echo-auth"], "Bearer [secret API_TOKEN]");
    assert_eq!(out["body"]["path"], "/echo?key=[secret API_KEY]");
    assert!(out["body"]["body"].as_str().unwrap().contains("[secret API_TOKEN]"), "{out}");
}

#[tokio::test]
async fn error_messages_show_secrets_only_by_name() {
    let echo = echo_server();
    let with = |url: String| json!({"url": url, "headers": {"Authorization": "Bearer {{ secret(\"API_TOKEN\") }}"}});
    let err = run(resolved(with(format!("{}/status/401?k={{{{ secret(\"API_KEY\") }}}}", echo.base)), None))
        .await
        .unwrap_err();
    assert_eq!(err.kind, "http_4xx");
    assert_no_values(&err.message);
    assert!(err.message.contains("?k=[secret API_KEY] answered 401"), "{}", err.message);
    assert!(err.message.contains("Bearer [secret API_TOKEN]"), "{}", err.message);
    assert_eq!(echo.seen.lock().unwrap()[0].2["authorization"], format!("Bearer {TOKEN}"));

    // reqwest's own error text quotes the URL it used, value included: scrubbed too.
    let closed = TcpListener::bind("127.0.0.1:0").unwrap();
    let dead = format!("http://{}/x?k={{{{ secret(\"API_KEY\") }}}}", closed.local_addr().unwrap());
    drop(closed);
    let err = run(resolved(with(dead), None)).await.unwrap_err();
    assert_eq!(err.kind, "connect");
    assert_no_values(&err.message);
    assert!(err.message.contains("[secret API_KEY]"), "{}", err.message);
}

#[tokio::test]
async fn a_missing_secret_fails_with_kind_tool_before_any_request() {
    let echo = echo_server();
    let input = resolved(
        json!({"url": format!("{}/echo", echo.base), "headers": {"X-Key": "{{ secret(\"NOT_THERE\") }}"}}),
        None,
    );
    let err = run(input).await.unwrap_err();
    assert_eq!(err.kind, "tool");
    assert!(err.message.contains("`NOT_THERE`"), "{}", err.message);
    assert!(echo.seen.lock().unwrap().is_empty());

    // A computed name is checked when it is used.
    let input =
        resolved(json!({"url": format!("{}/echo", echo.base), "body": "{{ secret(\"bad \" + \"name\") }}"}), None);
    let err = run(input).await.unwrap_err();
    assert_eq!(err.kind, "tool");
    assert!(err.message.contains("secret name"), "{}", err.message);
    assert!(echo.seen.lock().unwrap().is_empty());
}

#[tokio::test]
async fn the_metadata_address_is_refused_whatever_the_policy() {
    for network in [None, Some(json!({"allow_private": true}))] {
        for url in ["http://169.254.169.254/latest/meta-data/", "http://[::ffff:169.254.169.254]/", "http://[fe80::1]/"]
        {
            let err = run(resolved(json!({"url": url}), network.clone())).await.unwrap_err();
            assert_eq!(err.kind, "network_refused", "{url}: {}", err.message);
            assert!(err.message.contains("link-local and metadata addresses are never allowed"), "{}", err.message);
        }
    }
    let err = run(resolved(json!({"url": "http://169.254.169.254/"}), None)).await.unwrap_err();
    assert_eq!(
        err.message,
        "refused 169.254.169.254 for 169.254.169.254: link-local and metadata addresses are never allowed"
    );
}

#[tokio::test]
async fn private_addresses_are_refused_without_allow_private() {
    for url in ["http://10.0.0.1/", "http://192.168.1.10:8080/", "http://100.64.0.1/", "http://[fd12::1]/"] {
        let err = run(resolved(json!({"url": url}), None)).await.unwrap_err();
        assert_eq!(err.kind, "network_refused", "{url}");
        assert!(err.message.contains("unless `network.allow_private` is set"), "{}", err.message);
    }
    for url in ["http://0.0.0.0/", "http://255.255.255.255/", "http://224.0.0.1/", "http://[ff02::1]/", "http://[::]/"]
    {
        let err = run(resolved(json!({"url": url}), Some(json!({"allow_private": true})))).await.unwrap_err();
        assert_eq!(err.kind, "network_refused", "{url}");
    }
}

#[tokio::test]
async fn a_name_resolving_to_a_refused_address_is_refused() {
    let echo = echo_server();
    let url = format!("http://localhost:{}/echo", echo.port);
    let err = run(resolved(json!({"url": url}), Some(json!({"strict": true})))).await.unwrap_err();
    assert_eq!(err.kind, "network_refused", "{}", err.message);
    assert!(err.message.contains("for localhost: loopback addresses are refused"), "{}", err.message);
    let err =
        run(resolved(json!({"url": format!("{}/echo", echo.base)}), Some(json!({"strict": true})))).await.unwrap_err();
    assert_eq!(err.kind, "network_refused");
    assert!(echo.seen.lock().unwrap().is_empty(), "nothing may reach the server");
}

#[tokio::test]
async fn loopback_is_allowed_by_default() {
    let echo = echo_server();
    let out = run(resolved(json!({"url": format!("{}/echo", echo.base)}), None)).await.unwrap();
    assert_eq!(out["status"], 200);
    let out =
        run(resolved(json!({"url": format!("http://localhost:{}/echo", echo.port)}), Some(json!({})))).await.unwrap();
    assert_eq!(out["status"], 200);
    assert_eq!(echo.seen.lock().unwrap().len(), 2);
}

#[tokio::test]
async fn allow_hosts_refuses_unlisted_hosts() {
    let echo = echo_server();
    let only = |hosts: Value| Some(json!({"allow_hosts": hosts}));
    let err = run(resolved(json!({"url": format!("{}/echo", echo.base)}), only(json!(["api.example.com"]))))
        .await
        .unwrap_err();
    assert_eq!(err.kind, "network_refused");
    assert_eq!(err.message, "refused 127.0.0.1: the host is not in `network.allow_hosts`");
    let url = format!("http://LocalHost:{}/echo", echo.port);
    let err = run(resolved(json!({"url": url}), only(json!(["*.localhost"])))).await.unwrap_err();
    assert_eq!(err.kind, "network_refused", "`*.localhost` does not match `localhost` itself");
    let out = run(resolved(json!({"url": url}), only(json!(["localhost"])))).await.unwrap();
    assert_eq!(out["status"], 200);
    assert_eq!(echo.seen.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn redirects_are_judged_like_the_first_request() {
    let echo = echo_server();
    let redirect = |to: &str| json!({"url": format!("{}/redirect?to={to}", echo.base)});
    let err = run(resolved(redirect("http://169.254.169.254/latest/meta-data/"), None)).await.unwrap_err();
    assert_eq!(err.kind, "network_refused", "{}", err.message);
    assert!(
        err.message.contains("refused 169.254.169.254 for 169.254.169.254: link-local and metadata addresses"),
        "{}",
        err.message
    );
    assert!(err.message.starts_with("redirect from "), "{}", err.message);
    // A redirect to a name outside `allow_hosts` is refused as well.
    let to_name = redirect(&format!("http://localhost:{}/echo", echo.port));
    let err = run(resolved(to_name.clone(), Some(json!({"allow_hosts": ["127.0.0.1"]})))).await.unwrap_err();
    assert_eq!(err.kind, "network_refused", "{}", err.message);
    // An allowed target is followed as before.
    let out = run(resolved(to_name, None)).await.unwrap();
    assert_eq!(out["status"], 200);
    assert_eq!(out["body"]["path"], "/echo");
    let seen: Vec<String> = echo.seen.lock().unwrap().iter().map(|r| r.1.clone()).collect();
    assert_eq!(seen.iter().filter(|p| *p == "/echo").count(), 1, "{seen:?}");
}

/// A step on a named connection, as the engine dispatches it, through the tool: the base URL and
/// path, the connection's headers, its bearer token from a secret (placeholder in the command,
/// the value on the wire, the name in the output).
#[tokio::test]
async fn a_connection_step_sends_its_auth_and_headers_and_returns_only_names() {
    let echo = echo_server();
    let yaml = format!(
        r#"
name: mesh
connections:
  api:
    base_url: {}/echo
    headers: {{X-Tenant: "{{{{ .input.tenant }}}}"}}
    auth: {{bearer: '{{{{ secret("API_TOKEN") }}}}'}}
steps:
  - {{id: fetch, tool: http, with: {{connection: api, path: "/orders/{{{{ .input.id }}}}"}}}}
"#,
        echo.base
    );
    let (d, _) = first_decision(&yaml, json!({"tenant": "acme", "id": "A-1"}));
    let input = d
        .commands
        .iter()
        .find_map(|c| match c {
            baton_core::engine::Command::Dispatch(x) => Some(x.input.clone()),
            _ => None,
        })
        .unwrap();
    assert_no_values(&input.to_string());
    let out = run(input).await.unwrap();
    let (_, path, headers, _) = echo.seen.lock().unwrap()[0].clone();
    assert_eq!(path, "/echo/orders/A-1");
    assert_eq!(headers["authorization"], format!("Bearer {TOKEN}"));
    assert_eq!(headers["x-tenant"], "acme");
    assert_eq!(out["body"]["headers"]["authorization"], "Bearer [secret API_TOKEN]");
    assert_no_values(&out.to_string());
}

#[tokio::test]
async fn secret_bearing_headers_do_not_follow_a_redirect_to_another_host() {
    let first = echo_server();
    let other = echo_server();
    let with = |to: String| {
        json!({
            "method": "POST",
            "url": format!("{}/redirect?to={to}", first.base),
            "headers": {
                "X-Api-Key": "{{ secret(\"API_KEY\") }}",
                "Authorization": "Bearer {{ secret(\"API_TOKEN\") }}",
                "X-Plain": "visible",
            },
            "body": {"n": 1},
        })
    };
    // Another origin (another port): the plain header goes along, the secrets do not.
    let out = run(resolved(with(format!("{}/echo", other.base)), None)).await.unwrap();
    assert_eq!(out["status"], 200);
    let seen = other.seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 1, "the redirect was followed");
    let (method, _, headers, body) = &seen[0];
    assert_eq!(method, "GET", "a 302 after a POST is a GET, as browsers and reqwest do");
    assert!(body.is_empty());
    assert_eq!(headers.get("x-plain").map(String::as_str), Some("visible"));
    assert!(!headers.contains_key("x-api-key"), "{headers:?}");
    assert!(!headers.contains_key("authorization"), "{headers:?}");
    assert_no_values(&format!("{headers:?}"));
    // The same origin keeps them: the API is the one the secrets were meant for.
    run(resolved(with(format!("{}/echo", first.base)), None)).await.unwrap();
    let seen = first.seen.lock().unwrap().clone();
    let last = &seen.last().unwrap().2;
    assert_eq!(last.get("x-api-key").map(String::as_str), Some(KEY));
    assert_eq!(last.get("authorization"), Some(&format!("Bearer {TOKEN}")));
}

#[tokio::test]
async fn a_worker_that_refuses_loopback_refuses_it_whatever_the_workflow_says() {
    let echo = echo_server();
    for network in [None, Some(json!({"allow_private": true}))] {
        let input = resolved(json!({"url": format!("{}/echo", echo.base)}), network);
        let err = HttpTool::new().refusing_loopback().run(&call(input)).await.result.unwrap_err();
        assert_eq!(err.kind, "network_refused", "{}", err.message);
        assert!(err.message.contains("Runtime API"), "{}", err.message);
    }
    assert!(echo.seen.lock().unwrap().is_empty(), "nothing reached the loopback server");
    // The same call from a tool that does not refuse it goes through (the default on a laptop).
    let input = resolved(json!({"url": format!("{}/echo", echo.base)}), None);
    assert!(HttpTool::new().run(&call(input)).await.result.is_ok());
}

/// The workflow's `secrets` scope each secret: the connection's token goes with calls to that
/// connection only, and a secret scoped to other hosts is refused, with kind `network_refused`,
/// before any value is fetched or any request sent.
#[tokio::test]
async fn scoped_secrets_go_only_to_their_hosts_and_connections() {
    let echo = echo_server();
    let yaml = format!(
        r#"
name: scoped
secrets:
  API_TOKEN: {{connections: [api]}}
  KEY: {{hosts: [vault.example.com, "*.payments.example"]}}
connections:
  api:
    base_url: {base}/echo
    auth: {{bearer: '{{{{ secret("API_TOKEN") }}}}'}}
steps:
  - {{id: fetch, tool: http, with: {{connection: api, path: /orders}}}}
  - {{id: token_elsewhere, tool: http, with: {{url: "{base}/echo/token", headers: {{Authorization: 'Bearer {{{{ secret("API_TOKEN") }}}}'}}}}}}
  - {{id: key_elsewhere, tool: http, with: {{url: "{base}/echo/key?k={{{{ secret(\"KEY\") }}}}"}}}}
"#,
        base = echo.base
    );
    let (d, _) = first_decision(&yaml, json!({}));
    let calls: BTreeMap<String, Value> = d
        .commands
        .iter()
        .filter_map(|c| match c {
            baton_core::engine::Command::Dispatch(x) => Some((x.step.clone(), x.input.clone())),
            _ => None,
        })
        .collect();
    assert_eq!(calls.len(), 3, "{calls:?}");
    let out = run(calls["fetch"].clone()).await.unwrap();
    assert_eq!(out["body"]["headers"]["authorization"], "Bearer [secret API_TOKEN]");
    for (step, secret) in [("token_elsewhere", "API_TOKEN"), ("key_elsewhere", "KEY")] {
        let e = run(calls[step].clone()).await.expect_err("refused");
        assert_eq!(e.kind.as_str(), "network_refused", "{e:?}");
        assert!(e.message.contains(&format!("secret `{secret}` may be sent to")), "{}", e.message);
        assert!(e.message.contains("not to 127.0.0.1"), "{}", e.message);
        assert_no_values(&e.message);
    }
    let paths: Vec<String> = echo.seen.lock().unwrap().iter().map(|(_, p, _, _)| p.clone()).collect();
    assert_eq!(paths, ["/echo/orders"], "the refused calls sent nothing");

    // A scope that names a connection the workflow lacks, or no place at all, is refused at load.
    let bad = r#"
name: bad
secrets:
  A: {connections: [nope]}
  B: {}
  C: {hosts: ["https://x.example/path"]}
steps:
  - {id: s, tool: transform, with: {expr: "1"}}
"#;
    let text = format!("{:?}", baton_core::load_definition(None, bad).err().unwrap_or_default());
    for needle in ["/secrets/A/connections/0", "/secrets/B", "/secrets/C/hosts/0"] {
        assert!(text.contains(needle), "{needle} missing in {text}");
    }
}

/// A call carrying a scoped secret in its URL does not follow a redirect to another host (the
/// URL's query, and a 307's body, would go with it), and a connection's path cannot move the
/// call to another host.
#[tokio::test]
async fn scoped_secrets_stay_on_their_host_through_redirects_and_paths() {
    let first = echo_server();
    let other = echo_server();
    let mut input = resolved(
        json!({"url": format!("{}/redirect?to={}/echo&k={{{{ secret(\"API_KEY\") }}}}", first.base, other.base)}),
        None,
    );
    input["secrets"] = json!({"API_KEY": {"hosts": ["127.0.0.1"]}});
    let e = run(input).await.expect_err("not followed");
    assert_eq!(e.kind.as_str(), "network_refused", "{e:?}");
    assert!(e.message.contains("does not follow it"), "{}", e.message);
    assert_no_values(&e.message);
    assert!(other.seen.lock().unwrap().is_empty(), "nothing reached the other host");

    // One spelling of an SSM name cannot slip past the scope of another.
    let mut aliased = resolved(json!({"url": format!("{}/echo?k={{{{ secret(\"ssm://KEY\") }}}}", other.base)}), None);
    aliased["secrets"] = json!({"ssm:/KEY": {"hosts": ["vault.example.com"]}});
    let e = run(aliased).await.expect_err("refused");
    assert_eq!(e.kind.as_str(), "network_refused", "{e:?}");

    // A connection's path that would change the host is refused when the call is prepared.
    let yaml = format!(
        r#"
name: sneaky
connections:
  api: {{base_url: "{}", auth: {{bearer: '{{{{ secret("API_TOKEN") }}}}'}}}}
steps:
  - {{id: s, tool: http, with: {{connection: api, path: "{{{{ .input.p }}}}"}}}}
"#,
        first.base
    );
    let (d, state) = first_decision(&yaml, json!({"p": "@evil.example/"}));
    assert!(!d.commands.iter().any(|c| matches!(c, baton_core::engine::Command::Dispatch(_))), "nothing dispatched");
    let error = state.nodes.get("s").and_then(|n| n.error().cloned()).unwrap_or_else(|| panic!("no error"));
    assert!(error.message.contains("`path` must start with `/`"), "{}", error.message);
}
