//! `mcp` steps on a stack: the coordinator routes them to the `http` worker queue, and the worker
//! calls a real MCP server (`@modelcontextprotocol/server-everything` over Streamable HTTP, from
//! `tests/mcp/node_modules`, installed by `scripts/check-prereqs`) with the step's arguments.

mod support;

use std::net::TcpListener;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use baton_runtime::ports::RunStore;
use serde_json::json;
use support::fault_stack::Stack;

/// `server-everything streamableHttp` on a free port, stopped when dropped.
struct McpServer {
    child: std::process::Child,
    port: u16,
}

impl McpServer {
    fn start() -> Self {
        let entry = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../../tests/mcp/node_modules/@modelcontextprotocol/server-everything/dist/index.js");
        assert!(entry.exists(), "{} is missing: run scripts/check-prereqs", entry.display());
        let port = TcpListener::bind("127.0.0.1:0").expect("a free port").local_addr().expect("addr").port();
        let child = std::process::Command::new("node")
            .arg(entry)
            .arg("streamableHttp")
            .env("PORT", port.to_string())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("node starts");
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "server-everything did not listen on {port}");
            std::thread::sleep(Duration::from_millis(100));
        }
        Self { child, port }
    }
}

impl Drop for McpServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_mcp_step_runs_on_the_http_worker_of_a_stack() {
    let server = McpServer::start();
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
