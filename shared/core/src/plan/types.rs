//! The compiled form of a workflow the engine executes: [`Plan`], its steps and their kinds, and
//! the language's fixed vocabularies (the `cache` fallback, bounds; error kinds are
//! [`ErrorKind`]s).

use std::collections::HashMap;

use serde_json::Value;

use crate::duration::Millis;
use crate::error_kind::ErrorKind;
use crate::expr::{Expr, Template};
use crate::model::{Jitter, LoopExhausted, Workflow};

/// The `fallback` value that serves a step's cached response instead of running a step.
pub const FALLBACK_CACHE: &str = "cache";

/// Upper bound on `max_concurrency` for `for_each`.
pub const MAX_CONCURRENCY_LIMIT: u32 = 1_000;

/// Index of a step in [`Plan::steps`].
pub type StepIx = usize;

/// A validated workflow, with expressions compiled and the DAG indexed.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The definition as written.
    pub workflow: Workflow,
    /// SHA-256 of the definition's canonical JSON; runs pin it.
    pub hash: String,
    /// Every step, top level and loop bodies, in definition order.
    pub steps: Vec<PlannedStep>,
    /// Step id -> index.
    pub index: HashMap<String, StepIx>,
    /// Run output expression.
    pub output: Option<Expr>,
    /// Completed step -> the step that undoes it.
    pub compensate: HashMap<StepIx, StepIx>,
    /// The loop steps (all top-level).
    pub loops: Vec<StepIx>,
    /// Named connections as `http` arguments (`url` is the base URL, `headers` include the
    /// auth header, `timeout`, `allow_private`), templated for `secret()` and the context.
    pub connections: HashMap<String, Template>,
    /// `workflow` steps with `continue_as_new: true`: the run hands its parent link to the
    /// run such a step starts.
    pub continues: std::collections::HashSet<StepIx>,
    /// The workflow's memory: the entity, what is loaded, the episode's summary.
    pub memory: Option<PlannedMemory>,
    /// The workflow's `deadline`: how long a run may take from its start.
    pub deadline: Option<Millis>,
    /// The workflow's `budget` on the run's model calls (tool calls and duration unset).
    pub budget: Option<Budget>,
    /// The workflow's `sensitive` paths, compiled.
    pub sensitive: Vec<SensitivePath>,
    pub(super) input_schema: Option<std::sync::Arc<jsonschema::Validator>>,
}

/// One of a workflow's `sensitive` paths: where the data starts, and the object keys below it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SensitivePath {
    /// The step whose output holds the data; `None` for the run input.
    pub step: Option<StepIx>,
    /// Object keys (or array indexes, as digits) from the input or the output down.
    pub keys: Vec<String>,
}

/// A workflow's `memory`, compiled.
#[derive(Debug, Clone)]
pub struct PlannedMemory {
    /// jq on `{input}` giving the entity id.
    pub entity: Expr,
    /// Load the entity's facts into `.memory.facts`.
    pub facts: bool,
    /// Load this many newest episodes into `.memory.episodes` (0: none).
    pub episodes: u32,
    /// jq on the ended run's context giving the episode summary.
    pub summary: Option<Expr>,
}

/// Where a step is scheduled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// The top-level DAG.
    Top,
    /// The body of the loop step with this index.
    Body(StepIx),
    /// Not scheduled by the DAG: runs only as a fallback or compensation.
    Role,
}

