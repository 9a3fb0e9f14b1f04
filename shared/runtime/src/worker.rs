//! The worker side of the queue backend: a batch of tool calls from one tool family's queue.
//! Each call claims its step attempt with a conditional write before it runs, so a duplicate
//! delivery never calls the tool twice while the first holder is alive; a finished attempt's
//! result is stored with the claim and sent again instead of calling again. A worker that dies
//! mid-call leaves a lease that runs out; the redelivered message then calls again with the same
//! idempotency key, which the downstream service uses to avoid a second side effect.

use std::sync::Arc;

use baton_core::engine::{ErrorKind, StepError};
use serde_json::Value;

use crate::messages::{CoordinatorMessage, Outcome, body_of};
use crate::metering::add;
use crate::ports::{BatchReport, Claim, Clock, Dispatcher, Inbound, RunStore, ToolCall, ToolOutcome};
use crate::tools::ToolRegistry;

/// Extra lease time beyond a call's own timeout, for the result write and the send.
const LEASE_MARGIN_MS: u64 = 30_000;
/// Limit (and lease) for calls with neither a step `timeout` nor a `with.timeout`.
const DEFAULT_CALL_MS: u64 = 60_000;
/// What a worker keeps of its invocation after a call ends: storing the result with the claim
/// and sending it to the coordinator (tens of milliseconds each; small enough that a function
/// with Lambda's default 3 s timeout still runs its calls).
const SEND_RESERVE_MS: u64 = 500;

/// How many times a worker tries to store a result with its claim.
const STORE_RESULT_ATTEMPTS: u32 = 6;
/// A call is not started with less than this left of the invocation; its message goes back to
/// the queue for a fresh one.
const MIN_CALL_MS: u64 = 250;

/// Runs tool calls from a queue.
pub struct Worker {
    store: Arc<dyn RunStore>,
    tools: ToolRegistry,
    dispatcher: Arc<dyn Dispatcher>,
    clock: Arc<dyn Clock>,
    owner: String,
}

enum Handled {
    /// Send this result to the coordinator; then the message is done.
    Result(Box<CoordinatorMessage>),
    /// Leave the message for redelivery.
    Retry,
    /// Dead-lettered (or left for the redrive policy when that failed).
    Dead(Option<String>),
}

impl Worker {
    /// A worker over `store` (claims), `tools`, sending results through `dispatcher`.
    pub fn new(
        store: Arc<dyn RunStore>,
        tools: ToolRegistry,
        dispatcher: Arc<dyn Dispatcher>,
        clock: Arc<dyn Clock>,
    ) -> Self {
        let owner = format!("worker-{}", uuid::Uuid::new_v4());
        Self { store, tools, dispatcher, clock, owner }
    }

    /// Handles a batch from `queue` (the tool family's queue name, for dead-lettering): the calls
    /// run concurrently; their results go to the coordinator in one batch.
    pub async fn handle_batch(self: &Arc<Self>, queue: &str, messages: &[Inbound]) -> BatchReport {
        self.handle_batch_until(queue, messages, None).await
    }

    /// [`Worker::handle_batch`] inside an invocation that ends at `deadline_ms` (a Lambda
    /// function's deadline): no call runs past it. A call's limit is cut to what is left (minus
    /// the time to send its result), and a call with less than 250 ms left is not started: its
    /// message is left for redelivery to a fresh invocation, so the platform never kills a call
    /// half-way and then delivers it again and again.
    pub async fn handle_batch_until(
        self: &Arc<Self>,
        queue: &str,
        messages: &[Inbound],
        deadline_ms: Option<u64>,
    ) -> BatchReport {
        let mut set = tokio::task::JoinSet::new();
        for (i, m) in messages.iter().enumerate() {
            let me = self.clone();
            let m = m.clone();
            let queue = queue.to_owned();
            set.spawn(async move { (i, me.handle_one(&queue, &m, deadline_ms).await) });
        }
        let mut handled: Vec<Option<Handled>> = (0..messages.len()).map(|_| None).collect();
        while let Some(joined) = set.join_next().await {
            if let Ok((i, h)) = joined {
                handled[i] = Some(h);
            }
        }
        let mut report = BatchReport::default();
        let mut bodies = Vec::new();
        let mut sent_for = Vec::new();
        for (m, h) in messages.iter().zip(handled) {
            match h {
                Some(Handled::Result(mut msg)) => {
                    // The result batch's sends are paid by the first result of each ten.
                    if bodies.len() % 10 == 0
                        && let CoordinatorMessage::Result { usage, .. } = msg.as_mut()
                    {
                        add(usage, &self.dispatcher.send_usage());
                    }
                    bodies.push(body_of(msg.as_ref()));
                    sent_for.push(m.id.clone());
                }
                Some(Handled::Dead(Some(reason))) => report.dead_lettered.push((m.id.clone(), reason)),
                Some(Handled::Retry) | Some(Handled::Dead(None)) | None => report.failed.push(m.id.clone()),
            }
        }
        if !bodies.is_empty()
            && let Err(e) = self.dispatcher.to_coordinator(&bodies).await
        {
            // The results are stored with the claims: a redelivery sends them without a call.
            tracing::warn!(error = %e, "sending results to the coordinator failed; the calls will be redelivered");
            report.failed.extend(sent_for);
        }
        report
    }

