//! Checks and compiles the workflow-level fields: `defaults`, `network`, `triggers`,
//! `connections` and `memory`. Each reports through [`Problems`] at its own pointer.

use std::collections::HashMap;

use serde_json::Value;

use super::problems::Problems;
use super::tools;
use super::types::PlannedMemory;
use crate::expr::Template;
use crate::model::{MemoryLayer, Trigger, Workflow};

/// `defaults.<tool>` may set only the `with` fields the tool lets a workflow default (for
/// `llm`, every field but the two that are the step's own work).
pub(super) fn check_defaults(wf: &Workflow, p: &mut Problems) {
    let Some(d) = wf.defaults.as_ref() else { return };
    for (tool, defaults) in [("llm", &d.llm), ("agent", &d.agent)] {
        let (Some(defaults), Some(spec)) = (defaults, tools::spec(tool)) else { continue };
        for k in defaults.keys().filter(|k| !spec.defaults.contains(&k.as_str())) {
            p.err(
                format!("/defaults/{tool}/{k}"),
                format!("`{k}` cannot be a default of `{tool}` steps; known: {}", spec.defaults.join(", ")),
            );
        }
    }
}

/// `network.allow_hosts` entries are compared with URL hosts as text, so a scheme, port or path
/// would make an entry that never matches: the policy would silently refuse every call.
pub(super) fn check_network(wf: &Workflow, p: &mut Problems) {
    check_secret_scopes(wf, p);
    let Some(net) = &wf.network else { return };
    for (i, entry) in net.allow_hosts.iter().enumerate() {
        if !host_name(entry.strip_prefix("*.").unwrap_or(entry)) {
            p.err(
                format!("/network/allow_hosts/{i}"),
                format!(
                    "`{entry}` is not a host name: write `api.example.com` or `*.example.com` (subdomains), \
                     without scheme, port or path"
                ),
            );
        }
    }
}

/// A secret's scope names hosts as `allow_hosts` does and connections the workflow has; an empty
/// scope would make the secret unusable, so it is refused.
fn check_secret_scopes(wf: &Workflow, p: &mut Problems) {
    for (name, scope) in &wf.secrets {
        let at = format!("/secrets/{name}");
        if !crate::expr::valid_secret_name(name) {
            p.err(&at, format!("`{name}` is not a secret name: 1 to 1024 of `A-Z a-z 0-9 _ . / - : + = @`"));
        }
        if scope.hosts.is_empty() && scope.connections.is_empty() {
            p.err(&at, format!("secret `{name}` lists no `hosts` and no `connections`: it could go nowhere"));
        }
        for (i, h) in scope.hosts.iter().enumerate() {
            if !host_name(h.strip_prefix("*.").unwrap_or(h)) {
                p.err(
                    format!("{at}/hosts/{i}"),
                    format!("`{h}` is not a host name: write `api.example.com` or `*.example.com`, without scheme, port or path"),
                );
            }
        }
        for (i, c) in scope.connections.iter().enumerate() {
            if !wf.connections.contains_key(c) {
                let known: Vec<&str> = wf.connections.keys().map(String::as_str).collect();
                p.err(
                    format!("{at}/connections/{i}"),
                    format!("no connection `{c}` in `connections` (known: {})", known.join(", ")),
                );
            }
        }
    }
}

