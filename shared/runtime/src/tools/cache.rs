//! The `cache` tool: the look-up behind `fallback: cache`. It runs inside the coordinator, which
//! has the store, and serves a step's last good response when it is younger than the step's
//! `cache.ttl`.

use async_trait::async_trait;
use baton_core::engine::{ErrorKind, StepError};
use serde_json::{Value, json};

use super::StoreAccess;
use crate::ports::{CacheEntry, RunStore, Tool, ToolCall, ToolOutcome};

/// Serves kept responses: `{key, ttl_ms, step}` in, `{value, cached_at, age_ms}` out.
pub struct CacheTool(pub StoreAccess);

/// Keeps a step's response (what a `PutCache` command asks for).
pub async fn put(store: &dyn RunStore, key: &str, value: &Value, ttl_ms: u64, now: u64) {
    let entry =
        CacheEntry { key: key.to_owned(), value: value.clone(), at: now, expires_at: now.saturating_add(ttl_ms) };
    // A cache that could not be written costs a fallback later, never the run.
    if let Err(e) = store.put_cache(&entry).await {
        tracing::warn!(key, error = %e, "keeping a response for `fallback: cache` failed");
    }
}

fn rfc3339(ms: u64) -> String {
    humantime::format_rfc3339_millis(std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms)).to_string()
}

/// The look-up's outcome for a response of `step` kept at `at`: served when it is at most `ttl`
/// old, else a miss that says how old it is.
pub fn serve(step: &str, value: Value, at: u64, now: u64, ttl: u64) -> ToolOutcome {
    let age = now.saturating_sub(at);
    if age > ttl {
        let message = format!(
            "the cached response of `{step}` is {} old, older than its ttl of {}",
            baton_core::duration::format_millis(age),
            baton_core::duration::format_millis(ttl)
        );
        return ToolOutcome { result: Err(StepError::new(ErrorKind::CacheMiss, message)), report: None };
    }
    let stale = json!({"stale": true, "cached_at": rfc3339(at), "age_ms": age});
    ToolOutcome { result: Ok(json!({"value": value, "cached_at": rfc3339(at), "age_ms": age})), report: Some(stale) }
}

#[async_trait]
impl Tool for CacheTool {
    async fn call(&self, call: &ToolCall) -> Result<Value, StepError> {
        self.run(call).await.result
    }

    async fn run(&self, call: &ToolCall) -> ToolOutcome {
        let key = call.input.get("key").and_then(Value::as_str).unwrap_or_default();
        let step = call.input.get("step").and_then(Value::as_str).unwrap_or_default();
        let ttl = call.input.get("ttl_ms").and_then(Value::as_u64).unwrap_or(0);
        let now = self.0.clock.now_ms();
        let miss =
            |message: String| ToolOutcome { result: Err(StepError::new(ErrorKind::CacheMiss, message)), report: None };
        let entry = match self.0.store.get_cache(key).await {
            Ok(Some(e)) => e,
            Ok(None) => return miss(format!("no response of `{step}` is cached for these arguments")),
            Err(e) => return miss(format!("the cache could not be read: {e}")),
        };
        serve(step, entry.value, entry.at, now, ttl)
    }

    fn inline(&self) -> bool {
        true
    }
}
