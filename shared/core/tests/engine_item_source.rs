//! Distributed maps (`items_from`) on the pure state machine: the map node's first call splits
//! the source into batches, each batch is a `workflow` call carrying where its items are and
//! where its result goes, at most `max_concurrency` run at once, failed batches count against
//! the tolerance, and the last call writes the manifest that becomes the step's output. The
//! state holds descriptors and references, never the items.

use baton_core::engine::StepError;
use baton_core::engine::{
    Command, Decision, Dispatch, Event, EventKind, ITEMS_TOOL, RunState, RunStatus, decide, new_run,
};
use baton_core::error_kind::ErrorKind;
use baton_core::{Plan, load_definition};
use serde_json::{Value, json};

const T0: u64 = 1_700_000_000_000;

const MAP: &str = r#"
name: score
steps:
  - id: prep
    tool: transform
    with: {expr: '{bucket: "orders"}'}
  - id: score
    needs: [prep]
    tool: workflow
    max_concurrency: 2
    items_from:
      source: "s3://{{ .steps.prep.output.bucket }}/in.jsonl"
      batch_size: 3
      tolerated_failures: 3
      results: "s3://out/maps/"
    with: {name: score-batch, input: {model: v2}}
  - id: after
    needs: [score]
    tool: transform
    with: {expr: '.steps.score.output.succeeded'}
"#;

struct Run {
    plan: Plan,
    state: RunState,
}

impl Run {
    fn started(yaml: &str) -> (Self, Decision) {
        let plan = load_definition(None, yaml).unwrap_or_else(|p| panic!("{p:#?}"));
        let state = new_run(&plan, "run-1", T0);
        let mut run = Self { plan, state };
        let d = run.send(EventKind::RunStarted { input: json!({}), seed: 7, memory: None, engine: 1 });
        (run, d)
    }

    fn send(&mut self, kind: EventKind) -> Decision {
        decide(&self.plan, &mut self.state, &Event { at: T0 + 1, kind })
    }

    fn ok(&mut self, d: &Dispatch, output: Value) -> Decision {
        self.send(EventKind::StepSucceeded {
            node: d.node.clone(),
            attempt: d.attempt,
            output,
            mocked: false,
            report: None,
        })
    }

    fn fail(&mut self, d: &Dispatch, kind: &str) -> Decision {
        self.send(EventKind::StepFailed {
            node: d.node.clone(),
            attempt: d.attempt,
            error: StepError::new(kind, "the child failed"),
            mocked: false,
            report: None,
        })
    }
}

fn dispatches(d: &Decision) -> Vec<Dispatch> {
    d.commands
        .iter()
        .filter_map(|c| match c {
            Command::Dispatch(d) => Some(d.clone()),
            _ => None,
        })
        .collect()
}

/// The reader's answer for `n` items in batches of 3.
fn split(n: u64) -> Value {
    let batches: Vec<Value> = (0..n.div_ceil(3))
        .map(|b| json!({"first": b * 3, "count": (n - b * 3).min(3), "range": [b * 100, b * 100 + 99]}))
        .collect();
    json!({"count": n, "format": "jsonl", "batches": batches})
}

