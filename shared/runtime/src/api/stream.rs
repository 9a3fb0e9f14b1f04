//! `GET /api/runs/{id}/events`: a run's progress as server-sent events. Each audit record is one
//! `record` event (its `id:` the record's seq), sent as it is committed; when the run ends or
//! waits for the outside world, one `end` event carries the run as `GET /api/runs/{id}` shows
//! it, and the stream closes. A client that reconnects with `Last-Event-ID` gets the records
//! after that one.
//!
//! The stream reads the store, not the coordinator's memory, so it works whichever process (or
//! Lambda) drives the run: it looks for new records every few milliseconds.

use baton_core::ids::RunId;
use serde_json::Value;
use tokio::sync::mpsc;

use super::{Api, ApiBody, ApiError, ApiResponse};
use crate::control::RunControl;
use crate::coordinator::is_settled;

/// How many events may wait for a slow client before the stream stops reading the store.
const BUFFER: usize = 64;

/// One server-sent event: the data is one line of JSON, so it needs no splitting.
pub(super) fn sse(event: &str, id: Option<u64>, data: &Value) -> String {
    match id {
        Some(id) => format!("event: {event}\nid: {id}\ndata: {data}\n\n"),
        None => format!("event: {event}\ndata: {data}\n\n"),
    }
}

/// Checks the run exists (404 otherwise), then streams it, after record `last_event_id` when a
/// client reconnects with one.
pub(super) async fn run_events(api: &Api, id: &RunId, last_event_id: Option<&str>) -> Result<ApiResponse, ApiError> {
    let after = match last_event_id.map(str::trim) {
        None | Some("") => 0,
        Some(seq) => seq
            .parse::<u64>()
            .map_err(|_| ApiError::bad("Last-Event-ID", format!("`{seq}` is not a record seq this stream sent")))?,
    };
    api.control.load(id).await?;
    let (tx, rx) = mpsc::channel(BUFFER);
    let control = api.control.clone();
    let mut stop = api.stop();
    let poll = api.poll;
    let id = id.clone();
    tokio::spawn(async move {
        tokio::select! {
            _ = &mut stop => {}
            r = follow(control.as_ref(), &id, after, &tx, poll) => {
                if let Err(e) = r {
                    let _ = tx.send(sse("error", None, &serde_json::json!({"error": e.to_string()}))).await;
                }
            }
        }
    });
    Ok(ApiResponse::json(200, Value::Null).with_body(ApiBody::Events(rx)))
}

/// Sends new records until the run settles, then the `end` event. Returns early, quietly,
/// when the client went away.
async fn follow(
    control: &dyn RunControl,
    id: &RunId,
    after: u64,
    tx: &mpsc::Sender<String>,
    poll: std::time::Duration,
) -> Result<(), ApiError> {
    let mut sent = after;
    loop {
        // The state first, then the records: records committed with that state are then all
        // seen before the `end` event.
        let (plan, state) = control.load(id).await?;
        let settled = is_settled(&plan, &state);
        let fresh: Vec<_> = control.store().load_audit(id).await?.into_iter().filter(|r| r.seq > sent).collect();
        for record in fresh {
            sent = record.seq;
            let data = serde_json::to_value(&record).map_err(|e| ApiError::Unavailable(e.to_string()))?;
            if tx.send(sse("record", Some(record.seq), &data)).await.is_err() {
                return Ok(());
            }
        }
        if settled {
            let _ = tx.send(sse("end", None, &control.detail(id).await?)).await;
            return Ok(());
        }
        tokio::time::sleep(poll).await;
        if tx.is_closed() {
            return Ok(());
        }
    }
}
