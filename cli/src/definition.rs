//! Reading a workflow file (with the mesh file it names) into a plan.

use std::path::Path;

use anyhow::Result;
use baton_core::Plan;
use baton_runtime::RuntimeError;

use crate::errors::Usage;

/// Loads and checks a workflow file: its plan and the definition source to store.
pub fn load_plan(file: &Path) -> Result<(Plan, String)> {
    let text = std::fs::read_to_string(file).map_err(|e| Usage(format!("cannot read `{}`: {e}", file.display())))?;
    Ok(plan_with_mesh(file, &text).map_err(RuntimeError::InvalidDefinition)?)
}

/// Loads a workflow file with the mesh file it names (relative to the workflow file): the
/// plan and the definition source to store.
pub fn plan_with_mesh(file: &Path, text: &str) -> std::result::Result<(Plan, String), Vec<baton_core::Problem>> {
    let name = file.display().to_string();
    baton_core::plan::load_with_mesh(Some(&name), text, |mesh| {
        let path = file.parent().unwrap_or(Path::new(".")).join(mesh);
        let text = std::fs::read_to_string(&path)
            .map_err(|e| format!("cannot read the mesh file `{}`: {e}", path.display()))?;
        Ok((path.display().to_string(), text))
    })
}
