//! `baton import asl`: Amazon States Language (Step Functions) definitions, JSONPath and a subset
//! of JSONata, into baton workflows.
//! Pure: text in, YAML text out. Each state becomes a step (id by [`naming`]'s rule, a comment
//! naming the state), Task resources become `aws`, `http` or `workflow` steps, Choice rules jq
//! conditions, Parallel branches parallel steps joined by a result step, a Map a `for_each` over a
//! child workflow. Everything that cannot be converted is reported, every state at once.
//! The mapping is described in docs/migrate-from-step-functions.md.

mod catch;
mod choice;
mod distributed;
mod errors;
mod fanout;
mod flow;
mod internal;
mod intrinsics;
mod jsonata;
mod jsonata_states;
mod jsonpath;
mod loops;
mod map;
pub mod naming;
mod paths;
mod payload;
mod rest_services;
mod retry;
mod states;
mod tasks;
mod var_ref;
mod variables;

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use errors::Report;
pub use errors::{AslProblem, ImportError};
use states::{Builder, Child, Entry};

use crate::model::Workflow;

/// One workflow the import wrote: the main one, or a Map's processor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportedWorkflow {
    /// The workflow's name (a child's file is `<name>.yaml` beside the main one).
    pub name: String,
    /// The YAML text, with a comment naming the state of each step.
    pub yaml: String,
}

/// What an import gives: the workflows (the main one first) and what was approximated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Imported {
    /// The main workflow, then one per Map state.
    pub workflows: Vec<ImportedWorkflow>,
    /// Things converted with a difference the user should know of, and `${Name}` placeholders
    /// left without a value.
    pub warnings: Vec<String>,
}

/// Converts definition `text` into workflow `name`, filling `${Name}` placeholders from
/// `substitutions` first.
pub fn import(text: &str, name: &str, substitutions: &BTreeMap<String, String>) -> Result<Imported, ImportError> {
    let mut doc: Value = serde_json::from_str(text).map_err(|e| ImportError::NotJson(e.to_string()))?;
    let mut report = Report::default();
    let mut missing = Vec::new();
    substitute(&mut doc, substitutions, &mut missing);
    for m in &missing {
        report.warnings.push(format!("`${{{m}}}` has no value (pass `--substitute {m}=...`): it is kept as written"));
    }
    let Some(root) = doc.as_object() else {
        return Err(ImportError::NotJson("the definition is not a JSON object".into()));
    };
    for k in root.keys() {
        match k.as_str() {
            "StartAt" | "States" | "Comment" | "Version" => {}
            // Becomes the workflow's `deadline` (see `workflow`).
            "TimeoutSeconds" if root[k].as_u64().is_some_and(|n| n > 0) => report.warnings.push(
                "`TimeoutSeconds` becomes `deadline`: a run past it fails with error kind `timeout` (Step Functions: status TIMED_OUT)"
                    .into(),
            ),
            "TimeoutSeconds" => report.err(None, k, "expected a whole number of seconds above 0"),
            "QueryLanguage" if root[k] == "JSONPath" || root[k] == "JSONata" => {}
            "QueryLanguage" => report.err(None, k, "the query language is `JSONPath` or `JSONata`"),
            other => report.err(None, other, format!("unknown top-level field `{other}`")),
        }
    }
    loops::refuse_internal_types(&doc, &mut report);
    let (wf, comments, children) = {
        let mut b = Builder::new(&mut report, name.to_owned(), false);
        b.jsonata = root.get("QueryLanguage").and_then(Value::as_str) == Some("JSONata");
        b.claim_states(root, "");
        let ends = b.machine(root, "", Entry::Run);
        let wf = workflow(&mut b, name, root, &ends);
        (wf, std::mem::take(&mut b.comments), std::mem::take(&mut b.children))
    };
    if !report.problems.is_empty() {
        return Err(ImportError::Unconvertible(report.problems));
    }
    let mut workflows = vec![ImportedWorkflow { name: name.to_owned(), yaml: emit(&wf, &comments) }];
    for c in children {
        workflows.push(ImportedWorkflow { name: c.workflow.name.clone(), yaml: emit(&c.workflow, &c.comments) });
    }
    Ok(Imported { workflows, warnings: report.warnings })
}

