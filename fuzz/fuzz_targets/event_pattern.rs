//! EventBridge events and patterns: the input is two JSON documents separated by a NUL byte,
//! the pattern and the event. Checking the pattern and matching it must never panic, and an
//! event always matches the empty pattern.
#![no_main]

use serde_json::Value;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let mut parts = data.splitn(2, |b| *b == 0);
    let (Some(p), Some(e)) = (parts.next(), parts.next()) else { return };
    let (Ok(pattern), Ok(event)) = (serde_json::from_slice::<Value>(p), serde_json::from_slice::<Value>(e)) else {
        return;
    };
    let _ = baton_core::pattern::check(&pattern);
    let _ = baton_core::pattern::matches(&pattern, &event);
    let _ = baton_runtime::messages::task_resolution(&event);
    if event.is_object() {
        assert!(baton_core::pattern::matches(&serde_json::json!({}), &event), "the empty pattern matches every event");
    }
});
