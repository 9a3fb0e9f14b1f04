//! The `baton` command with `--backend aws`: runs, tasks and audits kept in the DynamoDB table of a
//! stack on the local DynamoDB endpoint (DynamoDB Local, started by `localstack/up`).

mod support;

use std::process::Command;

use serde_json::json;
use support::{DevHost, aws_endpoint, baton_aws, ddb_endpoint, ensure_endpoints, fixture, json_of, root, text};

#[test]
fn run_wait_approve_and_audit_on_dynamodb() {
    ensure_endpoints();
    // The stack's coordinator: `run` and `approve` hand their work to it.
    let _host = DevHost::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let wf = fixture("approval.yaml");
    let out = baton_aws(dir.path(), &["run", wf.to_str().expect("utf8"), "--input", r#"{"amount": 42}"#, "--json"]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    let run = json_of(&out);
    let id = run["run_id"].as_str().expect("id").to_owned();
    assert!(!dir.path().join("baton.db").exists(), "nothing was written to SQLite");

    let tasks = json_of(&baton_aws(dir.path(), &["tasks", "--json"]));
    let task = tasks.as_array().expect("array").iter().find(|t| t["run_id"] == id.as_str()).expect("the run's task");
    assert_eq!(task["queue"], "finance");
    let out = baton_aws(
        dir.path(),
        &["approve", task["id"].as_str().expect("id"), "--data", r#"{"reference": "R-1"}"#, "--json"],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let done = json_of(&out);
    assert_eq!(done["output"], json!({"decision": "approve", "paid": {"paid": 42, "reference": "R-1"}}));

    let mut shown = json_of(&baton_aws(dir.path(), &["runs", "show", &id, "--json"]));
    let aws = shown.as_object_mut().and_then(|o| o.remove("aws")).expect("runs show reports AWS usage");
    assert_eq!(shown, done);
    // Two escalation schedules were created with the task and deleted when it was answered.
    assert_eq!(aws["by_operation"]["Scheduler.CreateSchedule"], 2, "{aws}");
    assert_eq!(aws["by_operation"]["Scheduler.DeleteSchedule"], 2, "{aws}");
    assert!(aws["requests"].as_u64().expect("requests") >= 10, "{aws}");
    // Scheduler's API calls are counted, not billed.
    let billable = aws["billable_requests"].as_u64().expect("billable requests");
    assert_eq!(aws["requests"].as_u64().expect("requests") - billable, 4, "{aws}");
    assert!(aws["estimated_usd"].as_f64().expect("usd") > 0.0, "{aws}");
    assert_eq!(baton_aws(dir.path(), &["audit", "verify", &id]).status.code(), Some(0));
    assert_eq!(baton_aws(dir.path(), &["audit", "replay", &id]).status.code(), Some(0));
    let listed = json_of(&baton_aws(dir.path(), &["runs", "list", "--json", "--limit", "500"]));
    assert!(listed.as_array().expect("array").iter().any(|r| r["run_id"] == id.as_str()));
}

#[test]
fn a_missing_table_is_a_clear_error() {
    ensure_endpoints();
    let dir = tempfile::tempdir().expect("tempdir");
    let out = Command::new(env!("CARGO_BIN_EXE_baton"))
        .args(["--backend", "aws", "--stack", "no-such-stack", "runs", "list"])
        .arg("--json")
        .current_dir(dir.path())
        .env("AWS_ENDPOINT_URL", aws_endpoint())
        .env("AWS_ENDPOINT_URL_DYNAMODB", ddb_endpoint())
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("AWS_REGION", "us-east-1")
        .output()
        .expect("baton runs");
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out).contains("no-such-stack-runs"), "the error names the table: {}", text(&out));
}

/// The issue's walk-through: publish a workflow with an event trigger, put an event on the bus the
/// way any client would (boto3 here), and `baton dev` starts the run with the event as input.
#[test]
fn an_event_on_the_bus_starts_a_published_workflow() {
    ensure_endpoints();
    let dir = tempfile::tempdir().expect("tempdir");
    let tag = uuid_like();
    let name = format!("orders-{tag}");
    let wf = dir.path().join("wf.yaml");
    std::fs::write(
        &wf,
        format!(
            "name: {name}\ntriggers:\n  - event: {{source: [shop.{tag}], detail-type: [OrderDelayed], detail: {{days: [{{numeric: [\">\", 2]}}]}}}}\noutput: \"{{order: .input.detail.order_id, days: .input.detail.days}}\"\nsteps:\n  - {{id: note, tool: transform, with: {{expr: .input.detail.order_id}}}}\n"
        ),
    )
    .expect("write");
    let out = baton_aws(dir.path(), &["publish", wf.to_str().expect("utf8")]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(text(&out).contains(&format!("rule baton-dev-{name}-0")), "{}", text(&out));

    let put = |days: u32, order: &str| {
        let endpoint = aws_endpoint();
        let script = format!(
            "import boto3, json\nc = boto3.client('events', endpoint_url='{endpoint}', region_name='us-east-1', aws_access_key_id='test', aws_secret_access_key='test')\nr = c.put_events(Entries=[{{'EventBusName': 'baton-dev-bus', 'Source': 'shop.{tag}', 'DetailType': 'OrderDelayed', 'Detail': json.dumps({{'order_id': '{order}', 'days': {days}}})}}])\nassert r['FailedEntryCount'] == 0, r\n"
        );
        let status = Command::new(support::emulator_python()).arg("-c").arg(script).status().expect("python");
        assert!(status.success());
    };
    // The stack's coordinator (one host at a time per test process, see DevHost).
    let host = DevHost::start();
    put(1, "o-too-early"); // the numeric filter keeps this one from matching
    put(5, "o-late");

    let mut found = None;
    for _ in 0..100 {
        let runs = json_of(&baton_aws(dir.path(), &["runs", "list", "--json", "--limit", "500"]));
        found = runs
            .as_array()
            .expect("array")
            .iter()
            .find(|r| r["workflow"] == name.as_str() && r["status"] == "succeeded")
            .cloned();
        if found.is_some() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    let run = found.expect("a run of the published workflow");
    assert_eq!(run["status"], "succeeded", "{run}");
    assert_eq!(run["output"], json!({"order": "o-late", "days": 5}));
    let runs = json_of(&baton_aws(dir.path(), &["runs", "list", "--json", "--limit", "500"]));
    let mine = runs.as_array().expect("array").iter().filter(|r| r["workflow"] == name.as_str()).count();
    assert_eq!(mine, 1, "the event that did not match the pattern started nothing");

    let out = baton_aws(
        dir.path(),
        &["start", &name, "--input", r#"{"detail": {"order_id": "o-manual", "days": 3}}"#, "--json"],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(json_of(&out)["output"], json!({"order": "o-manual", "days": 3}));
    let missing = baton_aws(dir.path(), &["start", "no-such-workflow"]);
    assert_eq!(missing.status.code(), Some(2), "{}", text(&missing));
    drop(host);
}

fn uuid_like() -> String {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    format!("{:x}{:x}", nanos, std::process::id())
}

/// Redrive, retry from a step and pause/unpause on the stack: the actions travel to the
/// coordinator as queue messages and the runs end as they do embedded (cli/tests/operate.rs).
#[test]
fn operator_actions_repair_runs_on_the_stack() {
    ensure_endpoints();
    let _host = DevHost::start();
    let server = support::flaky_b();
    let dir = tempfile::tempdir().expect("tempdir");
    let input = json!({"base": server.base}).to_string();
    let wf = fixture("repairable.yaml");
    let out = baton_aws(dir.path(), &["run", wf.to_str().expect("utf8"), "--input", &input, "--json"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let id = json_of(&out)["run_id"].as_str().expect("id").to_owned();

    let out = baton_aws(dir.path(), &["runs", "redrive", &id, "--reason", "fixed", "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let v = json_of(&out);
    assert_eq!(v["status"], "succeeded", "{v}");
    assert_eq!(v["steps"]["b"]["attempts"], 2);
    assert_eq!(server.requests("/a").len(), 1, "a completed step is not re-executed");
    assert_eq!(server.requests("/b").len(), 2);

    let out = baton_aws(
        dir.path(),
        &["runs", "retry", &id, "--from", "c", "--input", r#"{"body": {"again": true}}"#, "--json"],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(json_of(&out)["output"], json!({"path": "/c", "n": 1}));
    let c = server.requests("/c");
    assert_eq!(c.len(), 2);
    assert_eq!(serde_json::from_str::<serde_json::Value>(&c[1].body).expect("json"), json!({"again": true}));
    assert_eq!(baton_aws(dir.path(), &["runs", "redrive", &id]).status.code(), Some(2));

    // Pause a run waiting on a person; the answer is taken but the next step is held.
    let wf = fixture("approval.yaml");
    let out = baton_aws(dir.path(), &["run", wf.to_str().expect("utf8"), "--input", r#"{"amount": 7}"#, "--json"]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    let held = json_of(&out)["run_id"].as_str().expect("id").to_owned();
    let out = baton_aws(dir.path(), &["runs", "pause", &held, "--json"]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    assert!(json_of(&out)["paused"]["by"].is_string());
    let tasks = json_of(&baton_aws(dir.path(), &["tasks", "--json"]));
    let task = tasks.as_array().expect("array").iter().find(|t| t["run_id"] == held.as_str()).expect("task");
    let out = baton_aws(
        dir.path(),
        &["approve", task["id"].as_str().expect("id"), "--data", r#"{"reference": "R-7"}"#, "--json"],
    );
    assert_eq!(out.status.code(), Some(3), "paused: {}", text(&out));
    let out = baton_aws(dir.path(), &["runs", "unpause", &held, "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(json_of(&out)["output"]["paid"], json!({"paid": 7, "reference": "R-7"}));
    for run in [&id, &held] {
        assert_eq!(baton_aws(dir.path(), &["audit", "verify", run]).status.code(), Some(0));
        assert_eq!(baton_aws(dir.path(), &["audit", "replay", run]).status.code(), Some(0));
    }
}

/// The HTTP API over the stack: `baton --backend aws serve` carries the same handler the `api`
/// function does, reading the stack's table and sending changes to its coordinator queue. A run
/// started over the API fails on a flaky service, is listed, shown, verified, and redriven.
#[test]
fn the_http_api_starts_lists_and_redrives_runs_on_the_stack() {
    use std::io::{Read, Write};
    ensure_endpoints();
    let _host = DevHost::start();
    let server = support::flaky_b();
    let dir = tempfile::tempdir().expect("tempdir");
    let wf = fixture("repairable.yaml");
    let out = baton_aws(dir.path(), &["publish", wf.to_str().expect("utf8")]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));

    let port = std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_baton"));
    cmd.args(["--backend", "aws", "--stack", "baton-dev", "--state-dir"])
        .arg(dir.path())
        .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .current_dir(root())
        .env("BATON_API_TOKEN", "stack-token")
        .env_remove("BATON_CALLBACK_SECRET")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    support::aws_env(&mut cmd);
    struct Killed(std::process::Child);
    impl Drop for Killed {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let _serve = Killed(cmd.spawn().expect("serve"));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(std::time::Instant::now() < deadline, "serve did not start");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let call = |method: &str, path: &str, body: &str| -> (u16, serde_json::Value) {
        let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
        let req = format!(
            "{method} {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer stack-token\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        s.write_all(req.as_bytes()).expect("write");
        let mut raw = String::new();
        s.read_to_string(&mut raw).expect("read");
        let (head, rest) = raw.split_once("\r\n\r\n").expect("a response");
        let status = head.split_whitespace().nth(1).and_then(|c| c.parse().ok()).expect("status");
        (status, serde_json::from_str(rest.trim()).unwrap_or(serde_json::Value::Null))
    };

    let input = json!({"base": server.base}).to_string();
    let (status, run) = call("POST", "/api/workflows/repairable/runs?wait=60", &input);
    assert_eq!(status, 201, "{run}");
    assert_eq!(run["status"], "failed", "{run}");
    assert!(run["aws"]["requests"].as_u64().is_some_and(|n| n > 0), "the stack's request count: {run}");
    let id = run["run_id"].as_str().expect("id").to_owned();

    let (status, page) = call("GET", "/api/runs?workflow=repairable&status=failed&limit=100", "");
    assert_eq!(status, 200, "{page}");
    assert!(page["runs"].as_array().expect("runs").iter().any(|r| r["run_id"] == id.as_str()), "{page}");
    let (status, verdict) = call("GET", &format!("/api/runs/{id}/audit/verify"), "");
    assert_eq!((status, &verdict["intact"]), (200, &json!(true)), "{verdict}");

    let (status, done) = call("POST", &format!("/api/runs/{id}/redrive?wait=60"), r#"{"reason": "fixed"}"#);
    assert_eq!(status, 200, "{done}");
    assert_eq!(done["status"], "succeeded", "{done}");
    assert_eq!(server.requests("/a").len(), 1, "a completed step is not re-executed");
    assert_eq!(server.requests("/b").len(), 2);
    let (status, _) = call("POST", &format!("/api/runs/{id}/redrive"), "");
    assert_eq!(status, 409, "a succeeded run has nothing to redrive");
}

/// With `BATON_AUDIT_KEY` on the stack (here `baton dev`, on AWS the coordinator function's
/// `BATON_AUDIT_KEY_ARN`), runs are sealed with signed digests in DynamoDB: `audit verify
/// --require-signed` passes, and so does the export, checked without any store.
#[test]
fn a_stack_with_an_audit_key_seals_its_runs() {
    ensure_endpoints();
    let key = "5a".repeat(32);
    let _host = DevHost::start_with_env(&[("BATON_AUDIT_KEY", key.as_str())]);
    let dir = tempfile::tempdir().expect("tempdir");
    let wf = dir.path().join("sealed.yaml");
    std::fs::write(
        &wf,
        "name: sealed-demo\nsteps:\n  - {id: a, tool: transform, with: {expr: \"1\"}}\n  - {id: b, needs: [a], tool: transform, with: {expr: \"2\"}}\n",
    )
    .expect("write");
    let baton = |args: &[&str]| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_baton"));
        cmd.args(["--backend", "aws", "--stack", "baton-dev"]).args(args).current_dir(dir.path());
        support::aws_env(&mut cmd).env("BATON_AUDIT_KEY", &key).output().expect("baton runs")
    };
    let out = baton(&["run", wf.to_str().expect("utf8"), "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let id = json_of(&out)["run_id"].as_str().expect("id").to_owned();
    let out = baton(&["audit", "verify", &id, "--require-signed"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(text(&out).contains("signed"), "{}", text(&out));
    let export = dir.path().join("export");
    let out = baton(&["audit", "export", &id, "-o", export.to_str().expect("utf8")]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let out = baton(&["audit", "verify", "--export", export.to_str().expect("utf8"), "--require-signed"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    // Without the key the CLI cannot check the seals it finds: a clear error, not a pass.
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_baton"));
    cmd.args(["--backend", "aws", "--stack", "baton-dev", "audit", "verify", &id]).current_dir(dir.path());
    let out = support::aws_env(&mut cmd).env_remove("BATON_AUDIT_KEY").output().expect("baton runs");
    assert_ne!(out.status.code(), Some(0), "{}", text(&out));
    assert!(text(&out).contains("no audit key"), "{}", text(&out));
}
