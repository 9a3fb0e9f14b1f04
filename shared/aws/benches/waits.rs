//! What one event costs the coordinator in finding the waits it may end, with 10 and with
//! 10,000 open event waits in the table (one of them this event's), on the emulator's DynamoDB:
//! the requests and read units of the lookup by the event's source and detail type
//! (`RunStore::open_waits`) beside those of reading every open task (how it was done before),
//! and the time of each. Run with `cargo bench -p baton-aws --bench waits` after `localstack/up`.

use std::time::Instant;

use baton_aws::DynamoStore;
use baton_runtime::metering::{measure, requests};
use baton_runtime::ports::{Precondition, RunStore, TaskChange};
use baton_runtime::store_contract::{event_wait, transition};
use serde_json::json;

/// Tasks opened per transaction (DynamoDB allows 100 items, the run's own items included).
const PER_COMMIT: usize = 90;

fn wait(i: usize, run: &str, source: &str) -> TaskChange {
    let wait = json!({
        "pattern": {"source": [source], "detail-type": ["OrderPaid"]},
        "correlate_event": ".detail.order",
        "key": format!("order-{i}"),
    });
    event_wait(&format!("w-{i}"), run, &format!("n{i}"), wait, 1_000 + i as u64)
}

/// Opens `n` waits: the first on `acme.orders` (the event's source), the others on sources of
/// their own, as many workflows waiting on many systems would.
async fn open_waits(store: &DynamoStore, n: usize) {
    let mut i = 0;
    let mut run = 0;
    while i < n {
        let id = format!("run-{run}");
        let mut t = transition(&id, 1, Precondition::DoesNotExist, 1..=1);
        for _ in 0..PER_COMMIT.min(n - i) {
            let source = if i == 0 { "acme.orders".to_owned() } else { format!("system-{}.orders", i % 500) };
            t.tasks.push(wait(i, &id, &source));
            i += 1;
        }
        store.commit(&[t]).await.expect("commit");
        run += 1;
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let aws_endpoint = std::env::var("BATON_TEST_AWS_ENDPOINT").unwrap_or_else(|_| "http://127.0.0.1:4566".into());
    let endpoint = std::env::var("BATON_TEST_DYNAMODB_ENDPOINT").unwrap_or(aws_endpoint);
    let config = baton_aws::config::for_emulator(&endpoint).await;
    let event = json!({"source": "acme.orders", "detail-type": "OrderPaid", "detail": {"order": "order-0"}});
    let keys = baton_runtime::wait_index::event_keys(&event);
    println!("one event's lookup of the waits it may end (DynamoDB on the emulator at {endpoint})");
    for n in [10, 10_000] {
        let table = format!("waits{}-{n}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
        let store = DynamoStore::new(&config, table);
        store.ensure_table().await.expect("table (run localstack/up first)");
        open_waits(&store, n).await;
        let started = Instant::now();
        let (found, indexed) = measure(store.open_waits(&keys)).await;
        let indexed_ms = started.elapsed().as_secs_f64() * 1000.0;
        let found = found.expect("open waits");
        assert!(found.iter().any(|t| t.id.as_str() == "w-0"), "the event's wait is a candidate");
        let started = Instant::now();
        let (all, scan) = measure(store.open_tasks()).await;
        let scan_ms = started.elapsed().as_secs_f64() * 1000.0;
        let all = all.expect("open tasks");
        let units = |u: &baton_runtime::metering::Usage| u.get("DynamoDB.ReadUnits").copied().unwrap_or(0);
        println!(
            "{n:>6} open waits | by source and type: {} candidates, {} requests, {} read units, {indexed_ms:.1} ms | every open task: {} read, {} requests, {} read units, {scan_ms:.1} ms",
            found.len(),
            requests(&indexed),
            units(&indexed),
            all.len(),
            requests(&scan),
            units(&scan),
        );
    }
}
