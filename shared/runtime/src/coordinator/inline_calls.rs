//! Short calls the coordinator of a queue host runs itself instead of sending them to a worker:
//! a chain of `http` steps then costs one commit per step instead of two queue hops, a worker
//! invocation, a claim and a result message.
//!
//! Which calls: those of a tool this coordinator has (the `http` tool, on AWS), when they fit in
//! its budget (`max_ms`, and what is left of the invocation less a reserve for committing) and
//! when running out of that budget is harmless:
//! - a call whose own limit (the step's `timeout`, or the call's `with.timeout`) fits in the
//!   budget fails at that limit exactly as it would on a worker;
//! - a `GET`, `HEAD` or `OPTIONS` call with a longer limit is abandoned at the budget and handed
//!   to its worker, which sends it again with the same `Idempotency-Key` (such requests are
//!   safe to repeat by HTTP's own rules).
//!
//! Crash safety: the call stays in the committed outbox row of the transition that asked for it;
//! the next commit (with the result) deletes the row. A coordinator that dies in between leaves
//! the row to the sweep, which hands the call (and its time limit) to the worker after
//! [`SWEEP_LEASE_MS`](super::host::SWEEP_LEASE_MS), with the same idempotency key. The budget is
//! kept well under that lease, so a live coordinator's call is never sent twice.

use std::collections::BTreeSet;

use baton_core::engine::{EventKind, TimerKind};
use serde_json::Value;

use crate::ports::{OutboxItem, ToolCall, ToolOutcome};
use crate::tools::ToolRegistry;

/// What is kept of an invocation for committing the last result and delivering its work (ms).
const COMMIT_RESERVE_MS: u64 = 2_000;
/// Below this, a call is not started here at all (ms).
const MIN_INLINE_MS: u64 = 100;
/// The longest budget allowed: half the sweep's lease, so a row is never swept while its call
/// still runs here (ms).
pub const MAX_INLINE_MS: u64 = super::host::SWEEP_LEASE_MS / 2;

/// The tools a queue host's coordinator runs itself, and how long it gives one call.
pub struct InlineCalls {
    tools: ToolRegistry,
    max_ms: u64,
}

/// How one call runs here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Budget {
    /// How long it may take (ms).
    pub ms: u64,
    /// True when reaching `ms` hands the call to its worker; false when it fails the attempt
    /// with `timeout` (the call's own limit).
    pub hand_off: bool,
}

/// How one inline call ended.
pub(super) enum Ran {
    /// Its result, to be decided in the next commit, and its limit timer (never armed).
    Done(EventKind, String),
    /// Out of budget: its worker takes it.
    HandedOff(ToolCall),
}

impl InlineCalls {
    /// Runs calls to `tools` for up to `max_ms` each (capped at [`MAX_INLINE_MS`]).
    pub fn new(tools: ToolRegistry, max_ms: u64) -> Self {
        Self { tools, max_ms: max_ms.min(MAX_INLINE_MS) }
    }

    /// How `call` may run here at `now`, with the invocation ending at `deadline` (if known);
    /// `None` when it goes to its worker.
    pub(super) fn budget(&self, call: &ToolCall, now: u64, deadline: Option<u64>) -> Option<Budget> {
        if !self.tools.has(&call.tool) {
            return None;
        }
        let left = deadline.map_or(u64::MAX, |d| d.saturating_sub(now).saturating_sub(COMMIT_RESERVE_MS));
        let cap = self.max_ms.min(left);
        if cap < MIN_INLINE_MS {
            return None;
        }
        let own = crate::worker::call_limit_ms(call);
        if own <= cap {
            return Some(Budget { ms: own, hand_off: false });
        }
        safe_to_repeat(&call.input).then_some(Budget { ms: cap, hand_off: true })
    }

    /// Runs `call` within `budget`, waiting on `clock`.
    pub(super) async fn run(&self, clock: &dyn crate::ports::Clock, call: ToolCall, budget: Budget) -> Ran {
        let Some(tool) = self.tools.get(&call.tool) else { return Ran::HandedOff(call) };
        let until = clock.now_ms().saturating_add(budget.ms);
        let out = match crate::worker::run_until(tool.as_ref(), &call, clock, until).await {
            Some(out) => out,
            None if budget.hand_off => {
                tracing::info!(key = %call.idempotency_key, budget_ms = budget.ms, "an inline call ran out of the coordinator's budget; its worker takes it");
                return Ran::HandedOff(call);
            }
            None => ToolOutcome { result: Err(crate::worker::over_limit(budget.ms)), report: None },
        };
        let event = super::step_result(call.node.clone(), call.attempt, out.result, false, out.report);
        Ran::Done(event, limit_timer(&call))
    }
}

/// True for requests HTTP defines as safe (and so idempotent): `GET` (the default), `HEAD`,
/// `OPTIONS`.
fn safe_to_repeat(input: &Value) -> bool {
    match input.get("method").and_then(Value::as_str) {
        None => true,
        Some(m) => ["GET", "HEAD", "OPTIONS"].iter().any(|s| m.eq_ignore_ascii_case(s)),
    }
}

