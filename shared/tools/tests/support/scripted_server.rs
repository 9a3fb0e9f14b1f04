//! A loopback HTTP server for protocol tests: it reads each request (method, path, headers,
//! body) and answers the n-th one from a script. Shared by the OpenAI-compatible, Bedrock and
//! network-guard tests (the aws crate includes this file by path).

#![allow(dead_code, clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};

use serde_json::Value;

/// What the server answers to the n-th request: (status, extra headers, body).
pub type Reply = (u16, Vec<(&'static str, &'static str)>, Value);

/// One request as the server saw it.
#[derive(Debug, Clone)]
pub struct Seen {
    /// `GET`, `POST`, ...
    pub method: String,
    /// Path and query.
    pub path: String,
    /// Header names lower-cased.
    pub headers: BTreeMap<String, String>,
    /// The body as sent.
    pub raw: String,
    /// The body as JSON (`null` when empty, a string when it is not JSON).
    pub body: Value,
}

/// Reads one request; `None` when the connection closed first.
pub fn read_request(reader: &mut BufReader<TcpStream>) -> Option<Seen> {
    let mut line = String::new();
    if reader.read_line(&mut line).ok()? == 0 {
        return None;
    }
    let mut parts = line.split_whitespace();
    let (method, path) = (parts.next()?.to_owned(), parts.next()?.to_owned());
    let mut headers = BTreeMap::new();
    loop {
        let mut h = String::new();
        reader.read_line(&mut h).unwrap();
        if h.trim().is_empty() {
            break;
        }
        let (k, v) = h.split_once(':').unwrap();
        headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_owned());
    }
    let len = headers.get("content-length").map_or(0, |l| l.parse().unwrap());
    let mut body = vec![0; len];
    reader.read_exact(&mut body).unwrap();
    let raw = String::from_utf8(body).unwrap();
    let body = if raw.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&raw).unwrap_or_else(|_| Value::String(raw.clone()))
    };
    Some(Seen { method, path, headers, raw, body })
}

/// Writes a JSON reply and closes the exchange.
pub fn write_reply(stream: &mut TcpStream, status: u16, headers: &[(&str, String)], body: &str) {
    let mut out = format!(
        "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    for (k, v) in headers {
        out.push_str(&format!("{k}: {v}\r\n"));
    }
    out.push_str("\r\n");
    out.push_str(body);
    let _ = stream.write_all(out.as_bytes());
}

/// A scripted server and what it saw.
pub struct Server {
    /// `http://127.0.0.1:<port>`.
    pub base: String,
    /// Every request, in order.
    pub requests: Arc<Mutex<Vec<Seen>>>,
}

impl Server {
    /// The requests so far.
    pub fn seen(&self) -> Vec<Seen> {
        self.requests.lock().unwrap().clone()
    }
}

/// Answers the n-th request with `script[n]` (the last reply once the script runs out). With
/// `expect`, every request must be that method and path.
pub fn serve(script: Vec<Reply>, expect: Option<(&'static str, &'static str)>) -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let requests = Arc::new(Mutex::new(Vec::new()));
    let seen = requests.clone();
    std::thread::spawn(move || {
        for (n, stream) in listener.incoming().enumerate() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let Some(request) = read_request(&mut reader) else { continue };
            if let Some((method, path)) = expect {
                assert_eq!((request.method.as_str(), request.path.as_str()), (method, path));
            }
            seen.lock().unwrap().push(request);
            let (status, headers, reply) = script.get(n).cloned().unwrap_or_else(|| script.last().cloned().unwrap());
            let headers: Vec<(&str, String)> = headers.iter().map(|(k, v)| (*k, (*v).to_owned())).collect();
            write_reply(&mut stream, status, &headers, &reply.to_string());
        }
    });
    Server { base, requests }
}
