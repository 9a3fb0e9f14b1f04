//! The tamper table of docs/audit.md on the DynamoDB store (LocalStack's DynamoDB): a run's audit
//! items are rewritten the way someone with write access to the table would, then
//! `audit_check::verify` (what `baton --backend aws audit verify RUN_ID` runs) must name what is
//! wrong. Without a signing key, a log recomputed from the edit on, with the head in the run's
//! state moved to match, is asserted as not detected: that row needs the signing key. With one,
//! the seals also go to an S3 bucket with Object Lock (LocalStack's S3), and a history cut from
//! the table, seals and all, is caught against it.

mod support;

use std::io::{Read, Write};
use std::sync::Arc;

use aws_sdk_dynamodb::types::AttributeValue;
use baton_aws::DynamoStore;
use baton_core::audit::{AuditRecord, GENESIS_HASH};
use baton_core::ids::RunId;
use baton_runtime::Coordinator;
use baton_runtime::audit_check;
use baton_runtime::clock::SystemClock;
use serde_json::{Value, json};

const WORKFLOW: &str = r#"
name: tamper-demo
steps:
  - {id: a, tool: transform, for_each: "[.input.who]", max_concurrency: 1, with: {expr: ".item"}}
  - {id: b, needs: [a], tool: transform, with: {expr: "1"}}
  - {id: c, needs: [b], tool: transform, with: {expr: "2"}}
"#;

struct Table {
    client: aws_sdk_dynamodb::Client,
    name: String,
}

impl Table {
    async fn audit_items(&self, run: &RunId) -> Vec<std::collections::HashMap<String, AttributeValue>> {
        self.items(run, "AUDIT#").await
    }

    /// The run's items whose sort key starts with `prefix`.
    async fn items(&self, run: &RunId, prefix: &str) -> Vec<std::collections::HashMap<String, AttributeValue>> {
        let got = self
            .client
            .query()
            .table_name(&self.name)
            .key_condition_expression("PK = :pk AND begins_with(SK, :p)")
            .expression_attribute_values(":pk", AttributeValue::S(format!("RUN#{run}")))
            .expression_attribute_values(":p", AttributeValue::S(prefix.into()))
            .consistent_read(true)
            .send()
            .await
            .expect("query");
        got.items().to_vec()
    }

    /// Replaces the run's audit items with `records`, one item per record in this order.
    async fn write_records(&self, run: &RunId, records: &[AuditRecord]) {
        for item in self.audit_items(run).await {
            self.client
                .delete_item()
                .table_name(&self.name)
                .key("PK", item["PK"].clone())
                .key("SK", item["SK"].clone())
                .send()
                .await
                .expect("delete");
        }
        for (i, r) in records.iter().enumerate() {
            self.client
                .put_item()
                .table_name(&self.name)
                .item("PK", AttributeValue::S(format!("RUN#{run}")))
                .item("SK", AttributeValue::S(format!("AUDIT#{:010}", i + 1)))
                .item("body", AttributeValue::S(serde_json::to_string(&[r]).expect("json")))
                .send()
                .await
                .expect("put");
        }
    }

    /// The run's state document as stored (deflated JSON in the header's `state`).
    async fn state(&self, run: &RunId) -> Value {
        let got = self
            .client
            .get_item()
            .table_name(&self.name)
            .key("PK", AttributeValue::S(format!("RUN#{run}")))
            .key("SK", AttributeValue::S("RUN".into()))
            .consistent_read(true)
            .send()
            .await
            .expect("get");
        match got.item().and_then(|i| i.get("state")).expect("state") {
            AttributeValue::B(b) => {
                let mut text = String::new();
                flate2::read::DeflateDecoder::new(b.as_ref()).read_to_string(&mut text).expect("inflate");
                serde_json::from_str(&text).expect("state JSON")
            }
            AttributeValue::S(text) => serde_json::from_str(text).expect("state JSON"),
            other => panic!("state is {other:?}"),
        }
    }

    async fn put_state(&self, run: &RunId, state: &Value) {
        let mut deflated = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::default());
        deflated.write_all(state.to_string().as_bytes()).expect("deflate");
        self.client
            .update_item()
            .table_name(&self.name)
            .key("PK", AttributeValue::S(format!("RUN#{run}")))
            .key("SK", AttributeValue::S("RUN".into()))
            .update_expression("SET #s = :s")
            .expression_attribute_names("#s", "state")
            .expression_attribute_values(":s", AttributeValue::B(deflated.finish().expect("deflate").into()))
            .send()
            .await
            .expect("update");
    }
}

