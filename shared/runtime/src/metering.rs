//! Per-run accounting of cloud requests. Adapters report each request they send with
//! [`record`]; work done for one run runs inside [`measure`], which collects what that work
//! sent. Outside a measured scope, records only reach the process-wide hook (benchmarks).

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::future::Future;

/// Requests (and capacity units) by `Service.Operation` (e.g. `SQS.SendMessageBatch`,
/// `DynamoDB.WriteUnits`).
pub type Usage = BTreeMap<String, u64>;

tokio::task_local! {
    static SCOPE: RefCell<Usage>;
}

/// Adds `n` to `key` in the current measured scope, if any.
pub fn record(key: &str, n: u64) {
    let _ = SCOPE.try_with(|u| *u.borrow_mut().entry(key.to_owned()).or_insert(0) += n);
}

/// Runs `f` and returns what it recorded (nested scopes report to the innermost only).
pub async fn measure<F: Future>(f: F) -> (F::Output, Usage) {
    SCOPE
        .scope(RefCell::new(Usage::new()), async move {
            let out = f.await;
            let usage = SCOPE.with(|u| std::mem::take(&mut *u.borrow_mut()));
            (out, usage)
        })
        .await
}

/// Adds `b` into `a`.
pub fn add(a: &mut Usage, b: &Usage) {
    for (k, v) in b {
        *a.entry(k.clone()).or_insert(0) += v;
    }
}

/// Requests in `u` (capacity-unit entries excluded).
pub fn requests(u: &Usage) -> u64 {
    u.iter().filter(|(k, _)| !k.ends_with("Units")).map(|(_, v)| v).sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn scopes_collect_what_their_work_records() {
        record("outside", 1);
        let ((), u) = measure(async {
            record("SQS.SendMessageBatch", 1);
            record("DynamoDB.WriteUnits", 4);
            tokio::task::yield_now().await;
            record("SQS.SendMessageBatch", 1);
        })
        .await;
        assert_eq!(u.get("SQS.SendMessageBatch"), Some(&2));
        assert_eq!(requests(&u), 2);
        assert!(!u.contains_key("outside"));
    }
}
