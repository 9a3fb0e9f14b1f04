//! The embedded backend's long-running host (`baton serve`): what EventBridge Scheduler and the
//! coordinator's sweep do on AWS. It fires timers (sleeps, retries, task escalations and
//! timeouts) when they come due, starts the runs of `schedule` triggers, and picks up runs a
//! crash left with calls in flight. Runs another live process drives are left to it: the host
//! only drives a run whose lock it can take (see [`crate::run_locks`]).
//!
//! Each tick reads the unfinished runs from the store, so the host needs no state of its own
//! beyond when each schedule last fired (a small file beside the database); it can be stopped
//! and started at any moment.

use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::{Arc, Mutex};

use baton_core::engine::{Command, in_flight};
use baton_core::ids::RunId;
use baton_core::model::Trigger;
use serde_json::json;

use crate::control::{InProcessControl, Settled};
use crate::error::{RuntimeError, StoreError};

/// The longest the host sleeps between two looks at the store (runs started or answered by
/// other processes appear within this).
pub const TICK_MS: u64 = 1_000;

/// When each `schedule` trigger last fired, persisted so a restarted host neither fires an
/// occurrence twice nor forgets one that came due while it was down.
#[derive(Debug)]
pub struct ScheduleBook {
    path: Option<PathBuf>,
    last: BTreeMap<String, u64>,
}

impl ScheduleBook {
    /// A book kept in `path` (JSON), read now if it exists.
    pub fn at(path: impl Into<PathBuf>) -> Self {
        let path = path.into();
        let last = std::fs::read_to_string(&path).ok().and_then(|t| serde_json::from_str(&t).ok()).unwrap_or_default();
        Self { path: Some(path), last }
    }

    /// A book that lives only in memory (tests).
    pub fn in_memory() -> Self {
        Self { path: None, last: BTreeMap::new() }
    }

    fn save(&self) {
        let Some(path) = &self.path else { return };
        let tmp = path.with_extension("json.tmp");
        let text = serde_json::to_string_pretty(&self.last).unwrap_or_default();
        // Written aside and renamed, so a crash leaves the old book or the new one.
        if let Err(e) = std::fs::write(&tmp, text).and_then(|()| std::fs::rename(&tmp, path)) {
            tracing::warn!(path = %path.display(), error = %e, "cannot save when schedules last fired");
        }
    }
}

/// A parsed `schedule` expression, as EventBridge Scheduler takes them (times in UTC).
#[derive(Debug, Clone)]
pub enum ScheduleExpr {
    /// `rate(n unit)`: every `ms`, at multiples of it since the Unix epoch.
    Rate(u64),
    /// `cron(min hour day-of-month month day-of-week year)`.
    Cron(Box<cron::Schedule>),
    /// `at(yyyy-mm-ddThh:mm:ss)`: once.
    At(u64),
}

impl ScheduleExpr {
    /// Parses an expression that validation accepted; `Err` names what this host cannot do.
    pub fn parse(expr: &str) -> Result<Self, String> {
        let inner = |prefix: &str| expr.strip_prefix(prefix).and_then(|r| r.strip_suffix(')'));
        if let Some(r) = inner("rate(") {
            let (n, unit) = r.trim().split_once(' ').ok_or_else(|| format!("invalid rate `{expr}`"))?;
            let n: u64 = n.parse().map_err(|_| format!("invalid rate `{expr}`"))?;
            let unit_ms = match unit.trim_end_matches('s') {
                "minute" => 60_000,
                "hour" => 3_600_000,
                "day" => 86_400_000,
                _ => return Err(format!("invalid rate unit in `{expr}`")),
            };
            return Ok(ScheduleExpr::Rate(n.max(1) * unit_ms));
        }
        if let Some(r) = inner("cron(") {
            // EventBridge's six fields; the cron crate wants seconds first. Days of the week
            // number alike (1 = Sunday) and `?` means any in both.
            let s = cron::Schedule::from_str(&format!("0 {r}"))
                .map_err(|e| format!("cron expression `{expr}` is not supported here: {e}"))?;
            return Ok(ScheduleExpr::Cron(Box::new(s)));
        }
        if let Some(r) = inner("at(") {
            let t = humantime::parse_rfc3339(&format!("{r}Z")).map_err(|e| format!("invalid time in `{expr}`: {e}"))?;
            let ms = t.duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0);
            return Ok(ScheduleExpr::At(ms));
        }
        Err(format!("unknown schedule expression `{expr}`"))
    }

    /// The first occurrence strictly after `after_ms`, if any.
    pub fn next_after(&self, after_ms: u64) -> Option<u64> {
        match self {
            ScheduleExpr::Rate(every) => Some((after_ms / every + 1) * every),
            ScheduleExpr::At(at) => (*at > after_ms).then_some(*at),
            ScheduleExpr::Cron(s) => {
                let after = chrono::DateTime::from_timestamp_millis(after_ms as i64)?;
                s.after(&after).next().map(|t| t.timestamp_millis() as u64)
            }
        }
    }

    /// The latest occurrence in `(after_ms, until_ms]` and how many there were (capped at
    /// `cap`): a host that was down fires the latest one once, not every one it missed.
    fn latest_in(&self, after_ms: u64, until_ms: u64, cap: u32) -> Option<(u64, u32)> {
        let mut latest = None;
        let mut count = 0;
        let mut t = after_ms;
        while let Some(next) = self.next_after(t) {
            if next > until_ms || count >= cap {
                break;
            }
            latest = Some(next);
            count += 1;
            t = next;
        }
        if let (ScheduleExpr::Rate(every), Some(_)) = (self, latest) {
            // Jump straight to the last one when there were more than the cap.
            let last = until_ms / every * every;
            return Some((last, ((last - after_ms) / every) as u32));
        }
        latest.map(|l| (l, count))
    }
}

