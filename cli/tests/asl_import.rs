//! `baton import asl`: the public sample definitions import, validate and run embedded with
//! mocks for their AWS calls; and the differential test: hand-written definitions in
//! `tests/asl/cases/` run through the importer and baton, and through an independent reference
//! of the States Language's data flow (`tests/asl/reference.py`), give the same output (or the
//! same error) case by case.

// The helpers fail the test loudly on any surprise.
#![allow(clippy::unwrap_used)]

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;

use baton_core::asl::naming::base_id;
use serde_json::{Value, json};
use support::*;

/// The sample definitions: `BATON_ASL_SAMPLES`, else `shared/asl-samples` beside the repository.
fn samples_dir() -> PathBuf {
    match std::env::var_os("BATON_ASL_SAMPLES") {
        Some(d) => PathBuf::from(d),
        None => root().join("..").join("shared").join("asl-samples"),
    }
}

fn import(dir: &Path, file: &Path, out: &Path, extra: &[&str]) -> std::process::Output {
    let mut args = vec!["import", "asl", file.to_str().unwrap(), "-o", out.to_str().unwrap()];
    args.extend_from_slice(extra);
    baton(dir, &args)
}

/// Every sample converts, validates, and runs embedded with its mocks file to the status the
/// mocks lead to; the callback sample waits, then a `SendTaskSuccess`-shaped event ends it.
#[test]
fn the_public_samples_import_validate_and_run_with_mocks() {
    let dir = samples_dir();
    assert!(dir.is_dir(), "the ASL samples are not at {} (set BATON_ASL_SAMPLES)", dir.display());
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().ends_with(".asl.json"))
        .collect();
    files.sort();
    assert!(files.len() >= 8, "found {} samples in {}", files.len(), dir.display());
    let tmp = tempfile::tempdir().unwrap();
    for file in &files {
        let stem = file.file_name().unwrap().to_string_lossy().trim_end_matches(".asl.json").to_owned();
        let out = tmp.path().join(format!("{stem}.yaml"));
        let check = baton(tmp.path(), &["import", "asl", file.to_str().unwrap(), "--check"]);
        assert!(check.status.success(), "{stem}: --check failed:\n{}", text(&check));
        assert!(!out.exists(), "--check writes nothing");
        let imported = import(tmp.path(), file, &out, &[]);
        assert!(imported.status.success(), "{stem}: import failed:\n{}", text(&imported));
        let validate = baton(tmp.path(), &["validate", out.to_str().unwrap()]);
        assert!(validate.status.success(), "{stem}: does not validate:\n{}", text(&validate));
        let spec_file = root().join("tests/asl/samples").join(format!("{stem}.json"));
        let spec: Value = serde_json::from_str(
            &std::fs::read_to_string(&spec_file)
                .unwrap_or_else(|e| panic!("{stem}: no run spec at {}: {e}", spec_file.display())),
        )
        .unwrap();
        let mocks = tmp.path().join(format!("{stem}.mocks.json"));
        std::fs::write(&mocks, spec["mocks"].to_string()).unwrap();
        let state = tmp.path().join(format!("state-{stem}"));
        let input = spec["input"].to_string();
        let (code, run) = baton_json(
            &state,
            &["run", out.to_str().unwrap(), "--input", &input, "--mocks", mocks.to_str().unwrap(), "--json"],
        );
        let want = spec["status"].as_str().unwrap();
        assert_eq!(run["status"], want, "{stem}: exit {code}, run: {run:#}");
        if let Some(o) = spec.get("output") {
            assert_eq!(&run["output"], o, "{stem}: output");
        }
        if let Some(event) = spec.get("callback") {
            let run_id = run["run_id"].as_str().unwrap();
            let mut event = event.clone();
            let token = task_token(&state, run_id, spec["callback_step"].as_str().unwrap());
            event["detail"]["taskToken"] = json!(token);
            let (_, answered) = baton_json(&state, &["event", &event.to_string(), "--json"]);
            let ended = if answered.is_array() { answered[0].clone() } else { answered };
            assert_eq!(ended["status"], spec["after_callback"], "{stem}: after the callback: {ended:#}");
            if let Some(o) = spec.get("output_after_callback") {
                assert_eq!(&ended["output"], o, "{stem}: output after the callback");
            }
        }
    }
}

/// The task token the run sent out for `step` (`<run id>:<nonce>:<step>`), as the receiving
/// system would read it from the message: here from the run's audit log.
fn task_token(state: &Path, run_id: &str, step: &str) -> String {
    let audit = baton(state, &["audit", "show", run_id, "--json"]);
    let text = String::from_utf8_lossy(&audit.stdout).into_owned();
    let prefix = format!("{run_id}:");
    let suffix = format!(":{step}");
    text.match_indices(&prefix)
        .filter_map(|(at, _)| {
            let rest = &text[at + prefix.len()..];
            let nonce = rest.get(..16)?;
            (nonce.chars().all(|c| c.is_ascii_hexdigit()) && rest[16..].starts_with(&suffix))
                .then(|| format!("{prefix}{nonce}{suffix}"))
        })
        .next()
        .unwrap_or_else(|| panic!("no task token for {step} in the audit log of {run_id}"))
}

