//! `baton runs list|show|redrive|retry|pause|unpause`.

use anyhow::Result;
use baton_core::engine::OperatorAction;
use baton_core::ids::RunId;
use baton_runtime::control::Operation;

use super::answer::whoami;
use crate::backend::{Target, control};
use crate::errors::Usage;
use crate::input::json_arg;
use crate::output::{finish_one, print_run, report_settled};
use crate::signals::stop_on_ctrl_c;
use crate::{RunsCommand, exit};

/// Lists runs, shows one, or applies an operator's action to one.
pub async fn runs(target: &Target, command: RunsCommand) -> Result<u8> {
    let (run_id, action, reason, json) = match command {
        RunsCommand::Redrive { run_id, reason, json } => (run_id, OperatorAction::Redrive, reason, json),
        RunsCommand::Retry { run_id, from, input, reason, json } => {
            let input = input.map(|i| json_arg(&i, "input").map_err(|e| Usage(format!("{e:#}")))).transpose()?;
            (run_id, OperatorAction::Retry { from, input }, reason, json)
        }
        RunsCommand::Pause { run_id, reason, json } => (run_id, OperatorAction::Pause, reason, json),
        RunsCommand::Unpause { run_id, reason, json } => (run_id, OperatorAction::Unpause, reason, json),
        RunsCommand::List { json, limit } => return list(target, json, limit).await,
        RunsCommand::Show { run_id, json } => return show(target, &run_id, json).await,
    };
    operate(target, &run_id, Operation { action, by: whoami(), reason }, json).await
}

/// Applies the action, lets the run go as far as it can, and prints it with its exit code
/// (0 succeeded, 3 waiting or paused, 1 failed or cancelled). A refused action exits 2.
async fn operate(target: &Target, run_id: &RunId, op: Operation, json: bool) -> Result<u8> {
    let c = control(target, !json).await?;
    let settled = c.operate(run_id, op, stop_on_ctrl_c()).await?;
    report_settled(c.as_ref(), run_id, settled);
    finish_one(c.as_ref(), run_id, json).await
}

async fn list(target: &Target, json: bool, limit: usize) -> Result<u8> {
    let c = control(target, false).await?;
    let objects = c.list(limit).await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&objects)?);
    } else {
        println!("{:<38} {:<24} {:<10} {:>6}", "RUN", "WORKFLOW", "STATUS", "STEPS");
        for o in &objects {
            let n = o["steps"].as_object().map(|m| m.len()).unwrap_or(0);
            let status = if o.get("paused").is_some() { "paused" } else { o["status"].as_str().unwrap_or("") };
            println!(
                "{:<38} {:<24} {:<10} {:>6}",
                o["run_id"].as_str().unwrap_or(""),
                o["workflow"].as_str().unwrap_or(""),
                status,
                n
            );
        }
    }
    Ok(exit::OK)
}

async fn show(target: &Target, run_id: &RunId, json: bool) -> Result<u8> {
    let c = control(target, false).await?;
    let obj = c.detail(run_id).await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&obj)?);
    } else {
        print_run(&obj);
        if let Some(aws) = obj.get("aws") {
            println!(
                "aws: {} requests, estimated ${:.6} ({})",
                aws["requests"],
                aws["estimated_usd"].as_f64().unwrap_or(0.0),
                aws["by_operation"]
                    .as_object()
                    .map(|m| m.iter().map(|(k, v)| format!("{k} {v}")).collect::<Vec<_>>().join(", "))
                    .unwrap_or_default()
            );
        }
        if let Some(u) = obj.get("model_usage") {
            let usd = |v: &serde_json::Value| {
                v["usd"].as_f64().map(|x| format!("${x:.6}")).unwrap_or_else(|| "unpriced".into())
            };
            let t = &u["total"];
            println!(
                "models: {} calls, {} input + {} output tokens, {}",
                t["calls"],
                t["input_tokens"],
                t["output_tokens"],
                usd(t)
            );
            for (step, s) in u["steps"].as_object().into_iter().flatten() {
                println!(
                    "  {step}: {} calls, {} + {} tokens, {}",
                    s["calls"],
                    s["input_tokens"],
                    s["output_tokens"],
                    usd(s)
                );
            }
        }
    }
    Ok(exit::OK)
}
