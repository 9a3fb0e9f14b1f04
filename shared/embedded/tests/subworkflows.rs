//! Sub-workflows on the embedded backend: a `workflow` step starts a child run linked to it,
//! the child's end is the step's result, a parent that stops cancels its children, and a run
//! can continue as a new run whose end its parent hears.

use std::sync::Arc;

use baton_core::engine::{EventKind, RunStatus};
use baton_core::ids::RunId;
use baton_embedded::sqlite::{Durability, SqliteStore};
use baton_runtime::clock::SystemClock;
use baton_runtime::{Coordinator, DriveOutcome};
use serde_json::{Value, json};

const CHILD: &str = r#"
name: quote
input_schema: {type: object, required: [qty], properties: {qty: {type: integer}}}
output: '{total: (.input.qty * 5), fail: false}'
steps:
  - {id: check, tool: transform, with: {expr: 'if .input.qty > 100 then error("too many") else . end'}}
"#;

const PARENT: &str = r#"
name: order
output: .steps.price.output.total
steps:
  - {id: price, tool: workflow, with: {name: quote, input: {qty: '{{ .input.qty }}'}}}
"#;

const APPROVAL: &str = r#"
name: sign-off
steps:
  - {id: ok, tool: human, with: {queue: finance, prompt: sign}}
"#;

const WAITS_ON_APPROVAL: &str = r#"
name: waits
steps:
  - {id: sub, tool: workflow, with: {name: sign-off}}
"#;

const COUNTDOWN: &str = r#"
name: countdown
input_schema: {type: object, required: [n], properties: {n: {type: integer}, seen: {type: array}}}
output: '{n: .input.n, seen: ((.input.seen // []) + [.input.n])}'
steps:
  - id: again
    when: .input.n > 0
    tool: workflow
    with:
      continue_as_new: true
      input: {n: '{{ .input.n - 1 }}', seen: '{{ (.input.seen // []) + [.input.n] }}'}
"#;

const COUNTS: &str = r#"
name: counts
output: .steps.count.output
steps:
  - {id: count, tool: workflow, with: {name: countdown, input: {n: 3}}}
"#;

fn setup() -> (tempfile::TempDir, Arc<Coordinator>) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Arc::new(SqliteStore::open(dir.path(), Durability::Normal).expect("store"));
    (dir, Arc::new(Coordinator::new(store, baton_tools::builtin(), Arc::new(SystemClock))))
}

async fn publish(c: &Coordinator, src: &str) {
    let plan = baton_core::load_definition(None, src).expect("valid");
    c.publish(&plan, src).await.expect("publish");
}

async fn run(c: &Coordinator, src: &str, input: Value) -> (RunId, DriveOutcome) {
    let plan = Arc::new(baton_core::load_definition(None, src).expect("valid"));
    let id = c.start(plan, src, input, None).await.expect("start");
    let outcome = c.drive(std::slice::from_ref(&id), std::future::pending()).await.expect("drive");
    (id, outcome)
}

async fn children_of(c: &Coordinator, parent: &RunId) -> Vec<baton_runtime::ports::StoredRun> {
    let mut out = Vec::new();
    for h in c.store().list_runs(100).await.expect("list") {
        let run = c.store().load_run(&h.id).await.expect("load").expect("exists");
        if run.state.parent.as_ref().is_some_and(|p| p.run_id == *parent) {
            out.push(run);
        }
    }
    out
}

/// Ana approves the first open task; the run it belongs to is driven to its next stop.
async fn approve_first_task(c: &Coordinator) {
    let task = c.store().open_tasks().await.expect("tasks").remove(0);
    let answer = baton_core::engine::HumanAnswer {
        decision: baton_core::engine::Verdict::Approve,
        data: json!({}),
        comment: None,
        by: Some("ana".into()),
        principal: None,
    };
    let run = c.answer_task(&task.id, answer).await.expect("answer");
    c.drive(&[run], std::future::pending()).await.expect("drive");
}

#[tokio::test]
async fn a_child_runs_and_its_output_is_the_steps_output() {
    let (_dir, c) = setup();
    publish(&c, CHILD).await;
    let (id, outcome) = run(&c, PARENT, json!({"qty": 4})).await;
    assert_eq!(outcome, DriveOutcome::Finished);
    let parent = c.store().load_run(&id).await.expect("load").expect("run");
    assert_eq!(parent.state.status, RunStatus::Succeeded);
    assert_eq!(parent.state.output, Some(json!(20)));
    let kids = children_of(&c, &id).await;
    assert_eq!(kids.len(), 1, "one child run");
    let link = kids[0].state.parent.clone().expect("linked");
    assert_eq!((link.node.as_str(), link.attempt), ("price", 1));
    assert_eq!(kids[0].header.workflow, "quote");
    // The parent's audit names the child run that produced the output.
    let audit = c.store().load_audit(&id).await.expect("audit");
    assert!(serde_json::to_string(&audit).expect("json").contains(kids[0].header.id.as_str()));
}

