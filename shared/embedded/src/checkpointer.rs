//! WAL checkpoints off the commit path. SQLite checkpoints in the connection that commits once
//! the WAL passes `wal_autocheckpoint` pages, under the store's lock, so every commit queued
//! behind it waits (5.5% of `baton serve`'s CPU under load was that checkpoint). A thread with
//! a connection of its own runs a PASSIVE checkpoint a few times a second instead: it copies
//! what no reader still needs and never waits for a lock. The committing connection's own
//! threshold stays as a safety net, far above what the thread lets the WAL reach.

use std::path::Path;
use std::sync::mpsc::{RecvTimeoutError, Sender, channel};
use std::thread::JoinHandle;
use std::time::Duration;

use baton_runtime::error::StoreError;
use rusqlite::Connection;

/// How often the thread checkpoints.
const EVERY: Duration = Duration::from_millis(200);

/// Pages the committing connection lets the WAL hold before it checkpoints itself (64 MB at
/// 4 KB pages): reached only when the thread cannot keep up or is gone.
pub(crate) const SAFETY_NET_PAGES: u32 = 16_000;

/// The checkpoint thread; dropping it stops the thread.
pub(crate) struct Checkpointer {
    stop: Option<Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Checkpointer {
    /// Starts the thread on a connection of its own to the database at `path`.
    pub(crate) fn start(path: &Path) -> Result<Self, StoreError> {
        let conn = Connection::open(path).map_err(crate::sql)?;
        let (stop, stopped) = channel::<()>();
        let thread = std::thread::Builder::new()
            .name("baton-wal-checkpoint".into())
            .spawn(move || {
                while let Err(RecvTimeoutError::Timeout) = stopped.recv_timeout(EVERY) {
                    if let Err(e) = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(())) {
                        tracing::debug!(error = %e, "a passive WAL checkpoint failed; the next one retries");
                    }
                }
            })
            .map_err(|e| StoreError::Backend(format!("cannot start the WAL checkpoint thread: {e}")))?;
        Ok(Self { stop: Some(stop), thread: Some(thread) })
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        self.stop.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
