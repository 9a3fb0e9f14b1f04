//! The budget one jq evaluation may spend: steps, bytes of values built and stack.
//!
//! jaq has no fuel hook, so the metered value type ([`super::metered`]) charges this module's
//! thread-local meter on every value operation and every context clone (which jaq does at each
//! pipe, comma and call). When a budget runs out the meter unwinds the evaluation with
//! [`std::panic::resume_unwind`] and a private payload, caught in [`run_bounded`] at the one
//! place an evaluation starts. Why unwinding and not a jq error: many of jaq's hooks cannot fail
//! (`Clone`, `FromIterator`, comparisons), a runaway recursion such as `def f: [f, f]; f` passes
//! through nothing else, and a jq `try ... catch` must not be able to swallow a limit and carry
//! on. `resume_unwind` does not run the panic hook, so nothing is printed; rustc stops on fatal
//! errors the same way. This needs `panic = "unwind"`, the default, which the workspace keeps.

use std::cell::Cell;
use std::fmt;
use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};

/// Steps an expression may take unless a step sets its own: far above what a workflow's
/// expression needs (reshaping a 10,000-item array takes well under a million), low enough that
/// a runaway stops in about a second.
pub const DEFAULT_MAX_STEPS: u64 = 10_000_000;

/// Bytes of values an expression may build unless a step sets its own (64 MiB): about 200 times
/// the largest payload Step Functions passes between states.
pub const DEFAULT_MAX_MEMORY_BYTES: u64 = 64 * 1024 * 1024;

/// Stack an expression's own recursion may use (1 MiB). Threads that evaluate expressions have
/// at least 2 MiB (the smallest default: tokio's workers and Rust's spawned threads), so a
/// recursion like `def f: [f, f]; f` stops with an error before it overflows the stack, which
/// would abort the whole process. One level of a jq function calling itself takes about 30 KiB
/// of stack in a debug build (so about 30 levels fit there) and far less in a release build.
pub const DEFAULT_MAX_STACK_BYTES: u64 = 1024 * 1024;

/// Deepest JSON text `fromjson` parses (1,000 levels): jaq's parser and the values it builds
/// recurse once per level, and a text such as `"[" * 100000` would overflow the stack. Inputs and
/// results pass through serde_json, which stops at 128 levels, so no run data is deeper.
pub const MAX_JSON_NESTING: u64 = 1_000;

/// What one evaluation may spend; [`Budget::default`] is the documented defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    /// Evaluation steps: value operations, value copies and jq's own context copies (one per
    /// pipe, comma, call or loop turn), plus one per element an operation walks.
    pub steps: u64,
    /// Bytes of the arrays, objects and strings the evaluation builds, counted as they are
    /// built and never given back (a value dropped early still counted): an upper bound on
    /// what the evaluation can hold at once.
    pub memory_bytes: u64,
    /// Stack the evaluation may use below where it started.
    pub stack_bytes: u64,
}

impl Default for Budget {
    fn default() -> Self {
        Self { steps: DEFAULT_MAX_STEPS, memory_bytes: DEFAULT_MAX_MEMORY_BYTES, stack_bytes: DEFAULT_MAX_STACK_BYTES }
    }
}

/// Which budget an evaluation ran out of, with the limit it had.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExprLimit {
    /// It took more than this many steps.
    Steps(u64),
    /// It built more than this many bytes of values.
    Memory(u64),
    /// It recursed deeper than this many bytes of stack.
    Stack(u64),
    /// It parsed JSON text (`fromjson`) nested deeper than this many levels.
    Nesting(u64),
}

impl fmt::Display for ExprLimit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Steps(n) => write!(f, "expression limit: more than {n} evaluation steps (limit `steps`)"),
            Self::Memory(n) => write!(f, "expression limit: built more than {n} bytes of values (limit `memory`)"),
            Self::Stack(n) => write!(f, "expression limit: recursed deeper than {n} bytes of stack"),
            Self::Nesting(n) => write!(f, "expression limit: JSON text nested more than {n} levels deep"),
        }
    }
}

/// The unwinding payload; private, so only [`run_bounded`] recognises it.
struct LimitUnwind;

/// The running evaluation's meter. Outside an evaluation every limit is at its maximum, so the
/// metered value type costs nothing and never stops anything.
struct Meter {
    steps_left: Cell<u64>,
    bytes_left: Cell<u64>,
    /// Address of a local in [`run_bounded`]; depth is measured from there.
    stack_base: Cell<usize>,
    stack_max: Cell<usize>,
    budget: Cell<Budget>,
    hit: Cell<Option<ExprLimit>>,
}

const UNLIMITED: Budget = Budget { steps: u64::MAX, memory_bytes: u64::MAX, stack_bytes: u64::MAX };

thread_local! {
    static METER: Meter = const {
        Meter {
            steps_left: Cell::new(u64::MAX),
            bytes_left: Cell::new(u64::MAX),
            stack_base: Cell::new(0),
            stack_max: Cell::new(usize::MAX),
            budget: Cell::new(UNLIMITED),
            hit: Cell::new(None),
        }
    };
}

