//! AWS Signature Version 4 for `http` calls to connections with `auth.aws_sigv4` and for the
//! `aws` tool, signed with the worker's credentials as the AWS CLI finds them (see
//! [`crate::aws_credentials`]): the environment's keys (what Lambda gives a function for its role,
//! and what `aws configure export-credentials` gives a shell), else a named profile.

use std::time::SystemTime;

use aws_credential_types::Credentials;
use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
use aws_sigv4::sign::v4;
use aws_smithy_runtime_api::client::identity::Identity;
use baton_core::engine::{ErrorKind, StepError};

use crate::aws_credentials::{self, ChainEnv};

/// Who signs and for what.
#[derive(Debug, Clone)]
pub struct Signer {
    /// Access key id.
    pub access_key: String,
    /// Secret access key.
    pub secret_key: String,
    /// Session token of temporary credentials.
    pub session_token: Option<String>,
    /// Region.
    pub region: String,
    /// The service's signing name.
    pub service: String,
}

impl Signer {
    /// A signer with the process's credentials chain, for `service` in `region` (else the
    /// chain's region).
    pub async fn from_env(service: &str, region: Option<&str>) -> Result<Self, StepError> {
        Self::from_chain(service, region, &ChainEnv::from_process()).await
    }

    /// A signer with the credentials chain over `env`, for `service` in `region` (else
    /// `AWS_REGION`, `AWS_DEFAULT_REGION` or the profile's `region`).
    pub async fn from_chain(service: &str, region: Option<&str>, env: &ChainEnv) -> Result<Self, StepError> {
        // `tool`, not `connect`: no retry brings credentials that are not configured.
        let creds = aws_credentials::resolve(env).await.map_err(|e| StepError::new(ErrorKind::Tool, e.to_string()))?;
        let region = region.map(str::to_owned).or(creds.region).ok_or_else(|| {
            StepError::new(
                ErrorKind::Tool,
                format!(
                    "SigV4 needs a region: set `aws_sigv4.region`, AWS_REGION, or `region` in the profile \
                     (credentials from {})",
                    creds.source
                ),
            )
        })?;
        Ok(Self {
            access_key: creds.access_key,
            secret_key: creds.secret_key,
            session_token: creds.session_token,
            region,
            service: service.to_owned(),
        })
    }

    /// The headers that sign the request (`authorization`, `x-amz-date`, and
    /// `x-amz-security-token` for temporary credentials), at `time`.
    pub fn headers(
        &self,
        method: &str,
        url: &str,
        headers: &[(String, String)],
        body: &[u8],
        time: SystemTime,
    ) -> Result<Vec<(String, String)>, StepError> {
        let fail = |e: &dyn std::fmt::Display| StepError::new(ErrorKind::Tool, format!("cannot sign the request: {e}"));
        let identity: Identity =
            Credentials::new(&self.access_key, &self.secret_key, self.session_token.clone(), None, "environment")
                .into();
        let params = v4::SigningParams::builder()
            .identity(&identity)
            .region(&self.region)
            .name(&self.service)
            .time(time)
            .settings(SigningSettings::default())
            .build()
            .map_err(|e| fail(&e))?
            .into();
        let request = SignableRequest::new(
            method,
            url,
            headers.iter().map(|(k, v)| (k.as_str(), v.as_str())),
            SignableBody::Bytes(body),
        )
        .map_err(|e| fail(&e))?;
        let (instructions, _) = sign(request, &params).map_err(|e| fail(&e))?.into_parts();
        Ok(instructions.headers().map(|(k, v)| (k.to_owned(), v.to_owned())).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// AWS's SigV4 test suite, case `get-vanilla`: the published signature for a fixed key,
    /// date, region and service.
    #[test]
    fn the_signature_matches_the_aws_test_suite() {
        let s = Signer {
            access_key: "AKIDEXAMPLE".into(),
            secret_key: "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY".into(),
            session_token: None,
            region: "us-east-1".into(),
            service: "service".into(),
        };
        let time = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_440_938_160); // 2015-08-30T12:36:00Z
        let headers = s.headers("GET", "https://example.amazonaws.com/", &[], b"", time).expect("signed");
        let auth = headers.iter().find(|(k, _)| k == "authorization").map(|(_, v)| v.as_str()).expect("authorization");
        assert_eq!(
            auth,
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, \
             SignedHeaders=host;x-amz-date, \
             Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31"
        );
        assert!(headers.iter().any(|(k, v)| k == "x-amz-date" && v == "20150830T123600Z"));
    }
}
