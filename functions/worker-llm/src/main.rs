//! The llm worker function: an SQS event source mapping on `<stack>-llm` with
//! `ReportBatchItemFailures`; it claims each model call, runs it with its repair rounds, and sends
//! the results (with the call's audit report) to the coordinator queue. Traces go to OTLP when
//! `OTEL_EXPORTER_OTLP_ENDPOINT` is set. Configuration: `BATON_STACK`, `OPENAI_BASE_URL`, the key
//! in `OPENAI_API_KEY` or the secret `<stack>/openai-api-key`, and the SDK's default chain.

use std::sync::Arc;

use aws_lambda_events::event::sqs::SqsEvent;
use lambda_runtime::Error;

#[tokio::main]
async fn main() -> Result<(), Error> {
    let telemetry = baton_aws::handlers::init_lambda_logging("baton-worker-llm")?;
    let stack = std::env::var("BATON_STACK").map_err(|_| "BATON_STACK is not set")?;
    let config = baton_aws::config::from_env().await;
    let function = Arc::new(baton_aws::handlers::WorkerFunction::for_lambda(&config, &stack, "llm").await?);
    baton_aws::lambda::serve(telemetry, move |event: SqsEvent| {
        let function = function.clone();
        async move { function.handle(event).await }
    })
    .await
}
