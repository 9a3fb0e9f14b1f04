//! `llm`: unstructured text in, schema-valid JSON out. The step's provider ([`ChatModel`]) is
//! chosen by `with.provider`: `openai` (any OpenAI-compatible server, [`OpenAiChat`]) or a
//! provider the deployment registers (`bedrock`, in baton-aws). Every answer is parsed and
//! validated; an invalid one is sent back with the validation errors, up to `max_repairs` times,
//! then the attempt fails with `llm_invalid_output`. Providers map rate limits and server errors
//! to `http_429` (with `Retry-After`) and `http_5xx`, so the step's retry policy applies.
//!
//! The step's output is the answer object itself; the prompt, every raw answer with its
//! validation result, the repairs, token usage and the provider's cost (when it reports one) go
//! to the audit record. Answer fields listed in `with.sensitive` are redacted there; credentials
//! never leave the request.

mod fit;
mod openai;
mod prices;

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use baton_core::engine::{ErrorKind, StepError};
use baton_core::plan::tools::{LlmBudget, LlmCall};
pub use openai::OpenAiChat;
pub use prices::{Price, Prices};
use serde_json::{Value, json};

use baton_runtime::ports::{Tool, ToolCall, ToolOutcome};

/// Repairs when `with.max_repairs` is not set.
pub const DEFAULT_MAX_REPAIRS: u64 = 2;
const DEFAULT_SYSTEM: &str = "You turn the user's text into exactly one JSON object that matches the JSON Schema below. \
Use only facts stated in the text. Answer with the JSON object alone, no prose, no code fences.";

/// Who speaks a turn of the conversation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// The step (the prompt, and repair requests).
    User,
    /// The model (its earlier, invalid answers).
    Assistant,
}

impl Role {
    /// `user` or `assistant`.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::User => "user",
            Role::Assistant => "assistant",
        }
    }
}

/// One turn of the conversation.
#[derive(Debug, Clone, PartialEq)]
pub struct Turn {
    /// Who.
    pub role: Role,
    /// What.
    pub content: String,
}

/// One request to a model: the conversation so far and the schema the answer must match.
#[derive(Debug, Clone)]
pub struct ChatRequest {
    /// Model id.
    pub model: String,
    /// System instruction, the schema included.
    pub system: String,
    /// The turns, oldest first.
    pub turns: Vec<Turn>,
    /// JSON Schema of the answer.
    pub schema: Value,
    /// Sampling temperature.
    pub temperature: Option<f64>,
    /// Output token limit.
    pub max_tokens: Option<u64>,
}

/// Tokens one request used.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TokenUsage {
    /// Prompt tokens.
    pub input: u64,
    /// Answer tokens.
    pub output: u64,
    /// Both.
    pub total: u64,
}

/// What a model answered.
#[derive(Debug, Clone, PartialEq)]
pub struct Completion {
    /// The answer text (JSON, if all went well).
    pub text: String,
    /// Why it stopped, in the provider's words (`stop`, `length`, `end_turn`, `tool_use`, ...).
    pub finish_reason: String,
    /// The model as the provider names it.
    pub model: Option<String>,
    /// Tokens used.
    pub usage: TokenUsage,
    /// The provider's cost figure, when it reports one.
    pub cost_usd: Option<f64>,
}

impl Completion {
    /// True when the answer was cut off at the token limit.
    pub fn truncated(&self) -> bool {
        matches!(self.finish_reason.as_str(), "length" | "max_tokens")
    }
}

/// A chat model behind some API.
#[async_trait]
pub trait ChatModel: Send + Sync {
    /// The provider's name as steps write it (`openai`, `bedrock`).
    fn name(&self) -> &'static str;
    /// One request; errors are classified (`http_429`, `http_5xx`, `http_4xx`, `timeout`,
    /// `connect`).
    async fn complete(&self, call: &ToolCall, req: &ChatRequest) -> Result<Completion, StepError>;
}

/// The `llm` tool with its providers.
pub struct LlmTool {
    providers: HashMap<&'static str, Arc<dyn ChatModel>>,
    /// The provider of steps that name none.
    default: &'static str,
    /// What calls cost when the provider does not say (or why the table could not be read).
    prices: Result<Prices, String>,
}

