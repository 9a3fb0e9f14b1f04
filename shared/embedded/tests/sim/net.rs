//! The simulated queues and schedules: SQS-like queues (visibility timeout, receive counts,
//! at-least-once delivery, a dead-letter list) and Scheduler-like one-time schedules, behind
//! the [`Dispatcher`] port the coordinator and workers send through.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use baton_runtime::StoreError;
use baton_runtime::clock::SimClock;
use baton_runtime::messages::{CoordinatorMessage, body_of};
use baton_runtime::metering::Usage;
use baton_runtime::ports::{Clock, DeadLetter, Dispatcher, Inbound, OutboxItem};

use super::faults::Faults;

/// The coordinator's queue.
pub const COORDINATOR: &str = "coordinator";
/// How long a received message stays invisible (SQS's visibility timeout): the template's six
/// times the consuming function's timeout (30 s for the coordinator, 60 s for the http worker).
pub fn visibility_ms(queue: &str) -> u64 {
    if queue == COORDINATOR { 180_000 } else { 360_000 }
}
/// Receives after which a message goes to the dead-letter list (the redrive policy): the
/// template's 5 on every queue. The sweep carries the dead letters out: a call or result fails
/// its attempt (`dead_lettered`, which the generated steps retry), anything else goes back to
/// the coordinator queue.
pub fn max_receives(_queue: &str) -> u32 {
    5
}

/// A message on a queue.
#[derive(Debug, Clone)]
pub struct Message {
    /// Unique per send.
    pub id: String,
    /// The body.
    pub body: String,
    /// When it can be received.
    pub visible_at: u64,
    /// How often it was received.
    pub receive_count: u32,
}

#[derive(Default)]
struct State {
    sent: u64,
    queues: BTreeMap<String, Vec<Message>>,
    /// (run, timer id) → (due, body).
    schedules: BTreeMap<(String, String), (u64, String)>,
    /// Dead letters: (queue, message, baton's reason, kept for an operator).
    dead: Vec<(String, Inbound, Option<String>, bool)>,
    /// Dead letters the coordinator carried out.
    recovered: usize,
}

/// Queues and schedules whose sends go through [`Faults`].
pub struct Net {
    faults: Arc<Faults>,
    clock: Arc<SimClock>,
    state: Mutex<State>,
}

impl Net {
    /// Empty queues.
    pub fn new(faults: Arc<Faults>, clock: Arc<SimClock>) -> Self {
        Self { faults, clock, state: Mutex::new(State::default()) }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().expect("net")
    }

    /// Puts `body` on `queue`; a message may be delayed (a fault).
    pub fn push(&self, queue: &str, body: String) {
        let mut visible_at = self.clock.now_ms();
        if self.faults.roll() {
            let delay = 1 + self.faults.rng().below(5_000);
            self.faults.note(&format!("delay {delay} ms on {queue}"));
            visible_at += delay;
        }
        let mut s = self.state();
        s.sent += 1;
        let id = format!("m{}", s.sent);
        s.queues.entry(queue.to_owned()).or_default().push(Message { id, body, visible_at, receive_count: 0 });
    }

    /// Receives up to `max` visible messages of `queue`, in an order the seed picks (queues do
    /// not keep order). Each becomes invisible for [`visibility_ms`]; one received more than
    /// [`max_receives`] times goes to the dead-letter list instead.
    pub fn receive(&self, queue: &str, max: usize) -> Vec<Inbound> {
        let now = self.clock.now_ms();
        let mut guard = self.state();
        let s = &mut *guard;
        let mut dead = Vec::new();
        let mut out = Vec::new();
        {
            let Some(q) = s.queues.get_mut(queue) else { return Vec::new() };
            let mut visible: Vec<usize> = (0..q.len()).filter(|&i| q[i].visible_at <= now).collect();
            while out.len() < max && !visible.is_empty() {
                let pick = visible.remove(self.faults.rng().below(visible.len() as u64) as usize);
                let m = &mut q[pick];
                m.receive_count += 1;
                m.visible_at = now + visibility_ms(queue);
                if m.receive_count > max_receives(queue) {
                    dead.push(m.id.clone());
                    continue;
                }
                out.push(Inbound {
                    id: m.id.clone(),
                    body: m.body.clone(),
                    receive_count: m.receive_count,
                    signature: None,
                    usage: Usage::new(),
                });
            }
            for id in &dead {
                if let Some(i) = q.iter().position(|m| &m.id == id) {
                    let m = q.remove(i);
                    let message = Inbound {
                        id: m.id,
                        body: m.body,
                        receive_count: m.receive_count,
                        signature: None,
                        usage: Usage::new(),
                    };
                    s.dead.push((queue.to_owned(), message, None, false));
                }
            }
        }
        out
    }

    /// Deletes a handled message (a lost delete leaves it to be received again).
    pub fn delete(&self, queue: &str, id: &str) {
        if self.faults.roll() {
            self.faults.note(&format!("delete lost on {queue}"));
            return;
        }
        if let Some(q) = self.state().queues.get_mut(queue) {
            q.retain(|m| m.id != id);
        }
    }

