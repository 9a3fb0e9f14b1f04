//! The outside API the simulated `http` steps call: idempotent by `Idempotency-Key` as a
//! payment API is, it counts how often each key was called, fails the first attempt of some
//! steps (so retries run), and answers from the run and node only, so a step's output does not
//! depend on which attempt or which process made the call.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use baton_core::engine::{ErrorKind, StepError};
use baton_runtime::ports::{Tool, ToolCall};
use serde_json::{Value, json};

use super::faults::Faults;

/// The API.
pub struct Api {
    faults: Arc<Faults>,
    calls: Mutex<BTreeMap<String, u32>>,
    /// The process incarnations each key was called in (in-process delivery has no claims:
    /// a call is re-issued after a crash, never twice by one process).
    by_incarnation: Mutex<BTreeMap<String, Vec<u64>>>,
    incarnation: std::sync::atomic::AtomicU64,
    /// Called inside the driving loop instead of as a task of its own: tokio's `select!` picks
    /// among ready branches at random, which no seed fixes, so calls running beside the loop
    /// would make an in-process history differ from run to run.
    inline: bool,
}

impl Api {
    /// An API no one called yet.
    pub fn new(faults: Arc<Faults>) -> Self {
        Self::with_inline(faults, false)
    }

    /// An API the in-process driving loop calls inline (see `inline`).
    pub fn inline(faults: Arc<Faults>) -> Self {
        Self::with_inline(faults, true)
    }

    fn with_inline(faults: Arc<Faults>, inline: bool) -> Self {
        Self {
            faults,
            calls: Mutex::new(BTreeMap::new()),
            by_incarnation: Mutex::new(BTreeMap::new()),
            incarnation: std::sync::atomic::AtomicU64::new(0),
            inline,
        }
    }

    /// Calls per idempotency key.
    pub fn calls(&self) -> BTreeMap<String, u32> {
        self.calls.lock().expect("api").clone()
    }

    /// A new process is calling from now on.
    pub fn next_incarnation(&self) {
        self.incarnation.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    }

    /// Keys called again by a process after a process that called them had ended without a
    /// crash, or called twice by one process: in-process delivery re-issues a call only when
    /// the process that made it died before recording its result.
    pub fn reissued_without_a_crash(&self, crashed: &std::collections::BTreeSet<u64>) -> Vec<String> {
        self.by_incarnation
            .lock()
            .expect("api")
            .iter()
            .filter(|(_, inc)| inc.windows(2).any(|w| w[0] == w[1] || !crashed.contains(&w[0])))
            .map(|(k, _)| k.clone())
            .collect()
    }
}

/// FNV-1a: a stable hash for the API's answers.
pub fn stable_hash(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3))
}

#[async_trait]
impl Tool for Api {
    fn inline(&self) -> bool {
        self.inline
    }

    async fn call(&self, call: &ToolCall) -> Result<Value, StepError> {
        if self.faults.before("api").is_err() {
            return Err(StepError::new(ErrorKind::Connect, "the calling process died"));
        }
        *self.calls.lock().expect("api").entry(call.idempotency_key.clone()).or_default() += 1;
        let incarnation = self.incarnation.load(std::sync::atomic::Ordering::SeqCst);
        self.by_incarnation.lock().expect("api").entry(call.idempotency_key.clone()).or_default().push(incarnation);
        let h = stable_hash(&format!("{}/{}", call.run_id, call.node));
        // Retried by the step's policy; the same steps fail in every history.
        let result = if call.attempt == 1 && h.is_multiple_of(4) {
            Err(StepError::new(ErrorKind::Http5xx, "503 Service Unavailable (simulated)"))
        } else {
            Ok(
                json!({"status": 200, "body": {"n": h % 1000, "echo": call.input.get("body").cloned().unwrap_or(Value::Null)}}),
            )
        };
        // The API applied the call; the process may die before it hears back.
        if self.faults.after("api").is_err() {
            return Err(StepError::new(ErrorKind::Connect, "the calling process died after the call"));
        }
        result
    }
}
