//! The api function: a Lambda function URL serving signed task callback links (`GET` shows the
//! task, `POST` answers it; answers go to the coordinator queue) and, with a bearer token, the
//! HTTP API under `/api/` (docs/api.md). Traces go to OTLP when `OTEL_EXPORTER_OTLP_ENDPOINT` is
//! set. Configuration: `BATON_STACK`, `BATON_CALLBACK_SECRET_ARN` (or `BATON_CALLBACK_SECRET`),
//! and for the API `BATON_API_TOKEN_ARN` (or `BATON_API_TOKEN`).

use std::sync::Arc;

use aws_lambda_events::event::lambda_function_urls::LambdaFunctionUrlRequest;
use lambda_runtime::Error;

#[tokio::main]
async fn main() -> Result<(), Error> {
    let telemetry = baton_aws::handlers::init_lambda_logging("baton-api")?;
    let stack = std::env::var("BATON_STACK").map_err(|_| "BATON_STACK is not set")?;
    let config = baton_aws::config::from_env().await;
    let signer = baton_aws::callbacks::verifier_from_env(&config)
        .await?
        .ok_or("BATON_CALLBACK_SECRET_ARN (or BATON_CALLBACK_SECRET) must be set")?;
    let function = baton_aws::callbacks::ApiFunction::new(&config, &stack, signer);
    let function = match baton_aws::callbacks::api_token_from_env(&config).await? {
        Some(token) => {
            let audit_key = baton_aws::audit_signing::audit_key_from_env(&config).await?;
            function.with_api(baton_aws::control::stack_api(&config, &stack, &token, audit_key))
        }
        None => function,
    };
    let function = Arc::new(function);
    baton_aws::lambda::serve(telemetry, move |event: LambdaFunctionUrlRequest| {
        let function = function.clone();
        async move { function.handle(event).await }
    })
    .await
}
