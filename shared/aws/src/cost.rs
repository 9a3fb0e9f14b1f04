//! What a run costs on AWS: the requests and capacity units it used (see [`crate::metering`])
//! priced with AWS's public list prices for us-east-1. The prices are constants with their
//! source date; a deployment in another region or with a discount differs.

use baton_runtime::metering::Usage;
use serde::Serialize;

/// When the prices below were taken from the AWS pricing pages.
pub const PRICES_AS_OF: &str = "us-east-1 list prices as published in 2025 (DynamoDB on-demand after the November 2024 reduction); not re-checked since: this machine has no web access";

/// USD per unit, by usage key; keys not listed are free (DynamoDB requests are billed through
/// their capacity units, Scheduler API calls and SQS `GetQueueUrl` lookups are not billed apart).
/// Storage (DynamoDB per GB-month, the payload bucket's objects) is not counted per run.
pub const PRICES: &[(&str, f64, &str)] = &[
    ("DynamoDB.WriteUnits", 0.625e-6, "DynamoDB on-demand, $0.625 per million write request units"),
    ("DynamoDB.ReadUnits", 0.125e-6, "DynamoDB on-demand, $0.125 per million read request units"),
    ("SQS.SendMessage", 0.40e-6, "SQS standard, $0.40 per million requests"),
    ("SQS.SendMessageBatch", 0.40e-6, "SQS standard, $0.40 per million requests"),
    ("SQS.ReceiveMessage", 0.40e-6, "SQS standard, $0.40 per million requests"),
    ("SQS.DeleteMessage", 0.40e-6, "SQS standard, $0.40 per million requests"),
    ("SQS.DeleteMessageBatch", 0.40e-6, "SQS standard, $0.40 per million requests"),
    (
        "EventBridge.PutEvents",
        1.00e-6,
        "EventBridge custom events, $1.00 per million (one per 10-event request here: an upper bound is per event)",
    ),
    ("Scheduler.Invocation", 1.00e-6, "EventBridge Scheduler, $1.00 per million invocations"),
    (
        "S3.PutObject",
        5.00e-6,
        "S3 Standard, $0.005 per 1,000 PUT requests (claim-checked payloads, witnessed audit seals)",
    ),
    ("S3.GetObject", 0.40e-6, "S3 Standard, $0.0004 per 1,000 GET requests"),
    (
        "Lambda.Invoke",
        0.20e-6 + LAMBDA_GB_SECONDS_PER_INVOKE * 16.6667e-6,
        "Lambda x86_64, $0.20 per million requests + $0.0000166667 per GB-s, assuming 256 MB (the template's memory size) for 50 ms per batch",
    ),
];

/// Requests AWS does not bill apart: EventBridge Scheduler bills the invocations of schedules,
/// not the API calls that create and delete them.
pub const NOT_BILLED: &[&str] = &[
    "Scheduler.CreateSchedule",
    "Scheduler.DeleteSchedule",
    "Scheduler.GetSchedule",
    "Scheduler.ListSchedules",
    "Scheduler.UpdateSchedule",
];

/// Lambda duration assumed per invocation: 256 MB (the template's `MemorySize`) for 50 ms (the handlers' measured time per
/// batch on the emulator is below that; an HTTP worker also waits for the called service).
pub const LAMBDA_GB_SECONDS_PER_INVOKE: f64 = 0.25 * 0.050;

/// Step Functions Standard, for comparison: $25 per million state transitions.
pub const STEP_FUNCTIONS_STANDARD_PER_TRANSITION: f64 = 25.0e-6;

/// One priced line.
#[derive(Debug, Clone, Serialize)]
pub struct Line {
    /// Usage key.
    pub item: String,
    /// How many.
    pub quantity: u64,
    /// USD.
    pub usd: f64,
}

/// A run's (or a workload's) estimated cost.
#[derive(Debug, Clone, Serialize)]
pub struct Estimate {
    /// AWS requests (capacity-unit entries excluded).
    pub requests: u64,
    /// Of those, the ones AWS bills (all but [`NOT_BILLED`]).
    pub billable_requests: u64,
    /// Total USD.
    pub usd: f64,
    /// Priced lines.
    pub lines: Vec<Line>,
}

/// Prices `usage`.
pub fn estimate(usage: &Usage) -> Estimate {
    let mut lines = Vec::new();
    let mut usd = 0.0;
    for (item, quantity) in usage {
        let price = PRICES.iter().find(|(k, _, _)| k == item).map(|p| p.1).unwrap_or(0.0);
        let cost = price * *quantity as f64;
        usd += cost;
        lines.push(Line { item: item.clone(), quantity: *quantity, usd: cost });
    }
    let free: u64 = usage.iter().filter(|(k, _)| NOT_BILLED.contains(&k.as_str())).map(|(_, v)| v).sum();
    let requests = baton_runtime::metering::requests(usage);
    Estimate { requests, billable_requests: requests - free.min(requests), usd, lines }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_million_sends_cost_forty_cents() {
        let e = estimate(&Usage::from([
            ("SQS.SendMessageBatch".to_owned(), 1_000_000),
            ("DynamoDB.WriteUnits".to_owned(), 2),
        ]));
        assert!((e.usd - 0.40).abs() < 1e-3, "{e:?}");
        assert_eq!(e.requests, 1_000_000);
        let e = estimate(&Usage::from([
            ("SQS.SendMessageBatch".to_owned(), 3),
            ("Scheduler.CreateSchedule".to_owned(), 2),
            ("Scheduler.DeleteSchedule".to_owned(), 2),
        ]));
        assert_eq!((e.requests, e.billable_requests), (7, 3));
    }
}
