//! `baton serve`: the task callback links on this machine (what the `api` function serves on
//! AWS). Embedded, an answer is applied here and its run goes on in this process; with
//! `--backend aws` answers go to the stack's coordinator queue.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::{Context, Result};
use async_trait::async_trait;
use baton_core::engine::HumanAnswer;
use baton_runtime::callback::{self, Answerer, CallbackRequest, CallbackSigner, MAX_BODY_BYTES};
use baton_runtime::clock::SystemClock;
use baton_runtime::ports::Clock;
use baton_runtime::ports::TaskRecord;
use baton_runtime::{Coordinator, RuntimeError};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response, header};
use hyper_util::rt::TokioIo;

/// Applies answers in this process and drives the run on until it waits or ends.
struct InProcess(Arc<Coordinator>);

#[async_trait]
impl Answerer for InProcess {
    async fn answer(&self, task: &TaskRecord, answer: HumanAnswer) -> Result<(), RuntimeError> {
        let run_id = self.0.answer_task(&task.id, answer).await?;
        let c = self.0.clone();
        tokio::spawn(async move {
            if let Err(e) = c.drive(std::slice::from_ref(&run_id), std::future::pending::<()>()).await {
                tracing::warn!(run_id, error = %e, "the run could not go on after the answer");
            }
        });
        Ok(())
    }
}

struct Server {
    signer: CallbackSigner,
    coordinator: Arc<Coordinator>,
    answerer: Box<dyn Answerer>,
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
        let store = self.coordinator.store().clone();
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

/// Serves task links on `listen` until Ctrl-C. `aws_answers` sends answers to a stack instead of
/// applying them here.
pub async fn serve(
    coordinator: Arc<Coordinator>,
    signer: CallbackSigner,
    listen: SocketAddr,
    aws_answers: Option<Box<dyn Answerer>>,
) -> Result<u8> {
    let listener = tokio::net::TcpListener::bind(listen).await.with_context(|| format!("cannot listen on {listen}"))?;
    let local = listener.local_addr()?;
    let answerer = aws_answers.unwrap_or_else(|| Box::new(InProcess(coordinator.clone())));
    eprintln!("serving task links on http://{local} (links start with {}); Ctrl-C stops", signer.base_url());
    let server = Arc::new(Server { signer, coordinator, answerer });
    let shutdown = crate::commands::ctrl_c();
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
    Ok(crate::exit::OK)
}
