//! Signed audit digests on the SQLite store: one digest per commit that appends records, linked
//! and verifiable, also when group commit puts many runs in one transaction and when two
//! coordinators race on one run (the loser's digest is rolled back with its records).

use std::sync::Arc;

use baton_core::audit::ChainError;
use baton_core::audit::digest::Signing;
use baton_embedded::sqlite::{Durability, SqliteStore};
use baton_runtime::Coordinator;
use baton_runtime::audit_check::verify;
use baton_runtime::audit_key::AuditKey;
use baton_runtime::clock::SystemClock;
use serde_json::json;

const WF: &str = r#"
name: add
input_schema: {type: object, required: [n], properties: {n: {type: integer}}}
output: .steps.b.output
steps:
  - {id: a, tool: transform, with: {expr: ".input.n + 1"}}
  - {id: b, needs: [a], tool: transform, with: {expr: ".steps.a.output * 10"}}
"#;

const SEED: &str = "4242424242424242424242424242424242424242424242424242424242424242";

fn coordinator(dir: &std::path::Path, seed: Option<&str>) -> Arc<Coordinator> {
    let store = SqliteStore::open(dir, Durability::Normal).expect("store");
    let store = match seed {
        Some(s) => store.with_audit_key(AuditKey::from_seed_hex(s, "test").expect("key")),
        None => store,
    };
    Arc::new(Coordinator::new(Arc::new(store), baton_tools::builtin(), Arc::new(SystemClock)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_runs_sharing_group_commits_are_each_signed_and_verify() {
    let dir = tempfile::tempdir().expect("tempdir");
    let c = coordinator(dir.path(), Some(SEED));
    let service = Arc::new(c.serve());
    let plan = Arc::new(baton_core::load_definition(None, WF).expect("valid"));
    let mut handles = Vec::new();
    for n in 0..20 {
        let (service, plan) = (service.clone(), plan.clone());
        handles.push(tokio::spawn(async move { service.run(plan, WF, json!({"n": n})).await }));
    }
    for h in handles {
        h.await.expect("join").expect("run ends");
    }
    let runs = c.store().list_runs(100).await.expect("list");
    assert_eq!(runs.len(), 20);
    for run in runs {
        let digests = c.store().load_audit_digests(&run.id).await.expect("digests");
        let records = c.store().load_audit(&run.id).await.expect("records");
        assert!(!digests.is_empty() && digests.len() <= records.len(), "{} digests", digests.len());
        assert_eq!(digests.last().map(|d| d.count), Some(records.len() as u64));
        let verified = verify(&c, &run.id).await.expect("loads").expect("intact");
        assert_eq!(verified.signing, Signing::Signed { digests: digests.len(), unsealed: 0 });
        // One signature per stretch between waits: a run that never waited has one seal, its end.
        assert_eq!(digests.iter().filter(|d| d.is_seal()).count(), 1, "{digests:?}");
        assert!(digests.last().is_some_and(|d| d.is_seal()));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_coordinators_leave_one_linked_digest_chain() {
    let dir = tempfile::tempdir().expect("tempdir");
    let plan = Arc::new(baton_core::load_definition(None, WF).expect("valid"));
    let (c1, c2) = (coordinator(dir.path(), Some(SEED)), coordinator(dir.path(), Some(SEED)));
    for n in 0..5 {
        let id = c1.start(plan.clone(), WF, json!({"n": n}), None).await.expect("start");
        let (a, b, i1, i2) = (c1.clone(), c2.clone(), id.clone(), id.clone());
        let h1 = tokio::spawn(async move { a.drive(&[i1], std::future::pending()).await });
        let h2 = tokio::spawn(async move { b.drive(&[i2], std::future::pending()).await });
        h1.await.expect("join").expect("drive 1");
        h2.await.expect("join").expect("drive 2");
        let verified = verify(&c1, &id).await.expect("loads").expect("intact");
        assert!(matches!(verified.signing, Signing::Signed { .. }), "{verified:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_key_fails_and_no_key_is_an_error_not_a_pass() {
    let dir = tempfile::tempdir().expect("tempdir");
    let plan = Arc::new(baton_core::load_definition(None, WF).expect("valid"));
    let signer = coordinator(dir.path(), Some(SEED));
    let id = signer.start(plan, WF, json!({"n": 1}), None).await.expect("start");
    signer.drive(std::slice::from_ref(&id), std::future::pending()).await.expect("drive");

    let other = coordinator(dir.path(), Some(&"17".repeat(32)));
    let digests = signer.store().load_audit_digests(&id).await.expect("digests");
    let first = digests.iter().find(|d| d.is_seal()).expect("a seal").count;
    assert_eq!(verify(&other, &id).await.expect("loads"), Err(ChainError::BadSignature { count: first }));

    let keyless = coordinator(dir.path(), None);
    let err = verify(&keyless, &id).await.expect_err("cannot check signatures");
    assert!(err.to_string().contains("no audit key"), "{err}");
}
