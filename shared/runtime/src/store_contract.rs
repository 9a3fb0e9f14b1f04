//! The run store contract, written once against `&dyn RunStore`: conditional creates and
//! updates, conflicts that write nothing, journal and audit order, tasks, concurrent commits,
//! listing, entity memory and the response cache. Every store runs all of it through one
//! macro, [`store_contract_tests!`](crate::store_contract_tests), so a case added here runs on
//! every backend. Built with the `contract-tests` feature (test builds only).

use std::sync::Arc;

use crate::StoreError;
use crate::ports::{
    CacheEntry, Episode, MemoryFact, Precondition, RunHeader, RunStore, TaskChange, TaskRecord, Transition,
};
use baton_core::audit::{AuditRecord, GENESIS_HASH};
use baton_core::engine::{Event, EventKind, RunStatus, new_run};
use baton_core::ids::RunId;
use serde_json::json;

/// The one-step workflow the contract's runs pin.
pub const WF: &str = "name: contract\nsteps:\n  - {id: a, tool: transform, with: {expr: \"1\"}}\n";

/// A transition of run `id` to `version` carrying audit records `seqs`.
pub fn transition(
    id: &str,
    version: u64,
    precondition: Precondition,
    seqs: std::ops::RangeInclusive<u64>,
) -> Transition {
    let plan = baton_core::load_definition(None, WF).expect("valid");
    let state = new_run(&plan, id, 1_000);
    let audit = seqs
        .clone()
        .map(|seq| AuditRecord {
            seq,
            at: 1_000,
            kind: "test".into(),
            decision: "note".into(),
            step: None,
            node: None,
            attempt: None,
            iteration: None,
            reason: format!("record {seq}"),
            values: serde_json::Value::Null,
            commands: vec![],
            event: String::new(),
            sealed: Default::default(),
            prev_hash: GENESIS_HASH.into(),
            hash: String::new(),
        })
        .collect();
    Transition {
        header: RunHeader {
            id: id.into(),
            workflow: "contract".into(),
            definition: plan.hash.clone(),
            status: RunStatus::Running,
            version,
            created_at: 1_000,
            events: *seqs.end(),
            mocks: None,
            usage: Default::default(),
        },
        precondition,
        state,
        events: seqs
            .map(|seq| (seq, Event { at: 1_000, kind: EventKind::CancelRequested { reason: format!("event {seq}") } }))
            .collect(),
        audit,
        tasks: vec![],
        outbox: vec![],
        clears: vec![],
        runs_here: 0,
        episodes: vec![],
        bus: vec![],
        seal: true,
        sealed: vec![],
    }
}

/// A name no other test uses, so tests sharing a table cannot see each other's rows.
pub fn unique(name: &str) -> String {
    format!("{name}-{}", std::process::id())
}

/// An open event wait of run `run_id` on `wait` (`{pattern, correlate_event?, key?}`), opened at
/// `created_at`.
pub fn event_wait(id: &str, run_id: &str, node: &str, wait: serde_json::Value, created_at: u64) -> TaskChange {
    TaskChange::Open(Box::new(TaskRecord {
        id: id.into(),
        run_id: run_id.into(),
        node: node.into(),
        step: node.into(),
        queue: "events".into(),
        status: "open".into(),
        prompt: "waiting".into(),
        summary: String::new(),
        form: None,
        created_at,
        outcome: None,
        wait: Some(wait),
    }))
}

/// A JSON value long enough to pass the DynamoDB store's compression threshold.
pub fn large_value() -> serde_json::Value {
    json!({"notes": "a long remark. ".repeat(2_000)})
}

/// Contract case: create is conditional.
pub async fn create_is_conditional(store: &dyn RunStore) {
    store.commit(&[transition("r1", 1, Precondition::DoesNotExist, 1..=1)]).await.expect("first create");
    let again = store.commit(&[transition("r1", 1, Precondition::DoesNotExist, 2..=2)]).await;
    assert!(matches!(again, Err(StoreError::Conflict { .. })), "{again:?}");
    assert_eq!(store.load_audit(&"r1".into()).await.expect("audit").len(), 1, "the failed create wrote nothing");
}

