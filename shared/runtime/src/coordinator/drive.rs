//! In-process delivery, the embedded backend: a driving loop that holds its runs in memory,
//! commits the decisions of all of them together (group commit), runs tool calls as tasks of
//! this process, keeps timers in a local set, and drives child runs beside their parents.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::future::Future;
use std::sync::Arc;

use baton_core::Plan;
use baton_core::engine::{Command, Dispatch, EventKind, RunState, StepError, TimerKind, in_flight};
use baton_core::ids::RunId;
use serde_json::Value;
use tokio::sync::{mpsc, oneshot};

use super::{
    Coordinator, DriveOutcome, LoadedRun, children, mock_answer, mocked_task_event, result_event, scripted_result,
    tool_call,
};
use crate::error::{RuntimeError, StoreError};
use crate::ports::{Precondition, Transition};

type Inbox = VecDeque<(RunId, EventKind)>;

/// How often a loop that waits only on timers looks for decisions other processes recorded for
/// its runs (ms).
const CATCH_UP_MS: u64 = 1_000;
type Intake = (RunId, oneshot::Sender<Result<RunState, RuntimeError>>);

/// What one driving loop works on: its runs, the events waiting for them, its timers and the
/// tool calls it has out (whose results come back on `tx`).
struct Working {
    runs: HashMap<RunId, LoadedRun>,
    inbox: Inbox,
    timers: BTreeSet<(u64, RunId, String)>,
    calls_out: usize,
    tx: mpsc::UnboundedSender<(RunId, EventKind)>,
    /// A store failure while carrying out work (starting or loading a child run): it stops a
    /// `drive` loop as a failed commit does, instead of failing a step for a fault of the
    /// store; the next `drive` (a resume) carries the work out again.
    broken: Option<RuntimeError>,
    /// A serving loop (`serve`) is the host's only loop and must not stop: there such a failure
    /// fails the step (kind `tool`), which its `retry` may cover.
    serving: bool,
}

impl Working {
    /// Whether a transient failure `e` stops the loop (it is kept for `drive` to return): true
    /// outside a serving loop.
    fn stops_on(&mut self, e: RuntimeError) -> Option<RuntimeError> {
        if self.serving || e.is_permanent() {
            return Some(e);
        }
        self.broken.get_or_insert(e);
        None
    }
}

/// A handle on a serving coordinator loop (see [`Coordinator::serve`]).
pub struct RunService {
    coordinator: Arc<Coordinator>,
    intake: mpsc::UnboundedSender<Intake>,
}

impl RunService {
    /// Starts a run and waits until it ends; returns its final state.
    pub async fn run(&self, plan: Arc<Plan>, source: &str, input: Value) -> Result<RunState, RuntimeError> {
        let id = self.coordinator.start(plan, source, input, None).await?;
        let (tx, rx) = oneshot::channel();
        self.intake
            .send((id.clone(), tx))
            .map_err(|_| RuntimeError::Store(StoreError::Backend("the coordinator loop has stopped".into())))?;
        rx.await.map_err(|_| RuntimeError::Store(StoreError::Backend("the coordinator loop has stopped".into())))?
    }
}

impl Coordinator {
    /// Runs the given runs until they end, wait on the outside world, or `shutdown` fires.
    pub async fn drive(
        &self,
        run_ids: &[RunId],
        shutdown: impl Future<Output = ()>,
    ) -> Result<DriveOutcome, RuntimeError> {
        self.drive_loop(run_ids, None, shutdown).await
    }

    /// Starts a long-lived coordinator loop that takes new runs as they come and reports each
    /// one's final state: one loop for many runs, so their decisions share commits.
    pub fn serve(self: &Arc<Self>) -> RunService {
        let (intake, rx) = mpsc::unbounded_channel();
        let me = self.clone();
        tokio::spawn(async move {
            if let Err(e) = me.drive_loop(&[], Some(rx), std::future::pending()).await {
                tracing::error!(error = %e, "coordinator loop stopped");
            }
        });
        RunService { coordinator: self.clone(), intake }
    }

