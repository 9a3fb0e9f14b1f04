//! The coordinator as a queue consumer (the AWS backend): each batch of messages is grouped by
//! run; each run is loaded, its events decided, pure work (transform steps, mocked answers)
//! settled on the spot, and the result committed in one write together with an outbox row for
//! the work that leaves the process (tool calls, timers). The outbox is delivered after the
//! commit and cleared; a sweep re-sends rows a crash left behind.

use std::collections::VecDeque;
use std::sync::Arc;

use baton_core::engine::{Command, Event, EventKind, ParentLink, StepError, TimerKind, decide};
use serde_json::Value;

use super::{Coordinator, LoadedRun, children, mock_answer, mocked_task_event, result_event};
use crate::error::{RuntimeError, StoreError};
use crate::messages::{Parsed, parse_coordinator};
use crate::metering::{Usage, add, measure};
use crate::ports::{BatchReport, Dispatcher, Inbound, OutboxItem, Precondition, RunHeader, ToolCall, Transition};

/// How many times a run is reloaded and decided again after losing a race.
const CONFLICT_RETRIES: usize = 16;

/// Outbox rows younger than this belong to a coordinator that may still be delivering them;
/// the sweep leaves them alone.
pub const SWEEP_LEASE_MS: u64 = 10_000;

/// The canonical id of the outbox row a transition writes: `<run>/<version>`.
pub fn outbox_id(run_id: &str, version: u64) -> String {
    format!("{run_id}/{version:010}")
}

impl Coordinator {
    /// Hands outside work to `dispatcher` through the transactional outbox instead of running it
    /// in this process (the AWS backend's coordinator, `baton dev`, and the CLI on a stack).
    pub fn with_dispatcher(mut self, dispatcher: Arc<dyn Dispatcher>) -> Self {
        self.dispatcher = Some(dispatcher);
        self
    }

