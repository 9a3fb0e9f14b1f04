//! A runaway jq expression through the command: the run fails in bounded time with the error
//! kind `expression_limit` (exit 1), instead of taking the process down; a step's own
//! `with.limits` tightens the budget, and a bad one is refused before any run starts.

mod support;

use std::time::{Duration, Instant};

use support::{baton, baton_json, text};

#[test]
fn a_runaway_transform_fails_the_run_with_expression_limit() {
    let dir = tempfile::tempdir().expect("tempdir");
    let wf = dir.path().join("runaway.yaml");
    std::fs::write(
        &wf,
        r#"
name: runaway
steps:
  - {id: huge, tool: transform, with: {expr: "[range(0; 1000000000)] | length"}}
"#,
    )
    .expect("write");
    let started = Instant::now();
    let (code, run) = baton_json(dir.path(), &["run", wf.to_str().expect("utf8"), "--json"]);
    let took = started.elapsed();
    eprintln!("the runaway run ended in {took:?}");
    assert_eq!(code, 1, "{run}");
    assert_eq!(run["status"], "failed", "{run}");
    assert_eq!(run["steps"]["huge"]["error"]["kind"], "expression_limit", "{run}");
    assert!(took < Duration::from_secs(120), "bounded: {took:?}");

    // A step's own, tighter budget: 100,000 items are fine by default, not within 1,000 steps.
    let small = dir.path().join("small.yaml");
    std::fs::write(
        &small,
        "name: small\nsteps:\n  - {id: small, tool: transform, with: {expr: '[range(0; 100000)] | length', limits: {steps: 1000}}}\n",
    )
    .expect("write");
    let (code, run) = baton_json(dir.path(), &["run", small.to_str().expect("utf8"), "--json"]);
    assert_eq!(code, 1, "{run}");
    assert_eq!(run["steps"]["small"]["error"]["kind"], "expression_limit", "{run}");
    assert!(
        run["steps"]["small"]["error"]["message"].as_str().unwrap_or_default().contains("1000 evaluation steps"),
        "the step's own limit: {run}"
    );

    let bad = dir.path().join("bad.yaml");
    std::fs::write(
        &bad,
        "name: bad\nsteps:\n  - {id: t, tool: transform, with: {expr: '1', limits: {steps: 0, rows: 3}}}\n",
    )
    .expect("write");
    let out = baton(dir.path(), &["validate", bad.to_str().expect("utf8")]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let said = text(&out);
    assert!(said.contains("steps") && said.contains("above 0") && said.contains("rows"), "{said}");
}
