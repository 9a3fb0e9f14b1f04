//! Sensitive fields in the audit log: chained by a salted hash, stored apart, erasable.
//!
//! A workflow's `sensitive` paths mark personal data (an IBAN, a name). Each scalar value found
//! at such a path is a *sealed field* (`input.beneficiary.iban`, `steps.extract.output.email`).
//! Wherever the value appears in an audit record it is replaced: a whole JSON value by
//! `{"$sealed": FIELD}`, an occurrence inside a string by `⟦FIELD⟧`. The record lists the
//! commitment of every field it seals (`sealed: {FIELD: COMMITMENT}`), so its hash, and so the
//! chain, covers the value through `SHA-256(canonical({field, salt, value}))`. The value and its
//! salt are stored apart; erasing them later leaves every record, hash and signature intact.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::canonical::{sha256_hex, sha256_hex_bytes};

/// A run's sealed fields so far and the secret their salts derive from.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Seals {
    /// The run's salt secret; `None` before the run starts, in a replay, and after an erasure
    /// (an erased value must not be guessable by hashing candidates with a known salt).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub salt: Option<String>,
    /// Field name -> the commitment its records carry.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub fields: BTreeMap<String, String>,
}

impl Seals {
    /// Nothing sealed and no salt: not written into the state.
    pub fn is_empty(&self) -> bool {
        self.salt.is_none() && self.fields.is_empty()
    }
}

/// The key of a whole value replaced by its field's name.
pub const SEALED_KEY: &str = "$sealed";

/// Strings shorter than this are sealed only as whole values, never inside other strings (a
/// two-letter country code would otherwise be cut out of every word that contains it).
pub const MIN_INNER_LEN: usize = 4;

/// What an erased value becomes in the run's state and journal: `[erased FIELD]`. Naming the
/// field keeps two erased values apart, so replay seals each where it stood.
pub fn erased_token(field: &str) -> String {
    format!("[erased {field}]")
}

/// How a field's value appears inside a string in a record: `⟦FIELD⟧`.
pub fn inner_mark(field: &str) -> String {
    format!("⟦{field}⟧")
}

/// The salt of one field: derived from the run's secret salt, so that no two fields (and no two
/// runs) share one, and a field's salt can be erased with its value.
pub fn field_salt(run_salt: Option<&str>, field: &str) -> String {
    sha256_hex_bytes(format!("{}\n{field}", run_salt.unwrap_or_default()).as_bytes())
}

/// `SHA-256(canonical({"field", "salt", "value"}))`: what a record commits to for a field.
pub fn commitment(field: &str, salt: &str, value: &Value) -> String {
    sha256_hex(&json!({"field": field, "salt": salt, "value": value}))
}

/// A sealed field as its run keeps it apart from the log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SealedField {
    /// `input.<path>` or `steps.<node>.output.<path>`.
    pub field: String,
    /// The commitment the records carry.
    pub commitment: String,
    /// The field's salt; `None` once erased.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub salt: Option<String>,
    /// The value; `None` once erased.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<Value>,
    /// When the value was erased (ms), if it was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub erased_at: Option<u64>,
    /// Why it was erased (the request's reference).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

impl SealedField {
    /// A field holding `value`, salted from the run's salt.
    pub fn new(field: String, run_salt: Option<&str>, value: Value) -> Self {
        let salt = field_salt(run_salt, &field);
        Self {
            commitment: commitment(&field, &salt, &value),
            field,
            salt: Some(salt),
            value: Some(value),
            erased_at: None,
            reason: None,
        }
    }

    /// Whether the value was erased.
    pub fn is_erased(&self) -> bool {
        self.erased_at.is_some()
    }

    /// The stored value's commitment matches the one the records carry (an erased field has no
    /// value to check and passes).
    pub fn holds(&self) -> bool {
        match (&self.salt, &self.value) {
            (Some(salt), Some(value)) => commitment(&self.field, salt, value) == self.commitment,
            (None, None) => self.is_erased(),
            _ => false,
        }
    }
}

/// Lists the scalar leaves (strings, numbers) of `value` under the field name `prefix`
/// (`prefix.key`, `prefix.0`): the units that are sealed and erased. Booleans and nulls carry no
/// personal data worth a seal and would match everywhere.
pub fn leaves(prefix: &str, value: &Value, out: &mut Vec<(String, Value)>) {
    match value {
        Value::String(s) if !s.is_empty() => out.push((prefix.to_owned(), value.clone())),
        Value::Number(_) => out.push((prefix.to_owned(), value.clone())),
        Value::Object(m) => {
            for (k, v) in m {
                leaves(&format!("{prefix}.{k}"), v, out);
            }
        }
        Value::Array(a) => {
            for (i, v) in a.iter().enumerate() {
                leaves(&format!("{prefix}.{i}"), v, out);
            }
        }
        _ => {}
    }
}

