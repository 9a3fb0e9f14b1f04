//! A subset of JSONata (Step Functions' second query language) into jq: `$states.input`,
//! `$states.result` and `$states.context` paths with field and index steps, literals, arrays and
//! objects, `& + - * / %`, comparisons, `and`/`or`, `? :`, and the functions `$exists`, `$count`,
//! `$length`, `$string`, `$number`, `$boolean`, `$not`, `$uppercase`, `$lowercase`, `$sum`,
//! `$keys`, `$join`, `$substring`, `$substringBefore`, `$substringAfter`, `$contains`, `$split`,
//! `$trim`, `$abs`, `$floor`, `$ceil`, `$max`, `$min`, `$average`, `$append`, `$reverse`,
//! `$sort`, `$distinct`, `$merge`, `$type`, and Step Functions' `$partition`, `$range` and
//! `$parse`. Anything else (filters, wildcards, lambdas, other functions, variables) is
//! an error naming what was found, so the state is reported instead of converted wrongly.

use serde_json::{Map, Value};

use super::paths::{Cx, json_str, literal, path};

/// The source of a `{% ... %}` string, if it is one.
pub(crate) fn embedded(s: &str) -> Option<&str> {
    s.trim().strip_prefix("{%").and_then(|r| r.strip_suffix("%}")).map(str::trim)
}

/// A JSONata template (`Arguments`, `Output`): strings `{% expr %}` are expressions, everything
/// else literal; as one jq expression. `input` and `result` are the jq for `$states.input` and
/// `$states.result`.
pub(crate) fn template(v: &Value, vars: &Vars<'_>, at: &str, errs: &mut Vec<(String, String)>) -> String {
    match v {
        Value::String(s) => match embedded(s) {
            Some(src) => expr_at(src, vars, at).unwrap_or_else(|e| {
                errs.push((at.to_owned(), e));
                "null".into()
            }),
            None => literal(v),
        },
        Value::Object(m) => {
            let parts: Vec<String> = m
                .iter()
                .map(|(k, x)| format!("{}: {}", json_str(k), template(x, vars, &format!("{at}.{k}"), errs)))
                .collect();
            format!("{{{}}}", parts.join(", "))
        }
        Value::Array(a) => {
            let parts: Vec<String> =
                a.iter().enumerate().map(|(i, x)| template(x, vars, &format!("{at}[{i}]"), errs)).collect();
            format!("[{}]", parts.join(", "))
        }
        other => literal(other),
    }
}

/// The same template as a `with` value: `{% %}` strings become `{{ }}` templates.
pub(crate) fn with_value(v: &Value, vars: &Vars<'_>, at: &str, errs: &mut Vec<(String, String)>) -> Value {
    match v {
        Value::String(s) => match embedded(s) {
            Some(src) => match expr_at(src, vars, at) {
                Ok(e) => Value::String(format!("{{{{ {e} }}}}")),
                Err(e) => {
                    errs.push((at.to_owned(), e));
                    Value::Null
                }
            },
            None if s.contains("{{") => Value::String(format!("{{{{ {} }}}}", json_str(s))),
            None => v.clone(),
        },
        Value::Object(m) => {
            let out: Map<String, Value> =
                m.iter().map(|(k, x)| (k.clone(), with_value(x, vars, &format!("{at}.{k}"), errs))).collect();
            Value::Object(out)
        }
        Value::Array(a) => {
            Value::Array(a.iter().enumerate().map(|(i, x)| with_value(x, vars, &format!("{at}[{i}]"), errs)).collect())
        }
        other => other.clone(),
    }
}

/// What `$states.*` means where an expression is evaluated.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Vars<'a> {
    /// jq for `$states.input`.
    pub input: &'a str,
    /// jq for `$states.result`, where there is one.
    pub result: Option<&'a str>,
    /// For `$states.context`.
    pub cx: &'a Cx<'a>,
    /// jq for `$states.errorOutput`, in a catcher.
    pub error_output: Option<&'a str>,
}

/// One JSONata expression as jq (the unit tests' entry).
#[cfg(test)]
pub(crate) fn expr(src: &str, vars: &Vars<'_>) -> Result<String, String> {
    expr_at(src, vars, "")
}

