//! The embedded store: one SQLite file (WAL) holding definitions, run state, the event journal,
//! the audit log, tasks and the bus outbox. Every commit is one transaction.

use std::path::Path;
use std::sync::Mutex;

use async_trait::async_trait;
use baton_core::audit::AuditRecord;
use baton_core::engine::{Event, RunState, RunStatus};
use rusqlite::{Connection, OptionalExtension, params};

use crate::error::StoreError;
use crate::ports::{BusEvent, Precondition, RunHeader, RunStore, StoredRun, TaskChange, TaskRecord, Transition};

/// How hard each commit is pushed to disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// `synchronous=NORMAL` in WAL mode: committed data survives a process crash; the last
    /// commits may be lost on power failure.
    Normal,
    /// `synchronous=FULL`: every commit is fsynced.
    Full,
}

/// SQLite implementation of [`RunStore`].
pub struct SqliteStore {
    conn: Mutex<Connection>,
}

const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS definitions (hash TEXT PRIMARY KEY, name TEXT NOT NULL, source TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS runs (
  id TEXT PRIMARY KEY, workflow TEXT NOT NULL, definition TEXT NOT NULL, status TEXT NOT NULL,
  version INTEGER NOT NULL, created_at INTEGER NOT NULL, events INTEGER NOT NULL, mocks TEXT, state TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS runs_status ON runs(status);
CREATE TABLE IF NOT EXISTS events (run_id TEXT NOT NULL, seq INTEGER NOT NULL, event TEXT NOT NULL,
  PRIMARY KEY (run_id, seq)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS audit (run_id TEXT NOT NULL, seq INTEGER NOT NULL, record TEXT NOT NULL,
  PRIMARY KEY (run_id, seq)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS tasks (id TEXT PRIMARY KEY, run_id TEXT NOT NULL, node TEXT NOT NULL, step TEXT NOT NULL,
  queue TEXT NOT NULL, status TEXT NOT NULL, prompt TEXT NOT NULL, summary TEXT NOT NULL, form TEXT,
  created_at INTEGER NOT NULL, outcome TEXT);
CREATE TABLE IF NOT EXISTS bus (id INTEGER PRIMARY KEY AUTOINCREMENT, run_id TEXT NOT NULL, name TEXT NOT NULL,
  detail TEXT NOT NULL, at INTEGER NOT NULL);
"#;

fn status_str(s: RunStatus) -> &'static str {
    match s {
        RunStatus::Running => "running",
        RunStatus::Succeeded => "succeeded",
        RunStatus::Failed => "failed",
        RunStatus::Cancelled => "cancelled",
    }
}

fn parse_status(s: &str) -> Result<RunStatus, StoreError> {
    serde_json::from_value(serde_json::Value::String(s.to_owned())).map_err(|e| StoreError::Corrupt(e.to_string()))
}

fn json<T: serde::Serialize>(v: &T) -> Result<String, StoreError> {
    serde_json::to_string(v).map_err(|e| StoreError::Corrupt(e.to_string()))
}

fn from_json<T: serde::de::DeserializeOwned>(s: &str) -> Result<T, StoreError> {
    serde_json::from_str(s).map_err(|e| StoreError::Corrupt(e.to_string()))
}

impl SqliteStore {
    /// Opens (creating if needed) `dir/baton.db`.
    pub fn open(dir: &Path, durability: Durability) -> Result<Self, StoreError> {
        std::fs::create_dir_all(dir)
            .map_err(|e| StoreError::Backend(format!("cannot create {}: {e}", dir.display())))?;
        let conn = Connection::open(dir.join("baton.db"))?;
        let sync = match durability {
            Durability::Normal => "NORMAL",
            Durability::Full => "FULL",
        };
        conn.execute_batch(&format!(
            "PRAGMA journal_mode=WAL; PRAGMA synchronous={sync}; PRAGMA busy_timeout=5000; PRAGMA foreign_keys=ON;"
        ))?;
        conn.execute_batch(SCHEMA)?;
        Ok(Self { conn: Mutex::new(conn) })
    }

    fn lock(&self) -> Result<std::sync::MutexGuard<'_, Connection>, StoreError> {
        self.conn.lock().map_err(|_| StoreError::Backend("store lock poisoned".into()))
    }

    /// Direct access for tests that tamper with the database on purpose.
    pub fn execute_raw(&self, sql: &str) -> Result<usize, StoreError> {
        Ok(self.lock()?.execute(sql, [])?)
    }
}

type HeaderRow = (String, String, String, String, i64, i64, i64, Option<String>);

fn header_from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<HeaderRow> {
    Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?, row.get(4)?, row.get(5)?, row.get(6)?, row.get(7)?))
}

