//! The subcommands: argument handling and printing; the work happens in baton-runtime.

use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, Result};
use baton_core::Plan;
use baton_core::engine::{EventKind, HumanAnswer, Verdict};
use baton_embedded::sqlite::{Durability, SqliteStore};
use baton_runtime::callback::CallbackSigner;
use baton_runtime::clock::SystemClock;
use baton_runtime::error::RuntimeError;
use baton_runtime::messages::CoordinatorMessage;
use baton_runtime::report::{run_json, status_word};
use baton_runtime::tools::ToolRegistry;
use baton_runtime::{Coordinator, audit_check};
use serde_json::{Value, json};

use crate::input::{document, json_arg};
use crate::progress::Progress;
use crate::{AuditCommand, Backend, Cli, Command, GraphFormat, RunsCommand, exit};

/// A usage mistake the user can fix (exit 2).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Usage(String);

/// Exit code for an error: 2 for invalid definitions, inputs and arguments, else 1.
pub fn exit_code_for(e: &anyhow::Error) -> u8 {
    if e.downcast_ref::<Usage>().is_some() {
        return exit::INVALID;
    }
    match e.downcast_ref::<RuntimeError>() {
        Some(
            RuntimeError::InvalidDefinition(_)
            | RuntimeError::InvalidInput(_)
            | RuntimeError::InvalidAnswer(_)
            | RuntimeError::InvalidMocks(_)
            | RuntimeError::UnknownTask(_)
            | RuntimeError::UnknownWorkflow(_)
            | RuntimeError::UnknownRun(_),
        ) => exit::INVALID,
        _ => exit::FAILED,
    }
}

/// Where runs live: the embedded SQLite file, or the DynamoDB table of an AWS stack.
pub struct Target {
    state_dir: std::path::PathBuf,
    backend: Backend,
    stack: String,
}

async fn coordinator(target: &Target, progress: bool) -> Result<Coordinator> {
    let c = match target.backend {
        Backend::Embedded => {
            let store =
                SqliteStore::open(&target.state_dir, Durability::Normal).context("cannot open the state directory")?;
            // Bedrock loads the AWS configuration at its first request: runs without a bedrock
            // step never pay for it.
            let llm = baton_tools::LlmTool::from_env().and(Arc::new(baton_aws::bedrock::BedrockChat::lazy()));
            let tools = baton_tools::builtin_with(baton_tools::HttpTool::new(), llm);
            Coordinator::new(Arc::new(store), tools, Arc::new(SystemClock))
        }
        Backend::Aws => {
            // The SDK's default chain: AWS_REGION, credentials, AWS_ENDPOINT_URL(_<SERVICE>).
            // The CLI reads the stack's table and publishes definitions; changes to runs go to
            // the stack's coordinator as messages (see `StackClient`).
            let config = baton_aws::config::from_env().await;
            let store = baton_aws::handlers::store(&config, &target.stack);
            Coordinator::new(Arc::new(store), ToolRegistry::default(), Arc::new(SystemClock))
        }
    };
    // Runs started here announce signed task links when the links are configured.
    let c = match CallbackSigner::from_env().map_err(|e| Usage(e.to_string()))? {
        Some(signer) => c.with_callbacks(Arc::new(signer)),
        None => c,
    };
    Ok(if progress { c.with_observer(Arc::new(Progress::new())) } else { c })
}

fn load_plan(file: &Path) -> Result<(Plan, String)> {
    let text = std::fs::read_to_string(file).map_err(|e| Usage(format!("cannot read `{}`: {e}", file.display())))?;
    Ok(plan_with_mesh(file, &text).map_err(RuntimeError::InvalidDefinition)?)
}

/// Loads a workflow file with the mesh file it names (relative to the workflow file): the
/// plan and the definition source to store.
fn plan_with_mesh(file: &Path, text: &str) -> std::result::Result<(Plan, String), Vec<baton_core::Problem>> {
    let name = file.display().to_string();
    baton_core::plan::load_with_mesh(Some(&name), text, |mesh| {
        let path = file.parent().unwrap_or(Path::new(".")).join(mesh);
        let text = std::fs::read_to_string(&path)
            .map_err(|e| format!("cannot read the mesh file `{}`: {e}", path.display()))?;
        Ok((path.display().to_string(), text))
    })
}

