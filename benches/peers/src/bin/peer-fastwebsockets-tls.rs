//! peer-fastwebsockets's echo behind tokio-rustls: the TLS handshake in
//! the connection's task, then hyper and fastwebsockets's upgrade on the
//! TLS stream.
//!   peer-fastwebsockets-tls ADDR:PORT CERT KEY

use fastwebsockets::{upgrade, FragmentCollector, OpCode, WebSocketError};
use http_body_util::Empty;
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;

async fn echo(fut: upgrade::UpgradeFut) -> Result<(), WebSocketError> {
    let mut ws = FragmentCollector::new(fut.await?);
    loop {
        let frame = ws.read_frame().await?;
        match frame.opcode {
            OpCode::Close => break,
            OpCode::Text | OpCode::Binary => ws.write_frame(frame).await?,
            _ => {}
        }
    }
    Ok(())
}

async fn upgrade_req(mut req: Request<Incoming>) -> Result<Response<Empty<Bytes>>, WebSocketError> {
    let (response, fut) = upgrade::upgrade(&mut req)?;
    tokio::task::spawn_local(async move {
        let _ = echo(fut).await;
    });
    Ok(response)
}

fn main() {
    let addr = ringws_peers::listen_addr();
    let tls = ringws_peers::tls_acceptor();
    let rt = ringws_peers::runtime();
    let local = tokio::task::LocalSet::new();
    local.block_on(&rt, async move {
        let listener = tokio::net::TcpListener::bind(addr).await.expect("bind");
        ringws_peers::ready("fastwebsockets-tls", addr);
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let _ = stream.set_nodelay(true);
            let tls = tls.clone();
            tokio::task::spawn_local(async move {
                let Ok(stream) = tls.accept(stream).await else {
                    return;
                };
                let conn = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service_fn(upgrade_req))
                    .with_upgrades();
                let _ = conn.await;
            });
        }
    });
}
