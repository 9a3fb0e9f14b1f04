//! The reference workflows' sample inputs as test cases: every `workflows/<name>/scenarios.yaml`
//! says, per input, the exit code of `baton run`, the answers people give through the CLI, the
//! final status and a part of the output. The runner plays them on either backend.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde::Deserialize;
use serde_json::Value;

use super::{root, text};

/// What a person answers, in order, to the tasks a run opens.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Answer {
    /// The step whose task is answered.
    pub step: String,
    /// `approve` or `reject`.
    pub decision: String,
    #[serde(default)]
    pub data: Option<Value>,
    #[serde(default)]
    pub comment: Option<String>,
    #[serde(default)]
    pub by: Option<String>,
}

/// What one input must do.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Expect {
    pub exit: i32,
    #[serde(default)]
    pub answers: Vec<Answer>,
    #[serde(default)]
    pub status: Option<String>,
    #[serde(default)]
    pub output: Option<Value>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ScenarioFile {
    inputs: std::collections::BTreeMap<String, Expect>,
}

/// One sample input of one workflow.
#[derive(Debug, Clone)]
pub struct Case {
    pub workflow: String,
    pub file: PathBuf,
    pub input: PathBuf,
    pub mocks: PathBuf,
    pub expect: Expect,
}

impl Case {
    /// `workflow/input`, for messages.
    pub fn name(&self) -> String {
        let input = self.input.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
        format!("{}/{input}", self.workflow)
    }
}

/// Every case of every folder under `workflows/` that has a `scenarios.yaml`, checked against
/// the folder: each listed input exists, each input file is listed, `fail-*` inputs exit 1.
pub fn all() -> Vec<Case> {
    let mut cases = Vec::new();
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(root().join("workflows"))
        .expect("workflows/")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.join("scenarios.yaml").is_file())
        .collect();
    dirs.sort();
    for dir in dirs {
        let workflow = dir.file_name().expect("name").to_string_lossy().into_owned();
        let text = std::fs::read_to_string(dir.join("scenarios.yaml")).expect("scenarios.yaml");
        let file: ScenarioFile =
            serde_yaml_ng::from_str(&text).unwrap_or_else(|e| panic!("{workflow}/scenarios.yaml: {e}"));
        let mut listed: Vec<String> = std::fs::read_dir(dir.join("inputs"))
            .expect("inputs/")
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .filter_map(|n| n.strip_suffix(".json").map(str::to_owned))
            .collect();
        listed.sort();
        let named: Vec<String> = file.inputs.keys().cloned().collect();
        assert_eq!(named, listed, "{workflow}: scenarios.yaml must list exactly the inputs/*.json files");
        assert!(listed.len() >= 2, "{workflow}: at least two sample inputs");
        for (input, expect) in file.inputs {
            if input.starts_with("fail-") {
                assert_eq!(expect.exit, 1, "{workflow}/{input}: a fail- input ends the run failed (exit 1)");
            }
            let own = dir.join("inputs").join(format!("{input}.mocks.yaml"));
            let mocks = if own.is_file() { own } else { dir.join("mocks.yaml") };
            cases.push(Case {
                workflow: workflow.clone(),
                file: dir.join("workflow.yaml"),
                input: dir.join("inputs").join(format!("{input}.json")),
                mocks,
                expect,
            });
        }
    }
    cases
}

/// How to call `baton` for one backend: the arguments before the command, and the environment
/// (the process starts with an empty one: no secrets, no endpoints unless given here).
pub struct Baton<'a> {
    pub state: &'a Path,
    pub global: Vec<String>,
    pub env: Vec<(String, String)>,
}

impl Baton<'_> {
    /// Runs `baton <global> --state-dir <state> args` with only PATH, HOME and `env` set.
    pub fn exec(&self, args: &[&str]) -> Output {
        let mut c = Command::new(env!("CARGO_BIN_EXE_baton"));
        c.env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("HOME", std::env::var("HOME").unwrap_or_default())
            .args(&self.global)
            .arg("--state-dir")
            .arg(self.state)
            .args(args)
            .current_dir(root());
        for (k, v) in &self.env {
            c.env(k, v);
        }
        c.output().expect("baton runs")
    }

    fn json(&self, args: &[&str]) -> Value {
        let out = self.exec(args);
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{args:?}: not JSON ({e}): {}", text(&out)))
    }
}

