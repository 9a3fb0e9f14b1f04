//! The coordinator loop: feeds events to `decide`, commits each batch of decisions atomically,
//! then carries out the commands (tool calls, timers). Results come back as events.
//!
//! Crash safety follows from the order: state, journal and audit commit together before any
//! command runs, and on start every in-flight call of the stored state is re-issued with the same
//! idempotency key, so nothing recorded as finished runs again.
//!
//! Loading, deciding and projecting a transition are here; how the commands leave is one of two
//! deliveries: `drive` (in-process, the embedded backend) and `host` (a queue consumer with a
//! transactional outbox, the AWS backend).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use baton_core::Plan;
use baton_core::audit::AuditRecord;
use baton_core::engine::{Command, Dispatch, Event, EventKind, HumanAnswer, RunState, StepError, Verdict};
use baton_core::ids::{RunId, TaskId};
use baton_core::plan::tools::LLM_TOOL;
use serde_json::Value;

use crate::error::{RuntimeError, StoreError};
use crate::mocks::Mocks;
use crate::ports::{
    BusEvent, Clock, EventBus, Precondition, RunHeader, RunStore, StoredRun, TaskChange, TaskRecord, ToolCall,
    Transition,
};
use crate::tools::ToolRegistry;
use delivery::Delivery;

mod batches;
mod children;
mod dead_letters;
mod delivery;
mod drive;
mod host;
mod inline_calls;
mod transition;
pub use children::waiting_on as child_runs;
pub use delivery::outbox_id;
pub use drive::RunService;
pub use host::is_settled;
pub use inline_calls::{InlineCalls, MAX_INLINE_MS};

/// Receives audit records as they are committed (progress displays, logs).
pub trait Observer: Send + Sync {
    /// Called after each commit with the run's new records.
    fn on_records(&self, run_id: &RunId, state: &RunState, records: &[AuditRecord]);
}

/// Why `drive` returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DriveOutcome {
    /// Every driven run has ended.
    Finished,
    /// Nothing can happen until a person answers or an event arrives.
    Waiting,
    /// The shutdown signal fired; state is committed and `resume` continues.
    Detached,
}

struct LoadedRun {
    plan: Arc<Plan>,
    header: RunHeader,
    state: RunState,
    mocks: Option<Mocks>,
    mock_calls: HashMap<String, usize>,
    /// Commands of the run's first decision, when this coordinator just created it; otherwise
    /// `drive` re-issues the in-flight work found in the stored state.
    first_commands: Option<Vec<Command>>,
}

/// Drives runs through a [`RunStore`] and a [`ToolRegistry`].
pub struct Coordinator {
    store: Arc<dyn RunStore>,
    tools: ToolRegistry,
    clock: Arc<dyn Clock>,
    plans: Mutex<HashMap<String, Arc<Plan>>>,
    started: Mutex<HashMap<RunId, LoadedRun>>,
    observer: Option<Arc<dyn Observer>>,
    bus: Option<Arc<dyn EventBus>>,
    /// How committed work leaves: in this process, or through the outbox to queues.
    delivery: Arc<dyn Delivery>,
    callbacks: Option<Arc<crate::callback::CallbackSigner>>,
    /// Model-written handovers by task id: a transition decided again after a lost race must not
    /// call the model again.
    handovers: Mutex<HashMap<TaskId, String>>,
    /// The key a step result must be signed with to be believed (queue backends).
    message_key: Option<Arc<crate::message_auth::MessageKey>>,
    /// The EventBridge sources whose `HumanTaskResolved` events may answer tasks; any when none.
    answer_sources: Option<Vec<String>>,
    /// Calls this coordinator runs itself on a queue host (see [`InlineCalls`]).
    inline: Option<Arc<InlineCalls>>,
    /// Run seeds and salts.
    entropy: Arc<dyn crate::entropy::Entropy>,
}

