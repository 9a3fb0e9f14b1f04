//! `baton mcp serve` driven by a real MCP client, the Python `mcp` package (its venv made by
//! scripts/check-prereqs in tests/mcp/.venv), over stdio and over Streamable HTTP:
//! tests/mcp/baton_mcp_client.py lists the tools, starts a run of a published workflow (after
//! one its input schema refuses), answers the run's task and reads the run until it succeeds.

mod support;

use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::{baton, fixture, root, text};

struct Serve(Child);

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn published() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    for wf in ["approval.yaml", "chain3.yaml"] {
        let out = baton(dir.path(), &["publish", fixture(wf).to_str().expect("utf8")]);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    }
    dir
}

fn client(args: &[&str]) -> Value {
    let python = root().join("tests/mcp/.venv/bin/python");
    assert!(python.exists(), "the MCP client's venv is missing: run scripts/check-prereqs");
    let out = Command::new(python)
        .arg(root().join("tests/mcp/baton_mcp_client.py"))
        .args(args)
        .env_remove("BATON_HOME")
        .output()
        .expect("python runs");
    assert!(out.status.success(), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(stdout.lines().last().unwrap_or_default()).expect("the client prints JSON")
}

fn check(seen: &Value) {
    assert_eq!(seen["tools"], json!(["answer_task", "get_run", "list_tasks", "start_approval", "start_chain3"]));
    // The workflow's own input schema, and `{"type": "object"}` for one that declares none.
    assert_eq!(
        seen["approval_schema"],
        json!({"type": "object", "required": ["amount"], "properties": {"amount": {"type": "number"}}})
    );
    assert_eq!(seen["chain3_schema"], json!({"type": "object"}));
    assert!(seen["refused"].as_str().is_some_and(|t| t.contains("is not of type")), "{seen}");
    assert_eq!(seen["started_status"], "waiting");
    assert_eq!(seen["final_status"], "succeeded");
    assert_eq!(seen["output"], json!({"decision": "approve", "paid": {"paid": 12, "reference": "R-7"}}));
    assert_eq!((&seen["chain3_status"], &seen["chain3_output"]), (&json!("succeeded"), &json!({"n": 3})));
    assert_eq!(seen["missing_is_error"], true);
}

fn run_shows(dir: &Path, status: &str) -> usize {
    let out = baton(dir, &["runs", "list", "--json"]);
    let runs: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    runs.as_array().map_or(0, |r| r.iter().filter(|r| r["status"] == status).count())
}

#[test]
fn a_python_mcp_client_starts_and_answers_runs_over_stdio() {
    let dir = published();
    let seen = client(&["stdio", env!("CARGO_BIN_EXE_baton"), dir.path().to_str().expect("utf8")]);
    check(&seen);
    // The runs the client started are the state directory's, as the CLI sees them.
    assert_eq!(run_shows(dir.path(), "succeeded"), 2);
}

#[test]
fn a_python_mcp_client_starts_and_answers_runs_over_http() {
    let dir = published();
    let port = std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port();
    let _serve = Serve(
        Command::new(env!("CARGO_BIN_EXE_baton"))
            .arg("--state-dir")
            .arg(dir.path())
            .args(["mcp", "serve", "--transport", "http", "--listen", &format!("127.0.0.1:{port}")])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("baton mcp serve"),
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "baton mcp serve did not listen");
        std::thread::sleep(Duration::from_millis(50));
    }
    check(&client(&["http", &format!("http://127.0.0.1:{port}/mcp")]));
    assert_eq!(run_shows(dir.path(), "succeeded"), 2);
}

#[test]
fn the_http_transport_refuses_a_non_loopback_address() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = baton(dir.path(), &["mcp", "serve", "--transport", "http", "--listen", "0.0.0.0:0"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("loopback"), "{}", text(&out));
}
