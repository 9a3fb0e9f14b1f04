//! The workflow language as Rust types. Field names here are the DSL contract (docs/dsl.md);
//! `schema/workflow.schema.json` is generated from these types and kept in step by a test.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A workflow definition: a DAG of steps plus the run's input contract and output mapping.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "baton workflow")]
pub struct Workflow {
    /// Name of the workflow, used to publish and start it.
    pub name: String,
    /// Version of the definition, for humans; runs pin the definition by content hash.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<Value>,
    /// What the workflow does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// JSON Schema the run input must satisfy before a run is created.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_schema: Option<Value>,
    /// jq expression over the run context giving the run's output.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<String>,
    /// Events and schedules that start the workflow.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub triggers: Vec<Trigger>,
    /// The steps; steps without `needs` start at once, in parallel.
    pub steps: Vec<Step>,
    /// Saga: completed step id -> step id that undoes it when the run fails (newest first).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub compensate: BTreeMap<String, String>,
    /// Defaults for the workflow's steps by tool (a step's own `with` fields win).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub defaults: Option<Defaults>,
    /// What the workflow's `http` steps may connect to (the SSRF guard; on by default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<Network>,
    /// Where each named secret may be sent: the hosts or connections of the `http` calls that
    /// may carry it. A secret not listed may be sent wherever a step puts it.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub secrets: BTreeMap<String, SecretScope>,
    /// Named API connections of the mesh: `http` steps call them with `with.connection`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub connections: BTreeMap<String, Connection>,
    /// A shared mesh file (`connections:` only), relative to this file: its connections are
    /// added to the workflow's own (which win) when the file is loaded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mesh: Option<String>,
    /// Memory across runs: what the run remembers about its entity (`.memory`), and the
    /// episode it adds when it ends.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<MemorySpec>,
    /// MCP servers the workflow's `mcp` steps and agent tools call, by name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub mcp_servers: BTreeMap<String, McpServer>,
    /// The longest a run may take from its start, e.g. `7d`: past it the run stops and fails
    /// with error kind `timeout` (in-flight steps end, then compensation runs). None: no limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[0-9]+(ms|s|m|h|d)$"))]
    pub deadline: Option<String>,
    /// What the run's model calls (`llm` steps, agent turns) may spend in all; past it the run
    /// stops and fails with `budget_exceeded`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget: Option<SpendLimits>,
    /// Personal data the audit log must be able to forget: paths into the run input
    /// (`input.customer.email`) or a step's output (`steps.extract.output.iban`). Their values
    /// are sealed in the audit records (chained by a salted hash, stored apart) so `baton audit
    /// redact` can erase them later without breaking the chain.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sensitive: Vec<String>,
}

/// Limits on what model calls spend, as their providers report it: a run's `budget` (every
/// model call of the run) and an `llm` step's `with.budget` (its requests, repairs included).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SpendLimits {
    /// Prompt tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_input_tokens: Option<u64>,
    /// Completion tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_output_tokens: Option<u64>,
    /// Prompt and completion tokens together.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<u64>,
    /// USD the providers reported (or the price table priced).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_usd: Option<f64>,
}

/// Which entity a run is about, and what it loads and leaves in that entity's memory.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MemorySpec {
    /// jq on `{input}` giving the entity id (a string or number), e.g. `"customer-\(.input.customer_id)"`.
    pub entity: String,
    /// What the run sees as `.memory`: `facts`, `episodes` or both (the default).
    #[serde(default = "default_memory_load")]
    pub load: Vec<MemoryLayer>,
    /// How many of the newest episodes are loaded (default 10).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub episodes: Option<u32>,
    /// jq on the ended run's context giving the episode's summary (a string); a summary of the
    /// status, the steps and the output when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub summary: Option<String>,
}

fn default_memory_load() -> Vec<MemoryLayer> {
    vec![MemoryLayer::Facts, MemoryLayer::Episodes]
}

