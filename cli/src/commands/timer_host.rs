//! The timer host `baton serve` runs beside its server on the embedded backend: it fires
//! timers, escalations, timeouts and `schedule` triggers on time and picks up runs a crash left
//! (see `baton_runtime::timer_host`). On AWS, EventBridge Scheduler and the sweep do this.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use baton_runtime::timer_host::{ScheduleBook, TimerHost};
use tokio::sync::oneshot;

use crate::Backend;
use crate::backend::{Target, embedded_control};

/// A running host; [`HostHandle::stop`] ends it.
pub struct HostHandle {
    stop: oneshot::Sender<()>,
    done: tokio::task::JoinHandle<()>,
}

/// Starts the host for the embedded backend; `None` on AWS.
pub fn spawn(target: &Target) -> Result<Option<HostHandle>> {
    if target.backend != Backend::Embedded {
        return Ok(None);
    }
    let control = embedded_control(target, |c| c)?;
    let book = ScheduleBook::at(target.state_dir.join("schedules.json"));
    let host = Arc::new(TimerHost::new(control, book));
    let (stop, rx) = oneshot::channel::<()>();
    let done = tokio::spawn(host.run(async move {
        let _ = rx.await;
    }));
    Ok(Some(HostHandle { stop, done }))
}

impl HostHandle {
    /// Stops looking for due work; drives under way are left to finish or to the next host
    /// (their runs stay intact), so this returns within a second.
    pub async fn stop(self) {
        let _ = self.stop.send(());
        let _ = tokio::time::timeout(Duration::from_secs(1), self.done).await;
    }
}
