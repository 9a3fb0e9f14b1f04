//! `aws`: one call of an AWS API, named the way the AWS SDKs and Step Functions' SDK integrations
//! name it: a service (`dynamodb`, `lambda`, `sns`, `sqs`, `eventbridge`, `s3`, `sfn`, ...), an
//! action in PascalCase (`PutItem`, `Invoke`) and the action's parameters in PascalCase JSON.
//! Calls run on the `http` worker; an imported Step Functions `Task` becomes one of these.

use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::Value;

use super::spec::{CALL_TIMEOUT_MS, StepCx, ToolSpec};
use crate::plan::types::StepKind;

/// The `with` of an `aws` step.
#[derive(Debug, Clone, PartialEq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AwsArgs {
    /// The service, lower case as the SDKs' service ids spell it: `dynamodb`, `lambda`, `sns`,
    /// `sqs`, `eventbridge`, `s3`, `sfn`.
    pub service: String,
    /// The API action in PascalCase, e.g. `PutItem`, `Invoke`, `Publish`.
    pub action: String,
    /// The action's request parameters, PascalCase as in the AWS API reference (templated).
    #[serde(default)]
    pub params: Option<Value>,
    /// An IAM role to make the call as (Step Functions' `Credentials.RoleArn`; templated): the
    /// worker's credentials assume it with STS `AssumeRole`, and the call is signed with the
    /// role's temporary credentials.
    #[serde(default)]
    pub role_arn: Option<String>,
}

/// The `aws` tool's name.
pub(super) const NAME: &str = "aws";

/// `aws` calls run on the `http` worker: short network calls, the same worker function and queue.
pub(super) const SPEC: ToolSpec = ToolSpec::worker::<AwsArgs>(NAME, "http", compile).times_out_after(CALL_TIMEOUT_MS);

/// True for a service id as the SDKs write it: lower-case letters, digits and dashes.
pub fn is_service_id(s: &str) -> bool {
    s.chars().next().is_some_and(|c| c.is_ascii_lowercase())
        && s.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

/// True for an action as the AWS API names it: PascalCase letters and digits.
pub fn is_action_name(s: &str) -> bool {
    s.chars().next().is_some_and(|c| c.is_ascii_uppercase()) && s.chars().all(|c| c.is_ascii_alphanumeric())
}

fn compile(cx: &mut StepCx<'_>) -> Option<StepKind> {
    cx.unknown_args(SPEC.args());
    let wptr = cx.wptr;
    match cx.field("service") {
        Some(Value::String(s)) if is_service_id(s) => {}
        Some(Value::String(s)) => cx.p.err(
            format!("{wptr}/service"),
            format!("`{s}` is not a service id: write it as the SDKs do, lower case (`dynamodb`, `lambda`, `sns`)"),
        ),
        _ => cx.p.err(format!("{wptr}/service"), "`aws` needs `with.service`, e.g. `dynamodb`"),
    }
    match cx.field("action") {
        Some(Value::String(a)) if is_action_name(a) => {}
        Some(Value::String(a)) => cx.p.err(
            format!("{wptr}/action"),
            format!("`{a}` is not an action name: write it in PascalCase as the AWS API does (`PutItem`, `Invoke`)"),
        ),
        _ => cx.p.err(format!("{wptr}/action"), "`aws` needs `with.action`, e.g. `PutItem`"),
    }
    match cx.field("params") {
        None | Some(Value::Object(_)) => {}
        Some(Value::String(t)) if t.trim_start().starts_with("{{") => {}
        Some(_) => cx.p.err(
            format!("{wptr}/params"),
            "`params` is a mapping of the action's request parameters (or one `{{ }}` giving one)",
        ),
    }
    match cx.field("role_arn") {
        None => {}
        Some(Value::String(r)) if r.starts_with("arn:") || r.contains("{{") => {}
        Some(_) => cx
            .p
            .err(format!("{wptr}/role_arn"), "`role_arn` is an IAM role's ARN (`arn:aws:iam::123456789012:role/name`)"),
    }
    cx.call_of(NAME)
}

#[cfg(test)]
mod tests {
    use crate::plan::load_definition;

    fn problems(with: &str) -> Vec<String> {
        let yaml = format!("name: w\nsteps:\n  - id: s\n    tool: aws\n    with: {with}\n");
        match load_definition(Some("w.yaml"), &yaml) {
            Ok(_) => Vec::new(),
            Err(p) => p.iter().map(ToString::to_string).collect(),
        }
    }

    #[test]
    fn service_and_action_are_checked_by_shape_naming_the_field() {
        assert!(problems("{service: dynamodb, action: PutItem, params: {TableName: t}}").is_empty());
        assert!(problems("{service: sqs, action: SendMessage, params: '{{ .input }}'}").is_empty());
        let p = problems("{service: DynamoDB, action: putItem, params: [1], region: x}");
        assert!(p.iter().any(|m| m.contains("field `with.service`") && m.contains("not a service id")), "{p:?}");
        assert!(p.iter().any(|m| m.contains("field `with.action`") && m.contains("PascalCase")), "{p:?}");
        assert!(p.iter().any(|m| m.contains("field `with.params`")), "{p:?}");
        assert!(p.iter().any(|m| m.contains("region")), "{p:?}");
        let p = problems("{params: {}}");
        assert!(p.iter().any(|m| m.contains("`aws` needs `with.service`")), "{p:?}");
    }
}
