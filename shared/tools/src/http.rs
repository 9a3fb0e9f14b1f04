//! `http`: `{method, url, headers, body, timeout}` -> `{status, headers, body}`, with errors
//! classified as `http_4xx`, `http_429` (with `Retry-After`), `http_5xx`, `timeout`, `connect`.
//! Every request carries the call's `Idempotency-Key` header, so a retried or re-delivered call
//! can be recognised by the server. Calls pass the SSRF guard (`net_guard`, error kind
//! `network_refused`), and `{{ secret("NAME") }}` placeholders become values only here, right
//! before sending.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use baton_core::duration::parse_duration;
use baton_core::engine::{ErrorKind, StepError};
use baton_core::model::AwsSigV4;
use baton_core::plan::tools::HttpCall;
use reqwest::header::{HeaderName, HeaderValue};
use serde_json::{Map, Value, json};

use crate::net_guard::{self, GuardedResolver, Policy};
use crate::secrets::{EnvSecrets, Revealed, mask, names_in, names_in_str};
use baton_runtime::clock::SystemClock;
use baton_runtime::ports::{Clock, SecretSource, Tool, ToolCall};

/// The largest response body a call accepts unless it sets `max_response_bytes` (10 MiB).
pub const DEFAULT_MAX_RESPONSE_BYTES: u64 = 10 * 1024 * 1024;

/// Default per-request limit when neither `with.timeout` nor the step's `timeout` is set.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// Clients kept, one per network policy; workflows rarely differ, so this is only a bound.
const MAX_CLIENTS: usize = 64;

/// The HTTP tool: the SSRF guard of the workflow's `network` policy and `secret()` values.
pub struct HttpTool {
    secrets: Arc<dyn SecretSource>,
    /// The resolver, which enforces the policy, belongs to the client: one client (and
    /// connection pool) per policy.
    clients: Mutex<HashMap<(Policy, bool), reqwest::Client>>,
    /// Rate limits and circuit breakers of the connections called from this process.
    limits: super::limits::ConnectionLimits,
    /// The time rate limits and breakers go by (and wait on).
    clock: Arc<dyn Clock>,
    /// Refuse loopback addresses whatever the workflow's policy (a Lambda worker).
    refuse_loopback: bool,
}

impl HttpTool {
    /// A tool whose `secret("NAME")` values are environment variables ([`EnvSecrets`]).
    pub fn new() -> Self {
        Self::with_secrets(Arc::new(EnvSecrets))
    }

    /// A tool whose `secret("NAME")` values come from `source`.
    pub fn with_secrets(source: Arc<dyn SecretSource>) -> Self {
        Self {
            secrets: source,
            clients: Mutex::new(HashMap::new()),
            limits: Default::default(),
            clock: Arc::new(SystemClock),
            refuse_loopback: false,
        }
    }

    /// The same tool refusing loopback addresses whatever a workflow's `network` says: what a
    /// worker on AWS Lambda needs, where the Runtime API listens on loopback.
    pub fn refusing_loopback(mut self) -> Self {
        self.refuse_loopback = true;
        self
    }

    /// The same tool with rate limits and circuit breakers on `clock` (a simulated one in tests).
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// The client of `policy`; with `secret_headers`, one that stops at a redirect to another
    /// origin (see [`HttpTool::follow_without_secrets`]).
    fn client(&self, policy: &Policy, secret_headers: bool) -> Result<reqwest::Client, StepError> {
        let mut clients = self.clients.lock().unwrap_or_else(PoisonError::into_inner);
        let key = (policy.clone(), secret_headers);
        if let Some(c) = clients.get(&key) {
            return Ok(c.clone());
        }
        let shared = Arc::new(policy.clone());
        let client = reqwest::Client::builder()
            .user_agent(concat!("baton/", env!("CARGO_PKG_VERSION")))
            .dns_resolver(GuardedResolver::new(shared.clone()))
            .redirect(net_guard::redirect_policy(shared, secret_headers))
            // A URL may hold a secret: no `Referer` carries it to where a redirect goes.
            .referer(false)
            // Through a proxy the resolver would judge the proxy's address, not the target's.
            .no_proxy()
            .build()
            .map_err(|e| StepError::new(ErrorKind::Tool, format!("cannot build the HTTP client: {e}")))?;
        if clients.len() >= MAX_CLIENTS {
            clients.clear();
        }
        clients.insert(key, client.clone());
        Ok(client)
    }
}

impl Default for HttpTool {
    fn default() -> Self {
        Self::new()
    }
}

fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Adds the SigV4 headers (`{service, region}`) over the request as it will be sent.
async fn sign(request: &mut reqwest::Request, spec: &AwsSigV4) -> Result<(), StepError> {
    let signer = super::sigv4::Signer::from_env(&spec.service, spec.region.as_deref()).await?;
    let headers: Vec<(String, String)> = request
        .headers()
        .iter()
        .filter_map(|(k, v)| v.to_str().ok().map(|v| (k.as_str().to_owned(), v.to_owned())))
        .collect();
    let body = request.body().and_then(reqwest::Body::as_bytes).unwrap_or_default().to_vec();
    let signed = signer.headers(
        request.method().as_str(),
        request.url().as_str(),
        &headers,
        &body,
        std::time::SystemTime::now(),
    )?;
    for (k, v) in signed {
        let name = HeaderName::from_bytes(k.as_bytes())
            .map_err(|_| StepError::new(ErrorKind::Tool, "invalid signing header"))?;
        let mut value =
            HeaderValue::from_str(&v).map_err(|_| StepError::new(ErrorKind::Tool, "invalid signing header"))?;
        value.set_sensitive(true);
        request.headers_mut().insert(name, value);
    }
    Ok(())
}

/// `Retry-After` as seconds or an HTTP date, in ms from `now`.
pub(crate) fn retry_after_ms(value: &str) -> Option<u64> {
    if let Ok(secs) = value.trim().parse::<u64>() {
        return Some(secs.saturating_mul(1_000));
    }
    let at = httpdate::parse_http_date(value.trim()).ok()?;
    let now = std::time::SystemTime::now();
    Some(at.duration_since(now).map(|d| d.as_millis() as u64).unwrap_or(0))
}

#[async_trait]
impl Tool for HttpTool {
    async fn call(&self, call: &ToolCall) -> Result<Value, StepError> {
        let input: HttpCall = call.input_as()?;
        let mut names = BTreeSet::new();
        names_in_str(&input.url, &mut names)?;
        for v in input.headers.iter().flat_map(BTreeMap::values).chain(&input.body) {
            names_in(v, &mut names)?;
        }
        let scoped = check_secret_scopes(&input, &names)?;
        let secrets = Revealed::fetch(self.secrets.as_ref(), names).await?;
        let limits = super::limits::Limits::of(input.limits.as_ref());
        if let Some(c) = &input.connection {
            if limits.breaker.is_some() {
                self.limits.check(c, self.clock.now_ms())?;
            }
            if let Some(rate) = limits.rate {
                let now = self.clock.now_ms();
                let wait = self.limits.reserve(c, rate, now);
                if !wait.is_zero() {
                    tracing::debug!(connection = %c, wait_ms = wait.as_millis() as u64, "rate limit: waiting for a turn");
                    self.clock.sleep_until(now.saturating_add(wait.as_millis() as u64)).await;
                }
            }
        }
        // Servers echo credentials (and reqwest's errors quote the URL): nothing leaves this
        // call with a value in it.
        let sent = self.send(call, &input, &secrets, scoped).await;
        if let (Some(c), Some(policy)) = (&input.connection, limits.breaker) {
            let outcome = sent.as_ref().map(|_| ()).map_err(|e| &e.kind);
            self.limits.record(c, policy, outcome, self.clock.now_ms());
        }
        match sent {
            Ok(out) => Ok(secrets.scrub_value(out)),
            Err(mut e) => {
                e.message = secrets.scrub(&e.message);
                Err(e)
            }
        }
    }
}

/// A secret the workflow scoped (`secrets: {NAME: {hosts, connections}}`) goes only to its hosts
/// or connections: checked before any value is fetched, so a call elsewhere never holds it.
/// Returns whether the call carries a scoped secret (it is then never redirected to another
/// host).
fn check_secret_scopes(input: &HttpCall, names: &BTreeSet<String>) -> Result<bool, StepError> {
    // The host as the URL writes it; a placeholder standing in the host is no host of its scope.
    let host = reqwest::Url::parse(&mask(&input.url)).ok().and_then(|u| u.host_str().map(str::to_owned));
    let to = match (&input.connection, &host) {
        (Some(c), Some(h)) => format!("{h} (connection `{c}`)"),
        (None, Some(h)) => h.clone(),
        (_, None) => mask(&input.url),
    };
    crate::secrets::check_scopes(&input.secrets, names, host.as_deref(), input.connection.as_deref(), &to)
}

