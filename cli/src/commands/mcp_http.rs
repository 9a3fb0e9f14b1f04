//! The Streamable HTTP transport of `baton mcp serve`: rmcp's session service at `/mcp` on a
//! hyper HTTP/1 server, until Ctrl-C or SIGTERM.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::{Context, Result};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use tower_service::Service;

/// Serves `handler` at `http://<listen>/mcp`.
pub(super) async fn serve<H: rmcp::ServerHandler + Clone>(handler: H, listen: SocketAddr) -> Result<()> {
    let listener = tokio::net::TcpListener::bind(listen).await.with_context(|| format!("cannot listen on {listen}"))?;
    let local = listener.local_addr()?;
    let host = local.to_string();
    // DNS rebinding guard: only requests naming this address (or localhost) are served.
    let config = StreamableHttpServerConfig::default().with_allowed_hosts([
        "localhost".to_owned(),
        "127.0.0.1".to_owned(),
        "::1".to_owned(),
        host,
    ]);
    let service =
        StreamableHttpService::new(move || Ok(handler.clone()), Arc::new(LocalSessionManager::default()), config);
    eprintln!("serving MCP (Streamable HTTP) on http://{local}/mcp; Ctrl-C or SIGTERM stops");
    let shutdown = crate::signals::terminate();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                let service = service.clone();
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                        let mut service = service.clone();
                        async move {
                            if req.uri().path() != "/mcp" {
                                let mut not_found = hyper::Response::new(Full::new(Bytes::new()).boxed());
                                *not_found.status_mut() = hyper::StatusCode::NOT_FOUND;
                                return Ok(not_found);
                            }
                            service.call(req).await
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), svc).await;
                });
            }
        }
    }
    Ok(())
}
