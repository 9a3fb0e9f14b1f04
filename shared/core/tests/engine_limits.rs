//! Limits that keep runs from being stuck, on the pure state machine: a call step that sets no
//! `timeout` still has its tool's default limit per attempt (a lost call fails with `timeout`
//! and is retried), and a workflow's `deadline` stops a run that is still going.

use baton_core::audit::AuditRecord;
use baton_core::engine::{Command, Decision, Event, EventKind, RunState, RunStatus, decide, new_run};
use baton_core::error_kind::ErrorKind;
use baton_core::{Plan, load_definition};
use serde_json::json;

const T0: u64 = 1_700_000_000_000;
const MIN: u64 = 60_000;

struct Run {
    plan: Plan,
    state: RunState,
    audit: Vec<AuditRecord>,
}

impl Run {
    fn started(yaml: &str) -> (Self, Decision) {
        let plan = load_definition(None, yaml).unwrap_or_else(|p| panic!("{p:#?}"));
        let state = new_run(&plan, "run-1", T0);
        let mut run = Self { plan, state, audit: vec![] };
        let d = run.send(T0, EventKind::RunStarted { input: json!({}), seed: 7, memory: None, engine: 0 });
        (run, d)
    }

    fn send(&mut self, at: u64, kind: EventKind) -> Decision {
        let d = decide(&self.plan, &mut self.state, &Event { at, kind });
        self.audit.extend(d.audit.iter().cloned());
        d
    }

    /// Answers every call `d` dispatched (and those their results dispatch) with success.
    fn answer_calls(&mut self, at: u64, d: Decision) {
        let mut todo: Vec<(String, u32)> = dispatches(&d);
        while let Some((node, attempt)) = todo.pop() {
            let next = self.send(
                at,
                EventKind::StepSucceeded {
                    node: node.as_str().into(),
                    attempt,
                    output: json!("ok"),
                    mocked: false,
                    report: None,
                },
            );
            todo.extend(dispatches(&next));
        }
    }

    fn timer_at(&self, id: &str) -> Option<u64> {
        self.state.timers.get(id).map(|t| t.at)
    }

    fn fire(&mut self, id: &str) -> Decision {
        let at = self.timer_at(id).unwrap_or_else(|| panic!("no timer `{id}`: {:?}", self.state.timers));
        self.send(at, EventKind::TimerFired { timer: id.into() })
    }
}

fn dispatches(d: &Decision) -> Vec<(String, u32)> {
    d.commands
        .iter()
        .filter_map(|c| match c {
            Command::Dispatch(d) => Some((d.node.to_string(), d.attempt)),
            _ => None,
        })
        .collect()
}

const LOST_CALL: &str = r#"
name: lost
steps:
  - id: call
    tool: http
    retry: {max_attempts: 2, backoff: fixed, initial: 1s}
    with: {url: "https://api.example/orders"}
"#;

#[test]
fn a_call_without_a_timeout_is_limited_by_its_tools_default_and_retried() {
    let (mut run, started) = Run::started(LOST_CALL);
    assert_eq!(dispatches(&started), [("call".to_owned(), 1)]);
    // The call itself keeps its own limit: the default only bounds the attempt.
    let Some(Command::Dispatch(call)) = started.commands.iter().find(|c| matches!(c, Command::Dispatch(_))) else {
        panic!("no dispatch");
    };
    assert_eq!(call.timeout_ms, None, "the request is not given the 15-minute default");
    assert_eq!(run.timer_at("timeout/call/1"), Some(T0 + 15 * MIN), "15 minutes for an http attempt");

    // The result never comes: the attempt fails with `timeout`, which the policy retries.
    run.fire("timeout/call/1");
    let retry = run.audit.iter().find(|r| r.decision == "retry").expect("a retry record");
    assert!(retry.reason.contains("failed with `timeout`"), "{}", retry.reason);
    let again = run.fire("retry/call/2");
    assert_eq!(dispatches(&again), [("call".to_owned(), 2)]);
    assert!(run.timer_at("timeout/call/2").is_some(), "the second attempt is limited too");

    // A result that does come clears the limit.
    let at = run.timer_at("timeout/call/2").unwrap_or(0) - MIN;
    run.send(
        at,
        EventKind::StepSucceeded {
            node: "call".into(),
            attempt: 2,
            output: json!({"status": 200}),
            mocked: false,
            report: None,
        },
    );
    assert_eq!(run.state.status, RunStatus::Succeeded);
    assert!(run.state.timers.is_empty(), "no timer left: {:?}", run.state.timers);
}

