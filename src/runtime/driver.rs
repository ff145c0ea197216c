//! The per-connection task: handshake, then the read-process-write loop.
//!
//! One task per connection, on the worker thread that accepted it. Each turn
//! of the loop:
//! 1. `RECV` with buffer select: the kernel fills a pool buffer when data
//!    comes ([`super::buf`]); nothing is pinned while the peer is silent.
//! 2. The sans-IO [`Connection`] consumes the whole buffer, unmasking in
//!    place; each echoed message becomes a header in the batch plus a range
//!    of the read buffer (or, if it was reassembled, its own buffer).
//! 3. One `SENDMSG` sends every frame of the batch; then the read buffer goes
//!    back to the pool.
//!
//! Reading and writing alternate: while a write is blocked the connection
//! reads nothing, which is the backpressure an echo needs.

use std::net::SocketAddr;
use std::pin::pin;
use std::rc::Rc;
use std::time::Instant;

use tokio_uring::buf::BoundedBuf;
use tokio_uring::net::TcpStream;

use super::buf::{recv, send_all, InputBuf, Peer, Received, WriteBatch};
use super::ThreadCtx;
use crate::log;
use crate::proto::error::close_code;
use crate::proto::handshake::{parse_request, refusal};
use crate::proto::{Connection, Event, Payload};

/// Serves one accepted connection to its end.
pub(super) async fn serve(stream: TcpStream, peer: SocketAddr, ctx: Rc<ThreadCtx>) {
    // Boxed: its state is dead once the handshake is over and would
    // otherwise stay in the future of every connection.
    let Some((input, start)) = Box::pin(handshake(&stream, peer, &ctx)).await else {
        return;
    };
    let mut ws = Ws {
        conn: Connection::server(ctx.cfg.limits()),
        stream,
        ctx,
    };
    ws.run(input, start).await;
}

/// Reads and answers the opening handshake. On success returns the buffer
/// holding the request and where the WebSocket bytes after it start.
async fn handshake(
    stream: &TcpStream,
    peer: SocketAddr,
    ctx: &ThreadCtx,
) -> Option<(InputBuf, usize)> {
    let limits = ctx.cfg.handshake_limits();
    let max = limits.max_head;
    let deadline = tokio::time::Instant::now() + ctx.cfg.handshake_timeout;
    let mut buf: Vec<u8> = Vec::with_capacity(max);
    loop {
        let len = buf.len();
        let read = stream.read(buf.slice(len..));
        let (res, slice) = match tokio::time::timeout_at(deadline, read).await {
            Ok(r) => r,
            Err(_) => {
                log!(Info, "{peer}: handshake timed out");
                // The dropped read owns the buffer until its completion,
                // which the shutdown brings at once.
                let _ = stream.shutdown(std::net::Shutdown::Both);
                return None;
            }
        };
        buf = slice.into_inner();
        match res {
            Ok(0) => {
                log!(Debug, "{peer}: closed during the handshake");
                return None;
            }
            Ok(_) => {}
            Err(e) => {
                log!(Debug, "{peer}: read error during the handshake: {e}");
                return None;
            }
        }
        match parse_request(&buf, limits) {
            Ok(None) => continue,
            Ok(Some(accepted)) => {
                let (res, _) = stream.write_all(accepted.response()).await;
                if let Err(e) = res {
                    log!(Debug, "{peer}: write error during the handshake: {e}");
                    return None;
                }
                return Some((InputBuf::Heap(buf), accepted.head_len));
            }
            Err(e) => {
                log!(Info, "{peer}: refused handshake: {e}");
                refuse(stream, refusal(e)).await;
                return None;
            }
        }
    }
}

/// Sends an HTTP error response and closes gracefully: half-close, then read
/// and drop what the client still sends, for at most a second. Closing with
/// unread data would send a RST, which can destroy the response before the
/// client reads it.
pub(super) async fn refuse(stream: &TcpStream, response: Vec<u8>) {
    let (res, _) = stream.write_all(response).await;
    if res.is_err() {
        return;
    }
    let _ = stream.shutdown(std::net::Shutdown::Write);
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(1);
    let mut buf = Vec::with_capacity(4096);
    loop {
        match tokio::time::timeout_at(deadline, stream.read(buf)).await {
            Ok((Ok(n), b)) if n > 0 => buf = b,
            Ok(_) => return,
            Err(_) => {
                let _ = stream.shutdown(std::net::Shutdown::Both);
                return;
            }
        }
    }
}

struct Ws {
    conn: Connection,
    stream: TcpStream,
    ctx: Rc<ThreadCtx>,
}

