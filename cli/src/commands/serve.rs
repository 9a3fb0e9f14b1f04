//! `baton serve`: the task callback links on this machine (what the `api` function serves on
//! AWS). Answers go where the backend's control sends them: embedded, they are applied here and
//! the run goes on in this process; with `--backend aws`, to the stack's coordinator queue.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::{Context, Result};
use baton_runtime::RunControl;
use baton_runtime::callback::{self, Answerer, CallbackRequest, CallbackSigner, MAX_BODY_BYTES};
use baton_runtime::clock::SystemClock;
use baton_runtime::ports::Clock;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response, header};
use hyper_util::rt::TokioIo;

use crate::backend::{Target, control_signed};
use crate::errors::Usage;

struct Server {
    signer: CallbackSigner,
    control: Arc<dyn RunControl>,
    answerer: Arc<dyn Answerer>,
}

impl Server {
    async fn respond(&self, req: Request<Incoming>) -> Response<Full<Bytes>> {
        let (parts, body) = req.into_parts();
        let header = |name: header::HeaderName| parts.headers.get(name).and_then(|v| v.to_str().ok());
        // One byte over the limit is enough to refuse the request as too large.
        let body = match Limited::new(body, MAX_BODY_BYTES + 1).collect().await {
            Ok(b) => b.to_bytes().to_vec(),
            Err(_) => vec![0; MAX_BODY_BYTES + 1],
        };
        let request = CallbackRequest::new(
            parts.method.as_str(),
            parts.uri.path(),
            parts.uri.query().unwrap_or_default(),
            header(header::CONTENT_TYPE),
            header(header::ACCEPT),
            body,
        );
        let store = self.control.store().clone();
        let out =
            callback::handle(&self.signer, store.as_ref(), self.answerer.as_ref(), SystemClock.now_ms(), &request)
                .await;
        let mut resp = Response::new(Full::new(Bytes::from(out.body)));
        *resp.status_mut() =
            hyper::StatusCode::from_u16(out.status).unwrap_or(hyper::StatusCode::INTERNAL_SERVER_ERROR);
        resp.headers_mut().insert(header::CONTENT_TYPE, header::HeaderValue::from_static(out.content_type));
        resp.headers_mut().insert(header::CACHE_CONTROL, header::HeaderValue::from_static("no-store"));
        resp
    }
}

/// Serves task links on `listen` until Ctrl-C. The link base URL is `--url`, else
/// `BATON_CALLBACK_URL`, else the listen address; links are signed with `BATON_CALLBACK_SECRET`.
pub async fn serve(target: &Target, listen: SocketAddr, url: Option<String>) -> Result<u8> {
    let secret = std::env::var("BATON_CALLBACK_SECRET")
        .map_err(|_| Usage("set BATON_CALLBACK_SECRET (32 bytes or more) to sign task links".into()))?;
    let base = url.or_else(|| std::env::var("BATON_CALLBACK_URL").ok()).unwrap_or_else(|| format!("http://{listen}"));
    let signer = CallbackSigner::with_env_ttl(secret.as_bytes(), &base).map_err(|e| Usage(e.to_string()))?;
    let control = control_signed(target, false, Some(signer.clone())).await?;
    let listener = tokio::net::TcpListener::bind(listen).await.with_context(|| format!("cannot listen on {listen}"))?;
    let local = listener.local_addr()?;
    let answerer = control.link_answerer();
    eprintln!("serving task links on http://{local} (links start with {}); Ctrl-C stops", signer.base_url());
    let host = super::timer_host::spawn(target)?;
    if host.is_some() {
        eprintln!("firing timers, escalations and schedules of {} on time", target.state_dir.display());
    }
    let server = Arc::new(Server { signer, control, answerer });
    let shutdown = crate::signals::ctrl_c();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                let server = server.clone();
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(move |req| {
                        let server = server.clone();
                        async move { Ok::<_, Infallible>(server.respond(req).await) }
                    });
                    if let Err(e) = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), svc).await {
                        tracing::debug!(error = %e, "connection ended with an error");
                    }
                });
            }
        }
    }
    if let Some(h) = host {
        h.stop().await;
    }
    Ok(crate::exit::OK)
}
