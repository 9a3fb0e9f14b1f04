//! The HTTP API served by a real `baton serve` process over a temporary state directory: every
//! route, paging and filters, 401/400/404/405/409, the event stream, `?wait`, SIGTERM, and every
//! JSON answer validated against the schema the server's own OpenAPI document gives for it.

// The helpers (servers, process runners) fail the test loudly on any surprise.
#![allow(clippy::unwrap_used)]

mod support;

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::*;

const TOKEN: &str = "api-test-token";

/// A `baton serve` process, killed when dropped.
struct Serve {
    child: Child,
    port: u16,
    token: Option<&'static str>,
    /// The server's OpenAPI document, fetched once it is up.
    doc: Value,
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One answer: status, headers (lower-cased names), body.
struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// One HTTP/1.1 request with `Connection: close`, read to the end (an event stream included).
fn request(port: u16, method: &str, path: &str, auth: Option<&str>, body: &str) -> Answer {
    request_with(port, method, path, auth, "", body)
}

/// [`request`] with `extra` header lines (each ending in `\r\n`).
fn request_with(port: u16, method: &str, path: &str, auth: Option<&str>, extra: &str, body: &str) -> Answer {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let auth = auth.map(|t| format!("Authorization: Bearer {t}\r\n")).unwrap_or_default();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n{auth}{extra}Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let raw = String::from_utf8(raw).unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap();
    let mut lines = head.lines();
    let status = lines.next().and_then(|l| l.split(' ').nth(1)).and_then(|c| c.parse().ok()).unwrap();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let chunked = headers.iter().any(|(k, v)| k == "transfer-encoding" && v == "chunked");
    let body = if chunked { dechunk(body) } else { body.to_owned() };
    Answer { status, headers, body }
}

/// The payload of a chunked body.
fn dechunk(mut rest: &str) -> String {
    let mut out = String::new();
    while let Some((size, after)) = rest.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap();
        if n == 0 {
            break;
        }
        out.push_str(&after[..n]);
        rest = &after[n + 2..];
    }
    out
}

impl Serve {
    fn start(dir: &std::path::Path, token: Option<&'static str>) -> Self {
        let port = free_port();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_baton"));
        cmd.arg("--state-dir")
            .arg(dir)
            .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
            .current_dir(root())
            .env_remove("BATON_CALLBACK_SECRET")
            .env_remove("BATON_API_TOKEN")
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if let Some(t) = token {
            cmd.env("BATON_API_TOKEN", t);
        }
        let mut serve = Serve { child: cmd.spawn().unwrap(), port, token, doc: Value::Null };
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "baton serve did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        serve.doc = serve.call("GET", "/api/openapi.json", "", 200, "/api/openapi.json");
        serve
    }

    fn raw(&self, method: &str, path: &str, body: &str) -> Answer {
        request(self.port, method, path, self.token, body)
    }

    /// Calls the API, checks the status and validates the JSON answer against the schema the
    /// OpenAPI document gives for `template` (the route's path as documented) and that status.
    fn call(&self, method: &str, path: &str, body: &str, status: u16, template: &str) -> Value {
        let a = self.raw(method, path, body);
        assert_eq!(a.status, status, "{method} {path}: {}", a.body);
        assert_eq!(a.header("content-type"), Some("application/json"), "{method} {path}");
        let v = a.json();
        if !self.doc.is_null() {
            self.check(&v, template, method, status);
        }
        v
    }

    /// Validates `value` against the documented answer of `method template` with `status`.
    fn check(&self, value: &Value, template: &str, method: &str, status: u16) {
        let op = &self.doc["paths"][template][method.to_ascii_lowercase()];
        assert!(op.is_object(), "{method} {template} is not documented");
        let mut resp = op["responses"][status.to_string()].clone();
        if let Some(r) = resp.get("$ref").and_then(Value::as_str) {
            resp = self.doc.pointer(r.trim_start_matches('#')).unwrap().clone();
        }
        let schema = resp["content"]["application/json"]["schema"].clone();
        assert!(!schema.is_null(), "{method} {template} documents no JSON answer for {status}");
        self.validate(value, schema, &format!("{method} {template} {status}"));
    }