fn to_header(t: HeaderRow) -> Result<RunHeader, StoreError> {
    Ok(RunHeader {
        id: t.0,
        workflow: t.1,
        definition: t.2,
        status: parse_status(&t.3)?,
        version: t.4 as u64,
        created_at: t.5 as u64,
        events: t.6 as u64,
        mocks: t.7.map(|m| from_json(&m)).transpose()?,
    })
}

fn task_from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<TaskRecord> {
    let form: Option<String> = row.get(8)?;
    Ok(TaskRecord {
        id: row.get(0)?,
        run_id: row.get(1)?,
        node: row.get(2)?,
        step: row.get(3)?,
        queue: row.get(4)?,
        status: row.get(5)?,
        prompt: row.get(6)?,
        summary: row.get(7)?,
        form: form.and_then(|f| serde_json::from_str(&f).ok()),
        created_at: row.get::<_, i64>(9)? as u64,
        outcome: row.get(10)?,
    })
}

const TASK_COLUMNS: &str = "id, run_id, node, step, queue, status, prompt, summary, form, created_at, outcome";

#[async_trait]
impl RunStore for SqliteStore {
    async fn put_definition(&self, hash: &str, name: &str, source: &str) -> Result<(), StoreError> {
        self.lock()?.execute(
            "INSERT OR IGNORE INTO definitions (hash, name, source) VALUES (?1, ?2, ?3)",
            params![hash, name, source],
        )?;
        Ok(())
    }

    async fn get_definition(&self, hash: &str) -> Result<Option<String>, StoreError> {
        Ok(self
            .lock()?
            .query_row("SELECT source FROM definitions WHERE hash = ?1", params![hash], |r| r.get(0))
            .optional()?)
    }

    async fn commit(&self, transitions: &[Transition]) -> Result<(), StoreError> {
        let mut conn = self.lock()?;
        let tx = conn.transaction()?;
        for t in transitions {
            let h = &t.header;
            let state = json(&t.state)?;
            let mocks = h.mocks.as_ref().map(json).transpose()?;
            let applied = match t.precondition {
                Precondition::DoesNotExist => tx.execute(
                    "INSERT OR IGNORE INTO runs (id, workflow, definition, status, version, created_at, events, mocks, state)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                    params![h.id, h.workflow, h.definition, status_str(h.status), h.version as i64, h.created_at as i64, h.events as i64, mocks, state],
                )?,
                Precondition::MatchesVersion(v) => tx.execute(
                    "UPDATE runs SET status = ?2, version = ?3, state = ?4, events = ?6 WHERE id = ?1 AND version = ?5",
                    params![h.id, status_str(h.status), h.version as i64, state, v as i64, h.events as i64],
                )?,
            };
            if applied != 1 {
                let expected = match t.precondition {
                    Precondition::DoesNotExist => 0,
                    Precondition::MatchesVersion(v) => v,
                };
                return Err(StoreError::Conflict { run_id: h.id.clone(), expected });
            }
            {
                let mut ev = tx.prepare_cached("INSERT INTO events (run_id, seq, event) VALUES (?1, ?2, ?3)")?;
                for (seq, e) in &t.events {
                    ev.execute(params![h.id, *seq as i64, json(e)?])?;
                }
                let mut au = tx.prepare_cached("INSERT INTO audit (run_id, seq, record) VALUES (?1, ?2, ?3)")?;
                for r in &t.audit {
                    au.execute(params![h.id, r.seq as i64, json(r)?])?;
                }
                let mut bus =
                    tx.prepare_cached("INSERT INTO bus (run_id, name, detail, at) VALUES (?1, ?2, ?3, ?4)")?;
                for b in &t.bus {
                    bus.execute(params![b.run_id, b.name, json(&b.detail)?, b.at as i64])?;
                }
            }
            for change in &t.tasks {
                match change {
                    TaskChange::Open(task) => {
                        tx.execute(
                            &format!("INSERT OR IGNORE INTO tasks ({TASK_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)"),
                            params![
                                task.id, task.run_id, task.node, task.step, task.queue, task.status, task.prompt, task.summary,
                                task.form.as_ref().map(json).transpose()?, task.created_at as i64, task.outcome
                            ],
                        )?;
                    }
                    TaskChange::Reassign { id, queue } => {
                        tx.execute("UPDATE tasks SET queue = ?2 WHERE id = ?1", params![id, queue])?;
                    }
                    TaskChange::Close { id, outcome } => {
                        tx.execute(
                            "UPDATE tasks SET status = 'closed', outcome = ?2 WHERE id = ?1",
                            params![id, outcome],
                        )?;
                    }
                }
            }
        }
        tx.commit()?;
        Ok(())
    }

