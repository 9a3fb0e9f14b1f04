//! The coordinator function: an SQS event source mapping on `<stack>-coordinator` (worker
//! results, timers from Scheduler, trigger events from EventBridge rules, sweep ticks) with
//! `ReportBatchItemFailures`. Configuration: `BATON_STACK`, the SDK's default chain, and for task callback links
//! `BATON_CALLBACK_URL` with `BATON_CALLBACK_SECRET_ARN` (see `baton_aws::callbacks`).

use std::sync::Arc;

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use lambda_runtime::{Error, LambdaEvent, service_fn};

#[tokio::main]
async fn main() -> Result<(), Error> {
    baton_aws::handlers::init_lambda_logging();
    let stack = std::env::var("BATON_STACK").map_err(|_| "BATON_STACK is not set")?;
    let config = baton_aws::config::from_env().await;
    let callbacks = baton_aws::callbacks::signer_from_env(&config).await?;
    let function = Arc::new(baton_aws::handlers::CoordinatorFunction::for_lambda(&config, &stack, callbacks));
    lambda_runtime::run(service_fn(move |event: LambdaEvent<SqsEvent>| {
        let function = function.clone();
        async move { Ok::<SqsBatchResponse, Error>(function.handle(event.payload).await) }
    }))
    .await
}
