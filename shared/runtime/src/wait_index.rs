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

/// The listing key of an open wait (its `{pattern, heartbeat?}`): an event that ends it or
/// beats its heartbeat must find it, so a half of the key is kept only where both patterns
/// require the same value.
pub fn wait_key_of(wait: &Value) -> Option<String> {
    let pattern = wait.get("pattern")?;
    let Some(beat) = wait.get("heartbeat").filter(|h| !h.is_null()) else {
        return Some(wait_key(pattern));
    };
    let same = |field: &str| {
        let (a, b) = (exact(pattern.get(field)), exact(beat.get(field)));
        if a == b { a } else { None }
    };
    Some(key(same("source"), same("detail-type")))
}

/// True when `event` matches the wait's pattern or its heartbeat's (correlation aside).
pub fn wait_matches(wait: &Value, event: &Value) -> bool {
    ["pattern", "heartbeat"]
        .iter()
        .any(|k| wait.get(*k).is_some_and(|p| !p.is_null() && baton_core::pattern::matches(p, event)))
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
    fn a_wait_with_a_heartbeat_is_listed_where_both_its_events_look() {
        let wait = json!({"pattern": {"source": ["baton.callback"], "detail-type": ["TaskSuccess"]},
                          "heartbeat": {"source": ["baton.callback"], "detail-type": ["TaskHeartbeat"]}});
        let key = wait_key_of(&wait).unwrap();
        assert_eq!(key, r#"["baton.callback",null]"#);
        for dt in ["TaskSuccess", "TaskHeartbeat"] {
            let event = json!({"source": "baton.callback", "detail-type": dt, "detail": {}});
            assert!(event_keys(&event).contains(&key));
            assert!(wait_matches(&wait, &event));
        }
        assert!(!wait_matches(&wait, &json!({"source": "baton.callback", "detail-type": "TaskFailure"})));
        let plain = json!({"pattern": {"source": ["a"], "detail-type": ["B"]}});
        assert_eq!(wait_key_of(&plain).unwrap(), r#"["a","B"]"#);
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
