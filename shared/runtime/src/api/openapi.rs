//! The OpenAPI 3.1 document of the API, served at `GET /api/openapi.json`. The integration tests
//! validate every real response against the schema given here for its route and status, so
//! the document cannot drift from what the handlers answer.

use serde_json::{Map, Value, json};

fn schema_ref(name: &str) -> Value {
    json!({"$ref": format!("#/components/schemas/{name}")})
}

fn json_content(schema: Value) -> Value {
    json!({"application/json": {"schema": schema}})
}

/// A response of `schema` with `description`.
fn answer(description: &str, schema: Value) -> Value {
    json!({"description": description, "content": json_content(schema)})
}

/// The error responses a route can give, by status, besides 401 and 405 (every route).
fn errors(statuses: &[u16]) -> Map<String, Value> {
    let mut m = Map::new();
    for s in statuses.iter().chain(&[401, 405]) {
        m.insert(s.to_string(), json!({"$ref": format!("#/components/responses/E{s}")}));
    }
    m
}

/// One operation: `summary`, its parameters, request body, success responses and error statuses.
fn operation(summary: &str, params: &[&str], body: Option<Value>, ok: &[(u16, Value)], errs: &[u16]) -> Value {
    let mut responses = errors(errs);
    for (status, resp) in ok {
        responses.insert(status.to_string(), resp.clone());
    }
    let mut op = json!({
        "summary": summary,
        "parameters": params.iter().map(|p| json!({"$ref": format!("#/components/parameters/{p}")})).collect::<Vec<_>>(),
        "responses": responses,
    });
    if let Some(b) = body {
        op["requestBody"] = b;
    }
    op
}

fn body(schema: Value, required: bool) -> Value {
    json!({"required": required, "content": json_content(schema)})
}

