//! One focused test per DSL feature, driving the pure state machine `decide` directly.
//!
//! Each test builds a tiny workflow, feeds events through [`Run`] (a minimal in-test driver) and
//! inspects the commands and audit records of each decision.

use std::collections::BTreeSet;

use baton_core::audit::{AuditRecord, verify_chain};
use baton_core::engine::{
    Command, Decision, Dispatch, Event, EventKind, HumanAnswer, Node, NodeStatus, RunState, RunStatus, StepError,
    Verdict, decide, new_run,
};
use baton_core::ids::TaskId;
use baton_core::{Plan, load_definition};
use serde_json::{Value, json};

const T0: u64 = 1_700_000_000_000;

/// A run of one plan plus everything it produced so far.
struct Run {
    plan: Plan,
    state: RunState,
    now: u64,
    audit: Vec<AuditRecord>,
}

impl Run {
    fn new(yaml: &str) -> Self {
        let plan = match load_definition(None, yaml) {
            Ok(p) => p,
            Err(problems) => panic!("definition does not load: {problems:#?}"),
        };
        let state = new_run(&plan, "run-1", T0);
        Self { plan, state, now: T0, audit: Vec::new() }
    }

    /// Creates the run and starts it with `input`.
    fn started(yaml: &str, input: Value) -> (Self, Decision) {
        let mut run = Self::new(yaml);
        let d = run.send(EventKind::RunStarted { input, seed: 7, memory: None, engine: 0 });
        (run, d)
    }

    /// Moves the clock to `at` (never backwards).
    fn at(&mut self, at: u64) -> &mut Self {
        assert!(at >= self.now, "time goes forward");
        self.now = at;
        self
    }

    fn send(&mut self, kind: EventKind) -> Decision {
        let event = Event { at: self.now, kind };
        let ended = self.state.status.is_terminal();
        let d = decide(&self.plan, &mut self.state, &event);
        if ended {
            assert!(d.audit.is_empty() && d.commands.is_empty(), "the log of an ended run is closed");
        } else {
            assert!(!d.audit.is_empty(), "every event of a live run leaves an audit record");
        }
        self.audit.extend(d.audit.iter().cloned());
        d
    }

    fn ok(&mut self, node: &str, attempt: u32, output: Value) -> Decision {
        self.send(EventKind::StepSucceeded { node: node.into(), attempt, output, mocked: false, report: None })
    }

    fn fail_with(&mut self, node: &str, attempt: u32, error: StepError) -> Decision {
        self.send(EventKind::StepFailed { node: node.into(), attempt, error, mocked: false, report: None })
    }

    fn fail(&mut self, node: &str, attempt: u32, kind: &str) -> Decision {
        self.fail_with(node, attempt, StepError::new(kind, format!("{kind} happened")))
    }

    fn fire(&mut self, timer: &str) -> Decision {
        self.send(EventKind::TimerFired { timer: timer.into() })
    }

    fn answer(&mut self, task: impl AsRef<str>, decision: Verdict) -> Decision {
        self.send(EventKind::HumanResolved {
            task: task.as_ref().into(),
            answer: HumanAnswer { decision, data: Value::Null, comment: None, by: Some("ana".into()), principal: None },
        })
    }

    fn node(&self, key: &str) -> &Node {
        self.state.nodes.get(key).unwrap_or_else(|| panic!("no node `{key}`; nodes: {:?}", self.state.nodes.keys()))
    }

    fn status(&self, key: &str) -> NodeStatus {
        self.node(key).status()
    }

    /// How many audit records so far carry `decision` for `node`.
    fn count(&self, decision: &str, node: &str) -> usize {
        self.audit.iter().filter(|r| r.decision == decision && r.node.as_deref() == Some(node)).count()
    }

    fn assert_chain(&self) {
        verify_chain(&self.audit).expect("audit chain verifies");
    }
}

fn dispatches(d: &Decision) -> Vec<&Dispatch> {
    d.commands
        .iter()
        .filter_map(|c| match c {
            Command::Dispatch(x) => Some(x),
            _ => None,
        })
        .collect()
}

/// `(node, attempt)` of every dispatch in `d`, in order.
fn dispatched(d: &Decision) -> Vec<(String, u32)> {
    dispatches(d).into_iter().map(|x| (x.node.to_string(), x.attempt)).collect()
}

fn dispatched_nodes(d: &Decision) -> BTreeSet<String> {
    dispatches(d).into_iter().map(|x| x.node.to_string()).collect()
}

/// `(id, at)` of every timer armed in `d`.
fn scheduled(d: &Decision) -> Vec<(String, u64)> {
    d.commands
        .iter()
        .filter_map(|c| match c {
            Command::ScheduleTimer { id, at } => Some((id.clone(), *at)),
            _ => None,
        })
        .collect()
}

