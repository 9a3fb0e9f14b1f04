//! The tools a step can name, each described once: its `with` arguments (a typed struct), where
//! its calls run, which step fields apply to it, how its arguments are checked and compiled, and
//! what a call carries besides its rendered arguments. The validator, the engine and the hosts
//! that route calls all read this registry instead of keeping lists of tool names.

mod agent;
mod approval;
mod aws;
mod budget;
mod fields;
mod http;
pub(super) mod human;
mod llm;
mod mcp;
mod memory;
mod sleep;
mod spec;
mod transform;
mod wait_event;
mod workflow;

pub use agent::{AgentArgs, AgentHttpCall, AgentMcpTool, AgentMemory, AgentToolArgs};
pub use aws::{AwsArgs, is_action_name, is_service_id};
pub use http::{BreakerWindow, CallLimits, HttpArgs, HttpCall, RateWindow};
pub use human::HumanArgs;
pub use llm::{LlmArgs, LlmBudget, LlmCall};
pub use mcp::{McpArgs, McpCall, McpTransport};
pub use memory::{MemoryArgs, MemoryOp};
pub use sleep::SleepArgs;
pub use transform::TransformArgs;
pub use wait_event::{Correlate, WaitEventArgs};
pub use workflow::WorkflowArgs;

pub(crate) use mcp::check_servers as check_mcp_servers;
pub(crate) use spec::StepCx;
pub use spec::{CallEnv, CallError, Placement, ToolInput, ToolSpec};

/// The `http` tool's name.
pub const HTTP_TOOL: &str = http::NAME;

/// The `aws` tool's name.
pub const AWS_TOOL: &str = aws::NAME;
/// The `mcp` tool's name.
pub const MCP_TOOL: &str = mcp::NAME;

/// The `llm` tool's name.
pub const LLM_TOOL: &str = llm::NAME;

/// The tool an `agent` step's model turns are calls of.
pub const AGENT_TURN_TOOL: &str = llm::NAME;

static ALL: [ToolSpec; 11] = [
    transform::SPEC,
    http::SPEC,
    sleep::SPEC,
    human::SPEC,
    llm::SPEC,
    wait_event::SPEC,
    workflow::SPEC,
    memory::SPEC,
    agent::SPEC,
    aws::SPEC,
    mcp::SPEC,
];

/// Every tool, in the order messages list them.
pub fn all() -> &'static [ToolSpec] {
    &ALL
}

impl crate::plan::PlannedStep {
    /// The fixed limit on one attempt: the step's `timeout`, else its tool's default (armed as a
    /// timer; the call itself keeps its own default). `None` for a templated `timeout`, which
    /// the engine reads when the attempt starts (`engine::limits`).
    pub fn attempt_limit(&self) -> Option<crate::duration::Millis> {
        match &self.timeout {
            Some(crate::plan::Limit::Fixed(m)) => Some(*m),
            Some(crate::plan::Limit::Template(_)) => None,
            None => spec(self.kind.tool_name())?.default_timeout.map(crate::duration::Millis),
        }
    }
}

/// The tool called `name`.
pub fn spec(name: &str) -> Option<&'static ToolSpec> {
    ALL.iter().find(|t| t.name == name)
}

/// Every tool's name, for "unknown tool" messages and their "did you mean".
pub fn names() -> Vec<&'static str> {
    ALL.iter().map(|t| t.name).collect()
}

/// "`a`", "`a` and `b`", "`a`, `b` and `c`": the tools a step field applies to, for its message.
pub(super) fn listed(names: &[String]) -> String {
    match names {
        [] => String::new(),
        [one] => one.clone(),
        [init @ .., last] => format!("{} and {last}", init.join(", ")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::StepKind;
    use serde_json::Value;

    #[test]
    fn names_are_unique_and_found() {
        for t in all() {
            assert!(std::ptr::eq(spec(t.name).expect("found"), t), "{} is found as itself", t.name);
        }
        assert_eq!(names().len(), all().len());
    }

    #[test]
    fn only_http_llm_aws_and_mcp_run_on_workers_aws_and_mcp_sharing_the_http_queue() {
        for t in all() {
            let expected = match t.name {
                "http" => Placement::Worker { queue: "http" },
                "llm" => Placement::Worker { queue: "llm" },
                "aws" | "mcp" => Placement::Worker { queue: "http" },
                _ => Placement::Inline,
            };
            assert_eq!(t.placement, expected, "{}", t.name);
        }
    }

    #[test]
    fn defaults_are_arguments_and_the_schema_lists_every_argument() {
        for t in all() {
            let args = t.args();
            assert!(!args.is_empty(), "{} takes arguments", t.name);
            for d in t.defaults {
                assert!(args.contains(d), "default `{d}` of {} is an argument", t.name);
            }
            let schema = t.with_schema();
            let props = schema["properties"].as_object().expect("an object schema");
            let mut in_schema: Vec<&str> = props.keys().map(String::as_str).collect();
            let mut declared = args.to_vec();
            in_schema.sort_unstable();
            declared.sort_unstable();
            assert_eq!(in_schema, declared, "{}", t.name);
            assert_eq!(schema["additionalProperties"], Value::Bool(false), "{} rejects unknown fields", t.name);
        }
    }

    #[test]
    fn agent_steps_take_the_llm_settings() {
        let (llm, agent) = (spec("llm").expect("llm"), spec("agent").expect("agent"));
        for d in llm.defaults {
            assert!(agent.args().contains(d) && agent.defaults.contains(d), "{d}");
        }
    }

    #[test]
    fn every_tool_compiles_to_a_kind_named_after_it() {
        let with = |tool: &str| match tool {
            "transform" => "{expr: .input}",
            "http" => "{url: 'https://example.com'}",
            "sleep" => "{for: 1s}",
            "human" => "{queue: ops}",
            "llm" => "{prompt: hi, model: m, output_schema: {type: object}}",
            "wait_event" => "{pattern: {source: [shop]}}",
            "workflow" => "{name: child}",
            "memory" => "{op: read, entity: e}",
            "agent" => "{goal: hi, model: m, output_schema: {type: object}}",
            "aws" => "{service: dynamodb, action: GetItem, params: {TableName: t}}",
            "mcp" => "{server: s, tool: echo}",
            other => panic!("no sample for `{other}`"),
        };
        for t in all() {
            let yaml = format!(
                "name: w\nmcp_servers: {{s: {{command: x}}}}\nsteps:\n  - id: s\n    tool: {}\n    with: {}\n",
                t.name,
                with(t.name)
            );
            let plan = crate::plan::load_definition(None, &yaml).unwrap_or_else(|p| panic!("{}: {p:?}", t.name));
            let kind = &plan.steps[0].kind;
            assert_eq!(kind.tool_name(), t.name);
            if let StepKind::Tool { tool, .. } = kind {
                assert_eq!(tool, t.name);
            }
        }
    }

    #[test]
    fn lists_read_as_prose() {
        let s = |v: &[&str]| v.iter().map(|x| format!("`{x}`")).collect::<Vec<_>>();
        assert_eq!(listed(&s(&["a"])), "`a`");
        assert_eq!(listed(&s(&["a", "b"])), "`a` and `b`");
        assert_eq!(listed(&s(&["a", "b", "c"])), "`a`, `b` and `c`");
    }
}
