//! Backoff delays and the deterministic random source behind jitter.

use crate::model::Jitter;
use crate::plan::RetryPolicy;

/// The delay before attempt `failed_attempt + 1`, and the un-jittered delay it was drawn from.
pub fn backoff_delay(policy: &RetryPolicy, failed_attempt: u32, rng: &mut u64) -> (u64, u64) {
    let base = if policy.exponential {
        let shift = failed_attempt.saturating_sub(1).min(40);
        policy.initial.0.saturating_mul(1u64 << shift).min(policy.max.0)
    } else {
        policy.initial.0
    };
    let delay = match policy.jitter {
        Jitter::None => base,
        Jitter::Full => next_random(rng) % (base + 1),
    };
    (delay, base)
}

/// splitmix64: a tiny, well-distributed generator; the state lives in the run state so replay
/// draws the same numbers.
pub fn next_random(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::duration::Millis;

    #[test]
    fn exponential_doubles_and_caps() {
        let p = RetryPolicy {
            max_attempts: 9,
            exponential: true,
            initial: Millis(100),
            max: Millis(1_000),
            jitter: Jitter::None,
            on: vec![],
        };
        let mut rng = 1;
        let delays: Vec<u64> = (1..=6).map(|a| backoff_delay(&p, a, &mut rng).0).collect();
        assert_eq!(delays, vec![100, 200, 400, 800, 1_000, 1_000]);
    }

    #[test]
    fn full_jitter_stays_in_range_and_is_deterministic() {
        let p = RetryPolicy { jitter: Jitter::Full, ..RetryPolicy::default() };
        let (mut a, mut b) = (42, 42);
        for attempt in 1..20 {
            let (d1, base) = backoff_delay(&p, attempt, &mut a);
            let (d2, _) = backoff_delay(&p, attempt, &mut b);
            assert!(d1 <= base);
            assert_eq!(d1, d2);
        }
    }
}
