//! permessage-deflate through the server, spoken to with raw bytes on both
//! backends: what the 101 answers, compressed messages in (hand-made
//! stored deflate blocks, so the client side uses none of ringws's
//! compression code) and out (inflated with zlib-rs directly), small
//! messages left uncompressed, context takeover in dedicated mode, and the
//! limit on the inflated size.

use std::time::Duration;

use ringws::app::{App, Echo, Route};
use ringws::config::DeflateMode;
use ringws::{BackendKind, Config, ServerHandle};

mod common;
use common::{close_code, Client};

const OFFER: &str = "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n";
const TRAILER: [u8; 4] = [0, 0, 0xff, 0xff];

fn server(backend: BackendKind, mode: DeflateMode, max_message: u64) -> ServerHandle {
    App::new(Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        threads: 1,
        backend,
        max_message_size: max_message,
        max_frame_size: max_message,
        close_timeout: Duration::from_millis(300),
        ..Config::default()
    })
    .with_route(Route::prefix("/", Echo).deflate(mode))
    .start()
    .unwrap()
}

/// `data` as raw deflate in stored blocks (RFC 1951 3.2.4), none final:
/// valid permessage-deflate data made without a compressor. It ends with
/// the header byte of an empty stored block, whose length fields are the
/// `00 00 ff ff` the receiver appends (RFC 7692 7.2.3.3 ends its "Hello"
/// example the same way); without that byte the receiver would read the
/// trailer as the length of one more stored block.
fn stored(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    for chunk in data.chunks(65535) {
        let n = chunk.len() as u16;
        out.push(0x00);
        out.extend_from_slice(&n.to_le_bytes());
        out.extend_from_slice(&(!n).to_le_bytes());
        out.extend_from_slice(chunk);
    }
    out.push(0x00);
    out
}

/// Raw deflate of `data` by zlib-rs itself, sync-flushed, trailer cut.
fn deflated(data: &[u8]) -> Vec<u8> {
    let mut z = zlib_rs::Deflate::new(9, false, 15);
    let mut out = vec![0u8; data.len() / 2 + 1024];
    z.compress(data, &mut out, zlib_rs::DeflateFlush::SyncFlush)
        .unwrap();
    out.truncate(z.total_out() as usize);
    assert!(out.ends_with(&TRAILER));
    out.truncate(out.len() - 4);
    out
}

/// Inflates one message's payload with `i` (trailer put back).
fn inflate(i: &mut zlib_rs::Inflate, payload: &[u8]) -> Vec<u8> {
    let mut input = payload.to_vec();
    input.extend_from_slice(&TRAILER);
    let mut out = vec![0u8; 1 << 20];
    let before = i.total_out();
    i.decompress(&input, &mut out, zlib_rs::InflateFlush::SyncFlush)
        .unwrap();
    out.truncate((i.total_out() - before) as usize);
    out
}

fn json(n: usize) -> String {
    let mut s = String::new();
    let mut i = 0u64;
    while s.len() < n {
        i += 1;
        s.push_str(&format!(
            "{{\"symbol\":\"BTC-USD\",\"price\":\"{}.{}\",\"seq\":{i}}},",
            43_000 + i * 7 % 1000,
            i % 100
        ));
    }
    s.truncate(n);
    s
}

#[test]
fn compressed_echo_in_both_modes() {
    for backend in [BackendKind::IoUring, BackendKind::Epoll] {
        for (mode, answer) in [
            (
                DeflateMode::Shared,
                "Sec-WebSocket-Extensions: permessage-deflate; server_no_context_takeover; client_no_context_takeover\r\n",
            ),
            (DeflateMode::Dedicated, "Sec-WebSocket-Extensions: permessage-deflate\r\n"),
        ] {
            let s = server(backend, mode, 1 << 20);
            let (mut c, head) = Client::request(s.local_addr(), "/", OFFER);
            assert!(head.starts_with("HTTP/1.1 101 "), "{head}");
            assert!(head.contains(answer), "{mode:?}: {head}");
            let text = json(600);
            let mut i = zlib_rs::Inflate::new(false, 15);
            let mut sizes = Vec::new();
            for _ in 0..2 {
                // In: compressed (RSV1) text, fragmented, RSV1 on the first.
                let z = stored(text.as_bytes());
                let (a, b) = z.split_at(100);
                c.send(0x41, a);
                c.send(0x80, b);
                // Out: compressed, and smaller.
                let (b0, p) = c.frame().unwrap();
                assert_eq!(b0, 0xC1, "FIN, RSV1, text ({backend:?}, {mode:?})");
                assert!(p.len() < text.len() / 2, "{} bytes", p.len());
                assert_eq!(inflate(&mut i, &p), text.as_bytes());
                sizes.push(p.len());
                if mode == DeflateMode::Shared {
                    i.reset(false);
                }
            }
            if mode == DeflateMode::Dedicated {
                // Context takeover: the repeat refers to the first.
                assert!(sizes[1] * 4 < sizes[0], "{sizes:?}");
            } else {
                assert_eq!(sizes[0], sizes[1]);
            }
            // Small messages go out uncompressed, and plain ones come in.
            c.text("hi");
            assert_eq!(c.frame().unwrap(), (0x81, b"hi".to_vec()));
            s.shutdown(Duration::from_secs(1));
        }
    }
}

