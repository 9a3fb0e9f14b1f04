//! `budget` of an `agent` step: limits on what one attempt of the loop may spend (tokens as the
//! provider reports them, USD as the provider or the price table gives them, tool calls, wall
//! time). Going over one fails the attempt with `budget_exceeded`, the figures in its message.

use serde_json::Value;

use super::spec::StepCx;
use crate::plan::types::Budget;

/// The fields `budget` takes.
const FIELDS: [&str; 6] =
    ["max_input_tokens", "max_output_tokens", "max_tokens", "max_usd", "max_tool_calls", "max_duration"];

/// The step's `budget` (taken out of `with`), or `None`; problems are reported at its fields.
pub(super) fn budget(cx: &mut StepCx<'_>, value: Option<Value>) -> Option<Budget> {
    let bptr = format!("{}/budget", cx.wptr);
    let o = match value? {
        Value::Object(o) => o,
        _ => {
            cx.p.err(&bptr, format!("`budget` is a mapping of {}", FIELDS.join(", ")));
            return None;
        }
    };
    cx.p.unknown_args(Some(&o), &bptr, &FIELDS);
    let whole = |k: &str, p: &mut crate::plan::problems::Problems| match o.get(k) {
        None => None,
        Some(v) => match v.as_u64() {
            Some(n) if n > 0 => Some(n),
            _ => {
                p.err(format!("{bptr}/{k}"), format!("`{k}` is a whole number above 0"));
                None
            }
        },
    };
    let max_input_tokens = whole("max_input_tokens", cx.p);
    let max_output_tokens = whole("max_output_tokens", cx.p);
    let max_tokens = whole("max_tokens", cx.p);
    let max_tool_calls = whole("max_tool_calls", cx.p).map(|n| n.min(u64::from(u32::MAX)) as u32);
    let max_usd = match o.get("max_usd") {
        None => None,
        Some(v) => match v.as_f64() {
            Some(x) if x > 0.0 => Some(x),
            _ => {
                cx.p.err(format!("{bptr}/max_usd"), "`max_usd` is a number above 0");
                None
            }
        },
    };
    let max_duration = match o.get("max_duration") {
        None => None,
        Some(Value::String(d)) => cx.p.duration(format!("{bptr}/max_duration"), d),
        Some(_) => {
            cx.p.err(format!("{bptr}/max_duration"), "expected a duration such as `2m`");
            None
        }
    };
    Some(Budget { max_input_tokens, max_output_tokens, max_tokens, max_usd, max_tool_calls, max_duration })
}
