//! Compiling a step's `retry` into the policy the engine applies.

use super::problems::Problems;
use super::structure::did_you_mean;
use super::types::RetryPolicy;
use crate::duration::Millis;
use crate::error_kind::ErrorKind;
use crate::model::{Backoff, Jitter, Retries, Retry, Step};

/// The step's retry policies: one attempt when it has no `retry`, its policy, or its list (each
/// with its own `on`). The kinds a policy retries must be ones a tool attempt can fail with, or
/// the policy would silently never apply.
pub(super) fn retry_policy(p: &mut Problems, s: &Step, ptr: &str) -> Vec<RetryPolicy> {
    match &s.retry {
        None => vec![RetryPolicy::default()],
        Some(Retries::One(r)) => vec![one(p, r, &format!("{ptr}/retry"))],
        Some(Retries::List(list)) => {
            if list.is_empty() {
                p.err(format!("{ptr}/retry"), "a list of retry policies needs at least one");
                return vec![RetryPolicy::default()];
            }
            list.iter()
                .enumerate()
                .map(|(i, r)| {
                    let at = format!("{ptr}/retry/{i}");
                    if r.on.is_none() {
                        p.err(
                            format!("{at}/on"),
                            "each policy of a list names the kinds it retries in `on` (the first that covers a failure applies)",
                        );
                    }
                    one(p, r, &at)
                })
                .collect()
        }
    }
}

/// One policy, its fields at `at`.
fn one(p: &mut Problems, r: &Retry, at: &str) -> RetryPolicy {
    let mut policy = RetryPolicy { max_attempts: r.max_attempts, ..RetryPolicy::default() };
    if r.max_attempts < 1 {
        p.err(format!("{at}/max_attempts"), "must be at least 1 (it counts every attempt, the first included)");
    }
    policy.exponential = r.backoff == Backoff::Exponential;
    policy.jitter = r.jitter.unwrap_or(if policy.exponential { Jitter::Full } else { Jitter::None });
    if let Some(m) = r.multiplier {
        if !policy.exponential {
            p.err(format!("{at}/multiplier"), "`multiplier` applies to `backoff: exponential` only");
        } else if !(m.is_finite() && m >= 1.0) {
            p.err(format!("{at}/multiplier"), format!("must be a number of at least 1, found {m}"));
        } else {
            policy.multiplier = m;
        }
    }
    if let Some(t) = &r.initial {
        policy.initial = p.duration(format!("{at}/initial"), t).unwrap_or(policy.initial);
    }
    policy.max = match &r.max {
        Some(t) => p.duration(format!("{at}/max"), t).unwrap_or(policy.max),
        None => Millis(policy.max.0.max(policy.initial.0)),
    };
    if policy.max < policy.initial {
        p.err(format!("{at}/max"), "`max` is shorter than `initial`");
    }
    if let Some(on) = &r.on {
        policy.on = on.iter().map(ErrorKind::from).collect();
        let known: Vec<&str> = ErrorKind::retryable_names().collect();
        for (n, kind) in policy.on.iter().enumerate() {
            if !kind.is_retryable() {
                let kind = kind.as_str();
                let hint = did_you_mean(kind, &known).map(|s| format!(" (did you mean `{s}`?)")).unwrap_or_default();
                p.err(
                    format!("{at}/on/{n}"),
                    format!(
                        "unknown error kind `{kind}`{hint}; known: {}, and capitalised names of your own or of AWS (`OutOfStock`, `DynamoDB.ConditionalCheckFailedException`, `States.ALL`)",
                        known.join(", ")
                    ),
                );
            }
        }
    }
    policy
}
