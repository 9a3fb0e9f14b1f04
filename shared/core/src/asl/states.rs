//! A state machine (the definition, a Parallel branch, or a Map's processor) into steps: ids
//! for every state first, then each state's shape (which steps it ends with, where it can go),
//! then the steps themselves, each fed by the edges into it (see [`super::flow`]).

use std::collections::{BTreeMap, HashMap};

use serde_json::{Map, Value};

use super::errors::Report;
use super::flow::{Edge, Input, after, ok, out, step, transform};
use super::naming::{Names, step_ref};
use super::paths::{Cx, json_str, literal, merge, select};
use super::payload::payload;
use super::var_ref::Reads;
use crate::model::{Connection, Step, Workflow};

/// A Map's processor, converted to a workflow of its own that the Map's step runs per item.
#[derive(Debug)]
pub(crate) struct Child {
    /// The workflow.
    pub workflow: Workflow,
    /// Comments by step id.
    pub comments: Vec<(String, String)>,
    /// The outer variables it reads, which the step running it passes in its input.
    pub outer: Vec<String>,
    /// The variables it assigns.
    pub assigned: Vec<String>,
}

/// Everything one workflow's conversion collects.
pub(crate) struct Builder<'r> {
    pub report: &'r mut Report,
    pub names: Names,
    pub steps: Vec<Step>,
    pub comments: Vec<(String, String)>,
    pub children: Vec<Child>,
    pub connections: BTreeMap<String, Connection>,
    /// The workflow's name (children are named after it).
    pub wf_name: String,
    /// In a Map processor that tolerates failures: failures end the item with a marker
    /// instead of failing it, so the Map can count them.
    pub tolerant: bool,
    /// States without their own `QueryLanguage` use JSONata (the definition says so).
    pub jsonata: bool,
    pub(super) ids: HashMap<String, String>,
    /// The steps giving the variables a state assigns, and the names each assigns.
    pub(super) assigners: Vec<super::var_ref::Assigner>,
    /// The scope (`""`, or `/Parallel/branch`...) each step was made in.
    pub(super) scope_of: HashMap<String, String>,
    /// In a child that may read its parent's variables (a Map's processor, a Parallel run as a
    /// child): the ones it reads, passed in with its input (see [`super::variables`]).
    pub(super) outer_vars: Option<Vec<String>>,
    /// In a loop's pass that carries variables: its input is always `{__asl_input, __asl_vars}`.
    pub(super) loop_pass: bool,
}

/// Where a machine's first state gets its input.
pub(crate) enum Entry {
    /// The run's input.
    Run,
    /// An edge from the step that starts a branch.
    From(Edge),
}

/// The steps a state ends with and where it can go.
#[derive(Debug, Clone, Default)]
pub(super) struct Shape {
    pub id: String,
    /// The step whose success ends the state normally and whose output (`out_ref`) is its output.
    pub exit: Option<String>,
    pub out_ref: String,
    pub next: Option<String>,
    pub end: bool,
    /// Choice targets in order (the default last).
    pub choices: Vec<String>,
    /// Steps that fall back to a catch step, and the Catch targets by catcher.
    pub catch_steps: Vec<String>,
    pub catch_targets: Vec<String>,
    /// A Map's `ItemReader` step.
    pub reader: Option<String>,
    /// The step giving the variables the state assigns (see [`super::variables`]).
    pub assign: Option<String>,
}

/// The fields every state type may have, and the ones of each type.
const COMMON: &[&str] = &["Type", "Comment", "QueryLanguage"];

fn known_fields(ty: &str) -> &'static [&'static str] {
    match ty {
        "Pass" => &["Next", "End", "InputPath", "OutputPath", "Parameters", "Result", "ResultPath", "Assign"],
        "Task" => &[
            "Next",
            "End",
            "InputPath",
            "OutputPath",
            "Parameters",
            "ResultSelector",
            "ResultPath",
            "Retry",
            "Catch",
            "Resource",
            "TimeoutSeconds",
            "HeartbeatSeconds",
            "TimeoutSecondsPath",
            "HeartbeatSecondsPath",
            "Assign",
            "Credentials",
        ],
        "Choice" => &["Choices", "Default", "InputPath", "OutputPath", "Assign"],
        "Wait" => &[
            "Next",
            "End",
            "InputPath",
            "OutputPath",
            "Seconds",
            "Timestamp",
            "SecondsPath",
            "TimestampPath",
            "Assign",
        ],
        "Succeed" => &["InputPath", "OutputPath"],
        "Fail" => &["Error", "Cause", "ErrorPath", "CausePath"],
        "Parallel" => &[
            "Next",
            "End",
            "InputPath",
            "OutputPath",
            "Parameters",
            "ResultSelector",
            "ResultPath",
            "Branches",
            "Retry",
            "Catch",
            "Assign",
        ],
        "Map" => &[
            "Next",
            "End",
            "InputPath",
            "OutputPath",
            "Parameters",
            "ResultSelector",
            "ResultPath",
            "Retry",
            "Catch",
            "Iterator",
            "ItemProcessor",
            "ItemsPath",
            "ItemSelector",
            "ItemReader",
            "ResultWriter",
            "ItemBatcher",
            "MaxConcurrency",
            "ToleratedFailurePercentage",
            "ToleratedFailureCount",
            "ToleratedFailurePercentagePath",
            "ToleratedFailureCountPath",
            "MaxConcurrencyPath",
            "Label",
            "Assign",
        ],
        _ => &[],
    }
}

