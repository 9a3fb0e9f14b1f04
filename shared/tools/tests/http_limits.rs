//! The `http` tool's response size limit, against a raw local server: a body over the call's
//! `max_response_bytes` fails the call with `response_too_large` whether the server announces
//! its size (`Content-Length`), streams it chunked without one, or announces less than it
//! sends; the worker stops reading at the limit, so the process never holds the whole body.

#![allow(clippy::unwrap_used)]

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::time::{Duration, Instant};

use baton_core::engine::ErrorKind;
use baton_runtime::ports::{Tool, ToolCall};
use baton_tools::HttpTool;
use serde_json::{Value, json};

/// Serves `/announced/<n>` (n bytes with a Content-Length), `/chunked/<n>` (n bytes in 64 KiB
/// chunks, no length) and `/endless` (chunks until the client hangs up).
fn server() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            std::thread::spawn(move || {
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut first = String::new();
                reader.read_line(&mut first).unwrap();
                let mut line = String::new();
                while reader.read_line(&mut line).is_ok_and(|n| n > 2) {
                    line.clear();
                }
                let path = first.split_whitespace().nth(1).unwrap_or("/").to_owned();
                let n = |p: &str| path.strip_prefix(p).and_then(|n| n.parse::<usize>().ok()).unwrap_or(0);
                let chunk = vec![b'x'; 64 * 1024];
                if path.starts_with("/announced/") {
                    let body = vec![b'x'; n("/announced/")];
                    let head =
                        format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", body.len());
                    let _ = stream.write_all(head.as_bytes()).and_then(|()| stream.write_all(&body));
                    return;
                }
                let _ = stream.write_all(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n");
                let mut left = if path == "/endless" { usize::MAX } else { n("/chunked/") };
                while left > 0 {
                    let len = left.min(chunk.len());
                    let framed = [format!("{len:x}\r\n").as_bytes(), &chunk[..len], b"\r\n"].concat();
                    if stream.write_all(&framed).is_err() {
                        return;
                    }
                    left -= len;
                }
                let _ = stream.write_all(b"0\r\n\r\n");
            });
        }
    });
    base
}

fn call(input: Value) -> ToolCall {
    ToolCall {
        run_id: "r1".into(),
        node: "fetch".into(),
        step: "fetch".into(),
        attempt: 1,
        tool: "http".into(),
        input,
        idempotency_key: "r1/fetch/0/1".into(),
        timeout_ms: Some(30_000),
        usage: Default::default(),
    }
}

fn input(url: String, limit: Option<u64>) -> Value {
    let mut input = json!({"url": url});
    if let Some(l) = limit {
        input["max_response_bytes"] = json!(l);
    }
    input
}

#[tokio::test]
async fn bodies_over_the_limit_fail_with_response_too_large_however_they_are_sent() {
    let base = server();
    let tool = HttpTool::new();
    let mib = 1024 * 1024;
    for path in ["/announced/2097152", "/chunked/2097152", "/endless"] {
        let started = Instant::now();
        let err = tool.call(&call(input(format!("{base}{path}"), Some(mib)))).await.unwrap_err();
        assert_eq!(err.kind, ErrorKind::ResponseTooLarge, "{path}: {err:?}");
        assert!(err.message.contains("1048576"), "{}", err.message);
        assert!(started.elapsed() < Duration::from_secs(10), "{path} stopped at the limit, not at the end");
    }
    // Under the limit (and under the 10 MiB default) the body is read as before.
    let ok = tool.call(&call(input(format!("{base}/chunked/300000"), Some(mib)))).await.unwrap();
    assert_eq!(ok["body"].as_str().map(str::len), Some(300_000));
    let ok = tool.call(&call(input(format!("{base}/announced/5000000"), None))).await.unwrap();
    assert_eq!(ok["body"].as_str().map(str::len), Some(5_000_000));
    let err = tool.call(&call(input(format!("{base}/endless"), None))).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::ResponseTooLarge, "the 10 MiB default holds: {err:?}");
}