    async fn drive_loop(
        &self,
        run_ids: &[RunId],
        mut intake: Option<mpsc::UnboundedReceiver<Intake>>,
        shutdown: impl Future<Output = ()>,
    ) -> Result<DriveOutcome, RuntimeError> {
        tokio::pin!(shutdown);
        self.flush_bus_logged().await;
        let mut waiters: HashMap<RunId, oneshot::Sender<Result<RunState, RuntimeError>>> = HashMap::new();
        let (tx, mut rx) = mpsc::unbounded_channel::<(RunId, EventKind)>();
        let mut w = Working {
            runs: HashMap::new(),
            inbox: VecDeque::new(),
            timers: BTreeSet::new(),
            calls_out: 0,
            tx,
            broken: None,
            serving: intake.is_some(),
        };
        for id in run_ids {
            // A parent loaded earlier may have brought this run in already: never twice.
            if w.runs.contains_key(id) {
                continue;
            }
            let run = self.load(id).await?;
            if run.state.status.is_terminal() {
                // An ended child's parent goes on from here (it may have just got the result).
                if let Some(link) = &run.state.parent {
                    let parent = link.run_id.clone();
                    self.bring_in(&parent, &mut w).await;
                }
                continue;
            }
            let mut run = run;
            let commands = run.first_commands.take().unwrap_or_else(|| in_flight(&run.plan, &run.state));
            w.runs.insert(id.clone(), run);
            self.execute(id, &commands, &mut w).await;
        }
        loop {
            if let Some(e) = w.broken.take() {
                return Err(e);
            }
            // The store and inline tools never make this loop wait. Several `drive` loops on one
            // runtime must take turns, so they yield now and then; a serving loop is the only
            // consumer of its work and batches best when it w.runs until it is idle.
            if intake.is_none() {
                tokio::task::consume_budget().await;
            }
            while let Some(Ok((id, waiter))) = intake.as_mut().map(|i| i.try_recv()) {
                self.admit(&id, waiter, &mut waiters, &mut w).await;
            }
            while let Ok(ev) = rx.try_recv() {
                w.calls_out = w.calls_out.saturating_sub(1);
                w.inbox.push_back(ev);
            }
            let now = self.clock.now_ms();
            while let Some(first) = w.timers.first().cloned() {
                if first.0 > now {
                    break;
                }
                w.timers.pop_first();
                w.inbox.push_back((first.1, EventKind::TimerFired { timer: first.2 }));
            }
            if w.inbox.is_empty() {
                let serving = intake.is_some();
                if !serving && w.runs.values().all(|r| r.state.status.is_terminal()) {
                    return Ok(DriveOutcome::Finished);
                }
                let alive = w.calls_out > 0 || w.timers.iter().any(|(_, run, id)| keeps_alive(&w.runs, run, id));
                if !alive && !serving {
                    return Ok(DriveOutcome::Waiting);
                }
                let next_timer = w.timers.first().map(|t| t.0);
                // Waiting only on timers, this loop holds its runs' locks while another process
                // may record an answer or an event for them: look at the store now and then.
                let poll = !serving && w.calls_out == 0;
                let wake = match next_timer {
                    Some(at) if poll => Some(at.min(now + CATCH_UP_MS)),
                    other => other,
                };
                let mut polled = false;
                let sleep = async {
                    match wake {
                        Some(at) => self.clock.sleep_until(at).await,
                        None => std::future::pending::<()>().await,
                    }
                };
                let next_run = async {
                    match intake.as_mut() {
                        Some(i) => i.recv().await,
                        None => std::future::pending().await,
                    }
                };
                tokio::select! {
                    ev = rx.recv() => if let Some(ev) = ev {
                        w.calls_out = w.calls_out.saturating_sub(1);
                        w.inbox.push_back(ev);
                    },
                    new = next_run => match new {
                        Some((id, waiter)) => {
                            self.admit(&id, waiter, &mut waiters, &mut w).await;
                        }
                        None => return Ok(DriveOutcome::Detached),
                    },
                    _ = sleep => polled = poll && wake != next_timer,
                    _ = &mut shutdown => return Ok(DriveOutcome::Detached),
                }
                if polled {
                    self.catch_up(&mut w).await?;
                }
                continue;
            }
            let batch: Vec<(RunId, EventKind)> = w.inbox.drain(..).collect();
            let mut order: Vec<RunId> = Vec::new();
            let mut grouped: HashMap<RunId, Vec<EventKind>> = HashMap::new();
            for (run, kind) in batch.iter().cloned() {
                // Events for ended w.runs change nothing; do not write for them.
                if w.runs.get(&run).is_none_or(|r| r.state.status.is_terminal()) {
                    continue;
                }
                if !grouped.contains_key(&run) {
                    order.push(run.clone());
                }
                grouped.entry(run).or_default().push(kind);
            }
            let mut decided = Vec::new();
            for run_id in &order {
                let events = grouped.remove(run_id).unwrap_or_default();
                let Some(run) = w.runs.get_mut(run_id) else {
                    continue;
                };
                let precondition = Precondition::MatchesVersion(run.header.version);
                decided.push(self.decide_transition(run, precondition, events).await?);
            }
            let transitions: Vec<Transition> = decided.iter().map(|d| d.transition.clone()).collect();
            match self.store.commit(&transitions).await {
                Ok(()) => {}
                Err(e) if e.is_retryable() => {
                    // Someone else moved one of these w.runs: reload all and decide the same events again.
                    for run_id in &order {
                        let fresh = self.load(run_id).await?;
                        w.runs.insert(run_id.clone(), fresh);
                    }
                    w.inbox.extend(batch);
                    continue;
                }
                Err(e) => return Err(e.into()),
            }
            if transitions.iter().any(|t| !t.bus.is_empty()) {
                self.flush_bus_logged().await;
            }
            if let Some(o) = &self.observer {
                for t in &transitions {
                    o.on_records(&t.header.id, &t.state, &t.audit);
                }
            }
            for d in &decided {
                let run_id = &d.transition.header.id;
                self.execute(run_id, &d.leaving, &mut w).await;
                for child in &d.family.cancel {
                    if self.bring_in(child, &mut w).await {
                        let reason = children::cancel_reason(run_id);
                        w.inbox.push_back((child.clone(), EventKind::CancelRequested { reason }));
                    }
                }
                if let Some((parent, kind)) = &d.family.to_parent
                    && self.bring_in(parent, &mut w).await
                {
                    w.inbox.push_back((parent.clone(), kind.clone()));
                }
            }
            for t in &transitions {
                if t.state.status.is_terminal()
                    && let Some(waiter) = waiters.remove(&t.header.id)
                {
                    let _ = waiter.send(Ok(t.state.clone()));
                    w.runs.remove(&t.header.id);
                    w.timers.retain(|(_, r, _)| r != &t.header.id);
                }
            }
        }
    }