impl HttpTool {
    async fn send(
        &self,
        call: &ToolCall,
        input: &HttpCall,
        secrets: &Revealed,
        scoped: bool,
    ) -> Result<Value, StepError> {
        // Messages name the URL as written, secrets shown as `[secret NAME]`.
        let url = mask(&input.url);
        let policy =
            input.network.as_ref().map(Policy::from).unwrap_or_default().refusing_loopback(self.refuse_loopback);
        let target = reqwest::Url::parse(&secrets.reveal(&input.url))
            .map_err(|e| StepError::new(ErrorKind::Tool, format!("invalid URL {url}: {e}")))?;
        policy.check_url(&target).map_err(|r| StepError::new(ErrorKind::NetworkRefused, r.to_string()))?;
        let method = input.method.as_deref().unwrap_or("GET").to_ascii_uppercase();
        let method = reqwest::Method::from_bytes(method.as_bytes())
            .map_err(|_| StepError::new(ErrorKind::Tool, format!("invalid method `{method}`")))?;
        let own_timeout = match &input.timeout {
            None => None,
            Some(t) => Some(parse_duration(t).map_err(|e| StepError::new(ErrorKind::Tool, format!("`timeout`: {e}")))?),
        };
        let timeout = own_timeout
            .map(|m| Duration::from_millis(m.0))
            .or(call.timeout_ms.map(Duration::from_millis))
            .unwrap_or(DEFAULT_TIMEOUT);
        // Headers that carry a secret (and a signature's session token) must not follow a
        // redirect to another host; reqwest drops only `Authorization` and cookies itself.
        let mut secret_headers: Vec<HeaderName> = Vec::new();
        let mut headers = Vec::new();
        for (k, v) in input.headers.iter().flatten() {
            let raw = text(v);
            let name = HeaderName::from_bytes(k.as_bytes())
                .map_err(|_| StepError::new(ErrorKind::Tool, format!("invalid header name `{k}`")))?;
            // The value is not quoted: it may hold a secret.
            let mut value = HeaderValue::from_str(&secrets.reveal(&raw))
                .map_err(|_| StepError::new(ErrorKind::Tool, format!("invalid value for header `{k}`")))?;
            if raw != mask(&raw) {
                value.set_sensitive(true);
                secret_headers.push(name.clone());
            }
            headers.push((name, value));
        }
        let guarded = !secret_headers.is_empty() || input.sigv4.is_some() || scoped;
        let client = self.client(&policy, guarded)?;
        let mut req = client.request(method, target).timeout(timeout).header("Idempotency-Key", &call.idempotency_key);
        for (name, value) in headers {
            req = req.header(name, value);
        }
        match &input.body {
            None | Some(Value::Null) => {}
            Some(Value::String(s)) => req = req.body(secrets.reveal(s)),
            Some(other) => req = req.json(&secrets.reveal_value(other)),
        }
        let mut request = req
            .build()
            .map_err(|e| StepError::new(ErrorKind::Tool, format!("cannot build the request to {url}: {e}")))?;
        if let Some(s) = &input.sigv4 {
            sign(&mut request, s).await?;
        }
        let replay = if guarded { request.try_clone() } else { None };
        let mut resp = client.execute(request).await.map_err(|e| classify(&e, &url))?;
        if let Some(replay) = replay
            && resp.status().is_redirection()
            && resp.headers().contains_key(reqwest::header::LOCATION)
        {
            if scoped {
                // A scoped secret may sit in the URL or the body too, which a redirect would carry
                // to a host outside its scope.
                let to = resp.headers().get(reqwest::header::LOCATION).and_then(|l| l.to_str().ok()).unwrap_or("");
                return Err(StepError::new(
                    ErrorKind::NetworkRefused,
                    format!(
                        "{url} redirected to another host ({}); a call carrying a scoped secret does not follow it",
                        mask(to)
                    ),
                ));
            }
            resp = self.follow_without_secrets(&policy, resp, replay, &secret_headers, &url).await?;
        }
        let status = resp.status();
        let mut headers = Map::new();
        for (k, v) in resp.headers() {
            headers.insert(k.as_str().to_owned(), Value::String(v.to_str().unwrap_or_default().to_owned()));
        }
        let retry_after = resp.headers().get("retry-after").and_then(|v| v.to_str().ok()).and_then(retry_after_ms);
        let limit = input.max_response_bytes.unwrap_or(DEFAULT_MAX_RESPONSE_BYTES);
        let bytes = read_capped(resp, limit, &url).await?;
        let body = serde_json::from_slice::<Value>(&bytes)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
        let code = status.as_u16();
        match ErrorKind::from_http_status(code) {
            None => Ok(json!({"status": code, "headers": headers, "body": body})),
            Some(kind) => {
                // Scrubbed before cutting, so a cut cannot leave half a secret behind.
                let snippet: String = secrets.scrub(&text(&body)).chars().take(200).collect();
                Err(StepError {
                    kind,
                    message: format!("{url} answered {code}: {snippet}"),
                    retry_after_ms: retry_after,
                })
            }
        }
    }
}

