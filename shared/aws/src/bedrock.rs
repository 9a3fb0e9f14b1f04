//! The Amazon Bedrock provider of the `llm` tool (`with.provider: bedrock`): one Converse call
//! per request, with the answer schema enforced through a forced tool (`answer`, its input
//! schema the step's `output_schema`), so the model's answer is the tool's input.
//!
//! Region, credentials and endpoint come from the SDK's default chain (`AWS_REGION`, profiles,
//! roles, `AWS_ENDPOINT_URL` / `AWS_ENDPOINT_URL_BEDROCK_RUNTIME`). The SDK's own retries are
//! off: the step's retry policy is the only one, so every request shows in the audit record and
//! no attempt silently becomes three.

use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_bedrockruntime::Client;
use aws_sdk_bedrockruntime::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_bedrockruntime::operation::RequestId;
use aws_sdk_bedrockruntime::operation::converse::{ConverseError, ConverseOutput};
use aws_sdk_bedrockruntime::types::{
    ContentBlock, ConversationRole, ConverseOutput as Output, InferenceConfiguration, Message, SpecificToolChoice,
    SystemContentBlock, Tool, ToolChoice, ToolConfiguration, ToolInputSchema, ToolSpecification,
};
use aws_smithy_types::retry::RetryConfig;
use aws_smithy_types::timeout::TimeoutConfig;
use aws_smithy_types::{Document, Number};
use baton_core::engine::{ErrorKind, StepError};
use baton_runtime::ports::ToolCall;
use baton_tools::{ChatModel, ChatRequest, Completion, Role, TokenUsage};
use serde_json::Value;
use tokio::sync::OnceCell;

/// Name of the forced tool whose input is the answer.
const ANSWER_TOOL: &str = "answer";
/// Per-request limit when the step sets no `timeout` (as the OpenAI provider).
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(120);

/// Amazon Bedrock through the Converse API.
pub struct BedrockChat {
    client: OnceCell<Client>,
}

impl BedrockChat {
    /// A provider whose client is built from `config` now.
    pub fn new(config: &aws_config::SdkConfig) -> Self {
        Self { client: OnceCell::new_with(Some(client(config))) }
    }

    /// A provider that loads the SDK's default configuration on its first request only, so a
    /// process that never runs a Bedrock step never pays for loading AWS configuration.
    pub fn lazy() -> Self {
        Self { client: OnceCell::new() }
    }

    async fn client(&self) -> &Client {
        self.client.get_or_init(|| async { client(&crate::config::from_env().await) }).await
    }
}

fn client(config: &aws_config::SdkConfig) -> Client {
    let conf = aws_sdk_bedrockruntime::config::Builder::from(config).retry_config(RetryConfig::disabled()).build();
    Client::from_conf(conf)
}

/// A JSON value as a Smithy document (the shape of a tool's input schema and input).
fn json_to_document(v: &Value) -> Document {
    match v {
        Value::Null => Document::Null,
        Value::Bool(b) => Document::Bool(*b),
        Value::Number(n) => Document::Number(if let Some(u) = n.as_u64() {
            Number::PosInt(u)
        } else if let Some(i) = n.as_i64() {
            Number::NegInt(i)
        } else {
            Number::Float(n.as_f64().unwrap_or(0.0))
        }),
        Value::String(s) => Document::String(s.clone()),
        Value::Array(a) => Document::Array(a.iter().map(json_to_document).collect()),
        Value::Object(m) => Document::Object(m.iter().map(|(k, x)| (k.clone(), json_to_document(x))).collect()),
    }
}

/// A Smithy document as a JSON value; a float JSON cannot hold (NaN, infinity) becomes `null`.
fn document_to_json(d: &Document) -> Value {
    match d {
        Document::Null => Value::Null,
        Document::Bool(b) => Value::Bool(*b),
        Document::Number(Number::PosInt(u)) => Value::from(*u),
        Document::Number(Number::NegInt(i)) => Value::from(*i),
        Document::Number(Number::Float(f)) => serde_json::Number::from_f64(*f).map_or(Value::Null, Value::Number),
        Document::String(s) => Value::String(s.clone()),
        Document::Array(a) => Value::Array(a.iter().map(document_to_json).collect()),
        Document::Object(m) => {
            // Smithy objects are hash maps: sort the keys so the answer text is stable.
            let mut entries: Vec<(&String, &Document)> = m.iter().collect();
            entries.sort_unstable_by_key(|(k, _)| *k);
            Value::Object(entries.into_iter().map(|(k, x)| (k.clone(), document_to_json(x))).collect())
        }
    }
}

