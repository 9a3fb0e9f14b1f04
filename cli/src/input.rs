//! Reading JSON arguments given inline or as `@file`, and definition files.

use std::path::Path;

use anyhow::{Context, Result};
use serde_json::Value;

/// Parses `text` as JSON, or reads the file after `@`.
pub fn json_arg(text: &str, what: &str) -> Result<Value> {
    let (body, origin) = match text.strip_prefix('@') {
        Some(path) => (
            std::fs::read_to_string(path).with_context(|| format!("cannot read {what} file `{path}`"))?,
            path.to_owned(),
        ),
        None => (text.to_owned(), format!("--{what}")),
    };
    serde_json::from_str(&body).with_context(|| format!("{what} in {origin} is not valid JSON"))
}

/// Reads a YAML or JSON document (mocks files).
pub fn document(path: &Path) -> Result<Value> {
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read `{}`", path.display()))?;
    let doc = baton_core::source::SourceDocument::parse(&text)
        .map_err(|e| anyhow::anyhow!("{}: {}", path.display(), e.message))?;
    Ok(doc.value)
}
