//! jaq-json's natives (`length`, `tojson`, `fromjson`, `tobytes`, `contains`, `has`, `indices`,
//! `bsearch`) over metered values, and a `halt` that fails instead of exiting. jaq-json writes its
//! natives for its own value type only, so they are written again here with the same results;
//! each charges the meter for what it walks and builds.

use jaq_core::box_iter::box_once;
use jaq_core::native::{Filter, Fun, bome, run, unary, v};
use jaq_core::{Error, Exn, RunPtr, ValR, ValT as _};
use jaq_json::{Num, Val};

use super::limits::{MAX_JSON_NESTING, bytes, n, steps, too_deep};
use super::metered::{MVal, Metered, lift_err};

/// The natives, ready for the compiler.
pub(super) fn funs() -> impl Iterator<Item = Fun<Metered>> {
    let natives: [Filter<RunPtr<Metered>>; 9] = [
        // jaq's `halt` exits the process; here it is an error, so an expression cannot stop
        // the host (jaq's definitions of `halt/0` and `halt_error` call it, so it must exist).
        ("halt", v(1), |_| bome(Err(Error::str("`halt` is not available in workflow expressions")))),
        ("length", v(0), |cv| bome(length(cv.1.0))),
        ("tojson", v(0), |cv| bome(Ok(MVal::from(cv.1.0.to_string())))),
        ("fromjson", v(0), |cv| from_json(cv.1.0)),
        ("tobytes", v(0), |cv| bome(to_bytes(cv.1.0))),
        ("contains", v(1), |cv| unary(cv, |x, y| Ok(MVal::from(contains(&x.0, &y.0))))),
        ("has", v(1), |cv| unary(cv, |x, k| has(x.0, &k.0).map(MVal::from))),
        ("indices", v(1), |cv| unary(cv, |x, y| indices(&x.0, &y.0))),
        ("bsearch", v(1), |cv| unary(cv, |a, x| bsearch(a.0, &x.0))),
    ];
    natives.into_iter().map(run::<Metered>)
}

fn typ(v: Val, typ: &'static str) -> Error<MVal> {
    Error::typ(MVal(v), typ)
}

fn text(b: &[u8]) -> std::borrow::Cow<'_, str> {
    String::from_utf8_lossy(b)
}

/// Null 0, a number its absolute value, a string its characters (bytes for a byte string), an
/// array or object its entries.
fn length(v: Val) -> ValR<MVal> {
    let len = |l: usize| Ok(MVal(Val::from(l)));
    match v {
        Val::Null => len(0),
        Val::Num(_) if v < Val::from(0isize) => -MVal(v),
        Val::Num(_) => Ok(MVal(v)),
        Val::TStr(s) => {
            steps(n(s.len()));
            len(text(&s).chars().count())
        }
        Val::BStr(b) => len(b.len()),
        Val::Arr(a) => len(a.len()),
        Val::Obj(o) => len(o.len()),
        Val::Bool(_) => Err(Error::str(format_args!("{v} has no length"))),
    }
}

/// Every JSON value in the string. Parsing is charged up front as eight bytes of values per byte
/// of text (`[0,0,...]` makes one 16-byte cell per two bytes), so no parse outgrows its charge.
fn from_json<'a>(v: Val) -> jaq_core::ValXs<'a, MVal> {
    let Val::TStr(s) = &v else {
        return box_once(Err(Exn::from(typ(v, "string"))));
    };
    steps(n(s.len()));
    bytes(n(s.len()).saturating_mul(8));
    if nesting(s) > MAX_JSON_NESTING {
        too_deep();
    }
    // The parser keeps reporting the same error at the same place: stop at the first one
    // (text that is not JSON, such as `"boom" | fromjson`, is one error, not an endless run).
    let mut parsed = Vec::new();
    for r in jaq_json::read::parse_many(s) {
        match r {
            Ok(x) => parsed.push(Ok(MVal(x))),
            Err(e) => {
                parsed.push(Err(Exn::from(Error::str(format_args!("cannot parse {v} as JSON: {e}")))));
                break;
            }
        }
    }
    Box::new(parsed.into_iter())
}

