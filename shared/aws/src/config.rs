//! Loading AWS configuration the way the SDK's default chain does, with an optional explicit
//! endpoint for emulators.

use aws_config::BehaviorVersion;

/// The SDK's default configuration: region, credentials and endpoint from the environment
/// (`AWS_REGION`, `AWS_ENDPOINT_URL`, `AWS_ENDPOINT_URL_DYNAMODB`, profiles, instance roles).
pub async fn from_env() -> aws_config::SdkConfig {
    aws_config::defaults(BehaviorVersion::latest()).load().await
}

/// Configuration for a local emulator at `endpoint` with dummy credentials (moto, LocalStack).
pub async fn for_emulator(endpoint: &str) -> aws_config::SdkConfig {
    let credentials = aws_sdk_dynamodb::config::Credentials::new("test", "test", None, None, "emulator");
    aws_config::defaults(BehaviorVersion::latest())
        .endpoint_url(endpoint)
        .region(aws_sdk_dynamodb::config::Region::new("us-east-1"))
        .credentials_provider(credentials)
        .load()
        .await
}
