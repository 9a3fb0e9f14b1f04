//! The `baton` command with `--backend aws`: runs, tasks and audits kept in the DynamoDB table of a
//! stack on the local DynamoDB endpoint (DynamoDB Local, started by `localstack/up`).

mod support;

use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use serde_json::{Value, json};
use support::{fixture, root, text};

const DDB: &str = "127.0.0.1:8000";

fn ensure_endpoints() {
    let up =
        |a: &str| a.parse().ok().is_some_and(|a| TcpStream::connect_timeout(&a, Duration::from_millis(300)).is_ok());
    if !up(DDB) {
        let status = Command::new(root().join("localstack/up")).status().expect("run localstack/up");
        assert!(status.success(), "localstack/up failed");
    }
    assert!(up(DDB), "DynamoDB Local is not running on {DDB}: run localstack/up (needs Java)");
}

/// Runs `baton --backend aws` against the local endpoint, stack `baton-dev` (provisioned by up).
fn baton_aws(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_baton"))
        .args(["--backend", "aws", "--stack", "baton-dev", "--state-dir"])
        .arg(dir)
        .args(args)
        .current_dir(root())
        .env("AWS_ENDPOINT_URL", "http://127.0.0.1:4566")
        .env("AWS_ENDPOINT_URL_DYNAMODB", format!("http://{DDB}"))
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("AWS_REGION", "us-east-1")
        .env_remove("AWS_PROFILE")
        .output()
        .expect("baton runs")
}

fn json_of(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {}", text(out)))
}

#[test]
fn run_wait_approve_and_audit_on_dynamodb() {
    ensure_endpoints();
    let dir = tempfile::tempdir().expect("tempdir");
    let wf = fixture("approval.yaml");
    let out = baton_aws(dir.path(), &["run", wf.to_str().expect("utf8"), "--input", r#"{"amount": 42}"#, "--json"]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    let run = json_of(&out);
    let id = run["run_id"].as_str().expect("id").to_owned();
    assert!(!dir.path().join("baton.db").exists(), "nothing was written to SQLite");

    let tasks = json_of(&baton_aws(dir.path(), &["tasks", "--json"]));
    let task = tasks.as_array().expect("array").iter().find(|t| t["run_id"] == id.as_str()).expect("the run's task");
    assert_eq!(task["queue"], "finance");
    let out = baton_aws(
        dir.path(),
        &["approve", task["id"].as_str().expect("id"), "--data", r#"{"reference": "R-1"}"#, "--json"],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let done = json_of(&out);
    assert_eq!(done["output"], json!({"decision": "approve", "paid": {"paid": 42, "reference": "R-1"}}));

    let shown = json_of(&baton_aws(dir.path(), &["runs", "show", &id, "--json"]));
    assert_eq!(shown, done);
    assert_eq!(baton_aws(dir.path(), &["audit", "verify", &id]).status.code(), Some(0));
    assert_eq!(baton_aws(dir.path(), &["audit", "replay", &id]).status.code(), Some(0));
    let listed = json_of(&baton_aws(dir.path(), &["runs", "list", "--json", "--limit", "500"]));
    assert!(listed.as_array().expect("array").iter().any(|r| r["run_id"] == id.as_str()));
}

#[test]
fn a_missing_table_is_a_clear_error() {
    ensure_endpoints();
    let dir = tempfile::tempdir().expect("tempdir");
    let out = Command::new(env!("CARGO_BIN_EXE_baton"))
        .args(["--backend", "aws", "--stack", "no-such-stack", "runs", "list"])
        .arg("--json")
        .current_dir(dir.path())
        .env("AWS_ENDPOINT_URL", "http://127.0.0.1:4566")
        .env("AWS_ENDPOINT_URL_DYNAMODB", format!("http://{DDB}"))
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("AWS_REGION", "us-east-1")
        .output()
        .expect("baton runs");
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out).contains("no-such-stack-runs"), "the error names the table: {}", text(&out));
}
