//! The coordinator as a queue consumer (the AWS backend): each batch of messages is grouped by
//! run and each run advanced along the one transition path (`transition.rs`) with the queued
//! delivery (`delivery.rs`): one write holds the decision and the outbox rows for the work that
//! leaves; a sweep re-sends rows a crash left behind.

use std::sync::Arc;

use baton_core::Plan;
use baton_core::engine::{Command, EventKind, ParentLink, RunState, StepError, TimerKind};
use baton_core::ids::RunId;
use serde_json::Value;

use super::Coordinator;
use super::delivery::Queued;
use crate::error::{RuntimeError, StoreError};
use crate::messages::{Parsed, StartRun, parse_coordinator};
use crate::metering::{Usage, add};
use crate::ports::{BatchReport, Dispatcher, Inbound};

/// Outbox rows younger than this belong to a coordinator that may still be delivering them;
/// the sweep leaves them alone.
pub const SWEEP_LEASE_MS: u64 = 10_000;

tokio::task_local! {
    /// When the invocation handling the current batch ends (ms since the epoch), if known: what
    /// is left of it bounds the calls the coordinator runs itself.
    static INVOCATION_DEADLINE: Option<u64>;
}

/// The end of the current invocation, inside [`Coordinator::handle_batch_until`].
pub(super) fn invocation_deadline() -> Option<u64> {
    INVOCATION_DEADLINE.try_with(|d| *d).ok().flatten()
}

impl Coordinator {
    /// Hands outside work to `dispatcher` through the transactional outbox instead of running it
    /// in this process (the AWS backend's coordinator, `baton dev`, and the CLI on a stack).
    pub fn with_dispatcher(mut self, dispatcher: Arc<dyn Dispatcher>) -> Self {
        self.delivery = Arc::new(Queued(dispatcher));
        self
    }

    /// [`Coordinator::handle_batch`] inside an invocation that ends at `deadline_ms` (the Lambda
    /// context's deadline): calls run inline only in what is left of it.
    pub async fn handle_batch_until(&self, messages: &[Inbound], deadline_ms: Option<u64>) -> BatchReport {
        INVOCATION_DEADLINE.scope(deadline_ms, self.handle_batch(messages)).await
    }

