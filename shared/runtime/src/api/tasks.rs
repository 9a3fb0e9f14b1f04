//! The routes that bring the outside world in: open tasks and their answers, and events.

use baton_core::engine::{HumanAnswer, Verdict};
use baton_core::ids::TaskId;
use serde_json::{Value, json};

use super::runs::{object_body, text_member};
use super::{Api, ApiError, ApiResponse};
use crate::control::EventDelivery;

/// `GET /api/tasks`: `{"tasks": [...]}`, each as `baton tasks --json` shows it.
pub(super) async fn list(api: &Api) -> Result<ApiResponse, ApiError> {
    let tasks = api.control.tasks().await?;
    let rows: Vec<Value> = tasks.iter().map(|t| api.control.task_row(t)).collect();
    Ok(ApiResponse::json(200, json!({"tasks": rows})))
}

/// `POST /api/tasks/{id}/approve|reject`: the body is `{"data"?, "comment"?, "by"?}` (`data`
/// checked against the task's form on approval). Answers 202 once the answer is taken; the run
/// goes on in the background.
pub(super) async fn answer(api: &Api, id: &TaskId, decision: Verdict, body: &[u8]) -> Result<ApiResponse, ApiError> {
    let body = object_body(body)?;
    let comment = text_member(&body, "comment")?;
    let by = text_member(&body, "by")?.unwrap_or_else(|| "api".to_owned());
    let data = match decision {
        Verdict::Approve => body.get("data").cloned().unwrap_or_else(|| json!({})),
        // A rejection carries no data, as with `baton reject`.
        Verdict::Reject => Value::Null,
    };
    let task = api.control.store().get_task(id).await?.ok_or_else(|| ApiError::NotFound(format!("no task `{id}`")))?;
    if task.status != "open" || task.wait.is_some() {
        let why = task.outcome.clone().unwrap_or_else(|| "it is an event wait, ended by its event".into());
        return Err(ApiError::Conflict(format!("task `{id}` cannot be answered: {why}")));
    }
    if decision == Verdict::Approve
        && let Some(form) = &task.form
        && let Err(problems) = baton_core::plan::check_against_schema(form, &data)
    {
        return Err(ApiError::bad("data", problems.join("; ")));
    }
    let run_id = api
        .control
        .answer(id, HumanAnswer { decision, data, comment, by: Some(by), principal: Some(api.principal()) })
        .await?;
    drop(api.settle_in_background(run_id.clone()));
    Ok(ApiResponse::json(
        202,
        json!({"task": id, "run_id": run_id, "decision": decision.as_str(), "status": "accepted"}),
    ))
}

/// `POST /api/events`: an EventBridge-shaped event, delivered as `baton event` does. Answers
/// 202 with what it did; the runs it started or woke go on in the background.
pub(super) async fn event(api: &Api, body: &[u8]) -> Result<ApiResponse, ApiError> {
    let event = object_body(body)?;
    for field in ["source", "detail-type"] {
        if !event.get(field).is_some_and(Value::is_string) {
            return Err(ApiError::bad(field, "a string is required"));
        }
    }
    if event.get("detail").is_some_and(|d| !d.is_object()) {
        return Err(ApiError::bad("detail", "must be a JSON object"));
    }
    let body = match api.control.deliver(Value::Object(event)).await? {
        EventDelivery::Answered(run_id) => {
            drop(api.settle_in_background(run_id.clone()));
            json!({"delivery": "answered", "run_ids": [run_id]})
        }
        EventDelivery::Runs(ids) => {
            for id in &ids {
                drop(api.settle_in_background(id.clone()));
            }
            json!({"delivery": "runs", "run_ids": ids})
        }
        EventDelivery::Put { event_id, bus } => json!({"delivery": "put", "event_id": event_id, "bus": bus}),
    };
    Ok(ApiResponse::json(202, body))
}
