//! Property tests of the run state machine over randomly generated DAG workflows and a random
//! simulated world (tool calls answered in random order with random outcomes, timers fired,
//! duplicates and stale events re-delivered, cancels).

use std::collections::{BTreeMap, HashMap};

use baton_core::audit::verify_chain;
use baton_core::engine::{
    Command, Decision, Dispatch, Event, EventKind, NodeStatus, RunState, StepError, decide, new_run,
};
use baton_core::ids::NodeKey;
use baton_core::{Plan, load_definition};
use proptest::prelude::*;
use serde_json::{Value, json};

const T0: u64 = 1_700_000_000_000;
const FLAGS: usize = 4;
const ERROR_KINDS: [&str; 3] = ["http_5xx", "http_4xx", "timeout"];

/// A generated `when`.
#[derive(Debug, Clone)]
enum When {
    /// `.input.f<k>`.
    Flag(usize),
    /// `.steps.<need>.status == "succeeded"` (reads a need's status: not auto-skipped).
    NeedSucceeded(usize),
    /// `.steps.<need>.output.ok == true`.
    NeedOutputOk(usize),
}

/// A generated step `s<i>`.
#[derive(Debug, Clone)]
struct StepSpec {
    /// Indexes of earlier steps it needs.
    needs: Vec<usize>,
    /// `retry.max_attempts`, when it has a retry policy.
    retry: Option<u32>,
    when: Option<When>,
    /// Has a fallback step `fb_s<i>`.
    fallback: bool,
    /// Is compensated by a step `undo_s<i>`.
    compensate: bool,
}

fn step_spec(i: usize) -> impl Strategy<Value = StepSpec> {
    (
        prop::collection::vec(prop::bool::weighted(0.4), i),
        prop::option::weighted(0.5, 1u32..=3),
        prop::option::weighted(0.35, (0usize..3, 0usize..8)),
        prop::bool::weighted(0.2),
        prop::bool::weighted(0.3),
    )
        .prop_map(|(mask, retry, when, fallback, compensate)| {
            let needs: Vec<usize> = mask.iter().enumerate().filter(|(_, b)| **b).map(|(j, _)| j).collect();
            let when = when.map(|(kind, k)| match (kind, needs.is_empty()) {
                (1, false) => When::NeedSucceeded(needs[k % needs.len()]),
                (2, false) => When::NeedOutputOk(needs[k % needs.len()]),
                _ => When::Flag(k % FLAGS),
            });
            StepSpec { needs, retry, when, fallback, compensate }
        })
}

fn workflow() -> impl Strategy<Value = Vec<StepSpec>> {
    (1usize..=7).prop_flat_map(|n| (0..n).map(step_spec).collect::<Vec<_>>())
}

/// The YAML text of a generated workflow.
fn yaml(specs: &[StepSpec]) -> String {
    let mut y = String::from("name: generated\nsteps:\n");
    let mut roles = String::new();
    let mut compensate = String::new();
    for (i, s) in specs.iter().enumerate() {
        y.push_str(&format!("  - id: s{i}\n    tool: http\n    with: {{url: \"http://x\"}}\n"));
        if !s.needs.is_empty() {
            let needs: Vec<String> = s.needs.iter().map(|j| format!("s{j}")).collect();
            y.push_str(&format!("    needs: [{}]\n", needs.join(", ")));
        }
        if let Some(k) = s.retry {
            y.push_str(&format!("    retry: {{max_attempts: {k}, backoff: fixed, initial: 1s, jitter: none}}\n"));
        }
        match &s.when {
            None => {}
            Some(When::Flag(k)) => y.push_str(&format!("    when: '.input.f{k}'\n")),
            Some(When::NeedSucceeded(j)) => y.push_str(&format!("    when: '.steps.s{j}.status == \"succeeded\"'\n")),
            Some(When::NeedOutputOk(j)) => y.push_str(&format!("    when: '.steps.s{j}.output.ok == true'\n")),
        }
        if s.fallback {
            y.push_str(&format!("    fallback: fb_s{i}\n"));
            roles.push_str(&format!("  - id: fb_s{i}\n    tool: http\n    with: {{url: \"http://x/fb\"}}\n"));
        }
        if s.compensate {
            compensate.push_str(&format!("  s{i}: undo_s{i}\n"));
            roles.push_str(&format!("  - id: undo_s{i}\n    tool: http\n    with: {{url: \"http://x/undo\"}}\n"));
        }
    }
    y.push_str(&roles);
    if !compensate.is_empty() {
        y.push_str("compensate:\n");
        y.push_str(&compensate);
    }
    y
}

