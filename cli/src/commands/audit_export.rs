//! `baton audit export` and `baton audit verify --export`: a run's audit log as plain files an
//! auditor can keep and check without baton's store (or without baton: docs/audit.md describes
//! the formats, and scripts/verify-audit-export.py checks them in Python).
//!
//! The directory holds `records.jsonl` (one record per line, in seq order), `digests.jsonl`
//! (one signed digest per line, oldest first; empty for an unsigned run) and `public-key.hex`
//! (the Ed25519 public key, 64 hex digits; absent when the store does not sign), and for
//! `audit replay --export` the run (`run.json`), its definition and its journal (see
//! `audit_replay`).

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use baton_core::audit::digest::{AuditDigest, Signing, verify_digests};
use baton_core::audit::seal::{SealError, SealSummary, SealedField, verify_sealed};
use baton_core::audit::{AuditRecord, ChainError, verify_chain};
use baton_core::ids::RunId;
use baton_runtime::RunControl;
use baton_runtime::audit_key::AuditPublicKey;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::errors::Usage;
use crate::exit;

/// The records file of an export.
pub const RECORDS: &str = "records.jsonl";
/// The digests file of an export.
pub const DIGESTS: &str = "digests.jsonl";
/// The public key file of an export.
pub const PUBLIC_KEY: &str = "public-key.hex";

/// The run file of an export.
pub const RUN: &str = "run.json";
/// The definition file of an export (the workflow's source as stored, YAML or JSON).
pub const DEFINITION: &str = "definition.yaml";
/// The journal file of an export.
pub const EVENTS: &str = "events.jsonl";
/// The sealed sensitive fields of an export: values and salts, or when and why they were erased.
pub const SEALED: &str = "sealed.jsonl";

/// What an export says about its run.
#[derive(Debug, Serialize, Deserialize)]
pub struct ExportedRun {
    /// Run id.
    pub run_id: RunId,
    /// Workflow name.
    pub workflow: String,
    /// SHA-256 of the definition's source, as the store keys it.
    pub definition: String,
    /// When the run was created (ms since the Unix epoch): the engine's clock starts there.
    pub created_at: u64,
    /// The secret the salts of the run's sensitive fields derive from: with it, replay
    /// re-derives sealed records bit for bit. Absent once a field was erased.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seal_salt: Option<String>,
}

/// Writes `run_id`'s records, digests and public key under `dir`.
pub async fn export(c: &dyn RunControl, run_id: &RunId, dir: &Path) -> Result<u8> {
    let records = c.audit(run_id).await?;
    let digests = c.audit_digests(run_id).await?;
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    // Each line is the record serialised from the same type the store wrote it with, so an
    // intact record's line is the stored text byte for byte.
    write_lines(&dir.join(RECORDS), &records)?;
    write_lines(&dir.join(DIGESTS), &digests)?;
    // What `audit replay --export` needs to re-derive the decisions without a store.
    let stored = c.store().load_run(run_id).await?.ok_or_else(|| Usage(format!("unknown run {run_id}")))?;
    let h = &stored.header;
    let source = c
        .store()
        .get_definition(&h.workflow, &h.definition)
        .await?
        .ok_or_else(|| anyhow::anyhow!("run {run_id}'s definition {} is not in the store", h.definition))?;
    let run = ExportedRun {
        run_id: run_id.clone(),
        workflow: h.workflow.clone(),
        definition: h.definition.clone(),
        created_at: h.created_at,
        seal_salt: stored.state.seals.salt.clone(),
    };
    write(&dir.join(RUN), &format!("{}\n", serde_json::to_string_pretty(&run)?))?;
    write(&dir.join(DEFINITION), &source)?;
    let events: Vec<_> = c.store().load_events(run_id).await?.into_iter().map(|(_, e)| e).collect();
    write_lines(&dir.join(EVENTS), &events)?;
    write_lines(&dir.join(SEALED), &c.sealed_fields(run_id).await?)?;
    let key = c.store().audit_public_key();
    if let Some(key) = &key {
        write(&dir.join(PUBLIC_KEY), &format!("{}\n", key.to_hex()))?;
    }
    let signed = match (&key, digests.len()) {
        (Some(k), n) if n > 0 => format!("{n} signed digests, public key {}", k.to_hex()),
        _ => "unsigned".into(),
    };
    println!("exported the audit log of run {run_id} to {}: {} records, {signed}", dir.display(), records.len());
    Ok(exit::OK)
}

fn write_lines<T: serde::Serialize>(path: &Path, items: &[T]) -> Result<()> {
    let mut text = String::new();
    for item in items {
        text.push_str(&serde_json::to_string(item)?);
        text.push('\n');
    }
    write(path, &text)
}

fn write(path: &Path, text: &str) -> Result<()> {
    std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))
}

/// The export's sealed fields; none for an export made before sealing existed (its records
/// seal nothing).
pub(super) fn read_sealed(dir: &Path) -> Result<Result<Vec<SealedField>, BadLine>> {
    let path = dir.join(SEALED);
    if !path.exists() {
        return Ok(Ok(Vec::new()));
    }
    read_lines(&path, "a sealed field")
}

/// One line that is not what its file holds: the file name, the 1-based line and why.
pub(super) struct BadLine(pub(super) String);

/// Parses every line of `path` (a missing file is the caller's mistake: exit 2).
pub(super) fn read_lines<T: DeserializeOwned>(path: &Path, what: &str) -> Result<Result<Vec<T>, BadLine>> {
    let text = std::fs::read_to_string(path).map_err(|e| Usage(format!("cannot read {}: {e}", path.display())))?;
    let name = file_name(path);
    let mut items = Vec::new();
    for (i, line) in text.lines().enumerate() {
        match serde_json::from_str(line) {
            Ok(item) => items.push(item),
            Err(e) => return Ok(Err(BadLine(format!("{name} line {}: not {what}: {e}", i + 1)))),
        }
    }
    Ok(Ok(items))
}

