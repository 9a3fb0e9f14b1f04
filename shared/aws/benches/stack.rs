//! The AWS backend on the emulator, end to end: `baton dev`'s pollers and the Lambda handlers
//! over SQS and Scheduler on moto and DynamoDB Local, with a loopback HTTP service. For chains
//! of 3 and 30 http steps, a 3-step chain with an 800 KB answer (claim-checked), fan-outs of 100
//! and 1,000 and a human step it reports the AWS requests per step (every request the SDK sent,
//! from the interceptor, plus the event source mappings' receives and deletes), their estimated
//! cost per million steps, and the coordinator's handler time per step (p50/p99). Run with
//! `cargo bench -p baton-aws --bench stack` after `localstack/up`. `BATON_BENCH_QUICK=1` runs
//! fewer iterations, `BATON_BENCH_ONLY=chain3,human` only those workloads, and
//! `BATON_INLINE_CALL_MS` sets the coordinator's inline calls as on the stack.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::Arc;
use std::time::{Duration, Instant};

use baton_aws::{DynamoStore, cost, dev, handlers, metering};
use baton_core::engine::{HumanAnswer, Verdict};
use baton_core::ids::{RunId, TaskId};
use baton_runtime::Coordinator;
use baton_runtime::metering::{Usage, add};
use baton_runtime::ports::RunStore;
use serde_json::{Value, json};

fn service() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            std::thread::spawn(move || {
                let mut reader = BufReader::new(stream.try_clone().expect("clone"));
                let mut len = 0usize;
                let mut line = String::new();
                let _ = reader.read_line(&mut line);
                let path = line.split_whitespace().nth(1).unwrap_or("/").to_owned();
                line.clear();
                while reader.read_line(&mut line).is_ok() {
                    if line.trim().is_empty() {
                        break;
                    }
                    if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                        len = v.trim().parse().unwrap_or(0);
                    }
                    line.clear();
                }
                let mut body = vec![0; len];
                let _ = reader.read_exact(&mut body);
                let mut s = stream;
                let _ = s.write_all(&response(&path));
            });
        }
    });
    base
}

/// `{"ok":1}`, or for paths under `/big` about 800 KB of hex digits, which deflate to about
/// 400 KB: past the claim-check thresholds of queue bodies (200 KiB) and of table items (350 KB).
fn response(path: &str) -> Vec<u8> {
    let body = if path.starts_with("/big") {
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        let noise: String = (0..400_000)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                char::from(b"0123456789abcdef"[(x & 15) as usize])
            })
            .collect();
        format!("{{\"blob\":\"{noise}{noise}\"}}")
    } else {
        "{\"ok\":1}".to_owned()
    };
    let head = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    [head.into_bytes(), body.into_bytes()].concat()
}

/// `n` http steps in a row.
fn chain(n: usize) -> String {
    let mut s =
        format!("name: chain{n}\ninput_schema: {{type: object, properties: {{base: {{type: string}}}}}}\nsteps:\n");
    for i in 0..n {
        let needs = if i == 0 { String::new() } else { format!(", needs: [s{}]", i - 1) };
        s.push_str(&format!("  - {{id: s{i}{needs}, tool: http, with: {{url: \"{{{{ .input.base }}}}/s{i}\"}}}}\n"));
    }
    s
}

/// Three http steps in a row, the second answering with a payload past the claim-check threshold.
fn payload() -> String {
    "name: payload\ninput_schema: {type: object, properties: {base: {type: string}}}\nsteps:\n  - {id: a, tool: http, with: {url: \"{{ .input.base }}/a\"}}\n  - {id: b, needs: [a], tool: http, with: {url: \"{{ .input.base }}/big\"}}\n  - {id: c, needs: [b], tool: http, with: {url: \"{{ .input.base }}/c\"}}\n".into()
}

fn chain3() -> String {
    "name: chain3\ninput_schema: {type: object, properties: {base: {type: string}}}\nsteps:\n  - {id: a, tool: http, with: {url: \"{{ .input.base }}/a\"}}\n  - {id: b, needs: [a], tool: http, with: {url: \"{{ .input.base }}/b\"}}\n  - {id: c, needs: [b], tool: http, with: {url: \"{{ .input.base }}/c\"}}\n".into()
}

fn fanout(n: usize) -> String {
    let mut s =
        format!("name: fanout{n}\ninput_schema: {{type: object, properties: {{base: {{type: string}}}}}}\nsteps:\n");
    for i in 0..n {
        s.push_str(&format!("  - {{id: p{i}, tool: http, with: {{url: \"{{{{ .input.base }}}}/p{i}\"}}}}\n"));
    }
    s
}

fn human() -> String {
    "name: human\nsteps:\n  - {id: ask, tool: human, with: {queue: ops, prompt: \"ok?\"}}\n  - {id: after, needs: [ask], tool: transform, with: {expr: .steps.ask.output.decision}}\n".into()
}

