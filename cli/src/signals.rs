//! Ctrl-C (and, for servers, SIGTERM) as futures that commands pass to anything that waits on
//! runs.

use baton_runtime::control::Stop;

/// Completes on the first Ctrl-C; never, when the signal cannot be watched.
pub async fn ctrl_c() {
    if tokio::signal::ctrl_c().await.is_err() {
        std::future::pending::<()>().await
    }
}

/// Completes on the first Ctrl-C or SIGTERM: what a service manager or a container runtime
/// sends to stop a server.
pub async fn terminate() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => ctrl_c().await,
        }
    }
    #[cfg(not(unix))]
    ctrl_c().await
}

/// [`ctrl_c`] in the shape `RunControl` calls take.
pub fn stop_on_ctrl_c() -> Stop {
    Box::pin(ctrl_c())
}
