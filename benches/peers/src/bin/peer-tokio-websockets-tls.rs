//! peer-tokio-websockets's echo behind tokio-rustls: the TLS handshake in
//! the connection's task, then ServerBuilder::accept on the TLS stream.
//!   peer-tokio-websockets-tls ADDR:PORT CERT KEY

use futures_util::{SinkExt, StreamExt};

fn main() {
    let addr = ringws_peers::listen_addr();
    let tls = ringws_peers::tls_acceptor();
    ringws_peers::runtime().block_on(async move {
        let listener = tokio::net::TcpListener::bind(addr).await.expect("bind");
        ringws_peers::ready("tokio-websockets-tls", addr);
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let _ = stream.set_nodelay(true);
            let tls = tls.clone();
            tokio::spawn(async move {
                let Ok(stream) = tls.accept(stream).await else {
                    return;
                };
                let Ok((_req, mut ws)) =
                    tokio_websockets::ServerBuilder::new().accept(stream).await
                else {
                    return;
                };
                while let Some(Ok(msg)) = ws.next().await {
                    if (msg.is_text() || msg.is_binary()) && ws.send(msg).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
}
