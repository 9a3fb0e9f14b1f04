//! EventBridge event patterns: the matching rules of the AWS documentation ("Creating event
//! patterns" and "Content filtering"), so the embedded backend and `wait_event` decide exactly as
//! an EventBridge rule would. Supported: exact values (strings, numbers, booleans, null), arrays
//! as OR, nested objects, `prefix`, `suffix` (also with `equals-ignore-case`), `anything-but`
//! (value, list, `prefix`, `suffix`), `numeric`, `exists`, `equals-ignore-case`, `wildcard`, and
//! `$or`. Not supported (rejected by [`check`]): `cidr`.

use serde_json::{Map, Value};

/// True when `event` matches `pattern`. A pattern that [`check`] rejects matches nothing.
pub fn matches(pattern: &Value, event: &Value) -> bool {
    match pattern {
        Value::Object(p) => match_object(p, Some(event)),
        _ => false,
    }
}

/// Checks that `pattern` is a pattern EventBridge would accept; the error names the field.
pub fn check(pattern: &Value) -> Result<(), String> {
    match pattern {
        Value::Object(p) if !p.is_empty() => check_object(p, ""),
        Value::Object(_) => Err("an event pattern needs at least one field".into()),
        _ => Err("an event pattern is an object, e.g. {source: [shop.orders]}".into()),
    }
}

fn check_object(p: &Map<String, Value>, at: &str) -> Result<(), String> {
    for (k, v) in p {
        let here = if at.is_empty() { k.clone() } else { format!("{at}.{k}") };
        match (k.as_str(), v) {
            ("$or", Value::Array(alts)) if alts.len() >= 2 => {
                for alt in alts {
                    match alt {
                        Value::Object(o) => check_object(o, at)?,
                        _ => return Err(format!("`{here}`: each `$or` alternative is an object")),
                    }
                }
            }
            ("$or", _) => return Err(format!("`{here}` needs a list of at least two patterns")),
            (_, Value::Object(o)) => check_object(o, &here)?,
            (_, Value::Array(conds)) if !conds.is_empty() => {
                for c in conds {
                    check_condition(c, &here)?;
                }
            }
            (_, Value::Array(_)) => return Err(format!("`{here}`: an empty list matches nothing")),
            _ => return Err(format!("`{here}`: values in a pattern are lists, e.g. [\"a\", \"b\"]")),
        }
    }
    Ok(())
}

fn check_condition(c: &Value, at: &str) -> Result<(), String> {
    let Value::Object(f) = c else { return Ok(()) };
    let (name, arg) = match f.iter().next() {
        Some((n, a)) if f.len() == 1 => (n.as_str(), a),
        _ => return Err(format!("`{at}`: a filter has exactly one operator, e.g. {{\"prefix\": \"x\"}}")),
    };
    let ok = match name {
        "prefix" | "suffix" => arg.is_string() || arg.get("equals-ignore-case").is_some_and(Value::is_string),
        "equals-ignore-case" | "wildcard" => arg.is_string(),
        "exists" => arg.is_boolean(),
        "anything-but" => match arg {
            Value::Object(o) => {
                o.len() == 1
                    && (o.get("prefix").is_some_and(Value::is_string) || o.get("suffix").is_some_and(Value::is_string))
            }
            Value::Array(items) => items.iter().all(|i| i.is_string() || i.is_number()),
            v => v.is_string() || v.is_number(),
        },
        "numeric" => numeric_ops(arg).is_some(),
        "cidr" => return Err(format!("`{at}`: the `cidr` filter is not supported by baton yet")),
        other => return Err(format!("`{at}`: unknown filter `{other}`")),
    };
    if ok { Ok(()) } else { Err(format!("`{at}`: invalid argument for `{name}`: {arg}")) }
}

fn match_object(p: &Map<String, Value>, event: Option<&Value>) -> bool {
    p.iter().all(|(k, v)| {
        if k == "$or" {
            return v
                .as_array()
                .is_some_and(|alts| alts.iter().any(|alt| alt.as_object().is_some_and(|o| match_object(o, event))));
        }
        let field = event.and_then(|e| e.get(k));
        match v {
            Value::Object(nested) => match field {
                Some(Value::Object(_)) => match_object(nested, field),
                // A nested pattern on a missing or non-object field only holds if all it asks is absence.
                _ => match_object(nested, None),
            },
            Value::Array(conds) => match_field(conds, field),
            _ => false,
        }
    })
}

