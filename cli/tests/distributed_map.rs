//! Distributed maps (`items_from`) embedded, through the `baton` binary: a local JSON Lines
//! file of 1,000 items in batches of 100, a CSV file whose failed rows count against the
//! tolerance, and a `kill -9` mid-map after which `resume` runs only the batches that had not
//! finished. Results and the manifest land in a local directory; the run's state holds
//! descriptors and references, not the items.

mod support;

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::{Reply, Server, baton, baton_json, text};

fn tmp() -> tempfile::TempDir {
    tempfile::tempdir().expect("tempdir")
}

fn write(path: &Path, body: &str) {
    std::fs::write(path, body).expect("write");
}

fn publish(state: &Path, file: &Path) {
    let out = baton(state, &["publish", file.to_str().expect("utf8")]);
    assert!(out.status.success(), "publish: {}", text(&out));
}

fn read_json(path: &Path) -> Value {
    let body = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&body).expect("json")
}

const SCORE_BATCH: &str = r#"
name: score-batch
steps:
  - id: score
    tool: transform
    with:
      expr: '{first: .input.batch.first, n: (.input.items | length), total: ([.input.items[].amount] | add), model: .input.model}'
"#;

fn map_workflow(source: &Path, results: &Path, extra: &str) -> String {
    format!(
        r#"
name: score-orders
steps:
  - id: score
    tool: workflow
    max_concurrency: 4
    items_from:
      source: "{}"
      results: "{}/"
{extra}
    with: {{name: score-batch, input: {{model: v2}}}}
"#,
        source.display(),
        results.display()
    )
}

