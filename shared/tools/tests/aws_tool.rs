//! The `aws` tool against the emulator over HTTP (moto on `BATON_TEST_AWS_ENDPOINT`, default
//! http://127.0.0.1:4566, started with `localstack/up` when down): DynamoDB, SQS, EventBridge
//! (awsJson), SNS (query), S3 objects (REST-XML); errors come back as `<Service>.<Code>` kinds.
//! Lambda `Invoke` goes to a small local HTTP server standing in for the Lambda endpoint
//! (`AWS_ENDPOINT_URL_LAMBDA`), which checks the request's path, headers and signature header
//! and answers with a payload, a function error, or a throttling error. One test signs with a
//! named profile from a temporary credentials file instead of fixed keys; one calls REST-JSON
//! services (Scheduler, Lambda beyond `Invoke`) on the emulator from the generated table.

// Tests fail loudly on any surprise.
#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};

use baton_tools::aws::{AwsCall, AwsSettings, AwsTool};
use serde_json::{Value, json};

#[path = "support/emulator.rs"]
mod emulator;
use emulator::endpoint;

fn tool(lambda: Option<String>) -> AwsTool {
    let mut endpoints = HashMap::new();
    if let Some(l) = lambda {
        endpoints.insert("lambda".to_owned(), l);
    }
    AwsTool::with_settings(AwsSettings {
        endpoint: Some(endpoint()),
        endpoints,
        signer: Some(("testing".into(), "testing".into(), None, "us-east-1".into())),
        chain: None,
    })
}

async fn call(t: &AwsTool, service: &str, action: &str, params: Value) -> Result<Value, baton_core::engine::StepError> {
    t.invoke(&AwsCall { service: service.into(), action: action.into(), params: Some(params), role_arn: None }).await
}

fn suffix() -> String {
    format!("{}", std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos())
}

#[tokio::test]
async fn dynamodb_items_round_trip_and_conditional_failures_are_named() {
    let t = tool(None);
    let table = format!("aws-tool-{}", suffix());
    call(
        &t,
        "dynamodb",
        "CreateTable",
        json!({"TableName": table, "BillingMode": "PAY_PER_REQUEST",
               "AttributeDefinitions": [{"AttributeName": "pk", "AttributeType": "S"}, {"AttributeName": "sk", "AttributeType": "S"}],
               "KeySchema": [{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}]}),
    )
    .await
    .unwrap();
    let item = json!({"pk": {"S": "order-1"}, "sk": {"S": "a"}, "qty": {"N": "2"}});
    call(&t, "dynamodb", "PutItem", json!({"TableName": table, "Item": item})).await.unwrap();
    let got =
        call(&t, "dynamodb", "GetItem", json!({"TableName": table, "Key": {"pk": {"S": "order-1"}, "sk": {"S": "a"}}}))
            .await
            .unwrap();
    assert_eq!(got["Item"]["qty"], json!({"N": "2"}));
    let updated = call(
        &t,
        "dynamodb",
        "UpdateItem",
        json!({"TableName": table, "Key": {"pk": {"S": "order-1"}, "sk": {"S": "a"}},
               "UpdateExpression": "SET qty = :q", "ExpressionAttributeValues": {":q": {"N": "5"}}, "ReturnValues": "ALL_NEW"}),
    )
    .await
    .unwrap();
    assert_eq!(updated["Attributes"]["qty"], json!({"N": "5"}));
    let q = call(
        &t,
        "dynamodb",
        "Query",
        json!({"TableName": table, "KeyConditionExpression": "pk = :p", "ExpressionAttributeValues": {":p": {"S": "order-1"}}}),
    )
    .await
    .unwrap();
    assert_eq!(q["Count"], 1);
    let err = call(
        &t,
        "dynamodb",
        "PutItem",
        json!({"TableName": table, "Item": item, "ConditionExpression": "attribute_not_exists(pk)"}),
    )
    .await
    .unwrap_err();
    assert_eq!(err.kind.as_str(), "DynamoDB.ConditionalCheckFailedException", "{err:?}");
    call(&t, "dynamodb", "DeleteItem", json!({"TableName": table, "Key": {"pk": {"S": "order-1"}, "sk": {"S": "a"}}}))
        .await
        .unwrap();
    let gone =
        call(&t, "dynamodb", "GetItem", json!({"TableName": table, "Key": {"pk": {"S": "order-1"}, "sk": {"S": "a"}}}))
            .await
            .unwrap();
    assert!(gone.get("Item").is_none(), "{gone}");
    let missing = call(&t, "dynamodb", "GetItem", json!({"TableName": "no-such-table", "Key": {"pk": {"S": "x"}}}))
        .await
        .unwrap_err();
    assert_eq!(missing.kind.as_str(), "DynamoDB.ResourceNotFoundException", "{missing:?}");
}

