//! One control surface over runs, whatever hosts them. The CLI, the task-link server and every
//! later server (an HTTP API, MCP) call a [`RunControl`]; each backend implements it once:
//! [`InProcessControl`] drives runs in this process (the embedded backend), and the AWS backend
//! sends messages to its stack's coordinator and watches the table (`baton_aws::StackControl`).
//! Reads (show, list, tasks, audit) go through the coordinator's store on both, so they are
//! provided here.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use async_trait::async_trait;
use baton_core::Plan;
use baton_core::audit::digest::AuditDigest;
use baton_core::audit::seal::SealedField;
use baton_core::audit::{AuditRecord, ChainError};
use baton_core::engine::{EventKind, HumanAnswer, OperatorAction, RunState};
use baton_core::ids::{RunId, TaskId};
use serde_json::Value;

use crate::audit_check::{self, Divergence};
use crate::callback::Answerer;
use crate::coordinator::{Coordinator, DriveOutcome};
use crate::error::RuntimeError;
use crate::ports::{RunHeader, RunStore, TaskRecord};
use crate::report::run_json;
use crate::run_locks::{Claimed, RunLocks};

/// A future that, when it completes, asks a waiting call to stop waiting (Ctrl-C in the CLI).
pub type Stop = Pin<Box<dyn Future<Output = ()> + Send>>;

/// How far a call that lets a run go on got before it returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Settled {
    /// The run ended or waits for something outside (a person, an event, a timer).
    Settled,
    /// The caller stopped waiting; the run is intact and continues later.
    Detached,
    /// The backend was still working on the run when the wait limit (seconds) was reached.
    StillGoing(u64),
    /// Another process (or another driver in this one, e.g. `baton serve`) drives the run; the
    /// change was recorded and the run goes on there.
    Elsewhere,
}

/// A run to start: the definition (plan and the source it came from), its input, and the
/// scripted tool results of an offline run.
#[derive(Debug, Clone)]
pub struct NewRun {
    /// The checked definition.
    pub plan: Arc<Plan>,
    /// Its source text, stored so every later reader compiles the same plan.
    pub source: String,
    /// The run's input.
    pub input: Value,
    /// The `--mocks` document, if any.
    pub mocks: Option<Value>,
}

/// What delivering an event did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventDelivery {
    /// The event was a task answer (`HumanTaskResolved`); this run took it.
    Answered(RunId),
    /// The event started or woke these runs, which were driven as far as they go.
    Runs(Vec<RunId>),
    /// The event was put on a bus for the backend to route (its id and the bus).
    Put {
        /// The bus's event id.
        event_id: String,
        /// The bus it went to.
        bus: String,
    },
}

/// What publishing a definition set up besides storing it.
#[derive(Debug, Clone, Default)]
pub struct Published {
    /// Routes created for the workflow's triggers and waits, one line each.
    pub routes: Vec<String>,
    /// Things the user should know, e.g. a trigger this backend only stores.
    pub notes: Vec<String>,
}

/// An operator's action on a run, with who asked and why (both go into the audit record).
#[derive(Debug, Clone, PartialEq)]
pub struct Operation {
    /// Redrive, retry from a step, pause or unpause.
    pub action: OperatorAction,
    /// Who asked (a user name, an API token's principal).
    pub by: String,
    /// Why, when they said.
    pub reason: Option<String>,
}

impl Operation {
    /// The engine event that carries the action.
    pub fn event(&self) -> EventKind {
        EventKind::Operated { action: self.action.clone(), by: self.by.clone(), reason: self.reason.clone() }
    }

    /// True when the run goes on after the action (redrive, retry, unpause), so the caller
    /// drives or watches it; pause only needs its commit.
    pub fn moves_the_run(&self) -> bool {
        !matches!(self.action, OperatorAction::Pause)
    }
}

/// Start, answer, cancel and inspect runs. One implementation per backend.
#[async_trait]
pub trait RunControl: Send + Sync {
    /// The coordinator whose store holds the runs (reads, plans, callback signer).
    fn coordinator(&self) -> &Coordinator;