impl<'r> Builder<'r> {
    /// A builder for workflow `wf_name`.
    pub fn new(report: &'r mut Report, wf_name: String, tolerant: bool) -> Self {
        Builder {
            report,
            names: Names::default(),
            steps: Vec::new(),
            comments: Vec::new(),
            children: Vec::new(),
            connections: BTreeMap::new(),
            wf_name,
            tolerant,
            jsonata: false,
            ids: HashMap::new(),
            assigners: Vec::new(),
            scope_of: HashMap::new(),
            outer_vars: None,
            loop_pass: false,
        }
    }

    /// Claims the ids of every state of `m` and of its Parallel branches, in the order written,
    /// before any helper step takes one.
    pub fn claim_states(&mut self, m: &Map<String, Value>, scope: &str) {
        let Some(states) = m.get("States").and_then(Value::as_object) else { return };
        for (name, st) in states {
            let id = self.names.claim(name);
            self.ids.insert(format!("{scope}/{name}"), id);
            if st.get("Type").and_then(Value::as_str) == Some("Parallel") {
                for (i, b) in st.get("Branches").and_then(Value::as_array).into_iter().flatten().enumerate() {
                    if let Some(b) = b.as_object() {
                        self.claim_states(b, &format!("{scope}/{name}/{i}"));
                    }
                }
            }
        }
    }

    fn err(&mut self, state: &str, field: impl Into<String>, message: impl Into<String>) {
        self.report.err(Some(state), field, message);
    }

    pub(super) fn errs(&mut self, state: &str, errs: Vec<(String, String)>) {
        for (f, m) in errs {
            self.err(state, f, m);
        }
    }

    pub(super) fn note(&mut self, id: &str, text: String) {
        self.report.warnings.push(format!("step `{id}`: {text}"));
        self.comments.push((id.to_owned(), format!("note: {text}")));
    }

    /// Converts machine `m` (states under `scope`), entered by `entry`; returns the edges out of
    /// its end states.
    pub fn machine(&mut self, m: &Map<String, Value>, scope: &str, entry: Entry) -> Vec<Edge> {
        let lifted = self.lift_loops(m, scope);
        let m = lifted.as_ref().unwrap_or(m);
        let (Some(states), Some(start)) =
            (m.get("States").and_then(Value::as_object), m.get("StartAt").and_then(Value::as_str))
        else {
            self.report.err(None, format!("{scope}/StartAt"), "a state machine needs `StartAt` and `States`");
            return Vec::new();
        };
        if !states.contains_key(start) {
            self.report.err(None, format!("{scope}/StartAt"), format!("no state \"{start}\" in `States`"));
            return Vec::new();
        }
        self.cycles(states, start);
        let shapes: Vec<(String, Shape)> = states.iter().map(|(n, st)| (n.clone(), self.shape(n, st, scope))).collect();
        let mut incoming: HashMap<String, Vec<Edge>> = HashMap::new();
        let mut ends = Vec::new();
        for (name, shape) in &shapes {
            for e in self.edges(name, shape) {
                if e.to.is_empty() {
                    ends.push(e);
                } else if states.contains_key(&e.to) {
                    incoming.entry(e.to.clone()).or_default().push(e);
                } else {
                    self.err(name, "Next", format!("no state \"{}\" in this machine", e.to));
                }
            }
        }
        let first_step = self.steps.len();
        for (name, shape) in shapes {
            let st = &states[&name];
            let input = if name == start {
                match &entry {
                    Entry::Run => Input { raw: self.run_input(), when: None, needs: Vec::new() },
                    Entry::From(e) => Input::from_edges(std::slice::from_ref(e)),
                }
            } else {
                match incoming.get(&name) {
                    Some(edges) => Input::from_edges(edges),
                    None => {
                        self.err(&name, "Type", "no state leads here: the state is unreachable");
                        continue;
                    }
                }
            };
            self.state(&name, st, &shape, input, scope);
        }
        // A branch's machine marks its steps first: the rest are this scope's.
        for st in &self.steps[first_step..] {
            self.scope_of.entry(st.id.clone()).or_insert_with(|| scope.to_owned());
        }
        ends
    }

