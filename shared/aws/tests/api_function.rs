//! The `api` function routes `/api/*` to the HTTP API handler (the one `baton serve` carries)
//! when it has a token, and keeps serving task links and `/health`. The API here runs over the
//! embedded store and control, so no emulator is needed: what is under test is the function's
//! translation between function URL events and the handler.

use std::sync::Arc;

use async_trait::async_trait;
use aws_lambda_events::event::lambda_function_urls::{LambdaFunctionUrlRequest, LambdaFunctionUrlResponse};
use baton_aws::callbacks::ApiFunction;
use baton_core::engine::HumanAnswer;
use baton_embedded::sqlite::{Durability, SqliteStore};
use baton_runtime::api::Api;
use baton_runtime::callback::{Answerer, CallbackSigner};
use baton_runtime::clock::SystemClock;
use baton_runtime::ports::{RunStore, TaskRecord};
use baton_runtime::tools::ToolRegistry;
use baton_runtime::{Coordinator, InProcessControl, RunControl, RuntimeError};
use serde_json::Value;

const CHAIN: &str = "name: chain3\nsteps:\n  - {id: a, tool: transform, with: {expr: \"1\"}}\n  - {id: b, needs: [a], tool: transform, with: {expr: \".steps.a.output + 1\"}}\n  - {id: c, needs: [b], tool: transform, with: {expr: \".steps.b.output + 1\"}}\noutput: .steps.c.output\n";

/// Links are not under test here.
struct NoAnswers;

#[async_trait]
impl Answerer for NoAnswers {
    async fn answer(&self, task: &TaskRecord, _answer: HumanAnswer) -> Result<(), RuntimeError> {
        Err(RuntimeError::UnknownTask(task.id.clone()))
    }
}

fn request(method: &str, path_and_query: &str, token: Option<&str>, body: Option<&str>) -> LambdaFunctionUrlRequest {
    let (path, query) = path_and_query.split_once('?').unwrap_or((path_and_query, ""));
    let mut req = LambdaFunctionUrlRequest::default();
    req.raw_path = Some(path.to_owned());
    req.raw_query_string = Some(query.to_owned());
    req.request_context.http.method = Some(method.to_owned());
    req.headers.insert("content-type", "application/json".parse().expect("header"));
    if let Some(t) = token {
        req.headers.insert("authorization", format!("Bearer {t}").parse().expect("header"));
    }
    req.body = body.map(str::to_owned);
    req
}

fn json_of(resp: &LambdaFunctionUrlResponse) -> Value {
    serde_json::from_str(resp.body.as_deref().unwrap_or_default()).expect("JSON body")
}

async fn function() -> (ApiFunction, ApiFunction, std::path::PathBuf) {
    let dir = std::env::temp_dir().join(format!("baton-api-fn-{}", uuid::Uuid::new_v4()));
    let store: Arc<dyn RunStore> = Arc::new(SqliteStore::open(&dir, Durability::Normal).expect("store"));
    let coordinator = Arc::new(Coordinator::new(store.clone(), ToolRegistry::pure(), Arc::new(SystemClock)));
    let plan = baton_core::load_definition(None, CHAIN).expect("valid");
    coordinator.publish(&plan, CHAIN).await.expect("publish");
    let control: Arc<dyn RunControl> = Arc::new(InProcessControl::new(coordinator));
    let verifier = || CallbackSigner::verifier(b"a-signing-key-of-at-least-thirty-two-bytes").expect("verifier");
    let with_api =
        ApiFunction::on(store.clone(), Box::new(NoAnswers), verifier()).with_api(Api::new(control, Some("tok")));
    let without = ApiFunction::on(store, Box::new(NoAnswers), verifier());
    (with_api, without, dir)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_function_serves_the_api_behind_its_token_beside_the_links() {
    let (f, bare, dir) = function().await;
    assert_eq!(f.handle(request("GET", "/health", None, None)).await.status_code, 200);
    let refused = f.handle(request("GET", "/api/runs", None, None)).await;
    assert_eq!(refused.status_code, 401);
    assert_eq!(f.handle(request("GET", "/api/runs", Some("nope"), None)).await.status_code, 401);

    let started = f.handle(request("POST", "/api/workflows/chain3/runs?wait=10", Some("tok"), Some("{}"))).await;
    assert_eq!(started.status_code, 201, "{:?}", started.body);
    let run = json_of(&started);
    assert_eq!((run["status"].as_str(), &run["output"]), (Some("succeeded"), &Value::from(3)));
    let id = run["run_id"].as_str().expect("id");
    let location = started.headers.get("location").and_then(|v| v.to_str().ok());
    assert_eq!(location, Some(format!("/api/runs/{id}").as_str()));

    // A finished run's stream is its whole log and the end event, in one buffered answer.
    let stream = f.handle(request("GET", &format!("/api/runs/{id}/events"), Some("tok"), None)).await;
    assert_eq!(stream.status_code, 200);
    assert_eq!(stream.headers.get("content-type").and_then(|v| v.to_str().ok()), Some("text/event-stream"));
    let text = stream.body.unwrap_or_default();
    assert!(text.starts_with("event: record\nid: 1\n") && text.contains("event: end\n"), "{text}");

    let wrong = f.handle(request("DELETE", "/api/runs", Some("tok"), None)).await;
    assert_eq!((wrong.status_code, wrong.headers.get("allow").and_then(|v| v.to_str().ok())), (405, Some("GET")));
    let bad = f.handle(request("POST", "/api/workflows/chain3/runs", Some("tok"), Some("{"))).await;
    assert_eq!((bad.status_code, json_of(&bad)["field"].as_str()), (400, Some("input")));

    // Without a token the function serves no API at all, and says how to turn it on.
    let off = bare.handle(request("GET", "/api/runs", Some("tok"), None)).await;
    assert_eq!(off.status_code, 404);
    assert!(json_of(&off)["error"].as_str().unwrap_or_default().contains("BATON_API_TOKEN_ARN"));
    let _ = std::fs::remove_dir_all(dir);
}
