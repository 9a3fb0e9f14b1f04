//! A Task state's `Resource` (and its parameters) as a baton call: which tool, its `with`, and
//! how the tool's output becomes the state's result. Service integrations become `aws` calls,
//! Lambda ARNs and function names a Lambda `Invoke`, `states:startExecution.sync` a `workflow`
//! step, `http:invoke` and `apigateway:invoke` an `http` step.

use serde_json::{Map, Value, json};

use super::paths::{Cx, json_str};
use super::payload::dynamic;
use crate::model::{AwsSigV4, Connection, ConnectionAuth};

/// A Task's call, ready to be written as a step.
#[derive(Debug, Clone)]
pub(crate) struct Call {
    /// `aws`, `http` or `workflow`.
    pub tool: &'static str,
    /// The step's `with` (templates read the state's effective input).
    pub with: Value,
    /// jq on the tool's output giving the state's result (before `ResultSelector`).
    pub result: String,
    /// A connection the call needs (API Gateway with IAM auth), by name.
    pub connection: Option<(String, Connection)>,
}

/// The suffixes a resource may end with.
fn split_pattern(resource: &str) -> (&str, &str) {
    for p in [".waitForTaskToken", ".sync:2", ".sync"] {
        if let Some(base) = resource.strip_suffix(p) {
            return (base, p);
        }
    }
    (resource, "")
}

/// `params` (a payload template, or `None`: the effective input) as a `with` value whose
/// dynamic parts are `{{ }}` templates over `input`.
pub(crate) fn template(v: &Value, input: &str, cx: &Cx<'_>, at: &str, errs: &mut Vec<(String, String)>) -> Value {
    match v {
        Value::Object(m) => {
            let mut out = Map::new();
            for (k, val) in m {
                let here = format!("{at}.{k}");
                if let Some(key) = k.strip_suffix(".$") {
                    let expr = match val.as_str().map(|s| dynamic(s, input, cx, &here)) {
                        Some(Ok(e)) => e,
                        Some(Err(e)) => {
                            errs.push((here, e));
                            "null".into()
                        }
                        None => {
                            errs.push((here, "a `.$` field takes a path or an intrinsic function (a string)".into()));
                            "null".into()
                        }
                    };
                    out.insert(key.to_owned(), Value::String(format!("{{{{ {expr} }}}}")));
                } else {
                    out.insert(k.clone(), template(val, input, cx, &here, errs));
                }
            }
            Value::Object(out)
        }
        Value::Array(items) => Value::Array(
            items.iter().enumerate().map(|(i, x)| template(x, input, cx, &format!("{at}[{i}]"), errs)).collect(),
        ),
        // A literal that happens to hold `{{` must not be read as a template.
        Value::String(s) if s.contains("{{") => Value::String(format!("{{{{ {} }}}}", json_str(s))),
        other => other.clone(),
    }
}

