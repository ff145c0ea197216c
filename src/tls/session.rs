//! One TLS connection's record layer, as the loop uses it: ciphertext in,
//! plaintext out; plaintext in, ciphertext out. The loop sees only
//! [`Session`]'s few methods, so rustls 0.24's caller-owned buffers
//! (decryption in place) can replace what is inside without touching it.
//!
//! Built on rustls's unbuffered API: it keeps no buffer of its own for
//! the ciphertext (the loop's pooled read buffer is decrypted where it
//! lies) nor for what it sends (records are encrypted straight into the
//! batch that is written). An idle session therefore holds only the
//! connection's keys and state, plus [`Session::carry`] while a record
//! is split across reads. rustls 0.23 still moves each decrypted record
//! into a vector of its own; [`Session::read`] copies it out at once.

use std::sync::Arc;

use rustls::server::UnbufferedServerConnection;
use rustls::unbuffered::{ConnectionState, EncodeError, EncryptError, InsufficientSizeError};
use rustls::{ProtocolVersion, ServerConfig};

/// The largest plaintext of one TLS record (RFC 8446 5.1).
pub(crate) const MAX_RECORD: usize = 16 << 10;
/// Room for one record's header, content type, padding and AEAD tag: 5 +
/// 1 + 16 in TLS 1.3, 5 + 8 + 16 for TLS 1.2's AES-GCM, rounded up.
const RECORD_OVERHEAD: usize = 64;
/// Calls to rustls per read or write before the loop gives up on a
/// connection that makes no progress (a bug, not a peer's doing): each
/// call either consumes a record, emits one, or stops.
const MAX_STEPS: usize = 4096;

/// Where a connection is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Handshaking,
    Established,
    /// An error ended it; only the alert, if any, is left to send.
    Failed,
}

/// What one [`Session::read`] found.
#[derive(Debug, Default)]
pub(crate) struct Read {
    /// The handshake finished in this read.
    pub(crate) established: bool,
    /// The peer sent close_notify: no more plaintext will come.
    pub(crate) peer_closed: bool,
    /// The peer broke the protocol (or a certificate could not be chosen);
    /// an alert waits in [`Session::has_output`] when one fits.
    pub(crate) error: Option<rustls::Error>,
}

/// Why a batch could not be encrypted.
#[derive(Debug)]
pub(crate) enum SealError {
    /// The handshake is not over: application data cannot go yet.
    NotReady,
    /// rustls refused (the connection failed, or its keys are exhausted).
    Tls(String),
}

/// A server connection's TLS state.
pub(crate) struct Session {
    conn: UnbufferedServerConnection,
    phase: Phase,
    /// Handshake records and alerts to send ahead of application data.
    out: Vec<u8>,
    /// The start of a record that a read ended inside of, until the rest
    /// arrives: rustls is always handed this, then the next read.
    carry: Vec<u8>,
    /// close_notify: asked for, and sent (encrypted into a batch).
    notify: Notify,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Notify {
    No,
    Wanted,
    Sent,
}

impl Session {
    /// A session for a connection just accepted.
    pub(crate) fn new(cfg: Arc<ServerConfig>) -> Result<Session, rustls::Error> {
        Ok(Session {
            conn: UnbufferedServerConnection::new(cfg)?,
            phase: Phase::Handshaking,
            out: Vec::new(),
            carry: Vec::new(),
            notify: Notify::No,
        })
    }

    /// The protocol version agreed, once the handshake is over.
    pub(crate) fn version(&self) -> Option<ProtocolVersion> {
        self.conn.protocol_version()
    }

    /// Handshake records, an alert or close_notify wait to be sent.
    pub(crate) fn has_output(&self) -> bool {
        !self.out.is_empty() || self.notify == Notify::Wanted
    }

    /// Moves the handshake records and alerts waiting to the end of `dst`.
    /// The session keeps no allocation: the handshake's flight (the
    /// certificate chain, some kilobytes) leaves with the batch that sends
    /// it.
    pub(crate) fn take_output(&mut self, dst: &mut Vec<u8>) {
        if dst.is_empty() {
            std::mem::swap(dst, &mut self.out);
        } else {
            dst.extend_from_slice(&self.out);
            self.out = Vec::new();
        }
    }

