//! `baton dev`: the whole stack in one process against an AWS endpoint (the local emulator or a
//! real account). It long-polls the coordinator queue and each worker queue, hands every batch
//! to the very handlers the Lambda functions run (as `aws_lambda_events` SQS events), deletes
//! what the handlers did not report as failed (as an event source mapping does), sweeps the
//! outbox, and fires due one-time schedules. No emulator runs EventBridge Scheduler targets, so
//! the firing is emulator-only behaviour: on AWS, Scheduler itself delivers them.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use aws_lambda_events::event::sqs::{SqsEvent, SqsMessage};
use aws_sdk_sqs::types::{DeleteMessageBatchRequestEntry, MessageSystemAttributeName};
use baton_runtime::StoreError;
use baton_runtime::message_auth::MessageKey;

use crate::handlers;
use crate::sdk_error::aws_err;

/// How `baton dev` runs.
#[derive(Debug, Clone)]
pub struct DevOptions {
    /// Long-poll wait per receive (seconds, 0–20).
    pub wait_seconds: i32,
    /// Stop after this many coordinator-queue messages (tests); `None` runs until shutdown.
    pub max_messages: Option<usize>,
    /// How often to look for due schedules and stale outbox rows.
    pub tick: Duration,
    /// Outbox rows older than this are re-sent by the sweep (ms).
    pub outbox_lease_ms: u64,
    /// Where to record each coordinator handler call as (messages, microseconds), when the
    /// caller wants them while the host runs (benchmarks).
    pub timings: Option<Timings>,
}

impl Default for DevOptions {
    fn default() -> Self {
        Self {
            wait_seconds: 2,
            max_messages: None,
            tick: Duration::from_millis(500),
            outbox_lease_ms: 10_000,
            timings: None,
        }
    }
}

/// What a dev session handled.
#[derive(Debug, Default, Clone)]
pub struct DevStats {
    /// Coordinator-queue messages handled.
    pub coordinator_messages: usize,
    /// Worker-queue messages handled.
    pub worker_messages: usize,
    /// Schedules fired.
    pub schedules_fired: usize,
    /// Outbox rows re-sent by the sweep.
    pub swept: usize,
    /// Coordinator handler calls: (messages in the batch, microseconds in the handler).
    pub coordinator_batches: Vec<(usize, u64)>,
}

/// Runs the stack until `shutdown` fires (or `max_messages` coordinator messages were handled).
pub async fn serve(
    config: &aws_config::SdkConfig,
    stack: &str,
    options: DevOptions,
    shutdown: impl Future<Output = ()>,
) -> Result<DevStats, StoreError> {
    // The same key as the stack's coordinator function, so runs hosted here are sealed alike.
    let store = crate::audit_signing::signed_store(config, stack)
        .await
        .map_err(|e| StoreError::Backend(format!("audit signing key: {e}")))?;
    // The stack's message key, or one of this process's own: its coordinator and workers are
    // all here, so results from anywhere else are refused either way.
    let message_key = crate::message_signing::message_key_from_env(config)
        .await
        .map_err(|e| StoreError::Backend(format!("message key: {e}")))?
        .unwrap_or_else(|| Arc::new(MessageKey::random()));
    // `BATON_INLINE_CALL_MS` as the deployed coordinator function reads it.
    let inline = handlers::inline_calls_from_env(config, stack).map_err(StoreError::Backend)?;
    let coordinator = Arc::new(handlers::CoordinatorFunction::signed(
        Arc::new(store),
        config,
        stack,
        Some(message_key.clone()),
        inline,
    ));
    let workers = handlers::worker_tools()
        .into_iter()
        .map(|f| Arc::new(handlers::WorkerFunction::signed(config, stack, f, message_key.clone())))
        .collect();
    serve_with(config, stack, coordinator, workers, options, shutdown).await
}

