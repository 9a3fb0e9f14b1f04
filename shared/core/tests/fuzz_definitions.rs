//! `load_definition` must never panic, whatever it is given: arbitrary text, mutations of a valid
//! workflow, and JSON values shaped roughly like workflows. Each property runs a few hundred cases
//! so the suite stays quick in debug builds; raise `PROPTEST_CASES` to search harder.

use baton_core::load_definition;
use proptest::prelude::*;
use proptest::sample::{Index, select};
use serde_json::{Map, Value};

const VALID: &str = include_str!("../../../workflows/order-triage/workflow.yaml");

fn config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|c| c.parse().ok()).unwrap_or(cases),
        // Shrinking a panicking input can take a while; the first failure is printed anyway.
        max_shrink_iters: 2_000,
        ..ProptestConfig::default()
    }
}

/// Loads `text`, checking the invariants of a failed load: at least one problem, each naming the
/// file it was given.
fn load(text: &str) {
    if let Err(problems) = load_definition(Some("fuzz.yaml"), text) {
        assert!(!problems.is_empty(), "Err with no problems for {text:?}");
        for p in &problems {
            assert_eq!(p.file.as_deref(), Some("fuzz.yaml"));
            let _ = p.to_string();
        }
    }
}

// ---------------------------------------------------------------------------------------------
// (a) arbitrary strings

/// Pieces of YAML and JSON syntax, so random text is not all rejected by the first character.
fn yaml_token() -> impl Strategy<Value = &'static str> {
    select(vec![
        "name: x\n",
        "steps:\n",
        "  - id: a\n",
        "  - id: b\n",
        "    tool: transform\n",
        "    tool: http\n",
        "    with: {expr: \".input\"}\n",
        "    needs: [a]\n",
        "    loop:\n",
        "      max_iterations: 2\n",
        "      steps:\n",
        "        - id: c\n",
        "- ",
        ": ",
        "{",
        "}",
        "[",
        "]",
        ",",
        "\"",
        "'",
        "&a ",
        "*a",
        "<<: ",
        "!!str ",
        "!tag ",
        "|\n",
        ">-\n",
        "---\n",
        "...\n",
        "#",
        "? ",
        "\t",
        "\n",
        "  ",
        "~",
        "null",
        "1e999",
        "-0",
        "18446744073709551616",
        "{{ .steps.a }}",
        "\u{feff}",
        "\0",
    ])
}

proptest! {
    #![proptest_config(config(300))]

    #[test]
    fn arbitrary_strings_do_not_panic(text in any::<String>()) {
        load(&text);
    }

    #[test]
    fn yaml_token_soup_does_not_panic(tokens in prop::collection::vec(yaml_token(), 0..60)) {
        load(&tokens.concat());
    }
}

// ---------------------------------------------------------------------------------------------
// (b) mutations of a valid workflow

/// Characters that matter to YAML, JSON and jq.
fn interesting_char() -> impl Strategy<Value = char> {
    prop_oneof![
        3 => select(vec![
            ' ', '\n', '\t', ':', '-', '{', '}', '[', ']', ',', '"', '\'', '#', '&', '*', '!',
            '|', '>', '.', '$', '(', ')', '?', '@', '%', '\\', '0', '9', 'a',
        ]),
        1 => any::<char>(),
    ]
}

/// Lines a person might plausibly add to a workflow, valid or not.
fn workflow_line() -> impl Strategy<Value = String> {
    prop_oneof![
        select(vec![
            "  - id: late",
            "  - id: extra",
            "    needs: [late]",
            "    needs: [extra, ticket]",
            "    needs: 3",
            "    when: \"(\"",
            "    when: \".steps.extra.output\"",
            "    for_each: \".steps.lines.output[]\"",
            "    max_concurrency: 0",
            "    max_concurrency: 5000",
            "    timeout: 10 sec",
            "    retry: {max_attempts: 0, on: [timout]}",
            "    fallback: ticket",
            "    fallback: nowhere",
            "    tool: sleep",
            "    tool: htp",
            "    with: {for: 2s, until: \"{{ .input }}\"}",
            "    escalate: [{after: 1h, to: a}, {after: 2h, to: b}]",
            "    loop: {max_iterations: 2, steps: [{id: inner, tool: transform, with: {expr: \".\"}}]}",
            "    loop: {steps: [{id: inner2, loop: {steps: []}}]}",
            "compensate: {ticket: late, late: ticket}",
            "output: \"{{\"",
            "triggers: [{event: {}}, {schedule: 3}]",
            "input_schema: {type: 12}",
        ])
        .prop_map(str::to_owned),
        "[ -~]{0,40}",
    ]
}

