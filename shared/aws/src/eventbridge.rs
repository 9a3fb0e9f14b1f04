//! Lifecycle events on an EventBridge bus: `source = "baton"`, `detail-type` the event name
//! (`RunStarted`, `RunSucceeded`, `RunFailed`, `RunCancelled`, `StepFailed`, `HumanTaskCreated`,
//! `TaskEscalated`), `detail` the event's fields plus `run_id` and `at` (schema: docs/events.md).

use async_trait::async_trait;
use aws_sdk_eventbridge::Client;
use aws_sdk_eventbridge::types::PutEventsRequestEntry;
use baton_runtime::StoreError;
use baton_runtime::ports::{BusEvent, EventBus};

/// The `source` of every event baton publishes.
pub const SOURCE: &str = "baton";

/// PutEvents takes at most this many entries per call.
const MAX_ENTRIES: usize = 10;
/// PutEvents takes at most 256 KB per entry and per call; this much is kept for an entry's
/// detail, the rest for its other fields.
const MAX_DETAIL_BYTES: usize = 240 * 1024;
const MAX_CALL_BYTES: usize = 256 * 1024;

/// An [`EventBus`] on one EventBridge bus.
#[derive(Clone)]
pub struct EventBridgeBus {
    client: Client,
    bus: String,
}

impl EventBridgeBus {
    /// A publisher to the bus named `bus` (for a stack: `<stack>-bus`).
    pub fn new(config: &aws_config::SdkConfig, bus: impl Into<String>) -> Self {
        Self { client: crate::metering::eventbridge(config), bus: bus.into() }
    }

    fn entry(&self, e: &BusEvent) -> Result<PutEventsRequestEntry, StoreError> {
        let mut detail = match &e.detail {
            serde_json::Value::Object(m) => m.clone(),
            other => {
                let mut m = serde_json::Map::new();
                m.insert("value".into(), other.clone());
                m
            }
        };
        detail.insert("run_id".into(), serde_json::Value::String(e.run_id.to_string()));
        detail.insert("at".into(), serde_json::Value::from(e.at));
        let detail = fit_detail(detail)?;
        Ok(PutEventsRequestEntry::builder()
            .event_bus_name(&self.bus)
            .source(SOURCE)
            .detail_type(&e.name)
            .detail(detail)
            .build())
    }
}

/// `detail` as JSON that fits one entry. One that does not (a run whose output is over 240 KB)
/// has its largest fields replaced by `{"omitted_bytes": N}`, largest first, until it fits, and
/// `"truncated": true` says so; the run keeps everything (`baton runs show`). Without this the
/// event would be refused on every flush and never leave the outbox.
fn fit_detail(mut detail: serde_json::Map<String, serde_json::Value>) -> Result<String, StoreError> {
    let json = |d: &serde_json::Map<String, serde_json::Value>| {
        serde_json::to_string(d).map_err(|err| StoreError::Corrupt(err.to_string()))
    };
    let mut text = json(&detail)?;
    while text.len() > MAX_DETAIL_BYTES {
        let largest = detail
            .iter()
            .filter(|(k, _)| !matches!(k.as_str(), "run_id" | "at" | "truncated"))
            .map(|(k, v)| (k.clone(), v.to_string().len()))
            .filter(|(_, n)| *n > 64)
            .max_by_key(|(_, n)| *n);
        let Some((key, n)) = largest else { break };
        detail.insert(key, serde_json::json!({ "omitted_bytes": n }));
        detail.insert("truncated".into(), serde_json::Value::Bool(true));
        text = json(&detail)?;
    }
    Ok(text)
}

/// Entries grouped into PutEvents calls: at most [`MAX_ENTRIES`] and about [`MAX_CALL_BYTES`]
/// each.
fn calls(entries: Vec<PutEventsRequestEntry>) -> Vec<Vec<PutEventsRequestEntry>> {
    let size = |e: &PutEventsRequestEntry| {
        e.detail().map_or(0, str::len) + e.detail_type().map_or(0, str::len) + e.source().map_or(0, str::len) + 256
    };
    let mut out: Vec<Vec<PutEventsRequestEntry>> = Vec::new();
    let mut bytes = 0;
    for e in entries {
        let n = size(&e);
        match out.last_mut() {
            Some(call) if call.len() < MAX_ENTRIES && bytes + n <= MAX_CALL_BYTES => {
                bytes += n;
                call.push(e);
            }
            _ => {
                bytes = n;
                out.push(vec![e]);
            }
        }
    }
    out
}

