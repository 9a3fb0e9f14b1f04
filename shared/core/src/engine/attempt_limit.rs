//! The limit on one attempt of a node: the step's `timeout`, a templated `timeout` read against
//! what the node sees when the attempt starts (a Step Functions `TimeoutSecondsPath`), or its
//! tool's default.

use serde_json::Value;

use super::context::{node_context, visible_for};
use super::types::{RunState, StepError};
use crate::error_kind::ErrorKind;
use crate::ids::NodeKey;
use crate::plan::Plan;

/// The node's attempt limit in milliseconds (`None`: no limit). A templated `timeout` gives a
/// duration (`"90s"`) or a number of seconds; anything else fails the attempt with kind
/// `expression`, naming the field and the value.
pub(super) fn attempt_limit(plan: &Plan, st: &RunState, key: &NodeKey) -> Result<Option<u64>, StepError> {
    let Some(node) = st.nodes.get(key) else { return Ok(None) };
    let step = &plan.steps[node.step];
    let Some(template) = &step.timeout_from else {
        return Ok(step.attempt_limit().map(|m| m.0));
    };
    let parent_items = key.rsplit_once('[').and_then(|(p, _)| st.nodes.get(p)?.items.as_ref());
    let item = match (&node.index, parent_items) {
        (Some(i), Some(items)) => items.values.get(*i as usize).map(|v| (v, *i)),
        _ => None,
    };
    let ctx = node_context(plan, st, node.iteration, item, Some(&template.refs()), visible_for(plan, st, key));
    let bad = |why: String| StepError::new(ErrorKind::Expression, format!("`timeout` of step `{}`: {why}", step.id));
    let value = template.render(&ctx).map_err(|e| bad(e.to_string()))?;
    millis(&value).map(Some).map_err(bad)
}

/// How long the `wait_event` on `key` may go without a heartbeat (ms): its `heartbeat.timeout`,
/// or the template there read against what the node sees (a Step Functions
/// `HeartbeatSecondsPath`); `None` when the step has no heartbeat.
pub(super) fn heartbeat_every(plan: &Plan, st: &RunState, key: &NodeKey) -> Result<Option<u64>, StepError> {
    let Some(node) = st.nodes.get(key) else { return Ok(None) };
    let step = &plan.steps[node.step];
    let crate::plan::StepKind::WaitEvent { heartbeat: Some(h), .. } = &step.kind else { return Ok(None) };
    let Some(template) = &h.every_from else { return Ok(Some(h.every.0)) };
    let ctx = node_context(plan, st, node.iteration, None, Some(&template.refs()), visible_for(plan, st, key));
    let bad = |why: String| {
        StepError::new(ErrorKind::Expression, format!("`heartbeat.timeout` of step `{}`: {why}", step.id))
    };
    let value = template.render(&ctx).map_err(|e| bad(e.to_string()))?;
    millis(&value).map(Some).map_err(bad)
}

/// A rendered limit: a positive number of seconds, or a duration such as `90s`.
fn millis(v: &Value) -> Result<u64, String> {
    match v {
        Value::Number(n) => match n.as_f64() {
            Some(s) if s > 0.0 && s.is_finite() && s <= 3.2e7 * 10.0 => Ok((s * 1000.0).round() as u64),
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
