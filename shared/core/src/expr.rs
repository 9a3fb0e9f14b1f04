//! jq expressions (evaluated with the `jaq` crates) and `{{ jq }}` string templates.
//!
//! Only deterministic functions are offered: `now`, `env`, `input` and friends are removed so the
//! same context always gives the same value, which `decide` and `audit replay` rely on.

use std::collections::BTreeSet;
use std::sync::Arc;

use jaq_core::load::{Arena, File, Loader};
use jaq_core::{Compiler, Ctx, Vars};
use jaq_json::Val;
use serde::Deserialize;
use serde_json::Value;

mod json_funs;
mod limits;
mod metered;
mod text_funs;

pub use limits::{
    Budget, DEFAULT_MAX_MEMORY_BYTES, DEFAULT_MAX_STACK_BYTES, DEFAULT_MAX_STEPS, ExprLimit, MAX_JSON_NESTING,
};
use metered::{MVal, MeteredLut};

type Data = metered::Metered;
type Filter = jaq_core::Filter<Data>;

/// Functions that read the clock, the environment or stdin; excluded to keep evaluation pure.
const IMPURE: &[&str] = &[
    "now",
    "env",
    "input",
    "inputs",
    "debug",
    "stderr",
    "localtime",
    "strflocaltime",
    "mktime_local",
    "input_filename",
    "$__loc__",
    "get_search_list",
    // jaq's `halt` ends the process; `json_funs` puts a failing one in its place.
    "halt",
];

/// Where a `{{ secret("NAME") }}` placeholder starts. A NUL byte cannot appear in a header or a
/// URL by accident, so a placeholder the tool failed to replace is refused rather than sent, and
/// no ordinary text collides with it.
pub const SECRET_PREFIX: &str = "\u{0}baton-secret:";
/// Where a secret placeholder ends.
pub const SECRET_SUFFIX: &str = "\u{0}";
/// Longest secret name accepted (Secrets Manager allows 512 characters, SSM paths more).
pub const MAX_SECRET_NAME_LEN: usize = 1_024;

/// `secret/1` returns a placeholder, never the value: core does no I/O, and the resolved call
/// input (journaled and audited) must not hold credentials. The `http` tool swaps the value in
/// right before sending. Written with core definitions only, so light compiles keep working.
const SECRET_DEF: &str = r#"def secret($name): if ($name | tostring) == $name then "\u0000baton-secret:" + $name + "\u0000" else error("secret() needs a string name") end;"#;

/// `fail(kind; message)` ends the evaluation with an error of the caller's kind, so a
/// `transform` step (or an imported Step Functions `Fail` state) can fail the way a tool call
/// does: `retry.on`, fallbacks and the run's error see `kind`, not `expression`. The marker key
/// starts with a NUL byte so no value a user builds by hand is read as one.
const FAIL_DEF: &str = r#"def fail($kind; $message): error({"\u0000baton-fail": {kind: $kind, message: $message}});"#;

/// `has_path(p)`: true when every step of the path array `p` (as `getpath` takes it) finds
/// something, so an expression can tell a missing field from a `null` one (`getpath` gives
/// `null` for both). Negative indexes count from the end, as in `.[-1]`.
const HAS_PATH_DEF: &str = r#"def has_path($p): reduce $p[] as $k ([true, .]; .[1] as $v | if .[0] and ((($v | type) == "object" and ($k | type) == "string" and ($v | has($k))) or (($v | type) == "array" and ($k | type) == "number" and (if $k >= 0 then ($v | length) > $k else ($v | length) >= -$k end))) then [true, $v[$k]] else [false, null] end) | .[0];"#;

/// `jsonata_get(k)`: JSONata's field step, which imported JSONata paths use: an object's field;
/// over an array, the field of each object in it, arrays among the values flattened, one value
/// given as itself and none as `null` (JSONata's "undefined"); anything else gives `null`.
/// `jsonata_seq`: an array built as a JSONata sequence as its value (none `null`, one itself).
/// `jsonata_bool`: a value as JSONata casts it to a Boolean.
const JSONATA_GET_DEF: &str = r#"def jsonata_seq: if length == 0 then null elif length == 1 then .[0] else . end; def jsonata_get($k): if type == "object" then .[$k] elif type == "array" then [.[] | select(type == "object") | .[$k] | select(. != null) | if type == "array" then .[] else . end] | jsonata_seq else null end; def jsonata_bool: . != null and . != false and . != 0 and . != "" and . != [] and . != {};"#;

/// The key of the object `fail/2` raises.
const FAIL_MARKER: &str = "\u{0}baton-fail";

