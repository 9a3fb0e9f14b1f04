//! Group commit for the SQLite store. Each caller serialises its transitions on its own thread,
//! queues them, and then waits, without holding a thread, for either its outcome or the writer's
//! turn; whoever takes the turn writes every queued batch in one transaction, each batch in its
//! own savepoint so a conflict fails only that batch. Concurrent runs thus share one WAL commit
//! instead of paying one each.

use baton_runtime::audit_key::AuditKey;
use std::sync::Mutex;

use rusqlite::{Connection, params};

use baton_runtime::error::StoreError;
use baton_runtime::ports::{Precondition, TaskChange, Transition};

impl RowWrite {
    /// Whether committing this row leaves a seal for the signer to write.
    pub(crate) fn needs_seal(&self) -> bool {
        self.seal && self.signed_head.is_some()
    }
}

/// A transition turned into the strings and numbers the SQL statements take.
pub(crate) struct RowWrite {
    id: String,
    workflow: String,
    definition: String,
    status: &'static str,
    version: i64,
    created_at: i64,
    events_count: i64,
    mocks: Option<String>,
    state: String,
    precondition: Precondition,
    events: Vec<(i64, String)>,
    audit: Vec<(i64, String)>,
    /// Sealed fields first sealed by this commit: (field, the field as JSON).
    sealed: Vec<(String, String)>,
    /// The last appended record's (seq, hash) and the commit's time: what a digest signs.
    signed_head: Option<(u64, String, u64)>,
    /// Whether the run waits or ends after this commit: its log gets a seal.
    seal: bool,
    bus: Vec<(String, String, String, i64)>,
    tasks: Vec<TaskWrite>,
    /// (id, created_at, items JSON) when the transition hands work out.
    outbox: Option<(String, i64, String)>,
    /// Outbox rows deleted with the commit.
    clears: Vec<String>,
    episodes: Vec<EpisodeRow>,
}

/// An episode's columns: entity, run id, workflow, status, summary, then its time.
struct EpisodeRow {
    text: [String; 5],
    at: i64,
}

/// A new task's row: its text columns, then form, creation time, outcome and wait (JSON).
struct TaskRow {
    text: [String; 8],
    form: Option<String>,
    created_at: i64,
    outcome: Option<String>,
    wait: Option<String>,
}

enum TaskWrite {
    Open(Box<TaskRow>),
    Reassign(String, String),
    Close(String, String),
}

/// Where one queued batch's outcome goes: the number of the group commit that wrote it (see
/// `wal_sync`; 0 when commits are not counted), or why it was not written.
pub(crate) type Slot = tokio::sync::oneshot::Sender<Result<u64, StoreError>>;

/// A queued batch and where its outcome goes.
pub(crate) struct Job {
    /// Tells the batch apart in the queue, so a caller that stops waiting can take it back.
    pub id: u64,
    pub rows: Vec<RowWrite>,
    pub slot: Slot,
}

fn json<T: serde::Serialize>(v: &T) -> Result<String, StoreError> {
    serde_json::to_string(v).map_err(|e| StoreError::Corrupt(e.to_string()))
}