impl Coordinator {
    /// A coordinator over `store` with `tools` and `clock`.
    pub fn new(store: Arc<dyn RunStore>, mut tools: ToolRegistry, clock: Arc<dyn Clock>) -> Self {
        // The engine's own tools work on the store, so every coordinator has them.
        let access = crate::tools::StoreAccess { store: store.clone(), clock: clock.clone() };
        if !tools.has("cache") {
            tools.register("cache", Arc::new(crate::tools::CacheTool(access.clone())));
        }
        if !tools.has("memory") {
            tools.register("memory", Arc::new(crate::memory::MemoryTool(access.clone())));
        }
        Self {
            store,
            tools,
            clock,
            plans: Mutex::new(HashMap::new()),
            started: Mutex::new(HashMap::new()),
            observer: None,
            bus: None,
            delivery: Arc::new(delivery::InProcess),
            callbacks: None,
            handovers: Mutex::new(HashMap::new()),
            message_key: None,
            answer_sources: None,
            inline: None,
            entropy: Arc::new(crate::entropy::OsEntropy),
        }
    }

    /// Adds (or replaces) a tool this coordinator runs (tests give the `items` tool an
    /// emulator's endpoint and keys this way).
    pub fn with_tool(mut self, name: &str, tool: Arc<dyn crate::ports::Tool>) -> Self {
        self.tools.register(name, tool);
        self
    }

    /// Runs short calls to `inline`'s tools in this process instead of sending them to their
    /// workers (a queue host only; see [`InlineCalls`]).
    pub fn with_inline_calls(mut self, inline: InlineCalls) -> Self {
        self.inline = Some(Arc::new(inline));
        self
    }

    /// Takes run seeds and salts from `entropy` instead of the operating system (a simulation
    /// replays one history per seed this way).
    pub fn with_entropy(mut self, entropy: Arc<dyn crate::entropy::Entropy>) -> Self {
        self.entropy = entropy;
        self
    }

    /// Takes task answers from the bus only from these EventBridge sources (others are
    /// dead-lettered with the reason).
    pub fn with_answer_sources(mut self, sources: Vec<String>) -> Self {
        self.answer_sources = Some(sources);
        self
    }

    /// Believes a step result from the queue only when its signature verifies with `key`
    /// (see [`crate::message_auth`]); others are dead-lettered with the reason.
    pub fn with_message_key(mut self, key: Arc<crate::message_auth::MessageKey>) -> Self {
        self.message_key = Some(key);
        self
    }

    /// Adds a signed callback link (`callback_url`, `callback_expires_at`) to every
    /// `HumanTaskCreated` event, so a task inbox can answer without credentials.
    pub fn with_callbacks(mut self, signer: Arc<crate::callback::CallbackSigner>) -> Self {
        self.callbacks = Some(signer);
        self
    }

    /// The callback signer, when links are issued.
    pub fn callbacks(&self) -> Option<&Arc<crate::callback::CallbackSigner>> {
        self.callbacks.as_ref()
    }

    /// Publishes lifecycle events from the store's outbox to `bus` after each commit.
    pub fn with_bus(mut self, bus: Arc<dyn EventBus>) -> Self {
        self.bus = Some(bus);
        self
    }

    /// Publishes every committed, unpublished lifecycle event (oldest first) and marks it. Runs
    /// after commits and when a loop starts, so events left by a crash go out too. A failure is
    /// logged and retried at the next flush: nothing is lost, and consumers see each event at
    /// least once.
    pub async fn flush_bus(&self) -> Result<usize, RuntimeError> {
        let Some(bus) = &self.bus else { return Ok(0) };
        let mut sent = 0;
        // An index that lags behind the marking can list published events again: once a flush.
        let mut seen = std::collections::HashSet::new();
        loop {
            let pending: Vec<(String, BusEvent)> = self
                .store
                .unpublished_bus_events(100)
                .await?
                .into_iter()
                .filter(|(id, e)| seen.insert((id.clone(), e.name.clone(), e.at)))
                .collect();
            if pending.is_empty() {
                return Ok(sent);
            }
            let (ids, events): (Vec<String>, Vec<BusEvent>) = pending.into_iter().unzip();
            bus.publish(&events).await?;
            self.store.mark_bus_published(&ids).await?;
            sent += ids.len();
        }
    }

    async fn flush_bus_logged(&self) {
        if let Err(e) = self.flush_bus().await {
            tracing::warn!(error = %e, "publishing lifecycle events failed; they stay in the outbox");
        }
    }

    /// Adds an observer of committed audit records.
    pub fn with_observer(mut self, observer: Arc<dyn Observer>) -> Self {
        self.observer = Some(observer);
        self
    }

