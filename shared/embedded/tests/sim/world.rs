//! One simulated history on the queued delivery (the AWS shape): the coordinator and a worker
//! over the fault-injected SQLite store, the simulated queues and schedules, a person who
//! answers every task and a system that sends the event every wait waits for, all driven by one
//! seed. A crash throws away the process (coordinator or worker, and sometimes the store's
//! connection) and starts a new one; the messages it held come back after their visibility
//! timeout.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;

use baton_core::answer::{HumanAnswer, Verdict};
use baton_embedded::sqlite::{Durability, SqliteStore};
use baton_runtime::clock::SimClock;
use baton_runtime::entropy::SeededEntropy;
use baton_runtime::messages::{CoordinatorMessage, body_of};
use baton_runtime::ports::{BatchReport, Clock, RunStore, ToolCall};
use baton_runtime::tools::ToolRegistry;
use baton_runtime::worker::Worker;
use baton_runtime::{Coordinator, RunId, audit_check};
use serde_json::{Value, json};

use super::api::{Api, stable_hash};
use super::faults::Faults;
use super::net::{COORDINATOR, Net};
use super::store::FaultyStore;
use super::workflows::Generated;

/// When every history starts (ms since the epoch).
const T0: u64 = 1_800_000_000_000;
/// A history that has not ended after this many actions is stuck.
const MAX_ACTIONS: usize = 60_000;
/// How often the outbox sweep's schedule fires.
const SWEEP_EVERY_MS: u64 = 60_000;

/// A run to start: its id, workflow and input.
#[derive(Debug, Clone)]
pub struct Root {
    /// Run id.
    pub id: RunId,
    /// Workflow name.
    pub workflow: String,
    /// Input.
    pub input: Value,
}

/// What a history ended with.
#[derive(Debug, Default)]
pub struct History {
    /// Faults injected.
    pub faults: usize,
    /// Actions taken (batches handled, answers and events sent, clock jumps).
    pub actions: usize,
    /// A hash of everything that happened, in order: one seed gives one value.
    pub digest: u64,
    /// Each root's status and output.
    pub outcomes: BTreeMap<String, (String, Value)>,
    /// Runs in the store (roots and children).
    pub runs: usize,
    /// Calls the API received, per idempotency key.
    pub api_calls: BTreeMap<String, u32>,
    /// Faults injected while each key's call was in flight.
    pub faulted_keys: BTreeMap<String, u32>,
    /// Dead letters whose attempts the coordinator failed.
    pub recovered: usize,
    /// The last lines of the history, for a report.
    pub tail: Vec<String>,
}

struct Process {
    coordinator: Coordinator,
    worker: Arc<Worker>,
}

struct World {
    dir: tempfile::TempDir,
    faults: Arc<Faults>,
    clock: Arc<SimClock>,
    net: Arc<Net>,
    api: Arc<Api>,
    inner: Arc<SqliteStore>,
    log: Vec<String>,
    restarts: u64,
    seed: u64,
}

impl World {
    fn open(dir: &Path) -> Result<Arc<SqliteStore>, String> {
        SqliteStore::open(dir, Durability::Normal).map(Arc::new).map_err(|e| format!("opening the store: {e}"))
    }

    fn process(&self) -> Process {
        let store: Arc<dyn RunStore> = Arc::new(FaultyStore { inner: self.inner.clone(), faults: self.faults.clone() });
        let entropy = Arc::new(SeededEntropy::new(self.seed ^ self.restarts.wrapping_mul(0x9E37_79B9)));
        let coordinator = Coordinator::new(store.clone(), ToolRegistry::pure(), self.clock.clone())
            .with_dispatcher(self.net.clone())
            .with_entropy(entropy);
        let mut tools = ToolRegistry::default();
        tools.register("http", self.api.clone());
        let worker = Arc::new(Worker::new(store.clone(), tools, self.net.clone(), self.clock.clone()));
        Process { coordinator, worker }
    }

