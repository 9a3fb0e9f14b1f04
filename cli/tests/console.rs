//! The web console end to end in a real headless browser: Debian's chromium driven through
//! chromedriver by selenium (tests/console/console_e2e.py, its venv made by
//! scripts/check-prereqs). A real `baton serve` with an API token serves the console; the
//! browser signs in with the token, starts a run and watches it finish, answers a task from the
//! inbox, and redrives a failed run. Screenshots of each page go to `<target>/console-*.png`.

mod support;

use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;
use support::{baton, baton_json, fixture, root, text};

const TOKEN: &str = "console-test-token";

struct Serve(Child);

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn the_console_starts_watches_answers_and_redrives_in_a_real_browser() {
    let python = root().join("tests/console/.venv/bin/python");
    assert!(python.exists(), "the console test's venv is missing: run scripts/check-prereqs");
    let server = support::flaky_b();
    let dir = tempfile::tempdir().expect("tempdir");
    for wf in ["chain3.yaml", "approval.yaml", "repairable.yaml"] {
        let out = baton(dir.path(), &["publish", fixture(wf).to_str().expect("utf8")]);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    }
    let input = json!({"base": server.base}).to_string();
    let (code, failed) = baton_json(
        dir.path(),
        &["run", fixture("repairable.yaml").to_str().expect("utf8"), "--input", &input, "--json"],
    );
    assert_eq!(code, 1, "{failed}");
    let (code, waiting) = baton_json(
        dir.path(),
        &["run", fixture("approval.yaml").to_str().expect("utf8"), "--input", r#"{"amount": 12}"#, "--json"],
    );
    assert_eq!(code, 3, "{waiting}");

    let port = std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port();
    let _serve = Serve(
        Command::new(env!("CARGO_BIN_EXE_baton"))
            .arg("--state-dir")
            .arg(dir.path())
            .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
            .env("BATON_API_TOKEN", TOKEN)
            .env_remove("BATON_CALLBACK_SECRET")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("baton serve"),
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "baton serve did not start");
        std::thread::sleep(Duration::from_millis(50));
    }

    let shots = root().join("target");
    let out = Command::new(&python)
        .arg(root().join("tests/console/console_e2e.py"))
        .args(["--url", &format!("http://127.0.0.1:{port}"), "--token", TOKEN, "--workflow", "chain3"])
        .args([
            "--failed",
            failed["run_id"].as_str().expect("id"),
            "--waiting",
            waiting["run_id"].as_str().expect("id"),
        ])
        .arg("--shots")
        .arg(&shots)
        .output()
        .expect("python runs");
    assert!(out.status.success(), "the browser flow failed:\n{}", text(&out));
    for page in ["runs", "tasks", "run"] {
        assert!(shots.join(format!("console-{page}.png")).exists(), "no screenshot of the {page} page");
    }
    // What the browser did happened: the redrive re-called only the failed step.
    assert_eq!(server.requests("/a").len(), 1);
    assert_eq!(server.requests("/b").len(), 2);
    let (_, run) = baton_json(dir.path(), &["runs", "show", waiting["run_id"].as_str().expect("id"), "--json"]);
    assert_eq!(run["output"]["paid"], json!({"paid": 12, "reference": "R-42"}));
}
