//! Signed callback URLs for human tasks: a link a person (or a system) can answer a task with
//! without credentials of the deployment. The link is `<base>/tasks/<task>?exp=<unix s>&sig=<hex>`
//! where `sig` is HMAC-SHA256 over the task id and the expiry, so it cannot be moved to another
//! task or extended. `GET` only shows the task (mail scanners fetch links, so a GET must never
//! answer); `POST` answers it. The same handler serves the `api` Lambda function URL and
//! `baton serve`; what answering means (submit in-process, or send to the coordinator queue) is
//! the caller's [`Answerer`].

use async_trait::async_trait;
use baton_core::engine::{HumanAnswer, Verdict};
use baton_core::ids::TaskId;
use hmac::{Hmac, KeyInit, Mac};
use serde_json::{Value, json};
use sha2::Sha256;

use crate::error::RuntimeError;
use crate::ports::{RunStore, TaskRecord};

/// Secrets shorter than this are refused: the signature is only as strong as the key.
pub const MIN_SECRET_BYTES: usize = 32;
/// Default lifetime of a link when the step sets no `timeout`.
pub const DEFAULT_TTL_MS: u64 = 7 * 24 * 3_600_000;
/// Largest request body accepted (answers are small; this keeps a function URL cheap to abuse).
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// A configuration mistake in the callback settings.
#[derive(Debug, thiserror::Error)]
pub enum CallbackError {
    /// The secret is too short.
    #[error("the callback secret has {0} bytes; at least {MIN_SECRET_BYTES} are required")]
    WeakSecret(usize),
    /// The base URL is not http(s).
    #[error("the callback base URL `{0}` must start with http:// or https://")]
    BadBaseUrl(String),
    /// `BATON_CALLBACK_TTL` is not a duration.
    #[error("BATON_CALLBACK_TTL `{0}` is not a duration such as `72h`")]
    BadTtl(String),
}

/// Signs and checks task links.
#[derive(Clone)]
pub struct CallbackSigner {
    /// The keyed MAC, cloned per signature (the secret itself is not kept elsewhere).
    keyed: Hmac<Sha256>,
    base_url: String,
    ttl_ms: u64,
}

impl std::fmt::Debug for CallbackSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The secret never goes into logs.
        f.debug_struct("CallbackSigner").field("base_url", &self.base_url).field("ttl_ms", &self.ttl_ms).finish()
    }
}

impl CallbackSigner {
    /// A signer issuing links under `base_url` that live `ttl_ms` unless a task's timeout is
    /// shorter.
    pub fn new(secret: &[u8], base_url: &str, ttl_ms: u64) -> Result<Self, CallbackError> {
        if secret.len() < MIN_SECRET_BYTES {
            return Err(CallbackError::WeakSecret(secret.len()));
        }
        if !(base_url.starts_with("http://") || base_url.starts_with("https://")) {
            return Err(CallbackError::BadBaseUrl(base_url.to_owned()));
        }
        // HMAC takes keys of any length; the only error is for fixed-length MACs.
        let keyed = <Hmac<Sha256> as KeyInit>::new_from_slice(secret).map_err(|_| CallbackError::WeakSecret(0))?;
        Ok(Self { keyed, base_url: base_url.trim_end_matches('/').to_owned(), ttl_ms })
    }

    /// A signer that only checks links (the api function, which cannot know its own URL when
    /// the stack is created: the URL depends on the function).
    pub fn verifier(secret: &[u8]) -> Result<Self, CallbackError> {
        let mut s = Self::new(secret, "https://unset.invalid", DEFAULT_TTL_MS)?;
        s.base_url.clear();
        Ok(s)
    }

    /// From `BATON_CALLBACK_SECRET`, `BATON_CALLBACK_URL` and `BATON_CALLBACK_TTL` (default 7d);
    /// `None` when the secret or the URL is unset (links are then not issued).
    pub fn from_env() -> Result<Option<Self>, CallbackError> {
        let (Ok(secret), Ok(url)) = (std::env::var("BATON_CALLBACK_SECRET"), std::env::var("BATON_CALLBACK_URL"))
        else {
            return Ok(None);
        };
        Self::new(secret.as_bytes(), &url, ttl_from_env()?).map(Some)
    }

