//! [`MVal`]: jaq-json's value with every operation charged to the evaluation's budget
//! ([`super::limits`]), and [`Metered`], the data kind that also charges jaq's context copies.
//!
//! Behaviour is jaq-json's: each operation delegates to [`Val`]. What this adds is the charge,
//! made before the work where the size is known up front (`"x" * n`, copying a shared array) so
//! a runaway stops before it allocates, and per element where an operation walks a stream.

use std::cell::RefCell;
use std::cmp::Ordering;
use std::fmt;

use jaq_core::box_iter::BoxIter;
use jaq_core::data::HasLut;
use jaq_core::path::Opt;
use jaq_core::{DataT, Error, Exn, ValR, ValT, ValX, val};
use jaq_json::{Num, Rc, Val};

use super::limits::{bytes, n, step, step_deeper, steps};

/// What one array element or scalar costs: the size of a value cell.
const CELL: u64 = std::mem::size_of::<Val>() as u64;
/// What one object entry costs: key, value, hash and index slot.
const ENTRY: u64 = 2 * CELL + 16;
/// What a string costs besides its bytes: its boxed `Bytes` handle.
const STRING: u64 = 32;

/// A jaq-json value whose operations are metered.
#[derive(Debug, Default)]
pub struct MVal(pub Val);

/// Filters over [`MVal`] whose context copies are metered.
pub struct Metered;

impl DataT for Metered {
    type V<'a> = MVal;
    type Data<'a> = MeteredLut<'a>;
}

/// The filter's look-up table; jaq copies it with every context copy, so that is where a
/// recursion that touches no value (`def f: f; f`) is charged.
pub struct MeteredLut<'a>(pub &'a jaq_core::Lut<Metered>);

impl Clone for MeteredLut<'_> {
    fn clone(&self) -> Self {
        step_deeper();
        Self(self.0)
    }
}

impl<'a> HasLut<'a, Metered> for MeteredLut<'a> {
    fn lut(&self) -> &'a jaq_core::Lut<Metered> {
        self.0
    }
}

impl Clone for MVal {
    fn clone(&self) -> Self {
        step();
        Self(self.0.clone())
    }
}

/// Cost of copying a container when it is shared (jaq copies on write).
fn copy_cost(v: &Val) -> u64 {
    match v {
        Val::Arr(a) if Rc::strong_count(a) > 1 => CELL * n(a.len()),
        Val::Obj(o) if Rc::strong_count(o) > 1 => ENTRY * n(o.len()),
        _ => 0,
    }
}

/// What merging an object of `r_len` keys into `l` costs (`+` and `*` of objects): a step and
/// an entry per key, and a copy of `l` when it is shared.
fn merge_cost(l: &Val, r_len: usize) -> u64 {
    steps(n(r_len));
    ENTRY * n(r_len) + copy_cost(l)
}

/// The container itself, or a copy when it is shared (as jaq-json iterates it).
fn unshare<T: Clone>(rc: Rc<T>) -> T {
    Rc::try_unwrap(rc).unwrap_or_else(|rc| (*rc).clone())
}

/// Cost of a value just built, counting its top level only (its parts were charged when built).
fn built_cost(v: &Val) -> u64 {
    match v {
        Val::Arr(a) => CELL * n(a.len()),
        Val::Obj(o) => ENTRY * n(o.len()),
        Val::TStr(s) | Val::BStr(s) => STRING + n(s.len()),
        _ => 0,
    }
}

fn charge_built(v: Val) -> Val {
    bytes(built_cost(&v));
    v
}

/// A jaq-json error as an error over metered values; `catch` sees the same value.
pub(super) fn lift_err(e: Error<Val>) -> Error<MVal> {
    Error::new(MVal(e.into_val()))
}

fn lift(r: ValR<Val>) -> ValR<MVal> {
    r.map(MVal).map_err(lift_err)
}