/// The resource of state `name` anywhere in `def` (branches and processors included).
fn resource_of<'a>(def: &'a Value, name: &str) -> Option<&'a str> {
    let states = def.get("States")?.as_object()?;
    if let Some(st) = states.get(name) {
        return st.get("Resource").and_then(Value::as_str);
    }
    states.values().find_map(|st| {
        let nested = st.get("Branches").and_then(Value::as_array).cloned().unwrap_or_default();
        nested.iter().find_map(|b| resource_of(b, name).map(|_| ())).and(None).or_else(|| {
            ["ItemProcessor", "Iterator"].iter().find_map(|k| st.get(*k).and_then(|p| resource_of(p, name)))
        })
    })
}

/// The case's task results as a baton mocks file: by step id (the documented naming rule), a
/// Lambda function resource's result wrapped as an `Invoke` response's `Payload`.
fn mocks_of(def: &Value, results: &Value) -> Value {
    let mut steps = serde_json::Map::new();
    for (state, entries) in results.as_object().into_iter().flatten() {
        let direct = resource_of(def, state).is_some_and(|r| !r.starts_with("arn:aws:states:"));
        let list: Vec<Value> = entries
            .as_array()
            .unwrap()
            .iter()
            .map(|e| match e.get("error") {
                Some(err) => json!({"error": err, "message": e.get("cause").cloned().unwrap_or(json!(""))}),
                None if direct => json!({"output": {"Payload": e["result"], "StatusCode": 200}}),
                None => json!({"output": e["result"]}),
            })
            .collect();
        steps.insert(base_id(state), Value::Array(list));
    }
    json!({"steps": steps})
}

/// A failed run's States Language error and cause: a Fail state's (or a failed catch's)
/// `{Error, Cause}` travels as JSON at the end of the message; a task's error is its kind.
fn asl_error(err: &Value) -> (Value, Value) {
    let message = err["message"].as_str().unwrap_or("");
    // A catch step that matched nothing passes the error on; baton says so before the cause.
    let message = match message.split_once("` failed too: ") {
        Some((head, cause)) if head.starts_with("fallback `") => cause,
        _ => message,
    };
    let tail = message.rsplit("`: ").next().unwrap_or(message);
    let parsed = serde_json::from_str::<Value>(tail)
        .ok()
        .and_then(|v| if let Value::String(s) = &v { serde_json::from_str(s).ok() } else { Some(v) })
        .filter(|v: &Value| v.get("Error").is_some());
    match parsed {
        Some(v) => (v["Error"].clone(), v.get("Cause").cloned().unwrap_or(json!(""))),
        None => (err["kind"].clone(), json!(message)),
    }
}

#[test]
fn imported_workflows_compute_what_the_states_language_says() {
    let cases_dir = root().join("tests/asl/cases");
    let mut defs: Vec<PathBuf> = std::fs::read_dir(&cases_dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().ends_with(".asl.json"))
        .collect();
    defs.sort();
    assert!(defs.len() >= 6, "cases: {defs:?}");
    let tmp = tempfile::tempdir().unwrap();
    let mut compared = 0;
    for def_path in &defs {
        let name = def_path.file_name().unwrap().to_string_lossy().trim_end_matches(".asl.json").to_owned();
        let def: Value = serde_json::from_str(&std::fs::read_to_string(def_path).unwrap()).unwrap();
        let case: Value =
            serde_json::from_str(&std::fs::read_to_string(cases_dir.join(format!("{name}.case.json"))).unwrap())
                .unwrap();
        let out = tmp.path().join(format!("{name}.yaml"));
        let imported = import(tmp.path(), def_path, &out, &[]);
        assert!(imported.status.success(), "{name}: import failed:\n{}", text(&imported));
        let mocks = tmp.path().join(format!("{name}.mocks.json"));
        let results = case.get("results").cloned().unwrap_or(json!({}));
        std::fs::write(&mocks, mocks_of(&def, &results).to_string()).unwrap();
        for (i, input) in case["inputs"].as_array().unwrap().iter().enumerate() {
            let one = tmp.path().join(format!("{name}.{i}.case.json"));
            std::fs::write(&one, json!({"input": input, "results": results}).to_string()).unwrap();
            let reference = Command::new("python3")
                .arg(root().join("tests/asl/reference.py"))
                .args([def_path.as_os_str(), one.as_os_str()])
                .arg(&name)
                .output()
                .expect("python3 runs");
            assert!(reference.status.success(), "{name}: reference failed: {}", text(&reference));
            let expected: Value = serde_json::from_slice(&reference.stdout).unwrap();
            let state = tmp.path().join(format!("state-{name}-{i}"));
            let (_, run) = baton_json(
                &state,
                &[
                    "run",
                    out.to_str().unwrap(),
                    "--input",
                    &input.to_string(),
                    "--mocks",
                    mocks.to_str().unwrap(),
                    "--json",
                ],
            );
            assert_eq!(run["status"], expected["status"], "{name} input {i}: reference {expected:#}\nbaton {run:#}");
            if expected["status"] == "succeeded" {
                assert_eq!(run["output"], expected["output"], "{name} input {i}: output");
            } else {
                let (error, cause) = asl_error(&run["error"]);
                assert_eq!(error, expected["error"], "{name} input {i}: error; baton {run:#}");
                // The specification leaves a runtime error's cause to the implementation.
                if expected["error"] != "States.Runtime" {
                    assert_eq!(cause, expected["cause"], "{name} input {i}: cause");
                }
                // A name baton takes as a kind is the run's error kind itself, the cause its message.
                let named = expected["error"]
                    .as_str()
                    .is_some_and(|e| baton_core::error_kind::ErrorKind::raisable(e).is_ok_and(|k| k.is_named_error()));
                if named {
                    assert_eq!(run["error"]["kind"], expected["error"], "{name} input {i}: kind; baton {run:#}");
                }
            }
            compared += 1;
        }
    }
    assert!(compared >= 9, "compared {compared} runs");
}

