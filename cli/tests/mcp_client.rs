//! Workflows using a real MCP server through the engine: `@modelcontextprotocol/server-everything`
//! (installed by scripts/check-prereqs into tests/mcp/node_modules) over stdio. An `mcp` step
//! calls `echo`; an agent offered the whole server sees the server's tools with their JSON
//! Schemas (less the denied ones), calls `get-sum`, and answers. The model is a scripted
//! OpenAI-compatible server that checks what the turns offer.

mod support;

use std::process::Command;

use serde_json::{Value, json};
use support::{Reply, Server, baton, fixture, json_of, text};

fn everything() -> String {
    support::mcp_everything()
}

fn completion(content: &Value) -> Reply {
    support::chat_completion(content)
}

/// Turn 1 calls `get-sum` (after checking the offered schemas), turn 2 answers with the sum the
/// tool returned.
fn model() -> Server {
    Server::start(|req, _| {
        let request: Value = serde_json::from_str(&req.body).unwrap_or(Value::Null);
        let prompt = request["messages"].to_string();
        let schema = request["response_format"]["json_schema"]["schema"].to_string();
        if prompt.contains("is 42") {
            return completion(&json!({"action": "answer", "answer": {"sum": 42}}));
        }
        // The server's own schema for get-sum, and no denied tool.
        let offered = schema.contains(r#""const":"get-sum""#) && schema.contains("First number");
        let denied = schema.contains("trigger-long-running-operation");
        if !offered || denied {
            return Reply::json(500, &json!({"error": format!("unexpected offer: {schema}")}).to_string());
        }
        completion(&json!({"action": "call", "calls": [{"tool": "get-sum", "arguments": {"a": 2, "b": 40}}]}))
    })
}

#[test]
fn an_mcp_step_and_an_agent_use_a_real_mcp_server() {
    let model = model();
    let dir = tempfile::tempdir().expect("tempdir");
    let input = json!({"server": everything(), "a": 2, "b": 40}).to_string();
    let wf = fixture("mcp-agent.yaml");
    let out = Command::new(env!("CARGO_BIN_EXE_baton"))
        .arg("--state-dir")
        .arg(dir.path())
        .args(["run", wf.to_str().expect("utf8"), "--input", &input, "--json"])
        .env("OPENAI_BASE_URL", format!("{}/v1", model.base))
        .output()
        .expect("baton runs");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let run = json_of(&out);
    assert_eq!(run["output"], json!({"echo": "Echo: adding 2 and 40", "answer": {"sum": 42}}), "{run}");
    assert_eq!(model.requests("/v1/chat/completions").len(), 2, "two turns");

    // The audit log has the listing, the offer, and each MCP call with its server, tool and digest.
    let id = run["run_id"].as_str().expect("id");
    let audit = baton(dir.path(), &["audit", "show", id, "--json"]);
    let records: Value = serde_json::from_slice(&audit.stdout).expect("audit json");
    let all = records.to_string();
    assert!(all.contains("agent_tools_listed"), "{all}");
    assert!(all.contains("MCP server `everything` offers"), "{all}");
    assert!(all.contains(r#""result_sha256""#), "{all}");
    assert!(all.contains(r#""latency_ms""#), "{all}");
    // The two turns' tokens, per step and in total, in `runs show` (JSON and text).
    let shown = json_of(&baton(dir.path(), &["runs", "show", id, "--json"]));
    assert_eq!(
        shown["model_usage"],
        json!({
            "steps": {"add": {"calls": 2, "input_tokens": 100, "output_tokens": 20, "usd": null}},
            "total": {"calls": 2, "input_tokens": 100, "output_tokens": 20, "usd": null},
        }),
        "{shown}"
    );
    let text_show = text(&baton(dir.path(), &["runs", "show", id]));
    assert!(text_show.contains("models: 2 calls, 100 input + 20 output tokens, unpriced"), "{text_show}");
    for check in ["verify", "replay"] {
        let out = baton(dir.path(), &["audit", check, id]);
        assert_eq!(out.status.code(), Some(0), "audit {check}: {}", text(&out));
    }
}

#[test]
fn a_dead_mcp_server_fails_the_step_with_a_transient_error_after_its_retries() {
    let dir = tempfile::tempdir().expect("tempdir");
    let wf = dir.path().join("dead.yaml");
    std::fs::write(
        &wf,
        r#"
name: dead-mcp
mcp_servers:
  gone: {command: node, args: ['-e', 'process.exit(3)']}
steps:
  - id: call
    tool: mcp
    retry: {max_attempts: 2, initial: 10ms}
    with: {server: gone, tool: echo, arguments: {message: hi}}
"#,
    )
    .expect("write");
    let out = baton(dir.path(), &["run", wf.to_str().expect("utf8"), "--json"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let run = json_of(&out);
    assert_eq!(run["error"]["kind"], "connect", "{run}");
    assert_eq!(run["steps"]["call"]["attempts"], 2, "{run}");
}
