//! Connections to MCP servers, kept per worker process: a stdio server is started once and
//! reused by every call to it, an HTTP server keeps its session. A connection that failed
//! (closed, timed out, broke the protocol) is dropped, which ends a stdio server's process, and
//! the next call starts a fresh one.

use std::collections::HashMap;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use baton_core::engine::{ErrorKind, StepError};
use baton_core::model::Network;
use baton_core::plan::tools::McpTransport;
use reqwest::header::{HeaderName, HeaderValue};
use rmcp::ServiceExt;
use rmcp::service::{RoleClient, RunningService};
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use rmcp::transport::{StreamableHttpClientTransport, TokioChildProcess};
use tokio::sync::Mutex;

use crate::net_guard::{self, GuardedResolver, Policy};
use crate::secrets::{Revealed, mask};

/// A live client of one server.
pub(super) type Client = RunningService<RoleClient, ()>;

/// What identifies a server: its transport as written (secrets as placeholders) and the network
/// policy it is reached under, so two workflows that declare the same server share it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(super) struct ServerKey {
    transport: McpTransport,
    policy: Option<Policy>,
}

impl ServerKey {
    /// The key of `transport` reached under `network` (HTTP servers only).
    pub(super) fn new(transport: &McpTransport, network: Option<&Network>, refuse_loopback: bool) -> Self {
        let policy = transport.url.as_ref().map(|_| {
            let mut n = network.cloned().unwrap_or_default();
            n.allow_private |= transport.allow_private;
            Policy::from(&n).refusing_loopback(refuse_loopback)
        });
        Self { transport: transport.clone(), policy }
    }
}

/// The servers this process is connected to.
#[derive(Default)]
pub(super) struct Sessions {
    live: Mutex<HashMap<ServerKey, Arc<Client>>>,
}

impl Sessions {
    /// The client of `key`, connecting (within `limit`) when there is none.
    pub(super) async fn get(
        &self,
        key: &ServerKey,
        secrets: &Revealed,
        limit: Duration,
    ) -> Result<Arc<Client>, StepError> {
        // Held while connecting, so concurrent first calls start one process, not several.
        let mut live = self.live.lock().await;
        if let Some(c) = live.get(key)
            && !c.is_transport_closed()
        {
            return Ok(c.clone());
        }
        let client = match tokio::time::timeout(limit, connect(key, secrets)).await {
            Ok(c) => Arc::new(c?),
            Err(_) => {
                return Err(StepError::new(
                    ErrorKind::Timeout,
                    format!(
                        "{} did not complete the MCP handshake in {} ms",
                        describe(&key.transport),
                        limit.as_millis()
                    ),
                ));
            }
        };
        live.insert(key.clone(), client.clone());
        Ok(client)
    }

    /// Forgets the client of `key` (its process ends once no call holds it).
    pub(super) async fn drop_client(&self, key: &ServerKey) {
        self.live.lock().await.remove(key);
    }
}

/// `stdio server \`npx ...\`` or `HTTP server https://...`, secrets masked, for messages.
pub(super) fn describe(t: &McpTransport) -> String {
    match (&t.command, &t.url) {
        (Some(c), _) => format!(
            "stdio server `{}`",
            mask(&[c.clone()].iter().chain(&t.args).cloned().collect::<Vec<_>>().join(" "))
        ),
        (None, Some(u)) => format!("HTTP server {}", mask(u)),
        (None, None) => "an MCP server without `command` or `url`".to_owned(),
    }
}

async fn connect(key: &ServerKey, secrets: &Revealed) -> Result<Client, StepError> {
    let t = &key.transport;
    let what = describe(t);
    let failed = |kind: ErrorKind, e: &dyn std::fmt::Display| {
        StepError::new(kind, secrets.scrub(&format!("cannot start an MCP session with {what}: {e}")))
    };
    match (&t.command, &t.url, &key.policy) {
        (Some(command), _, _) => {
            let mut cmd = tokio::process::Command::new(secrets.reveal(command));
            cmd.args(t.args.iter().map(|a| secrets.reveal(a)));
            for (k, v) in &t.env {
                cmd.env(k, secrets.reveal(v));
            }
            // The server's log would interleave with the worker's; the protocol is on stdout.
            let (process, _) = TokioChildProcess::builder(cmd)
                .stderr(Stdio::null())
                .spawn()
                .map_err(|e| failed(ErrorKind::Connect, &e))?;
            ().serve(process).await.map_err(|e| failed(ErrorKind::Connect, &e))
        }
        (None, Some(url), Some(policy)) => {
            let target = reqwest::Url::parse(&secrets.reveal(url))
                .map_err(|e| StepError::new(ErrorKind::Tool, format!("invalid MCP server URL {}: {e}", mask(url))))?;
            policy.check_url(&target).map_err(|r| StepError::new(ErrorKind::NetworkRefused, r.to_string()))?;
            let shared = Arc::new(policy.clone());
            let http = reqwest::Client::builder()
                .user_agent(concat!("baton/", env!("CARGO_PKG_VERSION")))
                .dns_resolver(GuardedResolver::new(shared.clone()))
                // Headers may carry secrets: a redirect to another origin is not followed.
                .redirect(net_guard::redirect_policy(shared, true))
                .no_proxy()
                .build()
                .map_err(|e| failed(ErrorKind::Tool, &e))?;
            let mut headers = HashMap::new();
            for (k, v) in &t.headers {
                let name = HeaderName::from_bytes(k.as_bytes())
                    .map_err(|_| StepError::new(ErrorKind::Tool, format!("invalid header name `{k}` of {what}")))?;
                let mut value = HeaderValue::from_str(&secrets.reveal(v)).map_err(|_| {
                    StepError::new(ErrorKind::Tool, format!("invalid value for header `{k}` of {what}"))
                })?;
                value.set_sensitive(v != &mask(v));
                headers.insert(name, value);
            }
            let config = StreamableHttpClientTransportConfig::with_uri(target.as_str()).custom_headers(headers);
            let transport = StreamableHttpClientTransport::with_client(http, config);
            ().serve(transport).await.map_err(|e| match net_guard::refusal(&e) {
                Some(refused) => StepError::new(ErrorKind::NetworkRefused, format!("{what}: {refused}")),
                None => failed(ErrorKind::Connect, &e),
            })
        }
        _ => Err(StepError::new(ErrorKind::Tool, format!("{what}: nothing to connect to"))),
    }
}