/// The placeholder `secret(name)` evaluates to.
pub fn secret_placeholder(name: &str) -> String {
    format!("{SECRET_PREFIX}{name}{SECRET_SUFFIX}")
}

/// True when `name` may name a secret: 1 to [`MAX_SECRET_NAME_LEN`] characters of
/// `A-Z a-z 0-9 _ . / - : + = @` (`:` for `ssm:/path` and ARNs; `+ = @` because Secrets Manager
/// names may hold them). Nothing that would need quoting in a message or a log.
pub fn valid_secret_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_SECRET_NAME_LEN
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"_./-:+=@".contains(&b))
}

/// baton's own definitions: `secret/1` and `fail/2` (written with core definitions, so light
/// compiles have them too) and, with the standard library, `has_path/1`, `jsonata_get/1`, `jsonata_seq/0` and
/// `jsonata_bool/0`.
fn baton_defs(light: bool) -> impl Iterator<Item = jaq_core::load::parse::Def<&'static str>> {
    let defs: &[&'static str] =
        if light { &[SECRET_DEF, FAIL_DEF] } else { &[SECRET_DEF, FAIL_DEF, HAS_PATH_DEF, JSONATA_GET_DEF] };
    defs.iter().flat_map(|d| jaq_core::load::parse(d, |p| p.defs()).unwrap_or_default())
}

/// Literal `secret("...")` arguments with a bad name fail at compile time, where the message
/// can point at the field; computed names are checked by the tool when it swaps values in.
fn check_secret_names(source: &str) -> Result<(), CompileError> {
    for (at, _) in identifiers(source).into_iter().filter(|(_, w)| *w == "secret") {
        let rest = source[at + "secret".len()..].trim_start();
        if let Some(arg) = rest.strip_prefix('(').map(str::trim_start)
            && let Some(lit) = arg.strip_prefix('"')
            && let Some(end) = lit.find('"')
            && lit[end + 1..].trim_start().starts_with(')')
            && !lit[..end].contains('\\')
        {
            let name = &lit[..end];
            if !valid_secret_name(name) {
                return Err(CompileError(format!(
                    "`secret(\"{name}\")`: a secret name is 1 to {MAX_SECRET_NAME_LEN} letters, digits or `_ . / - : + = @`"
                )));
            }
        }
    }
    Ok(())
}

/// Neutralises placeholders that come from data (run input, step outputs), so only a
/// `secret()` call written in the definition can make the `http` tool reveal a secret: otherwise
/// whoever starts a run could put a placeholder in its input and have it sent back to them.
fn without_data_placeholders(context: &Value) -> Option<Value> {
    fn has(v: &Value) -> bool {
        match v {
            Value::String(s) => s.contains(SECRET_PREFIX),
            Value::Array(a) => a.iter().any(has),
            Value::Object(m) => m.iter().any(|(k, v)| k.contains(SECRET_PREFIX) || has(v)),
            _ => false,
        }
    }
    fn clean(v: &Value) -> Value {
        let defuse = |s: &str| s.replace(SECRET_PREFIX, "\u{fffd}baton-secret:");
        match v {
            Value::String(s) => Value::String(defuse(s)),
            Value::Array(a) => Value::Array(a.iter().map(clean).collect()),
            Value::Object(m) => Value::Object(m.iter().map(|(k, v)| (defuse(k), clean(v))).collect()),
            other => other.clone(),
        }
    }
    has(context).then(|| clean(context))
}

/// Compiled expressions by source; definitions are loaded again and again (on every resume).
const CACHE_LIMIT: usize = 4_096;

fn cache() -> &'static std::sync::Mutex<std::collections::HashMap<String, Expr>> {
    static CACHE: std::sync::OnceLock<std::sync::Mutex<std::collections::HashMap<String, Expr>>> =
        std::sync::OnceLock::new();
    CACHE.get_or_init(Default::default)
}

fn natives() -> impl Iterator<Item = jaq_core::native::Filter<jaq_core::Native<Data>>> {
    jaq_core::funs()
        .chain(jaq_std::funs())
        .filter(|(name, _, _)| !IMPURE.contains(name))
        .chain(json_funs::funs())
        .chain(text_funs::funs())
}

/// Names usable without jaq's standard library: the minimal core definitions and every native.
fn light_names() -> &'static BTreeSet<String> {
    static NAMES: std::sync::OnceLock<BTreeSet<String>> = std::sync::OnceLock::new();
    NAMES.get_or_init(|| {
        let mut names: BTreeSet<String> = jaq_core::defs().map(|d| d.name.to_owned()).collect();
        names.extend(natives().map(|(name, _, _)| name.to_owned()));
        names.extend(JQ_KEYWORDS.iter().map(|k| (*k).to_owned()));
        names.insert("secret".to_owned());
        names.insert("fail".to_owned());
        names
    })
}

