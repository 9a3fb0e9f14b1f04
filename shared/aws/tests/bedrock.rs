//! The `llm` tool with the Bedrock provider against a local server that speaks the Converse
//! REST-JSON protocol as documented: `POST /model/{modelId}/converse` (the id URL-encoded),
//! SigV4-signed, a JSON body with `system`, `messages`, `toolConfig` and `inferenceConfig`; a
//! response with `output.message.content[].toolUse.input`, `stopReason` and `usage`; errors as
//! a status with `x-amzn-ErrorType` and `{"message": ...}`.

// The helpers (the scripted server) fail the test loudly on any surprise.
#![allow(clippy::unwrap_used)]

use std::io::BufReader;
use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

use aws_config::BehaviorVersion;
use aws_sdk_bedrockruntime::config::{Credentials, Region};
use baton_aws::bedrock::BedrockChat;
use baton_runtime::ports::{Tool, ToolCall, ToolOutcome};
use baton_tools::LlmTool;
use serde_json::{Value, json};

#[path = "../../tools/tests/support/scripted_server.rs"]
mod scripted_server;

use scripted_server::{Reply, Server, read_request};

const MODEL: &str = "anthropic.claude-3-haiku-20240307-v1:0";
const PATH: &str = "/model/anthropic.claude-3-haiku-20240307-v1%3A0/converse";

/// A Converse response whose answer is the forced tool's input.
fn tool_answer(input: Value, stop: &str) -> Value {
    json!({
        "output": {"message": {"role": "assistant", "content": [
            {"toolUse": {"toolUseId": "t1", "name": "answer", "input": input}}
        ]}},
        "stopReason": stop,
        "usage": {"inputTokens": 12, "outputTokens": 7, "totalTokens": 19},
        "metrics": {"latencyMs": 5}
    })
}

/// Answers the n-th request with `script[n]` (the last reply once the script runs out).
fn serve(script: Vec<Reply>) -> Server {
    scripted_server::serve(script, None)
}

async fn config(base: &str) -> aws_config::SdkConfig {
    aws_config::defaults(BehaviorVersion::latest())
        .endpoint_url(base)
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("test", "test", None, None, "test"))
        .load()
        .await
}

fn call(max_repairs: u64, timeout_ms: u64) -> ToolCall {
    ToolCall {
        run_id: "r1".into(),
        node: "extract".into(),
        step: "extract".into(),
        attempt: 1,
        tool: "llm".into(),
        input: json!({
            "provider": "bedrock",
            "model": MODEL,
            "prompt": "Order A-1042 is late and I want my money back! jane@example.com",
            "output_schema": {
                "type": "object", "additionalProperties": false, "required": ["order_id", "email"],
                "properties": {"order_id": {"type": "string"}, "email": {"type": "string"}}
            },
            "temperature": 0,
            "max_tokens": 200,
            "max_repairs": max_repairs,
            "sensitive": ["email"],
        }),
        idempotency_key: "r1/extract/0/1".into(),
        timeout_ms: Some(timeout_ms),
        usage: Default::default(),
    }
}

async fn run(base: &str, call: &ToolCall) -> ToolOutcome {
    let tool = LlmTool::with(Arc::new(BedrockChat::new(&config(base).await)));
    tool.run(call).await
}

