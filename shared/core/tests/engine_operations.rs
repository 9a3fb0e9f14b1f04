//! Operator actions on a run, driving the pure state machine directly: redrive, retry from a
//! step (with patched arguments), pause and unpause. Each test also replays the run's events
//! on a fresh state and checks that it lands on the same state and the same audit log.

use baton_core::audit::{AuditRecord, verify_chain};
use baton_core::engine::{
    Command, Decision, Event, EventKind, NodeStatus, OperatorAction, RunState, RunStatus, StepError, decide, new_run,
};
use baton_core::{Plan, load_definition};
use serde_json::{Value, json};

const T0: u64 = 1_700_000_000_000;

/// A run of one plan, every event it was sent and every audit record it produced.
struct Run {
    plan: Plan,
    state: RunState,
    now: u64,
    events: Vec<Event>,
    audit: Vec<AuditRecord>,
}

impl Run {
    fn started(yaml: &str, input: Value) -> (Self, Decision) {
        let plan = match load_definition(None, yaml) {
            Ok(p) => p,
            Err(problems) => panic!("definition does not load: {problems:#?}"),
        };
        let state = new_run(&plan, "run-1", T0);
        let mut run = Self { plan, state, now: T0, events: Vec::new(), audit: Vec::new() };
        let d = run.send(EventKind::RunStarted { input, seed: 7, memory: None, engine: 0 });
        (run, d)
    }

    fn send(&mut self, kind: EventKind) -> Decision {
        let event = Event { at: self.now, kind };
        let d = decide(&self.plan, &mut self.state, &event);
        self.events.push(event);
        self.audit.extend(d.audit.iter().cloned());
        d
    }

    fn at(&mut self, at: u64) -> &mut Self {
        self.now = at;
        self
    }

    fn ok(&mut self, node: &str, attempt: u32, output: Value) -> Decision {
        self.send(EventKind::StepSucceeded { node: node.into(), attempt, output, mocked: false, report: None })
    }

    fn fail(&mut self, node: &str, attempt: u32) -> Decision {
        let error = StepError::new("http_status", "503 from the API");
        self.send(EventKind::StepFailed { node: node.into(), attempt, error, mocked: false, report: None })
    }

    fn operate(&mut self, action: OperatorAction, reason: Option<&str>) -> Decision {
        self.send(EventKind::Operated { action, by: "ops@example".into(), reason: reason.map(str::to_owned) })
    }

    fn status(&self, key: &str) -> NodeStatus {
        self.state.nodes.get(key).unwrap_or_else(|| panic!("no node `{key}`")).status()
    }

    /// Replays every event on a fresh state: same state, same audit log, chain intact.
    fn assert_replays(&self) {
        verify_chain(&self.audit).expect("audit chain verifies");
        let mut state = new_run(&self.plan, "run-1", T0);
        let mut audit = Vec::new();
        for e in &self.events {
            audit.extend(decide(&self.plan, &mut state, e).audit);
        }
        let state_json = |s: &RunState| serde_json::to_value(s).expect("state serialises");
        assert_eq!(state_json(&state), state_json(&self.state));
        assert_eq!(audit, self.audit, "replay derives the same audit records");
    }
}

/// `(node, attempt, idempotency key, input)` of every dispatch in `d`.
fn dispatched(d: &Decision) -> Vec<(String, u32, String, Value)> {
    d.commands
        .iter()
        .filter_map(|c| match c {
            Command::Dispatch(x) => Some((x.node.to_string(), x.attempt, x.idempotency_key.clone(), x.input.clone())),
            _ => None,
        })
        .collect()
}

fn nodes(d: &Decision) -> Vec<(String, u32)> {
    dispatched(d).into_iter().map(|(n, a, _, _)| (n, a)).collect()
}

fn decisions(d: &Decision) -> Vec<&str> {
    d.audit.iter().map(|r| r.decision.as_str()).collect()
}

fn emitted(d: &Decision) -> Vec<&str> {
    d.commands
        .iter()
        .filter_map(|c| match c {
            Command::EmitEvent { name, .. } => Some(name.as_str()),
            _ => None,
        })
        .collect()
}

fn completed(d: &Decision) -> Option<RunStatus> {
    d.commands.iter().find_map(|c| match c {
        Command::CompleteRun { status, .. } => Some(*status),
        _ => None,
    })
}

const CHAIN: &str = r#"
name: chain
steps:
  - {id: a, tool: http, with: {url: "http://x/a", method: GET}}
  - {id: b, needs: [a], tool: http, with: {url: "http://x/b", method: POST, body: {n: 1}}}
  - {id: c, needs: [b], tool: http, with: {url: "http://x/c"}}
"#;