/// The id of the timer that limits `call`'s attempt (the engine's `timeout/<node>/<attempt>`).
pub(super) fn limit_timer(call: &ToolCall) -> String {
    TimerKind::Timeout { node: call.node.clone(), attempt: call.attempt }.id()
}

/// Splits an outbox row into the calls that run here (with their budgets) and what leaves now;
/// the limit timers of the calls that run here are held back (the sweep arms them with the row
/// if this process dies).
pub(super) fn split(inline: &InlineCalls, items: &[OutboxItem], now: u64, deadline: Option<u64>) -> Here {
    let mut here = Vec::new();
    let mut held = BTreeSet::new();
    for item in items {
        if let OutboxItem::Call(call) = item
            && let Some(budget) = inline.budget(call, now, deadline)
        {
            held.insert(limit_timer(call));
            here.push((call.clone(), budget));
        }
    }
    let rest = items
        .iter()
        .filter(|item| match item {
            OutboxItem::Call(c) => !here.iter().any(|(h, _)| h.idempotency_key == c.idempotency_key),
            OutboxItem::Timer { id, .. } => !held.contains(id),
            _ => true,
        })
        .cloned()
        .collect();
    Here { calls: here, rest }
}

/// What a committed transition's calls that run here leave for the next commit: their results
/// (the events), and the writes that go with them.
#[derive(Default)]
pub(super) struct FollowUp {
    /// The row the calls came from: the next commit deletes it.
    pub clears: Vec<String>,
    /// Calls handed to their workers (with their limit timers), sent with the next commit.
    pub handed_off: Vec<OutboxItem>,
    /// Limit timers never armed (their calls ran here): cancelling them would be a wasted request.
    pub unarmed: BTreeSet<String>,
    /// Requests spent running the calls (secret lookups, the deliveries made on the way).
    pub usage: crate::metering::Usage,
}

impl FollowUp {
    /// Adds these writes to the transition that decides the results.
    pub(super) fn apply(&self, t: &mut crate::ports::Transition) {
        t.clears.extend(self.clears.iter().cloned());
        t.outbox.retain(|i| !matches!(i, OutboxItem::CancelTimer { id, .. } if self.unarmed.contains(id)));
        t.outbox.extend(self.handed_off.iter().cloned());
    }
}

/// The calls of one committed transition that run here, and what leaves at once.
#[derive(Default)]
pub(super) struct Here {
    pub calls: Vec<(ToolCall, Budget)>,
    pub rest: Vec<OutboxItem>,
}

impl super::Coordinator {
    /// Which calls of `t`'s outbox this coordinator runs itself (none off a queue host, or
    /// without inline tools).
    pub(super) fn choose_inline(&self, t: &crate::ports::Transition) -> Here {
        let Some(inline) = &self.inline else { return Here::default() };
        if t.outbox.is_empty() {
            return Here::default();
        }
        split(inline, &t.outbox, self.clock.now_ms(), super::host::invocation_deadline())
    }

    /// After the commit of `t`: sends what leaves at once, runs `here`'s calls, and returns the
    /// results for the next commit; `None` when nothing is left to decide (the work went to
    /// queues, or must wait for the sweep).
    pub(super) async fn run_here(
        &self,
        t: &crate::ports::Transition,
        here: Here,
    ) -> Option<(Vec<EventKind>, FollowUp)> {
        let (next, used) = crate::metering::measure(self.run_here_measured(t, here)).await;
        next.map(|(events, mut follow)| {
            crate::metering::add(&mut follow.usage, &used);
            (events, follow)
        })
    }

