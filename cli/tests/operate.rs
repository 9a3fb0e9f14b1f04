//! Operator actions through the `baton` command on the embedded backend: redrive a failed run,
//! retry from a step with patched arguments, pause and unpause. Each checks what the outside
//! world received (a real loopback HTTP server counts the calls), the exit codes, the audit
//! record of the action, and that `audit verify` and `audit replay` still hold.

mod support;

use std::path::Path;

use serde_json::{Value, json};
use support::{Reply, Server, baton, baton_json, fixture, flaky_b, text};

fn tmp() -> tempfile::TempDir {
    tempfile::tempdir().expect("tempdir")
}

fn assert_audit_holds(dir: &Path, id: &str) {
    let verify = baton(dir, &["audit", "verify", id]);
    assert_eq!(verify.status.code(), Some(0), "{}", text(&verify));
    let replay = baton(dir, &["audit", "replay", id]);
    assert_eq!(replay.status.code(), Some(0), "{}", text(&replay));
}

/// The run's audit records with `decision`.
fn records(dir: &Path, id: &str, decision: &str) -> Vec<Value> {
    let (code, log) = baton_json(dir, &["audit", "show", id, "--json"]);
    assert_eq!(code, 0, "{log}");
    log.as_array().expect("records").iter().filter(|r| r["decision"] == decision).cloned().collect()
}

fn run_repairable(dir: &Path, server: &Server) -> (i32, Value) {
    let input = json!({"base": server.base}).to_string();
    baton_json(dir, &["run", fixture("repairable.yaml").to_str().expect("utf8"), "--input", &input, "--json"])
}

