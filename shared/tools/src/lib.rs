//! baton-tools: the tools that do I/O, behind the runtime's `Tool` port. `http` calls APIs (named
//! connections, the SSRF guard on every connection and redirect, SigV4 signing, per-connection
//! rate limits and circuit breakers); `llm` turns text into schema-valid JSON through a
//! [`ChatModel`] provider (any OpenAI-compatible server here; Bedrock in `baton-aws`).
//! `items` reads large sources (S3 or local; jsonl, csv, json arrays, object listings) in batches
//! for a map that never holds them whole. Secrets reach a tool only right before use and are scrubbed from what it returns.

pub mod aws;
pub mod aws_credentials;
mod http;
pub mod items;
mod limits;
mod llm;
mod mcp;
mod net_guard;
pub mod secrets;
mod sigv4;

use std::sync::Arc;

use baton_core::plan::tools::{AWS_TOOL, HTTP_TOOL, LLM_TOOL, MCP_TOOL};
use baton_runtime::tools::ToolRegistry;

pub use http::HttpTool;
pub use llm::{
    ChatModel, ChatRequest, Completion, DEFAULT_MAX_REPAIRS, LlmTool, OpenAiChat, Price, Prices, Role, TokenUsage, Turn,
};
pub use mcp::McpTool;

/// The built-in tools: `transform`, `http`, `aws`, `items`, `mcp` and `llm` (its provider from `OPENAI_BASE_URL` and
/// `OPENAI_API_KEY`). (`sleep`, `human` and `wait_event` are engine timers and tasks.)
pub fn builtin() -> ToolRegistry {
    builtin_with(HttpTool::new(), LlmTool::from_env())
}

/// The built-in tools with `http` and `llm` configured by the deployment (secret sources, more
/// providers), so each client is built once.
pub fn builtin_with(http: HttpTool, llm: LlmTool) -> ToolRegistry {
    let mut r = ToolRegistry::pure();
    r.register(HTTP_TOOL, Arc::new(http));
    r.register(LLM_TOOL, Arc::new(llm));
    let aws = aws::AwsTool::from_env();
    r.register(items::ITEMS_TOOL, Arc::new(items::ItemsTool::new(aws.clone())));
    r.register(AWS_TOOL, Arc::new(aws));
    r.register(MCP_TOOL, Arc::new(McpTool::new()));
    r
}