    /// Queues with messages, and the earliest time one becomes visible.
    pub fn next_visible(&self) -> Option<u64> {
        self.state().queues.values().flatten().map(|m| m.visible_at).min()
    }

    /// Names of queues with a message visible now.
    pub fn ready_queues(&self) -> Vec<String> {
        let now = self.clock.now_ms();
        self.state()
            .queues
            .iter()
            .filter(|(_, q)| q.iter().any(|m| m.visible_at <= now))
            .map(|(name, _)| name.clone())
            .collect()
    }

    /// Fires the schedules that are due: each becomes a timer message on the coordinator queue
    /// (Scheduler may fire one twice: a fault).
    pub fn fire_due(&self) -> usize {
        let now = self.clock.now_ms();
        let due: Vec<String> = {
            let mut s = self.state();
            let keys: Vec<(String, String)> =
                s.schedules.iter().filter(|(_, (at, _))| *at <= now).map(|(k, _)| k.clone()).collect();
            keys.iter().filter_map(|k| s.schedules.remove(k)).map(|(_, body)| body).collect()
        };
        for body in &due {
            if self.faults.roll() {
                self.faults.note("schedule fired twice");
                self.push(COORDINATOR, body.clone());
            }
            self.push(COORDINATOR, body.clone());
        }
        due.len()
    }

    /// When the next schedule is due.
    pub fn next_due(&self) -> Option<u64> {
        self.state().schedules.values().map(|(at, _)| *at).min()
    }

    /// Every dead letter not carried out: (queue, body, baton's reason, kept for an operator).
    /// Every message the simulation sends is valid, so once the sweep has run there should be
    /// none.
    pub fn dead_letters_left(&self) -> Vec<(String, String, Option<String>, bool)> {
        self.state()
            .dead
            .iter()
            .map(|(q, m, reason, kept)| (q.clone(), m.body.clone(), reason.clone(), *kept))
            .collect()
    }

    /// Dead letters whose attempts the coordinator failed.
    pub fn recovered(&self) -> usize {
        self.state().recovered
    }

    /// Messages still on the queues.
    pub fn pending(&self) -> usize {
        self.state().queues.values().map(Vec::len).sum()
    }
}

#[async_trait]
impl Dispatcher for Net {
    fn serves(&self, tool: &str) -> bool {
        tool == "http"
    }

    async fn deliver(&self, items: &[OutboxItem], _now: u64) -> Result<(), StoreError> {
        self.faults.before("deliver")?;
        for item in items {
            match item {
                OutboxItem::Call(call) => self.push(&call.tool, body_of(call)),
                OutboxItem::Timer { run_id, id, at, .. } => {
                    let body = body_of(&CoordinatorMessage::Timer {
                        run_id: run_id.clone(),
                        timer: id.clone(),
                        usage: Usage::new(),
                    });
                    self.state().schedules.insert((run_id.to_string(), id.clone()), (*at, body));
                }
                OutboxItem::CancelTimer { run_id, id } => {
                    self.state().schedules.remove(&(run_id.to_string(), id.clone()));
                }
                OutboxItem::Coordinator { body } => self.push(COORDINATOR, body.clone()),
            }
        }
        self.faults.after("deliver")
    }

    async fn to_coordinator(&self, bodies: &[String]) -> Result<(), StoreError> {
        self.faults.before("to_coordinator")?;
        for body in bodies {
            self.push(COORDINATOR, body.clone());
        }
        self.faults.after("to_coordinator")
    }

    async fn dead_letter(&self, queue: &str, message: &Inbound, reason: &str) -> Result<(), StoreError> {
        self.faults.before("dead_letter")?;
        let mut s = self.state();
        s.dead.push((queue.to_owned(), message.clone(), Some(reason.to_owned()), false));
        if let Some(q) = s.queues.get_mut(queue) {
            q.retain(|m| m.id != message.id);
        }
        drop(s);
        self.faults.after("dead_letter")
    }

    async fn dead_letters(&self, max: usize) -> Result<Vec<DeadLetter>, StoreError> {
        self.faults.before("dead_letters")?;
        let s = self.state();
        Ok(s.dead
            .iter()
            .filter(|(_, _, _, kept)| !kept)
            .take(max)
            .map(|(queue, message, reason, _)| DeadLetter {
                queue: queue.clone(),
                message: message.clone(),
                reason: reason.clone(),
                handle: message.id.clone(),
            })
            .collect())
    }

    async fn settle_dead_letter(&self, letter: &DeadLetter, done: bool) -> Result<(), StoreError> {
        self.faults.before("settle_dead_letter")?;
        let mut s = self.state();
        if done {
            s.dead.retain(|(_, m, _, _)| m.id != letter.handle);
            s.recovered += 1;
        } else if let Some(d) = s.dead.iter_mut().find(|(_, m, _, _)| m.id == letter.handle) {
            d.3 = true;
        }
        drop(s);
        self.faults.after("settle_dead_letter")
    }
}