impl LlmTool {
    /// A tool with one provider, the default for steps that name none when it is `openai`.
    pub fn with(provider: Arc<dyn ChatModel>) -> Self {
        let mut providers = HashMap::new();
        providers.insert(provider.name(), provider);
        Self { providers, default: "openai", prices: Prices::from_env() }
    }

    /// Makes `provider` the one of steps that name none (a deployment's `BATON_MODEL_PROVIDER`;
    /// `openai` otherwise).
    pub fn default_provider(mut self, provider: &str) -> Self {
        if let Some((name, _)) = self.providers.get_key_value(provider) {
            self.default = name;
        }
        self
    }

    /// The OpenAI-compatible provider at `base_url` (ending in `/v1`), with an optional API key.
    pub fn new(base_url: &str, api_key: Option<String>) -> Self {
        Self::with(Arc::new(OpenAiChat::new(base_url, api_key)))
    }

    /// The OpenAI-compatible provider the environment configures (`OPENAI_BASE_URL`,
    /// `OPENAI_API_KEY`).
    pub fn from_env() -> Self {
        Self::from_env_with_key(None)
    }

    /// Like [`LlmTool::from_env`], with the API key `key` before `OPENAI_API_KEY`.
    pub fn from_env_with_key(key: Option<String>) -> Self {
        Self::with(Arc::new(OpenAiChat::from_env_with_key(key)))
    }

    /// The same tool pricing calls by `prices` instead of the default table and `BATON_PRICES`.
    pub fn with_prices(mut self, prices: Prices) -> Self {
        self.prices = Ok(prices);
        self
    }

    /// Adds (or replaces) a provider.
    pub fn and(mut self, provider: Arc<dyn ChatModel>) -> Self {
        self.providers.insert(provider.name(), provider);
        self
    }
}

impl LlmTool {
    /// The first limit of `b` the call's requests so far are over, in words (USD: the
    /// provider's figure, else the price table's).
    fn over_budget(
        &self,
        b: &LlmBudget,
        u: &TokenUsage,
        cost: Option<f64>,
        answered: &str,
        asked: &str,
    ) -> Option<String> {
        let over = |limit: Option<u64>, v: u64| limit.filter(|l| v > *l);
        if let Some(l) = over(b.max_input_tokens, u.input) {
            return Some(format!("{} input tokens > max_input_tokens {l}", u.input));
        }
        if let Some(l) = over(b.max_output_tokens, u.output) {
            return Some(format!("{} output tokens > max_output_tokens {l}", u.output));
        }
        if let Some(l) = over(b.max_tokens, u.input + u.output) {
            return Some(format!("{} tokens > max_tokens {l}", u.input + u.output));
        }
        let usd = cost.or_else(|| self.prices.as_ref().ok()?.cost(&[answered, asked], u.input, u.output));
        match (b.max_usd, usd) {
            (Some(l), Some(x)) if x > l => Some(format!("{x} USD > max_usd {l}")),
            _ => None,
        }
    }
}

/// The step's arguments, already resolved.
struct Args {
    provider: String,
    prompt: String,
    schema: Value,
    model: String,
    system: String,
    temperature: Option<f64>,
    max_tokens: Option<u64>,
    max_repairs: u64,
    /// The schema sent to the model: the step's, with unbounded strings capped.
    sent_schema: Value,
    sensitive: Vec<String>,
    budget: Option<LlmBudget>,
}

/// What a call's settings come to: the tool's defaults where the call gives none, the
/// schema in the system prompt.
fn args(call: LlmCall, default_provider: &str) -> Args {
    let cap = call.max_string_length.unwrap_or(fit::DEFAULT_MAX_STRING_LENGTH);
    let sent_schema = fit::capped_schema(&call.output_schema, cap);
    let schema_text = serde_json::to_string_pretty(&sent_schema).unwrap_or_default();
    let system = format!("{}\n\nJSON Schema:\n{schema_text}", call.system.as_deref().unwrap_or(DEFAULT_SYSTEM));
    Args {
        provider: call.provider.unwrap_or_else(|| default_provider.to_owned()),
        prompt: call.prompt,
        schema: call.output_schema,
        model: call.model,
        system,
        temperature: call.temperature,
        max_tokens: call.max_tokens,
        max_repairs: call.max_repairs.unwrap_or(DEFAULT_MAX_REPAIRS),
        sent_schema,
        sensitive: call.sensitive.unwrap_or_default(),
        budget: call.budget,
    }
}