#[test]
fn a_local_jsonl_source_runs_in_batches_and_writes_results_and_a_manifest() {
    let dir = tmp();
    let state = dir.path().join("state");
    let source = dir.path().join("orders.jsonl");
    let lines: Vec<String> = (0..1000).map(|i| json!({"id": i, "amount": i}).to_string()).collect();
    write(&source, &(lines.join("\n") + "\n"));
    let child = dir.path().join("score-batch.yaml");
    write(&child, SCORE_BATCH);
    publish(&state, &child);
    let wf = dir.path().join("map.yaml");
    let results = dir.path().join("results");
    write(&wf, &map_workflow(&source, &results, "      batch_size: 100"));

    let (code, v) = baton_json(&state, &["run", wf.to_str().expect("utf8"), "--json"]);
    assert_eq!(code, 0, "{v}");
    assert_eq!(v["status"], "succeeded", "{v}");
    let out = &v["steps"]["score"]["output"];
    let run_id = v["run_id"].as_str().expect("id");
    let prefix = format!("{}/{run_id}/score/", results.display());
    assert_eq!(
        out,
        &json!({"manifest": format!("{prefix}manifest.json"), "results": prefix, "items": 1000,
                "succeeded": 1000, "failed": 0, "batches": 10}),
    );
    let manifest = read_json(Path::new(&format!("{prefix}manifest.json")));
    assert_eq!(manifest["items"], 1000);
    assert_eq!(manifest["batches"].as_array().map(Vec::len), Some(10));
    let mut sum = 0;
    for b in manifest["batches"].as_array().expect("batches") {
        assert_eq!(b["status"], "succeeded", "{b}");
        let result = read_json(Path::new(b["results"].as_str().expect("results")));
        assert_eq!(result["score"]["n"], 100, "{result}");
        assert_eq!(result["score"]["model"], "v2", "the step's own input reaches every batch");
        assert_eq!(result["score"]["first"], b["first"]);
        sum += result["score"]["total"].as_i64().expect("total");
    }
    assert_eq!(sum, (0..1000).sum::<i64>(), "every item was processed once");

    // The run's state holds references, not the items or the results.
    let (_, shown) = baton_json(&state, &["runs", "show", run_id, "--json"]);
    let shown = shown.to_string();
    assert!(!shown.contains(r#""amount":999"#), "no item in the run: {}", &shown[..shown.len().min(400)]);
    let verify = baton(&state, &["audit", "verify", run_id]);
    assert!(verify.status.success(), "{}", text(&verify));
}

const CHECK_ROWS: &str = r#"
name: check-rows
steps:
  - id: check
    tool: transform
    with:
      expr: 'if any(.input.items[]; .status == "bad") then error("a bad row in this batch") else (.input.items | length) end'
"#;

#[test]
fn failed_csv_batches_count_against_the_tolerance() {
    let dir = tmp();
    let state = dir.path().join("state");
    let source = dir.path().join("rows.csv");
    let mut csv = String::from("id,status,note\n");
    for i in 0..10 {
        let status = if i == 1 || i == 6 { "bad" } else { "ok" };
        csv.push_str(&format!("{i},{status},\"a note, with a comma and \"\"quotes\"\"\"\n"));
    }
    write(&source, &csv);
    let child = dir.path().join("check-rows.yaml");
    write(&child, CHECK_ROWS);
    publish(&state, &child);
    let results = dir.path().join("out");
    let wf = |name: &str, tolerance: &str| {
        let body = format!(
            r#"
name: {name}
steps:
  - id: rows
    tool: workflow
    max_concurrency: 2
    items_from:
      source: "{}"
      batch_size: 2
      results: "{}/"
      {tolerance}
    with: {{name: check-rows}}
"#,
            source.display(),
            results.display()
        );
        let path = dir.path().join(format!("{name}.yaml"));
        write(&path, &body);
        path
    };

    // Two failed batches of two rows: 4 failed items, as many as tolerated.
    let ok = wf("tolerant", "tolerated_failures: 4");
    let (code, v) = baton_json(&state, &["run", ok.to_str().expect("utf8"), "--json"]);
    assert_eq!(code, 0, "{v}");
    let out = &v["steps"]["rows"]["output"];
    assert_eq!(
        (out["items"].as_i64(), out["succeeded"].as_i64(), out["failed"].as_i64()),
        (Some(10), Some(6), Some(4))
    );
    let manifest = read_json(Path::new(out["manifest"].as_str().expect("manifest")));
    let statuses: Vec<&str> =
        manifest["batches"].as_array().expect("batches").iter().map(|b| b["status"].as_str().unwrap_or("")).collect();
    assert_eq!(statuses, ["failed", "succeeded", "succeeded", "failed", "succeeded"], "rows 1 and 6 are bad");

    // 30% of 10 items is 3: four failed items are too many.
    let strict = wf("strict", "tolerated_failure_percent: 30");
    let (code, v) = baton_json(&state, &["run", strict.to_str().expect("utf8"), "--json"]);
    assert_eq!(code, 1, "{v}");
    assert_eq!(v["status"], "failed");
    assert_eq!(v["error"]["kind"], "tolerance_exceeded", "{v}");
    let message = v["error"]["message"].as_str().unwrap_or("");
    assert!(message.contains("4 of 10 items failed, more than the 3 tolerated"), "{message}");
}

const CALL_BATCH: &str = r#"
name: call-batch
steps:
  - id: call
    tool: http
    with: {url: "{{ .input.base }}/batch/{{ .input.batch.index }}", method: POST, body: {n: "{{ .input.items | length }}"}}
"#;

#[test]
fn kill_9_mid_map_then_resume_runs_only_the_batches_that_had_not_finished() {
    // Batches 0-3 answer at once; the first call of batches 4 and 5 hangs, so the map is
    // mid-way when the process dies.
    let server = Server::start(|req, n| {
        let index: u32 = req.path.rsplit('/').next().and_then(|i| i.parse().ok()).unwrap_or(0);
        if (index == 4 || index == 5) && n == 0 {
            Reply::json(200, r#"{"late": true}"#).after(Duration::from_secs(60))
        } else {
            Reply::json(200, r#"{"ok": true}"#)
        }
    });
    let dir = tmp();
    let state = dir.path().join("state");
    let source = dir.path().join("items.json");
    let items: Vec<Value> = (0..80).map(|i| json!({"id": i, "tags": ["a", "]", "\"q\""]})).collect();
    write(&source, &serde_json::to_string_pretty(&items).expect("json"));
    let child = dir.path().join("call-batch.yaml");
    write(&child, CALL_BATCH);
    publish(&state, &child);
    let results = dir.path().join("results");
    let wf = dir.path().join("map.yaml");
    write(
        &wf,
        &format!(
            r#"
name: call-all
steps:
  - id: calls
    tool: workflow
    max_concurrency: 2
    items_from: {{source: "{}", batch_size: 10, results: "{}/"}}
    with: {{name: call-batch, input: {{base: "{}"}}}}
"#,
            source.display(),
            results.display(),
            server.base
        ),
    );
    let mut proc = std::process::Command::new(env!("CARGO_BIN_EXE_baton"))
        .arg("--state-dir")
        .arg(&state)
        .args(["run", wf.to_str().expect("utf8"), "--json"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn");
    let deadline = Instant::now() + Duration::from_secs(30);
    while server.requests("/batch/4").is_empty() || server.requests("/batch/5").is_empty() {
        assert!(Instant::now() < deadline, "batches 4 and 5 never started");
        std::thread::sleep(Duration::from_millis(20));
    }
    proc.kill().expect("kill -9");
    let _ = proc.wait();

    let (code, v) = baton_json(&state, &["resume", "--json"]);
    assert_eq!(code, 0, "{v}");
    let run = &v[0];
    assert_eq!(run["status"], "succeeded", "{run}");
    assert_eq!(run["steps"]["calls"]["output"]["succeeded"], 80);
    for i in 0..8 {
        let calls = server.requests(&format!("/batch/{i}"));
        let expected = if i == 4 || i == 5 { 2 } else { 1 };
        assert_eq!(calls.len(), expected, "batch {i}: finished batches are not run again");
        assert!(calls.windows(2).all(|w| w[0].idempotency_key == w[1].idempotency_key), "batch {i} kept its key");
        assert!(calls[0].body.contains(r#""n":"10""#) || calls[0].body.contains(r#""n":10"#), "{}", calls[0].body);
    }
}
