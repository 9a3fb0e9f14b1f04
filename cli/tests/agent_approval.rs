//! Approval gates inside an agent loop, end to end: the agent's MCP tool (`get-sum` of
//! `@modelcontextprotocol/server-everything`, stdio, from tests/mcp/node_modules) needs a
//! person's approval when `a > 500`. The run waits on a task that shows the proposed call, the
//! model's reason and the conversation; approving (with changed arguments) runs the call,
//! rejecting gives the model the person's comment; a call under the threshold runs at once. The
//! model is a scripted OpenAI-compatible server.

mod support;

use std::path::Path;
use std::process::{Command, Output};

use serde_json::{Value, json};
use support::{Reply, Server, fixture, json_of, text};

fn everything() -> String {
    support::mcp_everything()
}

fn completion(content: &Value) -> Reply {
    support::chat_completion(content)
}

/// Answers with the sum once a result is in the prompt, -1 after a rejection; else calls `add`
/// with the numbers of the goal, giving a reason when the schema asks for one.
fn model() -> Server {
    Server::start(|req, _| {
        let request: Value = serde_json::from_str(&req.body).unwrap_or(Value::Null);
        let prompt = request["messages"].to_string();
        let schema = request["response_format"]["json_schema"]["schema"].to_string();
        if prompt.contains("too large") {
            return completion(&json!({"action": "answer", "answer": {"sum": -1}}));
        }
        if let Some(at) = prompt.find("The sum of ") {
            let sum: String =
                prompt[at..].split(" is ").nth(1).unwrap_or("0").chars().take_while(char::is_ascii_digit).collect();
            return completion(&json!({"action": "answer", "answer": {"sum": sum.parse::<u64>().unwrap_or(0)}}));
        }
        assert!(schema.contains(r#""reason""#), "a gated tool's calls carry a reason: {schema}");
        let (a, b) = if prompt.contains("Add 600 and 1") { (600, 1) } else { (2, 40) };
        completion(
            &json!({"action": "call", "calls": [{"tool": "add", "arguments": {"a": a, "b": b}, "reason": "the customer asked for it"}]}),
        )
    })
}

fn baton(dir: &Path, model: &Server, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_baton"))
        .arg("--state-dir")
        .arg(dir)
        .args(args)
        .env("OPENAI_BASE_URL", format!("{}/v1", model.base))
        .env_remove("BATON_HOME")
        .output()
        .expect("baton runs")
}

/// Starts a run adding `a` and 1 (or 40); returns its JSON.
fn start(dir: &Path, model: &Server, a: u64) -> (Option<i32>, Value) {
    let b = if a > 500 { 1 } else { 40 };
    let input = json!({"server": everything(), "a": a, "b": b}).to_string();
    let wf = fixture("mcp-approval.yaml");
    let out = baton(dir, model, &["run", wf.to_str().expect("utf8"), "--input", &input, "--json"]);
    (out.status.code(), json_of(&out))
}

fn only_task(dir: &Path, model: &Server) -> Value {
    let out = baton(dir, model, &["tasks", "--json"]);
    let tasks: Value = serde_json::from_slice(&out.stdout).expect("tasks json");
    let tasks = tasks.as_array().cloned().unwrap_or_default();
    assert_eq!(tasks.len(), 1, "{tasks:?}");
    tasks[0].clone()
}

#[test]
fn a_gated_call_waits_for_a_person_who_approves_it_with_changed_arguments() {
    let model = model();
    let dir = tempfile::tempdir().expect("tempdir");
    let (code, run) = start(dir.path(), &model, 600);
    assert_eq!(code, Some(3), "the run waits: {run}");
    let task = only_task(dir.path(), &model);
    assert_eq!(task["queue"], "finance", "{task}");
    let prompt = task["prompt"].as_str().unwrap_or_default();
    for needle in ["`add`", r#""a":600"#, "the customer asked for it", "conversation so far"] {
        assert!(prompt.contains(needle), "`{needle}` in {prompt}");
    }
    let id = task["id"].as_str().expect("task id");
    let data = json!({"arguments": {"a": 2, "b": 40}}).to_string();
    let out = baton(dir.path(), &model, &["approve", id, "--data", &data, "--by", "ana", "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let run_id = run["run_id"].as_str().expect("run id");
    let shown = baton(dir.path(), &model, &["runs", "show", run_id, "--json"]);
    let shown = json_of(&shown);
    assert_eq!(shown["status"], "succeeded", "{shown}");
    assert_eq!(shown["output"], json!({"sum": 42}), "the edited arguments ran: {shown}");
    let audit = baton(dir.path(), &model, &["audit", "show", run_id, "--json"]).stdout;
    let audit = String::from_utf8_lossy(&audit);
    for d in ["agent_approval_requested", "agent_call_approved", "with changed arguments"] {
        assert!(audit.contains(d), "{d}");
    }
    for check in ["verify", "replay"] {
        let out = baton(dir.path(), &model, &["audit", check, run_id]);
        assert_eq!(out.status.code(), Some(0), "audit {check}: {}", text(&out));
    }
}

#[test]
fn a_rejected_call_gives_the_model_the_comment_and_a_small_one_runs_at_once() {
    let model = model();
    let dir = tempfile::tempdir().expect("tempdir");
    let (code, run) = start(dir.path(), &model, 600);
    assert_eq!(code, Some(3), "{run}");
    let id = only_task(dir.path(), &model)["id"].as_str().expect("id").to_owned();
    let out = baton(dir.path(), &model, &["reject", &id, "--comment", "too large for one refund", "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let run_id = run["run_id"].as_str().expect("run id");
    let shown = json_of(&baton(dir.path(), &model, &["runs", "show", run_id, "--json"]));
    assert_eq!(shown["output"], json!({"sum": -1}), "the model read the comment: {shown}");

    let (code, small) = start(dir.path(), &model, 2);
    assert_eq!(code, Some(0), "{small}");
    assert_eq!(small["output"], json!({"sum": 42}));
    let out = baton(dir.path(), &model, &["tasks", "--json"]);
    assert_eq!(serde_json::from_slice::<Value>(&out.stdout).expect("json"), json!([]), "no task for a small call");
}