    /// Stores a definition and makes it the published version of its workflow, with the routes
    /// its triggers and waits need.
    async fn publish(&self, plan: &Plan, source: &str) -> Result<Published, RuntimeError>;

    /// Starts a run (input and mocks checked first: a mistake starts nothing); returns its id.
    async fn start(&self, run: NewRun) -> Result<RunId, RuntimeError>;

    /// Lets a run go as far as it can without a person, or until `stop`.
    async fn settle(&self, run_id: &RunId, stop: Stop) -> Result<Settled, RuntimeError>;

    /// The plan and state of a run this process just started that ended in its first commit
    /// and has no parent to tell: nothing is left to settle. `None` when it may go on (then
    /// [`RunControl::settle`] it).
    fn settled_at_start(&self, _run_id: &RunId) -> Option<(Arc<Plan>, RunState)> {
        None
    }

    /// Picks up runs a crash or a stop left unfinished and lets them settle.
    async fn resume(&self, run_ids: &[RunId], stop: Stop) -> Result<Settled, RuntimeError>;

    /// Answers an open task (checked against its form); returns the task's run once the answer
    /// is taken.
    async fn answer(&self, task: &TaskId, answer: HumanAnswer) -> Result<RunId, RuntimeError>;

    /// Cancels a run and waits until it has ended (or `stop`).
    async fn cancel(&self, run_id: &RunId, reason: String, stop: Stop) -> Result<Settled, RuntimeError>;

    /// Applies an operator's action (checked first with [`RunControl::check_operation`]: a
    /// refused action changes nothing) and lets the run go on as far as it can, or until `stop`.
    async fn operate(&self, run_id: &RunId, op: Operation, stop: Stop) -> Result<Settled, RuntimeError>;

    /// Why `action` cannot be applied to the run as it is stored ([`RuntimeError::Refused`]).
    async fn check_operation(&self, run_id: &RunId, action: &OperatorAction) -> Result<(), RuntimeError> {
        let (plan, state) = self.load(run_id).await?;
        baton_core::engine::check_operation(&plan, &state, action).map_err(RuntimeError::Refused)
    }

    /// Delivers an outside event (EventBridge shape) to triggers, waits and task answers.
    async fn event(&self, event: Value, stop: Stop) -> Result<EventDelivery, RuntimeError>;

    /// Carries out answers that arrive through signed task links.
    fn link_answerer(&self) -> Arc<dyn Answerer>;

    /// Where a run the caller detached from goes on, for the user (e.g. the command to resume it).
    fn detached_hint(&self, run_id: &RunId) -> String;

    /// For a run that waits on timers (a sleep, an escalation, a task's timeout): what makes
    /// them fire on this backend, when that is not automatic.
    fn timer_hint(&self, _run_id: &RunId) -> Option<String> {
        None
    }

    /// What the backend charged for a run, when it counts that (AWS requests and their cost).
    async fn billing(&self, _run_id: &RunId) -> Result<Option<Value>, RuntimeError> {
        Ok(None)
    }

    /// The store the runs are in.
    fn store(&self) -> &Arc<dyn RunStore> {
        self.coordinator().store()
    }

    /// The stored run with its plan; unknown ids are [`RuntimeError::UnknownRun`].
    async fn load(&self, run_id: &RunId) -> Result<(Arc<Plan>, RunState), RuntimeError> {
        let stored = self.store().load_run(run_id).await?.ok_or_else(|| RuntimeError::UnknownRun(run_id.clone()))?;
        let plan = self.coordinator().plan_for(&stored.header.workflow, &stored.header.definition).await?;
        Ok((plan, stored.state))
    }

    /// The run as the `--json` contract shapes it.
    async fn show(&self, run_id: &RunId) -> Result<Value, RuntimeError> {
        let (plan, state) = self.load(run_id).await?;
        Ok(run_json(&plan, &state))
    }

    /// The run as `runs show --json` prints it: [`RunControl::show`] plus what the backend
    /// charged (`aws`), when it counts that, and the model calls' tokens and USD per step and in
    /// total (`model_usage`), when it made any.
    async fn detail(&self, run_id: &RunId) -> Result<Value, RuntimeError> {
        let (plan, state) = self.load(run_id).await?;
        self.detail_of(run_id, &plan, &state).await
    }