impl Ws {
    async fn run(&mut self, first: InputBuf, start: usize) {
        // Moved into `process` each turn and assigned anew after the read:
        // a moved-out local takes no room in the future while it waits,
        // where an `Option` left `None` would.
        let (mut input, mut start) = (first, start);
        let mut shutdown = pin!(self.ctx.shutdown.wait());
        let mut shutdown_seen = false;
        loop {
            let batch = self.process(input, start);
            if let Err(e) = send(&self.stream, &self.ctx, batch).await {
                log!(Debug, "{}: write error: {e}", Peer(&self.stream));
                return;
            }
            if self.conn.is_closed() {
                // 7.1.1: the server closes the TCP connection first. Dropping
                // the stream closes it; every byte queued before went out.
                return;
            }
            let res = self.next_input(shutdown.as_mut(), &mut shutdown_seen).await;
            match res {
                Ok(Received::Data(bytes)) => (input, start) = (bytes, 0),
                Ok(Received::Eof) => {
                    if self.conn.handle_eof() {
                        log!(
                            Debug,
                            "{}: connection closed without a Close frame",
                            Peer(&self.stream)
                        );
                    }
                    return;
                }
                Err(e) => {
                    log!(Debug, "{}: read error: {e}", Peer(&self.stream));
                    return;
                }
            }
        }
    }

    /// Waits for the next bytes from the peer, meanwhile answering a server
    /// shutdown and the close timeout. A function of its own, so that its
    /// state and that of the write overlap in the connection's future.
    async fn next_input(
        &mut self,
        mut shutdown: std::pin::Pin<&mut super::shutdown::ShutdownWait>,
        shutdown_seen: &mut bool,
    ) -> std::io::Result<Received> {
        let mut rx = pin!(recv(&self.stream, &self.ctx.pool));
        let mut timed_out = false;
        loop {
            let deadline = self.conn.poll_timeout().filter(|_| !timed_out);
            // Boxed: a timer is only needed while closing, and its
            // state would otherwise sit in every idle connection.
            let close_timer = async {
                match deadline {
                    Some(d) => Box::pin(tokio::time::sleep_until(d.into())).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                biased;
                r = &mut rx => return r,
                _ = &mut shutdown, if !*shutdown_seen => {
                    *shutdown_seen = true;
                    self.conn.close(close_code::GOING_AWAY, "server shutting down", Instant::now());
                    // Boxed: this send happens while the recv is in
                    // flight, so unboxed its state would add to that of
                    // every idle connection, for a once-only event.
                    let flush = flush_control(&mut self.conn, &self.stream, &self.ctx);
                    if Box::pin(flush).await.is_err() {
                        self.abort();
                    }
                }
                _ = close_timer => {
                    timed_out = true;
                    self.conn.handle_timeout(Instant::now());
                    log!(Debug, "{}: no Close from the peer in time", Peer(&self.stream));
                    // The pending recv must complete before we go.
                    self.abort();
                }
            }
        }
    }

    /// Shuts the socket down both ways, which completes a pending recv.
    fn abort(&self) {
        let _ = self.stream.shutdown(std::net::Shutdown::Both);
    }

    /// Feeds `input[start..]` to the connection and returns the batch to
    /// send: the echo of every message and the protocol's own replies, in
    /// order. Synchronous, so that its state is not part of the future.
    fn process(&mut self, mut input: InputBuf, start: usize) -> Box<WriteBatch> {
        let now = Instant::now();
        let mut batch = self.ctx.take_batch();
        let len = input.as_slice().len();
        let mut off = start;
        let mut borrows_input = false;
        while off < len {
            let (n, res) = self.conn.read(&mut input.as_mut_slice()[off..], now);
            match res {
                Ok(Some(Event::Message { kind, payload })) => {
                    let plen = match &payload {
                        Payload::Input(r) => r.len(),
                        Payload::Owned(v) => v.len(),
                    };
                    let h = batch.hdr.len();
                    if self
                        .conn
                        .send_message(kind, plen as u64, &mut batch.hdr)
                        .is_ok()
                    {
                        match payload {
                            Payload::Input(r) => {
                                let hlen = batch.hdr.len() - h;
                                if r.start >= hlen {
                                    // The frame's own header, parsed and done
                                    // with, lies just before its payload and
                                    // is longer than ours (a client masks):
                                    // put ours there, so that header and
                                    // payload go out as one piece. No earlier
                                    // piece of the batch reaches past `off`.
                                    let at = off + r.start - hlen;
                                    input.as_mut_slice()[at..off + r.start]
                                        .copy_from_slice(&batch.hdr[h..]);
                                    batch.hdr.truncate(h);
                                    batch.push_input(at..off + r.end);
                                } else {
                                    batch.push_hdr_from(h);
                                    batch.push_input(off + r.start..off + r.end);
                                }
                                borrows_input = true;
                            }
                            Payload::Owned(v) => {
                                batch.push_hdr_from(h);
                                batch.push_owned(v);
                            }
                        }
                    }
                }
                Ok(Some(Event::Closed { code })) => {
                    log!(Debug, "{}: closed by peer ({code:?})", Peer(&self.stream));
                }
                Ok(Some(Event::Ping | Event::Pong) | None) => {}
                Err(e) => {
                    log!(
                        Info,
                        "{}: protocol error: {e}; closing with {}",
                        Peer(&self.stream),
                        e.close_code()
                    );
                }
            }
            if self.conn.has_control() {
                let h = batch.hdr.len();
                self.conn.take_control(&mut batch.hdr);
                batch.push_hdr_from(h);
            }
            off += n;
        }
        if borrows_input {
            batch.set_input(input);
        } else {
            // Back to the pool before the write, not after it.
            drop(input);
        }
        batch
    }
}

/// Sends whatever control frames `conn` has queued.
async fn flush_control(
    conn: &mut Connection,
    stream: &TcpStream,
    ctx: &ThreadCtx,
) -> std::io::Result<()> {
    let mut batch = ctx.take_batch();
    conn.take_control(&mut batch.hdr);
    batch.push_hdr_from(0);
    send(stream, ctx, batch).await
}

/// Sends a batch within the write timeout, and returns it to the pool.
async fn send(stream: &TcpStream, ctx: &ThreadCtx, batch: Box<WriteBatch>) -> std::io::Result<()> {
    if batch.is_empty() {
        ctx.put_batch(batch);
        return Ok(());
    }
    let sending = pin!(send_all(stream, batch));
    let ((res, batch), timed_out) = CutOff {
        fut: sending,
        deadline: ctx.deadlines.arm(),
        stream,
        fired: false,
    }
    .await;
    ctx.put_batch(batch);
    if timed_out {
        log!(
            Info,
            "{}: write timed out after {:?} (the peer is not reading); closed",
            Peer(stream),
            ctx.cfg.write_timeout
        );
        return Err(std::io::ErrorKind::TimedOut.into());
    }
    res
}

/// Runs an io_uring op to completion, shutting the socket down if it is
/// still pending at the deadline. The op is never dropped in flight (its
/// stable data may hold pool buffers); the shutdown makes it complete.
/// Hand-written rather than a `select!`, which would take about 170 more
/// bytes in every connection's future.
struct CutOff<'a, F> {
    fut: std::pin::Pin<&'a mut F>,
    deadline: super::deadline::Deadline<'a>,
    stream: &'a TcpStream,
    fired: bool,
}

