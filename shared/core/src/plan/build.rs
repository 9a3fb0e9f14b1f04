//! Turning a parsed definition into a [`Plan`], collecting every problem on the way.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use petgraph::graphmap::DiGraphMap;
use serde_json::Value;

use super::structure::{check_structure, did_you_mean};
use super::types::{
    AGENT_ARGS, AGENT_TOOL_FIELDS, AgentTool, DEFAULT_MAX_TURNS, FALLBACK_CACHE, KNOWN_TOOLS, LLM_ARGS,
    LLM_DEFAULTABLE, LLM_PROVIDERS, MAX_CONCURRENCY_LIMIT, MEMORY_ARGS, Plan, PlannedStep, RETRYABLE_KINDS,
    RetryPolicy, Scope, StepIx, StepKind, WORKFLOW_ARGS,
};
use crate::diagnostics::{Problem, locate};
use crate::duration::{Millis, parse_duration};
use crate::expr::{Expr, StepRefs, Template};
use crate::model::{Backoff, Jitter, LoopExhausted, Step, Workflow};
use crate::source::SourceDocument;

/// Parses, checks and compiles a definition. `file` is used in problem messages.
pub fn load_definition(file: Option<&str>, text: &str) -> Result<Plan, Vec<Problem>> {
    let doc = SourceDocument::parse(text).map_err(|e| syntax_problem(file, e))?;
    plan_document(file, &doc)
}

/// A document that does not parse, as a problem at the parser's position.
pub(super) fn syntax_problem(file: Option<&str>, e: crate::source::SyntaxError) -> Vec<Problem> {
    let mut p = Problem::at("", format!("syntax error: {}", strip_location(&e.message)));
    p.file = file.map(str::to_owned);
    p.position = e.position;
    vec![p]
}

/// Checks and compiles an already parsed document.
pub fn plan_document(file: Option<&str>, doc: &SourceDocument) -> Result<Plan, Vec<Problem>> {
    if doc.value.is_null() {
        let mut p = Problem::at("", "the file is empty: a workflow needs at least `name` and `steps`");
        p.file = file.map(str::to_owned);
        return Err(vec![p]);
    }
    let mut problems = check_structure(&doc.value);
    for (pointer, at) in &doc.duplicate_keys {
        let key = pointer.rsplit('/').next().unwrap_or_default().replace("~1", "/").replace("~0", "~");
        let mut p = Problem::at(
            pointer.clone(),
            format!("`{key}` is written twice in the same mapping; only the last one would count: remove one"),
        );
        // Point at the second occurrence, the one a reader misses.
        p.position = Some(*at);
        problems.push(p);
    }
    if !doc.duplicate_keys.is_empty() {
        locate(&mut problems, file, doc);
        return Err(problems);
    }
    if problems.is_empty() {
        match serde_json::from_value::<Workflow>(doc.value.clone()) {
            Ok(wf) => match Builder::new(&wf).build() {
                Ok(plan) => return Ok(plan),
                Err(ps) => problems = ps,
            },
            Err(e) => problems.push(Problem::at("", e.to_string())),
        }
    } else if let Some(wf) = without_unknown_fields(&doc.value, &problems) {
        // Unknown fields alone do not hide the other problems: check the rest as well.
        if let Err(more) = Builder::new(&wf).build() {
            problems.extend(more);
        }
    }
    locate(&mut problems, file, doc);
    Err(problems)
}

/// The parser repeats the line and column in its message; the problem already carries the first
/// one, and later ones read better as `line:column`.
fn strip_location(message: &str) -> String {
    let mut out = String::new();
    let mut rest = message;
    let mut first = true;
    while let Some(i) = rest.find(" at line ") {
        out.push_str(&rest[..i]);
        let tail = &rest[i + " at line ".len()..];
        let line_end = tail.find(|c: char| !c.is_ascii_digit()).unwrap_or(tail.len());
        let (line, after) = tail.split_at(line_end);
        let Some(col_tail) = after.strip_prefix(" column ") else {
            out.push_str(" at line ");
            rest = tail;
            continue;
        };
        let col_end = col_tail.find(|c: char| !c.is_ascii_digit()).unwrap_or(col_tail.len());
        if !first {
            out.push_str(&format!(" opened at {line}:{}", &col_tail[..col_end]));
        }
        first = false;
        rest = &col_tail[col_end..];
    }
    out.push_str(rest);
    out
}

/// The document with every unknown field removed, when that is the only structural problem.
fn without_unknown_fields(value: &Value, problems: &[Problem]) -> Option<Workflow> {
    let mut repaired = value.clone();
    for p in problems {
        if !p.message.starts_with("unknown field") {
            return None;
        }
        let (parent, key) = p.pointer.rsplit_once('/')?;
        repaired.pointer_mut(parent)?.as_object_mut()?.remove(&key.replace("~1", "/").replace("~0", "~"));
    }
    serde_json::from_value(repaired).ok()
}

/// `network.allow_hosts` entries are compared with URL hosts as text, so a scheme, port or path
/// would make an entry that never matches: the policy would silently refuse every call.
/// `defaults.llm` may set every `llm` field but the two that are the step's own work.
fn check_llm_defaults(wf: &Workflow, problems: &mut Vec<Problem>) {
    if let Some(defaults) = wf.defaults.as_ref().and_then(|d| d.llm.as_ref()) {
        for k in defaults.keys().filter(|k| !LLM_DEFAULTABLE.contains(&k.as_str())) {
            problems.push(Problem::at(
                format!("/defaults/llm/{k}"),
                format!("`{k}` cannot be a default of `llm` steps; known: {}", LLM_DEFAULTABLE.join(", ")),
            ));
        }
    }
    if let Some(defaults) = wf.defaults.as_ref().and_then(|d| d.agent.as_ref()) {
        let known: Vec<&str> = LLM_DEFAULTABLE.iter().copied().chain(["max_turns"]).collect();
        for k in defaults.keys().filter(|k| !known.contains(&k.as_str())) {
            problems.push(Problem::at(
                format!("/defaults/agent/{k}"),
                format!("`{k}` cannot be a default of `agent` steps; known: {}", known.join(", ")),
            ));
        }
    }
}

fn check_network(wf: &Workflow, problems: &mut Vec<Problem>) {
    fn host_name(h: &str) -> bool {
        h.len() <= 253
            && h.split('.').all(|l| {
                !l.is_empty()
                    && l.len() <= 63
                    && !l.starts_with('-')
                    && !l.ends_with('-')
                    && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            })
    }
    let Some(net) = &wf.network else { return };
    for (i, entry) in net.allow_hosts.iter().enumerate() {
        if !host_name(entry.strip_prefix("*.").unwrap_or(entry)) {
            problems.push(Problem::at(
                format!("/network/allow_hosts/{i}"),
                format!(
                    "`{entry}` is not a host name: write `api.example.com` or `*.example.com` (subdomains), \
                     without scheme, port or path"
                ),
            ));
        }
    }
}

struct Builder<'a> {
    wf: &'a Workflow,
    problems: Vec<Problem>,
    /// (step, pointer, scope) in definition order.
    flat: Vec<(&'a Step, String, Scope)>,
    index: HashMap<String, StepIx>,
    /// Hidden steps of agent tools, added after the DAG's steps: (agent step, tool, step).
    agent_tools: Vec<(StepIx, usize, PlannedStep)>,
    /// `workflow` steps with `continue_as_new: true`.
    continues: HashSet<StepIx>,
}

fn duration(problems: &mut Vec<Problem>, pointer: String, text: &str) -> Option<Millis> {
    match parse_duration(text) {
        Ok(ms) => Some(ms),
        Err(e) => {
            problems.push(Problem::at(pointer, e.to_string()));
            None
        }
    }
}

impl<'a> Builder<'a> {
    fn new(wf: &'a Workflow) -> Self {
        Self {
            wf,
            problems: Vec::new(),
            flat: Vec::new(),
            index: HashMap::new(),
            agent_tools: Vec::new(),
            continues: HashSet::new(),
        }
    }

    fn err(&mut self, pointer: impl Into<String>, message: impl Into<String>) {
        self.problems.push(Problem::at(pointer, message));
    }

