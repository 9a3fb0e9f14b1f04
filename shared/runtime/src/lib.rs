//! baton-runtime: the ports (store, tools, clock), the coordinator loop that drives the pure
//! engine through them, the built-in tools, and the embedded SQLite backend.

pub mod callback;
pub mod clock;
pub mod coordinator;
pub mod error;
mod group_commit;
pub mod handover_writer;
pub mod memory;
pub mod messages;
pub mod metering;
pub mod mocks;
pub mod ports;
pub mod report;
pub mod secrets;
pub mod sqlite;
pub mod tools;
pub mod worker;

pub use coordinator::{Coordinator, DriveOutcome, Observer, is_settled, outbox_id};
pub use error::{RuntimeError, StoreError};
pub mod audit_check;
