//! The `aws` tool: one call of an AWS API (`with: {service, action, params}`), signed with SigV4
//! with the worker's credentials (the environment's, else a named profile's: see
//! [`crate::aws_credentials`]), sent to the service's endpoint (`AWS_ENDPOINT_URL_<SERVICE>`,
//! else `AWS_ENDPOINT_URL`, else the regional AWS endpoint). One generic client per wire
//! protocol instead of an SDK per service (see [`protocol`]). An AWS error fails the call with
//! kind `<Service>.<Code>` (`DynamoDB.ConditionalCheckFailedException`), which `retry.on` and an
//! imported `Catch` match by name; a Lambda function's own error with the function's
//! `errorType`, as Step Functions reports it. REST-JSON services (Lambda beyond `Invoke`, API
//! Gateway, EKS, Bedrock, ...) are spoken to from their operations' URI templates and member
//! locations (see [`rest_json`]). S3 covers objects (`GetObject` with an optional
//! byte `Range`, `PutObject`), `CreateBucket` and `ListObjectsV2`, which the `items` tool pages
//! through to read large sources in batches.

mod protocol;
pub mod rest_json;
mod services;
mod wire;
mod xml;

use std::collections::HashMap;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use baton_core::engine::{ErrorKind, StepError};
use baton_core::plan::tools::ToolInput;
use baton_runtime::ports::{Tool, ToolCall};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

use crate::aws_credentials::ChainEnv;
use crate::sigv4::Signer;
use protocol::{Protocol, Service};

/// An `aws` call as its worker receives it: the step's rendered `with`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AwsCall {
    /// The SDK service id.
    pub service: String,
    /// The action, PascalCase.
    pub action: String,
    /// The request parameters.
    #[serde(default)]
    pub params: Option<Value>,
    /// A role to assume for the call (STS `AssumeRole`), as Step Functions' `Credentials`.
    #[serde(default)]
    pub role_arn: Option<String>,
}

impl ToolInput for AwsCall {
    const TOOL: &'static str = "aws";
}

/// Where calls go and who signs them; [`AwsTool::from_env`] reads both from the environment.
#[derive(Debug, Clone, Default)]
pub struct AwsSettings {
    /// `AWS_ENDPOINT_URL`: every service's endpoint unless it has its own.
    pub endpoint: Option<String>,
    /// `AWS_ENDPOINT_URL_<SERVICE>` by service id.
    pub endpoints: HashMap<String, String>,
    /// Credentials and region to sign with; from the credentials chain at each call when absent.
    pub signer: Option<(String, String, Option<String>, String)>,
    /// The variables the credentials chain reads (profile, file paths); the process's
    /// environment at each call when absent, so a profile switched mid-run is seen.
    pub chain: Option<ChainEnv>,
}

/// Temporary credentials of an assumed role: keys, session token, and when they expire.
type Assumed = (String, String, String, SystemTime);

/// The `aws` tool.
#[derive(Debug, Clone)]
pub struct AwsTool {
    client: reqwest::Client,
    settings: AwsSettings,
    /// Assumed roles' credentials by role ARN, kept until shortly before they expire.
    roles: std::sync::Arc<std::sync::Mutex<HashMap<String, Assumed>>>,
}

impl Default for AwsTool {
    fn default() -> Self {
        Self::from_env()
    }
}

impl AwsTool {
    /// Endpoints from `AWS_ENDPOINT_URL` and `AWS_ENDPOINT_URL_<SERVICE>`; credentials and region
    /// from the credentials chain when a call is made (Lambda sets them for its role).
    pub fn from_env() -> Self {
        let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        // The environment's few per-service variables, not a lookup for each of the services.
        let endpoints = std::env::vars()
            .filter(|(_, url)| !url.is_empty())
            .filter_map(|(k, url)| {
                let env = k.strip_prefix("AWS_ENDPOINT_URL_")?;
                protocol::all().find(|s| s.env == env).map(|s| (s.id.to_owned(), url))
            })
            .collect();
        Self::with_settings(AwsSettings { endpoint: var("AWS_ENDPOINT_URL"), endpoints, signer: None, chain: None })
    }

