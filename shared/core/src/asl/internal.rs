//! What the importer's parts share about states: where a state can go, and the internal state
//! types that stand for parts the importer made (a loop in its parent, its ways in, a loop's way
//! round and its ways out), never for a user's state.

use serde_json::Value;

/// The internal state type standing for a cycle in its parent.
pub(crate) const LOOP: &str = "__BatonLoop";
/// The internal state type that goes round again.
pub(crate) const CONTINUE: &str = "__BatonContinue";
/// The internal state type that leaves the cycle.
pub(crate) const EXIT: &str = "__BatonExit";
/// In the parent of a cycle entered at several states: the way into it at one of them, which
/// marks the value with the state it enters at.
pub(crate) const ENTRY: &str = "__BatonEntry";
/// A cycle's child entered at several states: its first step, routing by the mark.
pub(crate) const ENTER: &str = "__BatonEnter";

/// Every internal state type.
pub(crate) const ALL: [&str; 5] = [LOOP, CONTINUE, EXIT, ENTRY, ENTER];

/// Where a state can go: `Next`, `Default`, every `Choices[].Next` and `Catch[].Next`.
pub(crate) fn targets(st: &Value) -> Vec<String> {
    let mut t: Vec<String> = Vec::new();
    for key in ["Next", "Default"] {
        if let Some(n) = st.get(key).and_then(Value::as_str) {
            t.push(n.to_owned());
        }
    }
    for list in ["Choices", "Catch"] {
        for c in st.get(list).and_then(Value::as_array).into_iter().flatten() {
            if let Some(n) = c.get("Next").and_then(Value::as_str) {
                t.push(n.to_owned());
            }
        }
    }
    t
}