    /// Reports every transition that loops back in a cycle [`Builder::lift_loops`] left: one
    /// entered at more than one state.
    fn cycles(&mut self, states: &Map<String, Value>, start: &str) {
        let mut state: HashMap<String, u8> = HashMap::new();
        let mut stack = vec![(start.to_owned(), 0usize)];
        state.insert(start.to_owned(), 1);
        while let Some((node, i)) = stack.pop() {
            let ts = states.get(&node).map(super::internal::targets).unwrap_or_default();
            if let Some(t) = ts.get(i) {
                stack.push((node.clone(), i + 1));
                match state.get(t) {
                    Some(1) => self.err(
                        &node,
                        "Next",
                        format!(
                            "goes back to \"{t}\", a loop entered at more than one state: baton converts a loop \
                             entered at one state only (write it as a `loop` step by hand, or give the loop one entry)"
                        ),
                    ),
                    Some(_) => {}
                    None if states.contains_key(t) => {
                        state.insert(t.clone(), 1);
                        stack.push((t.clone(), 0));
                    }
                    None => {}
                }
            } else {
                state.insert(node, 2);
            }
        }
    }

    pub(super) fn claim(&mut self, id: &str, suffix: &str) -> String {
        self.names.claim(&format!("{id}_{suffix}"))
    }

    fn shape(&mut self, name: &str, st: &Value, scope: &str) -> Shape {
        let id = self.ids.get(&format!("{scope}/{name}")).cloned().unwrap_or_else(|| self.names.claim(name));
        let ty = st.get("Type").and_then(Value::as_str).unwrap_or("");
        let mut s = Shape {
            id: id.clone(),
            next: st.get("Next").and_then(Value::as_str).map(str::to_owned),
            end: st.get("End").and_then(Value::as_bool).unwrap_or(false),
            ..Shape::default()
        };
        if self.internal_shape(ty, st, &mut s) {
            if let Some(exit) = &s.exit {
                // A loop routes like a Choice: its exit step gives `{next, output}`.
                let routes = [super::internal::LOOP, super::internal::ENTER].contains(&ty);
                s.out_ref = if routes { format!("{}.output", out(exit)) } else { out(exit) };
            }
            return s;
        }
        let has = |k: &str| st.get(k).is_some();
        let post_fields = has("ResultSelector") || has("ResultPath") || has("OutputPath") || has("Output");
        match ty {
            "Pass" | "Succeed" => s.exit = Some(id.clone()),
            "Choice" => {
                s.exit = Some(id.clone());
                for c in st.get("Choices").and_then(Value::as_array).into_iter().flatten() {
                    if let Some(n) = c.get("Next").and_then(Value::as_str) {
                        s.choices.push(n.to_owned());
                    }
                }
                if let Some(d) = st.get("Default").and_then(Value::as_str) {
                    s.choices.push(d.to_owned());
                }
            }
            "Wait" => s.exit = Some(self.claim(&id, "out")),
            "Fail" if self.tolerant => {
                s.exit = Some(id.clone());
                s.end = true;
            }
            "Task" => {
                let resource = st.get("Resource").and_then(Value::as_str).unwrap_or("");
                let callback = resource.ends_with(".waitForTaskToken");
                let direct_lambda = !resource.starts_with("arn:aws:states:");
                let reshaped = direct_lambda
                    || resource.contains(".sync")
                    || resource.contains(":http:invoke")
                    || resource.contains(":apigateway:invoke");
                s.catch_steps.push(id.clone());
                if callback {
                    let wait = self.claim(&id, "callback");
                    let post = self.claim(&id, "out");
                    s.catch_steps.extend([wait, post.clone()]);
                    s.exit = Some(post);
                } else if reshaped || post_fields {
                    s.exit = Some(self.claim(&id, "out"));
                } else {
                    s.exit = Some(id.clone());
                }
            }
            "Parallel" => {
                // With Retry or Catch the branches run as a child run, which fails (and is
                // retried or caught) as a whole, as Step Functions fails the state.
                if has("Retry") || has("Catch") {
                    s.catch_steps.push(id.clone());
                }
                s.exit = Some(self.claim(&id, "out"));
            }
            "Map" if st.as_object().is_some_and(super::map::is_distributed) => {
                // Reading, batching, tolerance and writing all happen in the one `items_from`
                // step; the exit step gives Step Functions' output shape.
                s.catch_steps.push(id.clone());
                s.exit = Some(self.claim(&id, "out"));
            }
            "Map" => {
                if has("ItemReader") {
                    let items = self.claim(&id, "items");
                    s.catch_steps.push(items.clone());
                    s.reader = Some(items);
                }
                s.catch_steps.push(id.clone());
                let tolerates = ["ToleratedFailurePercentage", "ToleratedFailureCount"]
                    .iter()
                    .any(|k| has(k) || has(&format!("{k}Path")));
                if post_fields || tolerates {
                    let post = self.claim(&id, "out");
                    if tolerates {
                        s.catch_steps.push(post.clone());
                    }
                    s.exit = Some(post);
                } else {
                    s.exit = Some(id.clone());
                }
            }
            _ => {}
        }
        if let Some(exit) = &s.exit {
            s.out_ref = if ty == "Choice" { format!("{}.output", out(exit)) } else { out(exit) };
        }
        for c in st.get("Catch").and_then(Value::as_array).into_iter().flatten() {
            s.catch_targets.push(c.get("Next").and_then(Value::as_str).unwrap_or("").to_owned());
        }
        if ty == "Succeed" {
            s.end = true;
        }
        if s.exit.is_some() && !matches!(ty, "Succeed" | "Fail") && super::var_ref::assigns(st) {
            s.assign = Some(self.claim(&id, "assign"));
        }
        s
    }

