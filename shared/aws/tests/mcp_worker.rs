//! `mcp` steps on a stack: the coordinator routes them to the `http` worker queue, and the worker
//! calls a real MCP server (`@modelcontextprotocol/server-everything` over Streamable HTTP, from
//! `tests/mcp/node_modules`, installed by `scripts/check-prereqs`) with the step's arguments.

mod support;

use std::sync::Arc;

use baton_runtime::ports::RunStore;
use serde_json::json;
use support::fault_stack::Stack;

#[path = "../../tools/tests/support/mcp_everything.rs"]
mod mcp_everything;
use mcp_everything::HttpServer;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_mcp_step_runs_on_the_http_worker_of_a_stack() {
    let server = HttpServer::start();
    let stack = Stack::create().await;
    let (c, w) = (stack.coordinator(), stack.worker());
    let yaml = format!(
        r#"
name: mcp-on-a-stack
mcp_servers:
  everything: {{url: "http://127.0.0.1:{port}/mcp"}}
output: .steps.echo.output.text
steps:
  - id: echo
    tool: mcp
    with: {{server: everything, tool: echo, arguments: {{message: "from the http worker"}}}}
"#,
        port = server.port
    );
    let plan = Arc::new(baton_core::load_definition(None, &yaml).expect("valid"));
    let run_id = c.start(plan, &yaml, json!({}), None).await.expect("start");
    let calls = stack.take("http").await;
    assert_eq!(calls.len(), 1, "the call went to the http worker queue");
    assert!(calls[0].body.contains("\"tool\":\"mcp\""), "{}", calls[0].body);
    let report = w.handle_batch("http", &calls).await;
    assert!(report.failed.is_empty() && report.dead_lettered.is_empty(), "{report:?}");
    let out = stack.pump(&c, &w, &run_id, 1).await;
    assert_eq!(out["status"], "succeeded", "{out}");
    assert_eq!(out["output"], "Echo: from the http worker");
    let audit = stack.store.load_audit(&run_id).await.expect("audit");
    let called = audit.iter().find(|r| r.decision == "succeed_step").expect("the step's record");
    assert_eq!(called.values["tool"]["server"], "everything", "{}", called.values);
    stack.verify(&run_id).await;
}
