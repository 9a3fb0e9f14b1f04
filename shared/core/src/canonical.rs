//! Canonical JSON: object keys sorted, no whitespace. Hashes are taken over this form so the same
//! value always hashes the same, whatever order a map was built in.

use serde_json::Value;
use sha2::{Digest, Sha256};

/// Writes `value` with object keys sorted and no insignificant whitespace.
pub fn to_canonical_string(value: &Value) -> String {
    let mut out = String::new();
    write_canonical(value, &mut out);
    out
}

fn write_canonical(value: &Value, out: &mut String) {
    match value {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push('{');
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(k.clone()).to_string());
                out.push(':');
                write_canonical(&map[k], out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, v) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(v, out);
            }
            out.push(']');
        }
        other => out.push_str(&other.to_string()),
    }
}

/// SHA-256 of the canonical form, as lowercase hex.
pub fn sha256_hex(value: &Value) -> String {
    sha256_hex_bytes(to_canonical_string(value).as_bytes())
}

/// SHA-256 of raw bytes, as lowercase hex.
pub fn sha256_hex_bytes(bytes: &[u8]) -> String {
    let digest = Sha256::digest(bytes);
    let mut s = String::with_capacity(64);
    for b in digest.iter() {
        s.push_str(&format!("{b:02x}"));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn key_order_does_not_matter() {
        let a: Value = serde_json::from_str(r#"{"b":1,"a":{"d":[1,2],"c":null}}"#).expect("json");
        assert_eq!(to_canonical_string(&a), r#"{"a":{"c":null,"d":[1,2]},"b":1}"#);
        assert_eq!(sha256_hex(&a), sha256_hex(&json!({"a": {"c": null, "d": [1, 2]}, "b": 1})));
    }
}
