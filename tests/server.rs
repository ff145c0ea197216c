//! The real server on 127.0.0.1:0, spoken to with raw bytes.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use ringws::app::{App, Echo};
use ringws::{Config, ServerHandle};

mod common;
use common::masked_frame as frame;

const KEY_REQ: &str = "GET /chat HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";
const KEY_RESP: &[u8] = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n";

fn config() -> Config {
    Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        threads: 1,
        close_timeout: Duration::from_millis(300),
        handshake_timeout: Duration::from_millis(300),
        backend: common::backend(),
        incremental_reads: common::incremental(),
        ..Config::default()
    }
}

fn start(cfg: Config) -> ServerHandle {
    echo_server(cfg).expect("server starts")
}

/// The bytes of an unmasked server frame.
fn server_frame(b0: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = vec![b0];
    match payload.len() {
        n if n < 126 => out.push(n as u8),
        n if n <= 0xFFFF => {
            out.push(126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    out.extend_from_slice(payload);
    out
}

struct Client {
    s: TcpStream,
}

impl Client {
    fn raw(addr: SocketAddr) -> Client {
        let s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        Client { s }
    }

    fn open(addr: SocketAddr) -> Client {
        let mut c = Client::raw(addr);
        c.send(KEY_REQ.as_bytes());
        assert_eq!(c.read_exact(KEY_RESP.len()), KEY_RESP);
        c
    }

    fn send(&mut self, bytes: &[u8]) {
        self.s.write_all(bytes).unwrap();
    }

    fn read_exact(&mut self, n: usize) -> Vec<u8> {
        let mut b = vec![0; n];
        self.s.read_exact(&mut b).unwrap();
        b
    }

    /// Reads one server frame: (first byte, payload). Checks it is unmasked.
    fn recv(&mut self) -> (u8, Vec<u8>) {
        let h = self.read_exact(2);
        assert_eq!(h[1] & 0x80, 0, "server frames are not masked");
        let len = match h[1] & 0x7F {
            126 => u16::from_be_bytes(self.read_exact(2).try_into().unwrap()) as usize,
            127 => u64::from_be_bytes(self.read_exact(8).try_into().unwrap()) as usize,
            n => n as usize,
        };
        (h[0], self.read_exact(len))
    }

    fn expect_close(&mut self, code: u16) {
        let (b0, p) = self.recv();
        assert_eq!(b0, 0x88, "expected Close, got {b0:#x} {p:?}");
        assert_eq!(
            u16::from_be_bytes([p[0], p[1]]),
            code,
            "reason: {}",
            String::from_utf8_lossy(&p[2..])
        );
    }

    /// The server closed the TCP connection (EOF, or a reset after it).
    fn expect_eof(&mut self) {
        let mut b = [0u8; 64];
        match self.s.read(&mut b) {
            Ok(0) => {}
            Ok(n) => panic!("expected EOF, got {:?}", &b[..n]),
            Err(e) if e.kind() == ErrorKind::ConnectionReset => {}
            Err(e) => panic!("expected EOF, got {e}"),
        }
    }

    fn read_to_end(&mut self) -> String {
        let mut v = Vec::new();
        self.s.read_to_end(&mut v).unwrap();
        String::from_utf8_lossy(&v).into_owned()
    }
}

fn handshake_then_echo_of_text_and_binary() {
    let server = start(config());
    let mut c = Client::open(server.local_addr());
    for len in [0usize, 1, 125, 126, 127, 65535, 65536, 100_000, 1 << 20] {
        let text: Vec<u8> = (0..len).map(|i| b'a' + (i % 26) as u8).collect();
        c.send(&frame(0x81, &text));
        assert_eq!(c.recv(), (0x81, text), "text of {len}");
        let bin: Vec<u8> = (0..len).map(|i| (i * 31) as u8).collect();
        c.send(&frame(0x82, &bin));
        assert_eq!(c.recv(), (0x82, bin), "binary of {len}");
    }
    c.send(&frame(0x88, b"\x03\xe8"));
    assert_eq!(c.recv(), (0x88, b"\x03\xe8".to_vec()));
    c.expect_eof();
    server.shutdown(GRACE);
}

fn frame_in_the_same_packet_as_the_handshake() {
    let server = start(config());
    let mut c = Client::raw(server.local_addr());
    let mut bytes = KEY_REQ.as_bytes().to_vec();
    bytes.extend(frame(0x81, b"early"));
    c.send(&bytes);
    assert_eq!(c.read_exact(KEY_RESP.len()), KEY_RESP);
    assert_eq!(c.recv(), (0x81, b"early".to_vec()));
    server.shutdown(GRACE);
}

fn pipelined_messages_come_back_in_order_byte_for_byte() {
    let server = start(config());
    let mut c = Client::open(server.local_addr());
    let mut wire = Vec::new();
    let mut want = Vec::new();
    for i in 0..2000u32 {
        let p = i.to_string().repeat((i % 7) as usize + 1);
        wire.extend(frame(0x81, p.as_bytes()));
        want.extend(server_frame(0x81, p.as_bytes()));
    }
    // Dribble it in odd-sized pieces so frames straddle reads.
    let writer = {
        let mut s = c.s.try_clone().unwrap();
        std::thread::spawn(move || {
            for chunk in wire.chunks(1777) {
                s.write_all(chunk).unwrap();
            }
        })
    };
    assert_eq!(c.read_exact(want.len()), want);
    writer.join().unwrap();
    server.shutdown(GRACE);
}

/// The server writes its header over the client's, just before the payload,
/// when the client's header came in the same read; every other split of a
/// frame across reads takes the other path. Both must echo it intact.
fn frames_split_across_reads_come_back_intact() {
    let server = start(config());
    let mut c = Client::open(server.local_addr());
    let mut frames: Vec<(Vec<u8>, Vec<u8>)> = [5usize, 300]
        .iter()
        .map(|&n| {
            let p: Vec<u8> = (0..n).map(|i| (i * 7) as u8).collect();
            (frame(0x82, &p), p)
        })
        .collect();
    // A 5-byte payload with a 64-bit length: legal, and a longer header.
    let mut long = vec![0x82, 0x80 | 127, 0, 0, 0, 0, 0, 0, 0, 5, 0, 0, 0, 0];
    long.extend_from_slice(b"hello");
    frames.push((long, b"hello".to_vec()));
    for (wire, payload) in &frames {
        let hdr = wire.len() - payload.len();
        for split in [1, 2, hdr - 4, hdr - 1, hdr, hdr + 1] {
            c.send(&wire[..split]);
            // Long enough for the server to read the first part on its own.
            std::thread::sleep(Duration::from_millis(20));
            c.send(&wire[split..]);
            assert_eq!(c.recv(), (0x82, payload.clone()), "split at {split}");
        }
    }
    server.shutdown(GRACE);
}

fn fragments_with_pings_between() {
    let server = start(config());
    let mut c = Client::open(server.local_addr());
    let mut wire = frame(0x01, b"Hello, ");
    wire.extend(frame(0x89, b"ping-1"));
    wire.extend(frame(0x00, b"fragmented "));
    wire.extend(frame(0x8A, b"unsolicited pong"));
    wire.extend(frame(0x80, b"world"));
    c.send(&wire);
    assert_eq!(c.recv(), (0x8A, b"ping-1".to_vec()));
    assert_eq!(c.recv(), (0x81, b"Hello, fragmented world".to_vec()));
    server.shutdown(GRACE);
}

fn close_paths() {
    let server = start(config());
    let addr = server.local_addr();

    // Client-initiated with a reason: the code is echoed, then TCP closes.
    let mut c = Client::open(addr);
    c.send(&frame(0x88, b"\x0f\xa0going"));
    assert_eq!(c.recv(), (0x88, b"\x0f\xa0".to_vec()));
    c.expect_eof();

    // Empty Close: answered with an empty Close.
    let mut c = Client::open(addr);
    c.send(&frame(0x88, b""));
    assert_eq!(c.recv(), (0x88, vec![]));
    c.expect_eof();

    // Invalid code, truncated code, bad UTF-8 reason.
    for (payload, code) in [
        (&b"\x03\xed"[..], 1002),
        (b"\x03", 1002),
        (b"\x03\xe8\xc0", 1007),
    ] {
        let mut c = Client::open(addr);
        c.send(&frame(0x88, payload));
        c.expect_close(code);
        c.expect_eof();
    }
    server.shutdown(GRACE);
}

/// A peer that sends a message and then ends its input at once, or a
/// moment later: the server sends the echo and closes. On epoll a read shorter than its
/// buffer ends a socket's readiness without the read that would say
/// `EAGAIN`, unless the event reported a hang-up; either way the end of
/// input must not be missed (the read timeout would fail the test).
fn end_of_input_right_after_a_message() {
    let server = start(config());
    let addr = server.local_addr();
    for i in 0..30 {
        let mut c = Client::open(addr);
        c.send(&frame(0x81, b"last words"));
        if i % 3 > 0 {
            std::thread::sleep(Duration::from_millis(i % 3));
        }
        c.s.shutdown(std::net::Shutdown::Write).unwrap();
        // The echo, whole, then the end: what the turn queued goes out
        // before the close, on every backend.
        let mut got = Vec::new();
        let mut b = [0u8; 64];
        loop {
            match c.s.read(&mut b) {
                Ok(0) => break,
                Ok(n) => got.extend_from_slice(&b[..n]),
                Err(e) => panic!("connection {i}: expected the echo and EOF, got {e}"),
            }
        }
        assert_eq!(got, server_frame(0x81, b"last words"), "connection {i}");
    }
    server.shutdown(GRACE);
}

/// A violation gets a Close with `code`; the server then waits for the
/// client's Close and closes TCP when it comes.
fn violation(addr: SocketAddr, bytes: &[u8], code: u16) {
    let mut c = Client::open(addr);
    c.send(bytes);
    c.expect_close(code);
    c.send(&frame(0x88, &code.to_be_bytes()));
    c.expect_eof();
}

fn bad_input_of_each_kind() {
    let server = start(Config {
        max_message_size: 1000,
        max_frame_size: 600,
        ..config()
    });
    let addr = server.local_addr();
    violation(addr, &server_frame(0x81, b"unmasked"), 1002);
    violation(addr, &frame(0xC1, b"rsv1"), 1002);
    violation(addr, &frame(0x83, b"reserved opcode"), 1002);
    violation(addr, &frame(0x80, b"no message to continue"), 1002);
    violation(addr, &frame(0x09, b"fragmented ping"), 1002);
    violation(addr, &frame(0x89, &[0; 126]), 1002);
    let mut two = frame(0x01, b"a");
    two.extend(frame(0x81, b"b"));
    violation(addr, &two, 1002);
    violation(addr, &frame(0x81, b"bad \xff utf-8"), 1007);
    // Invalid UTF-8 split across fragments: fails at the bad byte.
    let mut split = frame(0x01, b"\xf0\x9f");
    split.extend(frame(0x80, b"\x98"));
    split.extend(frame(0x80, b"\x28"));
    violation(addr, &split, 1007);
    violation(addr, &frame(0x82, &[0; 601]), 1009);
    let mut big = frame(0x02, &[0; 600]);
    big.extend(frame(0x80, &[0; 401]));
    violation(addr, &big, 1009);
    // A 64-bit length with the top bit set.
    let mut c = Client::open(addr);
    c.send(b"\x82\xff\x80\x00\x00\x00\x00\x00\x00\x00abcd");
    c.expect_close(1002);
    c.expect_eof(); // frame boundaries are lost: the close timeout ends it
    server.shutdown(GRACE);
}

fn invalid_utf8_fails_before_the_frame_is_complete() {
    let server = start(config());
    let mut c = Client::open(server.local_addr());
    let wire = frame(0x81, b"valid start \xff then more bytes that never come");
    c.send(&wire[..20]); // header (6) + "valid start \xff" (13), not the rest
    c.expect_close(1007);
    server.shutdown(GRACE);
}

fn close_timeout_when_the_peer_never_answers() {
    let server = start(config());
    let mut c = Client::open(server.local_addr());
    c.send(&server_frame(0x82, b"unmasked"));
    c.expect_close(1002);
    let t = Instant::now();
    c.expect_eof();
    let waited = t.elapsed();
    assert!(
        waited >= Duration::from_millis(200),
        "closed after {waited:?}"
    );
    server.shutdown(GRACE);
}

fn handshake_answers() {
    let server = start(config());
    let addr = server.local_addr();
    let cases: [(String, &str); 6] = [
        (
            KEY_REQ.replace("13", "8"),
            "HTTP/1.1 426 Upgrade Required\r\nSec-WebSocket-Version: 13\r\n",
        ),
        (
            KEY_REQ.replace("Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n", ""),
            "HTTP/1.1 400 Bad Request\r\n",
        ),
        (
            KEY_REQ.replace("GET", "POST"),
            "HTTP/1.1 400 Bad Request\r\n",
        ),
        (
            KEY_REQ.replace("Upgrade: websocket", "Upgrade: h2c"),
            "HTTP/1.1 400 Bad Request\r\n",
        ),
        (
            "NOT HTTP AT ALL\r\n\r\n".to_string(),
            "HTTP/1.1 400 Bad Request\r\n",
        ),
        (
            format!("GET / HTTP/1.1\r\nX-Big: {}\r\n\r\n", "x".repeat(9000)),
            "HTTP/1.1 431 Request Header Fields Too Large\r\n",
        ),
    ];
    for (req, want) in cases {
        let mut c = Client::raw(addr);
        c.send(req.as_bytes());
        let resp = c.read_to_end();
        assert!(resp.starts_with(want), "{resp:?} for {req:?}");
        assert!(resp.contains("\r\nConnection: close\r\n"), "{resp:?}");
        let body = resp.split("\r\n\r\n").nth(1).unwrap();
        assert_eq!(body.lines().count(), 1, "one-line reason: {body:?}");
    }
    server.shutdown(GRACE);
}

/// A refused connection is shut down for writing once its answer is out,
/// and closed when the client goes: that shutdown must never reach the
/// connection accepted next (on io_uring a SHUTDOWN runs on a worker
/// thread, after a CLOSE behind it could free its descriptor). About one
/// round in 200 failed before the close waited for the shutdown.
fn refusals_closed_at_once_do_not_touch_the_next_connection() {
    let server = start(Config {
        threads: 2,
        ..config()
    });
    let addr = server.local_addr();
    let bad = KEY_REQ.replace("Sec-WebSocket-Version: 13", "Sec-WebSocket-Version: 8");
    for round in 0..600 {
        let mut c = Client::raw(addr);
        c.send(bad.as_bytes());
        let mut head = [0u8; 12];
        c.s.read_exact(&mut head).unwrap();
        assert_eq!(&head, b"HTTP/1.1 426", "round {round}");
        drop(c);
        let mut c = Client::raw(addr);
        c.send(KEY_REQ.as_bytes());
        let mut resp = vec![0u8; KEY_RESP.len()];
        match c.s.read_exact(&mut resp) {
            Ok(()) => assert_eq!(resp, KEY_RESP, "round {round}"),
            Err(e) => panic!("round {round}: no 101 ({e})"),
        }
    }
    server.shutdown(GRACE);
}

fn handshake_timeout() {
    let server = start(config());
    let mut c = Client::raw(server.local_addr());
    c.send(b"GET / HTTP/1.1\r\nHost: slow");
    let t = Instant::now();
    c.expect_eof();
    assert!(t.elapsed() >= Duration::from_millis(200));
    server.shutdown(GRACE);
}

fn max_connections_answers_503() {
    let server = start(Config {
        max_connections: 1,
        ..config()
    });
    let addr = server.local_addr();
    let mut first = Client::open(addr);
    let mut second = Client::raw(addr);
    second.send(KEY_REQ.as_bytes());
    assert!(second
        .read_to_end()
        .starts_with("HTTP/1.1 503 Service Unavailable\r\n"));
    // The first one still works, and once it is gone a new one is let in.
    first.send(&frame(0x81, b"still here"));
    assert_eq!(first.recv(), (0x81, b"still here".to_vec()));
    first.send(&frame(0x88, b"\x03\xe8"));
    first.recv();
    first.expect_eof();
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let mut c = Client::raw(addr);
        c.send(KEY_REQ.as_bytes());
        let mut head = vec![0; 12];
        c.s.read_exact(&mut head).unwrap();
        if head == b"HTTP/1.1 101" {
            break;
        }
        assert!(Instant::now() < deadline, "never let in again");
        std::thread::sleep(Duration::from_millis(20));
    }
    server.shutdown(GRACE);
}

fn graceful_shutdown_sends_going_away() {
    let server = start(config());
    let mut c = Client::open(server.local_addr());
    let stopper = std::thread::spawn(move || server.shutdown(GRACE));
    c.expect_close(1001);
    c.send(&frame(0x88, b"\x03\xe9"));
    c.expect_eof();
    stopper.join().unwrap();
}

fn address_in_use_is_reported() {
    // Another ringws on the port (which SO_REUSEPORT alone would let in).
    let server = start(config());
    let err = echo_server(Config {
        listen: server.local_addr(),
        ..config()
    })
    .err()
    .expect("second server on the same port fails");
    assert!(err.to_string().contains("already in use"), "{err}");
    // Any other listener.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let err = echo_server(Config {
        listen: taken.local_addr().unwrap(),
        ..config()
    })
    .err()
    .expect("bind fails");
    assert!(err.to_string().contains("already in use"), "{err}");
    server.shutdown(GRACE);
}

