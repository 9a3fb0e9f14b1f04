//! Errors by name and how they are retried: `fail(kind; message)` in an expression, a list of
//! retry policies (the States Language's retriers), each counting its own attempts and backoff,
//! and the `timeout` of a wait whose heartbeats stop.

use baton_core::audit::{AuditRecord, verify_chain};
use baton_core::engine::{
    Command, Decision, Event, EventKind, NodeStatus, RunState, RunStatus, StepError, decide, new_run,
};
use baton_core::{Plan, load_definition};
use serde_json::{Value, json};

const T0: u64 = 1_700_000_000_000;

/// A run of one plan, driven by hand.
struct Run {
    plan: Plan,
    state: RunState,
    now: u64,
    audit: Vec<AuditRecord>,
}

impl Run {
    fn started(yaml: &str, input: Value) -> (Self, Decision) {
        let plan = load_definition(None, yaml).unwrap_or_else(|p| panic!("definition does not load: {p:#?}"));
        let state = new_run(&plan, "run-1", T0);
        let mut run = Self { plan, state, now: T0, audit: Vec::new() };
        let d = run.send(EventKind::RunStarted { input, seed: 7, memory: None, engine: 0 });
        (run, d)
    }

    fn send(&mut self, kind: EventKind) -> Decision {
        let d = decide(&self.plan, &mut self.state, &Event { at: self.now, kind });
        self.audit.extend(d.audit.iter().cloned());
        d
    }

    fn fail(&mut self, at: u64, attempt: u32, kind: &str) -> Decision {
        self.now = at;
        let error = StepError::new(kind, format!("{kind} happened"));
        self.send(EventKind::StepFailed { node: "call".into(), attempt, error, mocked: false, report: None })
    }

    fn fire(&mut self, at: u64, timer: &str) -> Decision {
        self.now = at;
        self.send(EventKind::TimerFired { timer: timer.into() })
    }

    fn error(&self) -> (String, String) {
        let e = self.state.error.as_ref().expect("the run has an error");
        (e.kind.as_str().to_owned(), e.message.clone())
    }
}

fn scheduled(d: &Decision) -> Vec<(String, u64)> {
    d.commands
        .iter()
        .filter_map(|c| match c {
            Command::ScheduleTimer { id, at } => Some((id.clone(), *at)),
            _ => None,
        })
        .collect()
}

fn completed(d: &Decision) -> Option<RunStatus> {
    d.commands.iter().find_map(|c| match c {
        Command::CompleteRun { status } => Some(*status),
        _ => None,
    })
}

fn record<'a>(d: &'a Decision, decision: &str) -> &'a AuditRecord {
    d.audit.iter().find(|r| r.decision == decision).unwrap_or_else(|| panic!("no `{decision}` in {:#?}", d.audit))
}

const RETRIERS: &str = r#"
name: retriers
steps:
  - id: call
    tool: http
    with: {url: "http://x/call"}
    retry:
      - {on: [CustomError], max_attempts: 2, backoff: fixed, initial: 1s}
      - {on: [http_5xx], max_attempts: 3, initial: 1s, multiplier: 3, max: 1m, jitter: none}
"#;

