//! `baton serve` as the embedded backend's timer host, with real processes and the real clock:
//! a task's timeout fires without anyone typing `baton resume`, a run killed with `kill -9`
//! mid-call is picked up (its call issued once more, with the same idempotency key), and a run
//! another live `baton` process drives is left to it (its call is not issued twice).

mod support;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::{Reply, Server, baton, baton_json, fixture, text};

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn spawn(dir: &std::path::Path, args: &[&str]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_baton"))
        .arg("--state-dir")
        .arg(dir)
        .args(args)
        .current_dir(support::root())
        .env("BATON_CALLBACK_SECRET", "a-secret-of-at-least-thirty-two-bytes!!")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn baton")
}

fn wait_for(what: &str, secs: u64, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !check() {
        assert!(Instant::now() < deadline, "timed out after {secs} s waiting for: {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn status(dir: &std::path::Path, id: &str) -> Value {
    baton_json(dir, &["runs", "show", id, "--json"]).1
}

#[test]
fn serve_fires_timeouts_and_picks_up_crashed_runs_but_not_live_ones() {
    let dir = tempfile::tempdir().expect("tempdir");

    // A task that times out after 2 s: `run` stops at the wait and says how it goes on.
    let out = baton(dir.path(), &["run", fixture("quick-timeout.yaml").to_str().expect("utf8")]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    assert!(text(&out).contains("baton serve"), "the hint names serve: {}", text(&out));
    let (_, listed) = baton_json(dir.path(), &["runs", "list", "--json"]);
    let timeout_run = listed[0]["run_id"].as_str().expect("id").to_owned();

    // A run killed with -9 while its call is in flight.
    let crashed_api = Server::start(|req, n| match req.path.as_str() {
        "/slow" if n == 0 => Reply::json(200, r#"{"late": true}"#).after(Duration::from_secs(60)),
        _ => Reply::json(200, r#"{"done": 1}"#),
    });
    let input = json!({"base": crashed_api.base}).to_string();
    let slow = fixture("slow-step.yaml");
    let mut crashed = spawn(dir.path(), &["run", slow.to_str().expect("utf8"), "--input", &input, "--json"]);
    wait_for("the crashed run's slow call", 20, || !crashed_api.requests("/slow").is_empty());
    crashed.kill().expect("kill -9");
    let _ = crashed.wait();

    // A run whose call is in flight in a live process.
    let live_api = Server::start(|req, _| match req.path.as_str() {
        "/slow" => Reply::json(200, r#"{"live": true}"#).after(Duration::from_secs(4)),
        _ => Reply::json(200, r#"{"ok": 1}"#),
    });
    let input = json!({"base": live_api.base}).to_string();
    let live = spawn(dir.path(), &["run", slow.to_str().expect("utf8"), "--input", &input, "--json"]);
    wait_for("the live run's slow call", 20, || !live_api.requests("/slow").is_empty());

    let port = std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port();
    let _serve = Killed(spawn(dir.path(), &["serve", "--listen", &format!("127.0.0.1:{port}")]));

    wait_for("the live run to end in its own process", 30, || {
        crashed_api.requests("/slow").len() >= 2 && status(dir.path(), &timeout_run)["status"] == "succeeded"
    });
    let out = live.wait_with_output().expect("live run ends");
    assert_eq!(out.status.code(), Some(0), "the live run finished in its own process");
    let live_run: Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(live_api.requests("/slow").len(), 1, "serve did not issue the live run's call again");

    let timed_out = status(dir.path(), &timeout_run);
    assert_eq!(timed_out["output"], json!({"after": "approve"}), "{timed_out}");

    let (_, all) = baton_json(dir.path(), &["runs", "list", "--json"]);
    let crashed_id = all
        .as_array()
        .expect("runs")
        .iter()
        .map(|r| r["run_id"].as_str().expect("id").to_owned())
        .find(|id| *id != timeout_run && *id != live_run["run_id"])
        .expect("the crashed run");
    wait_for("the crashed run to end", 20, || status(dir.path(), &crashed_id)["status"] == "succeeded");
    let slow_calls = crashed_api.requests("/slow");
    assert_eq!(slow_calls.len(), 2, "the crashed call was issued once more");
    assert_eq!(slow_calls[0].idempotency_key, slow_calls[1].idempotency_key);
    assert_eq!(crashed_api.requests("/first").len(), 1, "a finished step is not called again");
    for id in [&timeout_run, &crashed_id] {
        assert_eq!(baton(dir.path(), &["audit", "verify", id]).status.code(), Some(0));
    }
}

#[test]
fn two_resumes_after_kill_9_both_finish_the_run_and_reissue_the_call_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let api = Server::start(|req, n| match req.path.as_str() {
        "/slow" if n == 0 => Reply::json(200, r#"{"late": true}"#).after(Duration::from_secs(60)),
        // The re-issued call takes a while, so the second resume finds the run held.
        "/slow" => Reply::json(200, r#"{"again": true}"#).after(Duration::from_millis(800)),
        _ => Reply::json(200, r#"{"done": 1}"#),
    });
    let input = json!({"base": api.base}).to_string();
    let slow = fixture("slow-step.yaml");
    let mut crashed = spawn(dir.path(), &["run", slow.to_str().expect("utf8"), "--input", &input, "--json"]);
    wait_for("the slow call", 20, || !api.requests("/slow").is_empty());
    crashed.kill().expect("kill -9");
    let _ = crashed.wait();

    let started = Instant::now();
    let a = spawn(dir.path(), &["resume", "--json"]);
    let b = spawn(dir.path(), &["resume", "--json"]);
    for child in [a, b] {
        let out = child.wait_with_output().expect("resume ends");
        assert_eq!(out.status.code(), Some(0), "both resumes exit 0");
        let runs: Value = serde_json::from_slice(&out.stdout).expect("json");
        // A resume that lists the runs after the other finished them finds none, which is fine.
        assert!(runs.as_array().expect("array").iter().all(|r| r["status"] == "succeeded"), "{runs}");
    }
    assert!(started.elapsed() < Duration::from_secs(60), "the resumes did not hang");
    let calls = api.requests("/slow");
    assert_eq!(calls.len(), 2, "the in-flight call was issued again exactly once");
    assert_eq!(calls[0].idempotency_key, calls[1].idempotency_key);
    assert_eq!(api.requests("/first").len(), 1);
}
