//! Approval gates inside an agent loop, on the pure state machine: a gated call opens a task on
//! the gate's queue with the proposed call and the model's reason, the gate's escalation and
//! timeout timers are armed like any task's, an escalation reassigns it, and a timeout ends the
//! call with the error the next turn shows the model. Calls the condition lets through run at
//! once.

use baton_core::audit::verify_chain;
use baton_core::engine::{Command, Decision, Event, EventKind, HumanAnswer, RunState, Verdict, decide, new_run};
use baton_core::{Plan, load_definition};
use serde_json::{Value, json};

const T0: u64 = 1_700_000_000_000;

const GATED: &str = r#"
name: refunds
steps:
  - id: agent
    tool: agent
    with:
      model: m
      goal: 'Settle ticket {{ .input.ticket }}'
      max_turns: 3
      output_schema: {type: object}
      tools:
        - name: refund
          parameters: {type: object, required: [amount], properties: {amount: {type: number}}}
          http: {method: POST, url: 'https://pay.example/refunds'}
          approval: {when: '.args.amount > 500', queue: finance, timeout: 1h, escalate: {after: 30m, to: cfo}}
"#;

struct Run {
    plan: Plan,
    state: RunState,
    now: u64,
    audit: Vec<baton_core::audit::AuditRecord>,
}

impl Run {
    fn started() -> (Self, Decision) {
        let plan = load_definition(None, GATED).unwrap_or_else(|p| panic!("{p:#?}"));
        let state = new_run(&plan, "run-1", T0);
        let mut run = Self { plan, state, now: T0, audit: vec![] };
        let d = run.send(EventKind::RunStarted { input: json!({"ticket": "T-9"}), seed: 7, memory: None, engine: 0 });
        (run, d)
    }

    fn send(&mut self, kind: EventKind) -> Decision {
        let d = decide(&self.plan, &mut self.state, &Event { at: self.now, kind });
        self.audit.extend(d.audit.iter().cloned());
        d
    }

    fn ok(&mut self, node: &str, output: Value) -> Decision {
        self.send(EventKind::StepSucceeded { node: node.into(), attempt: 1, output, mocked: false, report: None })
    }

    fn decisions(&self) -> Vec<&str> {
        self.audit.iter().map(|r| r.decision.as_str()).collect()
    }
}

fn calls(amounts: &[u64]) -> Value {
    let calls: Vec<Value> = amounts
        .iter()
        .map(|a| json!({"tool": "refund", "arguments": {"amount": a}, "reason": format!("refund {a} for a broken item")}))
        .collect();
    json!({"action": "call", "calls": calls})
}

