//! The `mcp` tool against real MCP servers from npm, installed by `scripts/check-prereqs` into
//! `tests/mcp/node_modules` (versions pinned in `tests/mcp/package-lock.json`):
//! `@modelcontextprotocol/server-everything` over stdio and over Streamable HTTP, and
//! `@modelcontextprotocol/server-memory` over stdio.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use baton_core::engine::ErrorKind;
use baton_runtime::ports::{SecretLookupError, SecretSource, Tool, ToolCall};
use baton_tools::McpTool;
use serde_json::{Value, json};

#[path = "support/mcp_everything.rs"]
mod mcp_everything;
use mcp_everything::{HttpServer, everything, servers_dir};

/// `@modelcontextprotocol/server-memory`'s entry point.
fn memory() -> String {
    let p = servers_dir().join("server-memory/dist/index.js");
    assert!(p.exists(), "{} is missing: run scripts/check-prereqs", p.display());
    p.display().to_string()
}

fn call(input: Value) -> ToolCall {
    ToolCall {
        run_id: "r1".into(),
        node: "s".into(),
        step: "s".into(),
        attempt: 1,
        tool: "mcp".into(),
        input,
        idempotency_key: "r1/s/0/1".into(),
        timeout_ms: Some(20_000),
        usage: Default::default(),
    }
}

fn stdio(script: &str, tool: &str, arguments: Value) -> Value {
    json!({"server": "everything", "tool": tool, "arguments": arguments,
           "transport": {"command": "node", "args": [script, "stdio"]}})
}

struct Fixed;

#[async_trait]
impl SecretSource for Fixed {
    async fn get(&self, name: &str) -> Result<Option<String>, SecretLookupError> {
        Ok((name == "GREETING").then(|| "s3cret-value".to_owned()))
    }
}

#[tokio::test]
async fn a_stdio_server_is_started_once_and_reused_and_every_call_is_reported() {
    let tool = McpTool::with_secrets(Arc::new(Fixed));
    let script = everything();
    let first = tool.run(&call(stdio(&script, "echo", json!({"message": "hello"})))).await;
    let out = first.result.expect("echo answers");
    assert_eq!(out["text"], "Echo: hello");
    let report = first.report.expect("a report");
    assert_eq!((report["server"].as_str(), report["tool"].as_str()), (Some("everything"), Some("echo")));
    assert_eq!(report["transport"], "stdio");
    assert_eq!(report["result_sha256"].as_str().map(str::len), Some(64));
    let first_ms = report["latency_ms"].as_u64().expect("latency");

    // A secret goes to the server, the report keeps the placeholder and the output is scrubbed.
    let placeholder = "\u{0}baton-secret:GREETING\u{0}";
    let input = stdio(&script, "echo", json!({"message": placeholder}));
    let second = tool.run(&call(input)).await;
    let out = second.result.expect("echo answers");
    assert!(!out.to_string().contains("s3cret-value"), "{out}");
    let report = second.report.expect("a report");
    assert_eq!(report["arguments"]["message"], placeholder);
    let second_ms = report["latency_ms"].as_u64().expect("latency");
    // The second call reuses the running process: no node start-up in it.
    assert!(second_ms < first_ms, "first {first_ms} ms, second {second_ms} ms");

    let sum = tool.call(&call(stdio(&script, "get-sum", json!({"a": 2, "b": 40})))).await.expect("get-sum");
    assert!(sum["text"].as_str().is_some_and(|t| t.contains("42")), "{sum}");
}

#[tokio::test]
async fn the_memory_server_keeps_what_one_call_stores_for_the_next() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("memory.jsonl").display().to_string();
    let tool = McpTool::new();
    let server = |tool: &str, arguments: Value| {
        json!({"server": "memory", "tool": tool, "arguments": arguments,
               "transport": {"command": "node", "args": [memory()], "env": {"MEMORY_FILE_PATH": file}}})
    };
    let entities = json!({"entities": [{"name": "Acme", "entityType": "customer", "observations": ["pays late"]}]});
    tool.call(&call(server("create_entities", entities))).await.expect("stored");
    let found = tool.call(&call(server("search_nodes", json!({"query": "Acme"})))).await.expect("searched");
    assert!(found.to_string().contains("pays late"), "{found}");
}

