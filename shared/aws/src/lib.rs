//! baton-aws: adapters that implement baton-runtime's ports on AWS: the DynamoDB run store
//! (with the outbox and worker claims), SQS dispatch, EventBridge lifecycle events and trigger
//! rules, Scheduler timers, the Lambda handlers, and the `baton dev` host. Every client honours `AWS_ENDPOINT_URL` (and `AWS_ENDPOINT_URL_<SERVICE>`), so the same
//! code runs against real AWS, LocalStack or the moto emulator.

pub mod audit_signing;
pub mod bedrock;
pub mod callbacks;
pub mod claim_check;
pub mod config;
pub mod control;
pub mod cost;
pub mod dev;
pub mod digest_witness;
pub mod dispatch;
pub mod dynamo;
pub mod emf;
pub mod eventbridge;
pub mod handlers;
mod items;
pub mod lambda;
pub mod message_signing;
pub mod metering;
pub mod queues;
mod sdk_error;
pub mod secret_source;
pub mod secrets;
pub mod telemetry;
pub mod triggers;

pub use control::StackControl;
pub use dispatch::SqsDispatcher;
pub use dynamo::DynamoStore;
pub use eventbridge::EventBridgeBus;