/// The call for `resource` with `params` (the template already built by [`template`]; `None`
/// when the state has no `Parameters`) on effective input `input`.
pub(crate) fn call(resource: &str, params: Option<Value>, input: &str) -> Result<Call, String> {
    let whole = || Value::String(format!("{{{{ {input} }}}}"));
    let (base, pattern) = split_pattern(resource);
    let aws = |service: &str, action: String, params: Value| Call {
        tool: "aws",
        with: json!({"service": service, "action": action, "params": params}),
        result: ".".into(),
        connection: None,
    };
    let Some(integration) = base.strip_prefix("arn:aws:states:::") else {
        if base.contains(":activity:") {
            return Err(
                "activities cannot be converted: baton has no activity workers (use an `aws` step or `http`)".into()
            );
        }
        if base.starts_with("arn:aws:states:") {
            return Err(format!("`{resource}` is not a service integration baton knows"));
        }
        if !pattern.is_empty() {
            return Err(format!("`{pattern}` goes only with service integrations (`arn:aws:states:::...`)"));
        }
        // A Lambda function ARN or name: the payload is the state's input, the result its output.
        let payload = params.unwrap_or_else(whole);
        let mut call = aws("lambda", "Invoke".into(), json!({"FunctionName": resource, "Payload": payload}));
        call.result = ".Payload".into();
        return Ok(call);
    };
    let mut parts = integration.splitn(3, ':');
    let (first, second, third) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""), parts.next());
    let params_or_input = || params.clone().unwrap_or_else(whole);
    match (first, second, third) {
        ("aws-sdk", service, Some(action)) if !pattern.starts_with(".sync") => {
            let service = sdk_service(service);
            let action = pascal(action);
            spoken(&service, &action)?;
            Ok(aws(&service, action, params_or_input()))
        }
        ("states", "startExecution", None) if pattern.starts_with(".sync") => {
            let p = params.unwrap_or_default();
            let arn = p.get("StateMachineArn").and_then(Value::as_str).unwrap_or_default();
            if arn.is_empty() || arn.contains("{{") {
                return Err("`.sync` needs a literal `Parameters.StateMachineArn`: its name is the baton workflow the step starts".into());
            }
            let name = arn.rsplit(':').next().unwrap_or(arn).to_owned();
            let input = p.get("Input").cloned().unwrap_or(json!({}));
            let result = if pattern == ".sync:2" {
                r#"{Output: ., Status: "SUCCEEDED"}"#
            } else {
                r#"{Output: (. | tojson), Status: "SUCCEEDED"}"#
            };
            Ok(Call {
                tool: "workflow",
                with: json!({"name": name, "input": input}),
                result: result.into(),
                connection: None,
            })
        }
        ("http", "invoke", None) if pattern.is_empty() => {
            let p = params.unwrap_or_default();
            let mut with = Map::new();
            with.insert("method".into(), p.get("Method").cloned().unwrap_or(json!("GET")));
            let url = p.get("ApiEndpoint").cloned().ok_or("`http:invoke` needs `Parameters.ApiEndpoint`")?;
            with.insert("url".into(), url_with_query(url, p.get("QueryParameters")));
            if let Some(h) = p.get("Headers") {
                with.insert("headers".into(), h.clone());
            }
            if let Some(b) = p.get("RequestBody") {
                with.insert("body".into(), b.clone());
            }
            Ok(Call { tool: "http", with: Value::Object(with), result: http_result(), connection: None })
        }
        ("apigateway", "invoke", None) if !pattern.starts_with(".sync") => {
            let p = params.unwrap_or_default();
            let endpoint = p
                .get("ApiEndpoint")
                .and_then(Value::as_str)
                .ok_or("`apigateway:invoke` needs `Parameters.ApiEndpoint`")?;
            let stage = p.get("Stage").and_then(Value::as_str).map(|s| format!("/{s}")).unwrap_or_default();
            let path = p.get("Path").and_then(Value::as_str).unwrap_or("");
            let mut with = Map::new();
            with.insert("method".into(), p.get("Method").cloned().unwrap_or(json!("GET")));
            if let Some(h) = p.get("Headers") {
                with.insert("headers".into(), h.clone());
            }
            if let Some(b) = p.get("RequestBody") {
                with.insert("body".into(), b.clone());
            }
            let auth = p.get("AuthType").and_then(Value::as_str).unwrap_or("NO_AUTH");
            let mut connection = None;
            match auth {
                "NO_AUTH" => {
                    let url = Value::String(format!("https://{endpoint}{stage}{path}"));
                    with.insert("url".into(), url_with_query(url, p.get("QueryParameters")));
                }
                "IAM_ROLE" | "RESOURCE_POLICY" => {
                    if endpoint.contains("{{") {
                        return Err(
                            "`AuthType: IAM_ROLE` needs a literal `ApiEndpoint` (it becomes a signed connection)"
                                .into(),
                        );
                    }
                    let name = format!("apigw-{}", endpoint.split('.').next().unwrap_or("api"));
                    let conn = Connection {
                        base_url: format!("https://{endpoint}{stage}"),
                        headers: Default::default(),
                        auth: Some(ConnectionAuth {
                            bearer: None,
                            api_key: None,
                            aws_sigv4: Some(AwsSigV4 { service: "execute-api".into(), region: None }),
                        }),
                        timeout: None,
                        allow_private: false,
                        max_response_bytes: None,
                        rate_limit: None,
                        circuit_breaker: None,
                    };
                    with.insert("connection".into(), json!(name));
                    let path = if path.is_empty() { "/".to_owned() } else { path.to_owned() };
                    with.insert("path".into(), url_with_query(Value::String(path), p.get("QueryParameters")));
                    connection = Some((name, conn));
                }
                other => return Err(format!("unknown `AuthType` `{other}` (NO_AUTH, IAM_ROLE, RESOURCE_POLICY)")),
            }
            Ok(Call { tool: "http", with: Value::Object(with), result: http_result(), connection })
        }
        ("states", "startExecution", None) => Ok(aws("sfn", "StartExecution".into(), params_or_input())),
        // Bedrock's optimized integration runs a model, which is the runtime API's.
        ("bedrock", "invokeModel", None) => Ok(aws("bedrockruntime", "InvokeModel".into(), params_or_input())),
        (service, action, None) if !service.is_empty() && !action.is_empty() && !pattern.starts_with(".sync") => {
            Ok(aws(&sdk_service(service), pascal(action), params_or_input()))
        }
        _ if pattern.starts_with(".sync") => Err(format!(
            "`{pattern}` (run a job and wait) is converted for `states:startExecution` only; `{base}` has no baton equivalent"
        )),
        _ => Err(format!("`{resource}` is not a service integration baton knows")),
    }
}

/// The SDK service id of an integration's service name (`events` is EventBridge's API).
fn sdk_service(s: &str) -> String {
    match s {
        "events" => "eventbridge".into(),
        "states" => "sfn".into(),
        other => other.to_ascii_lowercase(),
    }
}