    fn edges(&mut self, name: &str, s: &Shape) -> Vec<Edge> {
        let mut out_edges = Vec::new();
        // The states after this one read the variables it assigns: they wait for them too.
        // Their condition reads the assign step's status too, so that its skip (the state did
        // not run) does not skip them when another way in was taken.
        let exit_needs = |exit: &String| {
            let mut needs = vec![exit.clone()];
            needs.extend(s.assign.clone());
            needs
        };
        let taken = |cond: String| match &s.assign {
            Some(a) => format!("({cond} and {})", ok(a)),
            None => cond,
        };
        if let Some(exit) = &s.exit {
            if s.choices.is_empty() {
                if let Some(next) = &s.next {
                    out_edges.push(Edge {
                        to: next.clone(),
                        cond: taken(ok(exit)),
                        value: s.out_ref.clone(),
                        needs: exit_needs(exit),
                    });
                } else if s.end {
                    out_edges.push(Edge {
                        to: String::new(),
                        cond: taken(ok(exit)),
                        value: s.out_ref.clone(),
                        needs: exit_needs(exit),
                    });
                }
                if s.next.is_some() && s.end {
                    self.err(name, "End", "a state has `Next` or `End: true`, not both");
                }
            }
            let mut seen = Vec::new();
            for t in &s.choices {
                if seen.contains(t) {
                    continue;
                }
                seen.push(t.clone());
                let cond = format!("({} and {}.next == {})", ok(exit), out(exit), json_str(t));
                out_edges.push(Edge {
                    to: t.clone(),
                    cond: taken(cond),
                    value: s.out_ref.clone(),
                    needs: exit_needs(exit),
                });
            }
        }
        for (i, t) in s.catch_targets.iter().enumerate() {
            for x in &s.catch_steps {
                let cond = format!("({}.status == \"fell_back\" and {}.catch == {i})", step_ref(x), out(x));
                out_edges.push(Edge {
                    to: t.clone(),
                    cond,
                    value: format!("{}.output", out(x)),
                    needs: vec![x.clone()],
                });
            }
        }
        if self.tolerant {
            for x in &s.catch_steps {
                let cond = format!("({}.status == \"fell_back\" and {}.catch == -1)", step_ref(x), out(x));
                let value = format!("{{\"__asl_failed\": {}.output}}", out(x));
                out_edges.push(Edge { to: String::new(), cond, value, needs: vec![x.clone()] });
            }
        }
        out_edges
    }

    fn state(&mut self, name: &str, st: &Value, shape: &Shape, input: Input, scope: &str) {
        let Some(m) = st.as_object() else {
            self.err(name, "Type", "a state is an object");
            return;
        };
        let ty = m.get("Type").and_then(Value::as_str).unwrap_or("");
        if super::internal::ALL.contains(&ty) {
            self.internal_state(name, ty, st, shape, input);
            return;
        }
        let jsonata = match m.get("QueryLanguage").and_then(Value::as_str) {
            Some("JSONata") => true,
            Some("JSONPath") => false,
            _ => self.jsonata,
        };
        let known = if jsonata { super::jsonata::state_fields(ty) } else { known_fields(ty) };
        if known.is_empty() {
            self.err(
                name,
                "Type",
                format!("unknown state type `{ty}` (Task, Choice, Parallel, Map, Wait, Pass, Succeed, Fail)"),
            );
            return;
        }
        for k in m.keys() {
            if COMMON.contains(&k.as_str()) || known.contains(&k.as_str()) {
                continue;
            }
            let why = match k.as_str() {
                "Assign" => "a Succeed or Fail state assigns no variables",
                "Arguments" | "Output" => "JSONata fields cannot be converted yet: write the state in JSONPath",
                "ResultWriter" => "a Map writes its results to S3 (`ResultWriter`) only with an `ItemReader`",
                _ => "this field is not part of the state type, or cannot be converted",
            };
            self.err(name, k.clone(), why);
        }
        if !matches!(ty, "Choice" | "Succeed" | "Fail") && shape.next.is_none() && !shape.end {
            self.err(name, "Next", "the state needs `Next` or `End: true`");
        }
        self.comments.push((shape.id.clone(), format!("state \"{name}\" ({ty})")));
        if jsonata {
            match ty {
                "Task" => self.task(name, m, shape, input, true),
                "Parallel" => self.parallel(name, m, shape, input, scope, true),
                "Map" => self.map(name, m, shape, input, true),
                _ => self.jsonata_state(name, ty, m, shape, input),
            }
            return;
        }
        match ty {
            "Pass" => self.pass(name, m, shape, input),
            "Choice" => self.choice(name, m, shape, input),
            "Wait" => self.wait(name, m, shape, input),
            "Succeed" => {
                let cx = cx(name);
                let mut errs = Vec::new();
                let expr = format!(
                    "({}) as $raw | ({}) as $in | {}",
                    input.raw,
                    sel(m, "InputPath", "$raw", &cx, &mut errs),
                    sel(m, "OutputPath", "$in", &cx, &mut errs)
                );
                self.errs(name, errs);
                self.steps.push(transform(&shape.id, expr, &input));
            }
            "Fail" => self.fail(name, m, shape, input),
            "Task" => self.task(name, m, shape, input, false),
            "Parallel" => self.parallel(name, m, shape, input, scope, false),
            "Map" => self.map(name, m, shape, input, false),
            _ => {}
        }
    }