#[derive(Debug, Clone)]
enum Mutation {
    DeleteChar(Index),
    InsertChar(Index, char),
    ReplaceChar(Index, char),
    DeleteLine(Index),
    DuplicateLine(Index),
    SwapLines(Index, Index),
    InsertLine(Index, String),
    ReplaceLine(Index, String),
    Truncate(Index),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    let ix = any::<Index>;
    prop_oneof![
        ix().prop_map(Mutation::DeleteChar),
        (ix(), interesting_char()).prop_map(|(i, c)| Mutation::InsertChar(i, c)),
        (ix(), interesting_char()).prop_map(|(i, c)| Mutation::ReplaceChar(i, c)),
        ix().prop_map(Mutation::DeleteLine),
        ix().prop_map(Mutation::DuplicateLine),
        (ix(), ix()).prop_map(|(a, b)| Mutation::SwapLines(a, b)),
        (ix(), workflow_line()).prop_map(|(i, l)| Mutation::InsertLine(i, l)),
        (ix(), workflow_line()).prop_map(|(i, l)| Mutation::ReplaceLine(i, l)),
        ix().prop_map(Mutation::Truncate),
    ]
}

fn apply(text: &str, m: &Mutation) -> String {
    let mut chars: Vec<char> = text.chars().collect();
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
    let at = |i: &Index, len: usize| if len == 0 { 0 } else { i.index(len) };
    match m {
        Mutation::DeleteChar(i) => {
            if !chars.is_empty() {
                chars.remove(at(i, chars.len()));
            }
            return chars.into_iter().collect();
        }
        Mutation::InsertChar(i, c) => {
            chars.insert(at(i, chars.len() + 1), *c);
            return chars.into_iter().collect();
        }
        Mutation::ReplaceChar(i, c) => {
            if !chars.is_empty() {
                let k = at(i, chars.len());
                chars[k] = *c;
            }
            return chars.into_iter().collect();
        }
        Mutation::Truncate(i) => {
            chars.truncate(at(i, chars.len() + 1));
            return chars.into_iter().collect();
        }
        Mutation::DeleteLine(i) => {
            if !lines.is_empty() {
                lines.remove(at(i, lines.len()));
            }
        }
        Mutation::DuplicateLine(i) => {
            if !lines.is_empty() {
                let k = at(i, lines.len());
                lines.insert(k, lines[k].clone());
            }
        }
        Mutation::SwapLines(a, b) => {
            if !lines.is_empty() {
                let (a, b) = (at(a, lines.len()), at(b, lines.len()));
                lines.swap(a, b);
            }
        }
        Mutation::InsertLine(i, l) => {
            let k = at(i, lines.len() + 1);
            lines.insert(k, l.clone());
        }
        Mutation::ReplaceLine(i, l) => {
            if !lines.is_empty() {
                let k = at(i, lines.len());
                lines[k] = l.clone();
            }
        }
    }
    let mut out = lines.join("\n");
    out.push('\n');
    out
}

proptest! {
    #![proptest_config(config(400))]

    #[test]
    fn mutated_workflows_do_not_panic(mutations in prop::collection::vec(mutation(), 1..8)) {
        let mut text = VALID.to_owned();
        for m in &mutations {
            text = apply(&text, m);
        }
        load(&text);
    }
}

#[test]
fn the_unmutated_workflow_is_valid() {
    if let Err(problems) = load_definition(Some("order-triage.yaml"), VALID) {
        let list: Vec<String> = problems.iter().map(ToString::to_string).collect();
        panic!("{}", list.join("\n"));
    }
}

// ---------------------------------------------------------------------------------------------
// (c) JSON values shaped like workflows

