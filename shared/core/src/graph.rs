//! Pictures of a plan: Mermaid flowcharts and Graphviz dot.

use crate::plan::{Plan, Scope, StepKind};

/// A Mermaid flowchart of the DAG, with loop bodies as subgraphs and role steps dashed.
pub fn to_mermaid(plan: &Plan) -> String {
    let mut out = String::from("flowchart TD\n");
    for s in &plan.steps {
        if matches!(s.scope, Scope::Body(_)) {
            continue;
        }
        if let StepKind::Loop { body, max_iterations, .. } = &s.kind {
            out.push_str(&format!("  subgraph {}[\"{} (loop, max {max_iterations})\"]\n", mid(&s.id), s.id));
            for &b in body {
                out.push_str(&format!(
                    "    {}[\"{}<br/>{}\"]\n",
                    mid(&plan.steps[b].id),
                    plan.steps[b].id,
                    plan.steps[b].kind.tool_name()
                ));
            }
            for &b in body {
                for &n in &plan.steps[b].needs {
                    out.push_str(&format!("    {} --> {}\n", mid(&plan.steps[n].id), mid(&plan.steps[b].id)));
                }
            }
            out.push_str("  end\n");
        } else {
            let label = match &s.for_each {
                Some((items, c)) => format!(
                    "{}<br/>{} for each item of {}<br/>at most {c} at once",
                    s.id,
                    s.kind.tool_name(),
                    mermaid_text(items.source())
                ),
                None => format!("{}<br/>{}", s.id, s.kind.tool_name()),
            };
            out.push_str(&format!("  {}[\"{label}\"]\n", mid(&s.id)));
        }
    }
    for s in &plan.steps {
        if matches!(s.scope, Scope::Body(_)) {
            continue;
        }
        for &n in &s.needs {
            let edge = if s.when.is_some() { "-- when -->" } else { "-->" };
            out.push_str(&format!("  {} {edge} {}\n", mid(&plan.steps[n].id), mid(&s.id)));
        }
        if let Some(f) = s.fallback {
            out.push_str(&format!("  {} -. fallback .-> {}\n", mid(&s.id), mid(&plan.steps[f].id)));
        }
    }
    let mut comp: Vec<(&usize, &usize)> = plan.compensate.iter().collect();
    comp.sort();
    for (t, u) in comp {
        out.push_str(&format!("  {} -. compensate .-> {}\n", mid(&plan.steps[*t].id), mid(&plan.steps[*u].id)));
    }
    out
}

/// Text inside a quoted Mermaid label: quotes and angle brackets as entity codes, so a jq
/// expression cannot end the label or open a tag.
fn mermaid_text(text: &str) -> String {
    text.replace('"', "#quot;").replace('<', "#lt;").replace('>', "#gt;")
}

/// A Graphviz digraph of the DAG.
pub fn to_dot(plan: &Plan) -> String {
    let mut out = format!("digraph \"{}\" {{\n  rankdir=TB;\n  node [shape=box];\n", plan.workflow.name);
    for s in &plan.steps {
        let style = if s.scope == Scope::Role { ", style=dashed" } else { "" };
        let items = match &s.for_each {
            Some((items, c)) => {
                format!(
                    "\\nfor each item of {}\\nat most {c} at once",
                    items.source().replace('\\', "\\\\").replace('"', "\\\"")
                )
            }
            None => String::new(),
        };
        out.push_str(&format!("  \"{}\" [label=\"{}\\n{}{items}\"{style}];\n", s.id, s.id, s.kind.tool_name()));
    }
    for s in &plan.steps {
        for &n in &s.needs {
            out.push_str(&format!("  \"{}\" -> \"{}\";\n", plan.steps[n].id, s.id));
        }
        if let Scope::Body(l) = s.scope
            && s.needs.is_empty()
        {
            out.push_str(&format!("  \"{}\" -> \"{}\" [label=\"body\", style=dotted];\n", plan.steps[l].id, s.id));
        }
        if let Some(f) = s.fallback {
            out.push_str(&format!("  \"{}\" -> \"{}\" [label=\"fallback\", style=dashed];\n", s.id, plan.steps[f].id));
        }
    }
    let mut comp: Vec<(&usize, &usize)> = plan.compensate.iter().collect();
    comp.sort();
    for (t, u) in comp {
        out.push_str(&format!(
            "  \"{}\" -> \"{}\" [label=\"compensate\", style=dashed];\n",
            plan.steps[*t].id, plan.steps[*u].id
        ));
    }
    out.push_str("}\n");
    out
}

fn mid(id: &str) -> String {
    id.chars().map(|c| if c.is_ascii_alphanumeric() || c == '_' { c } else { '_' }).collect()
}