/// splitmix64, for the simulated world's choices.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
}

/// Everything one simulated run produced.
struct Trace {
    events: Vec<Event>,
    decisions: Vec<Decision>,
    state: RunState,
    /// Events that did real work: the start, one per answered dispatch, one per fired armed
    /// timer, the cancel. Re-delivered duplicates and stale timers are not counted.
    productive: u64,
}

/// Applies one event, checking the per-decision invariants.
fn step(
    plan: &Plan,
    state: &mut RunState,
    ended: &mut HashMap<NodeKey, NodeStatus>,
    event: Event,
    trace: &mut Vec<(Event, Decision)>,
    strict: bool,
) -> Result<Decision, TestCaseError> {
    let was_done = state.status.is_terminal();
    let d = decide(plan, state, &event);
    if was_done {
        prop_assert!(d.audit.is_empty() && d.commands.is_empty(), "the log of an ended run is closed");
    } else {
        prop_assert!(!d.audit.is_empty(), "every event of a live run leaves an audit record");
    }
    for c in &d.commands {
        if let Command::Dispatch(x) = c {
            prop_assert!(!was_done, "dispatch after the run ended: {x:?}");
            // (a) A DAG node is dispatched only once all its needs' nodes have ended. Checked
            // on the state after the decision; sound because a terminal node never becomes
            // non-terminal again (checked below), and a need that ended in this very decision
            // must have ended before the dispatch (its first record precedes the dispatch's).
            if !x.node.contains('~') {
                let s = plan.step(&x.node).expect("dispatched node names a step");
                for &n in &s.needs {
                    let need = &plan.steps[n].id;
                    let status = state.nodes.get(need.as_str()).map(|n| n.status());
                    prop_assert!(
                        status.is_some_and(|s| s.is_terminal()),
                        "{} dispatched while its need {need} is {status:?}",
                        x.node
                    );
                    let need_end = d.audit.iter().position(|r| r.node.as_deref() == Some(need.as_str()));
                    let dispatch_at = d
                        .audit
                        .iter()
                        .position(|r| r.decision == "dispatch" && r.node.as_deref() == Some(x.node.as_str()));
                    if let (Some(e), Some(p)) = (need_end, dispatch_at) {
                        prop_assert!(e < p, "{need} ended after {} was dispatched", x.node);
                    }
                }
            }
        }
    }
    // A node that ended stays ended; with `strict`, its status never changes at all.
    for (k, n) in &state.nodes {
        if let Some(prev) = ended.get(k) {
            prop_assert!(n.status().is_terminal(), "ended node {} is {:?} again", k, n.status());
            if strict {
                prop_assert_eq!(*prev, n.status(), "ended node {} changed status", k);
            }
        } else if n.status().is_terminal() {
            ended.insert(k.clone(), n.status());
        }
    }
    trace.push((event, d.clone()));
    Ok(d)
}

