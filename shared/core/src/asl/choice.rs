//! A Choice rule (a comparison, or `And`/`Or`/`Not` of rules) as a jq condition on the state's
//! effective input `$in`. Comparisons check the type first, as the States Language does: a
//! `StringEquals` on a number is false, not an error.

use serde_json::{Map, Value};

use super::paths::{Cx, json_str, literal, path_or_null, segs_array};

/// The comparison operators, by the type their operands must have.
const OPERATORS: &[(&str, &str, &str)] = &[
    ("StringEquals", "string", "=="),
    ("StringLessThan", "string", "<"),
    ("StringGreaterThan", "string", ">"),
    ("StringLessThanEquals", "string", "<="),
    ("StringGreaterThanEquals", "string", ">="),
    ("NumericEquals", "number", "=="),
    ("NumericLessThan", "number", "<"),
    ("NumericGreaterThan", "number", ">"),
    ("NumericLessThanEquals", "number", "<="),
    ("NumericGreaterThanEquals", "number", ">="),
    ("BooleanEquals", "boolean", "=="),
    ("TimestampEquals", "timestamp", "=="),
    ("TimestampLessThan", "timestamp", "<"),
    ("TimestampGreaterThan", "timestamp", ">"),
    ("TimestampLessThanEquals", "timestamp", "<="),
    ("TimestampGreaterThanEquals", "timestamp", ">="),
];

/// An RFC 3339 time as the States Language accepts it.
const TIMESTAMP_RE: &str =
    r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\\.[0-9]+)?(Z|[+-][0-9]{2}:[0-9]{2})$";

/// The rule at `at` (for messages) as a jq condition; problems go to `errs` as (field, message).
pub(crate) fn rule(r: &Value, cx: &Cx<'_>, at: &str, errs: &mut Vec<(String, String)>) -> String {
    let Some(m) = r.as_object() else {
        errs.push((at.to_owned(), "a choice rule is an object".into()));
        return "false".into();
    };
    if let Some(list) = m.get("And").or_else(|| m.get("Or")) {
        let (op, name) = if m.contains_key("And") { (" and ", "And") } else { (" or ", "Or") };
        let Some(items) = list.as_array().filter(|a| !a.is_empty()) else {
            errs.push((format!("{at}.{name}"), "a non-empty list of rules".into()));
            return "false".into();
        };
        let parts: Vec<String> =
            items.iter().enumerate().map(|(i, x)| rule(x, cx, &format!("{at}.{name}[{i}]"), errs)).collect();
        return format!("({})", parts.join(op));
    }
    if let Some(inner) = m.get("Not") {
        return format!("({} | not)", rule(inner, cx, &format!("{at}.Not"), errs));
    }
    if m.contains_key("Condition") {
        errs.push((
            format!("{at}.Condition"),
            "JSONata conditions cannot be converted (write the rule in JSONPath)".into(),
        ));
        return "false".into();
    }
    let Some(var) = m.get("Variable").and_then(Value::as_str) else {
        errs.push((format!("{at}.Variable"), "a comparison needs `Variable`, a path".into()));
        return "false".into();
    };
    let v = match path_or_null(var, "$in", cx) {
        Ok(v) => v,
        Err(e) => {
            errs.push((format!("{at}.Variable"), e));
            return "false".into();
        }
    };
    let ops: Vec<(&String, &Value)> =
        m.iter().filter(|(k, _)| !matches!(k.as_str(), "Variable" | "Next" | "Comment" | "Assign")).collect();
    let [(op, operand)] = ops.as_slice() else {
        errs.push((at.to_owned(), "a comparison has exactly one operator (`StringEquals`, `IsPresent`, ...)".into()));
        return "false".into();
    };
    match comparison(op, operand, var, &v, cx) {
        // Comparing a value that is not there is an error in the States Language, not false.
        Ok(c) if !op.starts_with("Is") => match presence(var, cx) {
            Ok(p) if p != "true" => format!(
                "(if {p} then {c} else {} end)",
                super::paths::raise(
                    "\"States.Runtime\"",
                    &json_str(&format!("the choice rule's Variable {var} is not in the input"))
                )
            ),
            _ => c,
        },
        Ok(c) => c,
        Err(e) => {
            errs.push((format!("{at}.{op}"), e));
            "false".into()
        }
    }
}

fn comparison(op: &str, operand: &Value, var: &str, v: &str, cx: &Cx<'_>) -> Result<String, String> {
    let flag = || operand.as_bool().ok_or_else(|| format!("`{op}` takes true or false"));
    let is_type = |t: &str| match t {
        "timestamp" => format!("(({v}) | asl_is_ts)"),
        t => format!("(({v}) | type == \"{t}\")"),
    };
    match op {
        "IsPresent" => {
            let present = presence(var, cx)?;
            return Ok(if flag()? { present } else { format!("({present} | not)") });
        }
        "IsNull" => {
            let c = format!("({} and ({v}) == null)", presence(var, cx)?);
            return Ok(if flag()? { c } else { format!("({c} | not)") });
        }
        "IsNumeric" | "IsString" | "IsBoolean" | "IsTimestamp" => {
            let t = match op {
                "IsNumeric" => "number",
                "IsString" => "string",
                "IsBoolean" => "boolean",
                _ => "timestamp",
            };
            let c = is_type(t);
            return Ok(if flag()? { c } else { format!("({c} | not)") });
        }
        "StringMatches" => {
            let pat = operand.as_str().ok_or("`StringMatches` takes a string pattern")?;
            return Ok(format!("({} and (({v}) | test({})))", is_type("string"), json_str(&wildcard_regex(pat))));
        }
        _ => {}
    }
    let (base, by_path) = match op.strip_suffix("Path") {
        Some(b) => (b, true),
        None => (op, false),
    };
    let Some(&(_, ty, cmp)) = OPERATORS.iter().find(|(n, _, _)| *n == base) else {
        return Err(format!("unknown comparison operator `{op}`"));
    };
    let other = if by_path {
        let p = operand.as_str().ok_or_else(|| format!("`{op}` takes a path"))?;
        path_or_null(p, "$in", cx)?
    } else {
        let ok = match ty {
            "string" | "timestamp" => operand.is_string(),
            "number" => operand.is_number(),
            _ => operand.is_boolean(),
        };
        if !ok {
            return Err(format!("`{op}` compares with a {ty}, not {operand}"));
        }
        literal(operand)
    };
    let other_type = match ty {
        "timestamp" => format!("(({other}) | asl_is_ts)"),
        t => format!("(({other}) | type == \"{t}\")"),
    };
    let (l, r) = if ty == "timestamp" { (epoch(v), epoch(&other)) } else { (format!("({v})"), format!("({other})")) };
    let guard = if by_path { format!("{} and {other_type}", is_type(ty)) } else { is_type(ty) };
    Ok(format!("({guard} and {l} {cmp} {r})"))
}

