//! wss:// and https:// on the server's own loop, against rustls's client
//! (a different code path from the server's: the buffered API, over a
//! blocking socket), on both backends. Certificates are made here by the
//! `openssl` command, signed by a throwaway CA; no key is committed.

#![cfg(feature = "tls")]

#[path = "common/certs.rs"]
mod certs;
mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use certs::{make_ca, make_leaf, Dir};
use common::Client;
use ringws::app::{App, Echo, HttpResponse, ServerHandle};
use ringws::tls::rustls;
use ringws::tls::{SniCert, Tls, TlsFiles};
use ringws::Config;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore, StreamOwned};

type Tls13 = StreamOwned<ClientConnection, TcpStream>;

/// A name for a test's directory: the test and the backend it runs on.
fn tag(test: &str) -> String {
    format!("{test}-{:?}-{}", common::backend(), common::incremental())
}

/// A client configuration trusting CA `ca` of `dir`, offering http/1.1.
fn client_config(dir: &Dir, ca: &str) -> Arc<ClientConfig> {
    Arc::new(ringws::tls::client_config(&[dir.path(&format!("{ca}.pem"))]).unwrap())
}

fn server_with(tls: TlsFiles, tweak: impl FnOnce(&mut Config)) -> ServerHandle {
    let mut cfg = Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        threads: 1,
        backend: common::backend(),
        incremental_reads: common::incremental(),
        tls: Some(Tls::Files(tls)),
        ..Config::default()
    };
    tweak(&mut cfg);
    App::new(cfg)
        .route_prefix("/", Echo)
        .get("/health", |_req| HttpResponse::text(200, "ok\n"))
        .start()
        .unwrap()
}

/// One CA and a leaf for `localhost`, served.
fn server(dir: &Dir) -> ServerHandle {
    make_ca(dir, "ca");
    let (cert, key) = make_leaf(dir, "ca", "leaf", &["localhost"]);
    server_with(
        TlsFiles {
            cert,
            key,
            sni: vec![],
        },
        |_| {},
    )
}

/// A TLS connection to `addr` for server name `name`, handshake done.
fn connect(addr: SocketAddr, cfg: &Arc<ClientConfig>, name: &str) -> Result<Tls13, std::io::Error> {
    let sock = TcpStream::connect(addr)?;
    sock.set_read_timeout(Some(Duration::from_secs(5)))?;
    let conn = ClientConnection::new(cfg.clone(), ServerName::try_from(name.to_owned()).unwrap())
        .map_err(std::io::Error::other)?;
    let mut s = StreamOwned::new(conn, sock);
    while s.conn.is_handshaking() {
        s.conn.complete_io(&mut s.sock)?;
    }
    Ok(s)
}

fn wss(addr: SocketAddr, cfg: &Arc<ClientConfig>) -> Client<Tls13> {
    let s = connect(addr, cfg, "localhost").unwrap();
    let (c, head) = Client::request_on(s, "/", "");
    assert!(head.starts_with("HTTP/1.1 101 "), "{head}");
    c
}

/// Reads to the end: true if the server ended with close_notify (a clean
/// TLS close), false if the TCP connection just ended.
fn ends_cleanly(s: &mut Tls13) -> bool {
    let mut b = [0u8; 4096];
    loop {
        match s.read(&mut b) {
            Ok(0) => return true,
            Ok(_) => {}
            Err(e) if e.kind() == ErrorKind::UnexpectedEof => return false,
            Err(e) => panic!("read: {e}"),
        }
    }
}