    fn build(mut self) -> Result<Plan, Vec<Problem>> {
        let wf = self.wf;
        self.flatten();
        let role: HashSet<String> = self
            .flat
            .iter()
            .filter_map(|(s, _, _)| s.fallback.clone())
            .filter(|f| f != FALLBACK_CACHE)
            .chain(wf.compensate.values().cloned())
            .collect();
        for i in 0..self.flat.len() {
            let (s, ptr, scope) = (self.flat[i].0, self.flat[i].1.clone(), self.flat[i].2);
            if !role.contains(&s.id) {
                continue;
            }
            if scope != Scope::Top {
                self.err(
                    format!("{ptr}/id"),
                    format!(
                        "`{}` is a fallback or compensation step, so it must be a top-level step, not inside a loop",
                        s.id
                    ),
                );
                continue;
            }
            self.flat[i].2 = Scope::Role;
            // A role step runs alone, when called: DAG fields would silently do nothing.
            for (field, set) in [
                ("needs", !s.needs.is_empty()),
                ("when", s.when.is_some()),
                ("for_each", s.for_each.is_some()),
                ("loop", s.loop_.is_some()),
                ("fallback", s.fallback.is_some()),
            ] {
                if set {
                    self.err(
                        format!("{ptr}/{field}"),
                        format!(
                            "`{field}` has no effect on `{}`, which runs only as a fallback or compensation step",
                            s.id
                        ),
                    );
                }
            }
        }
        let mut steps = Vec::with_capacity(self.flat.len());
        for i in 0..self.flat.len() {
            steps.push(self.compile_step(i));
        }
        self.check_graph(&steps);
        self.check_references(&steps);
        if self.problems.is_empty() {
            for i in 0..steps.len() {
                let upstream = visible_upstream(&steps, i);
                if let Some(s) = steps[i].as_mut() {
                    s.upstream = upstream;
                }
            }
        }
        if wf.mesh.is_some() {
            self.err(
                "/mesh",
                "the mesh file is read when a workflow is loaded from its file (`baton run FILE`); this definition was loaded without it",
            );
        }
        self.check_triggers();
        check_network(wf, &mut self.problems);
        check_llm_defaults(wf, &mut self.problems);
        let connections = self.connections();
        let memory = self.memory();
        let output = self.wf.output.as_deref().and_then(|src| self.expr("/output", src));
        if let Some(out) = &output {
            for id in out.refs().steps() {
                match self.index.get(id).map(|&i| self.flat[i].2) {
                    None => self.err("/output", format!("reads `.steps.{id}`, but there is no step `{id}`")),
                    Some(Scope::Body(l)) => {
                        let loop_id = self.flat[l].0.id.clone();
                        self.err(
                            "/output",
                            format!(
                                "reads `.steps.{id}`, a loop body step: read `.steps.{loop_id}.output.{id}` instead"
                            ),
                        );
                    }
                    Some(_) => {}
                }
            }
        }
        let mut compensate = HashMap::new();
        for (target, undo) in &wf.compensate {
            let ptr = format!("/compensate/{target}");
            match (self.index.get(target).copied(), self.index.get(undo).copied()) {
                (Some(t), Some(u)) => {
                    compensate.insert(t, u);
                }
                (t, u) => {
                    if t.is_none() {
                        let hint = self.hint(target);
                        self.err(ptr.clone(), format!("compensates unknown step `{target}`{hint}"));
                    }
                    if u.is_none() {
                        let hint = self.hint(undo);
                        self.err(ptr, format!("compensation step `{undo}` does not exist{hint}"));
                    }
                }
            }
        }
        let input_schema = match &wf.input_schema {
            None => None,
            Some(schema) => match jsonschema::validator_for(schema) {
                Ok(v) => Some(Arc::new(v)),
                Err(e) => {
                    self.err("/input_schema", format!("not a valid JSON Schema: {e}"));
                    None
                }
            },
        };
        if !self.problems.is_empty() {
            return Err(self.problems);
        }
        // Agent tools: their hidden steps go after the others, and the agent learns their index.
        let mut index = self.index.clone();
        for (agent, j, step) in std::mem::take(&mut self.agent_tools) {
            index.insert(step.id.clone(), steps.len());
            steps.push(Some(step));
            let ix = steps.len() - 1;
            if let Some(Some(PlannedStep { kind: StepKind::Agent { tools, .. }, .. })) = steps.get_mut(agent)
                && let Some(t) = tools.get_mut(j)
            {
                t.step = ix;
            }
        }
        // `fallback: cache`: a look-up step of its own, run like any fallback. It is not in the
        // index, so expressions cannot name it and a user step with the same id stays distinct.
        for i in 0..self.flat.len() {
            if self.flat[i].0.fallback.as_deref() != Some(FALLBACK_CACHE) {
                continue;
            }
            let Some(of) = steps[i].as_ref() else { continue };
            let lookup = PlannedStep::hidden(
                format!("{}.cache", of.id),
                StepKind::CacheLookup { of: i },
                Default::default(),
                None,
            );
            steps.push(Some(lookup));
            let ix = steps.len() - 1;
            if let Some(s) = steps[i].as_mut() {
                s.fallback = Some(ix);
            }
        }
        let definition = serde_json::to_value(wf).unwrap_or(Value::Null);
        Ok(Plan {
            workflow: wf.clone(),
            hash: crate::canonical::sha256_hex(&definition),
            loops: steps
                .iter()
                .enumerate()
                .filter(|(_, s)| matches!(s.as_ref().map(|s| &s.kind), Some(StepKind::Loop { .. })))
                .map(|(i, _)| i)
                .collect(),
            steps: steps.into_iter().flatten().collect(),
            index,
            output,
            compensate,
            input_schema,
            connections,
            continues: self.continues,
            memory,
        })
    }

    /// Event patterns as EventBridge accepts them, schedules as EventBridge Scheduler does.
    fn check_triggers(&mut self) {
        let wf = self.wf;
        for (i, t) in wf.triggers.iter().enumerate() {
            match t {
                crate::model::Trigger::Event { event } => {
                    if let Err(e) = crate::pattern::check(event) {
                        self.err(format!("/triggers/{i}/event"), format!("invalid event pattern: {e}"));
                    }
                }
                crate::model::Trigger::Schedule { schedule } => {
                    if let Err(e) = check_schedule(schedule) {
                        self.err(format!("/triggers/{i}/schedule"), e);
                    }
                }
            }
        }
    }

    fn hint(&self, word: &str) -> String {
        let ids: Vec<&str> = self.index.keys().map(String::as_str).collect();
        did_you_mean(word, &ids).map(|s| format!(" (did you mean `{s}`?)")).unwrap_or_default()
    }

    /// Lists every step (loop bodies after their loop) and checks ids are unique.
    fn flatten(&mut self) {
        let wf = self.wf;
        for (i, s) in wf.steps.iter().enumerate() {
            let ptr = format!("/steps/{i}");
            self.push_flat(s, ptr.clone(), Scope::Top);
            if let Some(l) = &s.loop_ {
                let loop_ix = self.flat.len() - 1;
                for (j, b) in l.steps.iter().enumerate() {
                    let bptr = format!("{ptr}/loop/steps/{j}");
                    if b.loop_.is_some() {
                        self.err(
                            format!("{bptr}/loop"),
                            "nested loops are not supported: move the inner loop into a sub-workflow or flatten it",
                        );
                    }
                    self.push_flat(b, bptr, Scope::Body(loop_ix));
                }
            }
        }
    }

    fn push_flat(&mut self, s: &'a Step, ptr: String, scope: Scope) {
        if s.id.is_empty() || s.id.contains(['/', '[', ']', '#', '~', ' ']) {
            self.err(format!("{ptr}/id"), "a step id must be non-empty and must not contain `/ [ ] # ~` or spaces");
        }
        if self.index.contains_key(&s.id) {
            self.err(format!("{ptr}/id"), format!("duplicate step id `{}`", s.id));
        } else {
            self.index.insert(s.id.clone(), self.flat.len());
        }
        self.flat.push((s, ptr, scope));
    }