    /// Handles one batch from the coordinator queue: results, timers and trigger events.
    /// A body that can never be handled is dead-lettered with its reason; a failure that may
    /// pass (a throttled store, an unreachable queue) leaves the message for redelivery.
    pub async fn handle_batch(&self, messages: &[Inbound]) -> BatchReport {
        let mut report = BatchReport::default();
        let mut order: Vec<String> = Vec::new();
        let mut grouped: std::collections::HashMap<String, (Vec<EventKind>, Vec<&Inbound>, Usage)> = Default::default();
        // The batch's delivery cost goes to the first run it carries.
        let mut overhead: Usage = messages.first().map(|m| m.usage.clone()).unwrap_or_default();
        for m in messages {
            match parse_coordinator(&m.body) {
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
                Ok(Parsed::Start { workflow, definition, input, mocks, run_id, parent }) => {
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
                Ok(Parsed::Answer { task, answer }) => match self.answer_task(&task, answer).await {
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
                },
                Ok(Parsed::Cancel { run_id, reason }) => {
                    if !grouped.contains_key(&run_id) {
                        order.push(run_id.clone());
                    }
                    let g = grouped.entry(run_id).or_default();
                    g.0.push(EventKind::CancelRequested { reason });
                    g.1.push(m);
                }
                Ok(Parsed::Sweep) => {
                    if let Err(e) = self.sweep(SWEEP_LEASE_MS).await {
                        tracing::warn!(error = %e, "outbox sweep failed");
                    }
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

    async fn dead_letter(&self, m: &Inbound, reason: &str, report: &mut BatchReport) {
        tracing::error!(message = %m.id, reason, "dead-lettering a coordinator message");
        let sent = match &self.dispatcher {
            Some(d) => d.dead_letter("coordinator", m, reason).await,
            None => Err(StoreError::Backend("no dispatcher to dead-letter with".into())),
        };
        match sent {
            Ok(()) => report.dead_lettered.push((m.id.clone(), reason.to_owned())),
            // Leave it on the queue: its redrive policy moves it to the DLQ after the receive limit.
            Err(e) => {
                tracing::error!(message = %m.id, error = %e, "could not dead-letter; leaving the message for the redrive policy");
                report.failed.push(m.id.clone());
            }
        }
    }

    /// Applies `events` to one run: decides them, settles pure work, commits with the outbox,
    /// then delivers it. A lost race reloads the run and decides the same events again.
    pub async fn advance(&self, run_id: &str, events: Vec<EventKind>) -> Result<(), RuntimeError> {
        self.advance_carrying(run_id, events, Usage::new()).await
    }

    /// [`Coordinator::advance`], adding `carried` (requests spent for the run elsewhere) to
    /// the run's account.
    async fn advance_carrying(&self, run_id: &str, events: Vec<EventKind>, carried: Usage) -> Result<(), RuntimeError> {
        use tracing::Instrument;
        let span = tracing::info_span!("advance", run_id = %run_id, events = events.len());
        self.advance_inner(run_id, events, carried).instrument(span).await
    }

    async fn advance_inner(&self, run_id: &str, events: Vec<EventKind>, carried: Usage) -> Result<(), RuntimeError> {
        let mut spent = carried;
        for _ in 0..CONFLICT_RETRIES {
            let (prepared, used) = measure(async {
                let mut run = self.load_fresh(run_id).await?;
                if run.state.status.is_terminal() {
                    // Late results and timers of an ended run change nothing; writing for them
                    // would only grow the journal.
                    return Ok::<_, RuntimeError>(None);
                }
                let precondition = Precondition::MatchesVersion(run.header.version);
                Ok(Some(self.settle(&mut run, precondition, events.clone(), Vec::new()).await?))
            })
            .await;
            add(&mut spent, &used);
            let Some(mut t) = prepared? else { return Ok(()) };
            match self.commit_metered(&mut t, &spent).await {
                Ok(()) => {
                    self.after_commit(&t).await;
                    return Ok(());
                }
                Err((e, used)) if e.is_retryable() => add(&mut spent, &used),
                // Too much for one write: decide the events one at a time, a transition each.
                Err((StoreError::TooLarge { .. }, used)) if events.len() > 1 => {
                    add(&mut spent, &used);
                    let mut carried = spent;
                    for event in events {
                        Box::pin(self.advance_inner(run_id, vec![event], std::mem::take(&mut carried))).await?;
                    }
                    return Ok(());
                }
                Err((e, _)) => return Err(e.into()),
            }
        }
        Err(StoreError::Conflict { run_id: run_id.to_owned(), expected: 0 }.into())
    }

    /// Commits `t` with the run's account brought up to date: `spent`, plus what delivering its
    /// outbox and publishing its events will cost (the store adds the cost of its own write).
    /// On failure, returns what the failed attempt cost.
    async fn commit_metered(&self, t: &mut Transition, spent: &Usage) -> Result<(), (StoreError, Usage)> {
        add(&mut t.header.usage, spent);
        if let Some(d) = &self.dispatcher {
            add(&mut t.header.usage, &d.expected_usage(&t.outbox, self.clock.now_ms()));
        }
        if let Some(bus) = &self.bus
            && !t.bus.is_empty()
        {
            add(&mut t.header.usage, &bus.expected_usage(t.bus.len()));
        }
        let (res, used) = measure(self.store.commit(std::slice::from_ref(t))).await;
        res.map_err(|e| (e, used))
    }

    /// Starts `workflow` at `definition` (stored beforehand), or its published version. With a
    /// `run_id`, a redelivered start finds the run already there and starts nothing.
    pub async fn start_requested(
        &self,
        workflow: &str,
        definition: Option<String>,
        input: Value,
        mocks: Option<Value>,
        run_id: Option<String>,
        parent: Option<ParentLink>,
    ) -> Result<Option<String>, RuntimeError> {
        let plan = match definition {
            Some(hash) => self.plan_for(workflow, &hash).await?,
            None => match self.published(workflow).await? {
                Some((plan, _)) => plan,
                None => return Err(RuntimeError::UnknownWorkflow(workflow.to_owned())),
            },
        };
        plan.check_input(&input).map_err(RuntimeError::InvalidInput)?;
        if let Some(m) = &mocks {
            crate::mocks::Mocks::parse(m, &plan)?;
        }
        match self.start_queued_child(plan, input, mocks, run_id, parent).await {
            Ok(id) => Ok(Some(id)),
            Err(RuntimeError::Store(StoreError::Conflict { .. })) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Creates a run whose work goes through the outbox; returns its id.
    pub(super) async fn start_queued(
        &self,
        plan: Arc<baton_core::Plan>,
        input: Value,
        mocks: Option<Value>,
        run_id: Option<String>,
    ) -> Result<String, RuntimeError> {
        self.start_queued_child(plan, input, mocks, run_id, None).await
    }

    /// [`Coordinator::start_queued`] with a chosen run id and, for a child run, the link to the
    /// parent's step it answers.
    pub(super) async fn start_queued_child(
        &self,
        plan: Arc<baton_core::Plan>,
        input: Value,
        mocks: Option<Value>,
        run_id: Option<String>,
        parent: Option<ParentLink>,
    ) -> Result<String, RuntimeError> {
        let now = self.clock.now_ms();
        let run_id = run_id.unwrap_or_else(|| uuid::Uuid::now_v7().to_string());
        let seed = uuid::Uuid::new_v4().as_u64_pair().0;
        let mut state = baton_core::engine::new_run(&plan, &run_id, now);
        state.parent = parent;
        let memory = crate::memory::load(self.store.as_ref(), &plan, &input).await?;
        let parsed = mocks.as_ref().map(|m| crate::mocks::Mocks::parse(m, &plan)).transpose()?;
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
        let (t, spent) = measure(self.settle(
            &mut run,
            Precondition::DoesNotExist,
            vec![EventKind::RunStarted { input, seed, memory }],
            Vec::new(),
        ))
        .await;
        let mut t = t?;
        self.commit_metered(&mut t, &spent).await.map_err(|(e, _)| e)?;
        self.after_commit(&t).await;
        Ok(run_id)
    }

    /// Loads a run from the store (never from this process's cache: other coordinators move it).
    async fn load_fresh(&self, run_id: &str) -> Result<LoadedRun, RuntimeError> {
        if let Ok(mut s) = self.started.lock() {
            s.remove(run_id);
        }
        self.load(run_id).await
    }

    /// Decides `events` and everything pure they lead to, and builds one transition whose
    /// outbox holds the work for the outside world.
    async fn settle(
        &self,
        run: &mut LoadedRun,
        precondition: Precondition,
        events: Vec<EventKind>,
        commands: Vec<Command>,
    ) -> Result<Transition, RuntimeError> {
        let at = self.clock.now_ms();
        let mut queue: VecDeque<EventKind> = events.into();
        let mut journal = Vec::new();
        let mut audit = Vec::new();
        let mut decided = Vec::new();
        let mut outbox = Vec::new();
        let mut pending = commands;
        let waited_on = children::live_children(&run.plan, &run.state);
        loop {
            self.absorb(run, std::mem::take(&mut pending), &mut queue, &mut outbox).await;
            let Some(kind) = queue.pop_front() else { break };
            let event = Event { at, kind };
            let d = decide(&run.plan, &mut run.state, &event);
            run.header.events += 1;
            journal.push((run.header.events, event));
            audit.extend(d.audit);
            decided.extend(d.commands.iter().cloned());
            pending = d.commands;
        }
        for child in children::children_to_cancel(&waited_on, &run.plan, &run.state) {
            let reason = children::cancel_reason(&run.header.id);
            let body = crate::messages::body_of(&crate::messages::CoordinatorMessage::Cancel { run_id: child, reason });
            outbox.push(OutboxItem::Coordinator { body });
        }
        if let Some((parent, kind)) = children::result_for_parent(&run.plan, &run.state)
            && let Some(body) = crate::messages::event_body(&parent, kind)
        {
            outbox.push(OutboxItem::Coordinator { body });
        }
        let mut t = super::seal(run, precondition, journal, audit, outbox);
        let plan = run.plan.clone();
        self.project_commands(&plan, &mut t, &decided).await?;
        Ok(t)
    }

    /// Sorts commands: pure work and scripted answers become events decided in this same
    /// transition; calls and timers go to the outbox.
    async fn absorb(
        &self,
        run: &mut LoadedRun,
        commands: Vec<Command>,
        queue: &mut VecDeque<EventKind>,
        outbox: &mut Vec<OutboxItem>,
    ) {
        let run_id = run.header.id.clone();
        for c in commands {
            match c {
                Command::Dispatch(d) => {
                    if let Some(answer) = mock_answer(run, &d.step) {
                        queue.push_back(result_event(&d, answer, true, None));
                        continue;
                    }
                    if d.tool == "workflow" {
                        self.start_child_queued(run, &d, queue, outbox);
                        continue;
                    }
                    let local = self.tools.get(&d.tool).filter(|t| t.inline());
                    let call = ToolCall {
                        run_id: run_id.clone(),
                        node: d.node.clone(),
                        step: d.step.clone(),
                        attempt: d.attempt,
                        tool: d.tool.clone(),
                        input: d.input.clone(),
                        idempotency_key: d.idempotency_key.clone(),
                        timeout_ms: d.timeout_ms,
                        usage: Default::default(),
                    };
                    if let Some(tool) = local {
                        let out = tool.run(&call).await;
                        queue.push_back(result_event(&d, out.result, false, out.report));
                    } else if self.dispatcher.as_ref().is_some_and(|x| x.serves(&d.tool)) {
                        outbox.push(OutboxItem::Call(call));
                    } else {
                        let err = StepError::new("tool", format!("no worker for tool `{}` in this deployment", d.tool));
                        queue.push_back(result_event(&d, Err(err), false, None));
                    }
                }
                Command::ScheduleTimer { id, at } => {
                    let retry = matches!(run.state.timers.get(&id).map(|t| &t.kind), Some(TimerKind::Retry { .. }));
                    outbox.push(OutboxItem::Timer { run_id: run_id.clone(), id, at, retry });
                }
                Command::CancelTimer { id } => outbox.push(OutboxItem::CancelTimer { run_id: run_id.clone(), id }),
                Command::OpenTask { task, step, wait, .. } => {
                    if let Some(answer) = mock_answer(run, &step) {
                        queue.push_back(mocked_task_event(&task, wait.is_some(), answer));
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
    }

    /// A `workflow` step on a queue backend: the child's start goes out with the commit (so
    /// its result can never arrive before the parent records that it waits). A successor
    /// (`continue_as_new`) starts the same way and the step succeeds at once.
    fn start_child_queued(
        &self,
        run: &LoadedRun,
        d: &baton_core::engine::Dispatch,
        queue: &mut VecDeque<EventKind>,
        outbox: &mut Vec<OutboxItem>,
    ) {
        let req = match children::ChildRequest::from_dispatch(d) {
            Ok(r) => r,
            Err(e) => {
                queue.push_back(result_event(d, Err(e), false, None));
                return;
            }
        };
        let (workflow, definition) = match &req.name {
            Some(n) if !(req.continue_as_new && n == &run.plan.workflow.name) => (n.clone(), None),
            _ => (run.plan.workflow.name.clone(), Some(run.plan.hash.clone())),
        };
        let body = crate::messages::body_of(&crate::messages::CoordinatorMessage::Start {
            workflow,
            definition,
            input: req.input.clone(),
            mocks: None,
            run_id: Some(req.run_id.clone()),
            dedupe: None,
            parent: req.link(d, &run.header.id, &run.state),
        });
        outbox.push(OutboxItem::Coordinator { body });
        if req.continue_as_new {
            queue.push_back(result_event(d, Ok(children::continued_output(&req.run_id)), false, None));
        }
    }

    async fn send_to_coordinator(&self, bodies: &[String]) -> Result<(), StoreError> {
        match &self.dispatcher {
            Some(d) => d.to_coordinator(bodies).await,
            None => Err(StoreError::Backend("no dispatcher to send with".into())),
        }
    }

    /// After a commit: lifecycle events, observers, then the outbox (cleared once delivered;
    /// a failed delivery stays for the sweep).
    async fn after_commit(&self, t: &Transition) {
        if !t.bus.is_empty() {
            self.flush_bus_logged().await;
        }
        if let Some(o) = &self.observer {
            o.on_records(&t.header.id, &t.state, &t.audit);
        }
        if t.outbox.is_empty() {
            return;
        }
        let Some(d) = &self.dispatcher else { return };
        match d.deliver(&t.outbox, self.clock.now_ms()).await {
            Ok(()) => {
                let id = outbox_id(&t.header.id, t.header.version);
                if let Err(e) = self.store.clear_outbox(&[id]).await {
                    tracing::warn!(run = %t.header.id, error = %e, "clearing a delivered outbox row failed; the sweep will send it again");
                }
            }
            Err(e) => {
                tracing::warn!(run = %t.header.id, error = %e, "delivering the outbox failed; the sweep will send it");
            }
        }
    }

    /// Re-sends outbox rows committed more than `lease_ms` ago and still there (their
    /// coordinator died between commit and delivery, or delivery failed); returns how many
    /// rows were delivered. Duplicates are harmless: workers claim attempts and the engine
    /// ignores stale results and timers.
    pub async fn sweep(&self, lease_ms: u64) -> Result<usize, RuntimeError> {
        let Some(d) = &self.dispatcher else { return Ok(0) };
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
                match d.deliver(&row.items, now).await {
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

/// True when nothing more happens to the run without the outside world: it ended, or only
/// human tasks and escalations are pending.
pub fn is_settled(plan: &baton_core::Plan, state: &baton_core::engine::RunState) -> bool {
    if state.status.is_terminal() {
        return true;
    }
    let calls = baton_core::engine::in_flight(plan, state).iter().any(|c| matches!(c, Command::Dispatch(_)));
    let timers_pending = state.timers.values().any(|t| match &t.kind {
        TimerKind::Retry { .. } | TimerKind::Wake { .. } => true,
        TimerKind::Escalate { .. } | TimerKind::Timeout { .. } => false,
    });
    !calls && !timers_pending
}
