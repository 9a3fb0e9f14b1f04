//! Turning a parsed definition into a [`Plan`], collecting every problem on the way.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use serde_json::Value;

use super::dag::{DagCheck, Flat, hint, visible_upstream};
use super::problems::Problems;
use super::structure::{check_structure, did_you_mean};
use super::tools::{self, StepCx, ToolSpec};
use super::types::{FALLBACK_CACHE, MAX_CONCURRENCY_LIMIT, Plan, PlannedStep, Scope, StepIx, StepKind};
use super::{items_from, loops, policy, workflow};
use crate::diagnostics::{Problem, locate};
use crate::duration::Millis;
use crate::model::{Step, Workflow};
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

struct Builder<'a> {
    wf: &'a Workflow,
    p: Problems,
    /// (step, pointer, scope) in definition order.
    flat: Vec<Flat<'a>>,
    index: HashMap<String, StepIx>,
    /// Hidden steps of agent tools, added after the DAG's steps: (agent step, tool, step).
    agent_tools: Vec<(StepIx, usize, PlannedStep)>,
    /// `workflow` steps with `continue_as_new: true`.
    continues: HashSet<StepIx>,
}

impl<'a> Builder<'a> {
    fn new(wf: &'a Workflow) -> Self {
        Self {
            wf,
            p: Problems::default(),
            flat: Vec::new(),
            index: HashMap::new(),
            agent_tools: Vec::new(),
            continues: HashSet::new(),
        }
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
                self.p.err(
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
                ("items_from", s.items_from.is_some()),
                ("loop", s.loop_.is_some()),
                ("fallback", s.fallback.is_some()),
            ] {
                if set {
                    self.p.err(
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
        let mut dag = DagCheck { p: &mut self.p, flat: &self.flat, index: &self.index, agent_tools: &self.agent_tools };
        dag.graph(&steps);
        dag.references(&steps);
        if self.p.is_empty() {
            for i in 0..steps.len() {
                let upstream = visible_upstream(&steps, i);
                if let Some(s) = steps[i].as_mut() {
                    s.upstream = upstream;
                }
            }
        }
        if wf.mesh.is_some() {
            self.p.err(
                "/mesh",
                "the mesh file is read when a workflow is loaded from its file (`baton run FILE`); this definition was loaded without it",
            );
        }
        workflow::check_triggers(wf, &mut self.p);
        workflow::check_network(wf, &mut self.p);
        workflow::check_defaults(wf, &mut self.p);
        let connections = workflow::connections(wf, &mut self.p);
        tools::check_mcp_servers(wf, &mut self.p);
        let memory = workflow::memory(wf, &mut self.p);
        let deadline = wf.deadline.as_deref().and_then(|d| self.p.duration("/deadline".to_owned(), d));
        let budget = wf.budget.as_ref().and_then(|b| workflow::run_budget(b, &mut self.p));
        let sensitive = workflow::sensitive(wf, &self.index, &mut self.p);
        let output = self.wf.output.as_deref().and_then(|src| self.p.expr("/output", src));
        if let Some(out) = &output {
            for id in out.refs().steps() {
                match self.index.get(id).map(|&i| self.flat[i].2) {
                    None => self.p.err("/output", format!("reads `.steps.{id}`, but there is no step `{id}`")),
                    Some(Scope::Body(l)) => {
                        let loop_id = self.flat[l].0.id.clone();
                        self.p.err(
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
                        let hint = hint(&self.index, target);
                        self.p.err(ptr.clone(), format!("compensates unknown step `{target}`{hint}"));
                    }
                    if u.is_none() {
                        let hint = hint(&self.index, undo);
                        self.p.err(ptr, format!("compensation step `{undo}` does not exist{hint}"));
                    }
                }
            }
        }
        let input_schema = match &wf.input_schema {
            None => None,
            Some(schema) => match jsonschema::validator_for(schema) {
                Ok(v) => Some(Arc::new(v)),
                Err(e) => {
                    self.p.err("/input_schema", format!("not a valid JSON Schema: {e}"));
                    None
                }
            },
        };
        if !self.p.is_empty() {
            return Err(self.p.into_vec());
        }
        // Agent tools: their hidden steps go after the others, and the agent learns their index.
        let mut index = self.index.clone();
        for (agent, j, step) in std::mem::take(&mut self.agent_tools) {
            let id = step.id.clone();
            index.insert(step.id.clone(), steps.len());
            steps.push(Some(step));
            let ix = steps.len() - 1;
            if let Some(Some(PlannedStep { kind: StepKind::Agent { tools, .. }, .. })) = steps.get_mut(agent)
                && let Some(t) = tools.get_mut(j)
            {
                // A tool's approval task step comes in beside its call step.
                match t.approval.as_mut().filter(|g| g.id == id) {
                    Some(gate) => gate.step = ix,
                    None => t.step = ix,
                }
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
            deadline,
            budget,
            sensitive,
        })
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
                        self.p.err(
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
            self.p.err(format!("{ptr}/id"), "a step id must be non-empty and must not contain `/ [ ] # ~` or spaces");
        }
        if self.index.contains_key(&s.id) {
            self.p.err(format!("{ptr}/id"), format!("duplicate step id `{}`", s.id));
        } else {
            self.index.insert(s.id.clone(), self.flat.len());
        }
        self.flat.push((s, ptr, scope));
    }

    fn compile_step(&mut self, i: usize) -> Option<PlannedStep> {
        let (s, ptr, scope) = (self.flat[i].0, self.flat[i].1.clone(), self.flat[i].2);
        let before = self.p.len();
        let spec = s.tool.as_deref().and_then(tools::spec);
        let needs: Vec<StepIx> = s
            .needs
            .iter()
            .enumerate()
            .filter_map(|(n, need)| {
                let np = format!("{ptr}/needs/{n}");
                match self.index.get(need).copied() {
                    None => {
                        let hint = hint(&self.index, need);
                        self.p.err(np, format!("needs unknown step `{need}`{hint}"));
                        None
                    }
                    Some(j) if self.flat[j].2 != scope && !(scope == Scope::Role && self.flat[j].2 == Scope::Top) => {
                        self.p.err(np, format!("needs `{need}`, which is not in the same {}", scope_name(scope)));
                        None
                    }
                    Some(j) => Some(j),
                }
            })
            .collect();
        let when = s.when.as_deref().and_then(|w| self.p.expr(&format!("{ptr}/when"), w));
        let timeout = match s.timeout.as_deref() {
            // A templated limit is read when each attempt starts (see `engine::limits`).
            Some(t) if t.contains("{{") => {
                self.p.template(&format!("{ptr}/timeout"), &Value::from(t)).map(super::types::Limit::Template)
            }
            Some(t) => self.p.duration(format!("{ptr}/timeout"), t).map(super::types::Limit::Fixed),
            None => None,
        };
        let retry = policy::retry_policy(&mut self.p, s, &ptr);
        let cache = s.cache.as_ref().and_then(|c| {
            if !spec.is_some_and(|t| t.cache) {
                let tools = tools_where(|t| t.cache, |n| format!("`{n}`"));
                self.p.err(format!("{ptr}/cache"), format!("`cache` keeps responses of {tools} steps"));
            } else if s.fallback.as_deref() != Some(FALLBACK_CACHE) {
                self.p.err(
                    format!("{ptr}/cache"),
                    "`cache` keeps responses for `fallback: cache`, which nothing else reads: add `fallback: cache`",
                );
            }
            self.p.duration(format!("{ptr}/cache/ttl"), &c.ttl)
        });
        let fallback = s.fallback.as_deref().and_then(|f| {
            if f == FALLBACK_CACHE {
                if s.cache.is_none() {
                    self.p.err(
                        format!("{ptr}/fallback"),
                        "`fallback: cache` serves the step's last good response: add `cache: {ttl: ...}` to the step",
                    );
                }
                if s.for_each.is_some() {
                    self.p.err(
                        format!("{ptr}/fallback"),
                        "`fallback: cache` cannot go with `for_each`: each item has its own response",
                    );
                }
                // The look-up step is added once every step is compiled.
                return None;
            }
            if f == s.id {
                self.p.err(format!("{ptr}/fallback"), "a step cannot be its own fallback");
                return None;
            }
            let ix = self.index.get(f).copied();
            if ix.is_none() {
                let hint = hint(&self.index, f);
                self.p.err(format!("{ptr}/fallback"), format!("fallback step `{f}` does not exist{hint}"));
            }
            ix
        });
        let mut concurrency_from = None;
        let for_each = s.for_each.as_deref().and_then(|src| {
            let e = self.p.expr(&format!("{ptr}/for_each"), src)?;
            match s.max_concurrency.as_ref().map(|c| match c {
                crate::model::Concurrency::Fixed(n) => Ok(*n),
                crate::model::Concurrency::Template(t) => Err(t),
            }) {
                // Read when the step starts (see `engine::progress`); bounded by the largest.
                Some(Err(t)) if !t.contains("{{") => {
                    self.p.err(
                        format!("{ptr}/max_concurrency"),
                        format!("must be a whole number from 1 to {MAX_CONCURRENCY_LIMIT} or a `{{{{ }}}}` template, got `{t}`"),
                    );
                    None
                }
                Some(Err(t)) => {
                    concurrency_from = self.p.template(&format!("{ptr}/max_concurrency"), &Value::from(t.as_str()));
                    concurrency_from.as_ref().map(|_| (e, MAX_CONCURRENCY_LIMIT))
                }
                None => {
                    self.p.err(
                        format!("{ptr}/max_concurrency"),
                        format!("`for_each` needs `max_concurrency` (1 to {MAX_CONCURRENCY_LIMIT})"),
                    );
                    None
                }
                Some(Ok(n)) if n == 0 || n > MAX_CONCURRENCY_LIMIT => {
                    self.p.err(
                        format!("{ptr}/max_concurrency"),
                        format!("must be between 1 and {MAX_CONCURRENCY_LIMIT}, got {n}"),
                    );
                    None
                }
                Some(Ok(n)) => Some((e, n)),
            }
        });
        if s.max_concurrency.is_some() && s.for_each.is_none() && s.items_from.is_none() {
            self.p.err(
                format!("{ptr}/max_concurrency"),
                "`max_concurrency` only applies with `for_each` or `items_from`",
            );
        }
        let items_from = items_from::compile(&mut self.p, s, &ptr);
        let mut escalate: Vec<(Millis, String)> = Vec::new();
        if let Some(esc) = &s.escalate {
            for (n, level) in esc.levels().iter().enumerate() {
                let p = match esc {
                    crate::model::Escalation::One(_) => format!("{ptr}/escalate/after"),
                    crate::model::Escalation::Chain(_) => format!("{ptr}/escalate/{n}/after"),
                };
                if let Some(ms) = self.p.duration(p, &level.after) {
                    escalate.push((ms, level.to.clone()));
                }
            }
            escalate.sort_by_key(|(ms, _)| *ms);
            if !spec.is_some_and(|t| t.escalate) {
                let tools = tools_where(|t| t.escalate, |n| format!("`tool: {n}`"));
                self.p.err(
                    format!("{ptr}/escalate"),
                    format!("`escalate` applies to {tools} steps (loops use `loop.escalate`)"),
                );
            }
        }
        let on_timeout = s.on_timeout.as_ref().map(|o| {
            let applies = spec.is_some_and(|t| t.on_timeout);
            if !applies {
                let tools = tools_where(|t| t.on_timeout, |n| format!("`tool: {n}`"));
                self.p.err(format!("{ptr}/on_timeout"), format!("`on_timeout` applies to {tools} steps"));
            }
            tools::human::on_timeout_answer(&mut self.p, s, &ptr, o, applies)
        });
        let kind = self.kind(s, spec, &ptr, i);
        if self.p.len() > before {
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
            concurrency_from,
            fallback,
            cache,
            for_each,
            items_from,
            escalate,
            on_timeout,
            upstream: Vec::new(),
        })
    }

    /// What the step does: a loop, or a call of its tool (compiled by the tool itself).
    fn kind(&mut self, s: &'a Step, spec: Option<&'static ToolSpec>, ptr: &str, i: StepIx) -> Option<StepKind> {
        let with = s.with.clone().unwrap_or(Value::Object(Default::default()));
        let wptr = format!("{ptr}/with");
        match (&s.tool, &s.loop_) {
            (Some(_), Some(_)) => {
                self.p.err(format!("{ptr}/loop"), "a step has either `tool` or `loop`, not both");
                None
            }
            (None, None) => {
                self.p.err(format!("{ptr}/tool"), format!("missing `tool` (one of: {})", tools::names().join(", ")));
                None
            }
            (None, Some(l)) => loops::compile(&mut self.p, s, l, ptr, i, &self.index),
            (Some(tool), None) => {
                let Some(spec) = spec else {
                    let known = tools::names();
                    let hint =
                        did_you_mean(tool, &known).map(|s| format!(" (did you mean `{s}`?)")).unwrap_or_default();
                    self.p.err(
                        format!("{ptr}/tool"),
                        format!("unknown tool `{tool}`{hint}; known tools: {}", known.join(", ")),
                    );
                    return None;
                };
                let mut cx = StepCx {
                    wf: self.wf,
                    step: s,
                    scope: self.flat[i].2,
                    ptr,
                    wptr: &wptr,
                    with: &with,
                    ids: &self.index,
                    p: &mut self.p,
                    continues: false,
                    hidden: Vec::new(),
                };
                let kind = spec.compile(&mut cx);
                let (continues, hidden) = (cx.continues, cx.hidden);
                if continues {
                    self.continues.insert(i);
                }
                self.agent_tools.extend(hidden.into_iter().map(|(j, step)| (i, j, step)));
                kind
            }
        }
    }
}

fn scope_name(scope: Scope) -> &'static str {
    match scope {
        Scope::Top => "top-level DAG",
        Scope::Body(_) => "loop body",
        Scope::Role => "fallback/compensation role",
    }
}

/// The tools a step field `applies` to, each `shown` as its message names it.
fn tools_where(applies: impl Fn(&ToolSpec) -> bool, shown: impl Fn(&str) -> String) -> String {
    let names: Vec<String> = tools::all().iter().filter(|t| applies(t)).map(|t| shown(t.name)).collect();
    tools::listed(&names)
}