    /// A coordinator on the store itself, for setting up and checking (no faults).
    fn observer(&self) -> Coordinator {
        Coordinator::new(self.inner.clone(), ToolRegistry::pure(), self.clock.clone())
    }
}

/// Runs `roots` of `workflows` from `seed` with faults at `per_mille` of the port calls.
pub async fn run_queued(seed: u64, per_mille: u64, workflows: &[Generated], roots: &[Root]) -> Result<History, String> {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let faults = Arc::new(Faults::new(seed, per_mille));
    let clock = Arc::new(SimClock::at(T0));
    let net = Arc::new(Net::new(faults.clone(), clock.clone()));
    let api = Arc::new(Api::new(faults.clone()));
    let inner = World::open(dir.path())?;
    let mut w = World { dir, faults, clock, net, api, inner, log: Vec::new(), restarts: 0, seed };
    let setup = w.observer();
    for g in workflows {
        let plan = baton_core::load_definition(None, &g.source)
            .map_err(|p| format!("generated workflow {} is invalid: {p:?}\n{}", g.name, g.source))?;
        setup.publish(&plan, &g.source).await.map_err(|e| format!("publishing {}: {e}", g.name))?;
    }
    for r in roots {
        w.net.push(
            COORDINATOR,
            body_of(&CoordinatorMessage::Start {
                workflow: r.workflow.clone(),
                definition: None,
                input: r.input.clone(),
                mocks: None,
                run_id: Some(r.id.clone()),
                dedupe: None,
                parent: None,
            }),
        );
    }
    let mut p = w.process();
    let mut answered: BTreeSet<String> = BTreeSet::new();
    let mut poisoned: BTreeSet<String> = BTreeSet::new();
    let mut next_sweep = T0 + SWEEP_EVERY_MS;
    let mut actions = 0usize;
    loop {
        actions += 1;
        if actions > MAX_ACTIONS {
            return Err(stuck(&w, "the history did not end", roots).await);
        }
        let now = w.clock.now_ms();
        if now >= next_sweep {
            w.net.push(COORDINATOR, body_of(&CoordinatorMessage::Sweep));
            next_sweep = now + SWEEP_EVERY_MS;
        }
        if w.net.fire_due() > 0 {
            w.log.push(format!("{now} schedules fired"));
        }
        // The people and systems outside: answer each task once, send each wait its event.
        let tasks = w.inner.open_tasks().await.map_err(|e| e.to_string())?;
        for t in tasks {
            if !answered.insert(t.id.to_string()) {
                continue;
            }
            let body = match &t.wait {
                None => body_of(&CoordinatorMessage::Answer {
                    task: t.id.clone(),
                    answer: HumanAnswer {
                        decision: Verdict::Approve,
                        data: json!({}),
                        comment: None,
                        by: Some("sim".into()),
                        principal: None,
                    },
                }),
                Some(wait) => {
                    let key = wait.get("key").cloned().unwrap_or(Value::Null);
                    event_for(&key).to_string()
                }
            };
            w.log.push(format!("{now} outside answers {}", t.id));
            w.net.push(COORDINATOR, body);
        }
        let ready = w.net.ready_queues();
        if ready.is_empty() {
            if settled(&w, roots).await? {
                break;
            }
            let next = [w.net.next_visible(), w.net.next_due(), Some(next_sweep)]
                .into_iter()
                .flatten()
                .filter(|t| *t > now)
                .min()
                .unwrap_or(now + 1_000);
            w.clock.advance(next - now);
            w.log.push(format!("{now} clock to {next}"));
            continue;
        }
        let queue = ready[w.faults.rng().below(ready.len() as u64) as usize].clone();
        let batch = if queue == COORDINATOR {
            let batch = w.net.receive(&queue, 1 + w.faults.rng().below(4) as usize);
            let report = p.coordinator.handle_batch(&batch).await;
            (batch, report)
        } else {
            let batch = w.net.receive(&queue, 1);
            // A message that kills every worker that takes it (a payload the function runs out
            // of memory on): it goes round until the redrive policy dead-letters it.
            if let Some(m) = batch.first()
                && m.receive_count == 1
                && w.faults.roll()
                && w.faults.rng().chance(500)
            {
                w.faults.note(&format!("poison message on {queue}"));
                poisoned.insert(m.id.clone());
            }
            if batch.first().is_some_and(|m| poisoned.contains(&m.id)) {
                let report = BatchReport { failed: batch.iter().map(|m| m.id.clone()).collect(), ..Default::default() };
                (batch, report)
            } else {
                let key = batch
                    .first()
                    .and_then(|m| serde_json::from_str::<ToolCall>(&m.body).ok())
                    .map(|c| c.idempotency_key);
                w.faults.in_flight(key);
                let report = p.worker.handle_batch(&queue, &batch).await;
                w.faults.in_flight(None);
                (batch, report)
            }
        };
        let (batch, report) = batch;
        let ids: Vec<&str> = batch.iter().map(|m| m.id.as_str()).collect();
        w.log.push(format!("{now} {queue} {ids:?} failed {:?} dead {:?}", report.failed, report.dead_lettered));
        if w.faults.is_crashed() {
            // The process is gone with what it held; its messages come back after their
            // visibility timeout.
            w.faults.restart();
            w.restarts += 1;
            drop(p);
            if w.faults.rng().chance(250) {
                w.inner = World::open(w.dir.path())?;
                w.log.push(format!("{now} store restarted"));
            }
            p = w.process();
            w.log.push(format!("{now} process restarted"));
        } else {
            for m in &batch {
                if report.failed.contains(&m.id) {
                    continue;
                }
                if w.faults.roll() {
                    w.faults.note(&format!("duplicate delivery on {queue}"));
                    w.net.push(&queue, m.body.clone());
                }
                w.net.delete(&queue, &m.id);
            }
        }
        w.clock.advance(w.faults.rng().below(200));
    }
    let (outcomes, runs) = verified_outcomes(&w.inner, &w.clock, roots).await?;
    // A last sweep, without faults, carries out the dead letters the history left; none may be
    // left over (not even for an operator: every message here is valid).
    w.faults.quiet();
    for _ in 0..20 {
        match p.coordinator.recover_dead_letters().await {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) => return Err(format!("the last sweep failed: {e}")),
        }
    }
    let left = w.net.dead_letters_left();
    if !left.is_empty() {
        return Err(format!("dead letters were not carried out: {left:?}"));
    }
    w.log.extend(w.faults.log());
    let digest = stable_hash(&w.log.join("\n"));
    let tail = w.log.iter().rev().take(40).rev().cloned().collect();
    drop(p);
    Ok(History {
        faults: w.faults.injected(),
        actions,
        digest,
        outcomes,
        runs,
        api_calls: w.api.calls(),
        faulted_keys: w.faults.faulted_keys(),
        recovered: w.net.recovered(),
        tail,
    })
}

