//! `baton serve`: the HTTP API (`/api/*`, see docs/api.md) and the task callback links on this
//! machine (what the `api` function serves on AWS), plus `/health`. Changes go where the
//! backend's control sends them: embedded, runs are driven in this process; with
//! `--backend aws`, to the stack's coordinator queue.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll};
use std::time::Duration;

use anyhow::{Context, Result};
use baton_runtime::RunControl;
use baton_runtime::api::{self, Api, ApiBody, ApiRequest};
use baton_runtime::callback::{self, Answerer, CallbackRequest, CallbackSigner};
use baton_runtime::clock::SystemClock;
use baton_runtime::ports::Clock;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Body, Bytes, Frame, Incoming, SizeHint};
use hyper::{Request, Response, StatusCode, header};
use hyper_util::rt::TokioIo;
use tokio::sync::mpsc;

use crate::backend::{Target, control_signed};
use crate::errors::Usage;

/// How long a stopping server waits for runs it drives to detach before it exits: they detach
/// at their next step, and whatever is committed survives anyway.
const DRAIN: Duration = Duration::from_secs(3);

/// A response body: one buffer, or server-sent events as they come.
enum ServeBody {
    Full(Full<Bytes>),
    Events(mpsc::Receiver<String>),
}

impl Body for ServeBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        match self.get_mut() {
            ServeBody::Full(b) => Pin::new(b).poll_frame(cx),
            ServeBody::Events(rx) => rx.poll_recv(cx).map(|e| e.map(|text| Ok(Frame::data(Bytes::from(text))))),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            ServeBody::Full(b) => b.is_end_stream(),
            ServeBody::Events(_) => false,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            ServeBody::Full(b) => b.size_hint(),
            ServeBody::Events(_) => SizeHint::default(),
        }
    }
}

/// What task links need; absent when `BATON_CALLBACK_SECRET` is unset.
struct Links {
    signer: CallbackSigner,
    answerer: Arc<dyn Answerer>,
}

struct Server {
    control: Arc<dyn RunControl>,
    api: Api,
    links: Option<Links>,
}

fn json_response(status: StatusCode, body: String) -> Response<ServeBody> {
    let mut resp = Response::new(ServeBody::Full(Full::new(Bytes::from(body))));
    *resp.status_mut() = status;
    resp.headers_mut().insert(header::CONTENT_TYPE, header::HeaderValue::from_static("application/json"));
    resp
}

impl Server {
    async fn respond(&self, req: Request<Incoming>) -> Response<ServeBody> {
        let (parts, body) = req.into_parts();
        let is_api = parts.uri.path().starts_with("/api/") || parts.uri.path() == "/api";
        let limit = if is_api { api::MAX_BODY_BYTES } else { callback::MAX_BODY_BYTES };
        // One byte over the limit is enough to refuse the request as too large.
        let body = match Limited::new(body, limit + 1).collect().await {
            Ok(b) => b.to_bytes().to_vec(),
            Err(_) => vec![0; limit + 1],
        };
        let console = (parts.method == hyper::Method::GET)
            .then(|| baton_runtime::api::console::asset(parts.uri.path()))
            .flatten();
        let mut resp = if is_api {
            self.api_response(&parts, body).await
        } else if let Some((content_type, bytes)) = console {
            // The console's files need no token: the page asks for one before it reads the API.
            let mut r = Response::new(ServeBody::Full(Full::new(Bytes::from_static(bytes))));
            r.headers_mut().insert(header::CONTENT_TYPE, header::HeaderValue::from_static(content_type));
            r
        } else {
            self.link_response(&parts, body).await
        };
        resp.headers_mut().insert(header::CACHE_CONTROL, header::HeaderValue::from_static("no-store"));
        resp
    }

    async fn api_response(&self, parts: &hyper::http::request::Parts, body: Vec<u8>) -> Response<ServeBody> {
        let request = ApiRequest {
            method: parts.method.as_str().to_owned(),
            path: parts.uri.path().to_owned(),
            query: parts.uri.query().unwrap_or_default().to_owned(),
            authorization: parts.headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).map(str::to_owned),
            last_event_id: parts.headers.get("last-event-id").and_then(|v| v.to_str().ok()).map(str::to_owned),
            body,
        };
        let out = self.api.handle(&request).await;
        let status = StatusCode::from_u16(out.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let content_type = out.content_type();
        let mut resp = match out.body {
            ApiBody::Json(v) => json_response(status, v.to_string()),
            ApiBody::Events(rx) => {
                let mut r = Response::new(ServeBody::Events(rx));
                *r.status_mut() = status;
                r
            }
        };
        let headers = resp.headers_mut();
        headers.insert(header::CONTENT_TYPE, header::HeaderValue::from_static(content_type));
        if let Some(allow) = out.allow {
            headers.insert(header::ALLOW, header::HeaderValue::from_static(allow));
        }
        if let Some(location) = out.location.and_then(|l| header::HeaderValue::from_str(&l).ok()) {
            headers.insert(header::LOCATION, location);
        }
        resp
    }

