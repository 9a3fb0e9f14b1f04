//! Sealed sensitive fields on SQLite (table `audit_sealed`), and their erasure: the value and
//! salt go, and so does every copy of the value in the run's rows, in one transaction.

use baton_core::audit::seal::{SealedField, scrub_text};
use rusqlite::{Connection, params};
use serde_json::Value;

use super::from_json;
use baton_runtime::error::StoreError;

/// A run's sealed fields, by name.
pub(super) fn load(conn: &Connection, run_id: &str) -> Result<Vec<SealedField>, StoreError> {
    let mut stmt =
        conn.prepare("SELECT sealed FROM audit_sealed WHERE run_id = ?1 ORDER BY field").map_err(crate::sql)?;
    let rows = stmt.query_map(params![run_id], |r| r.get::<_, String>(0)).map_err(crate::sql)?;
    rows.map(|r| from_json(&r.map_err(crate::sql)?)).collect()
}

/// Columns that may hold a copy of a run's data: (table, column, the condition naming the run's
/// rows, whether the column is JSON). The journal and state are JSON; a task's prompt and
/// summary are text a person reads; the entity facts the run wrote carry `<run id>/<step>` as
/// their source.
const COPIES: &[(&str, &str, &str, bool)] = &[
    ("runs", "state", "id = ?1", true),
    ("events", "event", "run_id = ?1", true),
    ("tasks", "prompt", "run_id = ?1", false),
    ("tasks", "summary", "run_id = ?1", false),
    ("tasks", "form", "run_id = ?1", true),
    ("tasks", "outcome", "run_id = ?1", false),
    ("tasks", "wait", "run_id = ?1", true),
    ("bus", "detail", "run_id = ?1", true),
    ("outbox", "items", "run_id = ?1", true),
    ("claims", "result", "key LIKE ?1 || '/%'", true),
    ("episodes", "summary", "run_id = ?1", false),
    ("facts", "value", "source LIKE ?1 || '/%'", true),
];

/// Erases `fields` of run `run_id` (see `RunStore::erase_sealed`).
pub(super) fn erase(
    conn: &mut Connection,
    run_id: &str,
    fields: &[String],
    at: u64,
    reason: &str,
) -> Result<Vec<String>, StoreError> {
    let erased = erase_in(conn, run_id, fields, at, reason)?;
    if !erased.is_empty() {
        // Rewriting a row leaves its old bytes in the page's free space, and pages freed long
        // before still hold what they held; the WAL keeps the frames the value was committed in.
        // VACUUM rebuilds the file from the live rows, and the checkpoint empties the WAL.
        conn.execute_batch("VACUUM").map_err(crate::sql)?;
        conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(())).map_err(crate::sql)?;
    }
    Ok(erased)
}

fn erase_in(
    conn: &mut Connection,
    run_id: &str,
    fields: &[String],
    at: u64,
    reason: &str,
) -> Result<Vec<String>, StoreError> {
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate).map_err(crate::sql)?;
    let mut erased = Vec::new();
    let mut values = Vec::new();
    for mut f in load(&tx, run_id)? {
        if !fields.contains(&f.field) || f.is_erased() {
            continue;
        }
        if let Some(v) = f.value.take() {
            values.push((f.field.clone(), v));
        }
        f.salt = None;
        f.erased_at = Some(at);
        f.reason = Some(reason.to_owned());
        let text = serde_json::to_string(&f).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        tx.execute(
            "UPDATE audit_sealed SET sealed = ?3 WHERE run_id = ?1 AND field = ?2",
            params![run_id, f.field, text],
        )
        .map_err(crate::sql)?;
        erased.push(f.field);
    }
    if !erased.is_empty() {
        for (table, column, run_rows, is_json) in COPIES {
            scrub_column(&tx, table, column, run_rows, *is_json, run_id, &values)?;
        }
        forget_salt(&tx, run_id)?;
    }
    tx.commit().map_err(crate::sql)?;
    Ok(erased)
}

/// Rewrites every row of `table` whose `column` holds one of `values`.
fn scrub_column(
    tx: &rusqlite::Transaction<'_>,
    table: &str,
    column: &str,
    run_rows: &str,
    is_json: bool,
    run_id: &str,
    values: &[(String, Value)],
) -> Result<(), StoreError> {
    let key = row_key(table);
    let mut stmt = tx
        .prepare(&format!(
            "SELECT CAST({key} AS TEXT), {column} FROM {table} WHERE {run_rows} AND {column} IS NOT NULL"
        ))
        .map_err(crate::sql)?;
    let rows: Vec<(String, String)> = stmt
        .query_map(params![run_id], |r| Ok((r.get(0)?, r.get(1)?)))
        .map_err(crate::sql)?
        .collect::<Result<_, _>>()
        .map_err(crate::sql)?;
    for (row, text) in rows {
        let Some(new) = scrub_text(&text, is_json, values) else { continue };
        tx.execute(&format!("UPDATE {table} SET {column} = ?2 WHERE CAST({key} AS TEXT) = ?1"), params![row, new])
            .map_err(crate::sql)?;
    }
    Ok(())
}

/// An expression naming one row of `table` (the journal's and episodes' keys are two columns).
fn row_key(table: &str) -> &'static str {
    match table {
        "events" => "run_id || '/' || seq",
        "episodes" => "entity || '/' || run_id",
        "facts" => "entity || '/' || key",
        "claims" => "key",
        _ => "id",
    }
}

/// Removes the run's salt secret from its state: with it, an erased value could be guessed by
/// hashing candidates until one gives the commitment the records still carry.
fn forget_salt(tx: &rusqlite::Transaction<'_>, run_id: &str) -> Result<(), StoreError> {
    let state: String =
        tx.query_row("SELECT state FROM runs WHERE id = ?1", params![run_id], |r| r.get(0)).map_err(crate::sql)?;
    let mut state: baton_core::engine::RunState = from_json(&state)?;
    state.seals.salt = None;
    let text = serde_json::to_string(&state).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    tx.execute("UPDATE runs SET state = ?2 WHERE id = ?1", params![run_id, text]).map_err(crate::sql)?;
    Ok(())
}
