//! The coordinator function: an SQS event source mapping on `<stack>-coordinator` (worker
//! results, timers from Scheduler, trigger events from EventBridge rules, sweep ticks) with
//! `ReportBatchItemFailures`. Traces go to OTLP when `OTEL_EXPORTER_OTLP_ENDPOINT` is set.
//! Configuration: `BATON_STACK`, the SDK's default chain, and for task callback links
//! `BATON_CALLBACK_URL` with `BATON_CALLBACK_SECRET_ARN` (see `baton_aws::callbacks`), and
//! `BATON_INLINE_CALL_MS` for the `http` calls it runs itself (see `baton_runtime::InlineCalls`).

use std::sync::Arc;

use aws_lambda_events::event::sqs::SqsEvent;
use lambda_runtime::Error;

#[tokio::main]
async fn main() -> Result<(), Error> {
    let telemetry = baton_aws::handlers::init_lambda_logging("baton-coordinator")?;
    let stack = std::env::var("BATON_STACK").map_err(|_| "BATON_STACK is not set")?;
    let config = baton_aws::config::from_env().await;
    let callbacks = baton_aws::callbacks::signer_from_env(&config).await?;
    let key = baton_aws::handlers::openai_key(&config, &stack).await?;
    let audit_key = baton_aws::audit_signing::audit_key_from_env(&config).await?;
    let message_key = baton_aws::message_signing::message_key_from_env(&config).await?;
    let inline = baton_aws::handlers::inline_calls_from_env(&config, &stack)?;
    let function = Arc::new(baton_aws::handlers::CoordinatorFunction::for_lambda(
        &config,
        &stack,
        callbacks,
        key,
        audit_key,
        message_key,
        inline,
    ));
    baton_aws::lambda::serve_until(telemetry, move |event: SqsEvent, deadline: Option<u64>| {
        let function = function.clone();
        async move { function.handle_until(event, deadline).await }
    })
    .await
}
