//! TLS in the loop: the two places the runtime's bytes change form.
//!
//! * Reads: [`Io::deliver`] hands a TLS socket's ciphertext to its
//!   session ([`crate::tls::session::Session`]), which decrypts the whole
//!   records in it; the plaintext is copied back to the front of the same
//!   read buffer (it is never longer than the records it came from) and
//!   that buffer goes to the handler, so the zero-copy echo still queues
//!   ranges of it. A record a read ends inside of waits in the session.
//! * Writes: [`Io::start_send`] seals everything a turn queued for the
//!   socket into records of up to 16 KiB, behind any handshake records or
//!   alert the session has, in one buffer that leaves in one write. The
//!   plaintext batch goes back to the spares (and its read buffers to
//!   their pool) before the write, not after it.
//!
//! A TLS failure (a bad record, an unacceptable ClientHello, plain HTTP on
//! the port) is the loop's to handle: it is logged and counted, the alert
//! rustls wrote is sent, and the socket closes after it; the handler hears
//! only `gone`. close_notify is sent before the loop's own FIN or close
//! after a flush; one received ends the input like a FIN.

use std::sync::Arc;

use super::*;
use crate::log::conn_event;
use crate::tls::session::{SealError, Session};

/// Plaintext of a read from this length on goes to the handler in the
/// vector it was decrypted to rather than copied back into the read buffer.
const LARGE_PLAIN: usize = 4 << 10;

impl Io {
    /// The TLS configuration new connections on this loop's listener get
    /// (`None`: plain TCP). Live connections keep the one they started
    /// with: what a reload needs.
    pub(crate) fn set_tls(&mut self, cfg: Option<Arc<rustls::ServerConfig>>) {
        self.tls = cfg;
    }

    /// Is `id` a TLS connection?
    pub fn is_tls(&self, id: SockId) -> bool {
        self.sock(id).is_some_and(|s| s.flags & TLS != 0)
    }

    /// Did `id`'s TLS handshake resume an earlier session? `None` for a
    /// plain socket, a gone one, or before the handshake has got that far
    /// (for a client: the ServerHello). What `loadgen connect` counts.
    pub fn tls_resumed(&self, id: SockId) -> Option<bool> {
        self.sock(id)?;
        self.tls_sessions.get(id.slot as usize)?.as_ref()?.resumed()
    }

    /// Connects to `addr` like [`Io::connect`], then speaks TLS to `name`
    /// (its SNI, and what the certificate is checked against) with
    /// `cfg`: the handler's output waits until the handshake is over, and
    /// its reads are plaintext.
    pub fn connect_tls(
        &mut self,
        addr: std::net::SocketAddr,
        source: Option<std::net::IpAddr>,
        cfg: &Arc<rustls::ClientConfig>,
        name: rustls::pki_types::ServerName<'static>,
    ) -> std::io::Result<SockId> {
        let sess = Session::client(cfg.clone(), name).map_err(std::io::Error::other)?;
        let id = self.connect(addr, source)?;
        let slot = id.slot as usize;
        if self.tls_sessions.len() <= slot {
            self.tls_sessions.resize_with(self.socks.len(), || None);
        }
        self.tls_sessions[slot] = Some(Box::new(sess));
        self.socks[slot].flags |= TLS;
        Ok(id)
    }

    /// A TLS client's TCP connection is up: its ClientHello goes.
    pub(super) fn tls_connected(&mut self, id: SockId) {
        if self.tls_output(id.slot) {
            self.mark_dirty(id.slot);
        }
    }

    /// A just accepted socket starts its TLS session, if the listener has
    /// TLS. False if the session could not be made (logged; the socket is
    /// closed).
    pub(super) fn start_tls(&mut self, id: SockId) -> bool {
        let Some(cfg) = &self.tls else { return true };
        match Session::server(cfg.clone()) {
            Ok(s) => {
                let slot = id.slot as usize;
                if self.tls_sessions.len() <= slot {
                    self.tls_sessions.resize_with(self.socks.len(), || None);
                }
                self.tls_sessions[slot] = Some(Box::new(s));
                self.socks[slot].flags |= TLS;
                true
            }
            Err(e) => {
                tracing::warn!("cannot start a TLS session: {e}");
                self.close(id);
                false
            }
        }
    }

