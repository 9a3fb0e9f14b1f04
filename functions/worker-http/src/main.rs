//! The http worker function: an SQS event source mapping on `<stack>-http` with
//! `ReportBatchItemFailures`; it claims each call, runs it, and sends the results to the
//! coordinator queue. Traces go to OTLP when `OTEL_EXPORTER_OTLP_ENDPOINT` is set.
//! Configuration: `BATON_STACK`, and the SDK's default chain.

use std::sync::Arc;

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use lambda_runtime::{Error, LambdaEvent, service_fn};

#[tokio::main]
async fn main() -> Result<(), Error> {
    let telemetry = Arc::new(baton_aws::handlers::init_lambda_logging("baton-worker-http")?);
    let stack = std::env::var("BATON_STACK").map_err(|_| "BATON_STACK is not set")?;
    let config = baton_aws::config::from_env().await;
    let function = Arc::new(baton_aws::handlers::WorkerFunction::for_lambda(&config, &stack, "http").await?);
    lambda_runtime::run(service_fn(move |event: LambdaEvent<SqsEvent>| {
        let (function, telemetry) = (function.clone(), telemetry.clone());
        async move {
            let out = function.handle(event.payload).await;
            // Spans of this invocation leave before the sandbox can be frozen.
            telemetry.flush().await;
            Ok::<SqsBatchResponse, Error>(out)
        }
    }))
    .await
}