/// A layer of an entity's memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum MemoryLayer {
    /// Facts: the latest value per key, with source and time.
    Facts,
    /// Episodes: what earlier runs about the entity did.
    Episodes,
}

/// A named API: where it is, how to authenticate, and what every call to it carries.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Connection {
    /// `https://host/base`; a step's `with.path` is appended.
    pub base_url: String,
    /// Headers sent with every call (a step's own headers win).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
    /// How calls authenticate; values usually are `{{ secret("NAME") }}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth: Option<ConnectionAuth>,
    /// Per-call limit unless the step sets `with.timeout`, e.g. `10s`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[0-9]+(ms|s|m|h|d)$"))]
    pub timeout: Option<String>,
    /// Allow this API's private addresses (10/8, 172.16/12, 192.168/16, fc00::/7) through the
    /// network guard, for calls to it only.
    #[serde(default)]
    pub allow_private: bool,
    /// Largest response body accepted from this API, in bytes (default 10 MiB); a larger one
    /// fails the call with `response_too_large` as it streams in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_response_bytes: Option<u64>,
    /// At most `requests` calls per `per` from one worker; calls beyond it wait their turn.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<RateLimit>,
    /// After `failures` failed calls in a row, calls fail at once (`circuit_open`) for
    /// `cooldown`; then one call tries again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub circuit_breaker: Option<CircuitBreaker>,
}

/// An MCP server: a command the worker starts and talks to over stdio, or a Streamable HTTP
/// URL (exactly one of `command` and `url`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct McpServer {
    /// The program to start, e.g. `npx`; started once per worker and reused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<String>,
    /// Its arguments.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<String>,
    /// Environment variables it gets (values may be `{{ secret("NAME") }}`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
    /// The server's Streamable HTTP endpoint, `https://host/mcp`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// Headers sent with every HTTP request (values usually `{{ secret("NAME") }}`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
    /// Limit on one call unless the step sets `with.timeout` (default 30s), e.g. `10s`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[0-9]+(ms|s|m|h|d)$"))]
    pub timeout: Option<String>,
    /// Allow this server's private addresses through the network guard (HTTP servers only).
    #[serde(default)]
    pub allow_private: bool,
}

/// A connection's rate limit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RateLimit {
    /// Calls allowed per window (at least 1).
    pub requests: u32,
    /// The window, e.g. `1s`.
    #[schemars(regex(pattern = r"^[0-9]+(ms|s|m|h|d)$"))]
    pub per: String,
}

/// A connection's circuit breaker.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CircuitBreaker {
    /// Failed calls in a row (5xx, 429, timeouts, connection errors) that open the circuit.
    pub failures: u32,
    /// How long it stays open, e.g. `30s`.
    #[schemars(regex(pattern = r"^[0-9]+(ms|s|m|h|d)$"))]
    pub cooldown: String,
}

/// A connection's authentication: exactly one of the fields.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ConnectionAuth {
    /// A bearer token: `Authorization: Bearer <token>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bearer: Option<String>,
    /// An API key in a header.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_key: Option<ApiKey>,
    /// AWS Signature Version 4 with the worker's AWS credentials (API Gateway with IAM auth,
    /// Lambda function URLs, other AWS APIs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aws_sigv4: Option<AwsSigV4>,
}

/// What a SigV4 signature is for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AwsSigV4 {
    /// The signing name of the service, e.g. `execute-api`, `lambda`.
    pub service: String,
    /// The region, e.g. `eu-west-1`; the worker's `AWS_REGION` when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
}

/// An API key sent in a header.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ApiKey {
    /// Header name, e.g. `X-Api-Key`.
    pub header: String,
    /// The key, usually `{{ secret("NAME") }}`.
    pub value: String,
}

