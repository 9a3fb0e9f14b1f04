//! Coordinator-queue bodies as SQS delivers them: parsed into a message or refused with a
//! reason (the coordinator dead-letters it), never a panic. Bodies that parse are turned back
//! into a body and parsed again, which must give the same message.
#![no_main]

use baton_runtime::messages::{Parsed, event_body, parse_coordinator};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Ok(body) = std::str::from_utf8(data) else { return };
    if let Ok(Parsed::Event { run_id, kind, .. }) = parse_coordinator(body)
        && let Some(again) = event_body(&run_id, kind.clone())
    {
        match parse_coordinator(&again) {
            Ok(Parsed::Event { run_id: r2, kind: k2, .. }) => {
                assert!(r2 == run_id && k2 == kind, "round trip changed the event")
            }
            other => panic!("a body baton wrote does not parse back: {other:?}"),
        }
    }
});
