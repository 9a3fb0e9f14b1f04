//! The HTTP API over runs, tasks and events, without a transport: an [`ApiRequest`] goes in, an
//! [`ApiResponse`] comes out, like [`crate::callback::handle`]. `baton serve` routes `/api/*`
//! here; any other server (a Lambda function URL) can do the same. Every call goes through
//! [`RunControl`] and the store ports, and answers with the JSON the CLI prints for the same
//! thing (`runs show --json`, `tasks --json`, `audit show --json`), so the two never drift.
//!
//! The routes are one table ([`Route`]); the request/response shapes are described in
//! [`openapi::document`]. An operator action on one run is `POST /api/runs/{id}/{action}`:
//! adding one is a [`RunAction`] variant with its path word, its arm in `runs::act`, and its
//! entry in the OpenAPI document.

pub mod console;
mod error;
mod openapi;
mod query;
mod runs;
mod stream;
mod tasks;

use std::sync::Arc;
use std::time::Duration;

use baton_core::engine::Verdict;
use baton_core::ids::{RunId, TaskId};
use serde_json::Value;
use sha2::{Digest, Sha256};
use tokio::sync::{mpsc, watch};

pub use error::ApiError;
pub use openapi::document as openapi_document;

use crate::control::{RunControl, Stop};

/// Largest request body the API takes (run inputs can be sizeable; answers and events are small).
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

/// The longest `?wait=` a start accepts, in seconds: a longer wait belongs to `GET /api/runs/{id}`
/// or the event stream.
pub const MAX_WAIT_SECS: u64 = 300;

/// An HTTP request as the API needs it, whatever server received it.
#[derive(Debug, Clone, Default)]
pub struct ApiRequest {
    /// `GET`, `POST`, ... (upper case).
    pub method: String,
    /// The path, e.g. `/api/runs/<id>`.
    pub path: String,
    /// The raw query string without `?`.
    pub query: String,
    /// The `Authorization` header, if any.
    pub authorization: Option<String>,
    /// The `Last-Event-ID` header of a reconnecting event stream: the seq of the last record it
    /// got, so the stream goes on after it instead of from the start.
    pub last_event_id: Option<String>,
    /// The body (over [`MAX_BODY_BYTES`] is refused).
    pub body: Vec<u8>,
}

/// The body of an answer: one JSON value, or a stream of server-sent events.
#[derive(Debug)]
pub enum ApiBody {
    /// `application/json`.
    Json(Value),
    /// `text/event-stream`: each item is one complete event (`event:`, `data:`, blank line).
    /// The stream ends when the sender is dropped.
    Events(mpsc::Receiver<String>),
}

/// What the API answers.
#[derive(Debug)]
pub struct ApiResponse {
    /// HTTP status.
    pub status: u16,
    /// The body.
    pub body: ApiBody,
    /// The `Allow` header of a 405.
    pub allow: Option<&'static str>,
    /// The `Location` header of a created run.
    pub location: Option<String>,
}

impl ApiResponse {
    /// A JSON answer.
    pub fn json(status: u16, body: Value) -> Self {
        Self { status, body: ApiBody::Json(body), allow: None, location: None }
    }

    /// The same status and headers with another body.
    pub fn with_body(mut self, body: ApiBody) -> Self {
        self.body = body;
        self
    }

    /// The `Content-Type` of the body.
    pub fn content_type(&self) -> &'static str {
        match self.body {
            ApiBody::Json(_) => "application/json",
            ApiBody::Events(_) => "text/event-stream",
        }
    }
}

/// An operator action on one run, at `POST /api/runs/{id}/{action}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunAction {
    /// Cancel the run (body optional: `{"reason": ...}`).
    Cancel,
    /// Redrive a failed or cancelled run (body optional: `{"reason", "by"}`).
    Redrive,
    /// Run a step and what follows it again (body: `{"from", "input"?, "reason"?, "by"?}`).
    Retry,
    /// Pause the run (body optional: `{"reason", "by"}`).
    Pause,
    /// Unpause the run (body optional: `{"reason", "by"}`).
    Unpause,
}

impl RunAction {
    /// The action named by the last path segment; `None` for words that are not actions.
    fn parse(word: &str) -> Option<Self> {
        match word {
            "cancel" => Some(Self::Cancel),
            "redrive" => Some(Self::Redrive),
            "retry" => Some(Self::Retry),
            "pause" => Some(Self::Pause),
            "unpause" => Some(Self::Unpause),
            _ => None,
        }
    }
}

