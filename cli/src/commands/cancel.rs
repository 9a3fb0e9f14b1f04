//! `baton cancel RUN_ID`: stop a run that has not ended; exit 0 when it ends cancelled.

use anyhow::Result;
use baton_core::ids::RunId;
use baton_runtime::RuntimeError;
use baton_runtime::report::status_word;

use crate::backend::{Target, control};
use crate::errors::Usage;
use crate::exit;
use crate::output::{code_for, print_run, report_settled};
use crate::signals::stop_on_ctrl_c;

/// Cancels the run and prints it.
pub async fn cancel(target: &Target, run_id: &RunId, json: bool) -> Result<u8> {
    let c = control(target, !json).await?;
    let stored = c.store().load_run(run_id).await?.ok_or_else(|| RuntimeError::UnknownRun(run_id.to_owned()))?;
    if stored.state.status.is_terminal() {
        return Err(Usage(format!("run {run_id} already ended ({})", status_word(stored.state.status))).into());
    }
    let settled = c.cancel(run_id, "cancelled with `baton cancel`".to_owned(), stop_on_ctrl_c()).await?;
    report_settled(c.as_ref(), run_id, settled);
    let obj = c.show(run_id).await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&obj)?);
    } else {
        print_run(&obj);
    }
    Ok(if obj["status"] == "cancelled" { exit::OK } else { code_for(&obj) })
}