#[tokio::test]
async fn sqs_sns_and_eventbridge_messages_are_sent() {
    let t = tool(None);
    let s = suffix();
    let q = call(&t, "sqs", "CreateQueue", json!({"QueueName": format!("aws-tool-{s}")})).await.unwrap();
    let url = q["QueueUrl"].as_str().unwrap().to_owned();
    let sent =
        call(&t, "sqs", "SendMessage", json!({"QueueUrl": url, "MessageBody": "{\"token\": \"t-1\"}"})).await.unwrap();
    assert!(sent["MessageId"].is_string(), "{sent}");
    let got = call(&t, "sqs", "ReceiveMessage", json!({"QueueUrl": url, "MaxNumberOfMessages": 1})).await.unwrap();
    assert_eq!(got["Messages"][0]["Body"], "{\"token\": \"t-1\"}");

    let topic = call(&t, "sns", "CreateTopic", json!({"Name": format!("aws-tool-{s}")})).await.unwrap();
    let arn = topic["TopicArn"].as_str().unwrap().to_owned();
    let published = call(
        &t,
        "sns",
        "Publish",
        json!({"TopicArn": arn, "Message": {"token": "t-1"}, "Subject": "s",
               "MessageAttributes": {"kind": {"DataType": "String", "StringValue": "callback"}}}),
    )
    .await
    .unwrap();
    assert!(published["MessageId"].is_string(), "{published}");
    let bad =
        call(&t, "sns", "Publish", json!({"TopicArn": "arn:aws:sns:us-east-1:123456789012:nope", "Message": "m"}))
            .await
            .unwrap_err();
    assert!(bad.kind.as_str().starts_with("SNS."), "{bad:?}");

    let bus = format!("aws-tool-{s}");
    call(&t, "eventbridge", "CreateEventBus", json!({"Name": bus})).await.unwrap();
    let put = call(
        &t,
        "eventbridge",
        "PutEvents",
        json!({"Entries": [{"Source": "my.app", "DetailType": "Thing", "Detail": "{\"a\": 1}", "EventBusName": bus}]}),
    )
    .await
    .unwrap();
    assert_eq!(put["FailedEntryCount"], 0, "{put}");
}

#[tokio::test]
async fn s3_objects_are_written_and_read_and_a_missing_key_is_named() {
    let t = tool(None);
    let bucket = format!("aws-tool-{}", suffix());
    call(&t, "s3", "CreateBucket", json!({"Bucket": bucket})).await.unwrap();
    let put = call(
        &t,
        "s3",
        "PutObject",
        json!({"Bucket": bucket, "Key": "in/items.csv", "Body": "id,name\n1,a\n", "ContentType": "text/csv"}),
    )
    .await
    .unwrap();
    assert!(put["ETag"].is_string(), "{put}");
    let got = call(&t, "s3", "GetObject", json!({"Bucket": bucket, "Key": "in/items.csv"})).await.unwrap();
    assert_eq!(got["Body"], "id,name\n1,a\n");
    let err = call(&t, "s3", "GetObject", json!({"Bucket": bucket, "Key": "nope"})).await.unwrap_err();
    assert_eq!(err.kind.as_str(), "S3.NoSuchKey", "{err:?}");
}