    fn expr(&mut self, pointer: &str, src: &str) -> Option<Expr> {
        match Expr::compile(src) {
            Ok(e) => Some(e),
            Err(e) => {
                self.err(pointer, format!("jq expression `{src}` does not compile: {e}"));
                None
            }
        }
    }

    fn template(&mut self, pointer: &str, value: &Value) -> Option<Template> {
        match Template::compile(value) {
            Ok(t) => Some(t),
            Err(errs) => {
                for e in errs {
                    self.err(
                        format!("{pointer}{}", e.pointer),
                        format!("`{{{{ }}}}` expression does not compile: {}", e.error),
                    );
                }
                None
            }
        }
    }

    fn compile_step(&mut self, i: usize) -> Option<PlannedStep> {
        let (s, ptr, scope) = (self.flat[i].0, self.flat[i].1.clone(), self.flat[i].2);
        let before = self.problems.len();
        let needs: Vec<StepIx> = s
            .needs
            .iter()
            .enumerate()
            .filter_map(|(n, need)| {
                let np = format!("{ptr}/needs/{n}");
                match self.index.get(need).copied() {
                    None => {
                        let hint = self.hint(need);
                        self.err(np, format!("needs unknown step `{need}`{hint}"));
                        None
                    }
                    Some(j) if self.flat[j].2 != scope && !(scope == Scope::Role && self.flat[j].2 == Scope::Top) => {
                        self.err(np, format!("needs `{need}`, which is not in the same {}", scope_name(scope)));
                        None
                    }
                    Some(j) => Some(j),
                }
            })
            .collect();
        let when = s.when.as_deref().and_then(|w| self.expr(&format!("{ptr}/when"), w));
        let timeout = s.timeout.as_deref().and_then(|t| duration(&mut self.problems, format!("{ptr}/timeout"), t));
        let retry = self.retry(s, &ptr);
        let cache = s.cache.as_ref().and_then(|c| {
            if !matches!(s.tool.as_deref(), Some("http" | "llm")) {
                self.err(format!("{ptr}/cache"), "`cache` keeps responses of `http` and `llm` steps");
            } else if s.fallback.as_deref() != Some(FALLBACK_CACHE) {
                self.err(
                    format!("{ptr}/cache"),
                    "`cache` keeps responses for `fallback: cache`, which nothing else reads: add `fallback: cache`",
                );
            }
            duration(&mut self.problems, format!("{ptr}/cache/ttl"), &c.ttl)
        });
        let fallback = s.fallback.as_deref().and_then(|f| {
            if f == FALLBACK_CACHE {
                if s.cache.is_none() {
                    self.err(
                        format!("{ptr}/fallback"),
                        "`fallback: cache` serves the step's last good response: add `cache: {ttl: ...}` to the step",
                    );
                }
                if s.for_each.is_some() {
                    self.err(
                        format!("{ptr}/fallback"),
                        "`fallback: cache` cannot go with `for_each`: each item has its own response",
                    );
                }
                // The look-up step is added once every step is compiled.
                return None;
            }
            if f == s.id {
                self.err(format!("{ptr}/fallback"), "a step cannot be its own fallback");
                return None;
            }
            let ix = self.index.get(f).copied();
            if ix.is_none() {
                let hint = self.hint(f);
                self.err(format!("{ptr}/fallback"), format!("fallback step `{f}` does not exist{hint}"));
            }
            ix
        });
        let for_each = s.for_each.as_deref().and_then(|src| {
            let e = self.expr(&format!("{ptr}/for_each"), src)?;
            match s.max_concurrency {
                None => {
                    self.err(
                        format!("{ptr}/max_concurrency"),
                        format!("`for_each` needs `max_concurrency` (1 to {MAX_CONCURRENCY_LIMIT})"),
                    );
                    None
                }
                Some(n) if n == 0 || n > MAX_CONCURRENCY_LIMIT => {
                    self.err(
                        format!("{ptr}/max_concurrency"),
                        format!("must be between 1 and {MAX_CONCURRENCY_LIMIT}, got {n}"),
                    );
                    None
                }
                Some(n) => Some((e, n)),
            }
        });
        if s.max_concurrency.is_some() && s.for_each.is_none() {
            self.err(format!("{ptr}/max_concurrency"), "`max_concurrency` only applies with `for_each`");
        }
        let mut escalate: Vec<(Millis, String)> = Vec::new();
        if let Some(esc) = &s.escalate {
            for (n, level) in esc.levels().iter().enumerate() {
                let p = match esc {
                    crate::model::Escalation::One(_) => format!("{ptr}/escalate/after"),
                    crate::model::Escalation::Chain(_) => format!("{ptr}/escalate/{n}/after"),
                };
                if let Some(ms) = duration(&mut self.problems, p, &level.after) {
                    escalate.push((ms, level.to.clone()));
                }
            }
            escalate.sort_by_key(|(ms, _)| *ms);
            if !matches!(s.tool.as_deref(), Some("human" | "wait_event")) {
                self.err(
                    format!("{ptr}/escalate"),
                    "`escalate` applies to `tool: human` and `tool: wait_event` steps (loops use `loop.escalate`)",
                );
            }
        }
        let on_timeout = s.on_timeout.as_ref().map(|o| self.on_timeout(s, &ptr, o));
        let kind = self.kind(s, &ptr, i);
        if self.problems.len() > before {
            return None;
        }
        Some(PlannedStep {
            id: s.id.clone(),
            scope,
            kind: kind?,
            needs,
            when,
            retry,
            timeout,
            fallback,
            cache,
            for_each,
            escalate,
            on_timeout,
            upstream: Vec::new(),
        })
    }

    /// A human step's default answer: it needs the `timeout` it answers, and approving data must
    /// match the task's form, because nobody will be there to fix it.
    fn on_timeout(&mut self, s: &Step, ptr: &str, o: &crate::model::OnTimeout) -> crate::answer::HumanAnswer {
        if s.tool.as_deref() != Some("human") {
            self.err(format!("{ptr}/on_timeout"), "`on_timeout` applies to `tool: human` steps");
        } else if s.timeout.is_none() {
            self.err(format!("{ptr}/on_timeout"), "`on_timeout` answers when `timeout` passes: set `timeout`");
        }
        let decision = match o.decision {
            crate::model::TimeoutDecision::Approve => crate::answer::Verdict::Approve,
            crate::model::TimeoutDecision::Reject => crate::answer::Verdict::Reject,
        };
        let data = o.data.clone().unwrap_or_else(|| Value::Object(Default::default()));
        let form = s.with.as_ref().and_then(|w| w.get("form"));
        if decision == crate::answer::Verdict::Approve
            && let Some(form) = form
            && jsonschema::validator_for(form).is_ok()
            && let Err(problems) = super::types::check_against_schema(form, &data)
        {
            self.err(
                format!("{ptr}/on_timeout/data"),
                format!("does not match the task's form: {}", problems.join("; ")),
            );
        }
        crate::answer::HumanAnswer { decision, data, comment: o.comment.clone(), by: Some("on_timeout".into()) }
    }

    fn retry(&mut self, s: &Step, ptr: &str) -> RetryPolicy {
        let Some(r) = &s.retry else {
            return RetryPolicy::default();
        };
        let mut policy = RetryPolicy { max_attempts: r.max_attempts, ..RetryPolicy::default() };
        if r.max_attempts < 1 {
            self.err(
                format!("{ptr}/retry/max_attempts"),
                "must be at least 1 (it counts every attempt, the first included)",
            );
        }
        policy.exponential = r.backoff == Backoff::Exponential;
        policy.jitter = r.jitter.unwrap_or(if policy.exponential { Jitter::Full } else { Jitter::None });
        if let Some(t) = &r.initial {
            policy.initial = duration(&mut self.problems, format!("{ptr}/retry/initial"), t).unwrap_or(policy.initial);
        }
        policy.max = match &r.max {
            Some(t) => duration(&mut self.problems, format!("{ptr}/retry/max"), t).unwrap_or(policy.max),
            None => Millis(policy.max.0.max(policy.initial.0)),
        };
        if policy.max < policy.initial {
            self.err(format!("{ptr}/retry/max"), "`max` is shorter than `initial`");
        }
        if let Some(on) = &r.on {
            for (n, kind) in on.iter().enumerate() {
                if !RETRYABLE_KINDS.contains(&kind.as_str()) {
                    let hint = did_you_mean(kind, RETRYABLE_KINDS)
                        .map(|s| format!(" (did you mean `{s}`?)"))
                        .unwrap_or_default();
                    self.err(
                        format!("{ptr}/retry/on/{n}"),
                        format!("unknown error kind `{kind}`{hint}; known: {}", RETRYABLE_KINDS.join(", ")),
                    );
                }
            }
            policy.on = on.clone();
        }
        policy
    }

