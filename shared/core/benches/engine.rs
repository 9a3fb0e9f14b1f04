//! criterion benches for the pure core: validating definitions and `decide` on typical events.
//! Run: `cargo bench -p baton-core --bench engine`.

use std::hint::black_box;

use baton_core::engine::{Command, Event, EventKind, decide, new_run};
use criterion::{Criterion, criterion_group, criterion_main};
use serde_json::json;

#[path = "support/shapes.rs"]
mod shapes;

use shapes::{chain, fanout};

fn validation(c: &mut Criterion) {
    let example = include_str!("../../../workflows/order-triage/workflow.yaml");
    c.bench_function("validate/order-triage", |b| b.iter(|| baton_core::load_definition(None, black_box(example))));
    let big = chain(100);
    c.bench_function("validate/chain100", |b| b.iter(|| baton_core::load_definition(None, black_box(&big))));
    // Compiled expressions are cached by source; a counter makes every source new ("cold").
    let mut i = 0u64;
    c.bench_function("expr/compile_cold_path", |b| {
        b.iter(|| {
            i += 1;
            baton_core::expr::Expr::compile(black_box(&format!(".steps.a.output.n + {i}")))
        })
    });
    c.bench_function("expr/compile_cold_with_std_functions", |b| {
        b.iter(|| {
            i += 1;
            baton_core::expr::Expr::compile(black_box(&format!(
                "[.steps[].output.n] | add | tostring | ascii_downcase | . + \"{i}\""
            )))
        })
    });
    c.bench_function("expr/compile_cached", |b| {
        b.iter(|| baton_core::expr::Expr::compile(black_box(".steps.a.output.n")))
    });
    let e = baton_core::expr::Expr::compile(".input.a + 1").expect("compiles");
    let ctx = json!({"input": {"a": 41}});
    c.bench_function("expr/eval", |b| b.iter(|| e.eval(black_box(&ctx))));
    // Many value operations per evaluation, so the per-operation cost of the budget meter shows.
    let e = baton_core::expr::Expr::compile(
        "[.input.items[] | select(.n % 2 == 0) | {id, n: (.n * 2), tag: (\"t-\" + (.n | tostring))}] | length",
    )
    .expect("compiles");
    let items: Vec<_> = (0..1000).map(|n| json!({"id": format!("i-{n}"), "n": n})).collect();
    let ctx = json!({"input": {"items": items}});
    c.bench_function("expr/eval_reshape_1000_items", |b| b.iter(|| e.eval(black_box(&ctx))));
    // How long a runaway takes to reach the default step limit and stop.
    let runaway = baton_core::expr::Expr::compile("[range(0; 1000000000)] | length").expect("compiles");
    let mut group = c.benchmark_group("expr");
    group.sample_size(10);
    group.bench_function("runaway_stops_at_the_step_limit", |b| {
        b.iter(|| runaway.eval(black_box(&json!({}))).expect_err("stops"))
    });
    group.finish();
    let bad = "name: x\nsteps:\n  - id: a\n    tool: htp\n    neds: [b]\n";
    c.bench_function("validate/invalid", |b| b.iter(|| baton_core::load_definition(None, black_box(bad))));
}

fn decisions(c: &mut Criterion) {
    let plan = baton_core::load_definition(None, &chain(3)).expect("valid");
    c.bench_function("decide/run_started_chain3", |b| {
        b.iter(|| {
            let mut st = new_run(&plan, "r", 0);
            decide(
                &plan,
                &mut st,
                &Event { at: 0, kind: EventKind::RunStarted { input: json!({}), seed: 1, memory: None, engine: 0 } },
            )
        })
    });
    let mut started = new_run(&plan, "r", 0);
    decide(
        &plan,
        &mut started,
        &Event { at: 0, kind: EventKind::RunStarted { input: json!({}), seed: 1, memory: None, engine: 0 } },
    );
    c.bench_function("decide/step_succeeded_then_dispatch", |b| {
        b.iter_batched(
            || started.clone(),
            |mut st| {
                let ev = Event {
                    at: 1,
                    kind: EventKind::StepSucceeded {
                        node: "s1".into(),
                        attempt: 1,
                        output: json!({"n": 1}),
                        mocked: false,
                        report: None,
                    },
                };
                decide(&plan, &mut st, &ev)
            },
            criterion::BatchSize::SmallInput,
        )
    });
    let wide = baton_core::load_definition(None, &fanout(1000)).expect("valid");
    c.bench_function("decide/fanout1000_whole_run", |b| {
        b.iter(|| {
            let mut st = new_run(&wide, "r", 0);
            let d = decide(
                &wide,
                &mut st,
                &Event { at: 0, kind: EventKind::RunStarted { input: json!({}), seed: 1, memory: None, engine: 0 } },
            );
            for cmd in d.commands {
                if let Command::Dispatch(x) = cmd {
                    let ev = Event {
                        at: 1,
                        kind: EventKind::StepSucceeded {
                            node: x.node,
                            attempt: 1,
                            output: x.input,
                            mocked: false,
                            report: None,
                        },
                    };
                    decide(&wide, &mut st, &ev);
                }
            }
            st
        })
    });
    agent_turns(c);
}

/// An agent's decision after a model turn that asks for two tool calls: the prompt of the
/// next turn renders every earlier result, so this is the cost that grows with the loop.
fn agent_turns(c: &mut Criterion) {
    let src = r#"
name: agent-bench
steps:
  - id: a
    tool: agent
    with:
      model: m
      goal: 'Find order {{ .input.order }}'
      max_turns: 10
      output_schema: {type: object}
      tools:
        - {name: lookup, parameters: {type: object}, http: {url: 'https://x/{{ .args.id }}'}}
"#;
    let plan = baton_core::load_definition(None, src).expect("valid");
    let mut st = new_run(&plan, "r", 0);
    let start = EventKind::RunStarted { input: json!({"order": "A-1"}), seed: 1, memory: None, engine: 0 };
    decide(&plan, &mut st, &Event { at: 0, kind: start });
    let calls = json!({"action": "call", "calls": [
        {"tool": "lookup", "arguments": {"id": "1"}}, {"tool": "lookup", "arguments": {"id": "2"}}
    ]});
    c.bench_function("decide/agent_turn_two_calls", |b| {
        b.iter_batched(
            || st.clone(),
            |mut st| {
                let kind = EventKind::StepSucceeded {
                    node: "a~a.1.1".into(),
                    attempt: 1,
                    output: calls.clone(),
                    mocked: false,
                    report: None,
                };
                decide(&plan, &mut st, &Event { at: 1, kind })
            },
            criterion::BatchSize::SmallInput,
        )
    });
}

criterion_group!(benches, validation, decisions);
criterion_main!(benches);
