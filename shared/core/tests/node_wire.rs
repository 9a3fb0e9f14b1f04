//! Stored run state reads back and writes out byte-identical: nodes of every state, as the engine
//! wrote them before nodes became an enum of their states, and a whole run.

use baton_core::engine::{Node, NodeStatus, Phase, RunState};

/// One node per state and shape the engine produces (and a few it produces only with mocks or
/// `fallback: cache`), serialized by the engine before the reshape.
const NODES: &[&str] = &[
    r#"{"step":0,"iteration":0,"role":{"role":"dag"},"status":"cancelled","attempt":1,"error":{"kind":"timeout","message":"simulated"},"reason":"the run stopped","started_at":1700000000000,"ended_at":1700000000084,"end_order":3,"loop_iteration":0,"mocked":false}"#,
    r#"{"step":1,"iteration":0,"role":{"role":"dag"},"status":"cancelled","attempt":1,"reason":"the run stopped","started_at":1700000000000,"ended_at":1700000000000,"end_order":1,"loop_iteration":0,"mocked":false}"#,
    r#"{"step":0,"iteration":0,"role":{"role":"dag"},"status":"failed","attempt":0,"error":{"kind":"rejected","message":"ana rejected the loop after its bound"},"reason":"ana rejected the loop after its bound","started_at":1700000000000,"ended_at":1700000000000,"end_order":4,"loop_iteration":3,"mocked":false}"#,
    r#"{"step":0,"iteration":0,"role":{"role":"agent","of":"resolve"},"status":"failed","attempt":2,"error":{"kind":"llm_invalid_output","message":"llm_invalid_output happened"},"reason":"llm_invalid_output happened","started_at":1700000000000,"ended_at":1700000060000,"end_order":5,"loop_iteration":0,"mocked":false}"#,
    r#"{"step":7,"iteration":0,"role":{"role":"compensation","of":"s0"},"status":"failed","attempt":1,"error":{"kind":"http_4xx","message":"simulated"},"reason":"simulated","started_at":1700000000031,"ended_at":1700000000055,"end_order":4,"loop_iteration":0,"mocked":false}"#,
    r#"{"step":0,"iteration":0,"role":{"role":"dag"},"status":"failed","attempt":1,"error":{"kind":"timeout","message":"attempt 1 did not finish within 10m"},"reason":"attempt 1 did not finish within 10m","started_at":1700000000000,"ended_at":1700000600000,"end_order":1,"loop_iteration":0,"mocked":false}"#,
    r#"{"step":1,"iteration":0,"role":{"role":"fallback","of":"primary"},"status":"failed","attempt":1,"error":{"kind":"http_4xx","message":"http_4xx happened"},"reason":"http_4xx happened","started_at":1700000000000,"ended_at":1700000000000,"end_order":1,"loop_iteration":0,"mocked":false}"#,
    r#"{"step":0,"iteration":0,"role":{"role":"dag"},"status":"failed","attempt":1,"error":{"kind":"llm_invalid_output","message":"turn 3 failed: llm_invalid_output happened"},"reason":"turn 3 failed: llm_invalid_output happened","started_at":1700000000000,"ended_at":1700000060000,"end_order":6,"loop_iteration":0,"mocked":false,"agent":{"attempt":1,"turn":3,"calls":[{"turn":1,"tool":"lookup","arguments":{"id":"x"},"node":"resolve.lookup~resolve.1.1.0","output":{"status":404}},{"turn":2,"tool":"lookup","arguments":{"id":"x"},"node":"resolve.lookup~resolve.1.2.0","output":{"status":404}}]}}"#,
    r#"{"step":0,"iteration":0,"index":0,"role":{"role":"dag"},"status":"failed","attempt":1,"error":{"kind":"http_4xx","message":"http_4xx happened"},"started_at":1700000000000,"ended_at":1700000000000,"end_order":1,"loop_iteration":0,"mocked":false}"#,
    r#"{"step":0,"iteration":0,"role":{"role":"dag"},"status":"fell_back","attempt":1,"output":"fb","error":{"kind":"http_4xx","message":"http_4xx happened"},"reason":"fallback `backup` stood in","started_at":1700000000000,"ended_at":1700000000000,"end_order":2,"loop_iteration":0,"mocked":false}"#,
    r#"{"step":0,"iteration":0,"role":{"role":"dag"},"status":"fell_back","attempt":0,"output":"fb","error":{"kind":"http_4xx","message":"item 0 failed: http_4xx happened"},"reason":"fallback `backup` stood in","started_at":1700000000000,"ended_at":1700000000000,"end_order":4,"items":{"values":[1,2,3,4],"started":2,"done":0},"loop_iteration":0,"mocked":false}"#,
    r#"{"step":1,"iteration":0,"role":{"role":"agent","of":"resolve"},"status":"retry_scheduled","attempt":1,"error":{"kind":"http_5xx","message":"http_5xx happened"},"started_at":1700000000000,"loop_iteration":0,"mocked":false,"args":{"id":"A-1"}}"#,
    r#"{"step":0,"iteration":0,"role":{"role":"agent","of":"resolve"},"status":"retry_scheduled","attempt":1,"error":{"kind":"http_5xx","message":"http_5xx happened"},"started_at":1700000000000,"loop_iteration":0,"mocked":false}"#,
    r#"{"step":0,"iteration":0,"role":{"role":"dag"},"status":"retry_scheduled","attempt":1,"error":{"kind":"http_429","message":"slow down","retry_after_ms":5000},"started_at":1700000000000,"loop_iteration":0,"mocked":false}"#,
    r#"{"step":0,"iteration":0,"role":{"role":"dag"},"status":"running","attempt":1,"started_at":1700000000000,"loop_iteration":0,"mocked":false,"agent":{"attempt":1,"turn":1,"calls":[]}}"#,
    r#"{"step":1,"iteration":0,"role":{"role":"agent","of":"resolve"},"status":"running","attempt":1,"started_at":1700000000000,"loop_iteration":0,"mocked":false,"args":{"id":"A-1"}}"#,
    r#"{"step":1,"iteration":0,"role":{"role":"agent","of":"resolve"},"status":"running","attempt":2,"error":{"kind":"http_5xx","message":"http_5xx happened"},"started_at":1700000000000,"loop_iteration":0,"mocked":false,"args":{"id":"A-1"}}"#,
    r#"{"step":0,"iteration":0,"role":{"role":"agent","of":"resolve"},"status":"running","attempt":2,"error":{"kind":"http_5xx","message":"http_5xx happened"},"started_at":1700000000000,"loop_iteration":0,"mocked":false}"#,
    r#"{"step":0,"iteration":0,"role":{"role":"dag"},"status":"running","attempt":2,"error":{"kind":"http_429","message":"slow down","retry_after_ms":5000},"started_at":1700000000000,"loop_iteration":0,"mocked":false}"#,
    r#"{"step":2,"iteration":0,"index":0,"role":{"role":"dag"},"status":"running","attempt":1,"started_at":1700000000000,"loop_iteration":0,"mocked":false}"#,
    r#"{"step":2,"iteration":0,"role":{"role":"dag"},"status":"running","attempt":0,"started_at":1700000000000,"items":{"values":[{"qty":2,"sku":"A-1"},{"qty":1,"sku":"B-7"}],"started":2,"done":0},"loop_iteration":0,"mocked":false}"#,
    r#"{"step":0,"iteration":0,"role":{"role":"dag"},"status":"running","attempt":0,"started_at":1700000000000,"loop_iteration":1,"mocked":false}"#,
    r#"{"step":0,"iteration":0,"role":{"role":"agent","of":"a"},"status":"running","attempt":1,"started_at":1700000000000,"loop_iteration":0,"mocked":false}"#,
    r#"{"step":4,"iteration":0,"role":{"role":"compensation","of":"b"},"status":"running","attempt":1,"started_at":1700000000000,"loop_iteration":0,"mocked":false}"#,
    r#"{"step":1,"iteration":0,"role":{"role":"dag"},"status":"running","attempt":1,"started_at":1700002000000,"loop_iteration":0,"mocked":false}"#,
    r#"{"step":1,"iteration":0,"role":{"role":"fallback","of":"primary"},"status":"running","attempt":1,"started_at":1700000000000,"loop_iteration":0,"mocked":false}"#,
    r#"{"step":3,"iteration":0,"role":{"role":"dag"},"status":"skipped","attempt":0,"reason":"need `followup` was skipped","started_at":1700000000000,"ended_at":1700000000000,"end_order":4,"loop_iteration":0,"mocked":false}"#,
    r#"{"step":2,"iteration":0,"index":0,"role":{"role":"dag"},"status":"succeeded","attempt":1,"output":{"position":0,"reserved":true,"sku":"A-1"},"started_at":1700000000000,"ended_at":1700000000000,"end_order":3,"loop_iteration":0,"mocked":false}"#,
    r#"{"step":0,"iteration":0,"role":{"role":"dag"},"status":"succeeded","attempt":0,"output":{"draft":{"score":1}},"started_at":1700000000000,"ended_at":1700000000000,"end_order":4,"loop_iteration":3,"mocked":false}"#,
    r#"{"step":0,"iteration":0,"role":{"role":"agent","of":"resolve"},"status":"succeeded","attempt":1,"output":{"action":"call","calls":[{"arguments":{"id":"A-1"},"tool":"lookup"},{"arguments":{},"tool":"refund"}]},"started_at":1700000000000,"ended_at":1700000000000,"end_order":1,"loop_iteration":0,"mocked":false}"#,
    r#"{"step":4,"iteration":0,"role":{"role":"compensation","of":"b"},"status":"succeeded","attempt":1,"output":null,"started_at":1700000000000,"ended_at":1700000000000,"end_order":3,"loop_iteration":0,"mocked":false}"#,
    r#"{"step":0,"iteration":0,"role":{"role":"dag"},"status":"succeeded","attempt":1,"output":{"detail":{"amount":12,"order_id":"A-7"},"detail-type":"PaymentReceived","id":"e1","source":"shop.payments"},"started_at":1700000000000,"ended_at":1700002000000,"end_order":1,"loop_iteration":0,"mocked":false}"#,
    r#"{"step":1,"iteration":0,"role":{"role":"fallback","of":"primary"},"status":"succeeded","attempt":1,"output":"fb","started_at":1700000000000,"ended_at":1700000000000,"end_order":1,"loop_iteration":0,"mocked":false}"#,
    r#"{"step":0,"iteration":0,"role":{"role":"dag"},"status":"succeeded","attempt":1,"output":{"status":"shipped"},"started_at":1700000000000,"ended_at":1700000060000,"end_order":4,"loop_iteration":0,"mocked":false,"agent":{"attempt":1,"turn":2,"calls":[{"turn":1,"tool":"lookup","arguments":{"id":"A-1"},"node":"resolve.lookup~resolve.1.1.0","output":{"body":{"state":"shipped"},"status":200}},{"turn":1,"tool":"refund","arguments":{},"error":{"kind":"tool","message":"there is no tool `refund`"}}]}}"#,
    r#"{"step":1,"iteration":0,"role":{"role":"agent","of":"resolve"},"status":"succeeded","attempt":1,"output":{"status":404},"started_at":1700000000000,"ended_at":1700000000000,"end_order":2,"loop_iteration":0,"mocked":false,"args":{"id":"x"}}"#,
    r#"{"step":2,"iteration":0,"role":{"role":"dag"},"status":"succeeded","attempt":0,"output":[{"position":0,"reserved":true,"sku":"A-1"},{"position":1,"reserved":true,"sku":"B-7"}],"started_at":1700000000000,"ended_at":1700000000000,"end_order":5,"items":{"values":[{"qty":2,"sku":"A-1"},{"qty":1,"sku":"B-7"}],"started":2,"done":2},"loop_iteration":0,"mocked":false}"#,
    r#"{"step":0,"iteration":0,"role":{"role":"dag"},"status":"succeeded","attempt":2,"output":{"ok":2},"error":{"kind":"timeout","message":"attempt 1 did not finish within 30s"},"started_at":1700000000000,"ended_at":1700000032000,"end_order":1,"loop_iteration":0,"mocked":false}"#,
    r#"{"step":1,"iteration":0,"role":{"role":"agent","of":"resolve"},"status":"succeeded","attempt":2,"output":{"body":{"state":"shipped"},"status":200},"error":{"kind":"http_5xx","message":"http_5xx happened"},"started_at":1700000000000,"ended_at":1700000060000,"end_order":2,"loop_iteration":0,"mocked":false,"args":{"id":"A-1"}}"#,
    r#"{"step":0,"iteration":0,"role":{"role":"dag"},"status":"waiting","attempt":0,"error":{"kind":"http_4xx","message":"item 0 failed: http_4xx happened"},"started_at":1700000000000,"items":{"values":[1,2],"started":2,"done":0},"loop_iteration":0,"mocked":false}"#,
    r#"{"step":0,"iteration":0,"role":{"role":"dag"},"status":"waiting","attempt":1,"error":{"kind":"http_4xx","message":"http_4xx happened"},"started_at":1700000000000,"loop_iteration":0,"mocked":false}"#,
    r#"{"step":0,"iteration":0,"role":{"role":"dag"},"status":"waiting","attempt":0,"started_at":1700000000000,"loop_iteration":3,"task":"t-51701617a806","mocked":false}"#,
    r#"{"step":0,"iteration":0,"role":{"role":"dag"},"status":"waiting","attempt":1,"started_at":1700000000000,"loop_iteration":0,"task":"w-f5d132fd839a","mocked":false}"#,
    r#"{"step":0,"iteration":0,"role":{"role":"dag"},"status":"waiting","attempt":1,"started_at":1700000000000,"loop_iteration":0,"mocked":false}"#,
    r#"{"step":0,"iteration":0,"role":{"role":"dag"},"status":"failed","attempt":1,"error":{"kind":"http_4xx","message":"scripted"},"reason":"scripted","started_at":1700000000000,"ended_at":1700000000001,"end_order":1,"loop_iteration":0,"mocked":true}"#,
    r#"{"step":0,"iteration":0,"role":{"role":"dag"},"status":"fell_back","attempt":3,"output":{"price":4},"error":{"kind":"http_5xx","message":"down"},"reason":"served the cached response, 2m old, because the call failed with `http_5xx`","started_at":1700000000000,"ended_at":1700000000002,"end_order":3,"loop_iteration":0,"mocked":false,"stale":{"age_ms":120000,"cached_at":1699999880000}}"#,
    r#"{"step":0,"iteration":0,"role":{"role":"dag"},"status":"waiting","attempt":2,"error":{"kind":"timeout","message":"attempt 1 did not finish within 1h"},"started_at":1700000000000,"loop_iteration":0,"task":"t-0123456789ab","mocked":false}"#,
    r#"{"step":1,"iteration":2,"role":{"role":"dag"},"status":"succeeded","attempt":1,"output":{"score":1},"started_at":1700000000000,"ended_at":1700000000003,"end_order":5,"loop_iteration":0,"mocked":true}"#,
    r#"{"step":0,"iteration":0,"role":{"role":"dag"},"status":"retry_scheduled","attempt":1,"error":{"kind":"http_5xx","message":"scripted"},"started_at":1700000000000,"loop_iteration":0,"mocked":true}"#,
    r#"{"step":0,"iteration":0,"role":{"role":"dag"},"status":"cancelled","attempt":1,"error":{"kind":"http_5xx","message":"scripted"},"reason":"the run stopped","started_at":1700000000000,"ended_at":1700000000004,"end_order":2,"loop_iteration":0,"mocked":true}"#,
];