pub(crate) async fn ctrl_c() {
    if tokio::signal::ctrl_c().await.is_err() {
        std::future::pending::<()>().await
    }
}

/// Runs the parsed command; returns the exit code.
pub async fn dispatch(cli: Cli) -> Result<u8> {
    let target = Target { state_dir: cli.state_dir.clone(), backend: cli.backend, stack: cli.stack.clone() };
    let dir = &target;
    match cli.command {
        Command::Validate { files } => validate(&files),
        Command::Run { file, input, mocks, json } => {
            let (plan, source) = load_plan(&file)?;
            let input = json_arg(&input, "input").map_err(|e| Usage(format!("{e:#}")))?;
            let mocks = mocks.map(|m| document(&m)).transpose().map_err(|e| Usage(format!("{e:#}")))?;
            let c = coordinator(dir, !json).await?;
            let run_id = match dir.backend {
                Backend::Embedded => c.start(Arc::new(plan), &source, input, mocks).await?,
                Backend::Aws => {
                    c.store().put_definition(&plan.hash, &plan.workflow.name, &source).await?;
                    start_on_stack(dir, &plan, input, mocks).await?
                }
            };
            settle(&c, dir, &run_id).await?;
            finish_one(&c, &run_id, json).await
        }
        Command::Resume { run_id, json } => {
            let c = coordinator(dir, !json).await?;
            let ids = match &run_id {
                Some(id) => vec![id.clone()],
                None => c.store().unfinished_runs().await?,
            };
            if let Some(id) = &run_id {
                c.store().load_run(id).await?.ok_or_else(|| RuntimeError::UnknownRun(id.clone()))?;
            }
            match dir.backend {
                Backend::Embedded => {
                    c.drive(&ids, ctrl_c()).await?;
                }
                Backend::Aws => {
                    // The stack drives its runs; what a crash left undelivered goes out now.
                    let config = baton_aws::config::from_env().await;
                    baton_aws::handlers::StackClient::new(&config, &dir.stack).send(&CoordinatorMessage::Sweep).await?;
                    for id in &ids {
                        settle(&c, dir, id).await?;
                    }
                }
            }
            if run_id.is_some() {
                return finish_one(&c, &ids[0], json).await;
            }
            print_runs(&c, &ids, json, "no unfinished runs").await
        }
        Command::Cancel { run_id, json } => {
            let c = coordinator(dir, !json).await?;
            let stored = c.store().load_run(&run_id).await?.ok_or_else(|| RuntimeError::UnknownRun(run_id.clone()))?;
            if stored.state.status.is_terminal() {
                return Err(Usage(format!("run {run_id} already ended ({})", status_word(stored.state.status))).into());
            }
            let reason = "cancelled with `baton cancel`".to_owned();
            match dir.backend {
                Backend::Embedded => {
                    c.submit(&run_id, EventKind::CancelRequested { reason }).await?;
                    settle(&c, dir, &run_id).await?;
                }
                Backend::Aws => {
                    let config = baton_aws::config::from_env().await;
                    let client = baton_aws::handlers::StackClient::new(&config, &dir.stack);
                    client.send(&CoordinatorMessage::Cancel { run_id: run_id.clone(), reason }).await?;
                    watch(&c, dir, &run_id, |state, _| state.status.is_terminal()).await?;
                }
            }
            let obj = run_object(&c, &run_id).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&obj)?);
            } else {
                print_run(&obj);
            }
            Ok(if obj["status"] == "cancelled" { exit::OK } else { code_for(&obj) })
        }
        Command::Runs { command: RunsCommand::List { json, limit } } => {
            let c = coordinator(dir, false).await?;
            let mut objects = Vec::new();
            for h in c.store().list_runs(limit).await? {
                let mut obj = run_object(&c, &h.id).await?;
                obj["workflow"] = json!(h.workflow);
                obj["created_at"] = json!(h.created_at);
                objects.push(obj);
            }
            if json {
                println!("{}", serde_json::to_string_pretty(&objects)?);
            } else {
                println!("{:<38} {:<24} {:<10} {:>6}", "RUN", "WORKFLOW", "STATUS", "STEPS");
                for o in &objects {
                    let n = o["steps"].as_object().map(|m| m.len()).unwrap_or(0);
                    println!(
                        "{:<38} {:<24} {:<10} {:>6}",
                        o["run_id"].as_str().unwrap_or(""),
                        o["workflow"].as_str().unwrap_or(""),
                        o["status"].as_str().unwrap_or(""),
                        n
                    );
                }
            }
            Ok(exit::OK)
        }
        Command::Runs { command: RunsCommand::Show { run_id, json } } => {
            let c = coordinator(dir, false).await?;
            let mut obj = run_object(&c, &run_id).await?;
            if let Backend::Aws = dir.backend {
                obj["aws"] = aws_cost(&c, &run_id).await?;
            }
            if json {
                println!("{}", serde_json::to_string_pretty(&obj)?);
            } else {
                print_run(&obj);
                if let Some(aws) = obj.get("aws") {
                    println!(
                        "aws: {} requests, estimated ${:.6} ({})",
                        aws["requests"],
                        aws["estimated_usd"].as_f64().unwrap_or(0.0),
                        aws["by_operation"]
                            .as_object()
                            .map(|m| m.iter().map(|(k, v)| format!("{k} {v}")).collect::<Vec<_>>().join(", "))
                            .unwrap_or_default()
                    );
                }
            }
            Ok(exit::OK)
        }
        Command::Tasks { json } => {
            let c = coordinator(dir, false).await?;
            // Event waits are tasks for the engine, not for people: `runs show` shows them.
            let tasks: Vec<_> = c.store().open_tasks().await?.into_iter().filter(|t| t.wait.is_none()).collect();
            let link = |t: &baton_runtime::ports::TaskRecord| {
                c.callbacks().map(|s| s.url(&t.id, s.expiry_for(t.created_at, None)))
            };
            if json {
                let mut rows = Vec::new();
                for t in &tasks {
                    let mut row = serde_json::to_value(t)?;
                    if let (Some(url), Value::Object(m)) = (link(t), &mut row) {
                        m.insert("callback_url".into(), Value::String(url));
                    }
                    rows.push(row);
                }
                println!("{}", serde_json::to_string_pretty(&rows)?);
            } else if tasks.is_empty() {
                println!("no open tasks");
            } else {
                for t in tasks {
                    println!("task {}  run {}  step {}  queue {}", t.id, t.run_id, t.step, t.queue);
                    if let Some(url) = link(&t) {
                        println!("    link: {url}");
                    }
                    if t.summary.is_empty() {
                        // Without a handover summary the question itself is what the person needs.
                        println!("{}\n", indent(&t.prompt));
                    } else {
                        println!("{}\n", indent(&t.summary));
                    }
                }
            }
            Ok(exit::OK)
        }
        Command::Approve { task, data, comment, by, json } => {
            let data = data
                .map(|d| json_arg(&d, "data"))
                .transpose()
                .map_err(|e| Usage(format!("{e:#}")))?
                .unwrap_or_else(|| json!({}));
            let answer = HumanAnswer { decision: Verdict::Approve, data, comment, by: Some(by.unwrap_or_else(whoami)) };
            answer_and_continue(dir, &task, answer, json).await
        }
        Command::Reject { task, comment, by, json } => {
            let answer = HumanAnswer {
                decision: Verdict::Reject,
                data: Value::Null,
                comment,
                by: Some(by.unwrap_or_else(whoami)),
            };
            answer_and_continue(dir, &task, answer, json).await
        }
        Command::Audit { command } => audit(dir, command).await,
        Command::Publish { file } => {
            let (plan, source) = load_plan(&file)?;
            let c = coordinator(dir, false).await?;
            c.publish(&plan, &source).await?;
            println!("published `{}` definition {}", plan.workflow.name, &plan.hash[..12]);
            if let Backend::Aws = dir.backend {
                let config = baton_aws::config::from_env().await;
                let queue = baton_aws::triggers::CoordinatorQueue::open(&config, &dir.stack).await?;
                let mut rules = baton_aws::triggers::sync_trigger_rules(&config, &dir.stack, &plan, &queue).await?;
                rules.extend(baton_aws::triggers::ensure_wait_rules(&config, &dir.stack, &plan, &queue).await?);
                for r in &rules {
                    println!("rule {r} on {}-bus -> {}-coordinator", dir.stack, dir.stack);
                }
                let schedules = baton_aws::triggers::sync_trigger_schedules(&config, &dir.stack, &plan, &queue).await?;
                for s in &schedules {
                    println!("schedule {s} in group {} -> {}-coordinator", dir.stack, dir.stack);
                }
            } else if plan.workflow.triggers.iter().any(|t| matches!(t, baton_core::model::Trigger::Schedule { .. })) {
                eprintln!(
                    "note: schedule triggers fire on the AWS backend (EventBridge Scheduler); the embedded backend stores them only"
                );
            }
            Ok(exit::OK)
        }
        Command::Start { name, input, json } => {
            let input = json_arg(&input, "input").map_err(|e| Usage(format!("{e:#}")))?;
            let c = coordinator(dir, !json).await?;
            let (plan, source) = c.published(&name).await?.ok_or_else(|| {
                Usage(format!("no published workflow `{name}`: publish it with `baton publish FILE`"))
            })?;
            let run_id = match dir.backend {
                Backend::Embedded => c.start(plan, &source, input, None).await?,
                Backend::Aws => start_on_stack(dir, &plan, input, None).await?,
            };
            settle(&c, dir, &run_id).await?;
            finish_one(&c, &run_id, json).await
        }
        Command::Dev { wait, max_messages } => dev(dir, wait, max_messages).await,
        Command::Event { event, json } => {
            let mut event = json_arg(&event, "event").map_err(|e| Usage(format!("{e:#}")))?;
            let (Some(source), Some(detail_type)) = (
                event.get("source").and_then(Value::as_str).map(str::to_owned),
                event.get("detail-type").and_then(Value::as_str).map(str::to_owned),
            ) else {
                return Err(Usage(
                    "an event needs string fields `source` and `detail-type` (and usually `detail`)".into(),
                )
                .into());
            };
            let detail = event.get("detail").cloned().unwrap_or_else(|| json!({}));
            match dir.backend {
                Backend::Aws => {
                    let config = baton_aws::config::from_env().await;
                    let id =
                        baton_aws::eventbridge::put_event(&config, &dir.stack, &source, &detail_type, &detail).await?;
                    if json {
                        println!("{}", json!({"event_id": id, "bus": format!("{}-bus", dir.stack)}));
                    } else {
                        println!("put event {id} on {}-bus", dir.stack);
                    }
                    Ok(exit::OK)
                }
                Backend::Embedded => {
                    // An answer, as the coordinator takes it from the bus on AWS.
                    if let Some(resolved) = baton_runtime::messages::task_resolution(&event) {
                        let (task, answer) = resolved.map_err(Usage)?;
                        return answer_and_continue(dir, &task, answer, json).await;
                    }
                    // The envelope EventBridge would add, so `.input` has the same shape everywhere.
                    if let Some(o) = event.as_object_mut() {
                        o.entry("version").or_insert(json!("0"));
                        o.entry("id").or_insert(json!(uuid::Uuid::new_v4().to_string()));
                        o.entry("account").or_insert(json!("000000000000"));
                        o.entry("region").or_insert(json!("local"));
                        o.entry("time").or_insert(json!(
                            humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string()
                        ));
                        o.entry("resources").or_insert(json!([]));
                        o.entry("detail").or_insert(detail);
                    }
                    let c = coordinator(dir, !json).await?;
                    let ids = c.deliver_event(&event).await?;
                    c.drive(&ids, ctrl_c()).await?;
                    print_runs(&c, &ids, json, "the event matched no published workflow's trigger and no open wait")
                        .await
                }
            }
        }
        Command::Serve { listen, url } => {
            let secret = std::env::var("BATON_CALLBACK_SECRET")
                .map_err(|_| Usage("set BATON_CALLBACK_SECRET (32 bytes or more) to sign task links".into()))?;
            let base =
                url.or_else(|| std::env::var("BATON_CALLBACK_URL").ok()).unwrap_or_else(|| format!("http://{listen}"));
            let signer = CallbackSigner::with_env_ttl(secret.as_bytes(), &base).map_err(|e| Usage(e.to_string()))?;
            let c = coordinator(dir, false).await?.with_callbacks(Arc::new(signer.clone()));
            let aws: Option<Box<dyn baton_runtime::callback::Answerer>> = match dir.backend {
                Backend::Embedded => None,
                Backend::Aws => {
                    let config = baton_aws::config::from_env().await;
                    let client = baton_aws::handlers::StackClient::new(&config, &dir.stack);
                    Some(Box::new(baton_aws::callbacks::QueueAnswerer(client)))
                }
            };
            crate::serve::serve(Arc::new(c), signer, listen, aws).await
        }
        Command::Graph { file, format } => {
            let (plan, _) = load_plan(&file)?;
            let text = match format {
                GraphFormat::Mermaid => baton_core::graph::to_mermaid(&plan),
                GraphFormat::Dot => baton_core::graph::to_dot(&plan),
            };
            print!("{text}");
            Ok(exit::OK)
        }
    }
}

