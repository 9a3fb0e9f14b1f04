//! One simulated history on the in-process delivery (the embedded shape, `baton run` and
//! `baton resume`): a process drives the runs over the fault-injected SQLite store and calls the
//! API itself. A fault kills the process (its runtime and every task in it are dropped, as
//! `kill -9` would), and the next process resumes the runs it left. Between processes the
//! outside answers tasks and sends the events waits wait for, as `baton approve` and
//! `baton event` would.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use baton_core::answer::{HumanAnswer, Verdict};
use baton_embedded::sqlite::{Durability, SqliteStore};
use baton_runtime::clock::SimClock;
use baton_runtime::entropy::SeededEntropy;
use baton_runtime::ports::{Clock, RunStore};
use baton_runtime::tools::ToolRegistry;
use baton_runtime::{Coordinator, DriveOutcome, RuntimeError};
use serde_json::{Value, json};

use super::api::{Api, stable_hash};
use super::faults::Faults;
use super::store::FaultyStore;
use super::workflows::Generated;
use super::world::{History, Root, event_for, verified_outcomes};

/// When every history starts (ms since the epoch).
const T0: u64 = 1_800_000_000_000;
/// A history whose processes have not finished it after this many is stuck.
const MAX_PROCESSES: usize = 2_000;

fn runtime() -> Result<tokio::runtime::Runtime, String> {
    tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| e.to_string())
}

/// Runs `roots` of `workflows` from `seed` with faults at `per_mille` of the port calls.
pub fn run_in_process(seed: u64, per_mille: u64, workflows: &[Generated], roots: &[Root]) -> Result<History, String> {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let inner = Arc::new(SqliteStore::open(dir.path(), Durability::Normal).map_err(|e| e.to_string())?);
    let faults = Arc::new(Faults::new(seed ^ 0x5EED, per_mille));
    let clock = Arc::new(SimClock::auto_advance(T0));
    let api = Arc::new(Api::inline(faults.clone()));
    let mut plans = BTreeMap::new();
    let rt = runtime()?;
    rt.block_on(async {
        let setup = Coordinator::new(inner.clone(), ToolRegistry::pure(), clock.clone());
        for g in workflows {
            let plan = baton_core::load_definition(None, &g.source)
                .map_err(|p| format!("generated workflow {} is invalid: {p:?}", g.name))?;
            setup.publish(&plan, &g.source).await.map_err(|e| format!("publishing {}: {e}", g.name))?;
            plans.insert(g.name.clone(), (Arc::new(plan), g.source.clone()));
        }
        Ok::<(), String>(())
    })?;
    drop(rt);
    let mut log: Vec<String> = Vec::new();
    let mut answered: BTreeSet<String> = BTreeSet::new();
    let mut processes = 0usize;
    let mut crashed: BTreeSet<u64> = BTreeSet::new();
    loop {
        processes += 1;
        if processes > MAX_PROCESSES {
            return Err(format!("the history did not end after {MAX_PROCESSES} processes\n{}", log.join("\n")));
        }
        api.next_incarnation();
        let store: Arc<dyn RunStore> = Arc::new(FaultyStore { inner: inner.clone(), faults: faults.clone() });
        let mut tools = ToolRegistry::pure();
        tools.register("http", api.clone());
        let coordinator = Coordinator::new(store.clone(), tools, clock.clone())
            .with_entropy(Arc::new(SeededEntropy::new(seed ^ processes as u64)));
        let rt = runtime()?;
        let step: Result<Option<DriveOutcome>, RuntimeError> = rt.block_on(async {
            // `baton run`: start each run that does not exist yet.
            for r in roots {
                if inner.load_run(&r.id).await?.is_none() {
                    let (plan, source) = &plans[&r.workflow];
                    match coordinator.start_as(r.id.clone(), plan.clone(), source, r.input.clone(), None).await {
                        // Created by a commit whose reply was lost.
                        Err(RuntimeError::Store(baton_runtime::StoreError::Conflict { .. })) => {}
                        other => {
                            other?;
                        }
                    }
                }
            }
            // `baton approve` and `baton event`.
            for t in inner.open_tasks().await? {
                if answered.contains(t.id.as_str()) {
                    continue;
                }
                match &t.wait {
                    None => {
                        let answer = HumanAnswer {
                            decision: Verdict::Approve,
                            data: json!({}),
                            comment: None,
                            by: Some("sim".into()),
                            principal: None,
                        };
                        match coordinator.answer_task(&t.id, answer).await {
                            Ok(_) | Err(RuntimeError::UnknownTask(_)) => {}
                            Err(e) => return Err(e),
                        }
                    }
                    Some(wait) => {
                        let key = wait.get("key").cloned().unwrap_or(Value::Null);
                        coordinator.deliver_event(&event_for(&key)).await?;
                    }
                }
                answered.insert(t.id.to_string());
            }
            // `baton resume`.
            let unfinished = inner.unfinished_runs().await?;
            if unfinished.is_empty() {
                return Ok(None);
            }
            coordinator.drive(&unfinished, std::future::pending()).await.map(Some)
        });
        // The process is gone, with every task it had (`kill -9`).
        drop(rt);
        drop(coordinator);
        let now = clock.now_ms();
        match step {
            Ok(None) => break,
            Ok(Some(outcome)) if !faults.is_crashed() => log.push(format!("{now} process {processes}: {outcome:?}")),
            other => {
                crashed.insert(processes as u64);
                log.push(format!("{now} process {processes} died: {:?}", other.err().map(|e| e.to_string())));
                faults.restart();
            }
        }
    }
    let outcomes = runtime()?.block_on(verified_outcomes(&inner, &clock, roots))?;
    if let Some(key) = api.reissued_without_a_crash(&crashed).first() {
        return Err(format!("{key} was called again though no process died with it in flight\n{}", log.join("\n")));
    }
    let api_calls = api.calls();
    log.extend(faults.log());
    Ok(History {
        faults: faults.injected(),
        actions: processes,
        digest: stable_hash(&log.join("\n")),
        outcomes: outcomes.0,
        runs: outcomes.1,
        api_calls,
        faulted_keys: BTreeMap::new(),
        recovered: 0,
        tail: log.iter().rev().take(40).rev().cloned().collect(),
    })
}