#[test]
fn without_the_extension_rsv1_is_a_protocol_error() {
    for mode in [DeflateMode::Off, DeflateMode::Shared] {
        let s = server(BackendKind::Auto, mode, 1 << 20);
        // Off: the offer is declined. Shared, but not offered: the same.
        let offer = if mode == DeflateMode::Off { OFFER } else { "" };
        let (mut c, head) = Client::request(s.local_addr(), "/", offer);
        assert!(
            !head
                .to_ascii_lowercase()
                .contains("sec-websocket-extensions"),
            "{head}"
        );
        c.send(0xC1, &stored(b"hello"));
        let (b0, p) = c.frame().unwrap();
        assert_eq!((b0, close_code(&p)), (0x88, 1002));
        s.shutdown(Duration::from_secs(1));
    }
}

#[test]
fn inflated_size_is_limited_and_bad_data_is_1007() {
    let s = server(BackendKind::Auto, DeflateMode::Shared, 64 << 10);
    // 8 MiB of zeros in a few KiB: closed with 1009 at the 64 KiB limit.
    let bomb = deflated(&vec![0u8; 8 << 20]);
    assert!(bomb.len() < 64 << 10, "{}", bomb.len());
    let (mut c, _) = Client::request(s.local_addr(), "/", OFFER);
    c.send(0xC2, &bomb);
    let (b0, p) = c.frame().unwrap();
    assert_eq!((b0, close_code(&p)), (0x88, 1009));
    // Not deflate data at all: 1007.
    let (mut c, _) = Client::request(s.local_addr(), "/", OFFER);
    c.send(0xC2, &[0xff; 16]);
    let (b0, p) = c.frame().unwrap();
    assert_eq!((b0, close_code(&p)), (0x88, 1007));
    s.shutdown(Duration::from_secs(1));
}

/// Subscribes every connection to "t" and keeps a handle to each (for
/// sends from outside the loop); a message "pub" publishes 600 bytes of
/// JSON to "t".
struct Topic(std::sync::Arc<std::sync::Mutex<Vec<ringws::app::SocketRef>>>);

impl ringws::app::Handler for Topic {
    type Data = ();

    fn upgrade(&self, _req: &ringws::app::Request<'_>) -> ringws::app::Upgrade<()> {
        ringws::app::Upgrade::accept(())
    }

    fn open(&self, ws: &mut ringws::app::Socket<'_, ()>) {
        ws.subscribe("t");
        self.0.lock().unwrap().push(ws.handle());
        ws.send_text("subscribed");
    }

    fn message(&self, ws: &mut ringws::app::Socket<'_, ()>, msg: ringws::app::Message<'_>) {
        if msg.as_bytes() == b"pub" {
            ws.publish("t", json(600).as_str());
        }
    }
}