/// The local host of the AWS backend: the coordinator and workers of the stack in this process
/// (see `baton_aws::dev`).
async fn dev(target: &Target, wait: i32, max_messages: Option<usize>) -> Result<u8> {
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

/// Sends a start to the stack's coordinator with a run id chosen here (so the run can be
/// followed, and a redelivered start starts nothing); checks input and mocks first, so mistakes
/// exit 2 without a message sent.
async fn start_on_stack(target: &Target, plan: &Plan, input: Value, mocks: Option<Value>) -> Result<String> {
    plan.check_input(&input).map_err(RuntimeError::InvalidInput)?;
    if let Some(m) = &mocks {
        baton_runtime::mocks::Mocks::parse(m, plan)?;
    }
    let run_id = uuid::Uuid::now_v7().to_string();
    let config = baton_aws::config::from_env().await;
    // The events its `wait_event` steps wait for must reach the coordinator.
    if plan.steps.iter().any(|s| matches!(s.kind, baton_core::plan::StepKind::WaitEvent { .. })) {
        let queue = baton_aws::triggers::CoordinatorQueue::open(&config, &target.stack).await?;
        baton_aws::triggers::ensure_wait_rules(&config, &target.stack, plan, &queue).await?;
    }
    let client = baton_aws::handlers::StackClient::new(&config, &target.stack);
    client
        .send(&CoordinatorMessage::Start {
            workflow: plan.workflow.name.clone(),
            definition: Some(plan.hash.clone()),
            input,
            mocks,
            run_id: Some(run_id.clone()),
            dedupe: None,
            parent: None,
        })
        .await?;
    Ok(run_id)
}

/// Watches a run on a stack until `done(state, plan)` holds, for at most `BATON_WAIT_SECS`
/// (default 300); a run that does not exist yet is waited for (its start may be queued).
async fn watch(
    c: &Coordinator,
    target: &Target,
    run_id: &str,
    done: impl Fn(&baton_core::engine::RunState, &Plan) -> bool,
) -> Result<()> {
    let limit: u64 = std::env::var("BATON_WAIT_SECS").ok().and_then(|v| v.parse().ok()).unwrap_or(300);
    let started = std::time::Instant::now();
    let mut hinted = false;
    let stop = ctrl_c();
    tokio::pin!(stop);
    loop {
        if let Some(stored) = c.store().load_run(run_id).await? {
            let plan = c.plan_for(&stored.header.workflow, &stored.header.definition).await?;
            if done(&stored.state, &plan) {
                return Ok(());
            }
        }
        if started.elapsed().as_secs() >= limit {
            eprintln!("run {run_id} is still going after {limit} s; follow it with `baton runs show {run_id}`");
            return Ok(());
        }
        if !hinted && started.elapsed().as_secs() >= 5 {
            eprintln!(
                "waiting for stack {} to run {run_id} (its functions, or `baton --backend aws dev`, must be running)",
                target.stack
            );
            hinted = true;
        }
        tokio::select! {
            _ = tokio::time::sleep(std::time::Duration::from_millis(100)) => {}
            _ = &mut stop => {
                eprintln!("detached: run {run_id} continues on stack {}", target.stack);
                return Ok(());
            }
        }
    }
}

/// Lets a run go as far as it can without a person: in this process on the embedded backend;
/// on a stack, by watching the run until it ends or waits for a person (its coordinator and
/// workers do the work), for at most `BATON_WAIT_SECS` (default 300).
async fn settle(c: &Coordinator, target: &Target, run_id: &str) -> Result<()> {
    match target.backend {
        Backend::Embedded => {
            let outcome = c.drive(&[run_id.to_owned()], ctrl_c()).await?;
            if outcome == baton_runtime::DriveOutcome::Detached {
                eprintln!("detached: run {run_id} continues with `baton resume {run_id}`");
            }
            Ok(())
        }
        Backend::Aws => watch(c, target, run_id, |state, plan| baton_runtime::is_settled(plan, state)).await,
    }
}

fn whoami() -> String {
    std::env::var("USER").unwrap_or_else(|_| "cli".into())
}

fn indent(s: &str) -> String {
    s.lines().map(|l| format!("    {l}")).collect::<Vec<_>>().join("\n")
}

fn validate(files: &[std::path::PathBuf]) -> Result<u8> {
    let mut bad = 0;
    for f in files {
        let name = f.display().to_string();
        let text = match std::fs::read_to_string(f) {
            Ok(t) => t,
            Err(e) => {
                println!("{name}: cannot read: {e}");
                bad += 1;
                continue;
            }
        };
        match plan_with_mesh(f, &text) {
            Ok((plan, _)) => println!("{name}: ok ({} steps, definition {})", plan.steps.len(), &plan.hash[..12]),
            Err(problems) => {
                bad += 1;
                for p in &problems {
                    println!("{p}");
                }
                println!("{name}: {} problem{}", problems.len(), if problems.len() == 1 { "" } else { "s" });
            }
        }
    }
    Ok(if bad == 0 { exit::OK } else { exit::INVALID })
}

async fn answer_and_continue(dir: &Target, task: &str, answer: HumanAnswer, json: bool) -> Result<u8> {
    let c = coordinator(dir, !json).await?;
    let run_id = match dir.backend {
        Backend::Embedded => c.answer_task(task, answer).await?,
        Backend::Aws => {
            // Check here what the coordinator would refuse, so mistakes exit 2 at once.
            let open = c.store().get_task(task).await?.filter(|t| t.status == "open");
            let open = open.ok_or_else(|| RuntimeError::UnknownTask(task.to_owned()))?;
            if answer.decision == Verdict::Approve
                && let Some(form) = &open.form
            {
                baton_core::plan::check_against_schema(form, &answer.data).map_err(RuntimeError::InvalidAnswer)?;
            }
            let config = baton_aws::config::from_env().await;
            let client = baton_aws::handlers::StackClient::new(&config, &dir.stack);
            client.send(&CoordinatorMessage::Answer { task: task.to_owned(), answer }).await?;
            let task_id = task.to_owned();
            let store = c.store().clone();
            // First the coordinator takes the answer (the task closes), then the run goes on.
            loop {
                if store.get_task(&task_id).await?.is_some_and(|t| t.status != "open") {
                    break;
                }
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
            open.run_id
        }
    };
    settle(&c, dir, &run_id).await?;
    finish_one(&c, &run_id, json).await
}

async fn run_object(c: &Coordinator, run_id: &str) -> Result<Value> {
    let stored = c.store().load_run(run_id).await?.ok_or_else(|| RuntimeError::UnknownRun(run_id.to_owned()))?;
    let plan = c.plan_for(&stored.header.workflow, &stored.header.definition).await?;
    Ok(run_json(&plan, &stored.state))
}

/// Prints several runs (a JSON array with `--json`); exit 1 if any failed, else 3 if any waits.
async fn print_runs(c: &Coordinator, ids: &[String], json: bool, when_none: &str) -> Result<u8> {
    let mut objects = Vec::new();
    let mut code = exit::OK;
    for id in ids {
        let obj = run_object(c, id).await?;
        code = combine(code, code_for(&obj));
        if !json {
            print_run(&obj);
        }
        objects.push(obj);
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&objects)?);
    } else if ids.is_empty() {
        eprintln!("{when_none}");
    }
    Ok(code)
}