#[test]
fn steps_that_wait_by_design_get_no_default_limit_and_child_runs_get_thirty_days() {
    let plan = load_definition(
        None,
        r#"
name: waits
steps:
  - {id: nap, tool: sleep, with: {for: 1h}}
  - {id: ask, tool: human, with: {queue: ops, prompt: "Go?", summary: false}}
  - {id: shape, tool: transform, with: {expr: ".input"}}
  - {id: child, tool: workflow, with: {name: other}}
  - {id: model, tool: llm, with: {model: m, prompt: "hi", output_schema: {type: object}}}
  - {id: own, tool: http, timeout: 10s, with: {url: "https://api.example/"}}
"#,
    )
    .unwrap_or_else(|p| panic!("{p:#?}"));
    let limit = |id: &str| plan.steps[plan.index[id]].attempt_limit().map(|m| m.0);
    assert_eq!(limit("nap"), None);
    assert_eq!(limit("ask"), None);
    assert_eq!(limit("shape"), None);
    assert_eq!(limit("child"), Some(30 * 24 * 60 * MIN));
    assert_eq!(limit("model"), Some(15 * MIN));
    assert_eq!(limit("own"), Some(10_000), "a step's own timeout wins");
}

const DEADLINED: &str = r#"
name: deadlined
deadline: 2h
compensate: {book: unbook}
steps:
  - {id: book, tool: transform, with: {expr: '"booked"'}}
  - {id: ask, needs: [book], tool: human, with: {queue: ops, prompt: "Go?", summary: false}}
  - {id: unbook, tool: transform, with: {expr: '"unbooked"'}}
"#;

#[test]
fn a_run_past_its_deadline_stops_compensates_and_fails_with_timeout() {
    let (mut run, started) = Run::started(DEADLINED);
    assert_eq!(run.timer_at("deadline"), Some(T0 + 120 * MIN));
    run.answer_calls(T0, started);
    assert_eq!(run.state.tasks.len(), 1, "the run waits on the person");
    let fired = run.fire("deadline");
    let stop = run.audit.iter().find(|r| r.decision == "deadline_run").expect("a deadline record");
    assert!(stop.reason.contains("did not end within its deadline of 2h"), "{}", stop.reason);
    assert!(run.state.tasks.is_empty(), "the person's task was closed");
    // The compensation of the completed step runs, then the run ends.
    run.answer_calls(T0 + 121 * MIN, fired);
    assert!(run.audit.iter().any(|r| r.decision == "compensate_step"), "the booking was undone");
    assert_eq!(run.state.status, RunStatus::Failed);
    let error = run.state.error.clone().expect("the run's error");
    assert_eq!(error.kind, ErrorKind::Timeout);
    assert_eq!(error.step, None);
}

#[test]
fn a_run_that_ends_first_drops_its_deadline() {
    let (mut run, started) = Run::started(DEADLINED);
    run.answer_calls(T0, started);
    let task = run.state.tasks.keys().next().cloned().expect("the task is open");
    let answer = baton_core::answer::HumanAnswer {
        decision: baton_core::answer::Verdict::Approve,
        data: json!({}),
        comment: None,
        by: Some("ops".into()),
        principal: None,
    };
    let d = run.send(T0 + MIN, EventKind::HumanResolved { task, answer });
    assert_eq!(run.state.status, RunStatus::Succeeded);
    assert!(run.state.timers.is_empty(), "the deadline went with the run: {:?}", run.state.timers);
    assert!(
        d.commands.iter().any(|c| matches!(c, Command::CancelTimer { id } if id == "deadline")),
        "the host is told to drop the deadline's timer"
    );
    // A deadline timer that fires anyway (a schedule deleted too late) changes nothing.
    let before = run.audit.len();
    run.send(T0 + 200 * MIN, EventKind::TimerFired { timer: "deadline".into() });
    assert_eq!(run.state.status, RunStatus::Succeeded);
    assert_eq!(run.audit.len(), before, "an ended run's log is closed");
}

