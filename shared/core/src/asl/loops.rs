//! Loops: a baton workflow is a DAG, so a cycle of states (a poller's Wait, Check, Choice and
//! back) becomes a child workflow that runs one pass of the cycle and continues as a new run
//! for the next (`continue_as_new`), and in the parent a `workflow` step that runs the chain
//! and routes, like a Choice, to the state the last pass left for.
//!
//! In the child, each transition back to the cycle's entry goes to a step that continues as new
//! with the value it carries, and each transition out of the cycle (or a state's end) goes to a
//! step that ends the pass with `{"__asl_exit": target, "value": ...}`.
//!
//! A cycle entered at several states (states outside it lead to two of its states) carries the
//! state it is entered at: in the parent each entry becomes a step marking the value
//! `{"__asl_entry": state, "value": ...}` before the loop's step, the child's first step routes
//! by the mark like a Choice, and each way round marks the value with the state it goes back to.

use std::collections::{BTreeMap, BTreeSet};

use petgraph::graphmap::DiGraphMap;
use serde_json::{Map, Value, json};

use super::flow::{Input, after, out, step, transform};
use super::internal::{CONTINUE, ENTER, ENTRY, EXIT, LOOP, targets};
use super::states::{Builder, Shape};

/// Reports every state of the definition, branches and processors included, whose `Type` is
/// one of the internal ones: they stand for parts the importer made, never for a user's state.
pub(super) fn refuse_internal_types(v: &Value, report: &mut super::errors::Report) {
    let Some(states) = v.get("States").and_then(Value::as_object) else { return };
    for (name, st) in states {
        if st.get("Type").and_then(Value::as_str).is_some_and(|t| t.starts_with("__Baton")) {
            report.err(
                Some(name),
                "Type",
                "unknown state type (Task, Choice, Parallel, Map, Wait, Pass, Succeed, Fail)",
            );
        }
        for b in st.get("Branches").and_then(Value::as_array).into_iter().flatten() {
            refuse_internal_types(b, report);
        }
        for k in ["ItemProcessor", "Iterator"] {
            if let Some(p) = st.get(k) {
                refuse_internal_types(p, report);
            }
        }
    }
}

/// jq for a loop pass's input carrying variables: the value `raw` and the variables `env`
/// (spaced braces, since it goes in a `{{ }}` template).
fn carried(raw: &str, env: &str) -> String {
    format!("{{\"__asl_input\": ({raw}), \"__asl_vars\": {env} }}")
}

/// jq marking the value `raw` with the loop entry `entry` (a JSON string).
fn marked(entry: &Value, raw: &str) -> String {
    format!("{{\"__asl_entry\": {entry}, \"value\": ({raw})}}")
}

/// Rewrites every transition of `st` to `from` as one to `to`.
fn retarget(st: &mut Value, f: &impl Fn(&str) -> Option<String>) {
    for key in ["Next", "Default"] {
        if let Some(n) = st.get(key).and_then(Value::as_str).and_then(f) {
            st[key] = Value::String(n);
        }
    }
    for list in ["Choices", "Catch"] {
        if let Some(items) = st.get_mut(list).and_then(Value::as_array_mut) {
            for c in items {
                if let Some(n) = c.get("Next").and_then(Value::as_str).and_then(f) {
                    c["Next"] = Value::String(n);
                }
            }
        }
    }
}