    /// A tool with the given settings (tests point it at an emulator).
    pub fn with_settings(settings: AwsSettings) -> Self {
        // Per-call limits are the step's `timeout`; this only bounds a call nobody limited.
        let client = reqwest::Client::builder().timeout(Duration::from_secs(60)).build().unwrap_or_default();
        Self { client, settings, roles: Default::default() }
    }

    /// The same tool with `url` as the endpoint of `service` (an SDK service id, `s3`).
    pub fn with_endpoint(mut self, service: &str, url: &str) -> Self {
        self.settings.endpoints.insert(service.to_owned(), url.to_owned());
        self
    }

    fn endpoint(&self, s: &Service, region: &str) -> String {
        let url = self
            .settings
            .endpoints
            .get(s.id)
            .or(self.settings.endpoint.as_ref())
            .cloned()
            .unwrap_or_else(|| format!("https://{}.{region}.amazonaws.com", s.endpoint));
        url.trim_end_matches('/').to_owned()
    }

    async fn signer(&self, s: &Service) -> Result<Signer, StepError> {
        match &self.settings.signer {
            Some((ak, sk, token, region)) => Ok(Signer {
                access_key: ak.clone(),
                secret_key: sk.clone(),
                session_token: token.clone(),
                region: region.clone(),
                service: s.signing.to_owned(),
            }),
            None => match &self.settings.chain {
                Some(env) => Signer::from_chain(s.signing, None, env).await,
                None => Signer::from_env(s.signing, None).await,
            },
        }
    }

    /// Signs and sends one request; returns status, headers and body.
    async fn send(
        &self,
        signer: &Signer,
        method: &str,
        url: &str,
        mut headers: Vec<(String, String)>,
        body: Vec<u8>,
    ) -> Result<(u16, reqwest::header::HeaderMap, String), StepError> {
        headers.push(("x-amz-content-sha256".into(), hex(&Sha256::digest(&body))));
        let signed = signer.headers(method, url, &headers, &body, SystemTime::now())?;
        let mut req = self.client.request(method.parse().unwrap_or(reqwest::Method::POST), url);
        for (k, v) in headers.iter().chain(&signed) {
            req = req.header(k, v);
        }
        let resp = req.body(body).send().await.map_err(|e| {
            let kind = if e.is_timeout() { ErrorKind::Timeout } else { ErrorKind::Connect };
            StepError::new(kind, format!("{method} {url}: {e}"))
        })?;
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let text =
            resp.text().await.map_err(|e| StepError::new(ErrorKind::Connect, format!("reading the response: {e}")))?;
        Ok((status, headers, text))
    }

    /// The call's result, or its error kind `<Service>.<Code>`.
    pub async fn invoke(&self, call: &AwsCall) -> Result<Value, StepError> {
        let s = protocol::service(&call.service).ok_or_else(|| {
            StepError::new(
                ErrorKind::Tool,
                format!(
                    "the aws tool does not speak to `{}`: it calls every service of the awsJson, query and \
                     REST-JSON protocols (by SDK service id: `dynamodb`, `ecs`, `apigateway`, `eks`, ...) and S3 \
                     objects; REST-XML services (CloudFront, Route 53, S3 Control) are not built",
                    call.service
                ),
            )
        })?;
        let mut signer = self.signer(s).await?;
        if let Some(role) = &call.role_arn {
            let (ak, sk, token, _) = self.assume(role).await?;
            signer = Signer { access_key: ak, secret_key: sk, session_token: Some(token), ..signer };
        }
        let base = self.endpoint(s, &signer.region);
        // The run's request account (`Service.Action`, as the SDK clients' counter names them).
        baton_runtime::metering::record(&format!("{}.{}", s.errors, call.action), 1);
        let mut params = match &call.params {
            None | Some(Value::Null) => Map::new(),
            Some(Value::Object(m)) => m.clone(),
            Some(other) => return Err(StepError::new(ErrorKind::Tool, format!("`params` is an object, not {other}"))),
        };
        protocol::stringify_documents(s.id, &call.action, &mut params);
        match s.protocol {
            Protocol::Json { version, target } => {
                let headers = vec![
                    ("content-type".into(), format!("application/x-amz-json-{version}")),
                    ("x-amz-target".into(), format!("{target}.{}", call.action)),
                ];
                let body = serde_json::to_vec(&Value::Object(params)).unwrap_or_default();
                let (status, h, text) = self.send(&signer, "POST", &format!("{base}/"), headers, body).await?;
                if status >= 300 {
                    return Err(aws_error(s, status, header(&h, "x-amzn-errortype").as_deref(), &text));
                }
                Ok(if text.trim().is_empty() { json!({}) } else { parse_json(&text) })
            }
            Protocol::Query { version } => {
                let form = {
                    let mut form = form_urlencoded::Serializer::new(String::new());
                    form.append_pair("Action", &call.action).append_pair("Version", version);
                    for (k, v) in protocol::flatten(&params) {
                        form.append_pair(&k, &v);
                    }
                    form.finish()
                };
                let headers = vec![("content-type".into(), "application/x-www-form-urlencoded".into())];
                let (status, _, text) =
                    self.send(&signer, "POST", &format!("{base}/"), headers, form.into_bytes()).await?;
                if status >= 300 {
                    return Err(aws_error(s, status, None, &text));
                }
                let doc = xml::to_json(&text).unwrap_or(Value::Null);
                let result = protocol::find(&doc, &format!("{}Result", call.action)).cloned().unwrap_or(json!({}));
                Ok(if result.is_string() { json!({}) } else { result })
            }
            Protocol::LambdaInvoke if call.action == "Invoke" => self.lambda(s, &signer, &base, params).await,
            Protocol::LambdaInvoke | Protocol::RestJson => {
                self.rest_json(s, &signer, &base, &call.action, params).await
            }
            Protocol::S3Objects => self.s3(s, &signer, &base, &call.action, params).await,
        }
    }

