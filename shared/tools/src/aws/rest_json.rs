//! REST-JSON (the protocol of Lambda, API Gateway, EKS, Bedrock, Scheduler and 270 more
//! services): each operation has its method and URI template, and each member its place (a URI
//! label, the query string, a header, the status code, or the JSON body). Those come from
//! botocore's models through `scripts/gen-aws-services` (`rest_json.tsv.gz`, read once when
//! first needed), so every operation of every such service is spoken to the same way.

use std::collections::HashMap;
use std::io::Read;
use std::sync::OnceLock;

use serde_json::{Map, Value, json};

/// Where a member goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Loc {
    /// The member's name in `params` (and in the result).
    pub member: String,
    /// `uri`, `querystring`, `header`, `headers` or `statusCode`.
    pub location: String,
    /// Its name there: the URI label, query key, header name or header prefix.
    pub name: String,
    /// The member's shape type (`string`, `list`, `map`, `integer`, `blob`, `structure`, ...).
    pub ty: String,
}

/// One operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Op {
    /// The HTTP method.
    pub method: String,
    /// The URI template (`/2015-03-31/functions/{FunctionName}/configuration`), maybe with a
    /// fixed query part.
    pub uri: String,
    /// The input member that is the whole body, and its type.
    pub input_payload: Option<(String, String)>,
    /// The input members outside the JSON body.
    pub input: Vec<Loc>,
    /// The output member the whole body is, and its type.
    pub output_payload: Option<(String, String)>,
    /// The output members outside the JSON body.
    pub output: Vec<Loc>,
}

/// A request ready to sign and send.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    /// The method.
    pub method: String,
    /// Path and query, to append to the endpoint.
    pub path_and_query: String,
    /// Headers besides the signature's.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
}

const TABLE: &[u8] = include_bytes!("rest_json.tsv.gz");

fn table() -> &'static HashMap<(String, String), Op> {
    static OPS: OnceLock<HashMap<(String, String), Op>> = OnceLock::new();
    OPS.get_or_init(|| {
        let mut text = String::new();
        // The table is part of the binary: it reads, or the build is broken (a test reads it).
        if flate2::read::GzDecoder::new(TABLE).read_to_string(&mut text).is_err() {
            return HashMap::new();
        }
        text.lines().filter_map(parse_line).collect()
    })
}

fn parse_line(line: &str) -> Option<((String, String), Op)> {
    let f: Vec<&str> = line.split('\t').collect();
    let [service, op, method, uri, in_payload, in_locs, out_payload, out_locs] = f.as_slice() else {
        return None;
    };
    let payload = |p: &str| p.split_once(':').map(|(m, t)| (m.to_owned(), t.to_owned()));
    let locs = |s: &str| -> Vec<Loc> {
        s.split(';')
            .filter(|x| !x.is_empty())
            .filter_map(|x| {
                let (member, rest) = x.split_once('=')?;
                let mut parts = rest.splitn(3, ':');
                Some(Loc {
                    member: member.to_owned(),
                    location: parts.next()?.to_owned(),
                    name: parts.next()?.to_owned(),
                    ty: parts.next()?.to_owned(),
                })
            })
            .collect()
    };
    Some((
        ((*service).to_owned(), (*op).to_owned()),
        Op {
            method: (*method).to_owned(),
            uri: (*uri).to_owned(),
            input_payload: payload(in_payload),
            input: locs(in_locs),
            output_payload: payload(out_payload),
            output: locs(out_locs),
        },
    ))
}

/// Operation `action` of REST-JSON service `service` (its SDK service id), if the models have it.
pub fn op(service: &str, action: &str) -> Option<&'static Op> {
    table().get(&(service.to_owned(), action.to_owned()))
}

/// How many operations the table holds.
pub fn operations() -> usize {
    table().len()
}

