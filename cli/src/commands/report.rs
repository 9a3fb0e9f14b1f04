//! `baton report RUN_ID [-o FILE]`: writes one self-contained HTML page about a run.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use baton_core::ids::RunId;

use crate::backend::{Target, control};
use crate::{exit, report};

/// Reads the run, writes its page to `output` (default `report-<run id>.html` here) and prints
/// the path written.
pub async fn report(target: &Target, run_id: &RunId, output: Option<&Path>) -> Result<u8> {
    let c = control(target, false).await?;
    let data = report::collect(c.as_ref(), run_id).await?;
    let html = report::page(&data);
    let path = output.map(Path::to_path_buf).unwrap_or_else(|| PathBuf::from(format!("report-{run_id}.html")));
    std::fs::write(&path, html).with_context(|| format!("cannot write the report to {}", path.display()))?;
    println!("{}", path.display());
    Ok(exit::OK)
}
