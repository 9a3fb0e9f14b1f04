//! The sections after the timeline: every decision with its reason and values, the human tasks,
//! the memory read and written, the cost, and the audit chain's verification.

use std::fmt::Write;

use serde_json::Value;

use super::audit_view::TaskView;
use super::model::{Chain, Report, usage_by_step};
use super::text::{badge, details, duration, esc, json_inline, json_pre, offset, usd};

/// Every audit record, in order, with its values and commands folded away.
pub fn decisions(out: &mut String, report: &Report) {
    let t0 = report.header.created_at;
    let _ = write!(
        out,
        r#"<section id="decisions"><h2>Decisions <span class="count">{} records</span></h2>"#,
        report.audit.len()
    );
    out.push_str(concat!(
        r#"<table class="decisions"><thead><tr><th>#</th><th>When</th><th>Event</th><th>Decision</th>"#,
        "<th>Node</th><th>Reason and values</th></tr></thead><tbody>"
    ));
    for r in &report.audit {
        let node = match (&r.node, r.attempt) {
            (Some(n), Some(a)) => format!("<code>{}</code> #{a}", esc(n)),
            (Some(n), None) => format!("<code>{}</code>", esc(n)),
            _ => r#"<span class="muted">run</span>"#.into(),
        };
        let mut more = String::new();
        if !r.values.is_null() {
            more.push_str(&details("values", &r.values));
        }
        if !r.commands.is_empty() {
            let names: Vec<&str> = r.commands.iter().filter_map(|c| c["command"].as_str()).collect();
            more.push_str(&details(&format!("commands: {}", names.join(", ")), &Value::Array(r.commands.clone())));
        }
        let _ = write!(
            out,
            r#"<tr data-seq="{}" data-decision="{}"><td>{}</td><td>{}</td><td>{}</td><td><b>{}</b></td><td>{node}</td><td>{}{more}</td></tr>"#,
            r.seq,
            esc(&r.decision),
            r.seq,
            offset(r.at, t0),
            esc(&r.kind),
            esc(&r.decision),
            esc(&r.reason),
        );
    }
    out.push_str("</tbody></table></section>\n");
}

