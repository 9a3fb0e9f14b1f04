//! The fault suite's harness (`faults.rs`, `trust.rs`): a stack of its own on the emulator (table,
//! queues with their DLQs, schedule group, bucket), a loopback service that counts side effects
//! by idempotency key, and helpers that pump the queues through real handlers.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use baton_aws::{DynamoStore, handlers};
use baton_core::ids::RunId;
use baton_runtime::Coordinator;
use baton_runtime::ports::{Inbound, RunStore};
use baton_runtime::worker::Worker;
use serde_json::{Value, json};

pub static FAULTS: AtomicUsize = AtomicUsize::new(0);

pub fn injected(n: usize) {
    let total = FAULTS.fetch_add(n, Ordering::SeqCst) + n;
    eprintln!("faults injected so far in this process: {total}");
}

/// A loopback service: every request is recorded; a key seen before gets the first answer again
/// and causes no new side effect.
pub type Requests = Arc<Mutex<Vec<(String, Option<String>)>>>;

pub struct Service {
    pub base: String,
    pub requests: Requests,
    pub effects: Arc<Mutex<HashMap<String, usize>>>,
}

impl Service {
    pub fn start(delay: Duration) -> Self {
        Self::serve(delay, None)
    }

    pub fn start_with_body(body: String) -> Self {
        Self::serve(Duration::ZERO, Some(body))
    }

    pub fn serve(delay: Duration, fixed: Option<String>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let base = format!("http://{}", listener.local_addr().expect("addr"));
        let requests = Arc::new(Mutex::new(Vec::new()));
        let effects = Arc::new(Mutex::new(HashMap::new()));
        let (r, e) = (requests.clone(), effects.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let (r, e, fixed) = (r.clone(), e.clone(), fixed.clone());
                std::thread::spawn(move || {
                    let mut reader = BufReader::new(stream.try_clone().expect("clone"));
                    let mut line = String::new();
                    if reader.read_line(&mut line).is_err() {
                        return;
                    }
                    let path = line.split_whitespace().nth(1).unwrap_or("/").to_owned();
                    let (mut key, mut len) = (None, 0usize);
                    loop {
                        let mut h = String::new();
                        if reader.read_line(&mut h).is_err() || h.trim().is_empty() {
                            break;
                        }
                        let lower = h.to_ascii_lowercase();
                        if let Some(v) = lower.strip_prefix("idempotency-key:") {
                            key = Some(h[h.len() - v.len()..].trim().to_owned());
                        }
                        if let Some(v) = lower.strip_prefix("content-length:") {
                            len = v.trim().parse().unwrap_or(0);
                        }
                    }
                    let mut body = vec![0; len];
                    let _ = reader.read_exact(&mut body);
                    std::thread::sleep(delay);
                    r.lock().expect("lock").push((path.clone(), key.clone()));
                    if let Some(k) = &key {
                        *e.lock().expect("lock").entry(k.clone()).or_insert(0) += 1;
                    }
                    let payload = fixed.unwrap_or_else(|| json!({"path": path}).to_string());
                    let mut s = stream;
                    let _ = write!(
                        s,
                        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{payload}",
                        payload.len()
                    );
                });
            }
        });
        Self { base, requests, effects }
    }

    pub fn requests(&self) -> usize {
        self.requests.lock().expect("lock").len()
    }

    /// Distinct side effects (one per idempotency key).
    pub fn side_effects(&self) -> usize {
        self.effects.lock().expect("lock").len()
    }
}

/// A stack of its own: table on DynamoDB Local, queues and schedule group on moto.
pub struct Stack {
    pub name: String,
    pub moto: aws_config::SdkConfig,
    pub ddb: aws_config::SdkConfig,
    pub store: Arc<DynamoStore>,
    pub sqs: aws_sdk_sqs::Client,
}

impl Stack {
    pub async fn create() -> Self {
        let ddb_endpoint = super::ensure_emulator();
        Self::create_on(&ddb_endpoint).await
    }

