//! Workflow variables: `Assign` and `$name` (JSONPath paths, intrinsic arguments, JSONata).
//!
//! A state machine runs one state at a time, so the states that ran before a state form one
//! path, and a variable's value there is what the last state on that path assigning it gave.
//! baton needs no run-wide mutable store for that: a state with `Assign` gets a `transform`
//! step (`<id>_assign`) giving the object it assigns, after the state's step and before every
//! state it leads to. A `$name` read is written as a placeholder while the states convert;
//! once every step exists, [`Builder::resolve_vars`] replaces it with jq taking `name` from the
//! last of the assigning steps upstream of the reading step that ran (upstream steps are
//! ordered: one that comes after another has more steps upstream of it).
//!
//! Scope as in Step Functions: a Parallel branch sees the variables assigned before the state
//! and in the branch; what a branch assigns stays in it. A Map's processor and a Parallel with
//! Retry or Catch (child workflows) get the outer variables they read in their input
//! (`__asl_vars`); what they assign stays in them. A loop's passes carry every variable the
//! loop reads or assigns from pass to pass, and give them back to the states after the loop.

use std::collections::{BTreeSet, HashMap};

use serde_json::{Map, Value};

use super::flow::{after, out, transform};
use super::naming::step_ref;
use super::paths::{Cx, json_str};
use super::states::{Builder, Shape};
use super::var_ref::{Assigner, CLOSE, ENV_OPEN, OPEN, RUN_INPUT, Reads, names_of, placeholder, valid_name};

