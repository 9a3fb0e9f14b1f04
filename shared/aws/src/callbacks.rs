//! Task callback links on AWS: the signing secret from Secrets Manager, and the `api` function
//! behind a Lambda function URL that serves the links (`baton_runtime::callback`) and, when it
//! has a bearer token, the HTTP API (`baton_runtime::api`) under `/api/`.

use std::sync::Arc;

use async_trait::async_trait;
use aws_lambda_events::event::lambda_function_urls::{LambdaFunctionUrlRequest, LambdaFunctionUrlResponse};
use aws_lambda_events::http::{HeaderValue, header};
use base64::Engine as _;
use baton_core::engine::HumanAnswer;
use baton_runtime::RuntimeError;
use baton_runtime::api::{Api, ApiBody, ApiRequest};
use baton_runtime::callback::{self, Answerer, CallbackRequest, CallbackSigner};
use baton_runtime::clock::SystemClock;
use baton_runtime::messages::CoordinatorMessage;
use baton_runtime::ports::{Clock, RunStore, TaskRecord};

use crate::handlers::StackClient;

/// Why the callback configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum CallbackConfigError {
    /// Secrets Manager refused or failed.
    #[error(transparent)]
    Secret(#[from] crate::secrets::SecretError),
    /// The values are unusable.
    #[error(transparent)]
    Invalid(#[from] baton_runtime::callback::CallbackError),
}

/// The signing secret: `BATON_CALLBACK_SECRET`, or the Secrets Manager secret named by
/// `BATON_CALLBACK_SECRET_ARN` (the template's generated secret, read once per cold start).
pub async fn secret_from_env(config: &aws_config::SdkConfig) -> Result<Option<String>, CallbackConfigError> {
    let found = crate::secrets::value_from_env(config, "BATON_CALLBACK_SECRET", "BATON_CALLBACK_SECRET_ARN").await?;
    Ok(found.map(|(secret, _)| secret))
}

/// The signer that issues links (the coordinator): the secret and `BATON_CALLBACK_URL`, the api
/// function's URL; `None` when either is unset.
pub async fn signer_from_env(config: &aws_config::SdkConfig) -> Result<Option<CallbackSigner>, CallbackConfigError> {
    let Ok(url) = std::env::var("BATON_CALLBACK_URL") else { return Ok(None) };
    let Some(secret) = secret_from_env(config).await? else { return Ok(None) };
    Ok(Some(CallbackSigner::with_env_ttl(secret.as_bytes(), &url)?))
}

/// The signer that checks links (the api function); `None` without a secret.
pub async fn verifier_from_env(config: &aws_config::SdkConfig) -> Result<Option<CallbackSigner>, CallbackConfigError> {
    let Some(secret) = secret_from_env(config).await? else { return Ok(None) };
    Ok(Some(CallbackSigner::verifier(secret.as_bytes())?))
}

/// The API's bearer token: `BATON_API_TOKEN`, or the Secrets Manager secret named by
/// `BATON_API_TOKEN_ARN`; `None` when neither is set (the function then serves no API: a
/// function URL is public, so the API is never served without a token).
pub async fn api_token_from_env(config: &aws_config::SdkConfig) -> Result<Option<String>, CallbackConfigError> {
    let found = crate::secrets::value_from_env(config, "BATON_API_TOKEN", "BATON_API_TOKEN_ARN").await?;
    Ok(found.map(|(token, _)| token))
}

/// How long an event stream is collected on a function URL, which answers in one piece: the
/// stream is cut here (the client reconnects) well before the function's own timeout.
const STREAM_CUT: std::time::Duration = std::time::Duration::from_secs(20);

/// Answers by sending the answer to the stack's coordinator, the only writer of run state.
pub struct QueueAnswerer(pub StackClient);

#[async_trait]
impl Answerer for QueueAnswerer {
    async fn answer(&self, task: &TaskRecord, answer: HumanAnswer) -> Result<(), RuntimeError> {
        self.0.send(&CoordinatorMessage::Answer { task: task.id.clone(), answer }).await.map_err(RuntimeError::from)
    }
}

/// The `api` function: serves signed task links from a Lambda function URL.
pub struct ApiFunction {
    signer: CallbackSigner,
    store: Arc<dyn RunStore>,
    answerer: Box<dyn Answerer>,
    clock: Arc<dyn Clock>,
    api: Option<Api>,
}

impl ApiFunction {
    /// The function of `stack`: tasks read from its table, answers sent to its coordinator queue.
    pub fn new(config: &aws_config::SdkConfig, stack: &str, signer: CallbackSigner) -> Self {
        let store = Arc::new(crate::handlers::store(config, stack));
        Self::on(store, Box::new(QueueAnswerer(StackClient::new(config, stack))), signer)
    }

    /// The function over a given store and answerer.
    pub fn on(store: Arc<dyn RunStore>, answerer: Box<dyn Answerer>, signer: CallbackSigner) -> Self {
        Self { signer, store, answerer, clock: Arc::new(SystemClock), api: None }
    }

    /// The function also serving the HTTP API under `/api/`.
    pub fn with_api(mut self, api: Api) -> Self {
        self.api = Some(api);
        self
    }

    /// Handles one function URL request.
    pub async fn handle(&self, req: LambdaFunctionUrlRequest) -> LambdaFunctionUrlResponse {
        let request = match request_of(&req) {
            Ok(r) => r,
            Err(message) => {
                return response(
                    400,
                    "application/json",
                    serde_json::json!({"error": "bad_request", "message": message}).to_string(),
                );
            }
        };
        if request.path.starts_with("/api/") {
            return self.api_response(&req, request).await;
        }
        // The console's files, as `baton serve` serves them; the page asks for the API's token,
        // so it is only there when the API is (a function URL is public).
        if request.method == "GET"
            && self.api.is_some()
            && let Some((content_type, bytes)) = baton_runtime::api::console::asset(&request.path)
        {
            return response(200, content_type, String::from_utf8_lossy(bytes).into_owned());
        }
        let out =
            callback::handle(&self.signer, self.store.as_ref(), self.answerer.as_ref(), self.clock.now_ms(), &request)
                .await;
        if out.status >= 500 {
            tracing::warn!(status = out.status, body = %out.body, "callback request failed");
        }
        response(out.status, out.content_type, out.body)
    }
}

impl ApiFunction {
    async fn api_response(
        &self,
        req: &LambdaFunctionUrlRequest,
        request: CallbackRequest,
    ) -> LambdaFunctionUrlResponse {
        let Some(api) = &self.api else {
            let message = "the API is off on this function: set BATON_API_TOKEN_ARN (or BATON_API_TOKEN)";
            return response(
                404,
                "application/json",
                serde_json::json!({"error": message, "code": "not_found"}).to_string(),
            );
        };
        let authorization = req.headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).map(str::to_owned);
        let api_request = ApiRequest {
            method: request.method,
            path: request.path,
            query: request.query,
            authorization,
            last_event_id: req.headers.get("last-event-id").and_then(|v| v.to_str().ok()).map(str::to_owned),
            body: request.body,
        };
        let out = api.handle(&api_request).await;
        let content_type = out.content_type();
        let body = match out.body {
            ApiBody::Json(v) => v.to_string(),
            ApiBody::Events(mut rx) => {
                // A buffered function URL sends the whole answer at the end: collect the
                // events until the stream ends or is cut.
                let mut text = String::new();
                let _ = tokio::time::timeout(STREAM_CUT, async {
                    while let Some(event) = rx.recv().await {
                        text.push_str(&event);
                    }
                })
                .await;
                text
            }
        };
        let mut resp = response(out.status, content_type, body);
        if let Some(allow) = out.allow {
            resp.headers.insert(header::ALLOW, HeaderValue::from_static(allow));
        }
        if let Some(location) = out.location.and_then(|l| HeaderValue::from_str(&l).ok()) {
            resp.headers.insert(header::LOCATION, location);
        }
        resp
    }
}