/// [`serve`] with a given coordinator and worker (benchmarks and tests that keep DynamoDB on
/// another endpoint than the queues).
pub async fn serve_with(
    config: &aws_config::SdkConfig,
    stack: &str,
    coordinator: Arc<handlers::CoordinatorFunction>,
    workers: Vec<Arc<handlers::WorkerFunction>>,
    options: DevOptions,
    shutdown: impl Future<Output = ()>,
) -> Result<DevStats, StoreError> {
    let sqs = crate::metering::sqs(config);
    let coordinator_messages = Arc::new(AtomicUsize::new(0));
    let timings: Timings = options.timings.clone().unwrap_or_default();
    let worker_messages = Arc::new(AtomicUsize::new(0));
    let mut tasks = tokio::task::JoinSet::new();

    let url = crate::queues::url(&sqs, &format!("{stack}-coordinator")).await?;
    {
        let (sqs, url, c, count, opts, t) = (
            sqs.clone(),
            url.clone(),
            coordinator.clone(),
            coordinator_messages.clone(),
            options.clone(),
            timings.clone(),
        );
        tasks.spawn(async move {
            poll(&sqs, &url, opts.wait_seconds, count, Some(t), |event| {
                let c = c.clone();
                async move { c.handle(event).await }
            })
            .await
        });
    }
    for w in workers {
        let url = crate::queues::url(&sqs, &format!("{stack}-{}", w.family())).await?;
        let (sqs, count, opts) = (sqs.clone(), worker_messages.clone(), options.clone());
        tasks.spawn(async move {
            poll(&sqs, &url, opts.wait_seconds, count, None, |event| {
                let w = w.clone();
                async move { w.handle(event).await }
            })
            .await
        });
    }
    let scheduler = crate::metering::scheduler(config);
    let mut stats = DevStats::default();
    tokio::pin!(shutdown);
    let mut tick = tokio::time::interval(options.tick);
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            Some(done) = tasks.join_next() => {
                // A poller only ends on an error: stop and say why.
                tasks.abort_all();
                return match done {
                    Ok(Err(e)) => Err(e),
                    _ => Err(StoreError::Backend("a queue poller stopped".into())),
                };
            }
            _ = tick.tick() => {
                match fire_due_schedules(&scheduler, &sqs, stack).await {
                    Ok(n) => stats.schedules_fired += n,
                    Err(e) => tracing::warn!(error = %e, "firing due schedules failed"),
                }
                match coordinator.coordinator().sweep(options.outbox_lease_ms).await {
                    Ok(n) => stats.swept += n,
                    Err(e) => tracing::warn!(error = %e, "outbox sweep failed"),
                }
                if let Err(e) = coordinator.coordinator().recover_dead_letters().await {
                    tracing::warn!(error = %e, "failing the attempts of dead letters failed");
                }
                if let Err(e) = coordinator.coordinator().flush_bus().await {
                    tracing::warn!(error = %e, "publishing lifecycle events failed");
                }
            }
        }
        if options.max_messages.is_some_and(|n| coordinator_messages.load(Ordering::SeqCst) >= n) {
            break;
        }
    }
    tasks.abort_all();
    stats.coordinator_messages = coordinator_messages.load(Ordering::SeqCst);
    stats.worker_messages = worker_messages.load(Ordering::SeqCst);
    stats.coordinator_batches = timings.lock().map(|t| t.clone()).unwrap_or_default();
    Ok(stats)
}

/// Coordinator handler calls as (messages in the batch, microseconds in the handler).
pub type Timings = Arc<std::sync::Mutex<Vec<(usize, u64)>>>;