#[async_trait]
impl EventBus for EventBridgeBus {
    fn expected_usage(&self, n: usize) -> baton_runtime::metering::Usage {
        baton_runtime::metering::Usage::from([("EventBridge.PutEvents".to_owned(), n.div_ceil(MAX_ENTRIES) as u64)])
    }

    async fn publish(&self, events: &[BusEvent]) -> Result<(), StoreError> {
        let entries = events.iter().map(|e| self.entry(e)).collect::<Result<Vec<_>, _>>()?;
        for chunk in calls(entries) {
            let count = chunk.len();
            let out = self.client.put_events().set_entries(Some(chunk)).send().await.map_err(|e| {
                StoreError::Backend(format!(
                    "EventBridge PutEvents on bus `{}`: {}",
                    self.bus,
                    aws_sdk_eventbridge::error::DisplayErrorContext(&e)
                ))
            })?;
            if out.failed_entry_count() > 0 {
                let why: Vec<String> = out
                    .entries()
                    .iter()
                    .filter_map(|r| r.error_code().map(|c| format!("{c}: {}", r.error_message().unwrap_or_default())))
                    .collect();
                return Err(StoreError::Backend(format!(
                    "EventBridge rejected {} of {} events on bus `{}`: {}",
                    out.failed_entry_count(),
                    count,
                    self.bus,
                    why.join("; ")
                )));
            }
        }
        Ok(())
    }
}

/// Puts one event on `<stack>-bus` as any client would (rules route it); returns its id.
pub async fn put_event(
    config: &aws_config::SdkConfig,
    stack: &str,
    source: &str,
    detail_type: &str,
    detail: &serde_json::Value,
) -> Result<String, StoreError> {
    let client = crate::metering::eventbridge(config);
    let bus = format!("{stack}-bus");
    let entry = PutEventsRequestEntry::builder()
        .event_bus_name(&bus)
        .source(source)
        .detail_type(detail_type)
        .detail(detail.to_string())
        .build();
    let out = client.put_events().entries(entry).send().await.map_err(|e| {
        StoreError::Backend(format!(
            "EventBridge PutEvents on `{bus}`: {}",
            aws_sdk_eventbridge::error::DisplayErrorContext(&e)
        ))
    })?;
    match out.entries().first() {
        Some(e) if e.error_code().is_none() => Ok(e.event_id().unwrap_or_default().to_owned()),
        Some(e) => Err(StoreError::Backend(format!(
            "EventBridge PutEvents on `{bus}`: {} {}",
            e.error_code().unwrap_or_default(),
            e.error_message().unwrap_or_default()
        ))),
        None => Err(StoreError::Backend(format!("EventBridge PutEvents on `{bus}`: no result entry"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn an_output_over_the_entry_limit_is_left_out_and_said_so() {
        let big = "x".repeat(400 * 1024);
        let detail = json!({"run_id": "r1", "workflow": "w", "output": {"blob": big}, "at": 5});
        let serde_json::Value::Object(map) = detail else { unreachable!() };
        let text = fit_detail(map).expect("fits");
        assert!(text.len() <= MAX_DETAIL_BYTES, "{}", text.len());
        let back: serde_json::Value = serde_json::from_str(&text).expect("json");
        assert_eq!(back["run_id"], "r1");
        assert_eq!(back["workflow"], "w");
        assert_eq!(back["truncated"], true);
        assert!(back["output"]["omitted_bytes"].as_u64().is_some_and(|n| n > 400 * 1024), "{back}");
        let small = json!({"run_id": "r1", "output": 1});
        let serde_json::Value::Object(map) = small else { unreachable!() };
        assert_eq!(fit_detail(map).expect("fits"), r#"{"output":1,"run_id":"r1"}"#);
    }

    #[test]
    fn calls_stay_under_ten_entries_and_the_call_size() {
        let entry =
            |n: usize| PutEventsRequestEntry::builder().source("baton").detail_type("T").detail("x".repeat(n)).build();
        let sizes: Vec<usize> = calls((0..25).map(|_| entry(10)).collect()).iter().map(Vec::len).collect();
        assert_eq!(sizes, [10, 10, 5]);
        let sizes: Vec<usize> = calls((0..4).map(|_| entry(100 * 1024)).collect()).iter().map(Vec::len).collect();
        assert_eq!(sizes, [2, 2]);
    }
}
