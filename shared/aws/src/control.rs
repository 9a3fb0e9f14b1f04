//! [`StackControl`]: the AWS backend's `RunControl`. The stack's coordinator is the only writer
//! of run state, so every change (start, answer, cancel, sweep) is a message to its queue and
//! the call then watches the table; reads go to the table directly.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use baton_core::Plan;
use baton_core::engine::{HumanAnswer, Verdict};
use baton_core::ids::{RunId, TaskId};
use baton_core::plan::StepKind;
use baton_runtime::callback::Answerer;
use baton_runtime::control::{EventDelivery, NewRun, Operation, Published, RunControl, Settled, Stop};
use baton_runtime::messages::CoordinatorMessage;
use baton_runtime::{Coordinator, RuntimeError};
use serde_json::{Value, json};

use crate::callbacks::QueueAnswerer;
use crate::handlers::StackClient;
use crate::triggers::{self, CoordinatorQueue};

/// How long a call watches a run before it returns (`BATON_WAIT_SECS`, default 300).
const DEFAULT_WAIT_SECS: u64 = 300;
/// How often the table is read while watching.
const POLL: Duration = Duration::from_millis(100);
/// After this long without progress a notice says what must be running.
const HINT_AFTER: Duration = Duration::from_secs(5);

/// What a watched run must reach.
#[derive(Debug, Clone, Copy)]
enum Until {
    /// Nothing moves without the outside world (children waiting on people included).
    Settled,
    /// The run ended.
    Ended,
    /// The coordinator committed something after this version (an operator's action taken).
    Changed(u64),
}

/// Control over the runs of one stack.
pub struct StackControl {
    coordinator: Arc<Coordinator>,
    config: aws_config::SdkConfig,
    stack: String,
    client: Arc<StackClient>,
    wait_limit: Duration,
    notice: Arc<dyn Fn(&str) + Send + Sync>,
}

impl StackControl {
    /// Control over `stack`, reading through `coordinator` (built on the stack's table).
    /// Notices for the user (what must be running when a run makes no progress) go to `notice`.
    pub fn new(
        coordinator: Arc<Coordinator>,
        config: &aws_config::SdkConfig,
        stack: &str,
        notice: Arc<dyn Fn(&str) + Send + Sync>,
    ) -> Self {
        let secs = std::env::var("BATON_WAIT_SECS").ok().and_then(|v| v.parse().ok()).unwrap_or(DEFAULT_WAIT_SECS);
        Self {
            coordinator,
            config: config.clone(),
            stack: stack.to_owned(),
            client: Arc::new(StackClient::new(config, stack)),
            wait_limit: Duration::from_secs(secs),
            notice,
        }
    }

    /// Watches a run until it reaches `until`, the wait limit passes or `stop` fires; a run that
    /// does not exist yet is waited for (its start may be queued).
    async fn watch(&self, run_id: &RunId, stop: &mut Stop, until: Until) -> Result<Settled, RuntimeError> {
        let started = Instant::now();
        let mut hinted = false;
        loop {
            if let Some(stored) = self.store().load_run(run_id).await? {
                let reached = match until {
                    Until::Ended => stored.state.status.is_terminal(),
                    Until::Changed(version) => stored.header.version > version,
                    Until::Settled => {
                        let plan =
                            self.coordinator.plan_for(&stored.header.workflow, &stored.header.definition).await?;
                        self.coordinator.settled_with_children(plan, stored.state).await?
                    }
                };
                if reached {
                    return Ok(Settled::Settled);
                }
            }
            if started.elapsed() >= self.wait_limit {
                return Ok(Settled::StillGoing(self.wait_limit.as_secs()));
            }
            if !hinted && started.elapsed() >= HINT_AFTER {
                (self.notice)(&format!(
                    "waiting for stack {} to run {run_id} (its functions, or `baton --backend aws dev`, must be running)",
                    self.stack
                ));
                hinted = true;
            }
            tokio::select! {
                _ = tokio::time::sleep(POLL) => {}
                _ = stop.as_mut() => return Ok(Settled::Detached),
            }
        }
    }

