//! baton-aws: adapters that implement baton-runtime's ports on AWS. Today: the DynamoDB run
//! store and the EventBridge lifecycle-event bus. Every client honours `AWS_ENDPOINT_URL` (and `AWS_ENDPOINT_URL_<SERVICE>`), so the same
//! code runs against real AWS, LocalStack or the moto emulator.

pub mod config;
pub mod dynamo;
pub mod eventbridge;
mod items;
pub mod triggers;

pub use dynamo::DynamoStore;
pub use eventbridge::EventBridgeBus;
