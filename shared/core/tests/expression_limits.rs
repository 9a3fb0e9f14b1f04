//! Bounded jq evaluation: runaway expressions stop with an `expression_limit` error in bounded
//! time and memory, ordinary expressions give the same results as jaq-json's own evaluator, and
//! through `decide` a transform step with a runaway expression fails with kind
//! `expression_limit`, retried only when `retry.on` names it.

use std::time::Instant;

use baton_core::engine::{Command, Decision, Event, EventKind, NodeStatus, RunState, RunStatus, decide, new_run};
use baton_core::expr::{Budget, DEFAULT_MAX_MEMORY_BYTES, DEFAULT_MAX_STEPS, Expr, ExprLimit};
use baton_core::{Plan, load_definition};
use serde::Deserialize;
use serde_json::{Value, json};

/// The process's peak resident set (`VmHWM`), in KiB.
fn peak_rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

fn limit_of(src: &str, context: &Value, budget: &Budget) -> ExprLimit {
    let e = Expr::compile(src).expect(src);
    let t = Instant::now();
    let err = e.eval_with(context, budget).expect_err(src);
    println!("{src}: {} after {:?}", err.message, t.elapsed());
    assert!(err.message.starts_with("expression limit: "), "{src}: {}", err.message);
    err.limit.unwrap_or_else(|| panic!("{src}: no limit in {err:?}"))
}

#[test]
fn runaway_expressions_stop_with_a_limit_in_bounded_memory() {
    let before = peak_rss_kib();
    let steps = ExprLimit::Steps(DEFAULT_MAX_STEPS);
    let memory = ExprLimit::Memory(DEFAULT_MAX_MEMORY_BYTES);
    let cases: &[(&str, ExprLimit)] = &[
        ("[range(0; 1000000000)] | length", steps),
        ("[limit(1000000000; repeat(1))] | length", steps),
        ("reduce range(0; 1000000000) as $i (0; . + $i)", steps),
        // Doubling a string passes 64 MiB after 26 rounds.
        ("reduce range(0; 64) as $i (\"x\"; . + .) | length", memory),
        ("reduce range(0; 1000000000) as $i (\"\"; . + \"x\") | length", steps),
        // Charged before jaq allocates the terabyte.
        ("\"x\" * 1000000000000 | length", memory),
        // `. + .` copies the shared array: it doubles until the copies pass 64 MiB.
        ("reduce range(0; 40) as $i ([1]; . + .) | length", memory),
        ("def f: f; f", steps),
        ("last(range(0; 1e12))", steps),
        ("[repeat(\"abcdefgh\" * 1000)] | length", memory),
    ];
    for (src, want) in cases {
        assert_eq!(limit_of(src, &json!({}), &Budget::default()), *want, "{src}");
    }
    // A recursion that touches no value would overflow the stack and abort the process.
    for src in ["def f: [f, f]; f", "def f: 1 + f; f", "def f(n): f(n + 1) | [.]; f(0)"] {
        assert!(matches!(limit_of(src, &json!({}), &Budget::default()), ExprLimit::Stack(_)), "{src}");
    }
    // jaq's JSON parser recurses once per level.
    let deep = "(\"[\" * 100000) + (\"]\" * 100000) | fromjson | length";
    assert_eq!(limit_of(deep, &json!({}), &Budget::default()), ExprLimit::Nesting(1_000));
    let shallow = Expr::compile("(\"[\" * 1000) + (\"]\" * 1000) | fromjson | length").expect("compiles");
    assert_eq!(shallow.eval(&json!({})), Ok(json!(1)));
    let quoted = Expr::compile("\"[\\\"\" + (\"[\" * 5000) + \"\\\"]\" | fromjson | .[0] | length").expect("compiles");
    assert_eq!(quoted.eval(&json!({})), Ok(json!(5000)));
    let grown = peak_rss_kib().saturating_sub(before);
    println!("peak RSS grew by {grown} KiB");
    assert!(grown < 200 * 1024, "peak RSS grew by {grown} KiB");
}

