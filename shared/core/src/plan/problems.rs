//! Collecting definition problems while a plan is built. The builder and every tool's compiler
//! report through this, so a message always names the pointer it is about and every problem is
//! found in one pass instead of stopping at the first.

use serde_json::{Map, Value};

use super::structure::did_you_mean;
use crate::diagnostics::Problem;
use crate::duration::{Millis, parse_duration};
use crate::expr::{Expr, Template};

/// The problems found so far, in the order they were found.
#[derive(Debug, Default)]
pub(crate) struct Problems(Vec<Problem>);

impl Problems {
    /// Reports `message` at `pointer`.
    pub fn err(&mut self, pointer: impl Into<String>, message: impl Into<String>) {
        self.0.push(Problem::at(pointer, message));
    }

    /// How many problems were found; the builder compares counts to know whether a step added any.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// True when nothing was found.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The problems found, in order.
    pub fn into_vec(self) -> Vec<Problem> {
        self.0
    }

    /// Compiles a jq expression, reporting at `pointer` when it does not compile.
    pub fn expr(&mut self, pointer: &str, src: &str) -> Option<Expr> {
        match Expr::compile(src) {
            Ok(e) => Some(e),
            Err(e) => {
                self.err(pointer, format!("jq expression `{src}` does not compile: {e}"));
                None
            }
        }
    }

    /// Compiles a `{{ }}` template, reporting each expression that does not compile at its own
    /// pointer below `pointer`.
    pub fn template(&mut self, pointer: &str, value: &Value) -> Option<Template> {
        match Template::compile(value) {
            Ok(t) => Some(t),
            Err(errs) => {
                for e in errs {
                    self.err(
                        format!("{pointer}{}", e.pointer),
                        format!("`{{{{ }}}}` expression does not compile: {}", e.error),
                    );
                }
                None
            }
        }
    }

    /// Parses a duration such as `10s`, reporting at `pointer` when it is not one.
    pub fn duration(&mut self, pointer: String, text: &str) -> Option<Millis> {
        match parse_duration(text) {
            Ok(ms) => Some(ms),
            Err(e) => {
                self.err(pointer, e.to_string());
                None
            }
        }
    }

    /// Reports every field of `obj` that is not in `known` (a tool's arguments), with a
    /// "did you mean" for a misspelt one.
    pub fn unknown_args(&mut self, obj: Option<&Map<String, Value>>, wptr: &str, known: &[&str]) {
        let Some(obj) = obj else { return };
        for k in obj.keys() {
            if !known.contains(&k.as_str()) {
                let hint = did_you_mean(k, known).map(|s| format!(" (did you mean `{s}`?)")).unwrap_or_default();
                self.err(
                    format!("{wptr}/{k}"),
                    format!("unknown argument `{k}`{hint}; this tool takes: {}", known.join(", ")),
                );
            }
        }
    }
}