/// What the Lambda stand-in saw of each request: path, headers (lower case), body.
type Seen = Arc<Mutex<Vec<(String, Vec<String>, String)>>>;

/// A stand-in for the Lambda endpoint: one thread, records each request line and headers.
fn lambda_server(seen: Seen) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let mut stream = stream.unwrap();
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut line = String::new();
            reader.read_line(&mut line).unwrap();
            let mut headers = Vec::new();
            let mut len = 0;
            loop {
                let mut h = String::new();
                reader.read_line(&mut h).unwrap();
                let h = h.trim_end().to_owned();
                if h.is_empty() {
                    break;
                }
                if let Some(v) = h.to_ascii_lowercase().strip_prefix("content-length:") {
                    len = v.trim().parse().unwrap();
                }
                headers.push(h.to_ascii_lowercase());
            }
            let mut body = vec![0; len];
            reader.read_exact(&mut body).unwrap();
            let body = String::from_utf8(body).unwrap();
            let path = line.split_whitespace().nth(1).unwrap_or("").to_owned();
            seen.lock().unwrap().push((path.clone(), headers, body.clone()));
            let (status, extra, reply) = if path.contains("/functions/throttled/") {
                (
                    "429 Too Many Requests",
                    "x-amzn-ErrorType: TooManyRequestsException\r\n",
                    r#"{"message": "Rate exceeded"}"#.to_owned(),
                )
            } else if path.contains("/functions/broken/") {
                (
                    "200 OK",
                    "X-Amz-Function-Error: Unhandled\r\n",
                    r#"{"errorType": "ValueError", "errorMessage": "bad input"}"#.to_owned(),
                )
            } else {
                ("200 OK", "X-Amz-Executed-Version: $LATEST\r\n", format!(r#"{{"echo": {body}}}"#))
            };
            let resp = format!(
                "HTTP/1.1 {status}\r\ncontent-type: application/json\r\n{extra}content-length: {}\r\nconnection: close\r\n\r\n{reply}",
                reply.len()
            );
            stream.write_all(resp.as_bytes()).unwrap();
        }
    });
    format!("http://{addr}")
}

#[tokio::test]
async fn lambda_invoke_maps_payloads_function_errors_and_throttling() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let t = tool(Some(lambda_server(seen.clone())));
    let out = call(
        &t,
        "lambda",
        "Invoke",
        json!({"FunctionName": "arn:aws:lambda:us-east-1:123456789012:function:echo", "Payload": {"n": 1}}),
    )
    .await
    .unwrap();
    assert_eq!(out, json!({"StatusCode": 200, "Payload": {"echo": {"n": 1}}, "ExecutedVersion": "$LATEST"}));
    let (path, headers, body) = seen.lock().unwrap()[0].clone();
    assert_eq!(
        path,
        "/2015-03-31/functions/arn%3Aaws%3Alambda%3Aus-east-1%3A123456789012%3Afunction%3Aecho/invocations"
    );
    assert_eq!(body, r#"{"n":1}"#);
    assert!(
        headers.iter().any(|h| h.starts_with("authorization: aws4-hmac-sha256 credential=testing/")),
        "{headers:?}"
    );
    assert!(headers.iter().any(|h| h.contains("/us-east-1/lambda/aws4_request")), "{headers:?}");

    let err = call(&t, "lambda", "Invoke", json!({"FunctionName": "broken", "Payload": {}})).await.unwrap_err();
    assert_eq!(err.kind.as_str(), "ValueError", "{err:?}");
    assert!(err.message.contains("bad input"), "{err:?}");
    let err = call(&t, "lambda", "Invoke", json!({"FunctionName": "throttled"})).await.unwrap_err();
    assert_eq!(err.kind.as_str(), "Lambda.TooManyRequestsException", "{err:?}");
    let err = call(&t, "lambda", "NoSuchAction", json!({})).await.unwrap_err();
    assert_eq!(err.kind.as_str(), "tool");
    assert!(err.message.contains("no operation `NoSuchAction`"), "{err:?}");
}

