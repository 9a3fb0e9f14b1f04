//! Problems found in a definition or an input, each naming the file, the step and the field.

use std::fmt;

use serde::Serialize;

use crate::source::Position;

/// One thing wrong with a definition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    /// The file, when the definition came from one.
    pub file: Option<String>,
    /// Line and column in the file, when the parser knows them.
    pub position: Option<Position>,
    /// The step id the problem belongs to, if any.
    pub step: Option<String>,
    /// The field, dotted (`retry.max_attempts`), or empty for the whole document.
    pub field: String,
    /// What is wrong and, where it helps, what to do.
    pub message: String,
    /// JSON pointer to the value (`/steps/2/retry/max_attempts`).
    #[serde(skip)]
    pub pointer: String,
}

impl Problem {
    /// A problem at `pointer`; file, position and step are filled in by [`locate`].
    pub fn at(pointer: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            file: None,
            position: None,
            step: None,
            field: String::new(),
            message: message.into(),
            pointer: pointer.into(),
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let file = self.file.as_deref().unwrap_or("<definition>");
        match self.position {
            Some(p) => write!(f, "{file}:{}:{}: ", p.line, p.column)?,
            None => write!(f, "{file}: ")?,
        }
        if let Some(step) = &self.step {
            write!(f, "step `{step}`: ")?;
        }
        if !self.field.is_empty() {
            write!(f, "field `{}`: ", self.field)?;
        }
        write!(f, "{}", self.message)
    }
}

/// Fills in step id, dotted field and position from each problem's pointer.
pub fn locate(problems: &mut [Problem], file: Option<&str>, doc: &crate::source::SourceDocument) {
    for p in problems.iter_mut() {
        p.file = file.map(str::to_owned);
        if p.position.is_none() {
            p.position = doc.position(&p.pointer);
        }
        let (step, field) = step_and_field(&doc.value, &p.pointer);
        if p.step.is_none() {
            p.step = step;
        }
        if p.field.is_empty() {
            p.field = field;
        }
    }
    problems.sort_by(|a, b| {
        let ka = a.position.map(|p| (p.line, p.column)).unwrap_or((usize::MAX, 0));
        let kb = b.position.map(|p| (p.line, p.column)).unwrap_or((usize::MAX, 0));
        ka.cmp(&kb).then_with(|| a.message.cmp(&b.message))
    });
}

/// Splits `/steps/1/loop/steps/0/retry/on/2` into the innermost step's id and `retry.on[2]`.
fn step_and_field(doc: &serde_json::Value, pointer: &str) -> (Option<String>, String) {
    let segments: Vec<&str> = pointer.split('/').skip(1).collect();
    let mut step_end = None;
    for i in 0..segments.len().saturating_sub(1) {
        if segments[i] == "steps" && segments[i + 1].parse::<usize>().is_ok() {
            step_end = Some(i + 2);
        }
    }
    let (step, rest) = match step_end {
        Some(end) => {
            let step_pointer = format!("/{}", segments[..end].join("/"));
            let id = doc.pointer(&format!("{step_pointer}/id")).and_then(|v| v.as_str()).map(str::to_owned);
            let id = id.unwrap_or_else(|| format!("#{}", segments[end - 1]));
            (Some(id), &segments[end..])
        }
        None => (None, &segments[..]),
    };
    let mut field = String::new();
    for s in rest {
        if s.parse::<usize>().is_ok() {
            field.push_str(&format!("[{s}]"));
        } else {
            if !field.is_empty() {
                field.push('.');
            }
            field.push_str(&s.replace("~1", "/").replace("~0", "~"));
        }
    }
    (step, field)
}
