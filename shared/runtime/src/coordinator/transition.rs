//! The one path every change to a run takes, whatever the host: load → decide (with the pure
//! work it leads to) → commit → deliver. How the work leaves is the [`Delivery`]'s business.

use std::collections::VecDeque;
use std::sync::Arc;

use baton_core::Plan;
use baton_core::engine::{Command, Event, EventKind, ParentLink, StepError, decide};
use baton_core::ids::RunId;
use serde_json::Value;

use super::delivery::{Decided, Family};
use super::inline_calls::{FollowUp, Here};
use super::{
    Coordinator, LoadedRun, children, mock_answer, mocked_task_event, result_event, scripted_result, seal, tool_call,
};
use crate::error::{RuntimeError, StoreError};
use crate::metering::{Usage, add, measure};
use crate::mocks::Mocks;
use crate::ports::{Precondition, RunHeader, Transition};

/// How many times a run is reloaded and decided again after losing a race.
const CONFLICT_RETRIES: usize = 16;

/// How long to wait before deciding again after losing a race for a run: exponential from 1 ms,
/// capped at 64 ms, with full jitter, so coordinators racing for one run spread out instead of
/// colliding again in lockstep. Real time, not the coordinator's clock: the race is with other
/// processes, whatever time the runs go by.
fn conflict_backoff(attempt: usize) -> std::time::Duration {
    let cap_us = 1_000u64 << attempt.min(6);
    // Any spread will do; a v4 UUID is random bits at hand.
    let jitter = uuid::Uuid::new_v4().as_u64_pair().0 % (cap_us + 1);
    std::time::Duration::from_micros(jitter)
}

impl Coordinator {
    /// Decides `events` and everything pure they lead to (inline tools, scripted answers) as one
    /// transition, projects its tasks and lifecycle events, and has the delivery record the
    /// work that leaves.
    pub(super) async fn decide_transition(
        &self,
        run: &mut LoadedRun,
        precondition: Precondition,
        events: Vec<EventKind>,
    ) -> Result<Decided, RuntimeError> {
        let at = self.clock.now_ms();
        let mut queue: VecDeque<EventKind> = events.into();
        let mut journal = Vec::new();
        let mut audit = Vec::new();
        let mut sealed = Vec::new();
        let mut decided = Vec::new();
        let mut outbox = Vec::new();
        let mut leaving = Vec::new();
        let mut pending = Vec::new();
        let waited_on = children::live_children(&run.plan, &run.state);
        loop {
            let out = self.absorb(run, std::mem::take(&mut pending), &mut queue).await;
            outbox.extend(self.delivery.record(run, &out, &mut queue));
            leaving.extend(out);
            let Some(kind) = queue.pop_front() else { break };
            let event = Event { at, kind };
            let d = decide(&run.plan, &mut run.state, &event);
            run.header.events += 1;
            journal.push((run.header.events, event));
            audit.extend(d.audit);
            sealed.extend(d.sealed);
            decided.extend(d.commands.iter().cloned());
            pending = d.commands;
        }
        let family = Family {
            cancel: children::children_to_cancel(&waited_on, &run.plan, &run.state),
            to_parent: self.parent_result(&run.plan, &run.state).await,
        };
        outbox.extend(self.delivery.record_family(&run.header.id, &family));
        let mut transition = seal(run, precondition, journal, audit, outbox);
        transition.sealed = sealed;
        let plan = run.plan.clone();
        self.project_commands(&plan, &mut transition, &decided).await?;
        Ok(Decided { transition, leaving, family })
    }

