//! The server's [`Handler`]: the opening handshake, then the echo of every
//! message, driven straight from the loop's completions.
//!
//! Per connection it keeps one [`Slot`]: the handshake's partial request
//! (only when a request head came in pieces), then the sans-IO
//! [`Connection`]. Each read is fed whole to the connection, unmasking in
//! place; each echoed message becomes a header in the connection's write
//! batch plus a range of the read buffer (or, if it was reassembled, its own
//! buffer), and the loop sends the batch at the end of the turn.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use super::buf::InputBuf;
use super::io::{Gone, Handler, Io, SockId};
use crate::config::Config;
use crate::log;
use crate::proto::error::close_code;
use crate::proto::handshake::{parse_request, refusal};
use crate::proto::{Connection, Event, Payload};

/// What other threads ask of a worker.
pub(crate) enum Command {
    /// Stop accepting, close every connection with 1001, finish.
    Shutdown,
}

/// How long a refused or failed connection may keep sending after our
/// last bytes before it is cut: time for the peer to read them, without a
/// reset destroying them (closing with unread input sends one).
const LINGER: Duration = Duration::from_secs(1);

/// A connection's state on the server.
enum Slot {
    Empty,
    /// Waiting for the request head; the part received so far when it came
    /// in pieces.
    Handshake(Option<Vec<u8>>),
    Open(Connection),
    /// Our last bytes are queued (an HTTP error, or a Close after framing was
    /// lost); what the peer still sends is dropped until it closes or the
    /// linger time is up.
    Lingering,
}

/// One worker thread's server.
pub(crate) struct Server {
    cfg: Arc<Config>,
    slots: Vec<Slot>,
    /// Connections open over all threads.
    open_total: Arc<AtomicUsize>,
    /// Connections open on this thread.
    open: usize,
    mailbox: mpsc::Receiver<Command>,
    waker: Arc<super::Waker>,
    /// Set at shutdown: when to stop waiting for the close handshakes.
    stopping: Option<Instant>,
    done: bool,
    last_warn: Option<Instant>,
}

impl Server {
    pub(crate) fn new(
        cfg: Arc<Config>,
        open_total: Arc<AtomicUsize>,
        mailbox: mpsc::Receiver<Command>,
        waker: Arc<super::Waker>,
    ) -> Server {
        Server {
            cfg,
            slots: Vec::new(),
            open_total,
            open: 0,
            mailbox,
            waker,
            stopping: None,
            done: false,
            last_warn: None,
        }
    }

    fn slot(&mut self, id: SockId) -> &mut Slot {
        let i = id.slot as usize;
        if i >= self.slots.len() {
            self.slots.resize_with(i + 1, || Slot::Empty);
        }
        &mut self.slots[i]
    }

    /// Queues `bytes` as the connection's last, then lingers.
    fn refuse(&mut self, io: &mut Io, id: SockId, bytes: &[u8]) {
        if let Some(b) = io.out(id) {
            let h = b.hdr.len();
            b.hdr.extend_from_slice(bytes);
            b.push_hdr_from(h);
        }
        self.linger(io, id);
    }

    fn linger(&mut self, io: &mut Io, id: SockId) {
        *self.slot(id) = Slot::Lingering;
        io.shutdown_after_flush(id);
        let at = io.now() + LINGER;
        io.set_deadline(id, Some(at));
    }

