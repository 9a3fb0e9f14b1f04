//! JSONPath as the States Language uses it (`$.a.b[0]`, `$['a b']`, `$$.Execution.Id`) into jq,
//! and the data-flow fields built on it: payload templates (`Parameters`, `ResultSelector`,
//! `ItemSelector`: keys ending in `.$` take a path or an intrinsic), `ResultPath` and
//! `OutputPath`. Every function returns jq source or a message saying what cannot be converted.

use serde_json::Value;

pub(crate) use super::jsonpath::{Seg, definite, reference_segments, segments, segs_array, segs_jq, segs_stream};

/// What a path or template is translated in: the state it belongs to, what `$$.Task.Token`
/// is there (a jq expression), and whether `$$.Map.Item.*` may be read (`.item`, `.index`).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Cx<'a> {
    /// The state's name (`$$.State.Name`).
    pub state: &'a str,
    /// The task token's expression, in a `.waitForTaskToken` task's parameters.
    pub token: Option<&'a str>,
    /// True in a Map's `ItemSelector`, where `$$.Map.Item.Value` and `.Index` are the item.
    pub map_item: bool,
}

/// jq failing the step with the States Language error `error` (jq giving a string) and `cause`:
/// a name baton takes as a kind (`States.Runtime`, `CustomError`, `Payments.Declined`) becomes
/// the step's error kind through `fail/2`, so `retry.on`, the run's error and its catchers see
/// it; any other name travels as `{Error, Cause}` JSON in an `expression` error, which the
/// catchers read back.
pub(crate) fn raise(error: &str, cause: &str) -> String {
    let named = serde_json::from_str::<String>(error).is_ok_and(|e| crate::ErrorKind::raisable(&e).is_ok());
    if named {
        return format!("fail({error}; {cause})");
    }
    format!(
        "(({error}) as $fe | ({cause}) as $fc | if ($fe | type) == \"string\" and ($fe | length) <= 128 \
         and ($fe | test(\"^[A-Z][A-Za-z0-9_]*([.][A-Za-z0-9_]+)*$\")) then fail($fe; $fc) \
         else error({{Error: $fe, Cause: $fc}} | tojson) end)"
    )
}

/// A string as a jq (and JSON) string literal.
pub(crate) fn json_str(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into())
}

/// A JSON value as a jq literal.
pub(crate) fn literal(v: &Value) -> String {
    serde_json::to_string(v).unwrap_or_else(|_| "null".into())
}

/// A path (`$...` on the effective input `input`, or `$$...` on the context object) as jq. As
/// in Step Functions, a step of the path that finds nothing fails the state with
/// `States.Runtime` (a JSON `null` found is a value, not a miss).
pub(crate) fn path(p: &str, input: &str, cx: &Cx<'_>) -> Result<String, String> {
    if let Some(rest) = p.strip_prefix("$$") {
        return context(rest, cx);
    }
    // `$name...`: a path on workflow variable `name` (see `variables`).
    if let Some((name, rest)) = super::var_ref::split(p) {
        return path(&format!("${rest}"), &super::var_ref::placeholder(name), cx);
    }
    let rest = p.strip_prefix('$').ok_or_else(|| format!("`{p}` is not a path: paths start with `$`"))?;
    let segs = segments(rest)?;
    if segs.is_empty() {
        return Ok(input.to_owned());
    }
    // An indefinite path gives the array of what it finds (empty when nothing matches).
    if !definite(&segs) {
        return Ok(format!("[{input} | {}]", segs_stream(&segs)));
    }
    let miss = json_str(&format!("the JSONPath {p} could not be found (state \"{}\")", cx.state));
    Ok(format!(
        "({input} | if has_path({}) then {} else fail(\"States.Runtime\"; {miss}) end)",
        segs_array(&segs),
        segs_jq(&segs)
    ))
}

/// [`path`] where a step that finds nothing gives `null`: what a Choice rule reads, which
/// checks presence itself (`IsPresent`, and `States.Runtime` for a comparison on a miss).
pub(crate) fn path_or_null(p: &str, input: &str, cx: &Cx<'_>) -> Result<String, String> {
    if let Some(rest) = p.strip_prefix("$$") {
        return context(rest, cx);
    }
    if let Some((name, rest)) = super::var_ref::split(p) {
        return path_or_null(&format!("${rest}"), &super::var_ref::placeholder(name), cx);
    }
    let rest = p.strip_prefix('$').ok_or_else(|| format!("`{p}` is not a path: paths start with `$`"))?;
    let segs = segments(rest)?;
    Ok(if segs.is_empty() {
        input.to_owned()
    } else if definite(&segs) {
        format!("({input} | {})", segs_jq(&segs))
    } else {
        format!("[{input} | {}]", segs_stream(&segs))
    })
}

