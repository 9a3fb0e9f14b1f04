//! Backoff delays and the deterministic random source behind jitter.

use crate::model::Jitter;
use crate::plan::RetryPolicy;

/// The delay before attempt `failed_attempt + 1`, and the un-jittered delay it was drawn from.
pub fn backoff_delay(policy: &RetryPolicy, failed_attempt: u32, rng: &mut u64) -> (u64, u64) {
    let base = if policy.exponential {
        let n = failed_attempt.saturating_sub(1).min(1_000) as i32;
        // In floating point: a multiplier such as 1.5 is not a shift, and the cap bounds it.
        let grown = policy.initial.0 as f64 * policy.multiplier.max(1.0).powi(n);
        if grown.is_finite() && grown < policy.max.0 as f64 { grown.round() as u64 } else { policy.max.0 }
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
            multiplier: 2.0,
            initial: Millis(100),
            max: Millis(1_000),
            jitter: Jitter::None,
            on: vec![],
        };
        let mut rng = 1;
        let delays: Vec<u64> = (1..=6).map(|a| backoff_delay(&p, a, &mut rng).0).collect();
        assert_eq!(delays, vec![100, 200, 400, 800, 1_000, 1_000]);
        let slow = RetryPolicy { multiplier: 1.5, max: Millis(100_000), ..p.clone() };
        let delays: Vec<u64> = (1..=4).map(|a| backoff_delay(&slow, a, &mut rng).0).collect();
        assert_eq!(delays, vec![100, 150, 225, 338]);
        let huge = RetryPolicy { multiplier: 1e300, max: Millis(7_000), ..p };
        assert_eq!(backoff_delay(&huge, 900, &mut rng).0, 7_000);
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
