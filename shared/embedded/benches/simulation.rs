//! The deterministic simulation at scale: `cargo bench -p baton-embedded --bench simulation`
//! injects a million faults (`BATON_SIM_FAULTS` to change it, `BATON_SIM_SEED` for the first
//! seed) into random workflows on both deliveries and reports faults per second. The same
//! checks as `tests/simulation.rs`, which runs ten thousand in the test command.

#[path = "../tests/sim/mod.rs"]
#[allow(dead_code)]
mod sim;

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn main() {
    // `cargo bench` passes `--bench`; a filter that names another bench means: not this one.
    let args: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with('-')).collect();
    if !args.is_empty() && !args.iter().any(|a| "simulation".contains(a.as_str())) {
        return;
    }
    let target = env_u64("BATON_SIM_FAULTS", 1_000_000) as usize;
    let first = env_u64("BATON_SIM_SEED", 1_000_000);
    let started = std::time::Instant::now();
    let (mut faults, mut queued, mut in_process, mut actions, mut seed) = (0usize, 0usize, 0usize, 0usize, first);
    let (mut runs, mut recovered) = (0usize, 0usize);
    let mut last_report = std::time::Instant::now();
    while faults < target {
        match sim::check_seed(seed, sim::PER_MILLE) {
            Ok(c) => {
                faults += c.faults();
                queued += c.queued.faults;
                in_process += c.in_process.faults;
                actions += c.queued.actions + c.in_process.actions + c.reference_actions;
                runs += c.queued.runs + c.in_process.runs;
                recovered += c.queued.recovered;
            }
            Err(e) => {
                eprintln!(
                    "{e}\nreproduce: BATON_SIM_SEED={seed} BATON_SIM_FAULTS=1 cargo test -p baton-embedded --test simulation ten_thousand"
                );
                std::process::exit(1);
            }
        }
        seed += 1;
        if last_report.elapsed().as_secs() >= 60 {
            last_report = std::time::Instant::now();
            eprintln!("  {faults} faults so far, {:.0} s", started.elapsed().as_secs_f64());
        }
    }
    let secs = started.elapsed().as_secs_f64();
    println!(
        "simulation: {faults} faults ({queued} queued, {in_process} in-process) in {} seeds ({first}..{seed}), {runs} runs, {recovered} dead letters recovered, {actions} actions, {secs:.1} s, {:.0} faults/s, {:.1} seeds/s",
        seed - first,
        faults as f64 / secs,
        (seed - first) as f64 / secs
    );
}
