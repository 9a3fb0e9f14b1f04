//! The embedded host (`baton serve`'s timer host) on a simulated clock: a sleep, a task's
//! escalation chain and timeout, and an hourly schedule each fire once, on time, while the host
//! is stopped and started again twice (once across a due time, which then fires late, once).

use std::sync::Arc;
use std::time::{Duration, Instant};

use baton_core::engine::RunStatus;
use baton_core::ids::RunId;
use baton_embedded::sqlite::{Durability, SqliteStore};
use baton_runtime::Coordinator;
use baton_runtime::clock::SimClock;
use baton_runtime::control::{InProcessControl, NewRun, RunControl};
use baton_runtime::messages::derived_run_id;
use baton_runtime::ports::RunStore;
use baton_runtime::run_locks::RunLocks;
use baton_runtime::timer_host::{ScheduleBook, TimerHost};
use serde_json::json;
use tokio::sync::oneshot;

const WAITS: &str = r#"
name: waits
output: .steps.after.output
steps:
  - {id: nap, tool: sleep, with: {for: 1h}}
  - id: approve
    needs: [nap]
    tool: human
    with: {queue: l1, prompt: "Refund?", summary: false}
    escalate: [{after: 30m, to: l2}, {after: 1h, to: manager}]
    timeout: 2h
    on_timeout: {decision: approve, comment: "nobody answered"}
  - {id: after, needs: [approve], tool: transform, with: {expr: ".steps.approve.output.decision"}}
"#;

const HOURLY: &str = r#"
name: hourly
triggers: [{schedule: "rate(1 hour)"}]
steps:
  - {id: stamp, tool: transform, with: {expr: ".input.scheduled_time"}}
"#;

/// Hour-aligned, so `rate(1 hour)` falls on T0 + n hours.
const T0: u64 = 1_800_000_000_000;
const MIN: u64 = 60_000;
const HOUR: u64 = 60 * MIN;

struct Host {
    stop: oneshot::Sender<()>,
    done: tokio::task::JoinHandle<()>,
}

fn start_host(control: &Arc<InProcessControl>, dir: &std::path::Path) -> Host {
    let host = Arc::new(TimerHost::new(control.clone(), ScheduleBook::at(dir.join("schedules.json"))));
    let (stop, rx) = oneshot::channel::<()>();
    let done = tokio::spawn(host.run(async move {
        let _ = rx.await;
    }));
    Host { stop, done }
}

impl Host {
    async fn stop(self) {
        let _ = self.stop.send(());
        self.done.await.expect("the host stops");
    }
}

/// Waits (in real time) until `check` holds.
async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(20);
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn hours(audit: &[baton_core::audit::AuditRecord], decision: &str) -> Vec<f64> {
    audit.iter().filter(|r| r.decision == decision).map(|r| (r.at - T0) as f64 / HOUR as f64).collect()
}

fn scheduled_run(at: u64) -> RunId {
    let time = humantime::format_rfc3339_seconds(std::time::UNIX_EPOCH + Duration::from_millis(at));
    derived_run_id("s", &format!("embedded/hourly/rate(1 hour)@{time}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timers_escalations_and_schedules_fire_once_on_time_across_host_restarts() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Arc::new(SqliteStore::open(dir.path(), Durability::Normal).expect("store"));
    let clock = Arc::new(SimClock::at(T0));
    let coordinator = Arc::new(Coordinator::new(store.clone(), baton_tools::builtin(), clock.clone()));
    let locks = Arc::new(RunLocks::new(dir.path().join("locks")));
    let control = Arc::new(InProcessControl::new(coordinator).with_locks(locks));

    let hourly = Arc::new(baton_core::load_definition(None, HOURLY).expect("valid"));
    control.publish(&hourly, HOURLY).await.expect("publish");
    let waits = Arc::new(baton_core::load_definition(None, WAITS).expect("valid"));
    let id = control
        .start(NewRun { plan: waits, source: WAITS.into(), input: json!({}), mocks: None })
        .await
        .expect("start");
    // The starting command exits here: nobody drives the run but the host from now on.
    control.store().load_run(&id).await.expect("load").expect("run");

    let audit = |id: RunId| {
        let store = store.clone();
        async move { store.load_audit(&id).await.expect("audit") }
    };
    let exists = |id: RunId| {
        let store = store.clone();
        async move { store.load_run(&id).await.expect("load").is_some_and(|r| r.state.status == RunStatus::Succeeded) }
    };

    let host = start_host(&control, dir.path());
    // The host has seen the schedule (it counts from now) before the clock moves.
    eventually("the host's first look", || async { dir.path().join("schedules.json").exists() }).await;
    clock.advance(HOUR);
    eventually("the sleep ends and the task opens", || async {
        store.open_tasks().await.expect("tasks").iter().any(|t| t.run_id == id)
    })
    .await;
    eventually("the first hourly run", || exists(scheduled_run(T0 + HOUR))).await;

    // Restart the host between two due times.
    host.stop().await;
    let host = start_host(&control, dir.path());
    clock.advance(30 * MIN);
    eventually("the first escalation", || async { hours(&audit(id.clone()).await, "escalate").len() == 1 }).await;
    clock.advance(30 * MIN);
    eventually("the second escalation", || async { hours(&audit(id.clone()).await, "escalate").len() == 2 }).await;
    eventually("the second hourly run", || exists(scheduled_run(T0 + 2 * HOUR))).await;

    // Stop the host across the task's timeout and the next schedule: both fire, late, once
    // the host is back.
    host.stop().await;
    clock.advance(HOUR + 5 * MIN);
    let host = start_host(&control, dir.path());
    eventually("the task times out and the run ends", || async {
        control.store().load_run(&id).await.expect("load").is_some_and(|r| r.state.status == RunStatus::Succeeded)
    })
    .await;
    eventually("the third hourly run", || exists(scheduled_run(T0 + 3 * HOUR))).await;
    // Give a wrongly repeating host the chance to fire again before counting.
    tokio::time::sleep(Duration::from_millis(300)).await;
    host.stop().await;

    let log = audit(id.clone()).await;
    assert_eq!(hours(&log, "escalate"), vec![1.5, 2.0], "each escalation once, on time");
    let ended = log.last().expect("records");
    assert_eq!(ended.decision, "complete_run");
    assert_eq!((ended.at - T0) / MIN, 3 * 60 + 5, "the timeout fired when the host came back, 5 minutes late");
    let run = store.load_run(&id).await.expect("load").expect("run");
    assert_eq!(run.state.output, Some(json!("approve")));

    let hourly_runs: Vec<_> = store
        .list_runs(100)
        .await
        .expect("list")
        .into_iter()
        .filter(|h| h.workflow == "hourly")
        .map(|h| h.id)
        .collect();
    let mut expected = vec![scheduled_run(T0 + HOUR), scheduled_run(T0 + 2 * HOUR), scheduled_run(T0 + 3 * HOUR)];
    let mut got = hourly_runs.clone();
    expected.sort();
    got.sort();
    assert_eq!(got, expected, "one run per occurrence, none twice, none before publication");
    let first = store.load_run(&scheduled_run(T0 + HOUR)).await.expect("load").expect("run");
    assert_eq!(first.state.output, Some(json!({"stamp": "2027-01-15T09:00:00Z"})));
}
