//! The llm worker function: an SQS event source mapping on `<stack>-llm` with
//! `ReportBatchItemFailures`; it claims each model call, runs it with its repair rounds, and sends
//! the results (with the call's audit report) to the coordinator queue. Traces go to OTLP when
//! `OTEL_EXPORTER_OTLP_ENDPOINT` is set. Configuration: `BATON_STACK`, `OPENAI_BASE_URL`, the key
//! in `OPENAI_API_KEY` or the secret `<stack>/openai-api-key`, and the SDK's default chain.

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    baton_aws::lambda::run_worker("llm").await
}
