//! The Lambda handlers, shared by the function binaries (`functions/*`) and `baton dev`, which
//! calls them with the same `aws_lambda_events` shapes: an SQS batch in, partial batch failures
//! out. Dead-lettered messages count as handled (they are on the DLQ with their reason).
//! Bodies that are claim-check references are resolved from the bucket first.

use std::sync::Arc;

use aws_lambda_events::event::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent};
use baton_core::plan::tools::LLM_TOOL;
use baton_runtime::Coordinator;
use baton_runtime::clock::SystemClock;
use baton_runtime::message_auth::MessageKey;
use baton_runtime::metering::Usage;
use baton_runtime::ports::{BatchReport, Inbound, RunStore};
use baton_runtime::tools::{ToolRegistry, TransformTool};
use baton_runtime::worker::Worker;

use crate::claim_check::ClaimCheck;
use crate::{DynamoStore, EventBridgeBus, SqsDispatcher};

/// The worker families whose queues take tool calls (queue `<stack>-<family>`, function
/// `functions/worker-<tool>`): those baton-core's tool registry places on a worker (`http`,
/// `llm`, apart so slow model calls never hold up short API calls). The others run inside the
/// coordinator or are the engine's own timers, tasks and waits.
pub fn worker_tools() -> Vec<&'static str> {
    let mut queues: Vec<&'static str> = baton_core::plan::tools::all()
        .iter()
        .filter_map(|t| match t.placement {
            baton_core::plan::tools::Placement::Worker { queue } => Some(queue),
            baton_core::plan::tools::Placement::Inline => None,
        })
        .collect();
    // Tools may share a worker (`aws` calls go to the `http` worker): one queue each.
    queues.sort_unstable();
    queues.dedup();
    queues
}

/// The run store of `stack`: table `<stack>-runs`, large payloads in `<stack>-payloads`, seals
/// also in `<stack>-audit-digests` (see [`crate::digest_witness`]).
pub fn store(config: &aws_config::SdkConfig, stack: &str) -> DynamoStore {
    DynamoStore::new(config, format!("{stack}-runs"))
        .with_claim_check(ClaimCheck::new(config, stack))
        .with_digest_witness(crate::digest_witness::DigestWitness::new(config, stack))
}

/// The coordinator of `stack`: runs in its table, lifecycle events on `<stack>-bus`, work
/// through the stack's queues and schedules. Only pure tools run inline.
pub fn coordinator(config: &aws_config::SdkConfig, stack: &str) -> Coordinator {
    coordinator_on(Arc::new(store(config, stack)), config, stack)
}

/// The coordinator of `stack` on a given store (tests point DynamoDB at another endpoint).
pub fn coordinator_on(store: Arc<dyn RunStore>, config: &aws_config::SdkConfig, stack: &str) -> Coordinator {
    coordinator_with(store, config, stack, None, None)
}

/// The coordinator of `stack` with the OpenAI-compatible provider's `key` for the handover
/// summaries its workflows' models write (`llm` steps themselves run in the `llm` worker: the
/// coordinator runs only inline tools). With a `message_key` it signs what it sends and
/// believes only signed step results.
pub fn coordinator_with(
    store: Arc<dyn RunStore>,
    config: &aws_config::SdkConfig,
    stack: &str,
    key: Option<String>,
    message_key: Option<Arc<MessageKey>>,
) -> Coordinator {
    let bus = EventBridgeBus::new(config, format!("{stack}-bus"));
    let mut tools = ToolRegistry::default();
    tools.register("transform", Arc::new(TransformTool));
    tools.register(LLM_TOOL, Arc::new(llm_tool(config, key)));
    // Distributed maps: the coordinator reads their sources and writes their results itself.
    tools.register(baton_core::engine::ITEMS_TOOL, Arc::new(items_tool(config)));
    let dispatcher = SqsDispatcher::new(config, stack, &worker_tools()).with_message_key(message_key.clone());
    let coordinator = Coordinator::new(store, tools, Arc::new(SystemClock))
        .with_bus(Arc::new(bus))
        .with_dispatcher(Arc::new(dispatcher));
    let coordinator = match message_key {
        Some(k) => coordinator.with_message_key(k),
        None => coordinator,
    };
    match answer_sources() {
        Some(sources) => coordinator.with_answer_sources(sources),
        None => coordinator,
    }
}

