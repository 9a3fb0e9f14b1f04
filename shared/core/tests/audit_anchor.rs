//! The audit log checked against the head the run's state holds: every way of tampering with
//! the records (edit, insert, delete first, middle or last, reorder, truncate, rewrite the tail
//! with recomputed hashes) and with the stored outcome is caught and located.

use baton_core::audit::{Anchor, AuditRecord, ChainError, verify_anchored};
use baton_core::engine::{Command, Event, EventKind, RunState, decide, new_run};
use baton_core::load_definition;
use serde_json::json;

const T0: u64 = 1_700_000_000_000;

/// A finished three-step run: its records and final state.
fn finished_run() -> (Vec<AuditRecord>, RunState) {
    let yaml = r#"
name: chain
steps:
  - {id: a, tool: transform, with: {expr: "1"}}
  - {id: b, needs: [a], tool: transform, with: {expr: ".steps.a.output + 1"}}
  - {id: c, needs: [b], tool: transform, with: {expr: ".steps.b.output * 10"}}
output: .steps.c.output
"#;
    let plan = load_definition(None, yaml).expect("loads");
    let mut state = new_run(&plan, "run-1", T0);
    let mut queue = vec![EventKind::RunStarted { input: json!({}), seed: 7, memory: None, engine: 0 }];
    let mut audit = Vec::new();
    let mut at = T0;
    // Each step's call returns a number, as the transform would.
    while let Some(kind) = queue.pop() {
        at += 5;
        let d = decide(&plan, &mut state, &Event { at, kind });
        audit.extend(d.audit);
        for c in d.commands {
            if let Command::Dispatch(x) = c {
                let output = json!(x.node.len());
                queue.push(EventKind::StepSucceeded {
                    node: x.node,
                    attempt: x.attempt,
                    output,
                    mocked: false,
                    report: None,
                });
            }
        }
    }
    (audit, state)
}

fn anchor(state: &RunState) -> Anchor<'_> {
    Anchor {
        seq: state.audit_seq,
        hash: &state.audit_head,
        status: state.status.as_str(),
        output: state.output.as_ref(),
    }
}

/// Re-links `records` from the first with recomputed hashes, as someone with write access but
/// no key could.
fn relink(records: &mut [AuditRecord]) {
    let mut prev = records.first().map(|r| r.prev_hash.clone()).unwrap_or_default();
    for (i, r) in records.iter_mut().enumerate() {
        r.seq = i as u64 + 1;
        r.prev_hash = prev.clone();
        r.hash = r.compute_hash();
        prev = r.hash.clone();
    }
}

#[test]
fn an_untouched_log_matches_its_anchor() {
    let (records, state) = finished_run();
    assert!(records.len() >= 5, "{} records", records.len());
    assert_eq!(state.status.as_str(), "succeeded");
    assert_eq!(verify_anchored(&records, &anchor(&state)), Ok(()));
}

#[test]
fn each_kind_of_tampering_is_caught_at_the_first_wrong_record() {
    let (records, state) = finished_run();
    let n = records.len() as u64;
    let check = |r: &[AuditRecord]| verify_anchored(r, &anchor(&state)).map_err(|e| (e.first_bad(), e));

    let mut edited = records.clone();
    edited[2].reason = "nothing to see".into();
    assert!(matches!(check(&edited), Err((3, ChainError::Tampered { .. }))));

    let mut first_gone = records.clone();
    first_gone.remove(0);
    assert_eq!(check(&first_gone).map_err(|e| e.0), Err(2));

    let mut middle_gone = records.clone();
    middle_gone.remove(2);
    assert_eq!(check(&middle_gone).map_err(|e| e.0), Err(4));

    let mut last_gone = records.clone();
    last_gone.pop();
    assert!(matches!(check(&last_gone), Err((k, ChainError::Truncated { .. })) if k == n));

    let mut truncated = records.clone();
    truncated.truncate(2);
    assert!(matches!(check(&truncated), Err((3, ChainError::Truncated { .. }))));

    let mut reordered = records.clone();
    reordered.swap(1, 2);
    assert_eq!(check(&reordered).map_err(|e| e.0), Err(3));

    let mut inserted = records.clone();
    inserted.insert(2, records[1].clone());
    assert_eq!(check(&inserted).map_err(|e| e.0), Err(2));

    let mut appended = records.clone();
    let mut extra = records[records.len() - 1].clone();
    extra.seq = n + 1;
    extra.prev_hash = records[records.len() - 1].hash.clone();
    extra.hash = extra.compute_hash();
    appended.push(extra);
    assert!(matches!(check(&appended), Err((k, ChainError::Extended { .. })) if k == n + 1));

    // The tail rewritten and every hash after it recomputed: the chain is consistent in itself,
    // only the head the state holds gives it away.
    let mut rewritten = records.clone();
    rewritten[3].reason = "rewritten".into();
    relink(&mut rewritten);
    assert!(matches!(check(&rewritten), Err((k, ChainError::HeadMismatch { .. })) if k == n));

    // The last record deleted and the rest relinked: caught by the head's count.
    let mut shortened = records.clone();
    shortened.pop();
    relink(&mut shortened);
    assert!(matches!(check(&shortened), Err((_, ChainError::Truncated { .. }))));
}

#[test]
fn a_stored_outcome_that_is_not_the_decided_one_is_caught() {
    let (records, state) = finished_run();
    let mut other_output = state.clone();
    other_output.output = Some(json!(999));
    let a = anchor(&other_output);
    assert!(matches!(verify_anchored(&records, &a), Err(ChainError::OutcomeMismatch { field: "output", .. })));
    let failed = Anchor { status: "failed", ..anchor(&state) };
    assert!(matches!(verify_anchored(&records, &failed), Err(ChainError::OutcomeMismatch { field: "status", .. })));
}
