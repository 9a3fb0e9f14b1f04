//! Workflow triggers on AWS: one EventBridge rule per `event` trigger on the stack's bus and one
//! recurring Scheduler schedule per `schedule` trigger, all targeting the coordinator queue.

use crate::sdk_error::aws_err;
use aws_sdk_eventbridge::types::Target;
use baton_core::Plan;
use baton_core::model::Trigger;
use baton_runtime::StoreError;

/// The stack's coordinator queue (`<stack>-coordinator`).
#[derive(Clone)]
pub struct CoordinatorQueue {
    sqs: aws_sdk_sqs::Client,
    url: String,
}

impl CoordinatorQueue {
    /// Looks the queue up by name.
    pub async fn open(config: &aws_config::SdkConfig, stack: &str) -> Result<Self, StoreError> {
        let sqs = crate::metering::sqs(config);
        let url = crate::queues::url(&sqs, &format!("{stack}-coordinator")).await?;
        Ok(Self { sqs, url })
    }

    /// The queue's ARN (rule and schedule targets name it).
    pub async fn arn(&self) -> Result<String, StoreError> {
        crate::queues::arn(&self.sqs, &self.url).await
    }
}

/// Creates or updates one rule per `event` trigger of `plan` on `<stack>-bus`, each delivering
/// whole events to the coordinator queue; deletes the workflow's rules for triggers that are
/// gone. Returns the rule names.
pub async fn sync_trigger_rules(
    config: &aws_config::SdkConfig,
    stack: &str,
    plan: &Plan,
    queue: &CoordinatorQueue,
) -> Result<Vec<String>, StoreError> {
    let events = crate::metering::eventbridge(config);
    let bus = format!("{stack}-bus");
    let arn = queue.arn().await?;
    let name = &plan.workflow.name;
    let mut rules = Vec::new();
    for (i, t) in plan.workflow.triggers.iter().enumerate() {
        let Trigger::Event { event } = t else { continue };
        let rule = format!("{stack}-{name}-{i}");
        put_rule_to(&events, &bus, &rule, event, &format!("starts baton workflow `{name}` (trigger {i})"), &arn)
            .await?;
        rules.push(rule);
    }
    // Rules of triggers that were removed from the definition.
    let prefix = format!("{stack}-{name}-");
    let existing = events
        .list_rules()
        .event_bus_name(&bus)
        .name_prefix(&prefix)
        .send()
        .await
        .map_err(aws_err("EventBridge ListRules"))?;
    for r in existing.rules() {
        let Some(old) = r.name() else { continue };
        let is_ours = old.strip_prefix(&prefix).is_some_and(|rest| rest.chars().all(|c| c.is_ascii_digit()));
        if is_ours && !rules.iter().any(|n| n == old) {
            let targets = events
                .list_targets_by_rule()
                .rule(old)
                .event_bus_name(&bus)
                .send()
                .await
                .map_err(aws_err("EventBridge ListTargetsByRule"))?;
            let ids: Vec<String> = targets.targets().iter().map(|t| t.id().to_owned()).collect();
            if !ids.is_empty() {
                events
                    .remove_targets()
                    .rule(old)
                    .event_bus_name(&bus)
                    .set_ids(Some(ids))
                    .send()
                    .await
                    .map_err(aws_err("EventBridge RemoveTargets"))?;
            }
            events
                .delete_rule()
                .name(old)
                .event_bus_name(&bus)
                .send()
                .await
                .map_err(aws_err("EventBridge DeleteRule"))?;
        }
    }
    Ok(rules)
}

/// A rule on `bus` sending whole events matching `pattern` to the queue `arn`.
async fn put_rule_to(
    events: &aws_sdk_eventbridge::Client,
    bus: &str,
    rule: &str,
    pattern: &serde_json::Value,
    description: &str,
    arn: &str,
) -> Result<(), StoreError> {
    events
        .put_rule()
        .name(rule)
        .event_bus_name(bus)
        .event_pattern(pattern.to_string())
        .description(description)
        .send()
        .await
        .map_err(aws_err(&format!("EventBridge PutRule `{rule}`")))?;
    let target = Target::builder()
        .id("coordinator")
        .arn(arn)
        .build()
        .map_err(|e| StoreError::Backend(format!("rule target: {e}")))?;
    events
        .put_targets()
        .rule(rule)
        .event_bus_name(bus)
        .targets(target)
        .send()
        .await
        .map_err(aws_err(&format!("EventBridge PutTargets `{rule}`")))?;
    Ok(())
}

/// The rule that brings events of a `wait_event` pattern to the coordinator:
/// `<stack>-waits.<first 12 hex digits of the pattern's SHA-256>`, shared by every step waiting
/// on the same pattern.
pub fn wait_rule_name(stack: &str, pattern: &serde_json::Value) -> String {
    format!("{stack}-waits.{}", &baton_core::canonical::sha256_hex(pattern)[..12])
}