#[test]
fn each_policy_of_a_list_counts_its_own_attempts_and_backoff() {
    let (mut run, _) = Run::started(RETRIERS, json!({}));
    // http_5xx: the second policy, its first retry after 1 s.
    let d = run.fail(T0 + 10, 1, "http_5xx");
    assert_eq!(scheduled(&d), vec![("retry/call/2".into(), T0 + 1_010)]);
    let r = record(&d, "retry");
    assert_eq!(r.values["policy"], json!(2));
    assert!(r.reason.contains("retry policy 2 covers: its attempt 1 of 3"), "{}", r.reason);
    run.fire(T0 + 1_010, "retry/call/2");
    // CustomError: the first policy, counted on its own (its attempt 1 of 2).
    let d = run.fail(T0 + 1_020, 2, "CustomError");
    assert_eq!(scheduled(&d), vec![("retry/call/3".into(), T0 + 2_020)]);
    assert_eq!(record(&d, "retry").values["policy"], json!(1));
    run.fire(T0 + 2_020, "retry/call/3");
    // http_5xx again: the second policy's second retry, 1 s x 3.
    let d = run.fail(T0 + 2_030, 3, "http_5xx");
    assert_eq!(scheduled(&d), vec![("retry/call/4".into(), T0 + 5_030)]);
    run.fire(T0 + 5_030, "retry/call/4");
    // CustomError again: the first policy has used both its attempts, whatever the second has left.
    let d = run.fail(T0 + 5_040, 4, "CustomError");
    assert!(scheduled(&d).is_empty());
    let r = record(&d, "attempts_exhausted");
    assert!(r.reason.contains("retry policy 1 used all its 2 attempts"), "{}", r.reason);
    assert_eq!(completed(&d), Some(RunStatus::Failed));
    assert_eq!(run.error().0, "CustomError");
    verify_chain(&run.audit).expect("the audit verifies");
}

#[test]
fn a_kind_no_policy_of_the_list_covers_is_not_retried() {
    let (mut run, _) = Run::started(RETRIERS, json!({}));
    let d = run.fail(T0 + 10, 1, "http_4xx");
    let r = record(&d, "attempts_exhausted");
    assert!(r.reason.contains("no retry policy covers `http_4xx`"), "{}", r.reason);
    assert_eq!(completed(&d), Some(RunStatus::Failed));
}

const RAISES: &str = r#"
name: raises
steps:
  - id: check
    tool: transform
    with: {expr: 'if .input.n < 3 then fail("OutOfStock"; "only \(.input.n) left") else .input.n end'}
    retry: {max_attempts: 2, backoff: fixed, initial: 1s, on: [OutOfStock]}
"#;

#[test]
fn fail_in_an_expression_fails_the_step_with_its_kind_which_retry_may_name() {
    let (mut run, d) = Run::started(RAISES, json!({"n": 2}));
    assert_eq!(scheduled(&d), vec![("retry/check/2".into(), T0 + 1_000)]);
    assert_eq!(record(&d, "retry").values["error"]["kind"], json!("OutOfStock"));
    let d = run.fire(T0 + 1_000, "retry/check/2");
    assert_eq!(completed(&d), Some(RunStatus::Failed));
    assert_eq!(run.error(), ("OutOfStock".to_owned(), "only 2 left".to_owned()));
    verify_chain(&run.audit).expect("the audit verifies");

    // Enough stock: the transform's value goes out as its result.
    let (_, d) = Run::started(RAISES, json!({"n": 5}));
    let values: Vec<&Value> = d
        .commands
        .iter()
        .filter_map(|c| match c {
            Command::Dispatch(x) => Some(&x.input),
            _ => None,
        })
        .collect();
    assert_eq!(values, vec![&json!({"value": 5})]);
}

#[test]
fn fail_with_a_kind_an_expression_may_not_raise_is_an_expression_error_saying_why() {
    let yaml = r#"
name: raises
steps:
  - id: check
    tool: transform
    with: {expr: 'fail("loop_exhausted"; "no")'}
"#;
    let (run, d) = Run::started(yaml, json!({}));
    assert_eq!(completed(&d), Some(RunStatus::Failed));
    let (kind, message) = run.error();
    assert_eq!(kind, "expression");
    assert!(message.contains("`loop_exhausted` is not a kind an expression may raise"), "{message}");
}

/// The load problems of an `http` step whose `retry` is `retry` (YAML), as (field, message).
fn retry_problems(retry: &str) -> Vec<(String, String)> {
    let yaml = format!(
        "name: bad\nsteps:\n  - id: call\n    tool: http\n    with: {{url: \"http://x/call\"}}\n    retry: {retry}\n"
    );
    match load_definition(None, &yaml) {
        Ok(_) => panic!("the definition loads: {yaml}"),
        Err(p) => p.into_iter().map(|p| (p.field, p.message)).collect(),
    }
}