    /// The temporary credentials of `role` (STS `AssumeRole` with the worker's own), kept until
    /// five minutes before they expire.
    async fn assume(&self, role: &str) -> Result<Assumed, StepError> {
        let fresh = |a: &Assumed| a.3 > SystemTime::now() + Duration::from_secs(300);
        if let Some(a) = self.roles.lock().ok().and_then(|r| r.get(role).cloned()).filter(fresh) {
            return Ok(a);
        }
        let sts = protocol::service("sts")
            .ok_or_else(|| StepError::new(ErrorKind::Tool, "the aws tool's service table has no STS"))?;
        let signer = self.signer(sts).await?;
        let base = self.endpoint(sts, &signer.region);
        // The session name says who assumed the role, in the role's CloudTrail records.
        let session: String = format!("baton-{}", role.rsplit('/').next().unwrap_or("role"))
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || "=,.@-_".contains(*c))
            .take(64)
            .collect();
        let form = form_urlencoded::Serializer::new(String::new())
            .append_pair("Action", "AssumeRole")
            .append_pair("Version", "2011-06-15")
            .append_pair("RoleArn", role)
            .append_pair("RoleSessionName", &session)
            .finish();
        let headers = vec![("content-type".into(), "application/x-www-form-urlencoded".into())];
        let (status, _, text) = self.send(&signer, "POST", &format!("{base}/"), headers, form.into_bytes()).await?;
        if status >= 300 {
            let e = aws_error(sts, status, None, &text);
            return Err(StepError::new(e.kind, format!("assuming `{role}`: {}", e.message)));
        }
        let doc = xml::to_json(&text).unwrap_or(Value::Null);
        let creds = protocol::find(&doc, "Credentials").cloned().unwrap_or(Value::Null);
        let field = |k: &str| creds.get(k).and_then(Value::as_str).map(str::to_owned);
        let (Some(ak), Some(sk), Some(token)) = (field("AccessKeyId"), field("SecretAccessKey"), field("SessionToken"))
        else {
            return Err(StepError::new(ErrorKind::Tool, format!("assuming `{role}`: STS answered no credentials")));
        };
        let expires = field("Expiration")
            .and_then(|e| chrono::DateTime::parse_from_rfc3339(&e).ok())
            .map(|t| SystemTime::from(t.with_timezone(&chrono::Utc)))
            .unwrap_or_else(|| SystemTime::now() + Duration::from_secs(900));
        let assumed = (ak, sk, token, expires);
        if let Ok(mut r) = self.roles.lock() {
            r.insert(role.to_owned(), assumed.clone());
        }
        Ok(assumed)
    }

    /// One REST-JSON operation, from the generated table.
    async fn rest_json(
        &self,
        s: &Service,
        signer: &Signer,
        base: &str,
        action: &str,
        params: Map<String, Value>,
    ) -> Result<Value, StepError> {
        let op = rest_json::op(s.id, action)
            .ok_or_else(|| StepError::new(ErrorKind::Tool, format!("`{}` has no operation `{action}`", s.id)))?;
        let req = rest_json::request(op, &params)
            .map_err(|e| StepError::new(ErrorKind::Tool, format!("{}.{action}: {e}", s.id)))?;
        let url = format!("{base}{}", req.path_and_query);
        let (status, h, text) = self.send(signer, &req.method, &url, req.headers, req.body).await?;
        if status >= 300 {
            return Err(aws_error(s, status, header(&h, "x-amzn-errortype").as_deref(), &text));
        }
        let all: Vec<(String, String)> =
            h.iter().filter_map(|(k, v)| Some((k.as_str().to_owned(), v.to_str().ok()?.to_owned()))).collect();
        Ok(rest_json::response(op, status, &all, &text))
    }

    /// Lambda `Invoke` (the other Lambda operations are REST-JSON ones).
    async fn lambda(
        &self,
        s: &Service,
        signer: &Signer,
        base: &str,
        params: Map<String, Value>,
    ) -> Result<Value, StepError> {
        let name = params
            .get("FunctionName")
            .and_then(Value::as_str)
            .ok_or_else(|| StepError::new(ErrorKind::Tool, "Lambda `Invoke` needs `params.FunctionName`"))?;
        let mut url = format!("{base}/2015-03-31/functions/{}/invocations", encode(name));
        if let Some(q) = params.get("Qualifier").and_then(Value::as_str) {
            url.push_str(&format!("?Qualifier={}", encode(q)));
        }
        let mut headers = vec![("content-type".to_owned(), "application/json".to_owned())];
        for (field, h) in [
            ("InvocationType", "x-amz-invocation-type"),
            ("LogType", "x-amz-log-type"),
            ("ClientContext", "x-amz-client-context"),
        ] {
            if let Some(v) = params.get(field).and_then(Value::as_str) {
                headers.push((h.into(), v.into()));
            }
        }
        let body = match params.get("Payload") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::String(p)) => p.clone().into_bytes(),
            Some(p) => p.to_string().into_bytes(),
        };
        let (status, h, text) = self.send(signer, "POST", &url, headers, body).await?;
        if status >= 300 {
            return Err(aws_error(s, status, header(&h, "x-amzn-errortype").as_deref(), &text));
        }
        let payload = if text.trim().is_empty() { Value::Null } else { parse_json(&text) };
        if let Some(fe) = header(&h, "x-amz-function-error") {
            // Step Functions names a function's error by its `errorType`.
            let kind = payload.get("errorType").and_then(Value::as_str).unwrap_or("Lambda.Unknown").to_owned();
            let cause = if payload.is_object() { payload.to_string() } else { format!("{fe}: {text}") };
            return Err(StepError::new(ErrorKind::from(kind.as_str()), cause));
        }
        let mut out = json!({"StatusCode": status, "Payload": payload});
        if let Some(v) = header(&h, "x-amz-executed-version") {
            out["ExecutedVersion"] = json!(v);
        }
        if let Some(v) = header(&h, "x-amz-log-result") {
            out["LogResult"] = json!(v);
        }
        Ok(out)
    }

    async fn s3(
        &self,
        s: &Service,
        signer: &Signer,
        base: &str,
        action: &str,
        params: Map<String, Value>,
    ) -> Result<Value, StepError> {
        let field = |k: &str| params.get(k).and_then(Value::as_str);
        let bucket = field("Bucket").ok_or_else(|| StepError::new(ErrorKind::Tool, "S3 needs `params.Bucket`"))?;
        let key_url = |key: &str| {
            format!("{base}/{}/{}", encode(bucket), key.split('/').map(encode).collect::<Vec<_>>().join("/"))
        };
        let key =
            || field("Key").ok_or_else(|| StepError::new(ErrorKind::Tool, format!("S3 `{action}` needs `params.Key`")));
        let (method, url, headers, body) = match action {
            "GetObject" => {
                // A ranged read answers 206, which the status check below takes as success.
                let headers = field("Range").map(|r| vec![("range".to_owned(), r.to_owned())]).unwrap_or_default();
                ("GET", key_url(key()?), headers, Vec::new())
            }
            "PutObject" => {
                let body = match params.get("Body") {
                    None | Some(Value::Null) => Vec::new(),
                    Some(Value::String(b)) => b.clone().into_bytes(),
                    Some(b) => b.to_string().into_bytes(),
                };
                let ct = field("ContentType").unwrap_or("application/octet-stream").to_owned();
                ("PUT", key_url(key()?), vec![("content-type".to_owned(), ct)], body)
            }
            "CreateBucket" => ("PUT", format!("{base}/{}", encode(bucket)), Vec::new(), Vec::new()),
            "ListObjectsV2" => ("GET", list_url(base, bucket, &params), Vec::new(), Vec::new()),
            other => {
                return Err(StepError::new(
                    ErrorKind::Tool,
                    format!(
                        "the aws tool calls S3 `GetObject`, `PutObject`, `CreateBucket` and `ListObjectsV2`, \
                         not `{other}`"
                    ),
                ));
            }
        };
        let (status, h, text) = self.send(signer, method, &url, headers, body).await?;
        if status >= 300 {
            let code = protocol::error_code(None, &text)
                .unwrap_or_else(|| if status == 404 { "NoSuchKey".into() } else { format!("Http{status}") });
            return Err(StepError::new(kind_of(s, &code), protocol::error_message(&text)));
        }
        if action == "ListObjectsV2" {
            return list_result(&text);
        }
        let mut out = Map::new();
        for (hname, key) in [
            ("etag", "ETag"),
            ("content-type", "ContentType"),
            ("last-modified", "LastModified"),
            ("version-id", "VersionId"),
        ] {
            if let Some(v) = header(&h, hname) {
                out.insert(key.into(), json!(v));
            }
        }
        if action == "GetObject" {
            out.insert("ContentLength".into(), json!(text.len()));
            out.insert("Body".into(), json!(text));
        }
        Ok(Value::Object(out))
    }
}