/// Every route of the API: the path, parsed.
#[derive(Debug, Clone, PartialEq)]
enum Route {
    Runs,
    Run(RunId),
    Audit(RunId),
    AuditVerify(RunId),
    RunEvents(RunId),
    Graph(RunId),
    RunAction(RunId, RunAction),
    WorkflowRuns(String),
    Tasks,
    Answer(TaskId, Verdict),
    Events,
    OpenApi,
}

impl Route {
    /// The route of `path`, or `None` when nothing is there.
    fn parse(path: &str) -> Option<Self> {
        let rest = path.strip_prefix("/api/")?;
        let segments: Vec<&str> = rest.split('/').collect();
        // An empty segment (`/api/runs//audit`) names nothing.
        if segments.iter().any(|s| s.is_empty()) {
            return None;
        }
        let run = |id: &str| RunId::from(id);
        Some(match segments.as_slice() {
            ["runs"] => Self::Runs,
            ["runs", id] => Self::Run(run(id)),
            ["runs", id, "audit"] => Self::Audit(run(id)),
            ["runs", id, "audit", "verify"] => Self::AuditVerify(run(id)),
            ["runs", id, "events"] => Self::RunEvents(run(id)),
            ["runs", id, "graph"] => Self::Graph(run(id)),
            ["runs", id, action] => Self::RunAction(run(id), RunAction::parse(action)?),
            ["workflows", name, "runs"] => Self::WorkflowRuns((*name).to_owned()),
            ["tasks"] => Self::Tasks,
            ["tasks", id, "approve"] => Self::Answer(TaskId::from(*id), Verdict::Approve),
            ["tasks", id, "reject"] => Self::Answer(TaskId::from(*id), Verdict::Reject),
            ["events"] => Self::Events,
            ["openapi.json"] => Self::OpenApi,
            _ => return None,
        })
    }

    /// The one method the route answers.
    fn method(&self) -> &'static str {
        match self {
            Self::Runs
            | Self::Run(_)
            | Self::Audit(_)
            | Self::AuditVerify(_)
            | Self::RunEvents(_)
            | Self::Graph(_)
            | Self::Tasks
            | Self::OpenApi => "GET",
            Self::RunAction(..) | Self::WorkflowRuns(_) | Self::Answer(..) | Self::Events => "POST",
        }
    }
}

/// The API over one [`RunControl`]. Runs it starts or answers are let go on in the background
/// until they settle or [`Api::shut_down`] is called.
pub struct Api {
    control: Arc<dyn RunControl>,
    /// SHA-256 of the bearer token, when one is required: comparing digests takes the same time
    /// whatever the guess, and the token itself is not kept.
    token_digest: Option<[u8; 32]>,
    shutdown: watch::Sender<bool>,
    /// How many runs are being driven in the background now.
    drivers: Arc<watch::Sender<usize>>,
    /// How often an event stream looks for new records.
    poll: Duration,
}

impl Api {
    /// The API over `control`; with `token`, every request must carry `Authorization: Bearer
    /// <token>`.
    pub fn new(control: Arc<dyn RunControl>, token: Option<&str>) -> Self {
        Self {
            control,
            token_digest: token.map(|t| Sha256::digest(t.as_bytes()).into()),
            shutdown: watch::Sender::new(false),
            drivers: Arc::new(watch::Sender::new(0)),
            poll: Duration::from_millis(25),
        }
    }

    /// Who an answer given through this API comes from, as far as the API can vouch: the holder
    /// of its bearer token, or anyone who can reach it when it has none (loopback).
    pub fn principal(&self) -> String {
        match self.token_digest {
            Some(_) => "api bearer token".into(),
            None => "api without a token (loopback)".into(),
        }
    }

    /// Serves one request.
    pub async fn handle(&self, req: &ApiRequest) -> ApiResponse {
        match self.route(req).await {
            Ok(resp) => resp,
            Err(e) => e.response(),
        }
    }