/// One compiled step.
#[derive(Debug, Clone)]
pub struct PlannedStep {
    /// Step id.
    pub id: String,
    /// Where it is scheduled.
    pub scope: Scope,
    /// What runs.
    pub kind: StepKind,
    /// Steps that must end first (same scope).
    pub needs: Vec<StepIx>,
    /// Condition; false skips.
    pub when: Option<Expr>,
    /// Retry policies, at least one: the step's one policy (one attempt when it sets none), or
    /// its list, of which the first covering a failure's kind applies.
    pub retry: Vec<RetryPolicy>,
    /// Per-attempt limit as the step sets it (also the limit given to the call itself); a
    /// template (a Step Functions `TimeoutSecondsPath`) is read when each attempt starts.
    pub timeout: Option<Limit>,
    /// Step run when attempts are exhausted (for `fallback: cache`, the step's cache look-up).
    pub fallback: Option<StepIx>,
    /// How long the step's last good response may be served (`cache.ttl`).
    pub cache: Option<Millis>,
    /// Dynamic fan-out: items expression and concurrency bound.
    pub for_each: Option<(Expr, u32)>,
    /// A templated `max_concurrency` of a `for_each` (a Step Functions `MaxConcurrencyPath`),
    /// read when the step starts; the bound above is then the largest.
    pub concurrency_from: Option<Template>,
    /// Distributed map: items read in batches from a source, one child run per batch.
    pub items_from: Option<ItemsFrom>,
    /// Escalation chain for human tasks: (after, to), sorted by `after`.
    pub escalate: Vec<(Millis, String)>,
    /// The answer a human task gets when its timeout passes unanswered.
    pub on_timeout: Option<crate::answer::HumanAnswer>,
    /// Steps that have ended before this one starts (transitive needs; for loop bodies also the
    /// loop's). Expressions that read `.steps` as a whole see only these.
    pub upstream: Vec<StepIx>,
}

/// What a step does.
#[derive(Debug, Clone)]
pub enum StepKind {
    /// A tool call with templated arguments (`http`, and tools later issues add).
    Tool {
        /// Tool name.
        tool: String,
        /// The `with` arguments.
        args: Template,
    },
    /// A jq expression over the context; evaluated while arguments are resolved.
    Transform {
        /// The `with.expr` expression.
        expr: Expr,
        /// Its evaluation budget, when `with.limits` sets one (else the defaults).
        budget: Option<crate::expr::Budget>,
    },
    /// A durable timer.
    Sleep {
        /// `with.for`.
        duration: Option<Millis>,
        /// `with.until`: a template giving an RFC 3339 time.
        until: Option<Template>,
        /// `with.for` as a template giving a duration, rendered when the sleep starts.
        for_template: Option<Template>,
    },
    /// A human task.
    Human {
        /// Queue (team or person).
        queue: Template,
        /// What is asked.
        prompt: Template,
        /// JSON Schema of the answer's `data`.
        form: Option<Value>,
        /// Whether the task carries the contextual handover summary (`summary: auto`, default).
        summary: bool,
    },
    /// A wait for an outside event.
    WaitEvent {
        /// EventBridge event pattern the event must match.
        pattern: Value,
        /// jq on the event giving its correlation key (`correlate.event`).
        event_key: Option<Expr>,
        /// jq on the run context giving the key the event must carry (`correlate.run`).
        run_key: Option<Expr>,
        /// Events that keep the wait alive, and how long it may go without one.
        heartbeat: Option<Heartbeat>,
    },
    /// A bounded tool-calling loop: each model turn is an `llm` call whose answer either calls
    /// tools (each call a child node of its own) or gives the final answer.
    Agent {
        /// `goal` and the `llm` fields every turn shares, templated.
        args: Template,
        /// The tools the model may call.
        tools: Vec<AgentTool>,
        /// Upper bound on model turns; the last turn must answer.
        max_turns: u32,
        /// JSON Schema of the final answer.
        output_schema: Value,
        /// What one attempt of the loop may spend.
        budget: Option<Budget>,
    },
    /// Serves the cached response of the step `of` (its `fallback: cache`).
    CacheLookup {
        /// The step whose response is served.
        of: StepIx,
    },
    /// A bounded loop over an inline body.
    Loop {
        /// Bound on iterations.
        max_iterations: u32,
        /// Stop condition.
        until: Option<Expr>,
        /// What happens at the bound.
        then: LoopExhausted,
        /// Queue for `then: escalate`.
        escalate_to: Option<String>,
        /// Body step indexes.
        body: Vec<StepIx>,
    },
}