    /// [`RunControl::detail`] of a run whose plan and state the caller holds.
    async fn detail_of(&self, run_id: &RunId, plan: &Plan, state: &RunState) -> Result<Value, RuntimeError> {
        let mut obj = run_json(plan, state);
        if let Some(billing) = self.billing(run_id).await? {
            obj["aws"] = billing;
        }
        // Model usage comes from the reports of tool calls in the audit log: a plan that makes
        // no call (transforms, waits, people) has none to read.
        let calls = plan.steps.iter().any(|s| {
            matches!(s.kind, baton_core::plan::StepKind::Tool { .. } | baton_core::plan::StepKind::Agent { .. })
        });
        if calls && let Some(usage) = crate::model_usage::model_usage(&self.audit(run_id).await?) {
            obj["model_usage"] = usage;
        }
        Ok(obj)
    }

    /// One row of a run listing: [`RunControl::show`] with `workflow` and `created_at` added.
    async fn summary(&self, header: &RunHeader) -> Result<Value, RuntimeError> {
        let mut obj = self.show(&header.id).await?;
        obj["workflow"] = Value::String(header.workflow.clone());
        obj["created_at"] = Value::from(header.created_at);
        Ok(obj)
    }

    /// The newest runs, each as [`RunControl::summary`].
    async fn list(&self, limit: usize) -> Result<Vec<Value>, RuntimeError> {
        let mut out = Vec::new();
        for h in self.store().list_runs(limit).await? {
            out.push(self.summary(&h).await?);
        }
        Ok(out)
    }

    /// Delivers an outside event like [`RunControl::event`] but returns as soon as it is taken,
    /// without letting the runs it started or woke go on: a server answers at once and lets
    /// them settle in the background. Backends whose `event` never drives runs (AWS, where the
    /// stack's coordinator does) keep this default.
    async fn deliver(&self, event: Value) -> Result<EventDelivery, RuntimeError> {
        self.event(event, Box::pin(std::future::pending())).await
    }

    /// An open task as `tasks --json` shows it: the stored record, with its signed
    /// `callback_url` when links are issued.
    fn task_row(&self, task: &TaskRecord) -> Value {
        let mut row = serde_json::to_value(task).unwrap_or(Value::Null);
        if let (Some(s), Value::Object(m)) = (self.coordinator().callbacks(), &mut row) {
            m.insert("callback_url".into(), Value::String(s.url(&task.id, s.expiry_for(task.created_at, None))));
        }
        row
    }

    /// Open tasks for people (event waits are the engine's own and left out).
    async fn tasks(&self) -> Result<Vec<TaskRecord>, RuntimeError> {
        Ok(self.store().open_tasks().await?.into_iter().filter(|t| t.wait.is_none()).collect())
    }

    /// The open tasks and event waits a run is held by, its children's included.
    async fn waiting_on(&self, run_id: &RunId) -> Result<Vec<TaskRecord>, RuntimeError> {
        let (plan, state) = self.load(run_id).await?;
        let children: Vec<RunId> = crate::coordinator::child_runs(&plan, &state).collect();
        let tasks = self.store().open_tasks().await?;
        Ok(tasks.into_iter().filter(|t| t.run_id == *run_id || children.contains(&t.run_id)).collect())
    }

    /// A run's signed audit digests, oldest first (none when the store does not sign).
    async fn audit_digests(&self, run_id: &RunId) -> Result<Vec<AuditDigest>, RuntimeError> {
        self.store().load_run(run_id).await?.ok_or_else(|| RuntimeError::UnknownRun(run_id.clone()))?;
        Ok(self.store().load_audit_digests(run_id).await?)
    }

    /// A run's audit records, oldest first.
    async fn audit(&self, run_id: &RunId) -> Result<Vec<AuditRecord>, RuntimeError> {
        self.store().load_run(run_id).await?.ok_or_else(|| RuntimeError::UnknownRun(run_id.clone()))?;
        Ok(self.store().load_audit(run_id).await?)
    }