/// The AWS requests a run made and their estimated cost (`runs show` on a stack).
async fn aws_cost(c: &Coordinator, run_id: &str) -> Result<Value> {
    let stored = c.store().load_run(run_id).await?.ok_or_else(|| RuntimeError::UnknownRun(run_id.to_owned()))?;
    let estimate = baton_aws::cost::estimate(&stored.header.usage);
    let steps = stored.state.nodes.values().filter(|n| n.attempt > 0).count().max(1);
    Ok(json!({
        "requests": estimate.requests,
        "requests_per_step": estimate.requests as f64 / steps as f64,
        "by_operation": stored.header.usage,
        "estimated_usd": estimate.usd,
        "prices": baton_aws::cost::PRICES_AS_OF,
    }))
}

fn code_for(obj: &Value) -> u8 {
    match obj["status"].as_str() {
        Some("succeeded") => exit::OK,
        Some("waiting") => exit::WAITING,
        _ => exit::FAILED,
    }
}

/// Several runs: 1 if any failed, else 3 if any waits, else 0.
fn combine(a: u8, b: u8) -> u8 {
    if a == exit::FAILED || b == exit::FAILED {
        exit::FAILED
    } else if a == exit::WAITING || b == exit::WAITING {
        exit::WAITING
    } else {
        exit::OK
    }
}

