//! Signed task links served by `baton serve` on the embedded backend: the link is announced,
//! a GET shows the task without answering it, tampered or expired links are refused, an answer
//! that does not match the form is refused, and a valid POST answers the task and the run goes on.

// The helpers (servers, process runners) fail the test loudly on any surprise.
#![allow(clippy::unwrap_used)]

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use support::*;

const SECRET: &str = "test-secret-that-is-at-least-32-bytes-long";

struct Serve(Child);

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// One HTTP/1.1 request; returns (status, body).
fn http(port: u16, method: &str, path_and_query: &str, content_type: &str, body: &str) -> (u16, String) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "{method} {path_and_query} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).unwrap();
    let status = raw.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    let body = raw.split_once("\r\n\r\n").map(|(_, b)| b.to_owned()).unwrap_or_default();
    (status, body)
}

fn baton_env(dir: &std::path::Path, port: u16, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_baton"))
        .arg("--state-dir")
        .arg(dir)
        .args(args)
        .current_dir(root())
        .env("BATON_CALLBACK_SECRET", SECRET)
        .env("BATON_CALLBACK_URL", format!("http://127.0.0.1:{port}"))
        .output()
        .unwrap()
}

#[test]
fn a_signed_link_shows_and_answers_a_task_and_the_run_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let wf = fixture("approval.yaml");
    let out = baton_env(dir.path(), port, &["run", wf.to_str().unwrap(), "--input", r#"{"amount": 5}"#, "--json"]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    let run: Value = serde_json::from_slice(&out.stdout).unwrap();
    let run_id = run["run_id"].as_str().unwrap().to_owned();

    let out = baton_env(dir.path(), port, &["tasks", "--json"]);
    let tasks: Value = serde_json::from_slice(&out.stdout).unwrap();
    let task = tasks[0]["id"].as_str().unwrap().to_owned();
    let url = tasks[0]["callback_url"].as_str().expect("a callback_url with the secret set").to_owned();
    let prefix = format!("http://127.0.0.1:{port}");
    let link = url.strip_prefix(&prefix).unwrap().to_owned();
    assert!(link.starts_with(&format!("/tasks/{task}?exp=")), "{link}");

    let child = Command::new(env!("CARGO_BIN_EXE_baton"))
        .arg("--state-dir")
        .arg(dir.path())
        .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .env("BATON_CALLBACK_SECRET", SECRET)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let _serve = Serve(child);
    let deadline = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "baton serve did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(http(port, "GET", "/health", "text/plain", "").0, 200);

    // GET shows the task and answers nothing (mail scanners fetch links).
    let (status, page) = http(port, "GET", &link, "text/plain", "");
    assert_eq!(status, 200, "{page}");
    assert!(page.contains(&task) && page.contains("Pay 5 EUR?"), "{page}");
    assert!(baton_env(dir.path(), port, &["tasks", "--json"]).stdout.len() > 2, "the task is still open");

    // A link signed for a later expiry, or for another task, is refused.
    let tampered = link.replace("?exp=", "?exp=9").to_owned();
    let (status, body) = http(port, "GET", &tampered, "text/plain", "");
    assert_eq!((status, body.contains("bad_signature")), (403, true), "{body}");
    let (status, _) =
        http(port, "GET", &format!("/tasks/{task}x{}", &link[link.find('?').unwrap()..]), "text/plain", "");
    assert_eq!(status, 403);
    let (status, _) = http(port, "POST", &format!("/tasks/{task}"), "application/json", "{}");
    assert_eq!(status, 403, "an unsigned link is refused");

    // The form wants a reference: an approval without one is refused and the task stays open.
    let (status, body) = http(port, "POST", &link, "application/json", r#"{"decision": "approve", "data": {}}"#);
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("reference"), "{body}");

    let form = "decision=approve&data=%7B%22reference%22%3A%22R-7%22%7D&by=ops-oncall";
    let (status, body) = http(port, "POST", &link, "application/x-www-form-urlencoded", form);
    assert_eq!(status, 202, "{body}");
    let accepted: Value = serde_json::from_str(&body).unwrap();
    assert_eq!((accepted["run_id"].as_str(), accepted["decision"].as_str()), (Some(run_id.as_str()), Some("approve")));

    // The run goes on in the serving process.
    let deadline = Instant::now() + Duration::from_secs(20);
    let run = loop {
        let (_, run) = baton_json(dir.path(), &["runs", "show", &run_id, "--json"]);
        if run["status"] == "succeeded" {
            break run;
        }
        assert!(Instant::now() < deadline, "the run did not finish: {run}");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(run["output"]["paid"]["reference"], "R-7");
    let (_, audit) = baton_json(dir.path(), &["audit", "show", &run_id, "--json"]);
    assert!(audit.to_string().contains("ops-oncall"), "the audit names who answered: {audit}");

    // The same link again: the task is closed.
    let (status, body) = http(port, "POST", &link, "application/json", r#"{"decision": "reject"}"#);
    assert_eq!(status, 409, "{body}");
}

#[test]
fn serve_without_a_secret_says_task_links_are_disabled() {
    // The API alone may be wanted: serve starts, says so on stderr, and refuses links.
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut child = Command::new(env!("CARGO_BIN_EXE_baton"))
        .arg("--state-dir")
        .arg(dir.path())
        .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .env_remove("BATON_CALLBACK_SECRET")
        .env_remove("BATON_API_TOKEN")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let _serve = Serve(child);
    let deadline = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "baton serve did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    let (status, body) = http(port, "GET", "/tasks/t-1?exp=1&sig=00", "text/plain", "");
    assert_eq!(status, 404, "{body}");
    assert!(body.contains("task links are disabled"), "{body}");
    assert_eq!(http(port, "GET", "/health", "text/plain", "").0, 200);
    drop(_serve);
    let mut said = String::new();
    stderr.read_to_string(&mut said).unwrap();
    assert!(said.contains("task links are disabled") && said.contains("BATON_CALLBACK_SECRET"), "{said}");
}

#[test]
fn the_email_intake_example_runs_offline_with_its_mocks() {
    let dir = tempfile::tempdir().unwrap();
    let (code, run) = baton_json(
        dir.path(),
        &[
            "run",
            "workflows/email-intake/workflow.yaml",
            "--input",
            "@workflows/email-intake/inputs/complaint.json",
            "--mocks",
            "workflows/email-intake/mocks.yaml",
            "--json",
        ],
    );
    assert_eq!(code, 0, "{run}");
    assert_eq!(run["output"], serde_json::json!({"order": "A-1042", "intent": "refund", "decision": "approve"}));
}
