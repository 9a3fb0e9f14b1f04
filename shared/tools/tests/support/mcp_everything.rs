//! `@modelcontextprotocol/server-everything` from `tests/mcp/node_modules` (installed by
//! `scripts/check-prereqs`), shared by the tests of the `mcp` tool and of the AWS worker that runs
//! it: its entry point, and a Streamable HTTP instance on a free port.

#![allow(dead_code)]

use std::net::TcpListener;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// Where the npm MCP servers are installed.
pub fn servers_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/mcp/node_modules/@modelcontextprotocol")
}

/// `@modelcontextprotocol/server-everything`'s entry point.
pub fn everything() -> String {
    let p = servers_dir().join("server-everything/dist/index.js");
    assert!(p.exists(), "{} is missing: run scripts/check-prereqs", p.display());
    p.display().to_string()
}

/// `server-everything streamableHttp` on a free port, started and listening; stopped when dropped.
pub struct HttpServer {
    child: std::process::Child,
    /// The port it listens on (`http://127.0.0.1:<port>/mcp`).
    pub port: u16,
}

impl HttpServer {
    pub fn start() -> Self {
        let port = TcpListener::bind("127.0.0.1:0").expect("a free port").local_addr().expect("addr").port();
        let child = std::process::Command::new("node")
            .arg(everything())
            .arg("streamableHttp")
            .env("PORT", port.to_string())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("node starts");
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "server-everything did not listen on {port}");
            std::thread::sleep(Duration::from_millis(100));
        }
        Self { child, port }
    }
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
