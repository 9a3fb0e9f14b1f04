//! The handler's pure parts: routing, authentication, parameters, errors and the OpenAPI
//! document. The routes against a real store are tested in `baton-embedded` (tests/api.rs) and
//! over HTTP in the CLI (tests/api.rs).

use super::query::{encode_cursor, run_query, wait};
use super::*;
use crate::error::RuntimeError;

#[test]
fn every_route_parses_and_names_its_method() {
    let run = RunId::from("r-1");
    let cases = [
        ("/api/runs", Route::Runs, "GET"),
        ("/api/runs/r-1", Route::Run(run.clone()), "GET"),
        ("/api/runs/r-1/audit", Route::Audit(run.clone()), "GET"),
        ("/api/runs/r-1/audit/verify", Route::AuditVerify(run.clone()), "GET"),
        ("/api/runs/r-1/events", Route::RunEvents(run.clone()), "GET"),
        ("/api/runs/r-1/cancel", Route::RunAction(run.clone(), RunAction::Cancel), "POST"),
        ("/api/runs/r-1/redrive", Route::RunAction(run.clone(), RunAction::Redrive), "POST"),
        ("/api/runs/r-1/retry", Route::RunAction(run.clone(), RunAction::Retry), "POST"),
        ("/api/runs/r-1/pause", Route::RunAction(run.clone(), RunAction::Pause), "POST"),
        ("/api/runs/r-1/unpause", Route::RunAction(run.clone(), RunAction::Unpause), "POST"),
        ("/api/runs/r-1/graph", Route::Graph(run.clone()), "GET"),
        ("/api/workflows/order/runs", Route::WorkflowRuns("order".into()), "POST"),
        ("/api/tasks", Route::Tasks, "GET"),
        ("/api/tasks/t-1/approve", Route::Answer("t-1".into(), Verdict::Approve), "POST"),
        ("/api/tasks/t-1/reject", Route::Answer("t-1".into(), Verdict::Reject), "POST"),
        ("/api/events", Route::Events, "POST"),
        ("/api/openapi.json", Route::OpenApi, "GET"),
    ];
    for (path, route, method) in cases {
        let parsed = Route::parse(path);
        assert_eq!(parsed.as_ref(), Some(&route), "{path}");
        assert_eq!(route.method(), method, "{path}");
    }
}

#[test]
fn paths_that_name_nothing_have_no_route() {
    // Words that are no action are not routed at all (404), nor are empty segments or other prefixes.
    for path in ["/api", "/api/", "/api/runs/", "/api/runs//audit", "/api/runs/r-1/rewind", "/api/tasks/t-1", "/runs"] {
        assert_eq!(Route::parse(path), None, "{path}");
    }
}

#[test]
fn only_the_right_bearer_token_passes() {
    let digest: [u8; 32] = Sha256::digest(b"s3cret").into();
    assert!(bearer_matches(&digest, Some("Bearer s3cret")));
    assert!(!bearer_matches(&digest, Some("Bearer s3cre")));
    assert!(!bearer_matches(&digest, Some("Basic s3cret")));
    assert!(!bearer_matches(&digest, Some("s3cret")));
    assert!(!bearer_matches(&digest, None));
}

#[test]
fn list_parameters_are_checked_and_name_the_bad_one() {
    let q = run_query("status=waiting&workflow=order&started_after=1000&started_before=2026-12-06T00:00:00Z&limit=2")
        .expect("valid");
    assert_eq!(q.status, Some(baton_core::engine::RunStatus::Running));
    assert_eq!(q.workflow.as_deref(), Some("order"));
    assert_eq!(q.created_after, Some(1000));
    assert_eq!(q.created_before, Some(1_796_515_200_000));
    assert_eq!(q.limit, 3, "one more than the page, to know whether another follows");
    for (query, field) in [
        ("status=running", "status"),
        ("limit=0", "limit"),
        ("limit=501", "limit"),
        ("limit=x", "limit"),
        ("started_after=yesterday", "started_after"),
        ("cursor=zz", "cursor"),
        ("sort=asc", "sort"),
    ] {
        match run_query(query) {
            Err(ApiError::BadRequest { field: f, .. }) => assert_eq!(f, field, "{query}"),
            other => panic!("{query}: {other:?}"),
        }
    }
}

#[test]
fn a_cursor_names_the_last_run_of_the_page() {
    let c = encode_cursor(42, &RunId::from("r-9"));
    let q = run_query(&format!("cursor={c}")).expect("valid");
    assert_eq!(q.after, Some((42, RunId::from("r-9"))));
}

#[test]
fn wait_takes_seconds_up_to_the_cap() {
    assert_eq!(wait("").expect("none"), None);
    assert_eq!(wait("wait=1.5").expect("valid"), Some(Duration::from_millis(1500)));
    for bad in ["wait=-1", "wait=301", "wait=soon", "wait=NaN", "mocks=x"] {
        assert!(matches!(wait(bad), Err(ApiError::BadRequest { .. })), "{bad}");
    }
}

#[test]
fn errors_have_one_shape_with_the_field_of_a_400() {
    let body = |e: ApiError| match e.response().body {
        ApiBody::Json(v) => v,
        ApiBody::Events(_) => panic!("an error is JSON"),
    };
    let v = body(ApiError::bad("limit", "too big"));
    assert_eq!(
        (v["error"].as_str(), v["field"].as_str(), v["code"].as_str()),
        (Some("too big"), Some("limit"), Some("bad_request"))
    );
    let r = ApiError::MethodNotAllowed { method: "PUT".into(), allow: "GET" }.response();
    assert_eq!((r.status, r.allow), (405, Some("GET")));
    assert_eq!(ApiError::from(RuntimeError::UnknownRun("r".into())).status(), 404);
    assert_eq!(ApiError::from(RuntimeError::InvalidInput(vec!["x".into()])).status(), 400);
    assert!(body(ApiError::Unauthorized).get("field").is_none());
}

#[test]
fn the_openapi_document_lists_every_route_with_resolvable_references() {
    let doc = openapi_document();
    assert_eq!(doc["openapi"], "3.1.0");
    for (path, method) in [
        ("/api/runs", "get"),
        ("/api/runs/{run_id}", "get"),
        ("/api/runs/{run_id}/audit", "get"),
        ("/api/runs/{run_id}/audit/verify", "get"),
        ("/api/runs/{run_id}/events", "get"),
        ("/api/runs/{run_id}/cancel", "post"),
        ("/api/workflows/{workflow}/runs", "post"),
        ("/api/tasks", "get"),
        ("/api/tasks/{task_id}/approve", "post"),
        ("/api/tasks/{task_id}/reject", "post"),
        ("/api/events", "post"),
        ("/api/openapi.json", "get"),
    ] {
        assert!(doc["paths"][path][method].is_object(), "{method} {path}");
    }
    // Every `$ref` points at something in the document.
    fn refs(v: &Value, out: &mut Vec<String>) {
        match v {
            Value::Object(m) => {
                if let Some(Value::String(r)) = m.get("$ref") {
                    out.push(r.clone());
                }
                m.values().for_each(|x| refs(x, out));
            }
            Value::Array(a) => a.iter().for_each(|x| refs(x, out)),
            _ => {}
        }
    }
    let mut all = Vec::new();
    refs(&doc, &mut all);
    for r in all {
        let pointer = r.strip_prefix('#').expect("local reference");
        assert!(doc.pointer(pointer).is_some(), "dangling {r}");
    }
}