/// The `items` tool of a stack's coordinator: S3 at the configuration's endpoint (the
/// emulator's in tests and `baton dev`), signed with the credentials chain (the function's role
/// on Lambda).
fn items_tool(config: &aws_config::SdkConfig) -> baton_tools::items::ItemsTool {
    let mut aws = baton_tools::aws::AwsTool::from_env();
    if let Some(endpoint) = config.endpoint_url() {
        aws = aws.with_endpoint("s3", endpoint);
    }
    baton_tools::items::ItemsTool::new(aws).s3_only()
}

/// `BATON_TASK_ANSWER_SOURCES`: the comma-separated EventBridge sources whose
/// `HumanTaskResolved` events may answer tasks; unset or empty, any source may.
pub const ANSWER_SOURCES_ENV: &str = "BATON_TASK_ANSWER_SOURCES";

fn answer_sources() -> Option<Vec<String>> {
    let list: Vec<String> = std::env::var(ANSWER_SOURCES_ENV)
        .ok()?
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect();
    (!list.is_empty()).then_some(list)
}

/// The coordinator function: its coordinator and the claim check its messages may use.
pub struct CoordinatorFunction {
    coordinator: Arc<Coordinator>,
    claims: ClaimCheck,
}

impl CoordinatorFunction {
    /// The function of `stack`.
    pub fn new(config: &aws_config::SdkConfig, stack: &str) -> Self {
        Self::on(Arc::new(store(config, stack)), config, stack)
    }

    /// The function of `stack` as Lambda runs it: also emits CloudWatch metrics (EMF) on stdout,
    /// signed callback links on `HumanTaskCreated` events when `callbacks` is set, and sealed
    /// audit logs when `audit_key` is set.
    pub fn for_lambda(
        config: &aws_config::SdkConfig,
        stack: &str,
        callbacks: Option<baton_runtime::callback::CallbackSigner>,
        openai_key: Option<String>,
        audit_key: Option<baton_runtime::audit_key::AuditKey>,
        message_key: Option<Arc<MessageKey>>,
        inline: Option<baton_runtime::InlineCalls>,
    ) -> Self {
        let store = match audit_key {
            Some(key) => store(config, stack).with_audit_key(key),
            None => store(config, stack),
        };
        let mut coordinator = coordinator_with(Arc::new(store), config, stack, openai_key, message_key)
            .with_observer(Arc::new(crate::emf::EmfObserver));
        if let Some(signer) = callbacks {
            coordinator = coordinator.with_callbacks(Arc::new(signer));
        }
        if let Some(inline) = inline {
            coordinator = coordinator.with_inline_calls(inline);
        }
        Self { coordinator: Arc::new(coordinator), claims: ClaimCheck::new(config, stack) }
    }

    /// The function of `stack` on a given store.
    pub fn on(store: Arc<dyn RunStore>, config: &aws_config::SdkConfig, stack: &str) -> Self {
        Self::signed(store, config, stack, None, None)
    }

    /// The function of `stack` on a given store, signing and checking results with `message_key`,
    /// and running the `http` calls `inline` admits itself (see `baton_runtime::InlineCalls`).
    pub fn signed(
        store: Arc<dyn RunStore>,
        config: &aws_config::SdkConfig,
        stack: &str,
        message_key: Option<Arc<MessageKey>>,
        inline: Option<baton_runtime::InlineCalls>,
    ) -> Self {
        let coordinator = coordinator_with(store, config, stack, None, message_key);
        let coordinator = match inline {
            Some(inline) => coordinator.with_inline_calls(inline),
            None => coordinator,
        };
        Self { coordinator: Arc::new(coordinator), claims: ClaimCheck::new(config, stack) }
    }

