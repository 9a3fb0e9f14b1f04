//! The HTTP API end to end: a real `baton serve` (embedded, SQLite in a temp dir) and clients
//! that start the 3-step `chain3` workflow with `POST /api/workflows/chain3/runs?wait=30` and
//! take the finished run from the answer, over keep-alive HTTP/1.1 connections. Two figures:
//! latency with one client (p50, p99) and throughput with 16 concurrent clients (runs/s, p50,
//! p99). The workload and the peers' figures are in docs/benchmarks.md.
//!
//! Run: `cargo bench -p baton-cli --bench api` (add `--no-default-features` for a build without
//! the AWS SDK, which is quicker to compile and serves the same). `BATON_BENCH_QUICK=1` shortens
//! every measurement. One JSON object per line on stdout.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

const TOKEN: &str = "bench-token";
const CLIENTS: usize = 16;

struct Serve(Child);

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// One keep-alive connection to the server.
struct Client {
    writer: TcpStream,
    reader: BufReader<TcpStream>,
}

impl Client {
    fn connect(port: u16) -> Result<Self, String> {
        let s = TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
        s.set_nodelay(true).map_err(|e| e.to_string())?;
        let reader = BufReader::new(s.try_clone().map_err(|e| e.to_string())?);
        Ok(Self { writer: s, reader })
    }

    /// Starts one chain3 run, waits for it in the same request, and checks its result.
    fn run_chain3(&mut self) -> Result<Duration, String> {
        let t = Instant::now();
        let body = "{}";
        write!(
            self.writer,
            "POST /api/workflows/chain3/runs?wait=30 HTTP/1.1\r\nHost: bench\r\nAuthorization: Bearer {TOKEN}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .map_err(|e| e.to_string())?;
        let mut line = String::new();
        self.reader.read_line(&mut line).map_err(|e| e.to_string())?;
        let status = line.split(' ').nth(1).unwrap_or_default().to_owned();
        let mut length = 0usize;
        loop {
            line.clear();
            self.reader.read_line(&mut line).map_err(|e| e.to_string())?;
            if line == "\r\n" || line.is_empty() {
                break;
            }
            if let Some((k, v)) = line.split_once(':')
                && k.eq_ignore_ascii_case("content-length")
            {
                length = v.trim().parse().map_err(|_| format!("bad length {v}"))?;
            }
        }
        let mut body = vec![0; length];
        self.reader.read_exact(&mut body).map_err(|e| e.to_string())?;
        let elapsed = t.elapsed();
        let run: Value = serde_json::from_slice(&body).map_err(|e| e.to_string())?;
        if status != "201" || run["status"] != "succeeded" || run["output"] != json!({"n": 3}) {
            return Err(format!("status {status}: {run}"));
        }
        Ok(elapsed)
    }
}

fn pct(sorted: &[f64], p: f64) -> f64 {
    let i = ((p * sorted.len() as f64).ceil() as usize).max(1) - 1;
    sorted[i.min(sorted.len() - 1)]
}

fn ms(d: &[Duration]) -> Vec<f64> {
    let mut v: Vec<f64> = d.iter().map(|d| d.as_secs_f64() * 1000.0).collect();
    v.sort_by(f64::total_cmp);
    v
}

fn start_server(dir: &std::path::Path) -> (Serve, u16) {
    let root = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let baton = env!("CARGO_BIN_EXE_baton");
    let published = Command::new(baton)
        .arg("--state-dir")
        .arg(dir)
        .args(["publish", "tests/fixtures/workflows/chain3.yaml"])
        .current_dir(&root)
        .output()
        .expect("baton runs");
    assert!(published.status.success(), "publish: {}", String::from_utf8_lossy(&published.stderr));
    let port = std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("port");
    let child = Command::new(baton)
        .arg("--state-dir")
        .arg(dir)
        .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .env("BATON_API_TOKEN", TOKEN)
        .env_remove("BATON_CALLBACK_SECRET")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("baton serve starts");
    let serve = Serve(child);
    let deadline = Instant::now() + Duration::from_secs(30);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "baton serve did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    (serve, port)
}

fn main() {
    let quick = std::env::var("BATON_BENCH_QUICK").is_ok();
    let (warmup, rounds, window) =
        if quick { (20, 200, Duration::from_secs(2)) } else { (200, 2_000, Duration::from_secs(10)) };
    let dir = tempfile::tempdir().expect("tempdir");
    let (_serve, port) = start_server(dir.path());
    let profile = if cfg!(debug_assertions) { "debug" } else { "release" };

    // One client: the latency of one start-and-await.
    let mut client = Client::connect(port).expect("connect");
    for _ in 0..warmup {
        client.run_chain3().expect("warm-up run");
    }
    let lat = ms(&(0..rounds).map(|_| client.run_chain3().expect("run")).collect::<Vec<_>>());
    println!(
        "{}",
        json!({"bench": "api_chain3_latency", "profile": profile, "clients": 1, "runs": rounds,
               "p50_ms": pct(&lat, 0.5), "p99_ms": pct(&lat, 0.99)})
    );

    // 16 clients for a fixed window: throughput and the latency under load.
    let begin = Instant::now();
    let until = begin + window;
    let handles: Vec<_> = (0..CLIENTS)
        .map(|_| {
            std::thread::spawn(move || {
                let mut c = Client::connect(port).expect("connect");
                let mut out = Vec::new();
                while Instant::now() < until {
                    out.push(c.run_chain3().expect("run"));
                }
                out
            })
        })
        .collect();
    let all: Vec<Duration> = handles.into_iter().flat_map(|h| h.join().expect("client")).collect();
    let secs = begin.elapsed().as_secs_f64();
    let lat = ms(&all);
    println!(
        "{}",
        json!({"bench": "api_chain3_throughput", "profile": profile, "clients": CLIENTS, "runs": all.len(),
               "seconds": secs, "runs_per_s": all.len() as f64 / secs, "steps_per_s": 3.0 * all.len() as f64 / secs,
               "p50_ms": pct(&lat, 0.5), "p99_ms": pct(&lat, 0.99)})
    );
}
