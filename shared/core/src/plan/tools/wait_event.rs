//! `wait_event`: a wait for an outside event matching an EventBridge pattern, optionally
//! correlated with the run: the event matches when `correlate.event` (jq on the event) equals
//! `correlate.run` (jq on the run context, evaluated when the wait opens).

use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::Value;

use super::spec::{StepCx, ToolSpec};
use crate::plan::types::{Heartbeat, Limit, StepKind};

/// The `with` of a `wait_event` step.
#[derive(Debug, Clone, PartialEq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WaitEventArgs {
    /// The EventBridge event pattern the event must match.
    pub pattern: Value,
    /// Which event is this run's.
    #[serde(default)]
    pub correlate: Option<Correlate>,
    /// Events that keep the wait alive without ending it, and how long it may go without one.
    #[serde(default)]
    pub heartbeat: Option<HeartbeatArgs>,
}

/// `heartbeat` of a `wait_event`: an event matching `pattern` (with the wait's correlation key)
/// restarts the clock; `timeout` without one (or the end) fails the attempt with `timeout`.
#[derive(Debug, Clone, PartialEq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HeartbeatArgs {
    /// The longest the wait may go without a heartbeat, e.g. `5m`, or a template read when the
    /// wait starts giving a duration or a number of seconds.
    #[schemars(regex(pattern = r"^([0-9]+(ms|s|m|h|d)|.*\{\{.*\}\}.*)$"))]
    pub timeout: String,
    /// The EventBridge event pattern of a heartbeat.
    pub pattern: Value,
}

/// How an event is matched with a run.
#[derive(Debug, Clone, PartialEq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Correlate {
    /// jq on the event giving its correlation key.
    pub event: String,
    /// jq on the run context giving the key the event must carry.
    pub run: String,
}

pub(super) const SPEC: ToolSpec = ToolSpec::inline::<WaitEventArgs>("wait_event", compile).escalates();

fn compile(cx: &mut StepCx<'_>) -> Option<StepKind> {
    cx.unknown_args(SPEC.args());
    let wptr = cx.wptr;
    let pattern = match cx.field("pattern") {
        Some(p @ Value::Object(_)) => {
            if let Err(e) = crate::pattern::check(p) {
                cx.p.err(format!("{wptr}/pattern"), format!("invalid event pattern: {e}"));
            }
            Some(p.clone())
        }
        _ => {
            cx.p.err(format!("{wptr}/pattern"), "`wait_event` needs `with.pattern`, an EventBridge event pattern");
            None
        }
    };
    let (mut event_key, mut run_key) = (None, None);
    if let Some(c) = cx.field("correlate") {
        let Value::Object(c) = c else {
            cx.p.err(format!("{wptr}/correlate"), "`correlate` is `{event: <jq on the event>, run: <jq on the run>}`");
            return None;
        };
        for k in c.keys().filter(|k| !["event", "run"].contains(&k.as_str())) {
            cx.p.err(
                format!("{wptr}/correlate/{k}"),
                format!("unknown field `{k}`; `correlate` has `event` and `run`"),
            );
        }
        for (name, slot) in [("event", &mut event_key), ("run", &mut run_key)] {
            match c.get(name) {
                Some(Value::String(src)) => *slot = cx.p.expr(&format!("{wptr}/correlate/{name}"), src),
                _ => cx.p.err(
                    format!("{wptr}/correlate/{name}"),
                    format!(
                        "`correlate.{name}` is needed: a jq expression on the {}",
                        if name == "event" { "event" } else { "run context" }
                    ),
                ),
            }
        }
    }
    let heartbeat = match cx.field("heartbeat") {
        None => None,
        Some(Value::Object(h)) => {
            for k in h.keys().filter(|k| !["timeout", "pattern"].contains(&k.as_str())) {
                cx.p.err(
                    format!("{wptr}/heartbeat/{k}"),
                    format!("unknown field `{k}`; `heartbeat` has `timeout` and `pattern`"),
                );
            }
            let every = match h.get("timeout") {
                Some(v @ Value::String(t)) if t.contains("{{") => {
                    cx.p.template(&format!("{wptr}/heartbeat/timeout"), v).map(Limit::Template)
                }
                Some(Value::String(t)) => cx.p.duration(format!("{wptr}/heartbeat/timeout"), t).map(Limit::Fixed),
                _ => {
                    cx.p.err(
                        format!("{wptr}/heartbeat/timeout"),
                        "`heartbeat.timeout` is needed: a duration such as `5m`",
                    );
                    None
                }
            };
            let beat = match h.get("pattern") {
                Some(p @ Value::Object(_)) => match crate::pattern::check(p) {
                    Ok(()) => Some(p.clone()),
                    Err(e) => {
                        cx.p.err(format!("{wptr}/heartbeat/pattern"), format!("invalid event pattern: {e}"));
                        None
                    }
                },
                _ => {
                    cx.p.err(
                        format!("{wptr}/heartbeat/pattern"),
                        "`heartbeat.pattern` is needed: an EventBridge event pattern",
                    );
                    None
                }
            };
            every.zip(beat).map(|(every, pattern)| Heartbeat { every, pattern })
        }
        Some(_) => {
            cx.p.err(format!("{wptr}/heartbeat"), "`heartbeat` is `{timeout: <duration>, pattern: <event pattern>}`");
            None
        }
    };
    Some(StepKind::WaitEvent { pattern: pattern?, event_key, run_key, heartbeat })
}
