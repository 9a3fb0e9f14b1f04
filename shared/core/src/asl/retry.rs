//! `Retry` (a list of retriers) into baton's one `retry` policy per step. One retrier maps
//! exactly (except a `BackoffRate` other than 1 or 2); several are merged (their errors united,
//! the most attempts, the first one's timing) and the merge is said in a note on the step.

use serde_json::Value;

use crate::model::{Backoff, Jitter, Retry};

/// The policy for `list`, the notes saying what was approximated, and problems as (field, message).
pub(crate) fn retry(list: &Value, errs: &mut Vec<(String, String)>) -> (Option<Retry>, Vec<String>) {
    let mut notes = Vec::new();
    let Some(items) = list.as_array() else {
        errs.push(("Retry".into(), "a list of retriers".into()));
        return (None, notes);
    };
    let mut on: Vec<String> = Vec::new();
    let mut attempts = 0u64;
    let mut first: Option<(f64, f64, Option<u64>, bool)> = None;
    let mut differ = false;
    for (i, r) in items.iter().enumerate() {
        let at = format!("Retry[{i}]");
        let Some(errors) = r.get("ErrorEquals").and_then(Value::as_array).filter(|a| !a.is_empty()) else {
            errs.push((format!("{at}.ErrorEquals"), "a retrier needs a non-empty `ErrorEquals`".into()));
            continue;
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
        if max == 0 {
            notes.push(format!("retrier {i} (MaxAttempts 0: never retried) is left out"));
            continue;
        }
        let interval = r.get("IntervalSeconds").and_then(Value::as_f64).unwrap_or(1.0);
        let rate = r.get("BackoffRate").and_then(Value::as_f64).unwrap_or(2.0);
        let cap = r.get("MaxDelaySeconds").and_then(Value::as_u64);
        let full = match r.get("JitterStrategy").and_then(Value::as_str) {
            None | Some("NONE") => false,
            Some("FULL") => true,
            Some(other) => {
                errs.push((format!("{at}.JitterStrategy"), format!("`{other}` is not FULL or NONE")));
                false
            }
        };
        for e in errors {
            match e.as_str() {
                Some(name) if !on.iter().any(|o| o == name) => on.push(name.to_owned()),
                Some(_) => {}
                None => errs.push((format!("{at}.ErrorEquals"), "error names are strings".into())),
            }
        }
        attempts = attempts.max(max);
        match first {
            None => first = Some((interval, rate, cap, full)),
            Some(f) if f != (interval, rate, cap, full) => differ = true,
            Some(_) => {}
        }
    }
    let Some((interval, rate, cap, full)) = first else { return (None, notes) };
    if differ {
        notes.push(format!(
            "{} retriers merged into one policy: errors {}, up to {attempts} retries, timing of the first",
            items.len(),
            on.join(", ")
        ));
    }
    if on.iter().any(|o| o == "States.ALL") {
        on = vec!["States.ALL".into()];
    }
    let initial_ms = (interval * 1000.0).round().max(0.0) as u64;
    let backoff = if rate <= 1.0 { Backoff::Fixed } else { Backoff::Exponential };
    if rate > 1.0 && (rate - 2.0).abs() > f64::EPSILON {
        notes.push(format!("BackoffRate {rate} becomes doubling (baton's exponential backoff doubles)"));
    }
    let max_ms = match cap {
        Some(c) => (c * 1000).max(initial_ms),
        None if backoff == Backoff::Exponential => {
            let steps = attempts.saturating_sub(1).min(30) as i32;
            ((interval * rate.powi(steps)) * 1000.0).round() as u64
        }
        None => initial_ms,
    };
    let policy = Retry {
        max_attempts: u32::try_from(attempts + 1).unwrap_or(u32::MAX),
        backoff,
        initial: Some(format!("{initial_ms}ms")),
        max: Some(format!("{}ms", max_ms.max(initial_ms))),
        jitter: Some(if full { Jitter::Full } else { Jitter::None }),
        on: Some(on),
    };
    (Some(policy), notes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn one_retrier_maps_exactly() {
        let mut errs = Vec::new();
        let (r, notes) = retry(
            &json!([{"ErrorEquals": ["Lambda.ServiceException"], "IntervalSeconds": 2, "MaxAttempts": 6, "BackoffRate": 2}]),
            &mut errs,
        );
        let r = r.unwrap();
        assert!(errs.is_empty() && notes.is_empty());
        assert_eq!(r.max_attempts, 7);
        assert_eq!(r.initial.as_deref(), Some("2000ms"));
        assert_eq!(r.max.as_deref(), Some("64000ms"));
        assert_eq!(r.on, Some(vec!["Lambda.ServiceException".to_owned()]));
        assert_eq!(r.jitter, Some(Jitter::None));
    }

    #[test]
    fn several_retriers_merge_with_a_note() {
        let mut errs = Vec::new();
        let (r, notes) = retry(
            &json!([{"ErrorEquals": ["A.B"], "MaxAttempts": 2}, {"ErrorEquals": ["States.ALL"], "MaxAttempts": 3, "IntervalSeconds": 5}]),
            &mut errs,
        );
        assert_eq!(r.unwrap().on, Some(vec!["States.ALL".to_owned()]));
        assert_eq!(notes.len(), 1);
    }
}
