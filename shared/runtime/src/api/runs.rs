//! The run routes: list, show, audit, start, and the operator actions on one run.

use baton_core::ids::RunId;
use serde_json::{Map, Value, json};

use super::query::{self, encode_cursor};
use super::{Api, ApiError, ApiResponse, RunAction};
use baton_core::engine::OperatorAction;
use baton_core::plan::Scope;

use crate::control::{NewRun, Operation};
use crate::report::status_word;

/// The body as JSON; an empty body is `None`. `field` names the body in a 400 (`input` for a
/// run's input, `body` for a request object).
pub(super) fn json_body(body: &[u8], field: &str) -> Result<Option<Value>, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    serde_json::from_slice(body).map(Some).map_err(|e| ApiError::bad(field, format!("the body is not JSON: {e}")))
}

/// The body as a JSON object (`{}` when empty).
pub(super) fn object_body(body: &[u8]) -> Result<Map<String, Value>, ApiError> {
    match json_body(body, "body")? {
        None => Ok(Map::new()),
        Some(Value::Object(m)) => Ok(m),
        Some(_) => Err(ApiError::bad("body", "the body must be a JSON object")),
    }
}

/// A member that must be a string when present.
pub(super) fn text_member(body: &Map<String, Value>, name: &str) -> Result<Option<String>, ApiError> {
    match body.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(ApiError::bad(name, "must be a string")),
    }
}

/// `GET /api/runs`: `{"runs": [...], "next_cursor": ...}`, newest first.
pub(super) async fn list(api: &Api, query: &str) -> Result<ApiResponse, ApiError> {
    let q = query::run_query(query)?;
    let page = q.limit - 1;
    let mut headers = api.control.store().query_runs(&q).await?;
    let more = headers.len() > page;
    headers.truncate(page);
    let next_cursor = match headers.last() {
        Some(last) if more => json!(encode_cursor(last.created_at, &last.id)),
        _ => Value::Null,
    };
    let mut runs = Vec::with_capacity(headers.len());
    for h in &headers {
        runs.push(api.control.summary(h).await?);
    }
    Ok(ApiResponse::json(200, json!({"runs": runs, "next_cursor": next_cursor})))
}

/// `GET /api/runs/{id}`: what `baton runs show --json` prints.
pub(super) async fn show(api: &Api, id: &RunId) -> Result<ApiResponse, ApiError> {
    Ok(ApiResponse::json(200, api.control.detail(id).await?))
}

/// `GET /api/runs/{id}/audit`: what `baton audit show --json` prints.
pub(super) async fn audit(api: &Api, id: &RunId) -> Result<ApiResponse, ApiError> {
    let records = api.control.audit(id).await?;
    Ok(ApiResponse::json(200, serde_json::to_value(records).map_err(|e| ApiError::Unavailable(e.to_string()))?))
}

/// `GET /api/runs/{id}/audit/verify`: `{"run_id", "intact", "records", "signed_digests",
/// "sealed_fields", "erased", "witnessed", "unwitnessed", "problem"}`. A broken chain is a
/// finding, not an error: 200 with `intact: false`.
pub(super) async fn verify(api: &Api, id: &RunId) -> Result<ApiResponse, ApiError> {
    let body = match api.control.verify_audit(id).await? {
        Ok(v) => {
            let digests = match v.signing {
                baton_core::audit::digest::Signing::Signed { digests, .. } => json!(digests),
                baton_core::audit::digest::Signing::Unsigned => Value::Null,
            };
            let erased: Vec<Value> = v
                .sealed
                .erased
                .iter()
                .map(|(field, at, reason)| json!({"field": field, "at": at, "reason": reason}))
                .collect();
            json!({
                "run_id": id, "intact": true, "records": v.records, "signed_digests": digests,
                "sealed_fields": v.sealed.fields, "erased": erased,
                "witnessed": v.witnessed, "unwitnessed": v.unwitnessed, "problem": null,
            })
        }
        Err(e) => json!({"run_id": id, "intact": false, "records": null, "problem": e.to_string()}),
    };
    Ok(ApiResponse::json(200, body))
}