    async fn handle_one(&self, queue: &str, m: &Inbound, deadline_ms: Option<u64>) -> Handled {
        let call: ToolCall = match serde_json::from_str(&m.body) {
            Ok(c) => c,
            Err(e) => {
                let reason = format!("body is not a baton tool call: {e}");
                tracing::error!(message = %m.id, queue, reason, "dead-lettering a worker message");
                return match self.dispatcher.dead_letter(queue, m, &reason).await {
                    Ok(()) => Handled::Dead(Some(reason)),
                    Err(e) => {
                        tracing::error!(message = %m.id, error = %e, "could not dead-letter; leaving it for the redrive policy");
                        Handled::Dead(None)
                    }
                };
            }
        };
        use tracing::Instrument;
        let span = tracing::info_span!("call", run_id = %call.run_id, step = %call.step, node = %call.node, attempt = call.attempt, tool = %call.tool);
        let (handled, used) = crate::metering::measure(self.run_claimed(&call, deadline_ms)).instrument(span).await;
        let Some((result, report)) = handled else { return Handled::Retry };
        let mut usage = call.usage.clone();
        add(&mut usage, &m.usage);
        add(&mut usage, &used);
        Handled::Result(Box::new(CoordinatorMessage::Result {
            run_id: call.run_id,
            node: call.node,
            attempt: call.attempt,
            outcome: Outcome::from(result),
            usage,
            report,
        }))
    }

    /// Claims the attempt and runs it, or finds its stored result (whose report is not kept: the
    /// first delivery carried it); `None` means try later.
    async fn run_claimed(
        &self,
        call: &ToolCall,
        deadline_ms: Option<u64>,
    ) -> Option<(Result<Value, StepError>, Option<Value>)> {
        let now = self.clock.now_ms();
        let mut limit = Limit { ms: call_limit_ms(call), cut: false };
        if let Some(deadline) = deadline_ms {
            let left = deadline.saturating_sub(now).saturating_sub(SEND_RESERVE_MS);
            if left < MIN_CALL_MS {
                tracing::warn!(key = %call.idempotency_key, deadline_ms = deadline, now_ms = now, left_ms = left, "too little of the invocation left to start the call; leaving it for redelivery");
                return None;
            }
            if left < limit.ms {
                limit = Limit { ms: left, cut: true };
            }
        }
        let lease_until = now + limit.ms + LEASE_MARGIN_MS;
        let result = match self.store.claim(&call.idempotency_key, &self.owner, now, lease_until).await {
            Ok(Claim::Acquired) => {
                let out = self.call(call, limit).await;
                self.store_result(&call.idempotency_key, &out.result, deadline_ms).await;
                (out.result, out.report)
            }
            Ok(Claim::Done(result)) => {
                tracing::info!(key = %call.idempotency_key, "duplicate delivery of a finished attempt: sending its stored result");
                (result, None)
            }
            Ok(Claim::Busy) => return None,
            Err(e) => {
                tracing::warn!(key = %call.idempotency_key, error = %e, "claiming the attempt failed");
                return None;
            }
        };
        Some(result)
    }