    /// The store behind this coordinator.
    pub fn store(&self) -> &Arc<dyn RunStore> {
        &self.store
    }

    /// The plan a run is pinned to, compiled once per definition hash.
    pub async fn plan_for(&self, workflow: &str, hash: &str) -> Result<Arc<Plan>, RuntimeError> {
        if let Some(p) = self.plans.lock().ok().and_then(|m| m.get(hash).cloned()) {
            return Ok(p);
        }
        let source = self
            .store
            .get_definition(workflow, hash)
            .await?
            .ok_or_else(|| StoreError::Corrupt(format!("definition {hash} is missing")))?;
        let plan = Arc::new(baton_core::load_definition(None, &source).map_err(RuntimeError::InvalidDefinition)?);
        if let Ok(mut m) = self.plans.lock() {
            m.insert(hash.to_owned(), plan.clone());
        }
        Ok(plan)
    }

    /// Creates a run: checks the input (nothing is written when it fails), stores the definition,
    /// and commits the first decision. Call [`Coordinator::drive`] to run it.
    pub async fn start(
        &self,
        plan: Arc<Plan>,
        source: &str,
        input: Value,
        mocks: Option<Value>,
    ) -> Result<RunId, RuntimeError> {
        self.start_with(plan, Some(source), input, mocks, None, None).await
    }

    /// [`Coordinator::start`] with an id the caller chose (and may have locked already); an id
    /// that exists is a `StoreError::Conflict`.
    pub async fn start_as(
        &self,
        run_id: RunId,
        plan: Arc<Plan>,
        source: &str,
        input: Value,
        mocks: Option<Value>,
    ) -> Result<RunId, RuntimeError> {
        self.start_with(plan, Some(source), input, mocks, Some(run_id), None).await
    }

    /// Stores a definition the first time this coordinator sees it, and keeps its plan.
    async fn remember_definition(&self, plan: &Arc<Plan>, source: &str) -> Result<(), RuntimeError> {
        let known = self.plans.lock().map(|m| m.contains_key(&plan.hash)).unwrap_or(false);
        if !known {
            self.store.put_definition(&plan.hash, &plan.workflow.name, source).await?;
            if let Ok(mut m) = self.plans.lock() {
                m.insert(plan.hash.clone(), plan.clone());
            }
        }
        Ok(())
    }

    /// Publishes a definition: stores it and makes it the version `start` and triggers run.
    pub async fn publish(&self, plan: &Plan, source: &str) -> Result<(), RuntimeError> {
        self.store.put_definition(&plan.hash, &plan.workflow.name, source).await?;
        self.store.publish_definition(&plan.workflow.name, &plan.hash).await?;
        Ok(())
    }

    /// The published version of workflow `name` with its source.
    pub async fn published(&self, name: &str) -> Result<Option<(Arc<Plan>, String)>, RuntimeError> {
        let Some((_, hash)) = self.store.published_definitions().await?.into_iter().find(|(n, _)| n == name) else {
            return Ok(None);
        };
        let source = self
            .store
            .get_definition(name, &hash)
            .await?
            .ok_or_else(|| StoreError::Corrupt(format!("published definition {hash} of `{name}` is missing")))?;
        Ok(Some((self.plan_for(name, &hash).await?, source)))
    }

