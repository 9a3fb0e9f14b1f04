//! jq expressions and `{{ }}` templates as workflows write them: compiling any text or JSON
//! must answer with a program or an error, never panic. (Evaluation is bounded per step by
//! the engine, not here: a fuzzer would find `range(1e9)` and wait.)
#![no_main]

use baton_core::expr::{Expr, Template};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let _ = Expr::compile(text);
    let _ = Template::compile(&serde_json::Value::String(text.to_owned()));
    if let Ok(v) = serde_json::from_str::<serde_json::Value>(text) {
        let _ = Template::compile(&v);
    }
});
