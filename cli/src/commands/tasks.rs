//! `baton tasks`: open tasks with the handover a person gets.

use anyhow::Result;
use baton_runtime::ports::TaskRecord;

use crate::backend::{Target, control};
use crate::exit;
use crate::output::indent;

/// Lists the open tasks for people.
pub async fn tasks(target: &Target, json: bool) -> Result<u8> {
    let c = control(target, false).await?;
    let tasks = c.tasks().await?;
    let link = |t: &TaskRecord| c.coordinator().callbacks().map(|s| s.url(&t.id, s.expiry_for(t.created_at, None)));
    if json {
        let rows: Vec<_> = tasks.iter().map(|t| c.task_row(t)).collect();
        println!("{}", serde_json::to_string_pretty(&rows)?);
    } else if tasks.is_empty() {
        println!("no open tasks");
    } else {
        for t in tasks {
            println!("task {}  run {}  step {}  queue {}", t.id, t.run_id, t.step, t.queue);
            if let Some(url) = link(&t) {
                println!("    link: {url}");
            }
            if t.summary.is_empty() {
                // Without a handover summary the question itself is what the person needs.
                println!("{}\n", indent(&t.prompt));
            } else {
                println!("{}\n", indent(&t.summary));
            }
        }
    }
    Ok(exit::OK)
}