#[async_trait]
impl Tool for AwsTool {
    async fn call(&self, call: &ToolCall) -> Result<Value, StepError> {
        let mut input: AwsCall = call.input_as()?;
        // Tokens derived from the call's key: a re-issued call (after a crash) sends the same.
        fill_idempotency_tokens(&mut input, &call.idempotency_key);
        self.invoke(&input).await
    }
}

/// Fills the request members the SDKs fill with an idempotency token when the caller leaves
/// them out (Secrets Manager's `ClientRequestToken`, ECS's `clientToken`, ...), each a UUID-shaped
/// hash of `key` and the member, as Step Functions' SDK integrations send one.
pub fn fill_idempotency_tokens(call: &mut AwsCall, key: &str) {
    use sha2::{Digest, Sha256};
    let members = services::IDEMPOTENCY_TOKENS.lines().filter_map(|l| {
        let mut f = l.split(' ');
        let (s, a, member) = (f.next()?, f.next()?, f.next()?);
        (s == call.service && a == call.action).then_some(member)
    });
    for member in members {
        let params = call.params.get_or_insert_with(|| Value::Object(Map::new()));
        if let Value::Object(m) = params
            && !m.contains_key(member)
        {
            let h = hex::encode(Sha256::digest(format!("{key}/{member}").as_bytes()));
            let token = format!("{}-{}-{}-{}-{}", &h[..8], &h[8..12], &h[12..16], &h[16..20], &h[20..32]);
            m.insert(member.to_owned(), Value::String(token));
        }
    }
}

