//! Seals of the audit log, signed off the commit path.
//!
//! A commit after which a run waits or ends (no call in flight) records, in the same
//! transaction, that the run needs a seal: its row in `audit_unsealed` (the record count, the
//! head, the commit's time). A signer thread then
//! writes the seals: one signed digest per row, linked to the run's previous
//! seal, and deletes the row, in one transaction per batch. An Ed25519 signature costs about as
//! much as the rest of a small commit, so the commit does not wait for it.
//!
//! Nothing is lost to a crash: the rows are durable with the commit, and the next process that
//! opens the store with the key seals them. Every read of digests seals what is pending first, so
//! `audit verify` and `audit export` never see a log whose seal is merely late.

use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender, channel};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use baton_core::audit::GENESIS_HASH;
use baton_core::audit::digest::AuditDigest;
use baton_runtime::audit_key::AuditKey;
use baton_runtime::error::StoreError;
use rusqlite::{Connection, OptionalExtension, params};

/// The table of pending seals (created with the store's schema).
pub(crate) const SCHEMA: &str =
    "CREATE TABLE IF NOT EXISTS audit_unsealed (run_id TEXT NOT NULL, count INTEGER NOT NULL,
  head TEXT NOT NULL, at INTEGER NOT NULL, PRIMARY KEY (run_id, count)) WITHOUT ROWID;";

/// Records, in the commit's transaction, that `run_id` needs a seal over its first `count`
/// records.
pub(crate) fn mark(
    tx: &rusqlite::Savepoint<'_>,
    run_id: &str,
    count: u64,
    head: &str,
    at: u64,
) -> Result<(), StoreError> {
    tx.prepare_cached("INSERT OR IGNORE INTO audit_unsealed (run_id, count, head, at) VALUES (?1, ?2, ?3, ?4)")
        .map_err(crate::sql)?
        .execute(params![run_id, count as i64, head, at as i64])
        .map_err(crate::sql)?;
    Ok(())
}

/// How long a pending seal is left to the process that committed it before an opening store
/// takes it over (that process's signer normally writes it within milliseconds).
pub(crate) const TAKE_OVER_AFTER_MS: u64 = 10_000;

/// A pending seal: the run, the record count and head it seals, the commit's time.
pub(crate) type Pending = (String, i64, String, i64);

/// A run's last stored seal: its record count and hash.
pub(crate) type LastSeal = Option<(i64, String)>;

/// Writes the pending seals of commits made before `before` (ms; every one with `u64::MAX`) in
/// one transaction; returns how many were written.
pub(crate) fn seal_pending(conn: &mut Connection, key: &AuditKey, before: u64) -> Result<usize, StoreError> {
    let pending = read_pending(conn, before)?;
    let signed = sign(key, &pending);
    write_seals(conn, &signed)
}

