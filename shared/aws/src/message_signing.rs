//! The stack's message key (see `baton_runtime::message_auth`): workers sign the results they
//! send and the coordinator believes only signed ones. The template generates the key as a
//! Secrets Manager secret that only the coordinator and worker roles can read.

use std::sync::Arc;

use baton_runtime::message_auth::{MessageKey, MessageKeyError};

/// The key itself (at least 16 bytes of text), for hosts without Secrets Manager.
pub const MESSAGE_KEY_ENV: &str = "BATON_MESSAGE_KEY";
/// A Secrets Manager secret whose value is the key.
pub const MESSAGE_KEY_ARN_ENV: &str = "BATON_MESSAGE_KEY_ARN";

/// Why the key could not be had.
#[derive(Debug, thiserror::Error)]
pub enum MessageSigningError {
    /// Secrets Manager refused or failed.
    #[error(transparent)]
    Secret(#[from] crate::secrets::SecretError),
    /// The key is too short.
    #[error("{from}: {error}")]
    Key {
        /// What is wrong with it.
        error: MessageKeyError,
        /// The variable it came from.
        from: &'static str,
    },
}

/// The key from `BATON_MESSAGE_KEY`, else from the secret `BATON_MESSAGE_KEY_ARN` names; `None`
/// when neither is set (results are then not authenticated, as before the key existed).
pub async fn message_key_from_env(
    config: &aws_config::SdkConfig,
) -> Result<Option<Arc<MessageKey>>, MessageSigningError> {
    crate::secrets::value_from_env(config, MESSAGE_KEY_ENV, MESSAGE_KEY_ARN_ENV)
        .await?
        .map(|(value, from)| key(&value, from))
        .transpose()
}

fn key(value: &str, from: &'static str) -> Result<Arc<MessageKey>, MessageSigningError> {
    MessageKey::new(value.trim().as_bytes()).map(Arc::new).map_err(|error| MessageSigningError::Key { error, from })
}
