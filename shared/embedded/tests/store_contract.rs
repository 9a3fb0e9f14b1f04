//! The store contract on the embedded SQLite store (see `support/store_contract.rs`).

#[path = "support/store_contract.rs"]
mod store_contract;

use std::sync::Arc;

use baton_embedded::sqlite::{Durability, SqliteStore};
use store_contract::contract;

fn sqlite() -> (tempfile::TempDir, Arc<SqliteStore>) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Arc::new(SqliteStore::open(dir.path(), Durability::Normal).expect("open"));
    (dir, store)
}

#[tokio::test]
async fn sqlite_create_is_conditional() {
    let (_d, s) = sqlite();
    contract::create_is_conditional(s.as_ref()).await;
}

#[tokio::test]
async fn sqlite_stale_version_conflicts_and_writes_nothing() {
    let (_d, s) = sqlite();
    contract::stale_version_conflicts_and_writes_nothing(s.as_ref()).await;
}

#[tokio::test]
async fn sqlite_a_batch_is_all_or_nothing() {
    let (_d, s) = sqlite();
    contract::a_batch_is_all_or_nothing(s.as_ref()).await;
}

#[tokio::test]
async fn sqlite_tasks_open_move_and_close() {
    let (_d, s) = sqlite();
    contract::tasks_open_move_and_close(s.as_ref()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_concurrent_commits_each_get_their_own_outcome() {
    let (_d, s) = sqlite();
    contract::concurrent_commits_each_get_their_own_outcome(s).await;
}

#[tokio::test]
async fn sqlite_unfinished_and_listing() {
    let (_d, s) = sqlite();
    contract::unfinished_and_listing(s.as_ref()).await;
}

#[tokio::test]
async fn sqlite_outbox_lists_unpublished_events_until_marked() {
    let (_d, s) = sqlite();
    contract::outbox_lists_unpublished_events_until_marked(s.as_ref()).await;
}

#[tokio::test]
async fn sqlite_published_definitions_point_at_the_latest_hash() {
    let (_d, s) = sqlite();
    contract::published_definitions_point_at_the_latest_hash(s.as_ref()).await;
}

#[tokio::test]
async fn sqlite_command_outbox_waits_until_cleared_and_a_conflict_writes_none() {
    let (_d, s) = sqlite();
    contract::command_outbox_waits_until_cleared_and_a_conflict_writes_none(s.as_ref()).await;
}

#[tokio::test]
async fn sqlite_claims_admit_one_holder_and_keep_the_result() {
    let (_d, s) = sqlite();
    contract::claims_admit_one_holder_and_keep_the_result(s.as_ref()).await;
}

#[tokio::test]
async fn sqlite_facts_keep_the_latest_value_per_key_sorted_and_per_entity() {
    let (_d, s) = sqlite();
    contract::facts_keep_the_latest_value_per_key_sorted_and_per_entity(s.as_ref()).await;
}

#[tokio::test]
async fn sqlite_episodes_are_committed_once_and_listed_newest_first() {
    let (_d, s) = sqlite();
    contract::episodes_are_committed_once_and_listed_newest_first(s.as_ref()).await;
}

#[tokio::test]
async fn sqlite_cache_keeps_the_last_response_per_key() {
    let (_d, s) = sqlite();
    contract::cache_keeps_the_last_response_per_key(s.as_ref()).await;
}

#[tokio::test]
async fn sqlite_a_database_made_before_memory_gains_its_tables_on_open() {
    use baton_runtime::ports::{CacheEntry, RunStore};
    let (dir, s) = sqlite();
    for table in ["facts", "episodes", "cache"] {
        s.execute_raw(&format!("DROP TABLE {table}")).expect("drop");
    }
    drop(s);
    let s = SqliteStore::open(dir.path(), Durability::Normal).expect("reopen");
    let entry = CacheEntry { key: "k".into(), value: serde_json::json!(1), at: 1, expires_at: 2 };
    s.put_cache(&entry).await.expect("put");
    assert_eq!(s.get_cache("k").await.expect("get"), Some(entry));
    assert!(s.facts("e").await.expect("facts").is_empty());
    assert!(s.episodes("e", 5).await.expect("episodes").is_empty());
}
