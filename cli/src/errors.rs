//! Which errors are the user's to fix (exit 2) and which are failures (exit 1).

use baton_runtime::RuntimeError;

use crate::exit;

/// A usage mistake the user can fix (exit 2).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Usage(pub String);

/// Exit code for an error: 2 for invalid definitions, inputs and arguments, else 1.
pub fn exit_code_for(e: &anyhow::Error) -> u8 {
    if e.downcast_ref::<Usage>().is_some() {
        return exit::INVALID;
    }
    match e.downcast_ref::<RuntimeError>() {
        Some(
            RuntimeError::InvalidDefinition(_)
            | RuntimeError::InvalidInput(_)
            | RuntimeError::InvalidAnswer(_)
            | RuntimeError::InvalidMocks(_)
            | RuntimeError::InvalidEvent(_)
            | RuntimeError::UnknownTask(_)
            | RuntimeError::UnknownWorkflow(_)
            | RuntimeError::UnknownRun(_)
            | RuntimeError::Refused(_),
        ) => exit::INVALID,
        _ => exit::FAILED,
    }
}