/// A request that cannot be built (a bug or an impossible step argument): not retryable.
fn invalid(model: &str, what: impl std::fmt::Display) -> StepError {
    StepError::new(ErrorKind::Tool, format!("Bedrock request for model `{model}` cannot be built: {what}"))
}

/// The Converse messages of a conversation.
fn messages(req: &ChatRequest) -> Result<Vec<Message>, StepError> {
    req.turns
        .iter()
        .map(|t| {
            let role = match t.role {
                Role::User => ConversationRole::User,
                Role::Assistant => ConversationRole::Assistant,
            };
            // Bedrock rejects an empty text block; an empty (invalid) answer still has to be
            // shown to the model in the repair request.
            let text = if t.content.trim().is_empty() { "(no answer)".to_owned() } else { t.content.clone() };
            Message::builder().role(role).content(ContentBlock::Text(text)).build().map_err(|e| invalid(&req.model, e))
        })
        .collect()
}

/// The forced `answer` tool with the step's schema as its input schema.
fn tool_config(req: &ChatRequest) -> Result<ToolConfiguration, StepError> {
    let spec = ToolSpecification::builder()
        .name(ANSWER_TOOL)
        .description("Return the answer as the tool's input")
        .input_schema(ToolInputSchema::Json(json_to_document(&req.schema)))
        .build()
        .map_err(|e| invalid(&req.model, e))?;
    let choice = SpecificToolChoice::builder().name(ANSWER_TOOL).build().map_err(|e| invalid(&req.model, e))?;
    ToolConfiguration::builder()
        .tools(Tool::ToolSpec(spec))
        .tool_choice(ToolChoice::Tool(choice))
        .build()
        .map_err(|e| invalid(&req.model, e))
}

fn inference_config(req: &ChatRequest) -> Result<Option<InferenceConfiguration>, StepError> {
    if req.temperature.is_none() && req.max_tokens.is_none() {
        return Ok(None);
    }
    let mut b = InferenceConfiguration::builder();
    if let Some(t) = req.temperature {
        b = b.temperature(t as f32);
    }
    if let Some(m) = req.max_tokens {
        let m = i32::try_from(m).map_err(|_| invalid(&req.model, format!("max_tokens {m} is out of range")))?;
        b = b.max_tokens(m);
    }
    Ok(Some(b.build()))
}

/// The answer of a Converse response: the input of its first `toolUse` block as JSON text, or
/// (a model that ignored the tool) its text blocks.
fn answer_text(out: &ConverseOutput) -> String {
    let content = match out.output() {
        Some(Output::Message(m)) => m.content(),
        _ => &[],
    };
    content.iter().find_map(|b| b.as_tool_use().ok().map(|t| document_to_json(t.input()).to_string())).unwrap_or_else(
        || content.iter().filter_map(|b| b.as_text().ok()).map(String::as_str).collect::<Vec<_>>().join(""),
    )
}

fn tokens(n: i32) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

fn completion(model: &str, out: &ConverseOutput) -> Completion {
    let usage = out
        .usage()
        .map(|u| TokenUsage {
            input: tokens(u.input_tokens()),
            output: tokens(u.output_tokens()),
            total: tokens(u.total_tokens()),
        })
        .unwrap_or_default();
    Completion {
        text: answer_text(out),
        // As Bedrock spells it: `tool_use`, `end_turn`, `max_tokens` (which
        // `Completion::truncated` recognises), `content_filtered`, ...
        finish_reason: out.stop_reason().as_str().to_owned(),
        model: Some(model.to_owned()),
        usage,
        // Converse reports tokens, not cost.
        cost_usd: None,
    }
}