#[tokio::test]
async fn sqs_works_with_credentials_from_a_profile_file() {
    let dir = tempfile::tempdir().unwrap();
    let (credentials, config) = (dir.path().join("credentials"), dir.path().join("config"));
    std::fs::write(&credentials, "[emulator]\naws_access_key_id = testing\naws_secret_access_key = testing\n").unwrap();
    std::fs::write(&config, "[profile emulator]\nregion = us-east-1\n").unwrap();
    let t = AwsTool::with_settings(AwsSettings {
        endpoint: Some(endpoint()),
        endpoints: HashMap::new(),
        signer: None,
        chain: Some(baton_tools::aws_credentials::ChainEnv::from_pairs([
            ("AWS_PROFILE", "emulator".to_owned()),
            ("AWS_SHARED_CREDENTIALS_FILE", credentials.display().to_string()),
            ("AWS_CONFIG_FILE", config.display().to_string()),
        ])),
    });
    let q =
        call(&t, "sqs", "CreateQueue", json!({"QueueName": format!("aws-tool-profile-{}", suffix())})).await.unwrap();
    let url = q["QueueUrl"].as_str().unwrap().to_owned();
    let sent = call(&t, "sqs", "SendMessage", json!({"QueueUrl": url, "MessageBody": "from a profile"})).await.unwrap();
    assert!(sent["MessageId"].is_string(), "{sent}");
    let got = call(&t, "sqs", "ReceiveMessage", json!({"QueueUrl": url, "MaxNumberOfMessages": 1})).await.unwrap();
    assert_eq!(got["Messages"][0]["Body"], "from a profile");
}

/// Services outside the hand-written list are spoken to from the generated table (botocore's
/// metadata): Secrets Manager, SSM and CloudWatch Logs over awsJson 1.1, STS and IAM over the
/// query protocol, each against the emulator; their errors are named `<Service>.<Code>` with the
/// service as Step Functions writes it for SDK integrations (`SecretsManager.`, `Ssm.`), and
/// idempotency tokens the SDKs would fill are filled from the call's key.
#[tokio::test]
async fn any_awsjson_or_query_service_is_called_from_the_generated_table() {
    let t = tool(None);
    let name = format!("aws-tool-{}", suffix());
    // `ClientRequestToken` is left out, as Step Functions users leave it: the tool fills it from
    // the call's idempotency key, as the SDKs fill it with a fresh one.
    let mut create = AwsCall {
        service: "secretsmanager".into(),
        action: "CreateSecret".into(),
        params: Some(json!({"Name": name, "SecretString": "s3cr3t"})),
        role_arn: None,
    };
    baton_tools::aws::fill_idempotency_tokens(&mut create, "run-1/secret/0/1");
    let token = create.params.as_ref().and_then(|p| p["ClientRequestToken"].as_str()).unwrap_or("").to_owned();
    assert_eq!(token.len(), 36, "a UUID-shaped token: {token}");
    t.invoke(&create).await.unwrap();
    let got = call(&t, "secretsmanager", "GetSecretValue", json!({"SecretId": name})).await.unwrap();
    assert_eq!(got["SecretString"], "s3cr3t", "{got}");
    let missing = call(&t, "secretsmanager", "GetSecretValue", json!({"SecretId": format!("{name}-none")})).await;
    assert_eq!(missing.unwrap_err().kind, "SecretsManager.ResourceNotFoundException");

    let param = format!("/baton/{name}");
    call(&t, "ssm", "PutParameter", json!({"Name": param, "Value": "42", "Type": "String"})).await.unwrap();
    let got = call(&t, "ssm", "GetParameter", json!({"Name": param})).await.unwrap();
    assert_eq!(got["Parameter"]["Value"], "42", "{got}");
    let missing = call(&t, "ssm", "GetParameter", json!({"Name": format!("{param}-none")})).await;
    assert_eq!(missing.unwrap_err().kind, "Ssm.ParameterNotFound");

    call(&t, "cloudwatchlogs", "CreateLogGroup", json!({"logGroupName": name})).await.unwrap();
    let groups = call(&t, "cloudwatchlogs", "DescribeLogGroups", json!({"logGroupNamePrefix": name})).await.unwrap();
    assert_eq!(groups["logGroups"][0]["logGroupName"], name.as_str(), "{groups}");

    let me = call(&t, "sts", "GetCallerIdentity", json!({})).await.unwrap();
    assert!(me["Account"].is_string(), "{me}");
    let user = format!("u{}", &name[name.len() - 12..]);
    call(&t, "iam", "CreateUser", json!({"UserName": user})).await.unwrap();
    let got = call(&t, "iam", "GetUser", json!({"UserName": user})).await.unwrap();
    assert_eq!(got["User"]["UserName"], user.as_str(), "{got}");

    let unknown = call(&t, "route53", "ListHostedZones", json!({})).await.unwrap_err();
    assert!(unknown.message.contains("REST-XML services"), "{}", unknown.message);
}

