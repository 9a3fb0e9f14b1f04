//! End-to-end tests of the `baton` command on the embedded backend: the CLI contracts (flags,
//! JSON shapes, exit codes), real HTTP with retries and idempotency keys, human tasks, sagas,
//! loops, crash and resume, and audit tampering.

mod support;

use std::time::Duration;

use serde_json::json;
use support::{Reply, Server, baton, baton_json, fixture, text};

fn tmp() -> tempfile::TempDir {
    tempfile::tempdir().expect("tempdir")
}

#[test]
fn validate_exits_0_for_valid_and_2_for_invalid_files() {
    let dir = tmp();
    let ok =
        baton(dir.path(), &["validate", "workflows/order-triage/workflow.yaml", "tests/fixtures/workflows/saga.yaml"]);
    assert_eq!(ok.status.code(), Some(0), "{}", text(&ok));
    let bad = write_file(
        dir.path(),
        "bad.yaml",
        "name: x\nsteps:\n  - id: a\n    tool: htp\n  - id: a\n    tool: http\n    neds: [b]\n",
    );
    let out = baton(dir.path(), &["validate", &bad]);
    assert_eq!(out.status.code(), Some(2));
    let t = text(&out);
    assert!(t.contains("unknown tool `htp` (did you mean `http`?)"), "{t}");
    assert!(t.contains("unknown field `neds` (did you mean `needs`?)"), "{t}");
    assert!(t.contains("bad.yaml:7:5"), "problems carry line:column: {t}");
}

#[test]
fn run_json_reports_the_contract_shape_and_exit_0() {
    let dir = tmp();
    let (code, v) = baton_json(dir.path(), &triage_args("@workflows/order-triage/inputs/late.json"));
    assert_eq!(code, 0, "{v}");
    assert_eq!(v["status"], "succeeded");
    assert_eq!(v["output"], json!({"order": "o-1001", "late": true, "refund": "approve"}));
    assert!(v["run_id"].as_str().is_some_and(|s| !s.is_empty()));
    for step in ["inventory", "shipping", "lines", "late", "ticket", "approve_refund"] {
        let s = &v["steps"][step];
        assert_eq!(s["status"], "succeeded", "{step}: {s}");
        assert!(s.get("attempts").is_some() && s.get("output").is_some() && s.get("error").is_some(), "{step}: {s}");
    }
    assert_eq!(v["steps"]["lines"]["output"][1]["sku"], "B-7", "for_each output keeps item order");
}