    /// [`Io::deliver`] for a TLS socket.
    #[inline(never)]
    pub(super) fn deliver_tls<H: Handler>(&mut self, id: SockId, mut input: InputBuf, h: &mut H) {
        let slot = id.slot as usize;
        let mut plain = std::mem::take(&mut self.tls_plain);
        plain.clear();
        let Some(sess) = self.tls_sessions[slot].as_deref_mut() else {
            return;
        };
        let r = sess.read(input.as_mut_slice(), &mut plain);
        let output = sess.has_output();
        if r.established {
            let v = sess.version();
            self.counts.tls_handshakes[usize::from(v != Some(rustls::ProtocolVersion::TLSv1_3))] +=
                1;
            conn_event!(DEBUG, self, id, "TLS established ({v:?})");
            if self.socks[slot]
                .pending
                .as_ref()
                .is_some_and(|p| !p.is_empty())
            {
                // Output queued during the handshake can go now.
                self.mark_dirty(id.slot);
            }
        }
        if output {
            self.mark_dirty(id.slot);
        }
        if let Some(e) = r.error {
            self.counts.tls_failed += 1;
            conn_event!(INFO, self, id, "TLS: {e}");
            drop(input);
            self.tls_plain = plain;
            let s = &mut self.socks[slot];
            s.flags |= READ_EOF;
            // The alert goes first, if rustls wrote one; then the close.
            self.close_after_flush(id);
            return;
        }
        if !plain.is_empty() {
            let buf = if plain.len() < LARGE_PLAIN && plain.len() <= input.as_slice().len() {
                // Never longer than the ciphertext it came from: back into
                // the same read buffer, which the handler may keep.
                input.as_mut_slice()[..plain.len()].copy_from_slice(&plain);
                truncate(&mut input, plain.len());
                input
            } else {
                // Much plaintext (a copy back would cost more than an
                // allocation), or more than this buffer holds (a record
                // that began in an earlier read): the handler takes the
                // vector, the scratch gets a new one.
                drop(input);
                let cap = plain.capacity();
                InputBuf::Heap(std::mem::replace(&mut plain, Vec::with_capacity(cap)))
            };
            h.data(self, id, buf);
        } else {
            drop(input);
        }
        self.tls_plain = plain;
        if r.peer_closed && self.is_open(id) {
            self.read_ended(id, None, h);
        }
    }

    /// Puts `slot` on the dirty list, so the turn's flush looks at it.
    fn mark_dirty(&mut self, slot: u32) {
        let s = &mut self.socks[slot as usize];
        if s.flags & DIRTY == 0 {
            s.flags |= DIRTY;
            self.dirty.push(slot);
        }
    }

    /// Does a TLS socket have records of its own to send (a handshake
    /// flight, an alert, close_notify)?
    pub(super) fn tls_output(&self, slot: u32) -> bool {
        self.socks[slot as usize].flags & TLS != 0
            && self.tls_sessions[slot as usize]
                .as_ref()
                .is_some_and(|t| t.has_output())
    }

    /// [`Io::start_send`] for a TLS socket: seals the pending plaintext
    /// (once the handshake is over) behind the session's own records, into
    /// one buffer in flight.
    #[inline(never)]
    pub(super) fn start_send_tls(&mut self, slot: u32) {
        let mut out = self.spares.pop().unwrap_or_else(super::write::new_batch);
        let s = &mut self.socks[slot as usize];
        let id = SockId { slot, gen: s.gen };
        let sess = self.tls_sessions[slot as usize]
            .as_deref_mut()
            .expect("a TLS socket");
        let ct = &mut out.sealed;
        sess.take_output(ct);
        let mut done = None;
        let mut failed = None;
        let mut held = false;
        if let Some(p) = s.pending.take() {
            if p.is_empty() {
                done = Some(p);
            } else {
                match sess.seal(p.pieces(), ct, &mut self.tls_stage) {
                    Ok(()) => done = Some(p),
                    // Sent once the handshake is over.
                    Err(SealError::NotReady) => {
                        s.pending = Some(p);
                        held = true;
                    }
                    Err(SealError::Tls(e)) => {
                        done = Some(p);
                        failed = Some(e);
                    }
                }
            }
        }
        if !held {
            // close_notify goes after everything queued before it.
            sess.finish(ct);
        }
        if let Some(p) = done {
            self.put_batch(p);
        }
        if let Some(e) = failed {
            conn_event!(WARN, self, id, "TLS: cannot encrypt: {e}");
            self.put_batch(out);
            self.close(id);
            return;
        }
        if out.sealed.is_empty() {
            self.put_batch(out);
            return;
        }
        out.push_sealed();
        out.seal();
        self.counts.bytes += out.bytes() as u64;
        let s = &mut self.socks[slot as usize];
        s.inflight = Some(out);
        if s.write_due == 0 {
            s.write_due = self.wheel.now() + self.write_ticks + 1;
            self.rearm(slot);
        }
        self.send_inflight(slot);
    }

    /// Before the loop closes or half-closes a TLS socket after its queue
    /// is sent: close_notify joins the queue. True if there is something
    /// to send first.
    pub(super) fn tls_close_notify(&mut self, slot: u32) -> bool {
        if self.socks[slot as usize].flags & TLS == 0 {
            return false;
        }
        let Some(t) = self.tls_sessions[slot as usize].as_deref_mut() else {
            return false;
        };
        t.close_notify();
        if t.has_output() {
            self.mark_dirty(slot);
            true
        } else {
            false
        }
    }
}

fn truncate(b: &mut InputBuf, len: usize) {
    match b {
        InputBuf::Pooled(p) => p.truncate(len),
        InputBuf::Heap(v) => v.truncate(len),
    }
}
