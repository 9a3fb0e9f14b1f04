//! The http worker function: an SQS event source mapping on `<stack>-http` with
//! `ReportBatchItemFailures`; it claims each call, runs it, and sends the results to the
//! coordinator queue. Traces go to OTLP when `OTEL_EXPORTER_OTLP_ENDPOINT` is set.
//! Configuration: `BATON_STACK`, and the SDK's default chain.

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    baton_aws::lambda::run_worker("http").await
}
