//! Test support: a scripted HTTP server on loopback that records what it receives, and helpers
//! to run the `baton` binary against a temporary state directory.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use serde_json::Value;

pub mod scenarios;

/// One request the server received.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub path: String,
    pub idempotency_key: Option<String>,
    pub body: String,
    /// Headers, names in lower case.
    pub headers: Vec<(String, String)>,
}

/// What the server answers.
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
    pub delay: Duration,
}

impl Reply {
    pub fn json(status: u16, body: &str) -> Self {
        Self {
            status,
            headers: vec![("Content-Type".into(), "application/json".into())],
            body: body.into(),
            delay: Duration::ZERO,
        }
    }
    pub fn with_header(mut self, k: &str, v: &str) -> Self {
        self.headers.push((k.into(), v.into()));
        self
    }
    pub fn after(mut self, d: Duration) -> Self {
        self.delay = d;
        self
    }
}

type Handler = dyn Fn(&Seen, usize) -> Reply + Send + Sync;

/// A loopback HTTP/1.1 server; `handler(request, n)` gets the n-th (0-based) request to that path.
pub struct Server {
    pub base: String,
    pub seen: Arc<Mutex<Vec<Seen>>>,
}

impl Server {
    pub fn start(handler: impl Fn(&Seen, usize) -> Reply + Send + Sync + 'static) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let base = format!("http://{}", listener.local_addr().expect("addr"));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let handler: Arc<Handler> = Arc::new(handler);
        let seen2 = seen.clone();
        thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let seen = seen2.clone();
                let handler = handler.clone();
                thread::spawn(move || serve(stream, &seen, &*handler));
            }
        });
        Self { base, seen }
    }

    /// A server that answers `body` (200) to its first request and 503 to every later one: an
    /// API that goes down.
    #[allow(dead_code)]
    pub fn up_once(body: &'static str) -> Self {
        let calls = std::sync::atomic::AtomicUsize::new(0);
        Self::start(move |_, _| {
            if calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst) == 0 {
                Reply::json(200, body)
            } else {
                Reply::json(503, "{}")
            }
        })
    }

    pub fn requests(&self, path: &str) -> Vec<Seen> {
        self.seen.lock().expect("lock").iter().filter(|s| s.path == path).cloned().collect()
    }
}

fn serve(mut stream: TcpStream, seen: &Mutex<Vec<Seen>>, handler: &Handler) {
    let Ok(clone) = stream.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(clone);
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let mut parts = line.split_whitespace();
        let method = parts.next().unwrap_or("").to_owned();
        let path = parts.next().unwrap_or("").to_owned();
        let mut key = None;
        let mut len = 0usize;
        let mut headers = Vec::new();
        loop {
            let mut h = String::new();
            if reader.read_line(&mut h).unwrap_or(0) == 0 {
                return;
            }
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            if let Some((k, v)) = h.split_once(':') {
                let k = k.trim().to_ascii_lowercase();
                headers.push((k.clone(), v.trim().to_owned()));
                if k == "idempotency-key" {
                    key = Some(v.trim().to_owned());
                }
                if k == "content-length" {
                    len = v.trim().parse().unwrap_or(0);
                }
            }
        }
        let mut body = vec![0; len];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        let req = Seen {
            method,
            path: path.clone(),
            idempotency_key: key,
            body: String::from_utf8_lossy(&body).into_owned(),
            headers,
        };
        let n = {
            let mut s = seen.lock().expect("lock");
            let n = s.iter().filter(|x| x.path == path).count();
            s.push(req.clone());
            n
        };
        let reply = handler(&req, n);
        thread::sleep(reply.delay);
        let mut out = format!("HTTP/1.1 {} X\r\nContent-Length: {}\r\n", reply.status, reply.body.len());
        for (k, v) in &reply.headers {
            out.push_str(&format!("{k}: {v}\r\n"));
        }
        out.push_str("\r\n");
        out.push_str(&reply.body);
        if stream.write_all(out.as_bytes()).is_err() {
            return;
        }
    }
}

