//! Compiling a step's `loop`: a bounded body, a stop condition, and what happens at the bound.

use std::collections::HashMap;

use super::problems::Problems;
use super::types::{StepIx, StepKind};
use crate::model::{LoopExhausted, LoopSpec, Step};

/// A loop step's kind. Every loop is bounded, and a loop that can only end by hitting its bound
/// must say that this is what it wants, so a forgotten `until` is not a silent failure.
pub(super) fn compile(
    p: &mut Problems,
    s: &Step,
    l: &LoopSpec,
    ptr: &str,
    i: StepIx,
    index: &HashMap<String, StepIx>,
) -> Option<StepKind> {
    if s.for_each.is_some() {
        p.err(format!("{ptr}/for_each"), "`for_each` cannot be combined with `loop`");
    }
    for (field, set) in [("retry", s.retry.is_some()), ("timeout", s.timeout.is_some())] {
        if set {
            p.err(format!("{ptr}/{field}"), format!("`{field}` does not apply to a loop: put it on the body steps"));
        }
    }
    if l.until.is_none() && l.then == LoopExhausted::Fail {
        p.err(format!("{ptr}/loop"), "a loop without `until` always hits its bound, and `then: fail` (the default) then fails it: add `until`, or `then: continue` to run a fixed number of iterations");
    }
    let max_iterations = match l.max_iterations {
        None => {
            p.err(format!("{ptr}/loop"), "a loop needs `max_iterations`: every loop must be bounded");
            None
        }
        Some(0) => {
            p.err(format!("{ptr}/loop/max_iterations"), "must be at least 1");
            None
        }
        Some(n) => Some(n),
    };
    let until = l.until.as_deref().and_then(|u| p.expr(&format!("{ptr}/loop/until"), u));
    if l.then == LoopExhausted::Escalate && l.escalate.is_none() {
        p.err(format!("{ptr}/loop/then"), "`then: escalate` needs `escalate: {to: <queue>}`");
    }
    if l.steps.is_empty() {
        p.err(format!("{ptr}/loop/steps"), "a loop needs at least one body step");
    }
    let body = l.steps.iter().filter_map(|b| index.get(&b.id).copied()).filter(|&b| b > i).collect();
    Some(StepKind::Loop {
        max_iterations: max_iterations?,
        until,
        then: l.then,
        escalate_to: l.escalate.as_ref().map(|e| e.to.clone()),
        body,
    })
}