/// What one tick of the host did (for tests and logs).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Tick {
    /// Runs driven because a timer came due or calls were left in flight.
    pub driven: Vec<RunId>,
    /// Runs started by schedules.
    pub scheduled: Vec<RunId>,
    /// When the host should look again at the latest (ms).
    pub next_ms: u64,
}

/// The host's state between ticks.
pub struct TimerHost {
    control: Arc<InProcessControl>,
    book: Mutex<ScheduleBook>,
    /// Runs whose drive is under way in this host (spawned), not to be driven twice.
    busy: Arc<Mutex<HashSet<RunId>>>,
    /// Schedule expressions this host cannot run, each reported once.
    reported: Mutex<HashSet<String>>,
}

impl TimerHost {
    /// A host driving runs through `control` (which should hold the state directory's locks),
    /// keeping schedule times in `book`.
    pub fn new(control: Arc<InProcessControl>, book: ScheduleBook) -> Self {
        Self {
            control,
            book: Mutex::new(book),
            busy: Arc::new(Mutex::new(HashSet::new())),
            reported: Mutex::new(HashSet::new()),
        }
    }

    /// Ticks until `stop` completes: each tick fires what is due, then the host sleeps until the
    /// next timer or schedule, [`TICK_MS`] at most.
    pub async fn run(self: Arc<Self>, stop: impl std::future::Future<Output = ()>) {
        tokio::pin!(stop);
        let clock = self.control.coordinator.clock();
        loop {
            let next = match self.tick().await {
                Ok(t) => t.next_ms,
                Err(e) => {
                    tracing::warn!(error = %e, "the timer host could not read the store; trying again");
                    clock.now_ms() + TICK_MS
                }
            };
            let until = next.min(clock.now_ms() + TICK_MS);
            tokio::select! {
                _ = clock.sleep_until(until) => {}
                _ = &mut stop => return,
            }
        }
    }

    /// One look at the store: drives runs with due timers or calls left in flight (each in its
    /// own task, so one slow call does not delay another run's timer), and starts due schedules.
    pub async fn tick(&self) -> Result<Tick, RuntimeError> {
        let c = &self.control.coordinator;
        let store = c.store().clone();
        let now = c.now_ms();
        let mut tick = Tick { next_ms: now + TICK_MS, ..Tick::default() };
        for id in store.unfinished_runs().await? {
            if self.busy.lock().map(|b| b.contains(&id)).unwrap_or(true) {
                continue;
            }
            let Some(stored) = store.load_run(&id).await? else { continue };
            let plan = c.plan_for(&stored.header.workflow, &stored.header.definition).await?;
            let st = &stored.state;
            let mut due = false;
            for (tid, t) in &st.timers {
                if st.held_timers.contains(tid) {
                    continue;
                }
                if t.at <= now {
                    due = true;
                } else {
                    tick.next_ms = tick.next_ms.min(t.at);
                }
            }
            // Calls in flight with no live driver were left by a crash (a live one holds the lock).
            let calls = in_flight(&plan, st).iter().any(|c| matches!(c, Command::Dispatch(_)));
            if due || calls {
                self.spawn_drive(id.clone());
                tick.driven.push(id);
            }
        }
        let (scheduled, next) = self.fire_schedules(now).await?;
        tick.scheduled = scheduled;
        if let Some(n) = next {
            tick.next_ms = tick.next_ms.min(n);
        }
        Ok(tick)
    }

    fn spawn_drive(&self, id: RunId) {
        if let Ok(mut b) = self.busy.lock() {
            b.insert(id.clone());
        }
        let (control, busy) = (self.control.clone(), self.busy.clone());
        tokio::spawn(async move {
            match control.drive(std::slice::from_ref(&id), Box::pin(std::future::pending())).await {
                Ok(Settled::Elsewhere) => tracing::debug!(run = %id, "another process drives the run"),
                Ok(_) => {}
                Err(e) => tracing::warn!(run = %id, error = %e, "the timer host could not drive the run"),
            }
            if let Ok(mut b) = busy.lock() {
                b.remove(&id);
            }
        });
    }