/// Contract case: stale version conflicts and writes nothing.
pub async fn stale_version_conflicts_and_writes_nothing(store: &dyn RunStore) {
    store.commit(&[transition("r2", 1, Precondition::DoesNotExist, 1..=1)]).await.expect("create");
    store.commit(&[transition("r2", 2, Precondition::MatchesVersion(1), 2..=3)]).await.expect("update v1 -> v2");
    let stale = store.commit(&[transition("r2", 2, Precondition::MatchesVersion(1), 4..=4)]).await;
    let err = stale.expect_err("stale version");
    assert!(err.is_retryable(), "a conflict is retryable: reload and decide again");
    let stored = store.load_run(&"r2".into()).await.expect("load").expect("exists");
    assert_eq!(stored.header.version, 2);
    assert_eq!(store.load_events(&"r2".into()).await.expect("events").len(), 3);
    let seqs: Vec<u64> = store.load_audit(&"r2".into()).await.expect("audit").iter().map(|r| r.seq).collect();
    assert_eq!(seqs, vec![1, 2, 3], "audit in seq order, nothing from the failed commit");
}

/// Contract case: a batch is all or nothing.
pub async fn a_batch_is_all_or_nothing(store: &dyn RunStore) {
    store.commit(&[transition("r3", 1, Precondition::DoesNotExist, 1..=1)]).await.expect("create");
    let batch = [
        transition("r4", 1, Precondition::DoesNotExist, 1..=1),
        transition("r3", 5, Precondition::MatchesVersion(9), 2..=2),
    ];
    assert!(store.commit(&batch).await.is_err());
    assert!(store.load_run(&"r4".into()).await.expect("load").is_none(), "the good half was rolled back too");
}

/// Contract case: tasks open move and close.
pub async fn tasks_open_move_and_close(store: &dyn RunStore) {
    let mut t = transition("r5", 1, Precondition::DoesNotExist, 1..=1);
    t.tasks.push(TaskChange::Open(Box::new(TaskRecord {
        id: "t-1".into(),
        run_id: "r5".into(),
        node: "ask".into(),
        step: "ask".into(),
        queue: "l1".into(),
        status: "open".into(),
        prompt: "ok?".into(),
        summary: "context".into(),
        form: Some(json!({"type": "object"})),
        created_at: 1_000,
        outcome: None,
        wait: None,
    })));
    // An event wait is kept with the tasks, its pattern and key with it.
    let wait = json!({"pattern": {"source": ["shop"]}, "correlate_event": ".detail.id", "key": "A-1"});
    t.tasks.push(event_wait("w-1", "r5", "pay", wait.clone(), 1_001));
    store.commit(&[t]).await.expect("open");
    let open = store.open_tasks().await.expect("tasks");
    assert_eq!(
        open.iter().map(|t| (t.id.as_str(), t.wait.clone())).collect::<Vec<_>>(),
        vec![("t-1", None), ("w-1", Some(wait))]
    );
    let shop_event = json!({"source": "shop", "detail-type": "Paid", "detail": {"id": "A-1"}});
    let keys = crate::wait_index::event_keys(&shop_event);
    let waits = store.open_waits(&keys).await.expect("waits");
    assert_eq!(waits.iter().map(|t| t.id.as_str()).collect::<Vec<_>>(), ["w-1"], "waits only, the event's among them");
    let mut t = transition("r5", 2, Precondition::MatchesVersion(1), 2..=2);
    t.tasks.push(TaskChange::Reassign { id: "t-1".into(), queue: "l2".into() });
    store.commit(&[t]).await.expect("reassign");
    assert_eq!(store.get_task(&"t-1".into()).await.expect("get").expect("exists").queue, "l2");
    let mut t = transition("r5", 3, Precondition::MatchesVersion(2), 3..=3);
    t.tasks.push(TaskChange::Close { id: "t-1".into(), outcome: "answered".into() });
    t.tasks.push(TaskChange::Close { id: "w-1".into(), outcome: "event received".into() });
    store.commit(&[t]).await.expect("close");
    assert!(store.open_tasks().await.expect("tasks").is_empty());
    assert!(store.open_waits(&keys).await.expect("waits").is_empty(), "a closed wait is no candidate");
    assert_eq!(store.get_task(&"t-1".into()).await.expect("get").expect("exists").outcome.as_deref(), Some("answered"));
}

