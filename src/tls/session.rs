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

use rustls::client::UnbufferedClientConnection;
use rustls::pki_types::ServerName;
use rustls::server::UnbufferedServerConnection;
use rustls::unbuffered::{
    ConnectionState, EncodeError, EncryptError, InsufficientSizeError, UnbufferedStatus,
};
use rustls::{ClientConfig, ProtocolVersion, ServerConfig};

use crate::runtime::buf::SealBuf;

/// The largest plaintext of one TLS record (RFC 8446 5.1).
pub(crate) const MAX_RECORD: usize = 16 << 10;
/// A record's header: content type, version, length.
const RECORD_HEADER: usize = 5;
/// The largest record body a peer may send (RFC 8446 5.2, and TLS 1.2's
/// 2^14 + 2048 for compression, which nobody uses, bounded the same).
const MAX_CIPHERTEXT: usize = MAX_RECORD + 2048;
/// Pieces this long are encrypted where they lie (rustls cuts them into
/// records); shorter ones are gathered into records through the stage.
/// A copy of a large payload costs more than the record it saves.
const DIRECT_MIN: usize = 2 << 10;
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

/// What the session needs of a rustls connection, server or client: the
/// unbuffered API is the same for both but for the type of its state.
trait Records {
    type Data;
    fn records<'c, 'i>(&'c mut self, buf: &'i mut [u8]) -> UnbufferedStatus<'c, 'i, Self::Data>;
}

impl Records for UnbufferedServerConnection {
    type Data = rustls::server::ServerConnectionData;
    fn records<'c, 'i>(&'c mut self, buf: &'i mut [u8]) -> UnbufferedStatus<'c, 'i, Self::Data> {
        self.process_tls_records(buf)
    }
}

impl Records for UnbufferedClientConnection {
    type Data = rustls::client::ClientConnectionData;
    fn records<'c, 'i>(&'c mut self, buf: &'i mut [u8]) -> UnbufferedStatus<'c, 'i, Self::Data> {
        self.process_tls_records(buf)
    }
}

enum Conn {
    Server(UnbufferedServerConnection),
    Client(UnbufferedClientConnection),
}

/// Runs `$f` (a generic function taking the connection first) on whichever
/// role `$conn` has.
macro_rules! on_conn {
    ($conn:expr, $f:ident($($arg:expr),*)) => {
        match $conn {
            Conn::Server(c) => $f(c, $($arg),*),
            Conn::Client(c) => $f(c, $($arg),*),
        }
    };
}

/// A connection's TLS state, either role.
pub(crate) struct Session {
    conn: Conn,
    st: State,
}

/// Everything but rustls's own state.
struct State {
    phase: Phase,
    /// Handshake records and alerts to send ahead of application data.
    out: SealBuf,
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
    fn with(conn: Conn) -> Session {
        Session {
            conn,
            st: State {
                phase: Phase::Handshaking,
                out: SealBuf::default(),
                carry: Vec::new(),
                notify: Notify::No,
            },
        }
    }

    /// A session for a connection just accepted.
    pub(crate) fn server(cfg: Arc<ServerConfig>) -> Result<Session, rustls::Error> {
        Ok(Session::with(Conn::Server(
            UnbufferedServerConnection::new(cfg)?,
        )))
    }

    /// A session for a connection to `name`, about to connect. Its
    /// ClientHello waits in [`Session::has_output`] from the start.
    pub(crate) fn client(
        cfg: Arc<ClientConfig>,
        name: ServerName<'static>,
    ) -> Result<Session, rustls::Error> {
        let mut s = Session::with(Conn::Client(UnbufferedClientConnection::new(cfg, name)?));
        let mut r = Read::default();
        s.process(&mut [], &mut Vec::new(), &mut r);
        match r.error {
            Some(e) => Err(e),
            None => Ok(s),
        }
    }

