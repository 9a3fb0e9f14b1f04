//! JSONPath as the States Language uses it (`$.a.b[0]`, `$['a b']`, `$$.Execution.Id`) into jq,
//! and the data-flow fields built on it: payload templates (`Parameters`, `ResultSelector`,
//! `ItemSelector`: keys ending in `.$` take a path or an intrinsic), `ResultPath` and
//! `OutputPath`. Every function returns jq source or a message saying what cannot be converted.

use serde_json::Value;

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

/// One step of a path.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Seg {
    /// `.name` or `['name']`.
    Key(String),
    /// `[n]`.
    Index(i64),
    /// `.*` or `[*]`: every member or element.
    Wild,
    /// `[a:b]`: the elements from `a` to before `b` (either may be left out).
    Slice(Option<i64>, Option<i64>),
    /// `[?(...)]`: the elements the filter (jq on the element) holds for.
    Filter(String),
    /// `..name`: the member `name` of the value and of everything in it.
    Descend(String),
    /// `[0,2]` or `['a','b']`: several indexes or members.
    Union(Vec<Seg>),
}

/// Whether a path finds one value at most (only field and index steps): a reference path.
pub(crate) fn definite(segs: &[Seg]) -> bool {
    segs.iter().all(|s| matches!(s, Seg::Key(_) | Seg::Index(_)))
}

/// The segments of a reference path (field and index steps only), for `ResultPath` and the
/// places Step Functions takes a reference path in.
pub(crate) fn reference_segments(rest: &str) -> Result<Vec<Seg>, String> {
    let segs = segments(rest)?;
    if !definite(&segs) {
        return Err(format!(
            "`${rest}`: a reference path has field names and indexes only (no `*`, `..`, filters or slices)"
        ));
    }
    Ok(segs)
}

/// The segments of a path after its `$` (or `$$`): fields, indexes, `*`, `..name`, slices,
/// unions and filters.
pub(crate) fn segments(rest: &str) -> Result<Vec<Seg>, String> {
    let mut out = Vec::new();
    let b = rest.as_bytes();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'.' if b.get(i + 1) == Some(&b'.') => {
                let start = i + 2;
                let mut j = start;
                while j < b.len() && b[j] != b'.' && b[j] != b'[' {
                    j += 1;
                }
                let key = &rest[start..j];
                if key.is_empty() || key == "*" {
                    return Err(format!("`{rest}`: `..` is converted before a field name only (`..name`)"));
                }
                out.push(Seg::Descend(key.to_owned()));
                i = j;
            }
            b'.' => {
                let start = i + 1;
                let mut j = start;
                while j < b.len() && b[j] != b'.' && b[j] != b'[' {
                    j += 1;
                }
                let key = &rest[start..j];
                if key.is_empty() {
                    return Err(format!("`{rest}`: an empty field name"));
                }
                out.push(if key == "*" { Seg::Wild } else { Seg::Key(key.to_owned()) });
                i = j;
            }
            b'[' => {
                let close = bracket_end(rest, i).ok_or_else(|| format!("`{rest}`: `[` is not closed"))?;
                out.push(bracket(rest[i + 1..close].trim(), rest)?);
                i = close + 1;
            }
            _ => return Err(format!("`{rest}` is not a path step (expected `.` or `[`)")),
        }
    }
    Ok(out)
}

/// Where the `]` closing the `[` at `open` is (brackets and quotes inside a filter skipped).
fn bracket_end(s: &str, open: usize) -> Option<usize> {
    let mut depth = 0;
    let mut quote: Option<char> = None;
    for (k, c) in s[open..].char_indices() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), _) => {}
            (None, '\'' | '"') => quote = Some(c),
            (None, '[') => depth += 1,
            (None, ']') => {
                depth -= 1;
                if depth == 0 {
                    return Some(open + k);
                }
            }
            _ => {}
        }
    }
    None
}