/// Contract case: concurrent commits each get their own outcome.
pub async fn concurrent_commits_each_get_their_own_outcome(store: Arc<dyn RunStore>) {
    for i in 0..20 {
        store.commit(&[transition(&format!("c{i}"), 1, Precondition::DoesNotExist, 1..=1)]).await.expect("create");
    }
    let mut handles = Vec::new();
    for i in 0..20 {
        let store = store.clone();
        // Odd runs use a stale version: they must fail alone, without taking the even ones down.
        let expected = if i % 2 == 0 { 1 } else { 7 };
        handles.push(tokio::spawn(async move {
            store.commit(&[transition(&format!("c{i}"), 2, Precondition::MatchesVersion(expected), 2..=2)]).await
        }));
    }
    for (i, h) in handles.into_iter().enumerate() {
        let outcome = h.await.expect("join");
        assert_eq!(outcome.is_ok(), i % 2 == 0, "run c{i}: {outcome:?}");
    }
    for i in 0..20 {
        let v = store.load_run(&format!("c{i}").into()).await.expect("load").expect("exists").header.version;
        assert_eq!(v, if i % 2 == 0 { 2 } else { 1 });
    }
}

/// Contract case: outbox lists unpublished events until marked.
pub async fn outbox_lists_unpublished_events_until_marked(store: &dyn RunStore) {
    let mut t = transition("r7", 1, Precondition::DoesNotExist, 1..=1);
    for (i, name) in ["RunStarted", "StepFailed"].into_iter().enumerate() {
        t.bus.push(crate::ports::BusEvent {
            run_id: "r7".into(),
            name: name.into(),
            detail: json!({"n": i}),
            at: 1_000 + i as u64,
        });
    }
    store.commit(&[t]).await.expect("commit");
    let pending = store.unpublished_bus_events(10).await.expect("pending");
    let names: Vec<&str> = pending.iter().filter(|(_, e)| e.run_id == "r7").map(|(_, e)| e.name.as_str()).collect();
    assert_eq!(names, vec!["RunStarted", "StepFailed"], "oldest first");
    let first = pending.iter().find(|(_, e)| e.name == "RunStarted").map(|(id, _)| id.clone()).expect("id");
    store.mark_bus_published(std::slice::from_ref(&first)).await.expect("mark");
    store.mark_bus_published(std::slice::from_ref(&first)).await.expect("marking twice is fine");
    let left: Vec<String> = store
        .unpublished_bus_events(10)
        .await
        .expect("pending")
        .into_iter()
        .filter(|(_, e)| e.run_id == "r7")
        .map(|(_, e)| e.name)
        .collect();
    assert_eq!(left, vec!["StepFailed".to_owned()]);
    assert_eq!(store.bus_events(&"r7".into()).await.expect("all").len(), 2, "published events stay readable");
}

/// Contract case: command outbox waits until cleared and a conflict writes none.
pub async fn command_outbox_waits_until_cleared_and_a_conflict_writes_none(store: &dyn RunStore) {
    use crate::ports::{OutboxItem, ToolCall};
    let mut t = transition("r8", 1, Precondition::DoesNotExist, 1..=1);
    let call = ToolCall {
        run_id: "r8".into(),
        node: "a".into(),
        step: "a".into(),
        attempt: 1,
        tool: "http".into(),
        input: json!({"url": "http://x"}),
        idempotency_key: "r8/a/0/1".into(),
        timeout_ms: Some(5_000),
        usage: Default::default(),
    };
    t.outbox = vec![
        OutboxItem::Call(call),
        OutboxItem::Timer { run_id: "r8".into(), id: "t1".into(), at: 9_000, retry: false },
    ];
    store.commit(&[t.clone()]).await.expect("commit");
    assert!(store.commit(&[t]).await.is_err(), "a lost create writes no second outbox row");
    let rows: Vec<_> =
        store.pending_outbox(u64::MAX, 100).await.expect("pending").into_iter().filter(|r| r.run_id == "r8").collect();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].id, crate::outbox_id(&"r8".into(), 1));
    assert_eq!(rows[0].items.len(), 2);
    assert!(
        store.pending_outbox(999, 100).await.expect("pending").iter().all(|r| r.run_id != "r8"),
        "a row newer than the sweep's cutoff is not listed"
    );
    store.clear_outbox(std::slice::from_ref(&rows[0].id)).await.expect("clear");
    store.clear_outbox(std::slice::from_ref(&rows[0].id)).await.expect("clearing twice is fine");
    assert!(store.pending_outbox(u64::MAX, 100).await.expect("pending").iter().all(|r| r.run_id != "r8"));
}

