//! Memory across runs on the embedded backend: `.memory` holds what earlier runs left, every
//! ended run appends one episode, and `tool: memory` writes facts with their source.

use std::sync::Arc;

use baton_embedded::sqlite::{Durability, SqliteStore};
use baton_runtime::Coordinator;
use baton_runtime::clock::SystemClock;
use serde_json::{Value, json};

const WF: &str = r#"
name: kyc
memory: {entity: .input.who, load: [facts, episodes], episodes: 2}
output: '{seen: (.memory.episodes | map(.summary)), score: .memory.facts.score}'
steps:
  - {id: check, tool: transform, with: {expr: 'if .input.fail then error("bad id") else 1 end'}}
  - {id: note, needs: [check], tool: memory, with: {op: write, key: score, value: '{{ .input.score }}'}}
"#;

async fn run(c: &Coordinator, input: Value) -> baton_core::engine::RunState {
    let plan = Arc::new(baton_core::load_definition(None, WF).expect("valid"));
    let id = c.start(plan, WF, input, None).await.expect("start");
    c.drive(std::slice::from_ref(&id), std::future::pending()).await.expect("drive");
    c.store().load_run(&id).await.expect("load").expect("run").state
}

#[tokio::test]
async fn runs_remember_their_entity_and_leave_one_episode_each() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Arc::new(SqliteStore::open(dir.path(), Durability::Normal).expect("store"));
    let c = Coordinator::new(store.clone(), baton_tools::builtin(), Arc::new(SystemClock));
    let first = run(&c, json!({"who": "ann", "score": 3})).await;
    assert_eq!(first.output, Some(json!({"seen": [], "score": null})));
    let failed = run(&c, json!({"who": "ann", "score": 9, "fail": true})).await;
    assert_eq!(failed.status, baton_core::engine::RunStatus::Failed);
    let third = run(&c, json!({"who": "ann", "score": 5})).await;
    let seen = third.output.as_ref().and_then(|o| o["seen"].as_array().cloned()).expect("seen");
    assert_eq!(seen.len(), 2, "`episodes: 2` loads the newest two");
    assert!(seen[0].as_str().is_some_and(|s| s.contains("failed") && s.contains("bad id")), "{seen:?}");
    assert!(seen[1].as_str().is_some_and(|s| s.starts_with("kyc succeeded")), "{seen:?}");
    // The failed run never reached `note`: the score is still the first run's.
    assert_eq!(third.output.as_ref().map(|o| o["score"].clone()), Some(json!(3)));
    use baton_runtime::ports::RunStore;
    let facts = store.facts("ann").await.expect("facts");
    assert_eq!(facts.len(), 1);
    assert_eq!(facts[0].value, json!(5));
    assert_eq!(facts[0].source, format!("{}/note", third.run_id));
    assert_eq!(store.episodes("ann", 10).await.expect("episodes").len(), 3, "one episode per ended run");
    assert!(store.facts("bob").await.expect("facts").is_empty(), "entities are apart");
}

#[test]
fn memory_steps_and_the_entity_are_checked_before_a_run_starts() {
    let bad = r#"
name: bad
memory: {entity: .steps.a.output}
steps:
  - {id: a, tool: memory, with: {op: write, key: k}}
  - {id: b, tool: memory, with: {op: forget}}
"#;
    let problems = baton_core::load_definition(None, bad).expect_err("invalid");
    let text: Vec<String> = problems.iter().map(|p| format!("{} {}", p.pointer, p.message)).collect();
    let all = text.join("\n");
    assert!(all.contains("/memory/entity") && all.contains("may read `.input`"), "{all}");
    assert!(all.contains("/steps/0/with/value"), "{all}");
    assert!(all.contains("/steps/1/with/op") && all.contains("read, write or search"), "{all}");
}