/// Serialises transitions; runs on the caller's thread, outside any lock.
pub(crate) fn prepare(transitions: &[Transition]) -> Result<Vec<RowWrite>, StoreError> {
    transitions
        .iter()
        .map(|t| {
            let h = &t.header;
            Ok(RowWrite {
                id: h.id.to_string(),
                workflow: h.workflow.clone(),
                definition: h.definition.clone(),
                status: h.status.as_str(),
                version: h.version as i64,
                created_at: h.created_at as i64,
                events_count: h.events as i64,
                mocks: h.mocks.as_ref().map(json).transpose()?,
                state: json(&t.state)?,
                precondition: t.precondition,
                events: t.events.iter().map(|(s, e)| Ok((*s as i64, json(e)?))).collect::<Result<_, StoreError>>()?,
                audit: t.audit.iter().map(|r| Ok((r.seq as i64, json(r)?))).collect::<Result<_, StoreError>>()?,
                sealed: t.sealed.iter().map(|f| Ok((f.field.clone(), json(f)?))).collect::<Result<_, StoreError>>()?,
                seal: t.seal,
                signed_head: t.audit.last().map(|r| {
                    let at = t.events.last().map(|(_, e)| e.at).unwrap_or(h.created_at);
                    (r.seq, r.hash.clone(), at)
                }),
                bus: t
                    .bus
                    .iter()
                    .map(|b| Ok((b.run_id.to_string(), b.name.clone(), json(&b.detail)?, b.at as i64)))
                    .collect::<Result<_, StoreError>>()?,
                tasks: t
                    .tasks
                    .iter()
                    .map(|c| {
                        Ok(match c {
                            TaskChange::Open(task) => TaskWrite::Open(Box::new(TaskRow {
                                text: [
                                    task.id.to_string(),
                                    task.run_id.to_string(),
                                    task.node.to_string(),
                                    task.step.clone(),
                                    task.queue.clone(),
                                    task.status.clone(),
                                    task.prompt.clone(),
                                    task.summary.clone(),
                                ],
                                form: task.form.as_ref().map(json).transpose()?,
                                created_at: task.created_at as i64,
                                outcome: task.outcome.clone(),
                                wait: task.wait.as_ref().map(json).transpose()?,
                            })),
                            TaskChange::Reassign { id, queue } => TaskWrite::Reassign(id.to_string(), queue.clone()),
                            TaskChange::Close { id, outcome } => TaskWrite::Close(id.to_string(), outcome.clone()),
                        })
                    })
                    .collect::<Result<_, StoreError>>()?,
                outbox: if t.outbox.is_empty() {
                    None
                } else {
                    let at = t.events.last().map(|(_, e)| e.at).unwrap_or(h.created_at);
                    Some((baton_runtime::outbox_id(&h.id, h.version), at as i64, json(&t.outbox)?))
                },
                clears: t.clears.clone(),
                episodes: t
                    .episodes
                    .iter()
                    .map(|e| EpisodeRow {
                        text: [
                            e.entity.clone(),
                            e.run_id.to_string(),
                            e.workflow.clone(),
                            e.status.clone(),
                            e.summary.clone(),
                        ],
                        at: e.at as i64,
                    })
                    .collect(),
            })
        })
        .collect()
}

/// Writes every job in one transaction, group commit number `seq`; each job's slot receives its
/// own outcome.
pub(crate) fn write_jobs(
    conn: &mut Connection,
    jobs: Vec<Job>,
    seq: u64,
    task_columns: &str,
    key: Option<&AuditKey>,
    ready: &crate::sealer::Ready,
) {
    let tx = match conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate) {
        Ok(tx) => tx,
        Err(e) => return fail_all(jobs, &e.to_string()),
    };
    let mut tx = tx;
    // Seals signed since the last commit ride along (see `sealer`); on failure they stay
    // pending and are signed again.
    let carried = crate::sealer::take_ready(ready);
    if !carried.is_empty()
        && let Ok(sp) = tx.savepoint()
    {
        match crate::sealer::write_ready(&sp, &carried) {
            Ok(_) => {
                if let Err(e) = sp.commit() {
                    tracing::warn!(error = %e, "writing the ready seals failed; they stay pending");
                }
            }
            Err(e) => tracing::warn!(error = %e, "writing the ready seals failed; they stay pending"),
        }
    }
    let mut outcomes = Vec::with_capacity(jobs.len());
    for job in &jobs {
        let outcome = match tx.savepoint() {
            Ok(mut sp) => match write_rows(&mut sp, &job.rows, task_columns, key) {
                Ok(()) => sp.commit().map(|_| seq).map_err(crate::sql),
                Err(e) => Err(e), // dropping the savepoint rolls this job back
            },
            Err(e) => Err(crate::sql(e)),
        };
        outcomes.push(outcome);
    }
    if let Err(e) = tx.commit() {
        return fail_all(jobs, &e.to_string());
    }
    for (job, outcome) in jobs.into_iter().zip(outcomes) {
        // A caller that stopped waiting finds its batch written when it looks (an ambiguous
        // commit, which the coordinator already handles).
        let _ = job.slot.send(outcome);
    }
}

fn fail_all(jobs: Vec<Job>, message: &str) {
    for job in jobs {
        let _ = job.slot.send(Err(StoreError::Backend(message.to_owned())));
    }
}

