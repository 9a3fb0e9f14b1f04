//! End-to-end embedded benchmark: the reference workloads (chain3, chain9, fanout100, chain3
//! throughput with 16 concurrent clients, resources) that baton is compared with other engines
//! on, plus two shapes of its own (a 1,000-wide fan-out and a 200-step chain). Every step is a
//! no-op `transform` whose result is durably committed to SQLite (WAL) before the run moves on.
//! The workloads, the measurement rules and the figures are in docs/benchmarks.md.
//!
//! Run: `cargo bench -p baton-embedded --bench workloads` (one JSON object per line on stdout).
//! `BATON_BENCH_QUICK=1` shortens every measurement (for smoke runs); `BATON_BENCH_LOAD_WAIT_SECS`
//! bounds the wait for a quiet machine (default 1800 s: the reference rules give up after 30
//! minutes and say so). Stores sign audit digests as the `baton` command's do;
//! `BATON_BENCH_UNSIGNED=1` measures without signing (the figure before signing existed).

use std::sync::Arc;
use std::time::{Duration, Instant};

use baton_core::Plan;
use baton_embedded::sqlite::{Durability, SqliteStore};
use baton_runtime::Coordinator;
use baton_runtime::clock::SystemClock;
use serde_json::{Value, json};

#[path = "../../core/benches/support/shapes.rs"]
mod shapes;

use shapes::{chain, fanout};

struct Bench {
    coordinator: Arc<Coordinator>,
    _dir: tempfile::TempDir,
}

impl Bench {
    fn new(durability: Durability) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = SqliteStore::open(dir.path(), durability).expect("store");
        let store = if std::env::var_os("BATON_BENCH_UNSIGNED").is_some() {
            store
        } else {
            store.with_audit_key(baton_runtime::audit_key::AuditKey::generate().expect("audit key"))
        };
        let coordinator = Arc::new(Coordinator::new(Arc::new(store), baton_tools::builtin(), Arc::new(SystemClock)));
        Self { coordinator, _dir: dir }
    }
}

async fn run_once(c: &Coordinator, plan: &Arc<Plan>, source: &str, expect: &Value) -> Result<Duration, String> {
    let t = Instant::now();
    let id = c.start(plan.clone(), source, json!({}), None).await.map_err(|e| e.to_string())?;
    c.drive(std::slice::from_ref(&id), std::future::pending()).await.map_err(|e| e.to_string())?;
    let elapsed = t.elapsed();
    let run = c.store().load_run(&id).await.map_err(|e| e.to_string())?.ok_or("run vanished")?;
    if run.state.output.as_ref() != Some(expect) {
        return Err(format!("wrong result: {:?}", run.state.output));
    }
    Ok(elapsed)
}

fn pct(sorted: &[f64], p: f64) -> f64 {
    let i = ((p * sorted.len() as f64).ceil() as usize).max(1) - 1;
    sorted[i.min(sorted.len() - 1)]
}

fn loadavg() -> f64 {
    std::fs::read_to_string("/proc/loadavg").ok().and_then(|s| s.split_whitespace().next()?.parse().ok()).unwrap_or(0.0)
}

fn wait_for_quiet() -> Option<f64> {
    let budget: u64 = std::env::var("BATON_BENCH_LOAD_WAIT_SECS").ok().and_then(|s| s.parse().ok()).unwrap_or(1800);
    let start = Instant::now();
    while loadavg() >= 0.7 {
        if start.elapsed().as_secs() >= budget {
            return Some(loadavg());
        }
        std::thread::sleep(Duration::from_secs(5));
    }
    None
}

fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks: f64 = f.get(11).and_then(|u| u.parse::<f64>().ok()).unwrap_or(0.0)
        + f.get(12).and_then(|s| s.parse::<f64>().ok()).unwrap_or(0.0);
    ticks / 100.0
}

fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with("VmHWM:")).and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

