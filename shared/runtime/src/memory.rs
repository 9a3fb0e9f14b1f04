//! Memory across runs: per-entity facts and episodes in the store, loaded into `.memory` when a
//! run starts, an episode appended when it ends, and `tool: memory` to read, write and search.

use async_trait::async_trait;
use baton_core::Plan;
use baton_core::engine::{ErrorKind, RunState, StepError, Visible, node_context};
use serde_json::{Map, Value, json};

use crate::error::RuntimeError;
use crate::ports::{Episode, MemoryFact, RunStore, Tool, ToolCall};
use crate::tools::StoreAccess;

/// The entity id `memory.entity` gives for `input`: a string, or a number as text; `None`
/// when it gives null (the run remembers nothing).
pub fn entity_for(plan: &Plan, input: &Value) -> Result<Option<String>, RuntimeError> {
    let Some(m) = &plan.memory else { return Ok(None) };
    let v = m
        .entity
        .eval(&json!({ "input": input }))
        .map_err(|e| RuntimeError::InvalidInput(vec![format!("memory.entity: {e}")]))?;
    match v {
        Value::Null => Ok(None),
        Value::String(s) if s.trim().is_empty() => Ok(None),
        Value::String(s) => Ok(Some(s)),
        Value::Number(n) => Ok(Some(n.to_string())),
        other => Err(RuntimeError::InvalidInput(vec![format!(
            "memory.entity gives {other}, not an id (a string or a number)"
        )])),
    }
}

/// What a run of `plan` sees as `.memory`: `{entity, facts: {key: value}, episodes: [...]}`,
/// newest episode first. `None` for workflows without `memory`.
pub async fn load(store: &dyn RunStore, plan: &Plan, input: &Value) -> Result<Option<Value>, RuntimeError> {
    let Some(m) = &plan.memory else { return Ok(None) };
    let Some(entity) = entity_for(plan, input)? else {
        return Ok(Some(json!({"entity": null, "facts": {}, "episodes": []})));
    };
    let mut facts = Map::new();
    if m.facts {
        for f in store.facts(&entity).await? {
            facts.insert(f.key, f.value);
        }
    }
    let episodes = if m.episodes > 0 { store.episodes(&entity, m.episodes as usize).await? } else { vec![] };
    let episodes: Vec<Value> = episodes.iter().map(episode_json).collect();
    Ok(Some(json!({"entity": entity, "facts": facts, "episodes": episodes})))
}

fn episode_json(e: &Episode) -> Value {
    json!({"run_id": e.run_id, "workflow": e.workflow, "status": e.status, "summary": e.summary, "at": e.at})
}

fn fact_json(f: &MemoryFact) -> Value {
    json!({"key": f.key, "value": f.value, "source": f.source, "at": f.at})
}

/// The episode an ended run leaves on its entity, or `None` (still running, no memory, no
/// entity). Its time is the run's end, so committing it again writes the same item.
pub fn episode_for(plan: &Plan, state: &RunState) -> Option<Episode> {
    let m = plan.memory.as_ref()?;
    if !state.status.is_terminal() {
        return None;
    }
    let entity = state.memory.as_ref()?.get("entity")?.as_str()?.to_owned();
    let summary = m
        .summary
        .as_ref()
        .and_then(|e| {
            let ctx = node_context(plan, state, 0, None, None, Visible::All);
            match e.eval(&ctx) {
                Ok(Value::String(s)) => Some(s),
                Ok(Value::Null) => None,
                Ok(other) => Some(other.to_string()),
                Err(e) => {
                    tracing::warn!(run = %state.run_id, error = %e, "memory.summary failed; the episode gets the default summary");
                    None
                }
            }
        })
        .unwrap_or_else(|| default_summary(state));
    Some(Episode {
        entity,
        run_id: state.run_id.clone(),
        workflow: state.workflow.clone(),
        status: state.status.as_str().to_owned(),
        summary,
        at: state.ended_at.unwrap_or(state.created_at),
    })
}

/// `order-triage succeeded after 4 steps; output {"total":12}` (output cut at 300 characters).
fn default_summary(state: &RunState) -> String {
    // Steps of the DAG, not their items, attempts' helpers or an agent's turns.
    let done = state
        .nodes
        .values()
        .filter(|n| n.status().is_terminal() && n.role == baton_core::engine::Role::Dag && n.index.is_none())
        .count();
    let mut s = format!("{} {} after {done} steps", state.workflow, state.status.as_str());
    if let Some(e) = &state.error {
        s.push_str(&format!("; {}: {}", e.kind, e.message));
    }
    if let Some(out) = &state.output {
        let text = out.to_string();
        let cut: String = text.chars().take(300).collect();
        s.push_str(&format!("; output {cut}{}", if cut.len() < text.len() { "…" } else { "" }));
    }
    s
}

