//! Where a coordinator's random numbers come from: a run's seed (it feeds retry jitter) and the
//! salt of its sensitive fields. Random in production; a seeded sequence in a simulation, so one
//! seed gives one history, and a failing history can be run again.

use std::sync::Mutex;

/// A source of random 64-bit numbers.
pub trait Entropy: Send + Sync {
    /// The next number.
    fn next_u64(&self) -> u64;
}

/// The operating system's randomness (through v4 UUIDs, already at hand).
#[derive(Debug, Default, Clone, Copy)]
pub struct OsEntropy;

impl Entropy for OsEntropy {
    fn next_u64(&self) -> u64 {
        uuid::Uuid::new_v4().as_u64_pair().0
    }
}

/// SplitMix64 from a seed: the same seed gives the same numbers on every platform and in every
/// version of baton (a crate's generator may change its algorithm between releases, and a
/// recorded seed would then replay another history).
#[derive(Debug)]
pub struct SeededEntropy(Mutex<u64>);

impl SeededEntropy {
    /// A sequence that starts from `seed`.
    pub fn new(seed: u64) -> Self {
        Self(Mutex::new(seed))
    }

    /// A number below `n` (0 when `n` is 0).
    pub fn below(&self, n: u64) -> u64 {
        if n == 0 { 0 } else { self.next_u64() % n }
    }

    /// True `per_mille` times in a thousand.
    pub fn chance(&self, per_mille: u64) -> bool {
        self.below(1000) < per_mille
    }
}

impl Entropy for SeededEntropy {
    fn next_u64(&self) -> u64 {
        // The engine's own SplitMix64 (its retry jitter), so there is one copy of it.
        let mut state = self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        baton_core::retry::next_random(&mut state)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_seed_gives_one_sequence() {
        let (a, b) = (SeededEntropy::new(7), SeededEntropy::new(7));
        let xs: Vec<u64> = (0..5).map(|_| a.next_u64()).collect();
        let ys: Vec<u64> = (0..5).map(|_| b.next_u64()).collect();
        assert_eq!(xs, ys);
        assert_ne!(xs[0], xs[1]);
        // SplitMix64's published first output for seed 0 pins the algorithm.
        assert_eq!(SeededEntropy::new(0).next_u64(), 0xE220_A839_7B1D_CDAF);
        assert!((0..100).all(|_| a.below(10) < 10));
    }
}