    /// Reloads the runs another process moved while this loop waited on their timers (it could
    /// record an answer or an event, but not carry it out: this loop holds the run), and carries
    /// out what they now have in flight.
    async fn catch_up(&self, w: &mut Working) -> Result<(), RuntimeError> {
        let mut held: Vec<(RunId, u64)> = w
            .runs
            .iter()
            .filter(|(_, r)| !r.state.status.is_terminal())
            .map(|(id, r)| (id.clone(), r.header.version))
            .collect();
        // In id order, not the map's: the same runs are reloaded in the same order every time
        // (a simulation replays a history from its seed).
        held.sort();
        for (id, version) in held {
            let Some(stored) = self.store.load_run(&id).await?.filter(|s| s.header.version != version) else {
                continue;
            };
            let fresh = self.loaded(&id, stored).await?;
            // Every call of ours has come back (calls_out is 0), so each dispatch in flight now
            // is one the other process's decision made.
            let commands = in_flight(&fresh.plan, &fresh.state);
            tracing::debug!(run = %id, "another process moved the run; carrying out its decision");
            w.runs.insert(id.clone(), fresh);
            // Its timers are as the store now has them (the commands re-arm every pending one).
            w.timers.retain(|(_, run, _)| run != &id);
            self.execute(&id, &commands, w).await;
        }
        Ok(())
    }

