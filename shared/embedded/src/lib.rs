//! baton-embedded: the backend for one machine. [`SqliteStore`] implements the runtime's
//! `RunStore` port on one SQLite file (WAL), committing concurrent transitions together (group
//! commit) so many runs share one fsync.

mod busy;
mod checkpointer;
mod group_commit;
mod sealer;
pub mod sqlite;
mod wal_sync;

pub use sqlite::SqliteStore;

/// Maps a SQLite error to the store port's error. (The port's error type lives in the runtime,
/// which does not know SQLite, so the conversion is a function here rather than a `From`.)
pub(crate) fn sql(e: rusqlite::Error) -> baton_runtime::StoreError {
    if e.sqlite_error_code() == Some(rusqlite::ErrorCode::DatabaseBusy) {
        return baton_runtime::StoreError::Backend(format!(
            "the state directory's database stayed locked by another process through {} retries (about 30 s): {e}",
            busy::MAX_RETRIES
        ));
    }
    baton_runtime::StoreError::Backend(e.to_string())
}