    /// Validates `value` against `schema`, whose references point into the document.
    fn validate(&self, value: &Value, schema: Value, what: &str) {
        let errors = self.errors(value, schema, what);
        assert!(errors.is_empty(), "{what}: {value} does not match the document: {errors:?}");
    }

    /// What is wrong with `value` by `schema`.
    fn errors(&self, value: &Value, schema: Value, what: &str) -> Vec<String> {
        let mut root = json!({"components": self.doc["components"].clone()});
        let wrapped = match schema {
            Value::Object(m) => m,
            other => panic!("schema of {what} is not an object: {other}"),
        };
        root.as_object_mut().unwrap().extend(wrapped);
        let validator = jsonschema::validator_for(&root).unwrap();
        validator.iter_errors(value).map(|e| e.to_string()).collect()
    }

    fn schema(&self, name: &str) -> Value {
        json!({"$ref": format!("#/components/schemas/{name}")})
    }

    /// Polls the run until `done` holds for it.
    fn until(&self, run_id: &str, what: &str, done: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let run = self.call("GET", &format!("/api/runs/{run_id}"), "", 200, "/api/runs/{run_id}");
            if done(&run) {
                return run;
            }
            assert!(Instant::now() < deadline, "run {run_id} did not get to {what}: {run}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

fn publish(dir: &std::path::Path, names: &[&str]) {
    for name in names {
        let out = baton(dir, &["publish", fixture(name).to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    }
}

fn start(s: &Serve, workflow: &str, query: &str, input: &str, status: u16) -> Value {
    s.call("POST", &format!("/api/workflows/{workflow}/runs{query}"), input, status, "/api/workflows/{workflow}/runs")
}

fn id_of(run: &Value) -> String {
    run["run_id"].as_str().unwrap().to_owned()
}

fn bad_field(s: &Serve, method: &str, path: &str, body: &str, template: &str) -> String {
    let v = s.call(method, path, body, 400, template);
    v["field"].as_str().unwrap().to_owned()
}

#[test]
fn a_token_is_required_and_a_wrong_one_gets_no_data() {
    let dir = tempfile::tempdir().unwrap();
    publish(dir.path(), &["chain3.yaml"]);
    let s = Serve::start(dir.path(), Some(TOKEN));
    let run = start(&s, "chain3", "?wait=10", "", 201);
    let path = format!("/api/runs/{}", id_of(&run));
    for auth in [None, Some("wrong"), Some("api-test-token-but-longer")] {
        for (method, p) in [
            ("GET", path.as_str()),
            ("GET", "/api/runs"),
            ("POST", "/api/workflows/chain3/runs"),
            ("GET", "/api/nothing"),
        ] {
            let a = request(s.port, method, p, auth, "");
            assert_eq!(a.status, 401, "{method} {p} with {auth:?}: {}", a.body);
            let v = a.json();
            assert_eq!(v.as_object().unwrap().keys().collect::<Vec<_>>(), ["code", "error"], "{v}");
            assert!(!a.body.contains(&id_of(&run)), "a 401 carries no data");
            s.check(&v, "/api/runs", "GET", 401);
        }
    }
    // The validation has teeth: shapes the document does not describe fail it.
    assert!(!s.errors(&json!({"runs": 5, "next_cursor": null}), s.schema("RunPage"), "bad page").is_empty());
    assert!(!s.errors(&json!({"run_id": "r", "status": "running"}), s.schema("Run"), "bad run").is_empty());
    // Nothing was started by the refused POSTs.
    assert_eq!(s.call("GET", "/api/runs", "", 200, "/api/runs")["runs"].as_array().unwrap().len(), 1);
    // Task links and health are outside the API and need no token.
    assert_eq!(request(s.port, "GET", "/health", None, "").status, 200);
}

#[test]
fn serve_refuses_a_public_address_without_a_token_and_serves_without_a_secret() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_baton"))
        .arg("--state-dir")
        .arg(dir.path())
        .args(["serve", "--listen", "0.0.0.0:0"])
        .env_remove("BATON_API_TOKEN")
        .env_remove("BATON_CALLBACK_SECRET")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("BATON_API_TOKEN"), "{}", text(&out));

    // Loopback without a secret: the API and /health work, task links say they are off.
    let s = Serve::start(dir.path(), None);
    assert_eq!(s.raw("GET", "/health", "").status, 200);
    let a = s.raw("GET", "/tasks/t-1?exp=1&sig=00", "");
    assert_eq!(a.status, 404);
    assert!(a.body.contains("task links are disabled"), "{}", a.body);
    s.call("GET", "/api/tasks", "", 200, "/api/tasks");
}

#[test]
fn a_start_with_wait_answers_the_finished_run_as_runs_show_prints_it() {
    let dir = tempfile::tempdir().unwrap();
    publish(dir.path(), &["chain3.yaml", "nap.yaml", "approval.yaml"]);
    let s = Serve::start(dir.path(), Some(TOKEN));
    let a = s.raw("POST", "/api/workflows/chain3/runs?wait=10", "{}");
    assert_eq!(a.status, 201, "{}", a.body);
    let run = a.json();
    s.check(&run, "/api/workflows/{workflow}/runs", "POST", 201);
    assert_eq!((run["status"].as_str(), &run["output"]), (Some("succeeded"), &json!({"n": 3})));
    assert_eq!(run["steps"]["c"]["attempts"], 1);
    assert_eq!(a.header("location"), Some(format!("/api/runs/{}", id_of(&run)).as_str()));
    // The API and the CLI show the same run with the same JSON.
    let (_, shown) = baton_json(dir.path(), &["runs", "show", &id_of(&run), "--json"]);
    assert_eq!(run, shown);
    assert_eq!(s.call("GET", &format!("/api/runs/{}", id_of(&run)), "", 200, "/api/runs/{run_id}"), shown);

    // At the deadline the run is shown as it is, and it goes on in the background.
    let t = Instant::now();
    let napping = start(&s, "nap", "?wait=0.2", "", 201);
    assert!(t.elapsed() < Duration::from_millis(1200), "answered at the deadline: {:?}", t.elapsed());
    assert_eq!(napping["status"], "waiting");
    let done = s.until(&id_of(&napping), "its end", |r| r["status"] == "succeeded");
    assert_eq!(done["output"], json!({"done": 42}));

    // Without wait: at once. A run waiting on a person settles within the wait.
    let t = Instant::now();
    let waiting = start(&s, "approval", "?wait=10", r#"{"amount": 5}"#, 201);
    assert!(t.elapsed() < Duration::from_secs(5), "a wait for a person ends the wait");
    assert_eq!(waiting["steps"]["approve"]["status"], "waiting");

    // Malformed requests are refused before anything starts.
    let runs_before = s.call("GET", "/api/runs?limit=500", "", 200, "/api/runs")["runs"].as_array().unwrap().len();
    let tpl = "/api/workflows/{workflow}/runs";
    assert_eq!(bad_field(&s, "POST", "/api/workflows/approval/runs", r#"{"amount": "#, tpl), "input");
    assert_eq!(bad_field(&s, "POST", "/api/workflows/approval/runs", r#"{"amount": "five"}"#, tpl), "input");
    assert_eq!(bad_field(&s, "POST", "/api/workflows/chain3/runs?wait=soon", "{}", tpl), "wait");
    assert_eq!(bad_field(&s, "POST", "/api/workflows/chain3/runs?wait=1000", "{}", tpl), "wait");
    let runs_after = s.call("GET", "/api/runs?limit=500", "", 200, "/api/runs")["runs"].as_array().unwrap().len();
    assert_eq!(runs_before, runs_after);
    s.call("POST", "/api/workflows/nope/runs", "{}", 404, tpl);
}

#[test]
fn runs_page_with_a_cursor_and_filter_by_status_workflow_and_time() {
    let dir = tempfile::tempdir().unwrap();
    publish(dir.path(), &["chain3.yaml", "approval.yaml"]);
    let s = Serve::start(dir.path(), Some(TOKEN));
    let mut chains = Vec::new();
    for _ in 0..5 {
        chains.push(id_of(&start(&s, "chain3", "?wait=10", "", 201)));
    }
    let middle = s.call("GET", "/api/runs?limit=1", "", 200, "/api/runs")["runs"][0]["created_at"].as_u64().unwrap();
    std::thread::sleep(Duration::from_millis(5));
    let mark = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as u64;
    let waiting = id_of(&start(&s, "approval", "?wait=10", r#"{"amount": 1}"#, 201));

    // Pages of two walk every run once, newest first, and the last page says there is no more.
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let q = cursor.as_ref().map(|c| format!("&cursor={c}")).unwrap_or_default();
        let page = s.call("GET", &format!("/api/runs?limit=2{q}"), "", 200, "/api/runs");
        let runs = page["runs"].as_array().unwrap();
        assert!(runs.len() <= 2);
        seen.extend(runs.iter().map(|r| (r["created_at"].as_u64().unwrap(), id_of(r))));
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    assert_eq!(seen.len(), 6, "{seen:?}");
    assert_eq!(seen.iter().map(|(_, id)| id.clone()).collect::<BTreeSet<_>>().len(), 6, "no run twice");
    assert!(seen.windows(2).all(|w| w[0] >= w[1]), "newest first: {seen:?}");
    assert_eq!(seen[0].1, waiting);

    let ids = |q: &str| -> Vec<String> {
        let page = s.call("GET", &format!("/api/runs?{q}"), "", 200, "/api/runs");
        page["runs"].as_array().unwrap().iter().map(id_of).collect()
    };
    assert_eq!(ids("status=waiting"), vec![waiting.clone()]);
    assert_eq!(ids("workflow=chain3&status=succeeded").len(), 5);
    assert_eq!(ids("workflow=approval"), vec![waiting.clone()]);
    assert_eq!(ids(&format!("started_after={mark}")), vec![waiting.clone()]);
    assert_eq!(ids(&format!("started_before={mark}&workflow=chain3")).len(), 5);
    let rfc = humantime::format_rfc3339_millis(std::time::UNIX_EPOCH + Duration::from_millis(mark)).to_string();
    assert_eq!(ids(&format!("started_after={rfc}")), vec![waiting.clone()]);
    assert!(ids(&format!("started_before={middle}")).len() < 5);
    assert!(ids("status=failed").is_empty());

    for (q, field) in [
        ("limit=0", "limit"),
        ("status=done", "status"),
        ("started_after=monday", "started_after"),
        ("cursor=xyz", "cursor"),
        ("order=asc", "order"),
    ] {
        assert_eq!(bad_field(&s, "GET", &format!("/api/runs?{q}"), "", "/api/runs"), field, "{q}");
    }
}

#[test]
fn audit_verify_cancel_and_unknown_ids() {
    let dir = tempfile::tempdir().unwrap();
    publish(dir.path(), &["chain3.yaml", "approval.yaml"]);
    let s = Serve::start(dir.path(), Some(TOKEN));
    let run = id_of(&start(&s, "chain3", "?wait=10", "", 201));
    let audit = s.call("GET", &format!("/api/runs/{run}/audit"), "", 200, "/api/runs/{run_id}/audit");
    let (_, cli_audit) = baton_json(dir.path(), &["audit", "show", &run, "--json"]);
    assert_eq!(audit, cli_audit);
    let verdict = s.call("GET", &format!("/api/runs/{run}/audit/verify"), "", 200, "/api/runs/{run_id}/audit/verify");
    assert_eq!(verdict["intact"], true);
    assert_eq!(verdict["records"], audit.as_array().unwrap().len());

    // Cancel: a malformed body changes nothing; then the run ends cancelled; then 409.
    let waiting = id_of(&start(&s, "approval", "?wait=10", r#"{"amount": 2}"#, 201));
    let tpl = "/api/runs/{run_id}/cancel";
    assert_eq!(bad_field(&s, "POST", &format!("/api/runs/{waiting}/cancel"), r#"{"reason": 5}"#, tpl), "reason");
    assert_eq!(bad_field(&s, "POST", &format!("/api/runs/{waiting}/cancel"), "[1]", tpl), "body");
    assert_eq!(s.call("GET", &format!("/api/runs/{waiting}"), "", 200, "/api/runs/{run_id}")["status"], "waiting");
    let cancelled = s.call("POST", &format!("/api/runs/{waiting}/cancel"), r#"{"reason": "duplicate"}"#, 200, tpl);
    assert_eq!(cancelled["status"], "cancelled");
    let audit = s.call("GET", &format!("/api/runs/{waiting}/audit"), "", 200, "/api/runs/{run_id}/audit");
    assert!(audit.to_string().contains("duplicate"), "the reason is audited: {audit}");
    s.call("POST", &format!("/api/runs/{waiting}/cancel"), "", 409, tpl);
    assert!(s.call("GET", "/api/tasks", "", 200, "/api/tasks")["tasks"].as_array().unwrap().is_empty());

    // Unknown ids are 404; routes that do not exist too; a wrong method is 405 with Allow.
    s.call("GET", "/api/runs/no-such-run", "", 404, "/api/runs/{run_id}");
    s.call("GET", "/api/runs/no-such-run/audit", "", 404, "/api/runs/{run_id}/audit");
    s.call("GET", "/api/runs/no-such-run/audit/verify", "", 404, "/api/runs/{run_id}/audit/verify");
    s.call("GET", "/api/runs/no-such-run/events", "", 404, "/api/runs/{run_id}/events");
    s.call("POST", "/api/runs/no-such-run/cancel", "", 404, tpl);
    s.call("POST", "/api/tasks/no-such-task/approve", "{}", 404, "/api/tasks/{task_id}/approve");
    assert_eq!(bad_field(&s, "POST", &format!("/api/runs/{run}/retry"), "", "/api/runs/{run_id}/retry"), "from");
    assert_eq!(
        s.raw("POST", &format!("/api/runs/{run}/rewind"), "").status,
        404,
        "words that are no action are not routed"
    );
    assert_eq!(s.raw("GET", "/api/nothing", "").status, 404);
    let a = s.raw("DELETE", &format!("/api/runs/{run}"), "");
    assert_eq!((a.status, a.header("allow")), (405, Some("GET")));
    s.check(&a.json(), "/api/runs/{run_id}", "GET", 405);
    let a = s.raw("GET", "/api/events", "");
    assert_eq!((a.status, a.header("allow")), (405, Some("POST")));
}

#[test]
fn tasks_are_listed_approved_and_rejected_and_the_runs_go_on() {
    let dir = tempfile::tempdir().unwrap();
    publish(dir.path(), &["approval.yaml"]);
    let s = Serve::start(dir.path(), Some(TOKEN));
    let first = id_of(&start(&s, "approval", "?wait=10", r#"{"amount": 7}"#, 201));
    let second = id_of(&start(&s, "approval", "?wait=10", r#"{"amount": 8}"#, 201));
    let tasks = s.call("GET", "/api/tasks", "", 200, "/api/tasks");
    let (_, cli_tasks) = baton_json(dir.path(), &["tasks", "--json"]);
    assert_eq!(tasks["tasks"], cli_tasks, "the API lists tasks as `baton tasks --json` does");
    let task_of = |run: &str| -> String {
        let t = tasks["tasks"].as_array().unwrap().iter().find(|t| t["run_id"] == run).unwrap();
        assert!(t["summary"].as_str().unwrap().contains("What is asked"), "with the handover: {t}");
        t["id"].as_str().unwrap().to_owned()
    };
    let (t1, t2) = (task_of(&first), task_of(&second));

    let approve = format!("/api/tasks/{t1}/approve");
    let tpl = "/api/tasks/{task_id}/approve";
    assert_eq!(bad_field(&s, "POST", &approve, r#"{"data": {}}"#, tpl), "data", "the form wants a reference");
    assert_eq!(bad_field(&s, "POST", &approve, r#"{"data": "#, tpl), "body");
    assert_eq!(bad_field(&s, "POST", &approve, r#"{"data": {"reference": "R-1"}, "by": 3}"#, tpl), "by");
    let ok = s.call("POST", &approve, r#"{"data": {"reference": "R-1"}, "by": "dana"}"#, 202, tpl);
    assert_eq!((ok["run_id"].as_str(), ok["decision"].as_str()), (Some(first.as_str()), Some("approve")));
    let done = s.until(&first, "its end", |r| r["status"] == "succeeded");
    assert_eq!(done["output"]["paid"]["reference"], "R-1");
    s.call("POST", &approve, r#"{"data": {"reference": "R-1"}}"#, 409, tpl);

    let reject = format!("/api/tasks/{t2}/reject");
    let ok = s.call("POST", &reject, r#"{"comment": "not this one"}"#, 202, "/api/tasks/{task_id}/reject");
    assert_eq!(ok["decision"], "reject");
    let done = s.until(&second, "its end", |r| r["status"] == "succeeded");
    assert_eq!(done["output"]["decision"], "reject");
    assert!(s.call("GET", "/api/tasks", "", 200, "/api/tasks")["tasks"].as_array().unwrap().is_empty());
}

#[test]
fn events_start_triggered_runs_and_wake_waits() {
    let dir = tempfile::tempdir().unwrap();
    publish(dir.path(), &["on-delay.yaml", "wait-event.yaml"]);
    let s = Serve::start(dir.path(), Some(TOKEN));
    let tpl = "/api/events";
    let delayed = r#"{"source": "shop", "detail-type": "OrderDelayed", "detail": {"order_id": "A-1", "days": 3}}"#;
    let d = s.call("POST", tpl, delayed, 202, tpl);
    assert_eq!(d["delivery"], "runs");
    let started = d["run_ids"][0].as_str().unwrap().to_owned();
    let run = s.until(&started, "its end", |r| r["status"] == "succeeded");
    assert_eq!(run["output"], json!({"order": "A-1", "source": "shop", "has_id": true}));
    let none = s.call("POST", tpl, r#"{"source": "shop", "detail-type": "OrderShipped", "detail": {}}"#, 202, tpl);
    assert_eq!(none["run_ids"], json!([]));

    let waiting = id_of(&start(&s, "wait-event", "?wait=10", r#"{"order_id": "B-2"}"#, 201));
    let paid =
        r#"{"source": "shop.payments", "detail-type": "PaymentReceived", "detail": {"order_id": "B-2", "amount": 12}}"#;
    assert_eq!(s.call("POST", tpl, paid, 202, tpl)["run_ids"], json!([waiting.clone()]));
    let run = s.until(&waiting, "its end", |r| r["status"] == "succeeded");
    assert_eq!(run["output"]["paid"], 12);

    assert_eq!(bad_field(&s, "POST", tpl, r#"{"source": "shop", "detail": {}}"#, tpl), "detail-type");
    assert_eq!(bad_field(&s, "POST", tpl, r#"{"source": 1, "detail-type": "x"}"#, tpl), "source");
    assert_eq!(bad_field(&s, "POST", tpl, r#"{"source": "a", "detail-type": "x", "detail": 3}"#, tpl), "detail");
    assert_eq!(bad_field(&s, "POST", tpl, "not json", tpl), "body");
}

#[test]
fn the_event_stream_follows_a_run_to_its_end() {
    let dir = tempfile::tempdir().unwrap();
    publish(dir.path(), &["nap.yaml", "approval.yaml"]);
    let s = Serve::start(dir.path(), Some(TOKEN));
    let run = id_of(&start(&s, "nap", "", "", 201));
    let t = Instant::now();
    let a = s.raw("GET", &format!("/api/runs/{run}/events"), "");
    assert_eq!(a.status, 200);
    assert_eq!(a.header("content-type"), Some("text/event-stream"));
    assert!(t.elapsed() >= Duration::from_millis(1000), "the stream stayed open while the run slept");
    let events = parse_events(&a.body);
    let (last, records) = events.split_last().unwrap();
    assert_eq!(last.0, "end");
    assert_eq!(last.1["status"], "succeeded");
    s.validate(&last.1, s.schema("Run"), "end event");
    let seqs: Vec<u64> = records
        .iter()
        .map(|(kind, data)| {
            assert_eq!(kind, "record");
            s.validate(data, s.schema("AuditRecord"), "record event");
            data["seq"].as_u64().unwrap()
        })
        .collect();
    assert_eq!(seqs, (1..=seqs.len() as u64).collect::<Vec<_>>(), "every record once, in order");
    let audit = s.call("GET", &format!("/api/runs/{run}/audit"), "", 200, "/api/runs/{run_id}/audit");
    assert_eq!(audit.as_array().unwrap().len(), seqs.len());
    assert!(records.iter().any(|(_, d)| d["decision"] == "sleep"), "progress while running");

    // A client that reconnects with Last-Event-ID gets the records after that one.
    let path = format!("/api/runs/{run}/events");
    let again = parse_events(&request_with(s.port, "GET", &path, Some(TOKEN), "Last-Event-ID: 3\r\n", "").body);
    let resumed: Vec<u64> =
        again.iter().filter(|(k, _)| k == "record").map(|(_, d)| d["seq"].as_u64().unwrap()).collect();
    assert_eq!(resumed, (4..=seqs.len() as u64).collect::<Vec<_>>());
    assert_eq!(again.last().unwrap().0, "end");
    let bad = request_with(s.port, "GET", &path, Some(TOKEN), "Last-Event-ID: x\r\n", "");
    assert_eq!((bad.status, bad.json()["field"].as_str()), (400, Some("Last-Event-ID")));
    s.check(&bad.json(), "/api/runs/{run_id}/events", "GET", 400);

    // A run that waits for a person ends the stream too.
    let waiting = id_of(&start(&s, "approval", "?wait=10", r#"{"amount": 3}"#, 201));
    let events = parse_events(&s.raw("GET", &format!("/api/runs/{waiting}/events"), "").body);
    let last = events.last().unwrap();
    assert_eq!((last.0.as_str(), last.1["status"].as_str()), ("end", Some("waiting")));
}

/// `(event, data)` of each server-sent event.
fn parse_events(body: &str) -> Vec<(String, Value)> {
    body.split("\n\n")
        .filter(|e| !e.trim().is_empty())
        .map(|e| {
            let field = |name: &str| e.lines().find_map(|l| l.strip_prefix(name)).unwrap().to_owned();
            (field("event: "), serde_json::from_str(&field("data: ")).unwrap())
        })
        .collect()
}

#[test]
fn serve_stops_within_five_seconds_of_sigterm_with_a_stream_open() {
    let dir = tempfile::tempdir().unwrap();
    publish(dir.path(), &["approval.yaml", "nap.yaml"]);
    let mut s = Serve::start(dir.path(), Some(TOKEN));
    let waiting = id_of(&start(&s, "approval", "?wait=10", r#"{"amount": 3}"#, 201));
    let napping = id_of(&start(&s, "nap", "", "", 201));
    let port = s.port;
    // A stream that would stay open for the nap's 1.5 s.
    let stream =
        std::thread::spawn(move || request(port, "GET", &format!("/api/runs/{napping}/events"), Some(TOKEN), ""));
    std::thread::sleep(Duration::from_millis(200));
    let t = Instant::now();
    let status = Command::new("kill").args(["-TERM", &s.child.id().to_string()]).status().unwrap();
    assert!(status.success());
    let code = loop {
        if let Some(code) = s.child.try_wait().unwrap() {
            break code;
        }
        assert!(t.elapsed() < Duration::from_secs(5), "still serving 5 s after SIGTERM");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(code.code(), Some(0));
    eprintln!("stopped {:?} after SIGTERM", t.elapsed());
    let _ = stream.join();
    // The waiting run is intact.
    let (_, run) = baton_json(dir.path(), &["runs", "show", &waiting, "--json"]);
    assert_eq!(run["status"], "waiting");
}

#[test]
fn operator_actions_repair_runs_over_the_api() {
    let server = support::flaky_b();
    let dir = tempfile::tempdir().unwrap();
    publish(dir.path(), &["repairable.yaml", "approval.yaml"]);
    let s = Serve::start(dir.path(), Some(TOKEN));
    let input = json!({"base": server.base}).to_string();
    let run = start(&s, "repairable", "?wait=10", &input, 201);
    assert_eq!(run["status"], "failed", "{run}");
    let id = id_of(&run);

    // The DAG for drawing the run.
    let graph = s.call("GET", &format!("/api/runs/{id}/graph"), "", 200, "/api/runs/{run_id}/graph");
    assert_eq!(graph["steps"][2], json!({"id": "c", "tool": "http", "needs": ["b"]}));

    let tpl = "/api/runs/{run_id}/redrive";
    let done =
        s.call("POST", &format!("/api/runs/{id}/redrive?wait=10"), r#"{"reason": "fixed", "by": "ana"}"#, 200, tpl);
    assert_eq!(done["status"], "succeeded", "{done}");
    assert_eq!(server.requests("/a").len(), 1);
    assert_eq!(server.requests("/b").len(), 2);
    let conflict = s.call("POST", &format!("/api/runs/{id}/redrive"), "", 409, tpl);
    assert!(conflict["error"].as_str().unwrap().contains("nothing to redrive"), "{conflict}");

    let tpl = "/api/runs/{run_id}/retry";
    assert_eq!(bad_field(&s, "POST", &format!("/api/runs/{id}/retry"), r#"{"from": 3}"#, tpl), "from");
    s.call("POST", &format!("/api/runs/{id}/retry"), r#"{"from": "nope"}"#, 409, tpl);
    let body = r#"{"from": "c", "input": {"body": {"again": true}}, "reason": "resend"}"#;
    let again = s.call("POST", &format!("/api/runs/{id}/retry?wait=10"), body, 200, tpl);
    assert_eq!(again["output"], json!({"path": "/c", "n": 1}), "{again}");
    let audit = s.call("GET", &format!("/api/runs/{id}/audit"), "", 200, "/api/runs/{run_id}/audit");
    let by: Vec<&Value> = audit
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["decision"] == "redrive_run" || r["decision"] == "retry_from")
        .map(|r| &r["values"]["by"])
        .collect();
    assert_eq!(by, [&json!("ana"), &json!("api")]);

    // Pause a waiting run, answer its task, unpause: the next step ran only after unpausing.
    let waiting = id_of(&start(&s, "approval", "?wait=10", r#"{"amount": 3}"#, 201));
    let paused =
        s.call("POST", &format!("/api/runs/{waiting}/pause"), r#"{"reason": "hold"}"#, 200, "/api/runs/{run_id}/pause");
    assert_eq!(paused["paused"]["reason"], "hold");
    s.call("POST", &format!("/api/runs/{waiting}/pause"), "", 409, "/api/runs/{run_id}/pause");
    let tasks = s.call("GET", "/api/tasks", "", 200, "/api/tasks");
    let task = tasks["tasks"][0]["id"].as_str().unwrap().to_owned();
    let answer = r#"{"data": {"reference": "R-9"}}"#;
    s.call("POST", &format!("/api/tasks/{task}/approve"), answer, 202, "/api/tasks/{task_id}/approve");
    let held = s.until(&waiting, "the answer taken", |r| r["steps"]["approve"]["status"] == "succeeded");
    assert_eq!(held["status"], "waiting", "paused: {held}");
    let tpl = "/api/runs/{run_id}/unpause";
    let ended = s.call("POST", &format!("/api/runs/{waiting}/unpause?wait=10"), "", 200, tpl);
    assert_eq!(ended["output"]["paid"], json!({"paid": 3, "reference": "R-9"}), "{ended}");
    s.call("POST", &format!("/api/runs/{waiting}/unpause"), "", 409, tpl);
}