/// Contract case: a commit deletes the outbox rows it names (their work was done in the process
/// that wrote them), in the same write; a lost commit deletes nothing.
pub async fn a_commit_clears_the_rows_it_finished(store: &dyn RunStore) {
    use crate::ports::OutboxItem;
    let id = "r-clears";
    let timer = |t: &str| OutboxItem::Timer { run_id: id.into(), id: t.into(), at: 9_000, retry: false };
    let mine = |rows: Vec<crate::ports::OutboxEntry>| {
        rows.into_iter().filter(|r| r.run_id == id).map(|r| r.id).collect::<Vec<_>>()
    };
    let mut first = transition(id, 1, Precondition::DoesNotExist, 1..=1);
    first.outbox = vec![timer("t1")];
    first.runs_here = 1;
    store.commit(&[first]).await.expect("commit");
    assert_eq!(mine(store.pending_outbox(u64::MAX, 100).await.expect("pending")), [crate::outbox_id(&id.into(), 1)]);
    let mut next = transition(id, 2, Precondition::MatchesVersion(1), 2..=2);
    next.clears = vec![crate::outbox_id(&id.into(), 1)];
    next.outbox = vec![timer("t2")];
    let mut lost = next.clone();
    lost.precondition = Precondition::MatchesVersion(7);
    assert!(store.commit(&[lost]).await.is_err(), "a stale version");
    assert_eq!(
        mine(store.pending_outbox(u64::MAX, 100).await.expect("pending")),
        [crate::outbox_id(&id.into(), 1)],
        "a lost commit clears nothing"
    );
    store.commit(&[next]).await.expect("commit");
    assert_eq!(mine(store.pending_outbox(u64::MAX, 100).await.expect("pending")), [crate::outbox_id(&id.into(), 2)]);
}

/// Contract case: claims admit one holder and keep the result.
pub async fn claims_admit_one_holder_and_keep_the_result(store: &dyn RunStore) {
    use crate::ports::Claim;
    let key = format!("claim-{}", std::process::id());
    assert_eq!(store.claim(&key, "w1", 1_000, 5_000).await.expect("claim"), Claim::Acquired);
    assert_eq!(store.claim(&key, "w2", 2_000, 6_000).await.expect("claim"), Claim::Busy, "the lease holds");
    assert_eq!(
        store.claim(&key, "w2", 5_001, 9_000).await.expect("claim"),
        Claim::Acquired,
        "an expired lease is taken over"
    );
    store.finish_claim(&key, &Ok(json!({"n": 1}))).await.expect("finish");
    assert_eq!(
        store.claim(&key, "w3", 99_000, 100_000).await.expect("claim"),
        Claim::Done(Ok(json!({"n": 1}))),
        "a finished attempt is never run again, even after its lease"
    );
}

/// Contract case: published definitions point at the latest hash.
pub async fn published_definitions_point_at_the_latest_hash(store: &dyn RunStore) {
    store.put_definition("h1", "pub-wf", "name: pub-wf # v1").await.expect("put v1");
    store.put_definition("h2", "pub-wf", "name: pub-wf # v2").await.expect("put v2");
    store.publish_definition("pub-wf", "h1").await.expect("publish v1");
    store.publish_definition("pub-wf", "h2").await.expect("publish v2");
    let published = store.published_definitions().await.expect("list");
    let mine: Vec<&(String, String)> = published.iter().filter(|(n, _)| n == "pub-wf").collect();
    assert_eq!(mine, vec![&("pub-wf".to_owned(), "h2".to_owned())], "one entry per workflow, the newest hash");
    assert_eq!(
        store.get_definition("pub-wf", "h1").await.expect("get").as_deref(),
        Some("name: pub-wf # v1"),
        "old versions stay readable for the runs pinned to them"
    );
}

