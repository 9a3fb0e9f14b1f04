//! How each supported service is spoken to: the four AWS wire protocols the `aws` tool covers
//! (awsJson 1.0/1.1, query, Lambda's REST-JSON `Invoke`, S3's REST-XML objects), and for each
//! service its signing name, endpoint prefix and the prefix of its error names.

use serde_json::{Map, Value};

pub use super::wire::{Protocol, Service};

/// The services with an integration of their own (Lambda `Invoke`, S3 objects) or whose error
/// names follow Step Functions' optimized integrations (`DynamoDB.`, `SQS.`, `SNS.`, `SFN.`,
/// `EventBridge.`); looked up before the generated table.
pub const SERVICES: &[Service] = &[
    Service {
        id: "dynamodb",
        signing: "dynamodb",
        endpoint: "dynamodb",
        errors: "DynamoDB",
        env: "DYNAMODB",
        protocol: Protocol::Json { version: "1.0", target: "DynamoDB_20120810" },
    },
    Service {
        id: "sqs",
        signing: "sqs",
        endpoint: "sqs",
        errors: "SQS",
        env: "SQS",
        protocol: Protocol::Json { version: "1.0", target: "AmazonSQS" },
    },
    Service {
        id: "eventbridge",
        signing: "events",
        endpoint: "events",
        errors: "EventBridge",
        env: "EVENTBRIDGE",
        protocol: Protocol::Json { version: "1.1", target: "AWSEvents" },
    },
    Service {
        id: "sfn",
        signing: "states",
        endpoint: "states",
        errors: "SFN",
        env: "SFN",
        protocol: Protocol::Json { version: "1.0", target: "AWSStepFunctions" },
    },
    Service {
        id: "sns",
        signing: "sns",
        endpoint: "sns",
        errors: "SNS",
        env: "SNS",
        protocol: Protocol::Query { version: "2010-03-31" },
    },
    Service {
        id: "lambda",
        signing: "lambda",
        endpoint: "lambda",
        errors: "Lambda",
        env: "LAMBDA",
        protocol: Protocol::LambdaInvoke,
    },
    Service { id: "s3", signing: "s3", endpoint: "s3", errors: "S3", env: "S3", protocol: Protocol::S3Objects },
];

/// The service `id`, if the tool speaks to it: one of [`SERVICES`], else any awsJson or query
/// service of the generated table (`super::services`).
pub fn service(id: &str) -> Option<&'static Service> {
    all().find(|s| s.id == id)
}

/// Every service the tool speaks to, the hand-written ones first.
pub fn all() -> impl Iterator<Item = &'static Service> {
    SERVICES.iter().chain(super::services::GENERATED.iter())
}

/// Fields that the AWS API takes as JSON text but Step Functions' integrations (and `aws` steps)
/// may give as JSON values: EventBridge `Entries[].Detail`, SQS `MessageBody`, SNS `Message`,
/// SFN `Input`. A value that is not a string is sent as its JSON text.
pub fn stringify_documents(service: &str, action: &str, params: &mut Map<String, Value>) {
    let text = |v: &mut Value| {
        if !v.is_string() && !v.is_null() {
            *v = Value::String(v.to_string());
        }
    };
    match (service, action) {
        ("eventbridge", "PutEvents") => {
            for e in params.get_mut("Entries").and_then(Value::as_array_mut).into_iter().flatten() {
                if let Some(d) = e.get_mut("Detail") {
                    text(d);
                }
            }
        }
        ("sqs", "SendMessage") => params.get_mut("MessageBody").into_iter().for_each(text),
        ("sns", "Publish") => params.get_mut("Message").into_iter().for_each(text),
        ("sfn", "StartExecution" | "StartSyncExecution") => params.get_mut("Input").into_iter().for_each(text),
        _ => {}
    }
}

/// The query protocol's form fields for `params`: nested objects as `A.B`, lists as
/// `A.member.N`, and `MessageAttributes`-style maps of objects as `A.entry.N.Name/Value.*`.
pub fn flatten(params: &Map<String, Value>) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for (k, v) in params {
        flatten_into(k, v, &mut out);
    }
    out
}

