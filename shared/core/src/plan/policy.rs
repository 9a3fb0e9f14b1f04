//! Compiling a step's `retry` into the policy the engine applies.

use super::problems::Problems;
use super::structure::did_you_mean;
use super::types::RetryPolicy;
use crate::duration::Millis;
use crate::error_kind::ErrorKind;
use crate::model::{Backoff, Jitter, Step};

/// The step's retry policy (one attempt when it has no `retry`); the kinds it retries must be
/// ones a tool attempt can fail with, or the policy would silently never apply.
pub(super) fn retry_policy(p: &mut Problems, s: &Step, ptr: &str) -> RetryPolicy {
    let Some(r) = &s.retry else {
        return RetryPolicy::default();
    };
    let mut policy = RetryPolicy { max_attempts: r.max_attempts, ..RetryPolicy::default() };
    if r.max_attempts < 1 {
        p.err(format!("{ptr}/retry/max_attempts"), "must be at least 1 (it counts every attempt, the first included)");
    }
    policy.exponential = r.backoff == Backoff::Exponential;
    policy.jitter = r.jitter.unwrap_or(if policy.exponential { Jitter::Full } else { Jitter::None });
    if let Some(t) = &r.initial {
        policy.initial = p.duration(format!("{ptr}/retry/initial"), t).unwrap_or(policy.initial);
    }
    policy.max = match &r.max {
        Some(t) => p.duration(format!("{ptr}/retry/max"), t).unwrap_or(policy.max),
        None => Millis(policy.max.0.max(policy.initial.0)),
    };
    if policy.max < policy.initial {
        p.err(format!("{ptr}/retry/max"), "`max` is shorter than `initial`");
    }
    if let Some(on) = &r.on {
        policy.on = on.iter().map(ErrorKind::from).collect();
        let known: Vec<&str> = ErrorKind::retryable_names().collect();
        for (n, kind) in policy.on.iter().enumerate() {
            if !kind.is_retryable() {
                let kind = kind.as_str();
                let hint = did_you_mean(kind, &known).map(|s| format!(" (did you mean `{s}`?)")).unwrap_or_default();
                p.err(
                    format!("{ptr}/retry/on/{n}"),
                    format!(
                        "unknown error kind `{kind}`{hint}; known: {}, and AWS error names (`Service.ErrorName`, `States.ALL`)",
                        known.join(", ")
                    ),
                );
            }
        }
    }
    policy
}