/// One queue's event source mapping: receive, hand over, delete what succeeded.
async fn poll<F, Fut>(
    sqs: &aws_sdk_sqs::Client,
    url: &str,
    wait_seconds: i32,
    count: Arc<AtomicUsize>,
    timings: Option<Timings>,
    handler: F,
) -> Result<(), StoreError>
where
    F: Fn(SqsEvent) -> Fut,
    Fut: Future<Output = aws_lambda_events::event::sqs::SqsBatchResponse>,
{
    loop {
        let received = sqs
            .receive_message()
            .queue_url(url)
            .max_number_of_messages(10)
            .wait_time_seconds(wait_seconds)
            .message_system_attribute_names(MessageSystemAttributeName::ApproximateReceiveCount)
            .message_attribute_names("All")
            .send()
            .await;
        let received = match received {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(queue = url, error = %aws_sdk_sqs::error::DisplayErrorContext(&e), "receive failed; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        if received.messages().is_empty() {
            continue;
        }
        let mut event = SqsEvent::default();
        let mut receipts = Vec::new();
        for m in received.messages() {
            let mut record = SqsMessage::default();
            record.message_id = m.message_id().map(str::to_owned);
            record.receipt_handle = m.receipt_handle().map(str::to_owned);
            record.body = m.body().map(str::to_owned);
            if let Some(attrs) = m.attributes() {
                for (k, v) in attrs {
                    record.attributes.insert(k.as_str().to_owned(), v.clone());
                }
            }
            // As the event source mapping hands them over: the sender's signature among them.
            for (k, v) in m.message_attributes().into_iter().flatten() {
                let mut a = aws_lambda_events::event::sqs::SqsMessageAttribute::default();
                a.string_value = v.string_value().map(str::to_owned);
                a.data_type = Some(v.data_type().to_owned());
                record.message_attributes.insert(k.clone(), a);
            }
            record.event_source = Some("aws:sqs".into());
            receipts.push((
                m.message_id().unwrap_or_default().to_owned(),
                m.receipt_handle().unwrap_or_default().to_owned(),
            ));
            event.records.push(record);
        }
        let n = event.records.len();
        let started = std::time::Instant::now();
        let response = handler(event).await;
        if let Some(t) = &timings
            && let Ok(mut t) = t.lock()
        {
            t.push((n, started.elapsed().as_micros() as u64));
        }
        let failed: std::collections::HashSet<&str> =
            response.batch_item_failures.iter().map(|f| f.item_identifier.as_str()).collect();
        let entries: Vec<DeleteMessageBatchRequestEntry> = receipts
            .iter()
            .enumerate()
            .filter(|(_, (id, _))| !failed.contains(id.as_str()))
            .filter_map(|(i, (_, receipt))| {
                DeleteMessageBatchRequestEntry::builder().id(i.to_string()).receipt_handle(receipt).build().ok()
            })
            .collect();
        if !entries.is_empty()
            && let Err(e) = sqs.delete_message_batch().queue_url(url).set_entries(Some(entries)).send().await
        {
            // Undeleted messages come back after their visibility timeout; handlers are idempotent.
            tracing::warn!(queue = url, error = %aws_sdk_sqs::error::DisplayErrorContext(&e), "delete failed");
        }
        count.fetch_add(n, Ordering::SeqCst);
    }
}

/// Sends the input of every due one-time schedule in group `stack` to its target queue and
/// deletes the schedule (what `ActionAfterCompletion: DELETE` does on AWS). Returns how many fired.
pub async fn fire_due_schedules(
    scheduler: &aws_sdk_scheduler::Client,
    sqs: &aws_sdk_sqs::Client,
    stack: &str,
) -> Result<usize, StoreError> {
    let now = std::time::SystemTime::now();
    let mut fired = 0;
    let mut token = None;
    loop {
        let page = scheduler
            .list_schedules()
            .group_name(stack)
            .set_next_token(token)
            .send()
            .await
            .map_err(aws_err("Scheduler ListSchedules"))?;
        for summary in page.schedules() {
            let Some(name) = summary.name() else { continue };
            let got = scheduler.get_schedule().name(name).group_name(stack).send().await;
            let Ok(s) = got else { continue };
            let Some(due) = s.schedule_expression().and_then(parse_at) else { continue };
            if due > now {
                continue;
            }
            let Some(target) = s.target() else { continue };
            let queue = target.arn().rsplit(':').next().unwrap_or_default();
            let url = crate::queues::url(sqs, queue).await?;
            sqs.send_message()
                .queue_url(url)
                .message_body(target.input().unwrap_or("{}"))
                .send()
                .await
                .map_err(aws_err("SQS SendMessage (schedule target)"))?;
            let _ = scheduler.delete_schedule().name(name).group_name(stack).send().await;
            fired += 1;
        }
        match page.next_token() {
            Some(t) if !t.is_empty() => token = Some(t.to_owned()),
            _ => return Ok(fired),
        }
    }
}

/// The time of an `at(yyyy-mm-ddThh:mm:ss)` expression (UTC).
pub fn parse_at(expression: &str) -> Option<std::time::SystemTime> {
    let inner = expression.strip_prefix("at(")?.strip_suffix(')')?;
    humantime::parse_rfc3339(&format!("{inner}Z")).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn at_expressions_round_trip() {
        let t = parse_at(&crate::dispatch::at_expression(1_764_086_400_000)).expect("parses");
        assert_eq!(t.duration_since(std::time::UNIX_EPOCH).expect("after epoch").as_secs(), 1_764_086_400);
        assert!(parse_at("rate(5 minutes)").is_none());
    }
}
