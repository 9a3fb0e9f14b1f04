//! A worker inside an invocation with a deadline (a Lambda function's timeout): a call's limit is
//! cut to what is left of the invocation, and a call with too little left is not started (its
//! message goes back for a fresh invocation) and not claimed, so nothing is lost or run twice.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use baton_core::engine::{ErrorKind, StepError};
use baton_embedded::sqlite::{Durability, SqliteStore};
use baton_runtime::StoreError;
use baton_runtime::clock::SystemClock;
use baton_runtime::messages::{CoordinatorMessage, Outcome};
use baton_runtime::ports::{Clock, Dispatcher, Inbound, OutboxItem, Tool, ToolCall};
use baton_runtime::tools::ToolRegistry;
use baton_runtime::worker::Worker;
use serde_json::{Value, json};

/// A call that takes ten seconds.
struct Slow;

#[async_trait]
impl Tool for Slow {
    async fn call(&self, _: &ToolCall) -> Result<Value, StepError> {
        tokio::time::sleep(Duration::from_secs(10)).await;
        Ok(json!("finally"))
    }
}

/// Keeps what the worker sends to the coordinator.
#[derive(Default)]
struct Sent(Mutex<Vec<String>>);

#[async_trait]
impl Dispatcher for Sent {
    fn serves(&self, _: &str) -> bool {
        true
    }
    async fn deliver(&self, _: &[OutboxItem], _: u64) -> Result<(), StoreError> {
        Ok(())
    }
    async fn to_coordinator(&self, bodies: &[String]) -> Result<(), StoreError> {
        self.0.lock().map_err(|_| StoreError::Backend("poisoned".into()))?.extend(bodies.iter().cloned());
        Ok(())
    }
    async fn dead_letter(&self, _: &str, _: &Inbound, _: &str) -> Result<(), StoreError> {
        Ok(())
    }
}

fn message(key: &str, timeout_ms: Option<u64>) -> Inbound {
    let call = ToolCall {
        run_id: "run-1".into(),
        node: "slow".into(),
        step: "slow".into(),
        attempt: 1,
        tool: "slow".into(),
        input: json!({}),
        idempotency_key: key.into(),
        timeout_ms,
        usage: Default::default(),
    };
    Inbound {
        id: key.into(),
        body: serde_json::to_string(&call).expect("json"),
        receive_count: 1,
        signature: None,
        usage: Default::default(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_fit_inside_the_invocation_or_wait_for_the_next() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Arc::new(SqliteStore::open(dir.path(), Durability::Normal).expect("store"));
    let mut tools = ToolRegistry::default();
    tools.register("slow", Arc::new(Slow));
    let sent = Arc::new(Sent::default());
    let worker = Arc::new(Worker::new(store, tools, sent.clone(), Arc::new(SystemClock)));
    let now = SystemClock.now_ms();

    // Four seconds left, the step allows five minutes: cut to what is left less the time to send.
    let started = Instant::now();
    let report = worker.handle_batch_until("slow", &[message("k-1", Some(300_000))], Some(now + 4_000)).await;
    let took = started.elapsed();
    assert!(report.failed.is_empty() && report.dead_lettered.is_empty(), "{report:?}");
    assert!(took < Duration::from_secs(5), "the call ran past the invocation: {took:?}");
    let bodies = sent.0.lock().expect("sent").clone();
    assert_eq!(bodies.len(), 1);
    let Ok(CoordinatorMessage::Result { outcome: Outcome::Error(e), .. }) = serde_json::from_str(&bodies[0]) else {
        panic!("not a failed result: {}", bodies[0]);
    };
    assert_eq!(e.kind, ErrorKind::Timeout);
    assert!(e.message.contains("what was left of the worker's invocation"), "{}", e.message);

    // 0.6 s left, 0.5 s of it kept for sending: not started, not claimed, left for redelivery.
    let report = worker.handle_batch_until("slow", &[message("k-2", None)], Some(SystemClock.now_ms() + 600)).await;
    assert_eq!(report.failed, ["k-2"], "{report:?}");
    assert_eq!(sent.0.lock().expect("sent").len(), 1, "nothing was sent for it");
    // A fresh invocation claims it: it was never claimed by the first.
    let report =
        worker.handle_batch_until("slow", &[message("k-2", Some(1_000))], Some(SystemClock.now_ms() + 60_000)).await;
    assert!(report.failed.is_empty(), "{report:?}");
    assert_eq!(sent.0.lock().expect("sent").len(), 2);
}