/// The error kind of a Bedrock service error, and the HTTP status for errors the SDK does not
/// model.
fn service_kind(err: &ConverseError, status: u16) -> ErrorKind {
    match err {
        // Bedrock sends no Retry-After: the step's backoff decides.
        ConverseError::ThrottlingException(_) => ErrorKind::Http429,
        // Bedrock sends ModelNotReady as a 429, but it is the model warming up (an imported
        // model scaling from zero), not the caller's rate: a server-side condition.
        ConverseError::ServiceUnavailableException(_)
        | ConverseError::InternalServerException(_)
        | ConverseError::ModelNotReadyException(_) => ErrorKind::Http5xx,
        // The model ran past Bedrock's processing limit: a timeout like our own deadline, so a
        // step's `retry.on: [timeout]` covers both, and it is retried by default.
        ConverseError::ModelTimeoutException(_) => ErrorKind::Timeout,
        // The request was valid and the model itself failed while processing it (a 424 from
        // Bedrock): not the caller's fault and often transient, so retryable as a server error
        // rather than a 4xx the default policy gives up on.
        ConverseError::ModelErrorException(_) => ErrorKind::Http5xx,
        ConverseError::ValidationException(_)
        | ConverseError::AccessDeniedException(_)
        | ConverseError::ResourceNotFoundException(_) => ErrorKind::Http4xx,
        // Codes this SDK version does not know: by status, as the `http` tool maps it; a service
        // error with a status that is not a failure is still the request's fault.
        _ => ErrorKind::from_http_status(status).unwrap_or(ErrorKind::Http4xx),
    }
}

/// An error and its sources, `: `-separated (without the SDK's debug dump).
fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut next = e.source();
    while let Some(s) = next {
        out.push_str(": ");
        out.push_str(&s.to_string());
        next = s.source();
    }
    out
}

/// A classified error naming the model and what Bedrock (or the SDK) said.
fn classify(model: &str, timeout: Duration, e: &SdkError<ConverseError>) -> StepError {
    let detail = || chain(e);
    match e {
        SdkError::ServiceError(ctx) => {
            let status = ctx.raw().status().as_u16();
            let err = ctx.err();
            let code = err.code().unwrap_or("unknown error");
            let said = err.message().unwrap_or("(no message)");
            let id = err.request_id().map(|id| format!(" (request id {id})")).unwrap_or_default();
            StepError::new(
                service_kind(err, status),
                format!("Bedrock model `{model}` answered {status} {code}: {said}{id}"),
            )
        }
        SdkError::TimeoutError(_) => StepError::new(
            ErrorKind::Timeout,
            format!("Bedrock model `{model}` did not answer within {} ms", timeout.as_millis()),
        ),
        SdkError::DispatchFailure(d) if d.is_timeout() => {
            StepError::new(ErrorKind::Timeout, format!("Bedrock request for model `{model}` timed out: {}", detail()))
        }
        // Connection failures, and also what fails before a byte is sent (credentials that cannot
        // be loaded, no region to resolve an endpoint): often transient (instance metadata,
        // STS), so retryable like a refused connection.
        SdkError::DispatchFailure(_) => StepError::new(
            ErrorKind::Connect,
            format!("Bedrock request for model `{model}` could not be sent: {}", detail()),
        ),
        // A response the SDK cannot read (truncated, not JSON): the service's fault.
        SdkError::ResponseError(_) => StepError::new(
            ErrorKind::Http5xx,
            format!("Bedrock model `{model}` sent a response that cannot be read: {}", detail()),
        ),
        _ => invalid(model, detail()),
    }
}