    fn handshake(&mut self, io: &mut Io, id: SockId, input: InputBuf) {
        let limits = self.cfg.handshake_limits();
        let Slot::Handshake(partial) = self.slot(id) else {
            return;
        };
        let res = match partial {
            None => parse_request(input.as_slice(), limits),
            Some(acc) => {
                acc.extend_from_slice(input.as_slice());
                parse_request(acc, limits)
            }
        };
        match res {
            Ok(None) => {
                if partial.is_none() {
                    let mut acc = Vec::with_capacity(limits.max_head);
                    acc.extend_from_slice(input.as_slice());
                    *partial = Some(acc);
                }
            }
            Ok(Some(accepted)) => {
                // The bytes after the head are the first frames.
                let (input, start) = match partial.take() {
                    None => (input, accepted.head_len),
                    Some(acc) => (InputBuf::Heap(acc), accepted.head_len),
                };
                *self.slot(id) = Slot::Open(Connection::server(self.cfg.limits()));
                io.set_deadline(id, None);
                if let Some(b) = io.out(id) {
                    let h = b.hdr.len();
                    b.hdr.extend_from_slice(&accepted.response());
                    b.push_hdr_from(h);
                }
                self.frames(io, id, input, start);
            }
            Err(e) => {
                log!(Info, "{}: refused handshake: {e}", io.peer_name(id));
                self.refuse(io, id, &refusal(e));
            }
        }
    }

