//! The one place the CLI looks at `--backend`: it builds the [`RunControl`] every command uses.

use std::sync::Arc;

use anyhow::{Context, Result};
use baton_embedded::sqlite::{Durability, SqliteStore};
use baton_runtime::audit_key::AuditKey;
use baton_runtime::callback::CallbackSigner;
use baton_runtime::clock::SystemClock;
use baton_runtime::run_locks::RunLocks;
use baton_runtime::{Coordinator, InProcessControl, RunControl};

use crate::errors::Usage;
use crate::progress::Progress;
use crate::{Backend, DurabilityArg};

/// Where runs live: the embedded SQLite file, or the DynamoDB table of an AWS stack.
pub struct Target {
    /// The embedded backend's state directory.
    pub state_dir: std::path::PathBuf,
    /// Which backend.
    pub backend: Backend,
    /// The AWS stack's name.
    #[cfg_attr(not(feature = "aws"), allow(dead_code))]
    pub stack: String,
    /// How the embedded store syncs commits.
    pub durability: DurabilityArg,
}

/// Control over the target's runs; `progress` shows each step live on stderr.
pub async fn control(target: &Target, progress: bool) -> Result<Arc<dyn RunControl>> {
    let signer = CallbackSigner::from_env().map_err(|e| Usage(e.to_string()))?;
    control_signed(target, progress, signer).await
}

/// [`control`] whose runs announce task links signed by `signer` (when there is one).
pub async fn control_signed(
    target: &Target,
    progress: bool,
    signer: Option<CallbackSigner>,
) -> Result<Arc<dyn RunControl>> {
    let decorate = |c: Coordinator| {
        let c = match &signer {
            Some(s) => c.with_callbacks(Arc::new(s.clone())),
            None => c,
        };
        if progress { c.with_observer(Arc::new(Progress::new())) } else { c }
    };
    match target.backend {
        Backend::Embedded => Ok(embedded_control(target, decorate)?),
        Backend::Aws => aws_control(target, decorate).await,
    }
}

/// The embedded backend's control over `target`'s state directory, driving runs only while it
/// holds their locks (`<state-dir>/locks`), so processes sharing the directory never drive one
/// run twice.
pub fn embedded_control(
    target: &Target,
    decorate: impl FnOnce(Coordinator) -> Coordinator,
) -> Result<Arc<InProcessControl>> {
    let durability = match target.durability {
        DurabilityArg::Normal => Durability::Normal,
        DurabilityArg::Full => Durability::Full,
    };
    let store = SqliteStore::open(&target.state_dir, durability).context("cannot open the state directory")?;
    // Every embedded store signs: the key is BATON_AUDIT_KEY or made on first use.
    let key = AuditKey::from_env_or_dir(&target.state_dir).map_err(|e| Usage(e.to_string()))?;
    let store = store.with_audit_key(key);
    let c = Coordinator::new(Arc::new(store), embedded_tools(), Arc::new(SystemClock));
    let locks = Arc::new(RunLocks::new(target.state_dir.join("locks")));
    Ok(Arc::new(InProcessControl::new(Arc::new(decorate(c))).with_locks(locks)))
}

#[cfg(feature = "aws")]
fn embedded_tools() -> baton_runtime::tools::ToolRegistry {
    // Bedrock loads the AWS configuration at its first request: runs without a bedrock step
    // never pay for it.
    let llm = baton_tools::LlmTool::from_env().and(Arc::new(baton_aws::bedrock::BedrockChat::lazy()));
    baton_tools::builtin_with(baton_tools::HttpTool::new(), llm)
}

#[cfg(not(feature = "aws"))]
fn embedded_tools() -> baton_runtime::tools::ToolRegistry {
    baton_tools::builtin()
}

#[cfg(feature = "aws")]
async fn aws_control(target: &Target, decorate: impl Fn(Coordinator) -> Coordinator) -> Result<Arc<dyn RunControl>> {
    // The SDK's default chain: AWS_REGION, credentials, AWS_ENDPOINT_URL(_<SERVICE>). The CLI
    // reads the stack's table and publishes definitions; changes to runs go to the stack's
    // coordinator as messages.
    let config = baton_aws::config::from_env().await;
    // With the stack's audit key (BATON_AUDIT_KEY[_ARN]) the CLI checks the seals `audit verify`
    // finds; it never commits, so it never signs.
    let store = baton_aws::audit_signing::signed_store(&config, &target.stack).await?;
    let c = Coordinator::new(Arc::new(store), baton_runtime::tools::ToolRegistry::default(), Arc::new(SystemClock));
    let notice = Arc::new(|text: &str| eprintln!("{text}"));
    Ok(Arc::new(baton_aws::StackControl::new(Arc::new(decorate(c)), &config, &target.stack, notice)))
}

#[cfg(not(feature = "aws"))]
async fn aws_control(_target: &Target, _decorate: impl Fn(Coordinator) -> Coordinator) -> Result<Arc<dyn RunControl>> {
    Err(Usage("this baton was built without the AWS backend (cargo feature `aws`)".into()).into())
}