/// A timestamp as seconds since the epoch (see [`defs`]).
fn epoch(v: &str) -> String {
    format!("(({v}) | asl_ts)")
}

/// The jq functions the conditions in `expr` call, defined in front of it: `asl_is_ts` (an
/// RFC 3339 time as the States Language accepts it) and `asl_ts` (such a time as seconds since
/// the epoch, its offset applied, so that times in different offsets compare rightly).
pub(crate) fn defs(expr: &str) -> String {
    let mut d = String::new();
    if expr.contains("asl_is_ts") {
        d.push_str(&format!("def asl_is_ts: type == \"string\" and test(\"{TIMESTAMP_RE}\"); "));
    }
    if expr.contains("asl_ts)") {
        d.push_str(
            "def asl_ts: capture(\"^(?<d>[0-9-]+T[0-9:]+)(?<f>\\\\.[0-9]+)?(?<z>Z|[+-][0-9]{2}:[0-9]{2})$\") \
             | ((.d + \"Z\") | fromdateiso8601) + ((.f // \"0\") | if . == \"0\" then 0 else (\"0\" + .) | tonumber end) \
             - (if .z == \"Z\" then 0 else ((.z[1:3] | tonumber) * 3600 + (.z[4:6] | tonumber) * 60) * (if .z[0:1] == \"-\" then -1 else 1 end) end); ",
        );
    }
    d
}

/// Whether the path exists in `$in` (or the context), field by field.
fn presence(var: &str, cx: &Cx<'_>) -> Result<String, String> {
    if var.starts_with("$$") {
        return Ok(format!("({} != null)", path_or_null(var, "$in", cx)?));
    }
    // A workflow variable (`$x.a`): the path inside its value.
    if let Some((name, rest)) = super::var_ref::split(var) {
        let segs = super::paths::reference_segments(rest)?;
        let base = super::var_ref::placeholder(name);
        return Ok(if segs.is_empty() { "true".into() } else { format!("({base} | has_path({}))", segs_array(&segs)) });
    }
    let segs = super::paths::reference_segments(var.strip_prefix('$').unwrap_or(var))?;
    if segs.is_empty() {
        return Ok("true".into());
    }
    let mut checks = Vec::new();
    for i in 0..segs.len() {
        let parent = segs_array(&segs[..i]);
        let key = match &segs[i] {
            super::paths::Seg::Key(k) => format!("(type == \"object\" and has({}))", json_str(k)),
            super::paths::Seg::Index(n) => format!("(type == \"array\" and length > {n})"),
            _ => "false".into(),
        };
        checks.push(format!("($in | getpath({parent}) | {key})"));
    }
    Ok(format!("({})", checks.join(" and ")))
}

/// A `StringMatches` pattern (`*` any run of characters, `\*` a star, `\\` a backslash) as a
/// regular expression matching the whole string.
fn wildcard_regex(pat: &str) -> String {
    let mut re = String::from("^");
    let mut chars = pat.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some(e) => re.push_str(&regex_escape(e)),
                None => re.push_str("\\\\"),
            },
            '*' => re.push_str(".*"),
            c => re.push_str(&regex_escape(c)),
        }
    }
    re.push('$');
    re
}

fn regex_escape(c: char) -> String {
    if "\\.+*?()|[]{}^$".contains(c) { format!("\\{c}") } else { c.to_string() }
}

/// The Choice's rules (`Choices`) as (condition, target) in order, plus problems.
pub(crate) fn choices(m: &Map<String, Value>, cx: &Cx<'_>, errs: &mut Vec<(String, String)>) -> Vec<(String, String)> {
    let Some(list) = m.get("Choices").and_then(Value::as_array).filter(|a| !a.is_empty()) else {
        errs.push(("Choices".into(), "a Choice state needs a non-empty `Choices` list".into()));
        return Vec::new();
    };
    let mut out = Vec::new();
    for (i, r) in list.iter().enumerate() {
        let at = format!("Choices[{i}]");
        let cond = rule(r, cx, &at, errs);
        match r.get("Next").and_then(Value::as_str) {
            Some(n) => out.push((cond, n.to_owned())),
            None => errs.push((format!("{at}.Next"), "each choice names its `Next` state".into())),
        }
        // A rule's `Assign` is made by the Choice's assign step (see `variables`).
        if r.get("Output").is_some() {
            errs.push((format!("{at}.Output"), "a choice rule's own `Output` cannot be converted".into()));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards_become_anchored_regexes() {
        assert_eq!(wildcard_regex("log-*.txt"), r"^log-.*\.txt$");
        assert_eq!(wildcard_regex(r"a\*b"), r"^a\*b$");
    }
}