impl Builder<'_> {
    /// jq for the run's input where the machine starts.
    pub(super) fn run_input(&self) -> String {
        if self.outer_vars.is_some() { RUN_INPUT.into() } else { ".input".into() }
    }

    /// Adds state `name`'s `Assign` step after step `exit`: `prefix` is jq binding what `reads`
    /// names (ending in `|`), evaluated where the state's own steps are.
    pub(super) fn assign_step(
        &mut self,
        name: &str,
        m: &Map<String, Value>,
        shape: &Shape,
        prefix: &str,
        reads: &Reads<'_>,
        jsonata: bool,
    ) {
        let (Some(id), Some(exit)) = (shape.assign.clone(), shape.exit.clone()) else { return };
        let mut errs = Vec::new();
        let cx = super::states::cx(name);
        let mut names = Vec::new();
        let is_choice = m.get("Type").and_then(Value::as_str) == Some("Choice");
        let body = match m.get("Choices").and_then(Value::as_array).filter(|_| is_choice) {
            // A Choice assigns by the rule that matched (`rule` in its step's output); its own
            // `Assign` only when no rule matched and it went to `Default`.
            Some(rules) => {
                let mut body = String::from("if false then {} ");
                for (i, r) in rules.iter().enumerate() {
                    if let Some(a) = r.get("Assign") {
                        let at = format!("Choices[{i}].Assign");
                        body.push_str(&format!(
                            "elif $rule == {i} then {} ",
                            self.assignment(a, reads, &cx, jsonata, &at, &mut names, &mut errs)
                        ));
                    }
                }
                let default = match m.get("Assign") {
                    Some(a) => self.assignment(a, reads, &cx, jsonata, "Assign", &mut names, &mut errs),
                    None => "{}".into(),
                };
                format!("({}.rule) as $rule | {body}elif $rule == -1 then {default} else {{}} end", out(&exit))
            }
            None => match m.get("Assign") {
                Some(a) => self.assignment(a, reads, &cx, jsonata, "Assign", &mut names, &mut errs),
                None => return,
            },
        };
        self.errs(name, errs);
        let raw_needs = after(&exit, "");
        self.steps.push(transform(&id, format!("{prefix} {body}"), &raw_needs));
        self.comments.push((id.clone(), format!("state \"{name}\": the variables it assigns")));
        names.sort();
        names.dedup();
        self.assigners.push(Assigner { step: id, names, in_vars: None });
    }

    /// A catcher's `Assign` (`at` names it), reading the error output `$err` (JSONPath's `$`)
    /// and the state's raw input `$raw`; jq giving the object of the values it assigns.
    pub(super) fn catch_assignment(
        &mut self,
        a: &Value,
        name: &str,
        jsonata: bool,
        at: &str,
        names: &mut Vec<String>,
        errs: &mut Vec<(String, String)>,
    ) -> String {
        let cx = super::states::cx(name);
        let reads = Reads { dollar: "$err", input: "$raw", result: None, error_output: Some("$err") };
        self.assignment(a, &reads, &cx, jsonata, at, names, errs)
    }

    /// [`Builder::assign_step`] for a state with a result (Task, Parallel, Map): `binds` (jq
    /// ending in `|`) gives `$raw` and the result `$r0`; JSONPath's `$` is the result after
    /// `ResultSelector`, JSONata's `$states.result` the result.
    pub(super) fn assign_result(
        &mut self,
        name: &str,
        m: &Map<String, Value>,
        shape: &Shape,
        binds: &str,
        jsonata: bool,
    ) {
        let cx = super::states::cx(name);
        let prefix = format!("{binds} ({}) as $r |", super::payload::selected(m, &cx));
        let reads = Reads { dollar: "$r", input: "$raw", result: Some("$r0"), error_output: None };
        self.assign_step(name, m, shape, &prefix, &reads, jsonata);
    }

    /// One `Assign` object as jq giving the object of the values it assigns.
    #[allow(clippy::too_many_arguments)]
    fn assignment(
        &mut self,
        a: &Value,
        reads: &Reads<'_>,
        cx: &Cx<'_>,
        jsonata: bool,
        at: &str,
        names: &mut Vec<String>,
        errs: &mut Vec<(String, String)>,
    ) -> String {
        let Some(obj) = a.as_object() else {
            errs.push((at.to_owned(), "an object of the variables to assign".into()));
            return "{}".into();
        };
        for n in names_of(obj) {
            if !valid_name(&n) {
                errs.push((
                    format!("{at}.{n}"),
                    "a variable's name is a letter or `_`, then letters, digits or `_` (not `states`)".into(),
                ));
            }
            names.push(n);
        }
        if jsonata {
            let vars =
                super::jsonata::Vars { input: reads.input, result: reads.result, cx, error_output: reads.error_output };
            super::jsonata::template(a, &vars, at, errs)
        } else {
            super::payload::payload(a, reads.dollar, cx, at, errs)
        }
    }

    /// Replaces the variable placeholders in every step with jq reading the value from the
    /// assigning steps upstream of it; a read no assignment reaches is reported.
    pub(crate) fn resolve_vars(&mut self) {
        let mut needs: HashMap<String, Vec<String>> =
            self.steps.iter().map(|s| (s.id.clone(), s.needs.clone())).collect();
        // A fallback step runs in place of the step it catches: what is upstream of that step
        // is upstream of it.
        for s in &self.steps {
            if let Some(f) = &s.fallback {
                needs.insert(f.clone(), s.needs.clone());
            }
        }
        let mut memo: HashMap<String, BTreeSet<String>> = HashMap::new();
        let mut problems = Vec::new();
        // Reads and named environments first (they say which outer variables a child needs),
        // then the environments of every variable, then where the run's input is.
        for all_env in [false, true] {
            for i in 0..self.steps.len() {
                let Ok(mut v) = serde_json::to_value(&self.steps[i]) else { continue };
                let mut used = BTreeSet::new();
                collect(&v, OPEN, &mut used);
                let mut envs = BTreeSet::new();
                collect(&v, ENV_OPEN, &mut envs);
                envs.retain(|e| (e == "*") == all_env);
                if all_env {
                    used.clear();
                }
                if used.is_empty() && envs.is_empty() {
                    continue;
                }
                let id = self.steps[i].id.clone();
                let mut values = HashMap::new();
                for name in &used {
                    let picks = self.picks(&id, name, &needs, &mut memo);
                    let fail = format!("fail(\"States.Runtime\"; {})", json_str(&format!("${name} is not assigned")));
                    // A child asks its parent only for what nothing in it assigns before the read.
                    let outer = self.outer_read(name, picks.is_empty());
                    if picks.is_empty() && outer.is_none() {
                        problems.push((id.clone(), name.clone()));
                        continue;
                    }
                    let otherwise = outer.unwrap_or_else(|| fail.clone());
                    let jq = if picks.is_empty() {
                        format!("({otherwise})")
                    } else {
                        format!(
                            "(({}) as $asl_v | if $asl_v == [] then {otherwise} else $asl_v | last end)",
                            picks.join(" + ")
                        )
                    };
                    values.insert(placeholder(name), jq);
                }
                for env in &envs {
                    let names: Vec<String> = if env == "*" {
                        let mut all: BTreeSet<String> =
                            self.assigners.iter().flat_map(|a| a.names.iter().cloned()).collect();
                        all.extend(self.outer_vars.iter().flatten().cloned());
                        all.into_iter().collect()
                    } else {
                        env.split(',').filter(|n| !n.is_empty()).map(str::to_owned).collect()
                    };
                    let jq = self.env_object(&id, &names, &needs, &mut memo);
                    values.insert(format!("{ENV_OPEN}{env}{CLOSE}"), jq);
                }
                replace(&mut v, &values);
                if let Ok(step) = serde_json::from_value(v) {
                    self.steps[i] = step;
                }
            }
        }
        if self.outer_vars.is_some() {
            let wrapped = self.loop_pass || self.outer_vars.as_ref().is_some_and(|o| !o.is_empty());
            let root = if wrapped { ".input.__asl_input" } else { ".input" };
            let values = HashMap::from([(RUN_INPUT.to_owned(), root.to_owned())]);
            for step in &mut self.steps {
                let Ok(mut v) = serde_json::to_value(&*step) else { continue };
                replace(&mut v, &values);
                if let Ok(s) = serde_json::from_value(v) {
                    *step = s;
                }
            }
        }
        for (id, name) in problems {
            let state = self
                .comments
                .iter()
                .find_map(|(c, text)| (*c == id).then(|| text.strip_prefix("state \"")?.split('"').next()))
                .flatten()
                .unwrap_or(&id)
                .to_owned();
            self.report.err(
                Some(&state),
                format!("${name}"),
                format!(
                    "no state before this one assigns `${name}` in the same workflow (a distributed \
                     Map's processor reads only the variables it assigns itself)"
                ),
            );
        }
    }

    /// In a child that may read its parent's variables: jq reading `name` from its input (a
    /// loop's pass gets there what the pass before it left); with `ask`, the name is recorded
    /// as one the parent passes in.
    fn outer_read(&mut self, name: &str, ask: bool) -> Option<String> {
        let outer = self.outer_vars.as_mut()?;
        if ask && !outer.iter().any(|o| o == name) {
            outer.push(name.to_owned());
        }
        let fail = format!("fail(\"States.Runtime\"; {})", json_str(&format!("${name} is not assigned")));
        Some(format!(".input.__asl_vars | if has({}) then .{name} else {fail} end", json_str(name)))
    }

    /// jq for each step upstream of `id` that may assign `name` (in scope), in the order they
    /// run, each giving `[value]` where it assigned the name and `[]` where it did not.
    fn picks(
        &self,
        id: &str,
        name: &str,
        needs: &HashMap<String, Vec<String>>,
        memo: &mut HashMap<String, BTreeSet<String>>,
    ) -> Vec<String> {
        let up = upstream(id, needs, memo);
        let scope = self.scope_of.get(id).cloned().unwrap_or_default();
        let mut from: Vec<(usize, &Assigner)> = self
            .assigners
            .iter()
            .filter(|a| {
                up.contains(&a.step)
                    && a.names.iter().any(|n| n == name)
                    && visible(self.scope_of.get(&a.step).map_or("", |s| s), &scope)
            })
            .map(|a| (upstream(&a.step, needs, memo).len(), a))
            .collect();
        // A step that comes after another has more steps upstream of it.
        from.sort_by(|x, y| x.0.cmp(&y.0).then_with(|| x.1.step.cmp(&y.1.step)));
        from.iter()
            .map(|(_, a)| match a.in_vars {
                Some(status) => format!(
                    "({} | if .status == {} and (.output.vars // {{}} | has({})) then [.output.vars.{name}] else [] end)",
                    step_ref(&a.step),
                    json_str(status),
                    json_str(name)
                ),
                // A Choice's step lists every name its rules may assign; the rule that matched
                // may assign none of them.
                None => format!(
                    "({} | if .status == \"succeeded\" and (.output | has({})) then [.output.{name}] else [] end)",
                    step_ref(&a.step),
                    json_str(name)
                ),
            })
            .collect()
    }

    /// jq for the object of the variables `names` as they are at step `id`: what the input
    /// carries (in a child), then what was assigned upstream; a name without a value is left out.
    fn env_object(
        &mut self,
        id: &str,
        names: &[String],
        needs: &HashMap<String, Vec<String>>,
        memo: &mut HashMap<String, BTreeSet<String>>,
    ) -> String {
        let mut binds = String::new();
        let mut sets = String::new();
        for (i, name) in names.iter().enumerate() {
            let picks = self.picks(id, name, needs, memo);
            if picks.is_empty() {
                // Only what the input carries: a child passes the name on from its parent.
                if let Some(outer) = self.outer_vars.as_mut()
                    && !outer.contains(name)
                {
                    outer.push(name.clone());
                }
                continue;
            }
            binds.push_str(&format!("({}) as $asl_{i} | ", picks.join(" + ")));
            sets.push_str(&format!(" | if $asl_{i} == [] then . else .{name} = ($asl_{i} | last) end"));
        }
        let base = if self.outer_vars.is_some() { "(.input.__asl_vars // {})" } else { "{}" };
        format!("({binds}{base}{sets})")
    }
}