#[test]
fn retry_lists_and_multipliers_are_checked_at_load() {
    let p = retry_problems("[{on: [http_5xx], max_attempts: 2}, {max_attempts: 2, backoff: fixed, multiplier: 3}]");
    assert!(p.iter().any(|(f, m)| f == "retry[1].on" && m.contains("names the kinds it retries")), "{p:#?}");
    assert!(p.iter().any(|(f, m)| f == "retry[1].multiplier" && m.contains("exponential")), "{p:#?}");
    let p = retry_problems("{max_attempt: 2}");
    assert!(
        p.iter().any(|(f, m)| f == "retry.max_attempt" && m.contains("did you mean `max_attempts`")),
        "a typo in one policy is named as before: {p:#?}"
    );
    let p = retry_problems("{max_attempts: 2, multiplier: 0.5}");
    assert!(p.iter().any(|(f, _)| f == "retry.multiplier"), "{p:#?}");
}

const CALLBACK: &str = r#"
name: callback
steps:
  - id: wait
    tool: wait_event
    timeout: 1h
    with:
      pattern: {source: [baton.callback], detail-type: [TaskSuccess]}
      correlate: {event: ".detail.taskToken", run: '"tok-1"'}
      heartbeat: {timeout: 30s, pattern: {source: [baton.callback], detail-type: [TaskHeartbeat]}}
"#;

fn callback_event(detail_type: &str) -> Value {
    json!({"id": detail_type, "source": "baton.callback", "detail-type": detail_type, "detail": {"taskToken": "tok-1"}})
}

#[test]
fn heartbeats_keep_a_wait_alive_and_their_absence_fails_it_with_timeout() {
    let (mut run, d) = Run::started(CALLBACK, json!({}));
    let task = run.state.tasks.keys().next().cloned().expect("the wait is open");
    assert!(scheduled(&d).contains(&("heartbeat/wait/1/0".into(), T0 + 30_000)), "{:?}", scheduled(&d));
    // A heartbeat 20 s in: the clock restarts; the wait goes on.
    run.now = T0 + 20_000;
    let d = run.send(EventKind::EventReceived { task: task.clone(), payload: callback_event("TaskHeartbeat") });
    assert_eq!(scheduled(&d), vec![("heartbeat/wait/1/1".into(), T0 + 50_000)]);
    assert!(d.commands.contains(&Command::CancelTimer { id: "heartbeat/wait/1/0".into() }));
    assert!(record(&d, "heartbeat").reason.contains("heartbeat 1 of wait"));
    assert_eq!(run.state.nodes.get("wait").map(|n| n.status()), Some(NodeStatus::Waiting));
    // The first timer is gone: firing it changes nothing.
    let d = run.fire(T0 + 30_000, "heartbeat/wait/1/0");
    assert!(completed(&d).is_none());
    // No heartbeat for 30 s after the last: the attempt fails with `timeout`.
    let d = run.fire(T0 + 50_000, "heartbeat/wait/1/1");
    assert_eq!(completed(&d), Some(RunStatus::Failed));
    let (kind, message) = run.error();
    assert_eq!(kind, "timeout");
    assert!(message.starts_with("no heartbeat within 30s"), "{message}");
    verify_chain(&run.audit).expect("the audit verifies");
}

#[test]
fn the_ending_event_ends_a_wait_with_a_heartbeat() {
    let (mut run, _) = Run::started(CALLBACK, json!({}));
    let task = run.state.tasks.keys().next().cloned().expect("the wait is open");
    run.now = T0 + 5_000;
    let d = run.send(EventKind::EventReceived { task, payload: callback_event("TaskSuccess") });
    assert_eq!(completed(&d), Some(RunStatus::Succeeded));
    assert!(run.state.timers.is_empty(), "no timer outlives the wait: {:?}", run.state.timers);
}
