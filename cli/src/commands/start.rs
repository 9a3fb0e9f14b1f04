//! `baton start NAME`: start a run of the published version of a workflow.

use anyhow::Result;
use baton_runtime::control::NewRun;

use crate::backend::{Target, control};
use crate::errors::Usage;
use crate::input::json_arg;
use crate::output::{finish_one, report_settled};
use crate::signals::stop_on_ctrl_c;

/// Starts the run, settles it, prints it; exits with the run's code.
pub async fn start(target: &Target, name: &str, input: &str, json: bool) -> Result<u8> {
    let input = json_arg(input, "input").map_err(|e| Usage(format!("{e:#}")))?;
    let c = control(target, !json).await?;
    let (plan, source) = c
        .coordinator()
        .published(name)
        .await?
        .ok_or_else(|| Usage(format!("no published workflow `{name}`: publish it with `baton publish FILE`")))?;
    let run_id = c.start(NewRun { plan, source, input, mocks: None }).await?;
    report_settled(c.as_ref(), &run_id, c.settle(&run_id, stop_on_ctrl_c()).await?);
    finish_one(c.as_ref(), &run_id, json).await
}