#[test]
fn a_late_limit_does_not_start_a_fallback_twice() {
    let (mut run, _) = Run::started(
        r#"
name: fb
steps:
  - {id: s0, tool: http, with: {url: "http://x"}, fallback: fb_s0}
  - {id: fb_s0, tool: http, with: {url: "http://x/fb"}}
"#,
    );
    let failed = run.send(
        T0 + MIN,
        EventKind::StepFailed {
            node: "s0".into(),
            attempt: 1,
            error: baton_core::engine::StepError::new(ErrorKind::Http5xx, "503"),
            mocked: false,
            report: None,
        },
    );
    assert_eq!(dispatches(&failed), [("fb_s0~s0".to_owned(), 1)]);
    assert!(run.timer_at("timeout/s0/1").is_none(), "the failed attempt's limit went with it");
    // Fired anyway (its schedule deleted too late): ignored, nothing dispatched.
    let late = run.send(T0 + 16 * MIN, EventKind::TimerFired { timer: "timeout/s0/1".into() });
    assert!(dispatches(&late).is_empty(), "{:?}", late.commands);
}

const BUDGETED: &str = r#"
name: budgeted-run
budget: {max_tokens: 150}
steps:
  - {id: first, tool: llm, with: {model: m, prompt: "one", output_schema: {type: object}}}
  - {id: second, needs: [first], tool: llm, with: {model: m, prompt: "two", output_schema: {type: object}}}
  - {id: third, needs: [second], tool: llm, with: {model: m, prompt: "three", output_schema: {type: object}}}
"#;

fn model_call(run: &mut Run, at: u64, node: &str, tokens: u64) -> Decision {
    let report = json!({"usage": {"prompt_tokens": tokens - 10, "completion_tokens": 10, "total_tokens": tokens}, "cost_usd": 0.001});
    run.send(
        at,
        EventKind::StepSucceeded {
            node: node.into(),
            attempt: 1,
            output: json!({}),
            mocked: false,
            report: Some(report),
        },
    )
}

#[test]
fn a_run_over_its_budget_stops_and_fails_with_budget_exceeded() {
    let (mut run, started) = Run::started(BUDGETED);
    assert_eq!(dispatches(&started), [("first".to_owned(), 1)]);
    let next = model_call(&mut run, T0 + 1_000, "first", 100);
    assert_eq!(dispatches(&next), [("second".to_owned(), 1)], "100 of 150 tokens: the run goes on");
    let over = model_call(&mut run, T0 + 2_000, "second", 100);
    assert!(dispatches(&over).is_empty(), "no model call starts past the budget: {:?}", over.commands);
    assert_eq!(run.state.status, RunStatus::Failed);
    let error = run.state.error.clone().expect("error");
    assert_eq!(error.kind, ErrorKind::BudgetExceeded);
    assert_eq!(error.step.as_deref(), Some("second"));
    assert!(error.message.contains("200 tokens > max_tokens 150"), "{}", error.message);
    let record = run.audit.iter().find(|r| r.decision == "run_budget_exceeded").expect("a budget record");
    assert_eq!(record.values["input_tokens"], 180);
    assert_eq!(record.values["output_tokens"], 20);
}

#[test]
fn a_bad_run_budget_is_refused_at_its_field() {
    let problems = load_definition(
        None,
        "name: b\nbudget: {max_tokens: 0, max_usd: -1}\nsteps:\n  - {id: a, tool: transform, with: {expr: '1'}}\n",
    )
    .expect_err("refused");
    let text = format!("{problems:?}");
    assert!(text.contains("/budget/max_tokens") && text.contains("/budget/max_usd"), "{text}");
}

