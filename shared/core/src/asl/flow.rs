//! How control and data move between converted states. An ASL state machine runs one state at
//! a time along `Next`, `Choices` and `Catch`; baton runs a DAG. Every state becomes a step whose
//! `needs` are the steps its predecessors end with, whose `when` says that one of them chose it
//! (reading their `.status`, so skipped alternatives do not skip it), and whose input is the
//! output of the predecessor that ran. An [`Edge`] is one such way in.

use crate::model::Step;

use super::naming::step_ref;

/// One way into a state (or, with `to` empty, out of its machine).
#[derive(Debug, Clone)]
pub(crate) struct Edge {
    /// The target state's name; empty for the machine's end.
    pub to: String,
    /// jq condition: this way was taken.
    pub cond: String,
    /// jq: the value the target gets as its raw input.
    pub value: String,
    /// The steps `cond` and `value` read.
    pub needs: Vec<String>,
}

/// What a converted state starts from: its raw input, and when and after what it runs.
#[derive(Debug, Clone)]
pub(crate) struct Input {
    /// jq giving the state's raw input.
    pub raw: String,
    /// The step's `when` (none for a machine's first state).
    pub when: Option<String>,
    /// The step's `needs`.
    pub needs: Vec<String>,
}

impl Input {
    /// The input of a state reached by `edges` (at least one).
    pub fn from_edges(edges: &[Edge]) -> Self {
        let mut needs: Vec<String> = Vec::new();
        for e in edges {
            for n in &e.needs {
                if !needs.contains(n) {
                    needs.push(n.clone());
                }
            }
        }
        let when = edges.iter().map(|e| e.cond.clone()).collect::<Vec<_>>().join(" or ");
        Input { raw: choose(edges), when: Some(when), needs }
    }
}

/// jq giving the value of whichever edge was taken.
pub(crate) fn choose(edges: &[Edge]) -> String {
    match edges {
        [one] => one.value.clone(),
        _ => {
            let mut s = String::new();
            for (i, e) in edges.iter().enumerate() {
                s.push_str(if i == 0 { "if " } else { " elif " });
                s.push_str(&format!("{} then {}", e.cond, e.value));
            }
            format!("({s} else null end)")
        }
    }
}

/// jq: step `id` succeeded.
pub(crate) fn ok(id: &str) -> String {
    format!("{}.status == \"succeeded\"", step_ref(id))
}

/// jq: step `id`'s output.
pub(crate) fn out(id: &str) -> String {
    format!("{}.output", step_ref(id))
}

/// A step with only its id set.
pub(crate) fn bare(id: &str) -> Step {
    Step {
        id: id.to_owned(),
        tool: None,
        with: None,
        needs: Vec::new(),
        when: None,
        retry: None,
        timeout: None,
        fallback: None,
        cache: None,
        for_each: None,
        max_concurrency: None,
        items_from: None,
        loop_: None,
        escalate: None,
        on_timeout: None,
    }
}

/// A step running `tool` with `with`, after `input`'s needs and under its condition.
pub(crate) fn step(id: &str, tool: &str, with: serde_json::Value, input: &Input) -> Step {
    Step {
        tool: Some(tool.to_owned()),
        with: Some(with),
        needs: input.needs.clone(),
        when: input.when.clone(),
        ..bare(id)
    }
}

/// A `transform` step computing `expr`.
pub(crate) fn transform(id: &str, expr: String, input: &Input) -> Step {
    step(id, "transform", serde_json::json!({"expr": expr}), input)
}

/// The input of a step that runs after `id` succeeded.
pub(crate) fn after(id: &str, raw: &str) -> Input {
    Input { raw: raw.to_owned(), when: Some(ok(id)), needs: vec![id.to_owned()] }
}
