//! Reading a definition file: YAML or JSON text into a JSON value, plus a map from each value's
//! JSON pointer to its line and column so problems can point at the source.

use std::collections::HashMap;

use serde_json::Value;
use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::Marker;

/// A 1-based line and column in the source text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Position {
    /// Line, counting from 1.
    pub line: usize,
    /// Column, counting from 1.
    pub column: usize,
}

/// A parsed definition document with the positions of its values.
#[derive(Debug, Clone)]
pub struct SourceDocument {
    /// The document as JSON.
    pub value: Value,
    positions: HashMap<String, Position>,
    /// Keys written twice in one mapping (JSON pointer, position of the second one); the parser
    /// keeps the last, which silently drops the first.
    pub duplicate_keys: Vec<(String, Position)>,
}

/// The text could not be parsed as YAML or JSON.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct SyntaxError {
    /// What the parser said.
    pub message: String,
    /// Where, when the parser knows.
    pub position: Option<Position>,
}

impl SourceDocument {
    /// The same document with another value (positions kept for the paths that still exist).
    pub fn with_value(&self, value: Value) -> Self {
        Self { value, positions: self.positions.clone(), duplicate_keys: self.duplicate_keys.clone() }
    }

    /// Parses YAML (JSON is valid YAML) and records where every value sits.
    pub fn parse(text: &str) -> Result<Self, SyntaxError> {
        let value: Value = serde_yaml_ng::from_str(text).map_err(|e| SyntaxError {
            message: e.to_string(),
            position: e.location().map(|l| Position { line: l.line(), column: l.column() }),
        })?;
        let mut recorder = PositionRecorder::default();
        // Positions are a convenience: if the second parser disagrees we simply have none.
        let _ = Parser::new_from_str(text).load(&mut recorder, false);
        Ok(Self { value, positions: recorder.positions, duplicate_keys: recorder.duplicates })
    }

    /// Builds a document from a value that has no source text (tests, generated definitions).
    pub fn from_value(value: Value) -> Self {
        Self { value, positions: HashMap::new(), duplicate_keys: Vec::new() }
    }

    /// The position of the value at `pointer` (e.g. `/steps/2/retry`), or of its nearest parent.
    pub fn position(&self, pointer: &str) -> Option<Position> {
        let mut p = pointer;
        loop {
            if let Some(pos) = self.positions.get(p) {
                return Some(*pos);
            }
            match p.rfind('/') {
                Some(i) => p = &p[..i],
                None => return None,
            }
        }
    }
}

enum Frame {
    Map { pending_key: Option<String>, expecting_key: bool, seen: std::collections::HashSet<String> },
    Seq { index: usize },
}

#[derive(Default)]
struct PositionRecorder {
    stack: Vec<(String, Frame)>,
    positions: HashMap<String, Position>,
    duplicates: Vec<(String, Position)>,
}

impl PositionRecorder {
    /// The pointer of the value that starts now, advancing the parent frame.
    fn next_value_pointer(&mut self, mark: Marker) -> Option<String> {
        let Some((base, frame)) = self.stack.last_mut() else {
            return Some(String::new());
        };
        match frame {
            Frame::Seq { index } => {
                let p = format!("{base}/{index}");
                *index += 1;
                let _ = mark;
                Some(p)
            }
            Frame::Map { pending_key, expecting_key, .. } => {
                if *expecting_key {
                    None
                } else {
                    *expecting_key = true;
                    pending_key.take().map(|k| format!("{base}/{}", escape(&k)))
                }
            }
        }
    }
}

fn pos(mark: Marker) -> Position {
    Position { line: mark.line(), column: mark.col() + 1 }
}

fn escape(key: &str) -> String {
    key.replace('~', "~0").replace('/', "~1")
}

impl MarkedEventReceiver for PositionRecorder {
    fn on_event(&mut self, ev: Event, mark: Marker) {
        match ev {
            Event::Scalar(text, ..) => {
                if let Some((base, Frame::Map { pending_key, expecting_key, seen })) = self.stack.last_mut()
                    && *expecting_key
                {
                    // A key: its position stands for the value that follows, and the first key's
                    // for the mapping itself (a block mapping's start marker points elsewhere).
                    let p = format!("{base}/{}", escape(&text));
                    if !seen.insert(text.clone()) {
                        self.duplicates.push((p.clone(), pos(mark)));
                    }
                    self.positions.entry(base.clone()).or_insert(pos(mark));
                    self.positions.entry(p).or_insert(pos(mark));
                    *pending_key = Some(text);
                    *expecting_key = false;
                    return;
                }
                if let Some(p) = self.next_value_pointer(mark) {
                    self.positions.entry(p).or_insert(pos(mark));
                }
            }
            Event::Alias(_) => {
                self.next_value_pointer(mark);
            }
            Event::MappingStart(..) | Event::SequenceStart(..) => {
                let p = self.next_value_pointer(mark).unwrap_or_default();
                let frame = if matches!(ev, Event::MappingStart(..)) {
                    Frame::Map { pending_key: None, expecting_key: true, seen: Default::default() }
                } else {
                    self.positions.entry(p.clone()).or_insert(pos(mark));
                    Frame::Seq { index: 0 }
                };
                self.stack.push((p, frame));
            }
            Event::MappingEnd | Event::SequenceEnd => {
                self.stack.pop();
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_positions_of_nested_values() {
        let doc = SourceDocument::parse("name: x\nsteps:\n  - id: a\n    tool: http\n").expect("parses");
        assert_eq!(doc.position("/steps/0/tool"), Some(Position { line: 4, column: 5 }));
        assert_eq!(doc.position("/steps/0/id"), Some(Position { line: 3, column: 5 }));
        assert_eq!(doc.position("/steps/0/nope/deeper").map(|p| p.line), Some(3));
    }

    #[test]
    fn syntax_errors_carry_a_position() {
        let err = SourceDocument::parse("name: [unclosed\n").expect_err("fails");
        assert!(err.position.is_some());
    }
}
