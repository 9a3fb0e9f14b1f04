//! The local AWS emulator the S3 and `aws` tool tests talk to: `BATON_TEST_AWS_ENDPOINT`
//! (default http://127.0.0.1:4566), started with `localstack/up` when nothing answers there.

use std::net::TcpStream;
use std::time::Duration;

/// The emulator's endpoint, started first when it is down.
pub fn endpoint() -> String {
    let e = std::env::var("BATON_TEST_AWS_ENDPOINT").unwrap_or_else(|_| "http://127.0.0.1:4566".into());
    let addr = e.trim_start_matches("http://").trim_end_matches('/').to_owned();
    let addr = addr.parse().unwrap_or_else(|err| panic!("BATON_TEST_AWS_ENDPOINT {e}: {err}"));
    if TcpStream::connect_timeout(&addr, Duration::from_millis(300)).is_err() {
        let up = concat!(env!("CARGO_MANIFEST_DIR"), "/../../localstack/up");
        let started = std::process::Command::new(up).status().is_ok_and(|s| s.success());
        assert!(started, "localstack/up failed");
    }
    e
}
