//! The fault injector every simulated port call goes through: from one seed it decides, at each
//! call, whether the process dies there, the call is throttled, or a write is applied and its
//! reply lost (an ambiguous commit). A dead process fails every later call until the world
//! restarts it.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use baton_runtime::StoreError;
use baton_runtime::entropy::SeededEntropy;

/// One seed's faults.
pub struct Faults {
    rng: SeededEntropy,
    /// Chance of a fault at each port call, per mille; 0 for a fault-free history.
    per_mille: u64,
    /// Set once the history has ended: the checks that follow run without faults.
    quiet: AtomicBool,
    crashed: AtomicBool,
    injected: AtomicUsize,
    log: Mutex<Vec<String>>,
    /// The idempotency key of the call the worker is handling, if any.
    in_flight: Mutex<Option<String>>,
    /// Faults injected while a key's call was in flight: each may make the call run once more.
    faulted_keys: Mutex<BTreeMap<String, u32>>,
}

impl Faults {
    /// Faults from `seed` at `per_mille` of the port calls.
    pub fn new(seed: u64, per_mille: u64) -> Self {
        Self {
            rng: SeededEntropy::new(seed),
            per_mille,
            quiet: AtomicBool::new(false),
            crashed: AtomicBool::new(false),
            injected: AtomicUsize::new(0),
            log: Mutex::new(Vec::new()),
            in_flight: Mutex::new(None),
            faulted_keys: Mutex::new(BTreeMap::new()),
        }
    }

    /// Before a port call: fails it when the process is dead, or kills the process here, or
    /// throttles the call.
    pub fn before(&self, op: &str) -> Result<(), StoreError> {
        if self.is_crashed() {
            return Err(StoreError::Backend(format!("{op}: the process is dead")));
        }
        if !self.roll() {
            return Ok(());
        }
        if self.rng.below(2) == 0 {
            self.crash(&format!("crash before {op}"));
            Err(StoreError::Backend(format!("{op}: the process died")))
        } else {
            self.note(&format!("throttle {op}"));
            Err(StoreError::Backend(format!("{op}: throttled (simulated)")))
        }
    }

    /// After a write was applied: loses its reply (the caller sees an error for a write that
    /// happened), or kills the process before it hears the reply.
    pub fn after(&self, op: &str) -> Result<(), StoreError> {
        if !self.roll() {
            return Ok(());
        }
        if self.rng.below(2) == 0 {
            self.crash(&format!("crash after {op}"));
            Err(StoreError::Backend(format!("{op}: the process died after the write")))
        } else {
            self.note(&format!("reply lost {op}"));
            Err(StoreError::Backend(format!("{op}: the reply was lost (simulated); the write was applied")))
        }
    }

    /// True `per_mille` times in a thousand, from this seed's sequence (also for the world's
    /// message faults, so one seed decides all of them).
    pub fn roll(&self) -> bool {
        self.per_mille > 0 && !self.quiet.load(Ordering::SeqCst) && self.rng.chance(self.per_mille)
    }

    /// No more faults from now on.
    pub fn quiet(&self) {
        self.quiet.store(true, Ordering::SeqCst);
    }

    /// The seed's sequence, for the world's own choices.
    pub fn rng(&self) -> &SeededEntropy {
        &self.rng
    }

    /// Records a fault the world injects itself (a duplicate, a lost delete, an expiry).
    pub fn note(&self, what: &str) {
        self.injected.fetch_add(1, Ordering::SeqCst);
        if let Some(key) = self.in_flight.lock().expect("faults").clone() {
            *self.faulted_keys.lock().expect("faults").entry(key).or_default() += 1;
        }
        self.log.lock().expect("faults").push(what.to_owned());
    }

    fn crash(&self, what: &str) {
        self.crashed.store(true, Ordering::SeqCst);
        self.note(what);
    }

    /// True once the process died, until [`Faults::restart`].
    pub fn is_crashed(&self) -> bool {
        self.crashed.load(Ordering::SeqCst)
    }

    /// A new process: calls go through again.
    pub fn restart(&self) {
        self.crashed.store(false, Ordering::SeqCst);
    }

    /// Marks the call with `key` as the one in flight (`None` when the worker is done with it).
    pub fn in_flight(&self, key: Option<String>) {
        *self.in_flight.lock().expect("faults") = key;
    }

    /// How many faults were injected.
    pub fn injected(&self) -> usize {
        self.injected.load(Ordering::SeqCst)
    }

    /// The faults, in order.
    pub fn log(&self) -> Vec<String> {
        self.log.lock().expect("faults").clone()
    }

    /// Faults injected while each key's call was in flight.
    pub fn faulted_keys(&self) -> BTreeMap<String, u32> {
        self.faulted_keys.lock().expect("faults").clone()
    }
}
