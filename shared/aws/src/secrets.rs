//! Reading secrets from Secrets Manager at cold start (signing keys, provider API keys).

/// A secret that could not be read.
#[derive(Debug, thiserror::Error)]
#[error("cannot read the secret `{name}`: {message}")]
pub struct SecretError {
    /// The secret's name or ARN.
    pub name: String,
    /// What the service said.
    pub message: String,
}

/// The string value of the secret `name` (or ARN); missing or binary-only secrets are errors.
pub async fn required_secret(config: &aws_config::SdkConfig, name: &str) -> Result<String, SecretError> {
    optional_secret(config, name).await?.ok_or_else(|| SecretError {
        name: name.to_owned(),
        message: "no such secret, or it has no string value".into(),
    })
}

/// A value given directly in the variable `value_env`, else the secret the variable `arn_env`
/// names (read now), with the variable it came from; `None` when neither is set.
pub async fn value_from_env(
    config: &aws_config::SdkConfig,
    value_env: &'static str,
    arn_env: &'static str,
) -> Result<Option<(String, &'static str)>, SecretError> {
    if let Ok(value) = std::env::var(value_env) {
        return Ok(Some((value, value_env)));
    }
    let Ok(arn) = std::env::var(arn_env) else { return Ok(None) };
    Ok(Some((required_secret(config, &arn).await?, arn_env)))
}

/// The string value of the secret `name`, or `None` when there is no such secret.
pub async fn optional_secret(config: &aws_config::SdkConfig, name: &str) -> Result<Option<String>, SecretError> {
    optional_secret_with(&aws_sdk_secretsmanager::Client::new(config), name).await
}

/// [`optional_secret`] with a client the caller keeps (a source asked many times).
pub async fn optional_secret_with(
    client: &aws_sdk_secretsmanager::Client,
    name: &str,
) -> Result<Option<String>, SecretError> {
    match client.get_secret_value().secret_id(name).send().await {
        Ok(out) => Ok(out.secret_string().map(str::to_owned)),
        Err(e) => {
            let e = e.into_service_error();
            if e.is_resource_not_found_exception() {
                Ok(None)
            } else {
                Err(SecretError { name: name.to_owned(), message: e.to_string() })
            }
        }
    }
}
