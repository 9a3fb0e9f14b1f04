//! The `aws` tool signing with a named profile's credentials: a loopback server stands in for
//! DynamoDB and SQS and records each request, so the test reads which key signed it (the
//! `Authorization` header's `Credential=`), with which session token and for which region.
//! The chain reads temporary files through `AwsSettings::chain`, never the process's
//! environment, which the other tests share. (`aws_tool.rs` makes the same kind of call
//! against the emulator.)

// Tests fail loudly on any surprise.
#![allow(clippy::unwrap_used)]

#[path = "support/scripted_server.rs"]
mod scripted_server;

use std::collections::HashMap;

use baton_tools::aws::{AwsCall, AwsSettings, AwsTool};
use baton_tools::aws_credentials::ChainEnv;
use serde_json::{Value, json};

/// A tool sending every service to `endpoint` and reading credentials through `chain`.
fn tool(endpoint: &str, chain: ChainEnv) -> AwsTool {
    AwsTool::with_settings(AwsSettings {
        endpoint: Some(endpoint.to_owned()),
        endpoints: HashMap::new(),
        signer: None,
        chain: Some(chain),
    })
}

/// `~/.aws/credentials` and `~/.aws/config` under a temporary home, and a chain selecting `profile`.
fn home(credentials: &str, config: &str, profile: &str) -> (tempfile::TempDir, ChainEnv) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join(".aws")).unwrap();
    std::fs::write(dir.path().join(".aws/credentials"), credentials).unwrap();
    std::fs::write(dir.path().join(".aws/config"), config).unwrap();
    let chain = ChainEnv::from_pairs([("HOME", dir.path().display().to_string()), ("AWS_PROFILE", profile.to_owned())]);
    (dir, chain)
}

async fn call(t: &AwsTool, service: &str, action: &str, params: Value) -> Result<Value, baton_core::engine::StepError> {
    t.invoke(&AwsCall { service: service.into(), action: action.into(), params: Some(params), role_arn: None }).await
}

#[tokio::test]
async fn a_dynamodb_call_is_signed_with_the_profiles_key_token_and_region() {
    let server = scripted_server::serve(vec![(200, vec![], json!({"Item": {"pk": {"S": "k"}}}))], Some(("POST", "/")));
    let (_home, chain) = home(
        "[default]\naws_access_key_id = AKIDDEFAULT\naws_secret_access_key = d\n\
         [ci]\naws_access_key_id = AKIDPROFILECI\naws_secret_access_key = secret-ci\naws_session_token = token-ci\n",
        "[profile ci]\nregion = eu-west-3\n",
        "ci",
    );
    let out =
        call(&tool(&server.base, chain), "dynamodb", "GetItem", json!({"TableName": "t", "Key": {"pk": {"S": "k"}}}))
            .await
            .unwrap();
    assert_eq!(out["Item"]["pk"]["S"], "k");
    let seen = server.seen();
    let auth = &seen[0].headers["authorization"];
    assert!(auth.starts_with("AWS4-HMAC-SHA256 Credential=AKIDPROFILECI/"), "{auth}");
    assert!(auth.contains("/eu-west-3/dynamodb/aws4_request"), "{auth}");
    assert_eq!(seen[0].headers["x-amz-security-token"], "token-ci");
    assert_eq!(seen[0].headers["x-amz-target"], "DynamoDB_20120810.GetItem");
}

#[tokio::test]
async fn an_sqs_call_is_signed_with_what_the_credential_process_prints() {
    let server = scripted_server::serve(vec![(200, vec![], json!({"MessageId": "m-1"}))], Some(("POST", "/")));
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("creds.sh");
    std::fs::write(
        &script,
        "echo '{\"Version\": 1, \"AccessKeyId\": \"AKIDFROMPROCESS\", \"SecretAccessKey\": \"p\", \"SessionToken\": \"tp\"}'\n",
    )
    .unwrap();
    let (_home, chain) = home(
        "",
        &format!("[default]\nregion = us-east-2\ncredential_process = sh '{}'\n", script.display()),
        "default",
    );
    let out = call(
        &tool(&server.base, chain),
        "sqs",
        "SendMessage",
        json!({"QueueUrl": "http://q/000000000000/q", "MessageBody": "hi"}),
    )
    .await
    .unwrap();
    assert_eq!(out["MessageId"], "m-1");
    let seen = server.seen();
    let auth = &seen[0].headers["authorization"];
    assert!(auth.starts_with("AWS4-HMAC-SHA256 Credential=AKIDFROMPROCESS/"), "{auth}");
    assert!(auth.contains("/us-east-2/sqs/aws4_request"), "{auth}");
    assert_eq!(seen[0].headers["x-amz-security-token"], "tp");
}

#[tokio::test]
async fn a_missing_or_role_profile_fails_the_step_before_any_request() {
    let server = scripted_server::serve(vec![(200, vec![], json!({}))], None);
    let (dir, chain) = home(
        "",
        "[profile admin]\nrole_arn = arn:aws:iam::123456789012:role/admin\nsource_profile = default\nregion = us-east-1\n",
        "nope",
    );
    let err = call(&tool(&server.base, chain.clone()), "sqs", "ListQueues", json!({})).await.unwrap_err();
    assert_eq!(err.kind.as_str(), "tool", "{err:?}");
    assert!(err.message.contains("`nope`") && err.message.contains(".aws/credentials"), "{err:?}");

    let admin = ChainEnv::from_pairs([("HOME", dir.path().display().to_string()), ("AWS_PROFILE", "admin".to_owned())]);
    let err = call(&tool(&server.base, admin), "sqs", "ListQueues", json!({})).await.unwrap_err();
    assert_eq!(err.kind.as_str(), "tool", "{err:?}");
    assert!(err.message.contains("role_arn") && err.message.contains("export-credentials --profile admin"), "{err:?}");
    assert!(server.seen().is_empty(), "nothing was sent unsigned or signed with the wrong keys");
}