fn pct(mut v: Vec<f64>, p: f64) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
    v[((v.len() as f64 - 1.0) * p).round() as usize]
}

struct Outcome {
    name: &'static str,
    runs: usize,
    steps: usize,
    global: Usage,
    per_run: Usage,
    latency_ms: Vec<f64>,
    /// Coordinator handler time per message, per batch (µs).
    handler_us: Vec<f64>,
}

async fn wait_done(store: &DynamoStore, id: &RunId) {
    for _ in 0..6000 {
        if let Some(r) = store.load_run(id).await.expect("load")
            && r.state.status.is_terminal()
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!("run {id} did not finish");
}

/// Starts one run of `plan`, approves its task when it `waits` on a person, and waits for its end.
async fn run_to_end(
    client: &Coordinator,
    store: &DynamoStore,
    plan: &Arc<baton_core::Plan>,
    yaml: &str,
    base: &str,
    waits: bool,
) -> RunId {
    let id = client.start(plan.clone(), yaml, json!({"base": base}), None).await.expect("start");
    if waits {
        let t = wait_task(store, &id).await;
        let answer =
            HumanAnswer { decision: Verdict::Approve, data: json!({}), comment: None, by: None, principal: None };
        client.answer_task(&t, answer).await.expect("answer");
    }
    wait_done(store, &id).await;
    id
}

async fn wait_task(store: &DynamoStore, run: &RunId) -> TaskId {
    for _ in 0..6000 {
        if let Some(t) = store.open_tasks().await.expect("tasks").into_iter().find(|t| t.run_id == *run) {
            return t.id;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!("no task for {run}");
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let quick = std::env::var("BATON_BENCH_QUICK").is_ok();
    // The emulator localstack/up starts; DynamoDB elsewhere when BATON_TEST_DYNAMODB_ENDPOINT says
    // so (DynamoDB Local beside moto).
    let aws_endpoint = std::env::var("BATON_TEST_AWS_ENDPOINT").unwrap_or_else(|_| "http://127.0.0.1:4566".into());
    let ddb_endpoint = std::env::var("BATON_TEST_DYNAMODB_ENDPOINT").unwrap_or_else(|_| aws_endpoint.clone());
    let moto = baton_aws::config::for_emulator(&aws_endpoint).await;
    let ddb = baton_aws::config::for_emulator(&ddb_endpoint).await;
    let name = format!("bench{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
    // As the stack's functions have it: payloads past the item limit go to the bucket.
    let store = Arc::new(
        DynamoStore::new(&ddb, format!("{name}-runs"))
            .with_claim_check(baton_aws::claim_check::ClaimCheck::new(&moto, &name)),
    );
    store.ensure_table().await.expect("table (run localstack/up first)");
    let sqs = aws_sdk_sqs::Client::new(&moto);
    for family in ["coordinator", "http"] {
        sqs.create_queue().queue_name(format!("{name}-{family}-dlq")).send().await.expect("dlq");
        sqs.create_queue().queue_name(format!("{name}-{family}")).send().await.expect("queue");
    }
    metering::s3(&moto).create_bucket().bucket(format!("{name}-payloads")).send().await.expect("bucket");
    aws_sdk_scheduler::Client::new(&moto).create_schedule_group().name(&name).send().await.expect("group");
    // `BATON_INLINE_CALL_MS` as the deployed coordinator function reads it (see docs/aws.md).
    let inline = handlers::inline_calls_from_env(&moto, &name).expect(handlers::INLINE_CALL_ENV);
    let function = Arc::new(handlers::CoordinatorFunction::signed(store.clone(), &moto, &name, None, inline));
    let worker = Arc::new(handlers::WorkerFunction::on(store.clone(), &moto, &name, "http"));
    let timings: dev::Timings = Default::default();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let host = {
        let (moto, name, c, w, t) =
            (moto.clone(), name.clone(), function.clone(), vec![worker.clone()], timings.clone());
        tokio::spawn(async move {
            let options = dev::DevOptions { wait_seconds: 1, timings: Some(t), ..Default::default() };
            dev::serve_with(&moto, &name, c, w, options, async {
                let _ = stop_rx.await;
            })
            .await
        })
    };
    let base = service();
    // Runs are started as `baton start` and the api function start them: by a coordinator of
    // their own that runs no call itself (the first call goes to its worker).
    let starter = handlers::coordinator_on(store.clone(), &moto, &name);
    let client: &Coordinator = &starter;
    let mut outcomes = Vec::new();
    let workloads: [(&'static str, String, usize, usize); 6] = [
        ("chain3", chain3(), 3, if quick { 5 } else { 30 }),
        ("chain30", chain(30), 30, if quick { 1 } else { 5 }),
        ("payload", payload(), 3, if quick { 2 } else { 10 }),
        ("fanout100", fanout(100), 100, if quick { 1 } else { 5 }),
        ("fanout1000", fanout(1000), 1000, if quick { 1 } else { 2 }),
        ("human", human(), 2, if quick { 3 } else { 10 }),
    ];
    // `BATON_BENCH_ONLY=a,b` runs those workloads alone.
    let only: Option<Vec<String>> =
        std::env::var("BATON_BENCH_ONLY").ok().map(|v| v.split(',').map(|s| s.trim().to_owned()).collect());
    for (label, yaml, steps, runs) in workloads {
        if only.as_ref().is_some_and(|o| !o.iter().any(|w| w == label)) {
            continue;
        }
        let plan = Arc::new(baton_core::load_definition(None, &yaml).expect("valid"));
        // One warm-up run: queue URLs and the definition are looked up once per process.
        run_to_end(client, &store, &plan, &yaml, &base, label == "human").await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        metering::reset();
        if let Ok(mut t) = timings.lock() {
            t.clear();
        }
        let mut per_run = Usage::new();
        let mut latency_ms = Vec::new();
        for _ in 0..runs {
            let started = Instant::now();
            let id = run_to_end(client, &store, &plan, &yaml, &base, label == "human").await;
            latency_ms.push(started.elapsed().as_secs_f64() * 1000.0);
            let run = store.load_run(&id).await.expect("load").expect("run");
            add(&mut per_run, &run.header.usage);
        }
        let mut global = metering::total();
        // The benchmark's own polling of the store is not the backend's cost.
        for k in ["DynamoDB.GetItem", "DynamoDB.Query", "DynamoDB.ReadUnits"] {
            global.remove(k);
        }
        let handler_us: Vec<f64> = timings
            .lock()
            .map(|t| t.iter().map(|(n, us)| *us as f64 / (*n).max(1) as f64).collect())
            .unwrap_or_default();
        outcomes.push(Outcome { name: label, runs, steps, global, per_run, latency_ms, handler_us });
    }
    let _ = stop_tx.send(());
    host.await.expect("host").expect("dev host");

    let mut report = Vec::new();
    println!("AWS backend on the emulator (moto SQS/Scheduler, DynamoDB Local), stack {name}");
    for o in &outcomes {
        let total_steps = (o.runs * o.steps) as f64;
        let e = cost::estimate(&o.per_run);
        let per_step_requests = e.requests as f64 / total_steps;
        let per_step_billable = e.billable_requests as f64 / total_steps;
        let usd_per_million = e.usd / total_steps * 1e6;
        let sfn = cost::STEP_FUNCTIONS_STANDARD_PER_TRANSITION * 1e6;
        println!(
            "{:<10} runs {:>3}  e2e p50 {:>8.1} ms  p99 {:>8.1} ms  per step {:>6.1} ms | requests/step {:>5.2}, billed {:>5.2} (SDK-observed {:>5.2} excl. idle polls' empty receives)  ${:.2} per million steps (Step Functions Standard ${sfn:.0})",
            o.name,
            o.runs,
            pct(o.latency_ms.clone(), 0.5),
            pct(o.latency_ms.clone(), 0.99),
            pct(o.latency_ms.clone(), 0.5) / o.steps as f64,
            per_step_requests,
            per_step_billable,
            baton_runtime::metering::requests(&o.global) as f64 / total_steps,
            usd_per_million,
        );
        let per_step: serde_json::Map<String, Value> = o
            .per_run
            .iter()
            .map(|(k, v)| (k.clone(), json!((*v as f64 / total_steps * 100.0).round() / 100.0)))
            .collect();
        println!("           per step: {}", serde_json::to_string(&per_step).unwrap_or_default());
        println!(
            "           coordinator handler time per message: p50 {:.2} ms, p99 {:.2} ms over {} batches",
            pct(o.handler_us.clone(), 0.5) / 1000.0,
            pct(o.handler_us.clone(), 0.99) / 1000.0,
            o.handler_us.len()
        );
        report.push(json!({
            "workload": o.name, "runs": o.runs, "steps_per_run": o.steps,
            "e2e_ms_p50": pct(o.latency_ms.clone(), 0.5), "e2e_ms_p99": pct(o.latency_ms.clone(), 0.99),
            "requests_per_step": per_step_requests, "billable_requests_per_step": per_step_billable, "usd_per_million_steps": usd_per_million,
            "per_step": per_step, "sdk_observed": o.global,
            "coordinator_handler_ms_per_message": {"p50": pct(o.handler_us.clone(), 0.5) / 1000.0, "p99": pct(o.handler_us.clone(), 0.99) / 1000.0},
        }));
    }
    let out = json!({"workloads": report, "prices": cost::PRICES_AS_OF});
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../target/bench-stack.json");
    let _ = std::fs::write(path, serde_json::to_string_pretty(&out).unwrap_or_default());
    println!("written to target/bench-stack.json");
}