/// A definition with parts that cannot be converted: every one is listed, nothing is written,
/// and the exit code is 2; `--substitute` without `=` is refused the same way.
#[test]
fn unconvertible_definitions_list_every_state_and_exit_2() {
    let tmp = tempfile::tempdir().unwrap();
    let def = tmp.path().join("bad.asl.json");
    std::fs::write(
        &def,
        r#"{"StartAt": "A", "States": {
            "A": {"Type": "Task", "Resource": "arn:aws:states:::ecs:runTask.sync", "Next": "B"},
            "B": {"Type": "Pass", "QueryLanguage": "JSONata", "Output": "{% $eval('1') %}", "End": true}}}"#,
    )
    .unwrap();
    let out = tmp.path().join("bad.yaml");
    let r = import(tmp.path(), &def, &out, &[]);
    assert_eq!(r.status.code(), Some(2), "{}", text(&r));
    let t = text(&r);
    assert!(t.contains("state \"A\", field `Resource`"), "{t}");
    assert!(t.contains("state \"B\", field `Output`: JSONata function `$eval` cannot be converted"), "{t}");
    assert!(!out.exists());
    let r = import(tmp.path(), &def, &out, &["--substitute", "novalue"]);
    assert_eq!(r.status.code(), Some(2), "{}", text(&r));
}

/// Runs baton with the emulator as every AWS endpoint (`BATON_TEST_AWS_ENDPOINT`, default
/// http://127.0.0.1:4566), its JSON output parsed.
fn baton_on_emulator(dir: &Path, args: &[&str]) -> Value {
    let endpoint = std::env::var("BATON_TEST_AWS_ENDPOINT").unwrap_or_else(|_| "http://127.0.0.1:4566".into());
    ensure_endpoints();
    let out = Command::new(env!("CARGO_BIN_EXE_baton"))
        .arg("--state-dir")
        .arg(dir)
        .args(args)
        .current_dir(root())
        .env_remove("BATON_HOME")
        .env("AWS_ENDPOINT_URL", endpoint)
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("AWS_REGION", "us-east-1")
        .output()
        .unwrap();
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{args:?}: {e}\n{}", text(&out)))
}