/// The event a wait with correlation `key` waits for: the same in every history.
pub fn event_for(key: &Value) -> Value {
    let k = key.as_str().map_or_else(|| key.to_string(), str::to_owned);
    json!({
        "version": "0", "id": format!("ev-{k}"), "detail-type": "Go", "source": "sim.events",
        "account": "000000000000", "time": "2027-01-15T08:00:00Z", "region": "eu-west-1",
        "resources": [], "detail": {"key": key}
    })
}

/// Each root's status and output, and how many runs the store holds, once every run's audit
/// log verifies and replays.
pub async fn verified_outcomes(
    inner: &Arc<SqliteStore>,
    clock: &Arc<SimClock>,
    roots: &[Root],
) -> Result<(BTreeMap<String, (String, Value)>, usize), String> {
    let observer = Coordinator::new(inner.clone(), ToolRegistry::pure(), clock.clone());
    let mut outcomes = BTreeMap::new();
    for r in roots {
        let run = inner.load_run(&r.id).await.map_err(|e| e.to_string())?.ok_or(format!("run {} was lost", r.id))?;
        let status = match &run.state.error {
            Some(e) => format!("{}: {e:?}", run.state.status.as_str()),
            None => run.state.status.as_str().to_owned(),
        };
        outcomes.insert(r.id.to_string(), (status, run.state.output.clone().unwrap_or(Value::Null)));
    }
    let headers = inner.list_runs(usize::MAX).await.map_err(|e| e.to_string())?;
    for h in &headers {
        match audit_check::verify(&observer, &h.id).await {
            Ok(Ok(_)) => {}
            other => return Err(format!("run {}: the audit log does not verify: {other:?}", h.id)),
        }
        match audit_check::replay(&observer, &h.id).await {
            Ok(Ok(_)) => {}
            other => return Err(format!("run {}: the audit log does not replay: {other:?}", h.id)),
        }
    }
    Ok((outcomes, headers.len()))
}