impl HttpTool {
    /// Follows a redirect to another origin that the guarded client stopped at, as reqwest
    /// would (303, and 301/302 after a POST, become a GET without body; 307/308 keep both) but
    /// without the headers that carry secrets, `Authorization`, cookies and a signature's
    /// `x-amz-*` headers; further redirects are followed as usual.
    async fn follow_without_secrets(
        &self,
        policy: &Policy,
        resp: reqwest::Response,
        mut next: reqwest::Request,
        secret_headers: &[HeaderName],
        url: &str,
    ) -> Result<reqwest::Response, StepError> {
        let location = resp.headers().get(reqwest::header::LOCATION).and_then(|v| v.to_str().ok()).unwrap_or_default();
        let target = resp
            .url()
            .join(location)
            .map_err(|e| StepError::new(ErrorKind::Connect, format!("redirect from {url} to a bad location: {e}")))?;
        policy
            .check_url(&target)
            .map_err(|r| StepError::new(ErrorKind::NetworkRefused, format!("redirect from {url}: {r}")))?;
        let status = resp.status().as_u16();
        let to_get = status == 303 || (matches!(status, 301 | 302) && next.method() == reqwest::Method::POST);
        if to_get && next.method() != reqwest::Method::HEAD {
            *next.method_mut() = reqwest::Method::GET;
            *next.body_mut() = None;
            next.headers_mut().remove(reqwest::header::CONTENT_TYPE);
            next.headers_mut().remove(reqwest::header::CONTENT_LENGTH);
        }
        let h = next.headers_mut();
        for name in secret_headers {
            h.remove(name);
        }
        for name in [reqwest::header::AUTHORIZATION, reqwest::header::COOKIE, reqwest::header::PROXY_AUTHORIZATION] {
            h.remove(name);
        }
        let amz: Vec<HeaderName> = h.keys().filter(|k| k.as_str().starts_with("x-amz-")).cloned().collect();
        for name in amz {
            h.remove(name);
        }
        tracing::info!(from = %url, to = %target.origin().ascii_serialization(), "redirect to another host: secret-bearing headers dropped");
        *next.url_mut() = target;
        self.client(policy, false)?.execute(next).await.map_err(|e| classify(&e, url))
    }
}

/// Reads a response body, counting it as it streams (a `Content-Length` may lie or be absent)
/// and stopping at `limit` bytes, so one API cannot make the worker hold more than that.
async fn read_capped(mut resp: reqwest::Response, limit: u64, url: &str) -> Result<Vec<u8>, StepError> {
    let too_large = |what: String| {
        StepError::new(
            ErrorKind::ResponseTooLarge,
            format!("{url} answered with {what}, over the call's limit of {limit} bytes (max_response_bytes)"),
        )
    };
    if let Some(len) = resp.content_length()
        && len > limit
    {
        return Err(too_large(format!("a body of {len} bytes (Content-Length)")));
    }
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(|e| classify(&e, url))? {
        if body.len() as u64 + chunk.len() as u64 > limit {
            return Err(too_large(format!("more than {limit} bytes")));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

pub(crate) fn classify(e: &reqwest::Error, url: &str) -> StepError {
    if let Some(refused) = net_guard::refusal(e) {
        let via = if e.is_redirect() { format!("redirect from {url}: ") } else { String::new() };
        StepError::new(ErrorKind::NetworkRefused, format!("{via}{refused}"))
    } else if e.is_timeout() {
        StepError::new(ErrorKind::Timeout, format!("{url} did not answer in time"))
    } else if e.is_connect() {
        StepError::new(ErrorKind::Connect, format!("cannot connect to {url}: {e}"))
    } else if e.is_builder() {
        StepError::new(ErrorKind::Tool, format!("invalid request to {url}: {e}"))
    } else {
        StepError::new(ErrorKind::Connect, format!("request to {url} failed: {e}"))
    }
}