    /// Like [`CallbackSigner::new`] with the lifetime from `BATON_CALLBACK_TTL` (default 7d).
    pub fn with_env_ttl(secret: &[u8], base_url: &str) -> Result<Self, CallbackError> {
        Self::new(secret, base_url, ttl_from_env()?)
    }

    /// The link lifetime.
    pub fn ttl_ms(&self) -> u64 {
        self.ttl_ms
    }

    /// The base URL links start with.
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    fn mac(&self, task: &str, expires_s: u64) -> Hmac<Sha256> {
        let mut mac = self.keyed.clone();
        mac.update(b"baton-task-callback\n");
        mac.update(task.as_bytes());
        mac.update(b"\n");
        mac.update(expires_s.to_string().as_bytes());
        mac
    }

    /// The hex signature over `task` and `expires_s` (seconds since the Unix epoch).
    pub fn sign(&self, task: &str, expires_s: u64) -> String {
        hex::encode(self.mac(task, expires_s).finalize().into_bytes())
    }

    /// The link for `task`, valid until `expires_s`.
    pub fn url(&self, task: &TaskId, expires_s: u64) -> String {
        format!("{}/tasks/{}?exp={}&sig={}", self.base_url, task, expires_s, self.sign(task.as_str(), expires_s))
    }

    /// The expiry of a link issued at `now_ms` for a task whose step limits the wait to
    /// `timeout_ms`: the shorter of that and the signer's lifetime, rounded up to the second.
    pub fn expiry_for(&self, now_ms: u64, timeout_ms: Option<u64>) -> u64 {
        let ttl = timeout_ms.map_or(self.ttl_ms, |t| t.min(self.ttl_ms));
        (now_ms + ttl).div_ceil(1000)
    }

    /// Checks a link's signature (in constant time) and expiry.
    pub fn verify(&self, task: &str, expires_s: u64, sig_hex: &str, now_ms: u64) -> Result<(), Denied> {
        let sig = hex::decode(sig_hex).map_err(|_| Denied::BadSignature)?;
        self.mac(task, expires_s).verify_slice(&sig).map_err(|_| Denied::BadSignature)?;
        if now_ms / 1000 >= expires_s {
            return Err(Denied::Expired(expires_s));
        }
        Ok(())
    }
}

fn ttl_from_env() -> Result<u64, CallbackError> {
    match std::env::var("BATON_CALLBACK_TTL") {
        Err(_) => Ok(DEFAULT_TTL_MS),
        Ok(t) => baton_core::duration::parse_duration(&t).map(|d| d.0).map_err(|_| CallbackError::BadTtl(t)),
    }
}

/// Why a link was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Denied {
    /// The signature does not match the task and expiry (or is not hex).
    BadSignature,
    /// The link expired at this time (s).
    Expired(u64),
}

/// Carries out an accepted answer: in-process on the embedded backend, a message to the
/// coordinator queue on AWS. Returns the run id.
#[async_trait]
pub trait Answerer: Send + Sync {
    /// Delivers the answer to `task` (already checked against the task's form).
    async fn answer(&self, task: &TaskRecord, answer: HumanAnswer) -> Result<(), RuntimeError>;
}

/// An HTTP request as the handler needs it, whatever server received it.
#[derive(Debug, Clone, Default)]
pub struct CallbackRequest {
    /// `GET`, `POST`, ...
    pub method: String,
    /// The path, e.g. `/tasks/t-123`.
    pub path: String,
    /// The raw query string without `?`.
    pub query: String,
    /// `Content-Type`, lower-cased, without parameters.
    pub content_type: String,
    /// True when the client asked for JSON (`Accept: application/json`).
    pub wants_json: bool,
    /// The body.
    pub body: Vec<u8>,
}