/// The pending seals, each with the run's last seal (count and hash) they will link to.
fn read_pending(conn: &Connection, before: u64) -> Result<Vec<(Pending, LastSeal)>, StoreError> {
    let mut stmt = conn
        .prepare_cached("SELECT run_id, count, head, at FROM audit_unsealed WHERE at < ?1 ORDER BY run_id, count")
        .map_err(crate::sql)?;
    let before = i64::try_from(before).unwrap_or(i64::MAX);
    let rows: Vec<Pending> = stmt
        .query_map(params![before], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
        .map_err(crate::sql)?
        .collect::<Result<_, _>>()
        .map_err(crate::sql)?;
    let mut out = Vec::with_capacity(rows.len());
    for p in rows {
        let last = last_seal(conn, &p.0)?;
        out.push((p, last));
    }
    Ok(out)
}

fn last_seal(conn: &Connection, run_id: &str) -> Result<LastSeal, StoreError> {
    conn.prepare_cached("SELECT count, hash FROM audit_digests WHERE run_id = ?1 ORDER BY count DESC LIMIT 1")
        .map_err(crate::sql)?
        .query_row(params![run_id], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()
        .map_err(crate::sql)
}

/// A pending seal, its digest (`None` when a seal at or past its count exists: nothing to
/// write) and the last seal it was linked to.
pub(crate) type Signed = (Pending, Option<AuditDigest>, LastSeal);

/// Signs: the costly part, done without holding the connection. A run's seals are signed in
/// order, each linked to the one before.
fn sign(key: &AuditKey, pending: &[(Pending, LastSeal)]) -> Vec<Signed> {
    let mut out: Vec<Signed> = Vec::with_capacity(pending.len());
    for ((run_id, count, head, at), stored) in pending {
        // The seal before this one: signed in this pass, or the run's last stored seal.
        let last = match out.last() {
            Some(((prev_run, prev_count, _, _), Some(d), _)) if prev_run == run_id => {
                Some((*prev_count, d.hash.clone()))
            }
            Some(((prev_run, _, _, _), None, linked)) if prev_run == run_id => linked.clone(),
            _ => stored.clone(),
        };
        let digest = last.as_ref().is_none_or(|(c, _)| c < count).then(|| {
            let prev = last.as_ref().map(|(_, h)| h.as_str()).unwrap_or(GENESIS_HASH);
            key.digest_sealed(run_id, *count as u64, head, prev, *at as u64, true)
        });
        out.push(((run_id.clone(), *count, head.clone(), *at), digest, last));
    }
    out
}

/// Writes signed seals whose run has not been sealed since they were signed, and clears their
/// pending rows; a seal whose link went stale stays pending for the next pass.
fn write_seals(conn: &mut Connection, signed: &[Signed]) -> Result<usize, StoreError> {
    if signed.is_empty() {
        return Ok(0);
    }
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate).map_err(crate::sql)?;
    let written = write_ready(&tx, signed)?;
    tx.commit().map_err(crate::sql)?;
    Ok(written)
}

/// [`write_seals`] inside a transaction someone else commits: a group commit writes the seals
/// the signer has ready, so they cost no transaction of their own.
pub(crate) fn write_ready(tx: &Connection, signed: &[Signed]) -> Result<usize, StoreError> {
    let mut written = 0;
    for ((run_id, count, _, _), digest, linked) in signed {
        if last_seal(tx, run_id)? != *linked {
            continue;
        }
        if let Some(d) = digest {
            let text = serde_json::to_string(d).map_err(|e| StoreError::Corrupt(e.to_string()))?;
            tx.prepare_cached("INSERT INTO audit_digests (run_id, count, hash, digest) VALUES (?1, ?2, ?3, ?4)")
                .map_err(crate::sql)?
                .execute(params![run_id, count, d.hash, text])
                .map_err(crate::sql)?;
            written += 1;
        }
        tx.prepare_cached("DELETE FROM audit_unsealed WHERE run_id = ?1 AND count = ?2")
            .map_err(crate::sql)?
            .execute(params![run_id, count])
            .map_err(crate::sql)?;
    }
    Ok(written)
}

/// Seals signed and waiting to be written by the next commit (or by the signer when none comes).
pub(crate) type Ready = Arc<Mutex<Vec<Signed>>>;

/// How long signed seals wait for a commit to carry them before the signer writes them itself.
const CARRY_WAIT: Duration = Duration::from_millis(20);

/// Takes the seals that are ready, to write in the caller's transaction.
pub(crate) fn take_ready(ready: &Ready) -> Vec<Signed> {
    ready.lock().map(|mut r| std::mem::take(&mut *r)).unwrap_or_default()
}

/// The signer thread: woken after each commit that leaves a seal pending; seals everything
/// pending before it exits when the store is dropped.
pub(crate) struct Sealer {
    wake: Option<Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Sealer {
    /// Starts the thread on the store's connection: it reads what is pending under the lock,
    /// signs without it, and leaves the seals to the next commit's transaction, writing them
    /// itself only when no commit comes within [`CARRY_WAIT`].
    pub(crate) fn start(conn: Arc<Mutex<Connection>>, key: Arc<AuditKey>, ready: Ready) -> Result<Self, StoreError> {
        let (wake, woken): (Sender<()>, Receiver<()>) = channel();
        let thread = std::thread::Builder::new()
            .name("baton-audit-sealer".into())
            .spawn(move || {
                loop {
                    let outcome = match woken.recv_timeout(CARRY_WAIT) {
                        Ok(()) => {
                            // Wake-ups that came in meanwhile are served by this pass.
                            while woken.try_recv().is_ok() {}
                            sign_pending(&conn, &key, &ready)
                        }
                        Err(RecvTimeoutError::Timeout) => write_left(&conn, &ready),
                        Err(RecvTimeoutError::Disconnected) => break,
                    };
                    if let Err(e) = outcome {
                        // Left pending: the next pass, a read of digests or the next open retries.
                        tracing::warn!(error = %e, "sealing the audit log failed; the seals stay pending");
                    }
                }
                if let Err(e) = lock(&conn).and_then(|mut c| flush(&mut c, &key, &ready)) {
                    tracing::warn!(error = %e, "sealing the audit log at shutdown failed; the next open seals it");
                }
            })
            .map_err(|e| StoreError::Backend(format!("cannot start the audit sealer: {e}")))?;
        Ok(Self { wake: Some(wake), thread: Some(thread) })
    }

    /// Asks the thread to seal what is pending.
    pub(crate) fn wake(&self) {
        if let Some(w) = &self.wake {
            let _ = w.send(());
        }
    }
}

fn lock(conn: &Mutex<Connection>) -> Result<std::sync::MutexGuard<'_, Connection>, StoreError> {
    conn.lock().map_err(|_| StoreError::Backend("store lock poisoned".into()))
}

/// Reads the pending seals not signed yet (under the lock), signs them (without it) and makes
/// them ready for the next commit.
fn sign_pending(conn: &Mutex<Connection>, key: &AuditKey, ready: &Ready) -> Result<usize, StoreError> {
    let signed_already: Vec<(String, i64)> = ready
        .lock()
        .map(|r| r.iter().map(|((run, count, _, _), _, _)| (run.clone(), *count)).collect())
        .unwrap_or_default();
    let mut pending = read_pending(&*lock(conn)?, u64::MAX)?;
    pending.retain(|((run, count, _, _), _)| !signed_already.iter().any(|(r, c)| r == run && c == count));
    // A run whose earlier seal is still waiting in `ready` links to it, not to the stored one.
    let queued = ready.lock().map(|r| r.clone()).unwrap_or_default();
    let mut with_links = Vec::with_capacity(pending.len());
    for (p, stored) in pending {
        let link = queued
            .iter()
            .rev()
            .find(|((run, _, _, _), d, _)| *run == p.0 && d.is_some())
            .and_then(|((_, count, _, _), d, _)| d.as_ref().map(|d| (*count, d.hash.clone())))
            .or(stored);
        with_links.push((p, link));
    }
    let signed = sign(key, &with_links);
    let n = signed.len();
    if let Ok(mut r) = ready.lock() {
        r.extend(signed);
    }
    Ok(n)
}

/// Writes every seal: the ready ones, then whatever is still pending (signed here). What a
/// read of digests and the signer's last pass do.
pub(crate) fn flush(conn: &mut Connection, key: &AuditKey, ready: &Ready) -> Result<usize, StoreError> {
    let carried = write_seals(conn, &take_ready(ready))?;
    Ok(carried + seal_pending(conn, key, u64::MAX)?)
}

/// Writes the ready seals no commit has carried.
fn write_left(conn: &Mutex<Connection>, ready: &Ready) -> Result<usize, StoreError> {
    let left = take_ready(ready);
    if left.is_empty() {
        return Ok(0);
    }
    write_seals(&mut *lock(conn)?, &left)
}

impl Drop for Sealer {
    fn drop(&mut self) {
        self.wake.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
