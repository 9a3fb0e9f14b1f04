//! Dead letters do not leave runs waiting. A call whose message ran out of receives on its
//! worker queue, or a result that ran out of them on the coordinator queue, would otherwise
//! leave its step running until the attempt's limit (15 minutes by default): the sweep finds it
//! and fails the attempt at once with kind `dead_lettered`, which the step's `retry` may name.
//! Any other coordinator message the redrive policy moved (a timer, a start, an answer, a
//! cancel) goes back to the coordinator queue: a run must not wait forever for a retry's timer
//! or an answer someone gave. Only what the queues' redrive policy moved is carried out, and
//! only when the stack signed it: what baton dead-lettered itself (a body it could not read, a
//! forged result) stays for an operator.

use baton_core::engine::{ErrorKind, EventKind, StepError};
use baton_core::ids::{NodeKey, RunId};

use super::Coordinator;
use crate::error::RuntimeError;
use crate::messages::{Parsed, parse_coordinator};
use crate::ports::{DeadLetter, ToolCall};

/// Dead letters looked at per queue and sweep.
const PER_SWEEP: usize = 10;

/// What a dead letter asks for.
enum Recovery {
    /// Fail the attempt it leaves waiting.
    Fail(Stranded),
    /// Send it to the coordinator queue again.
    Redrive,
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

fn recovery(letter: &DeadLetter) -> Recovery {
    if letter.queue == "coordinator" {
        return match parse_coordinator(&letter.message.body) {
            Ok(Parsed::Event {
                run_id,
                kind: EventKind::StepSucceeded { node, attempt, .. } | EventKind::StepFailed { node, attempt, .. },
                ..
            }) => Recovery::Fail(Stranded { run_id, node, attempt, what: "its result" }),
            Ok(_) => Recovery::Redrive,
            Err(_) => Recovery::Keep,
        };
    }
    match serde_json::from_str::<ToolCall>(&letter.message.body) {
        Ok(call) => {
            Recovery::Fail(Stranded { run_id: call.run_id, node: call.node, attempt: call.attempt, what: "its call" })
        }
        Err(_) => Recovery::Keep,
    }
}

impl Coordinator {
    /// Carries out the dead letters the redrive policy moved (see the module's doc); returns how
    /// many it carried out. A store or queue failure leaves the rest for the next sweep.
    pub async fn recover_dead_letters(&self) -> Result<usize, RuntimeError> {
        let letters = self.delivery.dead_letters(PER_SWEEP).await?;
        let mut recovered = 0;
        for letter in letters {
            let trusted = letter.reason.is_none() && self.signed_by_the_stack(&letter.message);
            let s = match if trusted { recovery(&letter) } else { Recovery::Keep } {
                Recovery::Keep => {
                    self.delivery.settle_dead_letter(&letter, false).await?;
                    continue;
                }
                Recovery::Redrive => {
                    tracing::warn!(message = %letter.message.id, "sending a dead-lettered coordinator message again");
                    self.delivery.to_coordinator(std::slice::from_ref(&letter.message.body)).await?;
                    self.delivery.settle_dead_letter(&letter, true).await?;
                    recovered += 1;
                    continue;
                }
                Recovery::Fail(s) => s,
            };
            let error = StepError::new(
                ErrorKind::DeadLettered,
                format!(
                    "{} went to the `{}` dead-letter queue when its receives ran out: {} could not handle it",
                    s.what,
                    letter.queue,
                    if letter.queue == "coordinator" { "the coordinator" } else { "its workers" }
                ),
            );
            tracing::warn!(run = %s.run_id, node = %s.node, attempt = s.attempt, queue = %letter.queue, "failing an attempt whose message was dead-lettered");
            let event = EventKind::StepFailed { node: s.node, attempt: s.attempt, error, mocked: false, report: None };
            match self.advance(&s.run_id, vec![event]).await {
                // A stale attempt is ignored by the engine, with an audit record saying why.
                Ok(()) | Err(RuntimeError::UnknownRun(_)) => {
                    self.delivery.settle_dead_letter(&letter, true).await?;
                    recovered += 1;
                }
                Err(e) if e.is_permanent() => {
                    tracing::error!(run = %s.run_id, error = %e, "cannot fail the attempt of a dead letter; leaving it for an operator");
                    self.delivery.settle_dead_letter(&letter, false).await?;
                }
                Err(e) => return Err(e),
            }
        }
        Ok(recovered)
    }
}
