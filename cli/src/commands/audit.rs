//! `baton audit show|verify|replay|export|redact`.

use anyhow::Result;
use baton_core::audit::digest::Signing;

use super::audit_export;
use crate::backend::{Target, control};
use crate::output::humantime_ms;
use crate::{AuditCommand, exit};

/// Shows, verifies, replays or exports a run's audit log, or verifies an export.
pub async fn audit(target: &Target, command: AuditCommand) -> Result<u8> {
    // An export is checked with no store at all: the auditor may have nothing but the directory.
    if let AuditCommand::Verify { export: Some(dir), key, require_signed, .. } = &command {
        return audit_export::verify_export(dir, key.as_deref(), *require_signed);
    }
    if let AuditCommand::Replay { export: Some(dir), .. } = &command {
        return super::audit_replay::replay_export(dir);
    }
    let c = control(target, false).await?;
    match command {
        AuditCommand::Show { run_id, json } => {
            let records = c.audit(&run_id).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&records)?);
            } else {
                for r in records {
                    let at = humantime_ms(r.at);
                    let who = match (&r.node, r.attempt) {
                        (Some(n), Some(a)) => format!("{n} #{a}"),
                        (Some(n), None) => n.clone(),
                        _ => "run".into(),
                    };
                    println!("{:>5} {at} {:<18} {:<22} {}", r.seq, r.decision, who, r.reason);
                }
            }
            Ok(exit::OK)
        }
        AuditCommand::Verify { run_id: Some(run_id), require_signed, .. } => match c.verify_audit(&run_id).await? {
            Ok(v) => {
                let n = v.records;
                println!(
                    "audit log of run {run_id} is intact: {n} records, hash chain verified, {}{}",
                    audit_export::signing_words(v.signing),
                    audit_export::sealed_words(&v.sealed)
                );
                // Silent for an unsigned run: it has no seal to witness.
                if let Some(w) = v.witnessed
                    && w + v.unwitnessed > 0
                {
                    println!("{}", witness_words(w, v.unwitnessed));
                }
                if require_signed && v.signing == Signing::Unsigned {
                    println!("audit log of run {run_id} is NOT signed, and --require-signed was given");
                    return Ok(exit::FAILED);
                }
                Ok(exit::OK)
            }
            Err(e) => {
                println!("audit log of run {run_id} is NOT intact: {e}");
                Ok(exit::FAILED)
            }
        },
        AuditCommand::Replay { run_id: None, .. } => {
            Err(crate::errors::Usage("audit replay needs a RUN_ID or --export DIR".into()).into())
        }
        AuditCommand::Verify { run_id: None, .. } => {
            Err(crate::errors::Usage("audit verify needs a RUN_ID or --export DIR".into()).into())
        }
        AuditCommand::Replay { run_id: Some(run_id), .. } => match c.replay_audit(&run_id).await? {
            Ok(n) => {
                println!("replay of run {run_id} matches the audit log: {n} records identical");
                Ok(exit::OK)
            }
            // Not a divergence the log is to blame for: the data it would take was erased.
            Err(d @ baton_runtime::audit_check::Divergence::Erased { .. }) => {
                println!("replay of run {run_id}: {d}");
                Ok(exit::OK)
            }
            Err(d) => {
                println!("replay of run {run_id} diverges: {d}");
                Ok(exit::FAILED)
            }
        },
        AuditCommand::Export { run_id, output } => audit_export::export(c.as_ref(), &run_id, &output).await,
        AuditCommand::Redact { run_id, fields, reason, json } => {
            let erased = c.redact(&run_id, &fields, &reason).await?;
            if json {
                println!("{}", serde_json::json!({"run_id": run_id, "erased": erased, "reason": reason}));
            } else if erased.is_empty() {
                println!("nothing to erase in run {run_id}: {} already erased", fields.join(", "));
            } else {
                println!(
                    "erased {} sensitive field(s) of run {run_id}: {} (the audit log still verifies; `baton audit verify {run_id}` lists them)",
                    erased.len(),
                    erased.join(", ")
                );
            }
            Ok(exit::OK)
        }
    }
}

/// What `audit verify` says of the write-once witness (the AWS stack's S3 bucket with Object
/// Lock) when the store has one.
fn witness_words(witnessed: usize, unwitnessed: usize) -> String {
    let mut words = format!("witness: {witnessed} seals also in the write-once S3 bucket, all matching the table");
    if unwitnessed > 0 {
        // Written after the commit, so a failed put leaves a seal only the table holds.
        words.push_str(&format!(
            "; {unwitnessed} seals are in the table only (their S3 write failed): protected by the table alone"
        ));
    }
    words
}
