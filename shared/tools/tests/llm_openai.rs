//! The `llm` tool against a local server that speaks the OpenAI chat completions protocol as
//! documented: request JSON (`model`, `messages`, `response_format: json_schema`, bearer key),
//! response JSON (`choices[].message.content` or `tool_calls`, `finish_reason`, `usage`), and
//! 429 with `Retry-After` / 5xx errors.

// The helpers (the scripted server) fail the test loudly on any surprise.
#![allow(clippy::unwrap_used)]

use baton_runtime::ports::{Tool, ToolCall};
use baton_tools::LlmTool;
use serde_json::{Value, json};

#[path = "support/scripted_server.rs"]
mod scripted_server;

use scripted_server::{Reply, Server};

type Script = Vec<Reply>;

fn completion(content: &str, finish: &str) -> Value {
    json!({
        "id": "chatcmpl-1", "object": "chat.completion", "created": 1764000000, "model": "test-model-2026",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": finish}],
        "usage": {"prompt_tokens": 50, "completion_tokens": 10, "total_tokens": 60}
    })
}

/// The scripted server, every request a chat completion; `base` ends in `/v1`.
fn serve(script: Script) -> Server {
    let mut s = scripted_server::serve(script, Some(("POST", "/v1/chat/completions")));
    s.base.push_str("/v1");
    s
}

