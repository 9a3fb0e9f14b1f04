//! What can go wrong reading or writing items, and how each failure reaches the step: the aws
//! tool's own kinds (`S3.NoSuchKey`) pass through, everything else is a `tool` error whose
//! message names the field, path or line.

use baton_core::engine::{ErrorKind, StepError};

/// A failure of the `items` tool.
#[derive(Debug, thiserror::Error)]
pub enum ItemsError {
    /// A field of the call is missing or wrong.
    #[error("`{field}` {why}")]
    Field {
        /// The field's name (`batch.range`).
        field: &'static str,
        /// What is wrong with it.
        why: String,
    },
    /// The source's format is neither given nor implied by its name.
    #[error("cannot tell the format of {uri} from its name: set `format` (jsonl, csv, json or objects)")]
    NeedsFormat {
        /// The source.
        uri: String,
    },
    /// A local file or directory could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The path.
        path: String,
        /// The operating system's error.
        source: std::io::Error,
    },
    /// The source's content is not what its format says (`line 17 of s3://b/k.jsonl is not JSON: ...`).
    #[error("{0}")]
    Malformed(String),
    /// A batch read back does not match what `split` found: the source changed in between.
    #[error("{uri} changed since it was split: batch at item {first} should hold {expected} items, found {found}")]
    Changed {
        /// The source.
        uri: String,
        /// The batch's first item.
        first: u64,
        /// Items the batch was split with.
        expected: u64,
        /// Items read now.
        found: u64,
    },
    /// The blocking task doing local I/O panicked or was cancelled.
    #[error("a file system task failed: {0}")]
    Blocking(String),
    /// An S3 call failed; its kind is the aws tool's (`S3.NoSuchKey`).
    #[error("{}", .0.message)]
    Aws(StepError),
}

impl ItemsError {
    /// An I/O error on `path`.
    pub fn io(path: &std::path::Path, source: std::io::Error) -> Self {
        Self::Io { path: path.display().to_string(), source }
    }
}

impl From<ItemsError> for StepError {
    fn from(e: ItemsError) -> Self {
        match e {
            ItemsError::Aws(inner) => inner,
            other => StepError::new(ErrorKind::Tool, other.to_string()),
        }
    }
}
