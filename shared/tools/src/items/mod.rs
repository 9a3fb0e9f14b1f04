//! The `items` tool: the I/O half of a map over a large source. `split` reads the source once
//! and cuts it into batches that each name where their items sit (a byte range of the object,
//! or the key to list after), so the run's state holds batches, never the items; `read` fetches
//! one batch's items with one ranged read (two for CSV: the header and the batch) or one
//! listing; `write` stores a JSON value whole, for results too large for the run's state.
//!
//! Sources are `s3://bucket/key`, `s3://bucket/prefix/` or local paths (see [`Location`]), in
//! the formats of [`Format`]. The calls and their answers:
//!
//! - `{op: split, source, format?, batch_size}` -> `{count, format, batches, header_bytes?}`,
//!   each batch `{first, count, range: [start, end)}` or, for `objects`, `{first, count, after}`;
//! - `{op: read, source, format, batch, header_bytes?}` -> `{items: [...]}` (exactly `count`);
//! - `{op: write, uri, value}` -> `{uri, bytes}`.

mod error;
mod formats;
mod scan;
mod source;
mod store;

use async_trait::async_trait;
use baton_core::engine::StepError;
use baton_core::plan::tools::ToolInput;
use baton_runtime::ports::{Tool, ToolCall};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::aws::AwsTool;
pub use error::ItemsError;
pub use formats::Format;
pub use source::Location;
use store::Store;

/// The name the tool is registered under.
pub use baton_core::engine::ITEMS_TOOL;

/// An `items` call: the step's rendered input, by `op`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "lowercase")]
pub enum ItemsCall {
    /// Reads the source once and cuts it into batches of `batch_size` items.
    Split {
        /// `s3://bucket/key`, `s3://bucket/prefix/` or a local path.
        source: String,
        /// The source's format; from its name when absent.
        #[serde(default, deserialize_with = "formats::named")]
        format: Option<Format>,
        /// Items per batch, at least 1.
        batch_size: u64,
    },
    /// Reads one batch that `split` answered.
    Read {
        /// The source `split` read.
        source: String,
        /// The format `split` answered (resolved again from the name when absent).
        #[serde(default, deserialize_with = "formats::named")]
        format: Option<Format>,
        /// The batch.
        batch: Batch,
        /// A CSV source's `header_bytes`, as `split` answered.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        header_bytes: Option<u64>,
    },
    /// Writes `value` as compact JSON to `uri`, replacing what is there.
    Write {
        /// `s3://bucket/key` or a local path.
        uri: String,
        /// The value.
        value: Value,
    },
}

impl ToolInput for ItemsCall {
    const TOOL: &'static str = ITEMS_TOOL;
}

/// A run of consecutive items: where the first is and how many there are.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Batch {
    /// The index of the batch's first item in the source.
    pub first: u64,
    /// How many items it holds.
    pub count: u64,
    /// Where its items are.
    #[serde(flatten)]
    pub at: BatchAt,
}

/// Where a batch's items are.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum BatchAt {
    /// `jsonl`, `csv`, `json`: the bytes `[start, end)` of the object holding them.
    Range {
        /// Start and exclusive end.
        range: [u64; 2],
    },
    /// `objects`: they are the keys listed after `after` (from the start when null).
    After {
        /// The last key of the previous batch.
        after: Option<String>,
    },
}

/// What `split` answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SplitAnswer {
    /// Items in the source.
    pub count: u64,
    /// The format the source was read in.
    pub format: Format,
    /// The batches, in order; none for an empty source.
    pub batches: Vec<Batch>,
    /// CSV only: the header record's length, its line end included.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub header_bytes: Option<u64>,
}

/// The `items` tool; it reaches S3 through an [`AwsTool`].
#[derive(Debug, Clone)]
pub struct ItemsTool {
    store: Store,
    /// Local paths are refused (a Lambda function's files are not a workflow's to read).
    s3_only: bool,
}

impl Default for ItemsTool {
    fn default() -> Self {
        Self::new(AwsTool::from_env())
    }
}