fn wss_echo_and_clean_close() {
    let dir = Dir::new(&tag("echo"));
    let server = server(&dir);
    let cfg = client_config(&dir, "ca");
    let mut c = wss(server.local_addr(), &cfg);
    c.text("hello");
    assert_eq!(c.next_text(), "hello");
    // Larger than a record and than a read buffer: records split across
    // reads, several records per message.
    let big: Vec<u8> = (0..300_000u32).map(|i| (i * 7) as u8).collect();
    c.send(0x82, &big);
    assert_eq!(c.frame(), Some((0x82, big)));
    // Many small messages in one write: many frames per record, echoed
    // in as few records as fit.
    let mut burst = Vec::new();
    for i in 0..500 {
        burst.extend(common::masked_frame(0x81, format!("m{i}").as_bytes()));
    }
    c.s.write_all(&burst).unwrap();
    for i in 0..500 {
        assert_eq!(c.next_text(), format!("m{i}"));
    }
    c.send(0x88, &1000u16.to_be_bytes());
    let (b0, p) = c.frame().unwrap();
    assert_eq!((b0, common::close_code(&p)), (0x88, 1000));
    assert!(ends_cleanly(&mut c.s), "no close_notify before the FIN");
    has_metric(&server, "ringws_tls_handshakes_total{version=\"1.3\"} 1");
    has_metric(&server, "ringws_tls_certificate_expiry_seconds ");
    server.shutdown(Duration::ZERO);
}

fn https_route_and_resumption() {
    let dir = Dir::new(&tag("https"));
    let server = server(&dir);
    let cfg = client_config(&dir, "ca");
    for round in 0..2 {
        let mut s = connect(server.local_addr(), &cfg, "localhost").unwrap();
        assert_eq!(s.conn.alpn_protocol(), Some(&b"http/1.1"[..]));
        s.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .unwrap();
        let mut resp = Vec::new();
        let _ = s.read_to_end(&mut resp);
        let resp = String::from_utf8(resp).unwrap();
        assert!(
            resp.starts_with("HTTP/1.1 200 OK\r\n") && resp.ends_with("ok\n"),
            "{resp}"
        );
        // The first connection's tickets let the second resume.
        let kind = s.conn.handshake_kind();
        let want = if round == 0 { "Full" } else { "Resumed" };
        assert_eq!(
            format!("{kind:?}"),
            format!("Some({want})"),
            "round {round}"
        );
    }
    server.shutdown(Duration::ZERO);
}

fn client_hello_one_byte_at_a_time() {
    let dir = Dir::new(&tag("bytes"));
    let server = server(&dir);
    let cfg = client_config(&dir, "ca");
    let mut sock = TcpStream::connect(server.local_addr()).unwrap();
    sock.set_nodelay(true).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut conn = ClientConnection::new(cfg, ServerName::try_from("localhost").unwrap()).unwrap();
    let mut hello = Vec::new();
    while conn.wants_write() {
        conn.write_tls(&mut hello).unwrap();
    }
    // With a post-quantum key share the ClientHello is over 1 KiB.
    assert!(hello.len() > 1000, "{}", hello.len());
    for b in &hello {
        sock.write_all(std::slice::from_ref(b)).unwrap();
        std::thread::sleep(Duration::from_micros(200));
    }
    let mut s = StreamOwned::new(conn, sock);
    while s.conn.is_handshaking() {
        s.conn.complete_io(&mut s.sock).unwrap();
    }
    let (mut c, head) = Client::request_on(s, "/", "");
    assert!(head.starts_with("HTTP/1.1 101 "), "{head}");
    c.text("after a slow hello");
    assert_eq!(c.next_text(), "after a slow hello");
    server.shutdown(Duration::ZERO);
}

