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
use baton_core::audit::{AuditRecord, ChainError};
use baton_core::engine::{EventKind, HumanAnswer, RunState};
use baton_core::ids::{RunId, TaskId};
use serde_json::Value;

use crate::audit_check::{self, Divergence};
use crate::callback::Answerer;
use crate::coordinator::{Coordinator, DriveOutcome};
use crate::error::RuntimeError;
use crate::ports::{RunStore, TaskRecord};
use crate::report::run_json;

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

    /// Picks up runs a crash or a stop left unfinished and lets them settle.
    async fn resume(&self, run_ids: &[RunId], stop: Stop) -> Result<Settled, RuntimeError>;

    /// Answers an open task (checked against its form); returns the task's run once the answer
    /// is taken.
    async fn answer(&self, task: &TaskId, answer: HumanAnswer) -> Result<RunId, RuntimeError>;

    /// Cancels a run and waits until it has ended (or `stop`).
    async fn cancel(&self, run_id: &RunId, reason: String, stop: Stop) -> Result<Settled, RuntimeError>;

    /// Delivers an outside event (EventBridge shape) to triggers, waits and task answers.
    async fn event(&self, event: Value, stop: Stop) -> Result<EventDelivery, RuntimeError>;

    /// Carries out answers that arrive through signed task links.
    fn link_answerer(&self) -> Arc<dyn Answerer>;

    /// Where a run the caller detached from goes on, for the user (e.g. the command to resume it).
    fn detached_hint(&self, run_id: &RunId) -> String;

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

    /// The newest runs, each as [`RunControl::show`] with `workflow` and `created_at` added.
    async fn list(&self, limit: usize) -> Result<Vec<Value>, RuntimeError> {
        let mut out = Vec::new();
        for h in self.store().list_runs(limit).await? {
            let mut obj = self.show(&h.id).await?;
            obj["workflow"] = Value::String(h.workflow);
            obj["created_at"] = Value::from(h.created_at);
            out.push(obj);
        }
        Ok(out)
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

    /// Replays a run's journal through the engine; the inner result is the record count or the
    /// first divergence.
    async fn replay_audit(&self, run_id: &RunId) -> Result<Result<usize, Divergence>, RuntimeError> {
        audit_check::replay(self.coordinator(), run_id).await
    }
}

/// The embedded backend's control: runs are driven in this process, to their end or their next
/// wait, by the call that changed them.
pub struct InProcessControl {
    coordinator: Arc<Coordinator>,
}

impl InProcessControl {
    /// Control over the runs of `coordinator`'s store, driven by it.
    pub fn new(coordinator: Arc<Coordinator>) -> Self {
        Self { coordinator }
    }

    async fn drive(&self, run_ids: &[RunId], stop: Stop) -> Result<Settled, RuntimeError> {
        Ok(match self.coordinator.drive(run_ids, stop).await? {
            DriveOutcome::Detached => Settled::Detached,
            _ => Settled::Settled,
        })
    }
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
                "schedule triggers fire on the AWS backend (EventBridge Scheduler); the embedded backend stores them only"
                    .into(),
            );
        }
        Ok(published)
    }

    async fn start(&self, run: NewRun) -> Result<RunId, RuntimeError> {
        self.coordinator.start(run.plan, &run.source, run.input, run.mocks).await
    }

    async fn settle(&self, run_id: &RunId, stop: Stop) -> Result<Settled, RuntimeError> {
        self.drive(std::slice::from_ref(run_id), stop).await
    }

    async fn resume(&self, run_ids: &[RunId], stop: Stop) -> Result<Settled, RuntimeError> {
        self.drive(run_ids, stop).await
    }

    async fn answer(&self, task: &TaskId, answer: HumanAnswer) -> Result<RunId, RuntimeError> {
        self.coordinator.answer_task(task, answer).await
    }

    async fn cancel(&self, run_id: &RunId, reason: String, stop: Stop) -> Result<Settled, RuntimeError> {
        self.coordinator.submit(run_id, EventKind::CancelRequested { reason }).await?;
        self.settle(run_id, stop).await
    }

    async fn event(&self, mut event: Value, stop: Stop) -> Result<EventDelivery, RuntimeError> {
        // An answer, as the coordinator takes it from the bus on AWS.
        if let Some(resolved) = crate::messages::task_resolution(&event) {
            let (task, answer) = resolved.map_err(RuntimeError::InvalidEvent)?;
            return Ok(EventDelivery::Answered(self.answer(&task, answer).await?));
        }
        with_envelope(&mut event, self.coordinator.now_ms());
        let ids = self.coordinator.deliver_event(&event).await?;
        self.drive(&ids, stop).await?;
        Ok(EventDelivery::Runs(ids))
    }

    fn link_answerer(&self) -> Arc<dyn Answerer> {
        Arc::new(DriveAfterAnswer(self.coordinator.clone()))
    }

    fn detached_hint(&self, run_id: &RunId) -> String {
        format!("continues with `baton resume {run_id}`")
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

/// Applies a task-link answer in this process and drives its run on in the background.
struct DriveAfterAnswer(Arc<Coordinator>);

#[async_trait]
impl Answerer for DriveAfterAnswer {
    async fn answer(&self, task: &TaskRecord, answer: HumanAnswer) -> Result<(), RuntimeError> {
        let run_id = self.0.answer_task(&task.id, answer).await?;
        let c = self.0.clone();
        tokio::spawn(async move {
            if let Err(e) = c.drive(std::slice::from_ref(&run_id), std::future::pending::<()>()).await {
                tracing::warn!(%run_id, error = %e, "the run could not go on after the answer");
            }
        });
        Ok(())
    }
}
