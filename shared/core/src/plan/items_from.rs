//! Compiling a step's `items_from` (a distributed map): a `workflow` step whose items come in
//! batches from a source the coordinator reads, one child run per batch.

use serde_json::Value;

use super::problems::Problems;
use super::types::{ItemsFrom, MAX_CONCURRENCY_LIMIT};
use crate::model::Step;

/// Items per child run when `batch_size` is not set.
pub const DEFAULT_BATCH_SIZE: u32 = 100;
/// Upper bound on `batch_size`: a batch is one child run's input.
pub const MAX_BATCH_SIZE: u32 = 10_000;

/// Compiles `s.items_from`, reporting every problem at its field.
pub(super) fn compile(p: &mut Problems, s: &Step, ptr: &str) -> Option<ItemsFrom> {
    let spec = s.items_from.as_ref()?;
    let at = format!("{ptr}/items_from");
    let before = p.len();
    if s.tool.as_deref() != Some("workflow") {
        p.err(
            format!("{ptr}/tool"),
            "`items_from` runs a child workflow per batch: the step must be `tool: workflow` with `with.name`",
        );
    }
    if s.for_each.is_some() {
        p.err(format!("{ptr}/for_each"), "a step takes its items from `for_each` or from `items_from`, not both");
    }
    let max_concurrency = match s.max_concurrency.as_ref() {
        Some(crate::model::Concurrency::Template(_)) => {
            p.err(format!("{ptr}/max_concurrency"), "with `items_from`, `max_concurrency` is a number, not a template");
            0
        }
        None => {
            p.err(
                format!("{ptr}/max_concurrency"),
                format!("`items_from` needs `max_concurrency`, the batches that may run at once (1 to {MAX_CONCURRENCY_LIMIT})"),
            );
            0
        }
        Some(crate::model::Concurrency::Fixed(n)) if *n == 0 || *n > MAX_CONCURRENCY_LIMIT => {
            p.err(format!("{ptr}/max_concurrency"), format!("must be between 1 and {MAX_CONCURRENCY_LIMIT}, got {n}"));
            0
        }
        Some(crate::model::Concurrency::Fixed(n)) => *n,
    };
    let batch_size = spec.batch_size.unwrap_or(DEFAULT_BATCH_SIZE);
    if batch_size == 0 || batch_size > MAX_BATCH_SIZE {
        p.err(format!("{at}/batch_size"), format!("must be between 1 and {MAX_BATCH_SIZE}, got {batch_size}"));
    }
    if let Some(pct) = spec.tolerated_failure_percent
        && !(0.0..=100.0).contains(&pct)
    {
        p.err(format!("{at}/tolerated_failure_percent"), format!("must be between 0 and 100, got {pct}"));
    }
    for (field, text) in [("source", &spec.source), ("results", &spec.results)] {
        if text.trim().is_empty() {
            p.err(format!("{at}/{field}"), format!("`{field}` is empty: give an s3:// URI or a local path"));
        }
    }
    if !spec.results.contains("{{") && !(spec.results.ends_with('/')) {
        p.err(
            format!("{at}/results"),
            "`results` is a prefix or directory (it ends with `/`): each batch's result and the manifest go under it",
        );
    }
    let source = p.template(&format!("{at}/source"), &Value::String(spec.source.clone()));
    let results = p.template(&format!("{at}/results"), &Value::String(spec.results.clone()));
    if p.len() > before {
        return None;
    }
    Some(ItemsFrom {
        source: source?,
        format: spec.format,
        batch_size,
        max_concurrency,
        tolerated_failures: spec.tolerated_failures,
        tolerated_failure_percent: spec.tolerated_failure_percent,
        results: results?,
    })
}