/// Carries exceptions of a metered update function through jaq-json's update code, which only
/// knows its own value type: the first one is kept here and a stand-in error stops jaq-json.
struct Stash<'a>(RefCell<Option<Exn<'a, MVal>>>);

impl<'a> Stash<'a> {
    fn new() -> Self {
        Self(RefCell::new(None))
    }

    fn lower<I: Iterator<Item = ValX<'a, MVal>>>(&self, ys: I) -> impl Iterator<Item = ValX<'a, Val>> + use<'_, 'a, I> {
        ys.map(|y| match y {
            Ok(v) => Ok(v.0),
            Err(e) => {
                let mut slot = self.0.borrow_mut();
                if slot.is_none() {
                    *slot = Some(e);
                }
                Err(Exn::from(Error::new(Val::Null)))
            }
        })
    }

    fn finish(self, r: ValX<'a, Val>) -> ValX<'a, MVal> {
        if let Some(e) = self.0.into_inner() {
            return Err(e);
        }
        r.map(MVal).map_err(|e| match e.get_err() {
            Ok(e) => Exn::from(lift_err(e)),
            Err(_) => Exn::from(Error::str("internal: an update stopped without an error")),
        })
    }
}

impl fmt::Display for MVal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl From<bool> for MVal {
    fn from(b: bool) -> Self {
        step();
        Self(Val::from(b))
    }
}

impl From<isize> for MVal {
    fn from(i: isize) -> Self {
        step();
        Self(Val::from(i))
    }
}

impl From<usize> for MVal {
    fn from(i: usize) -> Self {
        step();
        Self(Val::from(i))
    }
}

impl From<f64> for MVal {
    fn from(f: f64) -> Self {
        step();
        Self(Val::from(f))
    }
}

impl From<String> for MVal {
    fn from(s: String) -> Self {
        steps(1);
        bytes(STRING + n(s.len()));
        Self(Val::from(s))
    }
}

impl From<val::Range<MVal>> for MVal {
    fn from(r: val::Range<MVal>) -> Self {
        bytes(2 * ENTRY);
        Self(Val::from(r.start.map(|v| v.0)..r.end.map(|v| v.0)))
    }
}

impl FromIterator<MVal> for MVal {
    fn from_iter<T: IntoIterator<Item = MVal>>(iter: T) -> Self {
        Self(Val::from_iter(iter.into_iter().map(|v| {
            step();
            bytes(CELL);
            v.0
        })))
    }
}

impl PartialEq for MVal {
    fn eq(&self, other: &Self) -> bool {
        charge_compare(&self.0, &other.0);
        self.0 == other.0
    }
}

impl Eq for MVal {}

impl PartialOrd for MVal {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for MVal {
    fn cmp(&self, other: &Self) -> Ordering {
        charge_compare(&self.0, &other.0);
        self.0.cmp(&other.0)
    }
}

/// Comparing containers walks them: one step, plus the shorter top level unless both are the
/// same allocation (which jaq compares in one step).
fn charge_compare(l: &Val, r: &Val) {
    let walk = match (l, r) {
        (Val::Arr(a), Val::Arr(b)) if !Rc::ptr_eq(a, b) => a.len().min(b.len()),
        (Val::Obj(a), Val::Obj(b)) if !Rc::ptr_eq(a, b) => a.len().min(b.len()),
        _ => 0,
    };
    steps(1 + n(walk));
}

impl std::ops::Add for MVal {
    type Output = ValR<MVal>;
    fn add(self, rhs: Self) -> Self::Output {
        step();
        let cost = match (&self.0, &rhs.0) {
            // jaq-json appends in place when it holds the only reference, else copies.
            (Val::TStr(l) | Val::BStr(l), Val::TStr(r) | Val::BStr(r)) => {
                STRING + n(r.len()) + if l.is_unique() { 0 } else { n(l.len()) }
            }
            (Val::Arr(_), Val::Arr(r)) => {
                steps(n(r.len()));
                CELL * n(r.len()) + copy_cost(&self.0)
            }
            (Val::Obj(_), Val::Obj(r)) => merge_cost(&self.0, r.len()),
            _ => 0,
        };
        bytes(cost);
        lift(self.0 + rhs.0)
    }
}

impl std::ops::Sub for MVal {
    type Output = ValR<MVal>;
    fn sub(self, rhs: Self) -> Self::Output {
        step();
        if let (Val::Arr(l), Val::Arr(r)) = (&self.0, &rhs.0) {
            steps(n(l.len()) + n(r.len()));
            bytes(copy_cost(&self.0) + CELL * n(r.len()));
        }
        lift(self.0 - rhs.0)
    }
}

impl std::ops::Mul for MVal {
    type Output = ValR<MVal>;
    fn mul(self, rhs: Self) -> Self::Output {
        step();
        let repeat = |s: &[u8], by: &Val| match by {
            Val::Num(Num::Int(k)) => n(s.len()).saturating_mul(u64::try_from(*k).unwrap_or(0)),
            Val::Num(Num::BigInt(_)) if *by > Val::from(0isize) => u64::MAX,
            _ => 0,
        };
        // Charged before jaq-json allocates: `"x" * 1e12` must stop here, not in the allocator.
        let cost = match (&self.0, &rhs.0) {
            (Val::TStr(s) | Val::BStr(s), k) | (k, Val::TStr(s) | Val::BStr(s)) => repeat(s, k),
            (Val::Obj(_), Val::Obj(r)) => merge_cost(&self.0, r.len()),
            _ => 0,
        };
        bytes(cost);
        lift(self.0 * rhs.0)
    }
}

impl std::ops::Div for MVal {
    type Output = ValR<MVal>;
    fn div(self, rhs: Self) -> Self::Output {
        step();
        let out = lift(self.0 / rhs.0)?;
        if let Val::Arr(parts) = &out.0 {
            steps(n(parts.len()));
            bytes((CELL + STRING) * n(parts.len()));
        }
        Ok(out)
    }
}

impl std::ops::Rem for MVal {
    type Output = ValR<MVal>;
    fn rem(self, rhs: Self) -> Self::Output {
        step();
        lift(self.0 % rhs.0)
    }
}

impl std::ops::Neg for MVal {
    type Output = ValR<MVal>;
    fn neg(self) -> Self::Output {
        step();
        lift(-self.0)
    }
}

impl ValT for MVal {
    fn from_num(num: &str) -> ValR<Self> {
        step();
        lift(Val::from_num(num))
    }