/// Runs `plan` against a random world driven by `world_seed`.
fn simulate(
    plan: &Plan,
    input: Value,
    seed: u64,
    world_seed: u64,
    cancel_after: Option<u64>,
    strict: bool,
) -> Result<Trace, TestCaseError> {
    let mut rng = Rng(world_seed);
    let mut state = new_run(plan, "run-p", T0);
    let mut ended = HashMap::new();
    let mut trace = Vec::new();
    let mut now = T0;
    let mut outstanding: Vec<Dispatch> = Vec::new();
    let mut timers: BTreeMap<String, u64> = BTreeMap::new();
    let mut gone_timers: Vec<String> = Vec::new();
    let mut answered: Vec<EventKind> = Vec::new();
    let mut productive = 0u64;
    let mut next = Some(EventKind::RunStarted { input, seed, memory: None, engine: 0 });
    let mut cancelled = false;
    let cap = 20 * plan.attempt_bound() + 100;

    for round in 0.. {
        prop_assert!(round < cap, "the driver loop did not end");
        let (kind, noise) = match next.take() {
            Some(k) => (k, false),
            None => {
                if !cancelled && cancel_after.is_some_and(|c| productive >= c) {
                    cancelled = true;
                    (EventKind::CancelRequested { reason: "test".into() }, false)
                } else if rng.chance(15) && !(answered.is_empty() && gone_timers.is_empty()) {
                    // Re-deliver an old result or fire a fired/disarmed timer.
                    let i = rng.below(answered.len() + gone_timers.len());
                    let k = match answered.get(i) {
                        Some(k) => k.clone(),
                        None => EventKind::TimerFired { timer: gone_timers[i - answered.len()].clone() },
                    };
                    (k, true)
                } else if outstanding.is_empty() && timers.is_empty() {
                    break;
                } else {
                    let i = rng.below(outstanding.len() + timers.len());
                    if i < outstanding.len() {
                        let x = outstanding.swap_remove(i);
                        now += 1 + rng.below(50) as u64;
                        let k = if rng.chance(60) {
                            EventKind::StepSucceeded {
                                node: x.node,
                                attempt: x.attempt,
                                output: json!({"ok": rng.chance(50), "r": rng.below(100)}),
                                mocked: false,
                                report: None,
                            }
                        } else {
                            let kind = ERROR_KINDS[rng.below(ERROR_KINDS.len())];
                            EventKind::StepFailed {
                                node: x.node,
                                attempt: x.attempt,
                                error: StepError::new(kind, "simulated"),
                                mocked: false,
                                report: None,
                            }
                        };
                        answered.push(k.clone());
                        (k, false)
                    } else {
                        let id = timers.keys().nth(i - outstanding.len()).cloned().expect("index is within the timers");
                        let at = timers.remove(&id).expect("the timer was just listed");
                        now = now.max(at);
                        gone_timers.push(id.clone());
                        (EventKind::TimerFired { timer: id }, false)
                    }
                }
            }
        };
        if !noise {
            productive += 1;
        }
        let d = step(plan, &mut state, &mut ended, Event { at: now, kind }, &mut trace, strict)?;
        if noise && !state.status.is_terminal() {
            // A duplicate result or a stale timer changes nothing and commands nothing.
            prop_assert_eq!(d.audit.len(), 1);
            prop_assert_eq!(&d.audit[0].decision, "ignore");
            prop_assert!(d.commands.is_empty());
        } else if noise {
            prop_assert!(d.audit.is_empty() && d.commands.is_empty());
        }
        for c in d.commands {
            match c {
                Command::Dispatch(x) => {
                    prop_assert!(
                        !outstanding.iter().any(|o| o.node == x.node && o.attempt == x.attempt),
                        "{}/{} dispatched twice",
                        x.node,
                        x.attempt
                    );
                    outstanding.push(x);
                }
                Command::ScheduleTimer { id, at } => {
                    prop_assert!(at >= now, "timer {id} due in the past");
                    timers.insert(id, at);
                }
                Command::CancelTimer { id } => {
                    timers.remove(&id);
                    gone_timers.push(id);
                }
                _ => {}
            }
        }
    }
    let (events, decisions) = trace.into_iter().unzip();
    Ok(Trace { events, decisions, state, productive })
}

fn input_of(flags: &[bool]) -> Value {
    let mut m = serde_json::Map::new();
    for (k, f) in flags.iter().enumerate() {
        m.insert(format!("f{k}"), json!(f));
    }
    Value::Object(m)
}

/// A generated definition and the world it runs in.
#[derive(Debug, Clone)]
struct Scenario {
    specs: Vec<StepSpec>,
    flags: Vec<bool>,
    seed: u64,
    world_seed: u64,
    cancel_after: Option<u64>,
}

