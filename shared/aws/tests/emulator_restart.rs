//! The store's emulator restarted mid-run, for real: the table lives on a DynamoDB Local process
//! of this test's own, started on a data directory (not in memory); while calls are in flight the
//! process is killed with SIGKILL and started again on the same directory and port. Requests
//! in flight when it dies fail or are lost after being applied (an ambiguous commit, decided by
//! whatever DynamoDB Local had written), and every request fails until it is back. The runs must
//! all succeed, each side effect must happen once per idempotency key, and every audit log must
//! verify. (The shared emulator itself is not restarted: the other tests of this binary use it at
//! the same time, and without persistence a restart would lose every stack's queues.)

mod support;

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use baton_runtime::ports::RunStore;
use serde_json::json;
use support::fault_stack::{CHAIN, Host, Service, Stack};

/// DynamoDB Local as `localstack/up` installs it (from npm, for both emulators it supports).
fn dynamodb_local() -> PathBuf {
    let lib = concat!(env!("CARGO_MANIFEST_DIR"), "/../../localstack/.dynamodb-local/package/lib");
    std::fs::read_dir(lib)
        .ok()
        .and_then(|d| {
            d.flatten()
                .map(|e| e.path())
                .find(|p| p.file_name().is_some_and(|n| n.to_string_lossy().starts_with("dynamodb_local_")))
        })
        .unwrap_or_else(|| panic!("no DynamoDB Local under {lib}: run localstack/up, which installs it"))
}

/// A DynamoDB Local process, killed when dropped (a failing test leaves no JVM behind).
struct Ddb(Child);

impl Drop for Ddb {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// One DynamoDB Local process on `port`, keeping its data in `data`.
fn start(lib: &Path, data: &Path, port: u16) -> Ddb {
    let child = Command::new("java")
        .arg(format!("-Djava.library.path={}", lib.join("DynamoDBLocal_lib").display()))
        .arg("-jar")
        .arg(lib.join("DynamoDBLocal.jar"))
        .args(["-sharedDb", "-dbPath"])
        .arg(data)
        .args(["-port", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("java (DynamoDB Local needs Java 17+)");
    let deadline = Instant::now() + Duration::from_secs(60);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "DynamoDB Local did not listen on {port} within a minute");
        std::thread::sleep(Duration::from_millis(100));
    }
    Ddb(child)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stores_emulator_killed_and_restarted_mid_run_loses_and_duplicates_nothing() {
    let lib = dynamodb_local();
    let data = tempfile::tempdir().expect("tempdir");
    let port = std::net::TcpListener::bind("127.0.0.1:0").expect("port").local_addr().expect("addr").port();
    let mut ddb_process = start(&lib, data.path(), port);
    let ddb_endpoint = format!("http://127.0.0.1:{port}");
    let stack = Stack::create_on(&ddb_endpoint).await;
    // Calls take a while, so some are in flight when the store goes away.
    let service = Service::start(Duration::from_millis(400));
    let via_aws = baton_aws::config::for_emulator(&support::aws_endpoint()).await;
    let via_ddb = baton_aws::config::for_emulator(&ddb_endpoint).await;
    let c = stack.coordinator();
    let mut runs = Vec::new();
    for _ in 0..6 {
        runs.push(stack.start(&c, CHAIN, json!({"base": service.base})).await);
    }
    let host = Host::start(&stack, &via_aws, &via_ddb);
    // Twice: once while the first calls are out, once later in the runs.
    for pause in [Duration::from_millis(600), Duration::from_millis(1_500)] {
        tokio::time::sleep(pause).await;
        let calls_before = service.requests();
        // SIGKILL: nothing is flushed or closed on the way down.
        ddb_process.0.kill().expect("SIGKILL DynamoDB Local");
        let _ = ddb_process.0.wait();
        tokio::time::sleep(Duration::from_secs(2)).await;
        ddb_process = start(&lib, data.path(), port);
        eprintln!("DynamoDB Local killed and restarted; {calls_before} calls had reached the service");
    }
    stack.wait_ended(&runs, Duration::from_secs(180)).await;
    host.stop().await;
    for id in &runs {
        let run = stack.store.load_run(id).await.expect("load").expect("run");
        assert_eq!(run.state.status, baton_core::engine::RunStatus::Succeeded, "{id}: {:?}", run.state.error);
        stack.verify(id).await;
    }
    // A call whose result could not be recorded while the store was down is sent again, with
    // the same key: the service answers it as before and no second side effect happens.
    let requests = service.requests.lock().expect("requests").clone();
    assert!(requests.iter().all(|(_, key)| key.is_some()), "every call carries its idempotency key");
    assert_eq!(service.side_effects(), 2 * runs.len(), "one side effect per http step");
    let effects = service.effects.lock().expect("effects").clone();
    let again: usize = effects.values().map(|n| n - 1).sum();
    eprintln!("{} calls, {} keys, {again} sent again after a restart", requests.len(), effects.len());
    drop(ddb_process);
    support::fault_stack::injected(2);
}
