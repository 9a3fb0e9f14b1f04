//! Group fsync for `Durability::Full`, off the commit path. With `synchronous=FULL` SQLite
//! fsyncs the WAL inside `COMMIT`, under the store's lock: every commit queued behind it waits
//! for the disk, and so does the thread holding the lock, so the CPU idles through each fsync.
//! Here a group commit is written with `synchronous=NORMAL` (frames in the WAL, not yet on
//! disk), the lock is released, and the caller waits, without blocking a thread, until a sync
//! thread has fsynced the WAL past its commit. While one fsync runs, the next groups are written;
//! the next fsync covers them all. No commit is acknowledged before it is on disk, as with FULL.
//!
//! Why this is sound: an fsync flushes the file (the inode), whichever descriptor wrote it, so
//! the thread's own descriptor of the `-wal` file covers SQLite's writes. SQLite syncs the WAL
//! header itself when it restarts the WAL, and syncs the WAL before and the database after a
//! checkpoint in both modes. After a power loss, recovery keeps the WAL's valid prefix, which
//! holds every acknowledged commit.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;

use baton_runtime::error::StoreError;
use tokio::sync::watch;

/// How far the WAL is on disk.
#[derive(Debug, Clone, Default)]
struct Synced {
    /// Every group commit up to this number is fsynced.
    through: u64,
    /// Set when an fsync failed. It stays set: after a failed fsync the file's state on disk is
    /// unknown (Linux may have dropped the dirty pages), so nothing more is acknowledged and
    /// the process must reopen the store, which recovers from the WAL.
    failed: Option<String>,
}

/// What the committing side tells the sync thread.
#[derive(Default)]
struct Written {
    /// The last group commit whose frames are in the WAL.
    through: u64,
    stop: bool,
}

struct Shared {
    written: Mutex<Written>,
    wake: Condvar,
}

/// The sync thread and the commits' view of it; dropping it stops the thread.
pub(crate) struct WalSync {
    shared: Arc<Shared>,
    synced: watch::Receiver<Synced>,
    thread: Option<JoinHandle<()>>,
}

impl WalSync {
    /// Starts the thread for the database at `db` (its WAL is `<db>-wal`).
    pub(crate) fn start(db: &Path) -> Result<Self, StoreError> {
        let shared = Arc::new(Shared { written: Mutex::new(Written::default()), wake: Condvar::new() });
        let (tx, synced) = watch::channel(Synced::default());
        let mut wal = db.as_os_str().to_owned();
        wal.push("-wal");
        let wal = PathBuf::from(wal);
        let dir = db.parent().map(|d| if d.as_os_str().is_empty() { PathBuf::from(".") } else { d.to_path_buf() });
        let thread_shared = shared.clone();
        let thread = std::thread::Builder::new()
            .name("baton-wal-sync".into())
            .spawn(move || sync_loop(&thread_shared, &tx, &wal, dir.as_deref()))
            .map_err(|e| StoreError::Backend(format!("cannot start the WAL sync thread: {e}")))?;
        Ok(Self { shared, synced, thread: Some(thread) })
    }

    /// The number the next group commit gets. Called under the store's connection lock, which
    /// is also held by [`WalSync::written`], so the number is the next one in WAL order.
    pub(crate) fn next(&self) -> u64 {
        self.shared.written.lock().map(|w| w.through + 1).unwrap_or(u64::MAX)
    }

    /// Group commit `seq` is in the WAL: the thread's next fsync covers it.
    pub(crate) fn written(&self, seq: u64) {
        if let Ok(mut w) = self.shared.written.lock() {
            w.through = w.through.max(seq);
        }
        self.shared.wake.notify_one();
    }

