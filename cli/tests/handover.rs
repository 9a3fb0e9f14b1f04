//! Handover summaries written by the workflow's model (`defaults.llm`), citing audit records,
//! with the deterministic handover kept below; a model that fails leaves the deterministic one.

mod support;

use std::process::Command;

use serde_json::{Value, json};
use support::*;

const WORKFLOW: &str = r#"
name: refund-handover
description: Decide a refund for a late order.
defaults:
  llm: {model: test-model}
steps:
  - {id: order, tool: transform, with: {expr: '{id: "A-1042", late_days: 6}'}}
  - id: approve
    needs: [order]
    tool: human
    with: {queue: support-l2, prompt: "Refund order {{ .steps.order.output.id }}?"}
"#;

fn run_and_task(base: &str) -> Value {
    let dir = tempfile::tempdir().expect("tempdir");
    let wf = dir.path().join("wf.yaml");
    std::fs::write(&wf, WORKFLOW).expect("write");
    let exec = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_baton"))
            .arg("--state-dir")
            .arg(dir.path())
            .args(args)
            .env("OPENAI_BASE_URL", base)
            .output()
            .expect("baton runs")
    };
    let out = exec(&["run", wf.to_str().expect("utf8"), "--json"]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    let tasks: Value = serde_json::from_slice(&exec(&["tasks", "--json"]).stdout).expect("json");
    tasks[0].clone()
}

#[test]
fn the_model_writes_the_handover_and_cites_audit_records_that_exist() {
    let server = Server::start(|req, _| {
        assert_eq!(req.path, "/v1/chat/completions");
        let asked: Value = serde_json::from_str(&req.body).expect("request JSON");
        let prompt = asked["messages"][1]["content"].as_str().expect("prompt").to_owned();
        assert!(prompt.contains("Refund order A-1042?") && prompt.contains("[audit #"), "{prompt}");
        let content =
            json!({"summary": "Order A-1042 is 6 days late; decide whether to refund it.", "cited": [2, 999]})
                .to_string();
        Reply::json(200, &json!({"model": "test-model", "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 300, "completion_tokens": 30, "total_tokens": 330}}).to_string())
    });
    let task = run_and_task(&format!("{}/v1", server.base));
    let summary = task["summary"].as_str().expect("summary");
    assert!(
        summary.starts_with("## Summary (written by `test-model`; cites [audit #2])\nOrder A-1042 is 6 days late"),
        "an unknown record (999) is dropped from the citations: {summary}"
    );
    assert!(
        summary.contains("## What happened and why") && summary.contains("## Options"),
        "the deterministic handover stays: {summary}"
    );
    assert_eq!(server.seen.lock().expect("seen").len(), 1);
}

#[test]
fn a_failing_model_leaves_the_deterministic_handover() {
    let server = Server::start(|_, _| Reply::json(503, r#"{"error": {"message": "overloaded"}}"#));
    let task = run_and_task(&format!("{}/v1", server.base));
    let summary = task["summary"].as_str().expect("summary");
    assert!(summary.starts_with("## What this is about"), "{summary}");
    assert!(!summary.contains("written by"), "{summary}");
}