    /// Sorts commands: scripted task answers (and, where the delivery wants it, scripted results
    /// and inline tools) become events decided in the same transition, the cache is written;
    /// returns what leaves (calls, children, timers).
    async fn absorb(
        &self,
        run: &mut LoadedRun,
        commands: Vec<Command>,
        queue: &mut VecDeque<EventKind>,
    ) -> Vec<Command> {
        let mut leaving = Vec::new();
        for c in commands {
            match c {
                // Carried out after the commit, in this process, step by step.
                Command::Dispatch(d) if !self.delivery.decides_pure_work() => leaving.push(Command::Dispatch(d)),
                Command::Dispatch(d) => {
                    if let Some(event) = scripted_result(run, &d, self.clock.now_ms()) {
                        queue.push_back(event);
                        continue;
                    }
                    if d.tool == children::WORKFLOW_TOOL {
                        leaving.push(Command::Dispatch(d));
                        continue;
                    }
                    match self.tools.get(&d.tool).filter(|t| t.inline()) {
                        Some(tool) => {
                            let out = tool.run(&tool_call(&run.header.id, &d)).await;
                            queue.push_back(result_event(&d, out.result, false, out.report));
                        }
                        None if self.delivery.carries(&self.tools, &d.tool) => leaving.push(Command::Dispatch(d)),
                        None => {
                            let err =
                                StepError::new("tool", format!("no worker for tool `{}` in this deployment", d.tool));
                            queue.push_back(result_event(&d, Err(err), false, None));
                        }
                    }
                }
                Command::ScheduleTimer { .. } | Command::CancelTimer { .. } => leaving.push(c),
                Command::OpenTask { task, node, step, wait, .. } => {
                    if let Some(answer) = mock_answer(run, &step)
                        && let Some(event) = mocked_task_event(&run.state, &task, &node, wait.is_some(), answer)
                    {
                        queue.push_back(event);
                    }
                }
                Command::PutCache { key, value, ttl_ms } => {
                    crate::tools::cache::put(self.store.as_ref(), &key, &value, ttl_ms, self.clock.now_ms()).await;
                }
                Command::ReassignTask { .. }
                | Command::CloseTask { .. }
                | Command::EmitEvent { .. }
                | Command::CompleteRun { .. } => {}
            }
        }
        leaving
    }

    /// Applies `events` to one run: decides them, commits, then delivers. A lost race reloads
    /// the run and decides the same events again; an ended run takes nothing.
    pub async fn advance(&self, run_id: &RunId, events: Vec<EventKind>) -> Result<(), RuntimeError> {
        self.advance_carrying(run_id, events, Usage::new()).await
    }

    /// [`Coordinator::advance`], adding `carried` (requests spent for the run elsewhere) to
    /// the run's account.
    pub(super) async fn advance_carrying(
        &self,
        run_id: &RunId,
        events: Vec<EventKind>,
        carried: Usage,
    ) -> Result<(), RuntimeError> {
        use tracing::Instrument;
        let span = tracing::info_span!("advance", run_id = %run_id, events = events.len());
        self.advance_inner(run_id, events, carried).instrument(span).await
    }

    async fn advance_inner(&self, run_id: &RunId, events: Vec<EventKind>, carried: Usage) -> Result<(), RuntimeError> {
        self.advance_from(run_id, None, events, carried, FollowUp::default()).await
    }

    /// Decides `events` on the run (`cached` when this process has just committed it, else
    /// loaded), commits, and delivers; calls the coordinator runs itself come back as the next
    /// events of the same loop, decided on the run as committed (no read), with `follow`'s writes.
    async fn advance_from(
        &self,
        run_id: &RunId,
        mut cached: Option<LoadedRun>,
        mut events: Vec<EventKind>,
        carried: Usage,
        mut follow: FollowUp,
    ) -> Result<(), RuntimeError> {
        let mut spent = carried;
        let mut attempt = 0;
        while attempt < CONFLICT_RETRIES {
            let (prepared, used) = measure(async {
                let mut run = match cached.take() {
                    Some(run) => run,
                    None => self.load_fresh(run_id).await?,
                };
                if run.state.status.is_terminal() && !events.iter().any(EventKind::reopens) {
                    // Late results, timers and answers of an ended run change nothing; writing
                    // for them would only grow the journal. An operator's redrive or retry is
                    // the one thing that makes it go on.
                    return Ok::<_, RuntimeError>(None);
                }
                let precondition = Precondition::MatchesVersion(run.header.version);
                let mut decided = self.decide_transition(&mut run, precondition, events.clone()).await?;
                follow.apply(&mut decided.transition);
                Ok(Some((run, decided)))
            })
            .await;
            add(&mut spent, &used);
            let Some((mut run, mut decided)) = prepared? else { return Ok(()) };
            let here = self.choose_inline(&decided.transition);
            match self.commit_metered(&mut decided.transition, &spent, &here).await {
                Ok(()) => {
                    self.after_commit(&decided.transition).await;
                    if here.calls.is_empty() {
                        self.delivery.delivered(self, &decided).await;
                        return Ok(());
                    }
                    let Some((next, next_follow)) = self.run_here(&decided.transition, here).await else {
                        return Ok(());
                    };
                    self.as_committed(&mut run, &decided.transition);
                    cached = Some(run);
                    events = next;
                    spent = next_follow.usage.clone();
                    follow = next_follow;
                    attempt = 0;
                }
                Err((e, used)) if e.is_retryable() => {
                    add(&mut spent, &used);
                    tokio::time::sleep(conflict_backoff(attempt)).await;
                    attempt += 1;
                }
                // Too much for one write: decide the events one at a time, a transition each.
                Err((StoreError::TooLarge { .. }, used)) if events.len() > 1 => {
                    add(&mut spent, &used);
                    let mut carried = spent;
                    let mut follow = Some(follow);
                    for event in events {
                        let f = follow.take().unwrap_or_default();
                        Box::pin(self.advance_from(run_id, None, vec![event], std::mem::take(&mut carried), f)).await?;
                    }
                    return Ok(());
                }
                Err((e, _)) => return Err(e.into()),
            }
        }
        Err(StoreError::Conflict { run_id: run_id.clone(), expected: 0 }.into())
    }

