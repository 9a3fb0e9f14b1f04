//! `Retry` (a list of retriers) into baton's `retry`: one retrier becomes one policy, several a
//! list of policies, which baton applies as the States Language applies retriers (the first
//! whose errors match decides, and each counts its own attempts and backoff).

use serde_json::Value;

use crate::model::{Backoff, Jitter, Retries, Retry};

/// The policy (or policies) for `list`; problems as (field, message).
pub(crate) fn retry(list: &Value, errs: &mut Vec<(String, String)>) -> Option<Retries> {
    let Some(items) = list.as_array() else {
        errs.push(("Retry".into(), "a list of retriers".into()));
        return None;
    };
    let mut policies = Vec::new();
    for (i, r) in items.iter().enumerate() {
        if let Some(p) = retrier(r, &format!("Retry[{i}]"), errs) {
            policies.push(p);
        }
    }
    match policies.len() {
        0 => None,
        1 => policies.pop().map(Retries::One),
        _ => Some(Retries::List(policies)),
    }
}

/// The policies of a state that runs as child runs (a Map, a Parallel with Retry or Catch): a
/// child that fails fails the step with `child_failed`, which `States.ALL` and
/// `States.TaskFailed` cover; a retrier naming other errors covers `child_failed` too, so it
/// retries on any failed child, not only on those errors.
pub(crate) fn through_child(mut r: Retries) -> Retries {
    let widen = |p: &mut Retry| {
        if let Some(on) = &mut p.on
            && !on.iter().all(|e| e == "States.ALL" || e == "States.TaskFailed")
            && !on.iter().any(|e| e == "child_failed")
        {
            on.push("child_failed".into());
        }
    };
    match &mut r {
        Retries::One(p) => widen(p),
        Retries::List(l) => l.iter_mut().for_each(widen),
    }
    r
}

/// One retrier as a policy: `MaxAttempts` counts retries where baton counts attempts, so a
/// retrier with `MaxAttempts: 0` is a policy of one attempt, which still stops the retriers
/// after it from retrying its errors.
fn retrier(r: &Value, at: &str, errs: &mut Vec<(String, String)>) -> Option<Retry> {
    let Some(errors) = r.get("ErrorEquals").and_then(Value::as_array).filter(|a| !a.is_empty()) else {
        errs.push((format!("{at}.ErrorEquals"), "a retrier needs a non-empty `ErrorEquals`".into()));
        return None;
    };
    for k in r.as_object().into_iter().flat_map(|m| m.keys()) {
        if ![
            "ErrorEquals",
            "IntervalSeconds",
            "MaxAttempts",
            "BackoffRate",
            "MaxDelaySeconds",
            "JitterStrategy",
            "Comment",
        ]
        .contains(&k.as_str())
        {
            errs.push((format!("{at}.{k}"), format!("unknown retrier field `{k}`")));
        }
    }
    let max = r.get("MaxAttempts").and_then(Value::as_u64).unwrap_or(3);
    let interval = r.get("IntervalSeconds").and_then(Value::as_f64).unwrap_or(1.0);
    let rate = r.get("BackoffRate").and_then(Value::as_f64).unwrap_or(2.0);
    if rate < 1.0 {
        errs.push((format!("{at}.BackoffRate"), format!("must be at least 1.0, found {rate}")));
    }
    let cap = r.get("MaxDelaySeconds").and_then(Value::as_u64);
    let full = match r.get("JitterStrategy").and_then(Value::as_str) {
        None | Some("NONE") => false,
        Some("FULL") => true,
        Some(other) => {
            errs.push((format!("{at}.JitterStrategy"), format!("`{other}` is not FULL or NONE")));
            false
        }
    };
    let mut on: Vec<String> = Vec::new();
    for e in errors {
        match e.as_str() {
            Some(name) if !on.iter().any(|o| o == name) => on.push(name.to_owned()),
            Some(_) => {}
            None => errs.push((format!("{at}.ErrorEquals"), "error names are strings".into())),
        }
    }
    if on.iter().any(|o| o == "States.ALL") {
        on = vec!["States.ALL".into()];
    }
    let initial_ms = (interval * 1000.0).round().max(0.0) as u64;
    let backoff = if rate <= 1.0 { Backoff::Fixed } else { Backoff::Exponential };
    let max_ms = match cap {
        Some(c) => (c * 1000).max(initial_ms),
        // Without a cap Step Functions grows the delay for every retry; so does the policy.
        None if backoff == Backoff::Exponential => {
            let steps = max.saturating_sub(1).min(30) as i32;
            ((interval * rate.powi(steps)) * 1000.0).round() as u64
        }
        None => initial_ms,
    };
    Some(Retry {
        max_attempts: u32::try_from(max + 1).unwrap_or(u32::MAX),
        backoff,
        multiplier: (backoff == Backoff::Exponential && (rate - 2.0).abs() > f64::EPSILON).then_some(rate),
        initial: Some(format!("{initial_ms}ms")),
        max: Some(format!("{}ms", max_ms.max(initial_ms))),
        jitter: Some(if full { Jitter::Full } else { Jitter::None }),
        on: Some(on),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn one_retrier_maps_exactly() {
        let mut errs = Vec::new();
        let r = retry(
            &json!([{"ErrorEquals": ["Lambda.ServiceException"], "IntervalSeconds": 2, "MaxAttempts": 6, "BackoffRate": 2}]),
            &mut errs,
        );
        let Some(Retries::One(r)) = r else { panic!("one policy: {r:?}") };
        assert!(errs.is_empty());
        assert_eq!(r.max_attempts, 7);
        assert_eq!(r.multiplier, None);
        assert_eq!(r.initial.as_deref(), Some("2000ms"));
        assert_eq!(r.max.as_deref(), Some("64000ms"));
        assert_eq!(r.on, Some(vec!["Lambda.ServiceException".to_owned()]));
        assert_eq!(r.jitter, Some(Jitter::None));
    }

    #[test]
    fn several_retriers_stay_a_list_in_order_with_their_own_rates() {
        let mut errs = Vec::new();
        let r = retry(
            &json!([
                {"ErrorEquals": ["A.B"], "MaxAttempts": 0},
                {"ErrorEquals": ["CustomError"], "MaxAttempts": 2, "BackoffRate": 1.5, "MaxDelaySeconds": 10},
                {"ErrorEquals": ["States.ALL"], "MaxAttempts": 3, "IntervalSeconds": 5, "BackoffRate": 1}
            ]),
            &mut errs,
        );
        assert!(errs.is_empty(), "{errs:?}");
        let Some(Retries::List(list)) = r else { panic!("a list: {r:?}") };
        assert_eq!(list.iter().map(|p| p.max_attempts).collect::<Vec<_>>(), vec![1, 3, 4]);
        assert_eq!(list[1].multiplier, Some(1.5));
        assert_eq!(list[1].max.as_deref(), Some("10000ms"));
        assert_eq!(list[2].backoff, Backoff::Fixed);
        assert_eq!(list[2].on, Some(vec!["States.ALL".to_owned()]));
        let mut errs = Vec::new();
        retry(&json!([{"ErrorEquals": ["X"], "BackoffRate": 0.5}]), &mut errs);
        assert_eq!(errs[0].0, "Retry[0].BackoffRate");
    }
}
