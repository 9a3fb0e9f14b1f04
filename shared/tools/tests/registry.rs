//! The executors here match the tool registry of baton-core: every tool it places on a worker
//! has an executor in the built-in registry, so a worker never receives a call it cannot make.

use baton_core::plan::tools::{Placement, all};

#[test]
fn every_worker_tool_of_the_core_registry_has_an_executor() {
    let registry = baton_tools::builtin();
    let workers: Vec<&str> =
        all().iter().filter(|t| matches!(t.placement, Placement::Worker { .. })).map(|t| t.name).collect();
    assert!(!workers.is_empty(), "the registry places some tools on workers");
    for name in workers {
        assert!(registry.has(name), "tool `{name}` runs on a worker but baton-tools has no executor for it");
    }
    assert!(registry.has("transform"), "inline transform runs in the coordinator from the same registry");
}