#[test]
fn try_cannot_catch_a_limit_and_the_next_evaluation_starts_afresh() {
    let l = limit_of("try ([range(0; 1000000000)] | length) catch \"caught\"", &json!({}), &Budget::default());
    assert_eq!(l, ExprLimit::Steps(DEFAULT_MAX_STEPS));
    let l = limit_of("[.[] | try (. * 1000000000000) catch 0]", &json!(["ab"]), &Budget::default());
    assert_eq!(l, ExprLimit::Memory(DEFAULT_MAX_MEMORY_BYTES));
    // The meter is per evaluation: what the last one spent is not carried over.
    let e = Expr::compile("[range(0; 1000)] | length").expect("compiles");
    assert_eq!(e.eval(&json!({})).expect("fits"), json!(1000));
    // jaq's `halt` would end the process; here it is an error.
    let err = Expr::compile("halt(1)").expect("compiles").eval(&json!({})).expect_err("fails");
    assert_eq!(err.message, "`halt` is not available in workflow expressions");
    // An ordinary jq error is not a limit.
    let err = Expr::compile("error(\"boom\")").expect("compiles").eval(&json!({})).expect_err("fails");
    assert_eq!((err.message.as_str(), err.limit), ("boom", None));
}

#[test]
fn a_budget_passed_in_replaces_the_defaults() {
    let small = Budget { steps: 1_000, ..Budget::default() };
    assert_eq!(limit_of("[range(0; 2000)] | length", &json!({}), &small), ExprLimit::Steps(1_000));
    let e = Expr::compile("[range(0; 2000)] | length").expect("compiles");
    assert_eq!(e.eval(&json!({})), Ok(json!(2000)));
    let tight = Budget { memory_bytes: 10_000, ..Budget::default() };
    assert_eq!(limit_of("\"x\" * 20000", &json!({}), &tight), ExprLimit::Memory(10_000));
    let shallow = Budget { stack_bytes: 64 * 1024, ..Budget::default() };
    let deep = "def f(n): if n == 0 then 0 else f(n - 1) + 1 end; f(100)";
    assert_eq!(limit_of(deep, &json!({}), &shallow), ExprLimit::Stack(64 * 1024));
    // The message names the limit and its value.
    let err = e.eval_with(&json!({}), &small).expect_err("over");
    assert_eq!(
        err.to_string(),
        "`[range(0; 2000)] | length`: expression limit: more than 1000 evaluation steps (limit `steps`)"
    );
}

/// jaq-json's own evaluator, as `Expr` was before it was metered: the reference results, or
/// `None` when it does not compile there (baton's `secret()`).
fn reference(src: &str, context: &Value) -> Option<Result<Value, ()>> {
    use jaq_core::load::{Arena, File, Loader};
    use jaq_core::{Compiler, Ctx, Vars, data};
    type D = data::JustLut<jaq_json::Val>;
    let defs = jaq_core::defs().chain(jaq_std::defs()).chain(jaq_json::defs());
    let arena = Arena::default();
    let modules = Loader::new(defs).load(&arena, File { code: src, path: () }).ok()?;
    let funs = jaq_core::funs::<D>().chain(jaq_std::funs()).chain(jaq_json::funs());
    let filter = Compiler::default().with_funs(funs).compile(modules).ok()?;
    let input = jaq_json::Val::deserialize(context).ok()?;
    let mut out = filter.id.run((Ctx::<D>::new(&filter.lut, Vars::new([])), input)).map(jaq_core::unwrap_valr);
    Some(match out.next() {
        Some(Ok(v)) => serde_json::from_str(&v.to_string()).map_err(|_| ()),
        _ => Err(()),
    })
}

/// True when `src` compiled in both and gave the same value (or both failed).
fn same_as_reference(src: &str, context: &Value) -> bool {
    let (Ok(e), Some(want)) = (Expr::compile(src), reference(src, context)) else { return false };
    assert_eq!(e.eval(context).map_err(|_| ()), want, "`{src}`");
    true
}

/// Every jq text in a workflow file: `{{ }}` parts, and the values of the fields that hold a
/// whole expression.
fn expressions_in(v: &Value, key: &str, out: &mut Vec<String>) {
    match v {
        Value::String(s) => {
            let mut rest = s.as_str();
            while let Some(open) = rest.find("{{") {
                let Some(close) = rest[open..].find("}}") else { break };
                out.push(rest[open + 2..open + close].trim().to_owned());
                rest = &rest[open + close + 2..];
            }
            if ["expr", "when", "until", "for_each", "output", "run_key", "event_key", "key"].contains(&key) {
                out.push(s.clone());
            }
        }
        Value::Array(items) => items.iter().for_each(|x| expressions_in(x, key, out)),
        Value::Object(m) => m.iter().for_each(|(k, x)| expressions_in(x, k, out)),
        _ => {}
    }
}

