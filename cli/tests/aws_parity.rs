//! One behaviour, two backends: every workflow in `workflows/` and every DSL feature fixture runs
//! embedded and on the emulated stack (through `baton dev`: coordinator and workers over SQS,
//! DynamoDB and Scheduler), and both give the same status, outputs, attempts and audit decisions.

mod support;

use std::path::Path;
use std::process::Command;

use serde_json::{Value, json};
use support::{
    Backends, DevHost, Reply, Server, baton, baton_aws, ensure_endpoints, fixture, json_of, open_approval, root, text,
};

/// A run object without what differs by nature between two runs: ids, and the wall-clock time
/// a `sleep` step woke at.
fn comparable(mut run: Value) -> Value {
    let id = run["run_id"].as_str().unwrap_or_default().to_owned();
    run.as_object_mut().map(|o| o.remove("run_id"));
    let text = run.to_string().replace(&id, "RUN");
    let mut v: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
    strip(&mut v, "woke_at");
    v
}

fn strip(v: &mut Value, key: &str) {
    match v {
        Value::Object(o) => {
            o.remove(key);
            o.values_mut().for_each(|x| strip(x, key));
        }
        Value::Array(a) => a.iter_mut().for_each(|x| strip(x, key)),
        _ => {}
    }
}

/// The audit decisions of each node, in order, without the `ignore`s a duplicate delivery may add
/// on a queue backend (at-least-once delivery is the queue's nature, not a divergence). Parallel
/// branches finish in either order on both backends, so the order across nodes is not compared.
fn decisions(dir: &Path, run_id: &str, aws: bool) -> std::collections::BTreeMap<String, Vec<String>> {
    let args = ["audit", "show", run_id, "--json"];
    let out = if aws { baton_aws(dir, &args) } else { baton(dir, &args) };
    let audit = json_of(&out);
    audit.as_array().expect("array").iter().filter(|r| r["decision"] != "ignore").fold(
        std::collections::BTreeMap::new(),
        |mut m, r| {
            m.entry(r["node"].as_str().unwrap_or("").to_owned())
                .or_insert_with(Vec::new)
                .push(r["decision"].as_str().unwrap_or("").to_owned());
            m
        },
    )
}