fn write_rows(
    tx: &mut rusqlite::Savepoint<'_>,
    rows: &[RowWrite],
    task_columns: &str,
    key: Option<&AuditKey>,
) -> Result<(), StoreError> {
    for r in rows {
        let applied = match r.precondition {
            Precondition::DoesNotExist => tx
                .prepare_cached(
                    "INSERT OR IGNORE INTO runs (id, workflow, definition, status, version, created_at, events, mocks, state)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                ).map_err(crate::sql)?
                .execute(params![r.id, r.workflow, r.definition, r.status, r.version, r.created_at, r.events_count, r.mocks, r.state]).map_err(crate::sql)?,
            Precondition::MatchesVersion(v) => tx
                .prepare_cached("UPDATE runs SET status = ?2, version = ?3, state = ?4, events = ?6 WHERE id = ?1 AND version = ?5").map_err(crate::sql)?
                .execute(params![r.id, r.status, r.version, r.state, v as i64, r.events_count]).map_err(crate::sql)?,
        };
        if applied != 1 {
            let expected = match r.precondition {
                Precondition::DoesNotExist => 0,
                Precondition::MatchesVersion(v) => v,
            };
            return Err(StoreError::Conflict { run_id: r.id.as_str().into(), expected });
        }
        let mut ev =
            tx.prepare_cached("INSERT INTO events (run_id, seq, event) VALUES (?1, ?2, ?3)").map_err(crate::sql)?;
        for (seq, e) in &r.events {
            ev.execute(params![r.id, seq, e]).map_err(crate::sql)?;
        }
        let mut au =
            tx.prepare_cached("INSERT INTO audit (run_id, seq, record) VALUES (?1, ?2, ?3)").map_err(crate::sql)?;
        for (seq, rec) in &r.audit {
            au.execute(params![r.id, seq, rec]).map_err(crate::sql)?;
        }
        let mut sealed = tx
            .prepare_cached("INSERT OR IGNORE INTO audit_sealed (run_id, field, sealed) VALUES (?1, ?2, ?3)")
            .map_err(crate::sql)?;
        for (field, f) in &r.sealed {
            sealed.execute(params![r.id, field, f]).map_err(crate::sql)?;
        }
        // A seal is signed after the commit, off its path (see `sealer`): here only noted.
        if let (Some(_), true, Some((count, head, at))) = (key, r.seal, &r.signed_head) {
            crate::sealer::mark(tx, &r.id, *count, head, *at)?;
        }
        let mut bus = tx
            .prepare_cached("INSERT INTO bus (run_id, name, detail, at) VALUES (?1, ?2, ?3, ?4)")
            .map_err(crate::sql)?;
        for (run, name, detail, at) in &r.bus {
            bus.execute(params![run, name, detail, at]).map_err(crate::sql)?;
        }
        if let Some((id, at, items)) = &r.outbox {
            tx.prepare_cached("INSERT INTO outbox (id, run_id, created_at, items) VALUES (?1, ?2, ?3, ?4)")
                .map_err(crate::sql)?
                .execute(params![id, r.id, at, items])
                .map_err(crate::sql)?;
        }
        for id in &r.clears {
            tx.prepare_cached("DELETE FROM outbox WHERE id = ?1")
                .map_err(crate::sql)?
                .execute(params![id])
                .map_err(crate::sql)?;
        }
        // Ignored when present: a replayed commit must not change or repeat what was remembered.
        let mut ep = tx.prepare_cached(
            "INSERT OR IGNORE INTO episodes (entity, run_id, workflow, status, summary, at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        ).map_err(crate::sql)?;
        for e in &r.episodes {
            let s = &e.text;
            ep.execute(params![s[0], s[1], s[2], s[3], s[4], e.at]).map_err(crate::sql)?;
        }
        for t in &r.tasks {
            match t {
                TaskWrite::Open(open) => {
                    let TaskRow { text: s, form, created_at: created, outcome, wait } = &**open;
                    let sql = format!(
                        "INSERT OR IGNORE INTO tasks ({task_columns}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)"
                    );
                    tx.prepare_cached(&sql)
                        .map_err(crate::sql)?
                        .execute(params![s[0], s[1], s[2], s[3], s[4], s[5], s[6], s[7], form, created, outcome, wait])
                        .map_err(crate::sql)?;
                }
                TaskWrite::Reassign(id, queue) => {
                    tx.prepare_cached("UPDATE tasks SET queue = ?2 WHERE id = ?1")
                        .map_err(crate::sql)?
                        .execute(params![id, queue])
                        .map_err(crate::sql)?;
                }
                TaskWrite::Close(id, outcome) => {
                    tx.prepare_cached("UPDATE tasks SET status = 'closed', outcome = ?2 WHERE id = ?1")
                        .map_err(crate::sql)?
                        .execute(params![id, outcome])
                        .map_err(crate::sql)?;
                }
            }
        }
    }
    Ok(())
}

/// Takes a caller's batch back out of the queue if the caller stops waiting before a writer took
/// it (its task was cancelled, or its process is shutting down): a batch is written while its
/// caller waits or not at all, never later on behalf of a caller that is gone. A batch a
/// writer already took is being written: its outcome is then unknown to the caller, as after a
/// crash in the middle of a commit.
pub(crate) struct Unqueue<'a> {
    pub queue: &'a Mutex<Vec<Job>>,
    pub id: u64,
    pub settled: bool,
}

impl Drop for Unqueue<'_> {
    fn drop(&mut self) {
        if !self.settled
            && let Ok(mut q) = self.queue.lock()
        {
            q.retain(|j| j.id != self.id);
        }
    }
}
