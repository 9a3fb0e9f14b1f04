//! Deterministic simulation of baton's coordinator, workers, store and queues: one seed decides
//! the workflows, their inputs, the order messages arrive in and every fault, so a failing seed
//! runs the same history again. See docs/reliability.md.

pub mod api;
pub mod faults;
pub mod inprocess;
pub mod net;
pub mod store;
pub mod workflows;
pub mod world;

use baton_runtime::RunId;
use baton_runtime::entropy::SeededEntropy;
use serde_json::json;

use world::{History, Root};

/// Faults per thousand port calls: high enough that most histories have several, low enough
/// that a message usually gets through within its receive limit.
pub const PER_MILLE: u64 = 40;

/// What one seed found: the history with faults on each delivery, each checked against the
/// fault-free history.
#[derive(Debug)]
pub struct Checked {
    /// The queued delivery (the AWS shape) with faults.
    pub queued: History,
    /// The in-process delivery (the embedded shape) with faults.
    pub in_process: History,
    /// Port calls and actions of the fault-free history.
    pub reference_actions: usize,
}

impl Checked {
    /// Faults injected in both histories.
    pub fn faults(&self) -> usize {
        self.queued.faults + self.in_process.faults
    }
}

/// Generates the seed's workflows and runs, runs them without faults on the queued delivery,
/// then with faults at `per_mille` of the port calls on both deliveries, and checks the
/// invariants; an error says which broke and shows the workflows.
pub fn check_seed(seed: u64, per_mille: u64) -> Result<Checked, String> {
    let rng = SeededEntropy::new(seed);
    let mut workflows = Vec::new();
    let mut roots = Vec::new();
    for i in 0..(1 + rng.below(3) as usize) {
        let generated = workflows::generate(&rng, i);
        let name = generated.last().map(|g| g.name.clone()).unwrap_or_default();
        workflows.extend(generated);
        let items: Vec<u64> = (0..rng.below(4)).collect();
        roots.push(Root {
            id: RunId::new(format!("r-{seed}-{i}")),
            workflow: name,
            input: json!({"key": format!("k{seed}-{i}"), "n": rng.below(5), "items": items}),
        });
    }
    let show = |e: String| format!("seed {seed}: {e}\n{}", sources(&workflows));
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| e.to_string())?;
    let reference =
        rt.block_on(world::run_queued(seed, 0, &workflows, &roots)).map_err(|e| show(format!("fault-free: {e}")))?;
    let queued = rt
        .block_on(world::run_queued(seed, per_mille, &workflows, &roots))
        .map_err(|e| show(format!("queued: {e}")))?;
    drop(rt);
    let in_process =
        inprocess::run_in_process(seed, per_mille, &workflows, &roots).map_err(|e| show(format!("in-process: {e}")))?;
    for (delivery, history) in [("queued", &queued), ("in-process", &in_process)] {
        if history.outcomes != reference.outcomes {
            return Err(show(format!(
                "the runs ended differently with faults on the {delivery} delivery\n  fault-free: {:?}\n  with faults: {:?}",
                reference.outcomes, history.outcomes
            )));
        }
    }
    for (key, calls) in &queued.api_calls {
        let allowed = 1 + queued.faulted_keys.get(key).copied().unwrap_or(0);
        if *calls > allowed {
            return Err(show(format!(
                "the call {key} reached the API {calls} times; faults while it was in flight explain {allowed}\n{}",
                queued.tail.join("\n")
            )));
        }
    }
    Ok(Checked { reference_actions: reference.actions, queued, in_process })
}

fn sources(workflows: &[workflows::Generated]) -> String {
    workflows.iter().map(|g| format!("--- {}\n{}", g.name, g.source)).collect()
}

/// What a run of seeds added up to.
#[derive(Debug, Default)]
pub struct Totals {
    /// Faults injected, both deliveries.
    pub faults: usize,
    /// Of them, on the queued delivery.
    pub queued: usize,
    /// Of them, on the in-process delivery.
    pub in_process: usize,
    /// Runs the histories held.
    pub runs: usize,
    /// Dead letters the sweeps carried out.
    pub recovered: usize,
    /// Actions of all histories, fault-free ones included.
    pub actions: usize,
    /// The first seed, and the one after the last.
    pub seeds: (u64, u64),
    /// Seconds it took.
    pub secs: f64,
}

impl Totals {
    /// One line for a report.
    pub fn summary(&self) -> String {
        let (first, next) = self.seeds;
        format!(
            "simulation: {} faults ({} queued, {} in-process) in {} seeds ({first}..{next}), {} runs, {} dead letters recovered, {} actions, {:.1} s, {:.0} faults/s, {:.1} seeds/s",
            self.faults,
            self.queued,
            self.in_process,
            next - first,
            self.runs,
            self.recovered,
            self.actions,
            self.secs,
            self.faults as f64 / self.secs,
            (next - first) as f64 / self.secs
        )
    }
}

/// Checks seeds from `first` on until `target` faults were injected; a progress line every
/// minute when `progress`. An error names the failing seed and how to run it again.
pub fn run_seeds(first: u64, target: usize, progress: bool) -> Result<Totals, String> {
    let started = std::time::Instant::now();
    let mut last_report = started;
    let mut t = Totals { seeds: (first, first), ..Totals::default() };
    while t.faults < target {
        let seed = t.seeds.1;
        let c = check_seed(seed, PER_MILLE).map_err(|e| {
            format!(
                "{e}\nreproduce: BATON_SIM_SEED={seed} BATON_SIM_FAULTS=1 cargo test -p baton-embedded --test simulation ten_thousand"
            )
        })?;
        t.faults += c.faults();
        t.queued += c.queued.faults;
        t.in_process += c.in_process.faults;
        t.runs += c.queued.runs + c.in_process.runs;
        t.recovered += c.queued.recovered;
        t.actions += c.queued.actions + c.in_process.actions + c.reference_actions;
        t.seeds.1 += 1;
        if progress && last_report.elapsed().as_secs() >= 60 {
            last_report = std::time::Instant::now();
            eprintln!("  {} faults so far, {:.0} s", t.faults, started.elapsed().as_secs_f64());
        }
    }
    t.secs = started.elapsed().as_secs_f64();
    Ok(t)
}