/// `POST /api/workflows/{name}/runs[?wait=SECONDS]`: starts a run of the published version with
/// the body as input. Without `wait` it answers at once; with it, when the run settles (ends or
/// waits for the outside world) or at the deadline, whichever is first. Either way the run goes
/// on in the background and the answer is 201 with the run as `GET /api/runs/{id}` shows it.
pub(super) async fn start(api: &Api, name: &str, query: &str, body: &[u8]) -> Result<ApiResponse, ApiError> {
    let wait = query::wait(query)?;
    let input = json_body(body, "input")?.unwrap_or_else(|| json!({}));
    let (plan, source) = api
        .control
        .coordinator()
        .published(name)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no published workflow `{name}`")))?;
    let run_id = api.control.start(NewRun { plan, source, input, mocks: None }).await?;
    // A run that ended in its first commit (a chain of transforms) is answered as decided.
    let body = match api.control.settled_at_start(&run_id) {
        Some((plan, state)) => api.control.detail_of(&run_id, &plan, &state).await?,
        None => {
            let settled = api.settle_in_background(run_id.clone());
            if let Some(limit) = wait {
                // At the deadline the run is shown as it is; it keeps going regardless.
                let _ = tokio::time::timeout(limit, settled).await;
            }
            api.control.detail(&run_id).await?
        }
    };
    let mut resp = ApiResponse::json(201, body);
    resp.location = Some(format!("/api/runs/{run_id}"));
    Ok(resp)
}

/// `POST /api/runs/{id}/{action}`: one operator action. A new action is one arm here.
pub(super) async fn act(
    api: &Api,
    id: &RunId,
    action: RunAction,
    query: &str,
    body: &[u8],
) -> Result<ApiResponse, ApiError> {
    let operator = match action {
        RunAction::Cancel => return cancel(api, id, body).await,
        RunAction::Redrive => OperatorAction::Redrive,
        RunAction::Retry => {
            let b = object_body(body)?;
            let from = text_member(&b, "from")?.ok_or_else(|| ApiError::bad("from", "name the step to retry from"))?;
            OperatorAction::Retry { from, input: b.get("input").filter(|v| !v.is_null()).cloned() }
        }
        RunAction::Pause => OperatorAction::Pause,
        RunAction::Unpause => OperatorAction::Unpause,
    };
    operate(api, id, operator, query, body).await
}

/// Redrive, retry, pause or unpause: the body is checked, then the action against the run as
/// it stands (409 with the reason when it does not apply), then it is applied and the run goes
/// on in the background. With `?wait=SECONDS` the answer comes when the run settles or at the
/// deadline; without, at once. 200 with the run either way.
async fn operate(
    api: &Api,
    id: &RunId,
    action: OperatorAction,
    query: &str,
    body: &[u8],
) -> Result<ApiResponse, ApiError> {
    let wait = query::wait(query)?;
    let b = object_body(body)?;
    let reason = text_member(&b, "reason")?;
    // Who acted as the caller says; the token authenticates the caller, not a person.
    let by = text_member(&b, "by")?.unwrap_or_else(|| "api".to_owned());
    api.control.check_operation(id, &action).await?;
    let op = Operation { action, by, reason };
    let moves = op.moves_the_run();
    let done = api.operate_in_background(id.clone(), op);
    match wait {
        // A pause is committed at once; the others are taken once the run moves.
        _ if !moves => {
            let _ = done.await;
        }
        Some(limit) => {
            let _ = tokio::time::timeout(limit, done).await;
        }
        None => {}
    }
    Ok(ApiResponse::json(200, api.control.detail(id).await?))
}

/// `GET /api/runs/{id}/graph`: the run's workflow as a DAG, `{"workflow", "steps": [{"id",
/// "tool", "needs", "role"?, "in_loop"?}]}`, for drawing the run coloured by its steps.
pub(super) async fn graph(api: &Api, id: &RunId) -> Result<ApiResponse, ApiError> {
    let (plan, _) = api.control.load(id).await?;
    let steps: Vec<Value> = plan
        .steps
        .iter()
        .map(|s| {
            let mut o = json!({
                "id": s.id,
                "tool": s.kind.tool_name(),
                "needs": s.needs.iter().map(|&n| plan.steps[n].id.clone()).collect::<Vec<_>>(),
            });
            match s.scope {
                Scope::Top => {}
                Scope::Body(l) => o["in_loop"] = json!(plan.steps[l].id),
                Scope::Role => o["role"] = json!(true),
            }
            o
        })
        .collect();
    Ok(ApiResponse::json(200, json!({"workflow": plan.workflow.name, "steps": steps})))
}

/// Cancels a run that has not ended and answers with the run once it has (200), or 409 when it
/// had already ended.
async fn cancel(api: &Api, id: &RunId, body: &[u8]) -> Result<ApiResponse, ApiError> {
    let body = object_body(body)?;
    let reason = text_member(&body, "reason")?.unwrap_or_else(|| "cancelled through the API".to_owned());
    let stored = api.control.store().load_run(id).await?.ok_or_else(|| ApiError::NotFound(format!("no run `{id}`")))?;
    if stored.state.status.is_terminal() {
        return Err(ApiError::Conflict(format!("run {id} already ended ({})", status_word(stored.state.status))));
    }
    api.control.cancel(id, reason, api.stop()).await?;
    Ok(ApiResponse::json(200, api.control.detail(id).await?))
}