    fn pass(&mut self, name: &str, m: &Map<String, Value>, shape: &Shape, input: Input) {
        let cx = cx(name);
        let mut errs = Vec::new();
        let eff = sel(m, "InputPath", "$raw", &cx, &mut errs);
        let result = match (m.get("Parameters"), m.get("Result")) {
            (Some(p), _) => payload(p, "$in", &cx, "Parameters", &mut errs),
            (None, Some(r)) => literal(r),
            (None, None) => "$in".into(),
        };
        let merged = merge(m.get("ResultPath"), "$raw", "$r").unwrap_or_else(|e| {
            errs.push(("ResultPath".into(), e));
            "$raw".into()
        });
        let output = sel(m, "OutputPath", "$o", &cx, &mut errs);
        self.errs(name, errs);
        let expr = format!("({}) as $raw | ({eff}) as $in | ({result}) as $r | ({merged}) as $o | {output}", input.raw);
        self.steps.push(transform(&shape.id, expr, &input));
        let prefix = format!("({}) as $raw | ({eff}) as $in | ({result}) as $r |", input.raw);
        let reads = Reads { dollar: "$r", input: "$raw", result: None, error_output: None };
        self.assign_step(name, m, shape, &prefix, &reads, false);
    }

    fn choice(&mut self, name: &str, m: &Map<String, Value>, shape: &Shape, input: Input) {
        let cx = cx(name);
        let mut errs = Vec::new();
        let eff = sel(m, "InputPath", "$raw", &cx, &mut errs);
        let output = sel(m, "OutputPath", "$in", &cx, &mut errs);
        let rules = super::choice::choices(m, &cx, &mut errs);
        self.errs(name, errs);
        let head = format!("({}) as $raw | ({eff}) as $in | ", input.raw);
        // `rule` (the index of the rule that matched, -1 for the default) tells the Choice's
        // `Assign` step which assignment to make.
        let default = match m.get("Default").and_then(Value::as_str) {
            Some(d) => format!("{{next: {}, output: $out, rule: -1}}", json_str(d)),
            None => super::paths::raise(
                "\"States.NoChoiceMatched\"",
                &json_str(&format!("no choice rule of \"{name}\" matched")),
            ),
        };
        let prefix = format!("({}) as $raw | ({eff}) as $in |", input.raw);
        let reads = Reads { dollar: "$in", input: "$raw", result: None, error_output: None };
        self.assign_step(name, m, shape, &prefix, &reads, false);
        let mut body = format!("({output}) as $out | ");
        for (i, (cond, target)) in rules.iter().enumerate() {
            body.push_str(if i == 0 { "if " } else { " elif " });
            body.push_str(&format!("{cond} then {{next: {}, output: $out, rule: {i}}}", json_str(target)));
        }
        body.push_str(&if rules.is_empty() { default.clone() } else { format!(" else {default} end") });
        let whole = format!("{}{head}{body}", super::choice::defs(&body));
        if fits(&whole) {
            self.steps.push(transform(&shape.id, whole, &input));
            return;
        }
        // Too large for one expression: the rules are tried in groups, each giving the index of
        // its first matching rule, and the Choice's step takes the first group that matched.
        let mut groups: Vec<Vec<usize>> = vec![Vec::new()];
        let mut size = head.len();
        for (i, (cond, _)) in rules.iter().enumerate() {
            let (len, ops) = weight(cond);
            let last = groups.last().map(Vec::len).unwrap_or(0);
            if last > 0 && (size + len > 3000 || ops_of(&groups, &rules) + ops > 200) {
                groups.push(Vec::new());
                size = head.len();
            }
            size += len + 40;
            if let Some(g) = groups.last_mut() {
                g.push(i);
            }
        }
        let mut ids = Vec::new();
        for (k, g) in groups.iter().enumerate() {
            let gid = self.names.claim(&format!("{}_rules{}", shape.id, k + 1));
            let mut e = String::new();
            for (j, i) in g.iter().enumerate() {
                e.push_str(if j == 0 { "if " } else { " elif " });
                e.push_str(&format!("{} then {i}", rules[*i].0));
            }
            e.push_str(" else null end");
            let expr = format!("{}{head}{e}", super::choice::defs(&e));
            self.steps.push(transform(&gid, expr, &input));
            self.comments
                .push((gid.clone(), format!("state \"{name}\": choice rules {} to {}", g[0] + 1, g[g.len() - 1] + 1)));
            ids.push(gid);
        }
        let targets: Vec<String> = rules.iter().map(|(_, t)| json_str(t)).collect();
        let hits: Vec<String> = ids.iter().map(|i| out(i)).collect();
        let expr = format!(
            "{head}({output}) as $out | ([{}] | map(select(. != null)) | .[0]) as $i \
             | if $i == null then {default} else {{next: ([{}][$i]), output: $out, rule: $i}} end",
            hits.join(", "),
            targets.join(", ")
        );
        let when = ids.iter().map(|i| ok(i)).collect::<Vec<_>>().join(" and ");
        self.steps.push(transform(&shape.id, expr, &Input { raw: String::new(), when: Some(when), needs: ids }));
    }