    /// Starts a run of every published workflow with an `event` trigger that matches `event`
    /// (EventBridge semantics); each run's input is the whole event, so `.input.detail` is its
    /// payload. Returns the new run ids.
    pub async fn start_for_event(&self, event: &Value) -> Result<Vec<RunId>, RuntimeError> {
        let mut started = Vec::new();
        let mut first_error = None;
        for (name, hash) in self.store.published_definitions().await? {
            let plan = self.plan_for(&name, &hash).await?;
            let hit = plan.workflow.triggers.iter().any(|t| match t {
                baton_core::model::Trigger::Event { event: pattern } => baton_core::pattern::matches(pattern, event),
                baton_core::model::Trigger::Schedule { .. } => false,
            });
            if !hit {
                continue;
            }
            // The same event may come twice (a queue redelivers): its id and the workflow name
            // make the run id, so a redelivery finds the run already there.
            let run_id = event
                .get("id")
                .and_then(Value::as_str)
                .map(|id| crate::messages::derived_run_id("e", &format!("{id}/{name}")));
            let outcome =
                match (self.start_with(plan.clone(), None, event.clone(), None, run_id.clone(), None).await, run_id) {
                    (Err(RuntimeError::Store(StoreError::Conflict { .. })), Some(run_id)) => {
                        tracing::info!(workflow = %name, run = %run_id, "event already started this workflow");
                        Ok(run_id)
                    }
                    (other, _) => other,
                };
            match outcome {
                Ok(id) => started.push(id),
                // An event that does not fit the workflow's input schema starts nothing: it is
                // refused (dead-lettered on a queue) with the reason, after the other matches.
                Err(RuntimeError::InvalidInput(problems)) => {
                    tracing::warn!(workflow = %name, problems = ?problems, "event matched a trigger but is not valid input");
                    first_error.get_or_insert(RuntimeError::InvalidInput(
                        problems.into_iter().map(|p| format!("workflow `{name}`: {p}")).collect(),
                    ));
                }
                // Keep starting the other matches; the error makes the event come again, and
                // the runs started now are then found already there.
                Err(e) => {
                    tracing::warn!(workflow = %name, error = %e, "starting a run for an event failed");
                    first_error.get_or_insert(e);
                }
            }
        }
        match first_error {
            Some(e) => Err(e),
            None => Ok(started),
        }
    }

    /// Applies an outside event (a task answer, a cancel) to a run, reloading on conflicts.
    pub async fn submit(&self, run_id: &RunId, kind: EventKind) -> Result<(), RuntimeError> {
        self.advance(run_id, vec![kind]).await
    }

    /// Answers an open task after checking the answer against the task's form.
    pub async fn answer_task(&self, task_id: &TaskId, answer: HumanAnswer) -> Result<RunId, RuntimeError> {
        let task = self
            .store
            .get_task(task_id)
            .await?
            .filter(|t| t.status == "open")
            .ok_or_else(|| RuntimeError::UnknownTask(task_id.clone()))?;
        if task.wait.is_some() {
            return Err(RuntimeError::InvalidAnswer(vec![format!(
                "`{task_id}` is an event wait: it ends when a matching event arrives (`baton event`), not by an answer"
            )]));
        }
        if answer.decision == Verdict::Approve
            && let Some(form) = &task.form
        {
            baton_core::plan::check_against_schema(form, &answer.data).map_err(RuntimeError::InvalidAnswer)?;
        }
        self.submit(&task.run_id, EventKind::HumanResolved { task: task_id.clone(), answer }).await?;
        Ok(task.run_id)
    }

    /// True when `run_id` is a run this coordinator just created (not yet driven) that ended in
    /// its first commit.
    pub fn ended_at_start(&self, run_id: &RunId) -> bool {
        self.started.lock().ok().and_then(|s| s.get(run_id).map(|r| r.state.status.is_terminal())).unwrap_or(false)
    }

    /// Takes a run this coordinator just created out of its hand-over when it ended in its first
    /// commit and has no parent: driving it would do nothing.
    pub fn take_ended_at_start(&self, run_id: &RunId) -> Option<(Arc<Plan>, RunState)> {
        let mut started = self.started.lock().ok()?;
        let done = started.get(run_id).is_some_and(|r| r.state.status.is_terminal() && r.state.parent.is_none());
        if !done {
            return None;
        }
        started.remove(run_id).map(|r| (r.plan, r.state))
    }

    /// An outside event: starts the published workflows whose triggers match it, then ends the
    /// event waits it matches. Returns the runs it started or resumed. Delivered again (a queue
    /// redelivery), it starts nothing twice on a queue backend and finds the waits ended.
    pub async fn deliver_event(&self, event: &Value) -> Result<Vec<RunId>, RuntimeError> {
        let mut ids = self.start_for_event(event).await?;
        for id in self.deliver_to_waits(event).await? {
            if !ids.contains(&id) {
                ids.push(id);
            }
        }
        Ok(ids)
    }

