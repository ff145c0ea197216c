//! Echo on tokio-tungstenite: accept_async, then send back every text and
//! binary message (pings are answered by the library).

use futures_util::{SinkExt, StreamExt};

fn main() {
    let addr = ringws_peers::listen_addr();
    ringws_peers::runtime().block_on(async move {
        let listener = tokio::net::TcpListener::bind(addr).await.expect("bind");
        ringws_peers::ready("tokio-tungstenite", addr);
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let _ = stream.set_nodelay(true);
            tokio::spawn(async move {
                let Ok(mut ws) = tokio_tungstenite::accept_async(stream).await else {
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