/// True when every root exists and every run in the store has ended.
async fn settled(w: &World, roots: &[Root]) -> Result<bool, String> {
    for r in roots {
        if w.inner.load_run(&r.id).await.map_err(|e| e.to_string())?.is_none() {
            return Ok(false);
        }
    }
    Ok(w.inner.unfinished_runs().await.map_err(|e| e.to_string())?.is_empty())
}

async fn stuck(w: &World, what: &str, roots: &[Root]) -> String {
    let mut out = format!("{what} after {MAX_ACTIONS} actions (clock at +{} s)\n", (w.clock.now_ms() - T0) / 1000);
    for r in roots {
        let status = match w.inner.load_run(&r.id).await {
            Ok(Some(run)) => format!("{:?}", run.state.status),
            Ok(None) => "missing".into(),
            Err(e) => e.to_string(),
        };
        out.push_str(&format!("  {}: {status}\n", r.id));
    }
    if let Ok(unfinished) = w.inner.unfinished_runs().await {
        out.push_str(&format!("  unfinished: {unfinished:?}\n"));
        for id in &unfinished {
            if let Ok(Some(run)) = w.inner.load_run(id).await {
                let open: Vec<String> = run.state.open.iter().map(|n| format!("{n:?}")).collect();
                out.push_str(&format!(
                    "  {id}: open {open:?}, timers {:?}, tasks {:?}\n",
                    run.state.timers.keys().collect::<Vec<_>>(),
                    run.state.tasks.keys().collect::<Vec<_>>()
                ));
            }
        }
    }
    if let Ok(tasks) = w.inner.open_tasks().await {
        out.push_str(&format!(
            "  open tasks: {:?}\n",
            tasks.iter().map(|t| (&t.id, &t.step, &t.wait)).collect::<Vec<_>>()
        ));
        for t in &tasks {
            if let Some(wait) = &t.wait {
                let ev = event_for(wait.get("key").unwrap_or(&Value::Null));
                let keys = baton_runtime::wait_index::event_keys(&ev);
                let found = w.inner.open_waits(&keys).await.map(|v| v.len());
                out.push_str(&format!(
                    "  event keys {keys:?}: open_waits finds {found:?}; matches {}\n",
                    baton_runtime::wait_index::wait_matches(wait, &ev)
                ));
            }
        }
    }
    out.push_str(&format!("  dead letters: {:?}\n", w.net.dead_letters_left()));
    if let Ok(rows) = w.inner.pending_outbox(u64::MAX, 100).await {
        out.push_str(&format!("  outbox rows: {}\n", rows.len()));
    }
    let faults = w.faults.log();
    out.push_str(&format!("  last faults: {:?}\n", faults.iter().rev().take(12).collect::<Vec<_>>()));
    out.push_str(&format!("  pending messages: {}\n", w.net.pending()));
    if let Ok(path) = std::env::var("BATON_SIM_LOG") {
        let mut all = w.log.clone();
        all.extend(w.faults.log().into_iter().map(|f| format!("fault: {f}")));
        let _ = std::fs::write(path, all.join("\n"));
    }
    for line in w.log.iter().rev().take(30).rev() {
        out.push_str(&format!("  | {line}\n"));
    }
    out
}