impl ItemsTool {
    /// A tool reading and writing S3 through `aws`.
    pub fn new(aws: AwsTool) -> Self {
        Self { store: Store::new(aws), s3_only: false }
    }

    /// The same tool refusing local paths: what a stack's coordinator runs, where a path would
    /// name the function's own files (`/proc/self/environ` holds its credentials).
    pub fn s3_only(mut self) -> Self {
        self.s3_only = true;
        self
    }

    /// Runs one call; the answer's shape depends on `op` (see the module docs).
    pub async fn invoke(&self, call: &ItemsCall) -> Result<Value, StepError> {
        if self.s3_only {
            let (uri, field) = match call {
                ItemsCall::Split { source, .. } | ItemsCall::Read { source, .. } => (source, "source"),
                ItemsCall::Write { uri, .. } => (uri, "results"),
            };
            if !matches!(Location::parse(uri, field)?, Location::S3 { .. }) {
                return Err(StepError::new(
                    baton_core::engine::ErrorKind::Tool,
                    format!("on AWS `items_from.{field}` is an s3:// URI, not the local path `{uri}`"),
                ));
            }
        }
        let answer = match call {
            ItemsCall::Split { source, format, batch_size } => {
                serde_json::to_value(self.split(source, *format, *batch_size).await?).unwrap_or(Value::Null)
            }
            ItemsCall::Read { source, format, batch, header_bytes } => {
                json!({"items": self.read(source, *format, batch, *header_bytes).await?})
            }
            ItemsCall::Write { uri, value } => {
                let bytes = self.write(uri, value).await?;
                json!({"uri": uri, "bytes": bytes})
            }
        };
        Ok(answer)
    }

    /// Cuts `source` into batches of `batch_size` items.
    pub async fn split(
        &self,
        source: &str,
        format: Option<Format>,
        batch_size: u64,
    ) -> Result<SplitAnswer, ItemsError> {
        if batch_size == 0 {
            return Err(ItemsError::Field { field: "batch_size", why: "must be at least 1".into() });
        }
        let at = Location::parse(source, "source")?;
        let collection = at.is_s3_prefix() || self.store.is_local_dir(&at).await;
        let format = formats::resolve(format, &at, collection)?;
        if format == Format::Objects {
            return self.split_objects(&at, batch_size).await;
        }
        if collection {
            return Err(ItemsError::Field {
                field: "source",
                why: format!("is a prefix or directory, which `{}` cannot read: {source}", format.as_str()),
            });
        }
        let data = self.store.read_all(&at).await?;
        let layout = formats::layout(format, &data, source)?;
        let size = usize::try_from(batch_size).unwrap_or(usize::MAX);
        let batches = layout
            .items
            .chunks(size)
            .enumerate()
            .map(|(n, chunk)| {
                let (start, end) = (chunk.first().map_or(0, |r| r.start), chunk.last().map_or(0, |r| r.end));
                Batch {
                    first: n as u64 * batch_size,
                    count: chunk.len() as u64,
                    at: BatchAt::Range { range: [start as u64, end as u64] },
                }
            })
            .collect();
        Ok(SplitAnswer {
            count: layout.items.len() as u64,
            format,
            batches,
            header_bytes: layout.header_bytes.map(|h| h as u64),
        })
    }

    async fn split_objects(&self, at: &Location, batch_size: u64) -> Result<SplitAnswer, ItemsError> {
        let mut batches: Vec<Batch> = Vec::new();
        let (mut count, mut last, mut token) = (0u64, None::<String>, None::<String>);
        loop {
            let page = self.store.list(at, None, None, token.as_deref()).await?;
            for e in page.entries {
                match batches.last_mut() {
                    Some(b) if b.count < batch_size => b.count += 1,
                    _ => batches.push(Batch { first: count, count: 1, at: BatchAt::After { after: last.take() } }),
                }
                count += 1;
                last = Some(e.key);
            }
            match page.next {
                Some(t) => token = Some(t),
                None => break,
            }
        }
        Ok(SplitAnswer { count, format: Format::Objects, batches, header_bytes: None })
    }