    /// Stores the result with the claim, trying again a few times (within the invocation): a
    /// claim left without its result is taken again once its lease ends, and the redelivered
    /// call would then run a second time (a store outage of two seconds did that in the fault
    /// tests). Each try is the store client's own, with its retries and backoff; no sleep here,
    /// so a simulated clock never waits on it.
    async fn store_result(&self, key: &str, result: &Result<Value, StepError>, deadline_ms: Option<u64>) {
        for attempt in 1..=STORE_RESULT_ATTEMPTS {
            let Err(e) = self.store.finish_claim(key, result).await else { return };
            let out_of_time = deadline_ms.is_some_and(|d| self.clock.now_ms() + SEND_RESERVE_MS >= d);
            if attempt == STORE_RESULT_ATTEMPTS || out_of_time {
                tracing::warn!(key = %key, error = %e, attempts = attempt, "storing the result with the claim failed");
                return;
            }
            tracing::info!(key = %key, error = %e, attempt, "storing the result with the claim failed; trying again");
        }
    }

    async fn call(&self, call: &ToolCall, limit: Limit) -> ToolOutcome {
        let Some(tool) = self.tools.get(&call.tool) else {
            let err = StepError::new(ErrorKind::Tool, format!("this worker has no tool `{}`", call.tool));
            return ToolOutcome { result: Err(err), report: None };
        };
        // Never longer than the lease: a call that outlived it could run beside a second one.
        let ms = limit.ms;
        let deadline = self.clock.now_ms().saturating_add(ms);
        match run_until(tool.as_ref(), call, self.clock.as_ref(), deadline).await {
            Some(out) => out,
            None if limit.cut => {
                let why = format!(
                    "the call did not finish within {ms} ms, what was left of the worker's invocation (its function timeout)"
                );
                ToolOutcome { result: Err(StepError::new(ErrorKind::Timeout, why)), report: None }
            }
            None => ToolOutcome { result: Err(over_limit(ms)), report: None },
        }
    }
}

/// Runs `call` on `tool` until the clock reads `until`; `None` when the time ran out first.
pub(crate) async fn run_until(
    tool: &dyn crate::ports::Tool,
    call: &ToolCall,
    clock: &dyn Clock,
    until: u64,
) -> Option<ToolOutcome> {
    tokio::select! {
        out = tool.run(call) => Some(out),
        () = clock.sleep_until(until) => None,
    }
}

/// The error of a call stopped at its limit of `ms`.
pub(crate) fn over_limit(ms: u64) -> StepError {
    StepError::new(ErrorKind::Timeout, format!("the call did not finish within {ms} ms"))
}

/// How long a call may run, and whether that was cut to fit the invocation.
#[derive(Clone, Copy)]
struct Limit {
    ms: u64,
    cut: bool,
}

/// How long a call may take: the longer of the step's `timeout` and the call's own
/// `with.timeout`, or [`DEFAULT_CALL_MS`] when neither is set.
pub(crate) fn call_limit_ms(call: &ToolCall) -> u64 {
    let own = call
        .input
        .get("timeout")
        .and_then(Value::as_str)
        .and_then(|t| humantime::parse_duration(t).ok())
        .map(|d| d.as_millis() as u64);
    match (call.timeout_ms, own) {
        (None, None) => DEFAULT_CALL_MS,
        (a, b) => a.unwrap_or(0).max(b.unwrap_or(0)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(timeout_ms: Option<u64>, input: Value) -> ToolCall {
        ToolCall {
            run_id: "r".into(),
            node: "a".into(),
            step: "a".into(),
            attempt: 1,
            tool: "http".into(),
            input,
            idempotency_key: "r/a/0/1".into(),
            timeout_ms,
            usage: Default::default(),
        }
    }

    #[test]
    fn a_call_is_bounded_by_the_longer_of_its_timeouts() {
        assert_eq!(call_limit_ms(&call(None, serde_json::json!({}))), DEFAULT_CALL_MS);
        assert_eq!(call_limit_ms(&call(Some(5_000), serde_json::json!({}))), 5_000);
        assert_eq!(call_limit_ms(&call(Some(5_000), serde_json::json!({"timeout": "2m"}))), 120_000);
        assert_eq!(call_limit_ms(&call(None, serde_json::json!({"timeout": "90s"}))), 90_000);
    }
}
