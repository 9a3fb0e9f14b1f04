//! The digest witness: each seal the DynamoDB store commits is also written to an S3 bucket with
//! Object Lock (`<stack>-audit-digests`, COMPLIANCE retention, see infra/template.yaml), as
//! `digests/<run_id>/<count:020>.json`. A writer of the table can delete a suffix of records and
//! seals; it cannot remove or replace an object under retention, so `audit verify` compares the
//! table's seals with the bucket's (`RunStore::witnessed_digests`).
//!
//! The put comes after the transaction succeeded, so a cancelled commit leaves no object; it is
//! conditional (`If-None-Match: *`, which the stack's role requires), so no version can be added
//! over a seal. A failed put does not undo the commit (the records are durable and signed): it is
//! logged, counted, and the seal shows as unwitnessed in `audit verify`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use aws_sdk_s3::error::ProvideErrorMetadata;
use baton_core::audit::digest::AuditDigest;
use baton_runtime::StoreError;

use crate::sdk_error::aws_err;

/// The environment variable naming the bucket (the template sets it on the coordinator and the
/// api function); without it the bucket is `<stack>-audit-digests`.
pub const DIGEST_BUCKET_ENV: &str = "BATON_DIGEST_BUCKET";
/// Where in the bucket the seals go (the only prefix the stack's roles may touch).
pub const DIGEST_PREFIX: &str = "digests/";

/// Writes seals to the witness bucket and reads them back.
#[derive(Clone)]
pub struct DigestWitness {
    s3: aws_sdk_s3::Client,
    bucket: String,
    failed_puts: Arc<AtomicU64>,
}

/// The object key of the seal of `run_id` signed at record `count`: zero-padded, so keys list in
/// count order.
pub fn object_key(run_id: &str, count: u64) -> String {
    format!("{DIGEST_PREFIX}{run_id}/{count:020}.json")
}

impl DigestWitness {
    /// The witness of `stack`: the bucket `BATON_DIGEST_BUCKET` names, else `<stack>-audit-digests`.
    pub fn new(config: &aws_config::SdkConfig, stack: &str) -> Self {
        let bucket = std::env::var(DIGEST_BUCKET_ENV)
            .ok()
            .filter(|b| !b.trim().is_empty())
            .unwrap_or_else(|| format!("{stack}-audit-digests"));
        Self::on_bucket(config, bucket)
    }

    /// A witness on `bucket`.
    pub fn on_bucket(config: &aws_config::SdkConfig, bucket: impl Into<String>) -> Self {
        Self { s3: crate::metering::s3(config), bucket: bucket.into(), failed_puts: Arc::default() }
    }

    /// The bucket's name.
    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    /// How many puts failed in this process (each also logged as a warning).
    pub fn failed_puts(&self) -> u64 {
        self.failed_puts.load(Ordering::Relaxed)
    }

    /// Writes the seal `body` (its JSON as the table stores it) of `run_id` at record `count`.
    /// An object already there is success: only a retry of this very put can have written it,
    /// because the seal's item in the table exists once.
    pub async fn put(&self, run_id: &str, count: u64, body: &str) -> Result<(), StoreError> {
        let key = object_key(run_id, count);
        let put = self
            .s3
            .put_object()
            .bucket(&self.bucket)
            .key(&key)
            .if_none_match("*")
            .content_type("application/json")
            .body(body.as_bytes().to_vec().into())
            .send()
            .await;
        match put {
            Ok(_) => Ok(()),
            Err(e) if e.raw_response().is_some_and(|r| r.status().as_u16() == 412) => Ok(()),
            Err(e) => Err(aws_err(&format!("S3 PutObject s3://{}/{key}", self.bucket))(e)),
        }
    }

    /// [`DigestWitness::put`], with a failure logged and counted instead of returned: the commit
    /// it follows stands either way.
    pub async fn witness(&self, run_id: &str, count: u64, body: &str) {
        if let Err(e) = self.put(run_id, count, body).await {
            self.failed_puts.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(run_id, count, error = %e, "audit seal not witnessed in S3; the table alone holds it");
        }
    }

    /// Every seal of `run_id` in the bucket, by count; `None` when the bucket does not exist (a
    /// stack deployed before the witness, or an emulator without it).
    pub async fn digests(&self, run_id: &str) -> Result<Option<Vec<AuditDigest>>, StoreError> {
        let prefix = format!("{DIGEST_PREFIX}{run_id}/");
        let mut keys = Vec::new();
        let mut token = None;
        loop {
            let page = self
                .s3
                .list_objects_v2()
                .bucket(&self.bucket)
                .prefix(&prefix)
                .set_continuation_token(token)
                .send()
                .await;
            let page = match page {
                Ok(p) => p,
                Err(e) if e.as_service_error().and_then(|s| s.code()) == Some("NoSuchBucket") => return Ok(None),
                Err(e) => return Err(aws_err(&format!("S3 ListObjectsV2 s3://{}/{prefix}", self.bucket))(e)),
            };
            // Only `<count:020>.json` right under the run's prefix: another run's id may extend
            // this one's with a `/`.
            keys.extend(
                page.contents().iter().filter_map(|o| o.key()).filter(|k| is_seal_key(&prefix, k)).map(str::to_owned),
            );
            match page.next_continuation_token() {
                Some(t) if page.is_truncated() == Some(true) => token = Some(t.to_owned()),
                _ => break,
            }
        }
        let mut out = Vec::with_capacity(keys.len());
        for key in keys {
            let text = self.get(&key).await?;
            let digest: AuditDigest = serde_json::from_str(&text)
                .map_err(|e| StoreError::Corrupt(format!("s3://{}/{key} is not a digest: {e}", self.bucket)))?;
            out.push(digest);
        }
        out.sort_by_key(|d| d.count);
        Ok(Some(out))
    }

    async fn get(&self, key: &str) -> Result<String, StoreError> {
        let what = format!("S3 GetObject s3://{}/{key}", self.bucket);
        let got = self.s3.get_object().bucket(&self.bucket).key(key).send().await.map_err(aws_err(&what))?;
        let bytes = got.body.collect().await.map_err(|e| StoreError::Backend(format!("{what}: {e}")))?.into_bytes();
        String::from_utf8(bytes.to_vec()).map_err(|e| StoreError::Corrupt(format!("{what}: not UTF-8: {e}")))
    }
}

fn is_seal_key(prefix: &str, key: &str) -> bool {
    key.strip_prefix(prefix)
        .and_then(|name| name.strip_suffix(".json"))
        .is_some_and(|count| count.len() == 20 && count.bytes().all(|b| b.is_ascii_digit()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_sort_by_count_and_only_a_runs_own_seals_are_taken() {
        assert_eq!(object_key("r1", 7), "digests/r1/00000000000000000007.json");
        assert!(object_key("r1", 9) < object_key("r1", 10));
        assert!(is_seal_key("digests/r1/", &object_key("r1", 3)));
        assert!(!is_seal_key("digests/r1/", "digests/r1/x/00000000000000000003.json"));
        assert!(!is_seal_key("digests/r1/", "digests/r1/3.json"));
    }
}
