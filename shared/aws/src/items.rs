//! The single-table layout (described in docs/aws.md) as item builders and readers.
//!
//! | PK | SK | holds |
//! |---|---|---|
//! | `RUN#<id>` | `RUN` | header: workflow, definition, status, version, events, state (JSON) |
//! | `RUN#<id>` | `EVENT#<first seq>` | the events one transition journaled (JSON array) |
//! | `RUN#<id>` | `AUDIT#<first seq>` | the audit records one transition appended (JSON array) |
//! | `RUN#<id>` | `BUS#<version>` | the lifecycle events of one transition (outbox) |
//! | `WF#<name>` | `DEF#<hash>` | immutable definition source |
//! | `TASK#<id>` | `TASK` | human task; `GSI2PK = TASKS#open` while open |
//! | `MEM#<entity>` | `FACT#<key>` | a fact: value (JSON), source, at |
//! | `MEM#<entity>` | `EP#<at, 13 digits>#<run id>` | an episode, written by the run's commit |
//! | `CACHE#<key>` | `CACHE` | a step's last good response: value (JSON), at, expires_at, `ttl` |
//!
//! A transition's events and audit records are packed into one item each (split when an item
//! would pass 350 KB) rather than one item per record: a step then costs a few items per
//! transaction, and the 100-item transaction limit is reached only by very wide fan-outs.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::AttributeValue;
use baton_core::ids::RunId;
use baton_runtime::StoreError;
use baton_runtime::ports::Episode;

/// An item.
pub type Item = HashMap<String, AttributeValue>;

/// Largest packed payload per item; DynamoDB's limit is 400 KB including keys and names.
pub const MAX_PACK_BYTES: usize = 350 * 1024;

/// Index listing runs newest first: `GSI1PK = RUNS`, `GSI1SK = <created_at>#<id>`.
pub const RUNS_INDEX: &str = "gsi1";
/// Index listing open tasks: `GSI2PK = TASKS#open`, `GSI2SK = <created_at>#<id>`.
pub const TASKS_INDEX: &str = "gsi2";

pub fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

pub fn n(v: impl ToString) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

pub fn run_pk(id: &RunId) -> String {
    format!("RUN#{id}")
}

pub fn seq_key(prefix: &str, seq: u64) -> String {
    format!("{prefix}#{seq:010}")
}

/// The gsi1 partition of the open event waits listed under `key` (see
/// `baton_runtime::wait_index`).
pub fn wait_pk(key: &str) -> String {
    format!("WAITS#{key}")
}

/// The partition holding an entity's facts and episodes.
pub fn mem_pk(entity: &str) -> String {
    format!("MEM#{entity}")
}

/// Sort-key prefix of facts; a fact's key follows it, so a query lists facts by key.
pub const FACT_PREFIX: &str = "FACT#";
/// Sort-key prefix of episodes; the zero-padded time after it makes a query list them by time.
pub const EPISODE_PREFIX: &str = "EP#";

/// The partition of one cache entry (its sort key is `CACHE`).
pub fn cache_pk(key: &str) -> String {
    format!("CACHE#{key}")
}

/// An episode's item. Its key is a function of the episode alone, so writing it again (a
/// retried commit) overwrites it with the same item.
pub fn episode_item(e: &Episode) -> Item {
    let mut item = Item::new();
    item.insert("PK".into(), s(mem_pk(&e.entity)));
    item.insert("SK".into(), s(format!("{EPISODE_PREFIX}{:013}#{}", e.at, e.run_id)));
    item.insert("entity".into(), s(&e.entity));
    item.insert("run_id".into(), s(e.run_id.as_str()));
    item.insert("workflow".into(), s(&e.workflow));
    item.insert("status".into(), s(&e.status));
    item.insert("summary".into(), s(&e.summary));
    item.insert("at".into(), n(e.at));
    item
}

/// Reads an item written by [`episode_item`].
pub fn episode_of(item: &Item) -> Result<Episode, StoreError> {
    Ok(Episode {
        entity: get_s(item, "entity")?.to_owned(),
        run_id: get_s(item, "run_id")?.into(),
        workflow: get_s(item, "workflow")?.to_owned(),
        status: get_s(item, "status")?.to_owned(),
        summary: get_s(item, "summary")?.to_owned(),
        at: get_n(item, "at")?,
    })
}

pub fn get_s<'a>(item: &'a Item, name: &str) -> Result<&'a str, StoreError> {
    match item.get(name) {
        Some(AttributeValue::S(v)) => Ok(v),
        _ => Err(StoreError::Corrupt(format!("attribute `{name}` is missing or not a string"))),
    }
}