    /// A stack whose table lives on the DynamoDB at `ddb_endpoint` (queues and the rest on the
    /// emulator).
    pub async fn create_on(ddb_endpoint: &str) -> Self {
        super::ensure_emulator();
        let moto_endpoint = super::aws_endpoint();
        let moto = baton_aws::config::for_emulator(&moto_endpoint).await;
        let ddb = baton_aws::config::for_emulator(ddb_endpoint).await;
        let name = format!("f{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
        let store = DynamoStore::new(&ddb, format!("{name}-runs"));
        store.ensure_table().await.expect("table");
        let sqs = aws_sdk_sqs::Client::new(&moto);
        for family in ["coordinator", "http"] {
            sqs.create_queue().queue_name(format!("{name}-{family}-dlq")).send().await.expect("dlq");
            sqs.create_queue()
                .queue_name(format!("{name}-{family}"))
                .attributes(aws_sdk_sqs::types::QueueAttributeName::VisibilityTimeout, "1")
                .send()
                .await
                .expect("queue");
        }
        aws_sdk_scheduler::Client::new(&moto).create_schedule_group().name(&name).send().await.expect("group");
        baton_aws::metering::s3(&moto).create_bucket().bucket(format!("{name}-payloads")).send().await.expect("bucket");
        Self { name, moto, ddb, store: Arc::new(store), sqs }
    }

    pub fn coordinator(&self) -> Coordinator {
        handlers::coordinator_on(self.store.clone(), &self.moto, &self.name)
    }

    pub fn worker(&self) -> Arc<Worker> {
        self.worker_signed(None)
    }

    /// An http worker whose results carry `key`'s signature.
    pub fn worker_signed(&self, key: Option<Arc<baton_runtime::message_auth::MessageKey>>) -> Arc<Worker> {
        let dispatcher =
            baton_aws::SqsDispatcher::new(&self.moto, &self.name, &handlers::worker_tools()).with_message_key(key);
        Arc::new(Worker::new(
            self.store.clone(),
            baton_tools::builtin(),
            Arc::new(dispatcher),
            Arc::new(baton_runtime::clock::SystemClock),
        ))
    }

    pub async fn url(&self, family: &str) -> String {
        self.sqs
            .get_queue_url()
            .queue_name(format!("{}-{family}", self.name))
            .send()
            .await
            .expect("url")
            .queue_url
            .expect("url")
    }

    /// Receives what is visible on a queue (deleting it), as handler input.
    pub async fn take(&self, family: &str) -> Vec<Inbound> {
        let url = self.url(family).await;
        let got = self
            .sqs
            .receive_message()
            .queue_url(&url)
            .max_number_of_messages(10)
            .wait_time_seconds(0)
            .message_attribute_names("All")
            .send()
            .await
            .expect("receive");
        let mut out = Vec::new();
        for m in got.messages() {
            let signature = m
                .message_attributes()
                .and_then(|a| a.get(baton_runtime::message_auth::SIGNATURE_ATTRIBUTE))
                .and_then(|v| v.string_value())
                .map(str::to_owned);
            out.push(Inbound {
                id: m.message_id().unwrap_or_default().to_owned(),
                body: m.body().unwrap_or_default().to_owned(),
                receive_count: 1,
                signature,
                usage: Default::default(),
            });
            self.sqs
                .delete_message()
                .queue_url(&url)
                .receipt_handle(m.receipt_handle().unwrap_or_default())
                .send()
                .await
                .expect("delete");
        }
        out
    }

    /// Takes `n` messages from the coordinator queue and hands them to `c` one batch each
    /// (two deliveries that two invocations see), expecting every one handled.
    pub async fn handle_one_by_one(&self, c: &Coordinator, n: usize) {
        let mut msgs = Vec::new();
        while msgs.len() < n {
            msgs.extend(self.take("coordinator").await);
        }
        for m in &msgs {
            let r = c.handle_batch(std::slice::from_ref(m)).await;
            assert!(r.failed.is_empty() && r.dead_lettered.is_empty(), "{r:?}");
        }
    }

    pub async fn put(&self, family: &str, body: &str) {
        let url = self.url(family).await;
        self.sqs.send_message().queue_url(url).message_body(body).send().await.expect("send");
    }

    /// Sends `body` with `signature` as its `baton-signature` attribute.
    pub async fn put_signed(&self, family: &str, body: &str, signature: &str) {
        let url = self.url(family).await;
        let sig = aws_sdk_sqs::types::MessageAttributeValue::builder()
            .data_type("String")
            .string_value(signature)
            .build()
            .expect("attribute");
        self.sqs
            .send_message()
            .queue_url(url)
            .message_body(body)
            .message_attributes(baton_runtime::message_auth::SIGNATURE_ATTRIBUTE, sig)
            .send()
            .await
            .expect("send");
    }

    /// Pumps both queues until the run ends; each batch is delivered `copies` times.
    pub async fn pump(&self, c: &Coordinator, w: &Arc<Worker>, run_id: &RunId, copies: usize) -> Value {
        self.pump_counting(c, w, run_id, copies).await.0
    }

    /// [`Stack::pump`], also returning how many calls reached the worker queue.
    pub async fn pump_counting(
        &self,
        c: &Coordinator,
        w: &Arc<Worker>,
        run_id: &RunId,
        copies: usize,
    ) -> (Value, usize) {
        let mut worker_calls = 0;
        for _ in 0..400 {
            let calls = self.take("http").await;
            worker_calls += calls.len();
            if !calls.is_empty() {
                for _ in 0..copies {
                    let r = w.handle_batch("http", &calls).await;
                    assert!(r.failed.is_empty() && r.dead_lettered.is_empty(), "{r:?}");
                }
                if copies > 1 {
                    injected(calls.len() * (copies - 1));
                }
            }
            let msgs = self.take("coordinator").await;
            if !msgs.is_empty() {
                for _ in 0..copies {
                    let r = c.handle_batch(&msgs).await;
                    assert!(r.failed.is_empty() && r.dead_lettered.is_empty(), "{r:?}");
                }
                if copies > 1 {
                    injected(msgs.len() * (copies - 1));
                }
            }
            let run = self.store.load_run(run_id).await.expect("load").expect("run");
            if run.state.status.is_terminal() {
                let plan = c.plan_for(&run.header.workflow, &run.header.definition).await.expect("plan");
                return (baton_runtime::report::run_json(&plan, &run.state), worker_calls);
            }
            if calls.is_empty() && msgs.is_empty() {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        panic!("run {run_id} did not finish");
    }

    pub async fn start(&self, c: &Coordinator, yaml: &str, input: Value) -> RunId {
        let plan = Arc::new(baton_core::load_definition(None, yaml).expect("valid"));
        c.start(plan, yaml, input, None).await.expect("start")
    }

    /// A coordinator and an http worker on this stack, with CHAIN started against `service`.
    pub async fn chain_on(&self, service: &Service) -> (Coordinator, Arc<Worker>, RunId) {
        let (c, w) = (self.coordinator(), self.worker());
        let run_id = self.start(&c, CHAIN, json!({"base": service.base})).await;
        (c, w, run_id)
    }

    pub async fn verify(&self, run_id: &RunId) {
        let audit = self.store.load_audit(run_id).await.expect("audit");
        baton_core::audit::verify_chain(&audit).expect("the audit chain verifies");
    }
}

/// `baton dev`'s host over a stack: its coordinator and http worker functions, calling AWS
/// through one endpoint and DynamoDB through another (a fault proxy, a DynamoDB of the test's
/// own), polling every 200 ms and taking an outbox row back after 1.5 s.
pub struct Host {
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<Result<baton_aws::dev::DevStats, baton_runtime::StoreError>>,
}

impl Host {
    pub fn start(stack: &Stack, via_aws: &aws_config::SdkConfig, via_ddb: &aws_config::SdkConfig) -> Self {
        let store: Arc<dyn RunStore> = Arc::new(DynamoStore::new(via_ddb, format!("{}-runs", stack.name)));
        let coordinator = Arc::new(handlers::CoordinatorFunction::on(store.clone(), via_aws, &stack.name));
        let workers = vec![Arc::new(handlers::WorkerFunction::on(store, via_aws, &stack.name, "http"))];
        let options = baton_aws::dev::DevOptions {
            wait_seconds: 0,
            tick: Duration::from_millis(200),
            outbox_lease_ms: 1_500,
            ..Default::default()
        };
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let (via_aws, name) = (via_aws.clone(), stack.name.clone());
        let task = tokio::spawn(async move {
            baton_aws::dev::serve_with(&via_aws, &name, coordinator, workers, options, async {
                let _ = stopped.await;
            })
            .await
        });
        Self { stop, task }
    }

    /// Stops the host; it must have run until told to.
    pub async fn stop(self) {
        let _ = self.stop.send(());
        self.task.await.expect("host").expect("the host ran until told to stop");
    }
}

impl Stack {
    /// Waits until every run of `runs` has ended, failing the test after `within`.
    pub async fn wait_ended(&self, runs: &[RunId], within: Duration) {
        let deadline = std::time::Instant::now() + within;
        loop {
            let mut ended = 0;
            for id in runs {
                let run = self.store.load_run(id).await.expect("load").expect("the run exists");
                if run.state.status.is_terminal() {
                    ended += 1;
                }
            }
            if ended == runs.len() {
                return;
            }
            assert!(std::time::Instant::now() < deadline, "{ended} of {} runs ended within {within:?}", runs.len());
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
}

pub const CHAIN: &str = r#"
name: chain
input_schema: {type: object, required: [base], properties: {base: {type: string}}}
output: "[.steps.a.output.body.path, .steps.b.output.body.path, .steps.c.output]"
steps:
  - {id: a, tool: http, with: {method: POST, url: "{{ .input.base }}/a"}}
  - {id: b, needs: [a], tool: http, with: {method: POST, url: "{{ .input.base }}/b"}}
  - {id: c, needs: [b], tool: transform, with: {expr: "\"done\""}}
"#;

pub async fn dlq_reasons(stack: &Stack, family: &str) -> Vec<(String, String)> {
    let url = stack.url(&format!("{family}-dlq")).await;
    let got = stack
        .sqs
        .receive_message()
        .queue_url(url)
        .max_number_of_messages(10)
        .message_attribute_names("All")
        .send()
        .await
        .expect("receive dlq");
    got.messages()
        .iter()
        .map(|m| {
            let reason = m
                .message_attributes()
                .and_then(|a| a.get("baton-reason"))
                .and_then(|v| v.string_value())
                .unwrap_or_default()
                .to_owned();
            (m.body().unwrap_or_default().to_owned(), reason)
        })
        .collect()
}