#[test]
fn a_map_splits_runs_its_batches_two_at_a_time_and_writes_a_manifest() {
    let (mut run, d) = Run::started(MAP);
    let first = dispatches(&d);
    assert_eq!(first.len(), 1, "{first:?}");
    let split_call = &first[0];
    assert_eq!(split_call.tool, ITEMS_TOOL);
    assert_eq!(
        split_call.input,
        json!({"op": "split", "source": "s3://orders/in.jsonl", "format": null, "batch_size": 3})
    );

    let d = run.ok(split_call, split(7));
    let batches = dispatches(&d);
    assert_eq!(batches.len(), 2, "max_concurrency 2: {batches:?}");
    let b0 = &batches[0];
    assert_eq!(b0.tool, "workflow");
    assert_eq!(b0.input["name"], "score-batch");
    assert_eq!(b0.input["input"], json!({"model": "v2"}));
    assert_eq!(b0.input["batch"]["source"], "s3://orders/in.jsonl");
    assert_eq!(b0.input["batch"]["format"], "jsonl");
    assert_eq!(b0.input["batch"]["descriptor"], json!({"first": 0, "count": 3, "range": [0, 99]}));
    assert_eq!(b0.input["batch"]["results"], "s3://out/maps/run-1/score/batch-000000.json");
    // The split's limit went with it; the state keeps descriptors only.
    let state = serde_json::to_string(&run.state).unwrap_or_default();
    assert!(!state.contains("\"model\":\"v2\",\"items\""), "no items in the state");

    let d = run.ok(b0, json!({"results": "s3://out/maps/run-1/score/batch-000000.json", "items": 3}));
    let next = dispatches(&d);
    assert_eq!(next.len(), 1);
    assert_eq!(next[0].input["batch"]["index"], 2, "the third batch starts when the first ends");

    let d = run.ok(&batches[1], json!({"results": "s3://out/maps/run-1/score/batch-000001.json", "items": 3}));
    assert!(dispatches(&d).is_empty(), "all three batches have started");
    let d = run.ok(&next[0], json!({"results": "s3://out/maps/run-1/score/batch-000002.json", "items": 1}));
    let manifest = dispatches(&d);
    assert_eq!(manifest.len(), 1);
    let m = &manifest[0];
    assert_eq!(m.tool, ITEMS_TOOL);
    assert_eq!(m.input["op"], "write");
    assert_eq!(m.input["uri"], "s3://out/maps/run-1/score/manifest.json");
    assert_eq!(m.input["value"]["items"], 7);
    assert_eq!(m.input["value"]["succeeded"], 7);
    assert_eq!(m.input["value"]["batches"][2]["results"], "s3://out/maps/run-1/score/batch-000002.json");
    assert!(m.attempt > split_call.attempt, "the manifest is its own attempt");

    run.ok(m, json!({"uri": "s3://out/maps/run-1/score/manifest.json", "bytes": 400}));
    assert_eq!(run.state.status, RunStatus::Succeeded, "{:?}", run.state.error);
    let out = run.state.nodes.get("score").and_then(|n| n.output().cloned()).unwrap_or_default();
    assert_eq!(
        out,
        json!({
            "manifest": "s3://out/maps/run-1/score/manifest.json", "results": "s3://out/maps/run-1/score/",
            "items": 7, "succeeded": 7, "failed": 0, "batches": 3,
        })
    );
    assert_eq!(run.state.output, Some(json!({"after": 7})));
}

#[test]
fn failed_batches_within_the_tolerance_are_counted_and_past_it_fail_the_map() {
    let (mut run, d) = Run::started(MAP);
    let d = run.ok(&dispatches(&d)[0], split(9));
    let batches = dispatches(&d);
    // One failed batch: 3 items, as many as tolerated.
    let d = run.fail(&batches[0], "child_failed");
    assert_eq!(run.state.status, RunStatus::Running);
    let next = dispatches(&d);
    assert_eq!(next.len(), 1, "the map goes on with the next batch");
    // A second: 6 items failed, over the 3 tolerated.
    run.fail(&batches[1], "child_failed");
    let map = run.state.nodes.get("score").cloned().unwrap_or_else(|| panic!("no map node"));
    let error = map.error().cloned().unwrap_or_else(|| panic!("no error"));
    assert_eq!(error.kind, ErrorKind::ToleranceExceeded);
    assert!(error.message.contains("6 of 9 items failed, more than the 3 tolerated"), "{}", error.message);
    // The batch in flight ends; then the run has failed, with the map's error.
    run.ok(&next[0], json!({"results": "s3://out/x", "items": 3}));
    assert_eq!(run.state.status, RunStatus::Failed);
    assert_eq!(run.state.error.map(|e| e.kind), Some(ErrorKind::ToleranceExceeded));
}

#[test]
fn an_empty_source_writes_an_empty_manifest() {
    let (mut run, d) = Run::started(MAP);
    let d = run.ok(&dispatches(&d)[0], json!({"count": 0, "format": "jsonl", "batches": []}));
    let m = dispatches(&d);
    assert_eq!(m.len(), 1);
    assert_eq!(m[0].input["value"]["items"], 0);
    run.ok(&m[0], json!({"uri": "s3://out/maps/run-1/score/manifest.json"}));
    assert_eq!(run.state.status, RunStatus::Succeeded);
}

#[test]
fn a_map_re_issues_its_current_call_after_a_restart() {
    let (mut run, d) = Run::started(MAP);
    let split_call = dispatches(&d)[0].clone();
    let again = baton_core::engine::in_flight(&run.plan, &run.state);
    assert!(again.iter().any(|c| matches!(c, Command::Dispatch(d) if d == &split_call)), "{again:?}");
    let d = run.ok(&split_call, split(4));
    let batches = dispatches(&d);
    let again: Vec<Dispatch> = baton_core::engine::in_flight(&run.plan, &run.state)
        .into_iter()
        .filter_map(|c| match c {
            Command::Dispatch(d) => Some(d),
            _ => None,
        })
        .collect();
    assert_eq!(again, batches, "the batches in flight, not the split again");
}

