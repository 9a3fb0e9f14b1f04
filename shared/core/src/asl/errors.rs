//! What the importer reports: every state it cannot convert, by name and field, at once.

use std::fmt;

/// One thing of the definition that cannot be converted (or is wrong in the definition).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AslProblem {
    /// The state's name, as written; `None` for the definition's top level.
    pub state: Option<String>,
    /// The field, as ASL names it (`Resource`, `Parameters.Item.Id.$`, `Choices[1].Next`).
    pub field: String,
    /// What is wrong, and what to do about it when there is something to do.
    pub message: String,
}

impl fmt::Display for AslProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.state {
            Some(s) => write!(f, "state \"{s}\", field `{}`: {}", self.field, self.message),
            None => write!(f, "field `{}`: {}", self.field, self.message),
        }
    }
}

/// Why a definition was not converted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ImportError {
    /// The text is not a JSON object.
    #[error("not an Amazon States Language definition: {0}")]
    NotJson(String),
    /// Parts of the definition cannot be converted; every one is listed.
    #[error("{} problem{} converting the definition:\n{}", .0.len(), if .0.len() == 1 { "" } else { "s" }, list(.0))]
    Unconvertible(Vec<AslProblem>),
}

fn list(problems: &[AslProblem]) -> String {
    problems.iter().map(|p| format!("  {p}")).collect::<Vec<_>>().join("\n")
}

/// Collects problems while a definition is converted, so that all of them are reported.
#[derive(Debug, Default)]
pub(crate) struct Report {
    pub problems: Vec<AslProblem>,
    pub warnings: Vec<String>,
}

impl Report {
    /// Records a problem of `state` (`None`: the top level) at `field`.
    pub fn err(&mut self, state: Option<&str>, field: impl Into<String>, message: impl Into<String>) {
        self.problems.push(AslProblem {
            state: state.map(str::to_owned),
            field: field.into(),
            message: message.into(),
        });
    }
}
