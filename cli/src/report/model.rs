//! What the page shows, collected from one run through [`RunControl`] (so `--backend aws` works
//! as the embedded backend does): the run and its plan, the `--json` run object, the audit log
//! and its verification, task records, the memory the run read and wrote, model usage and the
//! backend's billing.

use std::collections::BTreeMap;

use anyhow::Result;
use baton_core::Plan;
use baton_core::audit::AuditRecord;
use baton_core::engine::{NodeStatus, RunState};
use baton_core::ids::{RunId, TaskId};
use baton_core::plan::{Scope, StepKind};
use baton_runtime::RunControl;
use serde_json::Value;

use super::audit_view::{self, NodeRow, TaskView};

/// Everything the report shows about one run.
pub struct Report {
    /// The run as a whole.
    pub header: Header,
    /// Every step of the plan, in definition order (agent tools after their agent's turn).
    pub steps: Vec<StepView>,
    /// One timeline row per node that started.
    pub rows: Vec<NodeRow>,
    /// The audit records, oldest first.
    pub audit: Vec<AuditRecord>,
    /// What verifying the hash chain found.
    pub chain: Chain,
    /// Human tasks and event waits, in the order they opened.
    pub tasks: Vec<TaskView>,
    /// Memory read and written.
    pub memory: MemoryView,
    /// Model usage and the backend's cost estimate.
    pub cost: CostView,
}

/// The run as a whole.
pub struct Header {
    /// Workflow name.
    pub workflow: String,
    /// The definition's `version`, when it has one.
    pub version: Option<Value>,
    /// The definition's `description`.
    pub description: Option<String>,
    /// Run id.
    pub run_id: String,
    /// The status word of the JSON contract (`waiting` for a run that has not ended).
    pub status: String,
    /// Definition hash the run is pinned to.
    pub definition: String,
    /// When the run started (ms since the epoch).
    pub created_at: u64,
    /// When it ended.
    pub ended_at: Option<u64>,
    /// Where the timeline ends: the run's end (or its last record), or now for a run that has
    /// not ended, so a wait still open shows as long as it has lasted.
    pub last_at: u64,
    /// Run input.
    pub input: Value,
    /// Run output (null unless succeeded).
    pub output: Value,
    /// Why it failed or was cancelled (null otherwise).
    pub error: Value,
    /// The parent run and node, for a child run.
    pub parent: Option<(String, String)>,
}

/// Why a step is not scheduled by the top-level DAG.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Placement {
    /// A top-level DAG step.
    Top,
    /// A body step of the loop with this id.
    Body(String),
    /// A fallback or compensation step, with the steps it serves.
    Role(Vec<(RoleKind, String)>),
    /// A tool of the agent step with this id.
    AgentTool(String),
}

/// What a role step does for the step it serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RoleKind {
    /// Runs when the served step's attempts are exhausted.
    Fallback,
    /// Undoes the served step when the run fails or is cancelled.
    Compensation,
}

impl RoleKind {
    /// The DSL word.
    pub fn as_str(self) -> &'static str {
        match self {
            RoleKind::Fallback => "fallback",
            RoleKind::Compensation => "compensate",
        }
    }
}

/// How the items of a `for_each` step ended.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ItemCounts {
    /// Items the `for_each` expression gave.
    pub total: usize,
    /// Items that succeeded.
    pub succeeded: usize,
    /// Items that failed.
    pub failed: usize,
    /// Items not started, running, waiting or cancelled.
    pub other: usize,
}