    /// Handles one batch from the coordinator queue: results, timers and trigger events.
    /// A body that can never be handled is dead-lettered with its reason; a failure that may
    /// pass (a throttled store, an unreachable queue) leaves the message for redelivery.
    pub async fn handle_batch(&self, messages: &[Inbound]) -> BatchReport {
        let mut report = BatchReport::default();
        let mut order: Vec<RunId> = Vec::new();
        let mut grouped: std::collections::HashMap<RunId, (Vec<EventKind>, Vec<&Inbound>, Usage)> = Default::default();
        // The batch's delivery cost goes to the first run it carries.
        let mut overhead: Usage = messages.first().map(|m| m.usage.clone()).unwrap_or_default();
        for m in messages {
            match parse_coordinator(&m.body) {
                Ok(Parsed::Event { kind: EventKind::StepSucceeded { .. } | EventKind::StepFailed { .. }, .. })
                    if !self.signed_by_the_stack(m) =>
                {
                    let reason = format!(
                        "a step result without a valid `{}` attribute: only this stack's workers and coordinator may report results",
                        crate::message_auth::SIGNATURE_ATTRIBUTE
                    );
                    self.dead_letter(m, &reason, &mut report).await
                }
                Ok(Parsed::Event { run_id, kind, usage }) => {
                    if !grouped.contains_key(&run_id) {
                        order.push(run_id.clone());
                    }
                    let g = grouped.entry(run_id).or_default();
                    g.0.push(kind);
                    g.1.push(m);
                    add(&mut g.2, &usage);
                    add(&mut g.2, &std::mem::take(&mut overhead));
                }
                Ok(Parsed::Trigger(event)) => match self.deliver_event(&event).await {
                    Ok(_) => {}
                    Err(e) if e.is_permanent() => {
                        self.dead_letter(m, &format!("cannot start runs for the event: {e}"), &mut report).await
                    }
                    Err(e) => {
                        tracing::warn!(message = %m.id, error = %e, "starting runs for an event failed; it will be redelivered");
                        report.failed.push(m.id.clone());
                    }
                },
                Ok(Parsed::Start(StartRun { workflow, definition, input, mocks, run_id, parent })) => {
                    match self.start_requested(&workflow, definition, input, mocks, run_id, parent.clone()).await {
                        Ok(_) => {}
                        // A child that cannot start fails its parent's step; the parent must
                        // not wait for a run that will never exist.
                        Err(e) if e.is_permanent() && parent.is_some() => {
                            let Some(link) = parent else { continue };
                            let body = crate::messages::body_of(&crate::messages::CoordinatorMessage::Result {
                                run_id: link.run_id.clone(),
                                node: link.node.clone(),
                                attempt: link.attempt,
                                outcome: crate::messages::Outcome::Error(StepError::new(
                                    "tool",
                                    format!("cannot start the child run of `{workflow}`: {e}"),
                                )),
                                usage: Usage::new(),
                                report: None,
                            });
                            if let Err(e) = self.send_to_coordinator(&[body]).await {
                                tracing::warn!(message = %m.id, error = %e, "reporting a failed child start failed; it will be redelivered");
                                report.failed.push(m.id.clone());
                            }
                        }
                        Err(e) if e.is_permanent() => {
                            self.dead_letter(m, &format!("cannot start `{workflow}`: {e}"), &mut report).await
                        }
                        Err(e) => {
                            tracing::warn!(message = %m.id, error = %e, "starting a run failed; it will be redelivered");
                            report.failed.push(m.id.clone());
                        }
                    }
                }
                Ok(Parsed::Answer { source: Some(source), .. }) if !self.answers_from(&source) => {
                    let allowed = self.answer_sources.as_deref().unwrap_or_default().join(", ");
                    let reason = format!(
                        "task answers are taken from the sources {allowed} only (BATON_TASK_ANSWER_SOURCES); this one came from `{source}`"
                    );
                    self.dead_letter(m, &reason, &mut report).await
                }
                Ok(Parsed::Answer { task, mut answer, source }) => {
                    // A baton message vouches for who answered only when the stack signed it.
                    if source.is_none() && !self.signature_verifies(m) {
                        answer.principal = None;
                    }
                    match self.answer_task(&task, answer).await {
                        Ok(_) => {}
                        // Answered already: a redelivered answer.
                        Err(RuntimeError::UnknownTask(_)) => {
                            tracing::info!(task = %task, "task already closed; answer ignored")
                        }
                        Err(e) if e.is_permanent() => {
                            self.dead_letter(m, &format!("cannot answer task `{task}`: {e}"), &mut report).await
                        }
                        Err(e) => {
                            tracing::warn!(message = %m.id, error = %e, "answering failed; it will be redelivered");
                            report.failed.push(m.id.clone());
                        }
                    }
                }
                Ok(Parsed::Sweep) => {
                    if let Err(e) = self.sweep(SWEEP_LEASE_MS).await {
                        tracing::warn!(error = %e, "outbox sweep failed");
                    }
                    if let Err(e) = self.recover_dead_letters().await {
                        tracing::warn!(error = %e, "failing the attempts of dead letters failed");
                    }
                    // Lifecycle events a failed publish left behind.
                    self.flush_bus_logged().await;
                }
                Err(reason) => self.dead_letter(m, &reason, &mut report).await,
            }
        }
        for run_id in order {
            let Some((events, msgs, usage)) = grouped.remove(&run_id) else { continue };
            match self.advance_carrying(&run_id, events, usage).await {
                Ok(()) => {}
                Err(RuntimeError::UnknownRun(_)) => {
                    for m in msgs {
                        self.dead_letter(
                            m,
                            &format!("message names run `{run_id}`, which does not exist"),
                            &mut report,
                        )
                        .await;
                    }
                }
                // Redelivery cannot help (a decision too large for the store, unreadable state).
                Err(e) if e.is_permanent() => {
                    for m in msgs {
                        self.dead_letter(m, &format!("run `{run_id}`: {e}"), &mut report).await;
                    }
                }
                Err(e) => {
                    tracing::warn!(run = %run_id, error = %e, "advancing the run failed; its messages will be redelivered");
                    report.failed.extend(msgs.iter().map(|m| m.id.clone()));
                }
            }
        }
        report
    }

    /// True when task answers from the bus may come from `source`: no list is set, or it names it.
    fn answers_from(&self, source: &str) -> bool {
        self.answer_sources.as_ref().is_none_or(|allowed| allowed.iter().any(|a| a == source))
    }

    /// True when no key is set (results are not authenticated), or the message's signature
    /// verifies with it.
    pub(super) fn signed_by_the_stack(&self, m: &Inbound) -> bool {
        self.message_key.is_none() || self.signature_verifies(m)
    }

    /// True when a key is set and the message's signature verifies with it.
    fn signature_verifies(&self, m: &Inbound) -> bool {
        let (Some(key), Some(sig)) = (&self.message_key, m.signature.as_deref()) else { return false };
        key.verify(&m.body, sig)
    }

    async fn dead_letter(&self, m: &Inbound, reason: &str, report: &mut BatchReport) {
        tracing::error!(message = %m.id, reason, "dead-lettering a coordinator message");
        match self.delivery.dead_letter(m, reason).await {
            Ok(()) => report.dead_lettered.push((m.id.clone(), reason.to_owned())),
            // Leave it on the queue: its redrive policy moves it to the DLQ after the receive limit.
            Err(e) => {
                tracing::error!(message = %m.id, error = %e, "could not dead-letter; leaving the message for the redrive policy");
                report.failed.push(m.id.clone());
            }
        }
    }