    /// The coordinator it drives.
    pub fn coordinator(&self) -> &Arc<Coordinator> {
        &self.coordinator
    }

    /// Handles one SQS batch from `<stack>-coordinator`.
    pub async fn handle(&self, event: SqsEvent) -> SqsBatchResponse {
        self.handle_until(event, None).await
    }

    /// Handles one SQS batch inside an invocation that ends at `deadline_ms` (the Lambda
    /// context's deadline): inline calls run only in what is left of it.
    pub async fn handle_until(&self, event: SqsEvent, deadline_ms: Option<u64>) -> SqsBatchResponse {
        let (messages, mut failed) = inbound(&event, &self.claims).await;
        let mut report = self.coordinator.handle_batch_until(&messages, deadline_ms).await;
        report.failed.append(&mut failed);
        batch_response(&report)
    }
}

/// True on Lambda (the runtime sets `AWS_LAMBDA_RUNTIME_API`), where loopback is the Runtime
/// API, unless `BATON_ALLOW_LOOPBACK` says otherwise.
fn refuse_loopback() -> bool {
    std::env::var_os("AWS_LAMBDA_RUNTIME_API").is_some() && std::env::var_os("BATON_ALLOW_LOOPBACK").is_none()
}

/// The `http` tool of `stack`: `secret("NAME")` from Secrets Manager `<stack>/steps/NAME` (or SSM
/// `/<stack>/steps/...` for `ssm:/...`), cached five minutes per warm function.
fn http_tool(secrets: Arc<crate::secret_source::AwsSecrets>) -> baton_tools::HttpTool {
    let http = baton_tools::HttpTool::with_secrets(secrets);
    if refuse_loopback() { http.refusing_loopback() } else { http }
}

/// `BATON_INLINE_CALL_MS`: how long the coordinator function may run one `http` call itself
/// instead of sending it to the `http` worker (see `baton_runtime::InlineCalls`: at most
/// `MAX_INLINE_MS`); unset or 0, every call goes to its worker.
pub const INLINE_CALL_ENV: &str = "BATON_INLINE_CALL_MS";

/// The calls the coordinator of `stack` runs itself, as `BATON_INLINE_CALL_MS` sets them; an
/// unreadable value is an error that names the variable.
pub fn inline_calls_from_env(
    config: &aws_config::SdkConfig,
    stack: &str,
) -> Result<Option<baton_runtime::InlineCalls>, String> {
    let Ok(raw) = std::env::var(INLINE_CALL_ENV) else { return Ok(None) };
    let ms: u64 = match raw.trim() {
        "" => 0,
        v => v.parse().map_err(|_| format!("{INLINE_CALL_ENV}={raw:?} is not a whole number of milliseconds"))?,
    };
    Ok((ms > 0).then(|| inline_calls(config, stack, ms)))
}

/// The coordinator of `stack` running `http` calls of up to `max_ms` itself.
pub fn inline_calls(config: &aws_config::SdkConfig, stack: &str, max_ms: u64) -> baton_runtime::InlineCalls {
    let secrets = Arc::new(crate::secret_source::AwsSecrets::for_stack(config, stack));
    let mut tools = ToolRegistry::default();
    tools.register(baton_core::plan::tools::HTTP_TOOL, Arc::new(http_tool(secrets)));
    baton_runtime::InlineCalls::new(tools, max_ms)
}

/// The built-in tools as the workers of `stack` run them, with `http` and `mcp` reading step
/// secrets from the stack's Secrets Manager and SSM names.
fn aws_tools(config: &aws_config::SdkConfig, stack: &str, openai_key: Option<String>) -> ToolRegistry {
    let secrets = Arc::new(crate::secret_source::AwsSecrets::for_stack(config, stack));
    let refuse_loopback = refuse_loopback();
    let mut tools = baton_tools::builtin_with(http_tool(secrets.clone()), llm_tool(config, openai_key));
    // MCP servers get the same step secrets and the same loopback rule as `http`.
    let mcp = baton_tools::McpTool::with_secrets(secrets);
    let mcp = if refuse_loopback { mcp.refusing_loopback() } else { mcp };
    tools.register(baton_core::plan::tools::MCP_TOOL, Arc::new(mcp));
    tools
}

