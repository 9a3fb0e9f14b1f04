//! Where an open event wait is listed, so that an event finds its candidate waits without
//! reading every open one: under the `source` and `detail-type` its pattern requires, when the
//! pattern names exactly one of each. An event looks under its own pair, its source alone, its
//! detail type alone, and neither; each candidate is still matched against its whole pattern.

use serde_json::Value;

/// The listing key of a wait on `pattern` (an EventBridge pattern): the JSON pair
/// `[source, detail-type]`, each the one exact value the pattern requires, or `null` when it
/// names none, several, or a content filter (a prefix, `anything-but`, ...).
pub fn wait_key(pattern: &Value) -> String {
    key(exact(pattern.get("source")), exact(pattern.get("detail-type")))
}

/// The keys under which the waits `event` may match are listed (up to four).
pub fn event_keys(event: &Value) -> Vec<String> {
    let source = event.get("source").and_then(Value::as_str);
    let detail_type = event.get("detail-type").and_then(Value::as_str);
    let mut keys = Vec::with_capacity(4);
    for s in [source, None] {
        for d in [detail_type, None] {
            let k = key(s, d);
            if !keys.contains(&k) {
                keys.push(k);
            }
        }
    }
    keys
}

fn key(source: Option<&str>, detail_type: Option<&str>) -> String {
    serde_json::json!([source, detail_type]).to_string()
}

/// The single string a pattern field requires: `"x"` or `["x"]`.
fn exact(field: Option<&Value>) -> Option<&str> {
    match field? {
        Value::String(s) => Some(s),
        Value::Array(values) => match values.as_slice() {
            [Value::String(s)] => Some(s),
            _ => None,
        },
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_wait_is_listed_under_the_exact_values_its_pattern_requires() {
        assert_eq!(
            wait_key(&json!({"source": ["acme.orders"], "detail-type": ["OrderPaid"]})),
            r#"["acme.orders","OrderPaid"]"#
        );
        assert_eq!(wait_key(&json!({"source": ["acme.orders"]})), r#"["acme.orders",null]"#);
        assert_eq!(wait_key(&json!({"source": ["a", "b"], "detail-type": "OrderPaid"})), r#"[null,"OrderPaid"]"#);
        assert_eq!(wait_key(&json!({"source": [{"prefix": "acme."}]})), "[null,null]");
        assert_eq!(wait_key(&json!({"detail": {"order": ["42"]}})), "[null,null]");
    }

    #[test]
    fn an_event_looks_under_its_pair_each_half_and_neither() {
        let keys = event_keys(&json!({"source": "acme.orders", "detail-type": "OrderPaid", "detail": {}}));
        assert_eq!(
            keys,
            [r#"["acme.orders","OrderPaid"]"#, r#"["acme.orders",null]"#, r#"[null,"OrderPaid"]"#, "[null,null]"]
        );
        let wait = json!({"source": ["acme.orders"], "detail-type": ["OrderPaid"]});
        assert!(keys.contains(&wait_key(&wait)));
        assert_eq!(event_keys(&json!({"detail": {}})), ["[null,null]"]);
    }
}