#[tokio::test]
async fn a_failed_child_fails_the_step_with_child_failed() {
    let (_dir, c) = setup();
    publish(&c, CHILD).await;
    let (id, _) = run(&c, PARENT, json!({"qty": 500})).await;
    let parent = c.store().load_run(&id).await.expect("load").expect("run");
    assert_eq!(parent.state.status, RunStatus::Failed);
    let err = parent.state.nodes["price"].error().cloned().expect("error");
    assert_eq!(err.kind, "child_failed");
    assert!(err.message.contains("too many"), "{}", err.message);
}

#[tokio::test]
async fn an_unknown_workflow_or_bad_input_fails_the_step_and_starts_nothing() {
    let (_dir, c) = setup();
    let (id, _) = run(&c, PARENT, json!({"qty": 1})).await;
    let parent = c.store().load_run(&id).await.expect("load").expect("run");
    let err = parent.state.nodes["price"].error().cloned().expect("error");
    assert!(err.message.contains("no published workflow `quote`"), "{}", err.message);
    publish(&c, CHILD).await;
    let (id, _) = run(&c, PARENT, json!({"qty": "four"})).await;
    let parent = c.store().load_run(&id).await.expect("load").expect("run");
    let err = parent.state.nodes["price"].error().cloned().expect("error");
    assert!(err.message.contains("input for `quote` is not valid"), "{}", err.message);
    assert!(children_of(&c, &id).await.is_empty());
}

#[tokio::test]
async fn cancelling_the_parent_cancels_the_child_and_answering_the_child_goes_on_in_the_parent() {
    let (_dir, c) = setup();
    publish(&c, APPROVAL).await;
    let (id, outcome) = run(&c, WAITS_ON_APPROVAL, json!({})).await;
    assert_eq!(outcome, DriveOutcome::Waiting, "the child waits on a person");
    let child = children_of(&c, &id).await.remove(0);
    assert_eq!(child.state.status, RunStatus::Running);
    c.submit(&id, EventKind::CancelRequested { reason: "changed my mind".into() }).await.expect("cancel");
    c.drive(std::slice::from_ref(&id), std::future::pending()).await.expect("drive");
    let child = c.store().load_run(&child.header.id).await.expect("load").expect("child");
    assert_eq!(child.state.status, RunStatus::Cancelled);
    let parent = c.store().load_run(&id).await.expect("load").expect("run");
    assert_eq!(parent.state.status, RunStatus::Cancelled);
    assert!(c.store().open_tasks().await.expect("tasks").is_empty(), "the child's task closed");

    // Answering the child's task finishes the child, then the parent.
    let (id, _) = run(&c, WAITS_ON_APPROVAL, json!({})).await;
    approve_first_task(&c).await;
    let parent = c.store().load_run(&id).await.expect("load").expect("run");
    assert_eq!(parent.state.status, RunStatus::Succeeded);
    assert_eq!(parent.state.nodes["sub"].status(), baton_core::engine::NodeStatus::Succeeded);
}

#[tokio::test]
async fn a_run_that_continues_as_new_hands_its_parent_the_last_runs_output() {
    let (_dir, c) = setup();
    publish(&c, COUNTDOWN).await;
    let (id, outcome) = run(&c, COUNTS, json!({})).await;
    assert_eq!(outcome, DriveOutcome::Finished);
    let parent = c.store().load_run(&id).await.expect("load").expect("run");
    assert_eq!(parent.state.status, RunStatus::Succeeded);
    assert_eq!(parent.state.output, Some(json!({"n": 0, "seen": [3, 2, 1, 0]})));
    // Four runs of countdown: the first linked to the parent, each later one inheriting the link.
    let chain: Vec<_> = children_of(&c, &id).await;
    assert_eq!(chain.len(), 4, "the child and three successors carry the link");
    let continued = chain.iter().filter(|r| r.state.nodes.get("again").is_some_and(|n| n.output().is_some())).count();
    assert_eq!(continued, 3);
}

#[tokio::test]
async fn a_resumed_parent_finds_its_child_instead_of_starting_another() {
    let dir = tempfile::tempdir().expect("tempdir");
    let open = || Arc::new(SqliteStore::open(dir.path(), Durability::Normal).expect("store"));
    let first = Coordinator::new(open(), baton_tools::builtin(), Arc::new(SystemClock));
    publish(&first, APPROVAL).await;
    let (id, outcome) = run(&first, WAITS_ON_APPROVAL, json!({})).await;
    assert_eq!(outcome, DriveOutcome::Waiting);
    drop(first);
    // A new process resumes every unfinished run: the parent re-issues its `workflow` call with
    // the same idempotency key, which finds the child.
    let second = Coordinator::new(open(), baton_tools::builtin(), Arc::new(SystemClock));
    let unfinished = second.store().unfinished_runs().await.expect("unfinished");
    assert_eq!(unfinished.len(), 2, "parent and child");
    second.drive(&unfinished, std::future::pending()).await.expect("resume");
    assert_eq!(children_of(&second, &id).await.len(), 1, "still one child");
    assert_eq!(second.store().open_tasks().await.expect("tasks").len(), 1, "still one task");
    approve_first_task(&second).await;
    let parent = second.store().load_run(&id).await.expect("load").expect("run");
    assert_eq!(parent.state.status, RunStatus::Succeeded);
    let audit = second.store().load_audit(&id).await.expect("audit");
    assert!(audit.iter().all(|r| r.decision != "ignore"), "no duplicate result reached the parent");
}