fn request_of(req: &LambdaFunctionUrlRequest) -> Result<CallbackRequest, String> {
    let header = |name: header::HeaderName| req.headers.get(name).and_then(|v| v.to_str().ok());
    let body = match (&req.body, req.is_base64_encoded) {
        (None, _) => Vec::new(),
        (Some(b), false) => b.clone().into_bytes(),
        (Some(b), true) => base64::engine::general_purpose::STANDARD
            .decode(b)
            .map_err(|e| format!("the body is not valid base64: {e}"))?,
    };
    Ok(CallbackRequest::new(
        req.request_context.http.method.as_deref().unwrap_or_default(),
        req.raw_path.as_deref().unwrap_or_default(),
        req.raw_query_string.as_deref().unwrap_or_default(),
        header(header::CONTENT_TYPE),
        header(header::ACCEPT),
        body,
    ))
}

fn response(status: u16, content_type: &str, body: String) -> LambdaFunctionUrlResponse {
    let mut out = LambdaFunctionUrlResponse::default();
    out.status_code = i64::from(status);
    if let Ok(v) = HeaderValue::from_str(content_type) {
        out.headers.insert(header::CONTENT_TYPE, v);
    }
    // Task pages hold run data: never cache them on the way.
    out.headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    out.body = Some(body);
    out
}