    /// The protocol version agreed, once the handshake is over.
    pub(crate) fn version(&self) -> Option<ProtocolVersion> {
        match &self.conn {
            Conn::Server(c) => c.protocol_version(),
            Conn::Client(c) => c.protocol_version(),
        }
    }

    /// Whether the handshake resumed an earlier session (a ticket), once
    /// rustls knows which kind it is: `None` before that.
    pub(crate) fn resumed(&self) -> Option<bool> {
        let kind = match &self.conn {
            Conn::Server(c) => c.handshake_kind(),
            Conn::Client(c) => c.handshake_kind(),
        };
        kind.map(|k| k == rustls::HandshakeKind::Resumed)
    }

    /// Handshake records, an alert or close_notify wait to be sent.
    pub(crate) fn has_output(&self) -> bool {
        !self.st.out.is_empty() || self.st.notify == Notify::Wanted
    }

    /// Moves the handshake records and alerts waiting to the end of `dst`.
    /// The session keeps no allocation: the handshake's flight (the
    /// certificate chain, some kilobytes) leaves with the batch that sends
    /// it.
    pub(crate) fn take_output(&mut self, dst: &mut SealBuf) {
        if self.st.out.is_empty() {
            return;
        }
        let out = std::mem::take(&mut self.st.out);
        if dst.is_empty() && dst.capacity() < out.len() {
            // The flight itself becomes the batch's buffer: no copy.
            *dst = out;
        } else {
            dst.extend_from_slice(out.as_slice());
        }
    }

    /// Takes the ciphertext `input` (one read): decrypts every whole record
    /// in it, appending the plaintext to `plain`; keeps the start of a
    /// record it ends inside of for the next read; queues what the
    /// handshake answers (see [`Session::take_output`]).
    pub(crate) fn read(&mut self, input: &mut [u8], plain: &mut Vec<u8>) -> Read {
        let mut r = Read::default();
        if self.st.phase == Phase::Failed {
            return r;
        }
        if self.st.carry.is_empty() {
            self.read_in_place(input, plain, &mut r);
        } else if self.st.phase == Phase::Established {
            // After the handshake rustls consumes each whole record: only
            // the split one is completed in the carry, and the rest of the
            // input is decrypted where it lies (a stream of 16 KiB records
            // in 32 KiB reads would otherwise be copied whole).
            let h = RECORD_HEADER
                .saturating_sub(self.st.carry.len())
                .min(input.len());
            self.st.carry.extend_from_slice(&input[..h]);
            if self.st.carry.len() < RECORD_HEADER {
                return r;
            }
            let need = match self.record_rest() {
                Some(need) => need,
                None => {
                    // No record is that long: rustls refuses it.
                    self.st.carry.extend_from_slice(&input[h..]);
                    let mut carry = std::mem::take(&mut self.st.carry);
                    self.process(&mut carry, plain, &mut r);
                    return r;
                }
            };
            let n = h + need.min(input.len() - h);
            self.st.carry.extend_from_slice(&input[h..n]);
            if self.st.carry.len() < RECORD_HEADER + self.record_body() {
                return r;
            }
            let mut carry = std::mem::take(&mut self.st.carry);
            let used = self.process(&mut carry, plain, &mut r);
            if used < carry.len() {
                // Not consumed after all: rustls's view of the input must
                // stay whole, so everything joins the carry.
                carry.drain(..used);
                carry.extend_from_slice(&input[n..]);
                self.st.carry = carry;
                return r;
            }
            carry.clear();
            self.st.carry = carry;
            if r.error.is_none() && !r.peer_closed {
                self.read_in_place(&mut input[n..], plain, &mut r);
            }
        } else {
            self.st.carry.extend_from_slice(input);
            let mut carry = std::mem::take(&mut self.st.carry);
            let used = self.process(&mut carry, plain, &mut r);
            carry.drain(..used);
            self.st.carry = carry;
        }
        if self.st.carry.is_empty() && self.st.carry.capacity() > 0 {
            // An idle connection keeps no buffer.
            self.st.carry = Vec::new();
        }
        r
    }

