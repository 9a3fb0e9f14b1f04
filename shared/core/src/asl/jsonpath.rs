//! JSONPath as the States Language writes it, its syntax only: a path's steps (`.a`, `['a b']`,
//! `[0]`, `[*]`, `..name`, `[1:3]`, `[0,2]`, `[?(...)]`) and their jq. The data flow built on
//! paths (what `$` and `$$` are, `ResultPath`, ...) is `paths`.
//!
//! Filters (`$.items[?(@.price < 10 && @.tags)]`) become a jq condition on the element: `@`
//! paths with field and index steps, literals (numbers, quoted strings, `true`, `false`,
//! `null`), `== != < <= > >=`, `&&`, `||`, `!` and parentheses. A bare `@` path tests that the
//! path exists. As in the JSONPath implementation Step Functions uses, an ordering comparison
//! holds only between two numbers or two strings, and a missing field compares as nothing (it is
//! neither equal nor unequal to a literal: the element is left out).

/// A string as a jq (and JSON) string literal.
fn json_str(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into())
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
        return Ok(Seg::Filter(filter(body).map_err(|e| format!("`[{inner}]`: {e}"))?));
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

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    /// An `@` path: its steps after `@`.
    At(Vec<Seg>),
    /// A literal, as jq.
    Lit(String),
    Op(&'static str),
}

/// The filter `src` (what is inside `?(...)`) as a jq condition on the element.
pub(crate) fn filter(src: &str) -> Result<String, String> {
    let toks = lex(src)?;
    let mut p = Parser { toks, at: 0 };
    let out = p.or()?;
    if p.at != p.toks.len() {
        return Err(format!("unexpected `{}` in the filter", show(&p.toks[p.at])));
    }
    Ok(out)
}

fn show(t: &Tok) -> String {
    match t {
        Tok::At(_) => "@...".into(),
        Tok::Lit(l) => l.clone(),
        Tok::Op(o) => (*o).into(),
    }
}

const OPS: [&str; 11] = ["==", "!=", "<=", ">=", "&&", "||", "<", ">", "!", "(", ")"];

fn lex(src: &str) -> Result<Vec<Tok>, String> {
    let mut out = Vec::new();
    let s = src.trim();
    let mut i = 0;
    while i < s.len() {
        let rest = &s[i..];
        let c = rest.chars().next().unwrap_or(' ');
        if c.is_whitespace() {
            i += c.len_utf8();
            continue;
        }
        if let Some(op) = OPS.iter().find(|op| rest.starts_with(**op)) {
            out.push(Tok::Op(op));
            i += op.len();
            continue;
        }
        if c == '@' {
            // The path runs to the next space, operator or closing parenthesis outside brackets.
            let mut j = 1;
            let mut depth = 0;
            let bytes = rest.as_bytes();
            while j < bytes.len() {
                match bytes[j] {
                    b'[' => depth += 1,
                    b']' => depth -= 1,
                    b' ' | b'=' | b'!' | b'<' | b'>' | b'&' | b'|' | b')' if depth == 0 => break,
                    _ => {}
                }
                j += 1;
            }
            let segs = segments(&rest[1..j])?;
            if !definite(&segs) {
                return Err("an `@` path in a filter has field names and indexes only".into());
            }
            out.push(Tok::At(segs));
            i += j;
            continue;
        }
        if c == '\'' || c == '"' {
            let end = rest[1..].find(c).ok_or("a string is not closed")? + 1;
            out.push(Tok::Lit(json_str(&rest[1..end])));
            i += end + 1;
            continue;
        }
        let end = rest.find(|ch: char| ch.is_whitespace() || "=!<>&|()".contains(ch)).unwrap_or(rest.len());
        let word = &rest[..end];
        if word.is_empty() {
            return Err(format!("`{rest}` cannot be read"));
        }
        match word {
            "true" | "false" | "null" => out.push(Tok::Lit(word.to_owned())),
            w if w.parse::<f64>().is_ok() => out.push(Tok::Lit(w.to_owned())),
            w => {
                return Err(format!(
                    "`{w}`: a filter compares `@` paths with numbers, quoted strings, true, false or null"
                ));
            }
        }
        i += end;
    }
    Ok(out)
}