fn match_field(conds: &[Value], field: Option<&Value>) -> bool {
    let values: Vec<&Value> = match field {
        None => vec![],
        Some(Value::Array(items)) => items.iter().collect(),
        Some(v) => vec![v],
    };
    conds.iter().any(|c| match c {
        Value::Object(f) if f.contains_key("exists") => {
            f.get("exists").and_then(Value::as_bool) == Some(field.is_some())
        }
        Value::Object(f) if f.contains_key("anything-but") => {
            let excluded = &f["anything-but"];
            !values.is_empty() && values.iter().any(|v| !anything_but_hits(excluded, v))
        }
        _ => values.iter().any(|v| single(c, v)),
    })
}

fn anything_but_hits(excluded: &Value, v: &Value) -> bool {
    match excluded {
        Value::Array(items) => items.iter().any(|i| equal(i, v)),
        Value::Object(o) => match (o.get("prefix"), o.get("suffix"), v.as_str()) {
            (Some(Value::String(p)), _, Some(s)) => s.starts_with(p.as_str()),
            (_, Some(Value::String(x)), Some(s)) => s.ends_with(x.as_str()),
            _ => false,
        },
        other => equal(other, v),
    }
}

fn equal(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        _ => a == b,
    }
}

fn single(c: &Value, v: &Value) -> bool {
    let Value::Object(f) = c else { return equal(c, v) };
    let Some((name, arg)) = f.iter().next() else { return false };
    let s = v.as_str();
    match name.as_str() {
        "prefix" | "suffix" => {
            let (needle, fold) = match arg {
                Value::String(p) => (p.as_str(), false),
                other => (other.get("equals-ignore-case").and_then(Value::as_str).unwrap_or_default(), true),
            };
            s.is_some_and(|s| {
                let (s, n) =
                    if fold { (s.to_lowercase(), needle.to_lowercase()) } else { (s.to_owned(), needle.to_owned()) };
                if name == "prefix" { s.starts_with(&n) } else { s.ends_with(&n) }
            })
        }
        "equals-ignore-case" => s.zip(arg.as_str()).is_some_and(|(s, a)| s.to_lowercase() == a.to_lowercase()),
        "wildcard" => s.zip(arg.as_str()).is_some_and(|(s, a)| wildcard(a, s)),
        "numeric" => match (v.as_f64(), numeric_ops(arg)) {
            (Some(x), Some(ops)) => ops.iter().all(|(op, n)| match op.as_str() {
                "=" => x == *n,
                "<" => x < *n,
                "<=" => x <= *n,
                ">" => x > *n,
                ">=" => x >= *n,
                _ => false,
            }),
            _ => false,
        },
        _ => false,
    }
}

/// `[">", 0, "<=", 5]` as (operator, number) pairs.
fn numeric_ops(arg: &Value) -> Option<Vec<(String, f64)>> {
    let items = arg.as_array()?;
    if items.is_empty() || items.len() % 2 != 0 {
        return None;
    }
    items
        .chunks(2)
        .map(|pair| {
            let op = pair[0].as_str().filter(|o| ["=", "<", "<=", ">", ">="].contains(o))?;
            Some((op.to_owned(), pair[1].as_f64()?))
        })
        .collect()
}

