//! A raw WebSocket client for the integration tests: the handshake,
//! masked frames out, frames in, encoded by hand rather than by the code
//! under test.

#![allow(dead_code, reason = "each test crate uses part of it")]

std::thread_local! {
    /// The backend the current test runs on (see `on_both_backends!`).
    pub static BACKEND: std::cell::Cell<ringws::BackendKind> =
        const { std::cell::Cell::new(ringws::BackendKind::IoUring) };
    /// Whether it asks for incremental reads (io_uring only).
    pub static INCREMENTAL: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// The backend the current test runs on.
pub fn backend() -> ringws::BackendKind {
    BACKEND.with(|b| b.get())
}

/// Whether the current test asks for incremental reads.
pub fn incremental() -> bool {
    INCREMENTAL.with(|b| b.get())
}

/// Runs every test named on each backend, and on io_uring once more with
/// incremental reads: nothing above the runtime may tell them apart. Each
/// test reads its backend with `common::backend()`.
#[macro_export]
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod io_uring {
            $(#[test] fn $name() {
                $crate::common::BACKEND.with(|b| b.set(ringws::BackendKind::IoUring));
                super::$name()
            })*
        }
        mod epoll {
            $(#[test] fn $name() {
                $crate::common::BACKEND.with(|b| b.set(ringws::BackendKind::Epoll));
                super::$name()
            })*
        }
        mod io_uring_incremental {
            $(#[test] fn $name() {
                $crate::common::BACKEND.with(|b| b.set(ringws::BackendKind::IoUring));
                $crate::common::INCREMENTAL.with(|b| b.set(true));
                super::$name()
            })*
        }
    };
}

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// A raw client: the handshake, masked frames out, frames in; over TCP,
/// or any other stream (TLS).
pub struct Client<S = TcpStream> {
    pub s: S,
    pub buf: Vec<u8>,
}

impl Client {
    /// Connects and sends the upgrade request for `target` with `extra`
    /// header lines; returns the client and the response head.
    pub fn request(addr: SocketAddr, target: &str, extra: &str) -> (Client, String) {
        let s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        Client::request_on(s, target, extra)
    }

    pub fn open(addr: SocketAddr, target: &str) -> Client {
        let (c, head) = Client::request(addr, target, "");
        assert!(head.starts_with("HTTP/1.1 101 "), "{head}");
        c
    }
}

impl<S: Read + Write> Client<S> {
    /// Sends the upgrade request for `target` with `extra` header lines on
    /// the connected stream `s`; returns the client and the response head.
    pub fn request_on(mut s: S, target: &str, extra: &str) -> (Client<S>, String) {
        write!(
            s,
            "GET {target} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n{extra}\r\n"
        )
        .unwrap();
        let mut c = Client { s, buf: Vec::new() };
        let head = c.head();
        (c, head)
    }

    pub fn fill(&mut self) -> bool {
        let mut b = [0u8; 65536];
        match self.s.read(&mut b) {
            Ok(0) => false,
            Ok(n) => {
                self.buf.extend_from_slice(&b[..n]);
                true
            }
            Err(e) if e.kind() == ErrorKind::ConnectionReset => false,
            Err(e) => panic!("read: {e}"),
        }
    }

    /// The response head (up to the blank line); the rest stays buffered.
    pub fn head(&mut self) -> String {
        loop {
            if let Some(i) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head: Vec<u8> = self.buf.drain(..i + 4).collect();
                return String::from_utf8(head).unwrap();
            }
            assert!(self.fill(), "closed before a response head");
        }
    }

    /// The rest of the bytes until the server closes.
    pub fn rest(&mut self) -> Vec<u8> {
        while self.fill() {}
        std::mem::take(&mut self.buf)
    }

    pub fn send(&mut self, b0: u8, payload: &[u8]) {
        self.s.write_all(&masked_frame(b0, payload)).unwrap();
    }

    pub fn text(&mut self, t: &str) {
        self.send(0x81, t.as_bytes());
    }

    /// The next frame: first byte and payload; `None` once closed.
    pub fn frame(&mut self) -> Option<(u8, Vec<u8>)> {
        loop {
            if self.buf.len() >= 2 {
                let (b0, l) = (self.buf[0], (self.buf[1] & 0x7f) as usize);
                let (hlen, len) = match l {
                    126 if self.buf.len() >= 4 => {
                        (4, u16::from_be_bytes([self.buf[2], self.buf[3]]) as usize)
                    }
                    127 if self.buf.len() >= 10 => (
                        10,
                        u64::from_be_bytes(self.buf[2..10].try_into().unwrap()) as usize,
                    ),
                    126 | 127 => (usize::MAX, 0),
                    n => (2, n),
                };
                if hlen != usize::MAX && self.buf.len() >= hlen + len {
                    let p = self.buf[hlen..hlen + len].to_vec();
                    self.buf.drain(..hlen + len);
                    return Some((b0, p));
                }
            }
            if !self.fill() {
                return None;
            }
        }
    }

    /// The next data frame's text, answering Pings on the way.
    pub fn next_text(&mut self) -> String {
        loop {
            let (b0, p) = self.frame().expect("a frame");
            match b0 {
                0x81 => return String::from_utf8(p).unwrap(),
                0x89 => self.send(0x8a, &p),
                0x8a => {}
                _ => panic!("unexpected frame {b0:#x} {p:?}"),
            }
        }
    }
}

pub fn close_code(p: &[u8]) -> u16 {
    u16::from_be_bytes([p[0], p[1]])
}

/// A masked client frame: first byte `b0`, then `payload`.
pub fn masked_frame(b0: u8, payload: &[u8]) -> Vec<u8> {
    let key = [0xa1, 0xb2, 0xc3, 0xd4];
    let mut out = vec![b0];
    match payload.len() {
        n if n < 126 => out.push(0x80 | n as u8),
        n if n <= 0xFFFF => {
            out.push(0x80 | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(0x80 | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    out.extend_from_slice(&key);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
    out
}

/// A Prometheus exposition checked by `prometheus_client`'s parser
/// (`scripts/check_metrics.py`, which also fails on a family without HELP
/// or TYPE): every sample, by name with its labels.
pub fn parse_metrics(text: &str) -> std::collections::HashMap<String, f64> {
    use std::process::{Command, Stdio};
    // The repository's root: this crate's, or the one above a member's.
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .find(|d| d.join("scripts/check_metrics.py").exists())
        .expect("scripts/check_metrics.py above the crate");
    let mut child = Command::new("python3")
        .arg(root.join("scripts/check_metrics.py"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 runs");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "the Prometheus parser refused the exposition: {}\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| {
            let (k, v) = l.rsplit_once(' ').unwrap();
            (k.to_owned(), v.parse().unwrap())
        })
        .collect()
}
