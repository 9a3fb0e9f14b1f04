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

const BRANCHES: &str = r#"
name: branches
output: .steps.after.output
steps:
  - {id: first, tool: sleep, with: {for: 1m}}
  - {id: nap, needs: [first], tool: sleep, with: {for: 1h}}
  - {id: ask, needs: [first], tool: human, with: {queue: ops, prompt: "Go?", summary: false}}
  - {id: after, needs: [ask], tool: transform, with: {expr: ".steps.ask.output.decision"}}
"#;

/// The host drives a run through its first sleep and then holds it (and its lock) while the run
/// sleeps an hour on one branch. An answer given by another process to the other branch is
/// recorded at once and carried out by the host within a second, not when the hour ends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answer_given_elsewhere_during_a_long_sleep_is_carried_out_at_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Arc::new(SqliteStore::open(dir.path(), Durability::Normal).expect("store"));
    let clock = Arc::new(SimClock::at(T0));
    let host_side = Arc::new(Coordinator::new(store.clone(), baton_tools::builtin(), clock.clone()));
    let host_control =
        Arc::new(InProcessControl::new(host_side).with_locks(Arc::new(RunLocks::new(dir.path().join("locks")))));
    // The answering command: its own connection and its own view of the locks, as another
    // process on the state directory has.
    let other_store = Arc::new(SqliteStore::open(dir.path(), Durability::Normal).expect("second store"));
    let other_side = Arc::new(Coordinator::new(other_store, baton_tools::builtin(), clock.clone()));
    let other = InProcessControl::new(other_side).with_locks(Arc::new(RunLocks::new(dir.path().join("locks"))));

    let plan = Arc::new(baton_core::load_definition(None, BRANCHES).expect("valid"));
    let id = host_control
        .start(NewRun { plan, source: BRANCHES.into(), input: json!({}), mocks: None })
        .await
        .expect("start");
    let host = start_host(&host_control, dir.path());
    // Whether the host's first look comes before or after this, the first sleep is due then.
    clock.advance(MIN);
    let waiting_since = Instant::now();
    let task = loop {
        if let Some(t) = store.open_tasks().await.expect("tasks").into_iter().find(|t| t.run_id == id) {
            break t.id;
        }
        assert!(waiting_since.elapsed() < Duration::from_secs(20), "the task never opened after the first sleep");
        tokio::time::sleep(Duration::from_millis(10)).await;
    };

    let answer = baton_core::answer::HumanAnswer {
        decision: baton_core::answer::Verdict::Approve,
        data: json!({}),
        comment: None,
        by: Some("ops".into()),
        principal: None,
    };
    other.answer(&task, answer).await.expect("the answer is taken while the host holds the run");
    // One simulated second: the host's next look at the store.
    clock.advance(1_000);
    eventually("the host carries the answer out", || async {
        let run = store.load_run(&id).await.expect("load").expect("run");
        run.state.nodes.get("after").is_some_and(|n| n.status() == baton_core::engine::NodeStatus::Succeeded)
    })
    .await;
    let run = store.load_run(&id).await.expect("load").expect("run");
    assert_eq!(run.state.status, RunStatus::Running, "the hour-long sleep still runs");
    clock.advance(HOUR);
    eventually("the run ends when the sleep does", || async {
        store.load_run(&id).await.expect("load").is_some_and(|r| r.state.status == RunStatus::Succeeded)
    })
    .await;
    host.stop().await;
    let run = store.load_run(&id).await.expect("load").expect("run");
    assert_eq!(run.state.output, Some(json!("approve")));
}