/// One JSONata expression of field `at` as jq (`at` tells `$uuid()` and `$random()` of two
/// fields apart).
pub(crate) fn expr_at(src: &str, vars: &Vars<'_>, at: &str) -> Result<String, String> {
    let toks = lex(src)?;
    let mut p = Parser { t: toks, i: 0, vars, in_filter: 0, params: Vec::new(), at: at.to_owned(), drawn: 0 };
    let e = p.cond()?;
    if p.i != p.t.len() {
        return Err(format!("JSONata `{src}`: unexpected `{}`", p.t[p.i].text()));
    }
    Ok(e)
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Num(String),
    Str(String),
    Name(String),
    Var(String),
    Op(&'static str),
}

impl Tok {
    fn text(&self) -> String {
        match self {
            Tok::Num(s) | Tok::Name(s) => s.clone(),
            Tok::Str(s) => json_str(s),
            Tok::Var(s) => format!("${s}"),
            Tok::Op(o) => (*o).to_owned(),
        }
    }
}

const OPS: &[&str] =
    &["!=", "<=", ">=", "=", "<", ">", "&", "+", "-", "*", "/", "%", "(", ")", "[", "]", "{", "}", ",", ":", ".", "?"];

fn lex(src: &str) -> Result<Vec<Tok>, String> {
    let mut out = Vec::new();
    let chars: Vec<char> = src.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() {
            i += 1;
        } else if c.is_ascii_digit() {
            let start = i;
            while i < chars.len() && (chars[i].is_ascii_digit() || chars[i] == '.') {
                i += 1;
            }
            out.push(Tok::Num(chars[start..i].iter().collect()));
        } else if c == '"' || c == '\'' {
            let mut s = String::new();
            i += 1;
            while i < chars.len() && chars[i] != c {
                if chars[i] == '\\' && i + 1 < chars.len() {
                    i += 1;
                    s.push(match chars[i] {
                        'n' => '\n',
                        't' => '\t',
                        other => other,
                    });
                } else {
                    s.push(chars[i]);
                }
                i += 1;
            }
            if i >= chars.len() {
                return Err(format!("JSONata `{src}`: a string is not closed"));
            }
            i += 1;
            out.push(Tok::Str(s));
        } else if c == '$' || c.is_alphabetic() || c == '_' {
            let start = if c == '$' { i + 1 } else { i };
            i = start;
            while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
                i += 1;
            }
            let name: String = chars[start..i].iter().collect();
            out.push(if c == '$' { Tok::Var(name) } else { Tok::Name(name) });
        } else if c == '`' {
            let end = chars[i + 1..]
                .iter()
                .position(|&x| x == '`')
                .ok_or_else(|| format!("JSONata `{src}`: a ` is not closed"))?;
            out.push(Tok::Name(chars[i + 1..i + 1 + end].iter().collect()));
            i += end + 2;
        } else {
            let rest: String = chars[i..chars.len().min(i + 2)].iter().collect();
            let op = OPS
                .iter()
                .find(|o| rest.starts_with(**o))
                .ok_or_else(|| format!("JSONata `{src}`: `{c}` cannot be converted"))?;
            out.push(Tok::Op(op));
            i += op.chars().count();
        }
    }
    Ok(out)
}

struct Parser<'a> {
    t: Vec<Tok>,
    i: usize,
    vars: &'a Vars<'a>,
    /// Inside a filter's predicate: field names are read from the item (`$asl_it`).
    in_filter: usize,
    /// The parameters of the lambdas being read (`$v` is jq's `$asl_p_v` there).
    params: Vec<String>,
    /// The field the expression is in, and how many values `$uuid`/`$random` drew in it.
    at: String,
    drawn: u32,
}

/// jq for JSONata's field step `name` on its input (baton's `jsonata_get`: an object's field;
/// over an array, each element's, flattened, one value given as itself and none as `null`).
fn field(name: &str) -> String {
    format!("jsonata_get({})", json_str(name))
}

/// jq: its input is true as JSONata casts a value to a Boolean (baton's `jsonata_bool`).
const TRUTHY: &str = "jsonata_bool";

/// jq turning an array built as a JSONata sequence into its value (baton's `jsonata_seq`).
const SEQUENCE: &str = " | jsonata_seq";

