//! Built-in tools and the registry the coordinator looks them up in.

pub(crate) mod cache;
mod http;
mod limits;
mod llm;
mod net_guard;
mod sigv4;
mod transform;

use std::collections::HashMap;
use std::sync::Arc;

pub use cache::CacheTool;
pub use http::HttpTool;
pub use llm::{ChatModel, ChatRequest, Completion, DEFAULT_MAX_REPAIRS, LlmTool, OpenAiChat, Role, TokenUsage, Turn};
pub use transform::TransformTool;

use crate::ports::Tool;

/// Tools by name.
#[derive(Clone, Default)]
pub struct ToolRegistry {
    tools: HashMap<String, Arc<dyn Tool>>,
}

impl ToolRegistry {
    /// The built-in tools: `transform`, `http` and `llm` (its provider from `OPENAI_BASE_URL` and
    /// `OPENAI_API_KEY`). (`sleep` and `human` are engine timers and tasks.)
    pub fn builtin() -> Self {
        Self::builtin_with(HttpTool::new(), LlmTool::from_env())
    }

    /// The built-in tools with `http` and `llm` configured by the deployment (secret sources,
    /// more providers), so each client is built once.
    pub fn builtin_with(http: HttpTool, llm: LlmTool) -> Self {
        let mut r = Self::default();
        r.register("transform", Arc::new(TransformTool));
        r.register("http", Arc::new(http));
        r.register("llm", Arc::new(llm));
        r
    }

    /// Adds or replaces a tool.
    pub fn register(&mut self, name: &str, tool: Arc<dyn Tool>) {
        self.tools.insert(name.to_owned(), tool);
    }

    /// True when a tool of this name is registered.
    pub fn has(&self, name: &str) -> bool {
        self.tools.contains_key(name)
    }

    /// The tool with this name.
    pub fn get(&self, name: &str) -> Option<Arc<dyn Tool>> {
        self.tools.get(name).cloned()
    }
}