    fn wait(&mut self, name: &str, m: &Map<String, Value>, shape: &Shape, input: Input) {
        let cx = cx(name);
        let mut errs = Vec::new();
        let eff = sel(m, "InputPath", &format!("({})", input.raw), &cx, &mut errs);
        let with = match (m.get("Seconds"), m.get("Timestamp"), m.get("SecondsPath"), m.get("TimestampPath")) {
            (Some(s), None, None, None) => match s.as_u64() {
                Some(n) => serde_json::json!({"for": format!("{n}s")}),
                None => {
                    errs.push(("Seconds".into(), "a whole number of seconds".into()));
                    Value::Null
                }
            },
            (None, Some(Value::String(t)), None, None) => serde_json::json!({"until": t}),
            (None, None, Some(Value::String(p)), None) => match super::paths::path(p, &eff, &cx) {
                Ok(e) => serde_json::json!({"for": format!("{{{{ {e} }}}}s")}),
                Err(e) => {
                    errs.push(("SecondsPath".into(), e));
                    Value::Null
                }
            },
            (None, None, None, Some(Value::String(p))) => match super::paths::path(p, &eff, &cx) {
                Ok(e) => serde_json::json!({"until": format!("{{{{ {e} }}}}")}),
                Err(e) => {
                    errs.push(("TimestampPath".into(), e));
                    Value::Null
                }
            },
            _ => {
                errs.push((
                    "Seconds".into(),
                    "a Wait has exactly one of Seconds, Timestamp, SecondsPath, TimestampPath".into(),
                ));
                Value::Null
            }
        };
        let output = sel(m, "OutputPath", "$in", &cx, &mut errs);
        let eff_raw = sel(m, "InputPath", "$raw", &cx, &mut errs);
        self.errs(name, errs);
        self.steps.push(step(&shape.id, "sleep", with, &input));
        if let Some(exit) = &shape.exit {
            let expr = format!("({}) as $raw | ({eff_raw}) as $in | {output}", input.raw);
            self.steps.push(transform(exit, expr, &after(&shape.id, &input.raw)));
            self.comments.push((exit.clone(), format!("state \"{name}\": its output once the wait is over")));
        }
        let prefix = format!("({}) as $raw | ({eff_raw}) as $in |", input.raw);
        self.assign_step(
            name,
            m,
            shape,
            &prefix,
            &Reads { dollar: "$in", input: "$raw", result: None, error_output: None },
            false,
        );
    }

    fn fail(&mut self, name: &str, m: &Map<String, Value>, shape: &Shape, input: Input) {
        let cx = cx(name);
        let mut errs = Vec::new();
        let field =
            |lit: &str, path: &str, default: &str, errs: &mut Vec<(String, String)>| match (m.get(lit), m.get(path)) {
                (Some(v), _) => literal(v),
                (None, Some(Value::String(p))) => super::paths::path(p, "$raw", &cx).unwrap_or_else(|e| {
                    errs.push((path.to_owned(), e));
                    "null".into()
                }),
                _ => json_str(default),
            };
        let error = field("Error", "ErrorPath", "States.Fail", &mut errs);
        let cause = field("Cause", "CausePath", "", &mut errs);
        self.errs(name, errs);
        let expr = if self.tolerant {
            format!("({}) as $raw | {{\"__asl_failed\": {{Error: {error}, Cause: {cause}}}}}", input.raw)
        } else {
            format!("({}) as $raw | {}", input.raw, super::paths::raise(&error, &cause))
        };
        self.steps.push(transform(&shape.id, expr, &input));
    }

    /// A step computing the raw input once when several ways lead in (so the call's templates
    /// and its result step read one value), else the input as it is.
    pub(super) fn single_input(&mut self, id: &str, name: &str, input: Input) -> Input {
        if input.needs.len() <= 1 {
            return input;
        }
        let pre = self.names.claim(&format!("{id}_in"));
        self.steps.push(transform(&pre, input.raw.clone(), &input));
        self.comments.push((pre.clone(), format!("state \"{name}\": its input, from whichever state led here")));
        after(&pre, &out(&pre))
    }