const JQ_KEYWORDS: &[&str] = &[
    "if", "then", "elif", "else", "end", "and", "or", "as", "reduce", "foreach", "try", "catch", "label", "def",
    "import", "include",
];

/// Bare words that may name filters, with where they start: not a `.field`, not a `$var`, not
/// inside a string.
fn identifiers(source: &str) -> Vec<(usize, &str)> {
    let bytes = source.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    let mut in_string = false;
    while i < bytes.len() {
        let c = bytes[i];
        if in_string {
            match c {
                b'\\' => i += 1,
                b'"' => in_string = false,
                _ => {}
            }
            i += 1;
            continue;
        }
        if c == b'"' {
            in_string = true;
            i += 1;
            continue;
        }
        if c.is_ascii_alphabetic() || c == b'_' {
            let start = i;
            while i < bytes.len() && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'_') {
                i += 1;
            }
            let prev = source[..start].trim_end().as_bytes().last().copied();
            let next = source[i..].trim_start().as_bytes().first().copied();
            // `.foo`, `$foo`, `@base64` and object keys `{foo: ...}` are not filter calls.
            if !matches!(prev, Some(b'.' | b'$' | b'@')) && next != Some(b':') {
                out.push((start, &source[start..i]));
            }
            continue;
        }
        i += 1;
    }
    out
}

/// A compiled jq expression, cheap to clone and share.
#[derive(Clone)]
pub struct Expr {
    source: Arc<str>,
    filter: Arc<Filter>,
    refs: Arc<StepRefs>,
}

impl std::fmt::Debug for Expr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Expr({:?})", self.source)
    }
}

/// A jq expression that does not compile.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct CompileError(pub String);

/// Evaluation failed: a jq runtime error, no value, or a [`Budget`] limit.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{expr}`: {message}")]
pub struct EvalError {
    /// The expression's source.
    pub expr: String,
    /// What went wrong.
    pub message: String,
    /// The limit the evaluation ran out of, when that is why it failed (kind `expression_limit`).
    pub limit: Option<ExprLimit>,
    /// The kind the expression raised with `fail(kind; message)`; `message` is then its message
    /// alone. Whether the kind may be used is the engine's to say.
    pub raised: Option<String>,
}

/// Which step results an expression reads, found by scanning its text.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StepRefs {
    /// `(step id, field)` pairs such as `("inventory", "output")`; field is empty when not named.
    pub fields: BTreeSet<(String, String)>,
    /// True when `.steps` is used as a whole (e.g. `.steps | keys`), so every step may be read.
    pub dynamic: bool,
}

impl StepRefs {
    /// The ids of the steps read.
    pub fn steps(&self) -> impl Iterator<Item = &str> {
        let mut last = None;
        self.fields.iter().filter_map(move |(s, _)| {
            if last == Some(s.as_str()) {
                None
            } else {
                last = Some(s.as_str());
                Some(s.as_str())
            }
        })
    }

    /// True when the expression reads `.steps.<step>.status`.
    pub fn reads_status_of(&self, step: &str) -> bool {
        self.dynamic || self.fields.contains(&(step.to_owned(), "status".to_owned()))
    }

    pub(crate) fn merge(&mut self, other: &StepRefs) {
        self.fields.extend(other.fields.iter().cloned());
        self.dynamic |= other.dynamic;
    }
}

impl Expr {
    /// Compiles `source`; the error text says what jq did not understand.
    pub fn compile(source: &str) -> Result<Self, CompileError> {
        if let Some(e) = cache().lock().ok().and_then(|c| c.get(source).cloned()) {
            return Ok(e);
        }
        let compiled = Self::compile_uncached(source)?;
        if let Ok(mut c) = cache().lock() {
            if c.len() >= CACHE_LIMIT {
                c.clear();
            }
            c.insert(source.to_owned(), compiled.clone());
        }
        Ok(compiled)
    }

