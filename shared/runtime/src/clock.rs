//! Clocks: the real one, and a simulated one for tests that must cover hours or days of timers
//! (retries, escalations, task timeouts) in milliseconds of real time.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::Notify;

use crate::ports::Clock;

/// The system clock.
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> u64 {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
    }

    fn sleep_until(&self, at_ms: u64) -> Pin<Box<dyn Future<Output = ()> + Send + '_>> {
        let wait = at_ms.saturating_sub(self.now_ms());
        Box::pin(tokio::time::sleep(std::time::Duration::from_millis(wait)))
    }
}

/// A clock that only moves when told to, or (with [`SimClock::auto_advance`]) jumps to the
/// deadline of whoever sleeps on it: the test then runs as if the time had passed.
#[derive(Default)]
pub struct SimClock {
    now: AtomicU64,
    moved: Notify,
    auto: bool,
}

impl SimClock {
    /// A clock at `ms` that moves only with [`SimClock::advance`].
    pub fn at(ms: u64) -> Self {
        Self { now: AtomicU64::new(ms), moved: Notify::new(), auto: false }
    }

    /// A clock at `ms` that jumps forward to a sleeper's deadline as soon as someone sleeps.
    /// Tasks that are ready run first (the sleeper yields before the jump), so results already
    /// on their way are not overtaken by the jump; a call that takes real time is.
    pub fn auto_advance(ms: u64) -> Self {
        Self { now: AtomicU64::new(ms), moved: Notify::new(), auto: true }
    }

    /// Moves the clock forward by `ms` and wakes the sleepers whose time has come.
    pub fn advance(&self, ms: u64) {
        self.now.fetch_add(ms, Ordering::SeqCst);
        self.moved.notify_waiters();
    }
}

impl Clock for SimClock {
    fn now_ms(&self) -> u64 {
        self.now.load(Ordering::SeqCst)
    }

    fn sleep_until(&self, at_ms: u64) -> Pin<Box<dyn Future<Output = ()> + Send + '_>> {
        Box::pin(async move {
            loop {
                let moved = self.moved.notified();
                if self.now_ms() >= at_ms {
                    return;
                }
                if self.auto {
                    tokio::task::yield_now().await;
                    self.now.fetch_max(at_ms, Ordering::SeqCst);
                    self.moved.notify_waiters();
                    return;
                }
                moved.await;
            }
        })
    }
}