/// The samples whose services the emulator has run for real: EventBridge `PutEvents` on the
/// sample's bus, and SNS `Publish` after a `SecondsPath` wait, on a topic made for the test.
#[test]
fn samples_calling_emulated_services_run_on_the_emulator() {
    let tmp = tempfile::tempdir().unwrap();
    let state = tmp.path().join("state");
    let topic = format!("asl-sample-{}", std::process::id());
    let setup = tmp.path().join("setup.yaml");
    std::fs::write(
        &setup,
        format!(
            "name: setup\nsteps:\n  - {{id: bus, tool: aws, with: {{service: eventbridge, action: CreateEventBus, params: {{Name: stepfunctions-sampleproject-eventbus}}}}}}\n  - {{id: topic, tool: aws, with: {{service: sns, action: CreateTopic, params: {{Name: {topic}}}}}}}\n"
        ),
    )
    .unwrap();
    let made = baton_on_emulator(&state, &["run", setup.to_str().unwrap(), "--json"]);
    // The bus may exist from an earlier run: only the topic's creation must succeed.
    let topic_arn =
        made["steps"]["topic"]["output"]["TopicArn"].as_str().unwrap_or_else(|| panic!("{made:#}")).to_owned();

    let eb = tmp.path().join("eb.yaml");
    let r = import(tmp.path(), &samples_dir().join("eventbridge-custom-sam.asl.json"), &eb, &[]);
    assert!(r.status.success(), "{}", text(&r));
    let run = baton_on_emulator(&state, &["run", eb.to_str().unwrap(), "--json"]);
    assert_eq!(run["status"], "succeeded", "{run:#}");
    assert_eq!(run["output"]["FailedEntryCount"], 0, "{run:#}");
    assert!(run["output"]["Entries"][0]["EventId"].is_string(), "{run:#}");

    let rr = tmp.path().join("rr.yaml");
    let sub = format!("topicArn={topic_arn}");
    let r = import(tmp.path(), &samples_dir().join("request-response.asl.json"), &rr, &["--substitute", &sub]);
    assert!(r.status.success(), "{}", text(&r));
    let run = baton_on_emulator(&state, &["run", rr.to_str().unwrap(), "--input", r#"{"timer_seconds": 1}"#, "--json"]);
    assert_eq!(run["status"], "succeeded", "{run:#}");
    assert!(run["output"]["MessageId"].is_string(), "{run:#}");
}

/// `States.UUID` and `States.MathRandom` draw from a hash of the run, the state, the field and
/// the draw: values differ between calls and between runs, a seeded `MathRandom` is the same in
/// every run, and `audit replay` of the run finds the same values.
#[test]
fn uuids_and_random_numbers_differ_per_call_and_run_and_replay_the_same() {
    let tmp = tempfile::tempdir().unwrap();
    let def = tmp.path().join("ids.asl.json");
    let machine = json!({"StartAt": "Ids", "States": {"Ids": {"Type": "Pass", "Parameters": {
        "a.$": "States.UUID()", "b.$": "States.UUID()",
        "pair.$": "States.Array(States.UUID(), States.UUID())",
        "r.$": "States.MathRandom(10, 20)", "seeded.$": "States.MathRandom(0, 1000000, 42)"
    }, "End": true}}});
    std::fs::write(&def, machine.to_string()).unwrap();
    let out = tmp.path().join("ids.yaml");
    let imported = import(tmp.path(), &def, &out, &[]);
    assert!(imported.status.success(), "{}", text(&imported));
    let state = tmp.path().join("state");
    let run =
        |i: usize| baton_json(&state, &["run", out.to_str().unwrap(), "--input", &format!("{{\"i\": {i}}}"), "--json"]);
    let (code1, r1) = run(1);
    let (code2, r2) = run(2);
    assert_eq!((code1, code2), (0, 0), "{r1:#}\n{r2:#}");
    let (o1, o2) = (&r1["output"], &r2["output"]);
    let uuids: Vec<&str> =
        [&o1["a"], &o1["b"], &o1["pair"][0], &o1["pair"][1], &o2["a"]].iter().map(|v| v.as_str().unwrap()).collect();
    for u in &uuids {
        assert_eq!(u.len(), 36, "{u}");
        assert_eq!(&u[14..15], "5", "a version 5 UUID: {u}");
    }
    let distinct: std::collections::BTreeSet<&&str> = uuids.iter().collect();
    assert_eq!(distinct.len(), uuids.len(), "every call and every run draws its own: {uuids:?}");
    let r = o1["r"].as_f64().unwrap();
    assert!((10.0..20.0).contains(&r) && r.fract() == 0.0, "{r}");
    assert_eq!(o1["seeded"], o2["seeded"], "a seed gives the same number in every run");
    let id = r1["run_id"].as_str().unwrap();
    let replay = baton(&state, &["audit", "replay", id]);
    assert!(replay.status.success(), "{}", text(&replay));
}

/// A callback task with `HeartbeatSeconds`: a `TaskHeartbeat` event keeps the wait open (the
/// audit records it), `TaskSuccess` ends it; with no heartbeat the wait fails with
/// `States.HeartbeatTimeout`, which the state's `States.Timeout` catcher catches.
#[test]
fn callback_heartbeats_keep_the_wait_and_their_absence_is_a_heartbeat_timeout() {
    let tmp = tempfile::tempdir().unwrap();
    let def = tmp.path().join("beat.asl.json");
    let machine = json!({"StartAt": "Ask", "States": {
        "Ask": {"Type": "Task", "Resource": "arn:aws:states:::sqs:sendMessage.waitForTaskToken",
                "Parameters": {"QueueUrl": "https://sqs.eu-west-1.amazonaws.com/1/q",
                               "MessageBody": {"token.$": "$$.Task.Token"}},
                "HeartbeatSeconds": 2, "TimeoutSeconds": 3600,
                "Catch": [{"ErrorEquals": ["States.Timeout"], "ResultPath": "$.error", "Next": "Late"}],
                "End": true},
        "Late": {"Type": "Pass", "End": true}}});
    std::fs::write(&def, machine.to_string()).unwrap();
    let out = tmp.path().join("beat.yaml");
    let imported = import(tmp.path(), &def, &out, &[]);
    assert!(imported.status.success(), "{}", text(&imported));
    let mocks = tmp.path().join("mocks.json");
    std::fs::write(&mocks, json!({"steps": {"Ask": [{"output": {"MessageId": "m-1"}}]}}).to_string()).unwrap();
    let state = tmp.path().join("state");
    let start = |dir: &Path| {
        let (_, run) = baton_json(
            dir,
            &["run", out.to_str().unwrap(), "--input", "{}", "--mocks", mocks.to_str().unwrap(), "--json"],
        );
        assert_eq!(run["status"], "waiting", "{run:#}");
        run["run_id"].as_str().unwrap().to_owned()
    };
    let callback = |dir: &Path, run_id: &str, detail_type: &str| {
        let event = json!({"source": "baton.callback", "detail-type": detail_type,
                           "detail": {"taskToken": task_token(dir, run_id, "Ask"), "output": "{\"ok\": true}"}});
        baton_json(dir, &["event", &event.to_string(), "--json"]).1
    };
    // A heartbeat, then the answer.
    let run_id = start(&state);
    let beat = callback(&state, &run_id, "TaskHeartbeat");
    let beat = if beat.is_array() { beat[0].clone() } else { beat };
    assert_eq!(beat["status"], "waiting", "a heartbeat does not end the wait: {beat:#}");
    let audit = baton(&state, &["audit", "show", &run_id, "--json"]);
    assert!(String::from_utf8_lossy(&audit.stdout).contains("\"heartbeat\""), "{}", text(&audit));
    let done = callback(&state, &run_id, "TaskSuccess");
    let done = if done.is_array() { done[0].clone() } else { done };
    assert_eq!(done["status"], "succeeded", "{done:#}");
    assert_eq!(done["output"], json!({"ok": true}));
    // No heartbeat: after 2 s `resume` finds the wait failed, and the catcher names the error.
    let quiet = tmp.path().join("quiet");
    let run_id = start(&quiet);
    std::thread::sleep(std::time::Duration::from_millis(2_500));
    let (_, late) = baton_json(&quiet, &["resume", &run_id, "--json"]);
    assert_eq!(late["status"], "succeeded", "{late:#}");
    assert_eq!(late["output"]["error"]["Error"], "States.HeartbeatTimeout", "{late:#}");
}

/// A distributed Map (an `ItemReader` and a `ResultWriter`) imports as an `items_from` step and
/// runs on the emulator's S3: 25 items in batches of 10, each batch given to the processor as
/// `{Items, BatchInput}` with `ItemSelector` applied to each item, the batches' results and a
/// manifest under the writer's prefix, and Step Functions' `ResultWriterDetails` as the result.
/// A processor that fails an item past `ToleratedFailureCount` is caught as
/// `States.ExceedToleratedFailureThreshold`.
#[test]
fn a_distributed_map_reads_its_items_from_s3_and_writes_its_results_there() {
    let tmp = tempfile::tempdir().unwrap();
    let state = tmp.path().join("state");
    let bucket = format!("asl-dmap-{}", std::process::id());
    let lines: Vec<String> = (0..25).map(|i| json!({"id": i, "bad": i == 13}).to_string()).collect();
    let setup = tmp.path().join("setup.yaml");
    let put = json!({"service": "s3", "action": "PutObject",
                     "params": {"Bucket": bucket, "Key": "in/items.jsonl", "Body": lines.join("\n")}});
    let make = json!({"service": "s3", "action": "CreateBucket", "params": {"Bucket": bucket}});
    std::fs::write(
        &setup,
        format!("name: setup\nsteps:\n  - {{id: bucket, tool: aws, with: {make}}}\n  - {{id: put, tool: aws, needs: [bucket], with: {put}}}\n"),
    )
    .unwrap();
    let made = baton_on_emulator(&state, &["run", setup.to_str().unwrap(), "--json"]);
    assert_eq!(made["status"], "succeeded", "{made:#}");

    let machine = |tolerated: u64| {
        json!({"StartAt": "Score", "States": {
            "Score": {
                "Type": "Map",
                "ItemReader": {"Resource": "arn:aws:states:::s3:getObject", "ReaderConfig": {"InputType": "JSONL"},
                               "Parameters": {"Bucket.$": "$.bucket", "Key": "in/items.jsonl"}},
                "ItemBatcher": {"MaxItemsPerBatch": 10, "BatchInput": {"factor.$": "$.factor"}},
                "ItemSelector": {"id.$": "$$.Map.Item.Value.id", "bad.$": "$$.Map.Item.Value.bad", "index.$": "$$.Map.Item.Index"},
                "MaxConcurrency": 2,
                "ToleratedFailureCount": tolerated,
                "ItemProcessor": {"ProcessorConfig": {"Mode": "DISTRIBUTED", "ExecutionType": "STANDARD"},
                    "StartAt": "Check", "States": {
                        "Check": {"Type": "Choice", "Choices": [
                            {"Variable": "$.Items[3].bad", "BooleanEquals": true, "Next": "Bad"}], "Default": "Sum"},
                        "Bad": {"Type": "Fail", "Error": "Item.Bad", "Cause": "item 13"},
                        "Sum": {"Type": "Pass", "Parameters": {"count.$": "States.ArrayLength($.Items)",
                            "first.$": "$.Items[0].index", "factor.$": "$.BatchInput.factor"}, "End": true}}},
                "ResultWriter": {"Resource": "arn:aws:states:::s3:putObject",
                                 "Parameters": {"Bucket.$": "$.bucket", "Prefix": "out"}},
                "ResultPath": "$.map",
                "Catch": [{"ErrorEquals": ["States.ExceedToleratedFailureThreshold"], "ResultPath": "$.error", "Next": "TooMany"}],
                "End": true},
            "TooMany": {"Type": "Pass", "End": true}}})
    };
    let input = json!({"bucket": bucket, "factor": 3}).to_string();
    let run_with = |tolerated: u64| {
        let def = tmp.path().join(format!("dmap-{tolerated}.asl.json"));
        std::fs::write(&def, machine(tolerated).to_string()).unwrap();
        let out = tmp.path().join(format!("dmap-{tolerated}.yaml"));
        let r = import(tmp.path(), &def, &out, &[]);
        assert!(r.status.success(), "{}", text(&r));
        let yaml = std::fs::read_to_string(&out).unwrap();
        assert!(yaml.contains("items_from:"), "a distributed map: {yaml}");
        baton_on_emulator(&state, &["run", out.to_str().unwrap(), "--input", &input, "--json"])
    };

    // Batch 1 (items 10-19) holds the bad item: ten failed items are tolerated.
    let run = run_with(10);
    assert_eq!(run["status"], "succeeded", "{run:#}");
    let details = &run["output"]["map"]["ResultWriterDetails"];
    assert_eq!(details["Bucket"], bucket.as_str(), "{run:#}");
    let key = details["Key"].as_str().unwrap_or_else(|| panic!("{run:#}"));
    assert!(key.starts_with("out/") && key.ends_with("/manifest.json"), "{key}");
    assert_eq!(run["output"]["factor"], 3, "the state's input is kept beside the result");

    let read = tmp.path().join("read.yaml");
    let get = |key: &str| json!({"service": "s3", "action": "GetObject", "params": {"Bucket": bucket, "Key": key}});
    std::fs::write(&read, format!("name: read\nsteps:\n  - {{id: get, tool: aws, with: {}}}\n", get(key))).unwrap();
    let got = baton_on_emulator(&state, &["run", read.to_str().unwrap(), "--json"]);
    let body = &got["steps"]["get"]["output"]["Body"];
    let manifest: Value = match body {
        Value::String(s) => serde_json::from_str(s).unwrap(),
        other => other.clone(),
    };
    assert_eq!(
        (manifest["items"].clone(), manifest["succeeded"].clone(), manifest["failed"].clone()),
        (json!(25), json!(15), json!(10)),
        "{manifest:#}"
    );
    let batches = manifest["batches"].as_array().unwrap();
    assert_eq!(batches.len(), 3, "{manifest:#}");
    assert_eq!(batches[1]["status"], "failed", "{manifest:#}");
    let last = batches[2]["results"].as_str().unwrap().strip_prefix(&format!("s3://{bucket}/")).unwrap().to_owned();
    std::fs::write(&read, format!("name: read\nsteps:\n  - {{id: get, tool: aws, with: {}}}\n", get(&last))).unwrap();
    let got = baton_on_emulator(&state, &["run", read.to_str().unwrap(), "--json"]);
    let body = &got["steps"]["get"]["output"]["Body"];
    let result: Value = match body {
        Value::String(s) => serde_json::from_str(s).unwrap(),
        other => other.clone(),
    };
    assert_eq!(result, json!({"count": 5, "first": 20, "factor": 3}), "the last batch, as its processor saw it");

    // With none tolerated, the failed batch fails the map, and its catcher sees Step Functions' name.
    let run = run_with(0);
    assert_eq!(run["status"], "succeeded", "{run:#}");
    assert_eq!(run["output"]["error"]["Error"], "States.ExceedToleratedFailureThreshold", "{run:#}");
}

/// `TimeoutSecondsPath` reads the limit from the state's input when the task starts: a callback
/// nobody answers within the input's 2 s is caught as `States.Timeout`; a value that is not a
/// number of seconds fails the wait with an `expression` error naming the step's `timeout`.
#[test]
fn a_timeout_read_from_the_input_limits_the_callback_wait() {
    let tmp = tempfile::tempdir().unwrap();
    let def = tmp.path().join("timeout-path.asl.json");
    let machine = json!({"StartAt": "Ask", "States": {
        "Ask": {"Type": "Task", "Resource": "arn:aws:states:::sqs:sendMessage.waitForTaskToken",
                "Parameters": {"QueueUrl": "https://sqs.eu-west-1.amazonaws.com/1/q",
                               "MessageBody": {"token.$": "$$.Task.Token"}},
                "TimeoutSecondsPath": "$.limits.wait",
                "Catch": [{"ErrorEquals": ["States.Timeout"], "ResultPath": "$.error", "Next": "Late"}],
                "End": true},
        "Late": {"Type": "Pass", "End": true}}});
    std::fs::write(&def, machine.to_string()).unwrap();
    let out = tmp.path().join("timeout-path.yaml");
    let imported = import(tmp.path(), &def, &out, &[]);
    assert!(imported.status.success(), "{}", text(&imported));
    let yaml = std::fs::read_to_string(&out).unwrap();
    assert!(yaml.contains("timeout: '{{"), "a templated timeout: {yaml}");
    let mocks = tmp.path().join("mocks.json");
    std::fs::write(&mocks, json!({"steps": {"Ask": [{"output": {"MessageId": "m-1"}}]}}).to_string()).unwrap();
    let state = tmp.path().join("state");
    let run = |input: &str| {
        baton_json(
            &state,
            &["run", out.to_str().unwrap(), "--input", input, "--mocks", mocks.to_str().unwrap(), "--json"],
        )
    };
    let (_, waiting) = run(r#"{"limits": {"wait": 2}}"#);
    assert_eq!(waiting["status"], "waiting", "{waiting:#}");
    let run_id = waiting["run_id"].as_str().unwrap().to_owned();
    std::thread::sleep(std::time::Duration::from_millis(2_500));
    let (_, late) = baton_json(&state, &["resume", &run_id, "--json"]);
    assert_eq!(late["status"], "succeeded", "{late:#}");
    assert_eq!(late["output"]["error"]["Error"], "States.Timeout", "{late:#}");

    let (code, bad) = run(r#"{"limits": {"wait": "tomorrow"}}"#);
    assert_eq!((code, bad["status"].as_str()), (1, Some("failed")), "{bad:#}");
    let message = bad.to_string();
    assert!(message.contains("`timeout` of step") && message.contains("tomorrow"), "{bad:#}");
}

/// `ToleratedFailureCountPath` reads the tolerance of an inline Map from its input: one failed
/// item of three passes with a tolerance of 1 and is `States.ExceedToleratedFailureThreshold`
/// with 0.
#[test]
fn a_tolerance_read_from_the_input_decides_whether_failed_items_fail_the_map() {
    let tmp = tempfile::tempdir().unwrap();
    let def = tmp.path().join("tolerance.asl.json");
    let machine = json!({"StartAt": "Each", "States": {
        "Each": {"Type": "Map", "ItemsPath": "$.items", "ToleratedFailureCountPath": "$.tolerated",
                 "ItemProcessor": {"StartAt": "Check", "States": {
                     "Check": {"Type": "Choice", "Choices": [{"Variable": "$.ok", "BooleanEquals": false, "Next": "Bad"}],
                               "Default": "Good"},
                     "Bad": {"Type": "Fail", "Error": "Item.Bad", "Cause": "not ok"},
                     "Good": {"Type": "Pass", "Result": "fine", "End": true}}},
                 "Catch": [{"ErrorEquals": ["States.ExceedToleratedFailureThreshold"], "ResultPath": "$.error", "Next": "TooMany"}],
                 "ResultPath": "$.results", "End": true},
        "TooMany": {"Type": "Pass", "End": true}}});
    std::fs::write(&def, machine.to_string()).unwrap();
    let out = tmp.path().join("tolerance.yaml");
    let imported = import(tmp.path(), &def, &out, &[]);
    assert!(imported.status.success(), "{}", text(&imported));
    let state = tmp.path().join("state");
    let items = json!([{"ok": true}, {"ok": false}, {"ok": true}]);
    let run = |tolerated: u64| {
        let input = json!({"items": items, "tolerated": tolerated}).to_string();
        baton_json(&state, &["run", out.to_str().unwrap(), "--input", &input, "--json"]).1
    };
    let tolerant = run(1);
    assert_eq!(tolerant["status"], "succeeded", "{tolerant:#}");
    assert_eq!(tolerant["output"]["results"][0], "fine", "{tolerant:#}");
    assert_eq!(tolerant["output"]["results"][1]["Error"], "Item.Bad", "{tolerant:#}");
    assert!(tolerant["output"].get("error").is_none(), "{tolerant:#}");
    let strict = run(0);
    assert_eq!(strict["status"], "succeeded", "{strict:#}");
    assert_eq!(strict["output"]["error"]["Error"], "States.ExceedToleratedFailureThreshold", "{strict:#}");
}

/// Parallel and Map states written in JSONata: `Arguments` and `Output` on the Parallel, `Items`,
/// `ItemSelector` with `$states.context.Map.Item.*` and `Output` on the Map, each run embedded
/// to the values the States Language gives.
#[test]
fn jsonata_parallel_and_map_states_convert_and_run() {
    let tmp = tempfile::tempdir().unwrap();
    let def = tmp.path().join("jsonata-fanout.asl.json");
    let machine = json!({"QueryLanguage": "JSONata", "StartAt": "Both", "States": {
        "Both": {"Type": "Parallel", "Arguments": {"n": "{% $states.input.n %}"},
                 "Branches": [
                     {"StartAt": "Double", "States": {"Double": {"Type": "Pass", "Output": "{% $states.input.n * 2 %}", "End": true}}},
                     {"StartAt": "Square", "States": {"Square": {"Type": "Pass", "Output": "{% $states.input.n * $states.input.n %}", "End": true}}}],
                 "Output": {"double": "{% $states.result[0] %}", "square": "{% $states.result[1] %}", "items": "{% $states.input.items %}"},
                 "Next": "Each"},
        "Each": {"Type": "Map", "Items": "{% $states.input.items %}", "MaxConcurrency": 2,
                 "ItemSelector": {"value": "{% $states.context.Map.Item.Value %}",
                                  "index": "{% $states.context.Map.Item.Index %}",
                                  "double": "{% $states.input.double %}"},
                 "ItemProcessor": {"StartAt": "Add", "States": {"Add": {"Type": "Pass",
                     "Output": "{% $states.input.value + $states.input.double + $states.input.index %}", "End": true}}},
                 "Output": {"sums": "{% $states.result %}", "square": "{% $states.input.square %}"},
                 "End": true}}});
    std::fs::write(&def, machine.to_string()).unwrap();
    let out = tmp.path().join("jsonata-fanout.yaml");
    let imported = import(tmp.path(), &def, &out, &[]);
    assert!(imported.status.success(), "{}", text(&imported));
    let state = tmp.path().join("state");
    let input = json!({"n": 3, "items": [10, 20, 30]}).to_string();
    let (code, run) = baton_json(&state, &["run", out.to_str().unwrap(), "--input", &input, "--json"]);
    assert_eq!(code, 0, "{run:#}");
    assert_eq!(run["output"], json!({"sums": [16, 27, 38], "square": 9}), "{run:#}");
}

/// A loop entered at two states (a Choice outside it leads to either): each way in marks the
/// value with the state it enters at, the loop's child starts there, and each way round goes
/// back to the state the definition names. Entered at `A` the value goes 1, 11, 12, 22, 23, 33;
/// entered at `B`, 10, 11, 21, 22, 32.
#[test]
fn a_loop_entered_at_two_states_runs_from_either() {
    let tmp = tempfile::tempdir().unwrap();
    let def = tmp.path().join("two-entries.asl.json");
    let machine = json!({"StartAt": "Pick", "States": {
        "Pick": {"Type": "Choice", "Choices": [{"Variable": "$.start", "StringEquals": "a", "Next": "A"}], "Default": "B"},
        "A": {"Type": "Pass", "Parameters": {"n.$": "States.MathAdd($.n, 1)"}, "Next": "B"},
        "B": {"Type": "Pass", "Parameters": {"n.$": "States.MathAdd($.n, 10)"}, "Next": "Check"},
        "Check": {"Type": "Choice", "Choices": [{"Variable": "$.n", "NumericLessThan": 30, "Next": "A"}], "Default": "Done"},
        "Done": {"Type": "Succeed"}}});
    std::fs::write(&def, machine.to_string()).unwrap();
    let out = tmp.path().join("two-entries.yaml");
    let imported = import(tmp.path(), &def, &out, &[]);
    assert!(imported.status.success(), "{}", text(&imported));
    let state = tmp.path().join("state");
    for (start, n) in [("a", 33), ("b", 32)] {
        let input = json!({"start": start, "n": 0}).to_string();
        let (code, run) = baton_json(&state, &["run", out.to_str().unwrap(), "--input", &input, "--json"]);
        assert_eq!(code, 0, "{run:#}");
        assert_eq!(run["output"], json!({"n": n}), "entered at {start}: {run:#}");
    }
}

/// `HeartbeatSecondsPath` on a callback reads the heartbeat's limit from the task's input: with
/// none sent within the input's 1 s the wait fails with `States.HeartbeatTimeout`.
#[test]
fn a_heartbeat_limit_read_from_the_input_fails_a_silent_callback() {
    let tmp = tempfile::tempdir().unwrap();
    let def = tmp.path().join("beat-path.asl.json");
    let machine = json!({"StartAt": "Ask", "States": {
        "Ask": {"Type": "Task", "Resource": "arn:aws:states:::sqs:sendMessage.waitForTaskToken",
                "Parameters": {"QueueUrl": "https://sqs.eu-west-1.amazonaws.com/1/q",
                               "MessageBody": {"token.$": "$$.Task.Token"}},
                "HeartbeatSecondsPath": "$.beat", "TimeoutSeconds": 3600,
                "Catch": [{"ErrorEquals": ["States.Timeout"], "ResultPath": "$.error", "Next": "Late"}],
                "End": true},
        "Late": {"Type": "Pass", "End": true}}});
    std::fs::write(&def, machine.to_string()).unwrap();
    let out = tmp.path().join("beat-path.yaml");
    let imported = import(tmp.path(), &def, &out, &[]);
    assert!(imported.status.success(), "{}", text(&imported));
    let mocks = tmp.path().join("mocks.json");
    std::fs::write(&mocks, json!({"steps": {"Ask": [{"output": {"MessageId": "m-1"}}]}}).to_string()).unwrap();
    let state = tmp.path().join("state");
    let (_, waiting) = baton_json(
        &state,
        &["run", out.to_str().unwrap(), "--input", r#"{"beat": 1}"#, "--mocks", mocks.to_str().unwrap(), "--json"],
    );
    assert_eq!(waiting["status"], "waiting", "{waiting:#}");
    let run_id = waiting["run_id"].as_str().unwrap().to_owned();
    std::thread::sleep(std::time::Duration::from_millis(1_500));
    let (_, late) = baton_json(&state, &["resume", &run_id, "--json"]);
    assert_eq!(late["status"], "succeeded", "{late:#}");
    assert_eq!(late["output"]["error"]["Error"], "States.HeartbeatTimeout", "{late:#}");
}
