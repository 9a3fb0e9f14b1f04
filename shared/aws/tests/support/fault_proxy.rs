//! A fault proxy between the AWS SDK and the emulator: every request goes through it, and from
//! a seed it answers some with `503 ServiceUnavailable` before forwarding them (throttling as
//! the SDK sees it), forwards others and then answers 503 instead of the emulator's reply (a
//! write applied with its reply lost), and during an outage resets every connection (what a
//! restarting emulator looks like to its clients; a real LocalStack restart here would lose its
//! state, since it runs without persistence).

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use baton_runtime::entropy::SeededEntropy;
use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response};

struct State {
    upstream: String,
    client: reqwest::Client,
    rng: SeededEntropy,
    before: AtomicU64,
    after: AtomicU64,
    outage_until: Mutex<Option<Instant>>,
    requests: AtomicUsize,
    throttled: AtomicUsize,
    replies_lost: AtomicUsize,
    resets: AtomicUsize,
}

/// A running proxy.
pub struct FaultProxy {
    /// Where clients send their requests.
    pub endpoint: String,
    state: Arc<State>,
}

impl FaultProxy {
    /// A proxy to `upstream` whose faults come from `seed`; none until [`FaultProxy::rates`].
    pub async fn start(upstream: &str, seed: u64) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let endpoint = format!("http://{}", listener.local_addr().expect("addr"));
        let state = Arc::new(State {
            upstream: upstream.trim_end_matches('/').to_owned(),
            client: reqwest::Client::builder().no_proxy().build().expect("client"),
            rng: SeededEntropy::new(seed),
            before: AtomicU64::new(0),
            after: AtomicU64::new(0),
            outage_until: Mutex::new(None),
            requests: AtomicUsize::new(0),
            throttled: AtomicUsize::new(0),
            replies_lost: AtomicUsize::new(0),
            resets: AtomicUsize::new(0),
        });
        let s = state.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else { continue };
                let s = s.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req| handle(s.clone(), req));
                    let io = hyper_util::rt::TokioIo::new(stream);
                    let _ = hyper::server::conn::http1::Builder::new().serve_connection(io, service).await;
                });
            }
        });
        Self { endpoint, state }
    }

    /// Answers `before` per mille of the requests with 503 unsent, and `after` per mille with
    /// 503 once the emulator has applied them.
    pub fn rates(&self, before: u64, after: u64) {
        self.state.before.store(before, Ordering::SeqCst);
        self.state.after.store(after, Ordering::SeqCst);
    }

    /// Resets every connection for `d`.
    pub fn outage(&self, d: Duration) {
        *self.state.outage_until.lock().expect("outage") = Some(Instant::now() + d);
    }

    /// (requests, throttled, replies lost, connections reset).
    pub fn counts(&self) -> (usize, usize, usize, usize) {
        let s = &self.state;
        (
            s.requests.load(Ordering::SeqCst),
            s.throttled.load(Ordering::SeqCst),
            s.replies_lost.load(Ordering::SeqCst),
            s.resets.load(Ordering::SeqCst),
        )
    }

    /// Faults injected so far.
    pub fn injected(&self) -> usize {
        let (_, t, l, r) = self.counts();
        t + l + r
    }
}

#[derive(Debug)]
struct Reset;

impl std::fmt::Display for Reset {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("connection reset (simulated outage)")
    }
}

impl std::error::Error for Reset {}

fn unavailable() -> Response<Full<Bytes>> {
    Response::builder()
        .status(503)
        .header("content-type", "application/x-amz-json-1.0")
        .header("x-amzn-errortype", "ServiceUnavailable")
        .body(Full::new(Bytes::from_static(
            br#"{"__type":"ServiceUnavailable","message":"injected by the fault proxy"}"#,
        )))
        .expect("response")
}

async fn handle(s: Arc<State>, req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Reset> {
    s.requests.fetch_add(1, Ordering::SeqCst);
    if s.outage_until.lock().expect("outage").is_some_and(|until| Instant::now() < until) {
        s.resets.fetch_add(1, Ordering::SeqCst);
        // An error from the service makes hyper drop the connection without an answer.
        return Err(Reset);
    }
    if s.rng.chance(s.before.load(Ordering::SeqCst)) {
        s.throttled.fetch_add(1, Ordering::SeqCst);
        return Ok(unavailable());
    }
    let (parts, body) = req.into_parts();
    let body = match body.collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => return Err(Reset),
    };
    let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    let method = reqwest::Method::from_bytes(parts.method.as_str().as_bytes()).expect("method");
    let mut forward = s.client.request(method, format!("{}{path}", s.upstream)).body(body.to_vec());
    for (name, value) in &parts.headers {
        if name.as_str() != "host" && name.as_str() != "content-length" {
            forward = forward.header(name.as_str(), value.as_bytes());
        }
    }
    let Ok(answer) = forward.send().await else { return Err(Reset) };
    let status = answer.status().as_u16();
    let headers: Vec<(String, Vec<u8>)> = answer
        .headers()
        .iter()
        .filter(|(n, _)| !matches!(n.as_str(), "content-length" | "transfer-encoding" | "connection"))
        .map(|(n, v)| (n.as_str().to_owned(), v.as_bytes().to_vec()))
        .collect();
    let Ok(bytes) = answer.bytes().await else { return Err(Reset) };
    if s.rng.chance(s.after.load(Ordering::SeqCst)) {
        s.replies_lost.fetch_add(1, Ordering::SeqCst);
        return Ok(unavailable());
    }
    let mut out = Response::builder().status(status);
    for (n, v) in headers {
        out = out.header(n, v);
    }
    Ok(out.body(Full::new(bytes)).expect("response"))
}
