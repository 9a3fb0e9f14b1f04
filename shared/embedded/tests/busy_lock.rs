//! Two processes on one state directory: a write that finds the database locked by another
//! connection waits with backoff until the lock goes, even past SQLite's old 5 s busy timeout.

use std::time::{Duration, Instant};

use baton_embedded::SqliteStore;
use baton_embedded::sqlite::Durability;
use baton_runtime::ports::RunStore;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_waits_out_a_lock_held_longer_than_five_seconds() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = SqliteStore::open(dir.path(), Durability::Normal).expect("open store");
    let path = dir.path().join("baton.db");
    let (locked_tx, locked_rx) = std::sync::mpsc::channel();
    let holder = std::thread::spawn(move || {
        let mut other = rusqlite::Connection::open(path).expect("second connection");
        let tx = other.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate).expect("write lock");
        tx.execute("INSERT INTO published (name, hash) VALUES ('holder', 'h')", []).expect("write");
        locked_tx.send(()).expect("signal");
        std::thread::sleep(Duration::from_millis(6_500));
        tx.commit().expect("commit");
    });
    locked_rx.recv().expect("the other connection took the lock");
    let started = Instant::now();
    store.publish_definition("waiter", "w").await.expect("the write waits for the lock, then succeeds");
    let waited = started.elapsed();
    holder.join().expect("holder thread");
    assert!(waited >= Duration::from_secs(5), "the write went through while the lock was held ({waited:?})");
    let names: Vec<String> =
        store.published_definitions().await.expect("list").into_iter().map(|(name, _)| name).collect();
    assert_eq!(names, ["holder", "waiter"], "both writes are in");
}