fn cancelled_timers(d: &Decision) -> Vec<String> {
    d.commands
        .iter()
        .filter_map(|c| match c {
            Command::CancelTimer { id } => Some(id.clone()),
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

/// The single audit record of `d` with `decision` (and `node`, when given).
fn record<'a>(d: &'a Decision, decision: &str, node: Option<&str>) -> &'a AuditRecord {
    let found: Vec<&AuditRecord> =
        d.audit.iter().filter(|r| r.decision == decision && (node.is_none() || r.node.as_deref() == node)).collect();
    assert_eq!(found.len(), 1, "expected one `{decision}` record for {node:?}, audit: {:#?}", d.audit);
    found[0]
}

fn decisions(d: &Decision) -> Vec<String> {
    d.audit.iter().map(|r| r.decision.clone()).collect()
}

fn http(id: &str) -> String {
    format!("  - id: {id}\n    tool: http\n    with: {{url: \"http://x/{id}\"}}\n")
}

// ---------------------------------------------------------------------------------------------
// DAG scheduling
// ---------------------------------------------------------------------------------------------

const FAN: &str = r#"
name: fan
steps:
  - {id: a, tool: http, with: {url: "http://x/a"}}
  - {id: b, tool: http, with: {url: "http://x/b"}}
  - {id: c, tool: http, with: {url: "http://x/c"}}
  - {id: d, needs: [a, b, c], tool: http, with: {url: "http://x/d"}}
"#;

#[test]
fn independent_steps_are_dispatched_in_parallel() {
    let (run, d) = Run::started(FAN, json!({}));
    assert_eq!(
        dispatched(&d),
        vec![("a".into(), 1), ("b".into(), 1), ("c".into(), 1)],
        "all steps without needs start with the run"
    );
    for x in dispatches(&d) {
        assert_eq!(x.tool, "http");
        assert_eq!(x.input, json!({"url": format!("http://x/{}", x.node)}));
        assert_eq!(x.idempotency_key, format!("run-1/{}/0/1", x.node));
    }
    assert_eq!(record(&d, "start_run", None).kind, "run_started");
    assert_eq!(run.state.status, RunStatus::Running);
}

#[test]
fn fan_in_waits_for_every_need() {
    let (mut run, _) = Run::started(FAN, json!({}));
    let d = run.ok("b", 1, json!({"b": 1}));
    assert!(dispatched(&d).is_empty(), "d must wait for a and c");
    let d = run.ok("a", 1, json!({"a": 1}));
    assert!(dispatched(&d).is_empty(), "d must wait for c");
    let d = run.ok("c", 1, json!({"c": 1}));
    assert_eq!(dispatched(&d), vec![("d".into(), 1)]);
    let d = run.ok("d", 1, json!({"done": true}));
    assert_eq!(completed(&d), Some(RunStatus::Succeeded));
    assert_eq!(run.state.status, RunStatus::Succeeded);
    // Without `output`, the run's output is the outputs of the steps nothing depends on.
    assert_eq!(run.state.output, Some(json!({"d": {"done": true}})));
    run.assert_chain();
}

const WHEN: &str = r#"
name: when
steps:
  - {id: check, tool: http, with: {url: "http://x/check"}}
  - id: notify
    needs: [check]
    when: ".steps.check.output.late == true"
    tool: http
    with: {url: "http://x/notify"}
  - {id: followup, needs: [notify], tool: http, with: {url: "http://x/followup"}}
  - {id: after_followup, needs: [followup], tool: http, with: {url: "http://x/aff"}}
  - id: report
    needs: [notify]
    when: '.steps.notify.status == "skipped"'
    tool: http
    with: {url: "http://x/report"}
"#;

#[test]
fn when_false_skips_with_reason_and_skip_propagates() {
    let (mut run, _) = Run::started(WHEN, json!({}));
    let d = run.ok("check", 1, json!({"late": false}));

    let skip = record(&d, "skip", Some("notify"));
    assert!(skip.reason.contains("`when` was false"), "reason: {}", skip.reason);
    assert_eq!(skip.values, json!({"when": ".steps.check.output.late == true", "result": false}));
    assert_eq!(run.status("notify"), NodeStatus::Skipped);

    let skip = record(&d, "skip", Some("followup"));
    assert_eq!(skip.reason, "need `notify` was skipped");
    assert_eq!(skip.values, json!({"skipped_need": "notify"}));
    // Transitively: a step needing a skipped-by-propagation step is skipped too.
    let skip = record(&d, "skip", Some("after_followup"));
    assert_eq!(skip.reason, "need `followup` was skipped");
    for k in ["notify", "followup", "after_followup"] {
        assert_eq!(run.status(k), NodeStatus::Skipped, "{k}");
        assert!(!dispatched_nodes(&d).contains(k), "{k} must not be dispatched");
    }
    run.assert_chain();
}

#[test]
fn dependent_reading_status_of_skipped_step_is_not_auto_skipped() {
    let (mut run, _) = Run::started(WHEN, json!({}));
    let d = run.ok("check", 1, json!({"late": false}));
    assert_eq!(run.status("notify"), NodeStatus::Skipped);
    let met = record(&d, "condition_met", Some("report"));
    assert_eq!(met.values["result"], json!(true));
    assert_eq!(dispatched(&d), vec![("report".into(), 1)]);
    let d = run.ok("report", 1, json!("reported"));
    assert_eq!(completed(&d), Some(RunStatus::Succeeded));
    run.assert_chain();
}

#[test]
fn when_true_runs_the_step() {
    let (mut run, _) = Run::started(WHEN, json!({}));
    let d = run.ok("check", 1, json!({"late": true}));
    record(&d, "condition_met", Some("notify"));
    assert_eq!(dispatched(&d), vec![("notify".into(), 1)]);
    // `report` reads notify's status, so it waits for notify to end, then its `when` is false.
    let d = run.ok("notify", 1, json!({}));
    record(&d, "skip", Some("report"));
    assert_eq!(dispatched(&d), vec![("followup".into(), 1)]);
}

// ---------------------------------------------------------------------------------------------
// Retries
// ---------------------------------------------------------------------------------------------

#[test]
fn retry_exponential_backoff_schedules_doubling_capped_delays() {
    let yaml = r#"
name: retry
steps:
  - id: call
    tool: http
    with: {url: "http://x/call"}
    retry: {max_attempts: 4, backoff: exponential, initial: 1s, max: 3s, jitter: none}
"#;
    let (mut run, d) = Run::started(yaml, json!({}));
    assert_eq!(dispatched(&d), vec![("call".into(), 1)]);

    let mut t = T0;
    for (attempt, delay) in [(1u32, 1_000u64), (2, 2_000), (3, 3_000)] {
        t += 250;
        let d = run.at(t).fail("call", attempt, "http_5xx");
        let due = t + delay;
        assert_eq!(scheduled(&d), vec![(format!("retry/call/{}", attempt + 1), due)], "attempt {attempt}");
        assert!(dispatched(&d).is_empty(), "no dispatch before the backoff");
        let r = record(&d, "retry", Some("call"));
        assert_eq!(r.values["delay_ms"], json!(delay));
        assert_eq!(r.values["backoff_ms"], json!(delay));
        assert_eq!(r.values["next_attempt"], json!(attempt + 1));
        assert_eq!(r.values["error"]["kind"], json!("http_5xx"));
        assert_eq!(run.status("call"), NodeStatus::RetryScheduled);
        t = due;
        let d = run.at(t).fire(&format!("retry/call/{}", attempt + 1));
        assert_eq!(dispatched(&d), vec![("call".into(), attempt + 1)]);
        assert_eq!(dispatches(&d)[0].idempotency_key, format!("run-1/call/0/{}", attempt + 1));
    }
    let d = run.at(t + 1).fail("call", 4, "http_5xx");
    assert!(scheduled(&d).is_empty());
    let r = record(&d, "attempts_exhausted", Some("call"));
    assert!(r.reason.contains("all 4 attempts used"), "{}", r.reason);
    assert_eq!(completed(&d), Some(RunStatus::Failed));
    assert_eq!(run.status("call"), NodeStatus::Failed);
    assert_eq!(run.state.error.as_ref().map(|e| e.kind.as_str()), Some("http_5xx"));
    run.assert_chain();
}

const RETRY_ON: &str = r#"
name: retry-on
steps:
  - id: call
    tool: http
    with: {url: "http://x/call"}
    retry: {max_attempts: 3, backoff: fixed, initial: 1s, on: [http_5xx]}
"#;

#[test]
fn retry_only_on_listed_kinds() {
    // A kind not in `retry.on` fails at once, attempts left notwithstanding.
    let (mut run, _) = Run::started(RETRY_ON, json!({}));
    let d = run.at(T0 + 10).fail("call", 1, "http_4xx");
    assert!(scheduled(&d).is_empty(), "http_4xx is not retried");
    assert!(dispatched(&d).is_empty());
    let r = record(&d, "attempts_exhausted", Some("call"));
    assert!(r.reason.contains("`http_4xx` is not in `retry.on`"), "{}", r.reason);
    record(&d, "fail_step", Some("call"));
    assert_eq!(completed(&d), Some(RunStatus::Failed));
    assert_eq!(run.node("call").attempt, 1);
    assert_eq!(run.state.error.as_ref().map(|e| e.kind.as_str()), Some("http_4xx"));

    // A listed kind is retried (fixed backoff: the same delay each time).
    let (mut run, _) = Run::started(RETRY_ON, json!({}));
    let d = run.at(T0 + 10).fail("call", 1, "http_5xx");
    assert_eq!(scheduled(&d), vec![("retry/call/2".into(), T0 + 1_010)]);
    run.at(T0 + 1_010).fire("retry/call/2");
    let d = run.at(T0 + 1_020).fail("call", 2, "http_5xx");
    assert_eq!(scheduled(&d), vec![("retry/call/3".into(), T0 + 2_020)]);
    // Default `retry.on` does not include `timeout` here because `on` was given.
    run.at(T0 + 2_020).fire("retry/call/3");
    let d = run.at(T0 + 2_030).fail("call", 3, "timeout");
    assert!(record(&d, "attempts_exhausted", Some("call")).reason.contains("`timeout` is not in `retry.on`"));
}

#[test]
fn retry_after_lengthens_the_delay_but_never_shortens_it() {
    let yaml = r#"
name: retry-after
steps:
  - id: call
    tool: http
    with: {url: "http://x/call"}
    retry: {max_attempts: 3, backoff: fixed, initial: 1s, jitter: none, on: [http_429]}
"#;
    let (mut run, _) = Run::started(yaml, json!({}));
    let mut err = StepError::new("http_429", "slow down");
    err.retry_after_ms = Some(5_000);
    let d = run.at(T0 + 100).fail_with("call", 1, err);
    assert_eq!(scheduled(&d), vec![("retry/call/2".into(), T0 + 5_100)]);
    let r = record(&d, "retry", Some("call"));
    assert_eq!(r.values["backoff_ms"], json!(1_000));
    assert_eq!(r.values["delay_ms"], json!(5_000));
    assert_eq!(r.values["retry_after_ms"], json!(5_000));

    run.at(T0 + 5_100).fire("retry/call/2");
    let mut err = StepError::new("http_429", "slow down a bit");
    err.retry_after_ms = Some(200);
    let d = run.at(T0 + 5_200).fail_with("call", 2, err);
    assert_eq!(
        scheduled(&d),
        vec![("retry/call/3".into(), T0 + 6_200)],
        "a Retry-After shorter than the backoff keeps the backoff"
    );
}

#[test]
fn retry_timer_fired_early_or_twice_is_ignored() {
    let (mut run, _) = Run::started(RETRY_ON, json!({}));
    run.at(T0 + 10).fail("call", 1, "http_5xx");
    let d = run.at(T0 + 1_010).fire("retry/call/2");
    assert_eq!(dispatched(&d), vec![("call".into(), 2)]);
    let d = run.fire("retry/call/2");
    assert_eq!(decisions(&d), vec!["ignore"]);
    assert!(d.commands.is_empty());
}

// ---------------------------------------------------------------------------------------------
// Timeouts
// ---------------------------------------------------------------------------------------------

#[test]
fn timeout_fails_the_attempt_and_its_late_result_is_ignored() {
    let yaml = r#"
name: timeout
steps:
  - id: call
    tool: http
    with: {url: "http://x/call"}
    timeout: 30s
    retry: {max_attempts: 2, backoff: fixed, initial: 1s}
"#;
    let (mut run, d) = Run::started(yaml, json!({}));
    assert_eq!(dispatches(&d)[0].timeout_ms, Some(30_000));
    assert_eq!(scheduled(&d), vec![("timeout/call/1".into(), T0 + 30_000)]);

    let d = run.at(T0 + 30_000).fire("timeout/call/1");
    let r = record(&d, "retry", Some("call"));
    assert_eq!(r.values["error"]["kind"], json!("timeout"));
    assert_eq!(scheduled(&d), vec![("retry/call/2".into(), T0 + 31_000)]);
    assert_eq!(run.node("call").error().map(|e| e.kind.as_str()), Some("timeout"));

    // The timed-out attempt answers late: ignored, nothing changes.
    let before = run.state.clone();
    let d = run.at(T0 + 30_500).ok("call", 1, json!({"late": true}));
    let r = record(&d, "ignore", Some("call"));
    assert!(r.reason.contains("stale or duplicate"), "{}", r.reason);
    assert!(d.commands.is_empty());
    assert_eq!(run.status("call"), NodeStatus::RetryScheduled);
    assert_eq!(run.state.nodes, before.nodes);

    let d = run.at(T0 + 31_000).fire("retry/call/2");
    assert_eq!(dispatched(&d), vec![("call".into(), 2)]);
    assert_eq!(scheduled(&d), vec![("timeout/call/2".into(), T0 + 61_000)]);
    let d = run.at(T0 + 32_000).ok("call", 2, json!({"ok": 2}));
    assert_eq!(cancelled_timers(&d), vec!["timeout/call/2".to_string()]);
    assert_eq!(completed(&d), Some(RunStatus::Succeeded));
    assert_eq!(run.node("call").output().cloned(), Some(json!({"ok": 2})));
    // The disarmed timeout firing after the run ended changes nothing.
    let d = run.at(T0 + 61_000).fire("timeout/call/2");
    assert!(decisions(&d).is_empty());
    run.assert_chain();
}

#[test]
fn timeout_without_retry_fails_the_step_with_kind_timeout() {
    let yaml = r#"
name: timeout-once
steps:
  - {id: call, tool: http, with: {url: "http://x/call"}, timeout: 5s}
"#;
    let (mut run, _) = Run::started(yaml, json!({}));
    let d = run.at(T0 + 5_000).fire("timeout/call/1");
    assert_eq!(completed(&d), Some(RunStatus::Failed));
    assert_eq!(run.status("call"), NodeStatus::Failed);
    assert_eq!(run.state.error.as_ref().map(|e| e.kind.as_str()), Some("timeout"));
    let d = run.at(T0 + 6_000).ok("call", 1, json!(1));
    assert!(decisions(&d).is_empty(), "the run has ended: the late result changes nothing");
    assert_eq!(run.status("call"), NodeStatus::Failed);
}

// ---------------------------------------------------------------------------------------------
// Fallback
// ---------------------------------------------------------------------------------------------

#[test]
fn fallback_stands_in_and_dependents_run() {
    let yaml = r#"
name: fallback
steps:
  - id: primary
    tool: http
    with: {url: "http://x/primary"}
    fallback: backup
  - {id: backup, tool: http, with: {url: "http://x/backup"}}
  - id: after
    needs: [primary]
    tool: http
    with: {url: "http://x/after/{{ .steps.primary.output.source }}"}
"#;
    let (mut run, d) = Run::started(yaml, json!({}));
    assert_eq!(dispatched(&d), vec![("primary".into(), 1)], "a fallback step is not scheduled by the DAG");
    let d = run.fail("primary", 1, "http_4xx");
    record(&d, "fall_back", Some("primary"));
    assert_eq!(dispatched(&d), vec![("backup~primary".into(), 1)]);
    assert_eq!(run.status("primary"), NodeStatus::Waiting);

    let d = run.ok("backup~primary", 1, json!({"source": "backup"}));
    record(&d, "fell_back", Some("primary"));
    assert_eq!(run.status("primary"), NodeStatus::FellBack);
    assert_eq!(run.node("primary").output().cloned(), Some(json!({"source": "backup"})));
    let ds = dispatches(&d);
    assert_eq!(ds.len(), 1);
    assert_eq!(ds[0].node, "after");
    assert_eq!(ds[0].input, json!({"url": "http://x/after/backup"}));

    let d = run.ok("after", 1, json!("done"));
    assert_eq!(completed(&d), Some(RunStatus::Succeeded));
    run.assert_chain();
}

#[test]
fn failing_fallback_fails_the_step() {
    let yaml = r#"
name: fallback-fails
steps:
  - {id: primary, tool: http, with: {url: "http://x/p"}, fallback: backup}
  - {id: backup, tool: http, with: {url: "http://x/b"}}
  - {id: after, needs: [primary], tool: http, with: {url: "http://x/a"}}
"#;
    let (mut run, _) = Run::started(yaml, json!({}));
    run.fail("primary", 1, "http_4xx");
    let d = run.fail("backup~primary", 1, "http_5xx");
    assert_eq!(run.status("primary"), NodeStatus::Failed);
    assert!(dispatched(&d).is_empty());
    assert_eq!(completed(&d), Some(RunStatus::Failed));
}

// ---------------------------------------------------------------------------------------------
// for_each
// ---------------------------------------------------------------------------------------------

const EACH: &str = r#"
name: each
steps:
  - id: each
    for_each: ".input.items"
    max_concurrency: 2
    tool: http
    with: {url: "http://x/{{ .item }}"}
"#;

#[test]
fn for_each_keeps_item_order_and_bounds_concurrency() {
    let items = [10, 20, 30, 40, 50, 60, 70];
    let (mut run, d) = Run::started(EACH, json!({"items": items}));
    record(&d, "fan_out", Some("each"));
    let mut outstanding: Vec<Dispatch> = dispatches(&d).into_iter().cloned().collect();
    assert_eq!(outstanding.len(), 2, "max_concurrency 2");
    let mut seen = BTreeSet::new();
    let mut last = None;
    // Answer the newest outstanding item first, so completion order differs from item order.
    while let Some(x) = outstanding.pop() {
        let i: usize = x.node["each[".len()..x.node.len() - 1].parse().unwrap();
        assert_eq!(x.input, json!({"url": format!("http://x/{}", items[i])}));
        assert!(seen.insert(x.node.clone()), "item dispatched twice");
        let d = run.ok(&x.node, x.attempt, json!({"i": i, "v": items[i]}));
        outstanding.extend(dispatches(&d).into_iter().cloned());
        assert!(outstanding.len() <= 2, "more than max_concurrency items outstanding: {outstanding:?}");
        last = Some(d);
    }
    assert_eq!(seen.len(), items.len());
    let expected: Vec<Value> = items.iter().enumerate().map(|(i, v)| json!({"i": i, "v": v})).collect();
    assert_eq!(run.node("each").output().cloned(), Some(Value::Array(expected.clone())));
    assert_eq!(completed(&last.unwrap()), Some(RunStatus::Succeeded));
    assert_eq!(run.state.output, Some(json!({"each": expected})));
    run.assert_chain();
}

#[test]
fn for_each_over_no_items_succeeds_with_an_empty_array() {
    let (run, d) = Run::started(EACH, json!({"items": []}));
    assert!(dispatched(&d).is_empty());
    assert_eq!(completed(&d), Some(RunStatus::Succeeded));
    assert_eq!(run.node("each").output().cloned(), Some(json!([])));
}

#[test]
fn for_each_starts_no_items_after_its_attempts_are_exhausted() {
    let yaml = r#"
name: each-fallback
steps:
  - id: each
    for_each: ".input.items"
    max_concurrency: 2
    tool: http
    with: {url: "http://x/{{ .item }}"}
    fallback: backup
  - {id: backup, tool: http, with: {url: "http://x/backup"}}
  - {id: after, needs: [each], tool: http, with: {url: "http://x/after"}}
"#;
    let (mut run, d) = Run::started(yaml, json!({"items": [1, 2, 3, 4]}));
    assert_eq!(dispatched(&d), vec![("each[0]".into(), 1), ("each[1]".into(), 1)]);
    let d = run.fail("each[0]", 1, "http_4xx");
    assert_eq!(dispatched(&d), vec![("backup~each".into(), 1)]);
    // Item 1 was in flight and now succeeds: the step already gave up on its items, so no
    // further item may start.
    let d = run.ok("each[1]", 1, json!(1));
    assert_eq!(dispatched(&d), vec![], "no item may start once the for_each step's attempts are exhausted");
    let d = run.ok("backup~each", 1, json!("fb"));
    assert_eq!(run.status("each"), NodeStatus::FellBack);
    assert_eq!(dispatched(&d), vec![("after".into(), 1)]);
    assert!(
        run.state.open.iter().all(|k| !k.starts_with("each[")),
        "no item is still open once the step fell back: {:?}",
        run.state.open
    );
}

#[test]
fn for_each_runs_its_fallback_once() {
    let yaml = r#"
name: each-fallback-twice
steps:
  - id: each
    for_each: ".input.items"
    max_concurrency: 2
    tool: http
    with: {url: "http://x/{{ .item }}"}
    fallback: backup
  - {id: backup, tool: http, with: {url: "http://x/backup"}}
"#;
    let (mut run, _) = Run::started(yaml, json!({"items": [1, 2]}));
    let d = run.fail("each[0]", 1, "http_4xx");
    assert_eq!(dispatched(&d), vec![("backup~each".into(), 1)]);
    let d = run.fail("each[1]", 1, "http_4xx");
    assert_eq!(run.count("fall_back", "each"), 1, "the fallback starts once: {:#?}", d.audit);
    assert!(dispatched(&d).is_empty(), "the fallback is not dispatched again");
}

// ---------------------------------------------------------------------------------------------
// Loops
// ---------------------------------------------------------------------------------------------

fn loop_yaml(then: &str) -> String {
    format!(
        r#"
name: loop
steps:
  - id: refine
    loop:
      max_iterations: 3
      until: ".steps.draft.output.score >= 2"
      then: {then}
      escalate: {{to: qa}}
      steps:
        - id: draft
          tool: http
          with: {{url: "http://x/draft/{{{{ .iteration }}}}"}}
  - {{id: publish, needs: [refine], tool: http, with: {{url: "http://x/publish"}}}}
"#
    )
}

#[test]
fn loop_stops_when_until_is_true_on_iteration_two() {
    let (mut run, d) = Run::started(&loop_yaml("fail"), json!({}));
    assert_eq!(dispatched(&d), vec![("draft#1".into(), 1)]);
    assert_eq!(dispatches(&d)[0].input, json!({"url": "http://x/draft/1"}));
    assert_eq!(dispatches(&d)[0].idempotency_key, "run-1/draft/1/1");

    let d = run.ok("draft#1", 1, json!({"score": 1}));
    let r = record(&d, "loop_again", Some("refine"));
    assert_eq!(r.values["result"], json!(false));
    assert_eq!(dispatched(&d), vec![("draft#2".into(), 1)]);
    assert_eq!(dispatches(&d)[0].input, json!({"url": "http://x/draft/2"}));

    let d = run.ok("draft#2", 1, json!({"score": 2}));
    let r = record(&d, "succeed_step", Some("refine"));
    assert!(r.reason.contains("after iteration 2"), "{}", r.reason);
    assert_eq!(run.status("refine"), NodeStatus::Succeeded);
    assert_eq!(run.node("refine").output().cloned(), Some(json!({"draft": {"score": 2}})));
    assert_eq!(dispatched(&d), vec![("publish".into(), 1)]);
    assert!(!run.state.nodes.contains_key("draft#3"));
    let d = run.ok("publish", 1, json!(null));
    assert_eq!(completed(&d), Some(RunStatus::Succeeded));
    run.assert_chain();
}

/// Runs three iterations that never meet `until`; returns the decision of the last.
fn exhaust_loop(run: &mut Run) -> Decision {
    run.ok("draft#1", 1, json!({"score": 0}));
    run.ok("draft#2", 1, json!({"score": 1}));
    run.ok("draft#3", 1, json!({"score": 1}))
}

#[test]
fn loop_then_fail_fails_with_loop_exhausted() {
    let (mut run, _) = Run::started(&loop_yaml("fail"), json!({}));
    let d = exhaust_loop(&mut run);
    record(&d, "loop_bound", Some("refine"));
    assert_eq!(run.status("refine"), NodeStatus::Failed);
    assert_eq!(run.node("refine").error().map(|e| e.kind.as_str()), Some("loop_exhausted"));
    assert!(dispatched(&d).is_empty(), "publish must not run");
    assert_eq!(completed(&d), Some(RunStatus::Failed));
    assert_eq!(run.state.error.as_ref().map(|e| e.kind.as_str()), Some("loop_exhausted"));
    assert!(!run.state.nodes.contains_key("draft#4"));
}

#[test]
fn loop_then_continue_succeeds_with_last_iteration() {
    let (mut run, _) = Run::started(&loop_yaml("continue"), json!({}));
    let d = exhaust_loop(&mut run);
    assert_eq!(run.status("refine"), NodeStatus::Succeeded);
    assert_eq!(run.node("refine").output().cloned(), Some(json!({"draft": {"score": 1}})));
    assert_eq!(dispatched(&d), vec![("publish".into(), 1)]);
    assert!(!run.state.nodes.contains_key("draft#4"));
}

fn open_tasks(d: &Decision) -> Vec<(TaskId, String, String)> {
    d.commands
        .iter()
        .filter_map(|c| match c {
            Command::OpenTask { task, node, queue, .. } => Some((task.clone(), node.to_string(), queue.clone())),
            _ => None,
        })
        .collect()
}

#[test]
fn loop_then_escalate_approve_continues() {
    let (mut run, _) = Run::started(&loop_yaml("escalate"), json!({}));
    let d = exhaust_loop(&mut run);
    record(&d, "escalate_loop", Some("refine"));
    let tasks = open_tasks(&d);
    assert_eq!(tasks.len(), 1);
    let (task, node, queue) = &tasks[0];
    assert_eq!((node.as_str(), queue.as_str()), ("refine", "qa"));
    assert_eq!(run.status("refine"), NodeStatus::Waiting);
    assert!(dispatched(&d).is_empty());

    let d = run.answer(task, Verdict::Approve);
    assert!(d.commands.contains(&Command::CloseTask { task: task.clone(), outcome: "answered".into() }));
    assert_eq!(run.status("refine"), NodeStatus::Succeeded);
    assert_eq!(run.node("refine").output().cloned(), Some(json!({"draft": {"score": 1}})));
    assert_eq!(dispatched(&d), vec![("publish".into(), 1)]);
    // A second answer to the closed task is ignored.
    let d = run.answer(task, Verdict::Reject);
    assert_eq!(decisions(&d), vec!["ignore"]);
    assert_eq!(run.status("refine"), NodeStatus::Succeeded);
}

#[test]
fn loop_then_escalate_reject_fails() {
    let (mut run, _) = Run::started(&loop_yaml("escalate"), json!({}));
    let d = exhaust_loop(&mut run);
    let task = open_tasks(&d)[0].0.clone();
    let d = run.answer(&task, Verdict::Reject);
    assert_eq!(run.status("refine"), NodeStatus::Failed);
    assert_eq!(run.node("refine").error().map(|e| e.kind.as_str()), Some("rejected"));
    assert!(dispatched(&d).is_empty());
    assert_eq!(completed(&d), Some(RunStatus::Failed));
}

// ---------------------------------------------------------------------------------------------
// Compensation and cancel
// ---------------------------------------------------------------------------------------------

const SAGA: &str = r#"
name: saga
steps:
  - {id: a, tool: http, with: {url: "http://x/a"}}
  - {id: b, needs: [a], tool: http, with: {url: "http://x/b"}}
  - {id: c, needs: [b], tool: http, with: {url: "http://x/c"}}
  - {id: undo_a, tool: http, with: {url: "http://x/undo_a"}}
  - {id: undo_b, tool: http, with: {url: "http://x/undo_b/{{ .steps.b.output.id }}"}}
compensate:
  a: undo_a
  b: undo_b
"#;

#[test]
fn compensation_runs_newest_first_when_a_later_step_fails() {
    let (mut run, d) = Run::started(SAGA, json!({}));
    assert_eq!(dispatched(&d), vec![("a".into(), 1)]);
    run.ok("a", 1, json!({"id": "A"}));
    run.ok("b", 1, json!({"id": "B"}));
    let d = run.fail("c", 1, "http_4xx");
    record(&d, "stop_run", None);
    let r = record(&d, "compensate", None);
    assert_eq!(r.values, json!({"order": ["b", "a"]}));
    let ds = dispatches(&d);
    assert_eq!(ds.len(), 1, "one compensation at a time");
    assert_eq!(ds[0].node, "undo_b~b");
    assert_eq!(ds[0].input, json!({"url": "http://x/undo_b/B"}));
    assert_eq!(completed(&d), None);

    let d = run.ok("undo_b~b", 1, json!("undone b"));
    assert_eq!(dispatched(&d), vec![("undo_a~a".into(), 1)]);
    assert_eq!(completed(&d), None);
    let d = run.ok("undo_a~a", 1, json!("undone a"));
    assert_eq!(completed(&d), Some(RunStatus::Failed));
    assert_eq!(run.state.status, RunStatus::Failed);
    assert_eq!(run.state.error.as_ref().and_then(|e| e.step.as_deref()), Some("c"));
    assert_eq!(run.count("compensate_step", "undo_b~b"), 1);
    assert_eq!(run.count("compensate_step", "undo_a~a"), 1);
    run.assert_chain();
}

#[test]
fn cancel_waits_for_in_flight_steps_then_compensates() {
    let (mut run, _) = Run::started(SAGA, json!({}));
    run.ok("a", 1, json!({"id": "A"}));
    let d = run.send(EventKind::CancelRequested { reason: "operator".into() });
    record(&d, "cancel_run", None);
    assert!(dispatched(&d).is_empty(), "b is still in flight; compensation waits");
    assert_eq!(completed(&d), None);

    // b ends after the cancel: it counts as completed and is compensated too, newest first.
    let d = run.ok("b", 1, json!({"id": "B"}));
    assert_eq!(record(&d, "compensate", None).values, json!({"order": ["b", "a"]}));
    assert_eq!(dispatched(&d), vec![("undo_b~b".into(), 1)]);
    assert!(!run.state.nodes.contains_key("c"), "c never starts");
    let d = run.ok("undo_b~b", 1, json!(null));
    assert_eq!(dispatched(&d), vec![("undo_a~a".into(), 1)]);
    let d = run.ok("undo_a~a", 1, json!(null));
    assert_eq!(completed(&d), Some(RunStatus::Cancelled));
    assert_eq!(run.state.status, RunStatus::Cancelled);
    // The run has ended: further events change nothing and the log stays closed.
    let d = run.send(EventKind::CancelRequested { reason: "again".into() });
    assert!(decisions(&d).is_empty());
    run.assert_chain();
}

#[test]
fn cancel_while_fallback_runs_ends_the_step_once() {
    let yaml = r#"
name: cancel-fallback
steps:
  - {id: primary, tool: http, with: {url: "http://x/p"}, fallback: backup}
  - {id: backup, tool: http, with: {url: "http://x/b"}}
"#;
    for backup_succeeds in [true, false] {
        let (mut run, _) = Run::started(yaml, json!({}));
        run.fail("primary", 1, "http_4xx");
        assert_eq!(run.status("primary"), NodeStatus::Waiting);
        run.send(EventKind::CancelRequested { reason: "stop".into() });
        let after_cancel = run.status("primary");
        let d = if backup_succeeds {
            run.ok("backup~primary", 1, json!("fb"))
        } else {
            run.fail("backup~primary", 1, "http_4xx")
        };
        assert_eq!(completed(&d), Some(RunStatus::Cancelled));
        if after_cancel.is_terminal() {
            assert_eq!(
                run.status("primary"),
                after_cancel,
                "a node that ended keeps its status (backup succeeds: {backup_succeeds})"
            );
        }
        let ends = run
            .audit
            .iter()
            .filter(|r| {
                r.node.as_deref() == Some("primary")
                    && ["cancel_step", "fell_back", "fail_step"].contains(&r.decision.as_str())
            })
            .count();
        assert_eq!(ends, 1, "primary ends once: {:#?}", run.audit);
    }
}

#[test]
fn cancel_stops_waiting_steps_at_once() {
    let yaml = r#"
name: cancel-wait
steps:
  - {id: nap, tool: sleep, with: {for: 1h}}
  - {id: ask, tool: human, with: {queue: ops, prompt: "ok?"}}
"#;
    let (mut run, _) = Run::started(yaml, json!({}));
    let d = run.send(EventKind::CancelRequested { reason: "no longer needed".into() });
    assert_eq!(run.status("nap"), NodeStatus::Cancelled);
    assert_eq!(run.status("ask"), NodeStatus::Cancelled);
    assert!(cancelled_timers(&d).contains(&"wake/nap/1".to_string()));
    assert!(d.commands.iter().any(|c| matches!(c, Command::CloseTask { .. })));
    assert_eq!(completed(&d), Some(RunStatus::Cancelled));
}

// ---------------------------------------------------------------------------------------------
// Human steps and sleep
// ---------------------------------------------------------------------------------------------

#[test]
fn human_step_escalates_then_answer_becomes_output() {
    let yaml = r#"
name: human
steps:
  - id: approve
    tool: human
    with: {queue: ops, prompt: "Refund {{ .input.order }}?"}
    escalate: {after: 1h, to: managers}
"#;
    let (mut run, d) = Run::started(yaml, json!({"order": "A-1"}));
    let (task, node, queue) = open_tasks(&d).remove(0);
    assert_eq!((node.as_str(), queue.as_str()), ("approve", "ops"));
    assert!(d.commands.iter().any(|c| matches!(
        c,
        Command::OpenTask { prompt, .. } if prompt == "Refund A-1?"
    )));
    assert_eq!(scheduled(&d), vec![("escalate/approve/1/0".into(), T0 + 3_600_000)]);
    assert_eq!(run.status("approve"), NodeStatus::Waiting);

    let d = run.at(T0 + 3_600_000).fire("escalate/approve/1/0");
    assert!(d.commands.contains(&Command::ReassignTask { task: task.clone(), to: "managers".into() }));
    let r = record(&d, "escalate", Some("approve"));
    assert_eq!(r.values["to"], json!("managers"));
    assert_eq!(run.state.tasks[&task].queue, "managers");

    let d = run.at(T0 + 3_700_000).send(EventKind::HumanResolved {
        task: task.clone(),
        answer: HumanAnswer {
            decision: Verdict::Approve,
            data: json!({"amount": 5}),
            comment: Some("fine".into()),
            by: Some("mia".into()),
            principal: None,
        },
    });
    let expected = json!({"decision": "approve", "data": {"amount": 5}, "comment": "fine", "by": "mia"});
    assert_eq!(run.node("approve").output().cloned(), Some(expected.clone()));
    assert_eq!(completed(&d), Some(RunStatus::Succeeded));
    assert_eq!(run.state.output, Some(json!({"approve": expected})));
    run.assert_chain();
}

#[test]
fn human_reject_is_an_answer_not_a_failure() {
    let yaml = r#"
name: human-reject
steps:
  - {id: approve, tool: human, with: {queue: ops, prompt: "ok?"}}
  - {id: after, needs: [approve], tool: http, with: {url: "http://x/{{ .steps.approve.output.decision }}"}}
"#;
    let (mut run, d) = Run::started(yaml, json!({}));
    let task = open_tasks(&d).remove(0).0;
    let d = run.answer(&task, Verdict::Reject);
    assert_eq!(run.status("approve"), NodeStatus::Succeeded);
    assert_eq!(dispatches(&d)[0].input, json!({"url": "http://x/reject"}));
}

#[test]
fn an_unanswered_task_takes_its_on_timeout_answer_after_the_escalations() {
    let yaml = r#"
name: human-default
steps:
  - id: approve
    tool: human
    timeout: 8h
    escalate: [{after: 4h, to: l2}, {after: 6h, to: manager}]
    on_timeout: {decision: reject, comment: "nobody answered in a working day"}
    with: {queue: ops, prompt: "ok?"}
  - {id: after, needs: [approve], tool: http, with: {url: "http://x/{{ .steps.approve.output.decision }}"}}
"#;
    let (mut run, d) = Run::started(yaml, json!({}));
    let task = open_tasks(&d).remove(0).0;
    run.at(T0 + 4 * 3_600_000).fire("escalate/approve/1/0");
    run.at(T0 + 6 * 3_600_000).fire("escalate/approve/1/1");
    assert_eq!(run.state.tasks[&task].queue, "manager");
    let d = run.at(T0 + 8 * 3_600_000).fire("timeout/approve/1");
    assert_eq!(run.status("approve"), NodeStatus::Succeeded);
    let out = run.node("approve").output().cloned().expect("output");
    assert_eq!(out["decision"], "reject");
    assert_eq!(out["by"], "on_timeout");
    assert_eq!(out["comment"], "nobody answered in a working day");
    assert!(
        d.commands
            .contains(&Command::CloseTask { task: task.clone(), outcome: "timed out; on_timeout answered".into() })
    );
    let r = record(&d, "succeed_step", Some("approve"));
    assert!(r.reason.contains("within 8h: `on_timeout` answers reject"), "{}", r.reason);
    assert_eq!(dispatches(&d)[0].input, json!({"url": "http://x/reject"}));
    // The person's late answer finds the task closed.
    run.answer(&task, Verdict::Approve);
    assert_eq!(run.count("ignore", "approve"), 0, "an answer to a closed task names no node");
    run.assert_chain();
}

#[test]
fn on_timeout_needs_a_human_step_with_a_timeout_and_data_matching_its_form() {
    let yaml = r#"
name: bad-default
steps:
  - id: approve
    tool: human
    on_timeout: {decision: approve, data: {}}
    with: {queue: ops, prompt: "ok?", form: {type: object, required: [reference]}}
  - {id: fetch, tool: http, timeout: 1s, on_timeout: {decision: reject}, with: {url: "http://x"}}
  - id: approve2
    tool: human
    timeout: 1h
    on_timeout: {decision: approve, data: {}}
    with: {queue: ops, prompt: "ok?", form: {type: object, required: [reference]}}
"#;
    let problems = baton_core::load_definition(None, yaml).unwrap_err();
    let text: Vec<String> = problems.iter().map(|p| p.to_string()).collect();
    let all = text.join("\n");
    assert!(all.contains("step `approve`: field `on_timeout`: `on_timeout` answers when `timeout` passes"), "{all}");
    assert!(all.contains("step `fetch`: field `on_timeout`: `on_timeout` applies to `tool: human` steps"), "{all}");
    assert!(all.contains("step `approve2`: field `on_timeout.data`: does not match the task's form"), "{all}");
}

#[test]
fn sleep_step_wakes_on_its_timer() {
    let yaml = r#"
name: sleep
steps:
  - {id: nap, tool: sleep, with: {for: 5m}}
  - {id: after, needs: [nap], tool: http, with: {url: "http://x/after"}}
"#;
    let (mut run, d) = Run::started(yaml, json!({}));
    assert_eq!(scheduled(&d), vec![("wake/nap/1".into(), T0 + 300_000)]);
    assert!(dispatched(&d).is_empty());
    assert_eq!(run.status("nap"), NodeStatus::Waiting);
    let d = run.at(T0 + 300_000).fire("wake/nap/1");
    assert_eq!(run.status("nap"), NodeStatus::Succeeded);
    assert_eq!(run.node("nap").output().cloned(), Some(json!({"woke_at": T0 + 300_000})));
    assert_eq!(dispatched(&d), vec![("after".into(), 1)]);
    let d = run.fire("wake/nap/1");
    assert_eq!(decisions(&d), vec!["ignore"]);
}

// ---------------------------------------------------------------------------------------------
// Stale input and the audit chain
// ---------------------------------------------------------------------------------------------

#[test]
fn duplicate_and_stale_results_are_ignored() {
    let yaml = format!("name: dup\nsteps:\n{}{}", http("a"), http("b"));
    let (mut run, _) = Run::started(&yaml, json!({}));
    let d = run.ok("a", 1, json!(1));
    record(&d, "succeed_step", Some("a"));

    let before = run.state.nodes.clone();
    for d in [
        run.ok("a", 1, json!(2)),
        run.fail("a", 1, "http_5xx"),
        run.ok("b", 2, json!(3)),
        run.ok("nope", 1, json!(4)),
        run.fire("retry/a/2"),
        run.send(EventKind::RunStarted { input: json!({"again": true}), seed: 1, memory: None, engine: 0 }),
    ] {
        assert_eq!(decisions(&d), vec!["ignore"], "{:#?}", d.audit);
        assert!(d.commands.is_empty());
    }
    assert_eq!(run.state.nodes, before, "ignored events change no node");
    assert_eq!(run.node("a").output().cloned(), Some(json!(1)));
    assert_eq!(run.state.input, json!({}));
    assert_eq!(run.count("succeed_step", "a"), 1);

    let d = run.ok("b", 1, json!(5));
    assert_eq!(completed(&d), Some(RunStatus::Succeeded));
    let d = run.ok("b", 1, json!(6));
    assert!(d.audit.is_empty() && d.commands.is_empty(), "the log of an ended run is closed");
    run.assert_chain();
}

/// Drives `workflows/order-triage/workflow.yaml` to its end, answering transform calls with the value
/// the engine resolved and approving the refund.
#[test]
fn audit_chain_of_a_full_run_verifies_and_detects_tampering() {
    let yaml = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/../../workflows/order-triage/workflow.yaml"));
    let mut run = Run::new(yaml);
    let mut queue: Vec<Command> = run
        .send(EventKind::RunStarted {
            input: json!({"order_id": "O-7", "promised_by": 120}),
            seed: 3,
            memory: None,
            engine: 0,
        })
        .commands;
    let mut steps = 0;
    while let Some(c) = (!queue.is_empty()).then(|| queue.remove(0)) {
        steps += 1;
        assert!(steps < 100, "run does not end");
        let d = match c {
            Command::Dispatch(x) => {
                assert_eq!(x.tool, "transform");
                run.ok(&x.node, x.attempt, x.input["value"].clone())
            }
            Command::OpenTask { task, .. } => run.answer(&task, Verdict::Approve),
            _ => continue,
        };
        queue.extend(d.commands);
    }
    assert_eq!(run.state.status, RunStatus::Succeeded);
    assert_eq!(run.state.output, Some(json!({"order": "O-7", "late": true, "refund": "approve"})));
    assert_eq!(
        run.node("lines").output().cloned(),
        Some(json!([
            {"sku": "A-1", "reserved": true, "position": 0},
            {"sku": "B-7", "reserved": true, "position": 1}
        ]))
    );

    let seqs: Vec<u64> = run.audit.iter().map(|r| r.seq).collect();
    assert_eq!(seqs, (1..=run.audit.len() as u64).collect::<Vec<_>>());
    assert_eq!(run.state.audit_seq, run.audit.len() as u64);
    assert_eq!(run.state.audit_head, run.audit.last().map(|r| r.hash.clone()).unwrap());
    run.assert_chain();

    let mut edited = run.audit.clone();
    edited[3].reason.push('!');
    assert!(verify_chain(&edited).is_err(), "an edited record is detected");
    let mut dropped = run.audit.clone();
    dropped.remove(2);
    assert!(verify_chain(&dropped).is_err(), "a removed record is detected");
    let mut swapped = run.audit.clone();
    swapped.swap(1, 2);
    assert!(verify_chain(&swapped).is_err(), "reordered records are detected");
}

#[test]
fn a_wait_event_step_ends_with_the_event_that_matches_and_escalates_meanwhile() {
    let yaml = r#"
name: wait
input_schema: {type: object, required: [order_id]}
steps:
  - id: payment
    tool: wait_event
    timeout: 1h
    escalate: {after: 30m, to: billing}
    with:
      pattern: {source: [shop.payments]}
      correlate: {event: ".detail.order_id", run: ".input.order_id"}
  - {id: after, needs: [payment], tool: http, with: {url: "http://x/{{ .steps.payment.output.detail.amount }}"}}
"#;
    let (mut run, d) = Run::started(yaml, json!({"order_id": "A-7"}));
    let wait = d
        .commands
        .iter()
        .find_map(|c| match c {
            Command::OpenTask { task, wait: Some(w), .. } => Some((task.clone(), w.clone())),
            _ => None,
        })
        .expect("a wait opens");
    assert!(wait.0.as_str().starts_with("w-"), "{}", wait.0);
    assert_eq!(
        wait.1,
        json!({"pattern": {"source": ["shop.payments"]}, "correlate_event": ".detail.order_id", "key": "A-7"})
    );
    assert_eq!(run.status("payment"), NodeStatus::Waiting);
    assert!(!d.commands.iter().any(|c| matches!(c, Command::EmitEvent { name, .. } if name == "HumanTaskCreated")));
    // A person cannot answer a wait.
    run.answer(&wait.0, Verdict::Approve);
    assert_eq!(run.status("payment"), NodeStatus::Waiting);
    let d = run.at(T0 + 1_800_000).fire("escalate/payment/1/0");
    assert!(d.commands.contains(&Command::ReassignTask { task: wait.0.clone(), to: "billing".into() }));
    let event = json!({"id": "e1", "source": "shop.payments", "detail-type": "PaymentReceived", "detail": {"order_id": "A-7", "amount": 12}});
    let d = run.at(T0 + 2_000_000).send(EventKind::EventReceived { task: wait.0.clone(), payload: event.clone() });
    assert_eq!(run.node("payment").output().cloned(), Some(event.clone()));
    assert!(d.commands.contains(&Command::CloseTask { task: wait.0.clone(), outcome: "event received".into() }));
    assert!(d.commands.contains(&Command::CancelTimer { id: "timeout/payment/1".into() }));
    assert_eq!(dispatches(&d)[0].input, json!({"url": "http://x/12"}));
    let r = record(&d, "succeed_step", Some("payment"));
    assert_eq!(
        r.reason,
        "event `PaymentReceived` from `shop.payments` ended wait `".to_owned() + wait.0.as_str() + "`"
    );
    // The same event again (a redelivery) is ignored with its reason.
    let d = run.send(EventKind::EventReceived { task: wait.0.clone(), payload: event });
    assert!(record(&d, "ignore", None).reason.contains("is not open"));
    run.assert_chain();
}

#[test]
fn an_unmet_wait_times_out_like_any_attempt() {
    let yaml = r#"
name: wait-timeout
steps:
  - {id: payment, tool: wait_event, timeout: 10m, with: {pattern: {source: [shop.payments]}}}
"#;
    let (mut run, d) = Run::started(yaml, json!({}));
    let (task, wait) = d
        .commands
        .iter()
        .find_map(|c| match c {
            Command::OpenTask { task, wait: Some(w), .. } => Some((task.clone(), w.clone())),
            _ => None,
        })
        .expect("a wait");
    assert_eq!(wait["key"], Value::Null, "no correlation: any matching event ends it");
    let d = run.at(T0 + 600_000).fire("timeout/payment/1");
    assert_eq!(run.status("payment"), NodeStatus::Failed);
    assert!(d.commands.contains(&Command::CloseTask { task, outcome: "timed out".into() }));
    assert_eq!(completed(&d), Some(RunStatus::Failed));
}

#[test]
fn an_http_step_on_a_connection_gets_its_base_url_headers_auth_timeout_and_network() {
    let yaml = r#"
name: mesh
network: {allow_hosts: [crm.internal]}
connections:
  crm:
    base_url: https://crm.internal/api/
    headers: {Accept: application/json, X-Tenant: "{{ .input.tenant }}"}
    auth: {bearer: '{{ secret("CRM_TOKEN") }}'}
    timeout: 5s
    allow_private: true
steps:
  - id: order
    tool: http
    with: {connection: crm, path: "/orders/{{ .input.id }}", headers: {accept: text/plain}}
"#;
    let (_run, d) = Run::started(yaml, json!({"tenant": "acme", "id": "A-1"}));
    let input = &dispatches(&d)[0].input;
    assert_eq!(input["url"], "https://crm.internal/api/orders/A-1");
    assert_eq!(input["connection"], "crm", "the audited command names the API");
    assert_eq!(input["headers"]["accept"], "text/plain", "the step's header wins, whatever its case");
    assert!(input["headers"].get("Accept").is_none());
    assert_eq!(input["headers"]["X-Tenant"], "acme");
    let auth = input["headers"]["Authorization"].as_str().expect("auth header");
    assert!(auth.starts_with("Bearer ") && auth.contains("baton-secret:CRM_TOKEN"), "only the placeholder: {auth}");
    assert_eq!(input["timeout"], "5s");
    assert_eq!(input["network"], json!({"allow_private": true, "strict": false, "allow_hosts": ["crm.internal"]}));
    assert!(input.get("path").is_none());
}

#[test]
fn connection_mistakes_are_named_with_their_field() {
    let yaml = r#"
name: bad-mesh
connections:
  crm: {base_url: "ftp://crm", auth: {bearer: x, api_key: {header: X-Key, value: y}}}
  reads_steps: {base_url: "https://x/{{ .steps.a.output }}"}
steps:
  - {id: a, tool: http, with: {connection: cmr, path: "/x"}}
  - {id: b, tool: http, with: {connection: crm, path: "orders"}}
  - {id: c, tool: http, with: {url: "https://x", connection: crm}}
  - {id: d, tool: http, with: {url: "https://x", path: "/y"}}
"#;
    let all: String = baton_core::load_definition(None, yaml).unwrap_err().iter().map(|p| format!("{p}\n")).collect();
    for needle in [
        "field `connections.crm.base_url`: `base_url` must start with https://",
        "field `connections.crm.auth`: `auth` takes exactly one of `bearer`, `api_key` or `aws_sigv4`",
        "field `connections.reads_steps`: reads `.steps.a`: a connection may read `.input` and `secret()`, not steps",
        "step `a`: field `with.connection`: no connection `cmr` in `connections`",
        "step `b`: field `with.path`: `path` is appended to the connection's base URL: start it with `/`",
        "step `c`: field `with.connection`: `http` takes `url` or `connection` (with `path`), not both",
        "step `d`: field `with.path`: `path` goes with `connection`",
    ] {
        assert!(all.contains(needle), "missing `{needle}` in:\n{all}");
    }
    let shape = "name: t\nconnections: {crm: {base_url: \"https://x\", timeout: soon}}\nsteps: [{id: a, tool: transform, with: {expr: \"1\"}}]\n";
    let shape: String = baton_core::load_definition(None, shape).unwrap_err().iter().map(|p| p.to_string()).collect();
    assert!(shape.contains("field `connections.crm.timeout`: invalid duration `soon`"), "{shape}");
}

const AGENT: &str = r#"
name: agent-loop
output: .steps.resolve.output
steps:
  - id: resolve
    tool: agent
    retry: {max_attempts: 2, initial: 1s}
    with:
      model: m
      goal: 'Find the status of order {{ .input.order }}'
      max_turns: 3
      output_schema: {type: object, required: [status], properties: {status: {type: string}}}
      tools:
        - name: lookup
          description: Looks an order up.
          parameters: {type: object, required: [id], properties: {id: {type: string}}}
          http: {url: 'https://shop.example/orders/{{ .args.id }}'}
"#;

#[test]
fn agent_turns_are_llm_calls_and_each_tool_call_is_a_node_of_its_own() {
    let (mut run, d) = Run::started(AGENT, json!({"order": "A-1"}));
    let turn1 = "resolve~resolve.1.1";
    let first = dispatches(&d);
    assert_eq!(first.len(), 1);
    assert_eq!((first[0].node.as_str(), first[0].tool.as_str(), first[0].step.as_str()), (turn1, "llm", "resolve"));
    let prompt = first[0].input["prompt"].as_str().expect("prompt");
    assert!(
        prompt.contains("Find the status of order A-1") && prompt.contains("turn 1 of 3") && prompt.contains("lookup")
    );
    assert!(first[0].input["output_schema"]["anyOf"].is_array(), "a turn may call or answer");
    // The model asks for two calls, one of a tool that does not exist.
    let d = run.ok(
        turn1,
        1,
        json!({"action": "call", "calls": [{"tool": "lookup", "arguments": {"id": "A-1"}}, {"tool": "refund", "arguments": {}}]}),
    );
    let call = "resolve.lookup~resolve.1.1.0";
    assert_eq!(dispatched(&d), vec![(call.to_owned(), 1)]);
    assert_eq!(dispatches(&d)[0].input["url"], "https://shop.example/orders/A-1");
    // A crash now re-issues only the call in flight, with the same idempotency key.
    let again = baton_core::engine::in_flight(&run.plan, &run.state);
    let keys: Vec<String> = again
        .iter()
        .filter_map(|c| match c {
            Command::Dispatch(x) => Some(x.idempotency_key.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(keys, vec![dispatches(&d)[0].idempotency_key.clone()]);
    // A transient failure is retried as the call's own attempt 2.
    run.fail(call, 1, "http_5xx");
    let retry = run.state.timers.keys().find(|t| t.starts_with("retry/resolve.lookup")).cloned().expect("retry timer");
    run.at(T0 + 60_000);
    let d = run.fire(&retry);
    assert_eq!(dispatched(&d), vec![(call.to_owned(), 2)]);
    let d = run.ok(call, 2, json!({"status": 200, "body": {"state": "shipped"}}));
    let turn2 = "resolve~resolve.1.2";
    let next = dispatches(&d);
    assert_eq!(next[0].node, turn2);
    let prompt = next[0].input["prompt"].as_str().expect("prompt");
    assert!(prompt.contains("shipped") && prompt.contains("there is no tool `refund`"), "{prompt}");
    let d = run.ok(turn2, 1, json!({"action": "answer", "answer": {"status": "shipped"}}));
    assert!(d.commands.iter().any(|c| matches!(c, Command::CompleteRun { status: RunStatus::Succeeded })));
    assert_eq!(run.state.output, Some(json!({"status": "shipped"})));
    assert_eq!(run.count("agent_calls", "resolve"), 1);
    run.assert_chain();
}

#[test]
fn the_last_agent_turn_may_only_answer_and_a_failed_turn_fails_the_agent() {
    let (mut run, _) = Run::started(AGENT, json!({"order": "A-2"}));
    let mut turn = 1;
    loop {
        let key = format!("resolve~resolve.1.{turn}");
        let d = run.ok(&key, 1, json!({"action": "call", "calls": [{"tool": "lookup", "arguments": {"id": "x"}}]}));
        let call = format!("resolve.lookup~resolve.1.{turn}.0");
        assert_eq!(dispatched(&d), vec![(call.clone(), 1)]);
        let d = run.ok(&call, 1, json!({"status": 404}));
        turn += 1;
        let next = dispatches(&d);
        if turn == 3 {
            assert!(next[0].input["output_schema"].get("anyOf").is_none(), "the last turn's schema only answers");
            assert!(next[0].input["prompt"].as_str().unwrap_or_default().contains("last turn"));
            break;
        }
    }
    // A transient failure of a turn is retried (the agent's retry policy) ...
    run.fail("resolve~resolve.1.3", 1, "http_5xx");
    let retry = run.state.timers.keys().next().cloned().expect("turn retry");
    run.at(T0 + 60_000);
    let d = run.fire(&retry);
    assert_eq!(dispatched(&d), vec![("resolve~resolve.1.3".to_owned(), 2)]);
    // ... and when the model still gives no valid answer, the agent fails.
    run.fail("resolve~resolve.1.3", 2, "llm_invalid_output");
    assert_eq!(run.state.status, RunStatus::Failed);
    assert_eq!(run.node("resolve").error().map(|e| e.kind.as_str()), Some("llm_invalid_output"));
    assert!(run.node("resolve").error().is_some_and(|e| e.message.contains("turn 3")));
}

#[test]
fn agent_mistakes_are_named_with_their_field() {
    let yaml = r#"
name: bad-agent
steps:
  - {id: first, tool: transform, with: {expr: '1'}}
  - id: a
    tool: agent
    for_each: '[1]'
    max_concurrency: 1
    with:
      model: m
      temperature: 9
      goal: 'Use {{ .steps.first.output }}'
      max_turns: 0
      tools:
        - {name: look, http: {url: 'https://x', connection: c, method: FETCH, verb: 1}}
        - {name: look, workflow: child}
        - {name: 'no spaces', memory: search}
        - {name: both, workflow: w, memory: read}
"#;
    let all: String = baton_core::load_definition(None, yaml).unwrap_err().iter().map(|p| format!("{p}\n")).collect();
    for needle in [
        "step `a`: field `for_each`: `for_each` cannot go with `agent`",
        "step `a`: field `with.temperature`: `temperature` is a number from 0 to 2",
        "step `a`: field `with.max_turns`: `max_turns` is a whole number from 1 to 50",
        "step `a`: field `with.output_schema`: `agent` needs `with.output_schema`",
        "step `a`: field `with.tools[0].http.connection`: `url` or `connection` (with `path`), not both",
        "step `a`: field `with.tools[0].http.method`: method must be GET",
        "step `a`: field `with.tools[0].http.verb`: unknown argument `verb`",
        "step `a`: field `with.tools[1].name`: two tools are called `look`",
        "step `a`: field `with.tools[2].name`: a tool needs a `name` of letters, digits",
        "step `a`: field `with.tools[3]`: a tool does one thing: it has workflow and memory",
    ] {
        assert!(all.contains(needle), "missing `{needle}` in:\n{all}");
    }
    // Its goal and its tools read only what is upstream of the agent, as any step's arguments.
    let reads = r#"
name: agent-reads
steps:
  - {id: first, tool: transform, with: {expr: '1'}}
  - id: a
    tool: agent
    with:
      model: m
      goal: 'Use {{ .steps.first.output }}'
      output_schema: {type: object}
      tools: [{name: t, http: {url: 'https://x/{{ .steps.nope.output }}'}}]
"#;
    let all: String = baton_core::load_definition(None, reads).unwrap_err().iter().map(|p| format!("{p}\n")).collect();
    assert!(all.contains("field `with.goal`: reads `.steps.first`, but `first` is not upstream of `a`"), "{all}");
    assert!(all.contains("field `with.tools[0].http.url`: reads `.steps.nope`, but there is no step `nope`"), "{all}");
}

#[test]
fn agent_steps_take_defaults_from_defaults_llm_then_defaults_agent() {
    let yaml = r#"
name: agent-defaults
defaults:
  llm: {model: from-llm, temperature: 0}
  agent: {model: from-agent, max_turns: 1}
steps:
  - id: a
    tool: agent
    with: {goal: g, output_schema: {type: object}}
"#;
    let (_, d) = Run::started(yaml, json!({}));
    let turn = dispatches(&d)[0].input.clone();
    assert_eq!(turn["model"], "from-agent", "defaults.agent wins over defaults.llm");
    assert_eq!(turn["temperature"], 0);
    assert!(turn["prompt"].as_str().unwrap_or_default().contains("turn 1 of 1"));
    assert!(turn["output_schema"].get("anyOf").is_none(), "max_turns 1: the first turn is the last");
    let bad = "name: x\ndefaults: {agent: {goal: g}}\nsteps:\n  - {id: a, tool: transform, with: {expr: '1'}}\n";
    let all: String = baton_core::load_definition(None, bad).unwrap_err().iter().map(|p| format!("{p}\n")).collect();
    assert!(all.contains("`goal` cannot be a default of `agent` steps"), "{all}");
}
