//! `baton audit replay --export DIR`: re-derives every decision of an exported run from the
//! export alone (its definition, its journal of events and its audit records), with no store,
//! and reports the first record that differs. The export's `run.json` names the run, its
//! workflow, the definition's hash and when the run was created; `definition.yaml` must hash to
//! that; `events.jsonl` holds the journal, one event a line, in order.

use std::path::Path;

use anyhow::Result;
use baton_core::audit::AuditRecord;
use baton_core::engine::Event;

use super::audit_export::{BadLine, DEFINITION, EVENTS, ExportedRun, RECORDS, RUN, read_lines, read_sealed};
use crate::errors::Usage;
use crate::exit;
use baton_runtime::audit_check::{Divergence, ReplaySeals, replay_records};

/// Replays an export; exit 0 when every record is re-derived identically, 1 at the first
/// difference (or an altered definition or journal line), 2 when the directory cannot be read.
pub fn replay_export(dir: &Path) -> Result<u8> {
    let shown = dir.display();
    let diverged = |message: String| {
        println!("replay of export {shown} diverges: {message}");
        Ok(exit::FAILED)
    };
    let read = |name: &str| {
        std::fs::read_to_string(dir.join(name))
            .map_err(|e| Usage(format!("cannot read {}: {e}", dir.join(name).display())))
    };
    let run: ExportedRun = match serde_json::from_str(&read(RUN)?) {
        Ok(r) => r,
        Err(e) => return diverged(format!("{RUN}: not a run description: {e}")),
    };
    let source = read(DEFINITION)?;
    let plan = match baton_core::load_definition(Some(DEFINITION), &source) {
        Ok(p) => p,
        Err(problems) => {
            let first = problems.first().map(|p| p.to_string()).unwrap_or_default();
            return diverged(format!("{DEFINITION} is not a valid workflow: {first}"));
        }
    };
    if plan.hash != run.definition {
        return diverged(format!(
            "{DEFINITION} hashes to {}, but {RUN} says the run ran definition {}",
            plan.hash, run.definition
        ));
    }
    let records: Vec<AuditRecord> = match read_lines(&dir.join(RECORDS), "an audit record")? {
        Ok(r) => r,
        Err(BadLine(m)) => return diverged(m),
    };
    let events: Vec<Event> = match read_lines(&dir.join(EVENTS), "a journal event")? {
        Ok(e) => e,
        Err(BadLine(m)) => return diverged(m),
    };
    let sealed = match read_sealed(dir)? {
        Ok(s) => s,
        Err(BadLine(m)) => return diverged(m),
    };
    let seals = ReplaySeals::of(run.seal_salt.as_deref(), &sealed);
    match replay_records(&plan, &run.run_id, run.created_at, &seals, events, &records) {
        Ok(n) => {
            println!(
                "replay of export {shown} (run {}) matches its audit log: {n} records re-derived from {EVENTS} and {DEFINITION}",
                run.run_id
            );
            Ok(exit::OK)
        }
        Err(d @ Divergence::Erased { .. }) => {
            println!("replay of export {shown} (run {}): {d}", run.run_id);
            Ok(exit::OK)
        }
        Err(d) => diverged(d.to_string()),
    }
}