/// One step of the plan as the run saw it.
pub struct StepView {
    /// Step id.
    pub id: String,
    /// Tool name (`loop` for a loop step).
    pub tool: String,
    /// Where it is scheduled.
    pub placement: Placement,
    /// The steps it needs (same scope).
    pub needs: Vec<String>,
    /// Status as `runs show` reports it, or `not_started`.
    pub status: String,
    /// Attempts as `runs show` counts them.
    pub attempts: u64,
    /// For a `for_each` step: its items.
    pub items: Option<ItemCounts>,
    /// For a loop step: the iterations run.
    pub iterations: Option<u32>,
    /// First start of any of its nodes.
    pub started_at: Option<u64>,
    /// Last end of any of its nodes.
    pub ended_at: Option<u64>,
    /// Why it was skipped, failed, fell back or was cancelled.
    pub reason: Option<String>,
    /// Output (null when none).
    pub output: Value,
    /// `{kind, message}` or null.
    pub error: Value,
    /// The step has a `when`.
    pub conditional: bool,
    /// For a step that served a kept response (`fallback: cache`): `{cached_at, age_ms}`.
    pub stale: Option<Value>,
}

/// What verifying the audit chain found.
pub enum Chain {
    /// Every record's hash and link checked out: the record count, and the signed digests that
    /// cover them (`None` for an unsigned log).
    Intact(usize, Option<usize>),
    /// The first bad record and what is wrong with it.
    Broken {
        /// Its sequence number.
        seq: u64,
        /// What is wrong.
        message: String,
    },
}

/// Memory the run read and wrote.
#[derive(Default)]
pub struct MemoryView {
    /// The workflow declares `memory`.
    pub configured: bool,
    /// `.memory` as loaded when the run started.
    pub loaded: Option<Value>,
    /// The episode the run leaves (written by the commit that ends it).
    pub episode: Option<Value>,
    /// Calls of `memory` tool steps.
    pub ops: Vec<MemoryOp>,
}

/// One node of a `memory` tool step.
pub struct MemoryOp {
    /// Node key.
    pub node: String,
    /// Its status.
    pub status: String,
    /// The call's resolved arguments (`op`, `key`, `value`, `query`).
    pub input: Value,
    /// What it returned.
    pub output: Value,
    /// Why it failed.
    pub error: Option<String>,
}

/// Model usage and what the backend charged.
pub struct CostView {
    /// Every model call that reported usage, in audit order.
    pub calls: Vec<ModelCall>,
    /// The backend's billing object (`runs show`'s `aws`), none when it does not count, or the
    /// error that kept it from being read.
    pub billing: Result<Option<Value>, String>,
}

/// One model call's usage, from its audit record's `values.tool`.
pub struct ModelCall {
    /// The audit record.
    pub seq: u64,
    /// Step id.
    pub step: String,
    /// Node key.
    pub node: String,
    /// Attempt.
    pub attempt: Option<u32>,
    /// Model as the server named it.
    pub model: String,
    /// Prompt tokens.
    pub prompt_tokens: u64,
    /// Completion tokens.
    pub completion_tokens: u64,
    /// All tokens.
    pub total_tokens: u64,
    /// USD, when the server reported a cost.
    pub cost_usd: Option<f64>,
}

/// Reads everything about `run_id`; an unknown id is the control's `UnknownRun` error.
pub async fn collect(c: &dyn RunControl, run_id: &RunId) -> Result<Report> {
    let (plan, state) = c.load(run_id).await?;
    let shown = c.show(run_id).await?;
    let audit = c.audit(run_id).await?;
    let chain = match c.verify_audit(run_id).await? {
        Ok(v) => Chain::Intact(
            v.records,
            match v.signing {
                baton_core::audit::digest::Signing::Signed { digests, .. } => Some(digests),
                baton_core::audit::digest::Signing::Unsigned => None,
            },
        ),
        Err(e) => Chain::Broken { seq: e.first_bad(), message: e.to_string() },
    };
    let billing = c.billing(run_id).await.map_err(|e| e.to_string());
    let mut tasks = audit_view::tasks(&audit);
    for t in &mut tasks {
        // The stored record has the handover summary and how the task closed.
        match c.store().get_task(&TaskId::new(&t.id)).await {
            Ok(Some(rec)) => t.record = Some(rec),
            Ok(None) => {}
            Err(e) => t.note = Some(format!("task record not readable: {e}")),
        }
    }
    // Tasks of child runs hold this run too (`waiting_on` includes them).
    for rec in c.waiting_on(run_id).await? {
        if rec.run_id != *run_id {
            tasks.push(TaskView::from_child(rec));
        }
    }
    let last_record = audit.last().map(|r| r.at).unwrap_or(state.created_at);
    let last_at = match state.ended_at {
        Some(end) => last_record.max(end),
        // The backend's clock, the one that stamped the records.
        None => last_record.max(c.coordinator().now_ms()),
    };
    Ok(Report {
        header: header(&plan, &state, &shown, last_at),
        steps: steps(&plan, &state, &shown),
        rows: audit_view::rows(&plan, &state, &audit),
        memory: memory(&plan, &state, &audit),
        cost: CostView { calls: model_calls(&audit), billing },
        audit,
        chain,
        tasks,
    })
}

