//! `baton event JSON`: deliver an EventBridge-shaped event to triggers, waits and task answers.

use anyhow::Result;
use baton_runtime::control::EventDelivery;
use serde_json::{Value, json};

use crate::backend::{Target, control};
use crate::errors::Usage;
use crate::exit;
use crate::input::json_arg;
use crate::output::{finish_one, print_runs, report_settled};
use crate::signals::stop_on_ctrl_c;

/// Delivers the event and prints what it did.
pub async fn event(target: &Target, event: &str, json: bool) -> Result<u8> {
    let event = json_arg(event, "event").map_err(|e| Usage(format!("{e:#}")))?;
    let has = |k: &str| event.get(k).and_then(Value::as_str).is_some();
    if !has("source") || !has("detail-type") {
        return Err(
            Usage("an event needs string fields `source` and `detail-type` (and usually `detail`)".into()).into()
        );
    }
    let c = control(target, !json).await?;
    match c.event(event, stop_on_ctrl_c()).await? {
        EventDelivery::Answered(run_id) => {
            report_settled(c.as_ref(), &run_id, c.settle(&run_id, stop_on_ctrl_c()).await?);
            finish_one(c.as_ref(), &run_id, json).await
        }
        EventDelivery::Runs(ids) => {
            print_runs(c.as_ref(), &ids, json, "the event matched no published workflow's trigger and no open wait")
                .await
        }
        EventDelivery::Put { event_id, bus } => {
            if json {
                println!("{}", json!({"event_id": event_id, "bus": bus}));
            } else {
                println!("put event {event_id} on {bus}");
            }
            Ok(exit::OK)
        }
    }
}