    /// Waits until group commit `seq` is on disk.
    pub(crate) async fn durable(&self, seq: u64) -> Result<(), StoreError> {
        let mut rx = self.synced.clone();
        let state = rx
            .wait_for(|s| s.through >= seq || s.failed.is_some())
            .await
            .map_err(|_| StoreError::Backend("the WAL sync thread stopped before the commit was on disk".into()))?;
        if state.through >= seq {
            return Ok(());
        }
        Err(StoreError::Backend(format!(
            "the commit was written but its fsync failed ({}); it may be lost on power failure",
            state.failed.clone().unwrap_or_default()
        )))
    }
}

impl Drop for WalSync {
    fn drop(&mut self) {
        if let Ok(mut w) = self.shared.written.lock() {
            w.stop = true;
        }
        self.shared.wake.notify_one();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Fsyncs the WAL whenever commits were written since the last fsync, until told to stop
/// (after syncing what was written before the stop).
fn sync_loop(shared: &Shared, tx: &watch::Sender<Synced>, wal: &Path, dir: Option<&Path>) {
    let mut file: Option<File> = None;
    let mut through = 0u64;
    loop {
        let target = {
            let Ok(mut w) = shared.written.lock() else { return };
            while w.through <= through && !w.stop {
                w = match shared.wake.wait(w) {
                    Ok(w) => w,
                    Err(_) => return,
                };
            }
            if w.through <= through {
                return; // stopping, and everything written is synced
            }
            w.through
        };
        match sync(&mut file, wal, dir) {
            Ok(()) => {
                through = target;
                tx.send_modify(|s| s.through = target);
            }
            Err(e) => {
                tracing::error!(error = %e, wal = %wal.display(), "fsync of the WAL failed; no further commit is acknowledged");
                tx.send_modify(|s| s.failed = Some(e));
                return;
            }
        }
    }
}

/// One fsync of the WAL's data. The first also syncs the directory, so the WAL's own entry
/// survives a power loss.
fn sync(file: &mut Option<File>, wal: &Path, dir: Option<&Path>) -> Result<(), String> {
    if file.is_none() {
        let f = File::open(wal).map_err(|e| format!("cannot open {}: {e}", wal.display()))?;
        if let Some(d) = dir {
            File::open(d).and_then(|d| d.sync_all()).map_err(|e| format!("cannot sync {}: {e}", d.display()))?;
        }
        *file = Some(f);
    }
    match file {
        Some(f) => f.sync_data().map_err(|e| format!("fsync of {}: {e}", wal.display())),
        None => Err("the WAL file is not open".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pending<F: std::future::Future>(f: F) -> bool {
        let waker = std::task::Waker::noop();
        let mut cx = std::task::Context::from_waker(waker);
        std::pin::pin!(f).poll(&mut cx).is_pending()
    }

    #[tokio::test]
    async fn a_commit_is_acknowledged_once_an_fsync_after_it_is_done() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = dir.path().join("baton.db");
        std::fs::write(dir.path().join("baton.db-wal"), b"frames").expect("wal");
        let sync = WalSync::start(&db).expect("start");
        assert_eq!(sync.next(), 1);
        assert!(pending(sync.durable(1)), "nothing was written yet, so nothing is acknowledged");
        sync.written(1);
        sync.durable(1).await.expect("synced");
        assert_eq!(sync.next(), 2);
        sync.written(3);
        sync.durable(2).await.expect("a later fsync covers earlier commits");
        sync.durable(3).await.expect("synced");
    }

    #[tokio::test]
    async fn a_failed_fsync_fails_its_commit_and_every_later_one() {
        let dir = tempfile::tempdir().expect("tempdir");
        // No WAL file: the thread cannot open it, as when the disk or directory is gone.
        let sync = WalSync::start(&dir.path().join("baton.db")).expect("start");
        sync.written(1);
        let err = sync.durable(1).await.expect_err("not on disk").to_string();
        assert!(err.contains("baton.db-wal"), "{err}");
        sync.written(2);
        assert!(sync.durable(2).await.is_err(), "nothing is acknowledged after a failed fsync");
    }
}