    fn compile_uncached(source: &str) -> Result<Self, CompileError> {
        check_size(source)?;
        check_secret_names(source)?;
        let program = File { code: source, path: () };
        // Compiling jaq's standard library costs ~0.4 ms per expression; most workflow
        // expressions (paths, object construction, comparisons) need none of it.
        // Formats such as `@base64` are defined by the standard library too.
        let light = !source.contains('@') && identifiers(source).iter().all(|(_, w)| light_names().contains(*w));
        let defs: Box<dyn Iterator<Item = jaq_core::load::parse::Def<&'static str>>> = if light {
            Box::new(jaq_core::defs().chain(baton_defs(true)))
        } else {
            Box::new(jaq_core::defs().chain(jaq_std::defs()).chain(jaq_json::defs()).chain(baton_defs(false)))
        };
        let loader = Loader::new(defs);
        let arena = Arena::default();
        let modules = loader.load(&arena, program).map_err(|errs| {
            let mut parts = Vec::new();
            for (_file, err) in errs {
                match err {
                    jaq_core::load::Error::Io(e) => parts.extend(e.into_iter().map(|(p, m)| format!("{p}: {m}"))),
                    jaq_core::load::Error::Lex(e) => parts.extend(
                        e.into_iter().map(|(expect, at)| format!("expected {} at `{}`", expect.as_str(), snippet(at))),
                    ),
                    jaq_core::load::Error::Parse(e) => parts.extend(
                        e.into_iter().map(|(expect, at)| format!("expected {} at `{}`", expect.as_str(), snippet(at))),
                    ),
                }
            }
            CompileError(format!("jq syntax error: {}", parts.join("; ")))
        })?;
        let filter = Compiler::default().with_funs(natives()).compile(modules).map_err(|errs| {
            let names: Vec<String> = errs
                .into_iter()
                .flat_map(|(_f, e)| e.into_iter().map(|(name, u)| format!("undefined {} `{name}`", u.as_str())))
                .collect();
            CompileError(names.join("; "))
        })?;
        Ok(Self { source: source.into(), filter: Arc::new(filter), refs: Arc::new(scan_step_refs(source)) })
    }

    /// The expression as written.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// The step results the expression reads.
    pub fn refs(&self) -> &StepRefs {
        &self.refs
    }

    /// Evaluates against `context` within the default [`Budget`], returning the first output
    /// (jq's `first(expr)`).
    pub fn eval(&self, context: &Value) -> Result<Value, EvalError> {
        self.eval_with(context, &Budget::default())
    }

    /// Evaluates against `context` within `budget`: an expression that takes more steps, builds
    /// more bytes of values or recurses deeper fails with [`EvalError::limit`] set, in bounded
    /// time and memory. `try ... catch` inside the expression cannot catch a limit.
    pub fn eval_with(&self, context: &Value, budget: &Budget) -> Result<Value, EvalError> {
        let input = Val::deserialize(context).map_err(|e| self.error(e.to_string()))?;
        let run = || {
            let ctx = Ctx::<Data>::new(MeteredLut(&self.filter.lut), Vars::new([]));
            let mut out = self.filter.id.run((ctx, MVal(input))).map(jaq_core::unwrap_valr);
            match out.next() {
                Some(Ok(v)) => val_to_json(&v.0).map_err(|m| (m, None)),
                Some(Err(e)) => Err(error_parts(e)),
                None => Err(("gave no value".into(), None)),
            }
        };
        match limits::run_bounded(budget, run) {
            Ok(result) => result.map_err(|(message, raised)| EvalError { raised, ..self.error(message) }),
            Err(limit) => Err(EvalError {
                expr: self.source.to_string(),
                message: limit.to_string(),
                limit: Some(limit),
                raised: None,
            }),
        }
    }

    /// Evaluates and reads the result as a boolean the way jq does (`null` and `false` are false).
    pub fn eval_truthy(&self, context: &Value) -> Result<(bool, Value), EvalError> {
        let v = self.eval(context)?;
        Ok((!matches!(v, Value::Null | Value::Bool(false)), v))
    }

    fn error(&self, message: String) -> EvalError {
        EvalError { expr: self.source.to_string(), message, limit: None, raised: None }
    }
}

/// A jq error's text: a string thrown with `error("...")` (or by a builtin) as it is, any other
/// value as JSON; with the kind when `fail/2` raised it.
fn error_parts(e: jaq_core::Error<MVal>) -> (String, Option<String>) {
    let v = e.into_val().0;
    if let Val::Obj(_) = &v
        && let Ok(Value::Object(mut m)) = val_to_json(&v)
        && m.len() == 1
        && let Some(Value::Object(f)) = m.remove(FAIL_MARKER)
    {
        let text = |v: Option<&Value>| match v {
            Some(Value::String(s)) => s.clone(),
            Some(other) => other.to_string(),
            None => String::new(),
        };
        return (text(f.get("message")), Some(text(f.get("kind"))));
    }
    match v {
        Val::TStr(s) | Val::BStr(s) => (String::from_utf8_lossy(&s).into_owned(), None),
        other => (other.to_string(), None),
    }
}

fn snippet(at: &str) -> String {
    let s: String = at.chars().take(20).collect();
    if s.is_empty() { "end of expression".into() } else { s }
}

