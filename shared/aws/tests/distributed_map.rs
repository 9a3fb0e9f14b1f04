//! A distributed map (`items_from`) on the emulator stack: a JSON Lines object in S3 read in
//! batches, one child run per batch through the real queues, each batch's http call made by
//! the worker, results and the manifest written back to S3. The coordinator "crashes" mid-map:
//! it receives a batch of messages and dies before handling them, so SQS shows them again
//! after their visibility timeout, and a new coordinator finishes the map. No batch runs twice.
//!
//! `BATON_MAP_ITEMS` sets the item count (default 10,000 in batches of 500; the documented
//! 100,000-item run uses batches of 1,000). The test prints items/s and requests per item.

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use baton_core::engine::ITEMS_TOOL;
use baton_runtime::ports::RunStore;
use baton_tools::aws::{AwsCall, AwsSettings, AwsTool};
use baton_tools::items::ItemsTool;
use serde_json::{Value, json};
use support::fault_stack::{Service, Stack};

const CHILD: &str = r#"
name: call-batch
steps:
  - id: call
    tool: http
    with: {method: POST, url: "{{ .input.base }}/batch/{{ .input.batch.index }}", body: {n: "{{ .input.items | length }}"}}
  - id: sum
    tool: transform
    with: {expr: '[.input.items[].amount] | add'}
"#;

fn map(bucket: &str, batch: u64) -> String {
    format!(
        r#"
name: map-orders
input_schema: {{type: object, required: [base], properties: {{base: {{type: string}}}}}}
steps:
  - id: orders
    tool: workflow
    max_concurrency: 8
    items_from: {{source: "s3://{bucket}/in/orders.jsonl", batch_size: {batch}, results: "s3://{bucket}/out/"}}
    with: {{name: call-batch, input: {{base: "{{{{ .input.base }}}}"}}}}
"#
    )
}

fn s3_tool() -> AwsTool {
    AwsTool::with_settings(AwsSettings {
        endpoint: Some(support::aws_endpoint()),
        endpoints: Default::default(),
        signer: Some(("testing".into(), "testing".into(), None, "us-east-1".into())),
        chain: None,
    })
}

async fn s3(tool: &AwsTool, action: &str, params: Value) -> Value {
    let call = AwsCall { service: "s3".into(), action: action.into(), params: Some(params), role_arn: None };
    tool.invoke(&call).await.unwrap_or_else(|e| panic!("S3 {action}: {e:?}"))
}