/// The OpenAI-compatible provider's key: `OPENAI_API_KEY`, else the Secrets Manager secret
/// `<stack>/openai-api-key` when the operator stored one (read once per cold start).
pub async fn openai_key(
    config: &aws_config::SdkConfig,
    stack: &str,
) -> Result<Option<String>, crate::secrets::SecretError> {
    match std::env::var("OPENAI_API_KEY") {
        Ok(k) if !k.is_empty() => Ok(Some(k)),
        _ => crate::secrets::optional_secret(config, &format!("{stack}/openai-api-key")).await,
    }
}

/// The `llm` tool with both providers: `openai` at `OPENAI_BASE_URL` (with `key`, else
/// `OPENAI_API_KEY`), and `bedrock` through the SDK configuration; `BATON_MODEL_PROVIDER` (the
/// stack's `ModelProvider`) picks the provider of steps that name none.
pub fn llm_tool(config: &aws_config::SdkConfig, key: Option<String>) -> baton_tools::LlmTool {
    let default = std::env::var("BATON_MODEL_PROVIDER").unwrap_or_default();
    baton_tools::LlmTool::from_env_with_key(key)
        .and(Arc::new(crate::bedrock::BedrockChat::new(config)))
        .default_provider(&default)
}

/// A worker function for one tool family.
pub struct WorkerFunction {
    worker: Arc<Worker>,
    claims: ClaimCheck,
    family: String,
}

impl WorkerFunction {
    /// The `family` worker of `stack` with the built-in tools (claims in its table).
    pub fn new(config: &aws_config::SdkConfig, stack: &str, family: &str) -> Self {
        Self::on(Arc::new(store(config, stack)), config, stack, family)
    }

    /// The `family` worker of `stack` with the built-in tools, signing its results with
    /// `message_key` (`baton dev`, whose coordinator shares the key).
    pub fn signed(config: &aws_config::SdkConfig, stack: &str, family: &str, message_key: Arc<MessageKey>) -> Self {
        Self::with_tools(
            Arc::new(store(config, stack)),
            config,
            stack,
            family,
            aws_tools(config, stack, None),
            Some(message_key),
        )
    }

    /// The `family` worker of `stack` on a given store.
    pub fn on(store: Arc<dyn RunStore>, config: &aws_config::SdkConfig, stack: &str, family: &str) -> Self {
        Self::with_tools(store, config, stack, family, aws_tools(config, stack, None), None)
    }

    /// The `family` worker of `stack` as Lambda runs it: the `llm` worker's OpenAI-compatible
    /// provider gets its key from `OPENAI_API_KEY`, else from the Secrets Manager secret
    /// `<stack>/openai-api-key` when the operator stored one (read once per cold start).
    pub async fn for_lambda(
        config: &aws_config::SdkConfig,
        stack: &str,
        family: &str,
    ) -> Result<Self, crate::message_signing::MessageSigningError> {
        let key = if family == "llm" { openai_key(config, stack).await? } else { None };
        let tools = aws_tools(config, stack, key);
        let message_key = crate::message_signing::message_key_from_env(config).await?;
        Ok(Self::with_tools(Arc::new(store(config, stack)), config, stack, family, tools, message_key))
    }

    /// The `family` worker of `stack` with the given tools, signing its results with
    /// `message_key` when there is one.
    pub fn with_tools(
        store: Arc<dyn RunStore>,
        config: &aws_config::SdkConfig,
        stack: &str,
        family: &str,
        tools: ToolRegistry,
        message_key: Option<Arc<MessageKey>>,
    ) -> Self {
        let dispatcher = SqsDispatcher::new(config, stack, &worker_tools()).with_message_key(message_key);
        let worker = Arc::new(Worker::new(store, tools, Arc::new(dispatcher), Arc::new(SystemClock)));
        Self { worker, claims: ClaimCheck::new(config, stack), family: family.to_owned() }
    }

