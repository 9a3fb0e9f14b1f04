//! What a service is to the `aws` tool: its wire protocol, signing name, endpoint prefix, error
//! prefix and endpoint variable. The hand-written table (`protocol`) and the generated one
//! (`services`) both hold these.

/// A wire protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// POST `/`, `X-Amz-Target: <prefix>.<Action>`, the parameters as the JSON body.
    Json {
        /// `1.0` or `1.1` (the content type's version).
        version: &'static str,
        /// The target's prefix.
        target: &'static str,
    },
    /// POST `/` with `Action`, `Version` and the flattened parameters as a form; XML back.
    Query {
        /// The API version.
        version: &'static str,
    },
    /// Lambda: `Invoke` written by hand (its payload and function errors), the other
    /// operations as [`Protocol::RestJson`].
    LambdaInvoke,
    /// REST-JSON: each operation's method, URI template and member locations from the
    /// generated table (`rest_json`).
    RestJson,
    /// S3 `GetObject`, `PutObject`, `CreateBucket` (path-style addressing).
    S3Objects,
}

/// A service the `aws` tool calls.
#[derive(Debug, Clone, Copy)]
pub struct Service {
    /// The SDK service id a step's `with.service` names.
    pub id: &'static str,
    /// The SigV4 signing name.
    pub signing: &'static str,
    /// The regional endpoint's host prefix.
    pub endpoint: &'static str,
    /// Error kinds are `<errors>.<AWS error code>`, as Step Functions names them.
    pub errors: &'static str,
    /// The suffix of `AWS_ENDPOINT_URL_<env>`, the SDKs' per-service endpoint variable.
    pub env: &'static str,
    /// How requests are written.
    pub protocol: Protocol,
}