fn file_name(path: &Path) -> String {
    path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| path.display().to_string())
}

/// Checks an export directory; exit 0 intact, 1 tampered (naming the file and line), 2 when
/// the directory or key cannot be read.
pub fn verify_export(dir: &Path, key_file: Option<&Path>, require_signed: bool) -> Result<u8> {
    let shown = dir.display();
    let tampered = |message: String| {
        println!("export {shown} is NOT intact: {message}");
        Ok(exit::FAILED)
    };
    let records: Vec<AuditRecord> = match read_lines(&dir.join(RECORDS), "an audit record")? {
        Ok(r) => r,
        Err(BadLine(m)) => return tampered(m),
    };
    let digests: Vec<AuditDigest> = match read_lines(&dir.join(DIGESTS), "a signed digest")? {
        Ok(d) => d,
        Err(BadLine(m)) => return tampered(m),
    };
    if let Err(e) = verify_chain(&records) {
        return tampered(format!("{RECORDS} line {}: {e}", record_line(&records, &e)));
    }
    let sealed = match read_sealed(dir)? {
        Ok(s) => s,
        Err(BadLine(m)) => return tampered(m),
    };
    let sealed = match verify_sealed(&records, &sealed) {
        Ok(summary) => summary,
        Err(e) => {
            let line = sealed.iter().position(|f| match &e {
                SealError::Altered { field, .. } => &f.field == field,
                _ => false,
            });
            return tampered(match line {
                Some(i) => format!("{SEALED} line {}: {e}", i + 1),
                None => format!("{RECORDS} line {}: {e}", record_line(&records, &ChainError::Sealed(e.clone()))),
            });
        }
    };
    let key_path: PathBuf = key_file.map(Path::to_path_buf).unwrap_or_else(|| dir.join(PUBLIC_KEY));
    let run_id = digests.first().map(|d| d.run_id.clone()).unwrap_or_default();
    let signing = if digests.is_empty() {
        Signing::Unsigned
    } else {
        let text = std::fs::read_to_string(&key_path)
            .map_err(|e| Usage(format!("cannot read the public key {}: {e}", key_path.display())))?;
        let key = AuditPublicKey::from_hex(&text, &key_path.display().to_string()).map_err(|e| Usage(e.to_string()))?;
        match verify_digests(&run_id, &records, &digests, |d| key.verifies(d)) {
            Ok(s) => s,
            Err(e) => return tampered(digest_problem(&records, &digests, &e)),
        }
    };
    let of_run = if run_id.is_empty() { String::new() } else { format!(" (run {run_id})") };
    let signed = match signing {
        Signing::Signed { .. } => format!("{}, key {}", signing_words(signing), key_path.display()),
        Signing::Unsigned => signing_words(signing),
    };
    println!(
        "export {shown}{of_run} is intact: {} records, hash chain verified, {signed}{}",
        records.len(),
        sealed_words(&sealed)
    );
    if let Some(last) = digests.last() {
        // What an auditor compares with a digest obtained elsewhere: cutting the log back to an
        // earlier digest, with the digests after it, is only visible against such a copy.
        println!("last signed digest: record {} head {} digest {}", last.count, last.head, last.hash);
    }
    if require_signed && signing == Signing::Unsigned {
        println!("export {shown} is NOT signed, and --require-signed was given");
        return Ok(exit::FAILED);
    }
    Ok(exit::OK)
}

/// The 1-based line of the record a chain error names (records are one per line).
fn record_line(records: &[AuditRecord], e: &ChainError) -> usize {
    if let ChainError::Gap { position, .. } = e {
        return *position;
    }
    let seq = e.first_bad();
    records.iter().position(|r| r.seq == seq).map(|i| i + 1).unwrap_or(seq as usize)
}

/// Names the file and line a digest check's error points at.
fn digest_problem(records: &[AuditRecord], digests: &[AuditDigest], e: &ChainError) -> String {
    match e {
        ChainError::RewrittenWithoutKey { .. }
        | ChainError::SignedBeyondLog { .. }
        | ChainError::UnsignedTail { .. } => {
            format!("{RECORDS} line {}: {e}", record_line(records, e))
        }
        _ => {
            let count = e.first_bad();
            let line = digests.iter().position(|d| d.count == count).map(|i| i + 1).unwrap_or(1);
            format!("{DIGESTS} line {line}: {e}")
        }
    }
}

/// The sealed fields of a verified log, in words (nothing when it seals none).
pub(super) fn sealed_words(s: &SealSummary) -> String {
    if s.fields == 0 {
        return String::new();
    }
    let erased: Vec<String> = s
        .erased
        .iter()
        .map(|(field, at, reason)| format!("{field} at {} ({reason})", crate::output::humantime_ms(*at)))
        .collect();
    match erased.len() {
        0 => format!("; {} sensitive fields sealed, none erased", s.fields),
        n => format!("; {} sensitive fields sealed, {n} erased: {}", s.fields, erased.join(", ")),
    }
}

/// How a verified log is signed, in words.
pub(super) fn signing_words(s: Signing) -> String {
    match s {
        Signing::Signed { digests, unsealed: 0 } => format!("{digests} signed digests verified"),
        Signing::Signed { digests, unsealed } => format!(
            "{digests} signed digests verified; the last {unsealed} records are not sealed yet (the run is moving: its next wait or its end seals them)"
        ),
        Signing::Unsigned => {
            "unsigned (no signed digests: written before signing, or by a store that does not sign)".into()
        }
    }
}