#[async_trait]
impl ChatModel for BedrockChat {
    fn name(&self) -> &'static str {
        "bedrock"
    }

    async fn complete(&self, call: &ToolCall, req: &ChatRequest) -> Result<Completion, StepError> {
        let client = self.client().await;
        let timeout = call.timeout_ms.map(Duration::from_millis).unwrap_or(DEFAULT_TIMEOUT);
        let timeouts = client
            .config()
            .timeout_config()
            .map(TimeoutConfig::to_builder)
            .unwrap_or_default()
            .operation_timeout(timeout)
            .build();
        let out = client
            .converse()
            .model_id(&req.model)
            .system(SystemContentBlock::Text(req.system.clone()))
            .set_messages(Some(messages(req)?))
            .tool_config(tool_config(req)?)
            .set_inference_config(inference_config(req)?)
            .customize()
            .config_override(aws_sdk_bedrockruntime::config::Builder::default().timeout_config(timeouts))
            .send()
            .await
            .map_err(|e| classify(&req.model, timeout, &e))?;
        Ok(completion(&req.model, &out))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use baton_tools::Turn;
    use serde_json::json;

    use super::*;

    #[test]
    fn json_and_documents_round_trip() {
        let v = json!({
            "s": "text", "t": true, "f": false, "n": null,
            "pos": 42, "zero": 0, "neg": -7, "big": u64::MAX, "min": i64::MIN, "float": 1.5, "negfloat": -0.25,
            "arr": [1, "two", [3.0], {"four": 4}], "empty": {}, "none": [],
        });
        let d = json_to_document(&v);
        let Document::Object(m) = &d else { panic!("an object: {d:?}") };
        assert_eq!(m["pos"], Document::Number(Number::PosInt(42)));
        assert_eq!(m["neg"], Document::Number(Number::NegInt(-7)));
        assert_eq!(m["min"], Document::Number(Number::NegInt(i64::MIN)));
        assert_eq!(m["big"], Document::Number(Number::PosInt(u64::MAX)));
        assert_eq!(m["float"], Document::Number(Number::Float(1.5)));
        assert_eq!(m["n"], Document::Null);
        assert_eq!(document_to_json(&d), v);
    }

    #[test]
    fn floats_json_cannot_hold_become_null() {
        assert_eq!(document_to_json(&Document::Number(Number::Float(f64::NAN))), Value::Null);
        assert_eq!(document_to_json(&Document::Number(Number::Float(f64::INFINITY))), Value::Null);
    }

    #[test]
    fn object_keys_come_out_sorted() {
        let d = Document::Object(HashMap::from([
            ("b".to_owned(), Document::Bool(true)),
            ("a".to_owned(), Document::Null),
            ("c".to_owned(), Document::String("x".into())),
        ]));
        assert_eq!(document_to_json(&d).to_string(), r#"{"a":null,"b":true,"c":"x"}"#);
    }

    fn request(max_tokens: Option<u64>, turns: Vec<Turn>) -> ChatRequest {
        ChatRequest {
            model: "m".into(),
            system: "s".into(),
            turns,
            schema: json!({"type": "object"}),
            temperature: None,
            max_tokens,
        }
    }

    #[test]
    fn inference_settings_are_sent_only_when_set_and_must_fit() {
        assert_eq!(inference_config(&request(None, vec![])).unwrap(), None);
        let c = inference_config(&request(Some(200), vec![])).unwrap().unwrap();
        assert_eq!((c.max_tokens(), c.temperature()), (Some(200), None));
        let err = inference_config(&request(Some(u64::MAX), vec![])).unwrap_err();
        assert_eq!(err.kind, ErrorKind::Tool);
    }

    #[test]
    fn an_empty_answer_is_still_a_valid_turn() {
        let turns =
            vec![Turn { role: Role::User, content: "hi".into() }, Turn { role: Role::Assistant, content: " ".into() }];
        let m = messages(&request(None, turns)).unwrap();
        assert_eq!(m[1].role(), &ConversationRole::Assistant);
        assert_eq!(m[1].content()[0].as_text().unwrap(), "(no answer)");
    }

    #[test]
    fn the_default_configuration_is_not_loaded_before_the_first_request() {
        assert!(!BedrockChat::lazy().client.initialized());
    }

    #[test]
    fn unmodelled_service_errors_are_classified_by_status() {
        let e = ConverseError::unhandled("x");
        assert_eq!(service_kind(&e, 429), ErrorKind::Http429);
        assert_eq!(service_kind(&e, 502), ErrorKind::Http5xx);
        assert_eq!(service_kind(&e, 403), ErrorKind::Http4xx);
        assert_eq!(service_kind(&e, 200), ErrorKind::Http4xx, "an error is never a success");
    }
}