/// The whole document.
pub fn document() -> Value {
    let run = || answer("The run, as `baton runs show --json` prints it.", schema_ref("Run"));
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "baton API",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Runs, tasks and events of a baton deployment. Every route needs `Authorization: Bearer <BATON_API_TOKEN>` when the server has a token."
        },
        "security": [{"bearer": []}],
        "paths": {
            "/api/runs": {"get": operation(
                "Runs, newest first, filtered and paged",
                &["status", "workflow_filter", "started_after", "started_before", "limit", "cursor"],
                None, &[(200, answer("One page of runs.", schema_ref("RunPage")))], &[400])},
            "/api/runs/{run_id}": {"get": operation("One run", &["run_id"], None, &[(200, run())], &[404])},
            "/api/runs/{run_id}/audit": {"get": operation(
                "The run's audit log, oldest first", &["run_id"], None,
                &[(200, answer("The records, as `baton audit show --json` prints them.", json!({"type": "array", "items": schema_ref("AuditRecord")})))],
                &[404])},
            "/api/runs/{run_id}/audit/verify": {"get": operation(
                "Check the run's audit hash chain", &["run_id"], None,
                &[(200, answer("The verdict; a broken chain is `intact: false`.", schema_ref("AuditVerification")))], &[404])},
            "/api/runs/{run_id}/events": {"get": operation(
                "The run's progress as server-sent events", &["run_id", "last_event_id"], None,
                &[(200, json!({
                    "description": "`event: record` (data: an AuditRecord, id: its seq) per committed record, then one `event: end` (data: the Run) when the run ends or waits; the stream then closes.",
                    "content": {"text/event-stream": {"schema": {"type": "string"}}}
                }))],
                &[400, 404])},
            "/api/runs/{run_id}/cancel": {"post": operation(
                "Cancel a run and wait until it ended", &["run_id"],
                Some(body(schema_ref("CancelRequest"), false)),
                &[(200, run())], &[400, 404, 409])},
            "/api/runs/{run_id}/redrive": {"post": operation(
                "Redrive a failed or cancelled run: its failed steps run again with fresh attempts, completed steps keep their outputs",
                &["run_id", "wait"], Some(body(schema_ref("OperateRequest"), false)),
                &[(200, answer("The run, after `wait` or at once; it goes on either way.", schema_ref("Run")))], &[400, 404, 409])},
            "/api/runs/{run_id}/retry": {"post": operation(
                "Run a step and everything downstream of it again (also on a finished run); `input` is a JSON merge patch over the step's arguments",
                &["run_id", "wait"], Some(body(schema_ref("RetryRequest"), true)),
                &[(200, answer("The run, after `wait` or at once; it goes on either way.", schema_ref("Run")))], &[400, 404, 409])},
            "/api/runs/{run_id}/pause": {"post": operation(
                "Pause a run: nothing new is dispatched and no timer fires until it is unpaused",
                &["run_id"], Some(body(schema_ref("OperateRequest"), false)),
                &[(200, answer("The paused run.", schema_ref("Run")))], &[400, 404, 409])},
            "/api/runs/{run_id}/unpause": {"post": operation(
                "Unpause a run: held attempts start, held timers fire (late, and the audit log says so)",
                &["run_id", "wait"], Some(body(schema_ref("OperateRequest"), false)),
                &[(200, answer("The run, after `wait` or at once.", schema_ref("Run")))], &[400, 404, 409])},
            "/api/runs/{run_id}/graph": {"get": operation(
                "The run's workflow as a DAG (for drawing the run)", &["run_id"], None,
                &[(200, answer("The steps with what they need.", schema_ref("Graph")))], &[404])},
            "/api/workflows/{workflow}/runs": {"post": operation(
                "Start a run of the published workflow with the body as input", &["workflow", "wait"],
                Some(body(json!({"description": "The run's input (checked against the workflow's input_schema); empty means {}."}), false)),
                &[(201, answer("The run: settled when it did within `wait`, else as it is now. It goes on either way.", schema_ref("Run")))],
                &[400, 404])},
            "/api/tasks": {"get": operation(
                "Open tasks for people, with their handover summaries", &[], None,
                &[(200, answer("The tasks, each as `baton tasks --json` shows it.", schema_ref("TaskList")))], &[])},
            "/api/tasks/{task_id}/approve": {"post": operation(
                "Approve a task; `data` must match the task's form", &["task_id"],
                Some(body(schema_ref("Approval"), false)),
                &[(202, answer("The answer was taken; the run goes on.", schema_ref("AnswerAccepted")))], &[400, 404, 409])},
            "/api/tasks/{task_id}/reject": {"post": operation(
                "Reject a task", &["task_id"],
                Some(body(schema_ref("Rejection"), false)),
                &[(202, answer("The answer was taken; the run goes on.", schema_ref("AnswerAccepted")))], &[400, 404, 409])},
            "/api/events": {"post": operation(
                "Deliver an event to triggers, waits and task answers", &[],
                Some(body(schema_ref("Event"), true)),
                &[(202, answer("What the event did.", schema_ref("EventDelivery")))], &[400])},
            "/api/openapi.json": {"get": operation(
                "This document", &[], None, &[(200, answer("The OpenAPI 3.1 document.", json!({"type": "object", "required": ["openapi", "paths"]})))], &[])},
        },
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer", "description": "The server's BATON_API_TOKEN."}},
            "parameters": parameters(),
            "responses": {
                "E400": answer("A malformed request; `field` names the body member or query parameter.", schema_ref("BadRequest")),
                "E401": answer("No or a wrong bearer token.", schema_ref("Error")),
                "E404": answer("No such run, task, workflow or route.", schema_ref("Error")),
                "E405": answer("The route takes another method (see `Allow`).", schema_ref("Error")),
                "E409": answer("The run or task is not in a state that allows this.", schema_ref("Error")),
            },
            "schemas": schemas(),
        },
    })
}

fn parameters() -> Value {
    let path = |name: &str, description: &str| json!({"name": name, "in": "path", "required": true, "description": description, "schema": {"type": "string"}});
    let query = |name: &str, description: &str, schema: Value| json!({"name": name, "in": "query", "required": false, "description": description, "schema": schema});
    let time = json!({"type": "string", "description": "RFC 3339 or milliseconds since the Unix epoch"});
    json!({
        "run_id": path("run_id", "Run id."),
        "task_id": path("task_id", "Task id."),
        "workflow": path("workflow", "Published workflow name."),
        "status": query("status", "Only runs with this status.", json!({"enum": ["waiting", "succeeded", "failed", "cancelled"]})),
        "workflow_filter": query("workflow", "Only runs of this workflow.", json!({"type": "string"})),
        "started_after": query("started_after", "Only runs started after this time.", time.clone()),
        "started_before": query("started_before", "Only runs started before this time.", time),
        "limit": query("limit", "Page size (default 50).", json!({"type": "integer", "minimum": 1, "maximum": 500})),
        "cursor": query("cursor", "`next_cursor` of the previous page.", json!({"type": "string"})),
        "last_event_id": {"name": "Last-Event-ID", "in": "header", "required": false, "description": "Seq of the last record a reconnecting stream got: the stream goes on after it.", "schema": {"type": "string"}},
        "wait": query("wait", "Seconds to wait for the run to settle (at most 300).", json!({"type": "number", "minimum": 0, "maximum": 300})),
    })
}