#[test]
fn invalid_input_exits_2_and_writes_no_state() {
    let dir = tmp();
    let out = baton(dir.path(), &["run", "workflows/order-triage/workflow.yaml", "--input", "{\"order_id\": 7}"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("/order_id"), "{}", text(&out));
    let (_, runs) = baton_json(dir.path(), &["runs", "list", "--json"]);
    assert_eq!(runs, json!([]), "no run was created");
}

#[test]
fn http_retries_on_5xx_with_one_idempotency_key_per_attempt() {
    let server = Server::start(|req, n| match req.path.as_str() {
        "/inventory" if n < 2 => Reply::json(503, r#"{"error":"busy"}"#),
        "/inventory" => Reply::json(200, r#"{"qty": 3}"#),
        "/price" => Reply::json(200, r#"{"price": 9.5}"#),
        _ => Reply::json(404, "{}"),
    });
    let dir = tmp();
    let input = json!({"base": server.base}).to_string();
    let (code, v) = baton_json(
        dir.path(),
        &["run", fixture("http-retry.yaml").to_str().expect("utf8"), "--input", &input, "--json"],
    );
    assert_eq!(code, 0, "{v}");
    assert_eq!(v["output"], json!({"qty": 3, "price": 9.5}));
    assert_eq!(v["steps"]["inventory"]["attempts"], 3);
    let keys: Vec<String> = server.requests("/inventory").into_iter().filter_map(|r| r.idempotency_key).collect();
    let run_id = v["run_id"].as_str().expect("id");
    assert_eq!(
        keys,
        vec![format!("{run_id}/inventory/0/1"), format!("{run_id}/inventory/0/2"), format!("{run_id}/inventory/0/3")]
    );
    let price = server.requests("/price");
    assert_eq!(price.len(), 1);
    assert_eq!(price[0].method, "POST");
    assert_eq!(serde_json::from_str::<serde_json::Value>(&price[0].body).expect("json body"), json!({"qty": 3}));

    let (_, audit) = baton_json(dir.path(), &["audit", "show", run_id, "--json"]);
    let retries: Vec<&serde_json::Value> =
        audit.as_array().expect("array").iter().filter(|r| r["decision"] == "retry").collect();
    assert_eq!(retries.len(), 2);
    assert_eq!(retries[0]["values"]["error"]["kind"], "http_5xx");
    assert_eq!(retries[0]["values"]["delay_ms"], 50);
    assert_eq!(retries[1]["values"]["delay_ms"], 100);
}

#[test]
fn http_4xx_is_not_retried_and_fails_the_run_with_exit_1() {
    let server = Server::start(|_, _| Reply::json(404, r#"{"error":"no such order"}"#));
    let dir = tmp();
    let input = json!({"base": server.base}).to_string();
    let (code, v) = baton_json(
        dir.path(),
        &["run", fixture("http-retry.yaml").to_str().expect("utf8"), "--input", &input, "--json"],
    );
    assert_eq!(code, 1);
    assert_eq!(v["status"], "failed");
    assert_eq!(v["steps"]["inventory"]["error"]["kind"], "http_4xx");
    assert_eq!(v["steps"]["inventory"]["attempts"], 1);
    assert_eq!(server.requests("/inventory").len(), 1);
    assert!(v["steps"].get("price").is_none(), "a step after a failure never starts");
}

#[test]
fn http_429_honours_retry_after() {
    let server = Server::start(|req, n| match req.path.as_str() {
        "/inventory" if n == 0 => Reply::json(429, "{}").with_header("Retry-After", "1"),
        "/inventory" => Reply::json(200, r#"{"qty": 1}"#),
        _ => Reply::json(200, r#"{"price": 1}"#),
    });
    let dir = tmp();
    let input = json!({"base": server.base}).to_string();
    let (code, v) = baton_json(
        dir.path(),
        &["run", fixture("http-retry.yaml").to_str().expect("utf8"), "--input", &input, "--json"],
    );
    assert_eq!(code, 0, "{v}");
    let (_, audit) = baton_json(dir.path(), &["audit", "show", v["run_id"].as_str().expect("id"), "--json"]);
    let retry = audit.as_array().expect("array").iter().find(|r| r["decision"] == "retry").expect("a retry");
    assert_eq!(retry["values"]["retry_after_ms"], 1000);
    assert_eq!(retry["values"]["delay_ms"], 1000, "Retry-After lengthens the 50ms backoff");
}

#[test]
fn human_task_waits_with_exit_3_then_approve_continues() {
    let dir = tmp();
    let (code, v) = baton_json(
        dir.path(),
        &["run", fixture("approval.yaml").to_str().expect("utf8"), "--input", r#"{"amount": 120}"#, "--json"],
    );
    assert_eq!(code, 3, "{v}");
    assert_eq!(v["status"], "waiting");
    let (_, tasks) = baton_json(dir.path(), &["tasks", "--json"]);
    let task = &tasks[0];
    assert_eq!(task["queue"], "finance");
    assert_eq!(task["step"], "approve");
    let summary = task["summary"].as_str().expect("summary");
    for section in
        ["What this is about", "What happened and why", "What is asked", "Evidence", "Options", "Pay 120 EUR?"]
    {
        assert!(summary.contains(section), "summary lacks `{section}`: {summary}");
    }
    let id = task["id"].as_str().expect("id");
    let bad = baton(dir.path(), &["approve", id, "--data", "{}"]);
    assert_eq!(bad.status.code(), Some(2), "data is checked against the form: {}", text(&bad));
    let (code, v) = baton_json(
        dir.path(),
        &["approve", id, "--data", r#"{"reference": "INV-7"}"#, "--by", "ana", "--comment", "ok", "--json"],
    );
    assert_eq!(code, 0, "{v}");
    assert_eq!(
        v["steps"]["approve"]["output"],
        json!({"decision": "approve", "data": {"reference": "INV-7"}, "comment": "ok", "by": "ana"})
    );
    assert_eq!(v["output"]["paid"], json!({"paid": 120, "reference": "INV-7"}));
    let (_, tasks) = baton_json(dir.path(), &["tasks", "--json"]);
    assert_eq!(tasks, json!([]));
}

#[test]
fn reject_is_an_answer_and_skips_the_conditional_step() {
    let dir = tmp();
    let (_, v) = baton_json(
        dir.path(),
        &["run", fixture("approval.yaml").to_str().expect("utf8"), "--input", r#"{"amount": 5}"#, "--json"],
    );
    let run_id = v["run_id"].as_str().expect("id").to_owned();
    let (_, tasks) = baton_json(dir.path(), &["tasks", "--json"]);
    let (code, v) =
        baton_json(dir.path(), &["reject", tasks[0]["id"].as_str().expect("id"), "--comment", "too much", "--json"]);
    assert_eq!(code, 0, "{v}");
    assert_eq!(v["run_id"], run_id.as_str());
    assert_eq!(v["steps"]["approve"]["status"], "succeeded");
    assert_eq!(v["steps"]["pay"]["status"], "skipped");
    assert_eq!(v["output"], json!({"decision": "reject", "paid": null}));
}

#[test]
fn unknown_task_and_run_exit_2() {
    let dir = tmp();
    assert_eq!(baton(dir.path(), &["approve", "t-nope"]).status.code(), Some(2));
    assert_eq!(baton(dir.path(), &["runs", "show", "nope"]).status.code(), Some(2));
}

#[test]
fn saga_compensates_newest_first_and_fails() {
    let dir = tmp();
    let (code, v) = baton_json(dir.path(), &["run", fixture("saga.yaml").to_str().expect("utf8"), "--json"]);
    assert_eq!(code, 1, "{v}");
    assert_eq!(v["status"], "failed");
    assert_eq!(v["steps"]["ship"]["error"]["kind"], "connect");
    let (_, audit) = baton_json(dir.path(), &["audit", "show", v["run_id"].as_str().expect("id"), "--json"]);
    let comps: Vec<&str> = audit
        .as_array()
        .expect("array")
        .iter()
        .filter(|r| r["decision"] == "compensate_step")
        .filter_map(|r| r["node"].as_str())
        .collect();
    assert_eq!(comps, vec!["refund~charge", "cancel_booking~book"]);
}

#[test]
fn loop_escalates_at_its_bound_only_when_needed() {
    let dir = tmp();
    let (code, v) = baton_json(dir.path(), &["run", fixture("refine-loop.yaml").to_str().expect("utf8"), "--json"]);
    assert_eq!(code, 0, "{v}");
    assert_eq!(v["steps"]["refine"]["attempts"], 2, "until was true on iteration 2");
    assert_eq!(v["steps"]["publish"]["output"], "draft 2");
    assert_eq!(v["output"]["check"]["ok"], true);
}

#[test]
fn mocks_answer_the_nth_call_and_are_marked_in_the_audit() {
    let dir = tmp();
    let mocks = write_file(
        dir.path(),
        "mocks.yaml",
        "steps:\n  inventory:\n    - {error: http_5xx, message: down}\n    - {output: {status: 200, body: {qty: 4}}}\n  price:\n    - {output: {status: 200, body: {price: 2}}}\n",
    );
    let (code, v) = baton_json(
        dir.path(),
        &[
            "run",
            fixture("http-retry.yaml").to_str().expect("utf8"),
            "--input",
            r#"{"base": "http://127.0.0.1:9"}"#,
            "--mocks",
            &mocks,
            "--json",
        ],
    );
    assert_eq!(code, 0, "{v}");
    assert_eq!(v["output"], json!({"qty": 4, "price": 2}));
    assert_eq!(v["steps"]["inventory"]["attempts"], 2);
    let (_, audit) = baton_json(dir.path(), &["audit", "show", v["run_id"].as_str().expect("id"), "--json"]);
    let mocked = audit.as_array().expect("array").iter().filter(|r| r["values"]["mocked"] == true).count();
    assert_eq!(mocked, 2, "both successful mocked calls are marked");
    let bad = dir.path().join("bad-mocks.yaml");
    std::fs::write(&bad, "steps:\n  inventroy:\n    - {output: 1}\n").expect("write");
    let out = baton(
        dir.path(),
        &[
            "run",
            fixture("http-retry.yaml").to_str().expect("utf8"),
            "--input",
            r#"{"base": "x"}"#,
            "--mocks",
            bad.to_str().expect("utf8"),
        ],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out).contains("did you mean `inventory`"), "{}", text(&out));
}

#[test]
fn audit_verify_detects_edit_delete_and_reorder() {
    let dir = tmp();
    let id = triage_run(dir.path());
    assert_audit_holds(dir.path(), &id);
    let db = dir.path().join("baton.db");
    let sql = |q: &str| {
        let c = rusqlite_exec(&db, q);
        assert!(c, "sql failed: {q}");
    };
    // The first record of a call that returned.
    let (_, audit) = baton_json(dir.path(), &["audit", "show", &id, "--json"]);
    let seq = audit
        .as_array()
        .expect("records")
        .iter()
        .find(|r| r["reason"] == "the tool call returned")
        .and_then(|r| r["seq"].as_u64())
        .expect("a call returned");
    sql(&format!(
        "UPDATE audit SET record = replace(record, 'the tool call returned', 'the tool call returnd') WHERE run_id = '{id}' AND seq = {seq}"
    ));
    let out = baton(dir.path(), &["audit", "verify", &id]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out).contains(&format!("record {seq} was modified")), "{}", text(&out));
    assert_eq!(baton(dir.path(), &["audit", "replay", &id]).status.code(), Some(1), "replay names the divergence too");
}

#[test]
fn audit_verify_detects_a_deleted_record() {
    let dir = tmp();
    let id = triage_run(dir.path());
    assert!(rusqlite_exec(
        &dir.path().join("baton.db"),
        &format!("DELETE FROM audit WHERE run_id = '{id}' AND seq = 5")
    ));
    let out = baton(dir.path(), &["audit", "verify", &id]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out).contains("has seq 6, expected 5"), "{}", text(&out));
}

#[test]
fn audit_verify_detects_a_deleted_last_record_against_the_runs_head() {
    let dir = tmp();
    let id = triage_run(dir.path());
    let db = dir.path().join("baton.db");
    let (_, audit) = baton_json(dir.path(), &["audit", "show", &id, "--json"]);
    let last = audit.as_array().map(Vec::len).unwrap_or(0);
    assert!(rusqlite_exec(&db, &format!("DELETE FROM audit WHERE run_id = '{id}' AND seq = {last}")));
    let out = baton(dir.path(), &["audit", "verify", &id]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let expected = format!("records {last} to {last} were deleted");
    assert!(text(&out).contains(&expected), "{}", text(&out));
}

/// Writes `text` to `name` in `dir` and returns the file's path.
fn write_file(dir: &std::path::Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write");
    path.to_str().expect("utf8").to_owned()
}

/// The order-triage example's `run` arguments with its mocks, `input`, and `--json`.
fn triage_args(input: &str) -> [&str; 7] {
    [
        "run",
        "workflows/order-triage/workflow.yaml",
        "--input",
        input,
        "--mocks",
        "workflows/order-triage/mocks.yaml",
        "--json",
    ]
}

/// Runs the order-triage example offline and returns its run id.
fn triage_run(dir: &std::path::Path) -> String {
    let (_, v) = baton_json(dir, &triage_args(r#"{"order_id":"o-9"}"#));
    v["run_id"].as_str().expect("id").to_owned()
}

/// `audit verify` and `audit replay` both accept the run's chain.
fn assert_audit_holds(dir: &std::path::Path, id: &str) {
    assert_eq!(baton(dir, &["audit", "verify", id]).status.code(), Some(0));
    assert_eq!(baton(dir, &["audit", "replay", id]).status.code(), Some(0));
}

fn rusqlite_exec(db: &std::path::Path, sql: &str) -> bool {
    // The sqlite3 shell is not on every machine; the test binary talks to SQLite through the
    // runtime's store, which exposes a raw statement for exactly this purpose.
    let store = baton_embedded::sqlite::SqliteStore::open(
        db.parent().expect("dir"),
        baton_embedded::sqlite::Durability::Normal,
    )
    .expect("open");
    store.execute_raw(sql).map(|n| n > 0).unwrap_or(false)
}

#[test]
fn graph_prints_mermaid_and_dot() {
    let dir = tmp();
    let out = baton(dir.path(), &["graph", "workflows/order-triage/workflow.yaml"]);
    let t = String::from_utf8_lossy(&out.stdout);
    assert!(t.starts_with("flowchart TD"), "{t}");
    assert!(t.contains("inventory --> late"), "{t}");
    let out = baton(dir.path(), &["graph", "tests/fixtures/workflows/saga.yaml", "--format", "dot"]);
    let t = String::from_utf8_lossy(&out.stdout);
    assert!(t.contains("\"charge\" -> \"refund\" [label=\"compensate\""), "{t}");
}

#[test]
fn cancel_compensates_and_runs_list_is_newest_first() {
    let dir = tmp();
    let (_, first) = baton_json(
        dir.path(),
        &["run", fixture("approval.yaml").to_str().expect("utf8"), "--input", r#"{"amount": 1}"#, "--json"],
    );
    std::thread::sleep(Duration::from_millis(5));
    let (_, second) = baton_json(
        dir.path(),
        &["run", fixture("approval.yaml").to_str().expect("utf8"), "--input", r#"{"amount": 2}"#, "--json"],
    );
    let (_, list) = baton_json(dir.path(), &["runs", "list", "--json"]);
    assert_eq!(list[0]["run_id"], second["run_id"]);
    assert_eq!(list[1]["run_id"], first["run_id"]);
    let (code, v) = baton_json(dir.path(), &["cancel", first["run_id"].as_str().expect("id"), "--json"]);
    assert_eq!(code, 0, "{v}");
    assert_eq!(v["status"], "cancelled");
    assert_eq!(v["steps"]["approve"]["status"], "cancelled");
    let (_, tasks) = baton_json(dir.path(), &["tasks", "--json"]);
    assert_eq!(tasks.as_array().map(Vec::len), Some(1), "the cancelled run's task is closed");
}

#[test]
fn kill_9_mid_step_then_resume_finishes_without_repeating_finished_steps() {
    let server = Server::start(|req, n| match req.path.as_str() {
        "/first" => Reply::json(200, r#"{"ok": true}"#),
        "/slow" if n == 0 => Reply::json(200, r#"{"late": true}"#).after(Duration::from_secs(30)),
        _ => Reply::json(200, r#"{"done": 1}"#),
    });
    let dir = tmp();
    let input = json!({"base": server.base}).to_string();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_baton"))
        .arg("--state-dir")
        .arg(dir.path())
        .args(["run", fixture("slow-step.yaml").to_str().expect("utf8"), "--input", &input, "--json"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn");
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while server.requests("/slow").is_empty() {
        assert!(std::time::Instant::now() < deadline, "the slow step never started");
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().expect("kill -9");
    let _ = child.wait();
    let (code, v) = baton_json(dir.path(), &["resume", "--json"]);
    assert_eq!(code, 0, "{v}");
    let run = &v[0];
    assert_eq!(run["status"], "succeeded", "{run}");
    assert_eq!(run["steps"]["after"]["output"], json!({"done": 1}));
    assert_eq!(server.requests("/first").len(), 1, "a finished step does not run again");
    let slow = server.requests("/slow");
    assert_eq!(slow.len(), 2, "the in-flight step is retried once");
    assert_eq!(slow[0].idempotency_key, slow[1].idempotency_key, "with the same idempotency key");
    let id = run["run_id"].as_str().expect("id");
    assert_audit_holds(dir.path(), id);
}

#[test]
fn kill_9_at_random_moments_never_repeats_a_finished_step() {
    // Each step answers after a short delay so kills land inside calls as well as between them.
    let server = Server::start(|req, _| {
        Reply::json(200, &format!(r#"{{"at": "{}"}}"#, req.path)).after(Duration::from_millis(15))
    });
    let dir = tmp();
    let input = json!({"base": server.base}).to_string();
    let wf = fixture("long-chain.yaml");
    let spawn = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_baton"))
            .arg("--state-dir")
            .arg(dir.path())
            .args(args)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("spawn")
    };
    let mut child = spawn(&["run", wf.to_str().expect("utf8"), "--input", &input, "--json"]);
    // Kill only once the run exists: on a loaded machine the process may take longer to start
    // than the first kill point, and a kill before the run exists tests nothing.
    let started = std::time::Instant::now();
    while server.requests("/s1").is_empty() {
        assert!(started.elapsed() < Duration::from_secs(20), "the run did not start");
        std::thread::sleep(Duration::from_millis(5));
    }
    // Pseudo-random but reproducible kill points (ms after each start).
    let delays = [120u64, 45, 200, 80, 150, 30, 260];
    let mut kills = 0;
    for d in delays {
        std::thread::sleep(Duration::from_millis(d));
        if child.try_wait().expect("wait").is_some() {
            break;
        }
        child.kill().expect("kill -9");
        let _ = child.wait();
        kills += 1;
        child = spawn(&["resume", "--json"]);
    }
    let _ = child.wait();
    let (code, v) = baton_json(dir.path(), &["resume", "--json"]);
    assert_eq!(code, 0, "{v}");
    let (_, runs) = baton_json(dir.path(), &["runs", "list", "--json"]);
    let run = &runs[0];
    assert_eq!(run["status"], "succeeded", "{run}");
    assert_eq!(run["output"], json!({"at": "/s30"}));
    assert!(kills > 0, "the test killed the process at least once");
    for i in 1..=30 {
        let seen = server.requests(&format!("/s{i}"));
        assert!(!seen.is_empty(), "step s{i} ran");
        // A step is called again only if a kill landed while its call was in flight, and then
        // with the same idempotency key.
        assert!(seen.len() <= 1 + kills, "s{i} called {} times with {kills} kills", seen.len());
        let keys: std::collections::BTreeSet<_> = seen.iter().map(|s| s.idempotency_key.clone()).collect();
        assert_eq!(keys.len(), 1, "s{i} always carries one idempotency key: {keys:?}");
    }
    let id = run["run_id"].as_str().expect("id");
    assert_audit_holds(dir.path(), id);
}

#[test]
fn sleep_waits_on_a_durable_timer_and_timeouts_retry() {
    let server = Server::start(|_, n| {
        if n == 0 {
            Reply::json(200, r#"{"slow": true}"#).after(Duration::from_secs(3))
        } else {
            Reply::json(200, r#"{"ok": true}"#)
        }
    });
    let dir = tmp();
    let input = json!({"base": server.base}).to_string();
    let started = std::time::Instant::now();
    let (code, v) =
        baton_json(dir.path(), &["run", fixture("sleepy.yaml").to_str().expect("utf8"), "--input", &input, "--json"]);
    assert_eq!(code, 0, "{v}");
    assert!(started.elapsed() >= Duration::from_millis(300), "the sleep step really waited");
    assert_eq!(v["steps"]["nap"]["status"], "succeeded");
    assert_eq!(v["steps"]["call"]["attempts"], 2, "the first attempt timed out");
    assert_eq!(v["steps"]["call"]["output"]["body"], json!({"ok": true}));
    let (_, audit) = baton_json(dir.path(), &["audit", "show", v["run_id"].as_str().expect("id"), "--json"]);
    let retry = audit.as_array().expect("array").iter().find(|r| r["decision"] == "retry").expect("a retry");
    assert_eq!(retry["values"]["error"]["kind"], "timeout");
}

#[test]
fn ctrl_c_detaches_and_resume_finishes() {
    let dir = tmp();
    let wf = fixture("nap.yaml").display().to_string();
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_baton"))
        .arg("--state-dir")
        .arg(dir.path())
        .args(["run", &wf, "--json"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn");
    std::thread::sleep(Duration::from_millis(400));
    let status =
        std::process::Command::new("kill").args(["-INT", &child.id().to_string()]).status().expect("kill -INT");
    assert!(status.success());
    let out = child.wait_with_output().expect("wait");
    assert_eq!(out.status.code(), Some(3), "detached runs wait: {}", text(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(v["status"], "waiting");
    let id = v["run_id"].as_str().expect("id").to_owned();
    let (code, v) = baton_json(dir.path(), &["resume", &id, "--json"]);
    assert_eq!(code, 0, "{v}");
    assert_eq!(v["steps"]["done"]["output"], 42);
    let (code, shown) = baton_json(dir.path(), &["runs", "show", &id, "--json"]);
    assert_eq!(code, 0);
    assert_eq!(shown, v, "runs show prints the same object as resume");
}

#[test]
fn an_event_starts_the_published_workflows_whose_triggers_match_embedded() {
    let dir = tmp();
    let wf = fixture("on-delay.yaml").display().to_string();
    let out = baton(dir.path(), &["publish", &wf]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let (code, runs) = baton_json(
        dir.path(),
        &[
            "event",
            r#"{"source": "shop", "detail-type": "OrderDelayed", "detail": {"order_id": "o-9", "days": 4}}"#,
            "--json",
        ],
    );
    assert_eq!(code, 0, "{runs}");
    let runs = runs.as_array().expect("array");
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0]["output"], json!({"order": "o-9", "source": "shop", "has_id": true}));
    let (code, none) = baton_json(
        dir.path(),
        &[
            "event",
            r#"{"source": "shop", "detail-type": "OrderDelayed", "detail": {"order_id": "o-1", "days": 1}}"#,
            "--json",
        ],
    );
    assert_eq!((code, none), (0, json!([])), "a non-matching event starts nothing");
    let bad = baton(dir.path(), &["event", r#"{"detail": {}}"#]);
    assert_eq!(bad.status.code(), Some(2), "{}", text(&bad));
    assert!(text(&bad).contains("detail-type"), "{}", text(&bad));
}

#[test]
fn fallback_cache_fails_with_the_steps_own_error_when_nothing_fresh_is_kept() {
    let dir = tmp();
    let server = Server::up_once(r#"{"price": 7}"#);
    let wf = fixture("short-cache.yaml").display().to_string();
    let run = |url: &str| {
        let input = json!({"url": url}).to_string();
        baton_json(dir.path(), &["run", &wf, "--input", &input, "--json"])
    };
    let (code, _) = run(&format!("{}/quote", server.base));
    assert_eq!(code, 0);
    std::thread::sleep(Duration::from_millis(120));
    let (code, v) = run(&format!("{}/quote", server.base));
    assert_eq!(code, 1, "{v}");
    assert_eq!(v["steps"]["quote"]["error"]["kind"], "http_5xx", "the step's own error: {v}");
    assert!(v["steps"]["quote"]["error"]["message"].as_str().unwrap_or_default().contains("older than its ttl"), "{v}");
    // Other arguments, other request key: nothing kept for them.
    let (code, v) = run(&format!("{}/quote?other=1", server.base));
    assert_eq!(code, 1, "{v}");
    assert!(v["steps"]["quote"]["error"]["message"].as_str().unwrap_or_default().contains("is cached"), "{v}");
}

#[test]
fn fallback_cache_is_checked_before_a_run_starts() {
    let dir = tmp();
    let wf = write_file(
        dir.path(),
        "bad-cache.yaml",
        "name: bad\nsteps:\n  - {id: a, tool: http, with: {url: 'http://x'}, fallback: cache}\n  - {id: b, tool: transform, with: {expr: '1'}, cache: {ttl: 1h}}\n",
    );
    let out = baton(dir.path(), &["validate", &wf]);
    assert_eq!(out.status.code(), Some(2));
    let t = text(&out);
    assert!(t.contains("step `a`: field `fallback`") && t.contains("add `cache: {ttl: ...}`"), "{t}");
    assert!(t.contains("step `b`: field `cache`") && t.contains("`http` and `llm`"), "{t}");
}

#[test]
fn the_support_agent_example_runs_offline_through_its_agent_sub_workflow_and_memory() {
    let dir = tmp();
    let root = support::root();
    let wf = root.join("workflows/support-agent/workflow.yaml");
    let input = format!("@{}", root.join("workflows/support-agent/inputs/broken-kettle.json").display());
    let mocks = root.join("workflows/support-agent/mocks.yaml");
    let child = root.join("workflows/refund-approval/workflow.yaml");
    assert_eq!(baton(dir.path(), &["publish", child.to_str().expect("utf8")]).status.code(), Some(0));
    let args =
        ["run", wf.to_str().expect("utf8"), "--input", &input, "--mocks", mocks.to_str().expect("utf8"), "--json"];
    let (code, v) = baton_json(dir.path(), &args);
    assert_eq!(code, 3, "the refund waits on finance in the child run: {v}");
    let parent = v["run_id"].as_str().expect("id").to_owned();
    let (_, tasks) = baton_json(dir.path(), &["tasks", "--json"]);
    let task = tasks[0]["id"].as_str().expect("task").to_owned();
    assert_eq!(tasks[0]["queue"], "finance");
    let (code, _) = baton_json(dir.path(), &["approve", &task, "--by", "dana", "--json"]);
    assert_eq!(code, 0);
    let (_, run) = baton_json(dir.path(), &["runs", "show", &parent, "--json"]);
    assert_eq!(run["status"], "succeeded", "{run}");
    assert_eq!(run["output"]["approval"], json!({"approved": true, "by": "dana"}));
    assert_eq!(run["output"]["resolution"]["action"], "refund");
    assert_eq!(run["output"]["earlier_tickets"], 0);
    assert_eq!(run["output"]["paid"], json!({"order_id": "A-1042", "amount": 129.9}), "the payout event (mocked)");
    assert_eq!(run["output"]["tracking_stale"], false);
    // The customer's next ticket remembers this one.
    let (_, again) = baton_json(dir.path(), &args);
    let (_, again) = baton_json(dir.path(), &["runs", "show", again["run_id"].as_str().expect("id"), "--json"]);
    let found = again["steps"]["resolve.earlier_tickets"]["output"]["matches"].as_array().cloned().unwrap_or_default();
    let kinds: Vec<&str> = found.iter().filter_map(|m| m["kind"].as_str()).collect();
    assert_eq!(kinds, vec!["fact", "episode"], "the fact `last_order` and the first ticket's episode: {again}");
    assert!(found[1]["summary"].as_str().unwrap_or_default().starts_with("refund for order A-1042"), "{found:?}");
    let audit = baton(dir.path(), &["audit", "show", &parent, "--json"]);
    assert!(String::from_utf8_lossy(&audit.stdout).contains("the model answered on turn 2 after 2 tool calls"));
}

#[test]
fn a_connection_signs_with_sigv4_and_its_circuit_breaker_stops_calling_a_failing_api() {
    let dir = tmp();
    let server = Server::start(|req, _| {
        if req.path.starts_with("/signed") {
            let auth =
                req.headers.iter().find(|(k, _)| k == "authorization").map(|(_, v)| v.clone()).unwrap_or_default();
            Reply::json(200, &json!({"authorization": auth}).to_string())
        } else {
            Reply::json(503, "{}")
        }
    });
    let wf = dir.path().join("mesh.yaml");
    std::fs::write(
        &wf,
        format!(
            r#"name: mesh
output: '{{auth: .steps.signed.output.body.authorization, down: .steps.down.error}}'
connections:
  aws_api:
    base_url: {base}
    auth: {{aws_sigv4: {{service: execute-api, region: eu-west-1}}}}
    rate_limit: {{requests: 5, per: 1s}}
  flaky:
    base_url: {base}
    circuit_breaker: {{failures: 2, cooldown: 1h}}
steps:
  - {{id: signed, tool: http, with: {{connection: aws_api, path: /signed}}}}
  - id: down
    tool: http
    with: {{connection: flaky, path: /down}}
    retry: {{max_attempts: 4, initial: 10ms, on: [http_5xx]}}
  - {{id: after, needs: [down], when: 'true', tool: transform, with: {{expr: '1'}}}}
"#,
            base = server.base
        ),
    )
    .expect("write");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_baton"))
        .arg("--state-dir")
        .arg(dir.path())
        .args(["run", wf.to_str().expect("utf8"), "--json"])
        .env("AWS_ACCESS_KEY_ID", "AKIDTEST")
        .env("AWS_SECRET_ACCESS_KEY", "secret-test-key")
        .env("AWS_SESSION_TOKEN", "session-token")
        .output()
        .expect("baton runs");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|_| panic!("{}", text(&out)));
    let auth = v["steps"]["signed"]["output"]["body"]["authorization"].as_str().unwrap_or_default().to_owned();
    assert!(auth.starts_with("AWS4-HMAC-SHA256 Credential=AKIDTEST/"), "{v}");
    assert!(auth.contains("/eu-west-1/execute-api/aws4_request"), "{auth}");
    assert!(auth.contains("x-amz-security-token"), "temporary credentials sign their token: {auth}");
    // Two failures open the circuit: attempt 3 fails at once and never reaches the API (and
    // `circuit_open` is not in this step's `retry.on`: it would wait out the cooldown).
    assert_eq!(server.requests("/down").len(), 2);
    assert_eq!(v["steps"]["down"]["error"]["kind"], "circuit_open", "{v}");
    assert_eq!(v["steps"]["down"]["attempts"], 3);
    let audit = baton(dir.path(), &["audit", "show", v["run_id"].as_str().expect("id"), "--json"]);
    assert!(!String::from_utf8_lossy(&audit.stdout).contains("secret-test-key"));
}

#[test]
fn a_shared_mesh_file_lends_its_connections_and_its_mistakes_name_the_mesh_file() {
    let dir = tmp();
    let server = Server::start(|req, _| {
        let team = req.headers.iter().find(|(k, _)| k == "x-team").map(|(_, v)| v.clone());
        Reply::json(200, &json!({"path": req.path, "team": team}).to_string())
    });
    let wf = fixture("mesh/uses-mesh.yaml");
    let input = json!({"base": server.base}).to_string();
    let (code, v) = baton_json(dir.path(), &["run", wf.to_str().expect("utf8"), "--input", &input, "--json"]);
    assert_eq!(code, 0, "{v}");
    assert_eq!(v["output"]["shop"], json!({"path": "/shop/orders/1", "team": "fulfilment"}));
    assert_eq!(v["output"]["billing"]["path"], "/billing-v2/invoices/1", "the workflow's own connection wins");
    // Runs keep the merged definition: a resume or another coordinator needs no mesh file.
    let (_, shown) = baton_json(dir.path(), &["runs", "show", v["run_id"].as_str().expect("id"), "--json"]);
    assert_eq!(shown["status"], "succeeded");
    let out = baton(dir.path(), &["validate", fixture("mesh/uses-bad-mesh.yaml").to_str().expect("utf8")]);
    assert_eq!(out.status.code(), Some(2));
    let t = text(&out);
    assert!(t.contains("bad-mesh.yaml:3:") && t.contains("connections.shop.base_url"), "{t}");
}

#[test]
fn a_mesh_file_outside_the_workflows_folder_is_refused_unless_allowed() {
    let dir = tmp();
    let outside = dir.path().join("secrets-mesh.yaml");
    std::fs::write(&outside, "connections:\n  shop: {base_url: \"https://evil.example\"}\n").expect("write");
    let folder = dir.path().join("wf");
    std::fs::create_dir(&folder).expect("mkdir");
    let body = "name: m\nsteps:\n  - {id: a, tool: http, with: {connection: shop, path: /x}}\n";
    let cases = [
        ("dots.yaml", "../secrets-mesh.yaml".to_owned()),
        ("absolute.yaml", outside.display().to_string()),
        ("link.yaml", "link-mesh.yaml".to_owned()),
    ];
    std::os::unix::fs::symlink(&outside, folder.join("link-mesh.yaml")).expect("symlink");
    for (name, mesh) in cases {
        let wf = folder.join(name);
        std::fs::write(&wf, format!("mesh: {mesh}\n{body}")).expect("write");
        let out = baton(dir.path(), &["validate", wf.to_str().expect("utf8")]);
        assert_eq!(out.status.code(), Some(2), "{name}: {}", text(&out));
        assert!(text(&out).contains("outside the workflow's folder"), "{name}: {}", text(&out));
        let allowed = std::process::Command::new(env!("CARGO_BIN_EXE_baton"))
            .args(["validate", wf.to_str().expect("utf8")])
            .env("BATON_MESH_OUTSIDE", "1")
            .output()
            .expect("baton");
        assert_eq!(allowed.status.code(), Some(0), "{name} with BATON_MESH_OUTSIDE: {}", text(&allowed));
    }
}

#[test]
fn durability_full_runs_and_a_wrong_value_is_refused() {
    let dir = tmp();
    let wf = fixture("chain3.yaml");
    let (code, v) = baton_json(dir.path(), &["--durability", "full", "run", wf.to_str().expect("utf8"), "--json"]);
    assert_eq!(code, 0, "{v}");
    assert_eq!(v["status"], "succeeded");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_baton"))
        .arg("--state-dir")
        .arg(dir.path())
        .args(["runs", "list"])
        .env("BATON_DURABILITY", "sometimes")
        .output()
        .expect("baton");
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("sometimes"), "{}", text(&out));
}