fn arb_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        "[a-z_{}. |]{0,12}".prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map("[a-z_]{1,8}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Step ids drawn from a small pool so references often hit, plus some that are not valid ids.
fn step_id() -> impl Strategy<Value = String> {
    select(vec!["a", "b", "c", "late", "ticket", "", "a b", "x/y", "~0", "#1"]).prop_map(str::to_owned)
}

/// jq-like text: valid expressions, broken ones and reads of `.steps.<id>`.
fn jq_text() -> impl Strategy<Value = String> {
    let token = select(vec![
        ".",
        ".input",
        ".steps.a.output",
        ".steps.b.status",
        ".steps.late",
        ".steps[\"c\"]",
        ".item",
        ".index",
        ".iteration",
        "|",
        "(",
        ")",
        "[",
        "]",
        "{",
        "}",
        ",",
        ":",
        "==",
        "//",
        "?",
        "..",
        "$x",
        "as $x",
        "def f: .;",
        "f",
        "reduce",
        "foreach",
        "if",
        "then",
        "else",
        "end",
        "map(",
        "select(",
        "@base64",
        "\"",
        "\"s\"",
        "1",
        "-",
        "+",
        " ",
        "label $out |",
        "break $out",
        "$__loc__",
        "input",
        "env",
        "limit(",
        "try",
        "catch",
    ]);
    prop::collection::vec(token, 0..12).prop_map(|t| t.concat())
}

/// Strings with `{{ }}` parts, for `with` arguments.
fn template_text() -> impl Strategy<Value = String> {
    prop_oneof![
        jq_text().prop_map(|e| format!("https://x.example/{{{{ {e} }}}}")),
        jq_text().prop_map(|e| format!("{{{{{e}}}}}")),
        jq_text().prop_map(|e| format!("a {{{{ {e} b")),
        "[a-z{} ]{0,16}",
    ]
}

fn duration_text() -> impl Strategy<Value = String> {
    prop_oneof![
        6 => select(vec!["1s", "10ms", "5m", "4h", "2d", "0s"]).prop_map(str::to_owned),
        1 => select(vec!["1.5s", "10 sec", "", "99999999999999999999d"]).prop_map(str::to_owned),
        1 => "[0-9]{0,21}(ms|s|m|h|d|x)?",
    ]
}

/// A value that is usually the right shape for `field` and sometimes anything at all.
fn field_value(field: &'static str, step: BoxedStrategy<Value>) -> BoxedStrategy<Value> {
    let plausible: BoxedStrategy<Value> = match field {
        "id" | "fallback" => step_id().prop_map(Value::from).boxed(),
        "tool" => select(vec!["transform", "http", "sleep", "human", "htp", "loop"]).prop_map(Value::from).boxed(),
        "needs" => prop::collection::vec(step_id().prop_map(Value::from), 0..4).prop_map(Value::Array).boxed(),
        "when" | "for_each" => jq_text().prop_map(Value::from).boxed(),
        "timeout" => duration_text().prop_map(Value::from).boxed(),
        "max_concurrency" => {
            prop_oneof![0u64..3, Just(1000u64), Just(1001), Just(u64::MAX)].prop_map(Value::from).boxed()
        }
        "with" => {
            let key = select(vec![
                "expr", "url", "method", "headers", "body", "timeout", "for", "until", "queue", "prompt", "summary",
                "form", "bogus",
            ]);
            let val = prop_oneof![
                3 => template_text().prop_map(Value::from),
                1 => arb_json(),
            ];
            prop::collection::btree_map(key, val, 0..5)
                .prop_map(|m| Value::Object(m.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()))
                .boxed()
        }
        "retry" => (
            prop_oneof![1 => Just(Value::from(0)), 8 => Just(Value::from(3)), 1 => arb_json()],
            prop::option::of(duration_text()),
            prop::option::of(duration_text()),
            prop::option::of(prop_oneof![
                5 => select(vec!["fixed", "exponential"]),
                1 => Just("linear")
            ]),
            prop::option::of(prop::collection::vec(select(vec!["timeout", "http_5xx", "timout", ""]), 0..3)),
        )
            .prop_map(|(max_attempts, initial, max, backoff, on)| {
                let mut m = Map::new();
                m.insert("max_attempts".into(), max_attempts);
                put(&mut m, "initial", initial);
                put(&mut m, "max", max);
                put(&mut m, "backoff", backoff);
                put(&mut m, "on", on);
                Value::Object(m)
            })
            .boxed(),
        "loop" => (
            prop::option::of(prop_oneof![0u64..4, Just(u64::from(u32::MAX) + 1)]),
            prop::option::of(jq_text()),
            prop::option::of(prop_oneof![
                5 => select(vec!["fail", "continue", "escalate"]),
                1 => Just("retry")
            ]),
            prop::collection::vec(step, 0..3),
        )
            .prop_map(|(max, until, then, steps)| {
                let mut m = Map::new();
                put(&mut m, "max_iterations", max);
                put(&mut m, "until", until);
                put(&mut m, "then", then);
                m.insert("steps".into(), Value::Array(steps));
                Value::Object(m)
            })
            .boxed(),
        "escalate" => (duration_text(), "[a-z-]{0,8}")
            .prop_map(|(after, to)| serde_json::json!({"after": after, "to": to}))
            .boxed(),
        _ => arb_json().boxed(),
    };
    prop_oneof![30 => plausible, 1 => arb_json()].boxed()
}

/// Sets `key` in `m` when `value` is present.
fn put<T: Into<Value>>(m: &mut Map<String, Value>, key: &str, value: Option<T>) {
    if let Some(v) = value {
        m.insert(key.into(), v.into());
    }
}

const STEP_FIELDS: &[&str] = &[
    "id",
    "tool",
    "with",
    "needs",
    "when",
    "retry",
    "timeout",
    "fallback",
    "for_each",
    "max_concurrency",
    "loop",
    "escalate",
    "neds",
];

/// A step object: a random subset of the step fields; `loop` bodies recurse.
fn arb_step() -> impl Strategy<Value = Value> {
    let leaf = step_fields(Just(Value::Object(Map::new())).boxed());
    leaf.prop_recursive(2, 12, 3, |inner| step_fields(inner.boxed()))
}

fn step_fields(body_step: BoxedStrategy<Value>) -> BoxedStrategy<Value> {
    let fields: Vec<BoxedStrategy<Option<(&'static str, Value)>>> = STEP_FIELDS
        .iter()
        .map(|&f| {
            // `id` and `tool` are usually present, the misspelt `neds` rarely, the rest now and
            // then: most documents should get past the structural check to the deeper ones.
            let weight = match f {
                "id" | "tool" => 9,
                "neds" => 1,
                _ => 3,
            };
            let v = field_value(f, body_step.clone()).prop_map(move |v| Some((f, v)));
            prop_oneof![10 - weight => Just(None), weight => v].boxed()
        })
        .collect();
    fields.prop_map(|kvs| Value::Object(kvs.into_iter().flatten().map(|(k, v)| (k.to_owned(), v)).collect())).boxed()
}

fn arb_workflow() -> impl Strategy<Value = Value> {
    (
        prop_oneof![20 => "[a-z-]{1,12}".prop_map(Value::from), 1 => arb_json()],
        prop_oneof![
            20 => prop::collection::vec(arb_step(), 0..6).prop_map(Value::Array),
            1 => arb_json()
        ],
        prop::option::of(jq_text()),
        prop::option::of(prop::collection::btree_map(step_id(), step_id(), 0..3)),
        prop::option::weighted(0.2, arb_json()),
        prop::option::weighted(0.05, ("[a-z]{1,6}", arb_json())),
    )
        .prop_map(|(name, steps, output, compensate, schema, extra)| {
            let mut m = Map::new();
            m.insert("name".into(), name);
            m.insert("steps".into(), steps);
            if let Some(o) = output {
                m.insert("output".into(), o.into());
            }
            if let Some(c) = compensate {
                m.insert("compensate".into(), Value::Object(c.into_iter().map(|(k, v)| (k, v.into())).collect()));
            }
            if let Some(s) = schema {
                m.insert("input_schema".into(), s);
            }
            if let Some((k, v)) = extra {
                m.insert(k, v);
            }
            Value::Object(m)
        })
}

proptest! {
    #![proptest_config(config(300))]

    #[test]
    fn workflow_shaped_json_does_not_panic(doc in arb_workflow()) {
        // As JSON text, and as YAML text (positions come from a different parser path).
        load(&doc.to_string());
        if let Ok(yaml) = serde_yaml_ng::to_string(&doc) {
            load(&yaml);
        }
    }

    #[test]
    fn arbitrary_json_does_not_panic(doc in arb_json()) {
        load(&doc.to_string());
    }
}
