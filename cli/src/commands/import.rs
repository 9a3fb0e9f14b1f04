//! `baton import asl FILE [-o OUT.yaml] [--substitute NAME=VALUE ...] [--check]`: converts a
//! Step Functions definition (the work is `baton_core::asl`), checks the result with the loader
//! `baton validate` uses, and writes it (a Map's processor as `<name>.yaml` beside it).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::Subcommand;

use crate::definition::plan_with_mesh;
use crate::exit;

/// What `baton import` converts.
#[derive(Subcommand)]
pub enum ImportCommand {
    /// An Amazon States Language (Step Functions) definition.
    Asl {
        /// The definition (JSON).
        file: PathBuf,
        /// Where the workflow goes (default: printed); Map processors go beside it.
        #[arg(short = 'o', long = "output")]
        output: Option<PathBuf>,
        /// A value for a `${NAME}` placeholder (SAM / Terraform definition substitutions).
        #[arg(long = "substitute", value_name = "NAME=VALUE")]
        substitute: Vec<String>,
        /// Convert and validate, write nothing.
        #[arg(long)]
        check: bool,
    },
}

/// Runs `baton import`.
pub fn import(command: ImportCommand) -> Result<u8> {
    let ImportCommand::Asl { file, output, substitute, check } = command;
    let mut subs = BTreeMap::new();
    for s in &substitute {
        let Some((k, v)) = s.split_once('=') else {
            eprintln!("error: --substitute takes NAME=VALUE, got `{s}`");
            return Ok(exit::INVALID);
        };
        subs.insert(k.to_owned(), v.to_owned());
    }
    let text = match std::fs::read_to_string(&file) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("error: cannot read {}: {e}", file.display());
            return Ok(exit::INVALID);
        }
    };
    let name = workflow_name(output.as_deref().unwrap_or(&file));
    let imported = match baton_core::asl::import(&text, &name, &subs) {
        Ok(i) => i,
        Err(e) => {
            eprintln!("{}: {e}", file.display());
            return Ok(exit::INVALID);
        }
    };
    for w in &imported.warnings {
        eprintln!("warning: {w}");
    }
    let dir = output.as_deref().and_then(Path::parent).map(Path::to_path_buf).unwrap_or_default();
    let mut bad = false;
    for (i, w) in imported.workflows.iter().enumerate() {
        let target = match (&output, i) {
            (Some(o), 0) => o.clone(),
            _ => dir.join(format!("{}.yaml", w.name)),
        };
        if let Err(problems) = plan_with_mesh(&target, &w.yaml) {
            bad = true;
            eprintln!("{}: the converted workflow does not validate (a bug in the importer):", target.display());
            for p in problems {
                eprintln!("{p}");
            }
        }
    }
    if bad {
        return Ok(exit::INVALID);
    }
    if check {
        let steps: usize = imported.workflows.iter().map(|w| w.yaml.matches("\n- id: ").count()).sum();
        println!("{}: ok ({} workflow(s), {steps} steps)", file.display(), imported.workflows.len());
        return Ok(exit::OK);
    }
    match &output {
        Some(o) => {
            for (i, w) in imported.workflows.iter().enumerate() {
                let target = if i == 0 { o.clone() } else { dir.join(format!("{}.yaml", w.name)) };
                std::fs::write(&target, &w.yaml).with_context(|| format!("writing {}", target.display()))?;
                eprintln!("wrote {}", target.display());
            }
        }
        None => {
            for (i, w) in imported.workflows.iter().enumerate() {
                if i > 0 {
                    println!("---\n# file: {}.yaml", w.name);
                }
                print!("{}", w.yaml);
            }
        }
    }
    Ok(exit::OK)
}

/// The workflow's name: the file's name without `.yaml`, `.json` or `.asl.json`.
fn workflow_name(path: &Path) -> String {
    let file = path.file_name().and_then(|f| f.to_str()).unwrap_or("imported");
    let stem =
        [".asl.json", ".asl.yaml", ".json", ".yaml", ".yml"].iter().find_map(|e| file.strip_suffix(e)).unwrap_or(file);
    let name: String =
        stem.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' { c } else { '-' }).collect();
    if name.is_empty() { "imported".into() } else { name }
}
