//! The [`Dispatcher`] on AWS: tool calls to `<stack>-<tool>` queues in batches of ten, results
//! to `<stack>-coordinator`, short retry backoffs as delayed messages (SQS allows up to 15
//! minutes), every other timer as a one-time EventBridge Scheduler `at(...)` schedule in group
//! `<stack>` targeting the coordinator queue, and dead letters to `<queue>-dlq` with the reason.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use crate::sdk_error::{aws_err, ok_unless};
use async_trait::async_trait;
use aws_sdk_scheduler::types::{ActionAfterCompletion, FlexibleTimeWindow, FlexibleTimeWindowMode, Target};
use aws_sdk_sqs::types::{MessageAttributeValue, MessageSystemAttributeName, SendMessageBatchRequestEntry};
use baton_core::ids::RunId;
use baton_runtime::StoreError;
use baton_runtime::message_auth::{MessageKey, SIGNATURE_ATTRIBUTE};
use baton_runtime::messages::{CoordinatorMessage, body_of};
use baton_runtime::metering::Usage;
use baton_runtime::ports::{DeadLetter, Dispatcher, Inbound, OutboxItem};
use sha2::Digest;

/// SQS's longest delivery delay.
const MAX_DELAY_SECONDS: u64 = 900;
/// SQS's batch limits.
const BATCH_ENTRIES: usize = 10;
const BATCH_BYTES: usize = 256 * 1024;
/// What a signature attribute adds to a message's size (name, type and 64 hex characters).
const SIGNATURE_BYTES: usize = 96;

/// Sends outbox work to the queues and schedules of one stack.
pub struct SqsDispatcher {
    sqs: aws_sdk_sqs::Client,
    scheduler: aws_sdk_scheduler::Client,
    stack: String,
    tools: Vec<String>,
    urls: Mutex<HashMap<String, String>>,
    coordinator_arn: Mutex<Option<String>>,
    role_arn: Option<String>,
    claims: crate::claim_check::ClaimCheck,
    /// Signs every message sent, so the coordinator can tell this stack's results from forged
    /// ones (see `baton_runtime::message_auth`).
    message_key: Option<Arc<MessageKey>>,
}

impl SqsDispatcher {
    /// A dispatcher for `stack` whose workers serve `tools` (queue `<stack>-<tool>` each).
    /// Schedules assume the role `BATON_SCHEDULER_ROLE_ARN`, or `<stack>-scheduler` in the
    /// coordinator queue's account.
    pub fn new(config: &aws_config::SdkConfig, stack: &str, tools: &[&str]) -> Self {
        Self {
            sqs: crate::metering::sqs(config),
            scheduler: crate::metering::scheduler(config),
            stack: stack.to_owned(),
            tools: tools.iter().map(|t| (*t).to_owned()).collect(),
            urls: Mutex::new(HashMap::new()),
            coordinator_arn: Mutex::new(None),
            role_arn: std::env::var("BATON_SCHEDULER_ROLE_ARN").ok().filter(|r| !r.is_empty()),
            claims: crate::claim_check::ClaimCheck::new(config, stack),
            message_key: None,
        }
    }

    /// Signs every message it sends with `key` (attribute `baton-signature`); `None` sends them
    /// unsigned.
    pub fn with_message_key(mut self, key: Option<Arc<MessageKey>>) -> Self {
        self.message_key = key;
        self
    }

    /// The URL of queue `<stack>-<family>` (looked up once).
    pub async fn queue_url(&self, family: &str) -> Result<String, StoreError> {
        let name = format!("{}-{family}", self.stack);
        if let Some(u) = self.urls.lock().ok().and_then(|m| m.get(&name).cloned()) {
            return Ok(u);
        }
        let url = crate::queues::url(&self.sqs, &name).await?;
        if let Ok(mut m) = self.urls.lock() {
            m.insert(name, url.clone());
        }
        Ok(url)
    }

    async fn coordinator_arn(&self) -> Result<String, StoreError> {
        if let Some(a) = self.coordinator_arn.lock().ok().and_then(|a| a.clone()) {
            return Ok(a);
        }
        let url = self.queue_url("coordinator").await?;
        let arn = crate::queues::arn(&self.sqs, &url).await?;
        if let Ok(mut a) = self.coordinator_arn.lock() {
            *a = Some(arn.clone());
        }
        Ok(arn)
    }