#[test]
fn expressions_of_the_example_workflows_give_the_reference_results() {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../../workflows");
    let mut found = Vec::new();
    for entry in std::fs::read_dir(root).expect("workflows/") {
        let path = entry.expect("entry").path().join("workflow.yaml");
        let Ok(text) = std::fs::read_to_string(&path) else { continue };
        let doc: Value = serde_yaml_ng::from_str(&text).expect("yaml");
        expressions_in(&doc, "", &mut found);
    }
    // A context shaped like a run's: input, step outputs, an item and an iteration.
    let context = json!({
        "input": {"id": "o-1", "amount": 120.5, "email": "a@b.c", "items": [{"sku": "a", "qty": 2}, {"sku": "b", "qty": 0}],
                  "tickets": [{"id": 1, "priority": "high"}, {"id": 2, "priority": "low"}], "country": "DE", "text": "Hello"},
        "steps": {},
        "item": {"id": 3, "name": "x"},
        "iteration": 1,
    });
    let evaluated = found.iter().filter(|src| same_as_reference(src, &context)).count();
    println!("{evaluated} of {} expressions from workflows/ compared", found.len());
    assert!(evaluated >= 50, "only {evaluated} expressions compared");

    // The builtins jaq-json defines for its own values, written again for metered ones, and the
    // operations that go through the metered update path.
    let mut skipped = Vec::new();
    let data = json!({"a": [3, 1, 2, 2], "s": "héllo wörld", "o": {"x": 1, "y": {"z": [1, 2]}}, "n": -4.5, "e": []});
    for src in [
        ".a | length",
        ".s | length",
        ".o | length",
        ".n | length",
        "null | length",
        "true | length",
        ".a | tojson",
        ".o | tojson | fromjson",
        ".s | tojson",
        "\"[1,2] 3\" | [fromjson]",
        "\"nope\" | fromjson",
        ".s | tobytes | length",
        ".a | contains([2, 3])",
        ".o | contains({y: {z: [2]}})",
        ".s | contains(\"wö\")",
        ".o | has(\"x\")",
        ".a | has(3)",
        ".a | has(-1)",
        ".a | has(9)",
        ".s | has(0)",
        ".s | indices(\"l\")",
        ".a | indices(2)",
        ".a | indices([2, 2])",
        ".a | sort | bsearch(2)",
        ".a | sort | bsearch(0)",
        ".a | bsearch(1) | type",
        "{} | bsearch(1)",
        ".a[1:3]",
        ".s[1:4]",
        ".a[1:3] = [\"x\"]",
        ".s[2:] |= ascii_upcase",
        ".a[0] += 10",
        ".o.y.z[] |= . * 2",
        ".a |= map(. + 1)",
        "del(.a[0])",
        ".o | to_entries",
        ".o | with_entries(.value |= tostring)",
        "[paths]",
        "walk(if type == \"number\" then . + 1 else . end)",
        ".a | unique",
        ".a | group_by(. % 2)",
        ".a | sort_by(-.)",
        ".s | split(\" \")",
        ".s / \"l\"",
        ".s | ascii_downcase",
        ".s | test(\"w.r\")",
        ".s | @base64",
        ".a | add",
        ".a | join(\"-\")",
        "[.a[] | select(. > 1)]",
        ".o * {y: {q: 1}}",
        ".a - [2]",
        "\"ab\" * 3",
        "\"ab\" * 0",
        "{} + {a: 1} + null",
        "[limit(3; repeat(1))]",
        "[range(0; 10; 3)]",
        "reduce .a[] as $x (0; . + $x)",
        "[foreach .a[] as $x (0; . + $x)]",
        ".e | first",
        "try error(\"x\") catch .",
        "try (1 + {}) catch .",
        ".missing // \"d\"",
        "[.a[] | tostring] | map(tonumber)",
        ".a | min, max",
        "getpath([\"o\", \"y\", \"z\", 0])",
        "setpath([\"o\", \"x\"]; 5) | .o",
        "[.[] | numbers]",
        ".s | ltrimstr(\"hé\")",
        ".s | explode | implode",
        "now",
        "1 as $x | [$x, $__loc__]",
        "input",
        "\"x\" | tojson | fromjson",
        "{(.s): 1} | keys",
        ".a | @json",
        ".a | flatten",
        "[.a, .a] | transpose",
        ".a | any(. > 2), all(. > 0)",
        ".a | index(2), rindex(2)",
        "[splits(\", *\"; null)]",
        ".a | @sh",
    ] {
        if !same_as_reference(src, &data) {
            skipped.push(src);
        }
    }
    // Only the functions baton removes on purpose do not compile.
    assert_eq!(skipped, ["now", "1 as $x | [$x, $__loc__]", "input"]);
}

