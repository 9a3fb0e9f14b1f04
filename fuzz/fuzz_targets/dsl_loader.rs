//! The DSL loader on any text: YAML or JSON parsing, the model, validation and planning must
//! answer with a plan or problems, never panic.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = baton_core::load_definition(Some("fuzz.yaml"), text);
    }
});