/// Receives up to ten coordinator messages and drops them unhandled, as a coordinator that
/// dies after the receive would: SQS shows them again once their visibility timeout passes.
async fn die_holding_messages(stack: &Stack) -> usize {
    let url = stack.url("coordinator").await;
    let got = stack.sqs.receive_message().queue_url(&url).max_number_of_messages(10).send().await.expect("receive");
    got.messages().len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_map_over_an_s3_object_survives_a_coordinator_crash_without_rerunning_batches() {
    let items: u64 = std::env::var("BATON_MAP_ITEMS").ok().and_then(|v| v.parse().ok()).unwrap_or(10_000);
    let batch = if items >= 100_000 { 1_000 } else { 500 };
    let batches = items.div_ceil(batch);
    let stack = Stack::create().await;
    let service = Service::start(Duration::ZERO);
    let aws = s3_tool();
    let bucket = format!("{}-data", stack.name);
    s3(&aws, "CreateBucket", json!({"Bucket": bucket})).await;
    let body: String = (0..items).map(|i| format!("{{\"id\":{i},\"amount\":{}}}\n", i % 7)).collect();
    s3(&aws, "PutObject", json!({"Bucket": bucket, "Key": "in/orders.jsonl", "Body": body})).await;

    let child = baton_core::load_definition(None, CHILD).expect("child");
    stack.store.put_definition(&child.hash, "call-batch", CHILD).await.expect("definition");
    stack.store.publish_definition("call-batch", &child.hash).await.expect("publish");
    let items_tool = Arc::new(ItemsTool::new(aws.clone()));
    let coordinator = || stack.coordinator().with_tool(ITEMS_TOOL, items_tool.clone());
    let worker = stack.worker();

    baton_aws::metering::reset();
    let began = Instant::now();
    let first = coordinator();
    let run_id = stack.start(&first, &map(&bucket, batch), json!({"base": service.base})).await;
    // Half the batches, then the crash.
    loop {
        let calls = stack.take("http").await;
        if !calls.is_empty() {
            let r = worker.handle_batch("http", &calls).await;
            assert!(r.failed.is_empty() && r.dead_lettered.is_empty(), "{r:?}");
        }
        let msgs = stack.take("coordinator").await;
        if !msgs.is_empty() {
            let r = first.handle_batch(&msgs).await;
            assert!(r.failed.is_empty() && r.dead_lettered.is_empty(), "{r:?}");
        }
        if service.side_effects() as u64 >= batches / 2 {
            break;
        }
        if calls.is_empty() && msgs.is_empty() {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    let held = die_holding_messages(&stack).await;
    assert!(held > 0, "the crash held messages in flight");
    drop(first);
    // The queue's visibility timeout is 1 s: the held messages come back to the next one.
    tokio::time::sleep(Duration::from_millis(1_200)).await;
    let second = coordinator();
    let out = stack.pump(&second, &worker, &run_id, 1).await;
    let elapsed = began.elapsed();
    let mut usage = baton_aws::metering::total();
    // The SDK clients' counter sees DynamoDB, SQS, Scheduler and EventBridge; the items tool's
    // S3 requests go through the aws tool, which records them in each run's account.
    assert!(!usage.keys().any(|k| k.starts_with("S3.")), "no SDK S3 request to count twice: {usage:?}");
    for header in stack.store.list_runs(10_000).await.expect("runs") {
        let s3: baton_runtime::metering::Usage =
            header.usage.iter().filter(|(k, _)| k.starts_with("S3.")).map(|(k, v)| (k.clone(), *v)).collect();
        baton_runtime::metering::add(&mut usage, &s3);
    }
    let s3_requests: u64 = usage.iter().filter(|(k, _)| k.starts_with("S3.")).map(|(_, v)| v).sum();
    assert!(s3_requests >= 2 * batches + 2, "a split, a read and a write per batch, a manifest: {usage:?}");

    assert_eq!(out["status"], "succeeded", "{out}");
    let result = &out["steps"]["orders"]["output"];
    assert_eq!(result["items"], items, "{result}");
    assert_eq!(result["succeeded"], items);
    assert_eq!(result["batches"], batches);
    assert_eq!(service.side_effects() as u64, batches, "each batch's call happened once ({held} messages were held)");

    let manifest =
        s3(&aws, "GetObject", json!({"Bucket": bucket, "Key": format!("out/{run_id}/orders/manifest.json")})).await;
    let manifest: Value = serde_json::from_str(manifest["Body"].as_str().unwrap_or("")).expect("manifest json");
    assert_eq!(manifest["succeeded"], items);
    let listed = s3(&aws, "ListObjectsV2", json!({"Bucket": bucket, "Prefix": format!("out/{run_id}/orders/")})).await;
    assert_eq!(
        listed["Contents"].as_array().map(Vec::len),
        Some(batches as usize + 1),
        "a result per batch and the manifest"
    );
    let last = s3(
        &aws,
        "GetObject",
        json!({"Bucket": bucket, "Key": format!("out/{run_id}/orders/batch-{:06}.json", batches - 1)}),
    )
    .await;
    let last: Value = serde_json::from_str(last["Body"].as_str().unwrap_or("")).expect("result json");
    assert!(last["sum"].is_number(), "the child's output is the batch's result: {last}");

    // The run holds descriptors, not items: its state stays small whatever the item count.
    let run = stack.store.load_run(&run_id).await.expect("load").expect("run");
    let state_bytes = serde_json::to_vec(&run.state).map(|b| b.len()).unwrap_or(0);
    assert!(state_bytes < 2_000 + batches as usize * 1_000, "state is {state_bytes} bytes");
    stack.verify(&run_id).await;

    let requests = baton_runtime::metering::requests(&usage);
    let usd = baton_aws::cost::estimate(&usage).usd;
    println!(
        "distributed map: {items} items in {batches} batches in {:.1} s = {:.0} items/s; {requests} requests ({:.4} per item, {s3_requests} of them S3), ${:.2} per million items; state {state_bytes} bytes; {held} messages held by the crash",
        elapsed.as_secs_f64(),
        items as f64 / elapsed.as_secs_f64(),
        requests as f64 / items as f64,
        usd / items as f64 * 1e6,
    );
}