/// Converts a jaq value to JSON through its JSON text (jaq prints valid JSON for JSON values).
fn val_to_json(v: &Val) -> Result<Value, String> {
    match v {
        Val::Null => Ok(Value::Null),
        Val::Bool(b) => Ok(Value::Bool(*b)),
        Val::TStr(_) | Val::BStr(_) | Val::Num(_) | Val::Arr(_) | Val::Obj(_) => {
            serde_json::from_str(&v.to_string()).map_err(|e| format!("result is not JSON: {e}"))
        }
    }
}

/// Finds `.steps.<id>.<field>` and `.steps["<id>"]` references in jq text.
pub fn scan_step_refs(source: &str) -> StepRefs {
    let mut refs = StepRefs::default();
    let bytes = source.as_bytes();
    let mut i = 0;
    while let Some(off) = source[i..].find(".steps") {
        let start = i + off;
        i = start + ".steps".len();
        // `.stepsfoo` is another key; `$x.steps` is not the run context.
        if bytes.get(i).is_some_and(|c| c.is_ascii_alphanumeric() || *c == b'_') {
            continue;
        }
        if start > 0 && (bytes[start - 1].is_ascii_alphanumeric() || bytes[start - 1] == b'_') {
            continue;
        }
        let (id, after) = match bytes.get(i) {
            Some(b'.') => read_ident(source, i + 1),
            Some(b'[') => read_quoted_index(source, i + 1),
            _ => (None, i),
        };
        match id {
            Some(id) => {
                let field = match bytes.get(after) {
                    Some(b'.') => read_ident(source, after + 1).0.unwrap_or_default(),
                    _ => String::new(),
                };
                refs.fields.insert((id, field));
                i = after;
            }
            None => refs.dynamic = true,
        }
    }
    refs
}

fn read_ident(s: &str, from: usize) -> (Option<String>, usize) {
    let rest = &s[from..];
    if let Some(quoted) = rest.strip_prefix('"') {
        return match quoted.find('"') {
            Some(end) => (Some(quoted[..end].to_owned()), from + end + 2),
            None => (None, from),
        };
    }
    let len = rest.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '-')).unwrap_or(rest.len());
    if len == 0 { (None, from) } else { (Some(rest[..len].to_owned()), from + len) }
}

fn read_quoted_index(s: &str, from: usize) -> (Option<String>, usize) {
    let rest = &s[from..];
    let Some(quoted) = rest.strip_prefix('"') else {
        return (None, from);
    };
    match quoted.find('"') {
        Some(end) if quoted[end + 1..].starts_with(']') => (Some(quoted[..end].to_owned()), from + end + 3),
        _ => (None, from),
    }
}

/// A JSON value whose strings may contain `{{ jq }}` parts, compiled once.
#[derive(Debug, Clone)]
pub enum Template {
    /// A value with no interpolation.
    Literal(Value),
    /// A string that is exactly one `{{ expr }}`: the expression's value, not its text.
    Whole(Expr),
    /// Text with `{{ expr }}` parts; values that are not strings are inserted as JSON.
    Text(Vec<TextPart>),
    /// An array of templates.
    Array(Vec<Template>),
    /// An object of templates.
    Object(Vec<(String, Template)>),
}

/// A piece of an interpolated string.
#[derive(Debug, Clone)]
pub enum TextPart {
    /// Literal text.
    Lit(String),
    /// An interpolated expression.
    Expr(Expr),
}

/// A `{{ }}` part that does not compile, with the JSON pointer suffix where it sits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemplateError {
    /// Pointer below the template root, e.g. `/headers/Authorization`.
    pub pointer: String,
    /// The compile error.
    pub error: CompileError,
}

impl Template {
    /// Compiles every `{{ }}` in `value`, reporting all that fail.
    pub fn compile(value: &Value) -> Result<Self, Vec<TemplateError>> {
        let mut errors = Vec::new();
        let t = compile_at(value, "", &mut errors);
        if errors.is_empty() { Ok(t) } else { Err(errors) }
    }

    /// Every step result the template reads.
    pub fn refs(&self) -> StepRefs {
        let mut refs = StepRefs::default();
        self.visit(&mut |e| refs.merge(e.refs()));
        refs
    }

    /// Calls `f` with the JSON pointer (below `base`) of each expression inside.
    pub fn visit_at(&self, base: &str, f: &mut impl FnMut(&str, &Expr)) {
        match self {
            Template::Literal(_) => {}
            Template::Whole(e) => f(base, e),
            Template::Text(parts) => parts.iter().for_each(|p| {
                if let TextPart::Expr(e) = p {
                    f(base, e)
                }
            }),
            Template::Array(items) => items.iter().enumerate().for_each(|(i, t)| t.visit_at(&format!("{base}/{i}"), f)),
            Template::Object(fields) => {
                fields.iter().for_each(|(k, t)| t.visit_at(&format!("{base}/{}", escape_pointer(k)), f))
            }
        }
    }