/// A run waiting on a person, with items, timers and a task, as stored before the reshape.
const RUN: &str = r#"{"run_id":"run-1","workflow":"order-triage","definition":"1dba816662096e61fdacbb4ce503a929f3319494ee64c564a431c5b51c5140e4","status":"running","phase":{"phase":"active"},"input":{"order_id":"O-7","promised_by":120},"created_at":1700000000000,"nodes":{"approve_refund":{"step":5,"iteration":0,"role":{"role":"dag"},"status":"waiting","attempt":1,"started_at":1700000000000,"loop_iteration":0,"task":"t-5e1346db445f","mocked":false},"inventory":{"step":0,"iteration":0,"role":{"role":"dag"},"status":"succeeded","attempt":1,"output":{"lines":[{"qty":2,"sku":"A-1"},{"qty":1,"sku":"B-7"}],"promised_by":120},"started_at":1700000000000,"ended_at":1700000000000,"end_order":1,"loop_iteration":0,"mocked":false},"late":{"step":3,"iteration":0,"role":{"role":"dag"},"status":"succeeded","attempt":1,"output":true,"started_at":1700000000000,"ended_at":1700000000000,"end_order":6,"loop_iteration":0,"mocked":false},"lines":{"step":2,"iteration":0,"role":{"role":"dag"},"status":"succeeded","attempt":0,"output":[{"position":0,"reserved":true,"sku":"A-1"},{"position":1,"reserved":true,"sku":"B-7"}],"started_at":1700000000000,"ended_at":1700000000000,"end_order":5,"items":{"values":[{"qty":2,"sku":"A-1"},{"qty":1,"sku":"B-7"}],"started":2,"done":2},"loop_iteration":0,"mocked":false},"lines[0]":{"step":2,"iteration":0,"index":0,"role":{"role":"dag"},"status":"succeeded","attempt":1,"output":{"position":0,"reserved":true,"sku":"A-1"},"started_at":1700000000000,"ended_at":1700000000000,"end_order":3,"loop_iteration":0,"mocked":false},"lines[1]":{"step":2,"iteration":0,"index":1,"role":{"role":"dag"},"status":"succeeded","attempt":1,"output":{"position":1,"reserved":true,"sku":"B-7"},"started_at":1700000000000,"ended_at":1700000000000,"end_order":4,"loop_iteration":0,"mocked":false},"shipping":{"step":1,"iteration":0,"role":{"role":"dag"},"status":"succeeded","attempt":1,"output":{"carrier":"acme","eta":125},"started_at":1700000000000,"ended_at":1700000000000,"end_order":2,"loop_iteration":0,"mocked":false},"ticket":{"step":4,"iteration":0,"role":{"role":"dag"},"status":"succeeded","attempt":1,"output":{"reason":"late delivery","ticket_id":"T-O-7"},"started_at":1700000000000,"ended_at":1700000000000,"end_order":7,"loop_iteration":0,"mocked":false}},"pending":[],"open":["approve_refund"],"timers":{"escalate/approve_refund/1/0":{"at":1700014400000,"kind":{"kind":"escalate","node":"approve_refund","attempt":1,"level":0}},"timeout/approve_refund/1":{"at":1700028800000,"kind":{"kind":"timeout","node":"approve_refund","attempt":1}}},"tasks":{"t-5e1346db445f":{"node":"approve_refund","queue":"support-l2","loop_escalation":false}},"audit_seq":17,"audit_head":"719e02e876cb6ddcd647ed5d314ea69d835dbe0e544d344ea66efe143a6699b1","rng":3,"end_counter":7}"#;

