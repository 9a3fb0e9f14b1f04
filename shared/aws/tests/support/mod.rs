//! Test support: make sure the local AWS endpoint runs (starting it with `localstack/up` when it
//! does not), and give each test a fresh table.

#![allow(dead_code)]

use std::net::TcpStream;
use std::sync::Mutex;
use std::time::Duration;

use baton_aws::DynamoStore;

/// The emulator endpoint (`BATON_TEST_AWS_ENDPOINT`, default http://127.0.0.1:4566).
pub fn endpoint() -> String {
    std::env::var("BATON_TEST_AWS_ENDPOINT").unwrap_or_else(|_| "http://127.0.0.1:4566".into())
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
        assert!(status.success(), "localstack/up failed: the DynamoDB tests need the local AWS endpoint");
    }
    *started = true;
    assert!(reachable(&endpoint), "no AWS endpoint at {endpoint}: run localstack/up");
    endpoint
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