/// A step's `items_from`, compiled.
#[derive(Debug, Clone)]
pub struct ItemsFrom {
    /// The source URI (a template).
    pub source: Template,
    /// The source's shape; `None` lets the reader tell it from the source's suffix.
    pub format: Option<crate::model::ItemFormat>,
    /// Items per child run.
    pub batch_size: u32,
    /// Batches that may run at once.
    pub max_concurrency: u32,
    /// Failed items tolerated before the step fails.
    pub tolerated_failures: Option<u64>,
    /// Failed items tolerated, as a percentage of all items.
    pub tolerated_failure_percent: Option<f64>,
    /// Where batch results and the manifest go (a template giving a prefix).
    pub results: Template,
}

impl PlannedStep {
    /// How many items (for_each) or batches (items_from) may run at once.
    pub fn fan_limit(&self) -> u32 {
        match (&self.for_each, &self.items_from) {
            (Some((_, n)), _) => *n,
            (None, Some(i)) => i.max_concurrency,
            (None, None) => 1,
        }
    }

    /// A step the engine adds (a cache look-up, an agent's tool): run only in a role, outside
    /// the DAG, with no fields of its own besides its policy.
    pub fn hidden(id: String, kind: StepKind, retry: RetryPolicy, timeout: Option<Millis>) -> Self {
        Self {
            id,
            scope: Scope::Role,
            kind,
            needs: vec![],
            when: None,
            retry: vec![retry],
            timeout: timeout.map(Limit::Fixed),
            concurrency_from: None,
            fallback: None,
            cache: None,
            for_each: None,
            items_from: None,
            escalate: vec![],
            on_timeout: None,
            upstream: vec![],
        }
    }
}

impl StepKind {
    /// The tool name as written in the DSL.
    pub fn tool_name(&self) -> &str {
        match self {
            StepKind::Tool { tool, .. } => tool,
            StepKind::Transform { .. } => "transform",
            StepKind::Sleep { .. } => "sleep",
            StepKind::Human { .. } => "human",
            StepKind::WaitEvent { .. } => "wait_event",
            StepKind::CacheLookup { .. } => "cache",
            StepKind::Agent { .. } => "agent",
            StepKind::Loop { .. } => "loop",
        }
    }
}

/// A tool of an `agent` step: what the model is told, and the hidden step that runs a call.
#[derive(Debug, Clone)]
pub struct AgentTool {
    /// The name the model calls it by.
    pub name: String,
    /// What it does, for the model.
    pub description: String,
    /// JSON Schema of its arguments (`.args` in the call's templates).
    pub parameters: Value,
    /// The step that runs a call: `<agent>.<name>`, a role step (not in the DAG).
    pub step: StepIx,
    /// Set when this entry offers every tool of an MCP server (filtered) instead of being one
    /// tool: the loop lists the server's tools before its first turn.
    pub offers: Option<McpOffer>,
    /// Set when a call needs a person's approval first.
    pub approval: Option<ApprovalGate>,
}

/// Limits on what one attempt of an agent may spend; `None` fields do not limit.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Budget {
    /// Prompt tokens over all turns.
    pub max_input_tokens: Option<u64>,
    /// Completion tokens over all turns.
    pub max_output_tokens: Option<u64>,
    /// Prompt and completion tokens together.
    pub max_tokens: Option<u64>,
    /// USD the provider reported (or the price table priced).
    pub max_usd: Option<f64>,
    /// Tool calls the model may ask for.
    pub max_tool_calls: Option<u32>,
    /// Wall time from the loop's start.
    pub max_duration: Option<Millis>,
}

/// An agent tool's approval gate: which calls wait for a person, and the task step they wait on.
#[derive(Debug, Clone)]
pub struct ApprovalGate {
    /// jq over `{args}` deciding whether a call needs approval; every call when absent.
    pub when: Option<Expr>,
    /// The id of the task step, `<agent>.<tool>.approval`.
    pub id: String,
    /// The task step (a hidden `human` step).
    pub step: StepIx,
}

/// Which tools of an MCP server an agent offers its model: all but `deny`, and only `allow`
/// when it is not empty.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct McpOffer {
    /// The server's name in `mcp_servers`.
    pub server: String,
    /// Tool names offered (all when empty).
    pub allow: Vec<String>,
    /// Tool names never offered.
    pub deny: Vec<String>,
}

