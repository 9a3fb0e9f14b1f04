//! baton-runtime: the ports (store, tools, clock, secrets), the coordinator loop that drives the
//! pure engine through them, and the tools that do no I/O (`transform`, the response cache).
//! Adapters live in their own crates: the SQLite store in `baton-embedded`, the tools that do
//! I/O in `baton-tools`, the AWS services in `baton-aws`.

pub mod callback;
pub mod clock;
pub mod control;
pub mod coordinator;
pub mod entropy;
pub mod error;
pub mod handover_writer;
pub mod memory;
pub mod message_auth;
pub mod messages;
pub mod metering;
pub mod mocks;
pub mod model_usage;
pub mod ports;
pub mod report;
pub mod run_locks;
#[cfg(feature = "contract-tests")]
pub mod store_contract;
pub mod timer_host;
pub mod tools;
pub mod wait_index;
pub mod worker;

pub use baton_core::ids::{NodeKey, RunId, TaskId};
pub use control::{InProcessControl, RunControl};
pub use coordinator::{Coordinator, DriveOutcome, InlineCalls, MAX_INLINE_MS, Observer, is_settled, outbox_id};
pub use error::{RuntimeError, StoreError};
pub mod api;
pub mod audit_check;
pub mod audit_key;
