//! An agent's `budget` on the pure state machine: token counts come from each turn's `llm`
//! report, tool calls are counted as the model asks for them, wall time from the loop's start;
//! over any limit the attempt fails with `budget_exceeded`, the figures in the message and in an
//! `agent_budget_exceeded` record, and a `fallback` catches it like any error.

use baton_core::audit::AuditRecord;
use baton_core::engine::{Command, Decision, Event, EventKind, RunState, RunStatus, decide, new_run};
use baton_core::{Plan, load_definition};
use serde_json::{Value, json};

const T0: u64 = 1_700_000_000_000;

fn agent(budget: &str) -> String {
    format!(
        r#"
name: budgeted
output: .steps
steps:
  - id: agent
    tool: agent
    fallback: sorry
    with:
      model: m
      goal: 'Look up order {{{{ .input.order }}}}'
      max_turns: 5
      output_schema: {{type: object}}
      budget: {budget}
      tools:
        - {{name: lookup, http: {{url: 'https://shop.example/orders/1'}}}}
  - {{id: sorry, tool: transform, with: {{expr: '"over budget"'}}}}
"#
    )
}

struct Run {
    plan: Plan,
    state: RunState,
    now: u64,
    audit: Vec<AuditRecord>,
}

impl Run {
    fn started(budget: &str) -> Self {
        let plan = load_definition(None, &agent(budget)).unwrap_or_else(|p| panic!("{p:#?}"));
        let state = new_run(&plan, "run-1", T0);
        let mut run = Self { plan, state, now: T0, audit: vec![] };
        run.send(EventKind::RunStarted { input: json!({"order": "A-1"}), seed: 7, memory: None, engine: 0 });
        run
    }

    fn send(&mut self, kind: EventKind) -> Decision {
        let d = decide(&self.plan, &mut self.state, &Event { at: self.now, kind });
        self.audit.extend(d.audit.iter().cloned());
        d
    }

    /// A turn answers `decision`, having used `tokens` (prompt, completion) at `usd`.
    fn turn(&mut self, n: u32, decision: Value, tokens: (u64, u64), usd: f64) -> Decision {
        let report = json!({"usage": {"prompt_tokens": tokens.0, "completion_tokens": tokens.1, "total_tokens": tokens.0 + tokens.1}, "cost_usd": usd});
        let node = format!("agent~agent.1.{n}");
        self.send(EventKind::StepSucceeded {
            node: node.as_str().into(),
            attempt: 1,
            output: decision,
            mocked: false,
            report: Some(report),
        })
    }

    fn call_returns(&mut self, node: &str) -> Decision {
        self.send(EventKind::StepSucceeded {
            node: node.into(),
            attempt: 1,
            output: json!({"status": 200}),
            mocked: false,
            report: None,
        })
    }

    fn budget_record(&self) -> Option<&AuditRecord> {
        self.audit.iter().find(|r| r.decision == "agent_budget_exceeded")
    }

    fn agent_error(&self) -> (String, String) {
        let e = self.state.nodes.get("agent").and_then(|n| n.error()).expect("the agent failed");
        (e.kind.to_string(), e.message.clone())
    }
}

fn lookup(n: usize) -> Value {
    let calls: Vec<Value> = (0..n).map(|i| json!({"tool": "lookup", "arguments": {"i": i}})).collect();
    json!({"action": "call", "calls": calls})
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
fn tokens_over_the_budget_fail_the_agent_and_its_fallback_runs() {
    let mut run = Run::started("{max_tokens: 100}");
    let d = run.turn(1, lookup(1), (60, 10), 0.001);
    assert_eq!(dispatched(&d), vec!["agent.lookup~agent.1.1.0"], "70 of 100 tokens: the call runs");
    run.call_returns("agent.lookup~agent.1.1.0");
    let d = run.turn(2, lookup(1), (50, 5), 0.001);
    assert!(
        !dispatched(&d).iter().any(|n| n.starts_with("agent.lookup")),
        "no call after the budget: {:?}",
        d.commands
    );
    let (kind, message) = run.agent_error();
    assert_eq!(kind, "budget_exceeded");
    assert!(message.contains("125 tokens > max_tokens 100"), "{message}");
    let rec = run.budget_record().expect("the figures are recorded");
    assert_eq!((rec.values["input_tokens"].as_u64(), rec.values["output_tokens"].as_u64()), (Some(110), Some(15)));
    assert_eq!(run.state.status, RunStatus::Running, "the fallback runs: {:?}", run.state.status);
}

#[test]
fn tool_calls_usd_and_wall_time_are_limited_too() {
    let mut run = Run::started("{max_tool_calls: 2}");
    run.turn(1, lookup(2), (1, 1), 0.0);
    run.call_returns("agent.lookup~agent.1.1.0");
    run.call_returns("agent.lookup~agent.1.1.1");
    run.turn(2, lookup(1), (1, 1), 0.0);
    assert!(run.agent_error().1.contains("3 tool calls > max_tool_calls 2"), "{:?}", run.agent_error());

    let mut run = Run::started("{max_usd: 0.01}");
    run.turn(1, lookup(1), (1, 1), 0.02);
    assert!(run.agent_error().1.contains("0.02 USD > max_usd 0.01"), "{:?}", run.agent_error());

    let mut run = Run::started("{max_duration: 1m}");
    run.turn(1, lookup(1), (1, 1), 0.0);
    run.now = T0 + 61_000;
    run.call_returns("agent.lookup~agent.1.1.0");
    assert!(run.agent_error().1.contains("61000 ms > max_duration 60000 ms"), "{:?}", run.agent_error());
}

#[test]
fn a_bad_budget_is_reported_at_its_field() {
    let problems = load_definition(None, &agent("{max_tokens: 0, max_usd: -1, max_duration: soon, tokens: 5}"))
        .expect_err("invalid");
    let all: String = problems.iter().map(|p| format!("{p}\n")).collect();
    for needle in [
        "field `with.budget.max_tokens`: `max_tokens` is a whole number above 0",
        "field `with.budget.max_usd`: `max_usd` is a number above 0",
        "field `with.budget.max_duration`",
        "field `with.budget.tokens`",
    ] {
        assert!(all.contains(needle), "`{needle}` in\n{all}");
    }
}