#[tokio::test]
async fn rest_json_services_are_called_from_their_uri_templates() {
    let t = tool(None);
    // EventBridge Scheduler: URI labels, a query string, a body, and a named error.
    let name = format!("group-{}", suffix());
    let made =
        call(&t, "scheduler", "CreateScheduleGroup", json!({"Name": name, "Tags": [{"Key": "by", "Value": "test"}]}))
            .await
            .unwrap();
    assert!(made["ScheduleGroupArn"].as_str().unwrap().ends_with(&name), "{made}");
    let got = call(&t, "scheduler", "GetScheduleGroup", json!({"Name": name})).await.unwrap();
    assert_eq!(got["Name"], json!(name));
    let listed =
        call(&t, "scheduler", "ListScheduleGroups", json!({"NamePrefix": "group-", "MaxResults": 100})).await.unwrap();
    assert!(listed["ScheduleGroups"].as_array().unwrap().iter().any(|g| g["Name"] == json!(name)), "{listed}");
    call(&t, "scheduler", "DeleteScheduleGroup", json!({"Name": name})).await.unwrap();
    let gone = call(&t, "scheduler", "GetScheduleGroup", json!({"Name": name})).await.unwrap_err();
    assert_eq!(gone.kind.as_str(), "Scheduler.ResourceNotFoundException", "{gone:?}");
    // Lambda beyond `Invoke`: the same hand-written service, its other operations from the table.
    let functions = call(&t, "lambda", "ListFunctions", json!({"MaxItems": 50})).await.unwrap();
    assert!(functions["Functions"].is_array(), "{functions}");
    let missing =
        call(&t, "lambda", "GetFunction", json!({"FunctionName": format!("none-{}", suffix())})).await.unwrap_err();
    assert_eq!(missing.kind.as_str(), "Lambda.ResourceNotFoundException", "{missing:?}");
    // A member the URI needs is asked for by name.
    let no_name = call(&t, "scheduler", "GetScheduleGroup", json!({})).await.unwrap_err();
    assert!(no_name.message.contains("params.Name"), "{no_name:?}");
}

#[tokio::test]
async fn a_call_with_a_role_is_signed_with_the_roles_credentials() {
    let t = tool(None);
    let role = "arn:aws:iam::000000000000:role/baton-cross-account";
    let who = t
        .invoke(&AwsCall {
            service: "sts".into(),
            action: "GetCallerIdentity".into(),
            params: Some(json!({})),
            role_arn: Some(role.into()),
        })
        .await
        .unwrap();
    // The emulator answers for the temporary credentials' session: the assumed role.
    let arn = who["Arn"].as_str().unwrap();
    assert!(arn.contains("assumed-role/baton-cross-account/baton-baton-cross-account"), "{who}");
    let own = call(&t, "sts", "GetCallerIdentity", json!({})).await.unwrap();
    assert!(!own["Arn"].as_str().unwrap().contains("assumed-role"), "{own}");
}