/// A chain whose `b` failed: a succeeded, c never started.
fn failed_chain() -> Run {
    let (mut run, d) = Run::started(CHAIN, json!({}));
    assert_eq!(nodes(&d), vec![("a".into(), 1)]);
    let d = run.ok("a", 1, json!({"a": true}));
    assert_eq!(nodes(&d), vec![("b".into(), 1)]);
    let d = run.fail("b", 1);
    assert_eq!(completed(&d), Some(RunStatus::Failed));
    run
}

#[test]
fn redrive_reruns_the_failed_step_with_a_new_attempt_and_keeps_completed_outputs() {
    let mut run = failed_chain();
    let first_key = "run-1/b/0/1".to_owned();
    let d = run.at(T0 + 60_000).operate(OperatorAction::Redrive, Some("the API is back"));
    assert_eq!(decisions(&d)[0], "redrive_run");
    let why = &d.audit[0].reason;
    assert!(why.contains("ops@example") && why.contains("the API is back") && why.contains('b'), "{why}");
    assert_eq!(d.audit[0].values["failed"], json!(["b"]));
    assert_eq!(emitted(&d), vec!["RunRedriven"]);
    assert_eq!(run.state.status, RunStatus::Running);
    // Only b runs again, as attempt 2 with a new idempotency key; a is not re-executed.
    let calls = dispatched(&d);
    assert_eq!(calls.len(), 1);
    assert_eq!((calls[0].0.as_str(), calls[0].1), ("b", 2));
    assert_ne!(calls[0].2, first_key);
    assert_eq!(run.state.nodes["a"].output().cloned(), Some(json!({"a": true})));
    let d = run.ok("b", 2, json!({"b": 2}));
    assert_eq!(nodes(&d), vec![("c".into(), 1)]);
    let d = run.ok("c", 1, json!({"c": 3}));
    assert_eq!(completed(&d), Some(RunStatus::Succeeded));
    assert_eq!(run.state.output, Some(json!({"c": {"c": 3}})));
    // The failed first attempt's late answer changes nothing.
    let d = run.ok("b", 1, json!({"late": true}));
    assert!(nodes(&d).is_empty());
    run.assert_replays();
}

#[test]
fn redrive_of_a_succeeded_run_is_refused_with_the_reason() {
    let (mut run, _) = Run::started(CHAIN, json!({}));
    run.ok("a", 1, json!(1));
    run.ok("b", 1, json!(2));
    run.ok("c", 1, json!(3));
    assert_eq!(run.state.status, RunStatus::Succeeded);
    let d = run.operate(OperatorAction::Redrive, None);
    assert_eq!(decisions(&d), vec!["ignore"]);
    assert!(d.audit[0].reason.contains("nothing to redrive"), "{}", d.audit[0].reason);
    assert!(d.commands.is_empty());
    assert_eq!(run.state.status, RunStatus::Succeeded);
    run.assert_replays();
}

#[test]
fn retry_from_a_step_reruns_it_and_everything_downstream_with_patched_arguments() {
    let (mut run, _) = Run::started(CHAIN, json!({}));
    run.ok("a", 1, json!("A"));
    run.ok("b", 1, json!("B1"));
    let d = run.ok("c", 1, json!("C1"));
    assert_eq!(completed(&d), Some(RunStatus::Succeeded));
    let patch = json!({"body": {"n": 2, "extra": "x"}, "method": null});
    let d = run.operate(OperatorAction::Retry { from: "b".into(), input: Some(patch) }, Some("wrong amount"));
    assert_eq!(decisions(&d)[0], "retry_from");
    assert_eq!(d.audit[0].values["steps"], json!(["b", "c"]));
    assert_eq!(emitted(&d), vec!["RunRetried"]);
    let calls = dispatched(&d);
    assert_eq!(calls.len(), 1, "only b starts; c waits for it");
    assert_eq!((calls[0].0.as_str(), calls[0].1), ("b", 2));
    // The merge patch replaced body.n, added body.extra and removed method.
    assert_eq!(calls[0].3["body"], json!({"n": 2, "extra": "x"}));
    assert!(calls[0].3.get("method").is_none(), "{}", calls[0].3);
    assert_eq!(calls[0].3["url"], json!("http://x/b"));
    let d = run.ok("b", 2, json!("B2"));
    assert_eq!(nodes(&d), vec![("c".into(), 2)]);
    let d = run.ok("c", 2, json!("C2"));
    assert_eq!(completed(&d), Some(RunStatus::Succeeded));
    assert_eq!(run.state.output, Some(json!({"c": "C2"})));
    assert_eq!(run.state.reopened, 1);
    run.assert_replays();
}

