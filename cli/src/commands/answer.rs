//! `baton approve TASK` and `baton reject TASK`: answer a task, then let its run go on.

use anyhow::Result;
use baton_core::engine::{HumanAnswer, Verdict};
use baton_core::ids::TaskId;
use serde_json::{Value, json};

use crate::AnswerArgs;
use crate::backend::{Target, control};
use crate::errors::Usage;
use crate::input::json_arg;
use crate::output::{finish_one, report_settled};
use crate::signals::stop_on_ctrl_c;

/// Approves with `data` (checked against the task's form; `{}` when absent).
pub async fn approve(target: &Target, args: AnswerArgs, data: Option<&str>) -> Result<u8> {
    let data = data
        .map(|d| json_arg(d, "data"))
        .transpose()
        .map_err(|e| Usage(format!("{e:#}")))?
        .unwrap_or_else(|| json!({}));
    answer(target, args, Verdict::Approve, data).await
}

/// Rejects: an answer, not a failure; the workflow decides what it means.
pub async fn reject(target: &Target, args: AnswerArgs) -> Result<u8> {
    answer(target, args, Verdict::Reject, Value::Null).await
}

async fn answer(target: &Target, args: AnswerArgs, decision: Verdict, data: Value) -> Result<u8> {
    let AnswerArgs { task, comment, by, json } = args;
    let answer = HumanAnswer { decision, data, comment, by: Some(by.unwrap_or_else(whoami)), principal: None };
    answer_and_continue(target, &task, answer, json).await
}

/// Answers, settles the task's run and prints it.
pub async fn answer_and_continue(target: &Target, task: &TaskId, answer: HumanAnswer, json: bool) -> Result<u8> {
    let c = control(target, !json).await?;
    let run_id = c.answer(task, answer).await?;
    report_settled(c.as_ref(), &run_id, c.settle(&run_id, stop_on_ctrl_c()).await?);
    finish_one(c.as_ref(), &run_id, json).await
}

/// Who acts, for the audit log: the login name (`USER`), else `cli`.
pub(super) fn whoami() -> String {
    std::env::var("USER").unwrap_or_else(|_| "cli".into())
}