/// `tool: memory`: `op: read` (all of an entity's memory, or one fact by `key`), `write` (a
/// fact: `key`, `value`), `search` (facts and episodes whose text holds every word of
/// `query`). `entity` defaults to the run's entity. Runs inside the coordinator, which has
/// the store; a write replaces the fact with the same key, so repeating it is harmless.
pub struct MemoryTool(pub StoreAccess);

fn text_of(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

#[async_trait]
impl Tool for MemoryTool {
    async fn call(&self, call: &ToolCall) -> Result<Value, StepError> {
        let arg = |k: &str| call.input.get(k).filter(|v| !v.is_null());
        let entity = match arg("entity") {
            Some(Value::String(s)) if !s.trim().is_empty() => s.clone(),
            Some(Value::Number(n)) => n.to_string(),
            _ => {
                return Err(StepError::new(
                    ErrorKind::Tool,
                    "no entity: set `with.entity`, or `memory.entity` on the workflow",
                ));
            }
        };
        let store_err = |e: crate::error::StoreError| StepError::new(ErrorKind::Tool, format!("memory store: {e}"));
        let op = arg("op").and_then(Value::as_str).unwrap_or("read");
        match op {
            "read" => {
                let facts = self.0.store.facts(&entity).await.map_err(store_err)?;
                if let Some(key) = arg("key").map(text_of) {
                    return Ok(facts.iter().find(|f| f.key == key).map(fact_json).unwrap_or(Value::Null));
                }
                let limit = arg("limit").and_then(Value::as_u64).unwrap_or(10) as usize;
                let episodes = self.0.store.episodes(&entity, limit).await.map_err(store_err)?;
                Ok(json!({
                    "entity": entity,
                    "facts": facts.iter().map(fact_json).collect::<Vec<_>>(),
                    "episodes": episodes.iter().map(episode_json).collect::<Vec<_>>(),
                }))
            }
            "write" => {
                let (Some(key), Some(value)) = (arg("key").map(text_of), call.input.get("value")) else {
                    return Err(StepError::new(ErrorKind::Tool, "`op: write` needs `key` and `value`"));
                };
                let fact = MemoryFact {
                    entity,
                    key,
                    value: value.clone(),
                    source: format!("{}/{}", call.run_id, call.step),
                    at: self.0.clock.now_ms(),
                };
                self.0.store.put_fact(&fact).await.map_err(store_err)?;
                Ok(json!({"written": fact_json(&fact)}))
            }
            "search" => {
                let query = arg("query").map(text_of).unwrap_or_default().to_lowercase();
                let words: Vec<&str> = query.split_whitespace().collect();
                if words.is_empty() {
                    return Err(StepError::new(ErrorKind::Tool, "`op: search` needs `query`"));
                }
                let limit = arg("limit").and_then(Value::as_u64).unwrap_or(20) as usize;
                let hit = |text: String| {
                    let t = text.to_lowercase();
                    words.iter().all(|w| t.contains(w))
                };
                let mut matches = Vec::new();
                for f in self.0.store.facts(&entity).await.map_err(store_err)? {
                    if hit(format!("{} {}", f.key, text_of(&f.value))) {
                        matches.push(
                            json!({"kind": "fact", "key": f.key, "value": f.value, "source": f.source, "at": f.at}),
                        );
                    }
                }
                // Episodes are searched newest first, up to a bound that keeps a search cheap.
                for e in self.0.store.episodes(&entity, 200).await.map_err(store_err)? {
                    if hit(format!("{} {} {}", e.workflow, e.status, e.summary)) {
                        let mut v = episode_json(&e);
                        v["kind"] = json!("episode");
                        matches.push(v);
                    }
                }
                matches.truncate(limit);
                Ok(json!({"entity": entity, "query": query, "matches": matches}))
            }
            other => {
                Err(StepError::new(ErrorKind::Tool, format!("unknown memory op `{other}`: read, write or search")))
            }
        }
    }

    fn inline(&self) -> bool {
        true
    }
}
