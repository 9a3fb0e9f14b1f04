//! The OTLP trace option: with `OTEL_EXPORTER_OTLP_ENDPOINT` set, the spans the functions log
//! with (`run_id`, `step`, `attempt`) reach a collector over OTLP/HTTP when flushed.

// The helpers (servers, process runners) fail the test loudly on any surprise.
#![allow(clippy::unwrap_used)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::mpsc;
use std::time::Duration;

/// A collector stand-in: records the path and body of each POST and answers 200.
fn collector() -> (String, mpsc::Receiver<(String, String)>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut line = String::new();
            reader.read_line(&mut line).unwrap();
            let path = line.split(' ').nth(1).unwrap_or_default().to_owned();
            let mut len = 0;
            loop {
                let mut h = String::new();
                reader.read_line(&mut h).unwrap();
                if h.trim().is_empty() {
                    break;
                }
                if let Some(v) = h.to_ascii_lowercase().strip_prefix("content-length:") {
                    len = v.trim().parse().unwrap();
                }
            }
            let mut body = vec![0; len];
            reader.read_exact(&mut body).unwrap();
            let _ = tx.send((path, String::from_utf8_lossy(&body).into_owned()));
            let _ =
                stream.write_all(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}");
        }
    });
    (base, rx)
}

/// Runs the test named `name` of this binary in a child process with `env`: the environment of
/// a process can only be set before it starts (tests run on threads of one process).
fn in_child(name: &str, env: &[(&str, &str)]) -> std::process::Output {
    let mut cmd = std::process::Command::new(std::env::current_exe().unwrap());
    cmd.args(["--exact", name, "--nocapture"]).env("BATON_OTLP_CHILD", "1");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

#[test]
fn spans_with_run_step_and_attempt_reach_the_collector() {
    let (base, seen) = collector();
    let out = in_child(
        "child_logs_a_step_span",
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", &base),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json"),
            ("OTEL_SERVICE_NAME", "baton-test"),
        ],
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let (path, body) = seen.recv_timeout(Duration::from_secs(10)).expect("the collector got no export");
    assert_eq!(path, "/v1/traces");
    for needle in ["run-otlp-1", "\"fetch\"", "baton-test", "\"step\""] {
        assert!(body.contains(needle), "`{needle}` is not in the export: {body}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn child_logs_a_step_span() {
    if std::env::var("BATON_OTLP_CHILD").is_err() {
        return;
    }
    let telemetry = baton_aws::handlers::init_lambda_logging("baton-coordinator").unwrap();
    assert!(telemetry.exports_traces());
    {
        let span = tracing::info_span!("step", run_id = "run-otlp-1", step = "fetch", attempt = 2);
        let _entered = span.enter();
        tracing::info!("calling the tool");
    }
    telemetry.flush().await;
}

#[test]
fn an_unknown_protocol_is_a_clear_error() {
    let out = in_child(
        "child_reports_protocol_error",
        &[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:9"), ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")],
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("`grpc` is not supported: use `http/protobuf` or `http/json`"), "{text}");
}

#[test]
fn child_reports_protocol_error() {
    if std::env::var("BATON_OTLP_CHILD").is_err() {
        return;
    }
    match baton_aws::telemetry::otlp_provider("x") {
        Err(e) => println!("{e}"),
        Ok(_) => println!("no error"),
    }
}
