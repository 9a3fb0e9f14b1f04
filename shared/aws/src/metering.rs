//! Counting every AWS request baton sends: an SDK interceptor on every client this crate builds.
//! Each HTTP attempt (retries included) is counted as `Service.Operation` in the process-wide
//! total and in the current run's measured scope ([`baton_runtime::metering`]); DynamoDB
//! requests also count their capacity units (`DynamoDB.WriteUnits`, `DynamoDB.ReadUnits`).
//!
//! Units are estimated from sizes the interceptor sees: a write costs one unit per KB of the
//! request's item (two in a transaction), a read one unit per 4 KB of the response, always as a
//! strongly consistent read (an upper bound for index queries). A delete is billed by the size
//! of the item it removes, which the request does not show; it counts one unit.

use std::sync::Mutex;

use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::interceptors::Intercept;
use aws_smithy_runtime_api::client::interceptors::context::{
    BeforeDeserializationInterceptorContextRef, BeforeTransmitInterceptorContextRef,
};
use aws_smithy_runtime_api::client::orchestrator::Metadata;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::config_bag::ConfigBag;
use baton_runtime::metering::{Usage, add, record};

static TOTAL: Mutex<Usage> = Mutex::new(Usage::new());

/// Everything counted in this process so far.
pub fn total() -> Usage {
    TOTAL.lock().map(|u| u.clone()).unwrap_or_default()
}

/// Clears the process-wide total (benchmarks measure one workload at a time).
pub fn reset() {
    if let Ok(mut u) = TOTAL.lock() {
        u.clear();
    }
}

fn count(key: &str, n: u64) {
    if n == 0 {
        return;
    }
    if let Ok(mut u) = TOTAL.lock() {
        add(&mut u, &Usage::from([(key.to_owned(), n)]));
    }
    record(key, n);
}

/// Write units of a DynamoDB write request from its JSON body.
pub fn write_units(operation: &str, body: &[u8]) -> u64 {
    let kb = |bytes: usize| (bytes as u64).div_ceil(1024).max(1);
    match operation {
        "TransactWriteItems" => {
            let parsed: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
            parsed["TransactItems"]
                .as_array()
                .map(|items| items.iter().map(|i| 2 * kb(i.to_string().len())).sum())
                .unwrap_or(2)
        }
        "PutItem" | "UpdateItem" => kb(body.len()),
        "DeleteItem" => 1,
        _ => 0,
    }
}

/// The interceptor.
#[derive(Debug, Clone, Copy, Default)]
pub struct Meter;

impl Intercept for Meter {
    fn name(&self) -> &'static str {
        "baton-meter"
    }

    fn read_before_transmit(
        &self,
        context: &BeforeTransmitInterceptorContextRef<'_>,
        _components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let Some(meta) = cfg.load::<Metadata>() else { return Ok(()) };
        count(&format!("{}.{}", meta.service(), meta.name()), 1);
        if meta.service() == "DynamoDB"
            && let Some(body) = context.request().body().bytes()
        {
            count("DynamoDB.WriteUnits", write_units(meta.name(), body));
        }
        Ok(())
    }

    fn read_before_deserialization(
        &self,
        context: &BeforeDeserializationInterceptorContextRef<'_>,
        _components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let Some(meta) = cfg.load::<Metadata>() else { return Ok(()) };
        if meta.service() == "DynamoDB" && matches!(meta.name(), "GetItem" | "Query") {
            let len: u64 = context.response().headers().get("content-length").and_then(|v| v.parse().ok()).unwrap_or(0);
            count("DynamoDB.ReadUnits", len.div_ceil(4096).max(1));
        }
        Ok(())
    }
}

/// A DynamoDB client that counts its requests.
pub fn dynamodb(config: &aws_config::SdkConfig) -> aws_sdk_dynamodb::Client {
    aws_sdk_dynamodb::Client::from_conf(aws_sdk_dynamodb::config::Builder::from(config).interceptor(Meter).build())
}

/// An SQS client that counts its requests.
pub fn sqs(config: &aws_config::SdkConfig) -> aws_sdk_sqs::Client {
    aws_sdk_sqs::Client::from_conf(aws_sdk_sqs::config::Builder::from(config).interceptor(Meter).build())
}

/// An EventBridge client that counts its requests.
pub fn eventbridge(config: &aws_config::SdkConfig) -> aws_sdk_eventbridge::Client {
    aws_sdk_eventbridge::Client::from_conf(
        aws_sdk_eventbridge::config::Builder::from(config).interceptor(Meter).build(),
    )
}

/// An S3 client that counts its requests. Path-style addressing when an endpoint is set
/// (emulators answer `127.0.0.1:4566/bucket`, not `bucket.127.0.0.1`).
pub fn s3(config: &aws_config::SdkConfig) -> aws_sdk_s3::Client {
    let path_style = config.endpoint_url().is_some();
    aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(config).interceptor(Meter).force_path_style(path_style).build(),
    )
}

/// An EventBridge Scheduler client that counts its requests.
pub fn scheduler(config: &aws_config::SdkConfig) -> aws_sdk_scheduler::Client {
    aws_sdk_scheduler::Client::from_conf(aws_sdk_scheduler::config::Builder::from(config).interceptor(Meter).build())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transactions_cost_two_units_per_item_kb() {
        let small = serde_json::json!({"TransactItems": [{"Put": {"x": "y"}}, {"Update": {"a": "b"}}]});
        assert_eq!(write_units("TransactWriteItems", small.to_string().as_bytes()), 4);
        let big = serde_json::json!({"TransactItems": [{"Put": {"x": "y".repeat(3000)}}]});
        assert_eq!(write_units("TransactWriteItems", big.to_string().as_bytes()), 6);
        assert_eq!(write_units("PutItem", &[b'x'; 100]), 1);
        assert_eq!(write_units("Query", b"{}"), 0);
    }
}