/// A service for `repairable.yaml`: `/b` fails (500) the first time it is called, every path
/// answers `{"path", "n"}` (n: the how-manyth call of that path) otherwise.
pub fn flaky_b() -> Server {
    Server::start(|req, n| match req.path.as_str() {
        "/b" if n == 0 => Reply::json(500, r#"{"error": "down"}"#),
        path => Reply::json(200, &serde_json::json!({"path": path, "n": n}).to_string()),
    })
}

/// The workspace root.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// A fixture workflow path.
pub fn fixture(name: &str) -> PathBuf {
    root().join("tests/fixtures/workflows").join(name)
}

/// Runs `baton --state-dir <dir> args...`.
pub fn baton(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_baton"))
        .arg("--state-dir")
        .arg(dir)
        .args(args)
        .current_dir(root())
        .env_remove("BATON_HOME")
        .output()
        .expect("baton runs")
}

/// Runs baton and parses its stdout as JSON; returns (exit code, json).
pub fn baton_json(dir: &Path, args: &[&str]) -> (i32, Value) {
    let out = baton(dir, args);
    let code = out.status.code().unwrap_or(-1);
    let v = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout of {args:?} is not JSON ({e}); exit {code}\nstdout: {}\nstderr: {}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (code, v)
}

pub fn text(out: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

/// The emulator's endpoint (`BATON_TEST_AWS_ENDPOINT`, default LocalStack on
/// http://127.0.0.1:4566).
pub fn aws_endpoint() -> String {
    std::env::var("BATON_TEST_AWS_ENDPOINT").unwrap_or_else(|_| "http://127.0.0.1:4566".into())
}

/// The DynamoDB endpoint: `BATON_TEST_DYNAMODB_ENDPOINT` (DynamoDB Local beside moto), else the
/// emulator's.
pub fn ddb_endpoint() -> String {
    std::env::var("BATON_TEST_DYNAMODB_ENDPOINT").unwrap_or_else(|_| aws_endpoint())
}

/// A Python with boto3: the venv `localstack/up` made (LocalStack's, else moto's).
pub fn emulator_python() -> PathBuf {
    let localstack = root().join("localstack/.venv-localstack/bin/python");
    if localstack.exists() { localstack } else { root().join("localstack/.venv/bin/python") }
}

/// Starts the emulator with `localstack/up` when either endpoint does not answer.
pub fn ensure_endpoints() {
    let up = |endpoint: String| {
        let addr = endpoint.trim_start_matches("http://").trim_end_matches('/').to_owned();
        addr.parse().ok().is_some_and(|a| std::net::TcpStream::connect_timeout(&a, Duration::from_millis(300)).is_ok())
    };
    if !up(ddb_endpoint()) || !up(aws_endpoint()) {
        let status = Command::new(root().join("localstack/up")).status().expect("run localstack/up");
        assert!(status.success(), "localstack/up failed");
    }
    assert!(up(ddb_endpoint()), "no DynamoDB at {}: run localstack/up", ddb_endpoint());
}

/// Runs `baton --backend aws` against the local endpoint, stack `baton-dev` (provisioned by up).
pub fn baton_aws(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_baton"))
        .args(["--backend", "aws", "--stack", "baton-dev", "--state-dir"])
        .arg(dir)
        .args(args)
        .current_dir(root())
        .env("AWS_ENDPOINT_URL", aws_endpoint())
        .env("AWS_ENDPOINT_URL_DYNAMODB", ddb_endpoint())
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("AWS_REGION", "us-east-1")
        .env_remove("AWS_PROFILE")
        .output()
        .expect("baton runs")
}

/// The AWS environment of the local endpoint ([`aws_endpoint`], [`ddb_endpoint`]).
pub fn aws_env(cmd: &mut Command) -> &mut Command {
    cmd.env("AWS_ENDPOINT_URL", aws_endpoint())
        .env("AWS_ENDPOINT_URL_DYNAMODB", ddb_endpoint())
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("AWS_REGION", "us-east-1")
        .env_remove("AWS_PROFILE")
}

/// A `baton dev` host for stack `baton-dev`, stopped when dropped. One at a time per test
/// process: a host killed while it holds a received message hides that message for the queue's
/// visibility timeout (60 s), which would stall the next test's run.
pub struct DevHost(std::process::Child, #[allow(dead_code)] std::sync::MutexGuard<'static, ()>);

static ONE_HOST: Mutex<()> = Mutex::new(());

impl DevHost {
    pub fn start() -> Self {
        Self::start_with_env(&[])
    }

    /// A host whose process gets `env` too (e.g. the model server of the `llm` worker).
    pub fn start_with_env(env: &[(&str, &str)]) -> Self {
        let guard = ONE_HOST.lock().unwrap_or_else(|e| e.into_inner());
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_baton"));
        cmd.args(["--backend", "aws", "--stack", "baton-dev", "dev", "--wait", "1"])
            .current_dir(root())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
        aws_env(&mut cmd);
        for (k, v) in env {
            cmd.env(k, v);
        }
        Self(cmd.spawn().expect("baton dev starts"), guard)
    }
}

impl Drop for DevHost {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
        // A long poll the killed host left open (`--wait 1`) still takes the next message on the
        // emulator, hiding it for the visibility timeout: let it expire before the next host.
        std::thread::sleep(std::time::Duration::from_millis(1500));
    }
}

/// A command's stdout as JSON; panics with the command's output when it is not.
pub fn json_of(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {}", text(out)))
}

/// Both backends over one state directory, with the emulated stack's coordinator host running.
pub struct Backends {
    pub dir: tempfile::TempDir,
    _host: DevHost,
}

impl Backends {
    /// The emulator is up, a dev host runs, and a fresh state directory exists.
    pub fn up() -> Self {
        Self::up_with_env(&[])
    }

    /// Like [`Backends::up`], with `env` set for the dev host.
    pub fn up_with_env(env: &[(&str, &str)]) -> Self {
        ensure_endpoints();
        let host = DevHost::start_with_env(env);
        Self { dir: tempfile::tempdir().expect("tempdir"), _host: host }
    }

    /// Runs `baton args` embedded, or on the stack when `aws`.
    pub fn exec(&self, aws: bool, args: &[&str]) -> Output {
        if aws { baton_aws(self.dir.path(), args) } else { baton(self.dir.path(), args) }
    }
}

/// Starts the approval fixture for `amount` and returns its run id and the task it waits on.
pub fn open_approval(exec: impl Fn(&[&str]) -> Output, amount: u64) -> (String, Value) {
    let wf = fixture("approval.yaml").display().to_string();
    let input = format!(r#"{{"amount": {amount}}}"#);
    let out = exec(&["run", &wf, "--input", &input, "--json"]);
    assert_eq!(out.status.code(), Some(3), "waiting on a person: {}", text(&out));
    let id = json_of(&out)["run_id"].as_str().expect("id").to_owned();
    let tasks = json_of(&exec(&["tasks", "--json"]));
    let task = tasks.as_array().expect("array").iter().find(|t| t["run_id"] == id.as_str()).expect("task").clone();
    (id, task)
}

/// The entry point of the npm MCP server `@modelcontextprotocol/server-everything` that
/// scripts/check-prereqs installs under tests/mcp.
pub fn mcp_everything() -> String {
    let p = root().join("tests/mcp/node_modules/@modelcontextprotocol/server-everything/dist/index.js");
    assert!(p.exists(), "{} is missing: run scripts/check-prereqs", p.display());
    p.display().to_string()
}

/// An OpenAI-compatible chat completion whose message is `content` (as JSON text), with usage.
pub fn chat_completion(content: &Value) -> Reply {
    let body = serde_json::json!({
        "id": "c", "object": "chat.completion", "model": "test-model",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": content.to_string()}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 50, "completion_tokens": 10, "total_tokens": 60}
    });
    Reply::json(200, &body.to_string())
}