    /// Decrypts `input` where it lies; carries what it ends inside of.
    fn read_in_place(&mut self, input: &mut [u8], plain: &mut Vec<u8>, r: &mut Read) {
        let used = self.process(input, plain, r);
        if used < input.len() {
            self.st.carry.extend_from_slice(&input[used..]);
        }
    }

    /// The body length the carried record's header (whole) declares.
    fn record_body(&self) -> usize {
        let c = &self.st.carry;
        usize::from(u16::from_be_bytes([c[3], c[4]]))
    }

    /// With a split record's header in the carry: how many more bytes
    /// complete the record (0 if none). `None` for a length no record has.
    fn record_rest(&self) -> Option<usize> {
        let body = self.record_body();
        (body <= MAX_CIPHERTEXT).then(|| (RECORD_HEADER + body).saturating_sub(self.st.carry.len()))
    }

    fn process(&mut self, buf: &mut [u8], plain: &mut Vec<u8>, r: &mut Read) -> usize {
        on_conn!(&mut self.conn, process(&mut self.st, buf, plain, r))
    }

    /// Encrypts `pieces`, in order, to the end of `out`: records of up to
    /// 16 KiB; pieces of [`DIRECT_MIN`] bytes or more are encrypted where
    /// they lie, shorter ones gathered into as few records as they fit
    /// through `stage` (the loop's scratch, left empty). Handshake output rustls still has (session tickets after the
    /// handshake, a key update) goes first.
    pub(crate) fn seal<'a>(
        &mut self,
        pieces: impl Iterator<Item = &'a [u8]>,
        out: &mut SealBuf,
        stage: &mut Vec<u8>,
    ) -> Result<(), SealError> {
        if self.st.phase != Phase::Established {
            return Err(SealError::NotReady);
        }
        on_conn!(&mut self.conn, seal(&mut self.st.carry, pieces, out, stage))
    }

    /// Asks for close_notify (once, and only on an established
    /// connection): what the loop sends before its FIN, after everything
    /// queued ([`Session::finish`]).
    pub(crate) fn close_notify(&mut self) {
        if self.st.notify == Notify::No && self.st.phase == Phase::Established {
            self.st.notify = Notify::Wanted;
        }
    }

    /// Appends close_notify to `out` if it was asked for: called once the
    /// data queued before it is sealed.
    pub(crate) fn finish(&mut self, out: &mut SealBuf) {
        if self.st.notify != Notify::Wanted {
            return;
        }
        self.st.notify = Notify::Sent;
        on_conn!(&mut self.conn, finish(&mut self.st.carry, out));
    }
}

/// Runs rustls over `buf` until it needs more bytes; returns how many of
/// them it is done with (the rest start a record not yet whole).
fn process<C: Records>(
    c: &mut C,
    st: &mut State,
    buf: &mut [u8],
    plain: &mut Vec<u8>,
    r: &mut Read,
) -> usize {
    let mut used = 0;
    for _ in 0..MAX_STEPS {
        let status = c.records(&mut buf[used..]);
        let discard = status.discard;
        let state = match status.state {
            Ok(s) => s,
            Err(e) => {
                used += discard;
                fail(c, st, e, &mut buf[used..], r);
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
                            fail(c, st, e, &mut buf[used..], r);
                            return buf.len();
                        }
                    }
                }
            }
            ConnectionState::EncodeTlsData(mut e) => encode(&mut e, &mut st.out),
            ConnectionState::TransmitTlsData(t) => {
                // Sent with the loop's next flush, once: rustls may
                // forget it.
                t.done();
            }
            ConnectionState::WriteTraffic(_) => {
                if st.phase == Phase::Handshaking {
                    st.phase = Phase::Established;
                    r.established = true;
                }
                stop = true;
            }
            ConnectionState::BlockedHandshake => stop = true,
            ConnectionState::PeerClosed | ConnectionState::Closed => {
                r.peer_closed = true;
                stop = true;
            }
            // Early data is never enabled (the server's
            // max_early_data_size is 0, the client sends none), so rustls
            // has none to give.
            _ => stop = true,
        }
        used += discard;
        if stop {
            return used;
        }
    }
    st.phase = Phase::Failed;
    r.error = Some(rustls::Error::General("no progress".into()));
    buf.len()
}

