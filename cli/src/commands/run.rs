//! `baton run FILE`: start a run of a workflow file and let it go as far as it can.

use std::path::Path;
use std::sync::Arc;

use anyhow::Result;
use baton_runtime::control::NewRun;

use crate::backend::{Target, control};
use crate::definition::load_plan;
use crate::errors::Usage;
use crate::input::{document, json_arg};
use crate::output::{finish_one, report_settled};
use crate::signals::stop_on_ctrl_c;

/// Starts the run, settles it, prints it; exits with the run's code.
pub async fn run(target: &Target, file: &Path, input: &str, mocks: Option<&Path>, json: bool) -> Result<u8> {
    let (plan, source) = load_plan(file)?;
    let input = json_arg(input, "input").map_err(|e| Usage(format!("{e:#}")))?;
    let mocks = mocks.map(document).transpose().map_err(|e| Usage(format!("{e:#}")))?;
    let c = control(target, !json).await?;
    for child in crate::sub_workflows::publish_found(c.as_ref(), file, &plan).await? {
        if !json {
            eprintln!("published the sub-workflow {child}");
        }
    }
    let run_id = c.start(NewRun { plan: Arc::new(plan), source, input, mocks }).await?;
    report_settled(c.as_ref(), &run_id, c.settle(&run_id, stop_on_ctrl_c()).await?);
    finish_one(c.as_ref(), &run_id, json).await
}
