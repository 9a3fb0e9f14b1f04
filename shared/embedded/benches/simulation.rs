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
    match sim::run_seeds(env_u64("BATON_SIM_SEED", 1_000_000), target, true) {
        Ok(t) => println!("{}", t.summary()),
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(1);
        }
    }
}
