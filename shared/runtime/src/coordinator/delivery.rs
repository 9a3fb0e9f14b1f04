//! How a committed transition's work leaves the coordinator: one [`Delivery`] per host, behind
//! the one load → decide → commit → deliver path (`transition.rs`).
//!
//! - [`InProcess`] (the embedded backend): nothing is written for the work; a driving loop
//!   (`drive.rs`) runs the calls as tasks, keeps the timers and drives child runs beside their
//!   parents. Outside a loop, a parent or child is told at once, and the next `drive`
//!   re-issues whatever is in flight.
//! - [`Queued`] (the AWS backend): the work is written into the transition as outbox rows, so
//!   it leaves only if the decision is committed, and is sent after the commit; a sweep sends
//!   what a crash left behind.

use std::collections::VecDeque;
use std::sync::Arc;

use async_trait::async_trait;
use baton_core::engine::{Command, EventKind, TimerKind};
use baton_core::ids::RunId;

use super::{Coordinator, LoadedRun, children, result_event, tool_call};
use crate::error::StoreError;
use crate::messages::{CoordinatorMessage, body_of, event_body};
use crate::metering::Usage;
use crate::ports::{DeadLetter, Dispatcher, Inbound, OutboxItem, Transition};
use crate::tools::ToolRegistry;

/// The canonical id of the outbox row a transition writes: `<run>/<version>`.
pub fn outbox_id(run_id: &RunId, version: u64) -> String {
    format!("{run_id}/{version:010}")
}

/// What a run's decision means for its family: children it stopped waiting for, and the result
/// its parent waits for (when it ended as a child).
#[derive(Debug, Default)]
pub(super) struct Family {
    /// Child runs to cancel.
    pub cancel: Vec<RunId>,
    /// The parent run and the event that carries this run's result to it.
    pub to_parent: Option<(RunId, EventKind)>,
}

/// One decided transition and the work it leaves for the delivery.
pub(super) struct Decided {
    /// What the store commits.
    pub transition: Transition,
    /// Commands carried out outside the decision: calls to tools that do not run inline, child
    /// runs to start, timers to set and to cancel.
    pub leaving: Vec<Command>,
    /// News for the run's parent and children.
    pub family: Family,
}

/// A host's way of carrying out what a transition leaves.
#[async_trait]
pub(super) trait Delivery: Send + Sync {
    /// True when a call to `tool` can be carried out from here (a worker, or this process).
    fn carries(&self, tools: &ToolRegistry, tool: &str) -> bool;

    /// True when inline tools and scripted results are decided within the transition that
    /// asked for them: on a queue host every transition is a paid write and a queue round trip.
    /// False in-process, where a commit is a local write: each step then commits on its own, so
    /// progress and the audit trail move step by step.
    fn decides_pure_work(&self) -> bool;

    /// The outbox rows the transition writes for `leaving` (decided on `run` as it is now).
    /// Work that finishes at once (a successor started by `continue_as_new`) goes to `events`,
    /// to be decided in the same transition.
    fn record(&self, run: &LoadedRun, leaving: &[Command], events: &mut VecDeque<EventKind>) -> Vec<OutboxItem>;

    /// The outbox rows that carry `family`'s news.
    fn record_family(&self, run_id: &RunId, family: &Family) -> Vec<OutboxItem>;

    /// What delivering `items` will cost (counted into the run's account with its commit).
    fn expected_usage(&self, items: &[OutboxItem], now: u64) -> Usage;

    /// After the commit of a transition outside a driving loop.
    async fn delivered(&self, c: &Coordinator, decided: &Decided);

    /// After the commit that created `run`: what its first decision left.
    async fn started(&self, c: &Coordinator, run: LoadedRun, decided: Decided);

    /// Sends messages to the coordinator queue.
    async fn to_coordinator(&self, bodies: &[String]) -> Result<(), StoreError>;

