//! Calls the coordinator runs itself (`BATON_INLINE_CALL_MS`), on the emulator: a chain of
//! `GET`s costs one commit per step and no worker; a call past the budget goes to its worker
//! with the same idempotency key; a coordinator that dies mid-call leaves the call to the sweep,
//! which hands it to the worker; nothing is lost and each step's side effect happens once.

mod support;

use std::time::Duration;

use baton_aws::handlers;
use baton_runtime::Coordinator;
use baton_runtime::ports::RunStore;
use serde_json::{Value, json};
use support::fault_stack::{Service, Stack};

const GETS: &str = r#"
name: gets
input_schema: {type: object, required: [base], properties: {base: {type: string}}}
output: "[.steps.a.output.body.path, .steps.b.output.body.path, .steps.c.output.body.path, .steps.d.output]"
steps:
  - {id: a, tool: http, with: {url: "{{ .input.base }}/a"}}
  - {id: b, needs: [a], tool: http, with: {url: "{{ .input.base }}/b"}}
  - {id: c, needs: [b], tool: http, with: {method: POST, url: "{{ .input.base }}/c", timeout: 3s}}
  - {id: d, needs: [c], tool: transform, with: {expr: "\"done\""}}
"#;

/// The stack's coordinator as the function runs it with `BATON_INLINE_CALL_MS=max_ms`.
fn inline_coordinator(stack: &Stack, max_ms: u64) -> Coordinator {
    stack.coordinator().with_inline_calls(handlers::inline_calls(&stack.moto, &stack.name, max_ms))
}

/// Pumps both queues through the stack's worker and `c` until the run ends; returns the run's
/// JSON and how many calls the worker got.
async fn pump(stack: &Stack, c: &Coordinator, run_id: &baton_core::ids::RunId) -> (Value, usize) {
    stack.pump_counting(c, &stack.worker(), run_id, 1).await
}

async fn pending_rows(stack: &Stack, run_id: &baton_core::ids::RunId) -> usize {
    stack.store.pending_outbox(u64::MAX, 100).await.expect("pending").iter().filter(|r| r.run_id == *run_id).count()
}

/// The client starts the run (its first call goes to the worker); the coordinator then runs
/// `b` (a GET) and `c` (a POST whose `timeout` fits the budget) itself, each decided in the
/// commit that records it: no second queue hop, no schedule for their limits, no row left.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chain_runs_in_the_coordinator_one_commit_per_step() {
    let stack = Stack::create().await;
    let service = Service::start(Duration::ZERO);
    let run_id = stack.start(&stack.coordinator(), GETS, json!({"base": service.base})).await;
    let c = inline_coordinator(&stack, 4_000);
    let (out, worker_calls) = pump(&stack, &c, &run_id).await;
    assert_eq!(out["status"], "succeeded", "{out}");
    assert_eq!(out["output"], json!(["/a", "/b", "/c", "done"]));
    assert_eq!(worker_calls, 1, "only the client's first call went to the worker");
    assert_eq!((service.requests(), service.side_effects()), (3, 3));
    assert_eq!(pending_rows(&stack, &run_id).await, 0, "every outbox row was cleared");
    let run = stack.store.load_run(&run_id).await.expect("load").expect("run");
    let usage = &run.header.usage;
    let count = |k: &str| usage.get(k).copied().unwrap_or(0);
    assert_eq!(count("Scheduler.CreateSchedule"), 1, "only a's limit was armed: {usage:?}");
    assert_eq!(count("DynamoDB.TransactWriteItems"), run.header.version, "one write per transition: {usage:?}");
    stack.verify(&run_id).await;
}

/// A GET slower than the budget is abandoned and handed to the worker, which sends it again
/// with the same `Idempotency-Key`: two requests, one side effect, and the run goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_past_the_budget_goes_to_its_worker() {
    let stack = Stack::create().await;
    let service = Service::start(Duration::from_millis(1_200));
    let c = inline_coordinator(&stack, 300);
    let run_id = stack.start(&c, GETS, json!({"base": service.base})).await;
    let (out, worker_calls) = pump(&stack, &c, &run_id).await;
    assert_eq!(out["status"], "succeeded", "{out}");
    assert_eq!(worker_calls, 3, "a, b and c all went over the 300 ms budget (c's 3 s timeout does not fit)");
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    assert_eq!(service.side_effects(), 3, "one side effect per step");
    assert_eq!(service.requests(), 5, "a and b were sent twice (abandoned, then by the worker), c once");
    assert_eq!(pending_rows(&stack, &run_id).await, 0);
    stack.verify(&run_id).await;
}

/// A coordinator that dies while its call runs leaves the committed row: the sweep sends the
/// call (and its limit timer) to the worker, which repeats the request with the same key, and
/// the run finishes with one side effect per step.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_coordinator_that_dies_mid_call_leaves_the_call_to_the_sweep() {
    let stack = Stack::create().await;
    let service = Service::start(Duration::from_millis(600));
    let c = inline_coordinator(&stack, 4_000);
    let plan = std::sync::Arc::new(baton_core::load_definition(None, GETS).expect("valid"));
    let killed =
        tokio::time::timeout(Duration::from_millis(300), c.start(plan, GETS, json!({"base": service.base}), None))
            .await;
    assert!(killed.is_err(), "the start was cut off mid-call");
    let run_id = stack.store.list_runs(10).await.expect("runs").into_iter().next().expect("the run was committed").id;
    assert_eq!(pending_rows(&stack, &run_id).await, 1, "the call's row is still there");
    support::fault_stack::injected(1);
    let swept = c.sweep(0).await.expect("sweep");
    assert_eq!(swept, 1);
    let (out, worker_calls) = pump(&stack, &c, &run_id).await;
    assert_eq!(out["status"], "succeeded", "{out}");
    assert_eq!(out["output"], json!(["/a", "/b", "/c", "done"]));
    assert_eq!(worker_calls, 1, "the swept call; b and c ran in the coordinator");
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(service.side_effects(), 3, "one side effect per step");
    assert_eq!(service.requests(), 4, "a twice (the dead coordinator's, then the worker's), b and c once");
    stack.verify(&run_id).await;
}