    /// Feeds `input[start..]` to the connection and queues the echo of
    /// every message and the protocol's own replies, in order.
    fn frames(&mut self, io: &mut Io, id: SockId, mut input: InputBuf, start: usize) {
        let now = io.now();
        let Slot::Open(conn) = &mut self.slots[id.slot as usize] else {
            return;
        };
        let Some(batch) = io.out(id) else { return };
        let len = input.as_slice().len();
        let mut off = start;
        let idx = batch.next_input();
        let mut borrows_input = false;
        let mut error = None;
        let mut peer_closed = None;
        while off < len {
            let (n, res) = conn.read(&mut input.as_mut_slice()[off..], now);
            match res {
                Ok(Some(Event::Message { kind, payload })) => {
                    let plen = match &payload {
                        Payload::Input(r) => r.len(),
                        Payload::Owned(v) => v.len(),
                    };
                    let h = batch.hdr.len();
                    if conn.send_message(kind, plen as u64, &mut batch.hdr).is_ok() {
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
                                    batch.push_input(idx, at..off + r.end);
                                } else {
                                    batch.push_hdr_from(h);
                                    batch.push_input(idx, off + r.start..off + r.end);
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
                Ok(Some(Event::Closed { code })) => peer_closed = Some(code),
                Ok(Some(Event::Ping | Event::Pong) | None) => {}
                Err(e) => {
                    error.get_or_insert(e);
                }
            }
            if conn.has_control() {
                let h = batch.hdr.len();
                conn.take_control(&mut batch.hdr);
                batch.push_hdr_from(h);
            }
            off += n;
        }
        if borrows_input {
            batch.add_input(input);
        } else {
            // Back to the pool before the write, not after it.
            drop(input);
        }
        let (closed, lost, deadline) = (conn.is_closed(), conn.framing_lost(), conn.poll_timeout());
        if let Some(code) = peer_closed {
            log!(Debug, "{}: closed by peer ({code:?})", io.peer_name(id));
        }
        if let Some(e) = error {
            log!(
                Info,
                "{}: protocol error: {e}; closing with {}",
                io.peer_name(id),
                e.close_code()
            );
        }
        if lost {
            // Frame boundaries are gone: nothing more can be read, so close
            // now rather than wait for a Close that cannot be found.
            self.linger(io, id);
        } else if closed {
            // 7.1.1: the server closes the TCP connection first, once its
            // last frames are out.
            io.close_after_flush(id);
        } else {
            io.set_deadline(id, deadline);
        }
    }

    fn start_shutdown(&mut self, io: &mut Io) {
        if self.stopping.is_some() {
            return;
        }
        io.stop_accepting();
        let now = io.now();
        self.stopping = Some(now + self.cfg.close_timeout + Duration::from_millis(500));
        for slot in 0..self.slots.len() {
            let Some(id) = io.id_of(slot as u32) else {
                continue;
            };
            match &mut self.slots[slot] {
                Slot::Open(conn) => {
                    conn.close(close_code::GOING_AWAY, "server shutting down", now);
                    let deadline = conn.poll_timeout();
                    if let Some(b) = io.out(id) {
                        let h = b.hdr.len();
                        conn.take_control(&mut b.hdr);
                        b.push_hdr_from(h);
                    }
                    io.set_deadline(id, deadline);
                }
                Slot::Handshake(_) => io.close(id),
                Slot::Lingering | Slot::Empty => {}
            }
        }
    }
}

impl Handler for Server {
    fn accepted(&mut self, io: &mut Io, id: SockId) {
        let total = self.open_total.fetch_add(1, Ordering::Relaxed);
        self.open += 1;
        if self.stopping.is_some() {
            io.close(id);
            *self.slot(id) = Slot::Lingering;
            return;
        }
        if total >= self.cfg.max_connections {
            let now = io.now();
            if self
                .last_warn
                .is_none_or(|t| now.duration_since(t) >= Duration::from_secs(1))
            {
                log!(
                    Warn,
                    "{}: refused, {total} connections open (max-connections)",
                    io.peer_name(id)
                );
                self.last_warn = Some(now);
            }
            self.refuse(
                io,
                id,
                b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            );
            return;
        }
        *self.slot(id) = Slot::Handshake(None);
        let at = io.now() + self.cfg.handshake_timeout;
        io.set_deadline(id, Some(at));
    }

    fn data(&mut self, io: &mut Io, id: SockId, buf: InputBuf) {
        match self.slot(id) {
            Slot::Handshake(_) => self.handshake(io, id, buf),
            Slot::Open(_) => self.frames(io, id, buf, 0),
            Slot::Lingering | Slot::Empty => {}
        }
    }

    fn eof(&mut self, io: &mut Io, id: SockId, err: Option<std::io::Error>) {
        let name = io.peer_name(id);
        match (self.slot(id), err) {
            (_, Some(e)) => log!(Debug, "{name}: read error: {e}"),
            (Slot::Open(conn), None) => {
                if conn.handle_eof() {
                    log!(Debug, "{name}: connection closed without a Close frame");
                }
            }
            (Slot::Handshake(_), None) => log!(Debug, "{name}: closed during the handshake"),
            (Slot::Lingering | Slot::Empty, None) => {}
        }
        io.close(id);
    }

    fn timer(&mut self, io: &mut Io, id: SockId) {
        match self.slot(id) {
            Slot::Handshake(_) => log!(Info, "{}: handshake timed out", io.peer_name(id)),
            Slot::Open(conn) => {
                conn.handle_timeout(io.now());
                log!(
                    Debug,
                    "{}: no Close from the peer in time",
                    io.peer_name(id)
                );
            }
            Slot::Lingering | Slot::Empty => {}
        }
        io.close(id);
    }

    fn gone(&mut self, _io: &mut Io, id: SockId, _why: Gone) {
        let s = self.slot(id);
        if matches!(s, Slot::Empty) {
            return;
        }
        *s = Slot::Empty;
        self.open -= 1;
        self.open_total.fetch_sub(1, Ordering::Relaxed);
    }

    fn wake(&mut self, io: &mut Io) {
        self.waker.clear();
        while let Ok(cmd) = self.mailbox.try_recv() {
            match cmd {
                Command::Shutdown => self.start_shutdown(io),
            }
        }
    }

    fn turn(&mut self, io: &mut Io) {
        if let Some(until) = self.stopping {
            if self.open == 0 || io.now() >= until {
                self.done = true;
            }
        }
    }

    fn next_deadline(&self) -> Option<Instant> {
        self.stopping
    }

    fn done(&self) -> bool {
        self.done
    }
}

#[cfg(test)]
mod tests {
    /// Every connection keeps one `Slot` (`scripts/idle-memory.sh` measures
    /// the whole per-connection cost).
    #[test]
    fn a_connection_slot_stays_small() {
        let n = std::mem::size_of::<super::Slot>();
        eprintln!(
            "connection slot {n} bytes, Connection {}",
            std::mem::size_of::<crate::proto::Connection>()
        );
        assert!(n <= 160, "connection slot grew to {n} bytes");
    }
}
