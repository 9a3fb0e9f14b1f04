//! The contextual handover a person gets with a task: what the run is about, what happened and
//! why (citing audit records), what is asked, the evidence, and the options. Deterministic: built
//! from the run context and the audit log only.

use serde_json::Value;

use crate::audit::AuditRecord;
use crate::engine::RunState;
use crate::plan::{Plan, StepKind};

/// Decisions worth telling a person about; dispatches and timers are noise here.
const NOTABLE: &[&str] = &[
    "skip",
    "retry",
    "fall_back",
    "fell_back",
    "fail_step",
    "succeed_step",
    "escalate",
    "loop_again",
    "loop_bound",
    "escalate_loop",
];

/// Builds the handover text for the task of node `node` asking `prompt`.
pub fn handover_summary(plan: &Plan, state: &RunState, audit: &[AuditRecord], node: &str, prompt: &str) -> String {
    let mut out = String::new();
    let wf = &plan.workflow;
    out.push_str(&format!("## What this is about\nRun `{}` of workflow `{}`", state.run_id, wf.name));
    if let Some(d) = &wf.description {
        out.push_str(&format!(": {}", d.trim().trim_end_matches('.')));
    }
    out.push_str(&format!(".\nInput: {}\n", abbreviate(&state.input, 300)));

    out.push_str("\n## What happened and why\n");
    let notable: Vec<&AuditRecord> = audit.iter().filter(|r| NOTABLE.contains(&r.decision.as_str())).collect();
    if notable.is_empty() {
        out.push_str("- Nothing notable yet: this is the first decision point.\n");
    }
    for r in notable.iter().rev().take(12).rev() {
        let step = r.step.as_deref().unwrap_or("run");
        out.push_str(&format!("- [audit #{}] `{step}`: {} — {}\n", r.seq, r.decision.replace('_', " "), r.reason));
    }

    out.push_str("\n## What is asked\n");
    out.push_str(if prompt.trim().is_empty() { "A decision: approve or reject." } else { prompt.trim() });
    out.push('\n');

    out.push_str("\n## Evidence\n");
    let step_ix = state.nodes.get(node).map(|n| n.step);
    let needs: Vec<usize> = step_ix.map(|i| plan.steps[i].needs.clone()).unwrap_or_default();
    let evidence: Vec<usize> = if needs.is_empty() {
        state.nodes.values().filter(|n| n.output().is_some() && n.index.is_none()).map(|n| n.step).collect()
    } else {
        needs
    };
    let mut shown = 0;
    for ix in evidence {
        let id = &plan.steps[ix].id;
        if let Some(n) = state.nodes.get(id.as_str()) {
            let out_text = n.output().map(|o| abbreviate(o, 400)).unwrap_or_else(|| "(no output)".into());
            out.push_str(&format!("- `{id}` ({}): {out_text}\n", n.status().as_str()));
            shown += 1;
        }
    }
    if shown == 0 {
        out.push_str("- No step results yet.\n");
    }

    out.push_str("\n## Options\n- approve");
    if let Some(StepKind::Human { form: Some(form), .. }) = step_ix.map(|i| &plan.steps[i].kind) {
        out.push_str(&format!(" (with data matching: {})", abbreviate(form, 300)));
    }
    out.push_str("\n- reject (an answer, not a failure: the workflow decides what a rejection means)\n");
    out
}

fn abbreviate(v: &Value, max: usize) -> String {
    let s = v.to_string();
    if s.chars().count() <= max { s } else { format!("{}…", s.chars().take(max).collect::<String>()) }
}
