//! The embedded store: one SQLite file (WAL) holding definitions, run state, the event journal,
//! the audit log, tasks, the bus outbox, entity memory and the response cache. Every commit is atomic; concurrent commits share one
//! SQLite transaction (see `group_commit`).

mod erasure;
mod memory;

use std::path::Path;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use baton_core::audit::AuditRecord;
use baton_core::audit::digest::AuditDigest;
use baton_core::audit::seal::SealedField;
use baton_core::engine::{Event, RunState, RunStatus};
use baton_core::ids::{RunId, TaskId};
use baton_runtime::audit_key::{AuditKey, AuditPublicKey};
use rusqlite::{Connection, OptionalExtension, params};

use crate::group_commit::Job;
use baton_runtime::error::StoreError;
use baton_runtime::ports::{
    BusEvent, CacheEntry, Claim, Episode, MemoryFact, OutboxEntry, RunHeader, RunQuery, RunStore, StoredRun,
    TaskRecord, Transition,
};

/// How hard each commit is pushed to disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// `synchronous=NORMAL` in WAL mode: committed data survives a process crash; the last
    /// commits may be lost on power failure.
    Normal,
    /// Every commit is fsynced before it is acknowledged (survives power loss). Concurrent group
    /// commits share one fsync, run by a thread of its own while the next group is written.
    Full,
}

/// SQLite implementation of [`RunStore`].
pub struct SqliteStore {
    conn: Arc<Mutex<Connection>>,
    queue: Mutex<Vec<Job>>,
    /// The writer's turn: the caller holding it writes every queued batch (see `group_commit`).
    writer: tokio::sync::Mutex<()>,
    /// Numbers the queued batches.
    jobs: std::sync::atomic::AtomicU64,
    /// Every outbox row up to this id is published; scans for unpublished rows start after it
    /// (a rowid range, so the outbox needs no index that every commit would have to maintain).
    bus_cursor: AtomicI64,
    /// Signs the seals of the audit log; `None` writes none.
    audit_key: Option<Arc<AuditKey>>,
    /// Signs pending seals off the commit path (see `sealer`); `None` without a key.
    sealer: Option<crate::sealer::Sealer>,
    /// Seals signed and waiting for the next commit to write them.
    ready: crate::sealer::Ready,
    /// Checkpoints the WAL off the commit path, started by the first commit (a command that
    /// only reads starts no thread); `None` when its thread could not start (the committing
    /// connection then checkpoints, at its safety-net threshold).
    checkpointer: std::sync::OnceLock<Option<crate::checkpointer::Checkpointer>>,
    /// The database file, for the checkpoint thread's own connection.
    path: std::path::PathBuf,
    /// Fsyncs group commits off the commit path with `Durability::Full` (see `wal_sync`);
    /// `None` with `Durability::Normal`, or when its thread could not start (SQLite then
    /// fsyncs every commit itself).
    wal_sync: Option<crate::wal_sync::WalSync>,
}

