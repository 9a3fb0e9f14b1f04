//! `baton report`: real runs written as one HTML page each, opened in a real headless Chromium
//! (`/usr/bin/chromium`, or `BATON_TEST_CHROMIUM`). The DOM after the browser ran the page has
//! every step with its status in the DAG and in the step table, the timeline has a bar per
//! attempt, run data stays text (no injected markup runs), and nothing refers to the network.
//! A screenshot goes to the test's temporary directory and to `<target>/report-screenshot.png`.

mod support;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::{Reply, Server, text};

/// Parallel roots, a retried `http` step, an `llm` step that reports usage and cost, a fallback,
/// a `for_each`, a loop, memory read and written, a compensation that never runs, a person
/// answering through `baton approve`, and a step skipped by its `when`.
const WORKFLOW: &str = r#"
name: report-demo
version: 2
description: Every kind of step the report draws.
input_schema:
  type: object
  required: [customer, base, email]
  properties: {customer: {type: string}, base: {type: string}, email: {type: string}}
memory:
  entity: '.input.customer'
output: '{intent: .steps.classify.output.intent, decision: .steps.approve.output.decision}'
compensate: {remember: forget}
steps:
  - id: fetch
    tool: http
    with: {url: "{{ .input.base }}/order"}
    retry: {max_attempts: 3, initial: 20ms, jitter: none, on: [http_5xx]}
  - id: classify
    tool: llm
    with:
      model: test-model
      prompt: "{{ .input.email }}"
      output_schema: {type: object, required: [intent], properties: {intent: {type: string}}}
  - id: quote
    tool: http
    with: {url: "{{ .input.base }}/quote"}
    fallback: quote_default
  - id: quote_default
    tool: transform
    with: {expr: '{price: 0}'}
  - id: lines
    needs: [fetch]
    for_each: ".steps.fetch.output.body.lines"
    max_concurrency: 2
    tool: transform
    with: {expr: '{sku: .item, ok: true}'}
  - id: recall
    tool: memory
    with: {op: read}
  - id: refine
    needs: [classify]
    loop:
      max_iterations: 2
      then: continue
      steps:
        - id: draft
          tool: transform
          with: {expr: '"draft \(.iteration)"'}
  - id: remember
    needs: [classify]
    tool: memory
    with: {op: write, key: last_intent, value: "{{ .steps.classify.output.intent }}"}
  - id: forget
    tool: memory
    with: {op: write, key: last_intent, value: none}
  - id: approve
    needs: [lines, quote, refine, remember, recall]
    tool: human
    with: {queue: support, prompt: "Refund {{ .input.customer }}?"}
  - id: notify
    needs: [approve]
    when: '.steps.approve.output.decision == "reject"'
    tool: transform
    with: {expr: '"rejected"'}
"#;

/// Markup in run data: if the page let it through, the browser would run it.
const HOSTILE: &str = r#"<script>document.body.setAttribute('data-pwned','1')</script><img src=x onerror="document.body.setAttribute('data-pwned','2')"> refund please"#;

/// The status each step of [`WORKFLOW`] ends with.
const EXPECTED: [(&str, &str); 12] = [
    ("fetch", "succeeded"),
    ("classify", "succeeded"),
    ("quote", "fell_back"),
    ("quote_default", "succeeded"),
    ("lines", "succeeded"),
    ("recall", "succeeded"),
    ("refine", "succeeded"),
    ("draft", "succeeded"),
    ("remember", "succeeded"),
    ("forget", "not_started"),
    ("approve", "succeeded"),
    ("notify", "skipped"),
];

