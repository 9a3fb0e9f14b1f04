//! The parts of workflow variables (`Assign`, `$name`) that the state conversions name: the
//! placeholders a read or an environment is written as until `variables` resolves them, what
//! an `Assign` reads, and which steps assign. See `variables` for how it all fits.

use serde_json::{Map, Value};

/// A string as a jq (and JSON) string literal.
fn json_str(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into())
}

pub(crate) const OPEN: &str = "@@asl-var:";
pub(crate) const CLOSE: &str = "@@";
/// Stands for the run's input in a child that may read outer variables, until it is known
/// whether the input carries them (`.input.__asl_input`) or not (`.input`).
pub(crate) const RUN_INPUT: &str = "@@asl-input@@";
/// Stands for the object of variables `a`, `b` (`@@asl-env:a,b@@`), or of every variable of
/// the workflow (`@@asl-env:*@@`), as they are where the step runs: what a loop carries.
pub(crate) const ENV_OPEN: &str = "@@asl-env:";

/// The placeholder for the object of the variables `names` (`None`: all of the workflow's).
pub(crate) fn env_placeholder(names: Option<&[String]>) -> String {
    match names {
        Some(n) => format!("{ENV_OPEN}{}{CLOSE}", n.join(",")),
        None => format!("{ENV_OPEN}*{CLOSE}"),
    }
}

/// Whether a state mentions a workflow variable anywhere (`$name` that is not `$states`, a
/// function call or `$$`): a loop that does gets its variables carried from pass to pass.
pub(crate) fn mentions(v: &Value) -> bool {
    match v {
        Value::String(s) => {
            let b = s.as_bytes();
            (0..b.len()).any(|i| {
                if b[i] != b'$' || (i > 0 && b[i - 1] == b'$') {
                    return false;
                }
                let rest = &s[i + 1..];
                let end = rest.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(rest.len());
                let name = &rest[..end];
                name.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
                    && name != "states"
                    && !rest[end..].starts_with('(')
            })
        }
        Value::Array(a) => a.iter().any(mentions),
        Value::Object(m) => m.iter().any(|(k, x)| k == "Assign" || mentions(x)),
        _ => false,
    }
}

/// jq for a child's input `input`, carrying the outer variables `outer` it reads when there
/// are any: `{"__asl_input": ..., "__asl_vars": {name: value}}`.
pub(crate) fn with_outer(input: &str, outer: &[String]) -> String {
    if outer.is_empty() {
        return input.to_owned();
    }
    let vars: Vec<String> = outer.iter().map(|n| format!("{}: {}", json_str(n), placeholder(n))).collect();
    // Spaced braces: the value goes in a `{{ }}` template, which two closing braces would end.
    format!("{{\"__asl_input\": ({input}), \"__asl_vars\": {{ {} }} }}", vars.join(", "))
}

/// The placeholder standing for variable `name` until `variables` resolves it.
pub(crate) fn placeholder(name: &str) -> String {
    format!("{OPEN}{name}{CLOSE}")
}

/// A variable reference path (`$name`, `$name.a[0]`) split into the name and the rest.
pub(crate) fn split(p: &str) -> Option<(&str, &str)> {
    let rest = p.strip_prefix('$')?;
    if !rest.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_') {
        return None;
    }
    let end = rest.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(rest.len());
    Some((&rest[..end], &rest[end..]))
}

/// Whether `name` may be a variable's name (Step Functions: a letter or `_`, then letters,
/// digits and `_`; `states` is reserved).
pub(crate) fn valid_name(name: &str) -> bool {
    split(&format!("${name}")).is_some_and(|(n, rest)| n == name && rest.is_empty()) && name != "states"
}

/// Whether a state has an `_assign` step: its own `Assign` or a Choice rule's.
pub(crate) fn assigns(st: &Value) -> bool {
    st.get("Assign").is_some()
        || st
            .get("Choices")
            .and_then(Value::as_array)
            .is_some_and(|rules| rules.iter().any(|r| r.get("Assign").is_some()))
}

/// The variables an `Assign` object sets (`x` and `x.$` both set `x`).
pub(crate) fn names_of(assign: &Map<String, Value>) -> Vec<String> {
    assign.keys().map(|k| k.strip_suffix(".$").unwrap_or(k).to_owned()).collect()
}

/// A step giving variables.
pub(crate) struct Assigner {
    /// Its id.
    pub step: String,
    /// The names it may assign.
    pub names: Vec<String>,
    /// Where its output holds them: `None` for an `_assign` step (its output, when it
    /// succeeded); `Some(status)` for a step whose output's `vars` holds them when it ended
    /// with that status (`fell_back`: a catcher's; `succeeded`: a loop's, from its last pass).
    pub in_vars: Option<&'static str>,
}

/// What a state's `Assign` reads: in JSONPath, `$` (`dollar`); in JSONata, `$states.input`
/// (`input`), `$states.result` (`result`) and, in a catcher, `$states.errorOutput`.
pub(crate) struct Reads<'a> {
    pub dollar: &'a str,
    pub input: &'a str,
    pub result: Option<&'a str>,
    pub error_output: Option<&'a str>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn variable_paths_split_at_the_name() {
        assert_eq!(split("$total"), Some(("total", "")));
        assert_eq!(split("$order.items[0]"), Some(("order", ".items[0]")));
        assert_eq!(split("$.a"), None);
        assert_eq!(split("$$.Execution.Id"), None);
        assert!(valid_name("_x1") && !valid_name("1x") && !valid_name("states") && !valid_name("a-b"));
        assert!(mentions(&serde_json::json!({"P": {"x.$": "$count"}})));
        assert!(!mentions(&serde_json::json!({"P": {"x.$": "$.count", "y": "{% $count($states.input) %}"}})));
    }
}