/// Waits for `/metrics` to show `line`: a worker publishes its counts at
/// the end of a loop turn, which a client may see the effects of first.
fn has_metric(server: &ServerHandle, line: &str) {
    let t = Instant::now();
    loop {
        let m = server.metrics();
        if m.contains(line) {
            return;
        }
        assert!(t.elapsed() < Duration::from_secs(3), "no {line:?} in\n{m}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn records_split_anywhere() {
    let dir = Dir::new(&tag("split"));
    let server = server(&dir);
    let cfg = client_config(&dir, "ca");
    let mut c = wss(server.local_addr(), &cfg);
    c.s.sock.set_nodelay(true).unwrap();
    let big: Vec<u8> = (0..40_000u32).map(|i| (i % 251) as u8).collect();
    for chunk in [1usize, 3, 5, 7, 4097, 16_411] {
        // Records of a few frames, the ciphertext written `chunk` bytes at
        // a time: record headers and bodies split at every kind of place.
        let mut plain = common::masked_frame(0x81, format!("chunk {chunk}").as_bytes());
        plain.extend(common::masked_frame(0x82, &big));
        c.s.conn.writer().write_all(&plain).unwrap();
        let mut wire = Vec::new();
        while c.s.conn.wants_write() {
            c.s.conn.write_tls(&mut wire).unwrap();
        }
        for piece in wire.chunks(chunk) {
            c.s.sock.write_all(piece).unwrap();
            if chunk < 16 {
                // Now and then a pause, so that reads end inside records.
                if piece.as_ptr() as usize % 64 == 0 {
                    std::thread::sleep(Duration::from_micros(50));
                }
            }
        }
        assert_eq!(c.next_text(), format!("chunk {chunk}"));
        assert_eq!(c.frame(), Some((0x82, big.clone())), "chunk {chunk}");
    }
    server.shutdown(Duration::ZERO);
}

/// Reads what the server sends until it closes; fails past `within`.
fn read_until_closed(s: &mut TcpStream, within: Duration) -> Vec<u8> {
    let t = Instant::now();
    s.set_read_timeout(Some(within)).unwrap();
    let mut out = Vec::new();
    let mut b = [0u8; 1024];
    loop {
        match s.read(&mut b) {
            Ok(0) => return out,
            Ok(n) => out.extend_from_slice(&b[..n]),
            Err(e) if e.kind() == ErrorKind::ConnectionReset => return out,
            Err(e) => panic!("not closed after {:?}: {e}", t.elapsed()),
        }
    }
}

fn plain_http_or_garbage_is_closed_with_an_alert() {
    let dir = Dir::new(&tag("plain"));
    let server = server(&dir);
    for junk in [
        &b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n\r\n"[..],
        &[0x16, 0x03, 0x01, 0x00, 0x05, 1, 2, 3, 4, 5][..],
        &[0xff; 64][..],
    ] {
        let mut s = TcpStream::connect(server.local_addr()).unwrap();
        s.write_all(junk).unwrap();
        let got = read_until_closed(&mut s, Duration::from_secs(3));
        // A fatal alert record (content type 21), if anything.
        assert!(got.is_empty() || got[0] == 0x15, "{junk:?}: {got:?}");
    }
    has_metric(&server, "ringws_tls_failures_total 3");
    server.shutdown(Duration::ZERO);
}

/// A client whose ALPN offer lacks http/1.1 gets the no_application_protocol
/// alert, in TLS 1.2 and in TLS 1.3, where the refusal comes after the
/// ServerHello and the alert goes under the handshake keys.
fn alpn_without_http11_is_refused_with_an_alert() {
    let dir = Dir::new("alpn");
    let server = server(&dir);
    let mut roots = RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(dir.path("ca.pem")).unwrap() {
        roots.add(c.unwrap()).unwrap();
    }
    for version in [&rustls::version::TLS13, &rustls::version::TLS12] {
        let mut c = ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::aws_lc_rs::default_provider(),
        ))
        .with_protocol_versions(&[version])
        .unwrap()
        .with_root_certificates(roots.clone())
        .with_no_client_auth();
        c.alpn_protocols = vec![b"h2".to_vec()];
        let c = Arc::new(c);
        let e = connect(server.local_addr(), &c, "localhost")
            .expect_err("no handshake without http/1.1");
        let tls = e.get_ref().and_then(|e| e.downcast_ref::<rustls::Error>());
        assert_eq!(
            tls,
            Some(&rustls::Error::AlertReceived(
                rustls::AlertDescription::NoApplicationProtocol
            )),
            "{version:?}: {e}"
        );
        // The same ClientHello with garbage behind it in one write: the
        // ServerHello and alert rustls queued go, the garbage is not parsed
        // a second time, and the connection is closed.
        let mut conn =
            ClientConnection::new(c, ServerName::try_from("localhost").unwrap()).unwrap();
        let mut hello = Vec::new();
        conn.write_tls(&mut hello).unwrap();
        hello.extend_from_slice(&[0xff; 32]);
        let mut s = TcpStream::connect(server.local_addr()).unwrap();
        s.write_all(&hello).unwrap();
        let got = read_until_closed(&mut s, Duration::from_secs(3));
        assert!(!got.is_empty(), "{version:?}: nothing before the close");
    }
    // Still serving.
    wss(server.local_addr(), &client_config(&dir, "ca"));
    has_metric(&server, "ringws_tls_failures_total 4");
    server.shutdown(Duration::ZERO);
}