#[test]
fn retry_names_what_is_wrong_with_the_step() {
    let (mut run, _) = Run::started(CHAIN, json!({}));
    let d = run.operate(OperatorAction::Retry { from: "nope".into(), input: None }, None);
    assert_eq!(decisions(&d), vec!["ignore"]);
    assert!(d.audit[0].reason.contains("no step `nope`"), "{}", d.audit[0].reason);
}

const FAN: &str = r#"
name: fan
steps:
  - {id: a, tool: http, with: {url: "http://x/a"}}
  - {id: b, tool: http, with: {url: "http://x/b"}}
  - {id: d, needs: [a, b], tool: http, with: {url: "http://x/d"}}
"#;

#[test]
fn pause_holds_new_dispatches_while_in_flight_calls_finish_and_unpause_starts_them() {
    let (mut run, d) = Run::started(FAN, json!({}));
    assert_eq!(nodes(&d).len(), 2);
    let d = run.operate(OperatorAction::Pause, Some("vendor outage"));
    assert_eq!(decisions(&d), vec!["pause_run"]);
    assert_eq!(d.audit[0].values["in_flight"], json!(2));
    run.ok("a", 1, json!("A"));
    let d = run.ok("b", 1, json!("B"));
    assert!(nodes(&d).is_empty(), "nothing new is dispatched while paused");
    assert!(decisions(&d).contains(&"hold"), "{:?}", decisions(&d));
    assert_eq!(run.status("a"), NodeStatus::Succeeded, "in-flight attempts are recorded");
    let d = run.at(T0 + 5_000).operate(OperatorAction::Unpause, None);
    assert_eq!(decisions(&d)[0], "unpause_run");
    assert_eq!(nodes(&d), vec![("d".into(), 1)]);
    let d = run.ok("d", 1, json!("D"));
    assert_eq!(completed(&d), Some(RunStatus::Succeeded));
    run.assert_replays();
}

#[test]
fn a_timer_due_while_paused_fires_late_on_unpause_and_says_so() {
    let yaml = r#"
name: nap
steps:
  - {id: nap, tool: sleep, with: {for: 1m}}
  - {id: after, needs: [nap], tool: http, with: {url: "http://x/after"}}
"#;
    let (mut run, _) = Run::started(yaml, json!({}));
    run.operate(OperatorAction::Pause, None);
    let d = run.at(T0 + 60_000).send(EventKind::TimerFired { timer: "wake/nap/1".into() });
    assert_eq!(decisions(&d), vec!["hold_timer"]);
    assert_eq!(run.status("nap"), NodeStatus::Waiting);
    let d = run.at(T0 + 90_000).operate(OperatorAction::Unpause, Some("resumed"));
    let late = d.audit.iter().find(|r| r.decision == "fire_late").expect("a fire_late record");
    assert_eq!(late.values["late_ms"], json!(30_000));
    assert!(late.reason.contains("30s"), "{}", late.reason);
    assert_eq!(run.status("nap"), NodeStatus::Succeeded);
    assert_eq!(nodes(&d), vec![("after".into(), 1)]);
    run.assert_replays();
}

#[test]
fn cancel_while_paused_ends_the_run() {
    let (mut run, _) = Run::started(FAN, json!({}));
    run.operate(OperatorAction::Pause, None);
    run.ok("a", 1, json!("A"));
    let d = run.ok("b", 1, json!("B"));
    assert!(nodes(&d).is_empty());
    let d = run.send(EventKind::CancelRequested { reason: "not needed".into() });
    assert_eq!(completed(&d), Some(RunStatus::Cancelled));
    // Unpausing an ended run is refused; nothing starts.
    let d = run.operate(OperatorAction::Unpause, None);
    assert!(nodes(&d).is_empty());
    run.assert_replays();
}

#[test]
fn redrive_of_a_fan_out_keeps_the_items_that_succeeded() {
    let yaml = r#"
name: each
steps:
  - id: each
    for_each: ".input.items"
    max_concurrency: 3
    tool: http
    with: {url: "http://x/{{ .item }}"}
"#;
    let (mut run, d) = Run::started(yaml, json!({"items": [1, 2, 3]}));
    assert_eq!(nodes(&d).len(), 3);
    run.ok("each[0]", 1, json!("one"));
    run.ok("each[2]", 1, json!("three"));
    let d = run.fail("each[1]", 1);
    assert_eq!(completed(&d), Some(RunStatus::Failed));
    let d = run.operate(OperatorAction::Redrive, None);
    assert_eq!(nodes(&d), vec![("each[1]".into(), 2)], "only the failed item runs again");
    let d = run.ok("each[1]", 2, json!("two"));
    assert_eq!(completed(&d), Some(RunStatus::Succeeded));
    assert_eq!(run.state.output, Some(json!({"each": ["one", "two", "three"]})));
    run.assert_replays();
}