/// The SSRF guard's policy for `http` steps. Link-local and cloud metadata addresses
/// (169.254.0.0/16, fd00:ec2::254) are always refused.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Network {
    /// Allow private addresses (10/8, 172.16/12, 192.168/16, fc00::/7); refused by default.
    #[serde(default)]
    pub allow_private: bool,
    /// Refuse loopback addresses too (allowed by default, for local services).
    #[serde(default)]
    pub strict: bool,
    /// When not empty, only these hosts may be called: exact names, or `*.example.com`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allow_hosts: Vec<String>,
}

/// The calls a secret may go out with: any of these hosts, or any of these connections.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SecretScope {
    /// Host names (`api.example.com`, or `*.example.com` for its subdomains).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hosts: Vec<String>,
    /// Connections of the workflow.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub connections: Vec<String>,
}

/// Defaults a workflow sets for its steps.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Defaults {
    /// `with` fields for every `llm` and `agent` step: `provider`, `model`, `system`,
    /// `temperature`, `max_tokens`, `max_repairs`, `max_string_length`, `sensitive`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub llm: Option<serde_json::Map<String, Value>>,
    /// `with` fields for every `agent` step, over `llm`'s: the `llm` ones and `max_turns`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<serde_json::Map<String, Value>>,
}

/// What starts a run without a person: an EventBridge event pattern or a schedule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum Trigger {
    /// Start a run for every event matching this EventBridge event pattern.
    Event {
        /// EventBridge event pattern.
        event: Value,
    },
    /// Start a run on an EventBridge schedule expression (`rate(...)`, `cron(...)`, `at(...)`).
    Schedule {
        /// Schedule expression.
        schedule: String,
    },
}

/// One step of the workflow.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Step {
    /// Unique id; expressions read its result as `.steps.<id>`.
    pub id: String,
    /// Tool that runs the step: transform, http, sleep, human, llm, wait_event, workflow,
    /// memory, agent, aws. Not used with `loop`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool: Option<String>,
    /// Tool arguments; strings may contain `{{ jq }}` interpolation.
    #[serde(default, rename = "with", skip_serializing_if = "Option::is_none")]
    pub with: Option<Value>,
    /// Steps that must end before this one starts (fan-in).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub needs: Vec<String>,
    /// jq condition; false skips the step (and, transitively, steps needing it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub when: Option<String>,
    /// Retry policy for failed attempts: one policy, or a list of them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry: Option<Retries>,
    /// Limit per attempt (human steps: limit on the wait), e.g. `10s`, `8h`, or a template read
    /// when each attempt starts, giving a duration or a number of seconds. Steps that call out
    /// default to `15m` (`workflow`: `30d`); human, wait_event and sleep steps have no default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^([0-9]+(ms|s|m|h|d)|.*\{\{.*\}\}.*)$"))]
    pub timeout: Option<String>,
    /// Step id run instead when this step's attempts are exhausted; `cache` serves the step's
    /// last good response (kept by `cache`) instead.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fallback: Option<String>,
    /// Keep the last good response per request (the resolved arguments) for `fallback: cache`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache: Option<CacheSpec>,
    /// jq expression giving an array; the step runs once per item (`.item`, `.index`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub for_each: Option<String>,
    /// Items of `for_each`, or batches of `items_from`, that may run at once (required with
    /// either); with `for_each` also a template read when the step starts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_concurrency: Option<Concurrency>,
    /// A distributed map: the step (a `workflow` step) runs one child run per batch of items
    /// read from an S3 object or prefix, or a local file or directory, and writes the batches'
    /// results and a manifest under `results`; the run's state holds batch counts, not items.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub items_from: Option<ItemsFromSpec>,
    /// Bounded refinement loop with an inline body.
    #[serde(default, rename = "loop", skip_serializing_if = "Option::is_none")]
    pub loop_: Option<LoopSpec>,
    /// Reassign an open human task after a delay: one `{after, to}` or a list of them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub escalate: Option<Escalation>,
    /// The answer a human step gets when its `timeout` passes unanswered (instead of failing).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_timeout: Option<OnTimeout>,
}

