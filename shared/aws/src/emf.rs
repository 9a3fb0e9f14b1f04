//! CloudWatch metrics in Embedded Metric Format: one JSON line per committed transition that
//! changed something countable, printed to stdout, where Lambda's log stream turns it into
//! metrics in namespace `baton` with dimension `Workflow` (no `PutMetricData` call, no cost
//! beyond the log line). Metrics: `RunsStarted`, `RunsSucceeded`, `RunsFailed`, `StepsSucceeded`,
//! `StepsFailed`, `StepLatency` (ms, start of the step to its end, retries included), `Retries`,
//! `Escalations`.

use baton_core::audit::AuditRecord;
use baton_core::engine::{RunState, RunStatus};
use baton_core::ids::RunId;
use baton_runtime::Observer;
use serde_json::{Map, Value, json};

/// Prints EMF lines for committed audit records.
#[derive(Debug, Default, Clone, Copy)]
pub struct EmfObserver;

/// The EMF document for `records`, or `None` when they count nothing.
pub fn document(state: &RunState, records: &[AuditRecord], now_ms: u64) -> Option<Value> {
    let mut counts: Map<String, Value> = Map::new();
    let mut latencies: Vec<u64> = Vec::new();
    let mut add = |name: &str| {
        let n = counts.get(name).and_then(Value::as_u64).unwrap_or(0) + 1;
        counts.insert(name.to_owned(), json!(n));
    };
    for r in records {
        match r.decision.as_str() {
            "start_run" => add("RunsStarted"),
            "complete_run" => match state.status {
                RunStatus::Succeeded => add("RunsSucceeded"),
                _ => add("RunsFailed"),
            },
            "retry" => add("Retries"),
            "escalate" => add("Escalations"),
            "succeed_step" | "fail_step" => {
                add(if r.decision == "succeed_step" { "StepsSucceeded" } else { "StepsFailed" });
                if let Some(node) = r.node.as_deref().and_then(|k| state.nodes.get(k)) {
                    latencies.push(node.ended_at().unwrap_or(r.at).saturating_sub(node.started_at));
                }
            }
            _ => {}
        }
    }
    if counts.is_empty() {
        return None;
    }
    let mut metrics: Vec<Value> = counts.keys().map(|k| json!({"Name": k, "Unit": "Count"})).collect();
    let mut doc = counts;
    if !latencies.is_empty() {
        metrics.push(json!({"Name": "StepLatency", "Unit": "Milliseconds"}));
        doc.insert("StepLatency".into(), json!(latencies));
    }
    doc.insert("Workflow".into(), json!(state.workflow));
    doc.insert("run_id".into(), json!(state.run_id));
    doc.insert(
        "_aws".into(),
        json!({"Timestamp": now_ms, "CloudWatchMetrics": [{"Namespace": "baton", "Dimensions": [["Workflow"]], "Metrics": metrics}]}),
    );
    Some(Value::Object(doc))
}

impl Observer for EmfObserver {
    fn on_records(&self, _run_id: &RunId, state: &RunState, records: &[AuditRecord]) {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        if let Some(doc) = document(state, records, now) {
            // EMF is read from the function's stdout, one JSON object per line.
            println!("{doc}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_and_latencies_become_one_emf_line() {
        let plan =
            baton_core::load_definition(None, "name: w\nsteps:\n  - {id: a, tool: transform, with: {expr: \"1\"}}\n")
                .expect("valid");
        let mut state = baton_core::engine::new_run(&plan, "r1", 1_000);
        let start = baton_core::engine::Event {
            at: 1_000,
            kind: baton_core::engine::EventKind::RunStarted { input: json!({}), seed: 1, memory: None, engine: 0 },
        };
        let mut records = baton_core::engine::decide(&plan, &mut state, &start).audit;
        let ok = baton_core::engine::Event {
            at: 1_250,
            kind: baton_core::engine::EventKind::StepSucceeded {
                node: "a".into(),
                attempt: 1,
                output: json!(1),
                mocked: false,
                report: None,
            },
        };
        records.extend(baton_core::engine::decide(&plan, &mut state, &ok).audit);
        let doc = document(&state, &records, 2_000).expect("metrics");
        assert_eq!(doc["RunsStarted"], 1);
        assert_eq!(doc["RunsSucceeded"], 1);
        assert_eq!(doc["StepsSucceeded"], 1);
        assert_eq!(doc["StepLatency"], json!([250]));
        assert_eq!(doc["Workflow"], "w");
        assert_eq!(doc["_aws"]["CloudWatchMetrics"][0]["Namespace"], "baton");
        let names: Vec<&str> = doc["_aws"]["CloudWatchMetrics"][0]["Metrics"]
            .as_array()
            .expect("metrics")
            .iter()
            .filter_map(|m| m["Name"].as_str())
            .collect();
        assert!(names.contains(&"StepLatency") && names.contains(&"RunsStarted"), "{names:?}");
    }
}