    async fn run_here_measured(&self, t: &crate::ports::Transition, here: Here) -> Option<(Vec<EventKind>, FollowUp)> {
        let inline = self.inline.clone()?;
        let now = self.clock.now_ms();
        if !here.rest.is_empty()
            && let Err(e) = self.delivery.resend(&here.rest, now).await
        {
            // Nothing ran: the sweep sends the whole row, these calls included, to the workers.
            tracing::warn!(run = %t.header.id, error = %e, "delivering the outbox failed; the sweep will send it");
            return None;
        }
        let mut set = tokio::task::JoinSet::new();
        for (i, (call, budget)) in here.calls.into_iter().enumerate() {
            let (inline, clock) = (inline.clone(), self.clock.clone());
            // Measured in the task: a spawned task does not see this scope.
            set.spawn(async move {
                let (ran, used) = crate::metering::measure(inline.run(clock.as_ref(), call, budget)).await;
                (i, ran, used)
            });
        }
        let mut ran = Vec::new();
        while let Some(joined) = set.join_next().await {
            match joined {
                Ok(r) => ran.push(r),
                // A panicking tool: the row stays, and the sweep hands its calls to the workers.
                Err(e) => {
                    tracing::error!(run = %t.header.id, error = %e, "an inline call panicked; the sweep will send the row");
                    return None;
                }
            }
        }
        ran.sort_by_key(|(i, _, _)| *i);
        let mut events = Vec::new();
        let mut follow = FollowUp::default();
        for (_, r, used) in ran {
            crate::metering::add(&mut follow.usage, &used);
            match r {
                Ran::Done(event, timer) => {
                    events.push(event);
                    follow.unarmed.insert(timer);
                }
                Ran::HandedOff(call) => {
                    let timer = limit_timer(&call);
                    follow.handed_off.extend(
                        t.outbox.iter().filter(|i| matches!(i, OutboxItem::Timer { id, .. } if *id == timer)).cloned(),
                    );
                    follow.handed_off.push(OutboxItem::Call(call));
                }
            }
        }
        let row = super::outbox_id(&t.header.id, t.header.version);
        if events.is_empty() {
            // Every call went over its budget: a plain delivery of them, then the row goes.
            match self.delivery.resend(&follow.handed_off, self.clock.now_ms()).await {
                Ok(()) => {
                    if let Err(e) = self.store.clear_outbox(&[row]).await {
                        tracing::warn!(run = %t.header.id, error = %e, "clearing a delivered outbox row failed; the sweep will send it again");
                    }
                }
                Err(e) => {
                    tracing::warn!(run = %t.header.id, error = %e, "handing calls to their workers failed; the sweep will send them")
                }
            }
            return None;
        }
        follow.clears.push(row);
        Some((events, follow))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ports::Tool;
    use baton_core::engine::StepError;
    use std::sync::Arc;

    struct Echo;

    #[async_trait::async_trait]
    impl Tool for Echo {
        async fn call(&self, call: &ToolCall) -> Result<Value, StepError> {
            Ok(call.input.clone())
        }
    }

    fn inline() -> InlineCalls {
        let mut tools = ToolRegistry::default();
        tools.register("http", Arc::new(Echo));
        InlineCalls::new(tools, 4_000)
    }

    fn call(tool: &str, timeout_ms: Option<u64>, input: Value) -> ToolCall {
        ToolCall {
            run_id: "r".into(),
            node: "a".into(),
            step: "a".into(),
            attempt: 1,
            tool: tool.into(),
            input,
            idempotency_key: "r/a/0/1".into(),
            timeout_ms,
            usage: Default::default(),
        }
    }

    #[test]
    fn a_get_runs_here_and_is_handed_off_at_the_budget() {
        let b = inline().budget(&call("http", None, serde_json::json!({"url": "x"})), 0, None);
        assert_eq!(b, Some(Budget { ms: 4_000, hand_off: true }));
    }

    #[test]
    fn a_post_runs_here_only_when_its_own_limit_fits() {
        let post = serde_json::json!({"url": "x", "method": "post"});
        assert_eq!(inline().budget(&call("http", None, post.clone()), 0, None), None);
        let b = inline().budget(&call("http", Some(3_000), post.clone()), 0, None);
        assert_eq!(b, Some(Budget { ms: 3_000, hand_off: false }));
        let own = serde_json::json!({"url": "x", "method": "POST", "timeout": "2s"});
        assert_eq!(inline().budget(&call("http", None, own), 0, None), Some(Budget { ms: 2_000, hand_off: false }));
        assert_eq!(inline().budget(&call("http", Some(5_000), post), 0, None), None);
    }

    #[test]
    fn the_invocation_left_caps_the_budget() {
        let get = call("http", None, serde_json::json!({"url": "x"}));
        assert_eq!(inline().budget(&get, 10_000, Some(13_000)), Some(Budget { ms: 1_000, hand_off: true }));
        assert_eq!(inline().budget(&get, 10_000, Some(12_050)), None);
    }

    #[test]
    fn other_tools_and_long_budgets_stay_out() {
        assert_eq!(inline().budget(&call("llm", Some(1_000), serde_json::json!({})), 0, None), None);
        let mut tools = ToolRegistry::default();
        tools.register("http", Arc::new(Echo));
        assert_eq!(InlineCalls::new(tools, 60_000).max_ms, MAX_INLINE_MS);
    }

    #[test]
    fn split_holds_back_the_limit_timers_of_the_calls_it_keeps() {
        let get = call("http", None, serde_json::json!({"url": "x"}));
        let mut other = call("llm", None, serde_json::json!({}));
        other.node = "b".into();
        other.idempotency_key = "r/b/0/1".into();
        let timer = |id: String| OutboxItem::Timer { run_id: "r".into(), id, at: 9, retry: false };
        let items = vec![
            OutboxItem::Call(get.clone()),
            timer(limit_timer(&get)),
            OutboxItem::Call(other.clone()),
            timer(limit_timer(&other)),
        ];
        let here = split(&inline(), &items, 0, None);
        assert_eq!(here.calls.iter().map(|(c, _)| c.idempotency_key.as_str()).collect::<Vec<_>>(), ["r/a/0/1"]);
        assert_eq!(limit_timer(&get), "timeout/a/1");
        assert_eq!(here.rest, vec![OutboxItem::Call(other.clone()), timer(limit_timer(&other))]);
    }
}
