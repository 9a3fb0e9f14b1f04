//! Engine revisions: a run follows the rules of the revision in its `RunStarted` event, so a run
//! journaled before a change replays as it ran. Revision 1 evaluates a `transform` step within
//! the decision that starts it.

use baton_core::audit::verify_chain;
use baton_core::engine::{Command, Decision, ENGINE_REVISION, Event, EventKind, RunStatus, decide, new_run};
use baton_core::load_definition;
use serde_json::json;

const CHAIN: &str = r#"
name: chain
output: .steps.c.output
steps:
  - {id: a, tool: transform, with: {expr: "{n: 1}"}}
  - {id: b, needs: [a], tool: transform, with: {expr: "{n: (.steps.a.output.n + 1)}"}}
  - {id: c, needs: [b], tool: transform, with: {expr: "{n: (.steps.b.output.n + 1)}"}}
  - {id: each, needs: [c], tool: transform, for_each: "[1, 2]", max_concurrency: 2, with: {expr: ".item"}}
"#;

fn start(engine: u32) -> (baton_core::Plan, baton_core::engine::RunState, Decision) {
    let plan = load_definition(None, CHAIN).expect("loads");
    let mut state = new_run(&plan, "run-1", 1_000);
    let start = Event { at: 1_000, kind: EventKind::RunStarted { input: json!({}), seed: 7, memory: None, engine } };
    let d = decide(&plan, &mut state, &start);
    (plan, state, d)
}

fn dispatched(d: &Decision) -> Vec<String> {
    d.commands
        .iter()
        .filter_map(|c| match c {
            Command::Dispatch(x) => Some(x.node.to_string()),
            _ => None,
        })
        .collect()
}

#[test]
fn from_revision_1_a_chain_of_transforms_is_one_decision() {
    let (plan, mut state, d) = start(ENGINE_REVISION);
    // a, b and c succeed in the start decision; only the for_each items go out as calls.
    assert_eq!(dispatched(&d), vec!["each[0]", "each[1]"]);
    let succeeded: Vec<_> =
        d.audit.iter().filter(|r| r.decision == "succeed_step").filter_map(|r| r.node.as_deref()).collect();
    assert_eq!(succeeded, ["a", "b", "c"]);
    assert_eq!(state.nodes.get("c").and_then(|n| n.output().cloned()), Some(json!({"n": 3})));
    let mut audit = d.audit.clone();
    for (i, item) in ["each[0]", "each[1]"].iter().enumerate() {
        let ok = EventKind::StepSucceeded {
            node: (*item).into(),
            attempt: 1,
            output: json!(i + 1),
            mocked: false,
            report: None,
        };
        let d = decide(&plan, &mut state, &Event { at: 1_001, kind: ok });
        audit.extend(d.audit);
    }
    assert_eq!(state.status, RunStatus::Succeeded);
    verify_chain(&audit).expect("the audit verifies");
}

#[test]
fn a_run_journaled_before_revision_1_still_sends_its_transforms_out() {
    let (_, _, d) = start(0);
    assert_eq!(dispatched(&d), vec!["a"]);
}