    /// Checks a run's hash chain and signed digests; the inner result is what was verified or
    /// the first break.
    async fn verify_audit(&self, run_id: &RunId) -> Result<Result<audit_check::Verified, ChainError>, RuntimeError> {
        audit_check::verify(self.coordinator(), run_id).await
    }

    /// A run's sealed sensitive fields (see `baton_core::audit::seal`), by name.
    async fn sealed_fields(&self, run_id: &RunId) -> Result<Vec<SealedField>, RuntimeError> {
        self.store().load_run(run_id).await?.ok_or_else(|| RuntimeError::UnknownRun(run_id.clone()))?;
        Ok(self.store().load_sealed(run_id).await?)
    }

    /// Erases sensitive fields of an ended run: each `paths` entry names a sealed field, or a
    /// path above some (`input.customer` erases `input.customer.email` and its siblings).
    /// Returns the fields erased now; refused for a run still going or a path that seals
    /// nothing.
    async fn redact(&self, run_id: &RunId, paths: &[String], reason: &str) -> Result<Vec<String>, RuntimeError> {
        let stored = self.store().load_run(run_id).await?.ok_or_else(|| RuntimeError::UnknownRun(run_id.clone()))?;
        if !stored.state.status.is_terminal() {
            return Err(RuntimeError::Refused(format!(
                "run {run_id} is {}: sensitive fields are erased once the run has ended",
                stored.state.status.as_str()
            )));
        }
        let sealed = self.store().load_sealed(run_id).await?;
        let fields = audit_check::fields_under(&sealed, paths).map_err(RuntimeError::Refused)?;
        let now = self.coordinator().clock().now_ms();
        Ok(self.store().erase_sealed(run_id, &fields, now, reason).await?)
    }

    /// Replays a run's journal through the engine; the inner result is the record count or the
    /// first divergence.
    async fn replay_audit(&self, run_id: &RunId) -> Result<Result<usize, Divergence>, RuntimeError> {
        audit_check::replay(self.coordinator(), run_id).await
    }
}

/// The embedded backend's control: runs are driven in this process, to their end or their next
/// wait, by the call that changed them.
pub struct InProcessControl {
    pub(crate) coordinator: Arc<Coordinator>,
    /// Which process drives which run, when several share the state directory.
    pub(crate) locks: Option<Arc<RunLocks>>,
}

impl InProcessControl {
    /// Control over the runs of `coordinator`'s store, driven by it.
    pub fn new(coordinator: Arc<Coordinator>) -> Self {
        Self { coordinator, locks: None }
    }

    /// Drives a run only while holding its lock in `locks`, so two processes on one state
    /// directory never drive (and call out for) the same run at once.
    pub fn with_locks(mut self, locks: Arc<RunLocks>) -> Self {
        self.locks = Some(locks);
        self
    }

    /// Takes a run's lock before changing it, kept for the drive that follows; false when
    /// someone else drives the run (the change is still made: its commit is safe, and the
    /// holder or a later pickup carries out what it leads to).
    fn claim(&self, run_id: &RunId) -> bool {
        claim(self.locks.as_deref(), run_id)
    }

    pub(crate) async fn drive(&self, run_ids: &[RunId], stop: Stop) -> Result<Settled, RuntimeError> {
        drive_locked(&self.coordinator, self.locks.as_deref(), run_ids, stop).await
    }
}

fn claim(locks: Option<&RunLocks>, run_id: &RunId) -> bool {
    let Some(locks) = locks else { return true };
    match locks.try_take(run_id) {
        Claimed::Ours(lock) => {
            locks.keep(run_id, lock);
            true
        }
        Claimed::Elsewhere => false,
    }
}

/// How often a `resume` waiting for another process's run looks at its lock again.
const LOCK_POLL: std::time::Duration = std::time::Duration::from_millis(50);