fn relink(records: &mut [AuditRecord]) {
    let mut prev = GENESIS_HASH.to_owned();
    for (i, r) in records.iter_mut().enumerate() {
        r.seq = i as u64 + 1;
        r.prev_hash = prev.clone();
        r.hash = r.compute_hash();
        prev = r.hash.clone();
    }
}

/// (name, tampering of (this run's records, another run's records), whether the head in the
/// state moves too, what verify must say: `Some(part of the error)` or `None` for intact).
type Case = (&'static str, fn(&mut Vec<AuditRecord>, &[AuditRecord]), bool, Option<&'static str>);

fn cases() -> Vec<Case> {
    vec![
        ("edit", |l, _| l[2].reason = "approved by nobody".into(), false, Some("record 3 was modified")),
        (
            "insert",
            |l, _| {
                let copy = l[2].clone();
                l.insert(3, copy);
            },
            false,
            Some("record at position 4 has seq 3, expected 4"),
        ),
        (
            "delete first",
            |l, _| {
                l.remove(0);
            },
            false,
            Some("record at position 1 has seq 2, expected 1"),
        ),
        (
            "delete middle",
            |l, _| {
                l.remove(2);
            },
            false,
            Some("record at position 3 has seq 4, expected 3"),
        ),
        (
            "delete last",
            |l, _| {
                l.pop();
            },
            false,
            Some("but the run's state holds head"),
        ),
        ("reorder", |l, _| l.swap(2, 3), false, Some("record at position 3 has seq 4, expected 3")),
        (
            "truncate",
            |l, _| {
                let keep = l.len() - 3;
                l.truncate(keep);
            },
            false,
            Some("but the run's state holds head"),
        ),
        (
            "record moved between runs",
            |l, other| l[2] = other[2].clone(),
            false,
            Some("record 3 does not link to record 2"),
        ),
        (
            "recompute without key, head moved",
            |l, _| {
                l[2].reason = "approved by nobody".into();
                relink(l);
            },
            true,
            None,
        ),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_tampering_of_the_dynamodb_audit_items_is_named_by_verify() {
    let endpoint = support::ensure_emulator();
    let config = baton_aws::config::for_emulator(&endpoint).await;
    let name = format!("tamper-{}", uuid::Uuid::new_v4().simple());
    let store = Arc::new(DynamoStore::new(&config, &name));
    store.ensure_table().await.expect("table");
    let table = Table { client: aws_sdk_dynamodb::Client::new(&config), name };
    let c = Coordinator::new(store.clone(), baton_tools::builtin(), Arc::new(SystemClock));
    let plan = Arc::new(baton_core::load_definition(None, WORKFLOW).expect("valid"));
    let mut runs = Vec::new();
    for who in ["ada", "bob"] {
        let id = c.start(plan.clone(), WORKFLOW, json!({"who": who}), None).await.expect("start");
        c.drive(std::slice::from_ref(&id), std::future::pending()).await.expect("drive");
        runs.push(id);
    }
    let (run, other) = (&runs[0], &runs[1]);
    let original = baton_runtime::ports::RunStore::load_audit(store.as_ref(), run).await.expect("audit");
    let other_records = baton_runtime::ports::RunStore::load_audit(store.as_ref(), other).await.expect("audit");
    assert!(original.len() >= 7, "enough records to tamper with: {}", original.len());
    let original_state = table.state(run).await;
    let verdict = audit_check::verify(&c, run).await.expect("verify runs");
    assert!(verdict.is_ok(), "the untouched log verifies: {verdict:?}");
    let packed = table.audit_items(run).await.len();

    let mut rows = Vec::new();
    for (name, tamper, moves_head, expected) in cases() {
        let mut records = original.clone();
        tamper(&mut records, &other_records);
        table.write_records(run, &records).await;
        if moves_head {
            let mut state = original_state.clone();
            let last = records.last().expect("records");
            state["audit_seq"] = json!(last.seq);
            state["audit_head"] = json!(last.hash);
            table.put_state(run, &state).await;
        }
        let verdict = audit_check::verify(&c, run).await.expect("verify runs");
        match (expected, &verdict) {
            (Some(part), Err(e)) => assert!(e.to_string().contains(part), "{name}: expected `{part}`, got `{e}`"),
            (None, Ok(v)) => assert_eq!(v.signing, baton_core::audit::digest::Signing::Unsigned, "{name}"),
            _ => panic!("{name}: expected {expected:?}, got {verdict:?}"),
        }
        rows.push(format!(
            "{name}: {}",
            verdict.map(|_| "intact (unsigned)".to_owned()).unwrap_or_else(|e| e.to_string())
        ));
        // Put the run back as it was for the next case.
        table.write_records(run, &original).await;
        if moves_head {
            table.put_state(run, &original_state).await;
        }
        assert!(audit_check::verify(&c, run).await.expect("verify runs").is_ok(), "{name}: restored");
    }
    println!("{} records in {packed} items; {}", original.len(), rows.join("\n"));
}

/// With an audit key (`BATON_AUDIT_KEY[_ARN]` on the stack's functions), the store seals each run
/// with signed digests in the same transactions as the records, and the row the unsigned stack
/// misses is caught: a log recomputed from an edit on, head moved, no longer matches the seal.
/// Replacing the seal, deleting it, and re-signing with another key are caught too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signing_stack_catches_a_recomputed_log_and_forged_digests() {
    use baton_core::audit::digest::Signing;
    use baton_runtime::audit_key::AuditKey;

    let endpoint = support::ensure_emulator();
    let config = baton_aws::config::for_emulator(&endpoint).await;
    let name = format!("tamper-{}", uuid::Uuid::new_v4().simple());
    let key = AuditKey::from_seed_hex(&"7".repeat(64), "test key").expect("key");
    let store = Arc::new(DynamoStore::new(&config, &name).with_audit_key(key));
    store.ensure_table().await.expect("table");
    let table = Table { client: aws_sdk_dynamodb::Client::new(&config), name: name.clone() };
    let c = Coordinator::new(store.clone(), baton_tools::builtin(), Arc::new(SystemClock));
    // A wait in the middle: the commit that opens the task is a seal, and so is the last one.
    let yaml = "name: sealed\nsteps:\n  - {id: a, tool: transform, with: {expr: \"1\"}}\n  - {id: ask, needs: [a], tool: human, with: {queue: ops, prompt: ok?}}\n  - {id: b, needs: [ask], tool: transform, with: {expr: \"2\"}}\n";
    let plan = Arc::new(baton_core::load_definition(None, yaml).expect("valid"));
    let run = c.start(plan, yaml, json!({}), None).await.expect("start");
    c.drive(std::slice::from_ref(&run), std::future::pending()).await.expect("drive");
    support::approve_open_task(&c, &run).await;

    let verified = audit_check::verify(&c, &run).await.expect("verify runs").expect("intact");
    let Signing::Signed { digests, unsealed } = verified.signing else { panic!("unsigned: {verified:?}") };
    assert_eq!((digests, unsealed), (2, 0), "a seal at the wait and one at the end");

    let original = baton_runtime::ports::RunStore::load_audit(store.as_ref(), &run).await.expect("audit");
    let original_state = table.state(&run).await;
    // Recomputed without the key, head moved: what the unsigned stack cannot see.
    let mut records = original.clone();
    records[2].reason = "approved by nobody".into();
    relink(&mut records);
    table.write_records(&run, &records).await;
    let mut state = original_state.clone();
    let last = records.last().expect("records");
    state["audit_seq"] = json!(last.seq);
    state["audit_head"] = json!(last.hash);
    table.put_state(&run, &state).await;
    let e = audit_check::verify(&c, &run).await.expect("verify runs").expect_err("detected");
    assert!(e.to_string().contains("recomputed without the signing key"), "{e}");
    table.write_records(&run, &original).await;
    table.put_state(&run, &original_state).await;

    // The digests, tampered with one at a time.
    let digest_items = |t: &Table| {
        let (client, name, run) = (t.client.clone(), t.name.clone(), run.clone());
        async move {
            client
                .query()
                .table_name(&name)
                .key_condition_expression("PK = :pk AND begins_with(SK, :p)")
                .expression_attribute_values(":pk", AttributeValue::S(format!("RUN#{run}")))
                .expression_attribute_values(":p", AttributeValue::S("DIGEST#".into()))
                .consistent_read(true)
                .send()
                .await
                .expect("query")
                .items()
                .to_vec()
        }
    };
    let originals = digest_items(&table).await;
    assert_eq!(originals.len(), 2);
    let put = |item: std::collections::HashMap<String, AttributeValue>| {
        let (client, name) = (table.client.clone(), table.name.clone());
        async move { client.put_item().table_name(name).set_item(Some(item)).send().await.expect("put") }
    };
    let body = |item: &std::collections::HashMap<String, AttributeValue>| -> Value {
        match &item["body"] {
            AttributeValue::S(s) => serde_json::from_str(s).expect("digest JSON"),
            other => panic!("{other:?}"),
        }
    };
    let with_body = |item: &std::collections::HashMap<String, AttributeValue>, v: &Value| {
        let mut item = item.clone();
        item.insert("body".into(), AttributeValue::S(v.to_string()));
        item
    };
    // The seal replaced: a field changed and its hash recomputed, without the key.
    let mut forged: baton_core::audit::digest::AuditDigest =
        serde_json::from_value(body(&originals[1])).expect("digest");
    forged.at += 1;
    forged.hash = forged.compute_hash();
    put(with_body(&originals[1], &serde_json::to_value(&forged).expect("json"))).await;
    let e = audit_check::verify(&c, &run).await.expect("verify runs").expect_err("detected");
    assert!(e.to_string().contains("does not verify with the audit key"), "replaced seal: {e}");
    put(originals[1].clone()).await;
    // The last seal deleted: the end of the run is no longer sealed.
    table
        .client
        .delete_item()
        .table_name(&table.name)
        .key("PK", originals[1]["PK"].clone())
        .key("SK", originals[1]["SK"].clone())
        .send()
        .await
        .expect("delete");
    let e = audit_check::verify(&c, &run).await.expect("verify runs").expect_err("detected");
    assert!(e.to_string().contains("covered by no signed digest"), "deleted seal: {e}");
    put(originals[1].clone()).await;
    // Every digest re-signed by another key after recomputing the chain.
    let other = AuditKey::generate().expect("key");
    let mut prev = GENESIS_HASH.to_owned();
    for item in &originals {
        let d: baton_core::audit::digest::AuditDigest = serde_json::from_value(body(item)).expect("digest");
        let resigned = other.digest_sealed(&d.run_id, d.count, &d.head, &prev, d.at, true);
        prev = resigned.hash.clone();
        put(with_body(item, &serde_json::to_value(&resigned).expect("json"))).await;
    }
    let e = audit_check::verify(&c, &run).await.expect("verify runs").expect_err("detected");
    assert!(e.to_string().contains("does not verify with the audit key"), "re-signed: {e}");
    for item in &originals {
        put(item.clone()).await;
    }
    assert!(audit_check::verify(&c, &run).await.expect("verify runs").is_ok(), "restored");
}

/// An S3 bucket with Object Lock and a default COMPLIANCE retention of a day, as
/// localstack/provision.py makes `<stack>-audit-digests` (with the template's 7 years).
async fn locked_bucket(s3: &aws_sdk_s3::Client, name: &str) {
    use aws_sdk_s3::types::{
        DefaultRetention, ObjectLockConfiguration, ObjectLockEnabled, ObjectLockRetentionMode, ObjectLockRule,
    };
    s3.create_bucket().bucket(name).object_lock_enabled_for_bucket(true).send().await.expect("bucket");
    let rule = ObjectLockRule::builder()
        .default_retention(DefaultRetention::builder().mode(ObjectLockRetentionMode::Compliance).days(1).build())
        .build();
    let lock = ObjectLockConfiguration::builder().object_lock_enabled(ObjectLockEnabled::Enabled).rule(rule).build();
    s3.put_object_lock_configuration().bucket(name).object_lock_configuration(lock).send().await.expect("lock");
}

/// The seals of a signing store also go to an S3 bucket with Object Lock, after their commit:
/// (a) each seal is there, byte for byte the table's, and verify says so; (b) a writer of the table
/// that cuts the run's history back to its first seal (records, seal, head and status, so that
/// the table alone is consistent) is caught against the bucket, naming the seal it cut, and so is
/// a seal re-signed with the stack's own key; (c) the
/// emulator refuses to delete a witnessed object's version under retention, and a second write
/// of the same seal. A witness whose bucket is missing leaves the commits standing and its seals
/// counted as unwitnessed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_s3_witness_catches_a_history_cut_from_the_table() {
    use baton_aws::digest_witness::{DigestWitness, object_key};
    use baton_runtime::audit_key::AuditKey;

    let endpoint = support::ensure_emulator();
    let config = baton_aws::config::for_emulator(&support::aws_endpoint()).await;
    let ddb_config = baton_aws::config::for_emulator(&endpoint).await;
    let name = format!("witness-{}", uuid::Uuid::new_v4().simple());
    let s3 = baton_aws::metering::s3(&config);
    let bucket = format!("{name}-audit-digests");
    locked_bucket(&s3, &bucket).await;
    let key = || AuditKey::from_seed_hex(&"7".repeat(64), "test key").expect("key");
    let witness = DigestWitness::on_bucket(&config, &bucket);
    let store =
        Arc::new(DynamoStore::new(&ddb_config, &name).with_audit_key(key()).with_digest_witness(witness.clone()));
    store.ensure_table().await.expect("table");
    let table = Table { client: aws_sdk_dynamodb::Client::new(&ddb_config), name: name.clone() };
    let c = Coordinator::new(store.clone(), baton_tools::builtin(), Arc::new(SystemClock));
    // A wait in the middle: a seal when the task opens, and one at the end.
    let yaml = "name: sealed\nsteps:\n  - {id: a, tool: transform, with: {expr: \"1\"}}\n  - {id: ask, needs: [a], tool: human, with: {queue: ops, prompt: ok?}}\n  - {id: b, needs: [ask], tool: transform, with: {expr: \"2\"}}\n";
    let plan = Arc::new(baton_core::load_definition(None, yaml).expect("valid"));
    let run = c.start(plan.clone(), yaml, json!({}), None).await.expect("start");
    c.drive(std::slice::from_ref(&run), std::future::pending()).await.expect("drive");
    support::approve_open_task(&c, &run).await;

    // (a) Every seal in the bucket, the same JSON as the table's item.
    let verified = audit_check::verify(&c, &run).await.expect("verify runs").expect("intact");
    assert_eq!((verified.witnessed, verified.unwitnessed), (Some(2), 0), "{verified:?}");
    assert_eq!(witness.failed_puts(), 0);
    let digest_items = table.items(&run, "DIGEST#").await;
    let counts: Vec<u64> = digest_items.iter().map(|i| digest_of(i).count).collect();
    assert_eq!(counts.len(), 2);
    for item in &digest_items {
        let count = digest_of(item).count;
        let got = s3.get_object().bucket(&bucket).key(object_key(run.as_str(), count)).send().await.expect("object");
        assert_eq!(got.object_lock_mode().map(|m| m.as_str()), Some("COMPLIANCE"), "the default retention applies");
        let body = got.body.collect().await.expect("body").into_bytes();
        let AttributeValue::S(stored) = &item["body"] else { panic!("digest body") };
        assert_eq!(std::str::from_utf8(&body).expect("utf-8"), stored, "seal {count}: the table's JSON");
    }

    // (b) The history cut back to the first seal, consistently in the table: the records after
    // it, the last seal, and the state's head and status (running, no output) as of that seal.
    let (first, last) = (counts[0], counts[1]);
    let original = baton_runtime::ports::RunStore::load_audit(store.as_ref(), &run).await.expect("audit");
    let original_state = table.state(&run).await;
    let cut: Vec<AuditRecord> = original.iter().filter(|r| r.seq <= first).cloned().collect();
    table.write_records(&run, &cut).await;
    delete_item(&table, &digest_items[1]).await;
    let mut state = original_state.clone();
    state["audit_seq"] = json!(first);
    state["audit_head"] = json!(cut.last().expect("records").hash);
    state["status"] = json!("running");
    if let Some(m) = state.as_object_mut() {
        m.remove("output");
    }
    table.put_state(&run, &state).await;
    // What the table alone says: intact, one seal.
    let unwitnessed = DynamoStore::new(&ddb_config, &name).with_audit_key(key());
    let blind = Coordinator::new(Arc::new(unwitnessed), baton_tools::builtin(), Arc::new(SystemClock));
    let alone = audit_check::verify(&blind, &run).await.expect("verify runs").expect("the table alone is consistent");
    assert_eq!(alone.witnessed, None);
    let e = audit_check::verify(&c, &run).await.expect("verify runs").expect_err("cut detected");
    assert_eq!(e, baton_core::audit::ChainError::WitnessBeyondLog { count: last, last: first });
    assert!(e.to_string().contains(&format!("the S3 witness holds the seal signed at record {last}")), "{e}");
    println!("history cut to record {first}: {e}");
    table.write_records(&run, &original).await;
    put_item(&table, &digest_items[1]).await;
    table.put_state(&run, &original_state).await;
    assert!(audit_check::verify(&c, &run).await.expect("verify runs").is_ok(), "restored");
    // The last seal re-signed with the stack's own key (whoever holds the key signs a new
    // history): the signatures hold, the witness does not.
    let d = digest_of(&digest_items[1]);
    let resigned = key().digest_sealed(&d.run_id, d.count, &d.head, &d.prev, d.at + 1, true);
    let mut item = digest_items[1].clone();
    item.insert("body".into(), AttributeValue::S(serde_json::to_string(&resigned).expect("json")));
    put_item(&table, &item).await;
    let e = audit_check::verify(&c, &run).await.expect("verify runs").expect_err("rewrite detected");
    assert_eq!(e, baton_core::audit::ChainError::WitnessMismatch { count: last });
    put_item(&table, &digest_items[1]).await;
    assert!(audit_check::verify(&c, &run).await.expect("verify runs").is_ok(), "restored");

    // (c) LocalStack enforces the retention: deleting the witnessed version is refused (403
    // AccessDenied), and so is writing the seal again with If-None-Match (412).
    let key_last = object_key(run.as_str(), last);
    let version = s3.head_object().bucket(&bucket).key(&key_last).send().await.expect("head");
    let version = version.version_id().expect("a versioned object").to_owned();
    let refused = s3.delete_object().bucket(&bucket).key(&key_last).version_id(&version).send().await;
    let err = refused.expect_err("a locked version cannot be deleted");
    assert_eq!(err.raw_response().map(|r| r.status().as_u16()), Some(403), "{err:?}");
    let bypass = s3
        .delete_object()
        .bucket(&bucket)
        .key(&key_last)
        .version_id(&version)
        .bypass_governance_retention(true)
        .send()
        .await;
    assert!(bypass.is_err(), "COMPLIANCE mode has no bypass");
    let again =
        s3.put_object().bucket(&bucket).key(&key_last).if_none_match("*").body(b"{}".to_vec().into()).send().await;
    assert_eq!(again.expect_err("no second write").raw_response().map(|r| r.status().as_u16()), Some(412));
    s3.head_object().bucket(&bucket).key(&key_last).version_id(&version).send().await.expect("still there");

    // A witness that cannot write: the commits stand, the failures are counted, and verify (with
    // the bucket that exists) counts the run's seals as unwitnessed, not as tampering.
    let broken = DigestWitness::on_bucket(&config, format!("{name}-missing"));
    let failing = DynamoStore::new(&ddb_config, &name).with_audit_key(key()).with_digest_witness(broken.clone());
    let c2 = Coordinator::new(Arc::new(failing), baton_tools::builtin(), Arc::new(SystemClock));
    let run2 = c2.start(plan, yaml, json!({}), None).await.expect("start");
    c2.drive(std::slice::from_ref(&run2), std::future::pending()).await.expect("drive");
    support::approve_open_task(&c2, &run2).await;
    assert_eq!(broken.failed_puts(), 2, "both seals' puts failed");
    let v2 = audit_check::verify(&c, &run2).await.expect("verify runs").expect("intact");
    assert_eq!((v2.witnessed, v2.unwitnessed), (Some(0), 2), "{v2:?}");
    assert_eq!(audit_check::verify(&c2, &run2).await.expect("verify runs").expect("intact").witnessed, None);
}

fn digest_of(item: &std::collections::HashMap<String, AttributeValue>) -> baton_core::audit::digest::AuditDigest {
    match &item["body"] {
        AttributeValue::S(s) => serde_json::from_str(s).expect("digest JSON"),
        other => panic!("{other:?}"),
    }
}

async fn delete_item(table: &Table, item: &std::collections::HashMap<String, AttributeValue>) {
    let delete = table.client.delete_item().table_name(&table.name);
    delete.key("PK", item["PK"].clone()).key("SK", item["SK"].clone()).send().await.expect("delete");
}

async fn put_item(table: &Table, item: &std::collections::HashMap<String, AttributeValue>) {
    table.client.put_item().table_name(&table.name).set_item(Some(item.clone())).send().await.expect("put");
}
