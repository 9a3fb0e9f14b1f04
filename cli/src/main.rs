//! `baton`: validate, run, resume and inspect workflows, embedded or on an AWS stack.

mod backend;
mod commands;
mod definition;
mod errors;
mod input;
mod output;
mod progress;
mod report;
mod signals;
mod sub_workflows;

use std::path::PathBuf;
use std::process::ExitCode;

use baton_core::ids::{RunId, TaskId};
use clap::{Parser, Subcommand, ValueEnum};

/// Exit codes of the contract.
pub mod exit {
    /// The run succeeded (or the command did its job).
    pub const OK: u8 = 0;
    /// The run failed or was cancelled; or a check failed.
    pub const FAILED: u8 = 1;
    /// Invalid definition, input or arguments.
    pub const INVALID: u8 = 2;
    /// The run waits on a person, an event or a resume.
    pub const WAITING: u8 = 3;
}

#[derive(Parser)]
#[command(
    name = "baton",
    version,
    about = "Durable workflows: a DAG of tools, people and timers, with an audit log of every decision."
)]
struct Cli {
    /// Directory holding the embedded state (baton.db).
    #[arg(long, global = true, env = "BATON_HOME", default_value = ".baton")]
    state_dir: PathBuf,
    /// Where runs live: `embedded` (SQLite under --state-dir) or `aws` (the DynamoDB table
    /// `<stack>-runs`, driven by the stack's coordinator and workers; see docs/aws.md).
    #[arg(long, global = true, env = "BATON_BACKEND", value_enum, default_value_t = Backend::Embedded)]
    backend: Backend,
    /// Stack prefix naming the AWS resources.
    #[arg(long, global = true, env = "BATON_STACK", default_value = "baton-dev")]
    stack: String,
    /// Embedded: `normal` (a commit survives a crash of the process; the last ones may be lost
    /// on power failure) or `full` (every commit is fsynced before the run moves on).
    #[arg(long, global = true, env = "BATON_DURABILITY", value_enum, default_value_t = DurabilityArg::Normal)]
    durability: DurabilityArg,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Convert another orchestrator's definition into a baton workflow.
    Import {
        #[command(subcommand)]
        command: commands::import::ImportCommand,
    },
    /// Check definitions; prints every problem with file, line, step and field.
    Validate {
        /// Workflow files (YAML or JSON).
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Run a workflow to its end, or until it waits on a person or event.
    Run {
        /// Workflow file.
        file: PathBuf,
        /// Run input: JSON text or @file.
        #[arg(long, default_value = "{}")]
        input: String,
        /// Scripted tool results: {steps: {<id>: [{output} | {error, message}]}}.
        #[arg(long)]
        mocks: Option<PathBuf>,
        /// Print one JSON object instead of progress.
        #[arg(long)]
        json: bool,
    },
    /// Continue unfinished runs (all, or one).
    Resume {
        /// Run id; all unfinished runs when absent.
        run_id: Option<RunId>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Cancel a run: in-flight steps end, completed steps are compensated.
    Cancel {
        /// Run id.
        run_id: RunId,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// List, show, redrive, retry, pause or unpause runs.
    Runs {
        #[command(subcommand)]
        command: RunsCommand,
    },
    /// Open human tasks.
    Tasks {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Approve a task and continue its run.
    Approve {
        #[command(flatten)]
        answer: AnswerArgs,
        /// Answer data (JSON or @file), checked against the task's form.
        #[arg(long)]
        data: Option<String>,
    },
    /// Reject a task and continue its run.
    Reject {
        #[command(flatten)]
        answer: AnswerArgs,
    },
    /// Show, verify or replay a run's audit log.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// Publish a definition: store it as the version `start` and triggers run; on `--backend aws`
    /// also create or update one EventBridge rule per `event` trigger and one Scheduler schedule
    /// per `schedule` trigger.
    Publish {
        /// Workflow file.
        file: PathBuf,
    },
    /// Start a run of a published workflow (like `run`, by name).
    Start {
        /// Workflow name.
        name: String,
        /// Run input: JSON text or @file.
        #[arg(long, default_value = "{}")]
        input: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Deliver an EventBridge event (`{"source", "detail-type", "detail"}`) to the published
    /// workflows' triggers and to the open `wait_event` waits it matches: embedded, start or
    /// continue every match here; on `--backend aws`, put it on `<stack>-bus`, whose rules route
    /// it to the coordinator.
    Event {
        /// The event: JSON text or @file.
        event: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Local host for the AWS backend: the coordinator and the worker functions' handlers polling
    /// the stack's queues, firing due one-time schedules (emulator-only), until Ctrl-C.
    Dev {
        /// Seconds of long polling per receive.
        #[arg(long, default_value_t = 5)]
        wait: i32,
        /// Stop after this many messages (tests and demos).
        #[arg(long)]
        max_messages: Option<usize>,
    },
    /// Serve the HTTP API (`/api/*`) and signed task links until Ctrl-C or SIGTERM: what the
    /// `api` function does on AWS. `BATON_API_TOKEN` is the API's bearer token (required to bind
    /// a non-loopback address); `BATON_CALLBACK_SECRET` (32 bytes or more) enables task links.
    Serve {
        /// Address to listen on (port 0: any free port, printed on stderr).
        #[arg(long, default_value = "127.0.0.1:8088")]
        listen: std::net::SocketAddr,
        /// Base URL of the links (default: `BATON_CALLBACK_URL`, else `http://<listen>`).
        #[arg(long)]
        url: Option<String>,
    },
    /// baton as an MCP server: published workflows as tools, runs and tasks to read and answer.
    Mcp {
        #[command(subcommand)]
        command: McpCommand,
    },
    /// Write one self-contained HTML page about a run: its DAG, timeline, decisions, human
    /// tasks, memory, cost and audit-chain check.
    Report {
        /// Run id.
        run_id: RunId,
        /// The file to write (default: `report-<run id>.html` in the current directory).
        #[arg(short = 'o', long = "output", value_name = "FILE")]
        output: Option<PathBuf>,
    },
    /// Draw a workflow's DAG.
    Graph {
        /// Workflow file.
        file: PathBuf,
        /// Output format.
        #[arg(long, value_enum, default_value_t = GraphFormat::Mermaid)]
        format: GraphFormat,
    },
}

/// What `approve` and `reject` share: the task, who answers and why, and how to print.
#[derive(clap::Args)]
pub struct AnswerArgs {
    /// Task id.
    pub task: TaskId,
    /// Comment.
    #[arg(long)]
    pub comment: Option<String>,
    /// Who answers.
    #[arg(long)]
    pub by: Option<String>,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Subcommand)]
enum RunsCommand {
    /// Runs, newest first.
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
        /// How many.
        #[arg(long, default_value_t = 50)]
        limit: usize,
    },
    /// One run with its steps.
    Show {
        /// Run id.
        run_id: RunId,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Continue a failed or cancelled run from the steps that did not complete, with fresh
    /// attempts; completed steps keep their outputs. Drives the run to its end or next wait.
    Redrive {
        /// Run id.
        run_id: RunId,
        /// Why (recorded in the audit log).
        #[arg(long)]
        reason: Option<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Run a step and everything downstream of it again (also on a finished run); upstream
    /// outputs are kept. Drives the run to its end or next wait.
    Retry {
        /// Run id.
        run_id: RunId,
        /// The top-level step to run again.
        #[arg(long = "from", value_name = "STEP")]
        from: String,
        /// A JSON merge patch (RFC 7386) over the step's arguments, inline or as @file.
        #[arg(long, value_name = "JSON|@FILE")]
        input: Option<String>,
        /// Why (recorded in the audit log).
        #[arg(long)]
        reason: Option<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Stop dispatching new attempts and hold timers; calls in flight finish and are recorded.
    Pause {
        /// Run id.
        run_id: RunId,
        /// Why (recorded in the audit log).
        #[arg(long)]
        reason: Option<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Let a paused run go on: held attempts start, held timers fire (late, and say so).
    Unpause {
        /// Run id.
        run_id: RunId,
        /// Why (recorded in the audit log).
        #[arg(long)]
        reason: Option<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum AuditCommand {
    /// Print the audit log.
    Show {
        /// Run id.
        run_id: RunId,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Check the hash chain and signed digests of a run, or of an export directory; exits 1
    /// naming the first bad record.
    Verify {
        /// Run id (not with --export).
        #[arg(required_unless_present = "export", conflicts_with = "export")]
        run_id: Option<RunId>,
        /// Verify a directory written by `baton audit export` instead of a stored run (no store
        /// is opened).
        #[arg(long, value_name = "DIR")]
        export: Option<PathBuf>,
        /// With --export: the auditor's own copy of the public key (64 hex digits), checked
        /// instead of the directory's public-key.hex.
        #[arg(long, value_name = "FILE", requires = "export")]
        key: Option<PathBuf>,
        /// Exit 1 when the log has no signed digests (instead of reporting it unsigned).
        #[arg(long)]
        require_signed: bool,
    },
    /// Write a run's audit records, signed digests and public key to a directory, for
    /// `audit verify --export` or any other verifier.
    Export {
        /// Run id.
        run_id: RunId,
        /// The directory to write (created if missing).
        #[arg(short = 'o', long = "output", value_name = "DIR")]
        output: PathBuf,
    },
    /// Erase sensitive fields of an ended run (a GDPR request): their values and salts go, and
    /// every copy of them in the run's state, journal and tasks; the audit records, hashes and
    /// signatures stay, so `audit verify` still passes and lists what was erased.
    Redact {
        /// Run id.
        run_id: RunId,
        /// A sealed field (`input.customer.email`, `steps.extract.output.iban`) or a path above
        /// several (`input.customer`); repeat for more.
        #[arg(long = "field", value_name = "PATH", required = true)]
        fields: Vec<String>,
        /// Why (the request's reference), kept with the erasure.
        #[arg(long, default_value = "erasure requested")]
        reason: String,
        /// Print JSON: `{run_id, erased: [field...], reason}`.
        #[arg(long)]
        json: bool,
    },
    /// Re-run the journaled events through the engine and compare every decision.
    Replay {
        /// Run id (not with --export).
        #[arg(required_unless_present = "export", conflicts_with = "export")]
        run_id: Option<RunId>,
        /// Replay a directory written by `baton audit export` instead of a stored run: its
        /// definition and journal, against its records (no store is opened).
        #[arg(long, value_name = "DIR")]
        export: Option<PathBuf>,
    },
}

/// How the embedded store syncs its commits (`--durability`).
#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DurabilityArg {
    /// SQLite `synchronous=NORMAL` in WAL mode.
    Normal,
    /// Every commit fsynced before it is acknowledged (concurrent commits share one fsync).
    Full,
}

/// Backends.
#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Backend {
    /// SQLite under the state directory.
    Embedded,
    /// DynamoDB (real AWS, LocalStack or an emulator via AWS_ENDPOINT_URL).
    Aws,
}

/// Graph output formats.
#[derive(Clone, Copy, ValueEnum)]
enum GraphFormat {
    /// Mermaid flowchart.
    Mermaid,
    /// Graphviz dot.
    Dot,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_env("BATON_LOG").unwrap_or_else(|_| "warn".into()))
        .with_writer(std::io::stderr)
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(exit::FAILED);
        }
    };
    match runtime.block_on(commands::dispatch(cli)) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(errors::exit_code_for(&e))
        }
    }
}

/// `baton mcp ...`.
#[derive(Subcommand)]
enum McpCommand {
    /// Serve MCP: a tool `start_<workflow>` per published workflow (its input schema as the tool's
    /// `inputSchema`), and `get_run`, `list_tasks`, `answer_task`.
    Serve {
        /// `stdio` (the client starts baton) or `http` (Streamable HTTP at `/mcp`).
        #[arg(long, value_enum, default_value = "stdio")]
        transport: commands::McpTransportArg,
        /// Address the HTTP transport listens on (loopback only; port 0: any free port).
        #[arg(long, default_value = "127.0.0.1:8090")]
        listen: std::net::SocketAddr,
    },
}