/// The meter's state, saved so a nested evaluation (none today) cannot corrupt the outer one.
type Saved = (u64, u64, usize, usize, Budget);

fn save(m: &Meter) -> Saved {
    (m.steps_left.get(), m.bytes_left.get(), m.stack_base.get(), m.stack_max.get(), m.budget.get())
}

fn restore(m: &Meter, s: Saved) {
    m.steps_left.set(s.0);
    m.bytes_left.set(s.1);
    m.stack_base.set(s.2);
    m.stack_max.set(s.3);
    m.budget.set(s.4);
}

fn here() -> usize {
    let marker = 0u8;
    std::ptr::addr_of!(marker) as usize
}

/// Runs `f` under `budget`: `Err` names the limit it ran out of. A panic that is not a limit
/// (a bug) goes on unwinding as it was.
pub(super) fn run_bounded<T>(budget: &Budget, f: impl FnOnce() -> T) -> Result<T, ExprLimit> {
    METER.with(|m| {
        let saved = save(m);
        m.steps_left.set(budget.steps);
        m.bytes_left.set(budget.memory_bytes);
        m.stack_base.set(here());
        m.stack_max.set(usize::try_from(budget.stack_bytes).unwrap_or(usize::MAX));
        m.budget.set(*budget);
        m.hit.set(None);
        // The closure and everything it built are dropped during unwinding; no state outlives it.
        let out = catch_unwind(AssertUnwindSafe(f));
        let hit = m.hit.take();
        restore(m, saved);
        match out {
            Ok(v) => Ok(v),
            Err(payload) if payload.is::<LimitUnwind>() => Err(hit.unwrap_or(ExprLimit::Steps(budget.steps))),
            Err(payload) => resume_unwind(payload),
        }
    })
}

#[cold]
#[inline(never)]
fn exceeded(m: &Meter, limit: ExprLimit) -> ! {
    m.hit.set(Some(limit));
    // Nothing charged while unwinding (drops) may stop a second time.
    restore(m, (u64::MAX, u64::MAX, 0, usize::MAX, UNLIMITED));
    resume_unwind(Box::new(LimitUnwind))
}

/// Charges `n` steps.
#[inline]
pub(super) fn steps(n: u64) {
    METER.with(|m| {
        let left = m.steps_left.get();
        if left < n {
            exceeded(m, ExprLimit::Steps(m.budget.get().steps));
        }
        m.steps_left.set(left - n);
    })
}

/// Charges one step and checks the stack depth. Called where jaq goes one level deeper (every
/// filter call copies its context; `..` and `|=` walk a value's children), not on every value
/// operation, which keeps the common path to one counter.
#[inline]
pub(super) fn step_deeper() {
    METER.with(|m| {
        let left = m.steps_left.get();
        if left == 0 {
            exceeded(m, ExprLimit::Steps(m.budget.get().steps));
        }
        m.steps_left.set(left - 1);
        if m.stack_base.get().abs_diff(here()) > m.stack_max.get() {
            exceeded(m, ExprLimit::Stack(m.budget.get().stack_bytes));
        }
    })
}

/// Charges one step.
#[inline]
pub(super) fn step() {
    steps(1)
}

/// Stops the evaluation: JSON text nested deeper than [`MAX_JSON_NESTING`].
pub(super) fn too_deep() -> ! {
    METER.with(|m| exceeded(m, ExprLimit::Nesting(MAX_JSON_NESTING)))
}

/// Charges `n` bytes of values built.
#[inline]
pub(super) fn bytes(n: u64) {
    METER.with(|m| {
        let left = m.bytes_left.get();
        if left < n {
            exceeded(m, ExprLimit::Memory(m.budget.get().memory_bytes));
        }
        m.bytes_left.set(left - n);
    })
}

/// Converts a count or a length into the meter's unit, saturating (a length never exceeds it).
#[inline]
pub(super) fn n(len: usize) -> u64 {
    u64::try_from(len).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_budget_that_runs_out_names_its_limit_and_leaves_the_meter_unlimited() {
        let tight = Budget { steps: 10, ..Budget::default() };
        assert_eq!(run_bounded(&tight, || (0..5).for_each(|_| step())), Ok(()));
        assert_eq!(run_bounded(&tight, || (0..50).for_each(|_| step())), Err(ExprLimit::Steps(10)));
        let small = Budget { memory_bytes: 100, ..Budget::default() };
        assert_eq!(run_bounded(&small, || bytes(101)), Err(ExprLimit::Memory(100)));
        // Outside an evaluation nothing is limited.
        steps(u64::MAX / 2);
        bytes(u64::MAX / 2);
    }

    #[test]
    fn a_panic_that_is_not_a_limit_keeps_unwinding() {
        let r = catch_unwind(|| run_bounded(&Budget::default(), || resume_unwind(Box::new("a bug"))));
        assert!(r.is_err());
        steps(1);
    }
}
