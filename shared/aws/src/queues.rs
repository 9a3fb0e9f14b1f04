//! SQS look-ups shared by the dispatcher, the trigger rules and `baton dev`.

use crate::sdk_error::aws_err;
use aws_sdk_sqs::types::QueueAttributeName;
use baton_runtime::StoreError;

/// The URL of queue `name`.
pub async fn url(sqs: &aws_sdk_sqs::Client, name: &str) -> Result<String, StoreError> {
    sqs.get_queue_url()
        .queue_name(name)
        .send()
        .await
        .map_err(aws_err(&format!("SQS GetQueueUrl `{name}` (is the stack provisioned? run localstack/up)")))?
        .queue_url
        .ok_or_else(|| StoreError::Backend(format!("queue `{name}` has no URL")))
}

/// The ARN of the queue at `url` (rule and schedule targets name it).
pub async fn arn(sqs: &aws_sdk_sqs::Client, url: &str) -> Result<String, StoreError> {
    let attrs = sqs
        .get_queue_attributes()
        .queue_url(url)
        .attribute_names(QueueAttributeName::QueueArn)
        .send()
        .await
        .map_err(aws_err("SQS GetQueueAttributes"))?;
    attrs
        .attributes()
        .and_then(|a| a.get(&QueueAttributeName::QueueArn))
        .cloned()
        .ok_or_else(|| StoreError::Backend(format!("queue {url} has no ARN")))
}
