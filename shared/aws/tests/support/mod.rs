//! Test support: make sure the local endpoints run (starting them with `localstack/up` when they
//! do not), and give each test a fresh table. Everything goes to the emulator at
//! `BATON_TEST_AWS_ENDPOINT` (default LocalStack on http://127.0.0.1:4566), DynamoDB to
//! `BATON_TEST_DYNAMODB_ENDPOINT` when set: with `BATON_EMULATOR=moto` that is DynamoDB Local on
//! port 8000, because moto does not keep concurrent transactions isolated (a cancelled transaction
//! can undo a concurrent committed one), and the store contract checks exactly that.

#![allow(dead_code)]

use std::net::TcpStream;
use std::sync::Mutex;
use std::time::Duration;

use baton_aws::DynamoStore;

pub mod fault_proxy;
pub mod fault_stack;

/// The emulator's endpoint (`BATON_TEST_AWS_ENDPOINT`, default http://127.0.0.1:4566).
pub fn aws_endpoint() -> String {
    std::env::var("BATON_TEST_AWS_ENDPOINT").unwrap_or_else(|_| "http://127.0.0.1:4566".into())
}

/// The DynamoDB endpoint (`BATON_TEST_DYNAMODB_ENDPOINT`, default the emulator's).
pub fn endpoint() -> String {
    std::env::var("BATON_TEST_DYNAMODB_ENDPOINT").unwrap_or_else(|_| aws_endpoint())
}

fn reachable(endpoint: &str) -> bool {
    let addr = endpoint.trim_start_matches("http://").trim_end_matches('/');
    addr.parse().ok().is_some_and(|a| TcpStream::connect_timeout(&a, Duration::from_millis(300)).is_ok())
}

/// Starts the emulator once per test process when nothing listens; fails loudly if it cannot.
pub fn ensure_emulator() -> String {
    static STARTED: Mutex<bool> = Mutex::new(false);
    let endpoint = endpoint();
    let mut started = STARTED.lock().unwrap_or_else(|e| e.into_inner());
    if !*started && !reachable(&endpoint) {
        let up = concat!(env!("CARGO_MANIFEST_DIR"), "/../../localstack/up");
        let status = std::process::Command::new(up).status().expect("run localstack/up");
        assert!(status.success(), "localstack/up failed: the AWS tests need the emulator");
    }
    *started = true;
    assert!(reachable(&endpoint), "no DynamoDB endpoint at {endpoint}: run localstack/up");
    endpoint
}

/// A client configuration for the emulator ([`aws_endpoint`]), started when it is down.
pub async fn moto_config() -> aws_config::SdkConfig {
    ensure_emulator();
    baton_aws::config::for_emulator(&aws_endpoint()).await
}

/// [`moto_config`] and a fresh suffix for the names of the resources a test creates.
pub async fn moto() -> (aws_config::SdkConfig, String) {
    (moto_config().await, uuid::Uuid::new_v4().simple().to_string())
}

/// A store on a new, empty table.
pub async fn fresh_store() -> DynamoStore {
    let endpoint = ensure_emulator();
    let config = baton_aws::config::for_emulator(&endpoint).await;
    let table = format!("test-{}", uuid::Uuid::new_v4());
    let store = DynamoStore::new(&config, table);
    store.ensure_table().await.expect("create table");
    store
}

/// A client configuration for an endpoint nobody listens on: every request fails to connect (an
/// AWS service that is down, whatever the emulator would answer).
pub async fn unreachable_config() -> aws_config::SdkConfig {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("port");
    let endpoint = format!("http://{}", closed.local_addr().expect("addr"));
    drop(closed);
    baton_aws::config::for_emulator(&endpoint).await
}

/// Approves the one open task (as `ops`, with no data) and drives `run` on: the run stopped at
/// a human step and goes on past it. Returns the task it answered.
pub async fn approve_open_task(
    c: &baton_runtime::Coordinator,
    run: &baton_core::ids::RunId,
) -> baton_runtime::ports::TaskRecord {
    let task = c.store().open_tasks().await.expect("tasks").pop().expect("a task");
    let answer = baton_core::engine::HumanAnswer {
        decision: baton_core::engine::Verdict::Approve,
        data: serde_json::json!({}),
        comment: None,
        by: Some("ops".into()),
        principal: None,
    };
    c.answer_task(&task.id, answer).await.expect("answer");
    c.drive(std::slice::from_ref(run), std::future::pending()).await.expect("drive");
    task
}