impl CallbackRequest {
    /// A request from what any HTTP server hands over: the raw `Content-Type` and `Accept`
    /// header values are normalised here, so every server reads them the same way.
    pub fn new(
        method: &str,
        path: &str,
        query: &str,
        content_type: Option<&str>,
        accept: Option<&str>,
        body: Vec<u8>,
    ) -> Self {
        let content_type = content_type.unwrap_or_default().split(';').next().unwrap_or_default();
        Self {
            method: method.to_ascii_uppercase(),
            path: path.to_owned(),
            query: query.to_owned(),
            content_type: content_type.trim().to_ascii_lowercase(),
            wants_json: accept.is_some_and(|a| a.to_ascii_lowercase().contains("application/json")),
            body,
        }
    }
}

/// What the handler answers.
#[derive(Debug, Clone, PartialEq)]
pub struct CallbackResponse {
    /// HTTP status.
    pub status: u16,
    /// `Content-Type`.
    pub content_type: &'static str,
    /// Body.
    pub body: String,
}

impl CallbackResponse {
    fn json(status: u16, body: Value) -> Self {
        Self { status, content_type: "application/json", body: body.to_string() }
    }

    fn error(status: u16, kind: &str, message: impl Into<String>) -> Self {
        Self::json(status, json!({"error": kind, "message": message.into()}))
    }
}

/// Serves one request: `GET /health`, `GET /tasks/<id>?exp&sig` (the task as a page, or JSON
/// with `Accept: application/json`), `POST /tasks/<id>?exp&sig` (answer it with a JSON body
/// `{decision, data?, comment?, by?}` or the page's form fields).
pub async fn handle(
    signer: &CallbackSigner,
    store: &dyn RunStore,
    answerer: &dyn Answerer,
    now_ms: u64,
    req: &CallbackRequest,
) -> CallbackResponse {
    if req.path == "/health" {
        return CallbackResponse::json(200, json!({"ok": true}));
    }
    let Some(task_id) = req.path.strip_prefix("/tasks/").filter(|t| !t.is_empty() && !t.contains('/')) else {
        return CallbackResponse::error(404, "not_found", format!("no route for `{}`", req.path));
    };
    if req.body.len() > MAX_BODY_BYTES {
        return CallbackResponse::error(413, "too_large", format!("the body is over {MAX_BODY_BYTES} bytes"));
    }
    let query: Vec<(String, String)> = form_urlencoded::parse(req.query.as_bytes()).into_owned().collect();
    let param = |name: &str| query.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str());
    let (Some(exp), Some(sig)) = (param("exp").and_then(|e| e.parse::<u64>().ok()), param("sig")) else {
        return CallbackResponse::error(403, "unsigned", "the link needs its `exp` and `sig` parameters");
    };
    match signer.verify(task_id, exp, sig, now_ms) {
        Ok(()) => {}
        Err(Denied::BadSignature) => {
            return CallbackResponse::error(403, "bad_signature", "the link's signature does not match this task");
        }
        Err(Denied::Expired(at)) => {
            return CallbackResponse::error(403, "expired", format!("the link expired at {at} (Unix seconds)"));
        }
    }
    let task = match store.get_task(&TaskId::from(task_id)).await {
        Ok(Some(t)) => t,
        Ok(None) => return CallbackResponse::error(404, "unknown_task", format!("no task `{task_id}`")),
        Err(e) => return CallbackResponse::error(503, "store", e.to_string()),
    };
    match req.method.as_str() {
        "GET" if req.wants_json => CallbackResponse::json(200, task_json(&task)),
        "GET" => CallbackResponse { status: 200, content_type: "text/html; charset=utf-8", body: task_page(&task) },
        "POST" => answer(&task, answerer, req).await,
        other => CallbackResponse::error(405, "method", format!("method {other} is not allowed; use GET or POST")),
    }
}

