//! baton-core: the pure part of baton. The DSL model and its validation, jq expressions, the run
//! state machine `decide(state, event)`, retry policy and the hash-chained audit log.
//! Nothing here performs I/O or reads the clock: time, ids and random seeds arrive in events.

pub mod answer;
pub mod asl;
pub mod canonical;
pub mod diagnostics;
pub mod duration;
pub mod error_kind;
pub mod expr;
pub mod ids;
pub mod model;
pub mod plan;
pub mod source;

pub use diagnostics::Problem;
pub use error_kind::ErrorKind;
pub use plan::{Plan, load_definition};
pub mod audit;
pub mod engine;
pub mod graph;
pub mod handover;
pub mod pattern;
pub mod retry;