    /// Moves a message that can never be handled aside, with its reason.
    async fn dead_letter(&self, message: &Inbound, reason: &str) -> Result<(), StoreError>;

    /// Sends outbox items that were committed earlier (the sweep).
    async fn resend(&self, items: &[OutboxItem], now: u64) -> Result<(), StoreError>;

    /// Messages on the dead-letter queues (none in-process, where nothing is queued).
    async fn dead_letters(&self, _max: usize) -> Result<Vec<DeadLetter>, StoreError> {
        Ok(Vec::new())
    }

    /// Removes a dead letter that was carried out, or leaves it for an operator.
    async fn settle_dead_letter(&self, _letter: &DeadLetter, _done: bool) -> Result<(), StoreError> {
        Ok(())
    }
}

/// The embedded backend's delivery: calls, timers and children are carried out in this process.
pub(super) struct InProcess;

#[async_trait]
impl Delivery for InProcess {
    fn carries(&self, tools: &ToolRegistry, tool: &str) -> bool {
        tools.has(tool)
    }

    fn decides_pure_work(&self) -> bool {
        false
    }

    fn record(&self, _run: &LoadedRun, _leaving: &[Command], _events: &mut VecDeque<EventKind>) -> Vec<OutboxItem> {
        Vec::new()
    }

    fn record_family(&self, _run_id: &RunId, _family: &Family) -> Vec<OutboxItem> {
        Vec::new()
    }

    fn expected_usage(&self, _items: &[OutboxItem], _now: u64) -> Usage {
        Usage::new()
    }

    /// Tells the family at once; the calls and timers wait for the next `drive`, which finds
    /// them in flight in the stored state.
    async fn delivered(&self, c: &Coordinator, decided: &Decided) {
        c.tell_family(&decided.transition.header.id, &decided.family).await;
    }

    /// Keeps the new run as committed, with its first commands, for the `drive` that follows.
    async fn started(&self, c: &Coordinator, mut run: LoadedRun, decided: Decided) {
        run.first_commands = Some(decided.leaving);
        if let Ok(mut s) = c.started.lock() {
            s.insert(run.header.id.clone(), run);
        }
    }

    async fn to_coordinator(&self, _bodies: &[String]) -> Result<(), StoreError> {
        Err(StoreError::Backend("the embedded backend has no coordinator queue".into()))
    }

    async fn dead_letter(&self, _message: &Inbound, _reason: &str) -> Result<(), StoreError> {
        Err(StoreError::Backend("the embedded backend has no dead-letter queue".into()))
    }

    async fn resend(&self, _items: &[OutboxItem], _now: u64) -> Result<(), StoreError> {
        Ok(())
    }
}

/// The AWS backend's delivery: outbox rows committed with the decision, sent by a dispatcher.
pub(super) struct Queued(pub Arc<dyn Dispatcher>);

#[async_trait]
impl Delivery for Queued {
    fn carries(&self, _tools: &ToolRegistry, tool: &str) -> bool {
        self.0.serves(tool)
    }

    fn decides_pure_work(&self) -> bool {
        true
    }

    fn record(&self, run: &LoadedRun, leaving: &[Command], events: &mut VecDeque<EventKind>) -> Vec<OutboxItem> {
        let run_id = &run.header.id;
        let mut out = Vec::new();
        for c in leaving {
            match c {
                Command::Dispatch(d) if d.tool == children::WORKFLOW_TOOL => start_child(run, d, events, &mut out),
                Command::Dispatch(d) => out.push(OutboxItem::Call(tool_call(run_id, d))),
                Command::ScheduleTimer { id, at } => {
                    let retry = matches!(run.state.timers.get(id).map(|t| &t.kind), Some(TimerKind::Retry { .. }));
                    out.push(OutboxItem::Timer { run_id: run_id.clone(), id: id.clone(), at: *at, retry });
                }
                Command::CancelTimer { id } => {
                    out.push(OutboxItem::CancelTimer { run_id: run_id.clone(), id: id.clone() })
                }
                _ => {}
            }
        }
        out
    }

