//! Signed task-link requests: method, path, query, headers and body from the input (split at
//! NUL bytes). Reading the request, checking its signature and parsing its answer must never
//! panic, and no forged signature verifies.
#![no_main]

use baton_runtime::callback::{CallbackRequest, CallbackSigner, parse_answer};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let mut parts = data.splitn(6, |b| *b == 0);
    let mut next = || parts.next().map(|p| String::from_utf8_lossy(p).into_owned()).unwrap_or_default();
    let (method, path, query, content_type, accept) = (next(), next(), next(), next(), next());
    let body = next().into_bytes();
    let req = CallbackRequest::new(&method, &path, &query, Some(&content_type), Some(&accept), body);
    static SIGNER: std::sync::OnceLock<Option<CallbackSigner>> = std::sync::OnceLock::new();
    let Some(signer) = SIGNER.get_or_init(|| {
        CallbackSigner::new(b"a-fuzzing-secret-of-at-least-32-bytes!!", "http://localhost", 60_000).ok()
    }) else {
        return;
    };
    let task = req.path.strip_prefix("/tasks/").unwrap_or(&req.path);
    let exp = req.query.split('&').find_map(|kv| kv.strip_prefix("exp=")).and_then(|e| e.parse::<u64>().ok());
    let sig = req.query.split('&').find_map(|kv| kv.strip_prefix("sig=")).unwrap_or_default();
    if let Some(exp) = exp {
        let forged = signer.verify(task, exp, sig, 0).is_ok();
        assert!(!forged || sig == signer.sign(task, exp), "a signature that is not the task's verified");
    }
    let _ = parse_answer(&req);
});