    fn from_map<I: IntoIterator<Item = (Self, Self)>>(iter: I) -> ValR<Self> {
        lift(Val::from_map(iter.into_iter().map(|(k, v)| {
            step();
            bytes(ENTRY);
            (k.0, v.0)
        })))
    }

    fn key_values(self) -> BoxIter<'static, ValR<(Self, Self), Self>> {
        step_deeper();
        bytes(copy_cost(&self.0));
        let pair = |(k, v)| {
            step();
            Ok((MVal(k), MVal(v)))
        };
        match self.0 {
            Val::Arr(a) => Box::new(unshare(a).into_iter().enumerate().map(|(i, v)| (Val::from(i), v)).map(pair)),
            Val::Obj(o) => Box::new(unshare(o).into_iter().map(pair)),
            v => Box::new(v.key_values().map(|kv| kv.map(|(k, v)| (MVal(k), MVal(v))).map_err(lift_err))),
        }
    }

    fn values(self) -> Box<dyn Iterator<Item = ValR<Self>>> {
        step_deeper();
        bytes(copy_cost(&self.0));
        let one = |v| {
            step();
            Ok(MVal(v))
        };
        match self.0 {
            Val::Arr(a) => Box::new(unshare(a).into_iter().map(one)),
            Val::Obj(o) => Box::new(unshare(o).into_iter().map(move |(_, v)| one(v))),
            v => Box::new(v.values().map(lift)),
        }
    }