/// The connection failed: collects the alert rustls queued for it, if
/// any; the session refuses everything after. `rest` is the input not yet
/// discarded: rustls may still point into it.
fn fail<C: Records>(c: &mut C, st: &mut State, e: rustls::Error, rest: &mut [u8], r: &mut Read) {
    st.phase = Phase::Failed;
    // What rustls queued before it gave up comes out of the next calls,
    // one record each, before it looks at the input again: the alert, and
    // ahead of it what the failing message's handling had already written.
    // In TLS 1.3 that is the ServerHello when the failure comes after it:
    // an ALPN offer without http/1.1 is refused while the encrypted
    // extensions are written, so no_application_protocol follows the
    // ServerHello, under the handshake keys.
    //
    // Once its queue is empty, a call parses the input again. With input
    // left (the bytes a framing error stopped at, or what the peer sent
    // after the failing message) that would fail once more and queue a
    // second alert (a debug assertion in rustls), so only the first call
    // is made then; with none, rustls has nothing to parse and answers
    // with something other than a record to encode.
    let mut at = 0;
    let len = rest.len();
    for _ in 0..MAX_STEPS {
        let status = c.records(&mut rest[at..]);
        at += status.discard;
        let Ok(ConnectionState::EncodeTlsData(mut enc)) = status.state else {
            break;
        };
        encode(&mut enc, &mut st.out);
        if at < len {
            break;
        }
    }
    r.error = Some(e);
}