    /// Takes a new run into a serving loop.
    async fn admit(
        &self,
        id: &RunId,
        waiter: oneshot::Sender<Result<RunState, RuntimeError>>,
        waiters: &mut HashMap<RunId, oneshot::Sender<Result<RunState, RuntimeError>>>,
        w: &mut Working,
    ) {
        let mut run = match self.load(id).await {
            Ok(run) => run,
            Err(e) => {
                let _ = waiter.send(Err(e));
                return;
            }
        };
        if run.state.status.is_terminal() {
            let _ = waiter.send(Ok(run.state));
            return;
        }
        let commands = run.first_commands.take().unwrap_or_else(|| in_flight(&run.plan, &run.state));
        w.runs.insert(id.to_owned(), run);
        waiters.insert(id.to_owned(), waiter);
        self.execute(id, &commands, w).await;
    }

    /// Loads a run into a driving loop unless it is there, and carries out its in-flight work;
    /// false when it does not exist or has ended.
    async fn bring_in(&self, id: &RunId, w: &mut Working) -> bool {
        if let Some(run) = w.runs.get(id) {
            return !run.state.status.is_terminal();
        }
        let mut run = match self.load(id).await {
            Ok(run) => run,
            Err(e) => {
                tracing::warn!(run = %id, error = %e, "cannot load a parent or child run");
                let _ = w.stops_on(e);
                return false;
            }
        };
        if run.state.status.is_terminal() {
            return false;
        }
        let commands = run.first_commands.take().unwrap_or_else(|| in_flight(&run.plan, &run.state));
        w.runs.insert(id.to_owned(), run);
        Box::pin(self.execute(id, &commands, w)).await;
        true
    }

    /// A `workflow` step in a driving loop: starts the child run (or finds it, after a crash),
    /// and drives it here too; a child that already ended answers at once. A successor
    /// (`continue_as_new`) starts the same way and the step succeeds with its id.
    async fn dispatch_child(&self, run_id: &RunId, d: &Dispatch, w: &mut Working) {
        let fail = |w: &mut Working, message: String| {
            w.inbox.push_back((run_id.clone(), result_event(d, Err(StepError::new("tool", message)), false, None)));
        };
        let Some(parent) = w.runs.get(run_id) else { return };
        let req = match children::ChildRequest::from_dispatch(d) {
            Ok(r) => r,
            Err(e) => return w.inbox.push_back((run_id.clone(), result_event(d, Err(e), false, None))),
        };
        let link = req.link(d, run_id, &parent.state);
        let own = req.continue_as_new && req.name.as_ref().is_none_or(|n| n == &parent.plan.workflow.name);
        let own_plan = parent.plan.clone();
        let parent_mocks = parent.header.mocks.clone();
        if !w.runs.contains_key(&req.run_id) {
            let resolved = if own {
                let source = self.store.get_definition(&own_plan.workflow.name, &own_plan.hash).await;
                source.map(|s| s.map(|s| (own_plan.clone(), s))).map_err(RuntimeError::from)
            } else {
                let name = req.name.clone().unwrap_or_default();
                self.published(&name).await
            };
            let (plan, source) = match resolved {
                Ok(Some(found)) => found,
                Ok(None) => {
                    let name = req.name.clone().unwrap_or_default();
                    return fail(w, format!("no published workflow `{name}`: publish it with `baton publish`"));
                }
                Err(e) => match w.stops_on(e) {
                    Some(e) => return fail(w, format!("cannot read the child's definition: {e}")),
                    None => return,
                },
            };
            let name = plan.workflow.name.clone();
            let mocks = parent_mocks.as_ref().map(|m| crate::mocks::Mocks::for_child(m, &plan.workflow.name));
            match self.start_with(plan, Some(&source), req.input.clone(), mocks, Some(req.run_id.clone()), link).await {
                // Started, or started before a crash: either way it is there now.
                Ok(_) | Err(RuntimeError::Store(StoreError::Conflict { .. })) => {}
                Err(RuntimeError::InvalidInput(problems)) => {
                    return fail(w, format!("the input for `{name}` is not valid: {}", problems.join("; ")));
                }
                Err(e) => match w.stops_on(e) {
                    Some(e) => return fail(w, format!("cannot start the child run of `{name}`: {e}")),
                    None => return,
                },
            }
        }
        if req.continue_as_new {
            let out = children::continued_output(&req.run_id);
            w.inbox.push_back((run_id.clone(), result_event(d, Ok(out), false, None)));
        }
        if !self.bring_in(&req.run_id, w).await
            && let Ok(Some(child)) = self.store.load_run(&req.run_id).await
            && let Ok(plan) = self.plan_for(&child.header.workflow, &child.header.definition).await
            && let Some((parent, kind)) = self.parent_result(&plan, &child.state).await
            && self.bring_in(&parent, w).await
        {
            // The child ended in its first decision, or before its parent heard of it (a crash
            // between the two); a successor's result goes to the run it inherited the link of.
            w.inbox.push_back((parent, kind));
        }
    }