    fn kind(&mut self, s: &Step, ptr: &str, i: StepIx) -> Option<StepKind> {
        let with = s.with.clone().unwrap_or(Value::Object(Default::default()));
        let wptr = format!("{ptr}/with");
        match (&s.tool, &s.loop_) {
            (Some(_), Some(_)) => {
                self.err(format!("{ptr}/loop"), "a step has either `tool` or `loop`, not both");
                None
            }
            (None, None) => {
                self.err(format!("{ptr}/tool"), format!("missing `tool` (one of: {})", KNOWN_TOOLS.join(", ")));
                None
            }
            (None, Some(l)) => {
                if s.for_each.is_some() {
                    self.err(format!("{ptr}/for_each"), "`for_each` cannot be combined with `loop`");
                }
                for (field, set) in [("retry", s.retry.is_some()), ("timeout", s.timeout.is_some())] {
                    if set {
                        self.err(
                            format!("{ptr}/{field}"),
                            format!("`{field}` does not apply to a loop: put it on the body steps"),
                        );
                    }
                }
                if l.until.is_none() && l.then == LoopExhausted::Fail {
                    self.err(format!("{ptr}/loop"), "a loop without `until` always hits its bound, and `then: fail` (the default) then fails it: add `until`, or `then: continue` to run a fixed number of iterations");
                }
                let max_iterations = match l.max_iterations {
                    None => {
                        self.err(format!("{ptr}/loop"), "a loop needs `max_iterations`: every loop must be bounded");
                        None
                    }
                    Some(0) => {
                        self.err(format!("{ptr}/loop/max_iterations"), "must be at least 1");
                        None
                    }
                    Some(n) => Some(n),
                };
                let until = l.until.as_deref().and_then(|u| self.expr(&format!("{ptr}/loop/until"), u));
                if l.then == LoopExhausted::Escalate && l.escalate.is_none() {
                    self.err(format!("{ptr}/loop/then"), "`then: escalate` needs `escalate: {to: <queue>}`");
                }
                if l.steps.is_empty() {
                    self.err(format!("{ptr}/loop/steps"), "a loop needs at least one body step");
                }
                let body = l.steps.iter().filter_map(|b| self.index.get(&b.id).copied()).filter(|&b| b > i).collect();
                Some(StepKind::Loop {
                    max_iterations: max_iterations?,
                    until,
                    then: l.then,
                    escalate_to: l.escalate.as_ref().map(|e| e.to.clone()),
                    body,
                })
            }
            (Some(tool), None) => {
                let obj = with.as_object();
                let field = |name: &str| obj.and_then(|o| o.get(name));
                match tool.as_str() {
                    "transform" => match field("expr") {
                        _ if obj.is_some_and(|o| o.keys().any(|k| k != "expr")) => {
                            self.unknown_args(obj, &wptr, &["expr"]);
                            None
                        }
                        Some(Value::String(src)) => {
                            Some(StepKind::Transform { expr: self.expr(&format!("{wptr}/expr"), src)? })
                        }
                        _ => {
                            self.err(format!("{wptr}/expr"), "`transform` needs `with.expr`, a jq expression");
                            None
                        }
                    },
                    "http" => {
                        match (field("url"), field("connection")) {
                            (Some(Value::String(_)), None) => {}
                            (None, Some(Value::String(c))) => {
                                if !self.wf.connections.contains_key(c) {
                                    let known: Vec<&str> = self.wf.connections.keys().map(String::as_str).collect();
                                    let hint = did_you_mean(c, &known)
                                        .map(|s| format!(" (did you mean `{s}`?)"))
                                        .unwrap_or_default();
                                    self.err(
                                        format!("{wptr}/connection"),
                                        format!("no connection `{c}` in `connections`{hint}"),
                                    );
                                }
                                if let Some(p) = field("path").and_then(Value::as_str)
                                    && !(p.is_empty()
                                        || p.starts_with('/')
                                        || p.starts_with('?')
                                        || p.starts_with("{{"))
                                {
                                    self.err(
                                        format!("{wptr}/path"),
                                        "`path` is appended to the connection's base URL: start it with `/`",
                                    );
                                }
                            }
                            (Some(_), Some(_)) => self.err(
                                format!("{wptr}/connection"),
                                "`http` takes `url` or `connection` (with `path`), not both",
                            ),
                            _ => self.err(
                                format!("{wptr}/url"),
                                "`http` needs `with.url`, or `with.connection` and `with.path`",
                            ),
                        }
                        if field("path").is_some() && field("connection").is_none() {
                            self.err(
                                format!("{wptr}/path"),
                                "`path` goes with `connection`; with `url` put the path in the URL",
                            );
                        }
                        if let Some(m) = field("method") {
                            let ok = m.as_str().is_some_and(|m| {
                                m.contains("{{")
                                    || ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]
                                        .contains(&m.to_ascii_uppercase().as_str())
                            });
                            if !ok {
                                self.err(
                                    format!("{wptr}/method"),
                                    "method must be GET, POST, PUT, PATCH, DELETE, HEAD or OPTIONS",
                                );
                            }
                        }
                        if let Some(t) = field("timeout").and_then(Value::as_str) {
                            duration(&mut self.problems, format!("{wptr}/timeout"), t);
                        }
                        self.unknown_args(
                            obj,
                            &wptr,
                            &["method", "url", "connection", "path", "headers", "body", "timeout"],
                        );
                        Some(StepKind::Tool { tool: tool.clone(), args: self.template(&wptr, &with)? })
                    }
                    "sleep" => {
                        self.unknown_args(obj, &wptr, &["for", "until"]);
                        if s.timeout.is_some() || s.retry.is_some() {
                            let field = if s.timeout.is_some() { "timeout" } else { "retry" };
                            self.err(format!("{ptr}/{field}"), "`timeout` and `retry` do not apply to `sleep`");
                        }
                        let dur = field("for").map(|v| match v.as_str() {
                            Some(t) => duration(&mut self.problems, format!("{wptr}/for"), t),
                            None => {
                                self.err(format!("{wptr}/for"), "expected a duration such as `2s`");
                                None
                            }
                        });
                        let until = field("until").map(|v| self.template(&format!("{wptr}/until"), v));
                        match (&dur, &until) {
                            (None, None) | (Some(_), Some(_)) => {
                                self.err(wptr.clone(), "`sleep` needs exactly one of `with.for` (a duration) or `with.until` (an RFC 3339 time)");
                                None
                            }
                            _ => Some(StepKind::Sleep { duration: dur.flatten(), until: until.flatten() }),
                        }
                    }
                    "llm" => self.llm_step(obj, &wptr),
                    "wait_event" => self.wait_event_step(obj, &wptr),
                    "workflow" => self.workflow_step(obj, &wptr, s, ptr, i),
                    "memory" => self.memory_step(obj, &wptr),
                    "agent" => self.agent_step(obj, &wptr, s, ptr, i),
                    "human" => {
                        self.unknown_args(obj, &wptr, &["queue", "prompt", "summary", "form"]);
                        let queue = match field("queue") {
                            Some(q @ Value::String(_)) => self.template(&format!("{wptr}/queue"), q),
                            _ => {
                                self.err(
                                    format!("{wptr}/queue"),
                                    "`human` needs `with.queue`, the team or person who answers",
                                );
                                None
                            }
                        };
                        if let Some(sm) = field("summary")
                            && sm.as_str() != Some("auto")
                            && !sm.is_boolean()
                        {
                            self.err(format!("{wptr}/summary"), "`summary` is `auto` (or false to leave it out)");
                        }
                        let prompt = self.template(
                            &format!("{wptr}/prompt"),
                            field("prompt").unwrap_or(&Value::String(String::new())),
                        );
                        let form = field("form").cloned();
                        if let Some(f) = &form
                            && let Err(e) = jsonschema::validator_for(f)
                        {
                            self.err(format!("{wptr}/form"), format!("not a valid JSON Schema: {e}"));
                        }
                        Some(StepKind::Human {
                            queue: queue?,
                            prompt: prompt?,
                            form,
                            summary: field("summary").is_none_or(|v| v != &Value::Bool(false)),
                        })
                    }
                    other => {
                        let hint = did_you_mean(other, KNOWN_TOOLS)
                            .map(|s| format!(" (did you mean `{s}`?)"))
                            .unwrap_or_default();
                        self.err(
                            format!("{ptr}/tool"),
                            format!("unknown tool `{other}`{hint}; known tools: {}", KNOWN_TOOLS.join(", ")),
                        );
                        None
                    }
                }
            }
        }
    }

    /// The workflow's `memory`: an entity expression that reads only the input (it is evaluated
    /// before any step runs) and a summary expression.
    fn memory(&mut self) -> Option<super::types::PlannedMemory> {
        let m = self.wf.memory.as_ref()?;
        let entity = self.expr("/memory/entity", &m.entity);
        if let Some(e) = &entity
            && (e.refs().dynamic || e.refs().steps().next().is_some())
        {
            self.err("/memory/entity", "`entity` is evaluated when the run starts: it may read `.input`, not `.steps`");
        }
        let summary = m.summary.as_deref().and_then(|s| self.expr("/memory/summary", s));
        let load = |layer| m.load.contains(&layer);
        Some(super::types::PlannedMemory {
            entity: entity?,
            facts: load(crate::model::MemoryLayer::Facts),
            episodes: if load(crate::model::MemoryLayer::Episodes) { m.episodes.unwrap_or(10) } else { 0 },
            summary,
        })
    }

    /// The workflow's connections as `http` arguments; each is checked: an http(s) base URL,
    /// exactly one auth method, a duration.
    fn connections(&mut self) -> HashMap<String, Template> {
        let mut out = HashMap::new();
        for (name, c) in &self.wf.connections {
            let ptr = format!("/connections/{name}");
            let base = c.base_url.trim();
            if !(base.starts_with("https://") || base.starts_with("http://") || base.starts_with("{{")) {
                self.err(format!("{ptr}/base_url"), "`base_url` must start with https:// (or http://)");
            }
            let mut headers: serde_json::Map<String, Value> =
                c.headers.iter().map(|(k, v)| (k.clone(), Value::String(v.clone()))).collect();
            let mut sigv4 = Value::Null;
            if let Some(auth) = &c.auth {
                match (&auth.bearer, &auth.api_key, &auth.aws_sigv4) {
                    (Some(token), None, None) => {
                        headers.insert("Authorization".into(), Value::String(format!("Bearer {token}")));
                    }
                    (None, Some(key), None) => {
                        headers.insert(key.header.clone(), Value::String(key.value.clone()));
                    }
                    (None, None, Some(s)) => {
                        if s.service.trim().is_empty() {
                            self.err(
                                format!("{ptr}/auth/aws_sigv4/service"),
                                "the service's signing name, e.g. `execute-api`",
                            );
                        }
                        sigv4 = serde_json::to_value(s).unwrap_or(Value::Null);
                    }
                    _ => self
                        .err(format!("{ptr}/auth"), "`auth` takes exactly one of `bearer`, `api_key` or `aws_sigv4`"),
                }
            }
            if let Some(t) = &c.timeout {
                duration(&mut self.problems, format!("{ptr}/timeout"), t);
            }
            let mut limits = serde_json::Map::new();
            if let Some(r) = &c.rate_limit {
                let per = duration(&mut self.problems, format!("{ptr}/rate_limit/per"), &r.per);
                if r.requests == 0 {
                    self.err(format!("{ptr}/rate_limit/requests"), "`requests` is at least 1");
                }
                if let Some(per) = per {
                    limits.insert("rate_limit".into(), serde_json::json!({"requests": r.requests, "per_ms": per.0}));
                }
            }
            if let Some(b) = &c.circuit_breaker {
                let cooldown = duration(&mut self.problems, format!("{ptr}/circuit_breaker/cooldown"), &b.cooldown);
                if b.failures == 0 {
                    self.err(format!("{ptr}/circuit_breaker/failures"), "`failures` is at least 1");
                }
                if let Some(c) = cooldown {
                    limits.insert(
                        "circuit_breaker".into(),
                        serde_json::json!({"failures": b.failures, "cooldown_ms": c.0}),
                    );
                }
            }
            let args = serde_json::json!({
                "url": base.trim_end_matches('/'),
                "headers": headers,
                "timeout": c.timeout,
                "allow_private": c.allow_private,
                "sigv4": sigv4,
                "limits": limits,
            });
            if let Some(t) = self.template(&ptr, &args) {
                // A connection serves every step, so it cannot depend on any one step's upstream.
                if let Some(step) = t.refs().steps().next() {
                    self.err(
                        ptr.clone(),
                        format!("reads `.steps.{step}`: a connection may read `.input` and `secret()`, not steps"),
                    );
                }
                out.insert(name.clone(), t);
            }
        }
        out
    }

    /// A `wait_event` step: an EventBridge pattern, and optionally a correlation: the event
    /// matches when `correlate.event` (jq on the event) equals `correlate.run` (jq on the run
    /// context, evaluated when the wait opens).
    /// An `agent` step: the `llm` fields (with the workflow's `defaults.llm`), a `goal`, the
    /// answer's schema, a bound on turns, and the tools, each compiled into a hidden role step
    /// `<agent>.<tool>` whose templates read the model's arguments as `.args`.
    fn agent_step(
        &mut self,
        obj: Option<&serde_json::Map<String, Value>>,
        wptr: &str,
        s: &Step,
        ptr: &str,
        i: StepIx,
    ) -> Option<StepKind> {
        let known: Vec<&str> = AGENT_ARGS.iter().chain(LLM_DEFAULTABLE).copied().collect();
        self.unknown_args(obj, wptr, &known);
        // The workflow's `defaults.llm`, then `defaults.agent`, then the step's own fields.
        let mut merged = self.wf.defaults.as_ref().and_then(|d| d.llm.clone()).unwrap_or_default();
        let agent_defaults = self.wf.defaults.as_ref().and_then(|d| d.agent.clone()).unwrap_or_default();
        for (k, v) in agent_defaults.into_iter().chain(obj.cloned().unwrap_or_default()) {
            merged.insert(k, v);
        }
        if s.for_each.is_some() {
            self.err(format!("{ptr}/for_each"), "`for_each` cannot go with `agent`: run the agent in a sub-workflow");
        }
        if !matches!(merged.get("goal"), Some(Value::String(g)) if !g.trim().is_empty()) {
            self.err(format!("{wptr}/goal"), "`agent` needs `with.goal`, what the model works toward");
        }
        if !matches!(merged.get("model"), Some(Value::String(m)) if !m.is_empty()) {
            self.err(format!("{wptr}/model"), "`agent` needs `with.model` (or `defaults.llm.model`)");
        }
        if let Some(p) = merged.get("provider")
            && !p.as_str().is_some_and(|p| LLM_PROVIDERS.contains(&p))
        {
            self.err(format!("{wptr}/provider"), format!("unknown provider {p}; known: {}", LLM_PROVIDERS.join(", ")));
        }
        let output_schema = match merged.remove("output_schema") {
            Some(schema @ Value::Object(_)) => {
                if let Err(e) = jsonschema::validator_for(&schema) {
                    self.err(format!("{wptr}/output_schema"), format!("not a valid JSON Schema: {e}"));
                }
                Some(schema)
            }
            _ => {
                self.err(
                    format!("{wptr}/output_schema"),
                    "`agent` needs `with.output_schema`, the JSON Schema of its answer",
                );
                None
            }
        };
        let max_turns = match merged.remove("max_turns") {
            None => DEFAULT_MAX_TURNS,
            Some(v) => match v.as_u64() {
                Some(n @ 1..=50) => n as u32,
                _ => {
                    self.err(format!("{wptr}/max_turns"), "`max_turns` is a whole number from 1 to 50");
                    DEFAULT_MAX_TURNS
                }
            },
        };
        let tool_list = match merged.remove("tools") {
            None => vec![],
            Some(Value::Array(t)) => t,
            Some(_) => {
                self.err(
                    format!("{wptr}/tools"),
                    "`tools` is a list of `{name, description, parameters, http | workflow | memory}`",
                );
                vec![]
            }
        };
        let mut tools = Vec::new();
        let mut names = HashSet::new();
        for (j, t) in tool_list.iter().enumerate() {
            let tptr = format!("{wptr}/tools/{j}");
            if let Some(tool) = self.agent_tool(t, &tptr, &s.id, i, j, &mut names) {
                tools.push(tool);
            }
        }
        self.check_llm_fields(&merged, wptr);
        let args = self.template(wptr, &Value::Object(merged))?;
        Some(StepKind::Agent { args, tools, max_turns, output_schema: output_schema? })
    }

    /// One tool of an agent: its description for the model, and the hidden step that runs it.
    fn agent_tool(
        &mut self,
        t: &Value,
        tptr: &str,
        agent: &str,
        agent_ix: StepIx,
        j: usize,
        names: &mut HashSet<String>,
    ) -> Option<AgentTool> {
        let Value::Object(t) = t else {
            self.err(tptr, "a tool is `{name, description, parameters, http | workflow | memory}`");
            return None;
        };
        self.unknown_args(Some(t), tptr, AGENT_TOOL_FIELDS);
        let name = match t.get("name").and_then(Value::as_str) {
            Some(n)
                if !n.is_empty()
                    && n.len() <= 64
                    && n.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') =>
            {
                n.to_owned()
            }
            _ => {
                self.err(format!("{tptr}/name"), "a tool needs a `name` of letters, digits, `_` or `-` (at most 64)");
                return None;
            }
        };
        if !names.insert(name.clone()) {
            self.err(format!("{tptr}/name"), format!("two tools are called `{name}`"));
        }
        let id = format!("{agent}.{name}");
        if self.index.contains_key(&id) {
            self.err(format!("{tptr}/name"), format!("the tool's step id `{id}` is already a step's id"));
        }
        let description = t.get("description").and_then(Value::as_str).unwrap_or_default().to_owned();
        let kinds: Vec<&str> = ["http", "workflow", "memory"].into_iter().filter(|k| t.contains_key(*k)).collect();
        let (tool, args, default_params) = match kinds.as_slice() {
            ["http"] => match t.get("http") {
                Some(Value::Object(h)) => {
                    let mut h = h.clone();
                    let hptr = format!("{tptr}/http");
                    self.unknown_args(Some(&h), &hptr, &["method", "url", "connection", "path", "headers", "body"]);
                    match (h.contains_key("url"), h.contains_key("connection")) {
                        (false, false) => self.err(&hptr, "an http tool needs `url`, or `connection` and `path`"),
                        (true, true) => {
                            self.err(format!("{hptr}/connection"), "`url` or `connection` (with `path`), not both")
                        }
                        _ => {}
                    }
                    if let Some(m) = h.get("method")
                        && !m.as_str().is_some_and(|m| {
                            ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]
                                .contains(&m.to_ascii_uppercase().as_str())
                        })
                    {
                        self.err(
                            format!("{hptr}/method"),
                            "method must be GET, POST, PUT, PATCH, DELETE, HEAD or OPTIONS",
                        );
                    }
                    if t.get("timeout").is_some_and(|v| !v.is_string()) {
                        self.err(format!("{tptr}/timeout"), "expected a duration such as `10s`");
                    }
                    if let Some(c) = h.get("connection").and_then(Value::as_str)
                        && !self.wf.connections.contains_key(c)
                    {
                        self.err(format!("{tptr}/http/connection"), format!("no connection `{c}` in `connections`"));
                    }
                    let method = h.get("method").and_then(Value::as_str).unwrap_or("GET").to_ascii_uppercase();
                    // Without a body of its own, a call that sends one sends the model's arguments.
                    if method != "GET" && method != "DELETE" && !h.contains_key("body") {
                        h.insert("body".into(), Value::String("{{ .args }}".into()));
                    }
                    if let Some(to) = t.get("timeout") {
                        h.entry("timeout").or_insert(to.clone());
                    }
                    ("http", Value::Object(h), serde_json::json!({"type": "object"}))
                }
                _ => {
                    self.err(
                        format!("{tptr}/http"),
                        "`http` is the call: `{method, url | connection + path, headers, body}`",
                    );
                    return None;
                }
            },
            ["workflow"] => match t.get("workflow").and_then(Value::as_str) {
                Some(w) if !w.trim().is_empty() => (
                    "workflow",
                    serde_json::json!({"name": w, "input": "{{ .args }}"}),
                    serde_json::json!({"type": "object"}),
                ),
                _ => {
                    self.err(format!("{tptr}/workflow"), "`workflow` names the published workflow a call starts");
                    return None;
                }
            },
            ["memory"] => {
                if self.wf.memory.is_none() {
                    self.err(
                        format!("{tptr}/memory"),
                        "a memory tool reads the run's entity: add `memory: {entity: ...}` to the workflow",
                    );
                }
                match t.get("memory").and_then(Value::as_str) {
                    Some("search") => (
                        "memory",
                        serde_json::json!({"op": "search", "query": "{{ .args.query }}"}),
                        serde_json::json!({"type": "object", "required": ["query"], "properties": {"query": {"type": "string", "maxLength": 200}}}),
                    ),
                    Some("read") => (
                        "memory",
                        serde_json::json!({"op": "read", "key": "{{ .args.key }}"}),
                        serde_json::json!({"type": "object", "properties": {"key": {"type": "string", "maxLength": 100}}}),
                    ),
                    _ => {
                        self.err(format!("{tptr}/memory"), "`memory` is `search` or `read`");
                        return None;
                    }
                }
            }
            [] => {
                self.err(tptr, "a tool needs one of `http`, `workflow` or `memory`: what a call does");
                return None;
            }
            _ => {
                self.err(tptr, format!("a tool does one thing: it has {}", kinds.join(" and ")));
                return None;
            }
        };
        let parameters = match t.get("parameters") {
            None => default_params,
            Some(p @ Value::Object(_)) => {
                if let Err(e) = jsonschema::validator_for(p) {
                    self.err(format!("{tptr}/parameters"), format!("not a valid JSON Schema: {e}"));
                }
                p.clone()
            }
            Some(_) => {
                self.err(format!("{tptr}/parameters"), "`parameters` is the JSON Schema of the call's arguments");
                return None;
            }
        };
        let args = self.template(tptr, &args)?;
        let timeout = t
            .get("timeout")
            .and_then(Value::as_str)
            .and_then(|d| duration(&mut self.problems, format!("{tptr}/timeout"), d));
        // Calls of the mesh are retried on transient failures; the model sees what is left.
        let retry = RetryPolicy { max_attempts: 3, ..Default::default() };
        let step = PlannedStep::hidden(id, StepKind::Tool { tool: tool.into(), args }, retry, timeout);
        self.agent_tools.push((agent_ix, j, step));
        Some(AgentTool { name, description, parameters, step: usize::MAX })
    }

    /// A `memory` step: `op` is read, write or search, with the fields each needs; without
    /// `entity`, the workflow's `memory.entity` is used.
    fn memory_step(&mut self, obj: Option<&serde_json::Map<String, Value>>, wptr: &str) -> Option<StepKind> {
        self.unknown_args(obj, wptr, MEMORY_ARGS);
        let field = |name: &str| obj.and_then(|o| o.get(name));
        let op = field("op").and_then(Value::as_str).unwrap_or("read");
        match op {
            "read" => {}
            "write" => {
                for f in ["key", "value"] {
                    if field(f).is_none() {
                        self.err(format!("{wptr}/{f}"), format!("`op: write` needs `with.{f}`"));
                    }
                }
            }
            "search" => {
                if field("query").is_none() {
                    self.err(format!("{wptr}/query"), "`op: search` needs `with.query`, the words to look for");
                }
            }
            other => self.err(format!("{wptr}/op"), format!("unknown op `{other}`: read, write or search")),
        }
        if field("entity").is_none() && self.wf.memory.is_none() {
            self.err(
                format!("{wptr}/entity"),
                "`memory` needs `with.entity`, or a workflow-level `memory: {entity: ...}`",
            );
        }
        let with = Value::Object(obj.cloned().unwrap_or_default());
        Some(StepKind::Tool { tool: "memory".into(), args: self.template(wptr, &with)? })
    }

    /// A `workflow` step: a child run of a published workflow (`name`), or with
    /// `continue_as_new` this run's successor. A successor must be a plain top-level step: one
    /// run cannot continue as several.
    fn workflow_step(
        &mut self,
        obj: Option<&serde_json::Map<String, Value>>,
        wptr: &str,
        s: &Step,
        ptr: &str,
        i: StepIx,
    ) -> Option<StepKind> {
        self.unknown_args(obj, wptr, WORKFLOW_ARGS);
        let field = |name: &str| obj.and_then(|o| o.get(name));
        let continues = match field("continue_as_new") {
            None | Some(Value::Bool(false)) => false,
            Some(Value::Bool(true)) => true,
            Some(_) => {
                self.err(format!("{wptr}/continue_as_new"), "`continue_as_new` is true or false");
                false
            }
        };
        match field("name") {
            Some(Value::String(n)) if !n.trim().is_empty() => {}
            None if continues => {}
            _ => self.err(
                format!("{wptr}/name"),
                "`workflow` needs `with.name`, the published workflow the child run starts",
            ),
        }
        if continues {
            if self.flat[i].2 == Scope::Top {
                self.continues.insert(i);
            } else {
                self.err(
                    format!("{wptr}/continue_as_new"),
                    "`continue_as_new` goes on a top-level step, not in a loop or as a fallback or compensation",
                );
            }
            for (field, set) in [("for_each", s.for_each.is_some()), ("fallback", s.fallback.is_some())] {
                if set {
                    self.err(
                        format!("{ptr}/{field}"),
                        format!("`{field}` cannot go with `continue_as_new`: a run continues as one new run"),
                    );
                }
            }
        }
        let with = Value::Object(obj.cloned().unwrap_or_default());
        Some(StepKind::Tool { tool: "workflow".into(), args: self.template(wptr, &with)? })
    }

    fn wait_event_step(&mut self, obj: Option<&serde_json::Map<String, Value>>, wptr: &str) -> Option<StepKind> {
        self.unknown_args(obj, wptr, &["pattern", "correlate"]);
        let field = |name: &str| obj.and_then(|o| o.get(name));
        let pattern = match field("pattern") {
            Some(p @ Value::Object(_)) => {
                if let Err(e) = crate::pattern::check(p) {
                    self.err(format!("{wptr}/pattern"), format!("invalid event pattern: {e}"));
                }
                Some(p.clone())
            }
            _ => {
                self.err(format!("{wptr}/pattern"), "`wait_event` needs `with.pattern`, an EventBridge event pattern");
                None
            }
        };
        let (mut event_key, mut run_key) = (None, None);
        if let Some(c) = field("correlate") {
            let Value::Object(c) = c else {
                self.err(
                    format!("{wptr}/correlate"),
                    "`correlate` is `{event: <jq on the event>, run: <jq on the run>}`",
                );
                return None;
            };
            for k in c.keys().filter(|k| !["event", "run"].contains(&k.as_str())) {
                self.err(
                    format!("{wptr}/correlate/{k}"),
                    format!("unknown field `{k}`; `correlate` has `event` and `run`"),
                );
            }
            for (name, slot) in [("event", &mut event_key), ("run", &mut run_key)] {
                match c.get(name) {
                    Some(Value::String(src)) => *slot = self.expr(&format!("{wptr}/correlate/{name}"), src),
                    _ => self.err(
                        format!("{wptr}/correlate/{name}"),
                        format!(
                            "`correlate.{name}` is needed: a jq expression on the {}",
                            if name == "event" { "event" } else { "run context" }
                        ),
                    ),
                }
            }
        }
        Some(StepKind::WaitEvent { pattern: pattern?, event_key, run_key })
    }

    /// An `llm` step: the workflow's `defaults.llm` under the step's own `with`, checked field by
    /// field; the answer schema must compile, since every answer is validated against it.
    fn llm_step(&mut self, obj: Option<&serde_json::Map<String, Value>>, wptr: &str) -> Option<StepKind> {
        self.unknown_args(obj, wptr, LLM_ARGS);
        let defaults = self.wf.defaults.as_ref().and_then(|d| d.llm.clone()).unwrap_or_default();
        let mut merged = defaults;
        for (k, v) in obj.cloned().unwrap_or_default() {
            merged.insert(k, v);
        }
        let field = |name: &str| merged.get(name);
        if !matches!(field("prompt"), Some(Value::String(p)) if !p.trim().is_empty()) {
            self.err(format!("{wptr}/prompt"), "`llm` needs `with.prompt`, the text the model works on");
        }
        match field("output_schema") {
            Some(schema @ Value::Object(_)) => {
                if let Err(e) = jsonschema::validator_for(schema) {
                    self.err(format!("{wptr}/output_schema"), format!("not a valid JSON Schema: {e}"));
                }
            }
            _ => self.err(
                format!("{wptr}/output_schema"),
                "`llm` needs `with.output_schema`, the JSON Schema every answer must match",
            ),
        }
        if !matches!(field("model"), Some(Value::String(m)) if !m.is_empty()) {
            self.err(format!("{wptr}/model"), "`llm` needs `with.model` (or `defaults.llm.model`)");
        }
        if let Some(p) = field("provider")
            && !p.as_str().is_some_and(|p| LLM_PROVIDERS.contains(&p))
        {
            let shown = p.as_str().map_or_else(|| p.to_string(), |s| format!("`{s}`"));
            let hint =
                p.as_str().and_then(|s| did_you_mean(s, LLM_PROVIDERS)).map(|s| format!(" (did you mean `{s}`?)"));
            self.err(
                format!("{wptr}/provider"),
                format!("unknown provider {shown}{}; known: {}", hint.unwrap_or_default(), LLM_PROVIDERS.join(", ")),
            );
        }
        self.check_llm_fields(&merged, wptr);
        Some(StepKind::Tool { tool: "llm".into(), args: self.template(wptr, &Value::Object(merged))? })
    }

    /// The `llm` fields an `llm` step and each `agent` turn share: numbers in range, text.
    fn check_llm_fields(&mut self, merged: &serde_json::Map<String, Value>, wptr: &str) {
        let field = |name: &str| merged.get(name);
        let number =
            |v: Option<&Value>, lo: f64, hi: f64| v.is_none_or(|v| v.as_f64().is_some_and(|n| (lo..=hi).contains(&n)));
        let integer =
            |v: Option<&Value>, lo: u64, hi: u64| v.is_none_or(|v| v.as_u64().is_some_and(|n| (lo..=hi).contains(&n)));
        if !number(field("temperature"), 0.0, 2.0) {
            self.err(format!("{wptr}/temperature"), "`temperature` is a number from 0 to 2");
        }
        if !integer(field("max_tokens"), 1, 1_000_000) {
            self.err(format!("{wptr}/max_tokens"), "`max_tokens` is a whole number of at least 1");
        }
        if !integer(field("max_repairs"), 0, 10) {
            self.err(format!("{wptr}/max_repairs"), "`max_repairs` is a whole number from 0 to 10");
        }
        if field("system").is_some_and(|v| !v.is_string()) {
            self.err(format!("{wptr}/system"), "`system` is text");
        }
        if field("sensitive").is_some_and(|v| !v.as_array().is_some_and(|a| a.iter().all(Value::is_string))) {
            self.err(format!("{wptr}/sensitive"), "`sensitive` lists answer field names to redact in the audit log");
        }
    }

    fn unknown_args(&mut self, obj: Option<&serde_json::Map<String, Value>>, wptr: &str, known: &[&str]) {
        let Some(obj) = obj else { return };
        for k in obj.keys() {
            if !known.contains(&k.as_str()) {
                let hint = did_you_mean(k, known).map(|s| format!(" (did you mean `{s}`?)")).unwrap_or_default();
                self.err(
                    format!("{wptr}/{k}"),
                    format!("unknown argument `{k}`{hint}; this tool takes: {}", known.join(", ")),
                );
            }
        }
    }

    /// Cycles, reported with their path, per scope.
    fn check_graph(&mut self, steps: &[Option<PlannedStep>]) {
        let mut graph: DiGraphMap<StepIx, ()> = DiGraphMap::new();
        for (i, s) in steps.iter().enumerate() {
            graph.add_node(i);
            if let Some(s) = s {
                for &n in &s.needs {
                    graph.add_edge(n, i, ());
                }
            }
        }
        if petgraph::algo::toposort(&graph, None).is_ok() {
            return;
        }
        for scc in petgraph::algo::tarjan_scc(&graph) {
            let cyclic = scc.len() > 1 || graph.contains_edge(scc[0], scc[0]);
            if !cyclic {
                continue;
            }
            let path = cycle_path(&graph, &scc);
            let names: Vec<&str> = path.iter().map(|&i| self.flat[i].0.id.as_str()).collect();
            let ptr = format!("{}/needs", self.flat[path[0]].1);
            self.err(ptr, format!("cycle in `needs`: {}", names.join(" -> ")));
        }
    }

    /// `.steps.X` must name a step that has ended before the expression runs.
    fn check_references(&mut self, steps: &[Option<PlannedStep>]) {
        for (i, s) in steps.iter().enumerate() {
            let Some(s) = s else { continue };
            // Fallback and compensation steps run after the DAG stopped and may read any step,
            // but what they name must exist.
            let visible: HashSet<StepIx> = if s.scope == Scope::Role {
                (0..steps.len()).collect()
            } else {
                visible_upstream(steps, i).into_iter().collect()
            };
            let ptr = self.flat[i].1.clone();
            let mut exprs: Vec<(String, StepRefs)> = Vec::new();
            if let Some(w) = &s.when {
                exprs.push((format!("{ptr}/when"), w.refs().clone()));
            }
            if let Some((e, _)) = &s.for_each {
                exprs.push((format!("{ptr}/for_each"), e.refs().clone()));
            }
            match &s.kind {
                StepKind::Tool { args, .. } => {
                    let mut parts = Vec::new();
                    args.visit_at(&format!("{ptr}/with"), &mut |p, e| parts.push((p.to_owned(), e.refs().clone())));
                    exprs.extend(parts);
                }
                StepKind::Agent { args, .. } => {
                    let mut parts = Vec::new();
                    args.visit_at(&format!("{ptr}/with"), &mut |p, e| parts.push((p.to_owned(), e.refs().clone())));
                    // The tools' calls read the same steps the agent does.
                    for (agent, j, tool) in &self.agent_tools {
                        if *agent == i
                            && let StepKind::Tool { args, .. } = &tool.kind
                        {
                            args.visit_at(&format!("{ptr}/with/tools/{j}/http"), &mut |p, e| {
                                parts.push((p.to_owned(), e.refs().clone()))
                            });
                        }
                    }
                    exprs.extend(parts);
                }
                StepKind::Transform { expr } => exprs.push((format!("{ptr}/with/expr"), expr.refs().clone())),
                StepKind::Sleep { until: Some(t), .. } => exprs.push((format!("{ptr}/with/until"), t.refs())),
                StepKind::Human { prompt, queue, .. } => {
                    exprs.push((format!("{ptr}/with/prompt"), prompt.refs()));
                    exprs.push((format!("{ptr}/with/queue"), queue.refs()));
                }
                StepKind::WaitEvent { run_key: Some(k), .. } => {
                    exprs.push((format!("{ptr}/with/correlate/run"), k.refs().clone()));
                }
                StepKind::Loop { until: Some(u), body, .. } => {
                    let mut v = visible.clone();
                    v.extend(body.iter().copied());
                    self.check_refs_against(&format!("{ptr}/loop/until"), &s.id, u.refs(), &v);
                }
                _ => {}
            }
            for (p, refs) in exprs {
                self.check_refs_against(&p, &s.id, &refs, &visible);
            }
        }
    }

    fn check_refs_against(&mut self, ptr: &str, me: &str, refs: &StepRefs, visible: &HashSet<StepIx>) {
        for id in refs.steps() {
            match self.index.get(id) {
                None => {
                    let hint = self.hint(id);
                    self.err(ptr, format!("reads `.steps.{id}`, but there is no step `{id}`{hint}"));
                }
                Some(j) if !visible.contains(j) => {
                    let msg = if id == me {
                        format!("reads its own result `.steps.{id}`")
                    } else {
                        format!("reads `.steps.{id}`, but `{id}` is not upstream of `{me}`: add it to `needs`")
                    };
                    self.err(ptr, msg);
                }
                Some(_) => {}
            }
        }
    }
}