#[test]
fn a_gated_call_opens_a_task_that_escalates_and_times_out_like_any_other() {
    let (mut run, d) = Run::started();
    let turn = d.commands.iter().find_map(|c| match c {
        Command::Dispatch(x) => Some(x.clone()),
        _ => None,
    });
    let turn = turn.expect("the first turn");
    let schema = turn.input["output_schema"].to_string();
    assert!(schema.contains(r#""required":["tool","arguments","reason"]"#), "{schema}");

    // One call over the threshold, one under it.
    let d = run.ok("agent~agent.1.1", calls(&[900, 20]));
    let mut opened = None;
    let mut timers = vec![];
    let mut dispatched = vec![];
    for c in &d.commands {
        match c {
            Command::OpenTask { task, queue, prompt, summary, .. } => {
                opened = Some((task.clone(), queue.clone(), prompt.clone(), *summary))
            }
            Command::ScheduleTimer { id, at } => timers.push((id.clone(), *at)),
            Command::Dispatch(x) => dispatched.push(x.node.to_string()),
            _ => {}
        }
    }
    let (_task, queue, prompt, summary) = opened.expect("a task for the large refund");
    assert_eq!(queue, "finance");
    assert!(summary, "the task carries the handover summary");
    assert!(
        prompt.contains("`refund`")
            && prompt.contains(r#"{"amount":900}"#)
            && prompt.contains("refund 900 for a broken item"),
        "{prompt}"
    );
    assert_eq!(dispatched, vec!["agent.refund~agent.1.1.1".to_owned()], "the small refund runs at once");
    // The gate's escalation and timeout; the small refund's call has its 15-minute default limit.
    let (call, gate): (Vec<_>, Vec<_>) = timers.iter().partition(|(id, _)| id.ends_with("agent.refund~agent.1.1.1/1"));
    assert_eq!(gate.iter().map(|(_, at)| at - T0).collect::<Vec<_>>(), vec![30 * 60_000, 60 * 60_000]);
    assert_eq!(call.iter().map(|(_, at)| at - T0).collect::<Vec<_>>(), vec![15 * 60_000]);

    run.ok("agent.refund~agent.1.1.1", json!({"status": 201}));
    // The escalation reassigns the task to the next level.
    run.now = T0 + 30 * 60_000;
    let d = run.send(EventKind::TimerFired { timer: timers[0].0.clone() });
    assert!(
        d.commands.iter().any(|c| matches!(c, Command::ReassignTask { to, .. } if to == "cfo")),
        "{:?}",
        d.commands
    );
    // Nobody answers: the gate's timeout ends the call, and the next turn tells the model.
    run.now = T0 + 60 * 60_000;
    let d = run.send(EventKind::TimerFired { timer: timers[1].0.clone() });
    let next = d.commands.iter().find_map(|c| match c {
        Command::Dispatch(x) if x.node.as_str() == "agent~agent.1.2" => Some(x.input["prompt"].to_string()),
        _ => None,
    });
    let next = next.expect("the second turn");
    assert!(next.contains("failed (timeout)") && next.contains("approval"), "{next}");
    assert!(run.decisions().contains(&"agent_approval_requested"));
    assert!(run.decisions().contains(&"agent_call_unapproved"));
    verify_chain(&run.audit).expect("the audit chain verifies");
}

#[test]
fn an_answer_decides_the_call_approve_runs_the_changed_arguments_reject_returns_the_comment() {
    let (mut run, _) = Run::started();
    let d = run.ok("agent~agent.1.1", calls(&[900, 700]));
    let tasks: Vec<String> = d
        .commands
        .iter()
        .filter_map(|c| match c {
            Command::OpenTask { task, .. } => Some(task.to_string()),
            _ => None,
        })
        .collect();
    assert_eq!(tasks.len(), 2);
    let answer = |decision, data: Value, comment: &str| HumanAnswer {
        decision,
        data,
        comment: Some(comment.into()),
        by: Some("ana".into()),
        principal: None,
    };
    let d = run.send(EventKind::HumanResolved {
        task: tasks[0].as_str().into(),
        answer: answer(Verdict::Approve, json!({"arguments": {"amount": 450}}), "half now"),
    });
    let call = d.commands.iter().find_map(|c| match c {
        Command::Dispatch(x) => Some(x.clone()),
        _ => None,
    });
    let call = call.expect("the approved call starts");
    assert_eq!(call.node.as_str(), "agent.refund~agent.1.1.a0");
    assert_eq!(call.input["body"], json!({"amount": 450}), "the changed arguments are sent");
    run.send(EventKind::HumanResolved {
        task: tasks[1].as_str().into(),
        answer: answer(Verdict::Reject, Value::Null, "not without a receipt"),
    });
    let d = run.ok("agent.refund~agent.1.1.a0", json!({"status": 201}));
    let next = d.commands.iter().find_map(|c| match c {
        Command::Dispatch(x) => Some(x.input["prompt"].to_string()),
        _ => None,
    });
    let next = next.expect("the second turn");
    assert!(next.contains("not without a receipt"), "the model reads the comment: {next}");
    assert!(next.contains(r#"refund({\"amount\":450})"#), "the call shows the arguments that ran: {next}");
    assert!(run.decisions().contains(&"agent_call_approved") && run.decisions().contains(&"agent_call_rejected"));
}
