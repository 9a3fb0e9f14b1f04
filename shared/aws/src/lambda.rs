//! Serving a handler under the Lambda Runtime API, the same way for every function: one event
//! in, one response out, and the invocation's spans flushed before it returns (the sandbox may
//! be frozen right after).

use std::future::Future;
use std::sync::Arc;

use baton_runtime::ports::Clock;
use lambda_runtime::{LambdaEvent, service_fn};

use crate::telemetry::Telemetry;

/// Runs `handle` for every invocation until the runtime stops.
pub async fn serve<E, R, F, Fut>(telemetry: Telemetry, handle: F) -> Result<(), lambda_runtime::Error>
where
    E: serde::de::DeserializeOwned + Send + 'static,
    R: serde::Serialize + Send + 'static,
    F: Fn(E) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = R> + Send + 'static,
{
    serve_until(telemetry, move |event, _deadline| handle(event)).await
}

/// [`serve`], giving `handle` the invocation's deadline as well (ms since the epoch, from the
/// Runtime API's `Lambda-Runtime-Deadline-Ms`; `None` when it is not a usable one, see
/// `usable_deadline`), so it can stop starting work it cannot finish.
pub async fn serve_until<E, R, F, Fut>(telemetry: Telemetry, handle: F) -> Result<(), lambda_runtime::Error>
where
    E: serde::de::DeserializeOwned + Send + 'static,
    R: serde::Serialize + Send + 'static,
    F: Fn(E, Option<u64>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = R> + Send + 'static,
{
    let telemetry = Arc::new(telemetry);
    let handle = Arc::new(handle);
    lambda_runtime::run(service_fn(move |event: LambdaEvent<E>| {
        let (handle, telemetry) = (handle.clone(), telemetry.clone());
        async move {
            let out = handle(event.payload, usable_deadline(event.context.deadline)).await;
            telemetry.flush().await;
            Ok::<R, lambda_runtime::Error>(out)
        }
    }))
    .await
}

/// The whole `main` of a worker function for `tool`: logging and traces as `baton-worker-<tool>`,
/// the stack from `BATON_STACK`, the SDK's default chain, and every SQS batch to the worker.
pub async fn run_worker(tool: &str) -> Result<(), lambda_runtime::Error> {
    let telemetry = crate::handlers::init_lambda_logging(&format!("baton-worker-{tool}"))?;
    let stack = std::env::var("BATON_STACK").map_err(|_| "BATON_STACK is not set")?;
    let config = crate::config::from_env().await;
    let function = Arc::new(crate::handlers::WorkerFunction::for_lambda(&config, &stack, tool).await?);
    serve_until(telemetry, move |event: aws_lambda_events::event::sqs::SqsEvent, deadline: Option<u64>| {
        let function = function.clone();
        async move { function.handle_until(event, deadline).await }
    })
    .await
}

/// The invocation's deadline when it is one: Lambda gives ms since the epoch, always ahead of
/// now when the handler starts; some local emulators give the function timeout itself (cargo
/// lambda watch sends 600000), which would read as long past, so the worker would start nothing.
fn usable_deadline(deadline_ms: u64) -> Option<u64> {
    deadline_after(deadline_ms, baton_runtime::clock::SystemClock.now_ms())
}

fn deadline_after(deadline_ms: u64, now_ms: u64) -> Option<u64> {
    (deadline_ms > now_ms).then_some(deadline_ms)
}

#[cfg(test)]
mod tests {
    use super::deadline_after;

    #[test]
    fn a_deadline_behind_the_clock_is_not_one() {
        let now = 1_796_605_345_035;
        assert_eq!(deadline_after(now + 60_000, now), Some(now + 60_000));
        assert_eq!(deadline_after(600_000, now), None, "an emulator's relative timeout");
    }
}