    /// Creates the bus rules that route the events `plan`'s waits are for to the coordinator.
    async fn route_waits(&self, plan: &Plan) -> Result<Vec<String>, RuntimeError> {
        if !plan.steps.iter().any(|s| matches!(s.kind, StepKind::WaitEvent { .. })) {
            return Ok(vec![]);
        }
        let queue = CoordinatorQueue::open(&self.config, &self.stack).await?;
        Ok(triggers::ensure_wait_rules(&self.config, &self.stack, plan, &queue).await?)
    }
}

#[async_trait]
impl RunControl for StackControl {
    fn coordinator(&self) -> &Coordinator {
        &self.coordinator
    }

    async fn publish(&self, plan: &Plan, source: &str) -> Result<Published, RuntimeError> {
        self.coordinator.publish(plan, source).await?;
        let queue = CoordinatorQueue::open(&self.config, &self.stack).await?;
        let mut rules = triggers::sync_trigger_rules(&self.config, &self.stack, plan, &queue).await?;
        rules.extend(triggers::ensure_wait_rules(&self.config, &self.stack, plan, &queue).await?);
        let mut routes: Vec<String> =
            rules.iter().map(|r| format!("rule {r} on {s}-bus -> {s}-coordinator", s = self.stack)).collect();
        let schedules = triggers::sync_trigger_schedules(&self.config, &self.stack, plan, &queue).await?;
        routes
            .extend(schedules.iter().map(|n| format!("schedule {n} in group {s} -> {s}-coordinator", s = self.stack)));
        Ok(Published { routes, notes: vec![] })
    }

    /// Sends a start with a run id chosen here (so the run can be followed, and a redelivered
    /// start starts nothing); input and mocks are checked first, so a mistake sends nothing.
    async fn start(&self, run: NewRun) -> Result<RunId, RuntimeError> {
        let NewRun { plan, source, input, mocks } = run;
        plan.check_input(&input).map_err(RuntimeError::InvalidInput)?;
        if let Some(m) = &mocks {
            baton_runtime::mocks::Mocks::parse(m, &plan)?;
        }
        self.store().put_definition(&plan.hash, &plan.workflow.name, &source).await?;
        self.route_waits(&plan).await?;
        let run_id = RunId::new(uuid::Uuid::now_v7().to_string());
        self.client
            .send(&CoordinatorMessage::Start {
                workflow: plan.workflow.name.clone(),
                definition: Some(plan.hash.clone()),
                input,
                mocks,
                run_id: Some(run_id.clone()),
                dedupe: None,
                parent: None,
            })
            .await?;
        Ok(run_id)
    }

    async fn settle(&self, run_id: &RunId, mut stop: Stop) -> Result<Settled, RuntimeError> {
        self.watch(run_id, &mut stop, Until::Settled).await
    }

    /// The stack drives its runs; what a crash left undelivered goes out now, then each run is
    /// watched until it settles.
    async fn resume(&self, run_ids: &[RunId], mut stop: Stop) -> Result<Settled, RuntimeError> {
        self.client.send(&CoordinatorMessage::Sweep).await?;
        let mut last = Settled::Settled;
        for id in run_ids {
            last = self.watch(id, &mut stop, Until::Settled).await?;
            if last != Settled::Settled {
                break;
            }
        }
        Ok(last)
    }

    /// Checks here what the coordinator would refuse (so mistakes fail at once), sends the
    /// answer, and waits until the coordinator has taken it (the task closes).
    async fn answer(&self, task: &TaskId, answer: HumanAnswer) -> Result<RunId, RuntimeError> {
        let open = self.store().get_task(task).await?.filter(|t| t.status == "open");
        let open = open.ok_or_else(|| RuntimeError::UnknownTask(task.clone()))?;
        if answer.decision == Verdict::Approve
            && let Some(form) = &open.form
        {
            baton_core::plan::check_against_schema(form, &answer.data).map_err(RuntimeError::InvalidAnswer)?;
        }
        self.client.send(&CoordinatorMessage::Answer { task: task.clone(), answer }).await?;
        let started = Instant::now();
        while self.store().get_task(task).await?.is_some_and(|t| t.status == "open") {
            if started.elapsed() >= self.wait_limit {
                break;
            }
            tokio::time::sleep(POLL).await;
        }
        Ok(open.run_id)
    }