    async fn load_run(&self, id: &str) -> Result<Option<StoredRun>, StoreError> {
        let conn = self.lock()?;
        let row = conn
            .query_row(
                "SELECT id, workflow, definition, status, version, created_at, events, mocks, state FROM runs WHERE id = ?1",
                params![id],
                |r| Ok((header_from_row(r)?, r.get::<_, String>(8)?)),
            )
            .optional()?;
        match row {
            None => Ok(None),
            Some((h, state)) => Ok(Some(StoredRun { header: to_header(h)?, state: from_json::<RunState>(&state)? })),
        }
    }

    async fn list_runs(&self, limit: usize) -> Result<Vec<RunHeader>, StoreError> {
        let conn = self.lock()?;
        let mut stmt = conn.prepare(
            "SELECT id, workflow, definition, status, version, created_at, events, mocks FROM runs ORDER BY created_at DESC, id DESC LIMIT ?1",
        )?;
        let rows = stmt.query_map(params![limit as i64], header_from_row)?;
        rows.map(|r| to_header(r?)).collect()
    }

    async fn unfinished_runs(&self) -> Result<Vec<String>, StoreError> {
        let conn = self.lock()?;
        let mut stmt = conn.prepare("SELECT id FROM runs WHERE status = 'running' ORDER BY created_at, id")?;
        let rows = stmt.query_map([], |r| r.get(0))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    async fn load_events(&self, id: &str) -> Result<Vec<(u64, Event)>, StoreError> {
        let conn = self.lock()?;
        let mut stmt = conn.prepare("SELECT seq, event FROM events WHERE run_id = ?1 ORDER BY seq")?;
        let rows = stmt.query_map(params![id], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?)))?;
        rows.map(|r| {
            let (seq, e) = r?;
            Ok((seq as u64, from_json(&e)?))
        })
        .collect()
    }

    async fn load_audit(&self, id: &str) -> Result<Vec<AuditRecord>, StoreError> {
        let conn = self.lock()?;
        // Ordered by rowid-free primary key; a reordered or edited record is caught by the chain.
        let mut stmt = conn.prepare("SELECT record FROM audit WHERE run_id = ?1 ORDER BY seq")?;
        let rows = stmt.query_map(params![id], |r| r.get::<_, String>(0))?;
        rows.map(|r| from_json(&r?)).collect()
    }

    async fn open_tasks(&self) -> Result<Vec<TaskRecord>, StoreError> {
        let conn = self.lock()?;
        let mut stmt =
            conn.prepare(&format!("SELECT {TASK_COLUMNS} FROM tasks WHERE status = 'open' ORDER BY created_at, id"))?;
        let rows = stmt.query_map([], task_from_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    async fn get_task(&self, id: &str) -> Result<Option<TaskRecord>, StoreError> {
        let conn = self.lock()?;
        Ok(conn
            .query_row(&format!("SELECT {TASK_COLUMNS} FROM tasks WHERE id = ?1"), params![id], task_from_row)
            .optional()?)
    }

    async fn bus_events(&self, run_id: &str) -> Result<Vec<BusEvent>, StoreError> {
        let conn = self.lock()?;
        let mut stmt = conn.prepare("SELECT run_id, name, detail, at FROM bus WHERE run_id = ?1 ORDER BY id")?;
        let rows = stmt.query_map(params![run_id], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get::<_, String>(2)?, r.get::<_, i64>(3)?))
        })?;
        rows.map(|r| {
            let (run_id, name, detail, at) = r?;
            Ok(BusEvent { run_id, name, detail: from_json(&detail)?, at: at as u64 })
        })
        .collect()
    }
}
