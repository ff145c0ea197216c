//! Plain HTTP routes beside WebSocket routes on one listener: the real
//! server on 127.0.0.1:0, spoken to with raw bytes.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use ringws::app::{App, Echo, HttpReply, HttpResponse};
use ringws::{Config, ServerHandle};

mod common;
use common::Client;

on_both_backends!(
    get_with_body_and_headers,
    post_with_content_length,
    post_with_chunked_body,
    body_across_reads_and_expect_continue,
    pipelined_keep_alive,
    http10_closes,
    unknown_path_is_404,
    wrong_method_is_405_with_allow,
    body_past_the_limit_is_413,
    malformed_is_400,
    head_past_the_limit_is_431,
    slow_request_is_cut,
    deferred_response_from_another_thread,
    deferred_response_dropped_is_500,
    http_and_websocket_on_one_path,
    head_has_no_body,
    handler_panic_is_500,
    answers_survive_a_half_close,
);

fn start() -> ServerHandle {
    let cfg = Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        threads: 1,
        close_timeout: Duration::from_millis(300),
        handshake_timeout: Duration::from_millis(300),
        max_http_body: 1000,
        backend: common::backend(),
        incremental_reads: common::incremental(),
        ..Config::default()
    };
    App::new(cfg)
        .route("/chat", Echo)
        .get("/chat", |_req| HttpResponse::text(200, "chat page\n"))
        .route("/ws-only", Echo)
        .get("/health", |req| {
            HttpResponse::text(200, "ok\n").header("X-Full", req.query_param("full").unwrap_or("-"))
        })
        .post("/echo", |req| {
            let ct = req.header_str("content-type").unwrap_or("none").to_owned();
            HttpResponse::new(200).header("X-Type", ct).body(req.body())
        })
        .get("/later", |req| {
            let name = req.query_param("name").unwrap_or("").to_owned();
            HttpReply::defer(move |r| {
                std::thread::spawn(move || {
                    r.respond(HttpResponse::text(200, format!("hi {name}\n")))
                });
            })
        })
        .get("/dropped", |_req| HttpReply::defer(drop))
        .get("/panic", |_req| -> HttpResponse {
            panic!("handler panics on purpose")
        })
        .start()
        .expect("server starts")
}

fn connect(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.set_nodelay(true).unwrap();
    s
}

/// Everything the server sends until it closes.
fn read_all(s: &mut TcpStream) -> Vec<u8> {
    let mut out = Vec::new();
    let mut b = [0u8; 65536];
    loop {
        match s.read(&mut b) {
            Ok(0) => return out,
            Ok(n) => out.extend_from_slice(&b[..n]),
            Err(e) if e.kind() == ErrorKind::ConnectionReset => return out,
            Err(e) => panic!("read: {e} after {:?}", String::from_utf8_lossy(&out)),
        }
    }
}

/// Exactly `n` bytes.
fn read_n(s: &mut TcpStream, n: usize) -> Vec<u8> {
    let mut out = vec![0; n];
    s.read_exact(&mut out).unwrap();
    out
}

/// Sends `req` on a new connection; returns all the server sent until it
/// closed.
fn exchange(addr: SocketAddr, req: &[u8]) -> String {
    let mut s = connect(addr);
    s.write_all(req).unwrap();
    String::from_utf8(read_all(&mut s)).unwrap()
}

const HEALTH: &str = "HTTP/1.1 200 OK\r\nContent-Type: text/plain; charset=utf-8\r\nX-Full: 1\r\nContent-Length: 3\r\n";