impl Parser<'_> {
    fn peek_op(&self, op: &str) -> bool {
        matches!(self.t.get(self.i), Some(Tok::Op(o)) if *o == op)
    }

    fn peek_word(&self, w: &str) -> bool {
        matches!(self.t.get(self.i), Some(Tok::Name(n)) if n == w)
    }

    fn expect(&mut self, op: &str) -> Result<(), String> {
        if self.peek_op(op) {
            self.i += 1;
            Ok(())
        } else {
            Err(format!("JSONata: expected `{op}`"))
        }
    }

    fn cond(&mut self) -> Result<String, String> {
        let c = self.or()?;
        if self.peek_op("?") {
            self.i += 1;
            let a = self.cond()?;
            let b = if self.peek_op(":") {
                self.i += 1;
                self.cond()?
            } else {
                "null".into()
            };
            return Ok(format!("(if {c} then {a} else {b} end)"));
        }
        Ok(c)
    }

    fn or(&mut self) -> Result<String, String> {
        let mut l = self.and()?;
        while self.peek_word("or") {
            self.i += 1;
            l = format!("({l} or {})", self.and()?);
        }
        Ok(l)
    }

    fn and(&mut self) -> Result<String, String> {
        let mut l = self.cmp()?;
        while self.peek_word("and") {
            self.i += 1;
            l = format!("({l} and {})", self.cmp()?);
        }
        Ok(l)
    }

    fn cmp(&mut self) -> Result<String, String> {
        let l = self.concat()?;
        for (op, jq) in [("=", "=="), ("!=", "!="), ("<=", "<="), (">=", ">="), ("<", "<"), (">", ">")] {
            if self.peek_op(op) {
                self.i += 1;
                let r = self.concat()?;
                return Ok(format!("({l} {jq} {r})"));
            }
        }
        if self.peek_word("in") {
            self.i += 1;
            let r = self.concat()?;
            return Ok(format!("(({l}) as $x | any(({r})[]; . == $x))"));
        }
        Ok(l)
    }

    fn concat(&mut self) -> Result<String, String> {
        let mut l = self.add()?;
        while self.peek_op("&") {
            self.i += 1;
            let r = self.add()?;
            l = format!("(({l} | {TEXT}) + ({r} | {TEXT}))");
        }
        Ok(l)
    }

    fn add(&mut self) -> Result<String, String> {
        let mut l = self.mul()?;
        while let Some(op) = ["+", "-"].into_iter().find(|o| self.peek_op(o)) {
            self.i += 1;
            l = format!("({l} {op} {})", self.mul()?);
        }
        Ok(l)
    }

    fn mul(&mut self) -> Result<String, String> {
        let mut l = self.unary()?;
        while let Some(op) = ["*", "/", "%"].into_iter().find(|o| self.peek_op(o)) {
            self.i += 1;
            l = format!("({l} {op} {})", self.unary()?);
        }
        Ok(l)
    }

    fn unary(&mut self) -> Result<String, String> {
        if self.peek_op("-") {
            self.i += 1;
            return Ok(format!("(0 - {})", self.unary()?));
        }
        self.postfix()
    }

    fn postfix(&mut self) -> Result<String, String> {
        let mut e = self.primary()?;
        loop {
            if self.peek_op(".") {
                self.i += 1;
                match self.t.get(self.i).cloned() {
                    Some(Tok::Name(n)) => {
                        self.i += 1;
                        e = format!("({e} | {})", field(&n));
                    }
                    other => {
                        return Err(format!(
                            "JSONata: `.{}` cannot be converted (only field names)",
                            other.map(|t| t.text()).unwrap_or_default()
                        ));
                    }
                }
            } else if self.peek_op("[") {
                self.i += 1;
                match self.t.get(self.i).cloned() {
                    Some(Tok::Num(n)) if self.t.get(self.i + 1) == Some(&Tok::Op("]")) => {
                        self.i += 2;
                        e = format!("({e} | .[{n}])");
                    }
                    // `[-1]`: from the end.
                    Some(Tok::Op("-"))
                        if matches!(self.t.get(self.i + 1), Some(Tok::Num(_)))
                            && self.t.get(self.i + 2) == Some(&Tok::Op("]")) =>
                    {
                        let n = self.t.get(self.i + 1).map(Tok::text).unwrap_or_default();
                        self.i += 3;
                        e = format!("({e} | .[-{n}])");
                    }
                    // A filter: the elements (a value that is not an array is one) for which
                    // the predicate, reading fields of the element, holds; a predicate giving a
                    // number picks the element at that index, as in JSONata.
                    _ => {
                        self.in_filter += 1;
                        let pred = self.cond();
                        self.in_filter -= 1;
                        let pred = pred?;
                        self.expect("]")?;
                        e = format!(
                            "(({e}) as $asl_s | ($asl_s | if type == \"array\" then . else [.] end) as $asl_arr \
                             | [range(0; $asl_arr | length) as $asl_k | $asl_arr[$asl_k] as $asl_it | ({pred}) as $asl_p \
                             | if ($asl_p | type) == \"number\" then (($asl_p | floor) as $asl_n | (if $asl_n < 0 then \
                             $asl_n + ($asl_arr | length) else $asl_n end) == $asl_k) else ($asl_p | {TRUTHY}) end \
                             | if . then $asl_it else empty end]{SEQUENCE})"
                        );
                    }
                }
            } else {
                return Ok(e);
            }
        }
    }

    fn primary(&mut self) -> Result<String, String> {
        let Some(t) = self.t.get(self.i).cloned() else { return Err("JSONata: an expression is missing".into()) };
        self.i += 1;
        match t {
            Tok::Num(n) => Ok(n),
            Tok::Str(s) => Ok(json_str(&s)),
            Tok::Name(n) if matches!(n.as_str(), "true" | "false" | "null") => Ok(n),
            // In a filter, a name is a field of the element.
            Tok::Name(n) if self.in_filter > 0 => Ok(format!("($asl_it | {})", field(&n))),
            Tok::Name(n) => Err(format!("JSONata `{n}`: read fields through `$states.input`")),
            Tok::Op("(") => {
                let e = self.cond()?;
                self.expect(")")?;
                Ok(format!("({e})"))
            }
            Tok::Op("[") => {
                let mut items = Vec::new();
                while !self.peek_op("]") {
                    items.push(self.cond()?);
                    if self.peek_op(",") {
                        self.i += 1;
                    }
                }
                self.i += 1;
                Ok(format!("[{}]", items.join(", ")))
            }
            Tok::Op("{") => {
                let mut parts = Vec::new();
                while !self.peek_op("}") {
                    let key = match self.t.get(self.i).cloned() {
                        Some(Tok::Str(k)) => k,
                        _ => return Err("JSONata object keys must be quoted strings".into()),
                    };
                    self.i += 1;
                    self.expect(":")?;
                    parts.push(format!("{}: {}", json_str(&key), self.cond()?));
                    if self.peek_op(",") {
                        self.i += 1;
                    }
                }
                self.i += 1;
                Ok(format!("{{{}}}", parts.join(", ")))
            }
            Tok::Var(v) if v == "states" => self.states(),
            Tok::Var(v) if self.params.contains(&v) => Ok(format!("$asl_p_{v}")),
            Tok::Var(v) if v.is_empty() && self.in_filter > 0 => Ok("$asl_it".into()),
            Tok::Var(f) if self.peek_op("(") => self.function(&f),
            // A workflow variable: resolved once every step exists (see `variables`).
            Tok::Var(v) => Ok(super::var_ref::placeholder(&v)),
            Tok::Op(o) => Err(format!("JSONata: `{o}` cannot start an expression")),
        }
    }

    /// `$states.input`, `$states.result`, `$states.context.*`.
    fn states(&mut self) -> Result<String, String> {
        self.expect(".")?;
        let Some(Tok::Name(which)) = self.t.get(self.i).cloned() else {
            return Err("JSONata `$states.` needs `input`, `result` or `context`".into());
        };
        self.i += 1;
        match which.as_str() {
            "input" => Ok(self.vars.input.to_owned()),
            "result" => self
                .vars
                .result
                .map(str::to_owned)
                .ok_or_else(|| "`$states.result` exists only in a task's `Output`".into()),
            "context" => {
                let mut p = String::from("$$");
                while self.peek_op(".") {
                    if let Some(Tok::Name(n)) = self.t.get(self.i + 1).cloned() {
                        p.push('.');
                        p.push_str(&n);
                        self.i += 2;
                    } else {
                        break;
                    }
                }
                path(&p, "null", self.vars.cx)
            }
            "errorOutput" => self
                .vars
                .error_output
                .map(str::to_owned)
                .ok_or_else(|| "`$states.errorOutput` exists only in a catcher's `Output` and `Assign`".into()),
            other => Err(format!("`$states.{other}` cannot be converted (input, result, errorOutput, context)")),
        }
    }

    /// `function($a, $b) { body }`: its parameters and its body as jq reading `$asl_p_<name>`.
    fn lambda(&mut self) -> Result<(Vec<String>, String), String> {
        if !self.peek_word("function") {
            return Err("expected a function: `function($v) { ... }`".into());
        }
        self.i += 1;
        self.expect("(")?;
        let mut params = Vec::new();
        while let Some(Tok::Var(v)) = self.t.get(self.i).cloned() {
            self.i += 1;
            params.push(v);
            if self.peek_op(",") {
                self.i += 1;
            }
        }
        self.expect(")")?;
        self.expect("{")?;
        let outer = self.params.len();
        self.params.extend(params.iter().cloned());
        let body = self.cond();
        self.params.truncate(outer);
        let body = body?;
        self.expect("}")?;
        Ok((params, body))
    }

    /// `$map`, `$filter` and `$reduce` with a lambda, over an array (a value that is not one
    /// is an array of it); `$map` and `$filter` give a sequence (none is `null`, one itself).
    fn higher_order(&mut self, f: &str) -> Result<String, String> {
        let arr = self.cond()?;
        self.expect(",")?;
        let (params, body) = self.lambda()?;
        let init = if self.peek_op(",") {
            self.i += 1;
            Some(self.cond()?)
        } else {
            None
        };
        self.expect(")")?;
        let p = |k: usize| params.get(k).map(|n| format!("$asl_p_{n}"));
        let head = format!("(({arr}) | if type == \"array\" then . else [.] end) as $asl_a");
        // Each element (with its index and the array, when the lambda names them) bound while
        // `.` stays the expression's input, which the body's other reads need.
        let bind = |v: Option<String>, i: Option<String>, a: Option<String>| {
            let mut b = String::from("range(0; $asl_a | length) as $asl_i | $asl_a[$asl_i]");
            b.push_str(&format!(" as {}", v.unwrap_or_else(|| "$asl_unused".into())));
            if let Some(i) = i {
                b.push_str(&format!(" | $asl_i as {i}"));
            }
            if let Some(a) = a {
                b.push_str(&format!(" | $asl_a as {a}"));
            }
            b
        };
        Ok(match f {
            "map" => format!("({head} | [{} | ({body}) | select(. != null)]{SEQUENCE})", bind(p(0), p(1), p(2))),
            "filter" => format!(
                "({head} | [{} | if ({body}) | {TRUTHY} then $asl_a[$asl_i] else empty end]{SEQUENCE})",
                bind(p(0), p(1), p(2))
            ),
            _ => {
                let (acc, cur) = (p(0).unwrap_or_else(|| "$asl_acc".into()), p(1).unwrap_or_else(|| "$asl_cur".into()));
                let (start, from) = match init {
                    Some(i) => (format!("({i})"), "0"),
                    None => ("$asl_a[0]".into(), "1"),
                };
                let mut extra = String::new();
                if let Some(i) = p(2) {
                    extra.push_str(&format!(" | $asl_i as {i}"));
                }
                if let Some(a) = p(3) {
                    extra.push_str(&format!(" | $asl_a as {a}"));
                }
                format!(
                    "({head} | . as $asl_root | reduce range({from}; $asl_a | length) as $asl_i ({start}; . as {acc} \
                     | $asl_a[$asl_i] as {cur}{extra} | $asl_root | ({body})))"
                )
            }
        })
    }

    fn function(&mut self, f: &str) -> Result<String, String> {
        self.expect("(")?;
        if matches!(f, "map" | "filter" | "reduce") {
            return self.higher_order(f);
        }
        let mut args = Vec::new();
        while !self.peek_op(")") {
            args.push(self.cond()?);
            if self.peek_op(",") {
                self.i += 1;
            } else if !self.peek_op(")") {
                return Err(format!("JSONata `${f}(`: expected `,` or `)`"));
            }
        }
        self.i += 1;
        let one = |args: &[String]| -> Result<String, String> {
            match args {
                [a] => Ok(a.clone()),
                _ => Err(format!("`${f}` takes one argument here")),
            }
        };
        // Step Functions' own functions that draw: deterministic, as `States.UUID` is (see
        // `intrinsics::draw`), so a replay gives the same values.
        let mut draw = || {
            self.drawn += 1;
            super::intrinsics::draw(self.vars.cx.state, &format!("jsonata:{}", self.at), self.drawn - 1)
        };
        Ok(match f {
            "uuid" if args.is_empty() => format!("({} | uuid_of)", draw()),
            "random" => {
                let hash = match args.as_slice() {
                    [] => draw(),
                    [seed] => format!("([{seed}] | tojson | hash(\"SHA-256\"))"),
                    _ => return Err("`$random` takes at most one argument (a seed)".into()),
                };
                format!("({} / 281474976710656)", super::intrinsics::hex_number(&hash))
            }
            "hash" => match args.as_slice() {
                [v] => format!("(({v}) | hash(\"SHA-256\"))"),
                // Arguments are bound first: they read the expression's input (`.steps`, `.run`).
                [v, a] => format!("(({a}) as $asl_h | ({v}) | hash($asl_h))"),
                _ => return Err("`$hash` takes a string and an algorithm".into()),
            },
            "exists" => format!("({} != null)", one(&args)?),
            "count" | "length" => format!("({} | length)", one(&args)?),
            "string" => format!("({} | {TEXT})", one(&args)?),
            "number" => format!("({} | tonumber)", one(&args)?),
            "boolean" => format!("({} | {TRUTHY})", one(&args)?),
            "not" => format!("({} | not)", one(&args)?),
            "uppercase" => format!("({} | ascii_upcase)", one(&args)?),
            "lowercase" => format!("({} | ascii_downcase)", one(&args)?),
            "sum" => format!("({} | add // 0)", one(&args)?),
            "keys" => format!("({} | keys_unsorted)", one(&args)?),
            "join" => match args.as_slice() {
                [a] => format!("({a} | join(\"\"))"),
                [a, s] => format!("(({s}) as $asl_j | {a} | join($asl_j))"),
                _ => return Err("`$join` takes one or two arguments".into()),
            },
            "substring" => {
                // A negative start counts from the end; JSONata slices by characters, as jq does.
                let (s, start, len) = match args.as_slice() {
                    [s, a] => (s, a, None),
                    [s, a, n] => (s, a, Some(n)),
                    _ => return Err("`$substring` takes two or three arguments".into()),
                };
                let from = format!("(({start}) as $i | if $i < 0 then ([0, ($s | length) + $i] | max) else $i end)");
                match len {
                    None => format!("(({s}) as $s | $s[{from}:])"),
                    Some(n) => format!("(({s}) as $s | {from} as $f | $s[$f:$f + ([({n}), 0] | max)])"),
                }
            }
            "substringBefore" | "substringAfter" => match args.as_slice() {
                [s, c] => {
                    let part = if f == "substringBefore" { "$s[:$i]" } else { "$s[$i + ($c | length):]" };
                    format!(
                        "(({s}) as $s | ({c}) as $c | ($s | index($c)) as $i | if $i == null then $s else {part} end)"
                    )
                }
                _ => return Err(format!("`${f}` takes two arguments")),
            },
            "contains" => match args.as_slice() {
                [s, p] => format!("(({s}) as $s | ({p}) as $p | $s | contains($p))"),
                _ => return Err("`$contains` takes two arguments (a string to look for; not a regex)".into()),
            },
            "split" => match args.as_slice() {
                [s, sep] => format!("(({sep}) as $asl_sep | ({s}) | split($asl_sep))"),
                [s, sep, n] => {
                    format!("(({sep}) as $asl_sep | ({n}) as $asl_n | ({s}) | split($asl_sep) | .[:$asl_n])")
                }
                _ => return Err("`$split` takes two or three arguments (a separator string; not a regex)".into()),
            },
            // JSONata's trim also turns every run of whitespace inside into one space.
            "trim" => format!("({} | gsub(\"\\\\s+\"; \" \") | ltrimstr(\" \") | rtrimstr(\" \"))", one(&args)?),
            "abs" => format!("({} | if . < 0 then -. else . end)", one(&args)?),
            "floor" => format!("({} | floor)", one(&args)?),
            "ceil" => format!("({} | ceil)", one(&args)?),
            "max" => format!("({} | max)", one(&args)?),
            "min" => format!("({} | min)", one(&args)?),
            // An integral mean is an integer, as JSONata writes it (jq's division gives a float).
            "average" => format!(
                "({} | if length == 0 then null else (add / length) as $v | if $v == ($v | floor) then ($v | floor) else $v end end)",
                one(&args)?
            ),
            "append" => match args.as_slice() {
                [a, b] => {
                    let arr = |x: &str| format!("(({x}) | if type == \"array\" then . else [.] end)");
                    format!("({} + {})", arr(a), arr(b))
                }
                _ => return Err("`$append` takes two arguments".into()),
            },
            "reverse" => format!("({} | reverse)", one(&args)?),
            "sort" => format!("({} | sort)", one(&args)?),
            // First occurrences, in order (jq's `unique` would sort).
            "distinct" => {
                format!("({} | reduce .[] as $x ([]; if any(.[]; . == $x) then . else . + [$x] end))", one(&args)?)
            }
            "merge" => format!("({} | add // {{}})", one(&args)?),
            "type" => format!("({} | type)", one(&args)?),
            // Step Functions' own: chunks of `size`, and a range with its end included.
            "partition" => match args.as_slice() {
                [a, n] => format!("(({a}) as $a | ({n}) as $n | [range(0; $a | length; $n) as $i | $a[$i:$i + $n]])"),
                _ => return Err("`$partition` takes two arguments".into()),
            },
            "range" => match args.as_slice() {
                [a, b, st] => format!(
                    "(({a}) as $a | ({b}) as $b | ({st}) as $st | [range($a; if $st > 0 then $b + 1 else $b - 1 end; $st)])"
                ),
                _ => return Err("`$range` takes three arguments (start, end, step)".into()),
            },
            "parse" => format!("({} | fromjson)", one(&args)?),
            other => return Err(format!("JSONata function `${other}` cannot be converted")),
        })
    }
}

