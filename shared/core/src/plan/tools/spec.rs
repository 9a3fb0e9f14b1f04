//! What describes a tool: [`ToolSpec`], where its calls run, and what its compiler and its call
//! preparation are given. Below the registry and every tool file, so they share it without
//! importing each other.

use std::collections::HashMap;

use schemars::JsonSchema;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::fields::{fields_of, schema_of};
use crate::error_kind::ErrorKind;
use crate::expr::Template;
use crate::model::{Network, Step, Workflow};
use crate::plan::problems::Problems;
use crate::plan::types::{PlannedStep, Scope, StepIx, StepKind};

/// The per-attempt limit of a call that leaves the engine (http, aws, mcp, llm, an agent's
/// model turn) when the step sets no `timeout`: 15 minutes, the longest a Lambda worker can run,
/// so an attempt past it was lost, not slow.
pub const CALL_TIMEOUT_MS: u64 = 15 * 60 * 1000;

/// The per-attempt limit of a `workflow` step (its child run) when it sets no `timeout`: 30 days,
/// since a child may wait on people; the child is cancelled when it passes.
pub const CHILD_RUN_TIMEOUT_MS: u64 = 30 * 24 * 60 * 60 * 1000;

/// Where a tool's calls run, which is what a host routes them by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placement {
    /// In the engine or its coordinator: timers, tasks and waits, child runs, the memory store,
    /// pure transforms, an agent's loop.
    Inline,
    /// On a worker that takes calls from its own queue, so slow calls never hold up the
    /// coordinator (and slow model calls never hold up short API calls).
    Worker {
        /// The queue (and worker function) the calls go to.
        queue: &'static str,
    },
}

/// One tool: what a step's `tool:` names and everything the plan and engine need to know of it.
pub struct ToolSpec {
    /// The name a step's `tool:` gives.
    pub name: &'static str,
    /// Where the tool's calls run.
    pub placement: Placement,
    /// `with` fields a workflow's `defaults.<name>` may set (empty: the tool takes no defaults).
    pub defaults: &'static [&'static str],
    /// Whether `cache` (and so `fallback: cache`) applies: the tool's response can stand in for a
    /// later call.
    pub cache: bool,
    /// Whether `escalate` applies: the step waits on someone who can be replaced.
    pub escalate: bool,
    /// Whether `on_timeout` applies: a person's answer can be given by default.
    pub on_timeout: bool,
    /// The per-attempt limit a step of this tool gets when it sets no `timeout` (ms): a call
    /// whose message or worker is lost fails with `timeout` and is retried by policy, instead
    /// of leaving its run running forever. None for tools that wait on the outside world by
    /// design (human, wait_event, sleep) or never leave the engine (transform, memory).
    pub default_timeout: Option<u64>,
    pub(super) args: fn() -> &'static [&'static str],
    pub(super) with_schema: fn() -> Value,
    pub(super) compile: Compile,
    pub(super) prepare: Option<Prepare>,
}

/// Checks and compiles a step's `with`; see [`ToolSpec::compile`].
pub(super) type Compile = fn(&mut StepCx<'_>) -> Option<StepKind>;

/// Completes a call's rendered arguments; see [`ToolSpec::prepare`].
pub(super) type Prepare = fn(&mut Value, &CallEnv<'_>) -> Result<(), CallError>;

impl std::fmt::Debug for ToolSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ToolSpec")
            .field("name", &self.name)
            .field("placement", &self.placement)
            .field("args", &self.args())
            .finish_non_exhaustive()
    }
}

/// Building a tool's description: its argument struct `A` gives the `with` fields and schema,
/// and every step-field flag is off until a builder method turns it on.
impl ToolSpec {
    /// A tool whose calls run in the engine or its coordinator.
    pub(super) const fn inline<A: for<'de> Deserialize<'de> + JsonSchema>(
        name: &'static str,
        compile: Compile,
    ) -> Self {
        Self {
            name,
            placement: Placement::Inline,
            defaults: &[],
            cache: false,
            escalate: false,
            on_timeout: false,
            default_timeout: None,
            args: fields_of::<A>,
            with_schema: schema_of::<A>,
            compile,
            prepare: None,
        }
    }

    /// A tool whose calls go to the worker behind `queue`.
    pub(super) const fn worker<A: for<'de> Deserialize<'de> + JsonSchema>(
        name: &'static str,
        queue: &'static str,
        compile: Compile,
    ) -> Self {
        Self { placement: Placement::Worker { queue }, ..Self::inline::<A>(name, compile) }
    }