    /// Sends bodies (each with a delay in seconds) to queue `<stack>-<family>`, in batches.
    async fn send(&self, family: &str, bodies: &[(String, i32)]) -> Result<(), StoreError> {
        if bodies.is_empty() {
            return Ok(());
        }
        let url = self.queue_url(family).await?;
        let mut batch: Vec<SendMessageBatchRequestEntry> = Vec::new();
        let mut bytes = 0;
        for (i, (body, delay)) in bodies.iter().enumerate() {
            // The signature covers the body as the receiver reads it, after any claim check.
            let signature = self.message_key.as_ref().map(|k| k.sign(body));
            // Bodies over the claim-check threshold travel as a reference to the bucket.
            let body = &self.claims.check_in(body.clone()).await?;
            let size = body.len() + if signature.is_some() { SIGNATURE_BYTES } else { 0 };
            if !batch.is_empty() && (batch.len() == BATCH_ENTRIES || bytes + size > BATCH_BYTES) {
                self.send_batch(&url, std::mem::take(&mut batch)).await?;
                bytes = 0;
            }
            bytes += size;
            let mut entry = SendMessageBatchRequestEntry::builder().id(i.to_string()).message_body(body);
            if *delay > 0 {
                entry = entry.delay_seconds(*delay);
            }
            if let Some(sig) = signature {
                let value = MessageAttributeValue::builder()
                    .data_type("String")
                    .string_value(sig)
                    .build()
                    .map_err(aws_err("signature attribute"))?;
                entry = entry.message_attributes(SIGNATURE_ATTRIBUTE, value);
            }
            batch.push(entry.build().map_err(aws_err("SQS batch entry"))?);
        }
        self.send_batch(&url, batch).await
    }

    async fn send_batch(&self, url: &str, entries: Vec<SendMessageBatchRequestEntry>) -> Result<(), StoreError> {
        let out = self
            .sqs
            .send_message_batch()
            .queue_url(url)
            .set_entries(Some(entries))
            .send()
            .await
            .map_err(aws_err("SQS SendMessageBatch"))?;
        if let Some(f) = out.failed().first() {
            return Err(StoreError::Backend(format!(
                "SQS SendMessageBatch to {url}: {} of the batch failed, first: {} {}",
                out.failed().len(),
                f.code(),
                f.message().unwrap_or_default()
            )));
        }
        Ok(())
    }

    async fn schedule(&self, run_id: &RunId, id: &str, at: u64) -> Result<(), StoreError> {
        let arn = self.coordinator_arn().await?;
        let role = match &self.role_arn {
            Some(r) => r.clone(),
            None => {
                let account = arn.split(':').nth(4).unwrap_or("000000000000");
                format!("arn:aws:iam::{account}:role/{}-scheduler", self.stack)
            }
        };
        // Scheduler's invocation and its delivery to the queue are billed to the run too.
        let usage = Usage::from([("Scheduler.Invocation".to_owned(), 1), ("SQS.SendMessage".to_owned(), 1)]);
        let input = body_of(&CoordinatorMessage::Timer { run_id: run_id.clone(), timer: id.to_owned(), usage });
        let target =
            Target::builder().arn(arn).role_arn(role).input(input).build().map_err(aws_err("Scheduler target"))?;
        let window = FlexibleTimeWindow::builder()
            .mode(FlexibleTimeWindowMode::Off)
            .build()
            .map_err(aws_err("Scheduler window"))?;
        let created = self
            .scheduler
            .create_schedule()
            .name(schedule_name(run_id.as_str(), id))
            .group_name(&self.stack)
            .schedule_expression(at_expression(at))
            .schedule_expression_timezone("UTC")
            .flexible_time_window(window)
            .target(target)
            .action_after_completion(ActionAfterCompletion::Delete)
            .send()
            .await;
        // Delivered before (a sweep re-sends): the schedule exists.
        ok_unless("ConflictException", created, aws_err("Scheduler CreateSchedule"))
    }

    /// Short retry backoffs (and timers due within a second) ride on a delayed message; the rest
    /// are schedules.
    fn delayed(at: u64, retry: bool, now: u64) -> bool {
        let wait = at.saturating_sub(now).div_ceil(1000);
        // Due within a second (or already, as when a sweep re-sends it): a schedule for a moment
        // in the past is not what Scheduler is for.
        retry && wait <= MAX_DELAY_SECONDS || at <= now + 1_000
    }

    async fn unschedule(&self, run_id: &RunId, id: &str) -> Result<(), StoreError> {
        let deleted = self
            .scheduler
            .delete_schedule()
            .name(schedule_name(run_id.as_str(), id))
            .group_name(&self.stack)
            .send()
            .await;
        // Fired already (and deleted after completion), or never created.
        ok_unless("ResourceNotFoundException", deleted, aws_err("Scheduler DeleteSchedule"))
    }
}