async fn answer(task: &TaskRecord, answerer: &dyn Answerer, req: &CallbackRequest) -> CallbackResponse {
    if task.status != "open" {
        let outcome = task.outcome.clone().unwrap_or_default();
        return CallbackResponse::error(409, "closed", format!("task `{}` is closed: {outcome}", task.id));
    }
    let parsed = match parse_answer(req) {
        Ok(a) => a,
        Err(msg) => return CallbackResponse::error(400, "invalid_answer", msg),
    };
    if parsed.decision == Verdict::Approve
        && let Some(form) = &task.form
        && let Err(problems) = baton_core::plan::check_against_schema(form, &parsed.data)
    {
        return CallbackResponse::error(400, "invalid_answer", problems.join("; "));
    }
    let decision = parsed.decision.as_str();
    match answerer.answer(task, parsed).await {
        Ok(()) => CallbackResponse::json(
            202,
            json!({"task": task.id, "run_id": task.run_id, "decision": decision, "status": "accepted"}),
        ),
        Err(RuntimeError::UnknownTask(t)) => {
            CallbackResponse::error(409, "closed", format!("task `{t}` was answered meanwhile"))
        }
        Err(e @ RuntimeError::InvalidAnswer(_)) => CallbackResponse::error(400, "invalid_answer", e.to_string()),
        Err(e) => CallbackResponse::error(503, "unavailable", e.to_string()),
    }
}

/// Reads `{decision, data, comment, by}` from JSON or from the page's form fields (`data` as
/// JSON text there).
pub fn parse_answer(req: &CallbackRequest) -> Result<HumanAnswer, String> {
    let v: Value = if req.content_type == "application/x-www-form-urlencoded" {
        let mut m = serde_json::Map::new();
        for (k, val) in form_urlencoded::parse(&req.body) {
            let val = if k == "data" {
                if val.trim().is_empty() {
                    json!({})
                } else {
                    serde_json::from_str(&val).map_err(|e| format!("field `data` is not JSON: {e}"))?
                }
            } else {
                Value::String(val.into_owned())
            };
            m.insert(k.into_owned(), val);
        }
        Value::Object(m)
    } else {
        serde_json::from_slice(&req.body).map_err(|e| format!("the body is not JSON: {e}"))?
    };
    let decision = match v.get("decision").and_then(Value::as_str) {
        Some("approve") => Verdict::Approve,
        Some("reject") => Verdict::Reject,
        Some(other) => return Err(format!("field `decision`: `{other}` is neither `approve` nor `reject`")),
        None => return Err("field `decision` is missing: `approve` or `reject`".into()),
    };
    let text = |k: &str| v.get(k).and_then(Value::as_str).map(str::trim).filter(|s| !s.is_empty()).map(str::to_owned);
    Ok(HumanAnswer {
        decision,
        data: v.get("data").cloned().unwrap_or_else(|| json!({})),
        comment: text("comment"),
        by: Some(text("by").unwrap_or_else(|| "callback link".into())),
        // Whoever holds the link: its signature is what lets the answer in.
        principal: Some("signed task link".into()),
    })
}