fn api() -> Server {
    Server::start(|req, n| match req.path.as_str() {
        "/order" if n == 0 => Reply::json(503, r#"{"error": "busy"}"#),
        "/order" => Reply::json(200, r#"{"lines": ["A-1", "B-7", "C-3"]}"#),
        "/quote" => Reply::json(404, r#"{"error": "no quote"}"#),
        "/v1/chat/completions" => {
            let content = json!({"intent": "refund"}).to_string();
            Reply::json(
                200,
                &json!({"model": "test-model",
                    "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
                    "usage": {"prompt_tokens": 120, "completion_tokens": 12, "total_tokens": 132, "cost": 0.00042}})
                .to_string(),
            )
        }
        _ => Reply::json(404, "{}"),
    })
}

/// Runs `baton --state-dir <state> args...` in `cwd`, with the model server of `base`.
fn baton_in(state: &Path, cwd: &Path, base: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_baton"))
        .arg("--state-dir")
        .arg(state)
        .args(args)
        .current_dir(cwd)
        .env_remove("BATON_HOME")
        .env_remove("OPENAI_API_KEY")
        .env("OPENAI_BASE_URL", format!("{base}/v1"))
        .output()
        .expect("baton runs")
}

fn json_of(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {}", text(out)))
}

/// The Chromium to test with; a missing one fails the test in one line.
fn chromium_bin() -> PathBuf {
    let bin = std::env::var_os("BATON_TEST_CHROMIUM").map(PathBuf::from).unwrap_or_else(|| "/usr/bin/chromium".into());
    assert!(bin.exists(), "chromium is not installed: apt-get install chromium");
    bin
}

/// Runs headless Chromium on `page` with a fresh profile (no network services, no first-run
/// work), stopping it after a minute.
fn chromium(profile: &Path, args: &[&str], page: &Path) -> Output {
    let child = Command::new(chromium_bin())
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(args)
        .arg(format!("file://{}", page.display()))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("chromium starts");
    let id = child.id();
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = done.clone();
    std::thread::spawn(move || {
        let until = Instant::now() + Duration::from_secs(60);
        while Instant::now() < until {
            if flag.load(std::sync::atomic::Ordering::SeqCst) {
                return;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        // Only the process this test started, by its id.
        let _ = Command::new("kill").arg("-9").arg(id.to_string()).status();
    });
    let out = child.wait_with_output().expect("chromium ends");
    done.store(true, std::sync::atomic::Ordering::SeqCst);
    out
}

/// One start tag of the DOM: its name and attributes.
struct Tag {
    name: String,
    attrs: HashMap<String, String>,
}

/// The start tags of serialised HTML (as Chromium's `--dump-dom` writes it: attribute values
/// double-quoted, `"` inside them escaped).
fn tags(html: &str) -> Vec<Tag> {
    let mut out = Vec::new();
    let mut rest = html;
    while let Some(i) = rest.find('<') {
        rest = &rest[i + 1..];
        let end = rest.find('>').unwrap_or(rest.len());
        let inside = &rest[..end];
        rest = &rest[end..];
        if inside.starts_with(['/', '!']) {
            continue;
        }
        let name: String = inside.chars().take_while(|c| !c.is_whitespace() && *c != '/').collect();
        let mut attrs = HashMap::new();
        let mut a = &inside[name.len()..];
        while let Some(eq) = a.find("=\"") {
            let key = a[..eq].trim().rsplit(char::is_whitespace).next().unwrap_or("").to_owned();
            let after = &a[eq + 2..];
            let close = after.find('"').unwrap_or(after.len());
            attrs.insert(key, after[..close].to_owned());
            a = &after[(close + 1).min(after.len())..];
        }
        out.push(Tag { name: name.to_ascii_lowercase(), attrs });
    }
    out
}

fn with<'a>(tags: &'a [Tag], attr: &str, value: &str) -> Vec<&'a Tag> {
    tags.iter().filter(|t| t.attrs.get(attr).is_some_and(|v| v == value)).collect()
}

/// The text between the start tag carrying `attr="value"` and the end of the page (enough to
/// look inside one section or article).
fn from<'a>(dom: &'a str, attr: &str, value: &str) -> &'a str {
    let needle = format!("{attr}=\"{value}\"");
    dom.find(&needle).map(|i| &dom[i..]).unwrap_or_else(|| panic!("no element with {needle}"))
}

/// No reference a browser would fetch: no `src`/`href`/`srcset`/`poster`/`data` pointing off
/// the page, no stylesheet link, no `@import`, no `url(...)` but local `#fragment`s.
fn assert_self_contained(html: &str) {
    let lower = html.to_ascii_lowercase();
    for bad in [
        "src=\"http",
        "src='http",
        "href=\"http",
        "href='http",
        "@import",
        "url(http",
        "url(\"http",
        "url('http",
        "<link",
    ] {
        assert!(!lower.contains(bad), "the page refers to the network: `{bad}`");
    }
    for (i, _) in lower.match_indices("url(") {
        assert!(
            lower[i + 4..].trim_start_matches(['"', '\'']).starts_with('#'),
            "non-local url(): {}",
            &html[i..i + 40]
        );
    }
    for t in tags(html) {
        for attr in ["src", "href", "srcset", "poster", "data", "xlink:href", "action"] {
            if let Some(v) = t.attrs.get(attr) {
                assert!(v.starts_with('#'), "<{} {attr}=\"{v}\"> points off the page", t.name);
            }
        }
    }
}

/// Where the lead finds the screenshot: next to the built binary's profile directory.
fn target_dir() -> PathBuf {
    let bin = PathBuf::from(env!("CARGO_BIN_EXE_baton"));
    bin.parent().and_then(Path::parent).map(Path::to_path_buf).unwrap_or_else(std::env::temp_dir)
}

#[test]
fn report_of_a_rich_run_renders_in_chromium_with_every_step_and_no_network() {
    let bin = chromium_bin();
    let api = api();
    let dir = tempfile::tempdir().expect("tempdir");
    let (state, tmp) = (dir.path().join("state"), dir.path());
    let wf = tmp.join("report-demo.yaml");
    std::fs::write(&wf, WORKFLOW).expect("write workflow");
    let input = json!({"customer": "c-42", "base": api.base, "email": HOSTILE}).to_string();
    let b = |args: &[&str]| baton_in(&state, tmp, &api.base, args);

    let run = b(&["run", wf.to_str().expect("utf8"), "--input", &input, "--json"]);
    assert_eq!(run.status.code(), Some(3), "the run waits on a person: {}", text(&run));
    let run_id = json_of(&run)["run_id"].as_str().expect("run id").to_owned();
    let task = json_of(&b(&["tasks", "--json"]))[0]["id"].as_str().expect("task id").to_owned();
    let answered = b(&["approve", &task, "--data", r#"{"amount": 3}"#, "--comment", "ok <b>bold</b>", "--by", "alice"]);
    assert_eq!(answered.status.code(), Some(0), "{}", text(&answered));
    let audit = json_of(&b(&["audit", "show", &run_id, "--json"]));
    let records = audit.as_array().expect("records").len();

    let page = tmp.join("r.html");
    let started = Instant::now();
    let out = b(&["report", &run_id, "-o", page.to_str().expect("utf8")]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(String::from_utf8_lossy(&out.stdout), format!("{}\n", page.display()), "one line: the path");
    let html = std::fs::read_to_string(&page).expect("the report was written");
    assert_self_contained(&html);
    assert_eq!(html.matches("<script").count(), 1, "only the page's own script; run data is escaped");
    assert!(html.contains("&lt;script&gt;document.body.setAttribute"), "the hostile input is shown as text");

    let dumped = chromium(&tmp.join("profile-dom"), &["--dump-dom"], &page);
    let dom = String::from_utf8_lossy(&dumped.stdout).into_owned();
    assert!(
        dom.contains("id=\"audit-chain\""),
        "chromium dumped the page ({:?}): {}",
        bin,
        String::from_utf8_lossy(&dumped.stderr)
    );
    let all = tags(&dom);
    let body = all.iter().find(|t| t.name == "body").expect("body");
    assert_eq!(body.attrs.get("data-run-status").map(String::as_str), Some("succeeded"));
    assert!(!body.attrs.contains_key("data-pwned"), "markup from the run ran in the browser");
    assert!(with(&all, "src", "x").is_empty(), "an <img> from the run became an element");

    for (step, status) in EXPECTED {
        let hooks = with(&all, "data-step", step);
        let names: Vec<&str> = hooks.iter().map(|t| t.name.as_str()).collect();
        assert!(names.contains(&"g") && names.contains(&"tr"), "`{step}` is in the DAG and the step table: {names:?}");
        for t in hooks {
            assert_eq!(t.attrs.get("data-status").map(String::as_str), Some(status), "`{step}` in <{}>", t.name);
        }
    }
    let lines = from(&dom, "data-step", "lines");
    assert!(lines[..lines.find("</g>").unwrap_or(lines.len())].contains("for_each: 3 items, 3 ok, 0 failed"));

    // The timeline: a failed and a succeeded attempt for the retried step; the wait for a person.
    let bars = |node: &str| -> Vec<String> {
        let row = from(&dom, "data-node", node);
        let row = &row[..row.find("</g>").unwrap_or(row.len())];
        tags(row).into_iter().filter_map(|t| t.attrs.get("data-outcome").cloned()).collect()
    };
    assert_eq!(bars("fetch"), ["failed", "succeeded"]);
    assert_eq!(bars("lines[2]"), ["succeeded"]);
    let approve_row = from(&dom, "data-node", "approve");
    assert!(
        approve_row[..approve_row.find("</g>").unwrap_or(0)].contains("bar o-succeeded wait"),
        "the wait is hatched"
    );

    assert_eq!(all.iter().filter(|t| t.name == "tr" && t.attrs.contains_key("data-seq")).count(), records);
    let tasks = from(&dom, "data-task", &task);
    for shown in
        ["Refund c-42?", "alice", "approve", "ok &lt;b&gt;bold&lt;/b&gt;", "\"amount\": 3", "What this is about"]
    {
        assert!(tasks.contains(shown), "the task shows `{shown}`");
    }
    assert_eq!(with(&all, "data-memory-node", "remember")[0].attrs.get("data-op").map(String::as_str), Some("write"));
    assert!(from(&dom, "id", "memory-episode").contains("report-demo succeeded"));
    let cost = from(&dom, "id", "cost-total");
    assert!(cost.contains("132") && cost.contains("$0.000420"), "{}", &cost[..200.min(cost.len())]);
    let chain = with(&all, "id", "audit-chain");
    assert_eq!(chain[0].attrs.get("data-intact").map(String::as_str), Some("true"));
    assert!(from(&dom, "id", "audit-chain").contains(&format!("Intact: {records} records")));
    assert_eq!(chain[0].attrs.get("data-signed").map(String::as_str), Some("true"), "the embedded store signs");
    assert!(from(&dom, "id", "audit-chain").contains("signed digests verified"));

    let shot = tmp.join("report.png");
    let taken = chromium(
        &tmp.join("profile-shot"),
        &[&format!("--screenshot={}", shot.display()), "--window-size=1400,2000"],
        &page,
    );
    let png = std::fs::read(&shot)
        .unwrap_or_else(|e| panic!("no screenshot ({e}): {}", String::from_utf8_lossy(&taken.stderr)));
    assert!(png.starts_with(b"\x89PNG") && png.len() > 30_000, "a real picture: {} bytes", png.len());
    let kept = target_dir().join("report-screenshot.png");
    std::fs::copy(&shot, &kept).expect("copy the screenshot");
    std::fs::copy(&page, target_dir().join("report-example.html")).expect("copy the page");
    println!("report screenshot: {} (report and browser took {:?})", kept.display(), started.elapsed());
}

#[test]
fn report_of_a_failed_run_shows_the_failure_and_the_compensation() {
    let api = Server::start(|req, _| match req.path.as_str() {
        "/charge" => Reply::json(200, r#"{"id": "ch-1"}"#),
        "/ship" => Reply::json(500, r#"{"error": "warehouse down"}"#),
        _ => Reply::json(200, "{}"),
    });
    let dir = tempfile::tempdir().expect("tempdir");
    let (state, tmp) = (dir.path().join("state"), dir.path());
    let wf = tmp.join("saga.yaml");
    std::fs::write(
        &wf,
        r#"
name: saga-report
input_schema: {type: object, required: [base], properties: {base: {type: string}}}
compensate: {charge: refund}
steps:
  - {id: charge, tool: http, with: {method: POST, url: "{{ .input.base }}/charge"}}
  - id: ship
    needs: [charge]
    tool: http
    with: {method: POST, url: "{{ .input.base }}/ship"}
    retry: {max_attempts: 2, initial: 10ms, jitter: none}
  - {id: notify, needs: [ship], tool: transform, with: {expr: '"shipped"'}}
  - {id: refund, tool: http, with: {method: POST, url: "{{ .input.base }}/refund"}}
"#,
    )
    .expect("write workflow");
    let b = |args: &[&str]| baton_in(&state, tmp, &api.base, args);
    let run = b(&["run", wf.to_str().expect("utf8"), "--input", &json!({"base": api.base}).to_string(), "--json"]);
    assert_eq!(run.status.code(), Some(1), "{}", text(&run));
    let run_id = json_of(&run)["run_id"].as_str().expect("run id").to_owned();

    // Without -o the page lands in the current directory.
    let out = b(&["report", &run_id]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let name = format!("report-{run_id}.html");
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim_end(), name);
    let page = tmp.join(&name);
    assert_self_contained(&std::fs::read_to_string(&page).expect("written in the current directory"));

    let dom = String::from_utf8_lossy(&chromium(&tmp.join("profile"), &["--dump-dom"], &page).stdout).into_owned();
    let all = tags(&dom);
    for (step, status) in
        [("charge", "succeeded"), ("ship", "failed"), ("notify", "not_started"), ("refund", "succeeded")]
    {
        let hooks = with(&all, "data-step", step);
        assert!(hooks.len() >= 2, "`{step}` in the DAG and the table");
        assert!(
            hooks.iter().all(|t| t.attrs.get("data-status").map(String::as_str) == Some(status)),
            "`{step}` {status}"
        );
    }
    let ship = from(&dom, "data-node", "ship");
    let ship = &ship[..ship.find("</g>").unwrap_or(ship.len())];
    assert_eq!(ship.matches("data-outcome=\"failed\"").count(), 2, "both attempts failed");
    assert!(from(&dom, "id", "run-error").contains("warehouse down"));
    assert!(dom.contains("data-node=\"refund~charge\""), "the compensation node is on the timeline");
}

#[test]
fn an_unknown_run_exits_2_like_runs_show_and_writes_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let state = dir.path().join("state");
    let show = baton_in(&state, dir.path(), "http://127.0.0.1:9", &["runs", "show", "no-such-run"]);
    let report = baton_in(&state, dir.path(), "http://127.0.0.1:9", &["report", "no-such-run", "-o", "r.html"]);
    assert_eq!(report.status.code(), show.status.code());
    assert_eq!(report.status.code(), Some(2));
    assert_eq!(String::from_utf8_lossy(&report.stderr), String::from_utf8_lossy(&show.stderr));
    assert!(report.stdout.is_empty());
    assert!(!dir.path().join("r.html").exists());
}