fn flatten_into(prefix: &str, v: &Value, out: &mut Vec<(String, String)>) {
    match v {
        Value::Object(m) if prefix.ends_with("Attributes") => {
            for (i, (name, value)) in m.iter().enumerate() {
                out.push((format!("{prefix}.entry.{}.Name", i + 1), name.clone()));
                flatten_into(&format!("{prefix}.entry.{}.Value", i + 1), value, out);
            }
        }
        Value::Object(m) => {
            for (k, x) in m {
                flatten_into(&format!("{prefix}.{k}"), x, out);
            }
        }
        Value::Array(items) => {
            for (i, x) in items.iter().enumerate() {
                flatten_into(&format!("{prefix}.member.{}", i + 1), x, out);
            }
        }
        Value::String(s) => out.push((prefix.to_owned(), s.clone())),
        Value::Null => {}
        other => out.push((prefix.to_owned(), other.to_string())),
    }
}

/// The AWS error code in an error response's body or headers: `__type` (awsJson, possibly
/// `namespace#Code`), `x-amzn-ErrorType` (REST-JSON, possibly `Code:uri`), or XML `<Code>`.
pub fn error_code(header: Option<&str>, body: &str) -> Option<String> {
    let clean = |s: &str| s.rsplit('#').next().unwrap_or(s).split(':').next().unwrap_or(s).trim().to_owned();
    if let Some(h) = header.filter(|h| !h.is_empty()) {
        return Some(clean(h));
    }
    if let Ok(v) = serde_json::from_str::<Value>(body) {
        for k in ["__type", "code", "Code"] {
            if let Some(s) = v.get(k).and_then(Value::as_str) {
                return Some(clean(s));
            }
        }
    }
    let x = super::xml::to_json(body)?;
    find(&x, "Code").and_then(Value::as_str).map(clean)
}

/// The error message in a body: `message`/`Message` in JSON or XML.
pub fn error_message(body: &str) -> String {
    if let Ok(v) = serde_json::from_str::<Value>(body) {
        for k in ["message", "Message", "errorMessage"] {
            if let Some(s) = v.get(k).and_then(Value::as_str) {
                return s.to_owned();
            }
        }
    }
    super::xml::to_json(body)
        .and_then(|x| find(&x, "Message").and_then(Value::as_str).map(str::to_owned))
        .unwrap_or_else(|| body.chars().take(300).collect())
}

/// The first value under key `k` anywhere in `v`.
pub fn find<'a>(v: &'a Value, k: &str) -> Option<&'a Value> {
    match v {
        Value::Object(m) => m.get(k).or_else(|| m.values().find_map(|x| find(x, k))),
        Value::Array(a) => a.iter().find_map(|x| find(x, k)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn query_parameters_flatten() {
        let p = json!({"TopicArn": "t", "Message": "m", "MessageAttributes": {"k": {"DataType": "String", "StringValue": "v"}}, "Tags": ["a"]});
        let f = flatten(p.as_object().unwrap());
        assert!(f.contains(&("MessageAttributes.entry.1.Name".into(), "k".into())));
        assert!(f.contains(&("MessageAttributes.entry.1.Value.DataType".into(), "String".into())));
        assert!(f.contains(&("Tags.member.1".into(), "a".into())));
    }

    #[test]
    fn error_codes_are_found_in_every_shape() {
        assert_eq!(
            error_code(None, r#"{"__type": "com.amazonaws.dynamodb.v20120810#ConditionalCheckFailedException"}"#)
                .as_deref(),
            Some("ConditionalCheckFailedException")
        );
        assert_eq!(
            error_code(Some("TooManyRequestsException:http://x/"), "").as_deref(),
            Some("TooManyRequestsException")
        );
        assert_eq!(error_code(None, "<Error><Code>NoSuchKey</Code></Error>").as_deref(), Some("NoSuchKey"));
    }
}
