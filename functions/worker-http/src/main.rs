//! The http worker function: an SQS event source mapping on `<stack>-http` with
//! `ReportBatchItemFailures`; it claims each call, runs it, and sends the results to the
//! coordinator queue. Configuration: `BATON_STACK`, and the SDK's default chain.

use std::sync::Arc;

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use lambda_runtime::{Error, LambdaEvent, service_fn};

#[tokio::main]
async fn main() -> Result<(), Error> {
    baton_aws::handlers::init_lambda_logging();
    let stack = std::env::var("BATON_STACK").map_err(|_| "BATON_STACK is not set")?;
    let config = baton_aws::config::from_env().await;
    let function = Arc::new(baton_aws::handlers::WorkerFunction::new(&config, &stack, "http"));
    lambda_runtime::run(service_fn(move |event: LambdaEvent<SqsEvent>| {
        let function = function.clone();
        async move { Ok::<SqsBatchResponse, Error>(function.handle(event.payload).await) }
    }))
    .await
}