/// The URL of a `ListObjectsV2` page. The query is percent-encoded (RFC 3986) and sorted by
/// name, so the URL sent is already in the canonical form SigV4 signs.
fn list_url(base: &str, bucket: &str, params: &Map<String, Value>) -> String {
    let mut query = vec![("list-type", "2".to_owned())];
    for (field, name) in [
        ("ContinuationToken", "continuation-token"),
        ("MaxKeys", "max-keys"),
        ("Prefix", "prefix"),
        ("StartAfter", "start-after"),
    ] {
        match params.get(field) {
            Some(Value::String(v)) => query.push((name, v.clone())),
            Some(Value::Number(n)) => query.push((name, n.to_string())),
            _ => {}
        }
    }
    query.sort();
    let query: Vec<String> = query.iter().map(|(k, v)| format!("{k}={}", encode(v))).collect();
    format!("{base}/{}?{}", encode(bucket), query.join("&"))
}

/// A `ListObjectsV2` answer as the SDK shapes it: `Contents` always a list, numbers and
/// booleans typed (the XML has only text).
fn list_result(text: &str) -> Result<Value, StepError> {
    let doc = xml::to_json(text)
        .ok_or_else(|| StepError::new(ErrorKind::Tool, format!("S3 `ListObjectsV2` answered with no XML: {text}")))?;
    let root = doc.get("ListBucketResult").cloned().unwrap_or(Value::Null);
    let text_of = |v: &Value, k: &str| v.get(k).and_then(Value::as_str).map(str::to_owned);
    let number = |v: &Value, k: &str| text_of(v, k).and_then(|n| n.trim().parse::<u64>().ok()).unwrap_or(0);
    let entries = match root.get("Contents") {
        None => Vec::new(),
        Some(Value::Array(list)) => list.clone(),
        Some(one) => vec![one.clone()],
    };
    let contents: Vec<Value> = entries
        .iter()
        .map(|c| {
            json!({
                "Key": text_of(c, "Key").unwrap_or_default(),
                "Size": number(c, "Size"),
                "ETag": text_of(c, "ETag").unwrap_or_default(),
                "LastModified": text_of(c, "LastModified").unwrap_or_default(),
            })
        })
        .collect();
    let key_count = text_of(&root, "KeyCount").and_then(|n| n.trim().parse::<u64>().ok());
    let key_count = key_count.unwrap_or(contents.len() as u64);
    let mut out = json!({
        "Contents": contents,
        "IsTruncated": text_of(&root, "IsTruncated").is_some_and(|t| t.trim() == "true"),
        "KeyCount": key_count,
    });
    if let Some(token) = text_of(&root, "NextContinuationToken").filter(|t| !t.is_empty()) {
        out["NextContinuationToken"] = json!(token);
    }
    Ok(out)
}