/// jq: a value as JSONata's `&` and `$string` write it.
const TEXT: &str = "if type == \"string\" then . else tojson end";

/// The fields a JSONata state of type `ty` may have besides `Type`, `Comment`, `QueryLanguage`.
pub(crate) fn state_fields(ty: &str) -> &'static [&'static str] {
    match ty {
        "Pass" => &["Next", "End", "Output", "Assign"],
        "Task" => &[
            "Next",
            "End",
            "Resource",
            "Arguments",
            "Output",
            "Retry",
            "Catch",
            "TimeoutSeconds",
            "Assign",
            "Credentials",
        ],
        "Choice" => &["Choices", "Default", "Output", "Assign"],
        "Wait" => &["Next", "End", "Seconds", "Timestamp", "Output", "Assign"],
        "Succeed" => &["Output"],
        "Fail" => &["Error", "Cause"],
        "Parallel" => &["Next", "End", "Branches", "Arguments", "Output", "Retry", "Catch", "Assign"],
        "Map" => &[
            "Next",
            "End",
            "Items",
            "ItemSelector",
            "ItemProcessor",
            "Iterator",
            "ItemReader",
            "ItemBatcher",
            "ResultWriter",
            "MaxConcurrency",
            "ToleratedFailurePercentage",
            "ToleratedFailureCount",
            "Label",
            "Output",
            "Retry",
            "Catch",
            "Assign",
        ],
        _ => &[],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(src: &str) -> Result<String, String> {
        let cx = Cx { state: "S", token: None, map_item: false };
        expr(src, &Vars { input: "$in", result: Some("$r0"), cx: &cx, error_output: None })
    }

    #[test]
    fn expressions_become_jq() {
        assert_eq!(e("$states.input.order.id").unwrap(), r#"(($in | jsonata_get("order")) | jsonata_get("id"))"#);
        assert_eq!(e("$states.result.Payload[0]").unwrap(), r#"(($r0 | jsonata_get("Payload")) | .[0])"#);
        assert_eq!(
            e("$states.input.n + 1 > 2 and true").unwrap(),
            r#"(((($in | jsonata_get("n")) + 1) > 2) and true)"#
        );
        assert!(e("$count($states.input.items) = 0 ? 'none' : 'some'").unwrap().starts_with("(if"));
        assert_eq!(e("$states.context.Execution.Id").unwrap(), ".run.id");
        let filtered = e("$states.input.items[price > 3].sku").unwrap();
        assert!(filtered.contains(r#"($asl_it | jsonata_get("price")) > 3"#), "{filtered}");
        assert!(e("$states.input.items[$ > 3]").unwrap().contains("($asl_it > 3)"));
        assert!(e("price").unwrap_err().contains("$states.input"));
        assert!(e("$eval('1')").unwrap_err().contains("$eval"));
        assert!(e("$uuid()").unwrap().ends_with("| uuid_of)"));
        assert!(e("$random()").unwrap().contains("/ 281474976710656"));
        assert_eq!(e("$x.a").unwrap(), r#"(@@asl-var:x@@ | jsonata_get("a"))"#);
    }
}