/// A loopback service that answers the fixtures' paths the same way for every run.
fn service() -> Server {
    Server::start(|req, n| match req.path.as_str() {
        "/inventory" if n % 3 < 2 => Reply::json(503, r#"{"error":"busy"}"#),
        "/inventory" => Reply::json(200, r#"{"qty": 3}"#),
        "/price" => Reply::json(200, r#"{"price": 9.5}"#),
        p if p.starts_with("/price/") => Reply::json(200, &format!(r#"{{"price": "{}"}}"#, &p[7..])),
        "/stock-down" => Reply::json(503, r#"{"error":"down"}"#),
        _ => Reply::json(200, r#"{"ok": true}"#),
    })
}

/// Runs `args` on both backends (each with a fresh service) and returns both run objects.
fn both(args: &[&str], with_base: bool) -> ((Value, String), (Value, String), tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("tempdir");
    let run = |aws: bool| {
        let server = service();
        let input = json!({"base": server.base}).to_string();
        let mut a: Vec<&str> = args.to_vec();
        if with_base {
            a.extend(["--input", &input]);
        }
        a.push("--json");
        let out = if aws { baton_aws(dir.path(), &a) } else { baton(dir.path(), &a) };
        // Each backend calls its own service: its address is not part of the behaviour.
        let v: Value = serde_json::from_str(&json_of(&out).to_string().replace(&server.base, "BASE")).expect("json");
        let id = v["run_id"].as_str().unwrap_or_else(|| panic!("no run id: {}", text(&out))).to_owned();
        (v, id)
    };
    (run(false), run(true), dir)
}

#[test]
fn workflows_and_dsl_features_behave_the_same_on_the_stack() {
    ensure_endpoints();
    let _host = DevHost::start();
    let order_triage = root().join("workflows/order-triage/workflow.yaml");
    let cases: Vec<(Vec<String>, bool)> = vec![
        (
            vec![
                "run".into(),
                order_triage.display().to_string(),
                "--input".into(),
                format!("@{}", root().join("workflows/order-triage/inputs/late.json").display()),
                "--mocks".into(),
                root().join("workflows/order-triage/mocks.yaml").display().to_string(),
            ],
            false,
        ),
        (vec!["run".into(), fixture("http-retry.yaml").display().to_string()], true),
        (vec!["run".into(), fixture("refine-loop.yaml").display().to_string()], false),
        (vec!["run".into(), fixture("saga.yaml").display().to_string()], false),
        (vec!["run".into(), fixture("slow-step.yaml").display().to_string()], true),
        (vec!["run".into(), fixture("long-chain.yaml").display().to_string()], true),
        (vec!["run".into(), fixture("sleepy.yaml").display().to_string()], true),
        (vec!["run".into(), fixture("fanout-fallback.yaml").display().to_string()], true),
    ];
    for (args, with_base) in cases {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let ((embedded, eid), (aws, aid), dir) = both(&args, with_base);
        assert_eq!(comparable(aws.clone()), comparable(embedded.clone()), "{args:?}: run objects differ");
        assert_eq!(
            decisions(dir.path(), &aid, true),
            decisions(dir.path(), &eid, false),
            "{args:?}: audit decisions differ"
        );
        assert_eq!(baton_aws(dir.path(), &["audit", "verify", &aid]).status.code(), Some(0), "{args:?}");
    }
}

#[test]
fn a_human_task_waits_on_the_stack_and_an_approval_finishes_it() {
    let b = Backends::up();
    let dir = &b.dir;
    let mut finals = Vec::new();
    for aws in [false, true] {
        let exec = |args: &[&str]| b.exec(aws, args);
        let (id, task) = open_approval(exec, 42);
        assert_eq!(task["queue"], "finance");
        let out = exec(&["approve", task["id"].as_str().expect("id"), "--data", r#"{"reference": "R-1"}"#, "--json"]);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out));
        let done = json_of(&out);
        assert_eq!(done["output"], json!({"decision": "approve", "paid": {"paid": 42, "reference": "R-1"}}));
        finals.push((comparable(done), decisions(dir.path(), &id, aws)));
    }
    assert_eq!(finals[0], finals[1]);
}

/// Runs `args` on the stack (whose dev host was started with the model's URL), or embedded
/// with `OPENAI_BASE_URL` pointing at the model.
fn with_model(dir: &Path, args: &[&str], aws: bool, base: &str) -> std::process::Output {
    if aws {
        return baton_aws(dir, args);
    }
    Command::new(env!("CARGO_BIN_EXE_baton"))
        .arg("--state-dir")
        .arg(dir)
        .args(args)
        .env("OPENAI_BASE_URL", base)
        .output()
        .expect("baton runs")
}

/// A chat completion answering `content`, as an OpenAI-compatible server sends it.
fn completion(content: &str, prompt_tokens: u64, completion_tokens: u64) -> Reply {
    let body = json!({
        "id": "c", "object": "chat.completion", "model": "test-model",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens, "total_tokens": prompt_tokens + completion_tokens}
    });
    Reply::json(200, &body.to_string())
}

/// A chat completions server: even-numbered requests get an answer that misses `email`, odd ones
/// a valid answer, so every run needs exactly one repair, whichever backend sends it.
fn model_server() -> Server {
    Server::start(|req, n| {
        assert_eq!(req.path, "/v1/chat/completions");
        let content = if n % 2 == 0 {
            r#"{"order_id": "A-1042"}"#
        } else {
            r#"{"order_id": "A-1042", "email": "jane@example.com"}"#
        };
        completion(content, 40, 9)
    })
}

#[test]
fn an_llm_step_repairs_and_audits_the_same_on_the_stack() {
    ensure_endpoints();
    let model = model_server();
    let base = format!("{}/v1", model.base);
    let _host = DevHost::start_with_env(&[("OPENAI_BASE_URL", &base)]);
    let dir = tempfile::tempdir().expect("tempdir");
    let wf = fixture("llm-extract.yaml");
    let mut finals = Vec::new();
    for aws in [false, true] {
        let args = ["run", wf.to_str().expect("utf8"), "--json"];
        let out = with_model(dir.path(), &args, aws, &base);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out));
        let run = json_of(&out);
        assert_eq!(run["output"], json!({"order": "A-1042", "label": "order A-1042"}));
        let id = run["run_id"].as_str().expect("id").to_owned();
        let audit_out = if aws {
            baton_aws(dir.path(), &["audit", "show", &id, "--json"])
        } else {
            baton(dir.path(), &["audit", "show", &id, "--json"])
        };
        let audit = json_of(&audit_out);
        let rec = audit
            .as_array()
            .expect("records")
            .iter()
            .find(|r| r["decision"] == "succeed_step" && r["step"] == "extract")
            .expect("succeed_step")
            .clone();
        let tool = &rec["values"]["tool"];
        assert_eq!((tool["repairs"].as_u64(), tool["requests"].as_u64()), (Some(1), Some(2)), "aws={aws}: {tool}");
        assert_eq!(tool["answers"][1]["raw"]["email"], "[redacted]", "aws={aws}");
        assert_eq!(tool["usage"]["total_tokens"], 98, "aws={aws}");
        finals.push((comparable(run), decisions(dir.path(), &id, aws)));
    }
    assert_eq!(finals[0], finals[1]);
    assert_eq!(model.seen.lock().expect("seen").len(), 4, "two requests per run, no duplicate calls");
}

/// A `HumanTaskResolved` event answers a task: embedded through `baton event`, on the stack
/// through the bus rule `<stack>-task-answers` to the coordinator queue.
#[test]
fn a_human_task_resolved_event_answers_the_task_on_both_backends() {
    let b = Backends::up();
    let dir = &b.dir;
    let mut finals = Vec::new();
    for aws in [false, true] {
        let exec = |args: &[&str]| b.exec(aws, args);
        let (id, task) = open_approval(exec, 7);
        let task = task["id"].as_str().expect("id").to_owned();
        let event = json!({"source": "acme.inbox", "detail-type": "HumanTaskResolved",
            "detail": {"task": task, "decision": "approve", "data": {"reference": "EV-1"}, "by": "inbox-bot"}});
        let out = exec(&["event", &event.to_string(), "--json"]);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out));
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        let run = loop {
            let run = json_of(&exec(&["runs", "show", &id, "--json"]));
            if run["status"] == "succeeded" {
                break run;
            }
            assert!(std::time::Instant::now() < deadline, "aws={aws}: the answer did not finish the run: {run}");
            std::thread::sleep(std::time::Duration::from_millis(200));
        };
        assert_eq!(run["output"], json!({"decision": "approve", "paid": {"paid": 7, "reference": "EV-1"}}));
        let mut run = run;
        // `runs show` on a stack adds its AWS request count; the behaviour is the rest.
        run.as_object_mut().map(|o| o.remove("aws"));
        let audit = json_of(&exec(&["audit", "show", &id, "--json"]));
        assert!(audit.to_string().contains("inbox-bot approved task"), "aws={aws}: {audit}");
        finals.push((comparable(run), decisions(dir.path(), &id, aws)));
    }
    assert_eq!(finals[0], finals[1]);
    // A malformed answer is refused with its reason, not dropped.
    let bad = json!({"source": "acme.inbox", "detail-type": "HumanTaskResolved", "detail": {"decision": "approve"}});
    let out = baton(dir.path(), &["event", &bad.to_string()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out).contains("detail.task"), "{}", text(&out));
}

/// A `wait_event` step waits for its own order's payment: an event for another order leaves it
/// waiting, the matching one ends the wait; embedded through `baton event`, on the stack through
/// the wait's bus rule (`<stack>-waits.<hash>`, made when the run starts) to the coordinator.
#[test]
fn a_wait_event_step_ends_with_its_correlated_event_on_both_backends() {
    let b = Backends::up();
    let dir = &b.dir;
    let wf = fixture("wait-event.yaml");
    let payment = |order: &str, amount: u32| {
        json!({"source": "shop.payments", "detail-type": "PaymentReceived", "detail": {"order_id": order, "amount": amount}})
            .to_string()
    };
    let mut finals = Vec::new();
    for aws in [false, true] {
        let exec = |args: &[&str]| b.exec(aws, args);
        let out = exec(&["run", wf.to_str().expect("utf8"), "--input", r#"{"order_id": "A-7"}"#, "--json"]);
        assert_eq!(out.status.code(), Some(3), "{}", text(&out));
        let id = json_of(&out)["run_id"].as_str().expect("id").to_owned();
        assert!(
            !json_of(&exec(&["tasks", "--json"])).to_string().contains(&id),
            "an event wait is not a task for people"
        );
        // Another order's payment, and a zero payment of this one, do not end the wait.
        for other in [payment("B-1", 5), payment("A-7", 0)] {
            let out = exec(&["event", &other, "--json"]);
            assert_eq!(out.status.code(), Some(0), "{}", text(&out));
        }
        std::thread::sleep(std::time::Duration::from_millis(if aws { 1500 } else { 0 }));
        assert_eq!(json_of(&exec(&["runs", "show", &id, "--json"]))["steps"]["payment"]["status"], "waiting");
        let out = exec(&["event", &payment("A-7", 12), "--json"]);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out));
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        let mut run = loop {
            let run = json_of(&exec(&["runs", "show", &id, "--json"]));
            if run["status"] == "succeeded" {
                break run;
            }
            assert!(std::time::Instant::now() < deadline, "aws={aws}: the event did not end the wait: {run}");
            std::thread::sleep(std::time::Duration::from_millis(200));
        };
        assert_eq!(run["output"], json!({"order": "A-7", "paid": 12, "thanks": "thanks for A-7"}));
        run.as_object_mut().map(|o| o.remove("aws"));
        // The event carries ids and times that differ per delivery: compare the rest.
        run["steps"]["payment"]["output"] = run["steps"]["payment"]["output"]["detail"].clone();
        finals.push((comparable(run), decisions(dir.path(), &id, aws)));
    }
    assert_eq!(finals[0], finals[1]);
}

#[test]
fn sub_workflows_and_continue_as_new_behave_the_same_on_the_stack() {
    let b = Backends::up();
    let dir = &b.dir;
    let mut finals = Vec::new();
    for aws in [false, true] {
        let exec = |args: &[&str]| b.exec(aws, args);
        for child in ["quote-child.yaml", "countdown.yaml"] {
            let out = exec(&["publish", fixture(child).to_str().expect("utf8")]);
            assert_eq!(out.status.code(), Some(0), "aws={aws}: {}", text(&out));
        }
        let out = exec(&["run", fixture("order-with-quote.yaml").to_str().expect("utf8"), "--json"]);
        assert_eq!(out.status.code(), Some(0), "aws={aws}: {}", text(&out));
        let run = json_of(&out);
        assert_eq!(
            run["output"],
            json!({"small": 10, "large": 200, "countdown": {"n": 0, "seen": [2, 1, 0]}}),
            "aws={aws}"
        );
        let id = run["run_id"].as_str().expect("id").to_owned();
        assert_eq!(exec(&["audit", "verify", &id]).status.code(), Some(0));
        let mut run = comparable(run);
        // Child run ids derive from the parent's id: compare everything else.
        for step in ["small", "large", "count"] {
            run["steps"][step].as_object_mut().map(|o| o.remove("report"));
        }
        finals.push((run, decisions(dir.path(), &id, aws)));
    }
    assert_eq!(finals[0], finals[1]);
}

#[test]
fn a_cached_response_stands_in_for_a_down_api_on_both_backends() {
    let b = Backends::up();
    let dir = &b.dir;
    let wf = fixture("cached-quote.yaml");
    let mut finals = Vec::new();
    for aws in [false, true] {
        let exec = |args: &[&str]| b.exec(aws, args);
        // Up for the first call, down (503) from then on.
        let server = Server::up_once(r#"{"price": 7}"#);
        let input = json!({"base": server.base}).to_string();
        let run = |exec: &dyn Fn(&[&str]) -> std::process::Output| {
            let out = exec(&["run", wf.to_str().expect("utf8"), "--input", &input, "--json"]);
            assert_eq!(out.status.code(), Some(0), "aws={aws}: {}", text(&out));
            json_of(&out)
        };
        let fresh = run(&exec);
        assert_eq!(fresh["output"], json!({"price": 7, "status": "succeeded", "stale": false}), "aws={aws}");
        let stale = run(&exec);
        assert_eq!(stale["output"], json!({"price": 7, "status": "fell_back", "stale": true}), "aws={aws}");
        let id = stale["run_id"].as_str().expect("id").to_owned();
        let audit = String::from_utf8_lossy(&exec(&["audit", "show", &id, "--json"]).stdout).to_string();
        assert!(audit.contains("served the cached response"), "aws={aws}: {audit}");
        finals.push(decisions(dir.path(), &id, aws));
    }
    assert_eq!(finals[0], finals[1]);
}

#[test]
fn memory_across_runs_behaves_the_same_on_the_stack() {
    let b = Backends::up();
    let wf = fixture("support-memory.yaml");
    // The table outlives test runs: a customer id of its own each time.
    let customer = format!("t{}", std::process::id());
    let mut finals = Vec::new();
    for aws in [false, true] {
        let exec = |args: &[&str]| b.exec(aws, args);
        let mut outputs = Vec::new();
        for (who, issue) in [(customer.as_str(), "printer jam"), (customer.as_str(), "printer"), ("other", "printer")] {
            let who = if who == "other" { format!("{customer}-other") } else { who.to_owned() };
            let input = json!({"customer": who, "issue": issue}).to_string();
            let out = exec(&["run", wf.to_str().expect("utf8"), "--input", &input, "--json"]);
            assert_eq!(out.status.code(), Some(0), "aws={aws}: {}", text(&out));
            outputs.push(json_of(&out)["output"].clone());
        }
        assert_eq!(
            outputs,
            vec![
                json!({"priority": "normal", "earlier": 0, "tier": null, "found": 0}),
                json!({"priority": "high", "earlier": 1, "tier": "new", "found": 1}),
                json!({"priority": "normal", "earlier": 0, "tier": null, "found": 0}),
            ],
            "aws={aws}"
        );
        finals.push(outputs);
    }
    assert_eq!(finals[0], finals[1]);
}

/// A model that calls `lookup` until a result is in its prompt, then answers with the status it
/// read there; and the orders API the tool calls.
fn agent_server() -> Server {
    Server::start(|req, _| {
        if let Some(id) = req.path.strip_prefix("/orders/") {
            return Reply::json(200, &json!({"id": id, "state": "shipped"}).to_string());
        }
        let request: Value = serde_json::from_str(&req.body).unwrap_or(Value::Null);
        let prompt = request["messages"].to_string();
        let content = if prompt.contains("shipped") {
            json!({"action": "answer", "answer": {"status": "shipped"}})
        } else {
            json!({"action": "call", "calls": [{"tool": "lookup", "arguments": {"id": "A-7"}}]})
        };
        completion(&content.to_string(), 60, 12)
    })
}

#[test]
fn an_agent_step_calls_its_tool_and_answers_the_same_on_the_stack() {
    ensure_endpoints();
    let server = agent_server();
    let base = format!("{}/v1", server.base);
    let _host = DevHost::start_with_env(&[("OPENAI_BASE_URL", &base)]);
    let dir = tempfile::tempdir().expect("tempdir");
    let wf = fixture("agent-orders.yaml");
    let input = json!({"base": server.base, "order": "A-7"}).to_string();
    let mut finals = Vec::new();
    for aws in [false, true] {
        let args = ["run", wf.to_str().expect("utf8"), "--input", &input, "--json"];
        let out = with_model(dir.path(), &args, aws, &base);
        assert_eq!(out.status.code(), Some(0), "aws={aws}: {}", text(&out));
        let run = json_of(&out);
        assert_eq!(run["output"], json!({"status": "shipped"}), "aws={aws}");
        let id = run["run_id"].as_str().expect("id").to_owned();
        let d = decisions(dir.path(), &id, aws);
        let all: Vec<&String> = d.values().flatten().collect();
        assert!(all.iter().any(|x| x.as_str() == "agent_calls"), "aws={aws}: {d:?}");
        finals.push((comparable(run), d));
    }
    assert_eq!(finals[0], finals[1]);
    assert_eq!(server.requests("/orders/A-7").len(), 2, "one tool call per run");
    assert_eq!(server.requests("/v1/chat/completions").len(), 4, "two turns per run");
}

/// The stack's endpoints and credentials for a `baton --backend aws` started with an empty
/// environment.
fn stack_env() -> Vec<(String, String)> {
    [
        ("AWS_ENDPOINT_URL", support::aws_endpoint()),
        ("AWS_ENDPOINT_URL_DYNAMODB", support::ddb_endpoint()),
        ("AWS_ACCESS_KEY_ID", "test".to_owned()),
        ("AWS_SECRET_ACCESS_KEY", "test".to_owned()),
        ("AWS_REGION", "us-east-1".to_owned()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect()
}

/// Forgets what earlier test runs wrote to the stack's memory (`MEM#` items), so the stack starts
/// from the same empty memory as the fresh embedded state directory.
fn forget_stack_memory() {
    let script = r#"
import boto3
import os
t = boto3.resource("dynamodb", endpoint_url=os.environ["DDB_ENDPOINT"], region_name="us-east-1",
                   aws_access_key_id="test", aws_secret_access_key="test").Table("baton-dev-runs")
start = None
while True:
    page = t.scan(**({"ExclusiveStartKey": start} if start else {}))
    for item in page["Items"]:
        if item["PK"].startswith("MEM#"):
            t.delete_item(Key={"PK": item["PK"], "SK": item["SK"]})
    start = page.get("LastEvaluatedKey")
    if not start:
        break
"#;
    let out = Command::new(support::emulator_python())
        .args(["-c", script])
        .env("DDB_ENDPOINT", support::ddb_endpoint())
        .output()
        .expect("python");
    assert!(out.status.success(), "clearing the stack's memory failed: {}", text(&out));
}

#[test]
fn every_reference_scenario_behaves_the_same_on_the_stack() {
    use support::scenarios::{Baton, all, play};
    let b = Backends::up();
    forget_stack_memory();
    let embedded = Baton { state: b.dir.path(), global: vec![], env: vec![] };
    let stack = Baton {
        state: b.dir.path(),
        global: ["--backend", "aws", "--stack", "baton-dev"].map(String::from).to_vec(),
        env: stack_env(),
    };
    for case in all() {
        let started = std::time::Instant::now();
        let on_laptop = play(&embedded, &case, Some(&case.mocks));
        let embedded_took = started.elapsed();
        let on_stack = play(&stack, &case, Some(&case.mocks));
        eprintln!("{}: embedded {embedded_took:?}, stack {:?}", case.name(), started.elapsed() - embedded_took);
        let (mut left, mut right) = (comparable(on_laptop.run), comparable(on_stack.run));
        // The stack's billing estimate is what only the stack has.
        right.as_object_mut().map(|o| o.remove("aws"));
        // A cached response's age and a memory write's time are the clock's, not the backend's.
        for key in ["cached_at", "age_ms", "at"] {
            strip(&mut left, key);
            strip(&mut right, key);
        }
        assert_eq!(right, left, "{}: run objects differ", case.name());
        assert_eq!(
            decisions(b.dir.path(), &on_stack.run_id, true),
            decisions(b.dir.path(), &on_laptop.run_id, false),
            "{}: audit decisions differ",
            case.name()
        );
        let verify = stack.exec(&["audit", "verify", &on_stack.run_id]);
        assert_eq!(verify.status.code(), Some(0), "{}: {}", case.name(), text(&verify));
        // The run report reads the stack's run like the laptop's.
        let page = b.dir.path().join("report.html");
        let out = stack.exec(&["report", &on_stack.run_id, "-o", page.to_str().expect("utf8")]);
        assert_eq!(out.status.code(), Some(0), "{}: report: {}", case.name(), text(&out));
        let html = std::fs::read_to_string(&page).expect("report written");
        for step in right["steps"].as_object().expect("steps").keys() {
            assert!(html.contains(&format!("data-step=\"{step}\"")), "{}: the report shows step {step}", case.name());
        }
    }
}