/// Drives the runs whose locks this process can take; [`Settled::Elsewhere`] when it can take
/// none of them.
async fn drive_locked(
    coordinator: &Coordinator,
    locks: Option<&RunLocks>,
    run_ids: &[RunId],
    stop: impl Future<Output = ()>,
) -> Result<Settled, RuntimeError> {
    let mut held = Vec::new();
    let mut ours = Vec::new();
    for id in run_ids {
        // A run this process just created that ended in its first commit needs no lock.
        if let Some(l) = locks
            && coordinator.ended_at_start(id)
            && l.release_reserved(id)
        {
            ours.push(id.clone());
            continue;
        }
        match locks.map(|l| l.try_take(id)) {
            None => ours.push(id.clone()),
            Some(Claimed::Ours(lock)) => {
                held.push(lock);
                ours.push(id.clone());
            }
            Some(Claimed::Elsewhere) => tracing::info!(run = %id, "another driver holds the run"),
        }
    }
    if ours.is_empty() && !run_ids.is_empty() {
        return Ok(Settled::Elsewhere);
    }
    let outcome = coordinator.drive(&ours, stop).await;
    drop(held);
    Ok(match outcome? {
        DriveOutcome::Detached => Settled::Detached,
        _ => Settled::Settled,
    })
}

#[async_trait]
impl RunControl for InProcessControl {
    fn coordinator(&self) -> &Coordinator {
        &self.coordinator
    }

    async fn publish(&self, plan: &Plan, source: &str) -> Result<Published, RuntimeError> {
        self.coordinator.publish(plan, source).await?;
        let mut published = Published::default();
        if plan.workflow.triggers.iter().any(|t| matches!(t, baton_core::model::Trigger::Schedule { .. })) {
            published.notes.push(
                "schedule triggers fire while `baton serve` runs on this state directory (on AWS: EventBridge Scheduler)"
                    .into(),
            );
        }
        Ok(published)
    }

    fn settled_at_start(&self, run_id: &RunId) -> Option<(Arc<Plan>, RunState)> {
        let done = self.coordinator.take_ended_at_start(run_id)?;
        if let Some(l) = &self.locks {
            l.release_reserved(run_id);
        }
        Some(done)
    }

    async fn start(&self, run: NewRun) -> Result<RunId, RuntimeError> {
        // The id is chosen here so the run is locked before it exists: a host picking up
        // unfinished runs never sees it free between its first commit and its drive.
        let run_id = RunId::new(uuid::Uuid::now_v7().to_string());
        if let Some(l) = &self.locks {
            l.reserve(&run_id);
        }
        let started = self.coordinator.start_as(run_id.clone(), run.plan, &run.source, run.input, run.mocks).await;
        if started.is_err()
            && let Some(l) = &self.locks
        {
            l.forget(&run_id);
        }
        started
    }

    async fn settle(&self, run_id: &RunId, stop: Stop) -> Result<Settled, RuntimeError> {
        self.drive(std::slice::from_ref(run_id), stop).await
    }

    /// A run another process drives is waited for (its lock polled) rather than skipped: two
    /// `resume`s started together both end with the run's outcome, and the calls it had in
    /// flight are issued again once, by whichever took it first.
    async fn resume(&self, run_ids: &[RunId], mut stop: Stop) -> Result<Settled, RuntimeError> {
        let Some(locks) = self.locks.as_deref() else { return self.drive(run_ids, stop).await };
        let mut held = Vec::new();
        for id in run_ids {
            loop {
                if let Claimed::Ours(lock) = locks.try_take(id) {
                    held.push(lock);
                    break;
                }
                tokio::select! {
                    _ = tokio::time::sleep(LOCK_POLL) => {}
                    _ = &mut stop => return Ok(Settled::Detached),
                }
            }
        }
        // Held now: kept for the drive, which takes them from here.
        for (id, lock) in run_ids.iter().zip(held) {
            locks.keep(id, lock);
        }
        self.drive(run_ids, stop).await
    }

    async fn answer(&self, task: &TaskId, answer: HumanAnswer) -> Result<RunId, RuntimeError> {
        answer_locked(&self.coordinator, self.locks.as_deref(), task, answer).await
    }

    async fn cancel(&self, run_id: &RunId, reason: String, stop: Stop) -> Result<Settled, RuntimeError> {
        self.claim(run_id);
        self.coordinator.submit(run_id, EventKind::CancelRequested { reason }).await?;
        self.settle(run_id, stop).await
    }