/// Human tasks and event waits: the prompt, the handover, who answered what.
pub fn tasks(out: &mut String, report: &Report) {
    out.push_str(r#"<section id="tasks"><h2>Human tasks</h2>"#);
    if report.tasks.is_empty() {
        out.push_str(r#"<p class="muted">The run asked no person and waited for no event.</p>"#);
    }
    for t in &report.tasks {
        task(out, t, report.header.created_at);
    }
    out.push_str("</section>\n");
}

/// A badge coloured like `status` that says `word`.
fn badge_as(status: &str, word: &str) -> String {
    format!(r#"<span class="badge st-{}">{}</span>"#, esc(status), esc(word))
}

fn task(out: &mut String, t: &TaskView, t0: u64) {
    let what = if t.wait.is_some() { "Event wait" } else { "Task" };
    let status =
        t.record.as_ref().map(|r| r.status.clone()).unwrap_or_else(|| {
            if t.resolution.is_some() || t.closed.is_some() { "closed".into() } else { "open".into() }
        });
    let _ = write!(
        out,
        r#"<article class="task" data-task="{}" data-task-step="{}" data-task-status="{}"><h3>{what} <code>{}</code> · step <code>{}</code> {}</h3>"#,
        esc(&t.id),
        esc(&t.step),
        esc(&status),
        esc(&t.id),
        esc(&t.node),
        badge_as(if status == "open" { "waiting" } else { "succeeded" }, &status),
    );
    out.push_str(r#"<dl class="facts">"#);
    if let Some(run) = &t.child_run {
        let _ = write!(out, "<dt>Child run</dt><dd><code>{}</code></dd>", esc(run));
    }
    let seq = t.opened_seq.map(|s| format!(" (audit #{s})")).unwrap_or_default();
    let _ = write!(out, "<dt>Opened</dt><dd>{}{seq}</dd>", offset(t.opened_at, t0));
    if t.wait.is_none() {
        let _ = write!(out, "<dt>Queue</dt><dd><code>{}</code></dd>", esc(&t.queue));
    }
    for e in &t.escalations {
        let _ = write!(
            out,
            "<dt>Escalated</dt><dd>to <code>{}</code> at {} (audit #{})</dd>",
            esc(&e.to),
            offset(e.at, t0),
            e.seq
        );
    }
    if let Some((seq, outcome)) = &t.closed {
        let _ = write!(out, "<dt>Closed</dt><dd>{} (audit #{seq})</dd>", esc(outcome));
    } else if let Some(outcome) = t.record.as_ref().and_then(|r| r.outcome.as_ref()) {
        let _ = write!(out, "<dt>Closed</dt><dd>{}</dd>", esc(outcome));
    }
    out.push_str("</dl>");
    if !t.prompt.is_empty() {
        let _ = write!(out, r#"<h4>Prompt</h4><blockquote class="prompt">{}</blockquote>"#, esc(&t.prompt));
    }
    match t.record.as_ref().map(|r| r.summary.as_str()) {
        Some("") | None => {}
        Some(summary) => {
            let _ = write!(out, r#"<h4>Handover summary</h4><div class="handover">{}</div>"#, esc(summary));
        }
    }
    if let Some(form) = &t.form {
        out.push_str(&details("answer form (JSON Schema)", form));
    }
    if let Some(wait) = &t.wait {
        out.push_str(&details("what ends the wait", wait));
    }
    match &t.resolution {
        Some(r) => {
            let v = &r.values;
            let field = |k: &str| v.get(k).filter(|x| !x.is_null());
            let _ = write!(
                out,
                r#"<div class="answer"><h4>{}</h4><dl class="facts">"#,
                if t.wait.is_some() { "Event" } else { "Answer" }
            );
            if let Some(d) = field("decision") {
                let _ = write!(out, r#"<dt>Decision</dt><dd class="decision">{}</dd>"#, json_inline(d));
            }
            if let Some(by) = field("by") {
                let _ = write!(out, r#"<dt>By</dt><dd class="by">{}</dd>"#, json_inline(by));
            }
            if let Some(c) = field("comment") {
                let _ = write!(out, r#"<dt>Comment</dt><dd class="comment">{}</dd>"#, json_inline(c));
            }
            let _ = write!(
                out,
                "<dt>When</dt><dd>{}, {} after it opened (audit #{})</dd><dt>Audit says</dt><dd>{}</dd></dl>",
                offset(r.at, t0),
                esc(&duration(r.at.saturating_sub(t.opened_at))),
                r.seq,
                esc(&r.reason)
            );
            if let Some(data) = field("data") {
                let _ = write!(out, r#"<h4>Data</h4><pre class="data">{}</pre>"#, json_pre(data));
            } else if t.wait.is_some() {
                out.push_str(&details("event", v));
            }
            out.push_str("</div>");
        }
        None => out.push_str(r#"<p class="muted">Not answered.</p>"#),
    }
    if let Some(note) = &t.note {
        let _ = write!(out, r#"<p class="muted">{}</p>"#, esc(note));
    }
    out.push_str("</article>");
}

/// The memory loaded at the start, `memory` steps' reads and writes, and the episode the run
/// leaves.
pub fn memory(out: &mut String, report: &Report) {
    let m = &report.memory;
    out.push_str(r#"<section id="memory"><h2>Memory</h2>"#);
    if !m.configured && m.ops.is_empty() {
        out.push_str(r#"<p class="muted">This workflow has no <code>memory</code> and no memory steps.</p></section>"#);
        return;
    }
    if let Some(loaded) = &m.loaded {
        let entity = loaded.get("entity").map(json_inline).unwrap_or_default();
        let facts = loaded.get("facts").and_then(Value::as_object).map_or(0, |f| f.len());
        let episodes = loaded.get("episodes").and_then(Value::as_array).map_or(0, Vec::len);
        let _ = write!(
            out,
            r#"<p id="memory-loaded">Entity <code>{entity}</code>: {facts} facts and {episodes} episodes loaded into <code>.memory</code> when the run started.</p>"#
        );
        out.push_str(&details("loaded memory", loaded));
    }
    if !m.ops.is_empty() {
        out.push_str(concat!(
            r#"<table class="memory"><thead><tr><th>Node</th><th>Status</th><th>Operation</th>"#,
            "<th>Arguments</th><th>Result</th></tr></thead><tbody>"
        ));
        for op in &m.ops {
            let name = op.input.get("op").map(json_inline).unwrap_or_else(|| "read".into());
            let result = match &op.error {
                Some(e) => format!(r#"<span class="error">{}</span>"#, esc(e)),
                None => format!("<pre>{}</pre>", json_pre(&op.output)),
            };
            let _ = write!(
                out,
                r#"<tr data-memory-node="{}" data-op="{name}"><td><code>{}</code></td><td>{}</td><td>{name}</td><td><pre>{}</pre></td><td>{result}</td></tr>"#,
                esc(&op.node),
                esc(&op.node),
                badge(&op.status),
                json_pre(&op.input)
            );
        }
        out.push_str("</tbody></table>");
    }
    match &m.episode {
        Some(e) => {
            let _ = write!(
                out,
                r#"<h3>Episode written</h3><p id="memory-episode">{}</p>"#,
                esc(e.get("summary").and_then(Value::as_str).unwrap_or(""))
            );
            out.push_str(&details("episode", e));
        }
        None if m.configured => out.push_str(
            r#"<p class="muted">No episode yet: it is written when the run ends (and only with an entity).</p>"#,
        ),
        None => {}
    }
    out.push_str("</section>\n");
}

/// Token usage and USD per model step, their total, and the backend's infrastructure estimate.
pub fn cost(out: &mut String, report: &Report) {
    let c = &report.cost;
    out.push_str(r#"<section id="cost"><h2>Cost</h2>"#);
    if c.calls.is_empty() {
        out.push_str(r#"<p class="muted">No model calls: no <code>llm</code> or <code>agent</code> step reported token usage.</p>"#);
    } else {
        out.push_str(concat!(
            r#"<table class="cost"><thead><tr><th>Step</th><th>Model</th><th>Calls</th><th>Prompt tokens</th>"#,
            "<th>Completion tokens</th><th>Total tokens</th><th>USD</th></tr></thead><tbody>"
        ));
        let (mut prompt, mut completion, mut total, mut usd_sum, mut unpriced) = (0, 0, 0, 0.0, 0);
        for (step, sum) in usage_by_step(&c.calls) {
            let calls = c.calls.iter().filter(|x| x.step == step).count();
            unpriced += c.calls.iter().filter(|x| x.step == step && x.cost_usd.is_none()).count();
            prompt += sum.prompt_tokens;
            completion += sum.completion_tokens;
            total += sum.total_tokens;
            usd_sum += sum.cost_usd.unwrap_or(0.0);
            let _ = write!(
                out,
                r#"<tr data-cost-step="{}"><td><code>{}</code></td><td>{}</td><td>{calls}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>"#,
                esc(&step),
                esc(&step),
                esc(&sum.model),
                sum.prompt_tokens,
                sum.completion_tokens,
                sum.total_tokens,
                sum.cost_usd.map(usd).unwrap_or_else(|| "not reported".into())
            );
        }
        let _ = write!(
            out,
            r#"<tr class="total" id="cost-total"><td>Total</td><td></td><td>{}</td><td>{prompt}</td><td>{completion}</td><td>{total}</td><td>{}</td></tr></tbody></table>"#,
            c.calls.len(),
            if unpriced == c.calls.len() { "not reported".into() } else { usd(usd_sum) }
        );
        out.push_str(concat!(
            r#"<details><summary>each model call</summary><table class="cost"><thead><tr><th>Audit #</th><th>Node</th>"#,
            "<th>Prompt</th><th>Completion</th><th>Total</th><th>USD</th></tr></thead><tbody>"
        ));
        for call in &c.calls {
            let attempt = call.attempt.map(|a| format!(" #{a}")).unwrap_or_default();
            let _ = write!(
                out,
                "<tr><td>{}</td><td><code>{}</code>{attempt}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                call.seq,
                esc(&call.node),
                call.prompt_tokens,
                call.completion_tokens,
                call.total_tokens,
                call.cost_usd.map(usd).unwrap_or_else(|| "not reported".into())
            );
        }
        out.push_str("</tbody></table></details>");
        if unpriced > 0 {
            let _ = write!(
                out,
                r#"<p class="muted">{unpriced} model calls reported no cost (the server sent no <code>usage.cost</code>); the total counts the others.</p>"#
            );
        }
    }
    out.push_str("<h3>Infrastructure</h3>");
    match &c.billing {
        Ok(Some(b)) => {
            let _ = write!(
                out,
                r#"<p id="infra-cost">{} requests, estimated <b>{}</b>.</p>"#,
                json_inline(&b["requests"]),
                usd(b["estimated_usd"].as_f64().unwrap_or(0.0))
            );
            if let Some(ops) = b["by_operation"].as_object() {
                out.push_str(r#"<table class="cost"><thead><tr><th>Operation</th><th>Requests</th></tr></thead><tbody>"#);
                for (k, v) in ops {
                    let _ = write!(out, "<tr><td><code>{}</code></td><td>{}</td></tr>", esc(k), json_inline(v));
                }
                out.push_str("</tbody></table>");
            }
            out.push_str(&details("billing as the backend reports it", b));
        }
        Ok(None) => out.push_str(
            r#"<p id="infra-cost" class="muted">This backend gives no infrastructure estimate (the embedded backend runs on this machine).</p>"#,
        ),
        Err(e) => {
            let _ = write!(out, r#"<p id="infra-cost" class="error">The backend's billing could not be read: {}</p>"#, esc(e));
        }
    }
    out.push_str("</section>\n");
}

/// What `baton audit verify` says about the hash chain.
pub fn chain(out: &mut String, report: &Report) {
    match &report.chain {
        Chain::Intact(n, signed) => {
            let signing = match signed {
                Some(k) => format!(
                    "{k} signed digests verified with the store's audit key (a rewrite with recomputed hashes would not match them)"
                ),
                None => "unsigned: no signed digests (written before signing, or by a store that does not sign)".into(),
            };
            let _ = write!(
                out,
                r#"<section id="audit-chain" data-intact="true" data-signed="{}"><h2>Audit chain</h2><p class="ok">Intact: {n} records, hash chain verified (each record's hash matches its content and links to the one before); {signing}.</p>"#,
                signed.is_some()
            );
        }
        Chain::Broken { seq, message } => {
            let _ = write!(
                out,
                r#"<section id="audit-chain" data-intact="false" data-first-bad="{seq}"><h2>Audit chain</h2><p class="error">NOT intact: the first bad record is #{seq}: {}</p>"#,
                esc(message)
            );
        }
    }
    let _ = write!(
        out,
        r#"<p class="muted">Checked when this report was written; check again with <code>baton audit verify {}</code>.</p></section>"#,
        esc(&report.header.run_id)
    );
    out.push('\n');
}
