//! The decider: the state one `decide` call works on, and the hash-chained audit records it
//! appends. Its behaviour is spread over `progress`, `outcome` and `agent` (each an `impl`
//! block); this module is below them all, so they share it without importing each other.

use serde_json::Value;

use super::types::*;
use crate::audit::AuditRecord;
use crate::ids::NodeKey;
use crate::plan::Plan;

/// An audit record under construction: what was decided, why, about which node, with which
/// values; `Decider::record` chains it.
pub(super) struct Rec {
    pub decision: &'static str,
    pub reason: String,
    pub node: Option<String>,
    pub values: Value,
}

impl Rec {
    pub fn new(decision: &'static str, reason: impl Into<String>) -> Self {
        Self { decision, reason: reason.into(), node: None, values: Value::Null }
    }
    pub fn node(mut self, key: &NodeKey) -> Self {
        self.node = Some(key.to_string());
        self
    }
    pub fn values(mut self, v: Value) -> Self {
        self.values = v;
        self
    }
}

/// One `decide` call at work: the plan, the state it changes, the event's time and name, and
/// what it has decided so far.
pub(super) struct Decider<'a> {
    pub plan: &'a Plan,
    pub st: &'a mut RunState,
    pub at: u64,
    pub event: &'static str,
    /// The event being decided, hashed into each record (once, on the first).
    pub source: &'a Event,
    pub event_hash: Option<String>,
    pub out: Decision,
}

impl Decider<'_> {
    /// Records that the event changes nothing, and why.
    pub fn ignore(&mut self, why: impl Into<String>) {
        self.record(Rec::new("ignore", why), vec![]);
    }

    /// Records that the event changes nothing for node `key`, and why.
    pub fn ignore_for(&mut self, key: &NodeKey, why: impl Into<String>) {
        self.record(Rec::new("ignore", why).node(key), vec![]);
    }

    /// Appends an audit record (chained) and its commands.
    pub fn record(&mut self, rec: Rec, commands: Vec<Command>) {
        let (step, attempt, iteration) = match rec.node.as_deref().and_then(|k| self.st.nodes.get(k)) {
            Some(n) => (
                Some(self.plan.steps[n.step].id.clone()),
                (n.attempt > 0).then_some(n.attempt),
                (n.iteration > 0).then_some(n.iteration),
            ),
            None => (None, None, None),
        };
        self.st.audit_seq += 1;
        let mut r = AuditRecord {
            seq: self.st.audit_seq,
            at: self.at,
            kind: self.event.to_owned(),
            decision: rec.decision.to_owned(),
            step,
            node: rec.node,
            attempt,
            iteration,
            reason: rec.reason,
            values: rec.values,
            commands: commands.iter().map(|c| serde_json::to_value(c).unwrap_or(Value::Null)).collect(),
            event: match &self.event_hash {
                Some(h) => h.clone(),
                None => {
                    let h = super::sealing::event_hash(self.plan, self.st, self.source);
                    self.event_hash = Some(h.clone());
                    h
                }
            },
            sealed: Default::default(),
            prev_hash: self.st.audit_head.clone(),
            hash: String::new(),
        };
        super::sealing::seal_record(self.plan, self.st, &mut r, &mut self.out.sealed);
        r.hash = r.compute_hash();
        self.st.audit_head = r.hash.clone();
        self.out.audit.push(r);
        self.out.commands.extend(commands);
    }
}

/// How a node ends; `end_node` adds when, and keeps the last error where the state holds one.
pub(super) enum End {
    Succeeded(Value),
    Skipped(String),
    Failed { error: StepError, reason: Option<String> },
    FellBack { output: Value, reason: String, stale: Option<Value> },
    Cancelled,
}