/// Contract case: unfinished and listing.
pub async fn unfinished_and_listing(store: &dyn RunStore) {
    let mut done = transition("r6", 1, Precondition::DoesNotExist, 1..=1);
    done.header.status = RunStatus::Succeeded;
    store.commit(&[done]).await.expect("create");
    let unfinished = store.unfinished_runs().await.expect("unfinished");
    assert!(!unfinished.contains(&"r6".into()));
    assert!(store.list_runs(100).await.expect("list").iter().any(|h| h.id == "r6"));
}

/// Contract case: a run query filters by status, workflow and creation time, and pages with a
/// cursor that is the last run of the previous page (ties on `created_at` broken by id).
pub async fn queries_filter_and_page(store: &dyn RunStore) {
    let wf = unique("query-wf");
    let mut made = Vec::new();
    for (i, (at, status)) in
        [(10, RunStatus::Succeeded), (20, RunStatus::Running), (20, RunStatus::Succeeded), (30, RunStatus::Failed)]
            .into_iter()
            .enumerate()
    {
        let id = format!("{wf}-r{i}");
        let mut t = transition(&id, 1, Precondition::DoesNotExist, 1..=1);
        (t.header.workflow, t.header.created_at, t.header.status) = (wf.clone(), at, status);
        store.commit(&[t]).await.expect("create");
        made.push((at, id));
    }
    let ids = |hs: Vec<RunHeader>| hs.into_iter().map(|h| h.id.into_string()).collect::<Vec<_>>();
    let q = |limit| crate::ports::RunQuery { workflow: Some(wf.clone()), limit, ..Default::default() };
    let all = ids(store.query_runs(&q(10)).await.expect("query"));
    let newest_first: Vec<String> = [3, 2, 1, 0].iter().map(|&i| made[i].1.clone()).collect();
    assert_eq!(all, newest_first, "newest first, ties by id descending");
    // Pages of one, each after the last of the previous, give the same order.
    let mut paged = Vec::new();
    let mut after = None;
    loop {
        let page = store.query_runs(&crate::ports::RunQuery { after: after.clone(), ..q(1) }).await.expect("page");
        let Some(h) = page.first() else { break };
        after = Some((h.created_at, h.id.clone()));
        paged.push(h.id.to_string());
    }
    assert_eq!(paged, newest_first);
    let only = |f: crate::ports::RunQuery| async move { ids(store.query_runs(&f).await.expect("query")) };
    assert_eq!(
        only(crate::ports::RunQuery { status: Some(RunStatus::Running), ..q(10) }).await,
        vec![made[1].1.clone()]
    );
    assert_eq!(
        only(crate::ports::RunQuery { created_after: Some(10), created_before: Some(30), ..q(10) }).await,
        vec![made[2].1.clone(), made[1].1.clone()],
        "both bounds exclusive"
    );
    assert!(only(crate::ports::RunQuery { workflow: Some(unique("no-such-wf")), ..q(10) }).await.is_empty());
}

/// Contract case: facts keep the latest value per key sorted and per entity.
pub async fn facts_keep_the_latest_value_per_key_sorted_and_per_entity(store: &dyn RunStore) {
    let (a, b) = (unique("customer-facts-a"), unique("customer-facts-b"));
    let fact = |entity: &str, key: &str, value: serde_json::Value, source: &str, at: u64| MemoryFact {
        entity: entity.into(),
        key: key.into(),
        value,
        source: source.into(),
        at,
    };
    store.put_fact(&fact(&a, "tier", json!("gold"), "run-1/classify", 1_000)).await.expect("put");
    store.put_fact(&fact(&a, "region", json!({"code": "eu"}), "run-1/classify", 1_001)).await.expect("put");
    store.put_fact(&fact(&b, "tier", json!("silver"), "agent", 1_002)).await.expect("put");
    let newer = fact(&a, "tier", json!("platinum"), "run-2/upgrade", 2_000);
    store.put_fact(&newer).await.expect("put the same key again");
    store.put_fact(&newer).await.expect("writing a fact twice is fine");
    let notes = fact(&a, "notes", large_value(), "agent", 2_001);
    store.put_fact(&notes).await.expect("put a large value");
    assert_eq!(
        store.facts(&a).await.expect("facts"),
        vec![notes, fact(&a, "region", json!({"code": "eu"}), "run-1/classify", 1_001), newer],
        "one fact per key, the newest value with its source and time, by key"
    );
    assert_eq!(
        store.facts(&b).await.expect("facts"),
        vec![fact(&b, "tier", json!("silver"), "agent", 1_002)],
        "another entity's facts are its own"
    );
    assert!(store.facts(&unique("customer-facts-none")).await.expect("facts").is_empty());
}