#[tokio::test]
async fn an_invalid_answer_is_repaired_through_converse_and_audited() {
    let s = serve(vec![
        (200, vec![], tool_answer(json!({"order_id": "A-1042"}), "tool_use")),
        (200, vec![], tool_answer(json!({"order_id": "A-1042", "email": "jane@example.com"}), "tool_use")),
    ]);
    let out = run(&s.base, &call(2, 10_000)).await;
    assert_eq!(out.result.unwrap(), json!({"order_id": "A-1042", "email": "jane@example.com"}));

    let reqs = s.seen();
    assert_eq!(reqs.len(), 2);
    let first = &reqs[0];
    // The SDK's real request: the model id URL-encoded in the path, SigV4 for `bedrock`.
    assert_eq!((first.method.as_str(), first.path.as_str()), ("POST", PATH));
    assert_eq!(first.headers["content-type"], "application/json");
    let auth = &first.headers["authorization"];
    assert!(auth.starts_with("AWS4-HMAC-SHA256 Credential=test/"), "{auth}");
    assert!(auth.contains("/us-east-1/bedrock/aws4_request"), "{auth}");
    assert!(first.headers.contains_key("x-amz-date"), "{:?}", first.headers);
    assert_eq!(first.headers["amz-sdk-request"], "attempt=1; max=1", "the SDK's own retries are off");

    let b = &first.body;
    assert_eq!(b["toolConfig"]["toolChoice"]["tool"]["name"], "answer");
    assert_eq!(b["toolConfig"]["tools"][0]["toolSpec"]["name"], "answer");
    assert_eq!(b["toolConfig"]["tools"][0]["toolSpec"]["description"], "Return the answer as the tool's input");
    // The step's schema, its unbounded strings capped (`max_string_length`, default 1,000).
    let mut sent = call(2, 10_000).input["output_schema"].clone();
    for field in ["order_id", "email"] {
        sent["properties"][field]["maxLength"] = json!(1_000);
    }
    assert_eq!(b["toolConfig"]["tools"][0]["toolSpec"]["inputSchema"]["json"], sent);
    assert!(b["system"][0]["text"].as_str().unwrap().contains("\"order_id\""), "the schema is in the system text");
    assert_eq!(
        b["messages"][0],
        json!({"role": "user", "content": [{"text": "Order A-1042 is late and I want my money back! jane@example.com"}]})
    );
    assert_eq!(b["messages"].as_array().unwrap().len(), 1);
    assert_eq!(b["inferenceConfig"]["maxTokens"], 200);
    assert_eq!(b["inferenceConfig"]["temperature"].as_f64(), Some(0.0));
    assert!(b.get("modelId").is_none(), "the model id travels in the path only: {b}");

    // The repair request carries the invalid answer as the assistant's turn and the validator's words.
    let m = &reqs[1].body["messages"];
    assert_eq!(m.as_array().unwrap().len(), 3, "{m}");
    assert_eq!(m[1]["role"], "assistant");
    let answered: Value = serde_json::from_str(m[1]["content"][0]["text"].as_str().unwrap()).unwrap();
    assert_eq!(answered, json!({"order_id": "A-1042"}));
    assert_eq!(m[2]["role"], "user");
    assert!(m[2]["content"][0]["text"].as_str().unwrap().contains("\"email\" is a required property"), "{m}");
    assert_eq!(reqs[1].path, PATH);

    let report = out.report.expect("a report");
    assert_eq!(report["provider"], "bedrock");
    assert_eq!(report["model"], MODEL);
    assert_eq!((report["requests"].as_u64(), report["repairs"].as_u64()), (Some(2), Some(1)));
    assert_eq!(report["usage"], json!({"prompt_tokens": 24, "completion_tokens": 14, "total_tokens": 38}));
    // Bedrock reports no cost: the default price table prices the model.
    assert_eq!(report["cost_source"], "price_table");
    let usd = report["cost_usd"].as_f64().expect("priced");
    assert!((usd - (24.0 * 0.25 + 14.0 * 1.25) / 1e6).abs() < 1e-12, "{usd}");
    assert_eq!(report["answers"][0]["finish_reason"], "tool_use");
    assert_eq!(report["answers"][0]["valid"], false);
    assert_eq!(report["answers"][1]["raw"]["email"], "[redacted]");
}

#[tokio::test]
async fn a_model_that_answers_in_text_is_read_from_its_text_blocks() {
    let text = json!({
        "output": {"message": {"role": "assistant", "content": [
            {"text": "{\"order_id\": \"A-1\", "}, {"text": "\"email\": \"a@b.c\"}"}
        ]}},
        "stopReason": "end_turn",
        "usage": {"inputTokens": 3, "outputTokens": 4, "totalTokens": 7},
        "metrics": {"latencyMs": 1}
    });
    let s = serve(vec![(200, vec![], text)]);
    let out = run(&s.base, &call(0, 10_000)).await;
    assert_eq!(out.result.unwrap(), json!({"order_id": "A-1", "email": "a@b.c"}));
    assert_eq!(out.report.unwrap()["answers"][0]["finish_reason"], "end_turn");
}

