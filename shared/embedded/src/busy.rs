//! What a connection does when another process holds the database's write lock (SQLITE_BUSY):
//! it waits and tries again with exponential backoff and full jitter, for about half a minute,
//! before the error reaches the caller. SQLite's own `busy_timeout` gives up after a fixed time
//! and sleeps in fixed steps, so several `baton` processes on one state directory would fail
//! together under load instead of taking turns.

use std::time::Duration;

/// The first retry waits up to this long (ms); each further one doubles it, up to [`CAP_MS`].
const FIRST_MS: u64 = 1;
/// The longest single wait (ms).
const CAP_MS: u64 = 100;
/// Retries before SQLITE_BUSY reaches the caller: with full jitter, about 30 s of waiting.
pub const MAX_RETRIES: i32 = 600;

/// SQLite's busy handler: `prior` is how many times it was called for this lock already; true
/// means "sleep done, try again".
pub fn retry(prior: i32) -> bool {
    if prior >= MAX_RETRIES {
        return false;
    }
    std::thread::sleep(Duration::from_micros(delay_us(prior, jitter_seed(prior))));
    true
}

/// The wait before retry `prior + 1`: a uniform draw below the capped exponential bound (full
/// jitter), so processes that collided do not collide again in step.
pub fn delay_us(prior: i32, seed: u64) -> u64 {
    let bound_ms = FIRST_MS.saturating_mul(1u64 << prior.clamp(0, 16)).min(CAP_MS);
    let bound_us = bound_ms * 1000;
    seed % bound_us + 1
}

/// A cheap draw that differs between processes and between calls: the clock and the process id
/// through the engine's splitmix64.
fn jitter_seed(prior: i32) -> u64 {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    let mut state = (nanos as u64) ^ (u64::from(std::process::id()) << 32) ^ (prior as u64);
    baton_core::retry::next_random(&mut state)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_grow_to_the_cap_and_stay_within_it() {
        for prior in 0..MAX_RETRIES {
            let bound = (FIRST_MS << prior.clamp(0, 16)).min(CAP_MS) * 1000;
            for seed in [0, 1, 7_777, u64::MAX] {
                let d = delay_us(prior, seed);
                assert!(d >= 1 && d <= bound, "retry {prior}: {d} µs outside 1..={bound}");
            }
        }
        assert_eq!(delay_us(0, 999), 1_000, "the first wait is below 1 ms");
        assert!(delay_us(20, u64::MAX) <= CAP_MS * 1000);
    }

    #[test]
    fn the_handler_gives_up_after_its_retries() {
        assert!(!retry(MAX_RETRIES));
        assert!(retry(0), "the first retry waits and tries again");
    }

    #[test]
    fn the_draws_spread() {
        let draws: std::collections::BTreeSet<u64> = (0..50).map(|_| delay_us(6, jitter_seed(6))).collect();
        assert!(draws.len() > 10, "50 draws gave only {} distinct waits", draws.len());
    }
}