fn emit(mut v: Value, load_start: String, gave_up: Option<f64>) {
    v["engine"] = json!("baton-embedded");
    v["version"] = json!(env!("CARGO_PKG_VERSION"));
    v["audit"] = json!(if std::env::var_os("BATON_BENCH_UNSIGNED").is_some() { "unsigned" } else { "signed digests" });
    v["durability"] = json!(v.get("durability").cloned().unwrap_or(json!("sqlite-wal-synchronous-normal")));
    v["loadavg_start"] = json!(load_start);
    v["loadavg_end"] = json!(std::fs::read_to_string("/proc/loadavg").unwrap_or_default().trim());
    if let Some(l) = gave_up {
        v["load_wait"] = json!(format!("gave up waiting for load < 0.7 (was {l:.2})"));
    }
    println!("{v}");
}

async fn latency(name: &str, yaml: &str, expect: Value, warmup: usize, runs: usize, durability: Durability) {
    let b = Bench::new(durability);
    let plan = Arc::new(baton_core::load_definition(None, yaml).expect("valid"));
    for _ in 0..warmup {
        run_once(&b.coordinator, &plan, yaml, &expect).await.expect("warm-up run");
    }
    let gave_up = wait_for_quiet();
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default().trim().to_owned();
    let cpu0 = cpu_seconds();
    let mut ms = Vec::with_capacity(runs);
    let mut errors = 0;
    for _ in 0..runs {
        match run_once(&b.coordinator, &plan, yaml, &expect).await {
            Ok(d) => ms.push(d.as_secs_f64() * 1e3),
            Err(_) => errors += 1,
        }
    }
    let cpu = (cpu_seconds() - cpu0) / runs as f64;
    ms.sort_by(f64::total_cmp);
    let mean = ms.iter().sum::<f64>() / ms.len().max(1) as f64;
    let steps = plan.steps.len() as f64;
    let dur =
        if durability == Durability::Full { "sqlite-wal-synchronous-full" } else { "sqlite-wal-synchronous-normal" };
    emit(
        json!({"workload": name, "runs": runs, "errors": errors, "p50_ms": pct(&ms, 0.5), "p90_ms": pct(&ms, 0.9), "p99_ms": pct(&ms, 0.99),
               "max_ms": ms.last(), "mean_ms": mean, "per_step_p50_ms": pct(&ms, 0.5) / steps,
               "steps_per_s_p50": steps / (pct(&ms, 0.5) / 1e3), "cpu_ms_per_run": cpu * 1e3, "durability": dur}),
        load,
        gave_up,
    );
}

/// How the 16 clients reach the engine.
#[derive(Clone, Copy)]
enum Mode {
    /// One serving coordinator loop takes every run (how a long-lived baton process works).
    Served,
    /// Each client drives its own runs with a separate coordinator loop (like 16 `baton run`s
    /// sharing one state directory, but in one process).
    Independent,
}

async fn throughput(clients: usize, warm: Duration, window: Duration, mode: Mode, durability: Durability) {
    let b = Bench::new(durability);
    let service = Arc::new(b.coordinator.serve());
    let yaml = chain(3);
    let plan = Arc::new(baton_core::load_definition(None, &yaml).expect("valid"));
    let expect = json!({"n": 3});
    let gave_up = wait_for_quiet();
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default().trim().to_owned();
    let phase = |d: Duration| {
        let mut handles = Vec::new();
        let end = Instant::now() + d;
        for _ in 0..clients {
            let (c, plan, yaml, expect) = (b.coordinator.clone(), plan.clone(), yaml.clone(), expect.clone());
            let service = service.clone();
            handles.push(tokio::spawn(async move {
                let (mut ok, mut err) = (0u64, 0u64);
                while Instant::now() < end {
                    let good = match mode {
                        Mode::Independent => run_once(&c, &plan, &yaml, &expect).await.is_ok(),
                        Mode::Served => service
                            .run(plan.clone(), &yaml, json!({}))
                            .await
                            .is_ok_and(|st| st.output.as_ref() == Some(&expect)),
                    };
                    if good {
                        ok += 1;
                    } else {
                        err += 1;
                    }
                    // A client that never waits would keep its worker thread to itself.
                    tokio::task::yield_now().await;
                }
                (ok, err)
            }));
        }
        handles
    };
    for h in phase(warm) {
        let _ = h.await;
    }
    let cpu0 = cpu_seconds();
    let t = Instant::now();
    let (mut ok, mut err) = (0, 0);
    for h in phase(window) {
        let (o, e) = h.await.unwrap_or((0, 1));
        ok += o;
        err += e;
    }
    let secs = t.elapsed().as_secs_f64();
    let cpu = (cpu_seconds() - cpu0) / ok.max(1) as f64;
    emit(
        json!({"workload": "throughput_chain3", "mode": match mode { Mode::Served => "one serving coordinator loop", Mode::Independent => "a coordinator loop per client" },
               "clients": clients, "window_s": secs, "runs": ok, "errors": err, "runs_per_s": ok as f64 / secs,
               "steps_per_s": 3.0 * ok as f64 / secs, "cpu_ms_per_run": cpu * 1e3,
               "durability": if durability == Durability::Full { "sqlite-wal-synchronous-full" } else { "sqlite-wal-synchronous-normal" }}),
        load,
        gave_up,
    );
}