    /// Calls `f` for each expression inside.
    pub fn visit(&self, f: &mut impl FnMut(&Expr)) {
        match self {
            Template::Literal(_) => {}
            Template::Whole(e) => f(e),
            Template::Text(parts) => parts.iter().for_each(|p| {
                if let TextPart::Expr(e) = p {
                    f(e)
                }
            }),
            Template::Array(items) => items.iter().for_each(|t| t.visit(f)),
            Template::Object(fields) => fields.iter().for_each(|(_, t)| t.visit(f)),
        }
    }

    /// True when the template has no expression at all.
    pub fn is_literal(&self) -> bool {
        matches!(self, Template::Literal(_))
    }

    /// Renders the template against `context`. Secret placeholders in `context` (data) are
    /// defused first; only `secret()` calls in the template itself yield live ones.
    pub fn render(&self, context: &Value) -> Result<Value, EvalError> {
        match without_data_placeholders(context) {
            Some(clean) => self.render_in(&clean),
            None => self.render_in(context),
        }
    }

    fn render_in(&self, context: &Value) -> Result<Value, EvalError> {
        Ok(match self {
            Template::Literal(v) => v.clone(),
            Template::Whole(e) => e.eval(context)?,
            Template::Text(parts) => {
                let mut out = String::new();
                for p in parts {
                    match p {
                        TextPart::Lit(s) => out.push_str(s),
                        TextPart::Expr(e) => match e.eval(context)? {
                            Value::String(s) => out.push_str(&s),
                            other => out.push_str(&other.to_string()),
                        },
                    }
                }
                Value::String(out)
            }
            Template::Array(items) => {
                Value::Array(items.iter().map(|t| t.render_in(context)).collect::<Result<_, _>>()?)
            }
            Template::Object(fields) => Value::Object(
                fields.iter().map(|(k, t)| Ok((k.clone(), t.render_in(context)?))).collect::<Result<_, EvalError>>()?,
            ),
        })
    }
}

fn compile_at(value: &Value, pointer: &str, errors: &mut Vec<TemplateError>) -> Template {
    match value {
        Value::String(s) if s.contains("{{") => match split_template(s) {
            Ok(parts) => {
                let mut compiled = Vec::new();
                for part in parts {
                    match part {
                        RawPart::Lit(l) => compiled.push(TextPart::Lit(l)),
                        RawPart::Expr(src) => match Expr::compile(src.trim()) {
                            Ok(e) => compiled.push(TextPart::Expr(e)),
                            Err(error) => errors.push(TemplateError { pointer: pointer.to_owned(), error }),
                        },
                    }
                }
                if let [TextPart::Expr(e)] = compiled.as_slice() {
                    Template::Whole(e.clone())
                } else {
                    Template::Text(compiled)
                }
            }
            Err(msg) => {
                errors.push(TemplateError { pointer: pointer.to_owned(), error: CompileError(msg) });
                Template::Literal(value.clone())
            }
        },
        Value::Array(items) => {
            let ts: Vec<Template> =
                items.iter().enumerate().map(|(i, v)| compile_at(v, &format!("{pointer}/{i}"), errors)).collect();
            if ts.iter().all(Template::is_literal) { Template::Literal(value.clone()) } else { Template::Array(ts) }
        }
        Value::Object(map) => {
            let ts: Vec<(String, Template)> = map
                .iter()
                .map(|(k, v)| (k.clone(), compile_at(v, &format!("{pointer}/{}", escape_pointer(k)), errors)))
                .collect();
            if ts.iter().all(|(_, t)| t.is_literal()) { Template::Literal(value.clone()) } else { Template::Object(ts) }
        }
        other => Template::Literal(other.clone()),
    }
}

/// Escapes a key for use in a JSON pointer (RFC 6901).
pub fn escape_pointer(key: &str) -> String {
    key.replace('~', "~0").replace('/', "~1")
}

/// Longest expression accepted; jq programs in workflows are short, and the parser recurses.
pub const MAX_EXPR_LEN: usize = 4_096;
/// Deepest bracket nesting accepted, for the same reason.
pub const MAX_EXPR_DEPTH: usize = 64;