fn schemas() -> Value {
    let nullable_string = json!({"type": ["string", "null"]});
    json!({
        "Error": {
            "type": "object", "required": ["error", "code"],
            "properties": {"error": {"type": "string"}, "code": {"type": "string"}, "field": {"type": "string"}},
        },
        "BadRequest": {
            "type": "object", "required": ["error", "code", "field"],
            "properties": {"error": {"type": "string"}, "code": {"const": "bad_request"}, "field": {"type": "string"}},
        },
        "Step": {
            "type": "object", "required": ["status", "attempts", "output", "error"],
            "properties": {
                "status": {"type": "string"},
                "attempts": {"type": "integer", "minimum": 0},
                "output": {},
                "error": {"oneOf": [
                    {"type": "null"},
                    {"type": "object", "required": ["kind", "message"], "properties": {"kind": {"type": "string"}, "message": {"type": "string"}}},
                ]},
                "items": {"type": "object", "required": ["total"], "additionalProperties": {"type": "integer"}},
                "stale": {"type": "object"},
            },
        },
        "Run": {
            "type": "object", "required": ["run_id", "status", "output", "error", "steps"],
            "properties": {
                "run_id": {"type": "string"},
                "status": {"enum": ["waiting", "succeeded", "failed", "cancelled"], "description": "`waiting`: not ended (running, or waiting for a person, an event or a timer)."},
                "output": {},
                "error": {"type": ["object", "null"]},
                "steps": {"type": "object", "additionalProperties": {"$ref": "#/components/schemas/Step"}},
                "aws": {"type": "object", "description": "The AWS requests of the run and their estimated cost (AWS backend only)."},
                "paused": {
                    "type": "object", "required": ["at", "by"], "description": "Only on a paused run.",
                    "properties": {"at": {"type": "integer"}, "by": {"type": "string"}, "reason": {"type": ["string", "null"]}},
                },
            },
        },
        "RunSummary": {
            "allOf": [{"$ref": "#/components/schemas/Run"}, {
                "type": "object", "required": ["workflow", "created_at"],
                "properties": {"workflow": {"type": "string"}, "created_at": {"type": "integer", "description": "ms since the Unix epoch"}},
            }],
        },
        "RunPage": {
            "type": "object", "required": ["runs", "next_cursor"], "additionalProperties": false,
            "properties": {
                "runs": {"type": "array", "items": {"$ref": "#/components/schemas/RunSummary"}},
                "next_cursor": nullable_string,
            },
        },
        "AuditRecord": {
            "type": "object", "required": ["seq", "at", "kind", "decision", "reason", "prev_hash", "hash"],
            "properties": {
                "seq": {"type": "integer", "minimum": 1}, "at": {"type": "integer"},
                "kind": {"type": "string"}, "decision": {"type": "string"},
                "step": {"type": "string"}, "node": {"type": "string"},
                "attempt": {"type": "integer"}, "iteration": {"type": "integer"},
                "reason": {"type": "string"}, "values": {}, "commands": {"type": "array"},
                "event": {"type": "string", "description": "SHA-256 of the event that caused the decision."},
                "sealed": {"type": "object", "additionalProperties": {"type": "string"}, "description": "Commitments of the sensitive fields the record seals, by field."},
                "prev_hash": {"type": "string"}, "hash": {"type": "string"},
            },
        },
        "AuditVerification": {
            "type": "object", "required": ["run_id", "intact", "records", "problem"], "additionalProperties": false,
            "properties": {
                "run_id": {"type": "string"}, "intact": {"type": "boolean"},
                "records": {"type": ["integer", "null"]}, "problem": nullable_string,
                "signed_digests": {"type": ["integer", "null"], "description": "How many signed digests cover the records; null for an unsigned log."},
                "sealed_fields": {"type": "integer", "description": "Sensitive fields the log seals."},
                "erased": {"type": "array", "description": "The sealed fields erased, with when (ms) and why.", "items": {
                    "type": "object", "required": ["field", "at", "reason"], "additionalProperties": false,
                    "properties": {"field": {"type": "string"}, "at": {"type": "integer"}, "reason": {"type": "string"}},
                }},
                "witnessed": {"type": ["integer", "null"], "description": "Seals also held by the write-once S3 bucket; null when the store has none."},
                "unwitnessed": {"type": "integer", "description": "Seals the bucket lacks (its write failed after the commit)."},
            },
        },
        "Task": {
            "type": "object", "required": ["id", "run_id", "node", "step", "queue", "status", "prompt", "summary", "created_at"],
            "properties": {
                "id": {"type": "string"}, "run_id": {"type": "string"}, "node": {"type": "string"},
                "step": {"type": "string"}, "queue": {"type": "string"}, "status": {"const": "open"},
                "prompt": {"type": "string"}, "summary": {"type": "string", "description": "The handover a person gets."},
                "form": {"type": "object", "description": "JSON Schema the approval's `data` must match."},
                "created_at": {"type": "integer"}, "outcome": {"type": "string"},
                "callback_url": {"type": "string", "description": "Signed task link, when the server signs links."},
            },
        },
        "TaskList": {
            "type": "object", "required": ["tasks"], "additionalProperties": false,
            "properties": {"tasks": {"type": "array", "items": {"$ref": "#/components/schemas/Task"}}},
        },
        "Approval": {
            "type": "object",
            "properties": {"data": {"description": "Checked against the task's form; {} when absent."}, "comment": {"type": "string"}, "by": {"type": "string"}},
        },
        "Rejection": {"type": "object", "properties": {"comment": {"type": "string"}, "by": {"type": "string"}}},
        "CancelRequest": {"type": "object", "properties": {"reason": {"type": "string"}}},
        "OperateRequest": {"type": "object", "properties": {
            "reason": {"type": "string", "description": "Recorded in the audit log."},
            "by": {"type": "string", "description": "Who acts, recorded in the audit log; `api` when absent."},
        }},
        "RetryRequest": {"type": "object", "required": ["from"], "properties": {
            "from": {"type": "string", "description": "The top-level step to run again."},
            "input": {"description": "A JSON merge patch (RFC 7386) over the step's resolved arguments."},
            "reason": {"type": "string"}, "by": {"type": "string"},
        }},
        "Graph": {
            "type": "object", "required": ["workflow", "steps"], "additionalProperties": false,
            "properties": {
                "workflow": {"type": "string"},
                "steps": {"type": "array", "items": {
                    "type": "object", "required": ["id", "tool", "needs"],
                    "properties": {
                        "id": {"type": "string"}, "tool": {"type": "string"},
                        "needs": {"type": "array", "items": {"type": "string"}},
                        "in_loop": {"type": "string", "description": "The loop whose body the step is in."},
                        "role": {"type": "boolean", "description": "A fallback or compensation step, not in the DAG."},
                    },
                }},
            },
        },
        "AnswerAccepted": {
            "type": "object", "required": ["task", "run_id", "decision", "status"], "additionalProperties": false,
            "properties": {
                "task": {"type": "string"}, "run_id": {"type": "string"},
                "decision": {"enum": ["approve", "reject"]}, "status": {"const": "accepted"},
            },
        },
        "Event": {
            "type": "object", "required": ["source", "detail-type"],
            "properties": {"source": {"type": "string"}, "detail-type": {"type": "string"}, "detail": {"type": "object"}},
        },
        "EventDelivery": {
            "type": "object", "required": ["delivery"],
            "properties": {
                "delivery": {"enum": ["answered", "runs", "put"], "description": "`answered`: a task answer; `runs`: the runs it started or woke; `put`: put on the backend's bus."},
                "run_ids": {"type": "array", "items": {"type": "string"}},
                "event_id": {"type": "string"}, "bus": {"type": "string"},
            },
        },
    })
}
