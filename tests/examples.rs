//! Each example, run as its own binary (cargo builds the examples with the
//! tests) on a free port, spoken to with raw bytes.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

mod common;
#[path = "common/redis.rs"]
mod redis_server;
use common::Client;

/// A running example; killed when dropped.
struct Example(Child, SocketAddr);

impl Drop for Example {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `examples/<name>` with `--listen` on a free port and waits until
/// it accepts connections.
fn start(name: &str) -> Example {
    start_with(name, &[])
}

/// As [`start`], with more arguments.
fn start_with(name: &str, extra: &[&str]) -> Example {
    // target/<profile>/deps/<this test> -> target/<profile>/examples/<name>
    let exe = std::env::current_exe().unwrap();
    let dir: PathBuf = exe.parent().unwrap().parent().unwrap().join("examples");
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let child = Command::new(dir.join(name))
        .args(["--listen", &addr.to_string()])
        .args(extra)
        .env("RINGWS_LOG", "warn")
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start example {name} from {}: {e}", dir.display()));
    let t = Instant::now();
    while TcpStream::connect(addr).is_err() {
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "{name} did not start"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    Example(child, addr)
}

/// The next text frame that is not an announcement of `* ...`.
fn next_line(c: &mut Client) -> String {
    loop {
        let t = c.next_text();
        if !t.starts_with("* ") {
            return t;
        }
    }
}

/// The README's two chat nodes sharing their rooms through one Redis.
#[test]
fn chat_nodes_share_rooms_through_redis() {
    let Some(redis) = redis_server::start(None, &[]) else {
        return;
    };
    let url = redis.url();
    let one = start_with("chat", &["--redis", &url]);
    let two = start_with("chat", &["--redis", &url]);
    let mut ann = Client::open(one.1, "/chat/r1?nick=ann");
    assert_eq!(ann.next_text(), "* ann joined");
    let mut bob = Client::open(two.1, "/chat/r1?nick=bob");
    assert_eq!(bob.next_text(), "* bob joined");
    // Both nodes subscribed: each hears the other's lines once.
    let t = Instant::now();
    while redis.numsub("ringws:r1") < 2 {
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "both nodes subscribe"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    ann.text("hello from one");
    assert_eq!(next_line(&mut ann), "ann: hello from one");
    assert_eq!(next_line(&mut bob), "ann: hello from one");
    bob.text("hello from two");
    assert_eq!(next_line(&mut bob), "bob: hello from two");
    assert_eq!(next_line(&mut ann), "bob: hello from two");
    drop(bob);
    assert_eq!(ann.next_text(), "* bob left");
}

#[test]
fn chat_rooms() {
    let ex = start("chat");
    let (_, head) = Client::request(ex.1, "/chat/r1", "");
    assert!(head.starts_with("HTTP/1.1 400 "), "no nick: {head}");
    let (_, head) = Client::request(ex.1, "/elsewhere?nick=x", "");
    assert!(head.starts_with("HTTP/1.1 404 "), "{head}");
    let mut ann = Client::open(ex.1, "/chat/r1?nick=ann");
    assert_eq!(ann.next_text(), "* ann joined");
    let mut bob = Client::open(ex.1, "/chat/r1?nick=bob");
    assert_eq!(bob.next_text(), "* bob joined");
    assert_eq!(ann.next_text(), "* bob joined");
    let mut cat = Client::open(ex.1, "/chat/r2?nick=cat");
    assert_eq!(cat.next_text(), "* cat joined");
    ann.text("hi all");
    assert_eq!(next_line(&mut ann), "ann: hi all");
    assert_eq!(next_line(&mut bob), "ann: hi all");
    cat.text("alone here");
    assert_eq!(next_line(&mut cat), "cat: alone here");
    // bob heard nothing from r2: his next line is ann's next one.
    drop(cat);
    ann.text("second");
    assert_eq!(next_line(&mut bob), "ann: second");
    drop(ann);
    assert_eq!(bob.next_text(), "* ann left");
}

#[test]
fn broadcast_reaches_everyone_the_sender_included() {
    let ex = start("broadcast");
    let mut clients: Vec<Client> = (0..5).map(|_| Client::open(ex.1, "/")).collect();
    // Make sure every client is subscribed before anything is published:
    // an echo round trip on each means its `open` has run.
    for c in &mut clients {
        c.send(0x89, b"");
        let (b0, _) = c.frame().unwrap();
        assert_eq!(b0, 0x8a);
    }
    for (i, c) in clients.iter_mut().enumerate() {
        c.text(&format!("from {i}"));
    }
    for c in &mut clients {
        let mut got: Vec<String> = (0..5).map(|_| c.next_text()).collect();
        got.sort();
        let want: Vec<String> = (0..5).map(|i| format!("from {i}")).collect();
        assert_eq!(got, want);
    }
}

#[test]
fn auth_checks_the_token_in_a_deferred_upgrade() {
    let ex = start("auth");
    let (mut c, head) = Client::request(ex.1, "/", "");
    assert!(head.starts_with("HTTP/1.1 401 Unauthorized\r\n"), "{head}");
    assert!(head.contains("\r\nWWW-Authenticate: Bearer\r\n"), "{head}");
    assert_eq!(c.rest(), b"a bearer token is required\n");
    let (_, head) = Client::request(ex.1, "/", "Authorization: Bearer nope\r\n");
    assert!(head.starts_with("HTTP/1.1 401 "), "{head}");
    let mut ann = Client::open(ex.1, "/?token=t0k3n-ann");
    assert_eq!(ann.next_text(), "welcome ann");
    let (mut bob, head) = Client::request(ex.1, "/", "Authorization: Bearer t0k3n-bob\r\n");
    assert!(head.starts_with("HTTP/1.1 101 "), "{head}");
    assert_eq!(bob.next_text(), "welcome bob");
    bob.text("echo me");
    assert_eq!(bob.next_text(), "echo me");
}

#[test]
fn chat_compresses_long_lines_for_members_that_offer_deflate() {
    let ex = start("chat");
    let offer = "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n";
    let (mut dee, head) = Client::request(ex.1, "/chat/z?nick=dee", offer);
    assert!(head.contains("permessage-deflate"), "{head}");
    assert_eq!(dee.next_text(), "* dee joined");
    let mut eve = Client::open(ex.1, "/chat/z?nick=eve");
    assert_eq!(eve.next_text(), "* eve joined");
    // Short lines go out plain; a long one compressed to dee only.
    let line = "the quick brown fox jumps over the lazy dog, ".repeat(4);
    eve.text(&line);
    assert_eq!(next_line(&mut eve), format!("eve: {line}"));
    let (b0, p) = loop {
        let f = dee.frame().unwrap();
        if f.0 == 0xC1 || !f.1.starts_with(b"* ") {
            break f;
        }
    };
    assert_eq!(b0, 0xC1, "FIN, RSV1, text");
    assert!(p.len() < line.len() / 2, "{} bytes", p.len());
    let mut input = p.clone();
    input.extend_from_slice(&[0, 0, 0xff, 0xff]);
    let mut out = vec![0u8; 4096];
    let mut z = zlib_rs::Inflate::new(false, 15);
    z.decompress(&input, &mut out, zlib_rs::InflateFlush::SyncFlush)
        .unwrap();
    out.truncate(z.total_out() as usize);
    assert_eq!(String::from_utf8(out).unwrap(), format!("eve: {line}"));
}

#[test]
fn ticker_feeds_each_symbol_and_stops_on_sigterm() {
    let mut ex = start("ticker");
    let (_, head) = Client::request(ex.1, "/DOGE-USD", "");
    assert!(head.starts_with("HTTP/1.1 404 "), "{head}");
    let mut btc = Client::open(ex.1, "/BTC-USD");
    let mut eth = Client::open(ex.1, "/ETH-USD");
    let seq = |t: &str| -> u64 {
        t.rsplit_once("\"seq\":")
            .unwrap()
            .1
            .trim_end_matches('}')
            .parse()
            .unwrap()
    };
    let (a, b) = (btc.next_text(), btc.next_text());
    assert!(a.starts_with(r#"{"symbol":"BTC-USD","price":"#), "{a}");
    assert_eq!(seq(&b), seq(&a) + 1, "{a} then {b}");
    assert!(eth.next_text().starts_with(r#"{"symbol":"ETH-USD""#));
    drop(eth);
    // SIGTERM: the feed thread stops, every client gets Close 1001, and
    // the process exits cleanly.
    // SAFETY: kill has no memory-safety preconditions.
    assert_eq!(unsafe { libc::kill(ex.0.id() as i32, libc::SIGTERM) }, 0);
    let close = loop {
        let f = btc.frame().unwrap();
        if f.0 == 0x88 {
            break f.1;
        }
    };
    assert_eq!(&close[..2], &1001u16.to_be_bytes());
    btc.send(0x88, &1001u16.to_be_bytes());
    assert!(ex.0.wait().unwrap().success());
}