/// `$$` (the context object) paths: what baton has an equivalent of.
fn context(rest: &str, cx: &Cx<'_>) -> Result<String, String> {
    let segs = segments(rest)?;
    let key = |i: usize| match segs.get(i) {
        Some(Seg::Key(k)) => k.as_str(),
        _ => "",
    };
    let tail = |from: usize| segs_jq(&segs[from.min(segs.len())..]);
    let then = |base: &str, from: usize| {
        if segs.len() > from { format!("({base} | {})", tail(from)) } else { base.to_owned() }
    };
    Ok(match (key(0), key(1)) {
        ("Execution", "Id" | "Name") if segs.len() == 2 => ".run.id".into(),
        ("Execution", "Input") => then(".input", 2),
        ("StateMachine", "Id" | "Name") if segs.len() == 2 => ".run.workflow".into(),
        ("State", "Name") if segs.len() == 2 => json_str(cx.state),
        ("Task", "Token") if segs.len() == 2 => match cx.token {
            Some(t) => t.to_owned(),
            None => return Err("`$$.Task.Token` exists only in a `.waitForTaskToken` task's parameters".into()),
        },
        ("Map", "Item") if cx.map_item => match key(2) {
            "Value" => then(".item", 3),
            "Index" if segs.len() == 3 => ".index".into(),
            _ => return Err(format!("`$${rest}` is not a Map item field (`Value`, `Index`)")),
        },
        ("Map", _) => return Err("`$$.Map.Item.*` can be read only in a Map's `ItemSelector`/`Parameters`".into()),
        _ => {
            return Err(format!(
                "`$${rest}` has no equivalent in baton (available: $$.Execution.Id/Name/Input, \
                 $$.StateMachine.Id/Name, $$.State.Name, $$.Task.Token, $$.Map.Item.Value/Index)"
            ));
        }
    })
}

/// `InputPath`/`OutputPath` (absent: `$`, the whole value; `null`: `{}`) applied to `input`.
pub(crate) fn select(field: Option<&Value>, input: &str, cx: &Cx<'_>) -> Result<String, String> {
    match field {
        None => Ok(input.to_owned()),
        Some(Value::Null) => Ok("{}".into()),
        Some(Value::String(p)) if p.starts_with("$$") => path(p, input, cx),
        Some(Value::String(p)) => path(p, input, cx),
        Some(_) => Err("a path (a string starting with `$`) or null".into()),
    }
}

/// `ResultPath` (absent: `$`, the result replaces the input; `null`: the input is kept) merging
/// `result` into `raw`.
pub(crate) fn merge(field: Option<&Value>, raw: &str, result: &str) -> Result<String, String> {
    match field {
        None => Ok(result.to_owned()),
        Some(Value::Null) => Ok(raw.to_owned()),
        Some(Value::String(p)) => {
            let rest = p
                .strip_prefix('$')
                .filter(|r| !r.starts_with('$'))
                .ok_or_else(|| format!("`{p}` is not a reference path (`$` or `$.field...`)"))?;
            let segs = reference_segments(rest)?;
            if segs.is_empty() {
                Ok(result.to_owned())
            } else {
                Ok(format!("({raw} | setpath({}; {result}))", segs_array(&segs)))
            }
        }
        Some(_) => Err("a reference path (a string such as `$.result`) or null".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cx() -> Cx<'static> {
        Cx { state: "S", token: None, map_item: false }
    }

    #[test]
    fn paths_become_jq() {
        assert_eq!(path("$", "$in", &cx()).unwrap(), "$in");
        assert_eq!(path_or_null("$.a.b[0]", "$in", &cx()).unwrap(), "($in | .a.b[0])");
        assert_eq!(path_or_null("$['a b'].c", "$in", &cx()).unwrap(), "($in | .[\"a b\"].c)");
        assert_eq!(path_or_null("$[1].error", "$in", &cx()).unwrap(), "($in | .[1].error)");
        assert_eq!(
            path("$.a[0]", "$in", &cx()).unwrap(),
            r#"($in | if has_path(["a", 0]) then .a[0] else fail("States.Runtime"; "the JSONPath $.a[0] could not be found (state \"S\")") end)"#
        );
        assert_eq!(path("$$.Execution.Id", "$in", &cx()).unwrap(), ".run.id");
        assert_eq!(path("$$.Execution.Input.x", "$in", &cx()).unwrap(), "(.input | .x)");
        assert_eq!(path("$$.State.Name", "$in", &cx()).unwrap(), "\"S\"");
        assert_eq!(
            path("$..a", "$in", &cx()).unwrap(),
            r#"[$in | ((.. | select(type == "object" and has("a")) | .["a"]))]"#
        );
        assert_eq!(
            path("$.a[*].b", "$in", &cx()).unwrap(),
            r#"[$in | (select(type == "object" and has("a")) | .["a"]) | ((if type == "array" or type == "object" then .[] else empty end)) | (select(type == "object" and has("b")) | .["b"])]"#
        );
        assert!(path("$.a[1:]", "$in", &cx()).unwrap().contains(".[1:][]"));
        assert!(path("$.a[0,2]", "$in", &cx()).is_ok());
        assert!(path("$.a[::2]", "$in", &cx()).is_err());
        assert!(merge(Some(&"$.a[*]".into()), "$raw", "$r").is_err());
        assert!(path("$$.Task.Token", "$in", &cx()).is_err());
        assert!(path("$$.State.EnteredTime", "$in", &cx()).unwrap_err().contains("no equivalent"));
        let m = Cx { map_item: true, ..cx() };
        assert_eq!(path("$$.Map.Item.Value.id", "$in", &m).unwrap(), "(.item | .id)");
        assert_eq!(path("$$.Map.Item.Index", "$in", &m).unwrap(), ".index");
    }

    #[test]
    fn result_path_sets_or_replaces_or_keeps() {
        assert_eq!(merge(None, "$raw", "$r").unwrap(), "$r");
        assert_eq!(merge(Some(&Value::Null), "$raw", "$r").unwrap(), "$raw");
        assert_eq!(merge(Some(&"$.a.b".into()), "$raw", "$r").unwrap(), "($raw | setpath([\"a\", \"b\"]; $r))");
        assert!(merge(Some(&"$$.x".into()), "$raw", "$r").is_err());
    }
}