/// The workflow of a finished builder, its output the value of whichever end state ran.
fn workflow(b: &mut Builder<'_>, name: &str, root: &Map<String, Value>, ends: &[flow::Edge]) -> Workflow {
    b.resolve_vars();
    let output = if ends.is_empty() { None } else { Some(flow::choose(ends)) };
    Workflow {
        description: root.get("Comment").and_then(Value::as_str).map(str::to_owned),
        output,
        steps: std::mem::take(&mut b.steps),
        connections: std::mem::take(&mut b.connections),
        deadline: root.get("TimeoutSeconds").and_then(Value::as_u64).filter(|n| *n > 0).map(|n| format!("{n}s")),
        ..bare_workflow(name)
    }
}

/// A workflow named `name` with nothing in it yet.
pub(crate) fn bare_workflow(name: &str) -> Workflow {
    Workflow {
        name: name.to_owned(),
        version: None,
        description: None,
        input_schema: None,
        output: None,
        triggers: Vec::new(),
        steps: Vec::new(),
        compensate: BTreeMap::new(),
        defaults: None,
        network: None,
        secrets: Default::default(),
        connections: Default::default(),
        mesh: None,
        memory: None,
        mcp_servers: BTreeMap::new(),
        sensitive: Vec::new(),
        budget: None,
        deadline: None,
    }
}

/// A Map processor (or a Parallel run as a child, or a loop's pass) as a workflow of its own,
/// followed by the workflows of Maps inside it; `outer` when it may read its parent's variables.
pub(crate) fn build_child(
    report: &mut Report,
    name: &str,
    p: &Map<String, Value>,
    tolerant: bool,
    jsonata: bool,
    outer: bool,
    loop_pass: bool,
) -> Vec<Child> {
    let mut b = Builder::new(report, name.to_owned(), tolerant);
    b.jsonata = jsonata;
    b.outer_vars = (outer || loop_pass).then(Vec::new);
    b.loop_pass = loop_pass;
    b.claim_states(p, "");
    let ends = b.machine(p, "", Entry::Run);
    let workflow = workflow(&mut b, name, p, &ends);
    let outer = b.outer_vars.take().unwrap_or_default();
    let mut assigned: Vec<String> = b.assigners.iter().flat_map(|a| a.names.iter().cloned()).collect();
    assigned.sort();
    assigned.dedup();
    let mut all = vec![Child { workflow, comments: std::mem::take(&mut b.comments), outer, assigned }];
    all.append(&mut b.children);
    all
}

/// Replaces `${Name}` in every string of `v`; names without a value go to `missing`.
fn substitute(v: &mut Value, subs: &BTreeMap<String, String>, missing: &mut Vec<String>) {
    match v {
        Value::String(s) => {
            let mut out = String::new();
            let mut rest = s.as_str();
            while let Some(start) = rest.find("${") {
                let Some(len) = rest[start..].find('}') else { break };
                let key = &rest[start + 2..start + len];
                out.push_str(&rest[..start]);
                match subs.get(key) {
                    Some(val) => out.push_str(val),
                    None => {
                        if !missing.iter().any(|m| m == key) {
                            missing.push(key.to_owned());
                        }
                        out.push_str(&rest[start..start + len + 1]);
                    }
                }
                rest = &rest[start + len + 1..];
            }
            out.push_str(rest);
            *s = out;
        }
        Value::Array(a) => a.iter_mut().for_each(|x| substitute(x, subs, missing)),
        Value::Object(m) => m.values_mut().for_each(|x| substitute(x, subs, missing)),
        _ => {}
    }
}