/// `max_concurrency`: a number, or (with `for_each`) a template giving one when the step starts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum Concurrency {
    /// At most this many at once.
    Fixed(u32),
    /// A template (a Step Functions `MaxConcurrencyPath`), e.g. `"{{ .input.parallelism }}"`.
    Template(#[schemars(regex(pattern = r"^.*\{\{.*\}\}.*$"))] String),
}

/// Where a distributed map reads its items and writes its results.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ItemsFromSpec {
    /// `s3://bucket/key` (an object), `s3://bucket/prefix/` (one item per object), or a local
    /// file or directory; a template.
    pub source: String,
    /// `jsonl`, `csv` (with a header), `json` (one array) or `objects` (a prefix or directory);
    /// by default from the source's suffix.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<ItemFormat>,
    /// Items per child run (default 100).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch_size: Option<u32>,
    /// Failed items the step tolerates before it fails (default 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tolerated_failures: Option<u64>,
    /// Failed items, as a percentage of all items, the step tolerates before it fails.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tolerated_failure_percent: Option<f64>,
    /// `s3://bucket/prefix/` or a local directory: each batch's result and the manifest go
    /// under `<results><run id>/<step id>/`; a template.
    pub results: String,
}

/// The shape of an item source.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ItemFormat {
    /// One JSON value per line.
    Jsonl,
    /// Comma-separated values; the first record names the fields.
    Csv,
    /// One JSON array.
    Json,
    /// One item per object under a prefix (or file in a directory): its key and size.
    Objects,
}

impl ItemFormat {
    /// The name as written in the DSL.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Jsonl => "jsonl",
            Self::Csv => "csv",
            Self::Json => "json",
            Self::Objects => "objects",
        }
    }
}

/// How long a step's last good response may stand in for it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CacheSpec {
    /// How old a kept response may be when it is served, e.g. `1h`.
    #[schemars(regex(pattern = r"^[0-9]+(ms|s|m|h|d)$"))]
    pub ttl: String,
}

/// A default answer for a human task nobody answered in time.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct OnTimeout {
    /// `approve` or `reject`.
    pub decision: TimeoutDecision,
    /// The answer's data (checked against the task's `form` when approving).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<Value>,
    /// Why, for the audit log and the person who reads it later.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
}

/// The decision of a default answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum TimeoutDecision {
    /// Go ahead.
    Approve,
    /// Do not.
    Reject,
}

/// Retry policy: `max_attempts` counts every attempt, the first included.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Retry {
    /// Attempts in all, the first included (at least 1).
    pub max_attempts: u32,
    /// `fixed` or `exponential` (growing by `multiplier` from `initial` up to `max`).
    #[serde(default)]
    pub backoff: Backoff,
    /// What each delay of `exponential` backoff is multiplied by (at least 1; default 2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1.0))]
    pub multiplier: Option<f64>,
    /// First delay, e.g. `1s`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[0-9]+(ms|s|m|h|d)$"))]
    pub initial: Option<String>,
    /// Largest delay, e.g. `30s`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[0-9]+(ms|s|m|h|d)$"))]
    pub max: Option<String>,
    /// `none` or `full`; defaults to `full` for exponential and `none` for fixed backoff.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jitter: Option<Jitter>,
    /// Error kinds that are retried; defaults to http_5xx, http_429, timeout, connect.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on: Option<Vec<String>>,
}

/// A step's `retry`: one policy, or a list of policies (the States Language's retriers). With a
/// list, a failed attempt is retried by the first policy whose `on` covers its error kind, and
/// each policy counts its own attempts and its own backoff.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum Retries {
    /// One policy.
    One(Retry),
    /// Policies tried in order; each must name its kinds in `on`.
    List(Vec<Retry>),
}

impl Retries {
    /// The policies, in order.
    pub fn policies(&self) -> &[Retry] {
        match self {
            Self::One(r) => std::slice::from_ref(r),
            Self::List(l) => l,
        }
    }
}