/// Creates (or updates) the rules for the `wait_event` steps of `plan`, so the events they wait
/// for reach the coordinator queue; called when a definition is published or run on a stack.
/// Rules are kept when workflows change: other definitions may wait on the same pattern.
pub async fn ensure_wait_rules(
    config: &aws_config::SdkConfig,
    stack: &str,
    plan: &Plan,
    queue: &CoordinatorQueue,
) -> Result<Vec<String>, StoreError> {
    // A heartbeat's events reach the coordinator by a rule of their own.
    let patterns: Vec<&serde_json::Value> = plan
        .steps
        .iter()
        .flat_map(|s| match &s.kind {
            baton_core::plan::StepKind::WaitEvent { pattern, heartbeat, .. } => {
                std::iter::once(pattern).chain(heartbeat.as_ref().map(|h| &h.pattern)).collect()
            }
            _ => Vec::new(),
        })
        .collect();
    if patterns.is_empty() {
        return Ok(Vec::new());
    }
    let events = crate::metering::eventbridge(config);
    let bus = format!("{stack}-bus");
    let arn = queue.arn().await?;
    let mut rules = Vec::new();
    for pattern in patterns {
        let rule = wait_rule_name(stack, pattern);
        if !rules.contains(&rule) {
            put_rule_to(&events, &bus, &rule, pattern, "events baton `wait_event` steps wait for", &arn).await?;
            rules.push(rule);
        }
    }
    Ok(rules)
}

/// Creates or updates one recurring EventBridge Scheduler schedule per `schedule` trigger of
/// `plan` (named `wf.<workflow>.<i>` in group `<stack>`), each sending a start message to the
/// coordinator queue; deletes the workflow's schedules for triggers that are gone. A run's input
/// is `{"scheduled_time": ...}`, and Scheduler's execution id makes a redelivered start a no-op.
/// Returns the schedule names.
pub async fn sync_trigger_schedules(
    config: &aws_config::SdkConfig,
    stack: &str,
    plan: &Plan,
    queue: &CoordinatorQueue,
) -> Result<Vec<String>, StoreError> {
    use aws_sdk_scheduler::types::{FlexibleTimeWindow, FlexibleTimeWindowMode, ScheduleState, Target};
    let scheduler = crate::metering::scheduler(config);
    let arn = queue.arn().await?;
    let role = std::env::var("BATON_SCHEDULER_ROLE_ARN").ok().filter(|r| !r.is_empty()).unwrap_or_else(|| {
        let account = arn.split(':').nth(4).unwrap_or("000000000000");
        format!("arn:aws:iam::{account}:role/{stack}-scheduler")
    });
    let name = &plan.workflow.name;
    let prefix =
        format!("wf.{}.", name.chars().filter(|c| c.is_ascii_alphanumeric() || "-_.".contains(*c)).collect::<String>());
    let mut made = Vec::new();
    for (i, t) in plan.workflow.triggers.iter().enumerate() {
        let Trigger::Schedule { schedule } = t else { continue };
        let schedule_name: String = format!("{prefix}{i}").chars().take(64).collect();
        let input = serde_json::json!({
            "kind": "start",
            "workflow": name,
            "input": {"scheduled_time": "<aws.scheduler.scheduled-time>"},
            // The schedule and its scheduled time name one start, whatever Scheduler retries.
            "dedupe": format!("{stack}/{schedule_name}@<aws.scheduler.scheduled-time>"),
        });
        let target = Target::builder()
            .arn(&arn)
            .role_arn(&role)
            .input(input.to_string())
            .build()
            .map_err(|e| StoreError::Backend(format!("schedule target: {e}")))?;
        let window = FlexibleTimeWindow::builder()
            .mode(FlexibleTimeWindowMode::Off)
            .build()
            .map_err(|e| StoreError::Backend(format!("schedule window: {e}")))?;
        let description = format!("starts baton workflow `{name}` (trigger {i})");
        let created = scheduler
            .create_schedule()
            .name(&schedule_name)
            .group_name(stack)
            .schedule_expression(schedule)
            .flexible_time_window(window.clone())
            .target(target.clone())
            .state(ScheduleState::Enabled)
            .description(&description)
            .send()
            .await;
        match created {
            Ok(_) => {}
            Err(e) if e.as_service_error().is_some_and(|s| s.is_conflict_exception()) => {
                scheduler
                    .update_schedule()
                    .name(&schedule_name)
                    .group_name(stack)
                    .schedule_expression(schedule)
                    .flexible_time_window(window)
                    .target(target)
                    .state(ScheduleState::Enabled)
                    .description(&description)
                    .send()
                    .await
                    .map_err(aws_err(&format!("Scheduler UpdateSchedule `{schedule_name}`")))?;
            }
            Err(e) => return Err(aws_err(&format!("Scheduler CreateSchedule `{schedule_name}`"))(e)),
        }
        made.push(schedule_name);
    }
    let existing = scheduler
        .list_schedules()
        .group_name(stack)
        .name_prefix(&prefix)
        .send()
        .await
        .map_err(aws_err("Scheduler ListSchedules"))?;
    for s in existing.schedules() {
        let Some(old) = s.name() else { continue };
        let is_ours = old.strip_prefix(&prefix).is_some_and(|rest| rest.chars().all(|c| c.is_ascii_digit()));
        if is_ours && !made.iter().any(|n| n == old) {
            scheduler
                .delete_schedule()
                .name(old)
                .group_name(stack)
                .send()
                .await
                .map_err(aws_err(&format!("Scheduler DeleteSchedule `{old}`")))?;
        }
    }
    Ok(made)
}