impl<F: std::future::Future> std::future::Future for CutOff<'_, F> {
    type Output = (F::Output, bool);

    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        if let std::task::Poll::Ready(out) = self.fut.as_mut().poll(cx) {
            return std::task::Poll::Ready((out, self.fired));
        }
        if !self.fired && std::pin::Pin::new(&mut self.deadline).poll(cx).is_ready() {
            self.fired = true;
            let _ = self.stream.shutdown(std::net::Shutdown::Both);
        }
        std::task::Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    /// Every idle connection carries its task's future, so its size is most
    /// of the memory an idle connection costs (scripts/idle-memory.sh
    /// measures the whole). tokio allocates a task in steps of 128 bytes:
    /// at 600 bytes of future an idle connection costs 935 bytes, at 608 it
    /// cost 1063. The budget keeps it under the 1 KiB target and catches a
    /// change that makes every connection bigger, such as a timer or a
    /// select! kept across awaits.
    #[test]
    fn connection_future_fits_its_budget() {
        tokio_uring::start(async {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            let peer = l.local_addr().unwrap();
            let s = tokio_uring::net::TcpStream::connect(peer).await.unwrap();
            let ctx = super::ThreadCtx::for_tests(std::sync::Arc::new(crate::Config::default()));
            let send = super::send(&s, &ctx, ctx.take_batch());
            let send_size = std::mem::size_of_val(&send);
            drop(send);
            let serve = super::serve(s, peer, ctx.clone());
            let serve_size = std::mem::size_of_val(&serve);
            eprintln!("send future {send_size} bytes, connection future {serve_size} bytes");
            assert!(
                serve_size <= 600,
                "connection future grew to {serve_size} bytes"
            );
        });
    }
}
