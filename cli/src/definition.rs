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
        let dir = file.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
        let path = dir.join(mesh);
        if std::env::var_os(MESH_OUTSIDE).is_none() {
            inside(dir, mesh, &path)?;
        }
        let text = std::fs::read_to_string(&path)
            .map_err(|e| format!("cannot read the mesh file `{}`: {e}", path.display()))?;
        Ok((path.display().to_string(), text))
    })
}

/// Set to let `mesh:` name a file outside the workflow's folder.
const MESH_OUTSIDE: &str = "BATON_MESH_OUTSIDE";

/// A mesh file carries credentials' placeholders and hosts for every call of the workflow, so a
/// workflow file may only name one in its own folder (or below): no absolute path, no `..`, and
/// no symbolic link that leads out.
fn inside(dir: &Path, mesh: &str, path: &Path) -> std::result::Result<(), String> {
    use std::path::Component;
    let escapes = Path::new(mesh)
        .components()
        .any(|c| matches!(c, Component::ParentDir | Component::RootDir | Component::Prefix(_)));
    let outside = || {
        format!(
            "`{mesh}` is outside the workflow's folder: a mesh file must be in it or below (set {MESH_OUTSIDE}=1 to allow this)"
        )
    };
    if escapes {
        return Err(outside());
    }
    // A missing file is reported when it is read.
    if let (Ok(real), Ok(base)) = (path.canonicalize(), dir.canonicalize())
        && !real.starts_with(&base)
    {
        return Err(format!("{} (it is a link to `{}`)", outside(), real.display()));
    }
    Ok(())
}