fn handshake_timeout_covers_tls() {
    let dir = Dir::new(&tag("timeout"));
    make_ca(&dir, "ca");
    let (cert, key) = make_leaf(&dir, "ca", "leaf", &["localhost"]);
    let server = server_with(
        TlsFiles {
            cert,
            key,
            sni: vec![],
        },
        |c| {
            c.handshake_timeout = Duration::from_millis(300);
        },
    );
    let cfg = client_config(&dir, "ca");
    let mut conn = ClientConnection::new(cfg, ServerName::try_from("localhost").unwrap()).unwrap();
    let mut hello = Vec::new();
    conn.write_tls(&mut hello).unwrap();
    let mut s = TcpStream::connect(server.local_addr()).unwrap();
    // Half a ClientHello, then nothing.
    s.write_all(&hello[..hello.len() / 2]).unwrap();
    let t = Instant::now();
    read_until_closed(&mut s, Duration::from_secs(5));
    assert!(t.elapsed() < Duration::from_secs(3), "{:?}", t.elapsed());
    server.shutdown(Duration::ZERO);
}

fn sni_picks_the_certificate() {
    let dir = Dir::new(&tag("sni"));
    make_ca(&dir, "ca");
    let (cert, key) = make_leaf(&dir, "ca", "a", &["a.test"]);
    let (bc, bk) = make_leaf(&dir, "ca", "b", &["b.test"]);
    let sni = vec![SniCert::parse(&format!("B.test={},{}", bc.display(), bk.display())).unwrap()];
    let server = server_with(TlsFiles { cert, key, sni }, |_| {});
    let cfg = client_config(&dir, "ca");
    let addr = server.local_addr();
    // Each name verifies only against its own certificate.
    connect(addr, &cfg, "b.test").expect("b.test's certificate for b.test");
    connect(addr, &cfg, "a.test").expect("the default for a.test");
    connect(addr, &cfg, "c.test").expect_err("the default is not for c.test");
    // An IP address sends no SNI: the default, which lists 127.0.0.1.
    connect(addr, &cfg, "127.0.0.1").expect("the default without SNI");
    server.shutdown(Duration::ZERO);
}

fn reload_keeps_live_connections() {
    let dir = Dir::new(&tag("reload"));
    make_ca(&dir, "ca1");
    make_ca(&dir, "ca2");
    let (cert, key) = make_leaf(&dir, "ca1", "leaf", &["localhost"]);
    let server = server_with(
        TlsFiles {
            cert: cert.clone(),
            key: key.clone(),
            sni: vec![],
        },
        |_| {},
    );
    let (old, new) = (client_config(&dir, "ca1"), client_config(&dir, "ca2"));
    let addr = server.local_addr();
    let mut live = wss(addr, &old);
    connect(addr, &new, "localhost").expect_err("not yet the new CA's");
    // New files in the same place.
    let (c2, k2) = make_leaf(&dir, "ca2", "leaf2", &["localhost"]);
    std::fs::copy(&c2, &cert).unwrap();
    std::fs::copy(&k2, &key).unwrap();
    server.reload_tls().unwrap();
    // The workers take the new configuration from their mailboxes.
    let t = Instant::now();
    while connect(addr, &new, "localhost").is_err() {
        assert!(t.elapsed() < Duration::from_secs(3), "not reloaded");
        std::thread::sleep(Duration::from_millis(10));
    }
    // A client of the old CA without a session to resume (a resumption
    // skips the certificate, and tickets outlive a reload).
    let old = client_config(&dir, "ca1");
    connect(addr, &old, "localhost").expect_err("the old CA's no more");
    live.text("still here");
    assert_eq!(live.next_text(), "still here");
    // A bad file: the error names it, and the last good one stays.
    std::fs::write(&key, "not a key").unwrap();
    let e = server.reload_tls().unwrap_err();
    assert!(e.to_string().contains(key.to_str().unwrap()), "{e}");
    connect(addr, &new, "localhost").expect("the last good configuration");
    has_metric(&server, "ringws_tls_reloads_total{outcome=\"ok\"} 1");
    has_metric(&server, "ringws_tls_reloads_total{outcome=\"failed\"} 1");
    server.shutdown(Duration::ZERO);
}

