//! Limits a definition may leave to a template (a Step Functions `…SecondsPath` or
//! `MaxConcurrencyPath`), read against what the node sees: the limit on one attempt, how long a
//! `wait_event` may go without a heartbeat, and how many `for_each` items run at once. A value
//! the template gives that is not a limit fails with kind `expression`, naming the field.

use serde_json::Value;

use super::context::{item_of, node_context, visible_for};
use super::types::{RunState, StepError};
use crate::error_kind::ErrorKind;
use crate::expr::Template;
use crate::ids::NodeKey;
use crate::plan::{Limit, Plan, StepKind};

/// What `template` gives in the context of the node on `key`, or the error naming `field` of
/// its step.
fn read(plan: &Plan, st: &RunState, key: &NodeKey, template: &Template, field: &str) -> Result<Value, StepError> {
    let Some(node) = st.nodes.get(key) else {
        return Err(StepError::new(ErrorKind::Tool, format!("`{field}`: no node `{key}`")));
    };
    let ctx =
        node_context(plan, st, node.iteration, item_of(st, key), Some(&template.refs()), visible_for(plan, st, key));
    template.render(&ctx).map_err(|e| limit_error(plan, node.step, field, e.to_string()))
}

fn limit_error(plan: &Plan, step: usize, field: &str, why: String) -> StepError {
    StepError::new(ErrorKind::Expression, format!("`{field}` of step `{}`: {why}", plan.steps[step].id))
}

/// What a templated limit gives, in milliseconds; `field` names it in errors.
fn template_millis(plan: &Plan, st: &RunState, key: &NodeKey, t: &Template, field: &str) -> Result<u64, StepError> {
    let v = read(plan, st, key, t, field)?;
    let step = st.nodes.get(key).map_or(0, |n| n.step);
    millis(&v).map_err(|why| limit_error(plan, step, field, why))
}

/// The node's attempt limit in milliseconds (`None`: no limit): the step's `timeout` (fixed or
/// a template read when the attempt starts), else its tool's default.
pub(super) fn attempt_limit(plan: &Plan, st: &RunState, key: &NodeKey) -> Result<Option<u64>, StepError> {
    let Some(node) = st.nodes.get(key) else { return Ok(None) };
    let step = &plan.steps[node.step];
    match &step.timeout {
        Some(Limit::Template(t)) => template_millis(plan, st, key, t, "timeout").map(Some),
        _ => Ok(step.attempt_limit().map(|m| m.0)),
    }
}

/// How long the `wait_event` on `key` may go without a heartbeat (ms); `None` when the step has
/// no heartbeat.
pub(super) fn heartbeat_every(plan: &Plan, st: &RunState, key: &NodeKey) -> Result<Option<u64>, StepError> {
    let Some(node) = st.nodes.get(key) else { return Ok(None) };
    let StepKind::WaitEvent { heartbeat: Some(h), .. } = &plan.steps[node.step].kind else { return Ok(None) };
    match &h.every {
        Limit::Fixed(m) => Ok(Some(m.0)),
        Limit::Template(t) => template_millis(plan, st, key, t, "heartbeat.timeout").map(Some),
    }
}

/// The items of the `for_each` on `key` that may run at once, when its `max_concurrency` is a
/// template (`None` otherwise: the plan's number applies): a whole number from 1 to the largest.
pub(super) fn concurrency(plan: &Plan, st: &RunState, key: &NodeKey) -> Result<Option<u32>, StepError> {
    let Some(node) = st.nodes.get(key) else { return Ok(None) };
    let Some(t) = &plan.steps[node.step].concurrency_from else { return Ok(None) };
    let v = read(plan, st, key, t, "max_concurrency")?;
    let max = crate::plan::MAX_CONCURRENCY_LIMIT;
    match v.as_u64() {
        Some(n) if (1..=u64::from(max)).contains(&n) => Ok(Some(n as u32)),
        _ => Err(limit_error(
            plan,
            node.step,
            "max_concurrency",
            format!("gave {v}, not a whole number from 1 to {max}"),
        )),
    }
}

/// A rendered limit: a positive number of seconds, or a duration such as `90s`.
fn millis(v: &Value) -> Result<u64, String> {
    match v {
        Value::Number(n) => match n.as_f64() {
            Some(s) if s > 0.0 && s.is_finite() && s <= 3.2e8 => Ok((s * 1000.0).round() as u64),
            _ => Err(format!("{n} is not a number of seconds above 0")),
        },
        Value::String(s) => match crate::duration::parse_duration(s.trim()) {
            Ok(d) if d.0 > 0 => Ok(d.0),
            Ok(_) => Err(format!("`{s}` is not a duration above 0")),
            Err(e) => Err(format!("`{s}` is not a duration such as `90s`: {e}")),
        },
        other => Err(format!("gave {other}, not a duration such as `90s` or a number of seconds")),
    }
}

#[cfg(test)]
mod tests {
    use super::millis;
    use serde_json::json;

    #[test]
    fn a_rendered_limit_is_seconds_or_a_duration() {
        assert_eq!(millis(&json!(90)), Ok(90_000));
        assert_eq!(millis(&json!(0.5)), Ok(500));
        assert_eq!(millis(&json!("2m")), Ok(120_000));
        for bad in [json!(0), json!(-3), json!("soon"), json!(null), json!([1])] {
            assert!(millis(&bad).is_err(), "{bad}");
        }
    }
}