impl McpOffer {
    /// True when the server's tool `name` is offered.
    pub fn offers(&self, name: &str) -> bool {
        (self.allow.is_empty() || self.allow.iter().any(|a| a == name)) && !self.deny.iter().any(|d| d == name)
    }
}

/// A `wait_event`'s heartbeat: events matching `pattern` (and the wait's correlation key) keep
/// the wait alive; `every` without one fails the attempt with `timeout`.
#[derive(Debug, Clone)]
pub struct Heartbeat {
    /// The longest the wait may go without a heartbeat.
    pub every: Limit,
    /// The heartbeat's EventBridge pattern.
    pub pattern: Value,
}

/// A limit as a definition sets it: a duration, or a template read when it applies (a Step
/// Functions `…SecondsPath`), giving a duration or a number of seconds.
#[derive(Debug, Clone)]
pub enum Limit {
    /// This long.
    Fixed(Millis),
    /// What the template gives.
    Template(Template),
}

/// A compiled retry policy.
#[derive(Debug, Clone, PartialEq)]
pub struct RetryPolicy {
    /// Attempts in all (>= 1).
    pub max_attempts: u32,
    /// True for exponential backoff.
    pub exponential: bool,
    /// What each exponential delay is multiplied by (>= 1).
    pub multiplier: f64,
    /// First delay.
    pub initial: Millis,
    /// Cap on the delay.
    pub max: Millis,
    /// Randomisation.
    pub jitter: Jitter,
    /// Retried error kinds (by default the transient ones).
    pub on: Vec<ErrorKind>,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 1,
            exponential: true,
            multiplier: 2.0,
            initial: Millis(1_000),
            max: Millis(60_000),
            jitter: Jitter::Full,
            on: ErrorKind::transient().collect(),
        }
    }
}

impl Plan {
    /// The step with this id.
    pub fn step(&self, id: &str) -> Option<&PlannedStep> {
        self.index.get(id).map(|&i| &self.steps[i])
    }

    /// Steps scheduled in `scope`, in definition order.
    pub fn steps_in(&self, scope: Scope) -> impl Iterator<Item = (StepIx, &PlannedStep)> {
        self.steps.iter().enumerate().filter(move |(_, s)| s.scope == scope)
    }

    /// Checks a run input against `input_schema`; each message names the field.
    pub fn check_input(&self, input: &Value) -> Result<(), Vec<String>> {
        let Some(v) = &self.input_schema else {
            return Ok(());
        };
        let errors: Vec<String> = v
            .iter_errors(input)
            .map(|e| {
                let at = e.instance_path().as_str().to_owned();
                if at.is_empty() { format!("input: {e}") } else { format!("input{at}: {e}") }
            })
            .collect();
        if errors.is_empty() { Ok(()) } else { Err(errors) }
    }

    /// Upper bound on the events a run of this plan can need before it ends, ignoring items
    /// (for_each fans are bounded separately by their arrays). Used by tests of termination.
    pub fn attempt_bound(&self) -> u64 {
        self.steps
            .iter()
            .map(|s| {
                let loops = match self.loop_of(s) {
                    Some(StepKind::Loop { max_iterations, .. }) => u64::from(*max_iterations),
                    _ => 1,
                };
                let attempts: u64 = s.retry.iter().map(|r| u64::from(r.max_attempts)).sum();
                attempts * loops * (2 + s.escalate.len() as u64)
            })
            .sum::<u64>()
            + 4
    }

    fn loop_of(&self, s: &PlannedStep) -> Option<&StepKind> {
        match s.scope {
            Scope::Body(l) => Some(&self.steps[l].kind),
            _ => None,
        }
    }
}

/// Checks `value` against a JSON Schema; each message names the path.
pub fn check_against_schema(schema: &Value, value: &Value) -> Result<(), Vec<String>> {
    let v = jsonschema::validator_for(schema).map_err(|e| vec![format!("invalid schema: {e}")])?;
    let errors: Vec<String> = v
        .iter_errors(value)
        .map(|e| {
            let at = e.instance_path().as_str().to_owned();
            if at.is_empty() { e.to_string() } else { format!("{at}: {e}") }
        })
        .collect();
    if errors.is_empty() { Ok(()) } else { Err(errors) }
}