#[test]
fn publishes_and_handle_sends_are_compressed() {
    for mode in [DeflateMode::Shared, DeflateMode::Dedicated] {
        let handles = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let s = App::new(Config {
            listen: "127.0.0.1:0".parse().unwrap(),
            threads: 1,
            ..Config::default()
        })
        .with_route(Route::prefix("/", Topic(handles.clone())).deflate(mode))
        .start()
        .unwrap();
        // Two that agreed to deflate, one that did not offer it.
        let mut clients: Vec<(Client, bool)> = Vec::new();
        for z in [true, true, false] {
            let (mut c, head) = Client::request(s.local_addr(), "/", if z { OFFER } else { "" });
            assert_eq!(head.contains("permessage-deflate"), z, "{head}");
            assert_eq!(c.frame().unwrap(), (0x81, b"subscribed".to_vec()));
            clients.push((c, z));
        }
        let text = json(600);
        // Both modes compress publishes and handle sends: shared mode once
        // per publish for every shared subscriber, dedicated mode with
        // each connection's own compressor, in its stream's order (so one
        // inflater per connection, kept across messages).
        let mut inflaters: Vec<zlib_rs::Inflate> =
            (0..3).map(|_| zlib_rs::Inflate::new(false, 15)).collect();
        let mut sizes: Vec<Vec<usize>> = vec![Vec::new(); 3];
        let mut check = |c: &mut Client, i: usize, z: bool, what: &str| {
            let (b0, p) = c.frame().unwrap();
            assert_eq!(b0, if z { 0xC1 } else { 0x81 }, "{mode:?}: {what}");
            let data = if z {
                sizes[i].push(p.len());
                let d = inflate(&mut inflaters[i], &p);
                if mode == DeflateMode::Shared {
                    inflaters[i].reset(false);
                }
                d
            } else {
                p
            };
            assert_eq!(data, text.as_bytes(), "{mode:?}: {what}");
        };
        // A publish from outside and one from a connection (which leaves
        // itself out).
        s.publish("t", text.as_str());
        clients[2].0.text("pub");
        for (i, (c, z)) in clients.iter_mut().enumerate() {
            for n in 0..if i == 2 { 1 } else { 2 } {
                check(c, i, *z, &format!("client {i} publish {n}"));
            }
        }
        // A send through each one's handle.
        for h in handles.lock().unwrap().iter() {
            h.send(text.as_str()).unwrap();
        }
        for (i, (c, z)) in clients.iter_mut().enumerate() {
            check(c, i, *z, &format!("client {i} handle send"));
        }
        for s in &sizes[..2] {
            assert_eq!(s.len(), 3);
            assert!(s[0] < text.len() / 2, "{mode:?}: {s:?}");
            if mode == DeflateMode::Dedicated {
                // Context takeover: the repeats refer back to the first.
                assert!(s[1] * 4 < s[0] && s[2] * 4 < s[0], "{s:?}");
            } else {
                assert!(s[0] == s[1] && s[1] == s[2], "{s:?}");
            }
        }
        s.shutdown(Duration::from_secs(1));
    }
}

/// Subscribes every connection to "t", noting which worker thread holds
/// it; a message "pub" publishes 600 bytes of JSON to "t".
struct Spread(std::sync::Arc<std::sync::Mutex<std::collections::HashSet<String>>>);

impl ringws::app::Handler for Spread {
    type Data = ();

    fn upgrade(&self, _req: &ringws::app::Request<'_>) -> ringws::app::Upgrade<()> {
        ringws::app::Upgrade::accept(())
    }

    fn open(&self, ws: &mut ringws::app::Socket<'_, ()>) {
        ws.subscribe("t");
        let thread = std::thread::current().name().unwrap_or("?").to_owned();
        self.0.lock().unwrap().insert(thread);
        ws.send_text("subscribed");
    }

    fn message(&self, ws: &mut ringws::app::Socket<'_, ()>, msg: ringws::app::Message<'_>) {
        if msg.as_bytes() == b"pub" {
            ws.publish("t", json(600).as_str());
        }
    }
}

/// The value of an unlabelled metric.
fn metric(s: &ServerHandle, name: &str) -> u64 {
    let text = s.metrics();
    text.lines()
        .find_map(|l| l.strip_prefix(name).and_then(|r| r.strip_prefix(' ')))
        .unwrap_or_else(|| panic!("no {name} in\n{text}"))
        .parse()
        .unwrap()
}

#[test]
fn a_publish_is_compressed_once_per_node() {
    // Shared-mode subscribers on both worker threads: each publish, from
    // outside or from a connection, is compressed by one thread and the
    // compressed frame shared, so the compressor's input is one message's
    // bytes per publish, not one per thread.
    let threads = std::sync::Arc::new(std::sync::Mutex::new(Default::default()));
    let s = App::new(Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        threads: 2,
        ..Config::default()
    })
    .with_route(Route::prefix("/", Spread(threads.clone())).deflate(DeflateMode::Shared))
    .start()
    .unwrap();
    let mut clients = Vec::new();
    // The kernel spreads connections over the two listeners by a hash of
    // the port: a handful reach both threads.
    while threads.lock().unwrap().len() < 2 {
        assert!(clients.len() < 64, "every connection on one thread");
        let (mut c, head) = Client::request(s.local_addr(), "/", OFFER);
        assert!(head.contains("permessage-deflate"), "{head}");
        assert_eq!(c.frame().unwrap(), (0x81, b"subscribed".to_vec()));
        clients.push(c);
    }
    let text = json(600);
    for _ in 0..10 {
        s.publish("t", text.as_str());
    }
    clients[0].text("pub");
    for (i, c) in clients.iter_mut().enumerate() {
        let n = if i == 0 { 10 } else { 11 };
        for k in 0..n {
            let (b0, p) = c.frame().unwrap();
            assert_eq!(b0, 0xC1, "client {i} message {k}");
            let mut z = zlib_rs::Inflate::new(false, 15);
            assert_eq!(
                inflate(&mut z, &p),
                text.as_bytes(),
                "client {i} message {k}"
            );
        }
    }
    assert_eq!(metric(&s, "ringws_deflate_input_bytes_total"), 11 * 600);
    s.shutdown(Duration::from_secs(1));
}