impl From<Retry> for Retries {
    fn from(r: Retry) -> Self {
        Self::One(r)
    }
}

/// How the delay between attempts grows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Backoff {
    /// The same delay every time.
    Fixed,
    /// `initial * multiplier^(attempt-1)`, capped at `max`.
    #[default]
    Exponential,
}

/// Randomisation of the backoff delay.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Jitter {
    /// The computed delay exactly.
    None,
    /// A uniformly random delay between zero and the computed delay.
    Full,
}

/// A bounded loop: the body runs again until `until` is true or `max_iterations` is hit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LoopSpec {
    /// Upper bound on iterations (required).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_iterations: Option<u32>,
    /// jq condition evaluated after each iteration; `.iteration` (1-based) is in scope.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until: Option<String>,
    /// What happens when the bound is hit: fail, continue or escalate to a person.
    #[serde(default)]
    pub then: LoopExhausted,
    /// Who gets the task when the loop escalates.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub escalate: Option<LoopEscalation>,
    /// The body: steps run in every iteration.
    pub steps: Vec<Step>,
}

/// Outcome when a loop reaches `max_iterations` without `until` being true.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum LoopExhausted {
    /// The loop step fails with error kind `loop_exhausted`.
    #[default]
    Fail,
    /// The loop step succeeds with the last iteration's outputs.
    Continue,
    /// A human task decides: approve continues, reject fails the loop.
    Escalate,
}

/// The queue a loop escalates to.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LoopEscalation {
    /// Queue (team or person) that receives the task.
    pub to: String,
}

/// One escalation or a chain of them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum Escalation {
    /// A single escalation.
    One(EscalationLevel),
    /// A chain, in order of `after`.
    Chain(Vec<EscalationLevel>),
}

impl Escalation {
    /// The levels in the order they were written.
    pub fn levels(&self) -> &[EscalationLevel] {
        match self {
            Escalation::One(level) => std::slice::from_ref(level),
            Escalation::Chain(levels) => levels,
        }
    }
}

/// Reassign the open task to `to` once `after` has passed since it opened.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EscalationLevel {
    /// Delay since the task opened, e.g. `4h`.
    #[schemars(regex(pattern = r"^[0-9]+(ms|s|m|h|d)$"))]
    pub after: String,
    /// Queue (team or person) that receives the task.
    pub to: String,
}

/// The JSON Schema of the language, generated from the types above.
pub fn language_schema() -> Value {
    let schema = schemars::schema_for!(Workflow);
    let mut v = serde_json::to_value(schema).unwrap_or(Value::Null);
    drop_null_alternatives(&mut v);
    v
}

/// Optional fields may be left out, but `null` is not a useful value for any of them; dropping the
/// `null` alternative also lets a validator report mistakes inside an optional object precisely
/// instead of "not any of the allowed shapes".
fn drop_null_alternatives(v: &mut Value) {
    match v {
        Value::Object(map) => {
            // Integers of the model are u32: say so, so an overflow is reported at its field.
            if map.get("format").and_then(Value::as_str) == Some("uint32") {
                map.insert("maximum".into(), Value::from(u32::MAX));
            }
            if let Some(Value::Array(types)) = map.get_mut("type") {
                types.retain(|t| t != "null");
                if types.len() == 1 {
                    let only = types.remove(0);
                    map.insert("type".into(), only);
                }
            }
            if let Some(Value::Array(alts)) = map.get("anyOf")
                && alts.len() == 2
                && let Some(i) = alts.iter().position(|a| a.get("type").and_then(Value::as_str) == Some("null"))
            {
                let keep = alts[1 - i].clone();
                map.remove("anyOf");
                if let Value::Object(inner) = keep {
                    for (k, val) in inner {
                        map.entry(k).or_insert(val);
                    }
                }
            }
            map.values_mut().for_each(drop_null_alternatives);
        }
        Value::Array(items) => items.iter_mut().for_each(drop_null_alternatives),
        _ => {}
    }
}