prop_compose! {
    fn scenario()(
        specs in workflow(),
        flags in prop::collection::vec(any::<bool>(), FLAGS),
        seed in any::<u64>(),
        world_seed in any::<u64>(),
        cancel_after in prop::option::weighted(0.2, 0u64..12),
    ) -> Scenario {
        Scenario { specs, flags, seed, world_seed, cancel_after }
    }
}

/// The scenario's definition (its YAML, for failure messages) and plan.
fn plan_of(s: &Scenario) -> (String, Plan) {
    let text = yaml(&s.specs);
    match load_definition(None, &text) {
        Ok(p) => (text, p),
        Err(problems) => panic!("generated definition does not load: {problems:#?}\n{text}"),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn random_dags_in_a_random_world(s in scenario()) {
        let (text, plan) = plan_of(&s);
        let t = simulate(&plan, input_of(&s.flags), s.seed, s.world_seed, s.cancel_after, false)?;

        // (c) The run ends, and within a bound computed from the definition. Every productive
        // event answers one dispatch or fires one armed timer (or starts/cancels the run). In
        // these definitions the only timers are retry timers, so a node of step s makes at most
        // max_attempts(s) dispatches and max_attempts(s) - 1 retry timers: at most
        // 2 * max_attempts(s) events. Each DAG step has one node, each fallback step runs at
        // most once (for its one target) and each compensation step at most once (for its one
        // target), so the total is at most sum over all plan steps of 2 * max_attempts, plus the
        // start and a cancel. `Plan::attempt_bound` is exactly that sum (no loops, no
        // escalations here) plus 4.
        prop_assert!(
            t.state.status.is_terminal(),
            "no work left but the run is {:?} (phase {:?})\n{}",
            t.state.status,
            t.state.phase,
            text
        );
        let bound = plan.attempt_bound();
        prop_assert!(
            t.productive <= bound,
            "{} productive events, bound {}\n{}",
            t.productive,
            bound,
            text
        );

        let audit: Vec<_> = t.decisions.iter().flat_map(|d| d.audit.iter().cloned()).collect();

        // (b) At most one accepted success per node.
        let mut successes: HashMap<&str, usize> = HashMap::new();
        for r in &audit {
            if r.decision == "succeed_step" {
                *successes.entry(r.node.as_deref().unwrap_or("")).or_default() += 1;
            }
        }
        for (node, n) in &successes {
            prop_assert!(*n <= 1, "{node} succeeded {n} times");
            prop_assert!(!node.is_empty(), "succeed_step without a node");
        }
        for (k, n) in &t.state.nodes {
            if n.status() == NodeStatus::Succeeded {
                prop_assert_eq!(successes.get(k.as_str()).copied(), Some(1), "{}", k);
            }
        }

        // (d) Audit seq is gap-free from 1 and the chain verifies.
        let seqs: Vec<u64> = audit.iter().map(|r| r.seq).collect();
        prop_assert_eq!(seqs, (1..=audit.len() as u64).collect::<Vec<_>>());
        prop_assert!(verify_chain(&audit).is_ok(), "{:?}", verify_chain(&audit));
        prop_assert_eq!(t.state.audit_seq, audit.len() as u64);

        // (e) Determinism: the same events from a fresh run give the same records, commands and
        // final state.
        let mut replay = new_run(&plan, "run-p", T0);
        for (e, d) in t.events.iter().zip(&t.decisions) {
            let again = decide(&plan, &mut replay, e);
            prop_assert_eq!(&again, d);
        }
        prop_assert_eq!(&replay, &t.state);

        // The run ended exactly once.
        let completions = t
            .decisions
            .iter()
            .flat_map(|d| &d.commands)
            .filter(|c| matches!(c, Command::CompleteRun { .. }))
            .count();
        prop_assert_eq!(completions, 1);
    }

    /// Like the test above, and also: a node's status never changes once it has ended.
    #[test]
    fn ended_nodes_keep_their_status(s in scenario()) {
        let (_, plan) = plan_of(&s);
        let t = simulate(&plan, input_of(&s.flags), s.seed, s.world_seed, s.cancel_after, true)?;
        prop_assert!(t.state.status.is_terminal());
    }
}
