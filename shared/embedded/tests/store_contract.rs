//! The store contract (`baton_runtime::store_contract`) on the embedded SQLite store, plus what
//! only SQLite has: tables added by later versions appear when an older file is opened.

use std::sync::Arc;

use baton_embedded::sqlite::{Durability, SqliteStore};

fn sqlite() -> (tempfile::TempDir, Arc<SqliteStore>) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Arc::new(SqliteStore::open(dir.path(), Durability::Normal).expect("open"));
    (dir, store)
}

baton_runtime::store_contract_tests!(async { sqlite() });

/// The same contract with every commit fsynced: group commits are then acknowledged by the WAL
/// sync thread, not by SQLite's `COMMIT`, and must keep every outcome the contract asks for.
mod full {
    use super::*;

    fn sqlite_full() -> (tempfile::TempDir, Arc<SqliteStore>) {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Arc::new(SqliteStore::open(dir.path(), Durability::Full).expect("open"));
        (dir, store)
    }

    baton_runtime::store_contract_tests!(async { sqlite_full() });
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
