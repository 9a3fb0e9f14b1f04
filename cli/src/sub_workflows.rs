//! Sub-workflows a workflow file starts, found beside it: `baton run FILE` publishes them first,
//! so a scenario with child runs runs with one command and no manual `baton publish`.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use anyhow::Result;
use baton_core::Plan;
use baton_core::expr::Template;
use baton_core::plan::StepKind;
use baton_runtime::control::RunControl;
use serde_json::Value;

use crate::definition::load_plan;

/// The workflows `plan` names in `workflow` steps with a literal `name`.
pub fn child_names(plan: &Plan) -> BTreeSet<String> {
    plan.steps
        .iter()
        .filter_map(|s| match &s.kind {
            StepKind::Tool { tool, args: Template::Object(fields) } if tool == "workflow" => {
                fields.iter().find_map(|(k, v)| match (k.as_str(), v) {
                    ("name", Template::Literal(Value::String(n))) => Some(n.clone()),
                    _ => None,
                })
            }
            _ => None,
        })
        .collect()
}

/// Where the definition of child `name` of the workflow in `file` may sit: `<name>.yaml` (or
/// `.yml`, `.json`) beside it, `<name>/workflow.yaml` below its folder, or the sibling folder
/// `../<name>/workflow.yaml` (the layout of `workflows/<name>/`).
pub fn candidates(file: &Path, name: &str) -> Vec<PathBuf> {
    let dir = file.parent().unwrap_or(Path::new("."));
    let mut out: Vec<PathBuf> = ["yaml", "yml", "json"].iter().map(|ext| dir.join(format!("{name}.{ext}"))).collect();
    out.push(dir.join(name).join("workflow.yaml"));
    if let Some(up) = dir.parent() {
        out.push(up.join(name).join("workflow.yaml"));
    }
    out
}

/// Publishes every child definition found beside `file` (and their children in turn), once
/// each; a child found nowhere is left to what is already published. Returns what it published.
pub async fn publish_found(c: &dyn RunControl, file: &Path, plan: &Plan) -> Result<Vec<String>> {
    let mut seen = BTreeSet::from([plan.workflow.name.clone()]);
    let mut todo: Vec<(PathBuf, BTreeSet<String>)> = vec![(file.to_path_buf(), child_names(plan))];
    let mut published = Vec::new();
    while let Some((from, names)) = todo.pop() {
        for name in names {
            if !seen.insert(name.clone()) {
                continue;
            }
            let Some(found) = candidates(&from, &name).into_iter().find(|p| p.is_file()) else { continue };
            let (child, source) = load_plan(&found)?;
            if child.workflow.name != name {
                continue;
            }
            c.publish(&child, &source).await?;
            published.push(format!("{name} ({})", found.display()));
            todo.push((found, child_names(&child)));
        }
    }
    Ok(published)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_child_is_looked_for_beside_below_and_in_a_sibling_folder() {
        let found = candidates(Path::new("workflows/support-agent/workflow.yaml"), "refund-approval");
        let found: Vec<String> = found.iter().map(|p| p.display().to_string()).collect();
        assert_eq!(
            found,
            [
                "workflows/support-agent/refund-approval.yaml",
                "workflows/support-agent/refund-approval.yml",
                "workflows/support-agent/refund-approval.json",
                "workflows/support-agent/refund-approval/workflow.yaml",
                "workflows/refund-approval/workflow.yaml",
            ]
        );
    }
}
