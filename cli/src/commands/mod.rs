//! The subcommands, one module each: argument handling and printing. The work happens behind
//! the [`baton_runtime::RunControl`] that `crate::backend` builds; no command looks at the backend.

mod answer;
mod audit;
mod audit_export;
mod audit_replay;
mod cancel;
#[cfg(feature = "aws")]
mod dev;
mod event;
mod graph;
pub mod import;
mod mcp;
mod mcp_http;
mod publish;
mod report;
mod resume;
mod run;
mod runs;
mod serve;
mod start;
mod tasks;
mod timer_host;
mod validate;

use anyhow::Result;

use crate::backend::Target;
use crate::{Cli, Command, McpCommand};

pub use mcp::McpTransportArg;

/// Runs the parsed command; returns the exit code.
pub async fn dispatch(cli: Cli) -> Result<u8> {
    let target = Target {
        state_dir: cli.state_dir.clone(),
        backend: cli.backend,
        stack: cli.stack.clone(),
        durability: cli.durability,
    };
    match cli.command {
        Command::Import { command } => import::import(command),
        Command::Validate { files } => validate::validate(&files),
        Command::Graph { file, format } => graph::graph(&file, format),
        Command::Report { run_id, output } => report::report(&target, &run_id, output.as_deref()).await,
        Command::Run { file, input, mocks, json } => run::run(&target, &file, &input, mocks.as_deref(), json).await,
        Command::Start { name, input, json } => start::start(&target, &name, &input, json).await,
        Command::Resume { run_id, json } => resume::resume(&target, run_id, json).await,
        Command::Cancel { run_id, json } => cancel::cancel(&target, &run_id, json).await,
        Command::Runs { command } => runs::runs(&target, command).await,
        Command::Tasks { json } => tasks::tasks(&target, json).await,
        Command::Approve { answer, data } => answer::approve(&target, answer, data.as_deref()).await,
        Command::Reject { answer } => answer::reject(&target, answer).await,
        Command::Audit { command } => audit::audit(&target, command).await,
        Command::Publish { file } => publish::publish(&target, &file).await,
        Command::Event { event, json } => event::event(&target, &event, json).await,
        Command::Serve { listen, url } => serve::serve(&target, listen, url).await,
        Command::Dev { wait, max_messages } => dev(&target, wait, max_messages).await,
        Command::Mcp { command: McpCommand::Serve { transport, listen } } => {
            mcp::serve(&target, transport, listen).await
        }
    }
}

#[cfg(feature = "aws")]
async fn dev(target: &Target, wait: i32, max_messages: Option<usize>) -> Result<u8> {
    dev::dev(target, wait, max_messages).await
}

#[cfg(not(feature = "aws"))]
async fn dev(_target: &Target, _wait: i32, _max_messages: Option<usize>) -> Result<u8> {
    Err(crate::errors::Usage(
        "`baton dev` hosts the AWS backend, which this baton was built without (cargo feature `aws`)".into(),
    )
    .into())
}
