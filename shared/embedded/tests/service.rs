//! The serving coordinator loop: many runs through one loop, each caller gets its own result, and
//! two coordinators on one store never apply a transition twice.

use std::sync::Arc;

use baton_embedded::sqlite::{Durability, SqliteStore};
use baton_runtime::Coordinator;
use baton_runtime::clock::SystemClock;
use serde_json::json;

const WF: &str = r#"
name: add
input_schema: {type: object, required: [n], properties: {n: {type: integer}}}
output: .steps.b.output
steps:
  - {id: a, tool: transform, with: {expr: ".input.n + 1"}}
  - {id: b, needs: [a], tool: transform, with: {expr: ".steps.a.output * 10"}}
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_loop_serves_many_concurrent_runs() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Arc::new(SqliteStore::open(dir.path(), Durability::Normal).expect("store"));
    let c = Arc::new(Coordinator::new(store, baton_tools::builtin(), Arc::new(SystemClock)));
    let service = Arc::new(c.serve());
    let plan = Arc::new(baton_core::load_definition(None, WF).expect("valid"));
    let mut handles = Vec::new();
    for n in 0..40 {
        let (service, plan) = (service.clone(), plan.clone());
        handles.push(tokio::spawn(async move { (n, service.run(plan, WF, json!({"n": n})).await) }));
    }
    for h in handles {
        let (n, state) = h.await.expect("join");
        let state = state.expect("run ends");
        assert_eq!(state.output, Some(json!((n + 1) * 10)), "run for n={n}");
    }
    let bad = service.run(plan, WF, json!({"n": "x"})).await;
    assert!(bad.is_err(), "input is checked before a run exists");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_coordinators_racing_on_one_run_apply_each_transition_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let plan = Arc::new(baton_core::load_definition(None, WF).expect("valid"));
    let open = || Arc::new(SqliteStore::open(dir.path(), Durability::Normal).expect("store"));
    let c1 = Arc::new(Coordinator::new(open(), baton_tools::builtin(), Arc::new(SystemClock)));
    let c2 = Arc::new(Coordinator::new(open(), baton_tools::builtin(), Arc::new(SystemClock)));
    for n in 0..10 {
        let id = c1.start(plan.clone(), WF, json!({"n": n}), None).await.expect("start");
        let (a, b) = (c1.clone(), c2.clone());
        let (i1, i2) = (id.clone(), id.clone());
        let h1 = tokio::spawn(async move { a.drive(&[i1], std::future::pending()).await });
        let h2 = tokio::spawn(async move { b.drive(&[i2], std::future::pending()).await });
        h1.await.expect("join").expect("drive 1");
        h2.await.expect("join").expect("drive 2");
        let run = c1.store().load_run(&id).await.expect("load").expect("exists");
        assert_eq!(run.state.output, Some(json!((n + 1) * 10)));
        let audit = c1.store().load_audit(&id).await.expect("audit");
        baton_core::audit::verify_chain(&audit).expect("one intact chain");
        let succeeded = audit.iter().filter(|r| r.decision == "succeed_step").count();
        assert_eq!(succeeded, 2, "each step succeeded once, whichever coordinator won");
        let replay = baton_runtime::audit_check::replay(&c1, &id).await.expect("replay runs");
        assert!(replay.is_ok(), "{replay:?}");
    }
}