#[test]
fn items_from_is_checked_at_load() {
    let bad = r#"
name: bad
steps:
  - id: m
    tool: http
    items_from: {source: "s3://b/k.jsonl", results: "s3://b/out", batch_size: 0, tolerated_failure_percent: 120}
    with: {url: "https://x.example"}
"#;
    let problems = load_definition(None, bad).err().unwrap_or_default();
    let text = format!("{problems:?}");
    for needle in [
        "/steps/0/tool",
        "/steps/0/max_concurrency",
        "/steps/0/items_from/batch_size",
        "/steps/0/items_from/tolerated_failure_percent",
        "/steps/0/items_from/results",
    ] {
        assert!(text.contains(needle), "{needle} missing in {text}");
    }
}

#[test]
fn a_redrive_after_a_failed_manifest_writes_it_again_without_rerunning_batches() {
    let (mut run, d) = Run::started(MAP);
    let d = run.ok(&dispatches(&d)[0], split(3));
    let batch = dispatches(&d).remove(0);
    let d = run.ok(&batch, json!({"results": "s3://out/maps/run-1/score/batch-000000.json", "items": 3}));
    let manifest = dispatches(&d).remove(0);
    run.fail(&manifest, "S3.AccessDenied");
    assert_eq!(run.state.status, RunStatus::Failed);

    let d = run.send(EventKind::Operated {
        action: baton_core::engine::OperatorAction::Redrive,
        by: "ops@example".into(),
        reason: Some("the bucket policy is fixed".into()),
    });
    let again = dispatches(&d);
    assert_eq!(again.len(), 1, "only the manifest, not the batch: {again:?}");
    assert_eq!(again[0].input["op"], "write");
    assert!(again[0].attempt > manifest.attempt);
    run.ok(&again[0], json!({"uri": "s3://out/maps/run-1/score/manifest.json"}));
    assert_eq!(run.state.status, RunStatus::Succeeded, "{:?}", run.state.error);
}

const MAP_BESIDE_A_CALL: &str = r#"
name: beside
steps:
  - id: boom
    tool: http
    with: {url: "https://api.example/boom"}
  - id: score
    tool: workflow
    max_concurrency: 2
    items_from: {source: "s3://in/k.jsonl", batch_size: 3, results: "s3://out/"}
    with: {name: score-batch}
"#;

fn call_of<'a>(calls: &'a [Dispatch], step: &str) -> &'a Dispatch {
    calls.iter().find(|d| d.step == step).unwrap_or_else(|| panic!("no call of `{step}` in {calls:?}"))
}

#[test]
fn a_split_that_answers_while_the_run_stops_starts_no_batch() {
    let (mut run, d) = Run::started(MAP_BESIDE_A_CALL);
    let calls = dispatches(&d);
    run.fail(call_of(&calls, "boom"), "http_4xx");
    assert_eq!(run.state.status, RunStatus::Running, "the split is still in flight");
    let d = run.ok(call_of(&calls, "score"), split(6));
    assert!(dispatches(&d).is_empty(), "no batch starts: {:?}", dispatches(&d));
    assert_eq!(run.state.status, RunStatus::Failed);
}

#[test]
fn a_last_batch_that_ends_while_the_run_stops_lets_the_run_end() {
    let (mut run, d) = Run::started(MAP_BESIDE_A_CALL);
    let calls = dispatches(&d);
    let d = run.ok(call_of(&calls, "score"), split(3));
    let batch = dispatches(&d).remove(0);
    run.fail(call_of(&calls, "boom"), "http_4xx");
    assert_eq!(run.state.status, RunStatus::Running, "the batch is still in flight");
    let d = run.ok(&batch, json!({"results": "s3://out/x", "items": 3}));
    assert!(dispatches(&d).is_empty(), "no manifest while the run stops");
    assert_eq!(run.state.status, RunStatus::Failed, "the run ends instead of waiting for a call never sent");
}

#[test]
fn results_of_a_map_in_a_loop_go_under_each_iteration() {
    let yaml = r#"
name: looped
steps:
  - id: rounds
    loop:
      max_iterations: 2
      then: continue
      steps:
        - id: score
          tool: workflow
          max_concurrency: 1
          items_from: {source: "s3://in/k.jsonl", results: "s3://out/"}
          with: {name: score-batch}
"#;
    let (mut run, d) = Run::started(yaml);
    let d = run.ok(&dispatches(&d)[0], split(1));
    let batch = dispatches(&d).remove(0);
    let first = batch.input["batch"]["results"].as_str().unwrap_or_default().to_owned();
    let d = run.ok(&batch, json!({"results": first, "items": 1}));
    let m = dispatches(&d).remove(0);
    let d = run.ok(&m, json!({"uri": m.input["uri"]}));
    let d = run.ok(&dispatches(&d)[0], split(1));
    let second = dispatches(&d)[0].input["batch"]["results"].as_str().unwrap_or_default().to_owned();
    assert_ne!(first, second, "each iteration writes its own results");
}
