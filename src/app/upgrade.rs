//! The upgrade hook's inputs and answers: [`Request`], [`Upgrade`],
//! [`Accept`], [`Reject`] and, for decisions made elsewhere, [`Deferred`].

use std::marker::PhantomData;
use std::net::SocketAddr;
use std::sync::Arc;

use super::worker::Command;
use super::Shared;
use crate::proto::handshake::Accepted;
use crate::runtime::io::SockId;

/// The upgrade request of a connection, as the hook sees it: borrowed from
/// the read buffer, so copy out what a deferred decision needs.
pub struct Request<'a> {
    pub(crate) head: &'a Accepted<'a>,
    pub(crate) peer: Option<SocketAddr>,
}

impl<'a> Request<'a> {
    /// The method: always `GET` (anything else was refused with 400).
    pub fn method(&self) -> &'static str {
        "GET"
    }

    /// The path of the request target, without the query (`/chat`).
    pub fn path(&self) -> &'a str {
        let t = self.head.target;
        t.split_once('?').map_or(t, |(p, _)| p)
    }

    /// The query of the request target, after `?` (`room=1&nick=ann`).
    pub fn query(&self) -> Option<&'a str> {
        self.head.target.split_once('?').map(|(_, q)| q)
    }

    /// The value of the query parameter `name` (as sent: not
    /// percent-decoded).
    pub fn query_param(&self, name: &str) -> Option<&'a str> {
        self.query()?.split('&').find_map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            (k == name).then_some(v)
        })
    }

    /// The value of the first header called `name` (any case), as bytes.
    pub fn header(&self, name: &str) -> Option<&'a [u8]> {
        let head: &'a Accepted<'a> = self.head;
        head.headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| h.value)
    }

    /// [`Request::header`] as text, if it is valid UTF-8.
    pub fn header_str(&self, name: &str) -> Option<&'a str> {
        self.header(name).and_then(|v| std::str::from_utf8(v).ok())
    }

    /// Every header line, in order: name and value.
    pub fn headers(&self) -> impl Iterator<Item = (&'a str, &'a [u8])> {
        let head: &'a Accepted<'a> = self.head;
        head.headers.iter().map(|h| (h.name, h.value))
    }

    /// The subprotocols the client offers, in its order of preference.
    pub fn protocols(&self) -> impl Iterator<Item = &'a str> {
        let head: &'a Accepted<'a> = self.head;
        head.protocols()
    }

    /// The client's address, when known.
    pub fn peer_addr(&self) -> Option<SocketAddr> {
        self.peer
    }
}

/// The hook's answer to an upgrade request.
pub enum Upgrade<D> {
    /// Open the WebSocket with this user data.
    Accept(Accept<D>),
    /// Answer with an HTTP error and close.
    Reject(Reject),
    /// Decide later, from any thread: the function is called at once with
    /// the handle to decide with. The handshake timeout still runs.
    Defer(Box<dyn FnOnce(Deferred<D>)>),
}

impl<D> Upgrade<D> {
    /// Accepts with `data`, no subprotocol and no extra headers.
    pub fn accept(data: D) -> Upgrade<D> {
        Upgrade::Accept(Accept::new(data))
    }

    /// Rejects with `status` (400 to 599) and a plain-text `body`.
    pub fn reject(status: u16, body: impl Into<Vec<u8>>) -> Upgrade<D> {
        Upgrade::Reject(Reject::new(status, body))
    }

    /// Defers the decision: `f` gets the [`Deferred`] handle at once and may
    /// send it to another thread or task.
    pub fn defer(f: impl FnOnce(Deferred<D>) + 'static) -> Upgrade<D>
    where
        D: Send + 'static,
    {
        Upgrade::Defer(Box::new(f))
    }
}

impl<D> From<Accept<D>> for Upgrade<D> {
    fn from(a: Accept<D>) -> Self {
        Upgrade::Accept(a)
    }
}

impl<D> From<Reject> for Upgrade<D> {
    fn from(r: Reject) -> Self {
        Upgrade::Reject(r)
    }
}

/// An accepted upgrade: the connection's user data, and what the 101
/// response says beyond the required headers.
pub struct Accept<D> {
    pub(crate) data: D,
    pub(crate) protocol: Option<String>,
    pub(crate) headers: Vec<(String, String)>,
}

impl<D> Accept<D> {
    /// Accepts with `data`.
    pub fn new(data: D) -> Accept<D> {
        Accept {
            data,
            protocol: None,
            headers: Vec::new(),
        }
    }

    /// Selects `protocol`, which must be one of the client's
    /// ([`Request::protocols`]); anything else is refused with 500 and
    /// logged, since the client would fail the connection (4.1).
    pub fn protocol(mut self, protocol: impl Into<String>) -> Self {
        self.protocol = Some(protocol.into());
        self
    }

    /// Adds a header line to the 101 response. A name that is not an HTTP
    /// token, or a value with a line break, is refused with 500 and logged.
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }
}

/// A rejected upgrade: the HTTP response sent before closing.
#[derive(Debug, Clone)]
pub struct Reject {
    pub(crate) status: u16,
    pub(crate) body: Vec<u8>,
    pub(crate) headers: Vec<(String, String)>,
}

impl Reject {
    /// `status` (400 to 599; anything else becomes 500, logged) with a
    /// plain-text `body`.
    pub fn new(status: u16, body: impl Into<Vec<u8>>) -> Reject {
        Reject {
            status,
            body: body.into(),
            headers: Vec::new(),
        }
    }

    /// Adds a header line (`WWW-Authenticate`, `Retry-After`, ...).
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }
}

/// What a deferred upgrade came to, as it travels to the connection's
/// thread.
pub(crate) type Resolution<D> = Result<Accept<D>, Reject>;

/// The handle of a deferred upgrade decision. `Send` (when the user data
/// is): decide on any thread or task, once. Dropping it undecided refuses
/// the upgrade with 500. If the handshake timeout passed first, or the
/// client left, the decision is dropped (and the user data with it).
pub struct Deferred<D> {
    pub(crate) shared: Arc<Shared>,
    pub(crate) worker: usize,
    pub(crate) id: SockId,
    pub(crate) route: u32,
    pub(crate) done: bool,
    pub(crate) _data: PhantomData<fn(D) -> D>,
}

impl<D: Send + 'static> Deferred<D> {
    /// Opens the WebSocket (see [`Upgrade::Accept`]).
    pub fn accept(mut self, accept: impl Into<Accept<D>>) {
        self.resolve(Ok(accept.into()));
    }

    /// Refuses it (see [`Upgrade::Reject`]).
    pub fn reject(mut self, reject: Reject) {
        self.resolve(Err(reject));
    }

    fn resolve(&mut self, r: Resolution<D>) {
        self.done = true;
        self.shared.command(
            self.worker,
            Command::Resolve {
                id: self.id,
                route: self.route,
                decision: Box::new(r),
            },
        );
    }
}

impl<D> From<D> for Accept<D> {
    fn from(data: D) -> Self {
        Accept::new(data)
    }
}

impl<D> Drop for Deferred<D> {
    fn drop(&mut self) {
        if !self.done {
            // Undecided: the connection's thread answers 500.
            self.shared.command(
                self.worker,
                Command::Abandoned {
                    id: self.id,
                    route: self.route,
                },
            );
        }
    }
}
