//! The DynamoDB run store against the local AWS emulator, over HTTP: the same store contract the
//! SQLite store passes, and whole workflows giving the same results as on SQLite.

mod support;

use std::sync::Arc;

use baton_embedded::sqlite::{Durability, SqliteStore};
use baton_runtime::Coordinator;
use baton_runtime::clock::SystemClock;
use baton_runtime::ports::RunStore;
use baton_runtime::store_contract;
use serde_json::json;
use support::fresh_store;

baton_runtime::store_contract_tests!(async { ((), Arc::new(fresh_store().await)) });

#[tokio::test]
async fn definitions_are_stored_once_under_the_workflow() {
    let store = fresh_store().await;
    store.put_definition("abc", "wf", "name: wf").await.expect("put");
    store.put_definition("abc", "wf", "name: wf").await.expect("put again is fine");
    assert_eq!(store.get_definition("wf", "abc").await.expect("get").as_deref(), Some("name: wf"));
    assert_eq!(store.get_definition("wf", "nope").await.expect("get"), None);
}

/// Runs a workflow to its end on `store` and returns (final run object, audit decisions).
async fn run_on(
    store: Arc<dyn RunStore>,
    yaml: &str,
    input: serde_json::Value,
    mocks: Option<serde_json::Value>,
) -> (serde_json::Value, Vec<String>) {
    let c = Coordinator::new(store, baton_tools::builtin(), Arc::new(SystemClock));
    let plan = Arc::new(baton_core::load_definition(None, yaml).expect("valid"));
    let id = c.start(plan.clone(), yaml, input, mocks).await.expect("start");
    c.drive(std::slice::from_ref(&id), std::future::pending()).await.expect("drive");
    let stored = c.store().load_run(&id).await.expect("load").expect("exists");
    let mut obj = baton_runtime::report::run_json(&plan, &stored.state);
    obj["run_id"] = json!("-");
    let audit = c.store().load_audit(&id).await.expect("audit");
    baton_core::audit::verify_chain(&audit).expect("intact chain");
    let replay = baton_runtime::audit_check::replay(&c, &id).await.expect("replay runs");
    assert!(replay.is_ok(), "{replay:?}");
    (obj, audit.iter().map(|r| format!("{} {}", r.decision, r.node.as_deref().unwrap_or("run"))).collect())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn example_workflows_give_the_same_results_on_dynamodb_and_sqlite() {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");
    let cases = [
        (
            "workflows/order-triage/workflow.yaml",
            json!({"order_id": "o-7", "promised_by": 120}),
            Some("workflows/order-triage/mocks.yaml"),
        ),
        ("tests/fixtures/workflows/saga.yaml", json!({}), None),
        ("tests/fixtures/workflows/refine-loop.yaml", json!({}), None),
    ];
    for (file, input, mocks) in cases {
        let yaml = std::fs::read_to_string(format!("{root}/{file}")).expect("read workflow");
        let mocks = mocks.map(|m| {
            let text = std::fs::read_to_string(format!("{root}/{m}")).expect("read mocks");
            baton_core::source::SourceDocument::parse(&text).expect("mocks parse").value
        });
        let dir = tempfile_dir();
        let sqlite: Arc<dyn RunStore> = Arc::new(SqliteStore::open(&dir, Durability::Normal).expect("sqlite"));
        let dynamo: Arc<dyn RunStore> = Arc::new(fresh_store().await);
        let (a, da) = run_on(sqlite, &yaml, input.clone(), mocks.clone()).await;
        let (b, db) = run_on(dynamo, &yaml, input, mocks).await;
        assert_eq!(a, b, "{file}: same outputs and statuses on both backends");
        assert_eq!(da, db, "{file}: same audit decisions on both backends");
        let _ = std::fs::remove_dir_all(&dir);
    }
}

fn tempfile_dir() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("baton-aws-test-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wide_fan_out_splits_across_items_and_transactions() {
    // 150 parallel steps: the start decision alone appends 150+ audit records and journal
    // entries; packing keeps that within one transaction's item limit.
    let mut yaml = String::from("name: wide\noutput: \"[.steps[].output] | add\"\nsteps:\n");
    for i in 0..150 {
        yaml.push_str(&format!("  - {{id: b{i}, tool: transform, with: {{expr: \"1\"}}}}\n"));
    }
    let (obj, _) = run_on(Arc::new(fresh_store().await), &yaml, json!({}), None).await;
    assert_eq!(obj["status"], "succeeded");
    assert_eq!(obj["output"], 150);
}

#[tokio::test]
async fn a_conflict_in_a_shared_transaction_names_the_run_that_lost() {
    use baton_runtime::ports::Precondition;
    let store = fresh_store().await;
    store.commit(&[store_contract::transition("ok-run", 1, Precondition::DoesNotExist, 1..=1)]).await.expect("create");
    store
        .commit(&[store_contract::transition("lost-run", 1, Precondition::DoesNotExist, 1..=1)])
        .await
        .expect("create");
    let batch = [
        store_contract::transition("ok-run", 2, Precondition::MatchesVersion(1), 2..=2),
        store_contract::transition("lost-run", 2, Precondition::MatchesVersion(5), 2..=2),
    ];
    match store.commit(&batch).await {
        Err(baton_runtime::StoreError::Conflict { run_id, expected }) => {
            assert_eq!((run_id.as_str(), expected), ("lost-run", 5));
        }
        other => panic!("expected a conflict, got {other:?}"),
    }
}

/// An event finds its candidate waits under its source and detail type (and the waits whose
/// patterns name neither), not every open wait; a closed wait is listed nowhere.
#[tokio::test]
async fn an_event_reads_only_the_waits_listed_under_its_source_and_type() {
    use baton_runtime::ports::{Precondition, TaskChange};
    use baton_runtime::store_contract::{event_wait, transition};
    let store = fresh_store().await;
    let wait =
        |id: &str, pattern: serde_json::Value| event_wait(id, "rw", id, serde_json::json!({"pattern": pattern}), 1_000);
    let mut t = transition("rw", 1, Precondition::DoesNotExist, 1..=1);
    t.tasks = vec![
        wait("shop-paid", serde_json::json!({"source": ["shop"], "detail-type": ["Paid"]})),
        wait("shop-any", serde_json::json!({"source": ["shop"]})),
        wait("bank-paid", serde_json::json!({"source": ["bank"], "detail-type": ["Paid"]})),
        wait("bank", serde_json::json!({"source": "bank"})),
        wait("prefix", serde_json::json!({"source": [{"prefix": "sh"}]})),
    ];
    store.commit(&[t]).await.expect("open");
    let event = serde_json::json!({"source": "shop", "detail-type": "Paid", "detail": {}});
    let keys = baton_runtime::wait_index::event_keys(&event);
    let mut found: Vec<String> =
        store.open_waits(&keys).await.expect("waits").into_iter().map(|t| t.id.to_string()).collect();
    found.sort();
    assert_eq!(found, ["prefix", "shop-any", "shop-paid"], "the bank's waits are not read");
    let mut t = transition("rw", 2, Precondition::MatchesVersion(1), 2..=2);
    t.tasks = vec![TaskChange::Close { id: "shop-paid".into(), outcome: "event received".into() }];
    store.commit(&[t]).await.expect("close");
    let mut found: Vec<String> =
        store.open_waits(&keys).await.expect("waits").into_iter().map(|t| t.id.to_string()).collect();
    found.sort();
    assert_eq!(found, ["prefix", "shop-any"]);
}

/// A run's personal data erased on DynamoDB: sealed in every record, then gone from the header,
/// the journal and the fact the run wrote, with the log still verifying and naming the erasure.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn erasing_a_sealed_field_scrubs_every_item_of_the_run() {
    const YAML: &str = r#"
name: erase-me
sensitive: [input.email, steps.lookup.output.phone]
memory: {entity: '"customer-\(.input.id)"'}
steps:
  - {id: lookup, tool: transform, with: {expr: '{phone: "+49 151 23456789", note: "reach \(.input.email) first"}'}}
  - {id: remember, needs: [lookup], tool: memory, with: {op: write, key: contact, value: '{{ .steps.lookup.output }}'}}
output: '{note: .steps.lookup.output.note}'
"#;
    let store: Arc<dyn RunStore> = Arc::new(fresh_store().await);
    let c = Coordinator::new(store.clone(), baton_tools::builtin(), Arc::new(SystemClock));
    let plan = Arc::new(baton_core::load_definition(None, YAML).expect("valid"));
    let input = json!({"id": "c-9", "email": "ada@example.com"});
    let id = c.start(plan, YAML, input, None).await.expect("start");
    c.drive(std::slice::from_ref(&id), std::future::pending()).await.expect("drive");
    let records = serde_json::to_string(&store.load_audit(&id).await.expect("audit")).expect("json");
    assert!(!records.contains("ada@example.com") && !records.contains("+49 151"), "sealed in every record: {records}");
    assert!(records.contains("⟦input.email⟧"), "named inside strings: {records}");
    let control = baton_runtime::InProcessControl::new(Arc::new(c));
    use baton_runtime::RunControl;
    let verified = control.verify_audit(&id).await.expect("verify").expect("intact");
    assert_eq!(verified.sealed.fields, 2);

    let erased = control.redact(&id, &["input.email".into(), "steps.lookup".into()], "GDPR-9").await.expect("redact");
    assert_eq!(erased, vec!["input.email".to_owned(), "steps.lookup.output.phone".to_owned()]);
    let run = store.load_run(&id).await.expect("load").expect("exists");
    let state = serde_json::to_string(&run.state).expect("json");
    let events = serde_json::to_string(&store.load_events(&id).await.expect("events")).expect("json");
    let facts = serde_json::to_string(&store.facts("customer-c-9").await.expect("facts")).expect("json");
    for (what, text) in [("state", &state), ("journal", &events), ("facts", &facts)] {
        assert!(!text.contains("ada@example.com") && !text.contains("+49 151"), "{what} still holds a value: {text}");
    }
    assert!(facts.contains("[erased steps.lookup.output.phone]"), "{facts}");
    let verified = control.verify_audit(&id).await.expect("verify").expect("still intact");
    assert_eq!(verified.sealed.erased.len(), 2);
    let replay = control.replay_audit(&id).await.expect("replay");
    assert!(matches!(replay, Ok(_) | Err(baton_runtime::audit_check::Divergence::Erased { .. })), "{replay:?}");
}
