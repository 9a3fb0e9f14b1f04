//! Built-in tools and the registry the coordinator looks them up in.

mod http;
mod llm;
mod net_guard;
mod transform;

use std::collections::HashMap;
use std::sync::Arc;

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
        let mut r = Self::default();
        r.register("transform", Arc::new(TransformTool));
        r.register("http", Arc::new(HttpTool::new()));
        r.register("llm", Arc::new(LlmTool::from_env()));
        r
    }

    /// Adds or replaces a tool.
    pub fn register(&mut self, name: &str, tool: Arc<dyn Tool>) {
        self.tools.insert(name.to_owned(), tool);
    }

    /// The tool with this name.
    pub fn get(&self, name: &str) -> Option<Arc<dyn Tool>> {
        self.tools.get(name).cloned()
    }
}