    /// Creates a run: checks input and mocks (nothing is written when they fail), stores the
    /// definition, commits the first decision and delivers what it left. A chosen `run_id` (a
    /// child's, derived from its parent's step; a trigger's, from its event) that exists
    /// already is a `StoreError::Conflict`.
    pub(super) async fn start_with(
        &self,
        plan: Arc<Plan>,
        source: Option<&str>,
        input: Value,
        mocks: Option<Value>,
        run_id: Option<RunId>,
        parent: Option<ParentLink>,
    ) -> Result<RunId, RuntimeError> {
        let (input, read) =
            crate::metering::measure(self.with_batch_items(input, parent.as_ref(), run_id.as_ref())).await;
        let input = input?;
        plan.check_input(&input).map_err(RuntimeError::InvalidInput)?;
        let parsed = mocks.as_ref().map(|m| Mocks::parse(m, &plan)).transpose()?;
        if let Some(source) = source {
            self.remember_definition(&plan, source).await?;
        }
        let now = self.clock.now_ms();
        let run_id = run_id.unwrap_or_else(|| RunId::new(uuid::Uuid::now_v7().to_string()));
        let seed = self.entropy.next_u64();
        let mut state = baton_core::engine::new_run(&plan, run_id.clone(), now);
        state.parent = parent;
        if !plan.sensitive.is_empty() {
            // The secret the salts of its sensitive fields derive from: random, kept in the
            // state only, so an erasure can remove it.
            let (a, b) = (self.entropy.next_u64(), self.entropy.next_u64());
            state.seals.salt = Some(format!("{a:016x}{b:016x}"));
        }
        let memory = crate::memory::load(self.store.as_ref(), &plan, &input).await?;
        let header = RunHeader {
            id: run_id.clone(),
            workflow: plan.workflow.name.clone(),
            definition: plan.hash.clone(),
            status: state.status,
            version: 0,
            created_at: now,
            events: 0,
            mocks,
            usage: Default::default(),
        };
        let mut run =
            LoadedRun { plan, header, state, mocks: parsed, mock_calls: Default::default(), first_commands: None };
        // A mocks file that scripts a transform's result needs the transform to go out as a
        // call, as before revision 1.
        let scripts_transform = run.mocks.as_ref().is_some_and(|m| {
            m.steps.keys().any(|id| {
                run.plan.step(id).is_some_and(|s| matches!(s.kind, baton_core::plan::StepKind::Transform { .. }))
            })
        });
        let engine = if scripts_transform { 0 } else { baton_core::engine::ENGINE_REVISION };
        let started = vec![EventKind::RunStarted { input, seed, memory, engine }];
        let (decided, mut spent) = measure(self.decide_transition(&mut run, Precondition::DoesNotExist, started)).await;
        // A batch's items were read for this run: its first commit accounts for the reads.
        crate::metering::add(&mut spent, &read);
        let mut decided = decided?;
        let here = self.choose_inline(&decided.transition);
        self.commit_metered(&mut decided.transition, &spent, &here).await.map_err(|(e, _)| e)?;
        self.after_commit(&decided.transition).await;
        if here.calls.is_empty() {
            self.delivery.started(self, run, decided).await;
            return Ok(run_id);
        }
        // A run started by the coordinator itself (a child, a trigger's) goes on inline.
        if let Some((next, follow)) = self.run_here(&decided.transition, here).await {
            self.as_committed(&mut run, &decided.transition);
            let usage = follow.usage.clone();
            self.advance_from(&run_id, Some(run), next, usage, follow).await?;
        }
        Ok(run_id)
    }

