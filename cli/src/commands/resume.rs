//! `baton resume [RUN_ID]`: pick up one run, or every unfinished run, where it stopped.

use anyhow::Result;
use baton_core::ids::RunId;
use baton_runtime::RuntimeError;

use crate::backend::{Target, control};
use crate::output::{finish_one, print_runs, report_settled};
use crate::signals::stop_on_ctrl_c;

/// Resumes and prints the runs; exits with their combined code.
pub async fn resume(target: &Target, run_id: Option<RunId>, json: bool) -> Result<u8> {
    let c = control(target, !json).await?;
    let ids = match &run_id {
        Some(id) => {
            c.store().load_run(id).await?.ok_or_else(|| RuntimeError::UnknownRun(id.clone()))?;
            vec![id.clone()]
        }
        None => c.store().unfinished_runs().await?,
    };
    let settled = c.resume(&ids, stop_on_ctrl_c()).await?;
    if let Some(id) = &run_id {
        report_settled(c.as_ref(), id, settled);
        return finish_one(c.as_ref(), id, json).await;
    }
    print_runs(c.as_ref(), &ids, json, "no unfinished runs").await
}