    /// `ResultSelector`, `ResultPath` and `OutputPath` on result `$r0` and raw input `$raw`.
    pub(super) fn post(&self, m: &Map<String, Value>, cx: &Cx<'_>, errs: &mut Vec<(String, String)>) -> String {
        // Only a JSONata state has `Output` (a JSONPath one is refused it); without one, its
        // output is its result, as JSONPath's defaults give.
        if let Some(o) = m.get("Output") {
            let vars = super::jsonata::Vars { input: "$raw", result: Some("$r0"), cx, error_output: None };
            return super::jsonata::template(o, &vars, "Output", errs);
        }
        let selected = match m.get("ResultSelector") {
            Some(rs) => payload(rs, "$r0", cx, "ResultSelector", errs),
            None => "$r0".into(),
        };
        let merged = merge(m.get("ResultPath"), "$raw", "$r").unwrap_or_else(|e| {
            errs.push(("ResultPath".into(), e));
            "$raw".into()
        });
        let output = sel(m, "OutputPath", "$o", cx, errs);
        format!("({selected}) as $r | ({merged}) as $o | {output}")
    }

    fn task(&mut self, name: &str, m: &Map<String, Value>, shape: &Shape, input: Input, jsonata: bool) {
        let id = shape.id.clone();
        let input = self.single_input(&id, name, input);
        // The run's nonce makes the token one nobody can make up from the run id and state name.
        let token = format!("(.run.id + \":\" + .run.nonce + \":\" + {})", json_str(&id));
        let resource = m.get("Resource").and_then(Value::as_str).unwrap_or("");
        let callback = resource.ends_with(".waitForTaskToken");
        let cx = Cx { state: name, token: callback.then_some(token.as_str()), map_item: false };
        let mut errs = Vec::new();
        let eff = sel(m, "InputPath", &format!("({})", input.raw), &cx, &mut errs);
        let params = if jsonata {
            let vars = super::jsonata::Vars { input: &eff, result: None, cx: &cx, error_output: None };
            m.get("Arguments").map(|p| super::jsonata::with_value(p, &vars, "Arguments", &mut errs))
        } else {
            m.get("Parameters").map(|p| super::tasks::template(p, &eff, &cx, "Parameters", &mut errs))
        };
        let call = match super::tasks::call(resource, params, &eff) {
            Ok(c) => c,
            Err(e) => {
                errs.push(("Resource".into(), e));
                self.errs(name, errs);
                return;
            }
        };
        let mut with = call.with;
        // `Credentials`: the role the call is made as (an `aws` step's `role_arn`).
        if let Some(c) = m.get("Credentials") {
            match super::tasks::role_arn(c, &eff, &cx, jsonata, &mut errs) {
                Some(role) if call.tool == "aws" && with.is_object() => {
                    if let Some(w) = with.as_object_mut() {
                        w.insert("role_arn".into(), role);
                    }
                }
                Some(_) => errs.push((
                    "Credentials".into(),
                    "`Credentials` converts on AWS service calls only (an `aws` step's `role_arn`)".into(),
                )),
                None => {}
            }
        }
        let mut s = step(&id, call.tool, with, &input);
        if let Some(r) = m.get("Retry") {
            s.retry = super::retry::retry(r, &mut errs);
        }
        // `TimeoutSeconds`/`HeartbeatSeconds`, or their `…Path` read from the effective input
        // when the task starts.
        let limit = |k: &str, errs: &mut Vec<(String, String)>| {
            let path_key = format!("{k}Path");
            match (m.get(k), m.get(&path_key)) {
                (Some(_), Some(_)) => {
                    errs.push((path_key, format!("a state sets `{k}` or `{k}Path`, not both")));
                    None
                }
                (Some(t), None) => Some(Secs::Fixed(t.as_u64().filter(|n| *n > 0).unwrap_or_else(|| {
                    errs.push((k.into(), "a whole number of seconds above 0".into()));
                    1
                }))),
                (None, Some(Value::String(p))) => match super::paths::path(p, &eff, &cx) {
                    Ok(jq) => Some(Secs::Path(jq)),
                    Err(e) => {
                        errs.push((path_key, e));
                        None
                    }
                },
                (None, Some(_)) => {
                    errs.push((path_key, "a reference path such as `$.timeout`".into()));
                    None
                }
                (None, None) => None,
            }
        };
        let timeout = limit("TimeoutSeconds", &mut errs);
        let heartbeat = limit("HeartbeatSeconds", &mut errs);
        if !callback {
            // A call sends no heartbeats: going a heartbeat without finishing fails it, as in
            // Step Functions, so the tighter of the two limits it.
            s.timeout = match (&timeout, &heartbeat) {
                (Some(t), Some(h)) => Some(t.min(h).dsl()),
                (t, h) => t.as_ref().or(h.as_ref()).map(Secs::dsl),
            };
            if heartbeat.is_some() {
                self.note(&id, "HeartbeatSeconds limits the call like a timeout: a call sends no heartbeats".into());
            }
        }
        if let Some((cname, conn)) = call.connection {
            self.connections.insert(cname, conn);
        }
        self.steps.push(s);
        let (source, last) = if callback {
            let wait = shape.catch_steps[1].clone();
            let mut with = serde_json::json!({
                "pattern": {"source": ["baton.callback"], "detail-type": ["TaskSuccess", "TaskFailure"]},
                "correlate": {"event": ".detail.taskToken", "run": token},
            });
            // A path reads the task's effective input, which the wait step sees too.
            if let Some(h) = &heartbeat {
                with["heartbeat"] = serde_json::json!({
                    "timeout": h.dsl(),
                    "pattern": {"source": ["baton.callback"], "detail-type": ["TaskHeartbeat"]},
                });
            }
            let mut w = step(&wait, "wait_event", with, &after(&id, &input.raw));
            w.timeout = timeout.as_ref().map(Secs::dsl);
            self.steps.push(w);
            self.comments.push((wait.clone(), format!("state \"{name}\": waits for the callback with its task token")));
            let decode = format!(
                "({}.output) as $ev | if $ev[\"detail-type\"] == \"TaskFailure\" then \
                 {} \
                 else ($ev.detail.output | if type == \"string\" then (try fromjson catch .) else . end) end",
                step_ref(&wait),
                super::paths::raise("($ev.detail.error // \"States.TaskFailed\")", "($ev.detail.cause // \"\")")
            );
            (decode, wait)
        } else {
            (format!("{} | {}", out(&id), call.result), id.clone())
        };
        if let Some(exit) = shape.exit.clone().filter(|e| *e != id) {
            let post = if jsonata {
                let vars = super::jsonata::Vars { input: "$raw", result: Some("$r0"), cx: &cx, error_output: None };
                m.get("Output")
                    .map_or_else(|| "$r0".to_owned(), |o| super::jsonata::template(o, &vars, "Output", &mut errs))
            } else {
                self.post(m, &cx, &mut errs)
            };
            let expr = format!("({}) as $raw | ({source}) as $r0 | {post}", input.raw);
            self.steps.push(transform(&exit, expr, &after(&last, &input.raw)));
            self.comments.push((exit.clone(), format!("state \"{name}\": its result and output")));
        }
        self.errs(name, errs);
        let binds = format!("({}) as $raw | ({source}) as $r0 |", input.raw);
        self.assign_result(name, m, shape, &binds, jsonata);
        self.wire_catches(name, m, &shape.catch_steps, shape.reader.as_deref(), false, &input.raw);
    }
}