fn a_peer_that_stops_reading_is_disconnected_after_the_write_timeout() {
    let server = start(Config {
        write_timeout: Duration::from_millis(300),
        ..config()
    });
    // A small receive buffer, so the echoes back up quickly.
    let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    sock.set_recv_buffer_size(4096).unwrap();
    sock.connect(&server.local_addr().into()).unwrap();
    let mut c = Client { s: sock.into() };
    c.s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    c.send(KEY_REQ.as_bytes());
    assert_eq!(c.read_exact(KEY_RESP.len()), KEY_RESP);
    let msg = frame(0x82, &[7u8; 16 << 10]);
    let t = Instant::now();
    let failed = loop {
        if c.s.write_all(&msg).is_err() {
            break true;
        }
        if t.elapsed() > Duration::from_secs(10) {
            break false;
        }
    };
    assert!(
        failed,
        "the server kept the connection of a peer that never reads"
    );
    assert!(t.elapsed() >= Duration::from_millis(300));
    server.shutdown(GRACE);
}

fn a_dry_read_pool_still_echoes_every_message() {
    // Two pooled buffers for twenty busy connections: reads keep finding the
    // pool empty (ENOBUFS), the returned buffers go back at once, and reads
    // fall back to one-off buffers when even that is not enough.
    let server = start(Config {
        read_buffers: 2,
        read_buffer_size: 1024,
        ..config()
    });
    let addr = server.local_addr();
    let workers: Vec<_> = (0..20)
        .map(|w| {
            std::thread::spawn(move || {
                let mut c = Client::open(addr);
                for i in 0..200 {
                    let msg = format!("worker {w} message {i} {}", "x".repeat(i * 7 % 1500));
                    c.send(&frame(0x81, msg.as_bytes()));
                    assert_eq!(c.recv(), (0x81, msg.into_bytes()));
                }
            })
        })
        .collect();
    for w in workers {
        w.join().unwrap();
    }
    server.shutdown(GRACE);
}

