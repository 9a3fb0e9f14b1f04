//! Sealing a run's sensitive fields in its audit records (the scheme is in
//! [`crate::audit::seal`]): finding the values the workflow's `sensitive` paths point at in the
//! run's state, and registering each the first time a record seals it.

use serde_json::Value;

use super::types::{Event, EventKind, NodeState, RunState};
use crate::audit::AuditRecord;
use crate::audit::seal::{SealedField, commitment, field_salt, leaves, seal_json, seal_text_with};
use crate::canonical::sha256_hex;
use crate::plan::Plan;

/// The scalar values at the plan's sensitive paths in `st` now, with their field names.
pub fn current_fields(plan: &Plan, st: &RunState) -> Vec<(String, Value)> {
    let mut out = Vec::new();
    for sp in &plan.sensitive {
        let suffix: String = sp.keys.iter().map(|k| format!(".{k}")).collect();
        match sp.step {
            None => {
                if let Some(v) = lookup(&st.input, &sp.keys) {
                    leaves(&format!("input{suffix}"), v, &mut out);
                }
            }
            Some(ix) => {
                for (key, node) in &st.nodes {
                    if node.step == ix
                        && let NodeState::Succeeded { output, .. } = &node.state
                        && let Some(v) = lookup(output, &sp.keys)
                    {
                        leaves(&format!("steps.{key}.output{suffix}"), v, &mut out);
                    }
                }
            }
        }
    }
    out
}

/// The hash a record carries of the event that caused it: SHA-256 of the event's canonical JSON
/// with the run's sensitive values sealed (those in the state, and those the event itself
/// brings), so the hash reveals nothing an erasure removed, and a scrubbed journal hashes the
/// same as the original.
pub fn event_hash(plan: &Plan, st: &RunState, event: &Event) -> String {
    let mut v = serde_json::to_value(event).unwrap_or(Value::Null);
    if !plan.sensitive.is_empty() {
        let mut fields = current_fields(plan, st);
        fields.extend(event_fields(plan, st, event));
        seal_json(&mut v, &fields);
    }
    sha256_hex(&v)
}

/// The sensitive values an event brings: the run input, or a step's output.
fn event_fields(plan: &Plan, st: &RunState, event: &Event) -> Vec<(String, Value)> {
    let mut out = Vec::new();
    match &event.kind {
        EventKind::RunStarted { input, .. } => {
            for sp in plan.sensitive.iter().filter(|sp| sp.step.is_none()) {
                if let Some(v) = lookup(input, &sp.keys) {
                    leaves(&format!("input{}", suffix(&sp.keys)), v, &mut out);
                }
            }
        }
        EventKind::StepSucceeded { node, output, .. } => {
            let Some(n) = st.nodes.get(node) else { return out };
            for sp in plan.sensitive.iter().filter(|sp| sp.step == Some(n.step)) {
                if let Some(v) = lookup(output, &sp.keys) {
                    leaves(&format!("steps.{node}.output{}", suffix(&sp.keys)), v, &mut out);
                }
            }
        }
        _ => {}
    }
    out
}

fn suffix(keys: &[String]) -> String {
    keys.iter().map(|k| format!(".{k}")).collect()
}

/// A `transform` step's output is computed when it is dispatched: the command's `input.value`
/// is the output to be, so its sensitive values are sealed (under the output's field names)
/// from the dispatch on.
fn transform_outputs(plan: &Plan, st: &RunState, commands: &[Value]) -> Vec<(String, Value)> {
    let mut out = Vec::new();
    for c in commands {
        if c.get("command").and_then(Value::as_str) != Some("dispatch")
            || c.get("tool").and_then(Value::as_str) != Some("transform")
        {
            continue;
        }
        let (Some(key), Some(value)) = (c.get("node").and_then(Value::as_str), c.pointer("/input/value")) else {
            continue;
        };
        let Some(node) = st.nodes.get(key) else { continue };
        for sp in plan.sensitive.iter().filter(|sp| sp.step == Some(node.step)) {
            if let Some(v) = lookup(value, &sp.keys) {
                let suffix: String = sp.keys.iter().map(|k| format!(".{k}")).collect();
                leaves(&format!("steps.{key}.output{suffix}"), v, &mut out);
            }
        }
    }
    out
}

fn lookup<'a>(v: &'a Value, keys: &[String]) -> Option<&'a Value> {
    keys.iter().try_fold(v, |v, k| match v {
        Value::Object(m) => m.get(k),
        Value::Array(a) => k.parse::<usize>().ok().and_then(|i| a.get(i)),
        _ => None,
    })
}

/// Seals `r` before it is hashed, registering (into `new`) each field it seals for the first
/// time. A field whose value changed since it was registered (a step run again) is sealed under
/// a new name, `FIELD~2`, so every name stands for one value.
pub fn seal_record(plan: &Plan, st: &mut RunState, r: &mut AuditRecord, new: &mut Vec<SealedField>) {
    if plan.sensitive.is_empty() {
        return;
    }
    let mut fields = current_fields(plan, st);
    fields.extend(transform_outputs(plan, st, &r.commands));
    if fields.is_empty() {
        return;
    }
    for (name, value) in &mut fields {
        *name = registered_name(st, name, value, new);
    }
    let mut used = seal_json(&mut r.values, &fields);
    for c in &mut r.commands {
        used.extend(seal_json(c, &fields));
    }
    used.extend(seal_text_with(&mut r.reason, &fields));
    for name in used {
        if let Some(c) = st.seals.fields.get(&name) {
            r.sealed.insert(name, c.clone());
        }
    }
}

/// The name `value` is sealed under: the field's own, or a later version's when the value
/// changed; registered (and returned in `new`) when not known yet.
fn registered_name(st: &mut RunState, field: &str, value: &Value, new: &mut Vec<SealedField>) -> String {
    let salt = st.seals.salt.clone();
    for version in 1u32.. {
        let name = if version == 1 { field.to_owned() } else { format!("{field}~{version}") };
        let c = commitment(&name, &field_salt(salt.as_deref(), &name), value);
        match st.seals.fields.get(&name) {
            Some(known) if *known == c => return name,
            Some(_) => continue,
            None => {
                let f = SealedField::new(name.clone(), salt.as_deref(), value.clone());
                st.seals.fields.insert(name.clone(), f.commitment.clone());
                new.push(f);
                return name;
            }
        }
    }
    field.to_owned()
}
