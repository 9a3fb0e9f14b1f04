//! `baton audit show|verify|replay RUN_ID`.

use anyhow::Result;

use crate::backend::{Target, control};
use crate::output::humantime_ms;
use crate::{AuditCommand, exit};

/// Shows, verifies or replays a run's audit log.
pub async fn audit(target: &Target, command: AuditCommand) -> Result<u8> {
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
        AuditCommand::Verify { run_id } => match c.verify_audit(&run_id).await? {
            Ok(n) => {
                println!("audit log of run {run_id} is intact: {n} records, hash chain verified");
                Ok(exit::OK)
            }
            Err(e) => {
                println!("audit log of run {run_id} is NOT intact: {e}");
                Ok(exit::FAILED)
            }
        },
        AuditCommand::Replay { run_id } => match c.replay_audit(&run_id).await? {
            Ok(n) => {
                println!("replay of run {run_id} matches the audit log: {n} records identical");
                Ok(exit::OK)
            }
            Err(d) => {
                println!("replay of run {run_id} diverges: {d}");
                Ok(exit::FAILED)
            }
        },
    }
}