/// Steps that have ended before step `i` starts: its transitive needs and, in a loop body, the
/// loop step's as well. Only these may be read, so a step's arguments never change after it starts.
fn visible_upstream(steps: &[Option<PlannedStep>], i: StepIx) -> Vec<StepIx> {
    let ancestors = |start: StepIx| -> HashSet<StepIx> {
        let mut seen = HashSet::new();
        let mut stack = vec![start];
        while let Some(i) = stack.pop() {
            if let Some(Some(s)) = steps.get(i) {
                for &n in &s.needs {
                    if seen.insert(n) {
                        stack.push(n);
                    }
                }
            }
        }
        seen
    };
    let mut visible = ancestors(i);
    if let Some(Some(s)) = steps.get(i)
        && let Scope::Body(l) = s.scope
    {
        visible.extend(ancestors(l));
    }
    let mut v: Vec<StepIx> = visible.into_iter().collect();
    v.sort_unstable();
    v
}

/// `rate(<n> <unit>)`, `cron(<6 fields>)` or `at(<yyyy-mm-ddThh:mm:ss>)`, as EventBridge Scheduler
/// takes them.
fn check_schedule(expr: &str) -> Result<(), String> {
    let bad =
        || format!("invalid schedule `{expr}`: write rate(5 minutes), cron(0 12 * * ? *) or at(2026-12-01T09:00:00)");
    let inner = |prefix: &str| expr.strip_prefix(prefix).and_then(|r| r.strip_suffix(')'));
    if let Some(r) = inner("rate(") {
        let (n, unit) = r.trim().split_once(' ').ok_or_else(bad)?;
        let n: u64 = n.parse().map_err(|_| bad())?;
        let ok_unit = matches!((n, unit), (1, "minute" | "hour" | "day") | (2.., "minutes" | "hours" | "days"));
        return if ok_unit { Ok(()) } else { Err(bad()) };
    }
    if let Some(r) = inner("cron(") {
        return if r.split_whitespace().count() == 6 { Ok(()) } else { Err(bad()) };
    }
    if let Some(r) = inner("at(") {
        return humantime::parse_rfc3339_weak(r).map(|_| ()).map_err(|_| bad());
    }
    Err(bad())
}

fn scope_name(scope: Scope) -> &'static str {
    match scope {
        Scope::Top => "top-level DAG",
        Scope::Body(_) => "loop body",
        Scope::Role => "fallback/compensation role",
    }
}

/// A closed path through a strongly connected component, for the error message.
fn cycle_path(graph: &DiGraphMap<StepIx, ()>, scc: &[StepIx]) -> Vec<StepIx> {
    let members: HashSet<StepIx> = scc.iter().copied().collect();
    let start = *scc.iter().min().unwrap_or(&scc[0]);
    let mut path = vec![start];
    let mut seen = HashSet::from([start]);
    let mut current = start;
    loop {
        let mut next_nodes: Vec<StepIx> = graph.neighbors(current).filter(|n| members.contains(n)).collect();
        next_nodes.sort();
        if next_nodes.contains(&start) {
            path.push(start);
            return path;
        }
        match next_nodes.into_iter().find(|n| !seen.contains(n)) {
            Some(n) => {
                seen.insert(n);
                path.push(n);
                current = n;
            }
            None => {
                path.push(start);
                return path;
            }
        }
    }
}