/// Contract case: episodes are committed once and listed newest first.
pub async fn episodes_are_committed_once_and_listed_newest_first(store: &dyn RunStore) {
    let (entity, other) = (unique("customer-ep"), unique("customer-ep-other"));
    let (ra, rb, rc, rd) = (unique("ep-a"), unique("ep-b"), unique("ep-c"), unique("ep-d"));
    let ep = |entity: &str, run: &str, at: u64| Episode {
        entity: entity.into(),
        run_id: run.into(),
        workflow: "contract".into(),
        status: "succeeded".into(),
        summary: format!("{run} ended"),
        at,
    };
    let mut t = transition(&ra, 1, Precondition::DoesNotExist, 1..=1);
    // Listed twice in one transition, and for two entities: one episode per entity.
    t.episodes = vec![ep(&entity, &ra, 2_000), ep(&entity, &ra, 2_000), ep(&other, &ra, 2_000)];
    store.commit(&[t]).await.expect("commit a");
    let mut t = transition(&ra, 2, Precondition::MatchesVersion(1), 2..=2);
    t.episodes = vec![ep(&entity, &ra, 2_000)];
    store.commit(&[t]).await.expect("commit a again: the same episode is no error");
    // Two runs ending at the same time; one also remembers the other's episode (a parent
    // its child's), which is still one episode.
    let mut tb = transition(&rb, 1, Precondition::DoesNotExist, 1..=1);
    tb.episodes = vec![ep(&entity, &rb, 3_000)];
    let mut tc = transition(&rc, 1, Precondition::DoesNotExist, 1..=1);
    tc.episodes = vec![ep(&entity, &rc, 3_000), ep(&entity, &rb, 3_000)];
    store.commit(&[tb, tc]).await.expect("commit b and c");
    // A lost create writes no episode.
    let mut lost = transition(&ra, 1, Precondition::DoesNotExist, 1..=1);
    lost.episodes = vec![ep(&entity, &rd, 4_000)];
    let conflict = store.commit(&[lost]).await;
    assert!(matches!(conflict, Err(StoreError::Conflict { .. })), "{conflict:?}");

    assert_eq!(
        store.episodes(&entity, 10).await.expect("episodes"),
        vec![ep(&entity, &rc, 3_000), ep(&entity, &rb, 3_000), ep(&entity, &ra, 2_000)],
        "newest first, a tie broken by run id (descending); nothing from the failed commit"
    );
    assert_eq!(
        store.episodes(&entity, 2).await.expect("episodes"),
        vec![ep(&entity, &rc, 3_000), ep(&entity, &rb, 3_000)],
        "at most `limit`, the newest"
    );
    assert!(store.episodes(&entity, 0).await.expect("episodes").is_empty());
    assert_eq!(store.episodes(&other, 10).await.expect("episodes"), vec![ep(&other, &ra, 2_000)]);
    assert!(store.episodes(&unique("customer-ep-none"), 10).await.expect("episodes").is_empty());
}

/// Contract case: cache keeps the last response per key.
pub async fn cache_keeps_the_last_response_per_key(store: &dyn RunStore) {
    let key = unique("cache-key");
    assert_eq!(store.get_cache(&key).await.expect("get"), None, "nothing stored yet");
    let first = CacheEntry { key: key.clone(), value: json!({"rate": 1.1}), at: 1_000, expires_at: 5_000 };
    store.put_cache(&first).await.expect("put");
    assert_eq!(store.get_cache(&key).await.expect("get"), Some(first));
    // A large value, kept for good.
    let second = CacheEntry { key: key.clone(), value: large_value(), at: 2_000, expires_at: u64::MAX };
    store.put_cache(&second).await.expect("replace");
    assert_eq!(store.get_cache(&key).await.expect("get"), Some(second), "the newer response replaces the older");
    assert_eq!(store.get_cache(&unique("cache-other")).await.expect("get"), None);
}