/// A schedule name, unique per run and timer and valid for Scheduler (`[0-9a-zA-Z-_.]`, at
/// most 64 characters).
pub fn schedule_name(run_id: &str, timer: &str) -> String {
    let plain = format!("{run_id}.{timer}");
    if plain.len() <= 64 && plain.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')) {
        return plain;
    }
    let digest = sha2::Sha256::digest(plain.as_bytes());
    let hex: String = digest.iter().take(13).map(|b| format!("{b:02x}")).collect();
    format!("{run_id}.{hex}")
}

/// `at(yyyy-mm-ddThh:mm:ss)` in UTC, rounded up to the second so it never fires early.
pub fn at_expression(at_ms: u64) -> String {
    let secs = at_ms.div_ceil(1000);
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs);
    let stamp = humantime::format_rfc3339_seconds(t).to_string();
    format!("at({})", stamp.trim_end_matches('Z'))
}

/// The worker queue a tool's calls go to: the queue its `ToolSpec` places it on (`aws` calls
/// share the `http` worker), else the tool's own name.
fn queue_of(tool: &str) -> &str {
    match baton_core::plan::tools::spec(tool).map(|s| s.placement) {
        Some(baton_core::plan::tools::Placement::Worker { queue }) => queue,
        _ => tool,
    }
}

#[async_trait]
impl Dispatcher for SqsDispatcher {
    fn serves(&self, tool: &str) -> bool {
        self.tools.iter().any(|t| t == queue_of(tool))
    }

    fn expected_usage(&self, items: &[OutboxItem], now: u64) -> Usage {
        let mut calls: BTreeMap<&str, usize> = BTreeMap::new();
        let (mut delayed, mut created, mut deleted) = (0usize, 0u64, 0u64);
        for item in items {
            match item {
                OutboxItem::Call(call) => *calls.entry(queue_of(&call.tool)).or_insert(0) += 1,
                OutboxItem::Timer { at, retry, .. } => {
                    if Self::delayed(*at, *retry, now) {
                        delayed += 1;
                    } else {
                        created += 1;
                    }
                }
                OutboxItem::CancelTimer { .. } => deleted += 1,
                OutboxItem::Coordinator { .. } => delayed += 1,
            }
        }
        let batches: usize =
            calls.values().map(|n| n.div_ceil(BATCH_ENTRIES)).sum::<usize>() + delayed.div_ceil(BATCH_ENTRIES);
        let mut u = Usage::new();
        for (k, v) in [
            ("SQS.SendMessageBatch", batches as u64),
            ("Scheduler.CreateSchedule", created),
            ("Scheduler.DeleteSchedule", deleted),
        ] {
            if v > 0 {
                u.insert(k.to_owned(), v);
            }
        }
        u
    }

    fn send_usage(&self) -> Usage {
        Usage::from([("SQS.SendMessageBatch".to_owned(), 1)])
    }

    async fn deliver(&self, items: &[OutboxItem], now: u64) -> Result<(), StoreError> {
        // Calls first: a schedule that cannot be created must not hold back the work.
        let mut calls: BTreeMap<&str, Vec<(String, i32)>> = BTreeMap::new();
        let mut delayed = Vec::new();
        let mut schedules = Vec::new();
        for item in items {
            match item {
                OutboxItem::Call(call) => calls.entry(queue_of(&call.tool)).or_default().push((body_of(call), 0)),
                OutboxItem::Timer { run_id, id, at, retry } => {
                    if Self::delayed(*at, *retry, now) {
                        let body = body_of(&CoordinatorMessage::Timer {
                            run_id: run_id.clone(),
                            timer: id.clone(),
                            usage: Usage::new(),
                        });
                        delayed.push((body, at.saturating_sub(now).div_ceil(1000) as i32));
                    } else {
                        schedules.push(item);
                    }
                }
                OutboxItem::CancelTimer { .. } => schedules.push(item),
                OutboxItem::Coordinator { body } => delayed.push((body.clone(), 0)),
            }
        }
        for (tool, bodies) in calls {
            self.send(tool, &bodies).await?;
        }
        self.send("coordinator", &delayed).await?;
        for item in schedules {
            match item {
                OutboxItem::Timer { run_id, id, at, .. } => self.schedule(run_id, id, *at).await?,
                OutboxItem::CancelTimer { run_id, id } => self.unschedule(run_id, id).await?,
                OutboxItem::Call(_) | OutboxItem::Coordinator { .. } => {}
            }
        }
        Ok(())
    }

    async fn to_coordinator(&self, bodies: &[String]) -> Result<(), StoreError> {
        let bodies: Vec<(String, i32)> = bodies.iter().map(|b| (b.clone(), 0)).collect();
        self.send("coordinator", &bodies).await
    }

