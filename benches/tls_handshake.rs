//! The ceiling of handshakes per second on one core: bare rustls, a client
//! and a server connection in memory, no sockets, no loop, no WebSocket.
//!
//! The server is what ringws runs: `ringws::tls::load` builds its
//! configuration from PEM files (TLS 1.3 and 1.2, ALPN `http/1.1`,
//! tickets on, one TLS 1.3 ticket per handshake, aws-lc-rs), here for an
//! ECDSA P-256 certificate from a test CA that `openssl` makes at the
//! start (no key is committed). The client is configured as `loadgen`'s
//! wss:// client is: the same provider (so the same key exchange,
//! X25519MLKEM768 first), the CA trusted and the chain checked, ALPN
//! `http/1.1`. Both ends run on the one thread, as the server and loadgen
//! share core 0 in `scripts/handshakes.sh`: that run divided by this one
//! is the "at least 85 %".
//!
//! * `full`: client resumption off, every handshake a full one.
//! * `resumed`: the client keeps rustls's in-memory session cache; each
//!   handshake resumes with the ticket the one before it left.
//!
//! One iteration is one whole handshake (both connections made, every
//! flight moved until neither has anything to send, the ticket included),
//! so criterion's throughput line, in elements per second, is handshakes
//! per second: `cargo bench --features tls --bench tls_handshake`.
//!
//! Criterion, as the other micro-benchmarks: a handshake takes a
//! millisecond or so, which it times well, with warm-up, outlier
//! analysis and an `estimates.json` a script can read.

#[path = "../tests/common/certs.rs"]
mod certs;

use std::hint::black_box;
use std::sync::Arc;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use ringws::tls::rustls::{
    client::Resumption, pki_types::ServerName, ClientConfig, ClientConnection, Connection,
    HandshakeKind, ServerConfig, ServerConnection,
};
use ringws::tls::TlsFiles;

/// Both configurations, from a fresh CA and leaf.
fn configs() -> (Arc<ServerConfig>, ClientConfig) {
    let dir = certs::Dir::new("bench-handshake");
    certs::make_ca(&dir, "ca");
    let (cert, key) = certs::make_leaf(&dir, "ca", "leaf", &["localhost"]);
    let server = ringws::tls::load(&TlsFiles {
        cert,
        key,
        sni: vec![],
    })
    .expect("the test certificate loads")
    .config;
    let client = ringws::tls::client_config(&[dir.path("ca.pem")]).expect("the test CA");
    (server, client)
}

/// Moves what `from` has to send into `to`; true if anything moved.
fn transfer(from: &mut Connection, to: &mut Connection, buf: &mut Vec<u8>) -> bool {
    buf.clear();
    while from.wants_write() {
        from.write_tls(buf).expect("writing to a Vec");
    }
    if buf.is_empty() {
        return false;
    }
    let mut rd = &buf[..];
    while !rd.is_empty() {
        to.read_tls(&mut rd).expect("reading from a slice");
        to.process_new_packets().expect("a good handshake");
    }
    true
}

/// One whole handshake; what kind it was, as the client saw it.
fn handshake(
    client: &Arc<ClientConfig>,
    server: &Arc<ServerConfig>,
    name: &ServerName<'static>,
    buf: &mut Vec<u8>,
) -> Option<HandshakeKind> {
    let mut c = Connection::from(ClientConnection::new(client.clone(), name.clone()).unwrap());
    let mut s = Connection::from(ServerConnection::new(server.clone()).unwrap());
    loop {
        let a = transfer(&mut c, &mut s, buf);
        let b = transfer(&mut s, &mut c, buf);
        if !a && !b {
            break;
        }
    }
    assert!(!c.is_handshaking() && !s.is_handshaking());
    c.handshake_kind()
}

fn handshakes(cr: &mut Criterion) {
    let (server, client) = configs();
    let name = ServerName::try_from("localhost").unwrap();
    let mut full = client.clone();
    full.resumption = Resumption::disabled();
    let (full, resumed) = (Arc::new(full), Arc::new(client));
    let mut buf = Vec::with_capacity(16 << 10);
    // What each variant measures is what it says.
    assert_eq!(
        handshake(&full, &server, &name, &mut buf),
        Some(HandshakeKind::Full)
    );
    handshake(&resumed, &server, &name, &mut buf);
    assert_eq!(
        handshake(&resumed, &server, &name, &mut buf),
        Some(HandshakeKind::Resumed)
    );

    let mut g = cr.benchmark_group("tls_handshake");
    g.throughput(Throughput::Elements(1));
    g.bench_function("full", |b| {
        b.iter(|| black_box(handshake(&full, &server, &name, &mut buf)))
    });
    g.bench_function("resumed", |b| {
        b.iter(|| black_box(handshake(&resumed, &server, &name, &mut buf)))
    });
    g.finish();
}

criterion_group!(benches, handshakes);
criterion_main!(benches);