#[test]
fn redrive_continues_a_failed_run_from_its_failed_step_only() {
    let server = flaky_b();
    let dir = tmp();
    let (code, run) = run_repairable(dir.path(), &server);
    assert_eq!(code, 1, "{run}");
    assert_eq!(run["status"], "failed");
    let id = run["run_id"].as_str().expect("id");
    assert!(run["steps"].get("c").is_none(), "c never started: {run}");

    let out = baton(dir.path(), &["runs", "redrive", id, "--reason", "the API is back", "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let v: Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(v["status"], "succeeded", "{v}");
    assert_eq!(v["steps"]["b"]["attempts"], 2, "a fresh attempt after the failed one: {v}");
    assert_eq!(v["output"], json!({"path": "/c", "n": 0}));

    assert_eq!(server.requests("/a").len(), 1, "a completed step is not re-executed");
    let b = server.requests("/b");
    assert_eq!(b.len(), 2);
    assert_ne!(b[0].idempotency_key, b[1].idempotency_key, "the redriven attempt is a new call");
    assert_eq!(server.requests("/c").len(), 1);

    let redrive = records(dir.path(), id, "redrive_run");
    assert_eq!(redrive.len(), 1);
    assert_eq!(redrive[0]["values"]["reason"], "the API is back");
    assert_eq!(redrive[0]["values"]["failed"], json!(["b"]));
    assert!(redrive[0]["values"]["by"].as_str().is_some_and(|b| !b.is_empty()));
    assert!(redrive[0]["reason"].as_str().expect("why").contains("the API is back"));
    assert_audit_holds(dir.path(), id);

    // A run that succeeded has nothing to redrive: refused with exit 2, nothing changes.
    let again = baton(dir.path(), &["runs", "redrive", id]);
    assert_eq!(again.status.code(), Some(2), "{}", text(&again));
    assert!(text(&again).contains("nothing to redrive"), "{}", text(&again));
    assert_eq!(server.requests("/b").len(), 2);
}

#[test]
fn retry_from_a_step_runs_it_and_what_follows_with_patched_input() {
    let server = Server::start(|req, n| Reply::json(200, &json!({"path": req.path, "n": n}).to_string()));
    let dir = tmp();
    let (code, run) = run_repairable(dir.path(), &server);
    assert_eq!(code, 0, "{run}");
    let id = run["run_id"].as_str().expect("id");

    let patch = dir.path().join("patch.json");
    std::fs::write(&patch, r#"{"body": {"amount": 12, "note": null}}"#).expect("write");
    let at_patch = format!("@{}", patch.display());
    let (code, v) = baton_json(
        dir.path(),
        &["runs", "retry", id, "--from", "b", "--input", &at_patch, "--reason", "wrong amount", "--json"],
    );
    assert_eq!(code, 0, "{v}");
    assert_eq!(v["status"], "succeeded");
    assert_eq!(v["output"], json!({"path": "/c", "n": 1}), "c ran again: {v}");
    assert_eq!(server.requests("/a").len(), 1, "upstream outputs are kept");
    let b = server.requests("/b");
    assert_eq!(b.len(), 2);
    let sent: Value = serde_json::from_str(&b[1].body).expect("json body");
    assert_eq!(sent, json!({"amount": 12}), "the merge patch changed amount and removed note");
    let retry = records(dir.path(), id, "retry_from");
    assert_eq!(retry[0]["values"]["steps"], json!(["b", "c"]));
    assert_eq!(retry[0]["values"]["input_patch"], json!({"body": {"amount": 12, "note": null}}));
    assert_audit_holds(dir.path(), id);

    // Mistakes are refused before anything is sent, naming what is wrong.
    let out = baton(dir.path(), &["runs", "retry", id, "--from", "nope"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out).contains("no step `nope`"), "{}", text(&out));
    let out = baton(dir.path(), &["runs", "retry", id, "--from", "b", "--input", "{not json"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out).contains("not valid JSON"), "{}", text(&out));
    let out = baton(dir.path(), &["runs", "redrive", "no-such-run"]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(server.requests("/b").len(), 2);
}

#[test]
fn a_paused_run_dispatches_nothing_until_unpaused() {
    let dir = tmp();
    let wf = fixture("approval.yaml");
    let (code, run) =
        baton_json(dir.path(), &["run", wf.to_str().expect("utf8"), "--input", r#"{"amount": 5}"#, "--json"]);
    assert_eq!(code, 3, "{run}");
    let id = run["run_id"].as_str().expect("id");

    let (code, v) = baton_json(dir.path(), &["runs", "pause", id, "--reason", "audit in progress", "--json"]);
    assert_eq!(code, 3, "a paused run is waiting: {v}");
    assert_eq!(v["paused"]["reason"], "audit in progress");
    let again = baton(dir.path(), &["runs", "pause", id]);
    assert_eq!(again.status.code(), Some(2), "{}", text(&again));

    // The answer is taken, but the next step is held while the run is paused.
    let (_, tasks) = baton_json(dir.path(), &["tasks", "--json"]);
    let task = tasks[0]["id"].as_str().expect("task id").to_owned();
    let (code, v) = baton_json(dir.path(), &["approve", &task, "--data", r#"{"reference": "R-1"}"#, "--json"]);
    assert_eq!(code, 3, "{v}");
    assert_eq!(v["steps"]["approve"]["status"], "succeeded");
    assert!(v["steps"]["pay"].is_null() || v["steps"]["pay"]["status"] != "succeeded", "pay is held: {v}");
    assert_eq!(records(dir.path(), id, "hold").len(), 1);

    let (code, v) = baton_json(dir.path(), &["runs", "unpause", id, "--json"]);
    assert_eq!(code, 0, "{v}");
    assert_eq!(v["status"], "succeeded");
    assert!(v.get("paused").is_none());
    assert_eq!(v["output"], json!({"decision": "approve", "paid": {"paid": 5, "reference": "R-1"}}));
    let pause = records(dir.path(), id, "pause_run");
    assert_eq!(pause[0]["values"]["reason"], "audit in progress");
    assert_eq!(records(dir.path(), id, "unpause_run").len(), 1);
    assert_audit_holds(dir.path(), id);

    let out = baton(dir.path(), &["runs", "unpause", id]);
    assert_eq!(out.status.code(), Some(2), "an ended run is not paused: {}", text(&out));
}
