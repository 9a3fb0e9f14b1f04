//! Shared mesh files: `mesh: ./mesh.yaml` in a workflow names a file of `connections` many
//! workflows use. The file is read when the workflow is loaded from its file, its connections
//! join the workflow's own (which win), and the definition stored for runs is the merged one,
//! so every run and every coordinator sees the connections the run was started with.

use serde_json::Value;

use super::build::{plan_document, syntax_problem};
use super::types::Plan;
use crate::diagnostics::Problem;
use crate::source::SourceDocument;

/// Loads a workflow, with the mesh file it names read by `read` (given `mesh` as written, it
/// returns the file's name and text, or why it cannot): the plan and the definition source to
/// store, the merged workflow as JSON. Problems in the mesh file name that file; a workflow
/// without `mesh` loads as it is written.
pub fn load_with_mesh(
    file: Option<&str>,
    text: &str,
    read: impl FnOnce(&str) -> Result<(String, String), String>,
) -> Result<(Plan, String), Vec<Problem>> {
    let doc = SourceDocument::parse(text).map_err(|e| syntax_problem(file, e))?;
    let Some(mesh) = doc.value.get("mesh").and_then(Value::as_str) else {
        return plan_document(file, &doc).map(|p| (p, text.to_owned()));
    };
    let (mesh_name, mesh_text) = read(mesh).map_err(|why| {
        let mut p = Problem::at("/mesh", why);
        p.file = file.map(str::to_owned);
        vec![p]
    })?;
    let mesh_name = mesh_name.as_str();
    let mesh_doc = SourceDocument::parse(&mesh_text).map_err(|e| syntax_problem(Some(mesh_name), e))?;
    let in_mesh = |message: String| {
        let mut p = Problem::at("", message);
        p.file = Some(mesh_name.to_owned());
        vec![p]
    };
    let Value::Object(m) = &mesh_doc.value else {
        return Err(in_mesh("a mesh file is a mapping with `connections`".into()));
    };
    if let Some(k) = m.keys().find(|k| k.as_str() != "connections") {
        return Err(in_mesh(format!("unknown field `{k}`: a mesh file holds `connections` only")));
    }
    let shared = match m.get("connections") {
        Some(Value::Object(c)) => c.clone(),
        None => Default::default(),
        Some(_) => return Err(in_mesh("`connections` maps names to connections".into())),
    };
    let mut merged = doc.value.clone();
    let mut from_mesh = Vec::new();
    if let Value::Object(w) = &mut merged {
        w.remove("mesh");
        let own = w.remove("connections").and_then(|c| c.as_object().cloned()).unwrap_or_default();
        from_mesh = shared.keys().filter(|k| !own.contains_key(*k)).cloned().collect();
        let mut all = shared;
        all.extend(own);
        if !all.is_empty() {
            w.insert("connections".into(), Value::Object(all));
        }
    }
    let plan = plan_document(file, &doc.with_value(merged.clone())).map_err(|problems| {
        // A mistake in a shared connection is reported in the mesh file, where it is fixed.
        let (mut theirs, mut ours): (Vec<Problem>, Vec<Problem>) = problems.into_iter().partition(|p| {
            from_mesh.iter().any(|k| {
                p.pointer == format!("/connections/{k}") || p.pointer.starts_with(&format!("/connections/{k}/"))
            })
        });
        for p in &mut theirs {
            p.position = None;
        }
        crate::diagnostics::locate(&mut theirs, Some(mesh_name), &mesh_doc);
        ours.extend(theirs);
        ours
    })?;
    let source = serde_json::to_string_pretty(&merged).unwrap_or_default();
    Ok((plan, source))
}