    /// Its tool family (queue `<stack>-<family>`).
    pub fn family(&self) -> &str {
        &self.family
    }

    /// Handles one SQS batch from `<stack>-<family>`.
    pub async fn handle(&self, event: SqsEvent) -> SqsBatchResponse {
        self.handle_until(event, None).await
    }

    /// Handles one SQS batch inside an invocation that ends at `deadline_ms` (the Lambda
    /// context's deadline): no call runs past it (see `Worker::handle_batch_until`).
    pub async fn handle_until(&self, event: SqsEvent, deadline_ms: Option<u64>) -> SqsBatchResponse {
        let (messages, mut failed) = inbound(&event, &self.claims).await;
        let mut report = self.worker.handle_batch_until(&self.family, &messages, deadline_ms).await;
        report.failed.append(&mut failed);
        batch_response(&report)
    }
}

/// The records of an SQS event as handler input, claim-check references resolved; records whose
/// payload cannot be fetched now are returned as failures (redelivered, then the redrive policy's
/// DLQ).
pub async fn inbound(event: &SqsEvent, claims: &ClaimCheck) -> (Vec<Inbound>, Vec<String>) {
    let mut out = Vec::with_capacity(event.records.len());
    let mut failed = Vec::new();
    for (i, r) in event.records.iter().enumerate() {
        let id = r.message_id.clone().unwrap_or_default();
        let body = match claims.check_out(r.body.as_deref().unwrap_or_default()).await {
            Ok(b) => b,
            Err(e) => {
                tracing::warn!(message = %id, error = %e, "cannot fetch a claim-checked body; leaving it for redelivery");
                failed.push(id);
                continue;
            }
        };
        let signature = r
            .message_attributes
            .get(baton_runtime::message_auth::SIGNATURE_ATTRIBUTE)
            .and_then(|a| a.string_value.clone());
        out.push(Inbound {
            id,
            body,
            signature,
            receive_count: r.attributes.get("ApproximateReceiveCount").and_then(|c| c.parse().ok()).unwrap_or(1),
            // The event source mapping's receive and delete of the batch, and the invocation.
            usage: if i == 0 {
                Usage::from([
                    ("SQS.ReceiveMessage".to_owned(), 1),
                    ("SQS.DeleteMessageBatch".to_owned(), 1),
                    ("Lambda.Invoke".to_owned(), 1),
                ])
            } else {
                Usage::new()
            },
        });
    }
    (out, failed)
}

/// A report as Lambda's partial batch response.
pub fn batch_response(report: &BatchReport) -> SqsBatchResponse {
    let mut response = SqsBatchResponse::default();
    response.batch_item_failures = report
        .failed
        .iter()
        .map(|id| {
            let mut f = BatchItemFailure::default();
            f.item_identifier = id.clone();
            f
        })
        .collect();
    response
}

/// A client of a stack (the CLI): sends requests to its coordinator, the only writer of run
/// state on AWS, so a client needs no more than `sqs:SendMessage` on the coordinator queue
/// besides reading the table.
pub struct StackClient {
    dispatcher: SqsDispatcher,
}

impl StackClient {
    /// A client of `stack`.
    pub fn new(config: &aws_config::SdkConfig, stack: &str) -> Self {
        Self { dispatcher: SqsDispatcher::new(config, stack, &worker_tools()) }
    }

    /// Sends `message` to the coordinator queue (large ones through the claim check).
    pub async fn send(
        &self,
        message: &baton_runtime::messages::CoordinatorMessage,
    ) -> Result<(), baton_runtime::StoreError> {
        use baton_runtime::ports::Dispatcher;
        self.dispatcher.to_coordinator(&[baton_runtime::messages::body_of(message)]).await
    }
}

/// Logs (and traces, when OTLP is configured) for a Lambda function; see [`crate::telemetry`].
pub fn init_lambda_logging(service: &str) -> Result<crate::telemetry::Telemetry, crate::telemetry::TelemetryError> {
    crate::telemetry::init(service)
}
