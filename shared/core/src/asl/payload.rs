//! Payload templates (`Parameters`, `ResultSelector`, `ItemSelector`, `BatchInput`): JSON whose
//! keys ending in `.$` take a path or an intrinsic function, as one jq expression building the
//! value.

use serde_json::{Map, Value};

use super::intrinsics;
use super::paths::{Cx, json_str, literal, path};

/// A payload template in a state's query language: JSONPath's (`.$` keys, see [`payload`]) or
/// JSONata's (`{% %}` strings, reading `$states.input` as `input`).
pub(crate) fn payload_in(
    jsonata: bool,
    v: &Value,
    input: &str,
    cx: &Cx<'_>,
    at: &str,
    errs: &mut Vec<(String, String)>,
) -> String {
    if jsonata {
        super::jsonata::template(v, &super::jsonata::Vars { input, result: None, cx, error_output: None }, at, errs)
    } else {
        payload(v, input, cx, at, errs)
    }
}

/// jq for what a JSONPath `Assign` reads as `$` in a Task, Parallel or Map state: the result
/// (`$r0`) after `ResultSelector`. Its problems are reported where the state's output is built.
pub(crate) fn selected(m: &Map<String, Value>, cx: &Cx<'_>) -> String {
    match m.get("ResultSelector") {
        Some(rs) => payload(rs, "$r0", cx, "ResultSelector", &mut Vec::new()),
        None => "$r0".into(),
    }
}

/// A payload template (`Parameters`, `ResultSelector`, `ItemSelector`, `BatchInput`) as a jq
/// expression building the value, reading paths from `input`. `at` names the field for errors,
/// which are collected in `errs` as (field, message).
pub(crate) fn payload(v: &Value, input: &str, cx: &Cx<'_>, at: &str, errs: &mut Vec<(String, String)>) -> String {
    match v {
        Value::Object(m) => {
            let mut parts = Vec::new();
            for (k, val) in m {
                let here = format!("{at}.{k}");
                if let Some(key) = k.strip_suffix(".$") {
                    let expr = match val.as_str() {
                        Some(src) => dynamic(src, input, cx, &here).unwrap_or_else(|e| {
                            errs.push((here, e));
                            "null".into()
                        }),
                        None => {
                            errs.push((here, "a `.$` field takes a path or an intrinsic function (a string)".into()));
                            "null".into()
                        }
                    };
                    parts.push(format!("{}: {expr}", json_str(key)));
                } else {
                    parts.push(format!("{}: {}", json_str(k), payload(val, input, cx, &here, errs)));
                }
            }
            format!("{{{}}}", parts.join(", "))
        }
        Value::Array(items) => {
            let parts: Vec<String> =
                items.iter().enumerate().map(|(i, x)| payload(x, input, cx, &format!("{at}[{i}]"), errs)).collect();
            format!("[{}]", parts.join(", "))
        }
        other => literal(other),
    }
}

/// The value of a `.$` field at `at`: a path or an intrinsic function call.
pub(crate) fn dynamic(src: &str, input: &str, cx: &Cx<'_>, at: &str) -> Result<String, String> {
    let t = src.trim();
    if t.starts_with("States.") { intrinsics::call(t, input, cx, at) } else { path(t, input, cx) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cx() -> Cx<'static> {
        Cx { state: "S", token: None, map_item: false }
    }

    #[test]
    fn payload_templates_build_objects() {
        let v: Value =
            serde_json::json!({"a": 1, "b.$": "$.x", "c": {"d.$": "$$.Execution.Id"}, "e": ["x", {"f.$": "$"}]});
        let mut errs = Vec::new();
        let out = payload(&v, "$in", &cx(), "Parameters", &mut errs);
        assert!(errs.is_empty());
        let x = super::super::paths::path("$.x", "$in", &cx()).unwrap();
        assert_eq!(out, format!(r#"{{"a": 1, "b": {x}, "c": {{"d": .run.id}}, "e": ["x", {{"f": $in}}]}}"#));
        let bad: Value = serde_json::json!({"b.$": "$.x[?(@.a =~ /y/)]"});
        payload(&bad, "$in", &cx(), "Parameters", &mut errs);
        assert_eq!(errs[0].0, "Parameters.b.$");
    }
}
