//! `baton runs list` and `baton runs show RUN_ID`.

use anyhow::Result;

use crate::backend::{Target, control};
use crate::output::print_run;
use crate::{RunsCommand, exit};

/// Lists runs or shows one.
pub async fn runs(target: &Target, command: RunsCommand) -> Result<u8> {
    let c = control(target, false).await?;
    match command {
        RunsCommand::List { json, limit } => {
            let objects = c.list(limit).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&objects)?);
            } else {
                println!("{:<38} {:<24} {:<10} {:>6}", "RUN", "WORKFLOW", "STATUS", "STEPS");
                for o in &objects {
                    let n = o["steps"].as_object().map(|m| m.len()).unwrap_or(0);
                    println!(
                        "{:<38} {:<24} {:<10} {:>6}",
                        o["run_id"].as_str().unwrap_or(""),
                        o["workflow"].as_str().unwrap_or(""),
                        o["status"].as_str().unwrap_or(""),
                        n
                    );
                }
            }
        }
        RunsCommand::Show { run_id, json } => {
            let obj = c.detail(&run_id).await?;
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
            }
        }
    }
    Ok(exit::OK)
}
