//! Lifecycle events reach EventBridge: a rule on the bus delivers them to an SQS queue on the
//! emulator, where a consumer reads them the way any subscriber would.

mod support;

use std::sync::Arc;
use std::time::Duration;

use baton_aws::EventBridgeBus;
use baton_embedded::sqlite::{Durability, SqliteStore};
use baton_runtime::Coordinator;
use baton_runtime::clock::SystemClock;
use baton_runtime::ports::RunStore;
use serde_json::{Value, json};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_lifecycle_events_arrive_on_the_bus_in_order_and_exactly_as_documented() {
    let (config, suffix) = support::moto().await;
    let (bus_name, queue_name) = (format!("bus-{suffix}"), format!("events-{suffix}"));
    let events = aws_sdk_eventbridge::Client::new(&config);
    let sqs = aws_sdk_sqs::Client::new(&config);
    events.create_event_bus().name(&bus_name).send().await.expect("bus");
    let queue_url = sqs.create_queue().queue_name(&queue_name).send().await.expect("queue").queue_url.expect("url");
    let attrs = sqs
        .get_queue_attributes()
        .queue_url(&queue_url)
        .attribute_names(aws_sdk_sqs::types::QueueAttributeName::QueueArn)
        .send()
        .await
        .expect("attrs");
    let queue_arn = attrs
        .attributes()
        .and_then(|a| a.get(&aws_sdk_sqs::types::QueueAttributeName::QueueArn))
        .cloned()
        .expect("arn");
    events
        .put_rule()
        .name(format!("all-{suffix}"))
        .event_bus_name(&bus_name)
        .event_pattern(json!({"source": ["baton"]}).to_string())
        .send()
        .await
        .expect("rule");
    events
        .put_targets()
        .rule(format!("all-{suffix}"))
        .event_bus_name(&bus_name)
        .targets(aws_sdk_eventbridge::types::Target::builder().id("q").arn(queue_arn).build().expect("target"))
        .send()
        .await
        .expect("targets");

    let dir = std::env::temp_dir().join(format!("baton-bus-{suffix}"));
    let store = Arc::new(SqliteStore::open(&dir, Durability::Normal).expect("store"));
    let c = Coordinator::new(store.clone(), baton_tools::builtin(), Arc::new(SystemClock))
        .with_bus(Arc::new(EventBridgeBus::new(&config, &bus_name)));
    let yaml = "name: bus-demo\nsteps:\n  - {id: ask, tool: human, with: {queue: ops, prompt: ok?}}\n  - {id: done, needs: [ask], tool: transform, with: {expr: \"1\"}}\n";
    let plan = Arc::new(baton_core::load_definition(None, yaml).expect("valid"));
    let id = c.start(plan, yaml, json!({}), None).await.expect("start");
    c.drive(std::slice::from_ref(&id), std::future::pending()).await.expect("drive");
    let task = support::approve_open_task(&c, &id).await;

    let mut seen: Vec<Value> = Vec::new();
    for _ in 0..20 {
        let got = sqs
            .receive_message()
            .queue_url(&queue_url)
            .max_number_of_messages(10)
            .wait_time_seconds(1)
            .send()
            .await
            .expect("receive");
        for m in got.messages() {
            seen.push(serde_json::from_str(m.body().unwrap_or("null")).expect("event JSON"));
        }
        if seen.len() >= 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // EventBridge does not promise delivery order (LocalStack, like AWS, may deliver the entries of
    // one PutEvents out of order), so the order is checked by the events' own `at` times.
    seen.sort_by_key(|e| (e["detail"]["at"].as_u64(), e["detail-type"] == "RunSucceeded"));
    let mut names: Vec<&str> = seen.iter().filter_map(|e| e["detail-type"].as_str()).collect();
    assert_eq!(names.pop(), Some("RunSucceeded"), "{seen:#?}");
    names.sort_unstable();
    assert_eq!(names, vec!["HumanTaskCreated", "RunStarted"], "each event exactly once: {seen:#?}");
    let at = |kind: &str| seen.iter().find(|e| e["detail-type"] == kind).and_then(|e| e["detail"]["at"].as_u64());
    assert!(at("RunStarted") <= at("HumanTaskCreated"), "{seen:#?}");
    for e in &seen {
        assert_eq!(e["source"], "baton");
        assert_eq!(e["detail"]["run_id"], id.as_str());
        assert!(e["detail"]["at"].as_u64().is_some());
    }
    let created = seen.iter().find(|e| e["detail-type"] == "HumanTaskCreated").expect("created");
    assert_eq!(created["detail"]["queue"], "ops");
    assert_eq!(created["detail"]["task"], task.id.as_str());
    assert!(c.store().unpublished_bus_events(10).await.expect("outbox").is_empty(), "everything published was marked");
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn events_stay_in_the_outbox_when_the_bus_is_unreachable_and_go_out_later() {
    let (config, suffix) = support::moto().await;
    let dir = std::env::temp_dir().join(format!("baton-bus-{suffix}"));
    let store = Arc::new(SqliteStore::open(&dir, Durability::Normal).expect("store"));
    // An EventBridge endpoint nobody listens on: every PutEvents fails (no emulator agrees on what a
    // missing bus does: LocalStack accepts and drops the entries).
    let unreachable = support::unreachable_config().await;
    let broken = Coordinator::new(store.clone(), baton_tools::builtin(), Arc::new(SystemClock))
        .with_bus(Arc::new(EventBridgeBus::new(&unreachable, format!("bus-{suffix}"))));
    let yaml = "name: outbox-demo\nsteps:\n  - {id: a, tool: transform, with: {expr: \"1\"}}\n";
    let plan = Arc::new(baton_core::load_definition(None, yaml).expect("valid"));
    let id = broken.start(plan, yaml, json!({}), None).await.expect("start: publishing never blocks a run");
    broken.drive(std::slice::from_ref(&id), std::future::pending()).await.expect("drive");
    let pending = store.unpublished_bus_events(10).await.expect("outbox");
    assert_eq!(pending.len(), 2, "RunStarted and RunSucceeded wait in the outbox: {pending:?}");

    // The bus is reachable again (a coordinator started after the outage, on the same store).
    let events = aws_sdk_eventbridge::Client::new(&config);
    events.create_event_bus().name(format!("bus-{suffix}")).send().await.expect("bus");
    let healed = Coordinator::new(store.clone(), baton_tools::builtin(), Arc::new(SystemClock))
        .with_bus(Arc::new(EventBridgeBus::new(&config, format!("bus-{suffix}"))));
    let sent = healed.flush_bus().await.expect("flush");
    assert_eq!(sent, 2);
    assert!(store.unpublished_bus_events(10).await.expect("outbox").is_empty());
    let _ = std::fs::remove_dir_all(&dir);
}