    /// Hands `event` to every open event wait it matches: the wait's pattern or its heartbeat's
    /// (EventBridge semantics) and, when the step correlates, `correlate.event` on the event equal to the key
    /// the run computed when it began waiting. Returns the runs it went to. A wait whose
    /// correlation cannot be evaluated on this event is not matched (and says why in the log).
    pub async fn deliver_to_waits(&self, event: &Value) -> Result<Vec<RunId>, RuntimeError> {
        let mut delivered = Vec::new();
        for task in self.store.open_waits(&crate::wait_index::event_keys(event)).await? {
            let Some(wait) = &task.wait else { continue };
            if !crate::wait_index::wait_matches(wait, event) {
                continue;
            }
            if let Some(src) = wait.get("correlate_event").and_then(Value::as_str) {
                let key = match baton_core::expr::Expr::compile(src)
                    .map_err(|e| e.to_string())
                    .and_then(|e| e.eval(event).map_err(|e| e.to_string()))
                {
                    Ok(k) => k,
                    Err(e) => {
                        tracing::info!(wait = %task.id, error = %e, "the event's correlation key cannot be read; not this wait's event");
                        continue;
                    }
                };
                if Some(&key) != wait.get("key") {
                    continue;
                }
            }
            match self
                .submit(&task.run_id, EventKind::EventReceived { task: task.id.clone(), payload: event.clone() })
                .await
            {
                Ok(()) => delivered.push(task.run_id.clone()),
                // The run ended meanwhile: the wait is moot.
                Err(RuntimeError::UnknownRun(_)) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(delivered)
    }

    async fn load(&self, run_id: &RunId) -> Result<LoadedRun, RuntimeError> {
        // A run this coordinator just created is exactly as committed: skip the read.
        if let Some(run) = self.started.lock().ok().and_then(|mut s| s.remove(run_id)) {
            return Ok(run);
        }
        let stored = self.store.load_run(run_id).await?.ok_or_else(|| RuntimeError::UnknownRun(run_id.clone()))?;
        self.loaded(run_id, stored).await
    }

    /// A run as the store gave it, ready to drive: its plan, and its mocks with the scripted
    /// answers already used counted.
    async fn loaded(&self, run_id: &RunId, stored: StoredRun) -> Result<LoadedRun, RuntimeError> {
        let plan = self.plan_for(&stored.header.workflow, &stored.header.definition).await?;
        let mocks = match &stored.header.mocks {
            Some(m) => Some(Mocks::parse(m, &plan)?),
            None => None,
        };
        let mut mock_calls = HashMap::new();
        if mocks.is_some() {
            // Count the scripted answers already consumed, so a resumed run continues the script.
            for (_, e) in self.store.load_events(run_id).await? {
                if let EventKind::StepSucceeded { node, mocked: true, .. }
                | EventKind::StepFailed { node, mocked: true, .. } = &e.kind
                    && let Some(n) = stored.state.nodes.get(node)
                {
                    *mock_calls.entry(plan.steps[n.step].id.clone()).or_insert(0) += 1;
                }
            }
        }
        Ok(LoadedRun { plan, header: stored.header, state: stored.state, mocks, mock_calls, first_commands: None })
    }

    /// Loads a run from the store (never from this process's cache: other coordinators move it).
    async fn load_fresh(&self, run_id: &RunId) -> Result<LoadedRun, RuntimeError> {
        if let Ok(mut s) = self.started.lock() {
            s.remove(run_id);
        }
        self.load(run_id).await
    }

    /// Turns task and bus commands into rows written with the transition (transactional outbox).
    async fn project_commands(
        &self,
        plan: &Plan,
        t: &mut Transition,
        commands: &[Command],
    ) -> Result<(), RuntimeError> {
        let mut history: Option<Vec<AuditRecord>> = None;
        for c in commands {
            match c {
                Command::OpenTask { task, node, step, queue, prompt, form, summary, wait } => {
                    let summary = if *summary {
                        if history.is_none() {
                            let mut h = self.store.load_audit(&t.header.id).await?;
                            h.extend(t.audit.iter().cloned());
                            history = Some(h);
                        }
                        let audit = history.as_deref().unwrap_or(&[]);
                        let base = baton_core::handover::handover_summary(plan, &t.state, audit, node, prompt);
                        // A scripted run (`--mocks`) stays offline: no model writes its handover.
                        let written = self.handovers.lock().ok().and_then(|h| h.get(task).cloned());
                        match (written, self.tools.get(LLM_TOOL).filter(|_| t.header.mocks.is_none())) {
                            (Some(summary), _) => summary,
                            (None, Some(llm)) => {
                                match crate::handover_writer::model_summary(
                                    llm.as_ref(),
                                    self.clock.as_ref(),
                                    plan,
                                    &t.header.id,
                                    task,
                                    &base,
                                )
                                .await
                                {
                                    Some(summary) => {
                                        if let Ok(mut h) = self.handovers.lock() {
                                            // Only retries within moments need it: keep the map small.
                                            if h.len() >= 256 {
                                                h.clear();
                                            }
                                            h.insert(task.clone(), summary.clone());
                                        }
                                        summary
                                    }
                                    None => base,
                                }
                            }
                            (None, None) => base,
                        }
                    } else {
                        String::new()
                    };
                    t.tasks.push(TaskChange::Open(Box::new(TaskRecord {
                        id: task.clone(),
                        run_id: t.header.id.clone(),
                        node: node.clone(),
                        step: step.clone(),
                        queue: queue.clone(),
                        status: "open".into(),
                        prompt: prompt.clone(),
                        summary,
                        form: form.clone(),
                        created_at: self.clock.now_ms(),
                        outcome: None,
                        wait: wait.clone(),
                    })));
                }
                Command::ReassignTask { task, to } => {
                    t.tasks.push(TaskChange::Reassign { id: task.clone(), queue: to.clone() })
                }
                Command::CloseTask { task, outcome } => {
                    t.tasks.push(TaskChange::Close { id: task.clone(), outcome: outcome.clone() })
                }
                Command::EmitEvent { name, detail } => {
                    let now = self.clock.now_ms();
                    let mut detail = detail.clone();
                    if name == "HumanTaskCreated"
                        && let (Some(signer), Value::Object(d)) = (&self.callbacks, &mut detail)
                        && let Some(task) = d.get("task").and_then(Value::as_str).map(TaskId::from)
                    {
                        let step = d.get("step").and_then(Value::as_str).and_then(|s| plan.step(s));
                        let exp = signer.expiry_for(now, step.and_then(|s| s.attempt_limit()).map(|m| m.0));
                        d.insert("callback_url".into(), Value::String(signer.url(&task, exp)));
                        d.insert("callback_expires_at".into(), Value::from(exp));
                    }
                    t.bus.push(BusEvent { run_id: t.header.id.clone(), name: name.clone(), detail, at: now })
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// The coordinator clock's time, in milliseconds since the epoch.
    pub fn now_ms(&self) -> u64 {
        self.clock.now_ms()
    }

    /// The coordinator's clock (hosts that wait for timers sleep on it).
    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
    }
}

/// Closes a decided batch: bumps the run's version and status and builds the transition that
/// writes it (task and bus rows are projected by the caller).
fn seal(
    run: &mut LoadedRun,
    precondition: Precondition,
    events: Vec<(u64, Event)>,
    audit: Vec<AuditRecord>,
    outbox: Vec<crate::ports::OutboxItem>,
) -> Transition {
    run.header.version += 1;
    run.header.status = run.state.status;
    let episodes = crate::memory::episode_for(&run.plan, &run.state).into_iter().collect();
    // One signature per stretch of commits between waits: signing costs tens of microseconds,
    // as much as the rest of a commit.
    let seal = run.state.status.is_terminal() || !baton_core::engine::calls_in_flight(&run.plan, &run.state);
    Transition {
        header: run.header.clone(),
        precondition,
        state: run.state.clone(),
        events,
        audit,
        tasks: vec![],
        bus: vec![],
        outbox,
        clears: vec![],
        runs_here: 0,
        episodes,
        seal,
        sealed: vec![],
    }
}

/// The scripted result of dispatch `d` when the run is mocked: a `fallback: cache` look-up the
/// mocks file seeds (`cache: {<id>: {output, age}}`, served like a response kept `age` ago, so
/// the stale path runs offline), else the step's next scripted answer.
fn scripted_result(run: &mut LoadedRun, d: &Dispatch, now: u64) -> Option<EventKind> {
    let mocks = run.mocks.as_ref()?;
    if d.tool == "cache"
        && let Some(step) = d.input.get("step").and_then(Value::as_str)
        && let Some((value, age)) = mocks.cached(step)
    {
        let ttl = d.input.get("ttl_ms").and_then(Value::as_u64).unwrap_or(0);
        let out = crate::tools::cache::serve(step, value.clone(), now.saturating_sub(age), now, ttl);
        return Some(result_event(d, out.result, true, out.report));
    }
    // A distributed map's own reads and writes are never scripted: a mock of the map step
    // answers its batches (the child runs), as it would a `for_each`'s items.
    if d.tool == baton_core::engine::ITEMS_TOOL {
        return None;
    }
    mock_answer(run, &d.step).map(|answer| result_event(d, answer, true, None))
}

fn mock_answer(run: &mut LoadedRun, step: &str) -> Option<Result<Value, StepError>> {
    let mocks = run.mocks.as_ref()?;
    let n = run.mock_calls.get(step).copied().unwrap_or(0);
    let answer = mocks.answer(step, n)?;
    run.mock_calls.insert(step.to_owned(), n + 1);
    Some(answer)
}

/// A scripted answer to a task: an answer-shaped output as is (marked as mocked), any other
/// output approves with it as data, and an error entry rejects with its message.
fn mocked_human_answer(scripted: Result<Value, StepError>) -> HumanAnswer {
    let v = match scripted {
        Ok(v) => v,
        Err(e) => {
            return HumanAnswer {
                decision: Verdict::Reject,
                data: Value::Null,
                comment: Some(e.message),
                by: Some("mock".into()),
                principal: None,
            };
        }
    };
    match serde_json::from_value::<HumanAnswer>(v.clone()) {
        Ok(mut a) => {
            a.by = Some(a.by.map(|b| format!("{b} (mock)")).unwrap_or_else(|| "mock".into()));
            a
        }
        Err(_) => {
            HumanAnswer { decision: Verdict::Approve, data: v, comment: None, by: Some("mock".into()), principal: None }
        }
    }
}

/// What a mocks file's entry for a task step stands for: the answer of a human task, or the
/// event that ends an event wait (the entry's `output` is the event). An `error` entry on an
/// event wait (`error: timeout`, checked when the mocks are parsed) is the wait timing out: its
/// timeout timer fires now, so `fallback` and `retry` see the same failure a real timeout gives.
fn mocked_task_event(
    state: &RunState,
    task: &TaskId,
    node: &baton_core::ids::NodeKey,
    event_wait: bool,
    answer: Result<Value, StepError>,
) -> Option<EventKind> {
    match (event_wait, answer) {
        (true, Ok(payload)) => Some(EventKind::EventReceived { task: task.clone(), payload }),
        (true, Err(_)) => state
            .timers
            .iter()
            .find(|(_, t)| matches!(&t.kind, baton_core::engine::TimerKind::Timeout { node: n, .. } if n == node))
            .map(|(id, _)| EventKind::TimerFired { timer: id.clone() }),
        (false, answer) => Some(EventKind::HumanResolved { task: task.clone(), answer: mocked_human_answer(answer) }),
    }
}

/// The call a dispatch stands for, as a tool receives it.
fn tool_call(run_id: &RunId, d: &Dispatch) -> ToolCall {
    ToolCall {
        run_id: run_id.clone(),
        node: d.node.clone(),
        step: d.step.clone(),
        attempt: d.attempt,
        tool: d.tool.clone(),
        input: d.input.clone(),
        idempotency_key: d.idempotency_key.clone(),
        timeout_ms: d.timeout_ms,
        usage: Default::default(),
    }
}

fn result_event(d: &Dispatch, res: Result<Value, StepError>, mocked: bool, report: Option<Value>) -> EventKind {
    step_result(d.node.clone(), d.attempt, res, mocked, report)
}

/// The event that reports attempt `attempt` of `node` ending with `res`.
fn step_result(
    node: baton_core::ids::NodeKey,
    attempt: u32,
    res: Result<Value, StepError>,
    mocked: bool,
    report: Option<Value>,
) -> EventKind {
    match res {
        Ok(output) => EventKind::StepSucceeded { node, attempt, output, mocked, report },
        Err(error) => EventKind::StepFailed { node, attempt, error, mocked, report },
    }
}