fn check_size(source: &str) -> Result<(), CompileError> {
    let chars = source.chars().count();
    if chars > MAX_EXPR_LEN {
        return Err(CompileError(format!(
            "expression is {chars} characters long; the limit is {MAX_EXPR_LEN}: move the logic into smaller steps"
        )));
    }
    let (mut depth, mut max, mut ops) = (0usize, 0usize, 0usize);
    for c in source.chars() {
        match c {
            '(' | '[' | '{' => {
                depth += 1;
                max = max.max(depth);
            }
            ')' | ']' | '}' => depth = depth.saturating_sub(1),
            '|' | ',' | '+' | '-' | '*' | '/' | '%' | '<' | '>' | '=' => ops += 1,
            _ => {}
        }
    }
    if max > MAX_EXPR_DEPTH {
        return Err(CompileError(format!("brackets nest {max} deep; the limit is {MAX_EXPR_DEPTH}")));
    }
    if ops > 256 {
        return Err(CompileError(format!("expression has {ops} operators; the limit is 256: split it into steps")));
    }
    Ok(())
}

enum RawPart<'a> {
    Lit(String),
    Expr(&'a str),
}

fn split_template(s: &str) -> Result<Vec<RawPart<'_>>, String> {
    let mut parts = Vec::new();
    let mut rest = s;
    while let Some(open) = rest.find("{{") {
        if open > 0 {
            parts.push(RawPart::Lit(rest[..open].to_owned()));
        }
        let after = &rest[open + 2..];
        let close = after.find("}}").ok_or_else(|| format!("`{{{{` without a closing `}}}}` in \"{s}\""))?;
        parts.push(RawPart::Expr(&after[..close]));
        rest = &after[close + 2..];
    }
    if !rest.is_empty() {
        parts.push(RawPart::Lit(rest.to_owned()));
    }
    Ok(parts)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn fail_raises_a_kind_and_has_path_tells_missing_from_null() {
        let e = Expr::compile(r#"if .n > 1 then fail("OutOfStock"; "only \(.n)") else . end"#).unwrap();
        let err = e.eval(&json!({"n": 2})).unwrap_err();
        assert_eq!((err.raised.as_deref(), err.message.as_str()), (Some("OutOfStock"), "only 2"));
        assert_eq!(e.eval(&json!({"n": 1})).unwrap(), json!({"n": 1}));
        let caught = Expr::compile(r#"try fail("X"; "m") catch "caught""#).unwrap();
        assert_eq!(caught.eval(&json!(null)).unwrap(), json!("caught"));
        let has = |p: &str, v: Value| Expr::compile(&format!("has_path({p})")).unwrap().eval(&v).unwrap();
        assert_eq!(has(r#"["a", "b"]"#, json!({"a": {"b": null}})), json!(true));
        assert_eq!(has(r#"["a", "c"]"#, json!({"a": {"b": null}})), json!(false));
        assert_eq!(has(r#"["a", 1]"#, json!({"a": [0, 1]})), json!(true));
        assert_eq!(has(r#"["a", -2]"#, json!({"a": [0, 1]})), json!(true));
        assert_eq!(has(r#"["a", 2]"#, json!({"a": [0, 1]})), json!(false));
        assert_eq!(has(r#"["a", "x", "y"]"#, json!({"a": "text"})), json!(false));
        assert_eq!(has("[]", json!(null)), json!(true));
    }

    #[test]
    fn text_natives_read_csv_hash_and_name_uuids() {
        let eval = |e: &str, v: Value| Expr::compile(e).unwrap().eval(&v);
        let csv = "id,note\r\n1,\"a, \"\"quoted\"\"\nline\"\n2,plain\n";
        assert_eq!(
            eval(r#"fromcsv(",")"#, json!(csv)).unwrap(),
            json!([["id", "note"], ["1", "a, \"quoted\"\nline"], ["2", "plain"]])
        );
        assert_eq!(eval(r#"fromcsv("|")"#, json!("a|b\nc")).unwrap(), json!([["a", "b"], ["c"]]));
        assert!(eval(r#"fromcsv(",,")"#, json!("a")).unwrap_err().message.contains("one ASCII character"));
        assert_eq!(eval(r#"hash("MD5")"#, json!("abc")).unwrap(), json!("900150983cd24fb0d6963f7d28e17f72"));
        assert_eq!(eval(r#"hash("SHA-1")"#, json!("abc")).unwrap(), json!("a9993e364706816aba3e25717850c26c9cd0d89d"));
        assert!(eval(r#"hash("SHA-384")"#, json!("abc")).unwrap().as_str().unwrap().starts_with("cb00753f45a35e8b"));
        assert!(eval(r#"hash("CRC32")"#, json!("abc")).is_err());
        // What Python's uuid.uuid5(uuid.NAMESPACE_URL, "hello") gives.
        assert_eq!(eval("uuid_of", json!("hello")).unwrap(), json!("074171de-bc84-5ea4-b636-1135477620e1"));
    }

    #[test]
    fn evaluates_jq() {
        let e = Expr::compile(".input.a + 1").expect("compiles");
        assert_eq!(e.eval(&json!({"input": {"a": 41}})), Ok(json!(42)));
    }

    #[test]
    fn rejects_bad_jq_and_impure_functions() {
        assert!(Expr::compile(".a |").is_err());
        assert!(Expr::compile("now").is_err());
        assert!(Expr::compile("nosuchfn(1)").is_err());
    }

    #[test]
    fn finds_step_references() {
        let r = scan_step_refs(r#".steps.a.output.x + .steps["b-c"].status + .steps.d"#);
        assert!(r.fields.contains(&("a".into(), "output".into())));
        assert!(r.fields.contains(&("b-c".into(), "status".into())));
        assert!(r.fields.contains(&("d".into(), String::new())));
        assert!(!r.dynamic);
        assert!(scan_step_refs(".steps | keys").dynamic);
        assert!(scan_step_refs(".stepsx").fields.is_empty());
    }

    #[test]
    fn renders_templates() {
        let t = Template::compile(&json!({"url": "https://x/{{ .input.id }}/y", "n": "{{ .input.n }}", "k": 1}))
            .expect("compiles");
        let v = t.render(&json!({"input": {"id": "o-1", "n": 3}})).expect("renders");
        assert_eq!(v, json!({"url": "https://x/o-1/y", "n": 3, "k": 1}));
    }
}

#[cfg(test)]
mod secret_tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn secret_evaluates_to_a_placeholder_on_both_compile_paths() {
        let light = Expr::compile(r#"secret("API_TOKEN")"#).expect("compiles");
        assert_eq!(light.eval(&json!({})), Ok(json!("\u{0}baton-secret:API_TOKEN\u{0}")));
        assert_eq!(secret_placeholder("API_TOKEN"), "\u{0}baton-secret:API_TOKEN\u{0}");
        // `isstring` is defined by jaq's standard library: the heavy path must define `secret` too.
        assert!(!light_names().contains("isstring"));
        let heavy = Expr::compile(r#"secret("ssm:/prod/db") | select(isstring)"#).expect("compiles");
        assert_eq!(heavy.eval(&json!({})), Ok(json!(secret_placeholder("ssm:/prod/db"))));
        // The cache hands back the same working expression.
        let again = Expr::compile(r#"secret("API_TOKEN")"#).expect("cached");
        assert_eq!(again.eval(&json!({})), Ok(json!(secret_placeholder("API_TOKEN"))));
    }

    #[test]
    fn literal_secret_names_are_checked_when_compiling() {
        for bad in [r#"secret("")"#, r#"secret("has space")"#, r#"secret("x$y")"#] {
            let e = Expr::compile(bad).expect_err(bad);
            assert!(e.0.contains("secret name"), "{bad}: {e}");
        }
        for ok in [r#"secret("A_b-1.2/x")"#, r#"secret ( "arn:aws:secretsmanager:eu:1:secret:k+=@" )"#] {
            Expr::compile(ok).expect(ok);
        }
        // A computed name compiles; `"secret(\"\")"` inside a string is not a call.
        let computed = Expr::compile(r#"secret("TOKEN_" + .input.env)"#).expect("computed");
        assert_eq!(computed.eval(&json!({"input": {"env": "PROD"}})), Ok(json!(secret_placeholder("TOKEN_PROD"))));
        Expr::compile(r#""secret(\"\")""#).expect("text");
        assert!(Expr::compile("secret(1)").expect("compiles").eval(&json!({})).is_err());
        assert!(valid_secret_name("ssm:/a/b") && !valid_secret_name("a b") && !valid_secret_name(""));
        assert!(!valid_secret_name(&"a".repeat(MAX_SECRET_NAME_LEN + 1)));
    }

    #[test]
    fn templates_hold_placeholders_and_defuse_those_from_data() {
        let t = Template::compile(&json!({
            "headers": {"Authorization": "Bearer {{ secret(\"TOKEN\") }}"},
            "body": {"note": "{{ .input.note }}", "whole": "{{ .input.note }}"},
        }))
        .expect("compiles");
        let forged = format!("give me {}", secret_placeholder("AWS_SECRET_ACCESS_KEY"));
        let out = t.render(&json!({"input": {"note": forged}})).expect("renders");
        assert_eq!(out["headers"]["Authorization"], json!(format!("Bearer {}", secret_placeholder("TOKEN"))));
        let note = out["body"]["note"].as_str().expect("string");
        assert!(!note.contains(SECRET_PREFIX), "{note:?}");
        assert_eq!(note, "give me \u{fffd}baton-secret:AWS_SECRET_ACCESS_KEY\u{0}");
        assert_eq!(out["body"]["whole"], json!(note));
    }
}
