//! What the peer echo servers share: the listening address from the command
//! line, a single-threaded tokio runtime, so that one core is compared with
//! one core, and the TLS acceptor of the `-tls` peers.

use std::net::SocketAddr;

/// The address to listen on: the first argument, default 127.0.0.1:9001.
pub fn listen_addr() -> SocketAddr {
    std::env::args()
        .nth(1)
        .map(|a| a.parse().expect("usage: PEER [ADDR:PORT]"))
        .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 9001)))
}

/// A fresh private anonymous read-write mapping of `len` bytes, never
/// unmapped (the io_uring peers' provided-buffer rings and their buffers).
pub fn map(len: usize) -> std::io::Result<*mut u8> {
    // SAFETY: a new anonymous mapping at an address the kernel picks aliases
    // no memory of this process.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    if p == libc::MAP_FAILED {
        return Err(std::io::Error::last_os_error());
    }
    Ok(p.cast())
}

/// A current-thread tokio runtime.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime")
}

/// Prints the line the bench script waits for.
pub fn ready(name: &str, addr: SocketAddr) {
    eprintln!("{name} echo listening on {addr}");
}

/// The TLS acceptor of the `-tls` peers, from the certificate chain and key
/// (PEM) named by the second and third arguments or by `RINGWS_TLS_CERT`
/// and `RINGWS_TLS_KEY`. The configuration ringws's `src/tls/load.rs`
/// builds: aws-lc-rs, TLS 1.3 and 1.2, ALPN `http/1.1`, tickets on, one
/// TLS 1.3 ticket per handshake.
pub fn tls_acceptor() -> tokio_rustls::TlsAcceptor {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let arg = |n: usize, env: &str| {
        std::env::args()
            .nth(n)
            .or_else(|| std::env::var(env).ok())
            .expect("usage: PEER ADDR:PORT CERT KEY (or RINGWS_TLS_CERT, RINGWS_TLS_KEY)")
    };
    let (cert, key) = (arg(2, "RINGWS_TLS_CERT"), arg(3, "RINGWS_TLS_KEY"));
    let chain = CertificateDer::pem_file_iter(&cert)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .unwrap_or_else(|e| panic!("{cert}: {e}"));
    let key = PrivateKeyDer::from_pem_file(&key).unwrap_or_else(|e| panic!("{key}: {e}"));
    let provider = std::sync::Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .expect("TLS 1.3 and 1.2")
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .expect("a certificate and its key");
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    config.ticketer = rustls::crypto::aws_lc_rs::Ticketer::new().expect("a ticketer");
    config.send_tls13_tickets = 1;
    tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(config))
}
