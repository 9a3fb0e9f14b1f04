//! Parallel and Map states: branches joined in order, a Parallel with Retry or Catch run as a
//! child workflow, and a Map's processor run per item as a child workflow.

use serde_json::{Map, Value};

use super::flow::{Edge, Input, after, choose, ok, out, step, transform};
use super::paths::Cx;
use super::payload::payload_in;
use super::states::{Builder, Entry, Shape, cx, sel};
use crate::model::Concurrency;

impl Builder<'_> {
    pub(super) fn parallel(
        &mut self,
        name: &str,
        m: &Map<String, Value>,
        shape: &Shape,
        input: Input,
        scope: &str,
        jsonata: bool,
    ) {
        if m.contains_key("Retry") || m.contains_key("Catch") {
            self.parallel_child(name, m, shape, input, jsonata);
            return;
        }
        let id = shape.id.clone();
        let cx = cx(name);
        let mut errs = Vec::new();
        let eff = sel(m, "InputPath", "$raw", &cx, &mut errs);
        let branch_in = match args(m, jsonata) {
            Some((field, p)) => payload_in(jsonata, p, "$in", &cx, field, &mut errs),
            None => "$in".into(),
        };
        let expr = format!("({}) as $raw | ({eff}) as $in | {{raw: $raw, in: {branch_in}}}", input.raw);
        self.steps.push(transform(&id, expr, &input));
        let branches: Vec<Value> = m.get("Branches").and_then(Value::as_array).cloned().unwrap_or_default();
        if branches.is_empty() {
            errs.push(("Branches".into(), "a Parallel state needs at least one branch".into()));
        }
        let mut results = Vec::new();
        let mut needs: Vec<String> = Vec::new();
        let mut whens = Vec::new();
        for (i, b) in branches.iter().enumerate() {
            let Some(b) = b.as_object() else { continue };
            let entry =
                Edge { to: String::new(), cond: ok(&id), value: format!("{}.in", out(&id)), needs: vec![id.clone()] };
            let ends = self.machine(b, &format!("{scope}/{name}/{i}"), Entry::From(entry));
            if ends.is_empty() {
                continue;
            }
            results.push(choose(&ends));
            whens.push(format!("({})", ends.iter().map(|e| e.cond.clone()).collect::<Vec<_>>().join(" or ")));
            for e in &ends {
                for n in &e.needs {
                    if !needs.contains(n) {
                        needs.push(n.clone());
                    }
                }
            }
        }
        let post = self.post(m, &cx, &mut errs);
        self.errs(name, errs);
        if let Some(exit) = &shape.exit {
            let expr = format!("({}.raw) as $raw | [{}] as $r0 | {post}", out(&id), results.join(", "));
            let join = Input { raw: String::new(), when: Some(whens.join(" and ")), needs };
            self.steps.push(transform(exit, expr, &join));
            self.comments.push((exit.clone(), format!("state \"{name}\": the branches' results, in order")));
        }
        let binds = format!("({}.raw) as $raw | [{}] as $r0 |", out(&id), results.join(", "));
        self.assign_result(name, m, shape, &binds, jsonata);
    }

    /// A Parallel state with Retry or Catch: its branches become a child workflow holding the
    /// Parallel alone, run by a `workflow` step that the state's Retry retries (a new child run
    /// each time) and its Catch catches. A branch that fails stops the child, as in Step
    /// Functions, and its error name reaches the catchers through the child's error.
    fn parallel_child(&mut self, name: &str, m: &Map<String, Value>, shape: &Shape, input: Input, jsonata: bool) {
        let id = shape.id.clone();
        let input = self.single_input(&id, name, input);
        let cx = cx(name);
        let mut errs = Vec::new();
        let eff = sel(m, "InputPath", &format!("({})", input.raw), &cx, &mut errs);
        let child_input = match args(m, jsonata) {
            Some((field, p)) => payload_in(jsonata, p, &eff, &cx, field, &mut errs),
            None => eff.clone(),
        };
        let mut inner = Map::new();
        for (k, v) in m {
            if ["Type", "Branches", "Comment", "QueryLanguage"].contains(&k.as_str()) {
                inner.insert(k.clone(), v.clone());
            }
        }
        inner.insert("End".into(), Value::Bool(true));
        let mut states = Map::new();
        states.insert(name.to_owned(), Value::Object(inner));
        let mut machine = Map::new();
        machine.insert("StartAt".into(), Value::String(name.to_owned()));
        machine.insert("States".into(), Value::Object(states));
        let child_name = format!("{}-{}", self.wf_name, id.to_ascii_lowercase().replace('_', "-"));
        let children = super::build_child(self.report, &child_name, &machine, false, self.jsonata, true, false);
        let child_input = super::var_ref::with_outer(&child_input, children.first().map_or(&[], |c| &c.outer));
        self.children.extend(children);
        let mut s = step(
            &id,
            "workflow",
            serde_json::json!({"name": child_name, "input": format!("{{{{ {child_input} }}}}")}),
            &input,
        );
        if let Some(r) = m.get("Retry") {
            s.retry = super::retry::retry(r, &mut errs).map(super::retry::through_child);
        }
        self.steps.push(s);
        self.comments
            .push((id.clone(), format!("state \"{name}\": its branches, run as child workflow `{child_name}`")));
        if let Some(exit) = shape.exit.clone().filter(|e| *e != id) {
            let post = self.post(m, &cx, &mut errs);
            let expr = format!("({}) as $raw | ({}) as $r0 | {post}", input.raw, out(&id));
            self.steps.push(transform(&exit, expr, &after(&id, &input.raw)));
            self.comments
                .push((exit.clone(), format!("state \"{name}\": the branches' results and the state's output")));
        }
        self.errs(name, errs);
        let binds = format!("({}) as $raw | ({}) as $r0 |", input.raw, out(&id));
        self.assign_result(name, m, shape, &binds, jsonata);
        self.wire_catches(name, m, &shape.catch_steps, None, false, &input.raw);
    }

    pub(super) fn map(&mut self, name: &str, m: &Map<String, Value>, shape: &Shape, input: Input, jsonata: bool) {
        let id = shape.id.clone();
        let input = self.single_input(&id, name, input);
        let cx = cx(name);
        let mut errs = Vec::new();
        let eff = sel(m, "InputPath", &format!("({})", input.raw), &cx, &mut errs);
        if super::map::is_distributed(m) {
            let concurrency = match self.concurrency(&id, m, &eff, &cx, &mut errs) {
                Concurrency::Fixed(n) => n,
                Concurrency::Template(_) => {
                    errs.push((
                        "MaxConcurrencyPath".into(),
                        "a distributed map's concurrency is a number (`max_concurrency` with `items_from`)".into(),
                    ));
                    1
                }
            };
            self.distributed_map(name, m, shape, &input, &eff, &cx, concurrency, jsonata, &mut errs);
            self.errs(name, errs);
            self.wire_catches(name, m, &shape.catch_steps, Some(&id), true, &input.raw);
            return;
        }
        let (items, item_input) = match m.get("ItemReader") {
            Some(reader) => {
                let items_id = shape.catch_steps[0].clone();
                match super::map::reader(reader, &eff, &cx, jsonata, &mut errs) {
                    Some((call, parse)) => {
                        self.steps.push(step(&items_id, call.tool, call.with, &input));
                        self.comments.push((items_id.clone(), format!("state \"{name}\": its ItemReader")));
                        (format!("{} | {parse}", out(&items_id)), after(&items_id, &input.raw))
                    }
                    None => (String::from("[]"), input.clone()),
                }
            }
            None if jsonata => {
                let items = match m.get("Items") {
                    Some(v) => {
                        let vars = super::jsonata::Vars { input: &eff, result: None, cx: &cx, error_output: None };
                        super::jsonata::template(v, &vars, "Items", &mut errs)
                    }
                    None => eff.clone(),
                };
                (items, input.clone())
            }
            None => {
                let items = match m.get("ItemsPath") {
                    Some(Value::String(p)) => super::paths::path(p, &eff, &cx).unwrap_or_else(|e| {
                        errs.push(("ItemsPath".into(), e));
                        "[]".into()
                    }),
                    Some(_) => {
                        errs.push(("ItemsPath".into(), "a path".into()));
                        "[]".into()
                    }
                    None => eff.clone(),
                };
                (items, input.clone())
            }
        };
        let items =
            super::map::batched(m.get("ItemBatcher"), &items, &eff, &cx, jsonata, &mut errs, &mut self.report.warnings);
        let item_cx = Cx { map_item: true, ..cx };
        let selector = m.get("ItemSelector").or_else(|| m.get("Parameters").filter(|_| !jsonata));
        let child_input = match selector {
            Some(sel) => payload_in(jsonata, sel, &eff, &item_cx, "ItemSelector", &mut errs),
            None => ".item".into(),
        };
        let concurrency = self.concurrency(&id, m, &eff, &cx, &mut errs);
        let tolerance = super::map::tolerance(m, &eff, &cx, &mut errs);
        let (child_name, outer) = self.processor(&id, m, tolerance.is_some(), &mut errs);
        let child_input = super::var_ref::with_outer(&child_input, &outer);
        let mut s = step(
            &id,
            "workflow",
            serde_json::json!({"name": child_name, "input": format!("{{{{ {child_input} }}}}")}),
            &item_input,
        );
        s.for_each = Some(items);
        s.max_concurrency = Some(concurrency);
        if let Some(r) = m.get("Retry") {
            s.retry = super::retry::retry(r, &mut errs).map(super::retry::through_child);
        }
        self.steps.push(s);
        let check = tolerance.clone().unwrap_or_else(|| "$r0".into());
        let binds = format!("({}) as $raw | ({}) as $r0 | ({check}) as $r0 |", input.raw, out(&id));
        self.assign_result(name, m, shape, &binds, jsonata);
        if let Some(exit) = shape.exit.clone().filter(|e| *e != id) {
            let post = self.post(m, &cx, &mut errs);
            let check = tolerance.unwrap_or_else(|| "$r0".into());
            let expr = format!("({}) as $raw | ({}) as $r0 | ({check}) as $r0 | {post}", input.raw, out(&id));
            self.steps.push(transform(&exit, expr, &after(&id, &input.raw)));
            self.comments.push((exit.clone(), format!("state \"{name}\": the items' results and the state's output")));
        }
        self.errs(name, errs);
        self.wire_catches(name, m, &shape.catch_steps, shape.reader.as_deref(), false, &input.raw);
    }

    /// Builds a Map's processor (`ItemProcessor`, or the older `Iterator`) as a child workflow
    /// and returns its name; `tolerant` when failed items end with a marker instead of failing.
    pub(super) fn processor(
        &mut self,
        id: &str,
        m: &Map<String, Value>,
        tolerant: bool,
        errs: &mut Vec<(String, String)>,
    ) -> (String, Vec<String>) {
        let child_name = format!("{}-{}", self.wf_name, id.to_ascii_lowercase().replace('_', "-"));
        let mut outer = Vec::new();
        match m.get("ItemProcessor").or_else(|| m.get("Iterator")).and_then(Value::as_object) {
            Some(p) => {
                if let Some(cfg) = p.get("ProcessorConfig").and_then(Value::as_object) {
                    for k in cfg.keys().filter(|k| !["Mode", "ExecutionType"].contains(&k.as_str())) {
                        errs.push((format!("ItemProcessor.ProcessorConfig.{k}"), format!("`{k}` cannot be converted")));
                    }
                }
                let children = super::build_child(self.report, &child_name, p, tolerant, self.jsonata, true, false);
                outer = children.first().map(|c| c.outer.clone()).unwrap_or_default();
                self.children.extend(children);
            }
            None => errs
                .push(("ItemProcessor".into(), "a Map state needs `ItemProcessor` (or the older `Iterator`)".into())),
        }
        (child_name, outer)
    }

    /// A Map's `MaxConcurrency` as `max_concurrency` (0, unlimited, becomes baton's largest),
    /// or its `MaxConcurrencyPath` as a template read from the effective input `eff`.
    fn concurrency(
        &mut self,
        id: &str,
        m: &Map<String, Value>,
        eff: &str,
        cx: &Cx<'_>,
        errs: &mut Vec<(String, String)>,
    ) -> Concurrency {
        if let Some(p) = m.get("MaxConcurrencyPath") {
            if m.contains_key("MaxConcurrency") {
                errs.push((
                    "MaxConcurrencyPath".into(),
                    "a state sets `MaxConcurrency` or its `…Path`, not both".into(),
                ));
            }
            let largest = crate::plan::MAX_CONCURRENCY_LIMIT;
            return match p.as_str().map(|p| super::paths::path(p, eff, cx)) {
                Some(Ok(jq)) => Concurrency::Template(format!(
                    "{{{{ ({jq}) | if . == 0 or . > {largest} then {largest} else . end }}}}"
                )),
                Some(Err(e)) => {
                    errs.push(("MaxConcurrencyPath".into(), e));
                    Concurrency::Fixed(1)
                }
                None => {
                    errs.push(("MaxConcurrencyPath".into(), "a reference path such as `$.parallelism`".into()));
                    Concurrency::Fixed(1)
                }
            };
        }
        Concurrency::Fixed(match m.get("MaxConcurrency").map(Value::as_u64) {
            None | Some(Some(0)) => 1000,
            Some(Some(n)) if n > 1000 => {
                self.note(id, format!("MaxConcurrency {n} becomes 1000, baton's largest `max_concurrency`"));
                1000
            }
            Some(Some(n)) => n as u32,
            Some(None) => {
                errs.push(("MaxConcurrency".into(), "a whole number".into()));
                1
            }
        })
    }
}

/// A Parallel's branch input field: `Parameters` in JSONPath, `Arguments` in JSONata.
fn args(m: &Map<String, Value>, jsonata: bool) -> Option<(&'static str, &Value)> {
    let field = if jsonata { "Arguments" } else { "Parameters" };
    m.get(field).map(|v| (field, v))
}