/// Member `name` of `params`, or the one that differs in the case of its first letter only:
/// Step Functions' SDK integrations write every member in PascalCase (`RestApiId`), where
/// camelCase APIs name it `restApiId`.
fn member<'a>(params: &'a Map<String, Value>, name: &str) -> Option<(&'a String, &'a Value)> {
    params.get_key_value(name).or_else(|| {
        params.iter().find(|(k, _)| {
            k.len() == name.len()
                && k.get(..1).zip(name.get(..1)).is_some_and(|(a, b)| a.eq_ignore_ascii_case(b))
                && k.get(1..) == name.get(1..)
        })
    })
}

/// A value as it goes in a URI label, a query string or a header.
fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Percent-encodes all but RFC 3986's unreserved characters (and `/` when `keep_slash`).
fn encode(s: &str, keep_slash: bool) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) || (keep_slash && b == b'/') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The request for `op` with `params`; an error names a missing URI member.
pub fn request(op: &Op, params: &Map<String, Value>) -> Result<Request, String> {
    let (template, fixed_query) = match op.uri.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (op.uri.as_str(), None),
    };
    let mut path = String::new();
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        let Some(close) = rest[open..].find('}').map(|c| open + c) else { break };
        path.push_str(&rest[..open]);
        let label = &rest[open + 1..close];
        let (label, greedy) = match label.strip_suffix('+') {
            Some(l) => (l, true),
            None => (label, false),
        };
        let name = op.input.iter().find(|l| l.location == "uri" && l.name == label).map_or(label, |l| &l.member);
        let (_, value) = member(params, name)
            .filter(|(_, v)| !v.is_null())
            .ok_or_else(|| format!("`params.{name}` is required (it goes in the URI)"))?;
        path.push_str(&encode(&text(value), greedy));
        rest = &rest[close + 1..];
    }
    path.push_str(rest);
    let mut query: Vec<(String, String)> = Vec::new();
    if let Some(q) = fixed_query {
        for pair in q.split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            query.push((k.to_owned(), v.to_owned()));
        }
    }
    let mut headers = Vec::new();
    let mut placed: Vec<&str> = Vec::new();
    for l in &op.input {
        let Some((key, v)) = member(params, &l.member).filter(|(_, v)| !v.is_null()) else { continue };
        placed.push(key);
        match l.location.as_str() {
            "querystring" => match v {
                Value::Array(items) => query.extend(items.iter().map(|i| (l.name.clone(), text(i)))),
                // A map bound to the query string: each entry is a parameter of its own.
                Value::Object(m) => query.extend(m.iter().map(|(k, i)| (k.clone(), text(i)))),
                other => query.push((l.name.clone(), text(other))),
            },
            "header" => {
                let value = match v {
                    Value::Array(items) => items.iter().map(text).collect::<Vec<_>>().join(","),
                    other => text(other),
                };
                headers.push((l.name.to_ascii_lowercase(), value));
            }
            "headers" => {
                if let Value::Object(m) = v {
                    headers.extend(m.iter().map(|(k, i)| (format!("{}{k}", l.name).to_ascii_lowercase(), text(i))));
                }
            }
            _ => {}
        }
    }
    let mut path_and_query = path;
    if !query.is_empty() {
        let q: Vec<String> = query
            .iter()
            .map(
                |(k, v)| {
                    if v.is_empty() { encode(k, false) } else { format!("{}={}", encode(k, false), encode(v, false)) }
                },
            )
            .collect();
        path_and_query.push('?');
        path_and_query.push_str(&q.join("&"));
    }
    let has_type = |h: &[(String, String)]| h.iter().any(|(k, _)| k == "content-type");
    let body = match &op.input_payload {
        Some((name, ty)) => match member(params, name).map(|(_, v)| v) {
            None | Some(Value::Null) => Vec::new(),
            // A payload member given a JSON value (Bedrock's `body` as an object) is sent as its
            // JSON text; a content type a member set (`contentType`) is kept.
            Some(Value::String(s)) if ty == "blob" || ty == "string" => {
                if !has_type(&headers) {
                    headers.push(("content-type".into(), "application/octet-stream".into()));
                }
                s.clone().into_bytes()
            }
            Some(v) => {
                if !has_type(&headers) {
                    headers.push(("content-type".into(), "application/json".into()));
                }
                v.to_string().into_bytes()
            }
        },
        None => {
            let members: Map<String, Value> = params
                .iter()
                .filter(|(k, _)| !placed.contains(&k.as_str()))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            if members.is_empty() && matches!(op.method.as_str(), "GET" | "HEAD" | "DELETE") {
                Vec::new()
            } else {
                if !has_type(&headers) {
                    headers.push(("content-type".into(), "application/json".into()));
                }
                Value::Object(members).to_string().into_bytes()
            }
        }
    };
    Ok(Request { method: op.method.clone(), path_and_query, headers, body })
}