    /// Starts a run for every schedule occurrence that came due since the schedule last fired
    /// (the latest one, once, if the host was down for several); returns the runs started and
    /// the next occurrence.
    async fn fire_schedules(&self, now: u64) -> Result<(Vec<RunId>, Option<u64>), RuntimeError> {
        let c = &self.control.coordinator;
        let mut started = Vec::new();
        let mut next: Option<u64> = None;
        for (name, hash) in c.store().published_definitions().await? {
            let plan = c.plan_for(&name, &hash).await?;
            for t in &plan.workflow.triggers {
                let Trigger::Schedule { schedule } = t else { continue };
                let expr = match ScheduleExpr::parse(schedule) {
                    Ok(e) => e,
                    Err(why) => {
                        if self.reported.lock().map(|mut r| r.insert(schedule.clone())).unwrap_or(false) {
                            tracing::warn!(workflow = %name, "{why}");
                        }
                        continue;
                    }
                };
                let key = format!("{name}/{schedule}");
                // A schedule first seen now starts counting now: publishing does not fire the
                // occurrences before it.
                let last = self.last_fired(&key, now);
                let mut from = last;
                if let Some((at, missed)) = expr.latest_in(last, now, 10_000) {
                    started.push(self.start_scheduled(&plan, &name, schedule, at, missed).await?);
                    self.record_fired(&key, at);
                    from = at;
                }
                if let Some(n) = expr.next_after(from.max(now)) {
                    next = Some(next.map_or(n, |m: u64| m.min(n)));
                }
            }
        }
        Ok((started, next))
    }

    /// When the schedule `key` last fired; a schedule seen for the first time is recorded as
    /// fired `now`.
    fn last_fired(&self, key: &str, now: u64) -> u64 {
        let Ok(mut b) = self.book.lock() else { return now };
        if let Some(t) = b.last.get(key) {
            return *t;
        }
        b.last.insert(key.to_owned(), now);
        b.save();
        now
    }

    fn record_fired(&self, key: &str, at: u64) {
        if let Ok(mut b) = self.book.lock() {
            b.last.insert(key.to_owned(), at);
            b.save();
        }
    }

    async fn start_scheduled(
        &self,
        plan: &Arc<baton_core::Plan>,
        name: &str,
        schedule: &str,
        at: u64,
        missed: u32,
    ) -> Result<RunId, RuntimeError> {
        let c = &self.control.coordinator;
        let time = humantime::format_rfc3339_seconds(std::time::UNIX_EPOCH + std::time::Duration::from_millis(at));
        // The same key as on AWS (schedule and time), so an occurrence starts one run however
        // often the host restarts.
        let run_id = crate::messages::derived_run_id("s", &format!("embedded/{name}/{schedule}@{time}"));
        if missed > 1 {
            tracing::warn!(workflow = %name, schedule, missed, "the host was down: the latest missed occurrence fires once");
        }
        let input = json!({"scheduled_time": time.to_string()});
        let source = c.store().get_definition(name, &plan.hash).await?.unwrap_or_default();
        match c.start_as(run_id.clone(), plan.clone(), &source, input, None).await {
            Ok(id) => {
                self.spawn_drive(id.clone());
                Ok(id)
            }
            Err(RuntimeError::Store(StoreError::Conflict { .. })) => Ok(run_id),
            Err(e) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: u64 = 60_000;

    #[test]
    fn schedule_expressions_give_their_next_occurrences_in_utc() {
        let rate = ScheduleExpr::parse("rate(5 minutes)").expect("rate");
        assert_eq!(rate.next_after(0), Some(5 * MIN));
        assert_eq!(rate.next_after(5 * MIN), Some(10 * MIN));
        // 2026-12-07 is a Monday; weekdays at 09:30 UTC.
        let cron = ScheduleExpr::parse("cron(30 9 ? * MON-FRI *)").expect("cron");
        let sat = 1_796_428_800_000; // 2026-12-05T00:00:00Z, a Saturday
        assert_eq!(cron.next_after(sat), Some(sat + 2 * 1_440 * MIN + 9 * 60 * MIN + 30 * MIN));
        let at = ScheduleExpr::parse("at(2026-12-05T00:10:00)").expect("at");
        assert_eq!(at.next_after(sat), Some(sat + 10 * MIN));
        assert_eq!(at.next_after(sat + 10 * MIN), None, "at fires once");
        assert_eq!(rate.latest_in(0, 23 * MIN, 10_000), Some((20 * MIN, 4)), "the latest of four missed");
        assert_eq!(rate.latest_in(20 * MIN, 24 * MIN, 10_000), None);
    }
}
