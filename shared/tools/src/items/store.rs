//! Bytes and listings from where they live: S3 through the `aws` tool (so the emulator, the
//! credentials chain and the `S3.<Code>` error kinds are the same as for `aws` steps), or the
//! local file system on a blocking thread so a large file never stalls the coordinator.

use std::io::{Read, Seek, SeekFrom, Write};
use std::ops::Range;
use std::path::{Path, PathBuf};

use serde_json::{Map, Value, json};

use super::error::ItemsError;
use super::source::Location;
use crate::aws::{AwsCall, AwsTool};

/// The most keys one `ListObjectsV2` page returns.
const PAGE: u64 = 1000;

/// One object of a prefix or file of a directory, as an `objects` item describes it.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    /// The full S3 key, or the file's name.
    pub key: String,
    /// The item: `{key, size, etag, last_modified}` (S3) or `{key, size}` (local).
    pub item: Value,
}

/// A page of a listing and where the next one starts.
#[derive(Debug, Default)]
pub struct Page {
    /// The entries, in key order.
    pub entries: Vec<Entry>,
    /// The continuation token of the next page, if there is one.
    pub next: Option<String>,
}

/// Reads and writes sources through S3 or the local file system.
#[derive(Debug, Clone)]
pub struct Store {
    aws: AwsTool,
}

impl Store {
    /// A store reaching S3 through `aws`.
    pub fn new(aws: AwsTool) -> Self {
        Self { aws }
    }

    async fn s3(&self, action: &str, params: Value) -> Result<Value, ItemsError> {
        let call = AwsCall { service: "s3".into(), action: action.into(), params: Some(params), role_arn: None };
        self.aws.invoke(&call).await.map_err(ItemsError::Aws)
    }

    /// True when `at` is a local directory.
    pub async fn is_local_dir(&self, at: &Location) -> bool {
        match at {
            Location::Local(p) => {
                let p = p.clone();
                blocking(move || Ok(p.is_dir())).await.unwrap_or(false)
            }
            Location::S3 { .. } => false,
        }
    }

    /// The whole object or file.
    pub async fn read_all(&self, at: &Location) -> Result<Vec<u8>, ItemsError> {
        match at {
            Location::S3 { bucket, key } => {
                let got = self.s3("GetObject", json!({"Bucket": bucket, "Key": key})).await?;
                Ok(body(got))
            }
            Location::Local(p) => {
                let p = p.clone();
                blocking(move || std::fs::read(&p).map_err(|e| ItemsError::io(&p, e))).await
            }
        }
    }

    /// The bytes of `range` (end exclusive): one ranged GET, or a seek and a read.
    pub async fn read_range(&self, at: &Location, range: Range<u64>) -> Result<Vec<u8>, ItemsError> {
        if range.is_empty() {
            return Ok(Vec::new());
        }
        match at {
            Location::S3 { bucket, key } => {
                let r = format!("bytes={}-{}", range.start, range.end - 1);
                Ok(body(self.s3("GetObject", json!({"Bucket": bucket, "Key": key, "Range": r})).await?))
            }
            Location::Local(p) => {
                let p = p.clone();
                blocking(move || read_file_range(&p, range).map_err(|e| ItemsError::io(&p, e))).await
            }
        }
    }

    /// Writes `bytes` whole: a PutObject, or a temporary file renamed over the path so a crash
    /// never leaves half a file.
    pub async fn write(&self, at: &Location, text: String) -> Result<(), ItemsError> {
        match at {
            Location::S3 { bucket, key } => {
                let params = json!({"Bucket": bucket, "Key": key, "Body": text, "ContentType": "application/json"});
                self.s3("PutObject", params).await.map(drop)
            }
            Location::Local(p) => {
                let p = p.clone();
                blocking(move || write_file_atomically(&p, text.as_bytes())).await
            }
        }
    }