/// Refuses, at import, an SDK call the `aws` tool cannot make: a REST-XML service, or an S3
/// action besides those it speaks.
fn spoken(service: &str, action: &str) -> Result<(), String> {
    let s3 = ["GetObject", "PutObject", "CreateBucket", "ListObjectsV2"];
    match service {
        "s3" if !s3.contains(&action) => Err(format!(
            "S3 `{action}` cannot be converted: the aws tool calls S3 {}",
            s3.map(|a| format!("`{a}`")).join(", ")
        )),
        "s3" => Ok(()),
        rest if super::rest_services::REST_SERVICES.contains(&rest) => Err(format!(
            "`{rest}` speaks REST-XML (or EC2's protocol), which the aws tool does not call yet (it calls \
             every awsJson, query and REST-JSON service, and S3 objects)"
        )),
        _ => Ok(()),
    }
}

/// A Task's `Credentials` (`{"RoleArn": ...}`, `"RoleArn.$"` a path, or a JSONata template) as
/// the value of an `aws` step's `role_arn`: the ARN, or a template reading it.
pub(super) fn role_arn(
    c: &Value,
    eff: &str,
    cx: &Cx<'_>,
    jsonata: bool,
    errs: &mut Vec<(String, String)>,
) -> Option<Value> {
    let obj = c.as_object().filter(|o| o.len() == 1);
    let Some((k, v)) = obj.and_then(|o| o.iter().next()) else {
        errs.push(("Credentials".into(), "`Credentials` is `{\"RoleArn\": ...}`".into()));
        return None;
    };
    match (k.as_str(), v) {
        ("RoleArn", Value::String(s)) if jsonata && super::jsonata::embedded(s).is_some() => {
            let vars = super::jsonata::Vars { input: eff, result: None, cx, error_output: None };
            Some(super::jsonata::with_value(v, &vars, "Credentials.RoleArn", errs))
        }
        ("RoleArn", Value::String(s)) => Some(Value::String(s.clone())),
        ("RoleArn.$", Value::String(p)) if !jsonata => match super::paths::path(p, eff, cx) {
            Ok(jq) => Some(Value::String(format!("{{{{ {jq} }}}}"))),
            Err(e) => {
                errs.push(("Credentials.RoleArn.$".into(), e));
                None
            }
        },
        _ => {
            errs.push((
                "Credentials".into(),
                "`Credentials` is `{\"RoleArn\": ...}` (or `RoleArn.$` with a path)".into(),
            ));
            None
        }
    }
}

/// `putItem` -> `PutItem`.
fn pascal(action: &str) -> String {
    let mut c = action.chars();
    c.next().map(|f| f.to_ascii_uppercase().to_string() + c.as_str()).unwrap_or_default()
}

/// Step Functions' HTTP result shape from baton's `http` output.
fn http_result() -> String {
    "{StatusCode: .status, Headers: .headers, ResponseBody: .body}".into()
}

/// A URL (literal or template) with `QueryParameters` appended.
fn url_with_query(url: Value, query: Option<&Value>) -> Value {
    let Some(Value::Object(q)) = query else { return url };
    let pairs: Vec<String> = q
        .iter()
        .map(|(k, v)| match v {
            Value::String(s) if s.starts_with("{{") => format!("{k}={s}"),
            Value::String(s) => format!("{k}={s}"),
            other => format!("{k}={other}"),
        })
        .collect();
    match url {
        Value::String(u) => Value::String(format!("{u}{}{}", if u.contains('?') { "&" } else { "?" }, pairs.join("&"))),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resources_map_to_calls() {
        let c = call("arn:aws:states:::dynamodb:putItem", Some(json!({"TableName": "t"})), "$in").unwrap();
        assert_eq!(
            (c.tool, c.with["service"].as_str(), c.with["action"].as_str()),
            ("aws", Some("dynamodb"), Some("PutItem"))
        );
        let c = call("arn:aws:states:::events:putEvents", None, "$in").unwrap();
        assert_eq!(c.with["service"], "eventbridge");
        let c = call("arn:aws:states:::aws-sdk:s3:getObject", None, "$in").unwrap();
        assert_eq!((c.with["service"].as_str(), c.with["action"].as_str()), (Some("s3"), Some("GetObject")));
        let c = call("arn:aws:lambda:us-east-1:1:function:f", None, ".x").unwrap();
        assert_eq!(c.with["params"]["Payload"], "{{ .x }}");
        assert_eq!(c.result, ".Payload");
        let c = call("arn:aws:states:::sns:publish.waitForTaskToken", None, "$in").unwrap();
        assert_eq!(c.with["action"], "Publish");
        let c = call(
            "arn:aws:states:::states:startExecution.sync:2",
            Some(json!({"StateMachineArn": "arn:aws:states:r:1:stateMachine:child"})),
            "$in",
        )
        .unwrap();
        assert_eq!((c.tool, c.with["name"].as_str()), ("workflow", Some("child")));
        assert!(call("arn:aws:states:::ecs:runTask.sync", None, "$in").unwrap_err().contains("startExecution"));
        assert!(call("arn:aws:states:us-east-1:1:activity:a", None, "$in").unwrap_err().contains("activities"));
    }
}