    async fn operate(&self, run_id: &RunId, op: Operation, stop: Stop) -> Result<Settled, RuntimeError> {
        self.check_operation(run_id, &op.action).await?;
        let ours = self.claim(run_id);
        self.coordinator.submit(run_id, op.event()).await?;
        if !op.moves_the_run() {
            if let Some(l) = &self.locks {
                l.forget(run_id);
            }
            return Ok(if ours { Settled::Settled } else { Settled::Elsewhere });
        }
        self.settle(run_id, stop).await
    }

    async fn event(&self, event: Value, stop: Stop) -> Result<EventDelivery, RuntimeError> {
        let delivery = self.deliver(event).await?;
        if let EventDelivery::Runs(ids) = &delivery {
            self.drive(ids, stop).await?;
        }
        Ok(delivery)
    }

    async fn deliver(&self, mut event: Value) -> Result<EventDelivery, RuntimeError> {
        // The envelope the bus would add (the answer's principal reads its account).
        with_envelope(&mut event, self.coordinator.now_ms());
        // An answer, as the coordinator takes it from the bus on AWS.
        if let Some(resolved) = crate::messages::task_resolution(&event) {
            let (task, answer) = resolved.map_err(RuntimeError::InvalidEvent)?;
            return Ok(EventDelivery::Answered(self.answer(&task, answer).await?));
        }
        Ok(EventDelivery::Runs(self.coordinator.deliver_event(&event).await?))
    }

    fn link_answerer(&self) -> Arc<dyn Answerer> {
        Arc::new(DriveAfterAnswer(self.coordinator.clone(), self.locks.clone()))
    }

    fn detached_hint(&self, run_id: &RunId) -> String {
        format!("continues with `baton resume {run_id}`")
    }

    fn timer_hint(&self, run_id: &RunId) -> Option<String> {
        Some(format!(
            "its timers fire while `baton serve` runs on this state directory (or at `baton resume {run_id}` once due)"
        ))
    }
}

/// Adds the envelope fields EventBridge would add, so `.input` has the same shape everywhere.
fn with_envelope(event: &mut Value, now_ms: u64) {
    let Some(o) = event.as_object_mut() else { return };
    let detail = o.get("detail").cloned().unwrap_or_else(|| Value::Object(Default::default()));
    let time = std::time::UNIX_EPOCH + std::time::Duration::from_millis(now_ms);
    o.entry("version").or_insert("0".into());
    o.entry("id").or_insert(uuid::Uuid::new_v4().to_string().into());
    o.entry("account").or_insert("000000000000".into());
    o.entry("region").or_insert("local".into());
    o.entry("time").or_insert(humantime::format_rfc3339_seconds(time).to_string().into());
    o.entry("resources").or_insert(Value::Array(vec![]));
    o.entry("detail").or_insert(detail);
}

/// Answers a task with its run's lock taken first (kept for the drive that follows).
async fn answer_locked(
    coordinator: &Coordinator,
    locks: Option<&RunLocks>,
    task: &TaskId,
    answer: HumanAnswer,
) -> Result<RunId, RuntimeError> {
    if let Some(t) = coordinator.store().get_task(task).await? {
        claim(locks, &t.run_id);
    }
    coordinator.answer_task(task, answer).await
}

/// Applies a task-link answer in this process and drives its run on in the background.
struct DriveAfterAnswer(Arc<Coordinator>, Option<Arc<RunLocks>>);

#[async_trait]
impl Answerer for DriveAfterAnswer {
    async fn answer(&self, task: &TaskRecord, answer: HumanAnswer) -> Result<(), RuntimeError> {
        let run_id = answer_locked(&self.0, self.1.as_deref(), &task.id, answer).await?;
        let (c, locks) = (self.0.clone(), self.1.clone());
        tokio::spawn(async move {
            let ids = std::slice::from_ref(&run_id);
            if let Err(e) = drive_locked(&c, locks.as_deref(), ids, std::future::pending::<()>()).await {
                tracing::warn!(%run_id, error = %e, "the run could not go on after the answer");
            }
        });
        Ok(())
    }
}
