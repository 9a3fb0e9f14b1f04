//! The page: one self-contained HTML document (inline CSS, inline SVG, one small inline script
//! that opens every `<details>` before printing; nothing is fetched). The run, its DAG, its
//! steps and its timeline are written here; the sections after them in `sections`.

use std::fmt::Write;

use serde_json::Value;

use super::dag_svg;
use super::model::{Header, Placement, Report, StepView};
use super::sections;
use super::text::{badge, details, duration, esc, json_pre, offset, status_label, time};
use super::timeline;

const STYLE: &str = include_str!("style.css");

/// Statuses in the order the legend lists them.
const STATUSES: [&str; 9] = [
    "succeeded",
    "failed",
    "fell_back",
    "skipped",
    "cancelled",
    "waiting",
    "running",
    "retry_scheduled",
    "not_started",
];

/// The whole page for `report`.
pub fn page(report: &Report) -> String {
    let h = &report.header;
    let mut out = String::with_capacity(64 * 1024);
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{} · run {} · {}</title><style>{STYLE}</style></head>\n",
        esc(&h.workflow),
        esc(&h.run_id),
        esc(&status_label(&h.status))
    );
    let _ = write!(out, r#"<body data-run-id="{}" data-run-status="{}">"#, esc(&h.run_id), esc(&h.status));
    header(&mut out, h);
    nav(&mut out);
    dag(&mut out, report);
    steps_table(&mut out, report);
    timeline_section(&mut out, report);
    sections::decisions(&mut out, report);
    sections::tasks(&mut out, report);
    sections::memory(&mut out, report);
    sections::cost(&mut out, report);
    sections::chain(&mut out, report);
    out.push_str(concat!(
        "<footer>Written by <code>baton report</code>. Self-contained: everything is in this file.</footer>\n",
        "<script>window.addEventListener('beforeprint',function(){",
        "document.querySelectorAll('details').forEach(function(d){d.open=true;});});</script>\n",
        "</body></html>\n"
    ));
    out
}