#[test]
fn stored_nodes_of_every_state_round_trip_byte_identical() {
    for sample in NODES {
        let node: Node = serde_json::from_str(sample).unwrap_or_else(|e| panic!("{e}: {sample}"));
        let again = serde_json::to_string(&node).unwrap_or_else(|e| panic!("{e}: {sample}"));
        assert_eq!(&again, sample);
    }
}

#[test]
fn the_samples_cover_every_status() {
    let statuses: Vec<String> = NODES
        .iter()
        .map(|s| serde_json::from_str::<serde_json::Value>(s).map(|v| v["status"].to_string()).unwrap_or_default())
        .collect();
    for status in [
        NodeStatus::Running,
        NodeStatus::Waiting,
        NodeStatus::RetryScheduled,
        NodeStatus::Succeeded,
        NodeStatus::Failed,
        NodeStatus::Skipped,
        NodeStatus::FellBack,
        NodeStatus::Cancelled,
    ] {
        assert!(statuses.contains(&format!("\"{}\"", status.as_str())), "no sample of {status:?}");
    }
}

#[test]
fn a_stored_run_round_trips_byte_identical() {
    let state: RunState = serde_json::from_str(RUN).expect("run state");
    assert_eq!(serde_json::to_string(&state).expect("serialize"), RUN);
    let phase = r#"{"phase":"compensating","outcome":"failed","queue":["b","a[0]"]}"#;
    let read: Phase = serde_json::from_str(phase).expect("phase");
    assert_eq!(serde_json::to_string(&read).expect("serialize"), phase);
}

#[test]
fn a_succeeded_node_stored_without_its_null_output_reads_as_null() {
    // Stores re-saved by earlier versions dropped a null output; it reads back, and is written
    // out as the engine writes a node it ends.
    let stored = r#"{"step":4,"iteration":0,"role":{"role":"dag"},"status":"succeeded","attempt":1,"started_at":1,"ended_at":2,"end_order":3,"loop_iteration":0,"mocked":false}"#;
    let node: Node = serde_json::from_str(stored).expect("node");
    assert_eq!(node.output(), Some(&serde_json::Value::Null));
    assert_eq!(node.end_order(), Some(3));
}

#[test]
fn a_stored_node_without_what_its_status_requires_is_rejected() {
    let stored = r#"{"step":0,"iteration":0,"role":{"role":"dag"},"status":"failed","attempt":1,"started_at":1,"ended_at":2,"end_order":3,"loop_iteration":0,"mocked":false}"#;
    let err = serde_json::from_str::<Node>(stored).expect_err("a failed node needs its error");
    assert!(err.to_string().contains("stored node in state `failed` has no `error`"), "{err}");
}