pub fn get_n(item: &Item, name: &str) -> Result<u64, StoreError> {
    match item.get(name) {
        Some(AttributeValue::N(v)) => {
            v.parse().map_err(|_| StoreError::Corrupt(format!("attribute `{name}` is not an integer: {v}")))
        }
        _ => Err(StoreError::Corrupt(format!("attribute `{name}` is missing or not a number"))),
    }
}

pub fn opt_s(item: &Item, name: &str) -> Option<String> {
    match item.get(name) {
        Some(AttributeValue::S(v)) => Some(v.clone()),
        _ => None,
    }
}

pub fn to_json<T: serde::Serialize>(v: &T) -> Result<String, StoreError> {
    serde_json::to_string(v).map_err(|e| StoreError::Corrupt(e.to_string()))
}

pub fn from_json<T: serde::de::DeserializeOwned>(s: &str) -> Result<T, StoreError> {
    serde_json::from_str(s).map_err(|e| StoreError::Corrupt(e.to_string()))
}

/// Packs serialised entries (each with its sequence number) into JSON arrays of bounded size;
/// returns (first seq, array text) per pack.
pub fn pack(entries: &[(u64, String)]) -> Vec<(u64, String)> {
    let mut packs = Vec::new();
    let mut current = String::from("[");
    let mut first = None;
    for (seq, text) in entries {
        if current.len() + text.len() + 2 > MAX_PACK_BYTES && first.is_some() {
            current.push(']');
            packs.push((first.unwrap_or(*seq), std::mem::replace(&mut current, String::from("["))));
            first = None;
        }
        if first.is_none() {
            first = Some(*seq);
        } else {
            current.push(',');
        }
        current.push_str(text);
    }
    if let Some(f) = first {
        current.push(']');
        packs.push((f, current));
    }
    packs
}

/// Payloads above this size are stored deflated (a binary attribute): run state and packed
/// journal and audit items are JSON that shrinks five- to tenfold, and DynamoDB bills writes
/// per KB (two units per KB in a transaction).
pub const COMPRESS_ABOVE: usize = 1024;

/// A JSON payload as an attribute: a string when small, deflated bytes otherwise.
pub fn payload(json: String) -> AttributeValue {
    use std::io::Write;
    if json.len() <= COMPRESS_ABOVE {
        return AttributeValue::S(json);
    }
    let mut z = flate2::write::DeflateEncoder::new(Vec::with_capacity(json.len() / 4), flate2::Compression::fast());
    match z.write_all(json.as_bytes()).and_then(|_| z.finish()) {
        Ok(bytes) => AttributeValue::B(aws_sdk_dynamodb::primitives::Blob::new(bytes)),
        Err(_) => AttributeValue::S(json),
    }
}

/// Reads a payload written by [`payload`] (either form).
pub fn get_payload(item: &Item, name: &str) -> Result<String, StoreError> {
    use std::io::Read;
    match item.get(name) {
        Some(AttributeValue::S(v)) => Ok(v.clone()),
        Some(AttributeValue::B(b)) => {
            let mut out = String::new();
            flate2::read::DeflateDecoder::new(b.as_ref())
                .read_to_string(&mut out)
                .map_err(|e| StoreError::Corrupt(format!("attribute `{name}` does not inflate: {e}")))?;
            Ok(out)
        }
        _ => Err(StoreError::Corrupt(format!("attribute `{name}` is missing"))),
    }
}

/// The stored size of a payload (what DynamoDB bills).
pub fn payload_len(v: &AttributeValue) -> usize {
    match v {
        AttributeValue::S(s) => s.len(),
        AttributeValue::B(b) => b.as_ref().len(),
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packs_stay_under_the_item_limit_and_keep_order() {
        let big = "x".repeat(100 * 1024);
        let entries: Vec<(u64, String)> = (1..=8).map(|i| (i, format!("\"{big}{i}\""))).collect();
        let packs = pack(&entries);
        assert!(packs.len() >= 3);
        assert!(packs.iter().all(|(_, p)| p.len() <= MAX_PACK_BYTES));
        let all: Vec<String> =
            packs.iter().flat_map(|(_, p)| serde_json::from_str::<Vec<String>>(p).expect("json")).collect();
        assert_eq!(all.len(), 8);
        assert!(all[7].ends_with('8'));
        assert_eq!(packs[0].0, 1);
    }
}