async fn finish_one(c: &Coordinator, run_id: &str, json: bool) -> Result<u8> {
    let obj = run_object(c, run_id).await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&obj)?);
    } else {
        print_run(&obj);
        if obj["status"] == "waiting" {
            let tasks = c.store().open_tasks().await?;
            // The run's own tasks, and those of the child runs it waits on.
            let children: Vec<String> = match c.store().load_run(run_id).await? {
                Some(r) => {
                    let plan = c.plan_for(&r.header.workflow, &r.header.definition).await?;
                    baton_runtime::coordinator::child_runs(&plan, &r.state).collect()
                }
                None => vec![],
            };
            for t in tasks.iter().filter(|t| t.run_id == run_id || children.contains(&t.run_id)) {
                if t.wait.is_some() {
                    eprintln!(
                        "waiting on an event for `{}` (wait {}): deliver it with `baton event JSON`",
                        t.step, t.id
                    );
                } else {
                    eprintln!(
                        "waiting on task {} (queue {}): answer with `baton approve {}` or `baton reject {}`",
                        t.id, t.queue, t.id, t.id
                    );
                }
            }
        }
    }
    Ok(code_for(&obj))
}

fn print_run(obj: &Value) {
    let status = obj["status"].as_str().unwrap_or("?");
    println!("run {} {status}", obj["run_id"].as_str().unwrap_or("?"));
    if let Some(steps) = obj["steps"].as_object() {
        for (id, s) in steps {
            let err = s["error"]["message"].as_str().map(|m| format!("  ({m})")).unwrap_or_default();
            println!("  {:<24} {:<12} attempts {}{err}", id, s["status"].as_str().unwrap_or(""), s["attempts"]);
        }
    }
    match status {
        "succeeded" => println!("output: {}", serde_json::to_string_pretty(&obj["output"]).unwrap_or_default()),
        "failed" | "cancelled" => println!("error: {}", obj["error"]),
        _ => {}
    }
}

