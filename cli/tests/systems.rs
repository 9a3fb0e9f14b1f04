//! The reference workflows that call outside systems run without mocks against one local service
//! that plays those systems (ERP, warehouse, carrier, CRM, sanctions list, mail, the model), as
//! each folder's `systems.yaml` scripts it: the http steps, their connections, secrets, auth
//! headers and the network guard are exercised for real, only the addresses change (the test
//! rewrites `connections.yaml`, which is how a user points a workflow at real systems).

mod support;

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;
use serde_json::{Value, json};
use support::scenarios::{Baton, Case, all, play};
use support::{Reply, Seen, Server, root};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Route {
    connection: String,
    method: String,
    path: String,
    #[serde(default = "ok")]
    status: u16,
    #[serde(default)]
    body: Value,
}

fn ok() -> u16 {
    200
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Systems {
    input: String,
    routes: Vec<Route>,
    #[serde(default)]
    llm: BTreeMap<String, Value>,
}

/// Whether `pattern` (`*` for one segment) matches `path` (query string ignored).
fn path_matches(pattern: &str, path: &str) -> bool {
    let path = path.split('?').next().unwrap_or(path);
    let (p, a): (Vec<&str>, Vec<&str>) = (pattern.split('/').collect(), path.split('/').collect());
    p.len() == a.len() && p.iter().zip(&a).all(|(p, a)| *p == "*" || p == a)
}

/// The scripted model answer for a chat request: the one whose fields the requested schema has.
fn model_answer(llm: &BTreeMap<String, Value>, req: &Seen) -> Option<Value> {
    let body: Value = serde_json::from_str(&req.body).ok()?;
    let schema = &body["response_format"]["json_schema"]["schema"];
    let props = schema["properties"].as_object()?;
    llm.values().find(|a| a.as_object().is_some_and(|o| o.keys().all(|k| props.contains_key(k)))).cloned()
}

fn completion(answer: &Value) -> Reply {
    let body = json!({
        "id": "stand-in", "object": "chat.completion", "model": "stand-in-model",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": answer.to_string()}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 120, "completion_tokens": 60, "total_tokens": 180}
    });
    Reply::json(200, &body.to_string())
}

/// The names of every `secret("NAME")` in `text`.
fn secret_names(text: &str) -> Vec<String> {
    text.split("secret(\"").skip(1).filter_map(|rest| rest.split('"').next().map(str::to_owned)).collect()
}

/// The header a connection's `auth` sends, with each secret's stand-in value.
fn auth_header(conn: &Value) -> Option<(String, String)> {
    let fill = |s: &str| secret_names(s).first().map(|n| format!("stand-in-{n}")).unwrap_or_else(|| s.to_owned());
    let auth = conn.get("auth")?;
    if let Some(b) = auth.get("bearer").and_then(Value::as_str) {
        return Some(("authorization".into(), format!("Bearer {}", fill(b))));
    }
    let key = auth.get("api_key")?;
    Some((key["header"].as_str()?.to_lowercase(), fill(key["value"].as_str()?)))
}

/// Copies the workflow's folder into `to`, with every connection's base URL on `base`.
fn point_at(case: &Case, to: &Path, base: &str) -> BTreeMap<String, Value> {
    let from = case.file.parent().expect("folder");
    std::fs::create_dir_all(to.join("inputs")).expect("mkdir");
    std::fs::copy(&case.file, to.join("workflow.yaml")).expect("copy workflow");
    std::fs::copy(&case.input, to.join("inputs").join(case.input.file_name().expect("name"))).expect("copy input");
    let text = std::fs::read_to_string(from.join("connections.yaml")).expect("connections.yaml");
    let mut mesh: Value = serde_yaml_ng::from_str(&text).expect("connections.yaml is YAML");
    let mut conns = BTreeMap::new();
    for (name, c) in mesh["connections"].as_object_mut().expect("connections").iter_mut() {
        c["base_url"] = json!(format!("{base}/{name}"));
        conns.insert(name.clone(), c.clone());
    }
    std::fs::write(to.join("connections.yaml"), mesh.to_string()).expect("write connections");
    conns
}

#[test]
fn order_tracking_invoice_match_and_kyc_run_against_stand_in_systems() {
    let cases = all();
    let mut ran = Vec::new();
    for name in ["order-tracking", "invoice-3way-match", "kyc-aml-review"] {
        let folder = root().join("workflows").join(name);
        let text = std::fs::read_to_string(folder.join("systems.yaml"))
            .unwrap_or_else(|e| panic!("workflows/{name}/systems.yaml: {e}"));
        let systems: Systems = serde_yaml_ng::from_str(&text).unwrap_or_else(|e| panic!("{name}/systems.yaml: {e}"));
        let case = cases
            .iter()
            .find(|c| c.workflow == name && c.name() == format!("{name}/{}", systems.input))
            .unwrap_or_else(|| panic!("{name}: systems.yaml names input `{}`, not in scenarios.yaml", systems.input))
            .clone();
        let unmatched = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
        let miss = unmatched.clone();
        let routes = std::sync::Arc::new(systems.routes);
        let llm = systems.llm;
        let served = routes.clone();
        let server = Server::start(move |req, _| {
            if req.path.ends_with("/chat/completions") {
                return match model_answer(&llm, req) {
                    Some(a) => completion(&a),
                    None => Reply::json(400, r#"{"error": "no scripted answer for this schema"}"#),
                };
            }
            let route = served.iter().find(|r| {
                r.method.eq_ignore_ascii_case(&req.method)
                    && req.path.strip_prefix(&format!("/{}", r.connection)).is_some_and(|p| path_matches(&r.path, p))
            });
            match route {
                Some(r) => Reply::json(r.status, &r.body.to_string()),
                None => {
                    miss.lock().expect("lock").push(format!("{} {}", req.method, req.path));
                    Reply::json(404, r#"{"error": "no such route on the stand-in"}"#)
                }
            }
        });
        let tmp = tempfile::tempdir().expect("tempdir");
        let copy = tmp.path().join(name);
        let conns = point_at(&case, &copy, &server.base);
        let mut env: Vec<(String, String)> = secret_names(
            &(std::fs::read_to_string(&case.file).expect("workflow")
                + &std::fs::read_to_string(folder.join("connections.yaml")).expect("connections.yaml")),
        )
        .into_iter()
        .map(|n| (n.clone(), format!("stand-in-{n}")))
        .collect();
        env.push(("OPENAI_BASE_URL".into(), format!("{}/v1", server.base)));
        let local = Case {
            file: copy.join("workflow.yaml"),
            input: copy.join("inputs").join(case.input.file_name().expect("name")),
            ..case.clone()
        };
        let state = tmp.path().join("state");
        let b = Baton { state: &state, global: vec![], env };
        play(&b, &local, None);
        assert!(unmatched.lock().expect("lock").is_empty(), "{name}: calls no route answers: {unmatched:?}");
        let seen = server.seen.lock().expect("lock").clone();
        for (conn, c) in &conns {
            let calls: Vec<&Seen> = seen.iter().filter(|s| s.path.starts_with(&format!("/{conn}/"))).collect();
            if let Some((header, value)) = auth_header(c) {
                for s in &calls {
                    let got = s.headers.iter().find(|(k, _)| k == &header).map(|(_, v)| v.as_str());
                    assert_eq!(
                        got,
                        Some(value.as_str()),
                        "{name}: {} {} carries the connection's auth",
                        s.method,
                        s.path
                    );
                }
            }
        }
        let systems_called: std::collections::BTreeSet<&str> =
            seen.iter().filter_map(|s| s.path.split('/').nth(1)).collect();
        assert!(systems_called.len() >= 3, "{name}: the run called at least three systems: {systems_called:?}");
        ran.push(name);
    }
    assert_eq!(ran.len(), 3);
}

#[test]
fn a_route_pattern_matches_one_segment_per_star() {
    assert!(path_matches("/orders/*", "/orders/A-1042?expand=lines"));
    assert!(!path_matches("/orders/*", "/orders/A-1042/lines"));
    assert!(path_matches("/po/PO-7/receipts", "/po/PO-7/receipts"));
}