/// What one audit digest costs to sign, alone (every commit that appends records pays it once).
fn audit_sign() {
    let key = baton_runtime::audit_key::AuditKey::generate().expect("audit key");
    let head = "ab".repeat(32);
    let n = 2_000;
    let t = Instant::now();
    let mut last = String::new();
    for i in 0..n {
        last = key.digest("01a24c94-a7e4-7593-a2d8-4da5fafc7252", i, &head, &last, 1_796_581_140_452).hash;
    }
    let per = t.elapsed().as_secs_f64() * 1e6 / n as f64;
    println!("{}", json!({"workload": "audit_sign", "digests": n, "us_per_digest": per, "loadavg": loadavg()}));
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let quick = std::env::var_os("BATON_BENCH_QUICK").is_some();
    let (w, n) = if quick { (3, 20) } else { (20, 200) };
    let (fw, fnn) = if quick { (1, 5) } else { (3, 20) };
    // `BATON_BENCH_ONLY=fanout1000,throughput` runs a subset (prefixes of the workload names).
    let only = std::env::var("BATON_BENCH_ONLY").ok();
    let on = |name: &str| only.as_deref().is_none_or(|o| o.split(',').any(|x| name.starts_with(x)));
    if on("audit_sign") {
        audit_sign();
    }
    if on("latency_chain3") {
        latency("latency_chain3", &chain(3), json!({"n": 3}), w, n, Durability::Normal).await;
        latency("latency_chain3", &chain(3), json!({"n": 3}), w, n, Durability::Full).await;
    }
    if on("latency_chain9") {
        latency("latency_chain9", &chain(9), json!({"n": 9}), w, n, Durability::Normal).await;
    }
    if on("fanout100") {
        latency("fanout100", &fanout(100), json!({"n": 4950}), fw, fnn, Durability::Normal).await;
    }
    if on("fanout1000") {
        latency("fanout1000", &fanout(1000), json!({"n": 499_500}), fw, fnn, Durability::Normal).await;
    }
    if on("chain200") {
        latency("chain200", &chain(200), json!({"n": 200}), fw, fnn, Durability::Normal).await;
        latency("chain200", &chain(200), json!({"n": 200}), fw, fnn, Durability::Full).await;
    }
    let (warm, window) = if quick {
        (Duration::from_millis(500), Duration::from_secs(2))
    } else {
        (Duration::from_secs(3), Duration::from_secs(20))
    };
    if on("throughput") {
        throughput(16, warm, window, Mode::Served, Durability::Normal).await;
        throughput(16, warm, window, Mode::Independent, Durability::Normal).await;
        // Every commit fsynced: the group commit shares each fsync among the runs it carries.
        throughput(16, warm, window, Mode::Served, Durability::Full).await;
    }
    println!(
        "{}",
        json!({"workload": "resources", "engine": "baton-embedded", "peak_rss_kib": peak_rss_kib(),
        "note": "one process: client, coordinator and store in-process (no server); CPU per run is in each line"})
    );
}