struct Parser {
    toks: Vec<Tok>,
    at: usize,
}

impl Parser {
    fn peek(&self, op: &str) -> bool {
        matches!(self.toks.get(self.at), Some(Tok::Op(o)) if *o == op)
    }

    fn or(&mut self) -> Result<String, String> {
        let mut l = self.and()?;
        while self.peek("||") {
            self.at += 1;
            l = format!("({l} or {})", self.and()?);
        }
        Ok(l)
    }

    fn and(&mut self) -> Result<String, String> {
        let mut l = self.not()?;
        while self.peek("&&") {
            self.at += 1;
            l = format!("({l} and {})", self.not()?);
        }
        Ok(l)
    }

    fn not(&mut self) -> Result<String, String> {
        if self.peek("!") {
            self.at += 1;
            return Ok(format!("({} | not)", self.not()?));
        }
        self.cmp()
    }

    fn cmp(&mut self) -> Result<String, String> {
        if self.peek("(") {
            self.at += 1;
            let inner = self.or()?;
            if !self.peek(")") {
                return Err("a `(` is not closed".into());
            }
            self.at += 1;
            return Ok(inner);
        }
        let left = self.operand()?;
        let op = match self.toks.get(self.at) {
            Some(Tok::Op(o)) if ["==", "!=", "<", "<=", ">", ">="].contains(o) => *o,
            // A bare `@` path: the element has it.
            _ => {
                return match left {
                    Operand::At(segs) => Ok(format!("has_path({})", segs_array(&segs))),
                    Operand::Lit(l) => Ok(format!("({l} | . != null and . != false)")),
                };
            }
        };
        self.at += 1;
        let right = self.operand()?;
        // A missing field holds for no comparison: it is guarded by `has_path`.
        let mut guards = Vec::new();
        let mut value = |o: &Operand| match o {
            Operand::At(segs) => {
                guards.push(format!("has_path({})", segs_array(segs)));
                format!("({})", segs_jq(segs))
            }
            Operand::Lit(l) => l.clone(),
        };
        let (a, b) = (value(&left), value(&right));
        let test = match op {
            "==" => format!("{a} == {b}"),
            "!=" => format!("{a} != {b}"),
            _ => format!(
                "(({a}) as $fa | ({b}) as $fb | (($fa | type) == ($fb | type)) and (($fa | type) == \"number\" or ($fa | type) == \"string\") and $fa {op} $fb)"
            ),
        };
        guards.push(format!("({test})"));
        Ok(format!("({})", guards.join(" and ")))
    }

    fn operand(&mut self) -> Result<Operand, String> {
        let t = self.toks.get(self.at).cloned().ok_or("the filter ends too soon")?;
        self.at += 1;
        match t {
            Tok::At(segs) => Ok(Operand::At(segs)),
            Tok::Lit(l) => Ok(Operand::Lit(l)),
            Tok::Op(o) => Err(format!("unexpected `{o}` in the filter")),
        }
    }
}

enum Operand {
    At(Vec<Seg>),
    Lit(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_become_conditions_on_the_element() {
        assert_eq!(
            filter("@.price < 10").unwrap(),
            r#"(has_path(["price"]) and ((((.price)) as $fa | (10) as $fb | (($fa | type) == ($fb | type)) and (($fa | type) == "number" or ($fa | type) == "string") and $fa < $fb)))"#
        );
        assert_eq!(filter("@.tags").unwrap(), r#"has_path(["tags"])"#);
        assert!(filter("@.a == 'x' && !(@.b)").unwrap().contains(" and "));
        assert!(filter("@.a =~ /x/").is_err());
        assert!(filter("@.a[*] == 1").is_err());
    }
}
