//! `baton publish FILE`: make a definition the version `start` and triggers run.

use std::path::Path;

use anyhow::Result;

use crate::backend::{Target, control};
use crate::definition::load_plan;
use crate::exit;

/// Publishes and prints what was set up.
pub async fn publish(target: &Target, file: &Path) -> Result<u8> {
    let (plan, source) = load_plan(file)?;
    let c = control(target, false).await?;
    let published = c.publish(&plan, &source).await?;
    println!("published `{}` definition {}", plan.workflow.name, &plan.hash[..12]);
    for route in &published.routes {
        println!("{route}");
    }
    for note in &published.notes {
        eprintln!("note: {note}");
    }
    Ok(exit::OK)
}