#[tokio::test]
async fn failures_are_classified_and_never_hang() {
    let tool = McpTool::new();
    let script = everything();
    // A protocol error: the server has no such tool. Permanent.
    let e = tool.call(&call(stdio(&script, "no-such-tool", json!({})))).await.expect_err("unknown tool");
    assert_eq!(e.kind, ErrorKind::Tool, "{e:?}");
    assert!(!e.kind.is_transient());

    // A server that hangs: the call's own limit ends it, as a transient timeout.
    let mut slow = stdio(&script, "trigger-long-running-operation", json!({"duration": 30, "steps": 3}));
    slow["timeout"] = json!("1s");
    let started = Instant::now();
    let e = tool.call(&call(slow)).await.expect_err("too slow");
    assert_eq!(e.kind, ErrorKind::Timeout, "{e:?}");
    assert!(started.elapsed() < Duration::from_secs(10), "{:?}", started.elapsed());
    // The hung connection was dropped: the next call gets a fresh server and works.
    tool.call(&call(stdio(&script, "echo", json!({"message": "again"})))).await.expect("a fresh server");

    // A server that dies at start: a transient connect error.
    let dead =
        json!({"server": "dead", "tool": "x", "transport": {"command": "node", "args": ["-e", "process.exit(3)"]}});
    let e = tool.call(&call(dead)).await.expect_err("dead server");
    assert_eq!(e.kind, ErrorKind::Connect, "{e:?}");
    assert!(e.kind.is_transient());

    // A program that does not exist.
    let missing = json!({"server": "gone", "tool": "x", "transport": {"command": "/nonexistent/mcp-server"}});
    assert_eq!(tool.call(&call(missing)).await.expect_err("no program").kind, ErrorKind::Connect);
}

#[tokio::test]
async fn a_streamable_http_server_is_called_through_the_network_guard() {
    let server = HttpServer::start();
    let url = format!("http://127.0.0.1:{}/mcp", server.port);
    let tool = McpTool::new();
    let input = |network: Value| {
        json!({"server": "everything", "tool": "echo", "arguments": {"message": "over http"},
               "transport": {"url": url, "headers": {"X-Client": "baton"}}, "network": network})
    };
    let out = tool.call(&call(input(json!({"allow_private": false, "strict": false})))).await.expect("echo over HTTP");
    assert_eq!(out["text"], "Echo: over http");
    let outcome = tool.run(&call(input(json!({"allow_private": false, "strict": false})))).await;
    assert_eq!(outcome.report.expect("report")["transport"], "http");

    // The same guard as `http`: a strict policy refuses loopback before anything is sent.
    let e = tool.call(&call(input(json!({"allow_private": false, "strict": true})))).await.expect_err("refused");
    assert_eq!(e.kind, ErrorKind::NetworkRefused, "{e:?}");
    let e = McpTool::new()
        .refusing_loopback()
        .call(&call(input(json!({"allow_private": false, "strict": false}))))
        .await
        .expect_err("refused on this host");
    assert_eq!(e.kind, ErrorKind::NetworkRefused, "{e:?}");

    // Nothing listens: a transient connect error, not a hang.
    drop(server);
    let gone = json!({"server": "x", "tool": "echo", "transport": {"url": "http://127.0.0.1:9/mcp"}, "timeout": "5s"});
    let e = tool.call(&call(gone)).await.expect_err("nothing there");
    assert!(e.kind.is_transient(), "{e:?}");
}

/// The workflow's `secrets` hold for MCP servers too: a scoped secret goes only to an HTTP
/// server on one of its hosts, never to a local program over stdio; refused before any value
/// is fetched or any server started.
#[tokio::test]
async fn scoped_secrets_reach_only_mcp_servers_on_their_hosts() {
    let tool = McpTool::with_secrets(Arc::new(Fixed));
    let scopes = json!({"GREETING": {"hosts": ["127.0.0.1"]}});
    let stdio_call = json!({"server": "local", "tool": "echo", "arguments": {},
        "transport": {"command": "node", "args": ["-e", "0"], "env": {"TOKEN": "{{ secret(\"GREETING\") }}"}},
        "secrets": scopes});
    let stdio_call =
        baton_core::expr::Template::compile(&stdio_call).expect("template").render(&json!({})).expect("renders");
    let e = tool.call(&call(stdio_call)).await.expect_err("refused");
    assert_eq!(e.kind, ErrorKind::NetworkRefused, "{e:?}");
    assert!(e.message.contains("a local program over stdio"), "{}", e.message);

    let http = |url: &str, host: &str| {
        let v = json!({"server": "remote", "tool": "echo", "arguments": {}, "timeout": "2s",
            "transport": {"url": url, "headers": {"Authorization": "Bearer {{ secret(\"GREETING\") }}"}},
            "secrets": {"GREETING": {"hosts": [host]}}});
        baton_core::expr::Template::compile(&v).expect("template").render(&json!({})).expect("renders")
    };
    let e = tool.call(&call(http("http://127.0.0.1:9/mcp", "mcp.example.com"))).await.expect_err("refused");
    assert_eq!(e.kind, ErrorKind::NetworkRefused, "{e:?}");
    assert!(e.message.contains("may be sent to mcp.example.com only, not to 127.0.0.1"), "{}", e.message);
    // On its host the call goes ahead (and finds nothing listening there).
    let e = tool.call(&call(http("http://127.0.0.1:9/mcp", "127.0.0.1"))).await.expect_err("nothing there");
    assert_ne!(e.kind, ErrorKind::NetworkRefused, "{e:?}");
}
