//! The coordinator binary under the Lambda Runtime API: a loopback server plays Lambda's side of
//! the protocol (hands out one SQS event, takes the response), so the test exercises the very
//! binary `cargo lambda build` packages, with its real wiring to the emulated stack.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use serde_json::{Value, json};

fn read_request(reader: &mut BufReader<TcpStream>) -> Option<(String, String, String)> {
    let mut line = String::new();
    if reader.read_line(&mut line).ok()? == 0 {
        return None;
    }
    let mut parts = line.split_whitespace();
    let (method, path) = (parts.next()?.to_owned(), parts.next()?.to_owned());
    let mut len = 0usize;
    loop {
        let mut h = String::new();
        reader.read_line(&mut h).ok()?;
        if h.trim().is_empty() {
            break;
        }
        if let Some(v) = h.to_ascii_lowercase().strip_prefix("content-length:") {
            len = v.trim().parse().unwrap_or(0);
        }
    }
    let mut body = vec![0; len];
    reader.read_exact(&mut body).ok()?;
    Some((method, path, String::from_utf8_lossy(&body).into_owned()))
}

/// Serves one invocation of `event`; sends the function's response body on `tx`.
fn runtime_api(event: Value, tx: mpsc::Sender<String>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr").to_string();
    std::thread::spawn(move || {
        let mut served = false;
        for stream in listener.incoming().flatten() {
            let tx = tx.clone();
            let event = event.clone();
            let first = !served;
            served = true;
            std::thread::spawn(move || {
                let mut reader = BufReader::new(stream.try_clone().expect("clone"));
                let mut out = stream;
                let mut handed_out = !first;
                while let Some((method, path, body)) = read_request(&mut reader) {
                    if method == "GET" && path.ends_with("/invocation/next") {
                        if handed_out {
                            // No more work: hold the poll open until the test ends.
                            std::thread::sleep(Duration::from_secs(300));
                            return;
                        }
                        handed_out = true;
                        let payload = event.to_string();
                        let deadline = std::time::SystemTime::now()
                            .duration_since(std::time::UNIX_EPOCH)
                            .map(|d| d.as_millis() + 60_000)
                            .unwrap_or(0);
                        let _ = write!(
                            out,
                            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nLambda-Runtime-Aws-Request-Id: req-1\r\nLambda-Runtime-Deadline-Ms: {deadline}\r\nLambda-Runtime-Invoked-Function-Arn: arn:aws:lambda:us-east-1:000000000000:function:coordinator\r\nLambda-Runtime-Trace-Id: Root=1-0-0\r\nContent-Length: {}\r\n\r\n{payload}",
                            payload.len()
                        );
                    } else {
                        if path.contains("/invocation/req-1/") {
                            let _ = tx.send(format!("{path} {body}"));
                        }
                        let _ = write!(out, "HTTP/1.1 202 Accepted\r\nContent-Length: 2\r\n\r\n{{}}");
                    }
                }
            });
        }
    });
    addr
}

/// The emulator `localstack/up` starts (`BATON_TEST_AWS_ENDPOINT`, default http://127.0.0.1:4566).
fn aws_endpoint() -> String {
    std::env::var("BATON_TEST_AWS_ENDPOINT").unwrap_or_else(|_| "http://127.0.0.1:4566".into())
}

/// DynamoDB: `BATON_TEST_DYNAMODB_ENDPOINT` (DynamoDB Local beside moto), else the emulator.
fn ddb_endpoint() -> String {
    std::env::var("BATON_TEST_DYNAMODB_ENDPOINT").unwrap_or_else(|_| aws_endpoint())
}

fn endpoints_up() -> bool {
    [aws_endpoint(), ddb_endpoint()].iter().all(|e| {
        let addr = e.trim_start_matches("http://").trim_end_matches('/');
        addr.parse().ok().is_some_and(|a| TcpStream::connect_timeout(&a, Duration::from_millis(300)).is_ok())
    })
}

#[test]
fn the_coordinator_binary_answers_an_sqs_batch_over_the_runtime_api() {
    if !endpoints_up() {
        let up = concat!(env!("CARGO_MANIFEST_DIR"), "/../../localstack/up");
        assert!(Command::new(up).status().expect("localstack/up").success());
    }
    let marker = format!("poison-{}", std::process::id());
    let record = |id: &str, body: &str| {
        json!({"messageId": id, "receiptHandle": "r", "body": body, "attributes": {"ApproximateReceiveCount": "1"},
               "messageAttributes": {}, "md5OfBody": "", "eventSource": "aws:sqs",
               "eventSourceARN": "arn:aws:sqs:us-east-1:000000000000:baton-dev-coordinator", "awsRegion": "us-east-1"})
    };
    let event = json!({"Records": [record("m1", &format!("{{{marker}")), record("m2", r#"{"kind":"sweep"}"#)]});
    let (tx, rx) = mpsc::channel();
    let api = runtime_api(event, tx);
    let mut child = Command::new(env!("CARGO_BIN_EXE_coordinator"))
        .env("AWS_LAMBDA_RUNTIME_API", &api)
        .env("AWS_LAMBDA_FUNCTION_NAME", "coordinator")
        .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
        .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128")
        .env("AWS_LAMBDA_LOG_GROUP_NAME", "/aws/lambda/coordinator")
        .env("AWS_LAMBDA_LOG_STREAM_NAME", "test")
        .env("BATON_STACK", "baton-dev")
        .env("AWS_ENDPOINT_URL", aws_endpoint())
        .env("AWS_ENDPOINT_URL_DYNAMODB", ddb_endpoint())
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("AWS_REGION", "us-east-1")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("the coordinator binary starts");
    let answer = rx.recv_timeout(Duration::from_secs(60));
    let _ = child.kill();
    let _ = child.wait();
    let answer = answer.expect("the function answered the invocation");
    assert!(answer.starts_with("/2018-06-01/runtime/invocation/req-1/response"), "{answer}");
    let body: Value = serde_json::from_str(answer.split_once(' ').map(|x| x.1).unwrap_or("")).expect("JSON response");
    assert_eq!(body, json!({"batchItemFailures": []}), "the poison message was dead-lettered, the sweep handled");

    // The poison message is on the DLQ with its reason, as any SQS client sees it.
    let endpoint = aws_endpoint();
    let script = format!(
        "import boto3\nq = boto3.client('sqs', endpoint_url='{endpoint}', region_name='us-east-1', aws_access_key_id='test', aws_secret_access_key='test')\nurl = q.get_queue_url(QueueName='baton-dev-coordinator-dlq')['QueueUrl']\nfor _ in range(10):\n    for m in q.receive_message(QueueUrl=url, MaxNumberOfMessages=10, MessageAttributeNames=['All']).get('Messages', []):\n        if '{marker}' in m['Body']:\n            print(m['MessageAttributes']['baton-reason']['StringValue'])\n            raise SystemExit(0)\nraise SystemExit('not on the DLQ')\n"
    );
    let localstack = concat!(env!("CARGO_MANIFEST_DIR"), "/../../localstack/.venv-localstack/bin/python");
    let moto = concat!(env!("CARGO_MANIFEST_DIR"), "/../../localstack/.venv/bin/python");
    let python = if std::path::Path::new(localstack).exists() { localstack } else { moto };
    let out = Command::new(python).arg("-c").arg(script).output().expect("python");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("not JSON"), "{}", String::from_utf8_lossy(&out.stdout));
}