    /// The `with` fields a workflow's `defaults.<name>` may set.
    pub(super) const fn with_defaults(self, defaults: &'static [&'static str]) -> Self {
        Self { defaults, ..self }
    }

    /// `cache` applies.
    pub(super) const fn cached(self) -> Self {
        Self { cache: true, ..self }
    }

    /// `escalate` applies.
    pub(super) const fn escalates(self) -> Self {
        Self { escalate: true, ..self }
    }

    /// `on_timeout` applies.
    pub(super) const fn answers_on_timeout(self) -> Self {
        Self { on_timeout: true, ..self }
    }

    /// Steps of the tool that set no `timeout` get `ms` per attempt.
    pub(super) const fn times_out_after(self, ms: u64) -> Self {
        Self { default_timeout: Some(ms), ..self }
    }

    /// A call is completed by `prepare` before it is dispatched.
    pub(super) const fn prepared_by(self, prepare: Prepare) -> Self {
        Self { prepare: Some(prepare), ..self }
    }

    /// The `with` fields the tool takes, in the order its argument struct declares them.
    pub fn args(&self) -> &'static [&'static str] {
        (self.args)()
    }

    /// The JSON Schema of the tool's `with`, generated from its argument struct (for editors and
    /// documentation; definitions are checked field by field, with messages of their own).
    pub fn with_schema(&self) -> Value {
        (self.with_schema)()
    }

    /// Completes a call's rendered arguments with what the run adds (a connection, the network
    /// policy, the run's memory entity), before the call is dispatched and audited.
    pub fn prepare(&self, input: &mut Value, env: &CallEnv<'_>) -> Result<(), CallError> {
        self.prepare.map_or(Ok(()), |prepare| prepare(input, env))
    }

    /// Checks a step's `with` and compiles it, reporting every problem through `cx`.
    pub(crate) fn compile(&self, cx: &mut StepCx<'_>) -> Option<StepKind> {
        (self.compile)(cx)
    }
}

/// What a call's preparation may read of the run: the plan's network policy and connections,
/// the context the call's arguments were rendered in, and the run's memory.
#[derive(Debug, Clone, Copy)]
pub struct CallEnv<'a> {
    /// The workflow's `network` policy.
    pub network: Option<&'a Network>,
    /// Where the workflow's named secrets may be sent.
    pub secrets: &'a std::collections::BTreeMap<String, crate::model::SecretScope>,
    /// The plan's connections, as templated `http` arguments.
    pub connections: &'a HashMap<String, Template>,
    /// The expression context the call's arguments were rendered in.
    pub context: &'a Value,
    /// What the run loaded of its entity's memory (`.memory`).
    pub memory: Option<&'a Value>,
}

/// Why a call could not be prepared: an error kind as `retry.on` names them, and a message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct CallError {
    /// The error kind (`tool`, `expression`).
    pub kind: ErrorKind,
    /// What went wrong.
    pub message: String,
}

/// The resolved call a worker tool's executor receives, typed: the JSON a call is dispatched,
/// queued and stored with is this type serialized, so the executor reads it in one step.
pub trait ToolInput: Serialize + DeserializeOwned {
    /// The tool whose calls these are.
    const TOOL: &'static str;

    /// Reads a dispatched call's input. A bad one is a `tool` error whose message names the
    /// field (`invalid `http` call: `method`: invalid type: ...`).
    fn from_input(input: &Value) -> Result<Self, CallError> {
        read_as(Self::TOOL, input)
    }

    /// The input the call is dispatched with.
    fn to_input(&self) -> Value {
        // Plain structs of strings, numbers and JSON values always serialize.
        serde_json::to_value(self).unwrap_or(Value::Null)
    }
}

/// `input` as a `T`, or a `tool` error saying which field of a `tool` call is wrong.
pub(super) fn read_as<T: DeserializeOwned>(tool: &str, input: &Value) -> Result<T, CallError> {
    serde_path_to_error::deserialize(input).map_err(|e| {
        let path = e.path().to_string();
        let at = if path == "." { String::new() } else { format!("`{path}`: ") };
        CallError { kind: ErrorKind::Tool, message: format!("invalid `{tool}` call: {at}{}", e.inner()) }
    })
}

/// What a tool's compiler reads of the step and the workflow, where it reports, and what it
/// hands back to the builder besides the step's kind.
pub(crate) struct StepCx<'a> {
    /// The workflow being built.
    pub wf: &'a Workflow,
    /// The step as written.
    pub step: &'a Step,
    /// Where the step is scheduled.
    pub scope: Scope,
    /// The step's pointer, `/steps/<n>` (or within a loop body).
    pub ptr: &'a str,
    /// The pointer of its `with`.
    pub wptr: &'a str,
    /// Its `with` (an empty mapping when absent).
    pub with: &'a Value,
    /// Every step id, for names a tool's hidden steps take.
    pub ids: &'a HashMap<String, StepIx>,
    /// Where problems go.
    pub p: &'a mut Problems,
    /// Set when the step continues the run as a new one (`workflow` with `continue_as_new`).
    pub continues: bool,
    /// Hidden steps the step runs (an agent's tools), by their position in its `with`.
    pub hidden: Vec<(usize, PlannedStep)>,
}

impl<'a> StepCx<'a> {
    /// `with` as a mapping, when it is one.
    pub fn obj(&self) -> Option<&'a Map<String, Value>> {
        self.with.as_object()
    }

    /// The `with` field `name`.
    pub fn field(&self, name: &str) -> Option<&'a Value> {
        self.obj().and_then(|o| o.get(name))
    }

    /// The pointer of `with` field `name`.
    pub fn at(&self, name: &str) -> String {
        format!("{}/{name}", self.wptr)
    }

    /// The step's `with`, a mapping, as the arguments of a call of `tool` (templates compiled).
    pub fn call_of(&mut self, tool: &str) -> Option<StepKind> {
        let with = Value::Object(self.obj().cloned().unwrap_or_default());
        Some(StepKind::Tool { tool: tool.into(), args: self.p.template(self.wptr, &with)? })
    }

    /// Reports every `with` field not in `known`.
    pub fn unknown_args(&mut self, known: &[&str]) {
        let (obj, wptr) = (self.obj(), self.wptr);
        self.p.unknown_args(obj, wptr, known);
    }
}
