//! `{{ secret("NAME") }}` values on AWS: `ssm:/path/param` is an SSM parameter (SecureString
//! decrypted), any other name a Secrets Manager secret (name or ARN, its string value).
//!
//! Values are cached for [`CACHE_TTL`]: a warm Lambda serves many steps, and a Secrets Manager
//! or SSM call per step would cost latency, money and throttling. Rotations are seen within that
//! time. Misses are not cached, so a secret created after a failed attempt is found by the retry.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use baton_runtime::ports::{SecretLookupError, SecretSource};

/// How long a value read is reused.
pub const CACHE_TTL: Duration = Duration::from_secs(5 * 60);

/// Entries kept at most; names can be computed, so the cache needs a bound.
const MAX_ENTRIES: usize = 1_024;

/// The prefix that selects SSM Parameter Store instead of Secrets Manager.
const SSM_PREFIX: &str = "ssm:";

/// Secrets from SSM Parameter Store (`ssm:/path`) and Secrets Manager (any other name).
pub struct AwsSecrets {
    secrets_manager: aws_sdk_secretsmanager::Client,
    ssm: aws_sdk_ssm::Client,
    ttl: Duration,
    cache: Mutex<HashMap<String, (Instant, String)>>,
    /// When set, names are looked up under `<scope>/steps/` (Secrets Manager) and
    /// `/<scope>/steps/` (SSM), so a workflow can read only the secrets meant for steps, never
    /// the stack's own keys.
    scope: Option<String>,
}

impl AwsSecrets {
    /// A source using `config`'s region, credentials and endpoints, caching for [`CACHE_TTL`].
    pub fn new(config: &aws_config::SdkConfig) -> Self {
        Self {
            secrets_manager: aws_sdk_secretsmanager::Client::new(config),
            ssm: aws_sdk_ssm::Client::new(config),
            ttl: CACHE_TTL,
            cache: Mutex::new(HashMap::new()),
            scope: None,
        }
    }

    /// The source of stack `stack`'s workers: `secret("CRM_TOKEN")` reads the Secrets Manager
    /// secret `<stack>/steps/CRM_TOKEN`, `secret("ssm:/crm/token")` the SSM parameter
    /// `/<stack>/steps/crm/token` (the workers' IAM policy allows exactly these).
    pub fn for_stack(config: &aws_config::SdkConfig, stack: &str) -> Self {
        Self { scope: Some(stack.to_owned()), ..Self::new(config) }
    }

    /// The same source with another cache lifetime (`Duration::ZERO` turns caching off).
    pub fn with_ttl(mut self, ttl: Duration) -> Self {
        self.ttl = ttl;
        self
    }

    fn cached(&self, name: &str) -> Option<String> {
        let cache = self.cache.lock().unwrap_or_else(PoisonError::into_inner);
        cache.get(name).filter(|(at, _)| at.elapsed() < self.ttl).map(|(_, v)| v.clone())
    }

    fn remember(&self, name: &str, value: &str) {
        if self.ttl.is_zero() {
            return;
        }
        let mut cache = self.cache.lock().unwrap_or_else(PoisonError::into_inner);
        if cache.len() >= MAX_ENTRIES {
            cache.retain(|_, (at, _)| at.elapsed() < self.ttl);
            if cache.len() >= MAX_ENTRIES {
                cache.clear();
            }
        }
        cache.insert(name.to_owned(), (Instant::now(), value.to_owned()));
    }

    async fn parameter(&self, name: &str, path: &str) -> Result<Option<String>, SecretLookupError> {
        match self.ssm.get_parameter().name(path).with_decryption(true).send().await {
            Ok(out) => Ok(out.parameter().and_then(|p| p.value()).map(str::to_owned)),
            Err(e) => {
                let e = e.into_service_error();
                if e.is_parameter_not_found() || e.is_parameter_version_not_found() {
                    Ok(None)
                } else {
                    Err(SecretLookupError::Backend { name: name.to_owned(), message: e.to_string() })
                }
            }
        }
    }
}

#[async_trait]
impl SecretSource for AwsSecrets {
    async fn get(&self, name: &str) -> Result<Option<String>, SecretLookupError> {
        if let Some(value) = self.cached(name) {
            return Ok(Some(value));
        }
        let value = match name.strip_prefix(SSM_PREFIX) {
            Some("") => return Err(SecretLookupError::InvalidName(name.to_owned())),
            Some(path) => match &self.scope {
                Some(scope) => {
                    self.parameter(name, &format!("/{scope}/steps/{}", path.trim_start_matches('/'))).await?
                }
                None => self.parameter(name, path).await?,
            },
            None => crate::secrets::optional_secret_with(
                &self.secrets_manager,
                &self.scope.as_ref().map_or_else(|| name.to_owned(), |scope| format!("{scope}/steps/{name}")),
            )
            .await
            .map_err(|e| SecretLookupError::Backend { name: name.to_owned(), message: e.message })?,
        };
        if let Some(v) = &value {
            self.remember(name, v);
        }
        Ok(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A config whose endpoint is a closed local port: any request would fail, so a value
    /// answered comes from the cache.
    async fn unreachable() -> aws_config::SdkConfig {
        let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let endpoint = format!("http://{}", closed.local_addr().expect("addr"));
        drop(closed);
        crate::config::for_emulator(&endpoint).await
    }

    #[tokio::test]
    async fn cached_values_are_served_without_a_request_until_they_expire() {
        let secrets = AwsSecrets::new(&unreachable().await);
        secrets.remember("db-password", "hunter2");
        assert_eq!(secrets.get("db-password").await.expect("cached"), Some("hunter2".into()));
        let expired = AwsSecrets::new(&unreachable().await).with_ttl(Duration::from_millis(1));
        expired.remember("db-password", "hunter2");
        std::thread::sleep(Duration::from_millis(5));
        let err = expired.get("db-password").await.expect_err("asks the (unreachable) service");
        assert!(matches!(&err, SecretLookupError::Backend { name, .. } if name == "db-password"), "{err}");
        assert!(!err.to_string().contains("hunter2"), "{err}");
    }

    #[tokio::test]
    async fn an_empty_ssm_path_is_not_a_name() {
        let secrets = AwsSecrets::new(&unreachable().await);
        assert!(matches!(secrets.get("ssm:").await, Err(SecretLookupError::InvalidName(_))));
    }
}