/// A run of one plan, driven by `decide` alone.
struct Run {
    plan: Plan,
    state: RunState,
}

impl Run {
    fn started(yaml: &str) -> (Self, Decision) {
        let plan = load_definition(None, yaml).unwrap_or_else(|p| panic!("definition does not load: {p:#?}"));
        let mut state = new_run(&plan, "run-1", 1_000);
        let event =
            Event { at: 1_000, kind: EventKind::RunStarted { input: json!({}), seed: 7, memory: None, engine: 0 } };
        let d = decide(&plan, &mut state, &event);
        (Self { plan, state }, d)
    }

    fn fire(&mut self, at: u64, timer: &str) -> Decision {
        decide(&self.plan, &mut self.state, &Event { at, kind: EventKind::TimerFired { timer: timer.into() } })
    }

    fn step_error(&self, step: &str) -> (String, String) {
        let node = self.state.nodes.get(step).expect("node");
        assert_eq!(node.status(), NodeStatus::Failed, "{step}");
        let e = node.error().expect("an error");
        (e.kind.as_str().to_owned(), e.message.clone())
    }
}

fn timers(d: &Decision) -> Vec<String> {
    d.commands
        .iter()
        .filter_map(|c| match c {
            Command::ScheduleTimer { id, .. } => Some(id.clone()),
            _ => None,
        })
        .collect()
}

fn runaway(retry: &str) -> String {
    format!(
        "name: runaway\nsteps:\n  - id: big\n    tool: transform\n    with: {{expr: '[range(0; 1000000000)] | length'}}\n{retry}"
    )
}

#[test]
fn a_runaway_transform_fails_the_step_with_expression_limit_and_is_not_retried_by_default() {
    let (run, d) = Run::started(&runaway("    retry: {max_attempts: 3, backoff: fixed, initial: 1s}\n"));
    assert!(timers(&d).is_empty(), "retried: {:?}", d.commands);
    let (kind, message) = run.step_error("big");
    assert_eq!(kind, "expression_limit");
    assert!(message.contains("expression limit: more than 10000000 evaluation steps (limit `steps`)"), "{message}");
    assert_eq!(run.state.status, RunStatus::Failed);
    assert_eq!(run.state.error.as_ref().map(|e| e.kind.as_str()), Some("expression_limit"));
}

#[test]
fn a_runaway_transform_is_retried_when_retry_on_names_expression_limit() {
    let (mut run, d) =
        Run::started(&runaway("    retry: {max_attempts: 2, backoff: fixed, initial: 1s, on: [expression_limit]}\n"));
    assert_eq!(timers(&d), ["retry/big/2"]);
    assert_eq!(run.state.status, RunStatus::Running);
    let d = run.fire(2_000, "retry/big/2");
    assert!(timers(&d).is_empty());
    let (kind, _) = run.step_error("big");
    assert_eq!(kind, "expression_limit");
    assert_eq!(run.state.nodes.get("big").map(|n| n.attempt), Some(2));
    assert_eq!(run.state.status, RunStatus::Failed);
}

#[test]
fn compiled_expressions_can_still_be_shared_between_threads() {
    fn shared<T: Send + Sync>() {}
    shared::<Expr>();
    shared::<Plan>();
    // Each thread has its own meter: a runaway on one does not spend another's budget.
    let runaway = std::thread::spawn(|| Expr::compile("last(range(0; 1e12))").expect("compiles").eval(&json!({})));
    let e = Expr::compile("[range(0; 1000)] | add").expect("compiles");
    assert_eq!(e.eval(&json!({})), Ok(json!(499_500)));
    assert!(runaway.join().expect("joins").expect_err("stops").limit.is_some());
}

/// Text that is not JSON is one parse error that `try` catches, not an endless run of errors that
/// exhausts the memory budget (the imported Step Functions catch expressions rely on this).
#[test]
fn fromjson_of_text_that_is_not_json_is_one_catchable_error() {
    let caught = Expr::compile(r#"try ("nope" | fromjson) catch "not json""#).expect("compiles");
    assert_eq!(caught.eval(&json!({})).expect("caught"), json!("not json"));
    let e = Expr::compile(r#""nope" | fromjson"#).expect("compiles").eval(&json!({})).expect_err("not JSON");
    assert!(e.limit.is_none(), "a parse error, not a limit: {e}");
    assert!(e.to_string().contains("cannot parse"), "{e}");
}
