//! How runs are printed (text or the `--json` object) and which exit code they give.

use anyhow::Result;
use baton_core::ids::RunId;
use baton_runtime::RunControl;
use baton_runtime::control::Settled;
use serde_json::Value;

use crate::exit;

/// Tells the user when a call returned before its run settled.
pub fn report_settled(control: &dyn RunControl, run_id: &RunId, settled: Settled) {
    match settled {
        Settled::Settled => {}
        Settled::Detached => eprintln!("detached: run {run_id} {}", control.detached_hint(run_id)),
        Settled::Elsewhere => eprintln!(
            "run {run_id} is driven by another baton process (`baton serve` or a command still running); it goes on there"
        ),
        Settled::StillGoing(secs) => {
            eprintln!("run {run_id} is still going after {secs} s; follow it with `baton runs show {run_id}`")
        }
    }
}

/// The exit code of one run object: 0 succeeded, 3 waiting, else 1.
pub fn code_for(obj: &Value) -> u8 {
    match obj["status"].as_str() {
        Some("succeeded") => exit::OK,
        Some("waiting") => exit::WAITING,
        _ => exit::FAILED,
    }
}

/// Several runs: 1 if any failed, else 3 if any waits, else 0.
fn combine(a: u8, b: u8) -> u8 {
    if a == exit::FAILED || b == exit::FAILED {
        exit::FAILED
    } else if a == exit::WAITING || b == exit::WAITING {
        exit::WAITING
    } else {
        exit::OK
    }
}

/// Prints one run (with what it waits on) and returns its exit code.
pub async fn finish_one(control: &dyn RunControl, run_id: &RunId, json: bool) -> Result<u8> {
    let obj = control.show(run_id).await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&obj)?);
    } else {
        print_run(&obj);
        if let Some(p) = obj.get("paused") {
            eprintln!(
                "paused by {}: nothing new is dispatched and no timer fires until `baton runs unpause {run_id}`",
                p["by"].as_str().unwrap_or("?")
            );
        }
        if obj["status"] == "waiting" {
            let (_, state) = control.load(run_id).await?;
            if let Some(next) = state.timers.values().map(|t| t.at).min()
                && let Some(hint) = control.timer_hint(run_id)
            {
                let at =
                    humantime::format_rfc3339_seconds(std::time::UNIX_EPOCH + std::time::Duration::from_millis(next));
                eprintln!("waiting on a timer (next due {at}): {hint}");
            }
            for t in control.waiting_on(run_id).await? {
                if t.wait.is_some() {
                    eprintln!(
                        "waiting on an event for `{}` (wait {}): deliver it with `baton event JSON`",
                        t.step, t.id
                    );
                } else {
                    eprintln!(
                        "waiting on task {} (queue {}): answer with `baton approve {}` or `baton reject {}`",
                        t.id, t.queue, t.id, t.id
                    );
                }
            }
        }
    }
    Ok(code_for(&obj))
}

/// Prints several runs (a JSON array with `--json`); exit 1 if any failed, else 3 if any waits.
pub async fn print_runs(control: &dyn RunControl, ids: &[RunId], json: bool, when_none: &str) -> Result<u8> {
    let mut objects = Vec::new();
    let mut code = exit::OK;
    for id in ids {
        let obj = control.show(id).await?;
        code = combine(code, code_for(&obj));
        if !json {
            print_run(&obj);
        }
        objects.push(obj);
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&objects)?);
    } else if ids.is_empty() {
        eprintln!("{when_none}");
    }
    Ok(code)
}

/// A run as text: its status, each step, then the output or the error.
pub fn print_run(obj: &Value) {
    let status = obj["status"].as_str().unwrap_or("?");
    println!("run {} {status}", obj["run_id"].as_str().unwrap_or("?"));
    if let Some(steps) = obj["steps"].as_object() {
        for (id, s) in steps {
            let err = s["error"]["message"].as_str().map(|m| format!("  ({m})")).unwrap_or_default();
            let items = fan_out(&s["items"]);
            println!("  {:<24} {:<12} {items}attempts {}{err}", id, s["status"].as_str().unwrap_or(""), s["attempts"]);
        }
    }
    match status {
        "succeeded" => println!("output: {}", serde_json::to_string_pretty(&obj["output"]).unwrap_or_default()),
        "failed" | "cancelled" => println!("error: {}", obj["error"]),
        _ => {}
    }
}

/// A for_each step's items apart from their attempts: `items 3 (2 succeeded, 1 failed)  `.
fn fan_out(items: &Value) -> String {
    let Some(counts) = items.as_object() else { return String::new() };
    let by_status: Vec<String> =
        counts.iter().filter(|(k, _)| k.as_str() != "total").map(|(k, v)| format!("{v} {k}")).collect();
    format!("items {} ({})  ", counts.get("total").unwrap_or(&Value::Null), by_status.join(", "))
}

/// Each line of `s` indented by four spaces.
pub fn indent(s: &str) -> String {
    s.lines().map(|l| format!("    {l}")).collect::<Vec<_>>().join("\n")
}

/// Milliseconds since the epoch as RFC 3339 with milliseconds.
pub fn humantime_ms(ms: u64) -> String {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms);
    humantime::format_rfc3339_millis(t).to_string()
}