async fn audit(dir: &Target, command: AuditCommand) -> Result<u8> {
    let c = coordinator(dir, false).await?;
    match command {
        AuditCommand::Show { run_id, json } => {
            c.store().load_run(&run_id).await?.ok_or_else(|| RuntimeError::UnknownRun(run_id.clone()))?;
            let records = c.store().load_audit(&run_id).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&records)?);
            } else {
                for r in records {
                    let at = humantime_ms(r.at);
                    let who = match (&r.node, r.attempt) {
                        (Some(n), Some(a)) => format!("{n} #{a}"),
                        (Some(n), None) => n.clone(),
                        _ => "run".into(),
                    };
                    println!("{:>5} {at} {:<18} {:<22} {}", r.seq, r.decision, who, r.reason);
                }
            }
            Ok(exit::OK)
        }
        AuditCommand::Verify { run_id } => match audit_check::verify(&c, &run_id).await? {
            Ok(n) => {
                println!("audit log of run {run_id} is intact: {n} records, hash chain verified");
                Ok(exit::OK)
            }
            Err(e) => {
                println!("audit log of run {run_id} is NOT intact: {e}");
                Ok(exit::FAILED)
            }
        },
        AuditCommand::Replay { run_id } => match audit_check::replay(&c, &run_id).await? {
            Ok(n) => {
                println!("replay of run {run_id} matches the audit log: {n} records identical");
                Ok(exit::OK)
            }
            Err(d) => {
                println!("replay of run {run_id} diverges: {d}");
                Ok(exit::FAILED)
            }
        },
    }
}

fn humantime_ms(ms: u64) -> String {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms);
    humantime::format_rfc3339_millis(t).to_string()
}