/// Replaces the values of `keys`, at any depth, with a marker.
fn redact(v: &Value, keys: &[String]) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .map(|(k, x)| {
                    let x = if keys.contains(k) { Value::String("[redacted]".into()) } else { redact(x, keys) };
                    (k.clone(), x)
                })
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.iter().map(|x| redact(x, keys)).collect()),
        other => other.clone(),
    }
}

/// Parses an answer; tolerates a code fence around the JSON (models without enforced output).
fn parse_answer(raw: &str) -> Result<Value, String> {
    let t = raw.trim();
    let t = t.strip_prefix("```json").or_else(|| t.strip_prefix("```")).unwrap_or(t);
    let t = t.strip_suffix("```").unwrap_or(t).trim();
    serde_json::from_str(t).map_err(|e| format!("the answer is not JSON: {e}"))
}

#[async_trait]
impl Tool for LlmTool {
    async fn call(&self, call: &ToolCall) -> Result<Value, StepError> {
        self.run(call).await.result
    }

    async fn run(&self, call: &ToolCall) -> ToolOutcome {
        let fail = |e: StepError| ToolOutcome { result: Err(e), report: None };
        let a = match call.input_as::<LlmCall>() {
            Ok(c) => args(c, self.default),
            Err(e) => return fail(e),
        };
        if let Err(e) = &self.prices {
            return fail(StepError::new(ErrorKind::Tool, format!("cannot price model calls: {e}")));
        }
        let Some(provider) = self.providers.get(a.provider.as_str()).cloned() else {
            let mut known: Vec<&str> = self.providers.keys().copied().collect();
            known.sort_unstable();
            return fail(StepError::new(
                ErrorKind::Tool,
                format!("provider `{}` is not configured here (configured: {})", a.provider, known.join(", ")),
            ));
        };
        let validator = match jsonschema::validator_for(&a.schema) {
            Ok(v) => v,
            Err(e) => {
                return fail(StepError::new(
                    ErrorKind::Tool,
                    format!("`output_schema` is not a valid JSON Schema: {e}"),
                ));
            }
        };
        let mut req = ChatRequest {
            model: a.model.clone(),
            system: a.system.clone(),
            turns: vec![Turn { role: Role::User, content: a.prompt.clone() }],
            schema: a.sent_schema.clone(),
            temperature: a.temperature,
            max_tokens: a.max_tokens,
        };
        let (mut usage, mut cost) = (TokenUsage::default(), None::<f64>);
        let mut answers: Vec<Value> = Vec::new();
        let mut model = a.model.clone();
        let mut requests = 0u64;
        let mut trimmed: Option<Value> = None;
        let outcome = loop {
            requests += 1;
            let c = match provider.complete(call, &req).await {
                Ok(c) => c,
                // One retry trimmed to fit: the repair history dropped, and the prompt cut by
                // what the server says overflowed.
                Err(e) if fit::is_context_overflow(&e) && trimmed.is_none() => {
                    let fraction = fit::keep_fraction(&e.message);
                    let before = req.turns.iter().map(|t| t.content.chars().count()).sum::<usize>();
                    let prompt =
                        if req.turns.len() > 1 { a.prompt.clone() } else { fit::trim_prompt(&a.prompt, fraction) };
                    req.turns = vec![Turn { role: Role::User, content: prompt }];
                    let after = req.turns[0].content.chars().count();
                    trimmed = Some(json!({"error": e.message, "chars_before": before, "chars_after": after}));
                    continue;
                }
                Err(e) if fit::is_context_overflow(&e) => {
                    break Err(StepError::new(
                        ErrorKind::LlmContextExceeded,
                        format!("the request does not fit the model's context, even trimmed: {}", e.message),
                    ));
                }
                Err(e) => break Err(e),
            };
            usage.input += c.usage.input;
            usage.output += c.usage.output;
            usage.total += c.usage.total;
            if let Some(x) = c.cost_usd {
                cost = Some(cost.unwrap_or(0.0) + x);
            }
            if let Some(m) = &c.model {
                model = m.clone();
            }
            if let Some(over) = a.budget.as_ref().and_then(|b| self.over_budget(b, &usage, cost, &model, &a.model)) {
                break Err(StepError::new(
                    ErrorKind::BudgetExceeded,
                    format!("over budget after {requests} request(s): {over}"),
                ));
            }
            let parsed = parse_answer(&c.text);
            let checked = parsed.clone().and_then(|v| {
                let errors: Vec<String> = validator
                    .iter_errors(&v)
                    .map(|e| {
                        let at = e.instance_path().to_string();
                        format!("{}: {e}", if at.is_empty() { "/".to_owned() } else { at })
                    })
                    .collect();
                if errors.is_empty() { Ok(v) } else { Err(errors.join("; ")) }
            });
            let checked = match checked {
                Err(e) if c.truncated() => Err(format!("{e} (the answer was cut off at max_tokens)")),
                other => other,
            };
            let shown = parsed.map(|v| redact(&v, &a.sensitive)).unwrap_or_else(|_| Value::String(c.text.clone()));
            answers.push(json!({
                "raw": shown, "valid": checked.is_ok(), "errors": checked.as_ref().err(), "finish_reason": c.finish_reason,
            }));
            match checked {
                Ok(v) => break Ok(v),
                Err(errors) if (answers.len() as u64) <= a.max_repairs => {
                    // The prompt and the last answer only, quoted short: a model that looped
                    // inside a string must not get its whole answer back each round.
                    // (Roles alternate, as some providers require.)
                    req.turns.truncate(1);
                    req.turns
                        .push(Turn { role: Role::Assistant, content: fit::quote(&c.text, fit::REPAIR_QUOTE_CHARS) });
                    req.turns.push(Turn { role: Role::User, content: fit::repair_request(&errors) });
                }
                Err(errors) => {
                    break Err(StepError::new(
                        ErrorKind::LlmInvalidOutput,
                        format!("no valid answer after {} repair(s): {errors}", a.max_repairs),
                    ));
                }
            }
        };
        // The provider's own figure when it gives one, else the price table's.
        let (cost, cost_source) = match cost {
            Some(c) => (Some(c), Some("provider")),
            None => {
                let table = self.prices.as_ref().ok();
                let priced = table.and_then(|p| p.cost(&[model.as_str(), a.model.as_str()], usage.input, usage.output));
                (priced, priced.map(|_| "price_table"))
            }
        };
        let report = json!({
            "cost_source": cost_source,
            "provider": provider.name(),
            "model": model,
            "system": a.system,
            "prompt": a.prompt,
            "requests": requests,
            "repairs": answers.len().saturating_sub(1),
            "answers": answers,
            "trimmed": trimmed,
            "usage": {"prompt_tokens": usage.input, "completion_tokens": usage.output, "total_tokens": usage.total},
            "cost_usd": cost,
        });
        ToolOutcome { result: outcome, report: Some(report) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_parse_with_or_without_code_fences() {
        assert_eq!(parse_answer(" {\"a\": 1} ").unwrap(), json!({"a": 1}));
        assert_eq!(parse_answer("```json\n{\"a\": 1}\n```").unwrap(), json!({"a": 1}));
        assert!(parse_answer("sure! {\"a\": 1}").is_err());
    }

    #[test]
    fn sensitive_fields_are_redacted_at_any_depth() {
        let v = json!({"iban": "DE00", "nested": [{"iban": "x", "ok": 1}], "name": "A"});
        let keys = vec!["iban".to_owned()];
        assert_eq!(
            redact(&v, &keys),
            json!({"iban": "[redacted]", "nested": [{"iban": "[redacted]", "ok": 1}], "name": "A"})
        );
    }
}