    /// Starts `workflow` at `definition` (stored beforehand), or its published version. With a
    /// `run_id`, a redelivered start finds the run already there and starts nothing.
    pub async fn start_requested(
        &self,
        workflow: &str,
        definition: Option<String>,
        input: Value,
        mocks: Option<Value>,
        run_id: Option<RunId>,
        parent: Option<ParentLink>,
    ) -> Result<Option<RunId>, RuntimeError> {
        let plan = match definition {
            Some(hash) => self.plan_for(workflow, &hash).await?,
            None => match self.published(workflow).await? {
                Some((plan, _)) => plan,
                None => return Err(RuntimeError::UnknownWorkflow(workflow.to_owned())),
            },
        };
        match self.start_with(plan, None, input, mocks, run_id, parent).await {
            Ok(id) => Ok(Some(id)),
            Err(RuntimeError::Store(StoreError::Conflict { .. })) => Ok(None),
            Err(e) => Err(e),
        }
    }

    async fn send_to_coordinator(&self, bodies: &[String]) -> Result<(), StoreError> {
        self.delivery.to_coordinator(bodies).await
    }

    /// Re-sends outbox rows committed more than `lease_ms` ago and still there (their
    /// coordinator died between commit and delivery, or delivery failed); returns how many
    /// rows were delivered. Duplicates are harmless: workers claim attempts and the engine
    /// ignores stale results and timers.
    pub async fn sweep(&self, lease_ms: u64) -> Result<usize, RuntimeError> {
        let now = self.clock.now_ms();
        let mut sent = 0;
        // An index that lags behind a delete can list a cleared row again: never twice a sweep.
        let mut seen = std::collections::HashSet::new();
        loop {
            let rows = self.store.pending_outbox(now.saturating_sub(lease_ms), 25).await?;
            let n = rows.len();
            let rows: Vec<_> = rows.into_iter().filter(|r| seen.insert(r.id.clone())).collect();
            if rows.is_empty() {
                return Ok(sent);
            }
            let mut failed = 0;
            for row in rows {
                // One row that cannot go out now must not hold up the others.
                match self.delivery.resend(&row.items, now).await {
                    Ok(()) => {
                        self.store.clear_outbox(std::slice::from_ref(&row.id)).await?;
                        sent += 1;
                    }
                    Err(e) => {
                        tracing::warn!(row = %row.id, error = %e, "sweep: delivery failed; the row stays for the next sweep");
                        failed += 1;
                    }
                }
            }
            // Stop at a short page, or when rows failed (the next page would start with them).
            if n < 25 || failed > 0 {
                return Ok(sent);
            }
        }
    }
}

impl Coordinator {
    /// Like [`is_settled`], counting a run whose only calls in flight are child runs (`workflow`
    /// steps) as settled when each child has settled itself (it waits on a person, say): nothing
    /// moves until someone answers in the child. A queue backend watching a parent needs this;
    /// the in-process loop drives the children and sees it directly.
    pub async fn settled_with_children(&self, plan: Arc<Plan>, state: RunState) -> Result<bool, RuntimeError> {
        let mut todo = vec![(plan, state, false)];
        while let Some((plan, state, child)) = todo.pop() {
            if state.status.is_terminal() {
                // A child that ended has its result on the way to its parent: the parent moves.
                if child {
                    return Ok(false);
                }
                continue;
            }
            if timers_pending(&state) {
                return Ok(false);
            }
            for c in baton_core::engine::in_flight(&plan, &state) {
                let Command::Dispatch(d) = c else { continue };
                let child_id = match super::children::ChildRequest::from_dispatch(&d) {
                    Ok(r) if d.tool == super::children::WORKFLOW_TOOL && !r.continue_as_new => r.run_id,
                    _ => return Ok(false),
                };
                let Some(stored) = self.store.load_run(&child_id).await? else { return Ok(false) };
                let child_plan = self.plan_for(&stored.header.workflow, &stored.header.definition).await?;
                todo.push((child_plan, stored.state, true));
            }
        }
        Ok(true)
    }
}

/// Retries and sleeps wake a run by themselves; escalations and timeouts of waits on people do
/// not make it move before someone answers, nor do timers a pause holds before it is unpaused.
fn timers_pending(state: &RunState) -> bool {
    state
        .timers
        .iter()
        .filter(|(id, _)| !state.held_timers.contains(*id))
        .any(|(_, t)| matches!(t.kind, TimerKind::Retry { .. } | TimerKind::Wake { .. }))
}

/// True when nothing more happens to the run without the outside world: it ended, or only
/// human tasks and escalations are pending.
pub fn is_settled(plan: &baton_core::Plan, state: &baton_core::engine::RunState) -> bool {
    if state.status.is_terminal() {
        return true;
    }
    let calls = baton_core::engine::in_flight(plan, state).iter().any(|c| matches!(c, Command::Dispatch(_)));
    !calls && !timers_pending(state)
}
