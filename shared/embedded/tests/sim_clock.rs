//! Time through the clock port: a run whose timers span days (a sleep, two escalations, a task
//! timeout answered by `on_timeout`) runs to its end on a simulated clock, and every decision
//! carries the simulated time at which it was due.

use std::sync::Arc;

use baton_embedded::sqlite::{Durability, SqliteStore};
use baton_runtime::Coordinator;
use baton_runtime::clock::SimClock;
use baton_runtime::ports::{Clock, RunStore};
use serde_json::json;

const WF: &str = r#"
name: three-days
output: .steps.after.output
steps:
  - {id: nap, tool: sleep, with: {for: 12h}}
  - id: approve
    needs: [nap]
    tool: human
    with: {queue: support-l1, prompt: "Refund?", summary: false}
    escalate: [{after: 1d, to: support-l2}, {after: 2d, to: support-manager}]
    timeout: 3d
    on_timeout: {decision: approve, comment: "nobody answered within three days"}
  - {id: after, needs: [approve], tool: transform, with: {expr: ".steps.approve.output.decision"}}
"#;

const T0: u64 = 1_800_000_000_000;
const HOUR: u64 = 3_600_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_three_day_escalation_chain_runs_on_a_simulated_clock() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Arc::new(SqliteStore::open(dir.path(), Durability::Normal).expect("store"));
    let clock = Arc::new(SimClock::auto_advance(T0));
    let c = Arc::new(Coordinator::new(store.clone(), baton_tools::builtin(), clock.clone()));
    let service = c.serve();
    let plan = Arc::new(baton_core::load_definition(None, WF).expect("valid"));

    let started = std::time::Instant::now();
    let state = service.run(plan, WF, json!({})).await.expect("the run ends");
    let real = started.elapsed();

    assert_eq!(state.output, Some(json!("approve")), "on_timeout answered after three days");
    assert_eq!(clock.now_ms(), T0 + 12 * HOUR + 72 * HOUR, "the clock moved exactly to the last deadline");
    let audit = store.load_audit(&state.run_id).await.expect("audit");
    let at = |decision: &str| -> Vec<u64> {
        audit.iter().filter(|r| r.decision == decision).map(|r| (r.at - T0) / HOUR).collect()
    };
    assert_eq!(at("escalate"), vec![12 + 24, 12 + 48], "escalations a day and two days into the task");
    let ended = audit.last().expect("records");
    assert_eq!(ended.decision, "complete_run");
    assert_eq!((ended.at - T0) / HOUR, 12 + 72, "the run ended when the task timed out");
    eprintln!("three simulated days and a half in {real:?} of real time");
}