/// A task's limit in seconds: a number, or jq reading a `…SecondsPath` when the task starts.
enum Secs {
    Fixed(u64),
    Path(String),
}

impl Secs {
    /// As baton's `timeout` (or `heartbeat.timeout`) writes it: a duration, or a template.
    fn dsl(&self) -> String {
        match self {
            Secs::Fixed(n) => format!("{n}s"),
            Secs::Path(jq) => format!("{{{{ {jq} }}}}"),
        }
    }

    /// The tighter of two limits.
    fn min(&self, other: &Secs) -> Secs {
        let jq = |s: &Secs| match s {
            Secs::Fixed(n) => n.to_string(),
            Secs::Path(p) => format!("({p})"),
        };
        match (self, other) {
            (Secs::Fixed(a), Secs::Fixed(b)) => Secs::Fixed(*a.min(b)),
            (a, b) => Secs::Path(format!("[{}, {}] | min", jq(a), jq(b))),
        }
    }
}

pub(super) fn cx(name: &str) -> Cx<'_> {
    Cx { state: name, token: None, map_item: false }
}

/// `InputPath`/`OutputPath` field `key` of `m` on `input`, problems to `errs`.
pub(super) fn sel(
    m: &Map<String, Value>,
    key: &str,
    input: &str,
    cx: &Cx<'_>,
    errs: &mut Vec<(String, String)>,
) -> String {
    select(m.get(key), input, cx).unwrap_or_else(|e| {
        errs.push((key.to_owned(), e));
        input.to_owned()
    })
}

/// Whether an expression is within baton's limits (4,096 bytes, 256 operator characters), with
/// room to spare.
fn fits(expr: &str) -> bool {
    let (len, ops) = weight(expr);
    len <= 4000 && ops <= 250
}

/// An expression's length and operator characters, counted the way validation counts them.
fn weight(expr: &str) -> (usize, usize) {
    (expr.len(), expr.chars().filter(|c| "|,+-*/%<>=".contains(*c)).count())
}

fn ops_of(groups: &[Vec<usize>], rules: &[(String, String)]) -> usize {
    groups.last().map(|g| g.iter().map(|i| weight(&rules[*i].0).1 + 2).sum()).unwrap_or(0)
}
