//! The registry the coordinator looks tools up in, and the tools that do no I/O of their own.
//! The tools that call the network (`http`, `llm`) are in `baton-tools`, whose `builtin()`
//! gives the full registry.

pub mod cache;
mod transform;

use std::collections::HashMap;
use std::sync::Arc;

pub use cache::CacheTool;
pub use transform::TransformTool;

use crate::ports::{Clock, RunStore, Tool};

/// What the tools that run inside the coordinator (`cache`, `memory`) reach: the run store, and
/// the clock that dates what they keep and judges its age.
#[derive(Clone)]
pub struct StoreAccess {
    /// The run store.
    pub store: Arc<dyn RunStore>,
    /// The coordinator's clock.
    pub clock: Arc<dyn Clock>,
}

/// Tools by name.
#[derive(Clone, Default)]
pub struct ToolRegistry {
    tools: HashMap<String, Arc<dyn Tool>>,
}

impl ToolRegistry {
    /// A registry with the tools that need no network: `transform`. (`sleep`, `human` and
    /// `wait_event` are engine timers and tasks; the coordinator adds `cache` itself.)
    pub fn pure() -> Self {
        let mut r = Self::default();
        r.register("transform", Arc::new(TransformTool));
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
