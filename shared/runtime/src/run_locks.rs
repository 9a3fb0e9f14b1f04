//! Which process drives a run, on the embedded backend: one lock file per run in the state
//! directory, held with `flock` while a process (or one task in it) drives the run. The
//! operating system releases a lock when its holder exits, `kill -9` included, so a run left
//! by a crash is free at once, while a run another live process drives is never picked up
//! twice (which would issue its in-flight calls again).
//!
//! Two opens of one file in one process lock independently, so the lock also keeps two
//! drivers in one process (`baton serve`'s timer host and an API request) apart.

use std::collections::HashMap;
use std::fs::{File, OpenOptions, TryLockError};
use std::io::Write;
use std::path::PathBuf;
use std::sync::Mutex;

use baton_core::ids::RunId;

/// The lock files of one state directory.
#[derive(Debug)]
pub struct RunLocks {
    dir: PathBuf,
    /// Locks taken by a call that changed a run (start, answer, cancel, an operator's action),
    /// kept for the drive that follows it.
    pending: Mutex<HashMap<RunId, RunLock>>,
}

/// A held run lock; dropping it releases the run.
#[derive(Debug)]
pub struct RunLock {
    /// `None` when the lock file could not be opened or locked (see [`RunLocks::try_take`]),
    /// or while the lock is only reserved.
    _file: Option<File>,
    /// Reserved for a run this process is creating: no file yet (see [`RunLocks::reserve`]).
    reserved: bool,
}

/// Whether this process may drive a run.
#[derive(Debug)]
pub enum Claimed {
    /// It may; the lock is held until the guard drops.
    Ours(RunLock),
    /// Another process, or another driver in this one, holds the run.
    Elsewhere,
}

impl RunLocks {
    /// Lock files under `dir` (created when first needed).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into(), pending: Mutex::new(HashMap::new()) }
    }

    /// Takes the run's lock unless someone holds it. A lock file that cannot be opened (a
    /// read-only directory) counts as free: driving twice is what happened before locks, and
    /// refusing would stop every run.
    pub fn try_take(&self, run_id: &RunId) -> Claimed {
        if let Some(lock) = self.pending.lock().ok().and_then(|mut p| p.remove(run_id))
            && !lock.reserved
        {
            return Claimed::Ours(lock);
        }
        let path = self.dir.join(format!("{}.lock", file_name(run_id.as_str())));
        let opened = std::fs::create_dir_all(&self.dir)
            .and_then(|()| OpenOptions::new().create(true).truncate(false).write(true).open(&path));
        let mut file = match opened {
            Ok(f) => f,
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "cannot open a run lock; driving without it");
                return Claimed::Ours(RunLock { _file: None, reserved: false });
            }
        };
        match file.try_lock() {
            Ok(()) => {
                // Who holds it, for a person looking at the directory.
                let _ = file.set_len(0).and_then(|()| writeln!(file, "{}", std::process::id()));
                Claimed::Ours(RunLock { _file: Some(file), reserved: false })
            }
            Err(TryLockError::WouldBlock) => Claimed::Elsewhere,
            Err(TryLockError::Error(e)) => {
                tracing::warn!(path = %path.display(), error = %e, "cannot lock a run; driving without it");
                Claimed::Ours(RunLock { _file: None, reserved: false })
            }
        }
    }

    /// Reserves the lock of a run this process is about to create, without a lock file: no
    /// other process knows the run before its first commit. Most runs a start creates end in
    /// that commit (a chain of transforms) and never need the file, whose creation costs more
    /// than the run; a run that goes on takes its file when it is driven ([`RunLocks::try_take`]).
    pub fn reserve(&self, run_id: &RunId) {
        if let Ok(mut p) = self.pending.lock() {
            p.insert(run_id.clone(), RunLock { _file: None, reserved: true });
        }
    }

    /// Drops a reservation whose run needs no driving (it ended in its first commit); true when
    /// there was one.
    pub fn release_reserved(&self, run_id: &RunId) -> bool {
        let Ok(mut p) = self.pending.lock() else { return false };
        if p.get(run_id).is_some_and(|l| l.reserved) {
            p.remove(run_id);
            return true;
        }
        false
    }

    /// Keeps a lock taken before a change for the drive that follows it.
    pub fn keep(&self, run_id: &RunId, lock: RunLock) {
        if let Ok(mut p) = self.pending.lock() {
            p.insert(run_id.clone(), lock);
        }
    }

    /// Releases a kept lock that no drive took (the change was refused).
    pub fn forget(&self, run_id: &RunId) {
        if let Ok(mut p) = self.pending.lock() {
            p.remove(run_id);
        }
    }
}

/// Run ids are UUIDs or derived ids; anything else is hex-encoded so it cannot leave the
/// directory or collide.
fn file_name(id: &str) -> String {
    if !id.is_empty() && id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
        id.to_owned()
    } else {
        format!("x{}", hex::encode(id.as_bytes()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_run_is_driven_by_one_holder_at_a_time_and_free_when_it_lets_go() {
        let dir = std::env::temp_dir().join(format!("baton-locks-{}", uuid::Uuid::new_v4()));
        let locks = RunLocks::new(&dir);
        let other = RunLocks::new(&dir);
        let id = RunId::new("run-1");
        let Claimed::Ours(held) = locks.try_take(&id) else { panic!("a free run is ours") };
        assert!(matches!(other.try_take(&id), Claimed::Elsewhere), "a held run is not taken twice");
        assert!(matches!(locks.try_take(&id), Claimed::Elsewhere), "not even by its own holder's process");
        drop(held);
        let Claimed::Ours(again) = other.try_take(&id) else { panic!("a released run is free") };
        locks.keep(&id, again);
        assert!(matches!(locks.try_take(&id), Claimed::Ours(_)), "a kept lock goes to the next drive");
        assert_eq!(file_name("../etc"), format!("x{}", hex::encode("../etc")));
        // A reserved run takes its file when it is driven, or never if it needs no driving.
        let fresh = RunId::new("run-2");
        locks.reserve(&fresh);
        assert!(!dir.join("run-2.lock").exists(), "no file for a reservation");
        let Claimed::Ours(taken) = locks.try_take(&fresh) else { panic!("a reserved run is ours") };
        assert!(dir.join("run-2.lock").exists() && matches!(other.try_take(&fresh), Claimed::Elsewhere));
        drop(taken);
        let ended = RunId::new("run-3");
        locks.reserve(&ended);
        assert!(locks.release_reserved(&ended) && !dir.join("run-3.lock").exists());
        let _ = std::fs::remove_dir_all(dir);
    }
}