    /// One page of the objects under `at` (an S3 prefix or a local directory) whose keys sort
    /// after `after`, at most `max` of them. A local directory is listed whole in one page.
    pub async fn list(
        &self,
        at: &Location,
        after: Option<&str>,
        max: Option<u64>,
        token: Option<&str>,
    ) -> Result<Page, ItemsError> {
        match at {
            Location::S3 { bucket, key } => {
                let mut params = Map::new();
                params.insert("Bucket".into(), json!(bucket));
                params.insert("Prefix".into(), json!(key));
                params.insert("MaxKeys".into(), json!(max.unwrap_or(PAGE).min(PAGE)));
                if let Some(a) = after {
                    params.insert("StartAfter".into(), json!(a));
                }
                if let Some(t) = token {
                    params.insert("ContinuationToken".into(), json!(t));
                }
                let got = self.s3("ListObjectsV2", Value::Object(params)).await?;
                Ok(s3_page(&got))
            }
            Location::Local(dir) => {
                let dir = dir.clone();
                let after = after.map(str::to_owned);
                let mut entries = blocking(move || list_dir(&dir)).await?;
                entries.retain(|e| after.as_deref().is_none_or(|a| e.key.as_str() > a));
                if let Some(m) = max {
                    entries.truncate(usize::try_from(m).unwrap_or(usize::MAX));
                }
                Ok(Page { entries, next: None })
            }
        }
    }
}

fn body(got: Value) -> Vec<u8> {
    match got.get("Body") {
        Some(Value::String(s)) => s.clone().into_bytes(),
        _ => Vec::new(),
    }
}

fn s3_page(got: &Value) -> Page {
    let entries = got["Contents"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|c| {
            let key = c["Key"].as_str().unwrap_or_default().to_owned();
            let item = json!({"key": key, "size": c["Size"], "etag": c["ETag"], "last_modified": c["LastModified"]});
            Entry { key, item }
        })
        .collect();
    let truncated = got["IsTruncated"].as_bool().unwrap_or(false);
    let next = got["NextContinuationToken"].as_str().filter(|_| truncated).map(str::to_owned);
    Page { entries, next }
}

/// The files (not subdirectories) directly in `dir`, sorted by name.
fn list_dir(dir: &Path) -> Result<Vec<Entry>, ItemsError> {
    let mut entries = Vec::new();
    for e in std::fs::read_dir(dir).map_err(|e| ItemsError::io(dir, e))? {
        let e = e.map_err(|e| ItemsError::io(dir, e))?;
        let meta = e.metadata().map_err(|err| ItemsError::io(&e.path(), err))?;
        if !meta.is_file() {
            continue;
        }
        let key = e
            .file_name()
            .into_string()
            .map_err(|name| ItemsError::Malformed(format!("{}: the file name {name:?} is not UTF-8", dir.display())))?;
        entries.push(Entry { item: json!({"key": key, "size": meta.len()}), key });
    }
    entries.sort_by(|a, b| a.key.cmp(&b.key));
    Ok(entries)
}

fn read_file_range(path: &Path, range: Range<u64>) -> std::io::Result<Vec<u8>> {
    let mut f = std::fs::File::open(path)?;
    f.seek(SeekFrom::Start(range.start))?;
    let mut out = Vec::new();
    f.take(range.end - range.start).read_to_end(&mut out)?;
    Ok(out)
}

fn write_file_atomically(path: &Path, bytes: &[u8]) -> Result<(), ItemsError> {
    let io = |e| ItemsError::io(path, e);
    let name = path.file_name().ok_or_else(|| io(std::io::Error::other("the path names no file")))?;
    let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
    if !dir.as_os_str().is_empty() {
        std::fs::create_dir_all(&dir).map_err(|e| ItemsError::io(&dir, e))?;
    }
    // Same directory, so the rename stays on one file system and replaces the file in one step.
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    let tmp: PathBuf = dir.join(format!(".{}.{}.{nanos}.tmp", name.to_string_lossy(), std::process::id()));
    let written = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(io(e));
    }
    Ok(())
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ItemsError> + Send + 'static,
) -> Result<T, ItemsError> {
    tokio::task::spawn_blocking(f).await.map_err(|e| ItemsError::Blocking(e.to_string()))?
}