/// Whether a variable assigned in scope `assigned` is seen in scope `reader` (the same, or
/// nested in it).
fn visible(assigned: &str, reader: &str) -> bool {
    reader == assigned || reader.strip_prefix(assigned).is_some_and(|r| r.starts_with('/'))
}

/// Every step upstream of `id` (through `needs`), memoised.
fn upstream(
    id: &str,
    needs: &HashMap<String, Vec<String>>,
    memo: &mut HashMap<String, BTreeSet<String>>,
) -> BTreeSet<String> {
    if let Some(s) = memo.get(id) {
        return s.clone();
    }
    let mut seen = BTreeSet::new();
    let mut stack: Vec<String> = needs.get(id).cloned().unwrap_or_default();
    while let Some(n) = stack.pop() {
        if seen.insert(n.clone()) {
            stack.extend(needs.get(&n).cloned().unwrap_or_default());
        }
    }
    memo.insert(id.to_owned(), seen.clone());
    seen
}

/// The names in the placeholders starting with `open` that occur in `v`'s strings.
fn collect(v: &Value, open: &str, used: &mut BTreeSet<String>) {
    match v {
        Value::String(s) => {
            let mut rest = s.as_str();
            while let Some(start) = rest.find(open) {
                let after_open = &rest[start + open.len()..];
                let Some(end) = after_open.find(CLOSE) else { break };
                used.insert(after_open[..end].to_owned());
                rest = &after_open[end + CLOSE.len()..];
            }
        }
        Value::Array(a) => a.iter().for_each(|x| collect(x, open, used)),
        Value::Object(m) => m.values().for_each(|x| collect(x, open, used)),
        _ => {}
    }
}

/// Replaces each placeholder (a key of `values`) in `v`'s strings with its jq.
fn replace(v: &mut Value, values: &HashMap<String, String>) {
    match v {
        Value::String(s) if s.contains("@@asl-") => {
            for (placeholder, jq) in values {
                *s = s.replace(placeholder, jq);
            }
        }
        Value::Array(a) => a.iter_mut().for_each(|x| replace(x, values)),
        Value::Object(m) => m.values_mut().for_each(|x| replace(x, values)),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_nest_by_prefix() {
        assert!(visible("", "/Par/0"));
        assert!(visible("/Par/0", "/Par/0/In/1"));
        assert!(!visible("/Par/0", "/Par/01"));
        assert!(!visible("/Par/0", ""));
    }
}
