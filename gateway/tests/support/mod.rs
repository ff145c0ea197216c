//! What the gateway's integration tests share: the app's credentials, a
//! raw WebSocket client that speaks the protocol (ringws's test client,
//! `crate::common`, which each test crate includes), and signed HTTP API
//! requests written by hand.

#![allow(dead_code, reason = "each test crate uses part of it")]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ringws_gateway::sign;
use serde_json::Value;

use crate::common::Client;

pub const KEY: &str = "app-key";
pub const SECRET: &str = "app-secret";

/// The next message as JSON, with a `data` string parsed once more
/// (the protocol encodes most data twice).
pub fn next(c: &mut Client) -> Value {
    let t = c.next_text();
    let mut v: Value = serde_json::from_str(&t).unwrap_or_else(|e| panic!("{e}: {t}"));
    if let Some(Value::String(d)) = v.get("data") {
        if let Ok(inner) = serde_json::from_str::<Value>(d) {
            v["data"] = inner;
        }
    }
    v
}

/// The next message that is not a `skip` event.
pub fn next_but(c: &mut Client, skip: &str) -> Value {
    loop {
        let v = next(c);
        if v["event"] != skip {
            return v;
        }
    }
}

/// Connects to the app and returns the client and its socket id.
pub fn connect(addr: SocketAddr) -> (Client, String) {
    let mut c = Client::open(
        addr,
        &format!("/app/{KEY}?protocol=7&client=js&version=8.4.0"),
    );
    let hello = next(&mut c);
    assert_eq!(hello["event"], "pusher:connection_established", "{hello}");
    assert_eq!(hello["data"]["activity_timeout"], 120);
    let id = hello["data"]["socket_id"].as_str().unwrap().to_owned();
    (c, id)
}

pub fn send(c: &mut Client, v: Value) {
    c.text(&v.to_string());
}

pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// An HTTP request as written; the status and the body.
pub fn raw_http(addr: SocketAddr, method: &str, target: &str, body: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(
        s,
        "{method} {target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    let status = out[9..12].parse().unwrap();
    let body = out
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

/// A request to the HTTP API signed at `at` (unix seconds).
pub fn api(
    addr: SocketAddr,
    method: &str,
    path: &str,
    params: &[(&str, &str)],
    body: &str,
    at: u64,
) -> (u16, String) {
    let q = sign::sign_api_request(KEY, SECRET, method, path, params, body.as_bytes(), at);
    raw_http(addr, method, &format!("{path}?{q}"), body)
}

/// [`api`] signed now, the body as JSON (`Null` if it is not).
pub fn api_json(
    addr: SocketAddr,
    method: &str,
    path: &str,
    params: &[(&str, &str)],
    body: &str,
) -> (u16, Value) {
    let (status, body) = api(addr, method, path, params, body, now());
    (status, serde_json::from_str(&body).unwrap_or(Value::Null))
}
