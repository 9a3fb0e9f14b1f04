//! Per-connection rate limits and circuit breakers of the `http` tool. Their state lives in the
//! worker process: on AWS each worker instance keeps its own (bound the instances with the
//! function's reserved concurrency when a limit must hold for the fleet).

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use baton_core::engine::{ErrorKind, StepError};
use baton_core::plan::tools::CallLimits;

#[derive(Debug)]
struct Bucket {
    tokens: f64,
    /// When the bucket was last filled, in clock milliseconds.
    last_ms: u64,
}

#[derive(Debug, Default)]
struct Breaker {
    failures: u32,
    /// Until when (clock milliseconds) calls fail at once.
    open_until_ms: Option<u64>,
}

/// The rate limits and breakers of every connection this process has called.
#[derive(Debug, Default)]
pub struct ConnectionLimits {
    buckets: Mutex<HashMap<String, Bucket>>,
    breakers: Mutex<HashMap<String, Breaker>>,
}

/// A connection's limits as the engine passes them with a call (`limits` in the call's input).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Limits {
    /// `(requests, per)`.
    pub rate: Option<(u32, Duration)>,
    /// `(failures, cooldown)`.
    pub breaker: Option<(u32, Duration)>,
}

impl Limits {
    /// The limits a call carries; a limit of 0 requests or failures is none.
    pub fn of(limits: Option<&CallLimits>) -> Self {
        let rate = limits.and_then(|l| l.rate_limit).filter(|r| r.requests > 0);
        let breaker = limits.and_then(|l| l.circuit_breaker).filter(|b| b.failures > 0);
        Self {
            rate: rate.map(|r| (r.requests, Duration::from_millis(r.per_ms))),
            breaker: breaker.map(|b| (b.failures, Duration::from_millis(b.cooldown_ms))),
        }
    }
}

impl ConnectionLimits {
    /// How long a call to `connection` must wait for its turn under `(requests, per)`; the
    /// turn is taken, so callers that wait in parallel are spaced out.
    /// `now_ms` is the clock's time (the tool's `Clock`, so a simulated clock drives it).
    pub fn reserve(&self, connection: &str, (requests, per): (u32, Duration), now_ms: u64) -> Duration {
        let mut buckets = self.buckets.lock().unwrap_or_else(PoisonError::into_inner);
        let cap = f64::from(requests);
        let rate = cap / per.as_secs_f64().max(0.001);
        let b = buckets.entry(connection.to_owned()).or_insert(Bucket { tokens: cap, last_ms: now_ms });
        let elapsed = now_ms.saturating_sub(b.last_ms) as f64 / 1000.0;
        b.tokens = (b.tokens + elapsed * rate).min(cap);
        b.last_ms = b.last_ms.max(now_ms);
        b.tokens -= 1.0;
        if b.tokens >= 0.0 { Duration::ZERO } else { Duration::from_secs_f64(-b.tokens / rate) }
    }

    /// Refuses a call while `connection`'s circuit is open (kind `circuit_open`, with how long
    /// it stays open as `retry_after_ms`). Once the cooldown has passed one call goes through;
    /// its failure opens the circuit again.
    pub fn check(&self, connection: &str, now_ms: u64) -> Result<(), StepError> {
        let mut breakers = self.breakers.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(b) = breakers.get_mut(connection) else { return Ok(()) };
        match b.open_until_ms {
            Some(until) if until > now_ms => {
                let left = until - now_ms;
                Err(StepError {
                    kind: ErrorKind::CircuitOpen,
                    message: format!(
                        "connection `{connection}` failed {} times in a row; calls fail at once for another {}",
                        b.failures,
                        baton_core::duration::format_millis(left)
                    ),
                    retry_after_ms: Some(left),
                })
            }
            Some(_) => {
                // Half open: this call probes; until it ends, others wait for the next cooldown.
                b.open_until_ms = None;
                Ok(())
            }
            None => Ok(()),
        }
    }

    /// Counts a call's outcome against `connection`'s circuit: only transient failures count,
    /// as they say the API is down or overloaded rather than the request wrong.
    pub fn record(
        &self,
        connection: &str,
        (failures, cooldown): (u32, Duration),
        result: Result<(), &ErrorKind>,
        now_ms: u64,
    ) {
        let mut breakers = self.breakers.lock().unwrap_or_else(PoisonError::into_inner);
        let b = breakers.entry(connection.to_owned()).or_default();
        match result {
            Err(kind) if kind.is_transient() => {
                b.failures += 1;
                if b.failures >= failures {
                    b.open_until_ms = Some(now_ms.saturating_add(cooldown.as_millis() as u64));
                    tracing::warn!(connection, failures = b.failures, "circuit opened");
                }
            }
            // A request the API refused (4xx) says nothing about its health.
            Err(_) => {}
            Ok(()) => *b = Breaker::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_goes_at_once_and_the_rest_are_spaced_by_the_rate() {
        let l = ConnectionLimits::default();
        let t0: u64 = 1_000_000;
        let rate = (2, Duration::from_secs(1));
        assert_eq!(l.reserve("a", rate, t0), Duration::ZERO);
        assert_eq!(l.reserve("a", rate, t0), Duration::ZERO);
        let third = l.reserve("a", rate, t0);
        assert!((third.as_millis() as i64 - 500).abs() <= 1, "{third:?}");
        let fourth = l.reserve("a", rate, t0);
        assert!((fourth.as_millis() as i64 - 1000).abs() <= 1, "{fourth:?}");
        assert_eq!(l.reserve("b", rate, t0), Duration::ZERO, "connections are apart");
    }

    #[test]
    fn failures_in_a_row_open_the_circuit_until_the_cooldown_then_one_call_probes() {
        let l = ConnectionLimits::default();
        let t0: u64 = 1_000_000;
        let policy = (2, Duration::from_secs(30));
        l.record("shop", policy, Err(&ErrorKind::Http5xx), t0);
        l.record("shop", policy, Err(&ErrorKind::Http4xx), t0);
        l.record("shop", policy, Err(&ErrorKind::CircuitOpen), t0);
        assert!(l.check("shop", t0).is_ok(), "a 4xx (or the breaker's own refusal) does not count");
        l.record("shop", policy, Err(&ErrorKind::Timeout), t0);
        let e = l.check("shop", t0 + 1000).expect_err("open");
        assert_eq!(e.kind, ErrorKind::CircuitOpen);
        assert_eq!(e.retry_after_ms, Some(29_000));
        assert!(l.check("shop", t0 + 31000).is_ok(), "half open: one probe");
        l.record("shop", policy, Err(&ErrorKind::Connect), t0 + 31000);
        assert!(l.check("shop", t0 + 32000).is_err(), "the probe failed: open again");
        l.record("shop", policy, Ok(()), t0 + 70000);
        assert!(l.check("shop", t0 + 70000).is_ok());
    }
}
