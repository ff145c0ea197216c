//! The ceiling: a plain TCP echo on tokio-uring, one thread, one read buffer
//! per connection, no WebSocket at all. loadgen drives it with `--raw`.

fn main() {
    let addr = ringws_peers::listen_addr();
    tokio_uring::start(async move {
        let listener = tokio_uring::net::TcpListener::bind(addr).expect("bind");
        ringws_peers::ready("tcp-echo (tokio-uring)", addr);
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let _ = stream.set_nodelay(true);
            tokio_uring::spawn(async move {
                let mut buf = vec![0u8; 64 << 10];
                loop {
                    let (res, b) = stream.read(buf).await;
                    let n = match res {
                        Ok(0) | Err(_) => return,
                        Ok(n) => n,
                    };
                    let (res, b) = stream
                        .write_all(tokio_uring::buf::BoundedBuf::slice(b, ..n))
                        .await;
                    buf = b.into_inner();
                    if res.is_err() {
                        return;
                    }
                }
            });
        }
    });
}