    async fn route(&self, req: &ApiRequest) -> Result<ApiResponse, ApiError> {
        // Authentication first: an unauthenticated caller learns nothing, not even which paths
        // exist.
        self.authenticate(req)?;
        let route = Route::parse(&req.path).ok_or_else(|| ApiError::NotFound(format!("no route `{}`", req.path)))?;
        if req.method != route.method() {
            return Err(ApiError::MethodNotAllowed { method: req.method.clone(), allow: route.method() });
        }
        if req.body.len() > MAX_BODY_BYTES {
            return Err(ApiError::TooLarge);
        }
        match route {
            Route::Runs => runs::list(self, &req.query).await,
            Route::Run(id) => runs::show(self, &id).await,
            Route::Audit(id) => runs::audit(self, &id).await,
            Route::AuditVerify(id) => runs::verify(self, &id).await,
            Route::RunEvents(id) => stream::run_events(self, &id, req.last_event_id.as_deref()).await,
            Route::Graph(id) => runs::graph(self, &id).await,
            Route::RunAction(id, action) => runs::act(self, &id, action, &req.query, &req.body).await,
            Route::WorkflowRuns(name) => runs::start(self, &name, &req.query, &req.body).await,
            Route::Tasks => tasks::list(self).await,
            Route::Answer(id, verdict) => tasks::answer(self, &id, verdict, &req.body).await,
            Route::Events => tasks::event(self, &req.body).await,
            Route::OpenApi => Ok(ApiResponse::json(200, openapi::document())),
        }
    }

    fn authenticate(&self, req: &ApiRequest) -> Result<(), ApiError> {
        match &self.token_digest {
            Some(expected) if !bearer_matches(expected, req.authorization.as_deref()) => Err(ApiError::Unauthorized),
            _ => Ok(()),
        }
    }

    /// Stops every background drive and event stream: runs detach with their state committed
    /// and go on at the next `resume` or start of the server.
    pub fn shut_down(&self) {
        self.shutdown.send_replace(true);
    }

    /// Waits until no run is driven in the background, at most `limit`; true when none is.
    pub async fn drained(&self, limit: Duration) -> bool {
        let mut rx = self.drivers.subscribe();
        tokio::time::timeout(limit, rx.wait_for(|n| *n == 0)).await.is_ok()
    }

    /// A stop signal for calls that wait on runs: fires at shutdown.
    fn stop(&self) -> Stop {
        let mut rx = self.shutdown.subscribe();
        Box::pin(async move {
            // An error means the sender is gone, which is a shutdown too.
            let _ = rx.wait_for(|down| *down).await;
        })
    }

    /// Applies an operator's action in the background and lets the run go on until it settles
    /// (or shutdown); the receiver fires when it did.
    fn operate_in_background(
        &self,
        run_id: RunId,
        op: crate::control::Operation,
    ) -> tokio::sync::oneshot::Receiver<()> {
        self.in_background(run_id, "the operator's action could not be applied", move |c, id, stop| async move {
            c.operate(&id, op, stop).await
        })
    }

    /// Lets `run_id` go on in this process until it settles (or shutdown); the receiver fires
    /// when it did.
    fn settle_in_background(&self, run_id: RunId) -> tokio::sync::oneshot::Receiver<()> {
        self.in_background(run_id, "the run could not go on", |c, id, stop| async move { c.settle(&id, stop).await })
    }

    /// Runs `work` on the run in a task of its own, counted as a background drive (so shutdown
    /// waits for it) and stopped at shutdown; a failure is logged with `what`.
    fn in_background<F, Fut>(&self, run_id: RunId, what: &'static str, work: F) -> tokio::sync::oneshot::Receiver<()>
    where
        F: FnOnce(Arc<dyn RunControl>, RunId, Stop) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = Result<crate::control::Settled, crate::error::RuntimeError>> + Send,
    {
        let (done, rx) = tokio::sync::oneshot::channel();
        let control = self.control.clone();
        let stop = self.stop();
        let guard = DriverGuard::new(self.drivers.clone());
        tokio::spawn(async move {
            let _guard = guard;
            if let Err(e) = work(control, run_id.clone(), stop).await {
                tracing::warn!(%run_id, error = %e, "{what}");
            }
            let _ = done.send(());
        });
        rx
    }
}

/// True when `authorization` is `Bearer <token>` for the token whose SHA-256 is `expected`.
fn bearer_matches(expected: &[u8; 32], authorization: Option<&str>) -> bool {
    let given = authorization.and_then(|h| h.strip_prefix("Bearer ")).map(str::trim);
    given.is_some_and(|token| Sha256::digest(token.as_bytes()).as_slice() == expected.as_slice())
}

/// Counts a background drive while it lives.
struct DriverGuard(Arc<watch::Sender<usize>>);

impl DriverGuard {
    fn new(drivers: Arc<watch::Sender<usize>>) -> Self {
        drivers.send_modify(|n| *n += 1);
        Self(drivers)
    }
}

impl Drop for DriverGuard {
    fn drop(&mut self) {
        self.0.send_modify(|n| *n = n.saturating_sub(1));
    }
}

#[cfg(test)]
mod tests;
