//! Serving a handler under the Lambda Runtime API, the same way for every function: one event
//! in, one response out, and the invocation's spans flushed before it returns (the sandbox may
//! be frozen right after).

use std::future::Future;
use std::sync::Arc;

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
    let telemetry = Arc::new(telemetry);
    let handle = Arc::new(handle);
    lambda_runtime::run(service_fn(move |event: LambdaEvent<E>| {
        let (handle, telemetry) = (handle.clone(), telemetry.clone());
        async move {
            let out = handle(event.payload).await;
            telemetry.flush().await;
            Ok::<R, lambda_runtime::Error>(out)
        }
    }))
    .await
}
