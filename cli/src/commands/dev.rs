//! `baton --backend aws dev`: the stack's coordinator and workers hosted in this process against
//! the endpoint (see `baton_aws::dev`), for emulators that run no Lambda functions.

use anyhow::Result;

use crate::backend::Target;
use crate::errors::Usage;
use crate::signals::ctrl_c;
use crate::{Backend, exit};

/// Hosts the stack until Ctrl-C (or `max_messages`) and prints what it handled.
pub async fn dev(target: &Target, wait: i32, max_messages: Option<usize>) -> Result<u8> {
    let Backend::Aws = target.backend else {
        return Err(Usage("`baton dev` hosts the AWS backend: add `--backend aws`".into()).into());
    };
    let config = baton_aws::config::from_env().await;
    eprintln!(
        "baton dev: stack {} (queues {s}-coordinator, {s}-http; schedules in group {s}); Ctrl-C stops",
        target.stack,
        s = target.stack
    );
    let options = baton_aws::dev::DevOptions { wait_seconds: wait, max_messages, ..Default::default() };
    let stats = baton_aws::dev::serve(&config, &target.stack, options, ctrl_c()).await?;
    eprintln!(
        "baton dev: handled {} coordinator and {} worker messages, fired {} schedules, swept {} outbox rows",
        stats.coordinator_messages, stats.worker_messages, stats.schedules_fired, stats.swept
    );
    Ok(exit::OK)
}