    fn record_family(&self, run_id: &RunId, family: &Family) -> Vec<OutboxItem> {
        let mut out: Vec<OutboxItem> = family
            .cancel
            .iter()
            .map(|child| {
                let reason = children::cancel_reason(run_id);
                OutboxItem::Coordinator { body: body_of(&CoordinatorMessage::Cancel { run_id: child.clone(), reason }) }
            })
            .collect();
        if let Some((parent, kind)) = &family.to_parent
            && let Some(body) = event_body(parent, kind.clone())
        {
            out.push(OutboxItem::Coordinator { body });
        }
        out
    }

    fn expected_usage(&self, items: &[OutboxItem], now: u64) -> Usage {
        self.0.expected_usage(items, now)
    }

    /// Sends the outbox and clears its row; a failed delivery stays for the sweep.
    async fn delivered(&self, c: &Coordinator, decided: &Decided) {
        let t = &decided.transition;
        if t.outbox.is_empty() {
            return;
        }
        match self.0.deliver(&t.outbox, c.clock.now_ms()).await {
            Ok(()) => {
                let id = outbox_id(&t.header.id, t.header.version);
                if let Err(e) = c.store.clear_outbox(&[id]).await {
                    tracing::warn!(run = %t.header.id, error = %e, "clearing a delivered outbox row failed; the sweep will send it again");
                }
            }
            Err(e) => {
                tracing::warn!(run = %t.header.id, error = %e, "delivering the outbox failed; the sweep will send it");
            }
        }
    }

    async fn started(&self, c: &Coordinator, _run: LoadedRun, decided: Decided) {
        self.delivered(c, &decided).await;
    }

    async fn to_coordinator(&self, bodies: &[String]) -> Result<(), StoreError> {
        self.0.to_coordinator(bodies).await
    }

    async fn dead_letter(&self, message: &Inbound, reason: &str) -> Result<(), StoreError> {
        self.0.dead_letter("coordinator", message, reason).await
    }

    async fn resend(&self, items: &[OutboxItem], now: u64) -> Result<(), StoreError> {
        self.0.deliver(items, now).await
    }

    async fn dead_letters(&self, max: usize) -> Result<Vec<DeadLetter>, StoreError> {
        self.0.dead_letters(max).await
    }

    async fn settle_dead_letter(&self, letter: &DeadLetter, done: bool) -> Result<(), StoreError> {
        self.0.settle_dead_letter(letter, done).await
    }
}

/// A `workflow` step on a queue: the child's start goes out with the commit (so its result can
/// never arrive before the parent records that it waits). A successor (`continue_as_new`)
/// starts the same way and the step succeeds at once.
fn start_child(
    run: &LoadedRun,
    d: &baton_core::engine::Dispatch,
    events: &mut VecDeque<EventKind>,
    out: &mut Vec<OutboxItem>,
) {
    let req = match children::ChildRequest::from_dispatch(d) {
        Ok(r) => r,
        Err(e) => return events.push_back(result_event(d, Err(e), false, None)),
    };
    let (workflow, definition) = match &req.name {
        Some(n) if !(req.continue_as_new && n == &run.plan.workflow.name) => (n.clone(), None),
        _ => (run.plan.workflow.name.clone(), Some(run.plan.hash.clone())),
    };
    let mocks = run.header.mocks.as_ref().map(|m| crate::mocks::Mocks::for_child(m, &workflow));
    let body = body_of(&CoordinatorMessage::Start {
        workflow,
        definition,
        input: req.input.clone(),
        mocks,
        run_id: Some(req.run_id.clone()),
        dedupe: None,
        parent: req.link(d, &run.header.id, &run.state),
    });
    out.push(OutboxItem::Coordinator { body });
    if req.continue_as_new {
        events.push_back(result_event(d, Ok(children::continued_output(&req.run_id)), false, None));
    }
}