/// The workflow as YAML, each step preceded by its comments.
fn emit(wf: &Workflow, comments: &[(String, String)]) -> String {
    let yaml = serde_yaml_ng::to_string(wf).unwrap_or_default();
    let mut out = String::from("# Converted from Amazon States Language by `baton import asl`.\n");
    for line in yaml.lines() {
        if let Some(id) = line.strip_prefix("- id: ") {
            let id = id.trim().trim_matches(|c| c == '\'' || c == '"');
            for (_, c) in comments.iter().filter(|(i, _)| i == id) {
                out.push_str(&format!("# {c}\n"));
            }
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(def: &str) -> Result<Imported, ImportError> {
        import(def, "wf", &BTreeMap::new())
    }

    fn problems(def: &str) -> Vec<AslProblem> {
        match run(def) {
            Err(ImportError::Unconvertible(p)) => p,
            other => panic!("expected problems, got {other:?}"),
        }
    }

    fn loads(i: &Imported) {
        for w in &i.workflows {
            if let Err(p) = crate::plan::load_definition(Some(&w.name), &w.yaml) {
                panic!("{} does not validate: {p:?}\n{}", w.name, w.yaml);
            }
        }
    }

    #[test]
    fn a_loop_entered_at_one_state_becomes_a_child_that_continues_as_new() {
        let i = run(
            r#"{"StartAt": "Poll", "States": {
                "Poll": {"Type": "Pass", "Next": "Check"},
                "Check": {"Type": "Choice", "Choices": [{"Variable": "$.done", "BooleanEquals": true, "Next": "Done"}], "Default": "Poll"},
                "Done": {"Type": "Succeed"}}}"#,
        )
        .unwrap();
        let names: Vec<&str> = i.workflows.iter().map(|w| w.name.as_str()).collect();
        assert_eq!(names, ["wf", "wf-poll-loop"]);
        assert!(i.workflows[0].yaml.contains("name: wf-poll-loop"), "{}", i.workflows[0].yaml);
        assert!(i.workflows[1].yaml.contains("continue_as_new: true"), "{}", i.workflows[1].yaml);
        let p = problems(r#"{"StartAt": "A", "States": {"A": {"Type": "__BatonLoop", "End": true}}}"#);
        assert!(p.iter().any(|x| x.state.as_deref() == Some("A") && x.field == "Type"), "{p:?}");
    }

    #[test]
    fn every_state_that_cannot_be_converted_is_listed() {
        let p = problems(
            r#"{"StartAt": "S", "TimeoutSeconds": -1, "States": {
                "S": {"Type": "Choice", "Choices": [{"Variable": "$.x", "BooleanEquals": true, "Next": "C"}], "Default": "A"},
                "A": {"Type": "Task", "Resource": "arn:aws:states:us-east-1:1:activity:x", "Next": "B"},
                "B": {"Type": "Pass", "ResultSelector": {"x": 1}, "Next": "C"},
                "C": {"Type": "Pass", "Parameters": {"u.$": "$.items[?(@.id =~ /x/)]"}, "Next": "D"},
                "D": {"Type": "Wait", "Seconds": 1, "Next": "A"}}}"#,
        );
        let text: Vec<String> = p.iter().map(ToString::to_string).collect();
        assert!(text.iter().any(|t| t.starts_with("field `TimeoutSeconds`")), "{text:#?}");
        assert!(text.iter().any(|t| t.starts_with("state \"A\", field `Resource`: activities")), "{text:#?}");
        assert!(text.iter().any(|t| t.starts_with("state \"B\", field `ResultSelector`")), "{text:#?}");
        assert!(text.iter().any(|t| t.starts_with("state \"C\", field `Parameters.u.$`")), "{text:#?}");
    }

    #[test]
    fn a_map_processor_gets_the_outer_variables_it_reads_in_its_input() {
        let i = run(r#"{"StartAt": "Set", "States": {
                "Set": {"Type": "Pass", "Assign": {"limit": 3}, "Next": "Each"},
                "Each": {"Type": "Map", "End": true, "ItemProcessor": {"StartAt": "P", "States": {
                    "P": {"Type": "Pass", "Parameters": {"l.$": "$limit"}, "End": true}}}}}}"#)
        .unwrap();
        loads(&i);
        assert!(i.workflows[0].yaml.contains(r#""__asl_vars": { "limit": "#), "{}", i.workflows[0].yaml);
        assert!(i.workflows[1].yaml.contains("(.input.__asl_input) as $raw"), "{}", i.workflows[1].yaml);
    }

    #[test]
    fn credentials_become_the_role_an_aws_call_is_made_as() {
        let i = run(r#"{"StartAt": "Put", "States": {
                "Put": {"Type": "Task", "Resource": "arn:aws:states:::dynamodb:putItem",
                        "Credentials": {"RoleArn": "arn:aws:iam::111122223333:role/writer"},
                        "Parameters": {"TableName": "t", "Item": {}}, "Next": "Get"},
                "Get": {"Type": "Task", "Resource": "arn:aws:states:::aws-sdk:dynamodb:getItem",
                        "Credentials": {"RoleArn.$": "$.role"}, "Parameters": {"TableName": "t", "Key": {}}, "End": true}}}"#)
        .unwrap();
        loads(&i);
        let y = &i.workflows[0].yaml;
        assert!(y.contains("role_arn: arn:aws:iam::111122223333:role/writer"), "{y}");
        assert!(y.contains("role_arn: '{{"), "{y}");
        let p = problems(
            r#"{"StartAt": "Call", "States": {"Call": {"Type": "Task", "Resource": "arn:aws:states:::http:invoke",
                "Credentials": {"RoleArn": "arn:aws:iam::1:role/x"}, "Parameters": {"ApiEndpoint": "https://x", "Method": "GET"}, "End": true}}}"#,
        );
        assert!(p.iter().any(|x| x.field == "Credentials"), "{p:?}");
    }

    #[test]
    fn a_variable_read_where_no_assignment_reaches_is_refused() {
        let p = problems(
            r#"{"StartAt": "Read", "States": {
                "Read": {"Type": "Pass", "Parameters": {"l.$": "$later"}, "Next": "Set"},
                "Set": {"Type": "Pass", "Assign": {"later": 1, "states": 2}, "End": true}}}"#,
        );
        assert!(p.iter().any(|x| x.state.as_deref() == Some("Read") && x.field == "$later"), "{p:?}");
        assert!(p.iter().any(|x| x.state.as_deref() == Some("Set") && x.field == "Assign.states"), "{p:?}");
    }

    #[test]
    fn assignments_become_steps_that_later_states_wait_for() {
        let i = run(r#"{"StartAt": "Set", "States": {
                "Set": {"Type": "Pass", "Assign": {"n.$": "$.n"}, "Next": "Use"},
                "Use": {"Type": "Pass", "Parameters": {"n.$": "$n"}, "End": true}}}"#)
        .unwrap();
        loads(&i);
        let y = &i.workflows[0].yaml;
        assert!(y.contains("- id: Set_assign"), "{y}");
        assert!(y.contains("(.steps.Set_assign | if .status == \"succeeded\""), "{y}");
    }

    #[test]
    fn jsonata_beyond_the_subset_is_refused_naming_each_state() {
        let p = problems(
            r#"{"StartAt": "A", "QueryLanguage": "JSONata", "States": {
                "A": {"Type": "Pass", "Output": "{% $states.input.items[price ~> /x/] %}", "Next": "B"},
                "B": {"Type": "Map", "Items": "{% $states.input.items.* %}", "MaxConcurrency": "{% 2 %}",
                      "ItemProcessor": {"StartAt": "P", "States": {"P": {"Type": "Pass", "End": true}}},
                      "End": true}}}"#,
        );
        assert!(p.iter().any(|x| x.state.as_deref() == Some("A") && x.field == "Output"), "{p:?}");
        assert!(p.iter().any(|x| x.state.as_deref() == Some("B") && x.field == "Items"), "{p:?}");
        assert!(p.iter().any(|x| x.state.as_deref() == Some("B") && x.field == "MaxConcurrency"), "{p:?}");
    }

    #[test]
    fn jsonata_states_convert() {
        let i = run(
            r#"{"StartAt": "Call", "QueryLanguage": "JSONata", "States": {
              "Call": {"Type": "Task", "Resource": "arn:aws:states:::dynamodb:getItem",
                       "Arguments": {"TableName": "t", "Key": {"id": {"S": "{% $states.input.id %}"}}},
                       "Output": {"item": "{% $states.result.Item %}", "id": "{% $states.input.id %}"}, "Next": "Check"},
              "Check": {"Type": "Choice", "Choices": [{"Condition": "{% $exists($states.input.item) %}", "Next": "Done"}],
                        "Default": "Missing"},
              "Done": {"Type": "Succeed", "Output": "{% 'found ' & $states.input.id %}"},
              "Missing": {"Type": "Fail", "Error": "NotFound", "Cause": "{% 'no ' & $states.input.id %}"}}}"#,
        )
        .expect("imports");
        let y = &i.workflows[0].yaml;
        assert!(y.contains(r#"S: '{{ ((.input) | jsonata_get("id")) }}'"#), "{y}");
        assert!(y.contains(r#"{"id": ($raw | jsonata_get("id")), "item": ($r0 | jsonata_get("Item"))}"#), "{y}");
        loads(&i);
    }

    #[test]
    fn unknown_targets_and_types_are_problems() {
        let p = problems(
            r#"{"StartAt": "A", "States": {
                "A": {"Type": "Pass", "Next": "Nowhere"},
                "B": {"Type": "Teleport", "End": true}}}"#,
        );
        assert!(p.iter().any(|x| x.message.contains("no state \"Nowhere\"")), "{p:?}");
        assert!(p.iter().any(|x| x.state.as_deref() == Some("B")), "{p:?}");
    }

    #[test]
    fn substitutions_fill_placeholders_and_missing_ones_are_warned() {
        let def = r#"{"StartAt": "A", "States": {"A": {"Type": "Task", "Resource": "${Fn}",
            "Parameters": {"Table": "${T}"}, "End": true}}}"#;
        let subs = BTreeMap::from([("Fn".to_owned(), "arn:aws:lambda:us-east-1:1:function:f".to_owned())]);
        let i = import(def, "wf", &subs).expect("imports");
        assert!(i.workflows[0].yaml.contains("function:f"), "{}", i.workflows[0].yaml);
        assert!(i.warnings.iter().any(|w| w.contains("${T}")), "{:?}", i.warnings);
        loads(&i);
    }

    #[test]
    fn steps_keep_their_state_names_in_comments() {
        let i =
            run(r#"{"StartAt": "Say hi!", "States": {"Say hi!": {"Type": "Pass", "End": true}}}"#).expect("imports");
        assert!(i.workflows[0].yaml.contains("# state \"Say hi!\" (Pass)\n- id: Say_hi_\n"), "{}", i.workflows[0].yaml);
        loads(&i);
    }

    #[test]
    fn a_machine_timeout_becomes_the_runs_deadline() {
        let i = run(r#"{"StartAt": "A", "TimeoutSeconds": 3600, "States": {"A": {"Type": "Pass", "End": true}}}"#)
            .expect("imports");
        assert!(i.workflows[0].yaml.contains("deadline: 3600s"), "{}", i.workflows[0].yaml);
        assert!(i.warnings.iter().any(|w| w.contains("TIMED_OUT")), "{:?}", i.warnings);
        loads(&i);
    }

    #[test]
    fn callbacks_sync_children_and_maps_validate() {
        let i = run(
            r#"{"StartAt": "Ask", "States": {
              "Ask": {"Type": "Task", "Resource": "arn:aws:states:::sqs:sendMessage.waitForTaskToken",
                      "Parameters": {"QueueUrl": "q", "MessageBody": {"token.$": "$$.Task.Token"}},
                      "TimeoutSeconds": 3600, "Next": "Child"},
              "Child": {"Type": "Task", "Resource": "arn:aws:states:::states:startExecution.sync:2",
                        "Parameters": {"StateMachineArn": "arn:aws:states:us-east-1:1:stateMachine:other", "Input.$": "$"},
                        "Next": "Api"},
              "Api": {"Type": "Task", "Resource": "arn:aws:states:::apigateway:invoke",
                      "Parameters": {"ApiEndpoint": "abc.execute-api.us-east-1.amazonaws.com", "Method": "GET", "Stage": "prod",
                                     "Path": "/items", "AuthType": "IAM_ROLE"}, "Next": "Each"},
              "Each": {"Type": "Map", "ItemsPath": "$.items", "MaxConcurrency": 5,
                       "ItemProcessor": {"StartAt": "One", "States": {"One": {"Type": "Pass", "End": true}}},
                       "End": true}}}"#,
        )
        .expect("imports");
        let main = &i.workflows[0].yaml;
        assert!(main.contains("tool: wait_event") && main.contains("baton.callback"), "{main}");
        assert!(main.contains("tool: workflow") && main.contains("name: other"), "{main}");
        assert!(main.contains("aws_sigv4") && main.contains("execute-api"), "{main}");
        assert_eq!(i.workflows.len(), 2);
        assert_eq!(i.workflows[1].name, "wf-each");
        loads(&i);
    }
}