/// Replaces every occurrence of the fields' values in `value` (whole values, and inside strings
/// for strings of [`MIN_INNER_LEN`] or more; longer values first, so a value that contains
/// another is sealed whole) and returns the names of the fields it replaced.
pub fn seal_json(value: &mut Value, fields: &[(String, Value)]) -> Vec<String> {
    let order = sealing_order(fields);
    let mut used = Vec::new();
    walk(value, &order, &mut used);
    used.sort();
    used.dedup();
    used
}

/// Longer strings are sealed first; among equals, the lower field name wins, so the log and a
/// verifier sealing the same value agree on its name.
fn sealing_order(fields: &[(String, Value)]) -> Vec<&(String, Value)> {
    let len = |v: &Value| v.as_str().map_or(0, str::len);
    let mut order: Vec<&(String, Value)> = fields.iter().collect();
    order.sort_by(|(a, x), (b, y)| len(y).cmp(&len(x)).then_with(|| a.cmp(b)));
    order
}

fn walk(value: &mut Value, fields: &[&(String, Value)], used: &mut Vec<String>) {
    if let Some((name, _)) = fields.iter().find(|(_, v)| v == value) {
        *value = json!({ SEALED_KEY: name });
        used.push(name.clone());
        return;
    }
    match value {
        Value::String(s) => seal_text(s, fields, used),
        Value::Object(m) => m.values_mut().for_each(|v| walk(v, fields, used)),
        Value::Array(a) => a.iter_mut().for_each(|v| walk(v, fields, used)),
        _ => {}
    }
}

/// Replaces the fields' string values inside `text` by their marks.
pub fn seal_text_with(text: &mut String, fields: &[(String, Value)]) -> Vec<String> {
    let order = sealing_order(fields);
    let mut used = Vec::new();
    seal_text(text, &order, &mut used);
    used
}

fn seal_text(text: &mut String, fields: &[&(String, Value)], used: &mut Vec<String>) {
    for (name, v) in fields {
        if let Some(s) = v.as_str()
            && s.chars().count() >= MIN_INNER_LEN
            && text.contains(s)
        {
            *text = text.replace(s, &inner_mark(name));
            used.push(name.clone());
        }
    }
}

/// Replaces every occurrence of `value` in `target` (whole, and inside strings) by `[erased FIELD]`:
/// how erasure scrubs a run's state and journal.
pub fn scrub(target: &mut Value, field: &str, value: &Value) -> bool {
    let mut hit = false;
    scrub_walk(target, value, &erased_token(field), &mut hit);
    hit
}

/// A stored text (JSON when `is_json`, else plain) with every value of `erased` scrubbed, or
/// `None` when it holds none of them: what both stores rewrite when a field is erased.
pub fn scrub_text(text: &str, is_json: bool, erased: &[(String, Value)]) -> Option<String> {
    let parsed = if is_json { serde_json::from_str(text).ok() } else { None };
    let was_json = parsed.is_some();
    let mut v = parsed.unwrap_or_else(|| Value::String(text.to_owned()));
    let mut hit = false;
    for (field, value) in erased {
        hit |= scrub(&mut v, field, value);
    }
    match (hit, v) {
        (false, _) => None,
        (true, Value::String(s)) if !was_json => Some(s),
        (true, v) => Some(v.to_string()),
    }
}

fn scrub_walk(target: &mut Value, value: &Value, token: &str, hit: &mut bool) {
    if target == value {
        *target = Value::String(token.to_owned());
        *hit = true;
        return;
    }
    match target {
        Value::String(s) => {
            if let Some(v) = value.as_str()
                && v.chars().count() >= MIN_INNER_LEN
                && s.contains(v)
            {
                *s = s.replace(v, token);
                *hit = true;
            }
        }
        Value::Object(m) => m.values_mut().for_each(|x| scrub_walk(x, value, token, hit)),
        Value::Array(a) => a.iter_mut().for_each(|x| scrub_walk(x, value, token, hit)),
        _ => {}
    }
}

/// How a stored value that may hold sealed data is compared with a record: each field's value,
/// and its erased token, stand for the field.
pub fn matchers(sealed: &[SealedField]) -> Vec<(String, Value)> {
    let mut out = Vec::new();
    for f in sealed {
        if let Some(v) = &f.value {
            out.push((f.field.clone(), v.clone()));
        }
        out.push((f.field.clone(), Value::String(erased_token(&f.field))));
    }
    out
}

/// What [`verify_sealed`] found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SealSummary {
    /// Sealed fields the log commits to.
    pub fields: usize,
    /// The erased ones: field, when (ms), why.
    pub erased: Vec<(String, u64, String)>,
}

