//! A validated, compiled workflow: the form the engine executes. Building a [`Plan`] is where every
//! definition problem is found, so an invalid definition never starts a run.

mod build;
mod dag;
mod items_from;
mod loops;
mod mesh;
mod policy;
mod problems;
mod structure;
pub mod tools;
mod types;
mod workflow;

pub use build::{load_definition, plan_document};
pub use items_from::{DEFAULT_BATCH_SIZE, MAX_BATCH_SIZE};
pub use mesh::load_with_mesh;
pub use structure::did_you_mean;
pub use types::*;