    /// Carries out commands in this process: the work a transition left, and the in-flight
    /// work of a run just loaded (which may be anything a decision can ask for).
    async fn execute(&self, run_id: &RunId, commands: &[Command], w: &mut Working) {
        for c in commands {
            match c {
                Command::Dispatch(d) => {
                    let Some(run) = w.runs.get_mut(run_id) else {
                        continue;
                    };
                    if let Some(event) = scripted_result(run, d, self.clock.now_ms()) {
                        w.inbox.push_back((run_id.clone(), event));
                        continue;
                    }
                    if d.tool == children::WORKFLOW_TOOL {
                        Box::pin(self.dispatch_child(run_id, d, w)).await;
                        continue;
                    }
                    let Some(tool) = self.tools.get(&d.tool) else {
                        let err = StepError::new("tool", format!("no worker for tool `{}` in this deployment", d.tool));
                        w.inbox.push_back((run_id.clone(), result_event(d, Err(err), false, None)));
                        continue;
                    };
                    let call = tool_call(run_id, d);
                    if tool.inline() {
                        let out = tool.run(&call).await;
                        w.inbox.push_back((run_id.clone(), result_event(d, out.result, false, out.report)));
                    } else {
                        w.calls_out += 1;
                        let tx = w.tx.clone();
                        let d = d.clone();
                        let run_id = run_id.clone();
                        tokio::spawn(async move {
                            let out = tool.run(&call).await;
                            let _ = tx.send((run_id, result_event(&d, out.result, false, out.report)));
                        });
                    }
                }
                Command::ScheduleTimer { id, at } => {
                    w.timers.insert((*at, run_id.clone(), id.clone()));
                }
                Command::CancelTimer { id } => {
                    w.timers.retain(|(_, r, t)| !(r == run_id && t == id));
                }
                Command::OpenTask { task, node, step, wait, .. } => {
                    let Some(run) = w.runs.get_mut(run_id) else {
                        continue;
                    };
                    if let Some(answer) = mock_answer(run, step)
                        && let Some(event) = mocked_task_event(&run.state, task, node, wait.is_some(), answer)
                    {
                        w.inbox.push_back((run_id.clone(), event));
                    }
                }
                Command::PutCache { key, value, ttl_ms } => {
                    crate::tools::cache::put(self.store.as_ref(), key, value, *ttl_ms, self.clock.now_ms()).await;
                }
                Command::ReassignTask { .. }
                | Command::CloseTask { .. }
                | Command::EmitEvent { .. }
                | Command::CompleteRun { .. } => {}
            }
        }
    }
}

/// Retry and sleep timers keep `run` going; escalations and human timeouts wait for `resume`,
/// and a paused run's timers for its unpause.
fn keeps_alive(runs: &HashMap<RunId, LoadedRun>, run_id: &RunId, timer_id: &str) -> bool {
    let Some(run) = runs.get(run_id) else {
        return false;
    };
    // A paused run holds its timers until someone unpauses it: nothing to wait for here.
    if run.state.paused.is_some() {
        return false;
    }
    let Some(timer) = run.state.timers.get(timer_id) else {
        return false;
    };
    match &timer.kind {
        TimerKind::Retry { .. } | TimerKind::Wake { .. } => true,
        // A limit on something else's wait: the calls this loop has out keep it alive on their
        // own, and a child run that waits on a person (its `workflow` step running under a
        // 30-day default limit) must not hold a `baton run` for 30 days.
        TimerKind::Escalate { .. } | TimerKind::Timeout { .. } | TimerKind::Heartbeat { .. } | TimerKind::Deadline => {
            false
        }
    }
}
