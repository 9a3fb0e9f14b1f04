//! `baton validate FILE...`: every problem of every file at once; exit 2 when any has one.

use anyhow::Result;

use crate::definition::plan_with_mesh;
use crate::exit;

/// Checks each file and prints `ok` or its problems.
pub fn validate(files: &[std::path::PathBuf]) -> Result<u8> {
    let mut bad = 0;
    for f in files {
        let name = f.display().to_string();
        let text = match std::fs::read_to_string(f) {
            Ok(t) => t,
            Err(e) => {
                println!("{name}: cannot read: {e}");
                bad += 1;
                continue;
            }
        };
        match plan_with_mesh(f, &text) {
            Ok((plan, _)) => println!("{name}: ok ({} steps, definition {})", plan.steps.len(), &plan.hash[..12]),
            Err(problems) => {
                bad += 1;
                for p in &problems {
                    println!("{p}");
                }
                println!("{name}: {} problem{}", problems.len(), if problems.len() == 1 { "" } else { "s" });
            }
        }
    }
    Ok(if bad == 0 { exit::OK } else { exit::INVALID })
}