    async fn dead_letter(&self, queue: &str, message: &Inbound, reason: &str) -> Result<(), StoreError> {
        let url = self.queue_url(&format!("{queue}-dlq")).await?;
        let text = |v: &str| {
            MessageAttributeValue::builder().data_type("String").string_value(v).build().map_err(aws_err("attribute"))
        };
        self.sqs
            .send_message()
            .queue_url(url)
            .message_body(if message.body.is_empty() {
                "(empty body)".to_owned()
            } else {
                self.claims.check_in(message.body.clone()).await?
            })
            .message_attributes("baton-reason", text(&reason.chars().take(1000).collect::<String>())?)
            .message_attributes("baton-source-queue", text(&format!("{}-{queue}", self.stack))?)
            .message_attributes("baton-message-id", text(&message.id)?)
            .send()
            .await
            .map_err(aws_err("SQS SendMessage (dead letter)"))?;
        Ok(())
    }

    async fn dead_letters(&self, max: usize) -> Result<Vec<DeadLetter>, StoreError> {
        let mut out = Vec::new();
        let families = self.tools.iter().map(String::as_str).chain(["coordinator"]);
        for family in families {
            // A stack without this family's queues (or one that cannot be reached now) must not
            // keep the others' dead letters waiting.
            let url = match self.queue_url(&format!("{family}-dlq")).await {
                Ok(url) => url,
                Err(e) => {
                    tracing::warn!(family, error = %e, "cannot find the dead-letter queue");
                    continue;
                }
            };
            let received = match self
                .sqs
                .receive_message()
                .queue_url(&url)
                .max_number_of_messages(max.clamp(1, 10) as i32)
                .message_system_attribute_names(MessageSystemAttributeName::ApproximateReceiveCount)
                .message_attribute_names("All")
                .send()
                .await
            {
                Ok(r) => r,
                Err(e) => {
                    tracing::warn!(family, error = %aws_sdk_sqs::error::DisplayErrorContext(&e), "cannot read the dead-letter queue");
                    continue;
                }
            };
            for m in received.messages() {
                let Some(receipt) = m.receipt_handle() else { continue };
                let attribute = |name: &str| {
                    m.message_attributes().and_then(|a| a.get(name)).and_then(|v| v.string_value()).map(str::to_owned)
                };
                let raw = m.body().unwrap_or_default();
                // A body whose claim check cannot be read is kept for an operator, with why.
                let (body, unreadable) = match self.claims.check_out(raw).await {
                    Ok(body) => (body, None),
                    Err(e) => (raw.to_owned(), Some(format!("cannot fetch the claim-checked body: {e}"))),
                };
                out.push(DeadLetter {
                    queue: family.to_owned(),
                    message: Inbound {
                        id: m.message_id().unwrap_or_default().to_owned(),
                        body,
                        receive_count: m
                            .attributes()
                            .and_then(|a| a.get(&MessageSystemAttributeName::ApproximateReceiveCount))
                            .and_then(|c| c.parse().ok())
                            .unwrap_or(1),
                        signature: attribute(SIGNATURE_ATTRIBUTE),
                        usage: Usage::new(),
                    },
                    reason: attribute("baton-reason").or(unreadable),
                    handle: format!("{url} {receipt}"),
                });
            }
        }
        Ok(out)
    }

    async fn settle_dead_letter(&self, letter: &DeadLetter, done: bool) -> Result<(), StoreError> {
        let Some((url, receipt)) = letter.handle.split_once(' ') else {
            return Err(StoreError::Backend(format!("not a dead letter's handle: {}", letter.handle)));
        };
        if done {
            self.sqs
                .delete_message()
                .queue_url(url)
                .receipt_handle(receipt)
                .send()
                .await
                .map_err(aws_err("SQS DeleteMessage (dead letter)"))?;
        } else {
            // Kept for an operator: visible again at once, so the queue's alarm (on visible
            // messages) fires and whoever reads the queue sees it.
            self.sqs
                .change_message_visibility()
                .queue_url(url)
                .receipt_handle(receipt)
                .visibility_timeout(0)
                .send()
                .await
                .map_err(aws_err("SQS ChangeMessageVisibility (dead letter)"))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedule_names_are_valid_and_at_rounds_up() {
        let run = "0192f1a2-7c3d-7e4f-8a9b-0c1d2e3f4a5b";
        assert_eq!(schedule_name(run, "t1"), format!("{run}.t1"));
        let long = schedule_name(run, "retry:a very/long#timer[3]");
        assert!(long.len() <= 64 && long.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)), "{long}");
        assert_eq!(at_expression(1_764_086_400_000), "at(2025-11-25T16:00:00)");
        assert_eq!(at_expression(1_764_086_400_001), "at(2025-11-25T16:00:01)");
    }
}
