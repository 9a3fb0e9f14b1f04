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
        let detail = serde_json::to_string(&detail).map_err(|err| StoreError::Corrupt(err.to_string()))?;
        Ok(PutEventsRequestEntry::builder()
            .event_bus_name(&self.bus)
            .source(SOURCE)
            .detail_type(&e.name)
            .detail(detail)
            .build())
    }
}

#[async_trait]
impl EventBus for EventBridgeBus {
    fn expected_usage(&self, n: usize) -> baton_runtime::metering::Usage {
        baton_runtime::metering::Usage::from([("EventBridge.PutEvents".to_owned(), n.div_ceil(MAX_ENTRIES) as u64)])
    }

    async fn publish(&self, events: &[BusEvent]) -> Result<(), StoreError> {
        for chunk in events.chunks(MAX_ENTRIES) {
            let entries = chunk.iter().map(|e| self.entry(e)).collect::<Result<Vec<_>, _>>()?;
            let out = self.client.put_events().set_entries(Some(entries)).send().await.map_err(|e| {
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
                    chunk.len(),
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
