//! Dead letters do not leave runs waiting. What the queues' redrive policy moves to a
//! dead-letter queue (a message that failed its receives: a crash, a long throttle, a timeout)
//! is carried out by the sweep:
//!
//! - a coordinator message (a step result, a timer, a start, an answer, a cancel, an event) goes
//!   back to the coordinator queue, up to three times;
//! - a call, and a step result that comes back to the dead-letter queue after that, fails its
//!   attempt at once with kind `dead_lettered`, which the step's `retry` may name, instead of
//!   leaving the step to its attempt's limit (15 minutes by default);
//! - any other message that comes back again is removed when it is moot (its run has ended, its
//!   task is closed) and kept for an operator otherwise: a message that kills the coordinator
//!   must not go round forever.
//!
//! Results count only when the stack signed them (a forged result in a dead-letter queue must
//! not fail anyone's step); an unsigned answer goes back without the `principal` it claims.
//! What baton dead-lettered itself, with its reason (a body it could not read, a forged
//! result), stays for an operator.

use baton_core::engine::{ErrorKind, EventKind, StepError};
use baton_core::ids::{NodeKey, RunId};
use sha2::Digest;

use super::Coordinator;
use crate::error::RuntimeError;
use crate::messages::{CoordinatorMessage, Parsed, body_of, parse_coordinator};
use crate::ports::{CacheEntry, DeadLetter, ToolCall};

/// Dead letters looked at per queue and sweep.
const PER_SWEEP: usize = 10;

/// How often a coordinator message goes back to the queue before it counts as poison.
const MAX_REDRIVES: u64 = 3;

/// How long a dead letter's redrives are remembered.
const REDRIVE_MEMORY_MS: u64 = 7 * 24 * 3_600_000;

/// What a dead letter asks for.
enum Recovery {
    /// Send this body to the coordinator queue again (first time only); `fail` is what to do
    /// when it comes back.
    Redrive { body: String, fail: Option<Stranded> },
    /// Fail the attempt it leaves waiting.
    Fail(Stranded),
    /// Leave it for an operator.
    Keep,
}

/// The attempt a dead letter leaves waiting, and what it was.
struct Stranded {
    run_id: RunId,
    node: NodeKey,
    attempt: u32,
    what: &'static str,
}

impl Coordinator {
    fn recovery(&self, letter: &DeadLetter) -> Recovery {
        if letter.reason.is_some() {
            return Recovery::Keep;
        }
        let signed = self.signed_by_the_stack(&letter.message);
        if letter.queue != "coordinator" {
            return match serde_json::from_str::<ToolCall>(&letter.message.body) {
                Ok(call) if signed => Recovery::Fail(Stranded {
                    run_id: call.run_id,
                    node: call.node,
                    attempt: call.attempt,
                    what: "its call",
                }),
                _ => Recovery::Keep,
            };
        }
        let body = letter.message.body.clone();
        match parse_coordinator(&body) {
            Ok(Parsed::Event {
                run_id,
                kind: EventKind::StepSucceeded { node, attempt, .. } | EventKind::StepFailed { node, attempt, .. },
                ..
            }) if signed => {
                Recovery::Redrive { body, fail: Some(Stranded { run_id, node, attempt, what: "its result" }) }
            }
            Ok(Parsed::Event { kind: EventKind::StepSucceeded { .. } | EventKind::StepFailed { .. }, .. }) => {
                Recovery::Keep
            }
            // Sent again by this coordinator, it will carry the stack's signature: an answer
            // that did not must not gain the principal it claims.
            Ok(Parsed::Answer { task, mut answer, source: None }) if !signed => {
                answer.principal = None;
                Recovery::Redrive { body: body_of(&CoordinatorMessage::Answer { task, answer }), fail: None }
            }
            Ok(_) => Recovery::Redrive { body, fail: None },
            Err(_) => Recovery::Keep,
        }
    }

    /// The number remembered under `key` (0 when none, or forgotten).
    async fn remembered(&self, key: &str) -> Result<u64, RuntimeError> {
        let now = self.clock.now_ms();
        Ok(match self.store.get_cache(key).await? {
            Some(e) if e.expires_at > now => e.value.as_u64().unwrap_or(0),
            _ => 0,
        })
    }

    /// Remembers `n` under `key` for [`REDRIVE_MEMORY_MS`] (in the store, whose response cache
    /// outlives this process).
    async fn remember(&self, key: String, n: u64) -> Result<(), RuntimeError> {
        let now = self.clock.now_ms();
        let entry = CacheEntry { key, value: serde_json::json!(n), at: now, expires_at: now + REDRIVE_MEMORY_MS };
        Ok(self.store.put_cache(&entry).await?)
    }