fn host_name(h: &str) -> bool {
    h.len() <= 253
        && h.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

/// Event patterns as EventBridge accepts them, schedules as EventBridge Scheduler does.
pub(super) fn check_triggers(wf: &Workflow, p: &mut Problems) {
    for (i, t) in wf.triggers.iter().enumerate() {
        match t {
            Trigger::Event { event } => {
                if let Err(e) = crate::pattern::check(event) {
                    p.err(format!("/triggers/{i}/event"), format!("invalid event pattern: {e}"));
                }
            }
            Trigger::Schedule { schedule } => {
                if let Err(e) = check_schedule(schedule) {
                    p.err(format!("/triggers/{i}/schedule"), e);
                }
            }
        }
    }
}

/// `rate(<n> <unit>)`, `cron(<6 fields>)` or `at(<yyyy-mm-ddThh:mm:ss>)`, as EventBridge Scheduler
/// takes them.
fn check_schedule(expr: &str) -> Result<(), String> {
    let bad =
        || format!("invalid schedule `{expr}`: write rate(5 minutes), cron(0 12 * * ? *) or at(2026-12-01T09:00:00)");
    let inner = |prefix: &str| expr.strip_prefix(prefix).and_then(|r| r.strip_suffix(')'));
    if let Some(r) = inner("rate(") {
        let (n, unit) = r.trim().split_once(' ').ok_or_else(bad)?;
        let n: u64 = n.parse().map_err(|_| bad())?;
        let ok_unit = matches!((n, unit), (1, "minute" | "hour" | "day") | (2.., "minutes" | "hours" | "days"));
        return if ok_unit { Ok(()) } else { Err(bad()) };
    }
    if let Some(r) = inner("cron(") {
        return if r.split_whitespace().count() == 6 { Ok(()) } else { Err(bad()) };
    }
    if let Some(r) = inner("at(") {
        return humantime::parse_rfc3339_weak(r).map(|_| ()).map_err(|_| bad());
    }
    Err(bad())
}

/// The workflow's `memory`: an entity expression that reads only the input (it is evaluated
/// before any step runs) and a summary expression.
pub(super) fn memory(wf: &Workflow, p: &mut Problems) -> Option<PlannedMemory> {
    let m = wf.memory.as_ref()?;
    let entity = p.expr("/memory/entity", &m.entity);
    if let Some(e) = &entity
        && (e.refs().dynamic || e.refs().steps().next().is_some())
    {
        p.err("/memory/entity", "`entity` is evaluated when the run starts: it may read `.input`, not `.steps`");
    }
    let summary = m.summary.as_deref().and_then(|s| p.expr("/memory/summary", s));
    let load = |layer| m.load.contains(&layer);
    Some(PlannedMemory {
        entity: entity?,
        facts: load(MemoryLayer::Facts),
        episodes: if load(MemoryLayer::Episodes) { m.episodes.unwrap_or(10) } else { 0 },
        summary,
    })
}

/// The workflow's connections as `http` arguments; each is checked: an http(s) base URL,
/// exactly one auth method, a duration.
pub(super) fn connections(wf: &Workflow, p: &mut Problems) -> HashMap<String, Template> {
    let mut out = HashMap::new();
    for (name, c) in &wf.connections {
        let ptr = format!("/connections/{name}");
        let base = c.base_url.trim();
        if !(base.starts_with("https://") || base.starts_with("http://") || base.starts_with("{{")) {
            p.err(format!("{ptr}/base_url"), "`base_url` must start with https:// (or http://)");
        }
        let mut headers: serde_json::Map<String, Value> =
            c.headers.iter().map(|(k, v)| (k.clone(), Value::String(v.clone()))).collect();
        let mut sigv4 = Value::Null;
        if let Some(auth) = &c.auth {
            match (&auth.bearer, &auth.api_key, &auth.aws_sigv4) {
                (Some(token), None, None) => {
                    headers.insert("Authorization".into(), Value::String(format!("Bearer {token}")));
                }
                (None, Some(key), None) => {
                    headers.insert(key.header.clone(), Value::String(key.value.clone()));
                }
                (None, None, Some(s)) => {
                    if s.service.trim().is_empty() {
                        p.err(
                            format!("{ptr}/auth/aws_sigv4/service"),
                            "the service's signing name, e.g. `execute-api`",
                        );
                    }
                    sigv4 = serde_json::to_value(s).unwrap_or(Value::Null);
                }
                _ => p.err(format!("{ptr}/auth"), "`auth` takes exactly one of `bearer`, `api_key` or `aws_sigv4`"),
            }
        }
        if let Some(t) = &c.timeout {
            p.duration(format!("{ptr}/timeout"), t);
        }
        let mut limits = serde_json::Map::new();
        if let Some(r) = &c.rate_limit {
            let per = p.duration(format!("{ptr}/rate_limit/per"), &r.per);
            if r.requests == 0 {
                p.err(format!("{ptr}/rate_limit/requests"), "`requests` is at least 1");
            }
            if let Some(per) = per {
                limits.insert("rate_limit".into(), serde_json::json!({"requests": r.requests, "per_ms": per.0}));
            }
        }
        if let Some(b) = &c.circuit_breaker {
            let cooldown = p.duration(format!("{ptr}/circuit_breaker/cooldown"), &b.cooldown);
            if b.failures == 0 {
                p.err(format!("{ptr}/circuit_breaker/failures"), "`failures` is at least 1");
            }
            if let Some(c) = cooldown {
                limits
                    .insert("circuit_breaker".into(), serde_json::json!({"failures": b.failures, "cooldown_ms": c.0}));
            }
        }
        let args = serde_json::json!({
            "url": base.trim_end_matches('/'),
            "headers": headers,
            "timeout": c.timeout,
            "allow_private": c.allow_private,
            "max_response_bytes": c.max_response_bytes,
            "sigv4": sigv4,
            "limits": limits,
        });
        if let Some(t) = p.template(&ptr, &args) {
            // A connection serves every step, so it cannot depend on any one step's upstream.
            if let Some(step) = t.refs().steps().next() {
                p.err(
                    ptr.clone(),
                    format!("reads `.steps.{step}`: a connection may read `.input` and `secret()`, not steps"),
                );
            }
            out.insert(name.clone(), t);
        }
    }
    out
}

/// The workflow's `budget`: each limit above 0; problems at `/budget/<field>`.
pub(super) fn run_budget(b: &crate::model::SpendLimits, p: &mut Problems) -> Option<super::types::Budget> {
    let before = p.len();
    for (field, v) in [
        ("max_input_tokens", b.max_input_tokens),
        ("max_output_tokens", b.max_output_tokens),
        ("max_tokens", b.max_tokens),
    ] {
        if v == Some(0) {
            p.err(format!("/budget/{field}"), format!("`{field}` is a whole number above 0"));
        }
    }
    if b.max_usd.is_some_and(|x| !(x > 0.0 && x.is_finite())) {
        p.err("/budget/max_usd", "`max_usd` is a number above 0");
    }
    if b.max_input_tokens.is_none() && b.max_output_tokens.is_none() && b.max_tokens.is_none() && b.max_usd.is_none() {
        p.err("/budget", "`budget` needs at least one of max_input_tokens, max_output_tokens, max_tokens, max_usd");
    }
    (p.len() == before).then_some(super::types::Budget {
        max_input_tokens: b.max_input_tokens,
        max_output_tokens: b.max_output_tokens,
        max_tokens: b.max_tokens,
        max_usd: b.max_usd,
        max_tool_calls: None,
        max_duration: None,
    })
}

/// Compiles the workflow's `sensitive` paths: `input[.key...]` or `steps.<id>.output[.key...]`.
pub(super) fn sensitive(
    wf: &Workflow,
    index: &HashMap<String, super::types::StepIx>,
    p: &mut Problems,
) -> Vec<super::types::SensitivePath> {
    let mut out = Vec::new();
    for (i, path) in wf.sensitive.iter().enumerate() {
        let ptr = format!("/sensitive/{i}");
        let parts: Vec<&str> = path.split('.').collect();
        if let Some(bad) =
            parts.iter().find(|k| k.is_empty() || !k.chars().all(|c| c.is_alphanumeric() || c == '_' || c == '-'))
        {
            let why = if bad.is_empty() {
                "has an empty field name".to_owned()
            } else {
                format!("`{bad}` is not a field name")
            };
            p.err(ptr, format!("`{path}` {why} (field names are letters, digits, `_` and `-`, joined by `.`)"));
            continue;
        }
        let (step, keys) = match parts.as_slice() {
            ["input", keys @ ..] => (None, keys),
            ["steps", id, "output", keys @ ..] => match index.get(*id) {
                Some(&ix) => (Some(ix), keys),
                None => {
                    let hint = super::dag::hint(index, id);
                    p.err(ptr, format!("`{path}` names step `{id}`, which does not exist{hint}"));
                    continue;
                }
            },
            _ => {
                p.err(ptr, format!("`{path}` is neither `input.<field>...` nor `steps.<id>.output.<field>...`"));
                continue;
            }
        };
        out.push(super::types::SensitivePath { step, keys: keys.iter().map(|k| (*k).to_owned()).collect() });
    }
    out
}