    async fn cancel(&self, run_id: &RunId, reason: String, mut stop: Stop) -> Result<Settled, RuntimeError> {
        self.client.send(&CoordinatorMessage::Cancel { run_id: run_id.clone(), reason }).await?;
        self.watch(run_id, &mut stop, Until::Ended).await
    }

    async fn operate(&self, run_id: &RunId, op: Operation, mut stop: Stop) -> Result<Settled, RuntimeError> {
        self.check_operation(run_id, &op.action).await?;
        let message = CoordinatorMessage::Operate {
            run_id: run_id.clone(),
            operation: op.action.clone(),
            by: op.by.clone(),
            reason: op.reason.clone(),
        };
        let before = self.store().load_run(run_id).await?.map(|r| r.header.version).unwrap_or_default();
        self.client.send(&message).await?;
        // The action is taken once the coordinator has committed it; a moving run is then
        // watched until it settles, as after a start.
        let taken = self.watch(run_id, &mut stop, Until::Changed(before)).await?;
        if taken != Settled::Settled || !op.moves_the_run() {
            return Ok(taken);
        }
        self.watch(run_id, &mut stop, Until::Settled).await
    }

    /// Puts the event on the stack's bus, whose rules route it (to triggers, waits and task
    /// answers) as for any other sender.
    async fn event(&self, event: Value, _stop: Stop) -> Result<EventDelivery, RuntimeError> {
        let text = |k: &str| event.get(k).and_then(Value::as_str).map(str::to_owned);
        let (Some(source), Some(detail_type)) = (text("source"), text("detail-type")) else {
            return Err(RuntimeError::InvalidEvent("an event needs string fields `source` and `detail-type`".into()));
        };
        let detail = event.get("detail").cloned().unwrap_or_else(|| json!({}));
        let event_id = crate::eventbridge::put_event(&self.config, &self.stack, &source, &detail_type, &detail).await?;
        Ok(EventDelivery::Put { event_id, bus: format!("{}-bus", self.stack) })
    }

    fn link_answerer(&self) -> Arc<dyn Answerer> {
        Arc::new(QueueAnswerer(StackClient::new(&self.config, &self.stack)))
    }

    fn detached_hint(&self, _run_id: &RunId) -> String {
        format!("continues on stack {}", self.stack)
    }

    /// The AWS requests the run made and their estimated cost at list prices.
    async fn billing(&self, run_id: &RunId) -> Result<Option<Value>, RuntimeError> {
        let stored = self.store().load_run(run_id).await?.ok_or_else(|| RuntimeError::UnknownRun(run_id.clone()))?;
        let estimate = crate::cost::estimate(&stored.header.usage);
        let steps = stored.state.nodes.values().filter(|n| n.attempt > 0).count().max(1);
        Ok(Some(json!({
            "requests": estimate.requests,
            "requests_per_step": estimate.requests as f64 / steps as f64,
            "billable_requests": estimate.billable_requests,
            "by_operation": stored.header.usage,
            "estimated_usd": estimate.usd,
            "prices": crate::cost::PRICES_AS_OF,
        })))
    }
}

/// The HTTP API (`baton_runtime::api`) over `stack`, behind `token`: reads from its table,
/// changes as messages to its coordinator. What the `api` function serves under `/api/`.
pub fn stack_api(
    config: &aws_config::SdkConfig,
    stack: &str,
    token: &str,
    audit_key: Option<baton_runtime::audit_key::AuditKey>,
) -> baton_runtime::api::Api {
    // The key only checks the seals here (`audit/verify`): this side never commits.
    let store = match audit_key {
        Some(key) => crate::handlers::store(config, stack).with_audit_key(key),
        None => crate::handlers::store(config, stack),
    };
    let store = Arc::new(store);
    let coordinator = Coordinator::new(
        store,
        baton_runtime::tools::ToolRegistry::default(),
        Arc::new(baton_runtime::clock::SystemClock),
    );
    let notice = Arc::new(|text: &str| tracing::info!("{text}"));
    let control = StackControl::new(Arc::new(coordinator), config, stack, notice);
    baton_runtime::api::Api::new(Arc::new(control), Some(token))
}