fn header(out: &mut String, h: &Header) {
    let version = h.version.as_ref().map(|v| format!(" <span class=\"version\">v{}</span>", esc(&plain(v))));
    let _ = write!(
        out,
        r#"<header id="run"><h1>{}{} {}</h1>"#,
        esc(&h.workflow),
        version.unwrap_or_default(),
        badge(&h.status)
    );
    if let Some(d) = &h.description {
        let _ = write!(out, r#"<p class="description">{}</p>"#, esc(d));
    }
    let end = h.ended_at.unwrap_or(h.last_at);
    let ended = match h.ended_at {
        Some(t) => esc(&time(t)),
        None => "not yet".into(),
    };
    let lasted = if h.ended_at.is_some() { "" } else { " so far" };
    let _ = write!(
        out,
        "<dl class=\"facts\"><dt>Run</dt><dd><code>{}</code></dd><dt>Status</dt><dd>{}</dd>\
         <dt>Started</dt><dd>{}</dd><dt>Ended</dt><dd>{ended}</dd><dt>Duration</dt><dd>{}{lasted}</dd>\
         <dt>Definition</dt><dd><code>{}</code></dd>",
        esc(&h.run_id),
        badge(&h.status),
        esc(&time(h.created_at)),
        esc(&duration(end.saturating_sub(h.created_at))),
        esc(&h.definition.chars().take(12).collect::<String>()),
    );
    if let Some((run, node)) = &h.parent {
        let _ = write!(out, "<dt>Parent</dt><dd>run <code>{}</code>, node <code>{}</code></dd>", esc(run), esc(node));
    }
    out.push_str("</dl><div class=\"io\">");
    let _ = write!(out, r#"<div><h3>Input</h3><pre id="run-input">{}</pre></div>"#, json_pre(&h.input));
    if !h.error.is_null() {
        let _ =
            write!(out, r#"<div><h3>Error</h3><pre id="run-error" class="error">{}</pre></div>"#, json_pre(&h.error));
    } else if h.status == "succeeded" {
        let _ = write!(out, r#"<div><h3>Output</h3><pre id="run-output">{}</pre></div>"#, json_pre(&h.output));
    } else {
        out.push_str(r#"<div><h3>Output</h3><p class="muted">none yet: the run has not ended</p></div>"#);
    }
    out.push_str("</div></header>\n");
}

/// A JSON scalar as text (`2`, `1.0.3`), anything else as JSON.
fn plain(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn nav(out: &mut String) {
    out.push_str(concat!(
        r##"<nav><a href="#dag">DAG</a><a href="#steps">Steps</a><a href="#timeline">Timeline</a>"##,
        r##"<a href="#decisions">Decisions</a><a href="#tasks">Human tasks</a><a href="#memory">Memory</a>"##,
        r##"<a href="#cost">Cost</a><a href="#audit-chain">Audit chain</a></nav>"##,
        "\n"
    ));
}

fn dag(out: &mut String, report: &Report) {
    out.push_str(r#"<section id="dag"><h2>DAG</h2><div class="scroll">"#);
    out.push_str(&dag_svg::svg(&report.steps));
    out.push_str(r#"</div><ul class="legend">"#);
    for s in STATUSES {
        let _ = write!(out, r#"<li><span class="swatch st-{s}"></span>{}</li>"#, status_label(s));
    }
    out.push_str(concat!(
        r#"<li><span class="swatch edge-key"></span>needs</li>"#,
        r#"<li><span class="swatch edge-key role"></span>fallback / compensate</li></ul>"#,
        r#"<p class="muted">Columns are dependency depth. A loop's body steps and an agent's tools are rows "#,
        "inside their step; a for_each step is one box with its items counted.</p></section>\n"
    ));
}

fn placement(s: &StepView) -> String {
    match &s.placement {
        Placement::Top if s.needs.is_empty() => "starts at once".into(),
        Placement::Top => format!("needs {}", s.needs.iter().map(|n| esc(n)).collect::<Vec<_>>().join(", ")),
        Placement::Body(l) => format!("body of loop {}", esc(l)),
        Placement::AgentTool(a) => format!("tool of agent {}", esc(a)),
        Placement::Role(served) if served.is_empty() => "not in the DAG".into(),
        Placement::Role(served) => {
            served.iter().map(|(k, of)| format!("{} of {}", k.as_str(), esc(of))).collect::<Vec<_>>().join(", ")
        }
    }
}

fn steps_table(out: &mut String, report: &Report) {
    let t0 = report.header.created_at;
    out.push_str(concat!(
        r#"<section id="steps"><h2>Steps</h2><table class="steps"><thead><tr><th>Step</th><th>Tool</th>"#,
        "<th>Where</th><th>Status</th><th>Attempts</th><th>Started</th><th>Took</th><th>Why / error</th>",
        "<th>Output</th></tr></thead><tbody>"
    ));
    for s in &report.steps {
        let (id, status) = (esc(&s.id), esc(&s.status));
        let mut attempts = s.attempts.to_string();
        if let Some(it) = s.items {
            attempts = format!("{attempts} over {} items ({} ok, {} failed)", it.total, it.succeeded, it.failed);
            if it.other > 0 {
                attempts = format!("{attempts}, {} not ended", it.other);
            }
        } else if let Some(n) = s.iterations {
            attempts = format!("{n} iterations");
        }
        let started = s.started_at.map(|t| offset(t, t0)).unwrap_or_default();
        let took = match (s.started_at, s.ended_at) {
            (Some(a), Some(b)) => esc(&duration(b.saturating_sub(a))),
            _ => String::new(),
        };
        let mut why = s.reason.as_deref().map(esc).unwrap_or_default();
        if let Some(e) = s.error.as_object() {
            let kind = e.get("kind").and_then(Value::as_str).unwrap_or("");
            let msg = e.get("message").and_then(Value::as_str).unwrap_or("");
            let _ = write!(why, r#"<div class="error"><code>{}</code> {}</div>"#, esc(kind), esc(msg));
        }
        if let Some(stale) = &s.stale {
            let age = stale.get("age_ms").and_then(Value::as_u64).map(duration).unwrap_or_default();
            let _ = write!(why, r#"<div class="muted">served a kept response, {} old</div>"#, esc(&age));
        }
        if s.conditional {
            why.push_str(r#" <span class="muted">(has <code>when</code>)</span>"#);
        }
        let output = if s.output.is_null() { String::new() } else { details("output", &s.output) };
        let _ = write!(
            out,
            r#"<tr data-step="{id}" data-status="{status}"><td><code>{id}</code></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{started}</td><td>{took}</td><td>{why}</td><td>{output}</td></tr>"#,
            esc(&s.tool),
            placement(s),
            badge(&s.status),
            esc(&attempts),
        );
    }
    out.push_str("</tbody></table></section>\n");
}

fn timeline_section(out: &mut String, report: &Report) {
    let h = &report.header;
    let t1 = h.ended_at.unwrap_or(h.last_at).max(h.last_at);
    out.push_str(r#"<section id="timeline"><h2>Timeline</h2>"#);
    if report.rows.is_empty() {
        out.push_str(r#"<p class="muted">No step has started.</p></section>"#);
        return;
    }
    let (svg, cut) = timeline::svg(&report.rows, h.created_at, t1);
    let _ = write!(out, r#"<div class="scroll">{svg}</div>"#);
    if cut > 0 {
        let _ = write!(out, r#"<p class="muted">{cut} more nodes are not drawn.</p>"#);
    }
    out.push_str(concat!(
        r#"<ul class="legend"><li><span class="swatch bar-key o-succeeded"></span>attempt succeeded</li>"#,
        r#"<li><span class="swatch bar-key o-failed"></span>attempt failed</li>"#,
        r#"<li><span class="swatch bar-key o-running"></span>attempt running</li>"#,
        r#"<li><span class="swatch bar-key wait"></span>waiting (person, timer, event)</li>"#,
        r#"<li><span class="swatch backoff-key"></span>backoff before a retry</li>"#,
        r#"<li><span class="swatch span-key"></span>node without calls of its own (for_each, loop, skipped)</li></ul>"#,
        "</section>\n"
    ));
}
