//! Ctrl-C as a future that commands pass to anything that waits on runs.

use baton_runtime::control::Stop;

/// Completes on the first Ctrl-C; never, when the signal cannot be watched.
pub async fn ctrl_c() {
    if tokio::signal::ctrl_c().await.is_err() {
        std::future::pending::<()>().await
    }
}

/// [`ctrl_c`] in the shape `RunControl` calls take.
pub fn stop_on_ctrl_c() -> Stop {
    Box::pin(ctrl_c())
}
