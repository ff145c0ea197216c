//! What the peer echo servers share: the listening address from the command
//! line, and a single-threaded tokio runtime, so that one core is compared
//! with one core.

use std::net::SocketAddr;

/// The address to listen on: the first argument, default 127.0.0.1:9001.
pub fn listen_addr() -> SocketAddr {
    std::env::args()
        .nth(1)
        .map(|a| a.parse().expect("usage: PEER [ADDR:PORT]"))
        .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 9001)))
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