const TEMPLATED: &str = r#"
name: templated
steps:
  - id: call
    tool: http
    timeout: "{{ .input.t }}"
    with: {url: "https://api.example/"}
  - id: ask
    tool: human
    needs: [call]
    timeout: "{{ .input.wait }}"
    with: {queue: ops, prompt: "Go?", summary: false}
"#;

fn start_with(plan: &Plan, input: serde_json::Value) -> (RunState, Decision) {
    let mut state = new_run(plan, "run-1", T0);
    let kind = EventKind::RunStarted { input, seed: 7, memory: None, engine: 0 };
    let d = decide(plan, &mut state, &Event { at: T0, kind });
    (state, d)
}

/// A templated `timeout` (what a Step Functions `TimeoutSecondsPath` becomes) is read when each
/// attempt starts: a number is seconds, a string a duration; the call is given the same limit.
/// A value that is neither fails the attempt with `expression`, naming the step and the field.
#[test]
fn a_templated_timeout_is_read_when_each_attempt_starts() {
    let plan = load_definition(None, TEMPLATED).unwrap_or_else(|p| panic!("{p:#?}"));
    let (mut state, d) = start_with(&plan, json!({"t": 90, "wait": "2h"}));
    let Some(Command::Dispatch(call)) = d.commands.iter().find(|c| matches!(c, Command::Dispatch(_))) else {
        panic!("no dispatch: {:?}", d.commands);
    };
    assert_eq!(call.timeout_ms, Some(90_000), "the call is given the limit too");
    assert_eq!(state.timers.get("timeout/call/1").map(|t| t.at), Some(T0 + 90_000));
    let at = T0 + 1_000;
    let output = json!({"status": 200});
    let kind = EventKind::StepSucceeded { node: "call".into(), attempt: 1, output, mocked: false, report: None };
    decide(&plan, &mut state, &Event { at, kind });
    assert_eq!(state.timers.get("timeout/ask/1").map(|t| t.at), Some(at + 2 * 60 * MIN), "a wait is limited too");

    let (state, _) = start_with(&plan, json!({"t": "soon"}));
    assert_eq!(state.status, RunStatus::Failed);
    let error = state.error.as_ref().map(|e| (e.kind.clone(), e.message.clone()));
    let (kind, message) = error.unwrap_or_else(|| panic!("no error: {state:?}"));
    assert_eq!(kind, ErrorKind::Expression.as_str());
    assert!(message.contains("`timeout` of step `call`") && message.contains("soon"), "{message}");
}

/// A templated `max_concurrency` (what a Step Functions `MaxConcurrencyPath` becomes) is read
/// when the `for_each` starts and bounds the items running at once; a value that is not a whole
/// number from 1 to 1000 fails the step with `expression`, naming the field.
#[test]
fn a_templated_max_concurrency_is_read_when_the_fan_out_starts() {
    let plan = load_definition(
        None,
        r#"
name: fan
steps:
  - id: each
    tool: http
    for_each: .input.items
    max_concurrency: "{{ .input.parallel }}"
    with: {url: "https://api.example/{{ .item }}"}
"#,
    )
    .unwrap_or_else(|p| panic!("{p:#?}"));
    let (_, d) = start_with(&plan, json!({"items": [1, 2, 3, 4, 5], "parallel": 2}));
    assert_eq!(dispatches(&d).len(), 2, "two of five at once: {:?}", dispatches(&d));
    let (_, d) = start_with(&plan, json!({"items": [1, 2, 3], "parallel": 10}));
    assert_eq!(dispatches(&d).len(), 3);
    let (state, _) = start_with(&plan, json!({"items": [1], "parallel": "many"}));
    assert_eq!(state.status, RunStatus::Failed);
    let message = state.error.as_ref().map(|e| e.message.clone()).unwrap_or_default();
    assert!(message.contains("`max_concurrency`") && message.contains("many"), "{message}");
}