fn reload_under_load_drops_nothing() {
    let dir = Dir::new(&tag("reload-load"));
    let server = server(&dir);
    let cfg = client_config(&dir, "ca");
    let addr = server.local_addr();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    // Clients echoing without a pause, and others connecting anew each
    // time, while the certificates are reloaded again and again.
    let workers: Vec<_> = (0..6)
        .map(|i| {
            let (cfg, stop) = (cfg.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut echoes = 0u64;
                let mut c = wss(addr, &cfg);
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    if i % 2 == 0 {
                        c.text(&format!("{i}/{echoes}"));
                        assert_eq!(c.next_text(), format!("{i}/{echoes}"));
                    } else {
                        c = wss(addr, &cfg);
                        c.text("new");
                        assert_eq!(c.next_text(), "new");
                    }
                    echoes += 1;
                }
                echoes
            })
        })
        .collect();
    for _ in 0..20 {
        server.reload_tls().unwrap();
        std::thread::sleep(Duration::from_millis(20));
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for w in workers {
        assert!(w.join().expect("a client failed") > 0);
    }
    has_metric(&server, "ringws_tls_reloads_total{outcome=\"ok\"} 20");
    server.shutdown(Duration::ZERO);
}

fn peer_close_notify_ends_input() {
    let dir = Dir::new(&tag("notify"));
    let server = server(&dir);
    let cfg = client_config(&dir, "ca");
    let mut c = wss(server.local_addr(), &cfg);
    c.text("x");
    assert_eq!(c.next_text(), "x");
    // close_notify without a WebSocket Close: the server takes it as the
    // end of input (an abnormal close), answers close_notify and closes.
    c.s.conn.send_close_notify();
    c.s.flush().unwrap();
    assert!(ends_cleanly(&mut c.s));
    server.shutdown(Duration::ZERO);
}

on_both_backends!(
    wss_echo_and_clean_close,
    https_route_and_resumption,
    client_hello_one_byte_at_a_time,
    plain_http_or_garbage_is_closed_with_an_alert,
    alpn_without_http11_is_refused_with_an_alert,
    handshake_timeout_covers_tls,
    sni_picks_the_certificate,
    reload_keeps_live_connections,
    peer_close_notify_ends_input,
    records_split_anywhere,
    reload_under_load_drops_nothing,
);

#[test]
fn bad_files_refuse_to_start_naming_the_file() {
    let dir = Dir::new(&tag("bad"));
    make_ca(&dir, "ca");
    let (cert, key) = make_leaf(&dir, "ca", "leaf", &["localhost"]);
    let (other, other_key) = make_leaf(&dir, "ca", "other", &["other"]);
    let start = |cert: &Path, key: &Path| {
        let cfg = Config {
            listen: "127.0.0.1:0".parse().unwrap(),
            threads: 1,
            tls: Some(Tls::Files(TlsFiles {
                cert: cert.into(),
                key: key.into(),
                sni: vec![],
            })),
            ..Config::default()
        };
        match App::new(cfg).route("/", Echo).start() {
            Ok(s) => {
                s.shutdown(Duration::ZERO);
                panic!("started with {cert:?} {key:?}");
            }
            Err(e) => e.to_string(),
        }
    };
    let missing = dir.path("missing.pem");
    let e = start(&missing, &key);
    assert!(e.contains("missing.pem"), "{e}");
    let e = start(&key, &key);
    assert!(
        e.contains("leaf.key") && e.contains("no certificate"),
        "{e}"
    );
    let e = start(&cert, &cert);
    assert!(e.contains("leaf.pem"), "{e}");
    let e = start(&cert, &other_key);
    assert!(
        e.contains("other.key") && e.contains("does not belong"),
        "{e}"
    );
    drop(other);
}