#[tokio::test]
async fn a_max_tokens_stop_is_reported_as_cut_off() {
    let s = serve(vec![(200, vec![], tool_answer(json!({"order_id": "A-1042"}), "max_tokens"))]);
    let out = run(&s.base, &call(0, 10_000)).await;
    let err = out.result.unwrap_err();
    assert_eq!(err.kind, "llm_invalid_output");
    assert!(err.message.contains("cut off at max_tokens"), "{}", err.message);
    assert_eq!(out.report.unwrap()["answers"][0]["finish_reason"], "max_tokens");
}

/// A REST-JSON error: the code in `x-amzn-ErrorType`, the message in the body.
fn error(status: u16, code: &'static str, message: &str) -> Reply {
    (status, vec![("x-amzn-ErrorType", code), ("x-amzn-RequestId", "req-42")], json!({"message": message}))
}

#[tokio::test]
async fn bedrock_errors_map_to_the_step_error_kinds() {
    let cases = [
        (error(429, "ThrottlingException", "Too many requests"), "http_429"),
        (error(503, "ServiceUnavailableException", "Service unavailable"), "http_5xx"),
        (error(500, "InternalServerException", "Internal failure"), "http_5xx"),
        (error(429, "ModelNotReadyException", "Model is not ready"), "http_5xx"),
        (error(424, "ModelErrorException", "The model failed"), "http_5xx"),
        (error(408, "ModelTimeoutException", "Model timed out"), "timeout"),
        (error(400, "ValidationException", "Malformed input request"), "http_4xx"),
        (error(403, "AccessDeniedException", "You don't have access to the model"), "http_4xx"),
        (error(404, "ResourceNotFoundException", "Model not found"), "http_4xx"),
        // A code this SDK version does not model: classified by status.
        (error(502, "BrandNewException", "Something new"), "http_5xx"),
    ];
    for ((status, headers, body), kind) in cases {
        let said = body["message"].as_str().unwrap().to_owned();
        let code = headers[0].1;
        let s = serve(vec![(status, headers, body)]);
        let err = run(&s.base, &call(2, 10_000)).await.result.unwrap_err();
        eprintln!("{code} -> {}: {}", err.kind, err.message);
        assert_eq!(err.kind, kind, "{code}: {}", err.message);
        assert_eq!(err.retry_after_ms, None, "Bedrock sends no Retry-After");
        for part in [MODEL, code, said.as_str(), "req-42"] {
            assert!(err.message.contains(part), "{code}: `{part}` not in {}", err.message);
        }
        assert_eq!(s.seen().len(), 1, "{code}: the SDK does not retry on its own; the step's policy does");
    }
}

#[tokio::test]
async fn a_silent_server_times_out_and_a_closed_port_fails_to_connect() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let stream = stream.unwrap();
            let _ = read_request(&mut BufReader::new(stream.try_clone().unwrap()));
            std::thread::sleep(Duration::from_secs(5));
            drop(stream);
        }
    });
    let started = std::time::Instant::now();
    let err = run(&base, &call(2, 300)).await.result.unwrap_err();
    eprintln!("silent server -> {}: {}", err.kind, err.message);
    assert_eq!(err.kind, "timeout", "{}", err.message);
    assert!(err.message.contains(MODEL) && err.message.contains("300 ms"), "{}", err.message);
    assert!(started.elapsed() < Duration::from_secs(3), "the step's timeout bounds the request");

    let closed = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", l.local_addr().unwrap())
    };
    let err = run(&closed, &call(2, 10_000)).await.result.unwrap_err();
    eprintln!("closed port -> {}: {}", err.kind, err.message);
    assert_eq!(err.kind, "connect", "{}", err.message);
    assert!(err.message.contains(MODEL), "{}", err.message);
}