/// What a case ended with: the run id, the final run object and every run id it involved.
pub struct Played {
    pub run_id: String,
    pub run: Value,
}

/// Plays `case` (with `mocks` unless `None`): runs it, checks the exit code, answers its tasks
/// in order, and checks the final status and output part.
pub fn play(b: &Baton<'_>, case: &Case, mocks: Option<&Path>) -> Played {
    let name = case.name();
    let file = case.file.display().to_string();
    let input = format!("@{}", case.input.display());
    let mut args = vec!["run", file.as_str(), "--input", input.as_str(), "--json"];
    let mocks = mocks.map(|m| m.display().to_string());
    if let Some(m) = &mocks {
        args.extend(["--mocks", m.as_str()]);
    }
    let out = b.exec(&args);
    assert_eq!(out.status.code(), Some(case.expect.exit), "{name}: exit code of `baton run`\n{}", text(&out));
    let first: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{name}: {e}: {}", text(&out)));
    let run_id = first["run_id"].as_str().unwrap_or_else(|| panic!("{name}: no run id: {first}")).to_owned();
    for a in &case.expect.answers {
        let task =
            open_task(b, &run_id, &a.step).unwrap_or_else(|| panic!("{name}: no open task of step `{}`", a.step));
        let id = task["id"].as_str().expect("task id").to_owned();
        let mut args = vec![a.decision.as_str(), id.as_str(), "--json"];
        let data = a.data.as_ref().map(Value::to_string);
        if let Some(d) = &data {
            args.extend(["--data", d.as_str()]);
        }
        if let Some(c) = &a.comment {
            args.extend(["--comment", c.as_str()]);
        }
        if let Some(by) = &a.by {
            args.extend(["--by", by.as_str()]);
        }
        let out = b.exec(&args);
        assert!(matches!(out.status.code(), Some(0 | 1 | 3)), "{name}: {} {}: {}", a.decision, a.step, text(&out));
    }
    // On the stack an answer settles the run it belongs to; a parent waiting on that child run
    // goes on asynchronously, so a run expected to end is given time to get there.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let mut run = b.json(&["runs", "show", &run_id, "--json"]);
    while run["status"] == "waiting"
        && case.expect.status.as_deref().is_some_and(|s| s != "waiting")
        && std::time::Instant::now() < deadline
    {
        std::thread::sleep(std::time::Duration::from_millis(200));
        run = b.json(&["runs", "show", &run_id, "--json"]);
    }
    if let Some(status) = &case.expect.status {
        assert_eq!(run["status"].as_str(), Some(status.as_str()), "{name}: final status\n{run:#}");
    }
    if let Some(part) = &case.expect.output {
        assert!(contains(&run["output"], part), "{name}: the output does not contain {part:#}\n{:#}", run["output"]);
    }
    Played { run_id, run }
}

/// The oldest open task of `step` in run `run_id`, else the newest of that step in a child run
/// (`c-` ids): tasks are listed oldest first, and one a killed earlier test left open on the
/// stack is older than the run just started.
fn open_task(b: &Baton<'_>, run_id: &str, step: &str) -> Option<Value> {
    let tasks = b.json(&["tasks", "--json"]);
    let of_step: Vec<&Value> = tasks.as_array()?.iter().filter(|t| t["step"] == step).collect();
    of_step
        .iter()
        .find(|t| t["run_id"] == run_id)
        .or_else(|| of_step.iter().rev().find(|t| t["run_id"].as_str().is_some_and(|r| r.starts_with("c-"))))
        .map(|t| (*t).clone())
}

/// Whether `actual` holds `part`: objects key by key (more keys allowed), anything else equal.
pub fn contains(actual: &Value, part: &Value) -> bool {
    match (actual, part) {
        (Value::Object(a), Value::Object(p)) => p.iter().all(|(k, v)| a.get(k).is_some_and(|x| contains(x, v))),
        _ => actual == part,
    }
}