    /// Takes the ciphertext `input` (one read): decrypts every whole record
    /// in it, appending the plaintext to `plain`; keeps the start of a
    /// record it ends inside of for the next read; queues what the
    /// handshake answers (see [`Session::take_output`]).
    pub(crate) fn read(&mut self, input: &mut [u8], plain: &mut Vec<u8>) -> Read {
        let mut r = Read::default();
        if self.phase == Phase::Failed {
            return r;
        }
        if self.carry.is_empty() {
            let used = self.process(input, plain, &mut r);
            if used < input.len() {
                self.carry.extend_from_slice(&input[used..]);
            }
        } else {
            self.carry.extend_from_slice(input);
            let mut carry = std::mem::take(&mut self.carry);
            let used = self.process(&mut carry, plain, &mut r);
            carry.drain(..used);
            self.carry = carry;
        }
        if self.carry.is_empty() && self.carry.capacity() > 0 {
            // An idle connection keeps no buffer.
            self.carry = Vec::new();
        }
        r
    }

    /// Runs rustls over `buf` until it needs more bytes; returns how many
    /// of them it is done with (the rest start a record not yet whole).
    fn process(&mut self, buf: &mut [u8], plain: &mut Vec<u8>, r: &mut Read) -> usize {
        let mut used = 0;
        for _ in 0..MAX_STEPS {
            let st = self.conn.process_tls_records(&mut buf[used..]);
            let discard = st.discard;
            let state = match st.state {
                Ok(s) => s,
                Err(e) => {
                    used += discard;
                    self.fail(e, &mut buf[used..], r);
                    return buf.len();
                }
            };
            let mut stop = false;
            match state {
                ConnectionState::ReadTraffic(mut t) => {
                    while let Some(rec) = t.next_record() {
                        match rec {
                            Ok(rec) => plain.extend_from_slice(rec.payload),
                            Err(e) => {
                                drop(t);
                                used += discard;
                                self.fail(e, &mut buf[used..], r);
                                return buf.len();
                            }
                        }
                    }
                }
                ConnectionState::EncodeTlsData(mut e) => encode(&mut e, &mut self.out),
                ConnectionState::TransmitTlsData(t) => {
                    // Sent with the loop's next flush, once: rustls may
                    // forget it.
                    t.done();
                }
                ConnectionState::WriteTraffic(_) => {
                    if self.phase == Phase::Handshaking {
                        self.phase = Phase::Established;
                        r.established = true;
                    }
                    stop = true;
                }
                ConnectionState::BlockedHandshake => stop = true,
                ConnectionState::PeerClosed | ConnectionState::Closed => {
                    r.peer_closed = true;
                    stop = true;
                }
                // Early data is never enabled (the config's
                // max_early_data_size is 0), so rustls has none to give.
                _ => stop = true,
            }
            used += discard;
            if stop {
                return used;
            }
        }
        self.phase = Phase::Failed;
        r.error = Some(rustls::Error::General("no progress".into()));
        buf.len()
    }

    /// The connection failed: collects the alert rustls queued for it, if
    /// any, and refuses everything after. `rest` is the input not yet
    /// discarded: rustls may still point into it.
    fn fail(&mut self, e: rustls::Error, rest: &mut [u8], r: &mut Read) {
        self.phase = Phase::Failed;
        // The alert rustls queued (one record) comes out of the next call,
        // before it looks at the input again. One call only: a second
        // would parse what follows and fail once more.
        let st = self.conn.process_tls_records(rest);
        if let Ok(ConnectionState::EncodeTlsData(mut e)) = st.state {
            encode(&mut e, &mut self.out);
        }
        r.error = Some(e);
        // Dropped only now: `rest` may be the carry itself.
    }