/// Where a run's sealed fields do not match its log.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SealError {
    /// A record seals a field the run does not keep.
    #[error("record {seq} seals field `{field}`, but the run keeps no such field (its stored value was deleted)")]
    Missing {
        /// The record.
        seq: u64,
        /// The field.
        field: String,
    },
    /// A record's commitment differs from the stored field's.
    #[error(
        "record {seq} commits to another value of `{field}` than the one stored (the stored commitment was replaced)"
    )]
    Commitment {
        /// The record.
        seq: u64,
        /// The field.
        field: String,
    },
    /// A stored value (or its salt) no longer matches its commitment.
    #[error(
        "the stored value of sealed field `{field}` was modified: it does not match the commitment record {seq} carries"
    )]
    Altered {
        /// The first record sealing it.
        seq: u64,
        /// The field.
        field: String,
    },
}

impl SealError {
    /// The first record concerned.
    pub fn seq(&self) -> u64 {
        match self {
            SealError::Missing { seq, .. } | SealError::Commitment { seq, .. } | SealError::Altered { seq, .. } => *seq,
        }
    }
}

/// Checks every commitment the records carry against the fields stored apart.
pub fn verify_sealed(records: &[super::AuditRecord], fields: &[SealedField]) -> Result<SealSummary, SealError> {
    let by_name: BTreeMap<&str, &SealedField> = fields.iter().map(|f| (f.field.as_str(), f)).collect();
    let mut first_seen: BTreeMap<&str, u64> = BTreeMap::new();
    for r in records {
        for (field, c) in &r.sealed {
            let Some(f) = by_name.get(field.as_str()) else {
                return Err(SealError::Missing { seq: r.seq, field: field.clone() });
            };
            if &f.commitment != c {
                return Err(SealError::Commitment { seq: r.seq, field: field.clone() });
            }
            first_seen.entry(f.field.as_str()).or_insert(r.seq);
        }
    }
    let mut summary = SealSummary::default();
    for f in fields {
        let seq = first_seen.get(f.field.as_str()).copied().unwrap_or(0);
        if !f.holds() {
            return Err(SealError::Altered { seq, field: f.field.clone() });
        }
        summary.fields += 1;
        if let Some(at) = f.erased_at {
            summary.erased.push((f.field.clone(), at, f.reason.clone().unwrap_or_default()));
        }
    }
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields() -> Vec<(String, Value)> {
        vec![
            ("input.iban".into(), json!("CZ6508000000192000154399")),
            ("input.name".into(), json!("Ostrava Steel")),
            ("input.cc".into(), json!("CZ")),
        ]
    }

    #[test]
    fn whole_values_and_inner_occurrences_are_sealed() {
        let mut v = json!({"payment": {"iban": "CZ6508000000192000154399", "country": "CZ"},
                           "note": "IBAN CZ6508000000192000154399 of Ostrava Steel fails", "czk": "CZK"});
        let used = seal_json(&mut v, &fields());
        assert_eq!(used, vec!["input.cc", "input.iban", "input.name"]);
        assert_eq!(v["payment"]["iban"], json!({"$sealed": "input.iban"}));
        assert_eq!(v["payment"]["country"], json!({"$sealed": "input.cc"}));
        assert_eq!(v["note"], json!("IBAN ⟦input.iban⟧ of ⟦input.name⟧ fails"));
        // A short value is not cut out of other words.
        assert_eq!(v["czk"], json!("CZK"));
    }

    #[test]
    fn a_scrubbed_value_seals_the_same_way_as_the_value() {
        let raw = json!({"iban": "CZ6508000000192000154399", "why": "bad CZ6508000000192000154399"});
        let mut sealed_raw = raw.clone();
        seal_json(&mut sealed_raw, &fields());
        let mut scrubbed = raw.clone();
        assert!(scrub(&mut scrubbed, "input.iban", &json!("CZ6508000000192000154399")));
        assert_eq!(scrubbed["why"], json!("bad [erased input.iban]"));
        let f = SealedField::new("input.iban".into(), Some("s"), json!("CZ6508000000192000154399"));
        seal_json(&mut scrubbed, &matchers(&[f]));
        assert_eq!(scrubbed, sealed_raw);
    }

    #[test]
    fn a_field_holds_until_its_value_is_altered() {
        let mut f = SealedField::new("input.iban".into(), Some("secret"), json!("X"));
        assert!(f.holds());
        f.value = Some(json!("Y"));
        assert!(!f.holds());
        f.value = None;
        f.salt = None;
        assert!(!f.holds(), "gone without an erasure");
        f.erased_at = Some(1);
        assert!(f.holds());
    }
}
