//! The fault suite on the emulator (SQS and Scheduler on moto, DynamoDB on DynamoDB Local): each
//! test injects one kind of fault into real queue traffic and checks that no run is lost and no
//! side effect happens twice. Side effects are counted at a loopback HTTP service by the
//! `Idempotency-Key` header workers send, the way a real downstream API deduplicates.

mod support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_sqs::types::QueueAttributeName;
use baton_aws::{DynamoStore, handlers};
use baton_runtime::ports::{BatchReport, Clock, Dispatcher, Inbound, OutboxItem, RunStore};
use baton_runtime::{Coordinator, StoreError};
use serde_json::json;
use support::fault_stack::{CHAIN, Host, Service, Stack, dlq_reasons, injected};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicate_delivery_of_every_message_kind_does_nothing_twice() {
    let stack = Stack::create().await;
    let service = Service::start(Duration::ZERO);
    let (c, w, run_id) = stack.chain_on(&service).await;
    // Every call and every result is delivered three times.
    let run = stack.pump(&c, &w, &run_id, 3).await;
    assert_eq!(run["status"], "succeeded", "{run}");
    assert_eq!(run["output"], json!(["/a", "/b", "done"]));
    assert_eq!(service.requests(), 2, "each call ran once: the claims answered the duplicates");
    assert_eq!(service.side_effects(), 2);
    assert_eq!(run["steps"]["a"]["attempts"], 1);
    let audit = stack.store.load_audit(&run_id).await.expect("audit");
    let ignored = audit.iter().filter(|r| r.decision == "ignore").count();
    assert!(ignored >= 4, "duplicate results are ignored, and the audit says so ({ignored})");
    stack.verify(&run_id).await;
}

/// A dispatcher that dies after the commit: it never delivers (the coordinator crashed between
/// commit and send).
struct DiesBeforeSending;