/// Messages larger than one read buffer, whole and in fragments, come back
/// byte for byte: the read side re-arms as buffers come back, never losing
/// or reordering bytes. Written from another thread, so that the echo
/// flows back while the message still goes out.
fn large_messages_whole_and_fragmented() {
    let server = start(config());
    let addr = server.local_addr();
    for size in [2 << 10, 16 << 10, 1 << 20, 16 << 20] {
        for parts in [1, 7] {
            let mut c = Client::open(addr);
            let payload: Vec<u8> = (0..size).map(|i| (i * 7 + 3) as u8).collect();
            let mut wire = Vec::new();
            for p in 0..parts {
                let chunk = &payload[size * p / parts..size * (p + 1) / parts];
                let op = if p == 0 { 0x02 } else { 0x00 };
                let fin = if p + 1 == parts { 0x80 } else { 0 };
                wire.extend(frame(op | fin, chunk));
            }
            let mut w = c.s.try_clone().unwrap();
            let writer = std::thread::spawn(move || w.write_all(&wire).unwrap());
            c.s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
            let (b0, got) = c.recv();
            assert_eq!(b0, 0x82, "size {size} parts {parts}");
            assert!(got == payload, "size {size} parts {parts}: echo differs");
            writer.join().unwrap();
        }
    }
    server.shutdown(GRACE);
}

on_both_backends!(
    end_of_input_right_after_a_message,
    refusals_closed_at_once_do_not_touch_the_next_connection,
    large_messages_whole_and_fragmented,
    handshake_then_echo_of_text_and_binary,
    frame_in_the_same_packet_as_the_handshake,
    pipelined_messages_come_back_in_order_byte_for_byte,
    frames_split_across_reads_come_back_intact,
    fragments_with_pings_between,
    close_paths,
    bad_input_of_each_kind,
    invalid_utf8_fails_before_the_frame_is_complete,
    close_timeout_when_the_peer_never_answers,
    handshake_answers,
    handshake_timeout,
    max_connections_answers_503,
    graceful_shutdown_sends_going_away,
    address_in_use_is_reported,
    a_peer_that_stops_reading_is_disconnected_after_the_write_timeout,
    a_dry_read_pool_still_echoes_every_message,
);

/// How long a test's shutdown waits for closing handshakes.
const GRACE: std::time::Duration = std::time::Duration::from_secs(2);

/// The `ringws` binary's server: echo on every path.
fn echo_server(cfg: Config) -> Result<ServerHandle, ringws::StartError> {
    App::new(cfg).route_prefix("/", Echo).start()
}