    async fn link_response(&self, parts: &hyper::http::request::Parts, body: Vec<u8>) -> Response<ServeBody> {
        let Some(links) = &self.links else {
            // Without a secret there are no links to check; `/health` answers all the same.
            return if parts.uri.path() == "/health" {
                json_response(StatusCode::OK, r#"{"ok":true}"#.into())
            } else {
                let msg = "task links are disabled on this server (BATON_CALLBACK_SECRET is not set)";
                json_response(
                    StatusCode::NOT_FOUND,
                    serde_json::json!({"error": "not_found", "message": msg}).to_string(),
                )
            };
        };
        let header = |name: header::HeaderName| parts.headers.get(name).and_then(|v| v.to_str().ok());
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
            callback::handle(&links.signer, store.as_ref(), links.answerer.as_ref(), SystemClock.now_ms(), &request)
                .await;
        let mut resp = Response::new(ServeBody::Full(Full::new(Bytes::from(out.body))));
        *resp.status_mut() = StatusCode::from_u16(out.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        resp.headers_mut().insert(header::CONTENT_TYPE, header::HeaderValue::from_static(out.content_type));
        resp
    }
}

/// Serves the API and task links on `listen` until Ctrl-C or SIGTERM. The API needs
/// `Authorization: Bearer $BATON_API_TOKEN` when that is set; without it only a loopback address
/// may be bound. Links are signed with `BATON_CALLBACK_SECRET` (without it they are disabled),
/// under `--url`, else `BATON_CALLBACK_URL`, else the listen address.
pub async fn serve(target: &Target, listen: SocketAddr, url: Option<String>) -> Result<u8> {
    let token = std::env::var("BATON_API_TOKEN").ok().filter(|t| !t.trim().is_empty());
    if token.is_none() && !listen.ip().is_loopback() {
        return Err(Usage(format!(
            "set BATON_API_TOKEN to serve on {listen}: without a token the API is open to anyone who can connect, so only a loopback address may be bound"
        ))
        .into());
    }
    let signer = match std::env::var("BATON_CALLBACK_SECRET") {
        Ok(secret) => {
            let base =
                url.or_else(|| std::env::var("BATON_CALLBACK_URL").ok()).unwrap_or_else(|| format!("http://{listen}"));
            Some(CallbackSigner::with_env_ttl(secret.as_bytes(), &base).map_err(|e| Usage(e.to_string()))?)
        }
        Err(_) => None,
    };
    let control = control_signed(target, false, signer.clone()).await?;
    let listener = tokio::net::TcpListener::bind(listen).await.with_context(|| format!("cannot listen on {listen}"))?;
    let local = listener.local_addr()?;
    let auth = if token.is_some() { "bearer token required" } else { "no token: loopback only" };
    eprintln!("serving the API on http://{local}/api and the console on http://{local}/ ({auth})");
    match &signer {
        Some(s) => eprintln!("serving task links on http://{local} (links start with {})", s.base_url()),
        None => eprintln!("task links are disabled: set BATON_CALLBACK_SECRET (32 bytes or more) to sign them"),
    }
    let host = super::timer_host::spawn(target)?;
    if host.is_some() {
        eprintln!("firing timers, escalations and schedules of {} on time", target.state_dir.display());
    }
    eprintln!("Ctrl-C or SIGTERM stops");
    let links = signer.map(|signer| Links { signer, answerer: control.link_answerer() });
    let api = Api::new(control.clone(), token.as_deref());
    let server = Arc::new(Server { control, api, links });
    let shutdown = crate::signals::terminate();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                // Small answers go out at once instead of waiting for a full segment.
                let _ = stream.set_nodelay(true);
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
    // Runs driven here detach (their state is committed) and event streams end; open
    // connections are dropped when the process exits.
    server.api.shut_down();
    if !server.api.drained(DRAIN).await {
        eprintln!("stopping with runs still going; `baton resume` continues them");
    }
    Ok(crate::exit::OK)
}