impl Builder<'_> {
    /// `m` with each cycle entered at one state replaced by a [`LOOP`] state of the entry's name
    /// (its child workflow built and kept), or `None` when `m` has no such cycle.
    pub(super) fn lift_loops(&mut self, m: &Map<String, Value>, scope: &str) -> Option<Map<String, Value>> {
        let states = m.get("States")?.as_object()?;
        let start = m.get("StartAt")?.as_str()?;
        let names: Vec<&str> = states.keys().map(String::as_str).collect();
        let mut graph = DiGraphMap::<&str, ()>::new();
        for n in &names {
            graph.add_node(n);
        }
        let all_targets: BTreeMap<&str, Vec<String>> = states.iter().map(|(n, st)| (n.as_str(), targets(st))).collect();
        for (n, ts) in &all_targets {
            for t in ts {
                if let Some(t) = names.iter().find(|x| **x == t.as_str()) {
                    graph.add_edge(n, t, ());
                }
            }
        }
        let mut out = states.clone();
        let mut lifted = false;
        for scc in petgraph::algo::tarjan_scc(&graph) {
            let cyclic = scc.len() > 1 || scc.first().is_some_and(|n| graph.contains_edge(n, n));
            if !cyclic {
                continue;
            }
            let inside: BTreeSet<&str> = scc.iter().copied().collect();
            let mut entries: BTreeSet<&str> = BTreeSet::new();
            if inside.contains(start) {
                entries.insert(start);
            }
            for (n, ts) in &all_targets {
                if !inside.contains(n) {
                    entries.extend(ts.iter().filter_map(|t| inside.get(t.as_str()).copied()));
                }
            }
            // In the order the states are written, so the loop's step id does not depend on
            // the graph's iteration order.
            let entries: Vec<&str> = names.iter().copied().filter(|n| entries.contains(n)).collect();
            if entries.is_empty() {
                continue;
            }
            self.lift(states, &inside, &entries, scope, &mut out);
            lifted = true;
        }
        if !lifted {
            return None;
        }
        let mut m = m.clone();
        m.insert("States".into(), Value::Object(out));
        Some(m)
    }

    /// Builds the child of the cycle `inside` entered at `entry`, and puts its [`LOOP`] state in
    /// `out` in place of the cycle's states.
    fn lift(
        &mut self,
        states: &Map<String, Value>,
        inside: &BTreeSet<&str>,
        entries: &[&str],
        scope: &str,
        out: &mut Map<String, Value>,
    ) {
        let entry = entries[0];
        let marked = entries.len() > 1;
        let id = self.ids.get(&format!("{scope}/{entry}")).cloned().unwrap_or_else(|| entry.to_owned());
        let child_name = format!("{}-{}-loop", self.wf_name, id.to_ascii_lowercase().replace('_', "-"));
        // Where the cycle can be left for, in the order the states are written: a state's name,
        // or `null` for the machine's end.
        let mut exits: Vec<Value> = Vec::new();
        let exit_state = |target: Value, exits: &mut Vec<Value>| {
            let k = exits.iter().position(|e| *e == target).unwrap_or_else(|| {
                exits.push(target.clone());
                exits.len() - 1
            });
            format!("__exit_{k}")
        };
        let mut child_states = Map::new();
        for name in states.keys().filter(|n| inside.contains(n.as_str())) {
            let mut st = states[name].clone();
            let leaves: BTreeMap<String, String> = targets(&st)
                .into_iter()
                .filter(|t| !inside.contains(t.as_str()))
                .map(|t| (t.clone(), exit_state(Value::String(t), &mut exits)))
                .collect();
            retarget(&mut st, &|t: &str| match entries.iter().position(|e| *e == t) {
                Some(_) if !marked => Some("__continue".to_owned()),
                Some(k) => Some(format!("__continue_{k}")),
                None => leaves.get(t).cloned(),
            });
            let ends = st.get("End").and_then(Value::as_bool) == Some(true)
                || st.get("Type").and_then(Value::as_str) == Some("Succeed");
            if ends && let Some(o) = st.as_object_mut() {
                // The machine's end, reached from inside the cycle, ends the parent too.
                let to_end = exit_state(Value::Null, &mut exits);
                if o.get("Type").and_then(Value::as_str) == Some("Succeed") {
                    o.insert("Type".into(), json!("Pass"));
                }
                o.remove("End");
                o.insert("Next".into(), Value::String(to_end));
            }
            child_states.insert(name.clone(), st);
        }
        if marked {
            for (k, e) in entries.iter().enumerate() {
                child_states.insert(format!("__continue_{k}"), json!({"Type": CONTINUE, "Entry": e}));
            }
            child_states.insert("__enter".into(), json!({"Type": ENTER, "Entries": entries}));
        } else {
            child_states.insert("__continue".into(), json!({"Type": CONTINUE}));
        }
        for (k, target) in exits.iter().enumerate() {
            child_states.insert(format!("__exit_{k}"), json!({"Type": EXIT, "Target": target}));
        }
        let mut child = Map::new();
        child.insert("StartAt".into(), Value::String(if marked { "__enter".into() } else { entry.to_owned() }));
        child.insert("States".into(), Value::Object(child_states));
        // A loop that reads or assigns variables carries them from pass to pass, and out.
        let carries = inside.iter().any(|n| states.get(*n).is_some_and(super::var_ref::mentions));
        let built = super::build_child(self.report, &child_name, &child, self.tolerant, self.jsonata, false, carries);
        let (outer, assigned) = built.first().map(|c| (c.outer.clone(), c.assigned.clone())).unwrap_or_default();
        self.children.extend(built);
        for name in inside {
            out.remove(*name);
        }
        let mut looped = json!({"Type": LOOP, "Child": child_name, "Exits": exits});
        if carries {
            let mut vars: Vec<String> = outer.into_iter().chain(assigned.iter().cloned()).collect();
            vars.sort();
            vars.dedup();
            looped["Vars"] = json!(vars);
            looped["Assigns"] = json!(assigned);
        }
        if !marked {
            out.insert(entry.to_owned(), looped);
            return;
        }
        // Each entry keeps its name (the states outside lead there) and marks the value.
        let loop_name = format!("{entry} loop");
        for e in entries {
            out.insert((*e).to_owned(), json!({"Type": ENTRY, "Entry": e, "Next": loop_name}));
        }
        out.insert(loop_name, looped);
    }

    /// The shape of an internal state, when `ty` is one.
    pub(super) fn internal_shape(&mut self, ty: &str, st: &Value, s: &mut Shape) -> bool {
        match ty {
            LOOP => {
                s.exit = Some(self.claim(&s.id, "out"));
                s.choices = st
                    .get("Exits")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .map(|t| t.as_str().unwrap_or_default().to_owned())
                    .collect();
            }
            CONTINUE | EXIT => {
                s.exit = Some(s.id.clone());
                s.end = true;
            }
            ENTRY => s.exit = Some(s.id.clone()),
            ENTER => {
                s.exit = Some(s.id.clone());
                s.choices = st
                    .get("Entries")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .filter_map(|t| t.as_str().map(str::to_owned))
                    .collect();
            }
            _ => return false,
        }
        true
    }

    /// The steps of an internal state, when `ty` is one.
    pub(super) fn internal_state(&mut self, name: &str, ty: &str, st: &Value, shape: &Shape, input: Input) -> bool {
        let id = shape.id.clone();
        let value = format!("{{{{ {} }}}}", input.raw);
        match ty {
            LOOP => {
                let child = st.get("Child").and_then(Value::as_str).unwrap_or_default();
                let names = |k: &str| -> Option<Vec<String>> {
                    let list = st.get(k)?.as_array()?;
                    Some(list.iter().filter_map(|v| v.as_str().map(str::to_owned)).collect())
                };
                // A loop carrying variables gets them (as they are here) with its first pass's
                // input, and gives them back, as its last pass left them, in `vars`.
                let (value, vars) = match names("Vars") {
                    Some(vars) => (
                        format!("{{{{ {} }}}}", carried(&input.raw, &super::var_ref::env_placeholder(Some(&vars)))),
                        ", vars: ($o.__asl_vars // {})",
                    ),
                    None => (value, ""),
                };
                self.steps.push(step(&id, "workflow", json!({"name": child, "input": value}), &input));
                self.comments.push((
                    id.clone(),
                    format!("state \"{name}\": a loop of states, run a pass at a time by child workflow `{child}`"),
                ));
                if let Some(exit) = &shape.exit {
                    let expr =
                        format!("({}) as $o | {{next: ($o.__asl_exit // \"\"), output: $o.value{vars}}}", out(&id));
                    self.steps.push(transform(exit, expr, &after(&id, &input.raw)));
                    if let Some(assigned) = names("Assigns").filter(|a| !a.is_empty()) {
                        self.assigners.push(super::var_ref::Assigner {
                            step: exit.clone(),
                            names: assigned,
                            in_vars: Some("succeeded"),
                        });
                    }
                    self.comments.push((exit.clone(), format!("state \"{name}\": where the loop was left for")));
                }
            }
            CONTINUE => {
                let (raw, to) = match st.get("Entry") {
                    Some(e) => (marked(e, &input.raw), format!("\"{}\"", e.as_str().unwrap_or_default())),
                    None => (input.raw.clone(), "the loop's first state".to_owned()),
                };
                let value = if self.loop_pass {
                    format!("{{{{ {} }}}}", carried(&raw, &super::var_ref::env_placeholder(None)))
                } else {
                    format!("{{{{ {raw} }}}}")
                };
                self.steps.push(step(&id, "workflow", json!({"continue_as_new": true, "input": value}), &input));
                self.comments.push((id, format!("back to {to}: the next pass is a new run")));
            }
            ENTRY => {
                let e = st.get("Entry").cloned().unwrap_or(Value::Null);
                self.steps.push(transform(&id, marked(&e, &input.raw), &input));
                self.comments.push((id, format!("state \"{name}\": enters the loop here")));
            }
            ENTER => {
                let expr = format!("({}) as $in | {{next: $in.__asl_entry, output: $in.value}}", input.raw);
                self.steps.push(transform(&id, expr, &input));
                self.comments.push((id, "goes on at the state the loop is entered at".into()));
            }
            EXIT => {
                let target = st.get("Target").cloned().unwrap_or(Value::Null);
                let vars = if self.loop_pass {
                    format!(", \"__asl_vars\": {}", super::var_ref::env_placeholder(None))
                } else {
                    String::new()
                };
                let expr = format!("{{\"__asl_exit\": {}, \"value\": ({}){vars}}}", target, input.raw);
                self.steps.push(transform(&id, expr, &input));
                let to = target.as_str().map(|t| format!("to \"{t}\"")).unwrap_or_else(|| "to the end".into());
                self.comments.push((id, format!("leaves the loop {to}")));
            }
            _ => return false,
        }
        true
    }
}
