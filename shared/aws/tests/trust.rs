//! Trust boundaries on the emulator: who may report a step's result, and who may answer a task
//! through the bus. What comes from outside the boundary is dead-lettered with its reason and
//! changes nothing.

mod support;

use std::sync::Arc;
use std::time::Duration;

use baton_aws::handlers;
use baton_runtime::message_auth::MessageKey;
use baton_runtime::messages::{CoordinatorMessage, Outcome, body_of};
use baton_runtime::ports::RunStore;
use serde_json::json;
use support::fault_stack::{CHAIN, Service, Stack, dlq_reasons, injected};

/// A stack whose coordinator and workers share a message key: a step result sent to the
/// coordinator queue by anyone else (unsigned, or signed with another key) is dead-lettered with
/// its reason and changes nothing; the worker's signed result then moves the run on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forged_step_result_is_dead_lettered_and_changes_nothing() {
    let stack = Stack::create().await;
    let service = Service::start(Duration::ZERO);
    let key = Arc::new(MessageKey::new(b"this stack's message key, 32 b.").expect("key"));
    let c = handlers::coordinator_with(stack.store.clone(), &stack.moto, &stack.name, None, Some(key.clone()));
    let w = stack.worker_signed(Some(key.clone()));
    let run_id = stack.start(&c, CHAIN, json!({"base": service.base})).await;

    // Before the worker runs the call, someone who can send to the queue reports it done.
    let forged = body_of(&CoordinatorMessage::Result {
        run_id: run_id.clone(),
        node: "a".into(),
        attempt: 1,
        outcome: Outcome::Output(json!({"status": 200, "body": {"path": "/forged"}})),
        usage: Default::default(),
        report: None,
    });
    stack.put("coordinator", &forged).await;
    let other = MessageKey::new(b"a key that is not the stack's..").expect("key");
    stack.put_signed("coordinator", &forged, &other.sign(&forged)).await;
    injected(2);
    let report = c.handle_batch(&stack.take("coordinator").await).await;
    assert_eq!(report.dead_lettered.len(), 2, "{report:?}");
    let run = stack.store.load_run(&run_id).await.expect("load").expect("run");
    assert_eq!(run.state.nodes["a"].status().as_str(), "running", "the forged results changed nothing");
    let reasons = dlq_reasons(&stack, "coordinator").await;
    assert_eq!(reasons.len(), 2, "{reasons:?}");
    assert!(reasons.iter().all(|(_, r)| r.contains("baton-signature")), "{reasons:?}");

    let out = stack.pump(&c, &w, &run_id, 1).await;
    assert_eq!(out["status"], "succeeded", "{out}");
    assert_eq!(out["output"][0], "/a", "the worker's result, not the forged one: {out}");
    assert_eq!(service.side_effects(), 2);
    stack.verify(&run_id).await;
}

const ASK: &str = r#"
name: ask
output: .steps.ask.output.decision
steps:
  - {id: ask, tool: human, with: {queue: ops, prompt: "Go?", summary: false}}
"#;

/// With `BATON_TASK_ANSWER_SOURCES` set, a `HumanTaskResolved` event from another source is
/// dead-lettered naming the allowed ones; one from an allowed source answers, and the answer
/// records who sent it as the bus says (a `principal` in the detail is ignored) beside the
/// self-declared `by`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn task_answers_from_the_bus_come_only_from_the_allowed_sources() {
    let stack = Stack::create().await;
    let c = handlers::coordinator_on(stack.store.clone(), &stack.moto, &stack.name)
        .with_answer_sources(vec!["acme.inbox".into()]);
    let plan = Arc::new(baton_core::load_definition(None, ASK).expect("valid"));
    let run_id = c.start(plan, ASK, json!({}), None).await.expect("start");
    let task =
        stack.store.open_tasks().await.expect("tasks").into_iter().find(|t| t.run_id == run_id).expect("task").id;
    let event = |source: &str| {
        json!({
            "version": "0", "id": "e-1", "source": source, "account": "123456789012", "detail-type": "HumanTaskResolved",
            "detail": {"task": task, "decision": "approve", "by": "dana", "principal": "the CFO, honestly"}
        })
        .to_string()
    };
    stack.put("coordinator", &event("mallory.scripts")).await;
    injected(1);
    let report = c.handle_batch(&stack.take("coordinator").await).await;
    assert_eq!(report.dead_lettered.len(), 1, "{report:?}");
    let reasons = dlq_reasons(&stack, "coordinator").await;
    assert!(reasons[0].1.contains("acme.inbox only") && reasons[0].1.contains("mallory.scripts"), "{reasons:?}");
    assert!(stack.store.open_tasks().await.expect("tasks").iter().any(|t| t.id == task), "the task is still open");

    stack.put("coordinator", &event("acme.inbox")).await;
    let report = c.handle_batch(&stack.take("coordinator").await).await;
    assert!(report.dead_lettered.is_empty() && report.failed.is_empty(), "{report:?}");
    let run = stack.store.load_run(&run_id).await.expect("load").expect("run");
    assert_eq!(run.state.output, Some(json!("approve")));
    let answered = stack.store.load_audit(&run_id).await.expect("audit");
    let record = answered
        .iter()
        .find(|r| r.node.as_deref() == Some("ask") && r.decision == "succeed_step")
        .expect("the answer's record");
    let answer = &record.values;
    assert_eq!(answer["by"], "dana", "what the sender said");
    assert_eq!(answer["principal"], "event source `acme.inbox`, account 123456789012", "what the bus says");
}