/// One `[...]` step.
fn bracket(inner: &str, rest: &str) -> Result<Seg, String> {
    let quoted = |s: &str| {
        s.strip_prefix('\'')
            .and_then(|x| x.strip_suffix('\''))
            .or_else(|| s.strip_prefix('"').and_then(|x| x.strip_suffix('"')))
            .map(str::to_owned)
    };
    if inner == "*" {
        return Ok(Seg::Wild);
    }
    if let Some(f) = inner.strip_prefix('?') {
        let f = f.trim();
        let body = f
            .strip_prefix('(')
            .and_then(|x| x.strip_suffix(')'))
            .ok_or_else(|| format!("`[{inner}]`: a filter is `[?(...)]`"))?;
        return Ok(Seg::Filter(super::jsonpath_filter::filter(body).map_err(|e| format!("`[{inner}]`: {e}"))?));
    }
    if let Some(k) = quoted(inner) {
        return Ok(Seg::Key(k));
    }
    if let Ok(n) = inner.parse::<i64>() {
        return Ok(Seg::Index(n));
    }
    if let Some((a, b)) = inner.split_once(':') {
        let num = |x: &str| -> Result<Option<i64>, String> {
            let x = x.trim();
            if x.is_empty() {
                Ok(None)
            } else {
                x.parse().map(Some).map_err(|_| format!("`[{inner}]`: a slice is `[start:end]`"))
            }
        };
        if b.contains(':') {
            return Err(format!("`[{inner}]`: a slice with a step cannot be converted"));
        }
        return Ok(Seg::Slice(num(a)?, num(b)?));
    }
    if inner.contains(',') {
        let parts: Result<Vec<Seg>, String> = inner
            .split(',')
            .map(|p| {
                let p = p.trim();
                match (quoted(p), p.parse::<i64>()) {
                    (Some(k), _) => Ok(Seg::Key(k)),
                    (None, Ok(n)) => Ok(Seg::Index(n)),
                    _ => Err(format!("`[{inner}]`: a union lists indexes or quoted names")),
                }
            })
            .collect();
        return Ok(Seg::Union(parts?));
    }
    Err(format!("`{rest}`: `[{inner}]` is not a field name, index, `*`, slice, union or filter"))
}

/// jq streaming every value the steps `segs` find in its input, in document order; a step
/// that finds nothing drops that value (an indefinite path gives an array of what it found).
pub(crate) fn segs_stream(segs: &[Seg]) -> String {
    let one = |s: &Seg| -> String {
        match s {
            Seg::Key(k) => format!("select(type == \"object\" and has({q})) | .[{q}]", q = json_str(k)),
            Seg::Index(n) => format!(
                "select(type == \"array\" and (if {n} >= 0 then length > {n} else length >= -({n}) end)) | .[{n}]"
            ),
            Seg::Wild => "(if type == \"array\" or type == \"object\" then .[] else empty end)".into(),
            Seg::Slice(a, b) => format!(
                "select(type == \"array\") | .[{}:{}][]",
                a.map(|n| n.to_string()).unwrap_or_default(),
                b.map(|n| n.to_string()).unwrap_or_default()
            ),
            Seg::Filter(cond) => format!("select(type == \"array\") | .[] | select({cond})"),
            Seg::Descend(k) => {
                format!("(.. | select(type == \"object\" and has({q})) | .[{q}])", q = json_str(k))
            }
            Seg::Union(parts) => {
                let each: Vec<String> =
                    parts.iter().map(|p| format!("({})", segs_stream(std::slice::from_ref(p)))).collect();
                format!("({})", each.join(", "))
            }
        }
    };
    let parts: Vec<String> = segs.iter().map(|s| format!("({})", one(s))).collect();
    if parts.is_empty() { ".".into() } else { parts.join(" | ") }
}

/// jq that applies `segs` to its input: `.a.b[0]`, `.["a b"]`; `.` when there are none.
pub(crate) fn segs_jq(segs: &[Seg]) -> String {
    if segs.is_empty() {
        return ".".into();
    }
    if !definite(segs) {
        return format!("[{}]", segs_stream(segs));
    }
    let mut s = String::new();
    for seg in segs {
        match seg {
            Seg::Key(k) if is_ident(k) => s.push_str(&format!(".{k}")),
            Seg::Key(k) => {
                if s.is_empty() {
                    s.push('.');
                }
                s.push_str(&format!("[{}]", json_str(k)));
            }
            Seg::Index(n) => {
                if s.is_empty() {
                    s.push('.');
                }
                s.push_str(&format!("[{n}]"));
            }
            // Not in a definite path (checked above).
            Seg::Wild | Seg::Slice(..) | Seg::Filter(_) | Seg::Descend(_) | Seg::Union(_) => {}
        }
    }
    s
}

/// A jq array literal of the path (`["a", 0]`), for `setpath`/`getpath`.
pub(crate) fn segs_array(segs: &[Seg]) -> String {
    let parts: Vec<String> = segs
        .iter()
        .filter_map(|s| match s {
            Seg::Key(k) => Some(json_str(k)),
            Seg::Index(n) => Some(n.to_string()),
            _ => None,
        })
        .collect();
    format!("[{}]", parts.join(", "))
}

fn is_ident(k: &str) -> bool {
    k.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// A string as a jq (and JSON) string literal.
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
    if let Some((name, rest)) = super::variables::split(p) {
        return path(&format!("${rest}"), &super::variables::placeholder(name), cx);
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
    if let Some((name, rest)) = super::variables::split(p) {
        return path_or_null(&format!("${rest}"), &super::variables::placeholder(name), cx);
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