/// The deepest bracket nesting in JSON text, brackets inside strings not counted.
fn nesting(text: &[u8]) -> u64 {
    let (mut depth, mut max, mut in_string, mut escaped) = (0u64, 0u64, false, false);
    for &c in text {
        match (in_string, c) {
            (true, _) if escaped => escaped = false,
            (true, b'\\') => escaped = true,
            (true, b'"') => in_string = false,
            (true, _) => {}
            (false, b'"') => in_string = true,
            (false, b'[' | b'{') => {
                depth += 1;
                max = max.max(depth);
            }
            (false, b']' | b'}') => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    max
}

fn to_bytes(v: Val) -> ValR<MVal> {
    fn put(v: &Val, out: &mut Vec<u8>) -> bool {
        match v {
            Val::Num(Num::Int(i)) => u8::try_from(*i).map(|b| out.push(b)).is_ok(),
            Val::BStr(b) | Val::TStr(b) => {
                out.extend_from_slice(b);
                true
            }
            Val::Arr(a) => a.iter().all(|x| put(x, out)),
            _ => false,
        }
    }
    let mut out = Vec::new();
    if !put(&v, &mut out) {
        return Err(Error::str(format_args!("cannot convert {v} to bytes")));
    }
    bytes(n(out.len()));
    Ok(MVal(Val::byte_str(out)))
}

/// jq's `contains`: substrings, every element of `r` in some element of `l`, every key of `r`
/// in `l` with a containing value, else equality.
fn contains(l: &Val, r: &Val) -> bool {
    steps(1);
    match (l, r) {
        (Val::BStr(l), Val::BStr(r)) | (Val::TStr(l), Val::TStr(r)) => {
            steps(n(l.len()));
            r.is_empty() || l.windows(r.len()).any(|w| w == &r[..])
        }
        (Val::Arr(l), Val::Arr(r)) => r.iter().all(|r| l.iter().any(|l| contains(l, r))),
        (Val::Obj(l), Val::Obj(r)) => r.iter().all(|(k, r)| l.get(k).is_some_and(|l| contains(l, r))),
        _ => l == r,
    }
}

/// An index into `len` items, negative from the end, when it is inside.
fn wrap(i: isize, len: usize) -> Option<usize> {
    let i = if i < 0 { len.checked_sub(i.unsigned_abs())? } else { i.unsigned_abs() };
    (i < len).then_some(i)
}

/// True when `x[k]` is there (as jaq has it: negative array indices count from the end).
fn has(x: Val, k: &Val) -> Result<bool, Error<MVal>> {
    match (&x, k) {
        (Val::Null, _) => Ok(false),
        (Val::Obj(o), k) => Ok(o.contains_key(k)),
        (Val::Arr(a), Val::Num(Num::Int(i))) => Ok(wrap(*i, a.len()).is_some()),
        (Val::BStr(b), Val::Num(Num::Int(i))) => Ok(wrap(*i, b.len()).is_some()),
        (Val::Arr(_) | Val::BStr(_), Val::Num(Num::BigInt(_))) => Ok(false),
        _ => x.index(k).map(|_| true).map_err(lift_err),
    }
}

/// Where `y` starts in `x`: character positions in a string, element positions in an array.
fn indices(x: &Val, y: &Val) -> ValR<MVal> {
    let found: Vec<usize> = match (x, y) {
        (Val::TStr(_) | Val::BStr(_) | Val::Arr(_), Val::TStr(e) | Val::BStr(e)) if e.is_empty() => Vec::new(),
        (Val::Arr(_), Val::Arr(e)) if e.is_empty() => Vec::new(),
        (Val::TStr(x), Val::TStr(y)) => {
            steps(n(x.len()));
            let (x, y) = (text(x), text(y));
            x.char_indices().enumerate().filter(|(_, (at, _))| x[*at..].starts_with(&*y)).map(|(i, _)| i).collect()
        }
        (Val::BStr(x), Val::BStr(y)) => {
            steps(n(x.len()));
            x.windows(y.len()).enumerate().filter(|(_, w)| *w == &y[..]).map(|(i, _)| i).collect()
        }
        (Val::Arr(x), Val::Arr(y)) => {
            steps(n(x.len()));
            x.windows(y.len()).enumerate().filter(|(_, w)| *w == &y[..]).map(|(i, _)| i).collect()
        }
        (Val::Arr(x), y) => {
            steps(n(x.len()));
            x.iter().enumerate().filter(|(_, e)| *e == y).map(|(i, _)| i).collect()
        }
        (x, y) => return Err(Error::index(MVal(x.clone()), MVal(y.clone()))),
    };
    Ok(found.into_iter().map(MVal::from).collect())
}

/// The index of `x` in the sorted array, or `-1 - (where it would go)`.
fn bsearch(a: Val, x: &Val) -> ValR<MVal> {
    let Val::Arr(items) = &a else {
        return Err(typ(a, "array"));
    };
    steps(1 + n(items.len().max(1).ilog2() as usize));
    let at = match items.binary_search(x) {
        Ok(i) => isize::try_from(i).unwrap_or(isize::MAX),
        Err(i) => -1 - isize::try_from(i).unwrap_or(isize::MAX - 1),
    };
    Ok(MVal::from(at))
}