    /// Sends a dead letter's body to the coordinator queue again, unless it has gone back
    /// [`MAX_REDRIVES`] times already; true when it is on its way (or was, and only its delete
    /// from the dead-letter queue failed). Counted after the send: a crash in between sends it
    /// once more, which a coordinator message bears.
    async fn redrive(&self, letter: &DeadLetter, body: &str) -> Result<bool, RuntimeError> {
        let sent = format!("dead-letter/sent/{}", letter.message.id);
        if self.remembered(&sent).await? > 0 {
            return Ok(true);
        }
        let digest = sha2::Sha256::digest(letter.message.body.as_bytes());
        let count = format!("dead-letter/{}", digest.iter().map(|b| format!("{b:02x}")).collect::<String>());
        let done = self.remembered(&count).await?;
        if done >= MAX_REDRIVES {
            return Ok(false);
        }
        tracing::warn!(message = %letter.message.id, "sending a dead-lettered coordinator message again");
        self.delivery.to_coordinator(&[body.to_owned()]).await?;
        self.remember(count, done + 1).await?;
        self.remember(sent, 1).await?;
        Ok(true)
    }

    /// True when what a coordinator message asks for is done or moot: its run exists (a start)
    /// or has ended, or its task is closed. Such a letter is removed, not kept for an operator.
    async fn outdated(&self, letter: &DeadLetter) -> Result<bool, RuntimeError> {
        let ended = |run: Option<crate::ports::StoredRun>| run.is_some_and(|r| r.state.status.is_terminal());
        Ok(match parse_coordinator(&letter.message.body) {
            Ok(Parsed::Start(start)) => match start.run_id {
                Some(id) => self.store.load_run(&id).await?.is_some(),
                None => false,
            },
            Ok(Parsed::Event { run_id, .. }) => ended(self.store.load_run(&run_id).await?),
            Ok(Parsed::Answer { task, .. }) => self.store.get_task(&task).await?.is_none_or(|t| t.status != "open"),
            _ => false,
        })
    }

    /// Settles a dead letter, logging a failure: one letter that cannot be settled must not
    /// keep the others waiting (it is seen again at a later sweep).
    async fn settle(&self, letter: &DeadLetter, done: bool) {
        if let Err(e) = self.delivery.settle_dead_letter(letter, done).await {
            tracing::warn!(message = %letter.message.id, queue = %letter.queue, error = %e, "cannot settle a dead letter");
        }
    }

    /// Carries out the dead letters the redrive policy moved (see the module's doc); returns how
    /// many it carried out. A store failure leaves the rest for the next sweep.
    pub async fn recover_dead_letters(&self) -> Result<usize, RuntimeError> {
        let letters = self.delivery.dead_letters(PER_SWEEP).await?;
        let mut recovered = 0;
        for letter in letters {
            let stranded = match self.recovery(&letter) {
                Recovery::Keep => {
                    self.settle(&letter, false).await;
                    continue;
                }
                Recovery::Redrive { body, fail } => {
                    if self.redrive(&letter, &body).await? {
                        self.settle(&letter, true).await;
                        recovered += 1;
                        continue;
                    }
                    match fail {
                        Some(s) => s,
                        None if self.outdated(&letter).await? => {
                            self.settle(&letter, true).await;
                            recovered += 1;
                            continue;
                        }
                        None => {
                            tracing::error!(message = %letter.message.id, "a coordinator message was dead-lettered again after its redrive; keeping it for an operator");
                            self.settle(&letter, false).await;
                            continue;
                        }
                    }
                }
                Recovery::Fail(s) => s,
            };
            let error = StepError::new(
                ErrorKind::DeadLettered,
                format!(
                    "{} went to the `{}` dead-letter queue when its receives ran out: {} could not handle it",
                    stranded.what,
                    letter.queue,
                    if letter.queue == "coordinator" { "the coordinator" } else { "its workers" }
                ),
            );
            tracing::warn!(run = %stranded.run_id, node = %stranded.node, attempt = stranded.attempt, queue = %letter.queue, "failing an attempt whose message was dead-lettered");
            let event = EventKind::StepFailed {
                node: stranded.node,
                attempt: stranded.attempt,
                error,
                mocked: false,
                report: None,
            };
            match self.advance(&stranded.run_id, vec![event]).await {
                // A stale attempt is ignored by the engine, with an audit record saying why.
                Ok(()) | Err(RuntimeError::UnknownRun(_)) => {
                    self.settle(&letter, true).await;
                    recovered += 1;
                }
                Err(e) if e.is_permanent() => {
                    tracing::error!(run = %stranded.run_id, error = %e, "cannot fail the attempt of a dead letter; keeping it for an operator");
                    self.settle(&letter, false).await;
                }
                Err(e) => return Err(e),
            }
        }
        Ok(recovered)
    }
}