fn call(max_repairs: u64) -> ToolCall {
    ToolCall {
        run_id: "r1".into(),
        node: "extract".into(),
        step: "extract".into(),
        attempt: 1,
        tool: "llm".into(),
        input: json!({
            "model": "gpt-4o-mini",
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
        timeout_ms: Some(10_000),
        usage: Default::default(),
    }
}

#[tokio::test]
async fn an_invalid_answer_is_repaired_with_the_validation_errors_and_audited() {
    let s = serve(vec![
        (200, vec![], completion(r#"{"order_id": "A-1042"}"#, "stop")),
        (200, vec![], completion(r#"{"order_id": "A-1042", "email": "jane@example.com"}"#, "stop")),
    ]);
    let tool = LlmTool::new(&s.base, Some("sk-test-key".into()));
    let out = tool.run(&call(2)).await;
    assert_eq!(out.result.unwrap(), json!({"order_id": "A-1042", "email": "jane@example.com"}));
    let reqs: Vec<(Option<String>, Value)> =
        s.seen().into_iter().map(|r| (r.headers.get("authorization").cloned(), r.body)).collect();
    assert_eq!(reqs.len(), 2);
    let (auth, first) = &reqs[0];
    assert_eq!(auth.as_deref(), Some("Bearer sk-test-key"));
    assert_eq!(first["model"], "gpt-4o-mini");
    assert_eq!(first["temperature"], 0.0);
    assert_eq!(first["max_tokens"], 200);
    assert_eq!(first["response_format"]["type"], "json_schema");
    assert_eq!(first["response_format"]["json_schema"]["schema"]["required"], json!(["order_id", "email"]));
    assert_eq!(first["messages"][0]["role"], "system");
    assert!(
        first["messages"][0]["content"].as_str().unwrap().contains("\"order_id\""),
        "the schema is in the system message"
    );
    assert_eq!(
        first["messages"][1],
        json!({"role": "user", "content": "Order A-1042 is late and I want my money back! jane@example.com"})
    );
    // The repair request carries the invalid answer and the validator's words.
    let second = &reqs[1].1["messages"];
    assert_eq!(second[2]["role"], "assistant");
    assert!(second[3]["content"].as_str().unwrap().contains("\"email\" is a required property"), "{second}");

    let report = out.report.expect("a report");
    assert_eq!(report["repairs"], 1);
    assert_eq!(report["requests"], 2);
    assert_eq!(report["model"], "test-model-2026");
    assert_eq!(report["usage"], json!({"prompt_tokens": 100, "completion_tokens": 20, "total_tokens": 120}));
    assert_eq!(report["answers"][0]["valid"], false);
    assert_eq!(report["answers"][1]["raw"]["email"], "[redacted]", "sensitive fields are redacted in the audit");
    assert!(!report.to_string().contains("sk-test-key"), "the key never reaches the audit");
    // The server reports no cost: the default price table prices the model asked for.
    assert_eq!(report["cost_source"], "price_table");
    let cost = report["cost_usd"].as_f64().expect("priced");
    assert!((cost - (100.0 * 0.15 + 20.0 * 0.60) / 1e6).abs() < 1e-12, "{cost}");
}

#[tokio::test]
async fn a_price_table_of_ones_own_prices_the_model_that_answered() {
    let s = serve(vec![(200, vec![], completion(r#"{"order_id": "A-1", "email": "a@b.c"}"#, "stop"))]);
    let table = baton_tools::Prices::parse(
        r#"{"test-model-2026": {"input_per_mtok": 1000000, "output_per_mtok": 0}}"#,
        "own table",
    )
    .unwrap();
    let out = LlmTool::new(&s.base, None).with_prices(table).run(&call(0)).await;
    let report = out.report.expect("a report");
    assert_eq!((report["cost_usd"].as_f64(), &report["cost_source"]), (Some(50.0), &json!("price_table")));
}

#[tokio::test]
async fn exhausted_repairs_fail_with_llm_invalid_output_and_keep_the_report() {
    let s = serve(vec![(200, vec![], completion("not json at all", "stop"))]);
    let out = LlmTool::new(&s.base, None).run(&call(1)).await;
    let err = out.result.unwrap_err();
    assert_eq!(err.kind, "llm_invalid_output");
    assert!(err.message.contains("not JSON"), "{}", err.message);
    assert_eq!(s.seen().len(), 2, "one answer and one repair");
    assert!(!s.seen()[0].headers.contains_key("authorization"), "no key, no Authorization header");
    let report = out.report.unwrap();
    assert_eq!(report["answers"].as_array().unwrap().len(), 2);
    assert_eq!(report["answers"][1]["raw"], "not json at all");
}

#[tokio::test]
async fn rate_limits_and_server_errors_map_to_the_retryable_http_kinds() {
    let s = serve(vec![(
        429,
        vec![("Retry-After", "7")],
        json!({"error": {"message": "Rate limit reached", "type": "requests"}}),
    )]);
    let err = LlmTool::new(&s.base, None).run(&call(2)).await.result.unwrap_err();
    assert_eq!((err.kind.as_str(), err.retry_after_ms), ("http_429", Some(7_000)));
    let s = serve(vec![(503, vec![], json!({"error": {"message": "overloaded"}}))]);
    let err = LlmTool::new(&s.base, None).run(&call(2)).await.result.unwrap_err();
    assert_eq!(err.kind, "http_5xx");
    let s = serve(vec![(401, vec![], json!({"error": {"message": "Incorrect API key provided"}}))]);
    let err = LlmTool::new(&s.base, None).run(&call(2)).await.result.unwrap_err();
    assert_eq!(err.kind, "http_4xx");
    assert!(err.message.contains("Incorrect API key"), "{}", err.message);
}

#[tokio::test]
async fn an_answer_given_as_a_tool_call_is_accepted_and_a_truncated_one_is_named() {
    let tool_answer = json!({
        "id": "c", "object": "chat.completion", "model": "m",
        "choices": [{"index": 0, "finish_reason": "tool_calls", "message": {"role": "assistant", "content": null,
            "tool_calls": [{"id": "call_1", "type": "function", "function": {"name": "answer", "arguments": "{\"order_id\":\"A-1\",\"email\":\"a@b.c\"}"}}]}}],
        "usage": {"prompt_tokens": 5, "completion_tokens": 5, "total_tokens": 10}
    });
    let s = serve(vec![(200, vec![], tool_answer)]);
    assert_eq!(LlmTool::new(&s.base, None).run(&call(0)).await.result.unwrap()["order_id"], "A-1");
    let s = serve(vec![(200, vec![], completion(r#"{"order_id": "A-1", "em"#, "length"))]);
    let err = LlmTool::new(&s.base, None).run(&call(0)).await.result.unwrap_err();
    assert!(err.message.contains("cut off at max_tokens"), "{}", err.message);
}

#[tokio::test]
async fn a_call_over_its_budget_stops_before_another_repair_and_says_by_how_much() {
    // Each request costs 60 tokens; the first answer is invalid, so a repair would follow.
    let s = serve(vec![
        (200, vec![], completion(r#"{"order_id": "A-1"}"#, "stop")),
        (200, vec![], completion(r#"{"order_id": "A-1", "email": "a@b.c"}"#, "stop")),
    ]);
    let mut c = call(2);
    c.input["budget"] = json!({"max_tokens": 100});
    let out = LlmTool::new(&s.base, None).run(&c).await;
    let e = out.result.unwrap_err();
    assert_eq!(e.kind.as_str(), "budget_exceeded");
    assert!(e.message.contains("120 tokens > max_tokens 100"), "{}", e.message);
    assert_eq!(s.seen().len(), 2, "the repair that went over is the last request");
    assert_eq!(out.report.expect("the figures are in the report")["usage"]["total_tokens"], 120);

    let s = serve(vec![(200, vec![], completion(r#"{"order_id": "A-1", "email": "a@b.c"}"#, "stop"))]);
    let mut c = call(0);
    c.input["budget"] = json!({"max_usd": 0.000001});
    let e = LlmTool::new(&s.base, None).run(&c).await.result.unwrap_err();
    assert!(e.message.contains("USD > max_usd 0.000001"), "priced from the table: {}", e.message);
}

/// llama.cpp's server refusing a request larger than its context.
fn overflow() -> (u16, Vec<(&'static str, &'static str)>, Value) {
    (
        400,
        vec![],
        json!({"error": {"code": 400, "type": "exceed_context_size_error",
            "message": "request (6144 tokens) exceeds the available context size (4096 tokens), try increasing it"}}),
    )
}

#[tokio::test]
async fn a_context_overflow_gets_one_trimmed_retry_then_fails_as_llm_context_exceeded() {
    // Trimmed to fit, the retry succeeds, and the report says what was cut.
    let mut c = call(2);
    c.input["prompt"] = json!(format!("Order A-1042 is late. {}", "Some more words of the long email. ".repeat(400)));
    let s = serve(vec![overflow(), (200, vec![], completion(r#"{"order_id": "A-1042", "email": "j@x.io"}"#, "stop"))]);
    let out = LlmTool::new(&s.base, None).run(&c).await;
    assert_eq!(out.result.unwrap(), json!({"order_id": "A-1042", "email": "j@x.io"}));
    let seen = s.seen();
    let sent = |i: usize| seen[i].body["messages"][1]["content"].as_str().unwrap().chars().count();
    let (before, after) = (sent(0), sent(1));
    // 4096 / 6144 of it, less a quarter for the answer: half the prompt, and the note.
    assert!(after < before * 55 / 100 && after > before * 45 / 100, "{before} -> {after}");
    assert!(seen[1].body["messages"][1]["content"].as_str().unwrap().contains("was cut to fit the model's context"));
    let report = out.report.unwrap();
    assert_eq!(
        (report["trimmed"]["chars_before"].as_u64(), report["requests"].as_u64()),
        (Some(before as u64), Some(2))
    );

    // Still too large: the step fails with its own kind after exactly one trimmed retry.
    let s = serve(vec![overflow()]);
    let err = LlmTool::new(&s.base, None).run(&call(2)).await.result.unwrap_err();
    assert_eq!(err.kind, "llm_context_exceeded");
    assert!(err.message.contains("even trimmed"), "{}", err.message);
    assert_eq!(s.seen().len(), 2);
}

#[tokio::test]
async fn a_repair_resends_a_runaway_answer_short_and_strings_are_capped_in_the_sent_schema() {
    let runaway = format!(r#"{{"order_id": "{}"}}"#, "A-1042 ".repeat(1_000));
    let s = serve(vec![
        (200, vec![], completion(&runaway, "stop")),
        (200, vec![], completion(r#"{"order_id": "A-1042", "email": "j@x.io"}"#, "stop")),
    ]);
    let out = LlmTool::new(&s.base, None).run(&call(2)).await;
    assert!(out.result.is_ok(), "{:?}", out.result);
    let seen = s.seen();
    let schema = &seen[0].body["response_format"]["json_schema"]["schema"];
    assert_eq!(schema["properties"]["order_id"]["maxLength"], 1_000, "the default cap");
    let repair = &seen[1].body["messages"];
    assert_eq!(repair.as_array().unwrap().len(), 4, "system, prompt, the answer, the repair: {repair}");
    let quoted = repair[2]["content"].as_str().unwrap();
    assert!(quoted.chars().count() < 700 && quoted.ends_with("more characters cut]"), "{quoted}");

    // `max_string_length: 0` sends the schema as written.
    let mut c = call(0);
    c.input["max_string_length"] = json!(0);
    let s = serve(vec![(200, vec![], completion(r#"{"order_id": "A-1", "email": "a@b.c"}"#, "stop"))]);
    LlmTool::new(&s.base, None).run(&c).await.result.unwrap();
    assert!(
        s.seen()[0].body["response_format"]["json_schema"]["schema"]["properties"]["order_id"]
            .get("maxLength")
            .is_none()
    );
}