/// Generates one test per contract case for a store. `$open` is an expression evaluated once
/// per test that yields `(guard, Arc<Store>)`: the guard (a temporary directory, say) lives as
/// long as the test. The calling crate needs `tokio` with its test macros.
#[macro_export]
macro_rules! store_contract_tests {
    ($open:expr) => {
        $crate::store_contract_tests!(@cases $open;
            create_is_conditional,
            stale_version_conflicts_and_writes_nothing,
            a_batch_is_all_or_nothing,
            tasks_open_move_and_close,
            outbox_lists_unpublished_events_until_marked,
            command_outbox_waits_until_cleared_and_a_conflict_writes_none,
            a_commit_clears_the_rows_it_finished,
            claims_admit_one_holder_and_keep_the_result,
            published_definitions_point_at_the_latest_hash,
            unfinished_and_listing,
            queries_filter_and_page,
            facts_keep_the_latest_value_per_key_sorted_and_per_entity,
            episodes_are_committed_once_and_listed_newest_first,
            cache_keeps_the_last_response_per_key,
            sealed_fields_are_kept_apart_and_erased
        );
        #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
        async fn concurrent_commits_each_get_their_own_outcome() {
            let (_guard, store) = $open.await;
            $crate::store_contract::concurrent_commits_each_get_their_own_outcome(store).await;
        }
    };
    (@cases $open:expr; $($case:ident),*) => {
        $(
            #[tokio::test]
            async fn $case() {
                let (_guard, store) = $open.await;
                $crate::store_contract::$case(store.as_ref()).await;
            }
        )*
    };
}

/// Sealed fields are stored with the commit that first seals them; erasing one removes its
/// value and salt and every copy of the value from the run's state and journal, and leaves the
/// audit records as they were.
pub async fn sealed_fields_are_kept_apart_and_erased(store: &dyn RunStore) {
    use baton_core::audit::seal::SealedField;
    let id = unique("sealed");
    let iban = serde_json::json!("CZ6508000000192000154399");
    let mut t = transition(&id, 1, Precondition::DoesNotExist, 1..=1);
    t.state.input = serde_json::json!({"iban": iban, "amount": 5});
    t.state.seals.salt = Some("secret".into());
    t.events[0].1.kind = EventKind::CancelRequested { reason: "IBAN CZ6508000000192000154399 is bad".into() };
    t.sealed = vec![
        SealedField::new("input.iban".into(), Some("secret"), iban.clone()),
        SealedField::new("input.amount".into(), Some("secret"), serde_json::json!(5)),
    ];
    store.commit(&[t]).await.expect("commit");
    let audit_before = store.load_audit(&RunId::new(id.clone())).await.expect("audit");
    let run_id = RunId::new(id.clone());
    let kept = store.load_sealed(&run_id).await.expect("sealed");
    assert_eq!(kept.len(), 2);
    assert!(kept.iter().all(|f| f.holds() && f.value.is_some()));

    let erased = store.erase_sealed(&run_id, &["input.iban".to_owned()], 2_000, "GDPR-7").await.expect("erase");
    assert_eq!(erased, vec!["input.iban".to_owned()]);
    let kept = store.load_sealed(&run_id).await.expect("sealed");
    let f = kept.iter().find(|f| f.field == "input.iban").expect("kept");
    assert_eq!(
        (f.value.as_ref(), f.salt.as_ref(), f.erased_at, f.reason.as_deref()),
        (None, None, Some(2_000), Some("GDPR-7"))
    );
    assert!(f.holds());
    let other = kept.iter().find(|f| f.field == "input.amount").expect("kept");
    assert_eq!(other.value, Some(serde_json::json!(5)));
    let run = store.load_run(&run_id).await.expect("load").expect("exists");
    assert_eq!(run.state.input["iban"], serde_json::json!("[erased input.iban]"));
    assert_eq!(run.state.seals.salt, None, "the salt secret goes with the first erasure");
    let events = store.load_events(&run_id).await.expect("events");
    let text = serde_json::to_string(&events[0].1).expect("json");
    assert!(text.contains("IBAN [erased input.iban] is bad") && !text.contains("CZ65"), "{text}");
    assert_eq!(store.load_audit(&run_id).await.expect("audit"), audit_before);
    // Erasing again changes nothing.
    assert!(store.erase_sealed(&run_id, &["input.iban".to_owned()], 3_000, "again").await.expect("erase").is_empty());
}