/// `*` matches any run of characters, everything else itself.
fn wildcard(pattern: &str, s: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == s;
    }
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if !s.starts_with(first) || !s[first.len()..].ends_with(last) || s.len() < first.len() + last.len() {
        return false;
    }
    let mut rest = &s[first.len()..s.len() - last.len()];
    for mid in &parts[1..parts.len() - 1] {
        match rest.find(mid) {
            Some(i) => rest = &rest[i + mid.len()..],
            None => return false,
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// The example event of the EventBridge documentation ("Amazon EventBridge events").
    fn ec2_event() -> Value {
        json!({
            "version": "0", "id": "6a7e8feb-b491-4cf7-a9f1-bf3703467718", "detail-type": "EC2 Instance State-change Notification",
            "source": "aws.ec2", "account": "111122223333", "time": "2017-12-22T18:43:48Z", "region": "us-west-1",
            "resources": ["arn:aws:ec2:us-west-1:123456789012:instance/i-1234567890abcdef0"],
            "detail": {"instance-id": "i-1234567890abcdef0", "state": "terminated", "c-count": 5, "d-count": 3, "x-limit": 301.8,
                       "source-ip": "10.0.0.33", "location": "eu-central-1"}
        })
    }

    fn m(pattern: Value) -> bool {
        assert!(check(&pattern).is_ok(), "{pattern} should be a valid pattern: {:?}", check(&pattern));
        matches(&pattern, &ec2_event())
    }

    #[test]
    fn exact_values_and_or_lists() {
        assert!(m(json!({"source": ["aws.ec2"]})));
        assert!(m(json!({"source": ["aws.s3", "aws.ec2"]})));
        assert!(!m(json!({"source": ["aws.s3"]})));
        assert!(m(json!({"detail": {"state": ["terminated"]}})));
        assert!(!m(json!({"detail": {"state": ["running"]}})));
        assert!(m(json!({"detail": {"c-count": [5]}})), "numbers match numerically");
        assert!(
            m(json!({"resources": ["arn:aws:ec2:us-west-1:123456789012:instance/i-1234567890abcdef0"]})),
            "array event values: any element"
        );
    }

    #[test]
    fn prefix_suffix_ignore_case_and_wildcard() {
        assert!(m(json!({"region": [{"prefix": "us-"}]})));
        assert!(!m(json!({"region": [{"prefix": "eu-"}]})));
        assert!(m(json!({"detail": {"location": [{"suffix": "-1"}]}})));
        assert!(m(json!({"detail-type": [{"prefix": {"equals-ignore-case": "ec2 instance"}}]})));
        assert!(m(json!({"detail": {"state": [{"equals-ignore-case": "TERMINATED"}]}})));
        assert!(m(json!({"resources": [{"wildcard": "arn:aws:ec2:*:instance/i-*"}]})));
        assert!(!m(json!({"resources": [{"wildcard": "arn:aws:s3:*"}]})));
    }

    #[test]
    fn anything_but() {
        assert!(m(json!({"detail": {"state": [{"anything-but": "running"}]}})));
        assert!(!m(json!({"detail": {"state": [{"anything-but": ["stopped", "terminated"]}]}})));
        assert!(m(json!({"detail": {"c-count": [{"anything-but": [1, 2]}]}})));
        assert!(!m(json!({"region": [{"anything-but": {"prefix": "us-"}}]})));
        assert!(!m(json!({"detail": {"missing": [{"anything-but": "x"}]}})), "anything-but needs the field");
    }

    #[test]
    fn numeric_ranges() {
        assert!(m(
            json!({"detail": {"c-count": [{"numeric": [">", 0, "<=", 5]}], "d-count": [{"numeric": ["<", 10]}], "x-limit": [{"numeric": ["=", 301.8]}]}})
        ));
        assert!(!m(json!({"detail": {"c-count": [{"numeric": [">", 5]}]}})));
        assert!(!m(json!({"detail": {"state": [{"numeric": [">", 0]}]}})), "a string is not a number");
    }

    #[test]
    fn exists() {
        assert!(m(json!({"detail": {"state": [{"exists": true}]}})));
        assert!(m(json!({"detail": {"nope": [{"exists": false}]}})));
        assert!(!m(json!({"detail": {"state": [{"exists": false}]}})));
        assert!(m(json!({"missing-object": {"inner": [{"exists": false}]}})));
    }

    #[test]
    fn or_between_patterns() {
        assert!(m(
            json!({"source": ["aws.ec2"], "$or": [{"detail": {"c-count": [{"numeric": [">", 10]}]}}, {"detail": {"d-count": [3]}}]})
        ));
        assert!(!m(json!({"$or": [{"source": ["aws.s3"]}, {"region": ["eu-west-1"]}]})));
    }

    #[test]
    fn all_fields_must_match() {
        assert!(m(json!({"source": ["aws.ec2"], "detail": {"state": ["terminated"]}})));
        assert!(!m(json!({"source": ["aws.ec2"], "detail": {"state": ["pending"]}})));
    }

    #[test]
    fn invalid_patterns_are_named() {
        assert!(check(&json!({})).is_err());
        assert!(check(&json!({"source": "aws.ec2"})).unwrap_err().contains("`source`"));
        assert!(check(&json!({"detail": {"n": [{"numeric": [">", "x"]}]}})).unwrap_err().contains("detail.n"));
        assert!(check(&json!({"a": [{"prefix": "x", "suffix": "y"}]})).is_err());
        assert!(check(&json!({"a": [{"cidr": "10.0.0.0/8"}]})).unwrap_err().contains("not supported"));
        assert!(check(&json!({"a": [{"regex": "x"}]})).unwrap_err().contains("unknown filter"));
        assert!(check(&json!({"$or": [{"a": ["x"]}]})).is_err());
    }
}