    fn index(self, index: &Self) -> ValR<Self> {
        step();
        let out = lift(self.0.index(&index.0))?;
        // Only `array[array]` (the indices of a sub-array) builds a value.
        if matches!(index.0, Val::Arr(_)) {
            bytes(built_cost(&out.0));
        }
        Ok(out)
    }

    fn range(self, range: val::Range<&Self>) -> ValR<Self> {
        step();
        let range = range.start.map(|v| &v.0)..range.end.map(|v| &v.0);
        let out = lift(self.0.range(range))?;
        // Slicing an array copies the slice; a string slice shares the bytes.
        match &out.0 {
            Val::Arr(_) => bytes(built_cost(&out.0)),
            _ => bytes(STRING),
        }
        Ok(out)
    }

    fn map_values<'a, I: Iterator<Item = ValX<'a, Self>>>(self, opt: Opt, f: impl Fn(Self) -> I) -> ValX<'a, Self> {
        step_deeper();
        let stash = Stash::new();
        let r = self.0.map_values(opt, |v| stash.lower(f(MVal(v))));
        // jaq-json collects the updated children into a new container.
        stash.finish(r).map(|v| MVal(charge_built(v.0)))
    }

    fn map_index<'a, I: Iterator<Item = ValX<'a, Self>>>(
        self,
        index: &Self,
        opt: Opt,
        f: impl Fn(Self) -> I,
    ) -> ValX<'a, Self> {
        step();
        bytes(copy_cost(&self.0));
        let stash = Stash::new();
        let r = self.0.map_index(&index.0, opt, |v| stash.lower(f(MVal(v))));
        // The result is the input updated in place: its size was charged when it was built.
        stash.finish(r)
    }

    fn map_range<'a, I: Iterator<Item = ValX<'a, Self>>>(
        self,
        range: val::Range<&Self>,
        opt: Opt,
        f: impl Fn(Self) -> I,
    ) -> ValX<'a, Self> {
        step();
        bytes(copy_cost(&self.0));
        let range = range.start.map(|v| &v.0)..range.end.map(|v| &v.0);
        let stash = Stash::new();
        let r = self.0.map_range(range, opt, |v| stash.lower(f(MVal(v))));
        stash.finish(r)
    }

    fn as_bool(&self) -> bool {
        self.0.as_bool()
    }

    fn into_string(self) -> Self {
        step();
        match self.0 {
            Val::TStr(_) | Val::BStr(_) => Self(self.0.into_string()),
            v => Self(charge_built(v.into_string())),
        }
    }
}

impl jaq_std::ValT for MVal {
    fn into_seq<S: FromIterator<Self>>(self) -> Result<S, Self> {
        step();
        if let Val::Arr(a) = &self.0 {
            steps(n(a.len()));
            bytes(CELL * n(a.len()));
        }
        match self.0.into_seq::<Vec<Val>>() {
            Ok(items) => Ok(items.into_iter().map(MVal).collect()),
            Err(v) => Err(MVal(v)),
        }
    }

    fn is_int(&self) -> bool {
        self.0.is_int()
    }

    fn as_isize(&self) -> Option<isize> {
        self.0.as_isize()
    }

    fn as_f64(&self) -> Option<f64> {
        self.0.as_f64()
    }

    fn is_utf8_str(&self) -> bool {
        self.0.is_utf8_str()
    }

    fn as_bytes(&self) -> Option<&[u8]> {
        self.0.as_bytes()
    }

    fn as_sub_str(&self, sub: &[u8]) -> Self {
        step();
        Self(self.0.as_sub_str(sub))
    }

    fn from_utf8_bytes(b: impl AsRef<[u8]> + Send + 'static) -> Self {
        steps(1);
        bytes(STRING + n(b.as_ref().len()));
        Self(Val::from_utf8_bytes(b))
    }
}