/// The result of `op` from its response: the JSON body (or the payload member), with the
/// members that came in headers or as the status code.
pub fn response(op: &Op, status: u16, headers: &[(String, String)], text: &str) -> Value {
    let parsed = || -> Value {
        if text.trim().is_empty() { json!({}) } else { serde_json::from_str(text).unwrap_or_else(|_| json!({})) }
    };
    let mut out = match &op.output_payload {
        Some((member, ty)) => {
            let v = if ty == "blob" || ty == "string" {
                Value::String(text.to_owned())
            } else if text.trim().is_empty() {
                Value::Null
            } else {
                serde_json::from_str(text).unwrap_or_else(|_| Value::String(text.to_owned()))
            };
            let mut m = Map::new();
            m.insert(member.clone(), v);
            Value::Object(m)
        }
        None => parsed(),
    };
    // Header names arrive in lower case.
    let header = |name: &str| {
        let name = name.to_ascii_lowercase();
        headers.iter().find(|(k, _)| *k == name).map(|(_, v)| v.clone())
    };
    let Some(obj) = out.as_object_mut() else { return out };
    for l in &op.output {
        let v = match l.location.as_str() {
            "statusCode" => Some(json!(status)),
            "header" => header(&l.name).map(|h| match l.ty.as_str() {
                "integer" | "long" | "double" | "float" => {
                    serde_json::from_str::<Value>(&h).ok().filter(Value::is_number).unwrap_or(Value::String(h))
                }
                "boolean" => Value::Bool(h.eq_ignore_ascii_case("true")),
                _ => Value::String(h),
            }),
            "headers" => {
                let prefix = l.name.to_ascii_lowercase();
                let m: Map<String, Value> = headers
                    .iter()
                    .filter_map(|(k, v)| {
                        k.strip_prefix(&prefix).map(|rest| (rest.to_owned(), Value::String(v.clone())))
                    })
                    .collect();
                (!m.is_empty()).then_some(Value::Object(m))
            }
            _ => None,
        };
        if let Some(v) = v {
            obj.insert(l.member.clone(), v);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_holds_every_operation_and_places_each_member() {
        assert!(operations() > 10_000, "{}", operations());
        let get = op("lambda", "GetFunctionConfiguration").expect("in the table");
        let r = request(get, json!({"FunctionName": "my fn", "Qualifier": "2"}).as_object().unwrap()).unwrap();
        assert_eq!(r.method, "GET");
        assert_eq!(r.path_and_query, "/2015-03-31/functions/my%20fn/configuration?Qualifier=2");
        assert!(r.body.is_empty());
        let put = op("apigateway", "CreateRestApi").expect("in the table");
        let r = request(put, json!({"name": "shop"}).as_object().unwrap()).unwrap();
        assert_eq!((r.method.as_str(), r.path_and_query.as_str()), ("POST", "/restapis"));
        assert_eq!(serde_json::from_slice::<Value>(&r.body).unwrap(), json!({"name": "shop"}));
        // Step Functions' PascalCase names find camelCase members.
        let r =
            request(op("apigateway", "GetRestApi").unwrap(), json!({"RestApiId": "a1"}).as_object().unwrap()).unwrap();
        assert_eq!(r.path_and_query, "/restapis/a1");
        let missing = request(get, &Map::new()).unwrap_err();
        assert!(missing.contains("FunctionName"), "{missing}");
        let invoke = op("bedrockruntime", "InvokeModel").expect("in the table");
        assert_eq!(invoke.input_payload.as_ref().map(|p| p.0.as_str()), Some("body"));
    }
}