fn get_with_body_and_headers() {
    let server = start();
    let got = exchange(
        server.local_addr(),
        b"GET /health?full=1 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(got, format!("{HEALTH}Connection: close\r\n\r\nok\n"));
    server.shutdown(Duration::ZERO);
}

fn post_with_content_length() {
    let server = start();
    let got = exchange(
        server.local_addr(),
        b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Type: text/x\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello",
    );
    assert_eq!(
        got,
        "HTTP/1.1 200 OK\r\nX-Type: text/x\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello"
    );
    server.shutdown(Duration::ZERO);
}

fn post_with_chunked_body() {
    let server = start();
    let got = exchange(
        server.local_addr(),
        b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n\
          5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\nX-Trailer: t\r\n\r\n",
    );
    assert_eq!(
        got,
        "HTTP/1.1 200 OK\r\nX-Type: none\r\nContent-Length: 11\r\nConnection: close\r\n\r\nhello world"
    );
    server.shutdown(Duration::ZERO);
}

fn body_across_reads_and_expect_continue() {
    let server = start();
    let mut s = connect(server.local_addr());
    s.write_all(
        b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\nExpect: 100-continue\r\n\r\n",
    )
    .unwrap();
    assert_eq!(read_n(&mut s, 25), b"HTTP/1.1 100 Continue\r\n\r\n");
    s.write_all(b"01234").unwrap();
    s.write_all(b"56789").unwrap();
    let resp = b"HTTP/1.1 200 OK\r\nX-Type: none\r\nContent-Length: 10\r\n\r\n0123456789";
    assert_eq!(read_n(&mut s, resp.len()), resp);
    // Kept: the next request on the same connection.
    s.write_all(b"GET /health?full=1 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let got = String::from_utf8(read_all(&mut s)).unwrap();
    assert_eq!(got, format!("{HEALTH}Connection: close\r\n\r\nok\n"));
    server.shutdown(Duration::ZERO);
}

fn pipelined_keep_alive() {
    let server = start();
    let got = exchange(
        server.local_addr(),
        b"GET /health?full=1 HTTP/1.1\r\nHost: x\r\n\r\n\
          POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nhi\
          GET /health?full=1 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(
        got,
        format!(
            "{HEALTH}\r\nok\n\
             HTTP/1.1 200 OK\r\nX-Type: none\r\nContent-Length: 2\r\n\r\nhi\
             {HEALTH}Connection: close\r\n\r\nok\n"
        )
    );
    server.shutdown(Duration::ZERO);
}

fn http10_closes() {
    let server = start();
    let got = exchange(server.local_addr(), b"GET /health?full=1 HTTP/1.0\r\n\r\n");
    assert_eq!(got, format!("{HEALTH}Connection: close\r\n\r\nok\n"));
    // With keep-alive asked for, it stays open for the next request.
    let got = exchange(
        server.local_addr(),
        b"GET /health?full=1 HTTP/1.0\r\nConnection: keep-alive\r\n\r\n\
          GET /health?full=1 HTTP/1.0\r\n\r\n",
    );
    assert_eq!(
        got,
        format!("{HEALTH}Connection: keep-alive\r\n\r\nok\n{HEALTH}Connection: close\r\n\r\nok\n")
    );
    server.shutdown(Duration::ZERO);
}

fn unknown_path_is_404() {
    let server = start();
    let got = exchange(
        server.local_addr(),
        b"GET /nope HTTP/1.1\r\nHost: x\r\n\r\n",
    );
    assert_eq!(
        got,
        "HTTP/1.1 404 Not Found\r\nContent-Type: text/plain\r\nContent-Length: 13\r\nConnection: close\r\n\r\nno such path\n"
    );
    server.shutdown(Duration::ZERO);
}

fn wrong_method_is_405_with_allow() {
    let server = start();
    let got = exchange(
        server.local_addr(),
        b"PUT /health HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n",
    );
    assert_eq!(
        got,
        "HTTP/1.1 405 Method Not Allowed\r\nContent-Type: text/plain\r\nAllow: GET, HEAD\r\nContent-Length: 19\r\nConnection: close\r\n\r\nmethod not allowed\n"
    );
    let got = exchange(
        server.local_addr(),
        b"GET /echo HTTP/1.1\r\nHost: x\r\n\r\n",
    );
    assert!(got.starts_with("HTTP/1.1 405 "), "{got}");
    assert!(got.contains("\r\nAllow: POST\r\n"), "{got}");
    server.shutdown(Duration::ZERO);
}

fn body_past_the_limit_is_413() {
    let server = start();
    let too_large = "HTTP/1.1 413 Content Too Large\r\nContent-Type: text/plain\r\nContent-Length: 23\r\nConnection: close\r\n\r\nrequest body too large\n";
    // Declared: refused before any of the body is sent.
    let got = exchange(
        server.local_addr(),
        b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 1001\r\n\r\n",
    );
    assert_eq!(got, too_large);
    // Chunked: refused at the chunk that passes the limit.
    let mut s = connect(server.local_addr());
    s.write_all(b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n200\r\n")
        .unwrap();
    s.write_all(&[b'a'; 0x200]).unwrap();
    s.write_all(b"\r\n200\r\n").unwrap();
    assert_eq!(String::from_utf8(read_all(&mut s)).unwrap(), too_large);
    server.shutdown(Duration::ZERO);
}

fn malformed_is_400() {
    let server = start();
    let got = exchange(server.local_addr(), b"GET /health HTTP/1.1\r\n\r\n");
    assert_eq!(
        got,
        "HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain\r\nContent-Length: 33\r\nConnection: close\r\n\r\nexactly one Host header required\n"
    );
    let got = exchange(
        server.local_addr(),
        b"GET /health HTTP/1.1\r\nHo st: x\r\n\r\n",
    );
    assert!(got.starts_with("HTTP/1.1 400 Bad Request\r\n"), "{got}");
    let got = exchange(
        server.local_addr(),
        b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
    );
    assert!(got.ends_with("\r\n\r\ninvalid chunk size\n"), "{got}");
    server.shutdown(Duration::ZERO);
}

fn head_past_the_limit_is_431() {
    let server = start();
    let req = format!(
        "GET /health HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
        "a".repeat(9000)
    );
    let mut s = connect(server.local_addr());
    // The server may close before it has read all of it.
    let _ = s.write_all(req.as_bytes());
    let got = String::from_utf8(read_all(&mut s)).unwrap();
    assert_eq!(
        got,
        "HTTP/1.1 431 Request Header Fields Too Large\r\nContent-Type: text/plain\r\nContent-Length: 23\r\nConnection: close\r\n\r\nrequest head too large\n"
    );
    server.shutdown(Duration::ZERO);
}

fn slow_request_is_cut() {
    let server = start();
    for partial in [
        &b"GET /health HTTP/1.1\r\nHost: x\r\n"[..],
        b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n012",
    ] {
        let t = Instant::now();
        let mut s = connect(server.local_addr());
        s.write_all(partial).unwrap();
        assert_eq!(read_all(&mut s), b"");
        let dt = t.elapsed();
        assert!(dt >= Duration::from_millis(250), "{dt:?}");
        assert!(dt < Duration::from_secs(3), "{dt:?}");
    }
    // An idle keep-alive connection too, after its response.
    let mut s = connect(server.local_addr());
    s.write_all(b"GET /health?full=1 HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    assert_eq!(
        String::from_utf8(read_all(&mut s)).unwrap(),
        format!("{HEALTH}\r\nok\n")
    );
    server.shutdown(Duration::ZERO);
}

fn deferred_response_from_another_thread() {
    let server = start();
    // Answered later, in order with the request pipelined behind it.
    let got = exchange(
        server.local_addr(),
        b"GET /later?name=ann HTTP/1.1\r\nHost: x\r\n\r\n\
          GET /health?full=1 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(
        got,
        format!(
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: 7\r\n\r\nhi ann\n\
             {HEALTH}Connection: close\r\n\r\nok\n"
        )
    );
    server.shutdown(Duration::ZERO);
}

fn deferred_response_dropped_is_500() {
    let server = start();
    let got = exchange(
        server.local_addr(),
        b"GET /dropped HTTP/1.1\r\nHost: x\r\n\r\n",
    );
    assert_eq!(
        got,
        "HTTP/1.1 500 Internal Server Error\r\nContent-Type: text/plain\r\nContent-Length: 22\r\nConnection: close\r\n\r\ninternal server error\n"
    );
    server.shutdown(Duration::ZERO);
}

fn http_and_websocket_on_one_path() {
    let server = start();
    let addr = server.local_addr();
    let got = exchange(
        addr,
        b"GET /chat HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(
        got,
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: 10\r\nConnection: close\r\n\r\nchat page\n"
    );
    let mut ws = Client::open(addr, "/chat");
    ws.text("hello");
    assert_eq!(ws.next_text(), "hello");
    // A path with only a WebSocket route refuses plain requests as the
    // upgrade checks do.
    let got = exchange(addr, b"GET /ws-only HTTP/1.1\r\nHost: x\r\n\r\n");
    assert!(got.starts_with("HTTP/1.1 400 Bad Request\r\n"), "{got}");
    assert!(
        got.ends_with("missing 'Upgrade: websocket' header\n"),
        "{got}"
    );
    // An upgrade to a path with only HTTP routes is served by them.
    let (_c, head) = Client::request(addr, "/health?full=1", "");
    assert_eq!(head, format!("{HEALTH}\r\n"));
    server.shutdown(Duration::ZERO);
}

fn head_has_no_body() {
    let server = start();
    let got = exchange(
        server.local_addr(),
        b"HEAD /health?full=1 HTTP/1.1\r\nHost: x\r\n\r\n\
          HEAD /health?full=1 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(
        got,
        format!("{HEALTH}\r\n{HEALTH}Connection: close\r\n\r\n")
    );
    server.shutdown(Duration::ZERO);
}

fn handler_panic_is_500() {
    let server = start();
    let got = exchange(
        server.local_addr(),
        b"GET /panic HTTP/1.1\r\nHost: x\r\n\r\n",
    );
    assert_eq!(
        got,
        "HTTP/1.1 500 Internal Server Error\r\nContent-Type: text/plain\r\nContent-Length: 22\r\nConnection: close\r\n\r\ninternal server error\n"
    );
    let got = exchange(
        server.local_addr(),
        b"GET /health?full=1 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(got, format!("{HEALTH}Connection: close\r\n\r\nok\n"));
    server.shutdown(Duration::ZERO);
}

/// A client that sends its requests (or a bad one, or a WebSocket message)
/// and then shuts its sending side, as `nc -N` does, still gets every
/// answer before the server closes: the end of input must not drop what
/// the same turn queued.
fn answers_survive_a_half_close() {
    let server = start();
    let addr = server.local_addr();
    // Two keep-alive requests, then FIN.
    let mut s = connect(addr);
    s.write_all(b"GET /health?full=1 HTTP/1.1\r\nHost: x\r\n\r\nGET /health?full=1 HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    s.shutdown(std::net::Shutdown::Write).unwrap();
    let got = String::from_utf8(read_all(&mut s)).unwrap();
    assert_eq!(got, format!("{HEALTH}\r\nok\n{HEALTH}\r\nok\n"));
    // A malformed request, then FIN: its 400 arrives.
    let mut s = connect(addr);
    s.write_all(b"GET /health HTTP/1.1\r\nHost x\r\n\r\n")
        .unwrap();
    s.shutdown(std::net::Shutdown::Write).unwrap();
    let got = String::from_utf8(read_all(&mut s)).unwrap();
    assert!(got.starts_with("HTTP/1.1 400 "), "{got}");
    // A WebSocket message, then FIN: its echo arrives.
    let mut c = Client::open(addr, "/chat");
    c.text("last words");
    c.s.shutdown(std::net::Shutdown::Write).unwrap();
    assert_eq!(c.frame().unwrap().1, b"last words");
    server.shutdown(Duration::ZERO);
}
