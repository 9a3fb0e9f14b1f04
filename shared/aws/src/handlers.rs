//! The Lambda handlers, shared by the function binaries (`functions/*`) and `baton dev`, which
//! calls them with the same `aws_lambda_events` shapes: an SQS batch in, partial batch failures
//! out. Dead-lettered messages count as handled (they are on the DLQ with their reason).

use std::sync::Arc;

use aws_lambda_events::event::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent};
use baton_runtime::Coordinator;
use baton_runtime::clock::SystemClock;
use baton_runtime::metering::Usage;
use baton_runtime::ports::{BatchReport, Inbound, RunStore};
use baton_runtime::tools::{ToolRegistry, TransformTool};
use baton_runtime::worker::Worker;

use crate::{DynamoStore, EventBridgeBus, SqsDispatcher};

/// Tool families that have a worker queue and function (`<stack>-<tool>`, `functions/worker-<tool>`).
/// `transform` runs inside the coordinator; `sleep` and `human` are timers and tasks.
pub const WORKER_TOOLS: &[&str] = &["http"];

/// The coordinator of `stack`: runs in DynamoDB table `<stack>-runs`, lifecycle events on
/// `<stack>-bus`, work through the stack's queues and schedules. Only pure tools run inline.
pub fn coordinator(config: &aws_config::SdkConfig, stack: &str) -> Coordinator {
    let store = DynamoStore::new(config, format!("{stack}-runs"));
    coordinator_on(Arc::new(store), config, stack)
}

/// The coordinator of `stack` on a given store (tests point DynamoDB at another endpoint).
pub fn coordinator_on(store: Arc<dyn RunStore>, config: &aws_config::SdkConfig, stack: &str) -> Coordinator {
    let bus = EventBridgeBus::new(config, format!("{stack}-bus"));
    let mut tools = ToolRegistry::default();
    tools.register("transform", Arc::new(TransformTool));
    Coordinator::new(store, tools, Arc::new(SystemClock))
        .with_bus(Arc::new(bus))
        .with_dispatcher(Arc::new(SqsDispatcher::new(config, stack, WORKER_TOOLS)))
}

/// The worker of `stack` with the built-in tools (claims in `<stack>-runs`).
pub fn worker(config: &aws_config::SdkConfig, stack: &str) -> Arc<Worker> {
    worker_on(Arc::new(DynamoStore::new(config, format!("{stack}-runs"))), config, stack)
}

/// The worker of `stack` on a given store.
pub fn worker_on(store: Arc<dyn RunStore>, config: &aws_config::SdkConfig, stack: &str) -> Arc<Worker> {
    Arc::new(Worker::new(
        store,
        ToolRegistry::builtin(),
        Arc::new(SqsDispatcher::new(config, stack, WORKER_TOOLS)),
        Arc::new(SystemClock),
    ))
}

/// The records of an SQS event as handler input.
pub fn inbound(event: &SqsEvent) -> Vec<Inbound> {
    event
        .records
        .iter()
        .enumerate()
        .map(|(i, r)| Inbound {
            id: r.message_id.clone().unwrap_or_default(),
            body: r.body.clone().unwrap_or_default(),
            receive_count: r.attributes.get("ApproximateReceiveCount").and_then(|c| c.parse().ok()).unwrap_or(1),
            // The event source mapping's receive and delete of the batch, and the invocation.
            usage: if i == 0 {
                Usage::from([
                    ("SQS.ReceiveMessage".to_owned(), 1),
                    ("SQS.DeleteMessageBatch".to_owned(), 1),
                    ("Lambda.Invoke".to_owned(), 1),
                ])
            } else {
                Usage::new()
            },
        })
        .collect()
}

/// A report as Lambda's partial batch response.
pub fn batch_response(report: &BatchReport) -> SqsBatchResponse {
    let mut response = SqsBatchResponse::default();
    response.batch_item_failures = report
        .failed
        .iter()
        .map(|id| {
            let mut f = BatchItemFailure::default();
            f.item_identifier = id.clone();
            f
        })
        .collect();
    response
}

/// The coordinator function's handler.
pub async fn handle_coordinator(coordinator: &Coordinator, event: SqsEvent) -> SqsBatchResponse {
    let report = coordinator.handle_batch(&inbound(&event)).await;
    batch_response(&report)
}

/// A worker function's handler for tool family `family`.
pub async fn handle_worker(worker: &Arc<Worker>, family: &str, event: SqsEvent) -> SqsBatchResponse {
    let report = worker.handle_batch(family, &inbound(&event)).await;
    batch_response(&report)
}