    /// The items of one batch of `source`, exactly `batch.count` of them.
    pub async fn read(
        &self,
        source: &str,
        format: Option<Format>,
        batch: &Batch,
        header_bytes: Option<u64>,
    ) -> Result<Vec<Value>, ItemsError> {
        let at = Location::parse(source, "source")?;
        let format = match format {
            Some(f) => f,
            None => formats::resolve(None, &at, at.is_s3_prefix() || self.store.is_local_dir(&at).await)?,
        };
        let items = match (&batch.at, format) {
            (BatchAt::After { after }, Format::Objects) => {
                self.read_objects(&at, after.as_deref(), batch.count).await?
            }
            (_, Format::Objects) => {
                return Err(ItemsError::Field { field: "batch.after", why: "is missing (an `objects` batch)".into() });
            }
            (BatchAt::Range { range: [start, end] }, f) => {
                if start > end {
                    return Err(ItemsError::Field {
                        field: "batch.range",
                        why: format!("runs backwards: {start}..{end}"),
                    });
                }
                let header = match f {
                    Format::Csv => {
                        let h = header_bytes.ok_or_else(|| ItemsError::Field {
                            field: "header_bytes",
                            why: "is missing (a csv batch needs the header `split` measured)".into(),
                        })?;
                        self.store.read_range(&at, 0..h).await?
                    }
                    _ => Vec::new(),
                };
                let data = self.store.read_range(&at, *start..*end).await?;
                formats::read(f, &header, &data, batch.first, source)?
            }
            (BatchAt::After { .. }, f) => {
                return Err(ItemsError::Field {
                    field: "batch.range",
                    why: format!("is missing (a `{}` batch)", f.as_str()),
                });
            }
        };
        if items.len() as u64 != batch.count {
            return Err(ItemsError::Changed {
                uri: source.to_owned(),
                first: batch.first,
                expected: batch.count,
                found: items.len() as u64,
            });
        }
        Ok(items)
    }

    async fn read_objects(&self, at: &Location, after: Option<&str>, count: u64) -> Result<Vec<Value>, ItemsError> {
        let mut items = Vec::new();
        let mut token = None::<String>;
        while (items.len() as u64) < count {
            let want = count - items.len() as u64;
            let page = self.store.list(at, after, Some(want), token.as_deref()).await?;
            items.extend(page.entries.into_iter().map(|e| e.item));
            match page.next {
                Some(t) => token = Some(t),
                None => break,
            }
        }
        items.truncate(usize::try_from(count).unwrap_or(usize::MAX));
        Ok(items)
    }

    /// Writes `value` as compact JSON to `uri`; answers the bytes written.
    pub async fn write(&self, uri: &str, value: &Value) -> Result<u64, ItemsError> {
        let at = Location::parse(uri, "uri")?;
        if at.is_s3_prefix() {
            return Err(ItemsError::Field { field: "uri", why: format!("names a prefix, not an object: {uri}") });
        }
        let text = value.to_string();
        let bytes = text.len() as u64;
        self.store.write(&at, text).await?;
        Ok(bytes)
    }
}

#[async_trait]
impl Tool for ItemsTool {
    async fn call(&self, call: &ToolCall) -> Result<Value, StepError> {
        let op = call.input.get("op").and_then(Value::as_str);
        if !matches!(op, Some("split" | "read" | "write")) {
            let why = match op {
                Some(other) => format!("is `{other}`; the items tool does `split`, `read` and `write`"),
                None => "is missing: `split`, `read` or `write`".into(),
            };
            return Err(ItemsError::Field { field: "op", why }.into());
        }
        let input: ItemsCall = call.input_as()?;
        self.invoke(&input).await
    }

    /// The coordinator runs it itself: a map's batches are planned and fed from where the run
    /// is driven, without a worker round trip per batch.
    fn inline(&self) -> bool {
        true
    }
}