#[async_trait]
impl Dispatcher for DiesBeforeSending {
    fn serves(&self, tool: &str) -> bool {
        tool == "http"
    }
    async fn deliver(&self, _: &[OutboxItem], _: u64) -> Result<(), StoreError> {
        Err(StoreError::Backend("the coordinator process was killed".into()))
    }
    async fn to_coordinator(&self, _: &[String]) -> Result<(), StoreError> {
        Err(StoreError::Backend("killed".into()))
    }
    async fn dead_letter(&self, _: &str, _: &Inbound, _: &str) -> Result<(), StoreError> {
        Err(StoreError::Backend("killed".into()))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_coordinator_killed_between_commit_and_send_is_recovered_by_the_sweep() {
    let stack = Stack::create().await;
    let service = Service::start(Duration::ZERO);
    let dying = Coordinator::new(
        stack.store.clone(),
        baton_runtime::tools::ToolRegistry::default(),
        Arc::new(baton_runtime::clock::SystemClock),
    )
    .with_dispatcher(Arc::new(DiesBeforeSending));
    let run_id = stack.start(&dying, CHAIN, json!({"base": service.base})).await;
    injected(1);
    assert!(stack.take("http").await.is_empty(), "nothing was sent");
    let pending = stack.store.pending_outbox(u64::MAX, 10).await.expect("outbox");
    assert_eq!(pending.len(), 1, "the committed work waits in the outbox");

    let (c, w) = (stack.coordinator(), stack.worker());
    assert_eq!(c.sweep(0).await.expect("sweep"), 1);
    let run = stack.pump(&c, &w, &run_id, 1).await;
    assert_eq!(run["status"], "succeeded", "{run}");
    assert_eq!(service.side_effects(), 2);
    assert_eq!(service.requests(), 2);
    assert!(stack.store.pending_outbox(u64::MAX, 10).await.expect("outbox").is_empty());
    stack.verify(&run_id).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eight_coordinators_racing_on_one_run_apply_each_transition_once() {
    let stack = Stack::create().await;
    let service = Service::start(Duration::ZERO);
    let fanout = r#"
name: fanout
input_schema: {type: object, required: [base], properties: {base: {type: string}}}
steps:
  - {id: p1, tool: http, with: {url: "{{ .input.base }}/1"}}
  - {id: p2, tool: http, with: {url: "{{ .input.base }}/2"}}
  - {id: p3, tool: http, with: {url: "{{ .input.base }}/3"}}
  - {id: p4, tool: http, with: {url: "{{ .input.base }}/4"}}
  - {id: p5, tool: http, with: {url: "{{ .input.base }}/5"}}
  - {id: p6, tool: http, with: {url: "{{ .input.base }}/6"}}
  - {id: join, needs: [p1, p2, p3, p4, p5, p6], tool: transform, with: {expr: "[.steps[] | .output.status] | length"}}
"#;
    let (a, w) = (stack.coordinator(), stack.worker());
    let run_id = stack.start(&a, fanout, json!({"base": service.base})).await;
    let mut calls = Vec::new();
    while calls.len() < 6 {
        calls.extend(stack.take("http").await);
    }
    let r = w.handle_batch("http", &calls).await;
    assert!(r.failed.is_empty(), "{r:?}");
    let mut results = Vec::new();
    while results.len() < 6 {
        results.extend(stack.take("coordinator").await);
    }
    // Eight coordinators (eight Lambda instances) get overlapping windows of three results at
    // the same moment: every result reaches three to five of them.
    let mut racing = tokio::task::JoinSet::new();
    for i in 0..8 {
        let c = stack.coordinator();
        let window: Vec<_> = (0..3).map(|k| results[(i + k) % 6].clone()).collect();
        racing.spawn(async move { c.handle_batch(&window).await });
    }
    injected(8 * 3 - 6);
    let mut redeliver = Vec::new();
    while let Some(report) = racing.join_next().await {
        let r = report.expect("a coordinator task");
        assert!(r.dead_lettered.is_empty(), "{r:?}");
        // A racer whose conflict retries ran out leaves the message for SQS to redeliver.
        redeliver.extend(r.failed);
    }
    for id in redeliver {
        let m = results.iter().find(|m| m.id == id).expect("a message of the batch");
        let r = a.handle_batch(std::slice::from_ref(m)).await;
        assert!(r.failed.is_empty() && r.dead_lettered.is_empty(), "{r:?}");
    }
    let run = stack.pump(&a, &w, &run_id, 1).await;
    assert_eq!(run["status"], "succeeded", "{run}");
    assert_eq!(run["output"]["join"], json!(6));
    let audit = stack.store.load_audit(&run_id).await.expect("audit");
    for node in ["p1", "p2", "p3", "p4", "p5", "p6", "join"] {
        let n = audit.iter().filter(|r| r.decision == "succeed_step" && r.node.as_deref() == Some(node)).count();
        assert_eq!(n, 1, "{node} succeeded exactly once in the audit");
    }
    assert_eq!(service.side_effects(), 6);
    stack.verify(&run_id).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_killed_mid_step_is_redelivered_and_the_side_effect_happens_once() {
    let stack = Stack::create().await;
    let service = Service::start(Duration::ZERO);
    let (c, w, run_id) = stack.chain_on(&service).await;
    let calls = stack.take("http").await;
    assert_eq!(calls.len(), 1);
    let call: baton_runtime::ports::ToolCall = serde_json::from_str(&calls[0].body).expect("call");
    // The first worker claims the attempt, makes the call (the side effect happens), and is
    // killed before it records the result or answers.
    let now = baton_runtime::ports::Clock::now_ms(&baton_runtime::clock::SystemClock);
    let claimed = stack.store.claim(&call.idempotency_key, "killed-worker", now, now + 1500).await.expect("claim");
    assert_eq!(claimed, baton_runtime::ports::Claim::Acquired);
    let http = baton_tools::HttpTool::new();
    baton_runtime::ports::Tool::call(&http, &call).await.expect("the first worker's call");
    injected(1);
    // The message becomes visible again; while the dead worker's lease lasts, it is left alone.
    let early = w.handle_batch("http", &calls).await;
    assert_eq!(early.failed, vec![calls[0].id.clone()], "a live lease makes the redelivery wait");
    tokio::time::sleep(Duration::from_millis(1600)).await;
    let late = w.handle_batch("http", &calls).await;
    assert!(late.failed.is_empty(), "{late:?}");
    let run = stack.pump(&c, &w, &run_id, 1).await;
    assert_eq!(run["status"], "succeeded", "{run}");
    assert_eq!(service.requests(), 3, "a was called twice (same key), b once");
    assert_eq!(service.side_effects(), 2, "one side effect per step: the key deduplicated the second call");
    stack.verify(&run_id).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poison_messages_go_to_the_dlq_with_their_reason() {
    let stack = Stack::create().await;
    let (c, w) = (stack.coordinator(), stack.worker());
    stack.put("coordinator", "{not json").await;
    stack.put("coordinator", r#"{"kind":"timer","run_id":"no-such-run","timer":"t1"}"#).await;
    stack.put("http", r#"{"hello":"world"}"#).await;
    injected(3);
    let msgs = stack.take("coordinator").await;
    let report: BatchReport = c.handle_batch(&msgs).await;
    assert_eq!(report.dead_lettered.len(), 2, "{report:?}");
    assert!(report.failed.is_empty());
    let calls = stack.take("http").await;
    let report = w.handle_batch("http", &calls).await;
    assert_eq!(report.dead_lettered.len(), 1, "{report:?}");

    let mut reasons = dlq_reasons(&stack, "coordinator").await;
    reasons.sort();
    assert_eq!(reasons.len(), 2, "{reasons:?}");
    assert!(reasons.iter().any(|(b, r)| b == "{not json" && r.contains("not JSON")), "{reasons:?}");
    assert!(reasons.iter().any(|(_, r)| r.contains("no-such-run") && r.contains("does not exist")), "{reasons:?}");
    let reasons = dlq_reasons(&stack, "http").await;
    assert_eq!(reasons.len(), 1);
    assert!(reasons[0].1.contains("not a baton tool call"), "{reasons:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timers_live_in_scheduler_and_a_late_or_double_fire_is_ignored() {
    let stack = Stack::create().await;
    let service = Service::start(Duration::from_millis(300));
    let (c, w) = (stack.coordinator(), stack.worker());
    let wf = r#"
name: timers
input_schema: {type: object, required: [base], properties: {base: {type: string}}}
steps:
  - {id: nap, tool: sleep, with: {for: 2s}}
  - {id: call, needs: [nap], tool: http, with: {url: "{{ .input.base }}/x"}, timeout: 30s}
"#;
    let run_id = stack.start(&c, wf, json!({"base": service.base})).await;
    let scheduler = aws_sdk_scheduler::Client::new(&stack.moto);
    let listed = scheduler.list_schedules().group_name(&stack.name).send().await.expect("list");
    let stuck = stack.store.pending_outbox(u64::MAX, 10).await.expect("outbox");
    assert_eq!(listed.schedules().len(), 1, "the sleep is a one-time schedule (outbox left: {stuck:?})");
    let sqs = aws_sdk_sqs::Client::new(&stack.moto);
    let mut fired = 0;
    // Schedules have second granularity and are rounded up: due within three seconds.
    for _ in 0..50 {
        fired += baton_aws::dev::fire_due_schedules(&scheduler, &sqs, &stack.name).await.expect("fire");
        if fired > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(fired, 1);
    let wake = stack.take("coordinator").await;
    assert_eq!(wake.len(), 1);
    // Fired twice: the second copy arrives after the first moved the run on.
    c.handle_batch(&wake).await;
    c.handle_batch(&wake).await;
    injected(1);
    // The call's 30 s timeout is a schedule while the call runs...
    let listed = scheduler.list_schedules().group_name(&stack.name).send().await.expect("list");
    assert_eq!(listed.schedules().len(), 1, "the timeout schedule exists while the call runs");
    let run = stack.pump(&c, &w, &run_id, 1).await;
    assert_eq!(run["status"], "succeeded", "{run}");
    // ...and is deleted when the call succeeds.
    let listed = scheduler.list_schedules().group_name(&stack.name).send().await.expect("list");
    assert!(listed.schedules().is_empty(), "no schedule outlives its need");
    // A late fire of the finished attempt's timeout changes nothing.
    let state = stack.store.load_run(&run_id).await.expect("load").expect("run").state;
    let before = stack.store.load_audit(&run_id).await.expect("audit").len();
    stack.put("coordinator", &json!({"kind": "timer", "run_id": run_id, "timer": "nap"}).to_string()).await;
    injected(1);
    let late = stack.take("coordinator").await;
    let r = c.handle_batch(&late).await;
    assert!(r.failed.is_empty() && r.dead_lettered.is_empty(), "{r:?}");
    let after = stack.store.load_run(&run_id).await.expect("load").expect("run").state;
    assert_eq!(after, state, "an ended run is not touched");
    assert_eq!(stack.store.load_audit(&run_id).await.expect("audit").len(), before);
    let audit = stack.store.load_audit(&run_id).await.expect("audit");
    assert!(
        audit.iter().any(|r| r.decision == "ignore" && r.reason.contains("timer")),
        "the double wake-up is ignored and audited"
    );
    assert_eq!(service.side_effects(), 1);
    stack.verify(&run_id).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn payloads_over_the_threshold_travel_through_the_bucket() {
    let stack = Stack::create().await;
    // 300 KB of incompressible text: over SQS's 256 KiB, and over an item's 400 KB once two
    // step outputs hold it.
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let big: String = (0..300 * 1024)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            char::from(b'a' + (x % 26) as u8)
        })
        .collect();
    let service = Service::start_with_body(json!({"blob": big}).to_string());
    let store: Arc<DynamoStore> = Arc::new(
        DynamoStore::new(&stack.ddb, format!("{}-runs", stack.name))
            .with_claim_check(baton_aws::claim_check::ClaimCheck::new(&stack.moto, &stack.name)),
    );
    let function = Arc::new(handlers::CoordinatorFunction::on(store.clone(), &stack.moto, &stack.name));
    let worker = Arc::new(handlers::WorkerFunction::on(store.clone(), &stack.moto, &stack.name, "http"));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let host = {
        let (moto, name, c) = (stack.moto.clone(), stack.name.clone(), function.clone());
        tokio::spawn(async move {
            let options = baton_aws::dev::DevOptions { wait_seconds: 1, ..Default::default() };
            baton_aws::dev::serve_with(&moto, &name, c, vec![worker], options, async {
                let _ = stopped.await;
            })
            .await
        })
    };
    let wf = r#"
name: big
input_schema: {type: object, required: [base], properties: {base: {type: string}}}
output: "{a: (.steps.a.output.body.blob | length), b: (.steps.b.output.body.blob | length)}"
steps:
  - {id: a, tool: http, with: {url: "{{ .input.base }}/a"}}
  - {id: b, needs: [a], tool: http, with: {method: POST, url: "{{ .input.base }}/b", body: "{{ .steps.a.output.body }}"}}
"#;
    let plan = Arc::new(baton_core::load_definition(None, wf).expect("valid"));
    let run_id = function.coordinator().start(plan, wf, json!({"base": service.base}), None).await.expect("start");
    let mut done = None;
    for _ in 0..300 {
        let run = store.load_run(&run_id).await.expect("load").expect("run");
        if run.state.status.is_terminal() {
            done = Some(run);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let _ = stop.send(());
    let _ = host.await;
    let run = done.expect("the run finished");
    let plan = function.coordinator().plan_for(&run.header.workflow, &run.header.definition).await.expect("plan");
    let obj = baton_runtime::report::run_json(&plan, &run.state);
    assert_eq!(obj["status"], "succeeded", "{}", obj["error"]);
    assert_eq!(obj["output"], json!({"a": 300 * 1024, "b": 300 * 1024}));
    let objects = baton_aws::metering::s3(&stack.moto)
        .list_objects_v2()
        .bucket(format!("{}-payloads", stack.name))
        .send()
        .await
        .expect("list");
    assert!(objects.key_count().unwrap_or(0) >= 2, "the large call, result and state went to the bucket");
    assert_eq!(service.side_effects(), 2);
    // The store reads the run back whole, through the references.
    assert!(!store.load_audit(&run_id).await.expect("audit").is_empty());
    baton_core::audit::verify_chain(&store.load_audit(&run_id).await.expect("audit")).expect("chain");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_schedule_trigger_becomes_a_recurring_schedule_and_a_double_start_runs_once() {
    let stack = Stack::create().await;
    let c = stack.coordinator();
    let wf = "name: nightly\ntriggers:\n  - schedule: rate(1 day)\noutput: .input.scheduled_time\nsteps:\n  - {id: a, tool: transform, with: {expr: \"1\"}}\n";
    let plan = baton_core::load_definition(None, wf).expect("valid");
    c.publish(&plan, wf).await.expect("publish");
    let queue = baton_aws::triggers::CoordinatorQueue::open(&stack.moto, &stack.name).await.expect("queue");
    let made =
        baton_aws::triggers::sync_trigger_schedules(&stack.moto, &stack.name, &plan, &queue).await.expect("sync");
    assert_eq!(made, vec!["wf.nightly.0".to_owned()]);
    let scheduler = aws_sdk_scheduler::Client::new(&stack.moto);
    let got = scheduler.get_schedule().name("wf.nightly.0").group_name(&stack.name).send().await.expect("schedule");
    assert_eq!(got.schedule_expression(), Some("rate(1 day)"));
    let input = got.target().and_then(|t| t.input()).expect("input");
    assert!(input.contains("wf.nightly.0@<aws.scheduler.scheduled-time>"), "{input}");
    // Scheduler delivers the start at least once, and may retry an invocation; simulate its
    // context-attribute substitution (the scheduled time is the same for both).
    let body = input.replace("<aws.scheduler.scheduled-time>", "2026-11-25T00:00:00Z");
    stack.put("coordinator", &body).await;
    stack.put("coordinator", &body).await;
    injected(1);
    stack.handle_one_by_one(&c, 2).await;
    let runs: Vec<_> =
        stack.store.list_runs(100).await.expect("list").into_iter().filter(|h| h.workflow == "nightly").collect();
    assert_eq!(runs.len(), 1, "one run per schedule execution");
    let run = stack.store.load_run(&runs[0].id).await.expect("load").expect("run");
    assert!(run.state.status.is_terminal());
    // Removing the trigger removes the schedule.
    let v2 = "name: nightly\noutput: .input\nsteps:\n  - {id: a, tool: transform, with: {expr: \"1\"}}\n";
    let plan2 = baton_core::load_definition(None, v2).expect("valid");
    let made =
        baton_aws::triggers::sync_trigger_schedules(&stack.moto, &stack.name, &plan2, &queue).await.expect("sync");
    assert!(made.is_empty());
    let listed = scheduler.list_schedules().group_name(&stack.name).send().await.expect("list");
    assert!(listed.schedules().is_empty(), "the old trigger's schedule is gone");
}

/// Sends through a real dispatcher, but "crashes" before some deliveries (the outbox keeps them).
struct Flaky {
    inner: baton_aws::SqsDispatcher,
    rng: Mutex<u64>,
    dropped: AtomicUsize,
}

impl Flaky {
    fn roll(&self, percent: u64) -> bool {
        let mut x = self.rng.lock().expect("rng");
        *x ^= *x << 13;
        *x ^= *x >> 7;
        *x ^= *x << 17;
        *x % 100 < percent
    }
}

#[async_trait]
impl Dispatcher for Flaky {
    fn serves(&self, tool: &str) -> bool {
        self.inner.serves(tool)
    }
    async fn deliver(&self, items: &[OutboxItem], now: u64) -> Result<(), StoreError> {
        if self.roll(25) {
            self.dropped.fetch_add(1, Ordering::SeqCst);
            return Err(StoreError::Backend("killed between commit and send".into()));
        }
        self.inner.deliver(items, now).await
    }
    async fn to_coordinator(&self, bodies: &[String]) -> Result<(), StoreError> {
        self.inner.to_coordinator(bodies).await
    }
    async fn dead_letter(&self, queue: &str, message: &Inbound, reason: &str) -> Result<(), StoreError> {
        self.inner.dead_letter(queue, message, reason).await
    }
}

/// Many runs under random faults at once: every batch is delivered one to three times, a quarter
/// of all outbox deliveries "crash" after the commit (the sweep recovers them), a fifth of the
/// worker batches are lost before they are handled (redelivered), and two coordinators take
/// turns. No run may be lost and no side effect may happen twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_soak_of_random_faults_loses_no_run_and_duplicates_no_side_effect() {
    let stack = Stack::create().await;
    let service = Service::start(Duration::ZERO);
    let seed =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(7)
            | 1;
    eprintln!("soak seed {seed}");
    let flaky = Arc::new(Flaky {
        inner: baton_aws::SqsDispatcher::new(&stack.moto, &stack.name, &handlers::worker_tools()),
        rng: Mutex::new(seed),
        dropped: AtomicUsize::new(0),
    });
    let make = || {
        let mut tools = baton_runtime::tools::ToolRegistry::default();
        tools.register("transform", Arc::new(baton_runtime::tools::TransformTool));
        Coordinator::new(stack.store.clone(), tools, Arc::new(baton_runtime::clock::SystemClock))
            .with_dispatcher(flaky.clone())
    };
    let coordinators = [make(), make()];
    let w = stack.worker();
    let wf = r#"
name: soak
input_schema: {type: object, required: [base], properties: {base: {type: string}}}
steps:
  - {id: a, tool: http, with: {method: POST, url: "{{ .input.base }}/a"}}
  - {id: b1, needs: [a], tool: http, with: {method: POST, url: "{{ .input.base }}/b1"}}
  - {id: b2, needs: [a], tool: http, with: {method: POST, url: "{{ .input.base }}/b2"}}
  - {id: b3, needs: [a], tool: http, with: {method: POST, url: "{{ .input.base }}/b3"}}
  - {id: c, needs: [b1, b2, b3], tool: http, with: {method: POST, url: "{{ .input.base }}/c"}}
  - {id: d, needs: [c], tool: transform, with: {expr: "[.steps.b1.output.status, .steps.c.output.status]"}}
"#;
    let runs = 12;
    let mut ids = Vec::new();
    for i in 0..runs {
        ids.push(stack.start(&coordinators[i % 2], wf, json!({"base": service.base})).await);
    }
    let (mut duplicated, mut lost, mut turn) = (0usize, 0usize, 0usize);
    for _ in 0..600 {
        turn += 1;
        let c = &coordinators[turn % 2];
        let calls = stack.take("http").await;
        if !calls.is_empty() {
            if flaky.roll(20) {
                // The worker died before handling the batch: the messages come back.
                for m in &calls {
                    stack.put("http", &m.body).await;
                }
                lost += 1;
            } else {
                let copies = 1 + (flaky.roll(50) as usize) + (flaky.roll(30) as usize);
                for _ in 0..copies {
                    let r = w.handle_batch("http", &calls).await;
                    assert!(r.dead_lettered.is_empty(), "{r:?}");
                    for id in &r.failed {
                        if let Some(m) = calls.iter().find(|m| &m.id == id) {
                            stack.put("http", &m.body).await;
                        }
                    }
                }
                duplicated += calls.len() * (copies - 1);
            }
        }
        let msgs = stack.take("coordinator").await;
        if !msgs.is_empty() {
            let copies = 1 + (flaky.roll(40) as usize);
            for _ in 0..copies {
                let r = c.handle_batch(&msgs).await;
                assert!(r.dead_lettered.is_empty() && r.failed.is_empty(), "{r:?}");
            }
            duplicated += msgs.len() * (copies - 1);
        }
        if turn % 3 == 0 {
            c.sweep(0).await.expect("sweep");
        }
        let mut done = 0;
        for id in &ids {
            if stack.store.load_run(id).await.expect("load").expect("run").state.status.is_terminal() {
                done += 1;
            }
        }
        if done == runs {
            break;
        }
        if calls.is_empty() && msgs.is_empty() {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    let crashed = flaky.dropped.load(Ordering::SeqCst);
    injected(duplicated + lost + crashed);
    eprintln!(
        "soak: {runs} runs, {duplicated} duplicate deliveries, {lost} lost worker batches, {crashed} crashes between commit and send"
    );
    for id in &ids {
        let run = stack.store.load_run(id).await.expect("load").expect("run");
        assert_eq!(run.state.status, baton_core::engine::RunStatus::Succeeded, "run {id} (seed {seed})");
        stack.verify(id).await;
    }
    assert_eq!(service.side_effects(), runs * 5, "one side effect per http step per run (seed {seed})");
    assert!(duplicated + lost + crashed > 0, "faults were injected");
}

/// A batch whose one transition would pass DynamoDB's 100 items per transaction is split into a
/// transition per event; a single decision that large fails with an error naming the run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transition_too_large_for_one_transaction_is_split_into_one_per_event() {
    let stack = Stack::create().await;
    let c = stack.coordinator();
    let wf = r#"
name: many-approvals
steps:
  - id: items
    tool: transform
    with: {expr: "[range(180)]"}
  - id: approve
    needs: [items]
    for_each: .steps.items.output
    max_concurrency: 90
    tool: human
    with: {queue: reviewers, prompt: "item {{ .item }}?", summary: false}
"#;
    let run_id = stack.start(&c, wf, json!({})).await;
    let state = stack.store.load_run(&run_id).await.expect("load").expect("run").state;
    assert_eq!(state.tasks.len(), 90, "90 tasks open at once (95 items in the first transaction)");
    // Answering all 90 in one batch closes 90 tasks and opens the next 90: 180 task writes.
    let answer = || baton_core::engine::HumanAnswer {
        decision: baton_core::engine::Verdict::Approve,
        data: json!({}),
        comment: None,
        by: Some("bulk".into()),
        principal: None,
    };
    let events: Vec<_> = state
        .tasks
        .keys()
        .map(|t| baton_core::engine::EventKind::HumanResolved { task: t.clone(), answer: answer() })
        .collect();
    let before = stack.store.load_run(&run_id).await.expect("load").expect("run").header.version;
    c.advance(&run_id, events).await.expect("split into transitions that fit");
    let after = stack.store.load_run(&run_id).await.expect("load").expect("run");
    assert_eq!(after.header.version, before + 90, "one transition per event");
    assert_eq!(after.state.tasks.len(), 90, "the next 90 items' tasks are open");
    assert_eq!(stack.store.open_tasks().await.expect("tasks").iter().filter(|t| t.run_id == run_id).count(), 90);
    stack.verify(&run_id).await;

    // One decision opening 120 tasks at once cannot be split: it fails and names the run.
    let wide = wf.replace("max_concurrency: 90", "max_concurrency: 120").replace("many-approvals", "too-many");
    let plan = Arc::new(baton_core::load_definition(None, &wide).expect("valid"));
    let err = c.start(plan, &wide, json!({}), None).await.expect_err("too large");
    assert!(err.to_string().contains("too large") && err.to_string().contains("per transaction"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trigger_event_delivered_twice_starts_each_workflow_once() {
    let stack = Stack::create().await;
    let c = stack.coordinator();
    for name in ["on-order-a", "on-order-b"] {
        let wf = format!(
            "name: {name}\ntriggers:\n  - event: {{source: [shop]}}\nsteps:\n  - {{id: a, tool: transform, with: {{expr: .input.detail.n}}}}\n"
        );
        c.publish(&baton_core::load_definition(None, &wf).expect("valid"), &wf).await.expect("publish");
    }
    let event = json!({"version": "0", "id": "7f3c-event-1", "source": "shop", "detail-type": "OrderPlaced",
        "account": "000000000000", "time": "2026-11-25T00:00:00Z", "region": "us-east-1", "resources": [], "detail": {"n": 1}});
    stack.put("coordinator", &event.to_string()).await;
    stack.put("coordinator", &event.to_string()).await;
    injected(1);
    stack.handle_one_by_one(&c, 2).await;
    let runs = stack.store.list_runs(100).await.expect("list");
    for name in ["on-order-a", "on-order-b"] {
        assert_eq!(runs.iter().filter(|h| h.workflow == name).count(), 1, "{name} started once");
    }
}

const APPROVAL: &str = r#"
name: approval-link
steps:
  - id: approve
    tool: human
    timeout: 2h
    with: {queue: finance, prompt: "Pay?", form: {type: object, required: [reference], properties: {reference: {type: string}}}}
  - {id: pay, needs: [approve], tool: transform, with: {expr: ".steps.approve.output.data.reference"}}
"#;

fn url_request(
    method: &str,
    link: &str,
    body: Option<&str>,
) -> aws_lambda_events::event::lambda_function_urls::LambdaFunctionUrlRequest {
    let (path, query) = link.split_once('?').unwrap_or((link, ""));
    let mut req = aws_lambda_events::event::lambda_function_urls::LambdaFunctionUrlRequest::default();
    req.raw_path = Some(path.to_owned());
    req.raw_query_string = Some(query.to_owned());
    req.request_context.http.method = Some(method.to_owned());
    req.headers.insert("content-type", "application/json".parse().expect("header"));
    req.body = body.map(str::to_owned);
    req
}

/// The api function behind a function URL: the coordinator announces a signed link, a GET shows
/// the task, a tampered link and an answer that misses the form are refused, and the same link
/// posted twice (a double click, a retried POST) answers the task once, through the coordinator.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signed_link_posted_twice_answers_the_task_once_through_the_coordinator() {
    use baton_runtime::callback::CallbackSigner;
    let stack = Stack::create().await;
    let secret = b"a-signing-key-of-at-least-thirty-two-bytes";
    let signer = CallbackSigner::new(secret, "https://abc.lambda-url.us-east-1.on.aws/", 86_400_000).expect("signer");
    // The announcement is read from the outbox: a bus nobody listens on keeps it there (emulators
    // disagree on PutEvents to a bus that does not exist: moto fails it, LocalStack drops the entry).
    let nowhere = support::unreachable_config().await;
    let c = stack
        .coordinator()
        .with_bus(Arc::new(baton_aws::EventBridgeBus::new(&nowhere, "unreachable")))
        .with_callbacks(Arc::new(signer));
    let run_id = stack.start(&c, APPROVAL, json!({})).await;
    let events = stack.store.unpublished_bus_events(10).await.expect("outbox");
    let created = events.iter().find(|(_, e)| e.name == "HumanTaskCreated").expect("HumanTaskCreated").1.clone();
    let url = created.detail["callback_url"].as_str().expect("callback_url").to_owned();
    let exp = created.detail["callback_expires_at"].as_u64().expect("expiry");
    let link = url.strip_prefix("https://abc.lambda-url.us-east-1.on.aws").expect("under the base URL").to_owned();
    let now_s = baton_runtime::clock::SystemClock.now_ms() / 1000;
    assert!(exp > now_s && exp <= now_s + 2 * 3600 + 1, "the link lives as long as the task's 2h timeout: {exp}");

    let api = baton_aws::callbacks::ApiFunction::on(
        stack.store.clone(),
        Box::new(baton_aws::callbacks::QueueAnswerer(handlers::StackClient::new(&stack.moto, &stack.name))),
        CallbackSigner::verifier(secret).expect("verifier"),
    );
    let page = api.handle(url_request("GET", &link, None)).await;
    assert_eq!(page.status_code, 200, "{:?}", page.body);
    assert!(page.body.as_deref().unwrap_or_default().contains("Pay?"));
    let forged = link.replace("sig=", "sig=00");
    assert_eq!(api.handle(url_request("POST", &forged, Some(r#"{"decision":"approve"}"#))).await.status_code, 403);
    let missing = api.handle(url_request("POST", &link, Some(r#"{"decision":"approve","data":{}}"#))).await;
    assert_eq!(missing.status_code, 400, "{:?}", missing.body);
    assert!(stack.take("coordinator").await.is_empty(), "refused answers send nothing");

    let good = r#"{"decision":"approve","data":{"reference":"INV-9"},"by":"dana"}"#;
    for _ in 0..2 {
        let r = api.handle(url_request("POST", &link, Some(good))).await;
        assert_eq!(r.status_code, 202, "{:?}", r.body);
    }
    stack.handle_one_by_one(&c, 2).await;
    let closed = api.handle(url_request("POST", &link, Some(good))).await;
    assert_eq!(closed.status_code, 409, "{:?}", closed.body);
    let run = stack.pump(&c, &stack.worker(), &run_id, 1).await;
    assert_eq!(run["status"], "succeeded", "{run}");
    assert_eq!(run["steps"]["pay"]["output"], "INV-9");
    let audit = stack.store.load_audit(&run_id).await.expect("audit");
    assert_eq!(
        audit.iter().filter(|r| r.decision == "succeed_step" && r.step.as_deref() == Some("approve")).count(),
        1
    );
    stack.verify(&run_id).await;
}

/// One attribute of a queue, as the emulator reports it.
async fn queue_attribute(stack: &Stack, url: &str, name: QueueAttributeName) -> Option<String> {
    let got = stack.sqs.get_queue_attributes().queue_url(url).attribute_names(name.clone()).send().await;
    got.expect("queue attributes").attributes().and_then(|a| a.get(&name).cloned())
}

const RETRIED_WHEN_DEAD_LETTERED: &str = r#"
name: dead-lettered
input_schema: {type: object, required: [base], properties: {base: {type: string}}}
output: .steps.a.output.body.path
steps:
  - id: a
    tool: http
    retry: {max_attempts: 2, initial: 1s, on: [dead_lettered]}
    with: {method: POST, url: "{{ .input.base }}/a"}
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_the_redrive_policy_dead_letters_fails_its_attempt_and_the_retry_runs() {
    let stack = Stack::create().await;
    let service = Service::start(Duration::ZERO);
    // The emulator's own redrive: the second receive that is not deleted is the last.
    let dlq_url = stack.url("http-dlq").await;
    let dlq_arn = queue_attribute(&stack, &dlq_url, QueueAttributeName::QueueArn).await.expect("dlq arn");
    let redrive = json!({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": "2"}).to_string();
    let http_url = stack.url("http").await;
    stack
        .sqs
        .set_queue_attributes()
        .queue_url(&http_url)
        .attributes(QueueAttributeName::RedrivePolicy, redrive)
        .send()
        .await
        .expect("redrive policy");
    // A message baton dead-lettered itself (with its reason) stays for an operator.
    let reason = aws_sdk_sqs::types::MessageAttributeValue::builder()
        .data_type("String")
        .string_value("body is not a baton tool call")
        .build()
        .expect("attribute");
    stack
        .sqs
        .send_message()
        .queue_url(&dlq_url)
        .message_body(r#"{"hello":"world"}"#)
        .message_attributes("baton-reason", reason)
        .send()
        .await
        .expect("send");

    let (c, w) = (stack.coordinator(), stack.worker());
    let run_id = stack.start(&c, RETRIED_WHEN_DEAD_LETTERED, json!({"base": service.base})).await;
    // A worker that dies on the call, twice: received, never deleted, visible again after 1 s.
    let mut receives = 0;
    for _ in 0..40 {
        let got = stack.sqs.receive_message().queue_url(&http_url).send().await.expect("receive");
        receives += got.messages().len();
        if receives == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    assert_eq!(receives, 2, "the call was received twice");
    injected(2);
    // The next receive after the visibility timeout finds it gone: the emulator moved it to the
    // dead-letter queue (the emulator lets visibility lapse on its own clock, so poll).
    let mut moved = false;
    for _ in 0..40 {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let got = stack.sqs.receive_message().queue_url(&http_url).send().await.expect("receive");
        assert!(got.messages().is_empty(), "a third receive: the redrive policy did not move the call");
        let mut left = 0;
        for name in
            [QueueAttributeName::ApproximateNumberOfMessages, QueueAttributeName::ApproximateNumberOfMessagesNotVisible]
        {
            left += queue_attribute(&stack, &http_url, name).await.and_then(|v| v.parse::<u64>().ok()).unwrap_or(1);
        }
        if left == 0 {
            moved = true;
            break;
        }
    }
    assert!(moved, "the call is still on its queue");

    let failed = c.recover_dead_letters().await.expect("recover");
    assert_eq!(failed, 1, "the redriven call failed its attempt; baton's own dead letter stayed");
    let run = stack.pump(&c, &w, &run_id, 1).await;
    assert_eq!(run["status"], "succeeded", "{run}");
    assert_eq!(service.side_effects(), 1, "only the retry reached the service");
    let events = stack.store.load_events(&run_id).await.expect("events");
    let dead = events.iter().find_map(|(_, e)| match &e.kind {
        baton_core::engine::EventKind::StepFailed { attempt: 1, error, .. } => Some(error.clone()),
        _ => None,
    });
    let dead = dead.expect("attempt 1 failed");
    assert_eq!(dead.kind, baton_core::engine::ErrorKind::DeadLettered);
    assert!(dead.message.contains("`http` dead-letter queue"), "{}", dead.message);
    // The kept letter stays on the queue, visible (the queue's alarm counts visible messages).
    assert_eq!(c.recover_dead_letters().await.expect("recover"), 0);
    let visible = queue_attribute(&stack, &dlq_url, QueueAttributeName::ApproximateNumberOfMessages).await;
    assert_eq!(visible.as_deref(), Some("1"), "baton's own dead letter is kept, visible");
    stack.verify(&run_id).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throttling_lost_replies_and_an_outage_between_sdk_and_emulator_lose_and_duplicate_nothing() {
    let stack = Stack::create().await;
    let service = Service::start(Duration::ZERO);
    let seed = std::env::var("BATON_FAULT_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(11);
    // The faults depend on the order requests arrive in as well, so a seed does not replay a run.
    eprintln!("fault proxy seed {seed}");
    // Every request of the stack's functions goes through a proxy of its own endpoint.
    let aws = support::fault_proxy::FaultProxy::start(&support::aws_endpoint(), seed).await;
    let ddb = support::fault_proxy::FaultProxy::start(&support::endpoint(), seed + 1).await;
    let via_aws = baton_aws::config::for_emulator(&aws.endpoint).await;
    let via_ddb = baton_aws::config::for_emulator(&ddb.endpoint).await;
    // Runs are started beside the faults, as `baton start` would.
    let c = stack.coordinator();
    let mut runs = Vec::new();
    for _ in 0..8 {
        runs.push(stack.start(&c, CHAIN, json!({"base": service.base})).await);
    }
    for p in [&aws, &ddb] {
        p.rates(60, 40);
    }
    let host = Host::start(&stack, &via_aws, &via_ddb);
    tokio::time::sleep(Duration::from_millis(700)).await;
    // The emulator goes away for two seconds: every connection is reset.
    aws.outage(Duration::from_secs(2));
    ddb.outage(Duration::from_secs(2));
    stack.wait_ended(&runs, Duration::from_secs(120)).await;
    host.stop().await;
    for id in &runs {
        let run = stack.store.load_run(id).await.expect("load").expect("run");
        assert_eq!(run.state.status, baton_core::engine::RunStatus::Succeeded, "{id}: {:?}", run.state.error);
        stack.verify(id).await;
    }
    assert_eq!(service.side_effects(), 2 * runs.len(), "each http step once per key");
    let effects = service.effects.lock().expect("effects").clone();
    assert!(effects.values().all(|n| *n == 1), "a key had two side effects: {effects:?}");
    let injected = aws.injected() + ddb.injected();
    eprintln!(
        "fault proxy: aws {:?}, dynamodb {:?} (requests, throttled, replies lost, resets)",
        aws.counts(),
        ddb.counts()
    );
    assert!(injected >= 20, "only {injected} faults were injected");
    support::fault_stack::injected(injected);
}