/// `<Service>.<Code>`.
fn kind_of(s: &Service, code: &str) -> ErrorKind {
    ErrorKind::from(format!("{}.{code}", s.errors).as_str())
}

fn aws_error(s: &Service, status: u16, header: Option<&str>, body: &str) -> StepError {
    let code = protocol::error_code(header, body).unwrap_or_else(|| format!("Http{status}"));
    StepError::new(kind_of(s, &code), protocol::error_message(body))
}

fn header(h: &reqwest::header::HeaderMap, name: &str) -> Option<String> {
    h.get(name).and_then(|v| v.to_str().ok()).map(str::to_owned)
}

fn parse_json(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|_| Value::String(text.to_owned()))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Percent-encodes a path segment (RFC 3986 unreserved characters kept).
fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            other => format!("%{other:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_urls_are_encoded_and_sorted() {
        let params = json!({"Bucket": "b", "Prefix": "in/a b+", "StartAfter": "in/k", "MaxKeys": 10, "ContinuationToken": "t/=="});
        assert_eq!(
            list_url("http://h", "b", params.as_object().unwrap_or(&Map::new())),
            "http://h/b?continuation-token=t%2F%3D%3D&list-type=2&max-keys=10&prefix=in%2Fa%20b%2B&start-after=in%2Fk"
        );
    }

    #[test]
    fn list_results_always_carry_a_list() {
        let one = r#"<?xml version="1.0"?><ListBucketResult><Name>b</Name><KeyCount>1</KeyCount>
            <IsTruncated>true</IsTruncated><NextContinuationToken>n</NextContinuationToken>
            <Contents><Key>a&amp;b</Key><Size>12</Size><ETag>&quot;e&quot;</ETag><LastModified>2026-01-01T00:00:00.000Z</LastModified></Contents>
            </ListBucketResult>"#;
        assert_eq!(
            list_result(one).ok(),
            Some(
                json!({"Contents": [{"Key": "a&b", "Size": 12, "ETag": "\"e\"", "LastModified": "2026-01-01T00:00:00.000Z"}],
                        "IsTruncated": true, "KeyCount": 1, "NextContinuationToken": "n"})
            )
        );
        let none =
            "<ListBucketResult><Name>b</Name><KeyCount>0</KeyCount><IsTruncated>false</IsTruncated></ListBucketResult>";
        assert_eq!(list_result(none).ok(), Some(json!({"Contents": [], "IsTruncated": false, "KeyCount": 0})));
    }
}