fn header(plan: &Plan, state: &RunState, shown: &Value, last_at: u64) -> Header {
    Header {
        workflow: state.workflow.clone(),
        version: plan.workflow.version.clone(),
        description: plan.workflow.description.clone(),
        run_id: state.run_id.to_string(),
        status: shown["status"].as_str().unwrap_or(state.status.as_str()).to_owned(),
        definition: state.definition.clone(),
        created_at: state.created_at,
        ended_at: state.ended_at,
        last_at,
        input: state.input.clone(),
        output: shown["output"].clone(),
        error: shown["error"].clone(),
        parent: state.parent.as_ref().map(|p| (p.run_id.to_string(), p.node.to_string())),
    }
}

/// Which steps each role step serves, and which steps are an agent's tools.
fn placements(plan: &Plan) -> Vec<Placement> {
    let mut out: Vec<Placement> = plan
        .steps
        .iter()
        .map(|s| match s.scope {
            Scope::Top => Placement::Top,
            Scope::Body(l) => Placement::Body(plan.steps[l].id.clone()),
            Scope::Role => Placement::Role(vec![]),
        })
        .collect();
    let mut serve = |role: usize, kind: RoleKind, of: &str| {
        if let Some(Placement::Role(list)) = out.get_mut(role) {
            list.push((kind, of.to_owned()));
        }
    };
    for s in &plan.steps {
        if let Some(f) = s.fallback {
            serve(f, RoleKind::Fallback, &s.id);
        }
    }
    let mut undo: Vec<(&usize, &usize)> = plan.compensate.iter().collect();
    undo.sort();
    for (done, by) in undo {
        serve(*by, RoleKind::Compensation, &plan.steps[*done].id);
    }
    for s in &plan.steps {
        if let StepKind::Agent { tools, .. } = &s.kind {
            for t in tools {
                if let Some(p) = out.get_mut(t.step) {
                    *p = Placement::AgentTool(s.id.clone());
                }
            }
        }
    }
    out
}

fn steps(plan: &Plan, state: &RunState, shown: &Value) -> Vec<StepView> {
    let placements = placements(plan);
    plan.steps
        .iter()
        .enumerate()
        .zip(placements)
        .map(|((ix, step), placement)| {
            let json = &shown["steps"][step.id.as_str()];
            let nodes: Vec<_> = state.nodes.values().filter(|n| n.step == ix).collect();
            let parent = state.nodes.get(step.id.as_str());
            let items = parent.and_then(|p| p.items.as_ref()).map(|it| {
                let of = |st: NodeStatus| nodes.iter().filter(|n| n.index.is_some() && n.status() == st).count();
                let (succeeded, failed) = (of(NodeStatus::Succeeded), of(NodeStatus::Failed));
                ItemCounts {
                    total: it.values.len(),
                    succeeded,
                    failed,
                    other: it.values.len().saturating_sub(succeeded + failed),
                }
            });
            let latest = nodes.iter().filter(|n| n.index.is_none()).max_by_key(|n| (n.started_at, n.end_order()));
            StepView {
                id: step.id.clone(),
                tool: step.kind.tool_name().to_owned(),
                placement,
                needs: step.needs.iter().map(|&n| plan.steps[n].id.clone()).collect(),
                status: json["status"].as_str().unwrap_or("not_started").to_owned(),
                attempts: json["attempts"].as_u64().unwrap_or(0),
                items,
                iterations: match step.kind {
                    StepKind::Loop { .. } => parent.map(|p| p.loop_iteration),
                    _ => None,
                },
                started_at: nodes.iter().map(|n| n.started_at).min(),
                ended_at: nodes.iter().filter_map(|n| n.ended_at()).max(),
                reason: latest.and_then(|n| n.reason()).map(str::to_owned),
                output: json["output"].clone(),
                error: json["error"].clone(),
                conditional: step.when.is_some(),
                stale: json.get("stale").cloned(),
            }
        })
        .collect()
}