    /// Brings `run` to what committing `t` wrote, so the next transition is decided without a
    /// read: the header, with the account as the store wrote it (its own cost included).
    fn as_committed(&self, run: &mut LoadedRun, t: &Transition) {
        run.header = t.header.clone();
        if let Some(usage) = self.store.take_written_usage(&run.header.id, run.header.version) {
            run.header.usage = usage;
        }
    }

    /// Commits `t` with the run's account brought up to date: `spent`, plus what delivering its
    /// outbox and publishing its events will cost (the store adds the cost of its own write).
    /// On failure, returns what the failed attempt cost.
    pub(super) async fn commit_metered(
        &self,
        t: &mut Transition,
        spent: &Usage,
        here: &Here,
    ) -> Result<(), (StoreError, Usage)> {
        add(&mut t.header.usage, spent);
        // Calls that run here cost no delivery; their row goes with the next commit.
        t.runs_here = here.calls.len();
        let leaving = if here.calls.is_empty() { &t.outbox } else { &here.rest };
        add(&mut t.header.usage, &self.delivery.expected_usage(leaving, self.clock.now_ms()));
        if let Some(bus) = &self.bus
            && !t.bus.is_empty()
        {
            add(&mut t.header.usage, &bus.expected_usage(t.bus.len()));
        }
        let (res, used) = measure(self.store.commit(std::slice::from_ref(t))).await;
        res.map_err(|e| (e, used))
    }

    /// What follows every commit: lifecycle events go out, observers see the records.
    pub(super) async fn after_commit(&self, t: &Transition) {
        if !t.bus.is_empty() {
            self.publish_committed(t).await;
        }
        if let Some(o) = &self.observer {
            o.on_records(&t.header.id, &t.state, &t.audit);
        }
    }

    /// Publishes the lifecycle events `t` committed and marks them, without listing the store's
    /// pending events first when the store can name them; others go out with the next flush
    /// (a loop's start, a sweep tick).
    async fn publish_committed(&self, t: &Transition) {
        let Some(bus) = &self.bus else { return };
        let Some(ids) = self.store.bus_event_ids(t) else { return self.flush_bus_logged().await };
        let published = match bus.publish(&t.bus).await {
            Ok(()) => self.store.mark_bus_published(&ids).await,
            Err(e) => Err(e),
        };
        if let Err(e) = published {
            tracing::warn!(run = %t.header.id, error = %e, "publishing lifecycle events failed; they stay in the outbox for the next flush");
        }
    }

    /// Cancels the children a run stopped waiting for and gives an ended child's result to its
    /// parent, each as a change of that run. Best effort: a parent that misses the result finds
    /// it when it is driven again (its call is re-issued and finds the child ended).
    pub(super) async fn tell_family(&self, run_id: &RunId, family: &Family) {
        for child in &family.cancel {
            let kind = EventKind::CancelRequested { reason: children::cancel_reason(run_id) };
            match Box::pin(self.advance(child, vec![kind])).await {
                Ok(()) | Err(RuntimeError::UnknownRun(_)) => {}
                Err(e) => tracing::warn!(child = %child, error = %e, "cancelling a child run failed"),
            }
        }
        if let Some((parent, kind)) = &family.to_parent {
            match Box::pin(self.advance(parent, vec![kind.clone()])).await {
                Ok(()) | Err(RuntimeError::UnknownRun(_)) => {}
                Err(e) => tracing::warn!(parent = %parent, error = %e, "giving a child's result to its parent failed"),
            }
        }
    }
}

#[cfg(test)]
mod backoff_tests {
    use super::{CONFLICT_RETRIES, conflict_backoff};

    #[test]
    fn conflict_backoff_grows_to_its_cap_and_spreads() {
        for attempt in 0..CONFLICT_RETRIES {
            let cap = std::time::Duration::from_micros(1_000 << attempt.min(6));
            assert!(conflict_backoff(attempt) <= cap, "attempt {attempt}");
        }
        let waits: std::collections::BTreeSet<_> = (0..32).map(|_| conflict_backoff(6)).collect();
        assert!(waits.len() > 16, "jitter spreads the waits: {waits:?}");
    }
}
