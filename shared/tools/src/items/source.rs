//! Where items come from and where values go: `s3://bucket/key` (one object),
//! `s3://bucket/prefix/` (every object under the prefix), or a local path (`file:///abs/path`
//! or a plain path), which is a file or a directory.

use std::fmt;
use std::path::PathBuf;

use super::error::ItemsError;

/// A parsed source or destination URI.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    /// An S3 object, or a prefix when `key` is empty or ends with `/`.
    S3 {
        /// The bucket.
        bucket: String,
        /// The key or prefix.
        key: String,
    },
    /// A local file or directory.
    Local(PathBuf),
}

impl Location {
    /// Parses `uri`; `field` names the call's field in the error.
    pub fn parse(uri: &str, field: &'static str) -> Result<Self, ItemsError> {
        if let Some(rest) = uri.strip_prefix("s3://") {
            let (bucket, key) = rest.split_once('/').unwrap_or((rest, ""));
            if bucket.is_empty() {
                return Err(ItemsError::Field { field, why: format!("names no bucket: {uri}") });
            }
            return Ok(Self::S3 { bucket: bucket.to_owned(), key: key.to_owned() });
        }
        let path = uri.strip_prefix("file://").unwrap_or(uri);
        if path.is_empty() {
            return Err(ItemsError::Field { field, why: "is empty".into() });
        }
        if uri.contains("://") && !uri.starts_with("file://") {
            return Err(ItemsError::Field { field, why: format!("is neither s3://, file:// nor a path: {uri}") });
        }
        Ok(Self::Local(PathBuf::from(path)))
    }

    /// True for an S3 prefix; a local path is a directory only on disk, which the store checks.
    pub fn is_s3_prefix(&self) -> bool {
        matches!(self, Self::S3 { key, .. } if key.is_empty() || key.ends_with('/'))
    }

    /// The name whose suffix implies the format (`.jsonl`, `.csv`, `.json`).
    pub fn name(&self) -> String {
        match self {
            Self::S3 { key, .. } => key.clone(),
            Self::Local(p) => p.display().to_string(),
        }
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::S3 { bucket, key } => write!(f, "s3://{bucket}/{key}"),
            Self::Local(p) => write!(f, "{}", p.display()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uris_parse_into_objects_prefixes_and_paths() {
        let s3 = |b: &str, k: &str| Location::S3 { bucket: b.into(), key: k.into() };
        assert_eq!(Location::parse("s3://b/in/k.jsonl", "source").ok(), Some(s3("b", "in/k.jsonl")));
        let prefix = Location::parse("s3://b/in/", "source").ok();
        assert_eq!(prefix, Some(s3("b", "in/")));
        assert!(prefix.is_some_and(|p| p.is_s3_prefix()));
        assert!(Location::parse("s3://b", "source").is_ok_and(|p| p.is_s3_prefix()));
        assert_eq!(Location::parse("file:///tmp/x.csv", "source").ok(), Some(Location::Local("/tmp/x.csv".into())));
        assert_eq!(Location::parse("data/x.csv", "source").ok(), Some(Location::Local("data/x.csv".into())));
        assert!(Location::parse("s3:///k", "source").is_err());
        assert!(Location::parse("", "source").is_err());
        assert!(Location::parse("https://x/y", "source").is_err());
    }
}