fn task_json(t: &TaskRecord) -> Value {
    json!({
        "task": t.id, "run_id": t.run_id, "step": t.step, "queue": t.queue, "status": t.status,
        "prompt": t.prompt, "summary": t.summary, "form": t.form, "outcome": t.outcome,
    })
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// A plain page with the handover and an approve/reject form that posts back to the same link.
fn task_page(t: &TaskRecord) -> String {
    let form = t.form.as_ref().map(|f| serde_json::to_string_pretty(f).unwrap_or_default());
    let answer = if t.status == "open" {
        format!(
            "<form method=\"post\"><p><label>Data (JSON{})<br><textarea name=\"data\" rows=\"4\" cols=\"60\">{{}}</textarea></label></p>\
             <p><label>Comment<br><input name=\"comment\" size=\"60\"></label></p>\
             <p><label>Your name<br><input name=\"by\" size=\"30\"></label></p>\
             <p><button name=\"decision\" value=\"approve\">Approve</button> <button name=\"decision\" value=\"reject\">Reject</button></p></form>",
            form.map(|f| format!(", matching <code>{}</code>", escape(&f))).unwrap_or_default()
        )
    } else {
        format!("<p><strong>This task is closed: {}</strong></p>", escape(t.outcome.as_deref().unwrap_or("")))
    };
    format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>Task {id}</title></head><body>\
         <h1>Task {id}</h1><p>Run <code>{run}</code>, step <code>{step}</code>, queue <code>{queue}</code></p>\
         <h2>What is asked</h2><p>{prompt}</p><h2>Handover</h2><pre>{summary}</pre>{answer}</body></html>",
        id = escape(t.id.as_str()),
        run = escape(t.run_id.as_str()),
        step = escape(&t.step),
        queue = escape(&t.queue),
        prompt = escape(&t.prompt),
        summary = escape(&t.summary),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";

    fn signer() -> CallbackSigner {
        CallbackSigner::new(SECRET, "https://cb.example/", DEFAULT_TTL_MS).unwrap()
    }

    #[test]
    fn a_link_verifies_until_it_expires_and_only_for_its_task() {
        let s = signer();
        let sig = s.sign("t-1", 2_000);
        assert_eq!(s.verify("t-1", 2_000, &sig, 1_999_999), Ok(()));
        assert_eq!(s.verify("t-1", 2_000, &sig, 2_000_000), Err(Denied::Expired(2_000)));
        assert_eq!(s.verify("t-2", 2_000, &sig, 1_000), Err(Denied::BadSignature));
        assert_eq!(s.verify("t-1", 2_001, &sig, 1_000), Err(Denied::BadSignature), "a longer expiry is not signed");
        assert_eq!(s.verify("t-1", 2_000, "zz", 1_000), Err(Denied::BadSignature));
        let other = CallbackSigner::new(b"another secret that is long enough!!", "http://x", 1).unwrap();
        assert_eq!(other.verify("t-1", 2_000, &sig, 1_000), Err(Denied::BadSignature));
        assert_eq!(s.url(&"t-1".into(), 2_000), format!("https://cb.example/tasks/t-1?exp=2000&sig={sig}"));
    }

    #[test]
    fn weak_secrets_and_odd_urls_are_refused() {
        assert!(matches!(CallbackSigner::new(b"short", "https://x", 1), Err(CallbackError::WeakSecret(5))));
        assert!(matches!(CallbackSigner::new(SECRET, "ftp://x", 1), Err(CallbackError::BadBaseUrl(_))));
    }

    #[test]
    fn expiry_is_the_shorter_of_the_task_timeout_and_the_ttl() {
        let s = signer();
        assert_eq!(s.expiry_for(1_000, Some(3_600_000)), 3_601);
        assert_eq!(s.expiry_for(1_000, None), (1_000 + DEFAULT_TTL_MS).div_ceil(1000));
    }

    #[test]
    fn answers_parse_from_json_and_from_the_page_form() {
        let req = |ct: &str, body: &str| CallbackRequest {
            method: "POST".into(),
            content_type: ct.into(),
            body: body.as_bytes().to_vec(),
            ..Default::default()
        };
        let a = parse_answer(&req("application/json", r#"{"decision":"approve","data":{"amount":3},"by":"dana"}"#))
            .unwrap();
        assert_eq!((a.decision, a.data, a.by.as_deref()), (Verdict::Approve, json!({"amount": 3}), Some("dana")));
        let a =
            parse_answer(&req("application/x-www-form-urlencoded", "decision=reject&comment=no+way&data=")).unwrap();
        assert_eq!(
            (a.decision, a.comment.as_deref(), a.by.as_deref()),
            (Verdict::Reject, Some("no way"), Some("callback link"))
        );
        assert!(parse_answer(&req("application/json", r#"{"decision":"maybe"}"#)).unwrap_err().contains("`maybe`"));
        assert!(parse_answer(&req("application/json", "{}")).unwrap_err().contains("missing"));
        assert!(parse_answer(&req("application/x-www-form-urlencoded", "decision=approve&data=%7Bx")).is_err());
    }
}