fn memory(plan: &Plan, state: &RunState, audit: &[AuditRecord]) -> MemoryView {
    let inputs = audit_view::dispatch_inputs(audit);
    let ops = state
        .nodes
        .iter()
        .filter(|(_, n)| plan.steps.get(n.step).is_some_and(|s| s.kind.tool_name() == "memory"))
        .map(|(key, n)| MemoryOp {
            node: key.to_string(),
            status: n.status().as_str().to_owned(),
            input: inputs.get(key.as_str()).cloned().unwrap_or(Value::Null),
            output: n.output().cloned().unwrap_or(Value::Null),
            error: n
                .error()
                .filter(|_| n.status() != NodeStatus::Succeeded)
                .map(|e| format!("{}: {}", e.kind, e.message)),
        })
        .collect();
    MemoryView {
        configured: plan.memory.is_some(),
        loaded: state.memory.clone(),
        episode: baton_runtime::memory::episode_for(plan, state).and_then(|e| serde_json::to_value(e).ok()),
        ops,
    }
}

/// Every audit record whose `values.tool.usage` a model call filled in (`llm` steps, agent
/// turns), in order.
fn model_calls(audit: &[AuditRecord]) -> Vec<ModelCall> {
    audit
        .iter()
        .filter_map(|r| {
            let tool = r.values.get("tool")?;
            let usage = tool.get("usage").filter(|u| u.is_object())?;
            let n = |k: &str| usage.get(k).and_then(Value::as_u64).unwrap_or(0);
            Some(ModelCall {
                seq: r.seq,
                step: r.step.clone().unwrap_or_default(),
                node: r.node.clone().unwrap_or_default(),
                attempt: r.attempt,
                model: tool.get("model").and_then(Value::as_str).unwrap_or("").to_owned(),
                prompt_tokens: n("prompt_tokens"),
                completion_tokens: n("completion_tokens"),
                total_tokens: n("total_tokens"),
                cost_usd: tool.get("cost_usd").and_then(Value::as_f64),
            })
        })
        .collect()
}

/// Model calls summed per step, in the order the steps first called a model.
pub fn usage_by_step(calls: &[ModelCall]) -> Vec<(String, ModelCall)> {
    let mut order: Vec<String> = Vec::new();
    let mut sums: BTreeMap<String, ModelCall> = BTreeMap::new();
    for c in calls {
        let sum = sums.entry(c.step.clone()).or_insert_with(|| {
            order.push(c.step.clone());
            ModelCall {
                seq: c.seq,
                step: c.step.clone(),
                node: c.step.clone(),
                attempt: None,
                model: c.model.clone(),
                prompt_tokens: 0,
                completion_tokens: 0,
                total_tokens: 0,
                cost_usd: None,
            }
        });
        sum.prompt_tokens += c.prompt_tokens;
        sum.completion_tokens += c.completion_tokens;
        sum.total_tokens += c.total_tokens;
        if let Some(usd) = c.cost_usd {
            sum.cost_usd = Some(sum.cost_usd.unwrap_or(0.0) + usd);
        }
    }
    order.into_iter().filter_map(|s| sums.remove(&s).map(|c| (s, c))).collect()
}