fn seal<'a, C: Records>(
    c: &mut C,
    carry: &mut [u8],
    pieces: impl Iterator<Item = &'a [u8]>,
    out: &mut SealBuf,
    stage: &mut Vec<u8>,
) -> Result<(), SealError> {
    for _ in 0..MAX_STEPS {
        // The carry is what rustls was last given and did not consume:
        // handing it back keeps its view of the input whole.
        let status = c.records(carry);
        debug_assert_eq!(status.discard, 0, "a whole record waited in the carry");
        match status.state {
            Ok(ConnectionState::EncodeTlsData(mut e)) => encode(&mut e, out),
            Ok(ConnectionState::TransmitTlsData(t)) => t.done(),
            Ok(ConnectionState::WriteTraffic(mut w)) => {
                stage.clear();
                for p in pieces {
                    let mut p = p;
                    if p.len() >= DIRECT_MIN {
                        if !stage.is_empty() {
                            encrypt(&mut w, stage, out)?;
                            stage.clear();
                        }
                        encrypt(&mut w, p, out)?;
                        continue;
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

fn finish<C: Records>(c: &mut C, carry: &mut [u8], out: &mut SealBuf) {
    let status = c.records(carry);
    if let Ok(ConnectionState::WriteTraffic(mut w)) = status.state {
        if let Ok(n) = w.queue_close_notify(out.room(RECORD_OVERHEAD)) {
            out.commit(n);
        }
    }
}

/// Encodes one handshake record or alert to the end of `out`.
fn encode<D>(e: &mut rustls::unbuffered::EncodeTlsData<'_, D>, out: &mut SealBuf) {
    let mut room = 1024;
    loop {
        match e.encode(out.room(room)) {
            Ok(n) => {
                out.commit(n);
                return;
            }
            Err(EncodeError::InsufficientSize(InsufficientSizeError { required_size })) => {
                room = required_size;
            }
            Err(EncodeError::AlreadyEncoded) => return,
        }
    }
}

/// Encrypts `plain` (any length: rustls cuts it into records) to the end
/// of `out`.
fn encrypt<D>(
    w: &mut rustls::unbuffered::WriteTraffic<'_, D>,
    plain: &[u8],
    out: &mut SealBuf,
) -> Result<(), SealError> {
    let records = plain.len().div_ceil(MAX_RECORD).max(1);
    let mut room = plain.len() + records * RECORD_OVERHEAD;
    loop {
        match w.encrypt(plain, out.room(room)) {
            Ok(n) => {
                out.commit(n);
                return Ok(());
            }
            Err(EncryptError::InsufficientSize(InsufficientSizeError { required_size }))
                if required_size > room =>
            {
                room = required_size;
            }
            Err(e) => return Err(SealError::Tls(e.to_string())),
        }
    }
}

/// The integration tests' certificates (openssl, a throwaway CA).
#[cfg(test)]
#[path = "../../tests/common/certs.rs"]
mod certs;

#[cfg(test)]
mod tests {
    use super::certs;
    use super::*;
    use crate::tls::{client_config, load, TlsFiles};

    /// A server and a client session for `localhost`, from a fresh CA.
    fn pair(dir: &certs::Dir) -> (Session, Session) {
        certs::make_ca(dir, "ca");
        let (cert, key) = certs::make_leaf(dir, "ca", "leaf", &["localhost"]);
        let files = TlsFiles {
            cert,
            key,
            sni: vec![],
        };
        let server = load(&files).expect("the test certificate loads").config;
        let client = client_config(&[dir.path("ca.pem")]).expect("the test CA");
        let name = ServerName::try_from("localhost").unwrap();
        (
            Session::server(server).unwrap(),
            Session::client(Arc::new(client), name).unwrap(),
        )
    }

    /// What `from` has to send, sealed into `batch` as the loop does (a
    /// spare batch's buffer, which has room from earlier output), read by
    /// `to`; its plaintext. `None` if `from` had nothing to send.
    fn pump(
        from: &mut Session,
        to: &mut Session,
        data: &[u8],
        batch: &mut SealBuf,
    ) -> Option<Vec<u8>> {
        batch.clear();
        from.take_output(batch);
        if !data.is_empty() {
            from.seal([data].into_iter(), batch, &mut Vec::new())
                .expect("established");
        }
        if batch.is_empty() {
            return None;
        }
        let mut wire = batch.as_slice().to_vec();
        let mut plain = Vec::new();
        let r = to.read(&mut wire, &mut plain);
        assert!(r.error.is_none(), "{:?}", r.error);
        Some(plain)
    }

    /// An idle session keeps no buffer, whatever the buffer of the batch
    /// that took its output held: the handshake's flights leave with the
    /// batches, and the session is not handed theirs in exchange.
    #[test]
    fn an_idle_session_holds_no_buffer_after_its_output_is_taken() {
        let dir = certs::Dir::new("session-idle");
        let (mut server, mut client) = pair(&dir);
        let mut batch = SealBuf::default();
        // A spare batch's buffer: 16 KiB of room from an earlier echo.
        batch.room(16 << 10);
        let mut moved = true;
        while moved {
            moved = pump(&mut client, &mut server, b"", &mut batch).is_some();
            moved |= pump(&mut server, &mut client, b"", &mut batch).is_some();
        }
        assert_eq!(server.version(), Some(ProtocolVersion::TLSv1_3));
        let got = pump(&mut client, &mut server, b"hello", &mut batch);
        assert_eq!(got.as_deref(), Some(&b"hello"[..]));
        let got = pump(&mut server, &mut client, b"again", &mut batch);
        assert_eq!(got.as_deref(), Some(&b"again"[..]));
        for s in [&server, &client] {
            assert!(!s.has_output());
            assert_eq!(s.st.out.capacity(), 0, "output buffer kept");
            assert_eq!(s.st.carry.capacity(), 0, "carry kept");
        }
    }
}
