//! `AwsSecrets` against the emulator: a Secrets Manager secret and an SSM SecureString
//! parameter created with the SDK are read back, a missing one of each is `None`, and values
//! are served from the cache until they expire.

mod support;

use std::time::Duration;

use baton_aws::secret_source::AwsSecrets;
use baton_runtime::ports::SecretSource;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_manager_and_ssm_values_are_read_and_missing_ones_are_none() {
    let (config, suffix) = support::moto().await;
    let (secret, param) = (format!("baton-test/{suffix}/api-token"), format!("/baton-test/{suffix}/db-password"));
    let sm = aws_sdk_secretsmanager::Client::new(&config);
    sm.create_secret().name(&secret).secret_string("tok-from-secrets-manager").send().await.expect("create secret");
    let ssm = aws_sdk_ssm::Client::new(&config);
    ssm.put_parameter()
        .name(&param)
        .value("pw-from-ssm")
        .r#type(aws_sdk_ssm::types::ParameterType::SecureString)
        .send()
        .await
        .expect("put parameter");

    let secrets = AwsSecrets::new(&config);
    assert_eq!(secrets.get(&secret).await.expect("secret"), Some("tok-from-secrets-manager".into()));
    assert_eq!(secrets.get(&format!("ssm:{param}")).await.expect("parameter"), Some("pw-from-ssm".into()));
    assert_eq!(secrets.get(&format!("baton-test/{suffix}/nothing")).await.expect("missing secret"), None);
    assert_eq!(secrets.get(&format!("ssm:/baton-test/{suffix}/nothing")).await.expect("missing parameter"), None);

    // A rotated value is seen once the cached one expires, not before.
    sm.put_secret_value().secret_id(&secret).secret_string("rotated").send().await.expect("rotate");
    ssm.put_parameter()
        .name(&param)
        .value("pw-rotated")
        .r#type(aws_sdk_ssm::types::ParameterType::SecureString)
        .overwrite(true)
        .send()
        .await
        .expect("overwrite parameter");
    assert_eq!(secrets.get(&secret).await.expect("cached"), Some("tok-from-secrets-manager".into()));
    assert_eq!(secrets.get(&format!("ssm:{param}")).await.expect("cached"), Some("pw-from-ssm".into()));
    let fresh = AwsSecrets::new(&config).with_ttl(Duration::ZERO);
    assert_eq!(fresh.get(&secret).await.expect("secret"), Some("rotated".into()));
    assert_eq!(fresh.get(&format!("ssm:{param}")).await.expect("parameter"), Some("pw-rotated".into()));
}

/// A stack's workers read only `<stack>/steps/...`: the step's name is looked up there, so the
/// stack's own keys (the link signing key, the model key) cannot be named by a workflow.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stack_scoped_source_reads_only_names_under_its_steps_prefix() {
    let config = support::moto_config().await;
    let stack = format!("scoped-{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
    let sm = aws_sdk_secretsmanager::Client::new(&config);
    sm.create_secret().name(format!("{stack}/steps/CRM_TOKEN")).secret_string("crm").send().await.expect("step secret");
    sm.create_secret()
        .name(format!("{stack}/callback-signing-key"))
        .secret_string("hmac")
        .send()
        .await
        .expect("stack key");
    aws_sdk_ssm::Client::new(&config)
        .put_parameter()
        .name(format!("/{stack}/steps/db/password"))
        .value("pw")
        .r#type(aws_sdk_ssm::types::ParameterType::SecureString)
        .send()
        .await
        .expect("parameter");
    let secrets = AwsSecrets::for_stack(&config, &stack);
    assert_eq!(secrets.get("CRM_TOKEN").await.expect("step secret"), Some("crm".into()));
    assert_eq!(secrets.get("ssm:/db/password").await.expect("parameter"), Some("pw".into()));
    assert_eq!(secrets.get(&format!("{stack}/callback-signing-key")).await.expect("looked up under steps/"), None);
    assert_eq!(secrets.get("../callback-signing-key").await.expect("no escape"), None);
}