    /// Encrypts `pieces`, in order, to the end of `out`: records of up to
    /// 16 KiB, each as full as the bytes allow; pieces smaller than a
    /// record are gathered through `stage` (the loop's scratch, left
    /// empty). Handshake output rustls still has (session tickets after the
    /// handshake, a key update) goes first.
    pub(crate) fn seal<'a>(
        &mut self,
        pieces: impl Iterator<Item = &'a [u8]>,
        out: &mut Vec<u8>,
        stage: &mut Vec<u8>,
    ) -> Result<(), SealError> {
        if self.phase != Phase::Established {
            return Err(SealError::NotReady);
        }
        for _ in 0..MAX_STEPS {
            // The carry is what rustls was last given and did not consume:
            // handing it back keeps its view of the input whole.
            let st = self.conn.process_tls_records(&mut self.carry);
            debug_assert_eq!(st.discard, 0, "a whole record waited in the carry");
            match st.state {
                Ok(ConnectionState::EncodeTlsData(mut e)) => encode(&mut e, out),
                Ok(ConnectionState::TransmitTlsData(t)) => t.done(),
                Ok(ConnectionState::WriteTraffic(mut w)) => {
                    stage.clear();
                    for p in pieces {
                        let mut p = p;
                        if stage.is_empty() {
                            // Whole records straight from the piece.
                            let whole = p.len() - p.len() % MAX_RECORD;
                            if whole > 0 {
                                encrypt(&mut w, &p[..whole], out)?;
                                p = &p[whole..];
                            }
                        }
                        while !p.is_empty() {
                            let n = p.len().min(MAX_RECORD - stage.len());
                            stage.extend_from_slice(&p[..n]);
                            p = &p[n..];
                            if stage.len() == MAX_RECORD {
                                encrypt(&mut w, stage, out)?;
                                stage.clear();
                            }
                        }
                    }
                    if !stage.is_empty() {
                        encrypt(&mut w, stage, out)?;
                        stage.clear();
                    }
                    return Ok(());
                }
                Ok(_) => return Err(SealError::NotReady),
                Err(e) => return Err(SealError::Tls(e.to_string())),
            }
        }
        Err(SealError::Tls("no progress".into()))
    }

    /// Asks for close_notify (once, and only on an established
    /// connection): what the loop sends before its FIN, after everything
    /// queued ([`Session::finish`]).
    pub(crate) fn close_notify(&mut self) {
        if self.notify == Notify::No && self.phase == Phase::Established {
            self.notify = Notify::Wanted;
        }
    }

    /// Appends close_notify to `out` if it was asked for: called once the
    /// data queued before it is sealed.
    pub(crate) fn finish(&mut self, out: &mut Vec<u8>) {
        if self.notify != Notify::Wanted {
            return;
        }
        self.notify = Notify::Sent;
        let st = self.conn.process_tls_records(&mut self.carry);
        if let Ok(ConnectionState::WriteTraffic(mut w)) = st.state {
            let at = out.len();
            out.resize(at + RECORD_OVERHEAD, 0);
            match w.queue_close_notify(&mut out[at..]) {
                Ok(n) => out.truncate(at + n),
                Err(_) => out.truncate(at),
            }
        }
    }
}

/// Encodes one handshake record or alert to the end of `out`.
fn encode<D>(e: &mut rustls::unbuffered::EncodeTlsData<'_, D>, out: &mut Vec<u8>) {
    let at = out.len();
    let mut room = 1024;
    loop {
        out.resize(at + room, 0);
        match e.encode(&mut out[at..]) {
            Ok(n) => {
                out.truncate(at + n);
                return;
            }
            Err(EncodeError::InsufficientSize(InsufficientSizeError { required_size })) => {
                room = required_size;
            }
            Err(EncodeError::AlreadyEncoded) => {
                out.truncate(at);
                return;
            }
        }
    }
}

/// Encrypts `plain` (any length: rustls cuts it into records) to the end
/// of `out`.
fn encrypt<D>(
    w: &mut rustls::unbuffered::WriteTraffic<'_, D>,
    plain: &[u8],
    out: &mut Vec<u8>,
) -> Result<(), SealError> {
    let at = out.len();
    let records = plain.len().div_ceil(MAX_RECORD).max(1);
    let mut room = plain.len() + records * RECORD_OVERHEAD;
    loop {
        out.resize(at + room, 0);
        match w.encrypt(plain, &mut out[at..]) {
            Ok(n) => {
                out.truncate(at + n);
                return Ok(());
            }
            Err(EncryptError::InsufficientSize(InsufficientSizeError { required_size }))
                if required_size > room =>
            {
                room = required_size;
            }
            Err(e) => {
                out.truncate(at);
                return Err(SealError::Tls(e.to_string()));
            }
        }
    }
}
