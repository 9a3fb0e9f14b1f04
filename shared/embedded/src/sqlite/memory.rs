//! Entity memory (facts, episodes) and the response cache on SQLite. Episodes are written by
//! the commit (see `group_commit`); facts and cache entries by their own upserts.

use rusqlite::{Connection, OptionalExtension, params};

use super::from_json;
use baton_runtime::error::StoreError;
use baton_runtime::ports::{CacheEntry, Episode, MemoryFact};

/// The tables, created on open; `IF NOT EXISTS` migrates databases made before memory existed.
pub(super) const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS facts (entity TEXT NOT NULL, key TEXT NOT NULL, value TEXT NOT NULL,
  source TEXT NOT NULL, at INTEGER NOT NULL, PRIMARY KEY (entity, key)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS episodes (entity TEXT NOT NULL, run_id TEXT NOT NULL, workflow TEXT NOT NULL,
  status TEXT NOT NULL, summary TEXT NOT NULL, at INTEGER NOT NULL, PRIMARY KEY (entity, run_id)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS episodes_newest ON episodes(entity, at, run_id);
CREATE TABLE IF NOT EXISTS cache (key TEXT PRIMARY KEY, value TEXT NOT NULL, at INTEGER NOT NULL,
  expires_at INTEGER NOT NULL);
"#;

fn json(v: &serde_json::Value) -> Result<String, StoreError> {
    serde_json::to_string(v).map_err(|e| StoreError::Corrupt(e.to_string()))
}

pub(super) fn put_fact(conn: &Connection, fact: &MemoryFact) -> Result<(), StoreError> {
    conn.prepare_cached(
        "INSERT INTO facts (entity, key, value, source, at) VALUES (?1, ?2, ?3, ?4, ?5)
         ON CONFLICT(entity, key) DO UPDATE SET value = excluded.value, source = excluded.source, at = excluded.at",
    )
    .map_err(crate::sql)?
    .execute(params![fact.entity, fact.key, json(&fact.value)?, fact.source, fact.at as i64])
    .map_err(crate::sql)?;
    Ok(())
}

pub(super) fn facts(conn: &Connection, entity: &str) -> Result<Vec<MemoryFact>, StoreError> {
    let mut stmt = conn
        .prepare_cached("SELECT key, value, source, at FROM facts WHERE entity = ?1 ORDER BY key")
        .map_err(crate::sql)?;
    let rows = stmt
        .query_map(params![entity], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get::<_, String>(2)?, r.get::<_, i64>(3)?))
        })
        .map_err(crate::sql)?;
    rows.map(|r| {
        let (key, value, source, at) = r.map_err(crate::sql)?;
        Ok(MemoryFact { entity: entity.to_owned(), key, value: from_json(&value)?, source, at: at as u64 })
    })
    .collect()
}

pub(super) fn episodes(conn: &Connection, entity: &str, limit: usize) -> Result<Vec<Episode>, StoreError> {
    let mut stmt = conn
        .prepare_cached(
            "SELECT run_id, workflow, status, summary, at FROM episodes WHERE entity = ?1
         ORDER BY at DESC, run_id DESC LIMIT ?2",
        )
        .map_err(crate::sql)?;
    let rows = stmt
        .query_map(params![entity, limit.min(i64::MAX as usize) as i64], |r| {
            Ok(Episode {
                entity: entity.to_owned(),
                run_id: r.get::<_, String>(0)?.into(),
                workflow: r.get(1)?,
                status: r.get(2)?,
                summary: r.get(3)?,
                at: r.get::<_, i64>(4)? as u64,
            })
        })
        .map_err(crate::sql)?;
    rows.collect::<Result<_, _>>().map_err(crate::sql)
}

pub(super) fn put_cache(conn: &Connection, entry: &CacheEntry) -> Result<(), StoreError> {
    conn.prepare_cached(
        "INSERT INTO cache (key, value, at, expires_at) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT(key) DO UPDATE SET value = excluded.value, at = excluded.at, expires_at = excluded.expires_at",
    )
    .map_err(crate::sql)?
    // `as i64` wraps and `as u64` unwraps: every u64 (`u64::MAX` for "never") reads back exactly.
    .execute(params![entry.key, json(&entry.value)?, entry.at as i64, entry.expires_at as i64])
    .map_err(crate::sql)?;
    Ok(())
}

pub(super) fn get_cache(conn: &Connection, key: &str) -> Result<Option<CacheEntry>, StoreError> {
    let row = conn
        .prepare_cached("SELECT value, at, expires_at FROM cache WHERE key = ?1")
        .map_err(crate::sql)?
        .query_row(params![key], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?, r.get::<_, i64>(2)?)))
        .optional()
        .map_err(crate::sql)?;
    row.map(|(value, at, expires_at)| {
        Ok(CacheEntry { key: key.to_owned(), value: from_json(&value)?, at: at as u64, expires_at: expires_at as u64 })
    })
    .transpose()
}
