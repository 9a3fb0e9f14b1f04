//! The claim check: a payload larger than a threshold (default 200 KiB, `BATON_CLAIM_CHECK_BYTES`)
//! is stored in the stack's bucket (`<stack>-payloads`) and a small reference travels instead, so
//! messages stay under SQS's 256 KiB and items under DynamoDB's 400 KB. Objects are
//! content-addressed (SHA-256 of the payload), so a retried write stores the same object; the
//! bucket's lifecycle rule removes old ones.

use sha2::Digest;

use crate::sdk_error::aws_err;
use baton_runtime::StoreError;

/// Where message payloads go (the bucket's lifecycle rule expires them after 30 days).
pub const MESSAGE_PREFIX: &str = "payloads/";
/// Where the run store keeps item payloads (run state, journal, claimed results): never expired,
/// because a run may wait longer than any expiry.
pub const STATE_PREFIX: &str = "state/";

/// Default threshold.
pub const DEFAULT_THRESHOLD: usize = 200 * 1024;

/// Stores and resolves large payloads.
#[derive(Clone)]
pub struct ClaimCheck {
    s3: aws_sdk_s3::Client,
    bucket: String,
    threshold: usize,
}

impl ClaimCheck {
    /// A claim check on bucket `<stack>-payloads`.
    pub fn new(config: &aws_config::SdkConfig, stack: &str) -> Self {
        let threshold =
            std::env::var("BATON_CLAIM_CHECK_BYTES").ok().and_then(|v| v.parse().ok()).unwrap_or(DEFAULT_THRESHOLD);
        Self { s3: crate::metering::s3(config), bucket: format!("{stack}-payloads"), threshold }
    }

    /// Payloads longer than this are checked in.
    pub fn threshold(&self) -> usize {
        self.threshold
    }

    /// `text`, or a reference to it in the bucket when it is larger than the threshold.
    pub async fn check_in(&self, text: String) -> Result<String, StoreError> {
        if text.len() <= self.threshold {
            return Ok(text);
        }
        self.check_in_under(MESSAGE_PREFIX, text).await
    }

    /// Stores `text` under `prefix` in the bucket whatever its size and returns the reference.
    pub async fn check_in_under(&self, prefix: &str, text: String) -> Result<String, StoreError> {
        let digest = sha2::Sha256::digest(text.as_bytes());
        let key = format!("{prefix}{}", digest.iter().map(|b| format!("{b:02x}")).collect::<String>());
        self.s3
            .put_object()
            .bucket(&self.bucket)
            .key(&key)
            .content_type("application/json")
            .body(text.into_bytes().into())
            .send()
            .await
            .map_err(aws_err(&format!("S3 PutObject s3://{}/{key}", self.bucket)))?;
        Ok(serde_json::json!({"baton_claim_check": {"bucket": self.bucket, "key": key}}).to_string())
    }

    /// The payload `text` stands for: itself, or the object it references.
    pub async fn check_out(&self, text: &str) -> Result<String, StoreError> {
        let Some((bucket, key)) = reference(text) else { return Ok(text.to_owned()) };
        let got = self
            .s3
            .get_object()
            .bucket(&bucket)
            .key(&key)
            .send()
            .await
            .map_err(aws_err(&format!("S3 GetObject s3://{bucket}/{key}")))?;
        let bytes = got
            .body
            .collect()
            .await
            .map_err(|e| StoreError::Backend(format!("S3 GetObject s3://{bucket}/{key}: {e}")))?
            .into_bytes();
        String::from_utf8(bytes.to_vec())
            .map_err(|e| StoreError::Corrupt(format!("s3://{bucket}/{key} is not UTF-8: {e}")))
    }
}

impl ClaimCheck {
    /// Deletes the object a reference names: an erased value must not live on in an old copy.
    pub async fn discard(&self, text: &str) -> Result<(), StoreError> {
        let Some((bucket, key)) = reference(text) else { return Ok(()) };
        self.s3
            .delete_object()
            .bucket(&bucket)
            .key(&key)
            .send()
            .await
            .map_err(aws_err(&format!("S3 DeleteObject s3://{bucket}/{key}")))?;
        Ok(())
    }
}

/// The (bucket, key) of a claim-check reference.
pub fn reference(text: &str) -> Option<(String, String)> {
    if text.len() > 512 || !text.contains("baton_claim_check") {
        return None;
    }
    let v: serde_json::Value = serde_json::from_str(text).ok()?;
    let r = v.get("baton_claim_check")?;
    Some((r.get("bucket")?.as_str()?.to_owned(), r.get("key")?.as_str()?.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_are_recognised_and_payloads_are_not() {
        let r = r#"{"baton_claim_check":{"bucket":"b","key":"payloads/ab"}}"#;
        assert_eq!(reference(r), Some(("b".into(), "payloads/ab".into())));
        assert_eq!(reference(r#"{"kind":"result"}"#), None);
    }
}