const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS definitions (hash TEXT PRIMARY KEY, name TEXT NOT NULL, source TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS published (name TEXT PRIMARY KEY, hash TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS runs (
  id TEXT PRIMARY KEY, workflow TEXT NOT NULL, definition TEXT NOT NULL, status TEXT NOT NULL,
  version INTEGER NOT NULL, created_at INTEGER NOT NULL, events INTEGER NOT NULL, mocks TEXT, state TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS runs_status ON runs(status);
CREATE TABLE IF NOT EXISTS events (run_id TEXT NOT NULL, seq INTEGER NOT NULL, event TEXT NOT NULL,
  PRIMARY KEY (run_id, seq)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS audit (run_id TEXT NOT NULL, seq INTEGER NOT NULL, record TEXT NOT NULL,
  PRIMARY KEY (run_id, seq)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS audit_digests (run_id TEXT NOT NULL, count INTEGER NOT NULL, hash TEXT NOT NULL,
  digest TEXT NOT NULL, PRIMARY KEY (run_id, count)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS audit_sealed (run_id TEXT NOT NULL, field TEXT NOT NULL, sealed TEXT NOT NULL,
  PRIMARY KEY (run_id, field)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS tasks (id TEXT PRIMARY KEY, run_id TEXT NOT NULL, node TEXT NOT NULL, step TEXT NOT NULL,
  queue TEXT NOT NULL, status TEXT NOT NULL, prompt TEXT NOT NULL, summary TEXT NOT NULL, form TEXT,
  created_at INTEGER NOT NULL, outcome TEXT, wait TEXT);
CREATE TABLE IF NOT EXISTS bus (id INTEGER PRIMARY KEY AUTOINCREMENT, run_id TEXT NOT NULL, name TEXT NOT NULL,
  detail TEXT NOT NULL, at INTEGER NOT NULL, published INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS outbox (id TEXT PRIMARY KEY, run_id TEXT NOT NULL, created_at INTEGER NOT NULL,
  items TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS claims (key TEXT PRIMARY KEY, owner TEXT NOT NULL, lease_until INTEGER NOT NULL,
  result TEXT);

"#;

fn parse_status(s: &str) -> Result<RunStatus, StoreError> {
    RunStatus::parse(s).ok_or_else(|| StoreError::Corrupt(format!("unknown run status `{s}`")))
}

fn from_json<T: serde::de::DeserializeOwned>(s: &str) -> Result<T, StoreError> {
    serde_json::from_str(s).map_err(|e| StoreError::Corrupt(e.to_string()))
}

impl SqliteStore {
    /// Opens (creating if needed) `dir/baton.db`.
    pub fn open(dir: &Path, durability: Durability) -> Result<Self, StoreError> {
        std::fs::create_dir_all(dir)
            .map_err(|e| StoreError::Backend(format!("cannot create {}: {e}", dir.display())))?;
        let mut conn = Connection::open(dir.join("baton.db")).map_err(crate::sql)?;
        // Another process's write lock is waited out with backoff (see `busy`), set first so
        // even the pragmas below wait for it.
        conn.busy_handler(Some(crate::busy::retry)).map_err(crate::sql)?;
        let sync = match durability {
            Durability::Normal => "NORMAL",
            Durability::Full => "FULL",
        };
        conn.execute_batch(&format!(
            "PRAGMA journal_mode=WAL; PRAGMA synchronous={sync}; PRAGMA foreign_keys=ON; PRAGMA wal_autocheckpoint={};",
            crate::checkpointer::SAFETY_NET_PAGES
        ))
        .map_err(crate::sql)?;
        // Plans never depend on bound values (the query planner stability guarantee): without
        // it, every new value bound to a `LIMIT ?` expired the cached statement, so each call
        // parsed and planned its SQL again (5% of `baton serve`'s CPU under load).
        conn.set_db_config(rusqlite::config::DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG, true).map_err(crate::sql)?;
        conn.execute_batch(SCHEMA).map_err(crate::sql)?;
        conn.execute_batch(crate::sealer::SCHEMA).map_err(crate::sql)?;
        conn.execute_batch(memory::SCHEMA).map_err(crate::sql)?;
        // Databases made before event waits existed lack the column that holds them.
        let has_wait: bool = conn
            .query_row("SELECT COUNT(*) FROM pragma_table_info('tasks') WHERE name = 'wait'", [], |r| {
                r.get::<_, i64>(0)
            })
            .map_err(crate::sql)?
            > 0;
        if !has_wait {
            conn.execute_batch("ALTER TABLE tasks ADD COLUMN wait TEXT;").map_err(crate::sql)?;
        }
        let path = dir.join("baton.db");
        let wal_sync = match durability {
            Durability::Normal => None,
            Durability::Full => match crate::wal_sync::WalSync::start(&path) {
                Ok(w) => Some(w),
                Err(e) => {
                    tracing::warn!(error = %e, "no WAL sync thread; SQLite fsyncs every commit in it");
                    None
                }
            },
        };
        Ok(Self {
            conn: Arc::new(Mutex::new(conn)),
            queue: Mutex::new(Vec::new()),
            writer: tokio::sync::Mutex::new(()),
            jobs: Default::default(),
            bus_cursor: AtomicI64::new(0),
            audit_key: None,
            sealer: None,
            ready: Default::default(),
            checkpointer: std::sync::OnceLock::new(),
            wal_sync,
            path,
        })
    }

    /// The same store, sealing the audit log with `key` (the seals are signed by a thread of
    /// their own, see `sealer`) and checking digests with its public half.
    pub fn with_audit_key(mut self, key: AuditKey) -> Self {
        let key = Arc::new(key);
        // What a process that stopped before its signer caught up left pending (a live
        // process's own signer is left to seal its fresh commits).
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        if let Ok(mut conn) = self.lock()
            && let Err(e) =
                crate::sealer::seal_pending(&mut conn, &key, now.saturating_sub(crate::sealer::TAKE_OVER_AFTER_MS))
        {
            tracing::warn!(error = %e, "sealing the audit log left pending failed; the next read retries");
        }
        self.sealer = match crate::sealer::Sealer::start(self.conn.clone(), key.clone(), self.ready.clone()) {
            Ok(s) => Some(s),
            Err(e) => {
                // Seals are then written by the commits themselves (see `commit`).
                tracing::warn!(error = %e, "no audit sealer thread; commits sign their seals themselves");
                None
            }
        };
        self.audit_key = Some(key);
        self
    }

    /// Writes the seals still pending, so a read of digests sees every seal a commit asked for.
    fn seal_now(&self, conn: &mut Connection) -> Result<(), StoreError> {
        match &self.audit_key {
            Some(key) => crate::sealer::flush(conn, key, &self.ready).map(|_| ()),
            None => Ok(()),
        }
    }

    fn lock(&self) -> Result<std::sync::MutexGuard<'_, Connection>, StoreError> {
        self.conn.lock().map_err(|_| StoreError::Backend("store lock poisoned".into()))
    }

    /// Writes every queued job as one group commit; the caller holds the writer's turn.
    fn write_queued(&self) -> Result<(), StoreError> {
        let jobs =
            std::mem::take(&mut *self.queue.lock().map_err(|_| StoreError::Backend("queue lock poisoned".into()))?);
        let mut conn = self.lock()?;
        self.write_group(&mut conn, jobs);
        Ok(())
    }

    /// Writes queued jobs as one group commit. With `Durability::Full` the group is written
    /// with `synchronous=NORMAL` and fsynced by the WAL sync thread after the lock is released
    /// (see `wal_sync`); every other write keeps SQLite's own fsync.
    fn write_group(&self, conn: &mut Connection, jobs: Vec<Job>) {
        let key = self.audit_key.as_deref();
        let Some(wal) = &self.wal_sync else {
            return crate::group_commit::write_jobs(conn, jobs, 0, TASK_COLUMNS, key, &self.ready);
        };
        let seq = wal.next();
        // If NORMAL cannot be set, SQLite fsyncs this commit itself: slower, still durable.
        // Cached statements: two pragmas per group, not two parses.
        let pragma = |c: &Connection, sql: &str| c.prepare_cached(sql).and_then(|mut s| s.execute([]));
        if let Err(e) = pragma(conn, "PRAGMA synchronous=NORMAL") {
            tracing::warn!(error = %e, "cannot defer this commit's fsync; SQLite syncs it");
        }
        crate::group_commit::write_jobs(conn, jobs, seq, TASK_COLUMNS, key, &self.ready);
        wal.written(seq);
        if let Err(e) = pragma(conn, "PRAGMA synchronous=FULL") {
            // Until it is, the connection's other writes are fsynced only by the next group's
            // fsync, which covers everything before it.
            tracing::error!(error = %e, "cannot restore synchronous=FULL");
        }
    }

    /// Direct access for tests that tamper with the database on purpose.
    pub fn execute_raw(&self, sql: &str) -> Result<usize, StoreError> {
        self.lock()?.execute(sql, []).map_err(crate::sql)
    }
}

type HeaderRow = (String, String, String, String, i64, i64, i64, Option<String>);

fn header_from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<HeaderRow> {
    Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?, row.get(4)?, row.get(5)?, row.get(6)?, row.get(7)?))
}

fn to_header(t: HeaderRow) -> Result<RunHeader, StoreError> {
    Ok(RunHeader {
        id: t.0.into(),
        workflow: t.1,
        definition: t.2,
        status: parse_status(&t.3)?,
        version: t.4 as u64,
        created_at: t.5 as u64,
        events: t.6 as u64,
        mocks: t.7.map(|m| from_json(&m)).transpose()?,
        usage: Default::default(),
    })
}

fn task_from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<TaskRecord> {
    let form: Option<String> = row.get(8)?;
    Ok(TaskRecord {
        id: row.get::<_, String>(0)?.into(),
        run_id: row.get::<_, String>(1)?.into(),
        node: row.get::<_, String>(2)?.into(),
        step: row.get(3)?,
        queue: row.get(4)?,
        status: row.get(5)?,
        prompt: row.get(6)?,
        summary: row.get(7)?,
        form: form.and_then(|f| serde_json::from_str(&f).ok()),
        created_at: row.get::<_, i64>(9)? as u64,
        outcome: row.get(10)?,
        wait: row.get::<_, Option<String>>(11)?.and_then(|w| serde_json::from_str(&w).ok()),
    })
}

const TASK_COLUMNS: &str = "id, run_id, node, step, queue, status, prompt, summary, form, created_at, outcome, wait";

#[async_trait]
impl RunStore for SqliteStore {
    async fn put_definition(&self, hash: &str, name: &str, source: &str) -> Result<(), StoreError> {
        self.lock()?
            .execute(
                "INSERT OR IGNORE INTO definitions (hash, name, source) VALUES (?1, ?2, ?3)",
                params![hash, name, source],
            )
            .map_err(crate::sql)?;
        Ok(())
    }

    async fn publish_definition(&self, name: &str, hash: &str) -> Result<(), StoreError> {
        self.lock()?.execute(
            "INSERT INTO published (name, hash) VALUES (?1, ?2) ON CONFLICT(name) DO UPDATE SET hash = excluded.hash",
            params![name, hash],
        ).map_err(crate::sql)?;
        Ok(())
    }

    async fn published_definitions(&self) -> Result<Vec<(String, String)>, StoreError> {
        let conn = self.lock()?;
        let mut stmt = conn.prepare_cached("SELECT name, hash FROM published ORDER BY name").map_err(crate::sql)?;
        let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?))).map_err(crate::sql)?;
        Ok(rows.collect::<Result<_, _>>().map_err(crate::sql)?)
    }

    async fn get_definition(&self, _workflow: &str, hash: &str) -> Result<Option<String>, StoreError> {
        let conn = self.lock()?;
        let mut stmt = conn.prepare_cached("SELECT source FROM definitions WHERE hash = ?1").map_err(crate::sql)?;
        Ok(stmt.query_row(params![hash], |r| r.get(0)).optional().map_err(crate::sql)?)
    }

    async fn commit(&self, transitions: &[Transition]) -> Result<(), StoreError> {
        self.checkpointer.get_or_init(|| match crate::checkpointer::Checkpointer::start(&self.path) {
            Ok(c) => Some(c),
            Err(e) => {
                tracing::warn!(error = %e, "no WAL checkpoint thread; commits checkpoint themselves");
                None
            }
        });
        let rows = crate::group_commit::prepare(transitions)?;
        let seals = self.audit_key.is_some() && rows.iter().any(|r| r.needs_seal());
        let (slot, mut outcome) = tokio::sync::oneshot::channel();
        let id = self.jobs.fetch_add(1, Ordering::Relaxed);
        self.queue.lock().map_err(|_| StoreError::Backend("queue lock poisoned".into()))?.push(Job { id, rows, slot });
        let mut unqueue = crate::group_commit::Unqueue { queue: &self.queue, id, settled: false };
        // Waiting here holds no thread: while one caller writes a group, the others' tasks run,
        // prepare their batches and queue them for the next group.
        let outcome = tokio::select! {
            biased;
            done = &mut outcome => done.ok(),
            _turn = self.writer.lock() => match outcome.try_recv() {
                // The writer before us took our batch.
                Ok(done) => Some(done),
                Err(_) => match self.write_queued() {
                    Ok(()) => outcome.await.ok(),
                    Err(e) => Some(Err(e)),
                },
            },
        };
        unqueue.settled = true;
        let outcome = outcome.unwrap_or_else(|| Err(StoreError::Backend("commit outcome lost".into())));
        let seq = outcome?;
        if seals {
            match &self.sealer {
                Some(s) => s.wake(),
                None => self.seal_now(&mut *self.lock()?)?,
            }
        }
        match &self.wal_sync {
            Some(w) => w.durable(seq).await,
            None => Ok(()),
        }
    }

    async fn load_run(&self, id: &RunId) -> Result<Option<StoredRun>, StoreError> {
        let conn = self.lock()?;
        let mut stmt = conn
            .prepare_cached(
                "SELECT id, workflow, definition, status, version, created_at, events, mocks, state FROM runs WHERE id = ?1",
            )
            .map_err(crate::sql)?;
        let row = stmt
            .query_row(params![id.as_str()], |r| Ok((header_from_row(r)?, r.get::<_, String>(8)?)))
            .optional()
            .map_err(crate::sql)?;
        match row {
            None => Ok(None),
            Some((h, state)) => Ok(Some(StoredRun { header: to_header(h)?, state: from_json::<RunState>(&state)? })),
        }
    }

    async fn list_runs(&self, limit: usize) -> Result<Vec<RunHeader>, StoreError> {
        let conn = self.lock()?;
        let mut stmt = conn.prepare_cached(
            "SELECT id, workflow, definition, status, version, created_at, events, mocks FROM runs ORDER BY created_at DESC, id DESC LIMIT ?1",
        ).map_err(crate::sql)?;
        let rows = stmt.query_map(params![limit as i64], header_from_row).map_err(crate::sql)?;
        rows.map(|r| to_header(r.map_err(crate::sql)?)).collect()
    }

    async fn query_runs(&self, query: &RunQuery) -> Result<Vec<RunHeader>, StoreError> {
        // The filters become a WHERE clause and the cursor a row-value seek, so a page costs
        // its own rows, not the whole table.
        let mut sql = String::from(
            "SELECT id, workflow, definition, status, version, created_at, events, mocks FROM runs WHERE 1=1",
        );
        let mut args: Vec<rusqlite::types::Value> = Vec::new();
        let mut bind = |sql: &mut String, clause: &str, v: rusqlite::types::Value| {
            args.push(v);
            sql.push_str(&clause.replace('?', &format!("?{}", args.len())));
        };
        if let Some(s) = query.status {
            bind(&mut sql, " AND status = ?", s.as_str().to_owned().into());
        }
        if let Some(w) = &query.workflow {
            bind(&mut sql, " AND workflow = ?", w.clone().into());
        }
        if let Some(t) = query.created_after {
            bind(&mut sql, " AND created_at > ?", (t.min(i64::MAX as u64) as i64).into());
        }
        if let Some(t) = query.created_before {
            bind(&mut sql, " AND created_at < ?", (t.min(i64::MAX as u64) as i64).into());
        }
        if let Some((at, id)) = &query.after {
            bind(&mut sql, " AND (created_at, id) < (?", (*at.min(&(i64::MAX as u64)) as i64).into());
            bind(&mut sql, ", ?)", id.as_str().to_owned().into());
        }
        bind(
            &mut sql,
            " ORDER BY created_at DESC, id DESC LIMIT ?",
            (query.limit.min(i64::MAX as usize) as i64).into(),
        );
        let conn = self.lock()?;
        let mut stmt = conn.prepare_cached(&sql).map_err(crate::sql)?;
        let rows = stmt.query_map(rusqlite::params_from_iter(args), header_from_row).map_err(crate::sql)?;
        rows.map(|r| to_header(r.map_err(crate::sql)?)).collect()
    }

    async fn unfinished_runs(&self) -> Result<Vec<RunId>, StoreError> {
        let conn = self.lock()?;
        let mut stmt = conn
            .prepare_cached("SELECT id FROM runs WHERE status = 'running' ORDER BY created_at, id")
            .map_err(crate::sql)?;
        let rows = stmt.query_map([], |r| r.get::<_, String>(0).map(RunId::from)).map_err(crate::sql)?;
        Ok(rows.collect::<Result<_, _>>().map_err(crate::sql)?)
    }

    async fn load_events(&self, id: &RunId) -> Result<Vec<(u64, Event)>, StoreError> {
        let conn = self.lock()?;
        let mut stmt =
            conn.prepare_cached("SELECT seq, event FROM events WHERE run_id = ?1 ORDER BY seq").map_err(crate::sql)?;
        let rows = stmt
            .query_map(params![id.as_str()], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?)))
            .map_err(crate::sql)?;
        rows.map(|r| {
            let (seq, e) = r.map_err(crate::sql)?;
            Ok((seq as u64, from_json(&e)?))
        })
        .collect()
    }

    async fn load_audit(&self, id: &RunId) -> Result<Vec<AuditRecord>, StoreError> {
        let conn = self.lock()?;
        // Ordered by rowid-free primary key; a reordered or edited record is caught by the chain.
        let mut stmt =
            conn.prepare_cached("SELECT record FROM audit WHERE run_id = ?1 ORDER BY seq").map_err(crate::sql)?;
        let rows = stmt.query_map(params![id.as_str()], |r| r.get::<_, String>(0)).map_err(crate::sql)?;
        rows.map(|r| from_json(&r.map_err(crate::sql)?)).collect()
    }

    async fn load_audit_digests(&self, id: &RunId) -> Result<Vec<AuditDigest>, StoreError> {
        let mut conn = self.lock()?;
        self.seal_now(&mut conn)?;
        let mut stmt = conn
            .prepare_cached("SELECT digest FROM audit_digests WHERE run_id = ?1 ORDER BY count")
            .map_err(crate::sql)?;
        let rows = stmt.query_map(params![id.as_str()], |r| r.get::<_, String>(0)).map_err(crate::sql)?;
        rows.map(|r| from_json(&r.map_err(crate::sql)?)).collect()
    }

    fn audit_public_key(&self) -> Option<AuditPublicKey> {
        self.audit_key.as_ref().map(|k| k.public())
    }

    async fn load_sealed(&self, id: &RunId) -> Result<Vec<SealedField>, StoreError> {
        let conn = self.lock()?;
        erasure::load(&conn, id.as_str())
    }

    async fn erase_sealed(
        &self,
        id: &RunId,
        fields: &[String],
        at: u64,
        reason: &str,
    ) -> Result<Vec<String>, StoreError> {
        let mut conn = self.lock()?;
        erasure::erase(&mut conn, id.as_str(), fields, at, reason)
    }

    async fn open_tasks(&self) -> Result<Vec<TaskRecord>, StoreError> {
        let conn = self.lock()?;
        let mut stmt = conn
            .prepare_cached(&format!("SELECT {TASK_COLUMNS} FROM tasks WHERE status = 'open' ORDER BY created_at, id"))
            .map_err(crate::sql)?;
        let rows = stmt.query_map([], task_from_row).map_err(crate::sql)?;
        Ok(rows.collect::<Result<_, _>>().map_err(crate::sql)?)
    }

    async fn get_task(&self, id: &TaskId) -> Result<Option<TaskRecord>, StoreError> {
        let conn = self.lock()?;
        Ok(conn
            .query_row(&format!("SELECT {TASK_COLUMNS} FROM tasks WHERE id = ?1"), params![id.as_str()], task_from_row)
            .optional()
            .map_err(crate::sql)?)
    }

    async fn bus_events(&self, run_id: &RunId) -> Result<Vec<BusEvent>, StoreError> {
        let conn = self.lock()?;
        let mut stmt = conn
            .prepare_cached("SELECT run_id, name, detail, at FROM bus WHERE run_id = ?1 ORDER BY id")
            .map_err(crate::sql)?;
        let rows = stmt
            .query_map(params![run_id.as_str()], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get::<_, String>(2)?, r.get::<_, i64>(3)?))
            })
            .map_err(crate::sql)?;
        rows.map(|r| {
            let (run_id, name, detail, at) = r.map_err(crate::sql)?;
            Ok(BusEvent { run_id: run_id.into(), name, detail: from_json(&detail)?, at: at as u64 })
        })
        .collect()
    }

    async fn unpublished_bus_events(&self, limit: usize) -> Result<Vec<(String, BusEvent)>, StoreError> {
        let conn = self.lock()?;
        let cursor = self.bus_cursor.load(Ordering::SeqCst);
        let mut stmt = conn
            .prepare_cached(
                "SELECT id, run_id, name, detail, at FROM bus WHERE id > ?1 AND published = 0 ORDER BY id LIMIT ?2",
            )
            .map_err(crate::sql)?;
        let rows = stmt
            .query_map(params![cursor, limit as i64], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, String>(3)?,
                    r.get::<_, i64>(4)?,
                ))
            })
            .map_err(crate::sql)?;
        rows.map(|r| {
            let (id, run_id, name, detail, at) = r.map_err(crate::sql)?;
            Ok((id.to_string(), BusEvent { run_id: run_id.into(), name, detail: from_json(&detail)?, at: at as u64 }))
        })
        .collect()
    }

    async fn mark_bus_published(&self, ids: &[String]) -> Result<(), StoreError> {
        let conn = self.lock()?;
        let mut stmt = conn.prepare_cached("UPDATE bus SET published = 1 WHERE id = ?1").map_err(crate::sql)?;
        for id in ids {
            let id: i64 = id.parse().map_err(|_| StoreError::Corrupt(format!("bad outbox id {id}")))?;
            stmt.execute(params![id]).map_err(crate::sql)?;
        }
        let cursor = self.bus_cursor.load(Ordering::SeqCst);
        let first_unpublished: Option<i64> = conn
            .query_row("SELECT MIN(id) FROM bus WHERE id > ?1 AND published = 0", params![cursor], |r| r.get(0))
            .map_err(crate::sql)?;
        let next = match first_unpublished {
            Some(id) => id - 1,
            None => conn.query_row("SELECT COALESCE(MAX(id), 0) FROM bus", [], |r| r.get(0)).map_err(crate::sql)?,
        };
        self.bus_cursor.fetch_max(next, Ordering::SeqCst);
        Ok(())
    }

    async fn pending_outbox(&self, before: u64, limit: usize) -> Result<Vec<OutboxEntry>, StoreError> {
        let conn = self.lock()?;
        let mut stmt = conn.prepare_cached(
            "SELECT id, run_id, created_at, items FROM outbox WHERE created_at <= ?1 ORDER BY created_at, id LIMIT ?2",
        ).map_err(crate::sql)?;
        let rows = stmt
            .query_map(params![before.min(i64::MAX as u64) as i64, limit as i64], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get::<_, i64>(2)?, r.get::<_, String>(3)?))
            })
            .map_err(crate::sql)?;
        rows.map(|r| {
            let (id, run_id, at, items) = r.map_err(crate::sql)?;
            Ok(OutboxEntry { id, run_id: run_id.into(), created_at: at as u64, items: from_json(&items)? })
        })
        .collect()
    }

    async fn clear_outbox(&self, ids: &[String]) -> Result<(), StoreError> {
        let conn = self.lock()?;
        let mut stmt = conn.prepare_cached("DELETE FROM outbox WHERE id = ?1").map_err(crate::sql)?;
        for id in ids {
            stmt.execute(params![id]).map_err(crate::sql)?;
        }
        Ok(())
    }

    async fn claim(&self, key: &str, owner: &str, now: u64, lease_until: u64) -> Result<Claim, StoreError> {
        let conn = self.lock()?;
        // The same condition as DynamoDB's: new, or unfinished with an expired lease.
        let taken = conn
            .execute(
                "INSERT INTO claims (key, owner, lease_until) VALUES (?1, ?2, ?3)
             ON CONFLICT(key) DO UPDATE SET owner = excluded.owner, lease_until = excluded.lease_until
             WHERE claims.result IS NULL AND claims.lease_until < ?4",
                params![key, owner, lease_until as i64, now as i64],
            )
            .map_err(crate::sql)?;
        if taken == 1 {
            return Ok(Claim::Acquired);
        }
        let result: Option<String> = conn
            .query_row("SELECT result FROM claims WHERE key = ?1", params![key], |r| r.get(0))
            .map_err(crate::sql)?;
        baton_runtime::messages::Outcome::claim(result.as_deref())
    }

    async fn finish_claim(&self, key: &str, result: &baton_runtime::messages::StepResult) -> Result<(), StoreError> {
        let body = baton_runtime::messages::Outcome::stored(result)?;
        self.lock()?.execute("UPDATE claims SET result = ?2 WHERE key = ?1", params![key, body]).map_err(crate::sql)?;
        Ok(())
    }

    async fn put_fact(&self, fact: &MemoryFact) -> Result<(), StoreError> {
        memory::put_fact(&*self.lock()?, fact)
    }

    async fn facts(&self, entity: &str) -> Result<Vec<MemoryFact>, StoreError> {
        memory::facts(&*self.lock()?, entity)
    }

    async fn episodes(&self, entity: &str, limit: usize) -> Result<Vec<Episode>, StoreError> {
        memory::episodes(&*self.lock()?, entity, limit)
    }

    async fn put_cache(&self, entry: &CacheEntry) -> Result<(), StoreError> {
        memory::put_cache(&*self.lock()?, entry)
    }

    async fn get_cache(&self, key: &str) -> Result<Option<CacheEntry>, StoreError> {
        memory::get_cache(&*self.lock()?, key)
    }
}
