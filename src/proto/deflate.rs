//! permessage-deflate (RFC 7692), its negotiation: parsing the client's
//! offers, choosing one, writing the answer (the server role), and checking
//! the answer (the client role). Both roles are strict: an offer or an
//! answer with an unknown, repeated or out-of-range parameter is declined
//! (section 7: "A server MUST decline an extension negotiation offer for
//! this extension if any of the following conditions are met: ...").
//!
//! The header grammar is RFC 6455 section 9.1:
//!
//! ```text
//! Sec-WebSocket-Extensions = extension-list
//! extension-list = 1#extension
//! extension = extension-token *( ";" extension-param )
//! extension-param = token [ "=" (token | quoted-string) ]
//! ```
//!
//! with a quoted value that, unescaped, must itself be a token.
//!
//! # The window of 8 bits
//!
//! zlib (and zlib-rs, its port) cannot compress raw deflate with a 256-byte
//! window: asked for 8 bits it uses 9. That still keeps within what a peer
//! that asked for `server_max_window_bits=8` holds, because zlib never
//! matches further back than its window less 262 bytes of lookahead: 250
//! bytes at 9 bits. So [`Agreed::server_max_window_bits`] is what was
//! agreed, 8 included, and [`super::compress::Compressor`] runs an 8 at 9
//! (its tests check every back-reference with a deflate reader of their
//! own). The other way round needs nothing: an inflater with a 9-bit
//! window reads any stream made with 8.

use std::fmt::Write as _;

/// The extension's name in the header.
pub const NAME: &str = "permessage-deflate";

/// The smallest and largest LZ77 window a peer may ask for (section 7.1.2).
pub const MIN_WINDOW_BITS: u8 = 8;
/// See [`MIN_WINDOW_BITS`].
pub const MAX_WINDOW_BITS: u8 = 15;

/// One `permessage-deflate` offer as the client sent it, once parsed and
/// found valid.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Offer {
    /// The client asks the server not to keep its window across messages.
    pub server_no_context_takeover: bool,
    /// The client says it will not keep its window (a hint).
    pub client_no_context_takeover: bool,
    /// The most the server may use, if the client limits it.
    pub server_max_window_bits: Option<u8>,
    /// `None`: absent (the server must not limit the client's window);
    /// `Some(None)`: present without a value (the server may limit it to
    /// any size); `Some(Some(n))`: the server may limit it to `n` or less.
    pub client_max_window_bits: Option<Option<u8>>,
}

/// Why an offer (or an answer, in the client role) was declined.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Declined {
    /// Not valid header syntax.
    Syntax,
    /// A parameter this extension does not define.
    UnknownParameter(String),
    /// A parameter given twice.
    Repeated(&'static str),
    /// A value where none is allowed, none where one is required, or one
    /// out of range.
    BadValue(&'static str),
    /// Valid, but not a configuration this server supports.
    Unsupported(&'static str),
    /// An answer naming an extension that was not offered.
    OtherExtension(String),
}

impl std::fmt::Display for Declined {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Declined::Syntax => write!(f, "malformed {NAME} parameters"),
            Declined::UnknownParameter(p) => write!(f, "unknown parameter {p:?}"),
            Declined::Repeated(p) => write!(f, "{p} given twice"),
            Declined::BadValue(p) => write!(f, "bad value for {p}"),
            Declined::Unsupported(p) => write!(f, "{p} not supported"),
            Declined::OtherExtension(e) => write!(f, "extension {e:?} was not offered"),
        }
    }
}

/// What the server will do with the extension.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Mode {
    /// Decline every offer.
    #[default]
    Off,
    /// No context takeover either way: one compressor and decompressor per
    /// thread, reset for every message; nothing kept per connection.
    Shared,
    /// Context takeover (where the client allows it): a compressor and
    /// decompressor per connection, kept across messages. Better ratios on
    /// small, similar messages; memory per connection.
    Dedicated,
}

impl std::str::FromStr for Mode {
    type Err = String;

    fn from_str(s: &str) -> Result<Mode, String> {
        match s {
            "off" => Ok(Mode::Off),
            "shared" => Ok(Mode::Shared),
            "dedicated" => Ok(Mode::Dedicated),
            _ => Err(format!("'{s}' is not off, shared or dedicated")),
        }
    }
}

/// The server's side of the negotiation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Policy {
    /// Off, shared or dedicated.
    pub mode: Mode,
    /// The server's own compression window, 8 to 15 (dedicated mode; shared
    /// mode uses 15). Smaller: less memory per connection, worse ratios.
    pub window_bits: u8,
    /// The window the server asks the client to compress with, 8 to 15
    /// (dedicated mode, where the client's offer allows a limit): the size of
    /// the server's decompression window per connection.
    pub client_window_bits: u8,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            mode: Mode::Off,
            window_bits: MAX_WINDOW_BITS,
            client_window_bits: MAX_WINDOW_BITS,
        }
    }
}

/// What both ends agreed to, and the answer that says so.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Agreed {
    /// The server resets its compressor after every message.
    pub server_no_context_takeover: bool,
    /// The client resets its compressor after every message.
    pub client_no_context_takeover: bool,
    /// The window the server's compressor may use (8 to 15).
    pub server_max_window_bits: u8,
    /// The window the client's compressor may use (8 to 15): the server's
    /// decompressor needs this much.
    pub client_max_window_bits: u8,
    /// The answer names `server_max_window_bits` / `client_max_window_bits`
    /// (a limit the offer allowed; 15 goes unsaid).
    answer_server_bits: bool,
    answer_client_bits: bool,
}

impl Agreed {
    /// The value of the server's `Sec-WebSocket-Extensions` header.
    pub fn answer(&self) -> String {
        let mut s = String::from(NAME);
        if self.server_no_context_takeover {
            s.push_str("; server_no_context_takeover");
        }
        if self.client_no_context_takeover {
            s.push_str("; client_no_context_takeover");
        }
        if self.answer_server_bits {
            let _ = write!(
                s,
                "; server_max_window_bits={}",
                self.server_max_window_bits
            );
        }
        if self.answer_client_bits {
            let _ = write!(
                s,
                "; client_max_window_bits={}",
                self.client_max_window_bits
            );
        }
        s
    }
}

/// The server role: the first of the client's offers (every
/// `Sec-WebSocket-Extensions` value, in order) that is valid and that
/// `policy` supports, with the answer to send. `None`: the extension is
/// not used (no offer, every offer declined, or the mode is off).
pub fn negotiate<'a, I>(values: I, policy: &Policy) -> Option<Agreed>
where
    I: IntoIterator<Item = &'a [u8]>,
    I::IntoIter: 'a,
{
    if policy.mode == Mode::Off {
        return None;
    }
    offers(values).find_map(|o| o.ok().and_then(|o| accept(&o, policy).ok()))
}

/// Every `permessage-deflate` offer in `values`, in the client's order of
/// preference, each parsed or declined; other extensions are skipped.
pub fn offers<'a, I>(values: I) -> impl Iterator<Item = Result<Offer, Declined>> + 'a
where
    I: IntoIterator<Item = &'a [u8]>,
    I::IntoIter: 'a,
{
    values
        .into_iter()
        .flat_map(elements)
        .filter_map(|e| match parse_element(e) {
            Ok((name, params)) if name.eq_ignore_ascii_case(NAME.as_bytes()) => {
                Some(offer_of(&params))
            }
            Ok(_) => None,
            // An element whose name cannot even be read is not an offer of
            // ours; one that names us with broken parameters is declined.
            Err(name) if name.eq_ignore_ascii_case(NAME.as_bytes()) => Some(Err(Declined::Syntax)),
            Err(_) => None,
        })
}

/// The server's answer to one valid offer, or why it cannot take it.
pub fn accept(o: &Offer, policy: &Policy) -> Result<Agreed, Declined> {
    // Shared mode keeps no window across messages either way: it asks the
    // client not to (7.1.1.2: "A server MAY include the
    // client_no_context_takeover extension parameter in an extension
    // negotiation response"), and says it will not itself (7.1.1.1 allows
    // that even unasked).
    let shared = policy.mode == Mode::Shared;
    let own_bits = if shared {
        MAX_WINDOW_BITS
    } else {
        policy.window_bits.clamp(MIN_WINDOW_BITS, MAX_WINDOW_BITS)
    };
    // 7.1.2.1: the answer carries server_max_window_bits "with the same or
    // smaller value as the offer"; without one in the offer, the server may
    // still limit itself, and says so when it does.
    let (server_bits, answer_server_bits) = match o.server_max_window_bits {
        Some(n) => (n.min(own_bits), true),
        None => (own_bits, own_bits < MAX_WINDOW_BITS),
    };
    // 7.1.2.2: "If a received extension negotiation offer doesn't have the
    // client_max_window_bits extension parameter, the corresponding
    // extension negotiation response to the offer MUST NOT include" it.
    let want = if shared {
        MAX_WINDOW_BITS
    } else {
        policy
            .client_window_bits
            .clamp(MIN_WINDOW_BITS, MAX_WINDOW_BITS)
    };
    let (client_bits, answer_client_bits) = match o.client_max_window_bits {
        None if want < MAX_WINDOW_BITS => {
            // The client cannot be held to a smaller window, and a dedicated
            // server keeps only that much per connection: not this offer.
            return Err(Declined::Unsupported(
                "a client window above client_window_bits",
            ));
        }
        None => (MAX_WINDOW_BITS, false),
        Some(None) => (want, want < MAX_WINDOW_BITS),
        Some(Some(n)) => (n.min(want), true),
    };
    Ok(Agreed {
        server_no_context_takeover: shared || o.server_no_context_takeover,
        client_no_context_takeover: shared || o.client_no_context_takeover,
        server_max_window_bits: server_bits,
        client_max_window_bits: client_bits,
        answer_server_bits,
        answer_client_bits,
    })
}

/// The offer a client sends: window limits asked of the server, and the
/// client's own (announced with `client_max_window_bits` so that the server
/// may lower it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClientOffer {
    /// Ask the server not to keep its window across messages.
    pub server_no_context_takeover: bool,
    /// Promise not to keep ours.
    pub client_no_context_takeover: bool,
    /// Ask the server to use at most this window (15: do not ask).
    pub server_max_window_bits: u8,
}

impl Default for ClientOffer {
    fn default() -> Self {
        ClientOffer {
            server_no_context_takeover: false,
            client_no_context_takeover: false,
            server_max_window_bits: MAX_WINDOW_BITS,
        }
    }
}

impl ClientOffer {
    /// The value of the client's `Sec-WebSocket-Extensions` header.
    pub fn header(&self) -> String {
        let mut s = String::from(NAME);
        if self.server_no_context_takeover {
            s.push_str("; server_no_context_takeover");
        }
        if self.client_no_context_takeover {
            s.push_str("; client_no_context_takeover");
        }
        if self.server_max_window_bits < MAX_WINDOW_BITS {
            let _ = write!(
                s,
                "; server_max_window_bits={}",
                self.server_max_window_bits
            );
        }
        s.push_str("; client_max_window_bits");
        s
    }

    /// The client role: checks the server's answer (every
    /// `Sec-WebSocket-Extensions` value of the 101) against this offer.
    /// `Ok(None)`: the server declined the extension. An answer that names
    /// another extension, more than one, a parameter the offer did not
    /// allow or a value out of range fails the connection (RFC 6455 4.1:
    /// the client "MUST _Fail the WebSocket Connection_" if the response
    /// uses an extension it did not ask for).
    pub fn check_answer<'a>(
        &self,
        values: impl IntoIterator<Item = &'a [u8]>,
    ) -> Result<Option<Agreed>, Declined> {
        let mut found = None;
        for e in values.into_iter().flat_map(elements) {
            let (name, params) = parse_element(e).map_err(|_| Declined::Syntax)?;
            if !name.eq_ignore_ascii_case(NAME.as_bytes()) {
                return Err(Declined::OtherExtension(
                    String::from_utf8_lossy(name).into_owned(),
                ));
            }
            if found.is_some() {
                return Err(Declined::Repeated(NAME));
            }
            found = Some(offer_of(&params)?);
        }
        let Some(a) = found else {
            return Ok(None);
        };
        if self.server_no_context_takeover && !a.server_no_context_takeover {
            return Err(Declined::BadValue("server_no_context_takeover"));
        }
        let server_bits = match a.server_max_window_bits {
            Some(n) if n > self.server_max_window_bits => {
                return Err(Declined::BadValue("server_max_window_bits"))
            }
            Some(n) => n,
            None if self.server_max_window_bits < MAX_WINDOW_BITS => {
                // Asked to limit itself, the server did not say it would.
                return Err(Declined::BadValue("server_max_window_bits"));
            }
            None => MAX_WINDOW_BITS,
        };
        let client_bits = match a.client_max_window_bits {
            None => MAX_WINDOW_BITS,
            // An answer must carry the value.
            Some(None) => return Err(Declined::BadValue("client_max_window_bits")),
            Some(Some(n)) => n,
        };
        Ok(Some(Agreed {
            server_no_context_takeover: a.server_no_context_takeover,
            client_no_context_takeover: self.client_no_context_takeover
                || a.client_no_context_takeover,
            server_max_window_bits: server_bits,
            client_max_window_bits: client_bits,
            answer_server_bits: a.server_max_window_bits.is_some(),
            answer_client_bits: a.client_max_window_bits.is_some(),
        }))
    }
}

/// A parameter: its name and its value (unquoted), if it has one.
type Param<'a> = (&'a [u8], Option<Vec<u8>>);

/// The parameters of one element as an [`Offer`] (or an answer, which has
/// the same parameters).
fn offer_of(params: &[Param<'_>]) -> Result<Offer, Declined> {
    let mut o = Offer::default();
    let mut seen = [false; 4];
    for (name, value) in params {
        let (i, key) = match &*name.to_ascii_lowercase() {
            b"server_no_context_takeover" => (0, "server_no_context_takeover"),
            b"client_no_context_takeover" => (1, "client_no_context_takeover"),
            b"server_max_window_bits" => (2, "server_max_window_bits"),
            b"client_max_window_bits" => (3, "client_max_window_bits"),
            _ => {
                return Err(Declined::UnknownParameter(
                    String::from_utf8_lossy(name).into_owned(),
                ))
            }
        };
        if std::mem::replace(&mut seen[i], true) {
            return Err(Declined::Repeated(key));
        }
        let bits = |v: &Option<Vec<u8>>| -> Result<Option<u8>, Declined> {
            match v {
                None => Ok(None),
                Some(v) => window_bits(v).map(Some).ok_or(Declined::BadValue(key)),
            }
        };
        match i {
            0 | 1 if value.is_some() => return Err(Declined::BadValue(key)),
            0 => o.server_no_context_takeover = true,
            1 => o.client_no_context_takeover = true,
            // 7.1.2.1: server_max_window_bits always has a value.
            2 => o.server_max_window_bits = Some(bits(value)?.ok_or(Declined::BadValue(key))?),
            _ => o.client_max_window_bits = Some(bits(value)?),
        }
    }
    Ok(o)
}

/// A window size: 8 to 15, decimal digits only (7.1.2.1: "a decimal
/// integer value without leading zeroes between 8 and 15").
fn window_bits(v: &[u8]) -> Option<u8> {
    match v {
        [d @ b'8'..=b'9'] => Some(d - b'0'),
        [b'1', d @ b'0'..=b'5'] => Some(10 + d - b'0'),
        _ => None,
    }
}

/// RFC 7230 `tchar`.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

fn trim(mut s: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = s {
        s = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = s {
        s = rest;
    }
    s
}

/// The list elements of one header value: split at commas outside quoted
/// strings, empty elements skipped (RFC 7230 7: "a recipient MUST accept
/// empty list elements").
fn elements(v: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut rest = v;
    std::iter::from_fn(move || loop {
        if rest.is_empty() {
            return None;
        }
        let (mut quoted, mut escaped, mut end) = (false, false, rest.len());
        for (i, &b) in rest.iter().enumerate() {
            match b {
                _ if escaped => escaped = false,
                b'\\' if quoted => escaped = true,
                b'"' => quoted = !quoted,
                b',' if !quoted => {
                    end = i;
                    break;
                }
                _ => {}
            }
        }
        let e = trim(&rest[..end]);
        rest = rest.get(end + 1..).unwrap_or(&[]);
        if !e.is_empty() {
            return Some(e);
        }
    })
}

/// One element: its name, and its parameters. `Err(name)` when the
/// parameters are malformed (the name as far as it could be read).
fn parse_element(e: &[u8]) -> Result<(&[u8], Vec<Param<'_>>), &[u8]> {
    let mut parts = e.split(|&b| b == b';');
    let name = trim(parts.next().unwrap_or(&[]));
    if name.is_empty() || !name.iter().all(|&b| is_tchar(b)) {
        return Err(name);
    }
    let mut params = Vec::new();
    // A quoted value may hold a ';' (it is then not a token, so invalid):
    // splitting at every ';' finds that as an unterminated quote.
    for p in parts {
        let p = trim(p);
        let (k, v) = match p.iter().position(|&b| b == b'=') {
            Some(i) => (trim(&p[..i]), Some(trim(&p[i + 1..]))),
            None => (p, None),
        };
        if k.is_empty() || !k.iter().all(|&b| is_tchar(b)) {
            return Err(name);
        }
        let v = match v {
            None => None,
            Some(v) => Some(value(v).ok_or(name)?),
        };
        params.push((k, v));
    }
    Ok((name, params))
}

/// A parameter value: a token, or a quoted string whose unescaped content
/// is a token (RFC 6455 9.1).
fn value(v: &[u8]) -> Option<Vec<u8>> {
    let out = match v {
        [b'"', inner @ .., b'"'] => {
            let mut out = Vec::with_capacity(inner.len());
            let mut it = inner.iter();
            while let Some(&b) = it.next() {
                match b {
                    b'\\' => out.push(*it.next()?),
                    b'"' => return None,
                    _ => out.push(b),
                }
            }
            out
        }
        _ => v.to_vec(),
    };
    (!out.is_empty() && out.iter().all(|&b| is_tchar(b))).then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(mode: Mode) -> Policy {
        Policy {
            mode,
            ..Policy::default()
        }
    }

    /// The answer a server with `p` gives to one header value.
    fn answer(v: &str, p: &Policy) -> Option<String> {
        negotiate([v.as_bytes()], p).map(|a| a.answer())
    }

    #[test]
    fn what_browsers_and_libraries_offer() {
        let d = policy(Mode::Dedicated);
        let s = policy(Mode::Shared);
        // Chromium, Firefox, Node's ws, Python's websockets.
        let chromium = "permessage-deflate; client_max_window_bits";
        let firefox = "permessage-deflate";
        let ws = "permessage-deflate; client_max_window_bits";
        let websockets = "permessage-deflate; server_max_window_bits=12; client_max_window_bits=12";
        assert_eq!(answer(chromium, &d).as_deref(), Some("permessage-deflate"));
        assert_eq!(answer(firefox, &d).as_deref(), Some("permessage-deflate"));
        assert_eq!(answer(ws, &d).as_deref(), Some("permessage-deflate"));
        assert_eq!(
            answer(websockets, &d).as_deref(),
            Some("permessage-deflate; server_max_window_bits=12; client_max_window_bits=12")
        );
        for o in [chromium, firefox, ws] {
            assert_eq!(
                answer(o, &s).as_deref(),
                Some("permessage-deflate; server_no_context_takeover; client_no_context_takeover"),
                "{o}"
            );
        }
        assert_eq!(
            answer(websockets, &s).as_deref(),
            Some(
                "permessage-deflate; server_no_context_takeover; client_no_context_takeover; \
                 server_max_window_bits=12; client_max_window_bits=12"
            )
        );
        assert_eq!(answer(chromium, &policy(Mode::Off)), None);
    }

    #[test]
    fn every_parameter_alone_and_together() {
        let d = policy(Mode::Dedicated);
        let cases: &[(&str, Option<&str>)] = &[
            ("permessage-deflate; server_no_context_takeover", Some("permessage-deflate; server_no_context_takeover")),
            ("permessage-deflate; client_no_context_takeover", Some("permessage-deflate; client_no_context_takeover")),
            ("permessage-deflate; server_max_window_bits=8", Some("permessage-deflate; server_max_window_bits=8")),
            ("permessage-deflate; server_max_window_bits=15", Some("permessage-deflate; server_max_window_bits=15")),
            ("permessage-deflate; client_max_window_bits=8", Some("permessage-deflate; client_max_window_bits=8")),
            ("permessage-deflate; client_max_window_bits", Some("permessage-deflate")),
            (
                "permessage-deflate; server_no_context_takeover; client_no_context_takeover; server_max_window_bits=10; client_max_window_bits=9",
                Some("permessage-deflate; server_no_context_takeover; client_no_context_takeover; server_max_window_bits=10; client_max_window_bits=9"),
            ),
            // Case, spaces, tabs, quoted values.
            (" Permessage-Deflate ;\tSERVER_MAX_WINDOW_BITS = \"11\" ", Some("permessage-deflate; server_max_window_bits=11")),
        ];
        for (offer, want) in cases {
            assert_eq!(answer(offer, &d).as_deref(), *want, "{offer}");
        }
    }

    #[test]
    fn bad_offers_are_declined_and_the_next_one_taken() {
        let d = policy(Mode::Dedicated);
        let bad = [
            "permessage-deflate; server_max_window_bits",
            "permessage-deflate; server_max_window_bits=7",
            "permessage-deflate; server_max_window_bits=16",
            "permessage-deflate; server_max_window_bits=010",
            "permessage-deflate; server_max_window_bits=1O",
            "permessage-deflate; client_max_window_bits=0",
            "permessage-deflate; client_max_window_bits=\"\"",
            "permessage-deflate; server_no_context_takeover=1",
            "permessage-deflate; client_no_context_takeover; client_no_context_takeover",
            "permessage-deflate; server_max_window_bits=9; server_max_window_bits=9",
            "permessage-deflate; mystery",
            "permessage-deflate; client_max_window_bits=\"1;5\"",
            "permessage-deflate; =5",
            "permessage-deflate;; server_no_context_takeover",
            "permessage-deflate; server_max_window_bits=\"10",
        ];
        for b in bad {
            assert_eq!(answer(b, &d), None, "{b}");
            assert!(offers([b.as_bytes()]).all(|o| o.is_err()), "{b}");
            // The next offer, in the same value or in another header. An
            // unterminated quote takes the rest of its value with it.
            let two = format!("{b}, permessage-deflate; client_no_context_takeover");
            let open_quote = b.matches('"').count() % 2 == 1;
            assert_eq!(
                answer(&two, &d).as_deref(),
                (!open_quote).then_some("permessage-deflate; client_no_context_takeover"),
                "{two}"
            );
            let a = negotiate([b.as_bytes(), b"permessage-deflate".as_slice()], &d);
            assert_eq!(
                a.map(|a| a.answer()).as_deref(),
                Some("permessage-deflate"),
                "{b}"
            );
        }
        // Other extensions are skipped; empty list elements too.
        assert_eq!(
            answer(
                "x-webkit-deflate-frame, , foo; bar=\"a,b\", permessage-deflate",
                &d
            )
            .as_deref(),
            Some("permessage-deflate")
        );
        assert_eq!(answer("", &d), None);
        assert_eq!(answer(",,", &d), None);
    }

    #[test]
    fn a_dedicated_server_limits_its_windows() {
        let p = Policy {
            mode: Mode::Dedicated,
            window_bits: 10,
            client_window_bits: 11,
        };
        let a = negotiate(
            [b"permessage-deflate; client_max_window_bits".as_slice()],
            &p,
        )
        .unwrap();
        assert_eq!(
            (a.server_max_window_bits, a.client_max_window_bits),
            (10, 11)
        );
        assert_eq!(
            a.answer(),
            "permessage-deflate; server_max_window_bits=10; client_max_window_bits=11"
        );
        // The client asks for less than the server's limit: the client's.
        let a = negotiate(
            [
                b"permessage-deflate; server_max_window_bits=9; client_max_window_bits=8"
                    .as_slice(),
            ],
            &p,
        )
        .unwrap();
        assert_eq!((a.server_max_window_bits, a.client_max_window_bits), (9, 8));
        // An offer that does not let the server limit the client's window
        // cannot be taken by a server that keeps less than 15 bits.
        assert_eq!(negotiate([b"permessage-deflate".as_slice()], &p), None);
        assert_eq!(
            negotiate(
                [b"permessage-deflate, permessage-deflate; client_max_window_bits=15".as_slice()],
                &p
            )
            .map(|a| a.client_max_window_bits),
            Some(11)
        );
    }

    #[test]
    fn the_client_checks_the_answer() {
        let o = ClientOffer::default();
        assert_eq!(o.header(), "permessage-deflate; client_max_window_bits");
        let check = |o: &ClientOffer, v: &str| o.check_answer([v.as_bytes()]);
        let a = check(&o, "permessage-deflate").unwrap().unwrap();
        assert_eq!(
            (a.server_max_window_bits, a.client_max_window_bits),
            (15, 15)
        );
        assert!(!a.server_no_context_takeover);
        let a = check(
            &o,
            "permessage-deflate; server_no_context_takeover; client_max_window_bits=9",
        )
        .unwrap()
        .unwrap();
        assert!(a.server_no_context_takeover);
        assert_eq!(a.client_max_window_bits, 9);
        assert_eq!(o.check_answer(std::iter::empty()), Ok(None));
        for bad in [
            "permessage-deflate; client_max_window_bits",
            "permessage-deflate; client_max_window_bits=16",
            "permessage-deflate; mystery",
            "permessage-deflate, permessage-deflate",
            "x-webkit-deflate-frame",
            "permessage-deflate; server_max_window_bits",
        ] {
            assert!(check(&o, bad).is_err(), "{bad}");
        }
        let strict = ClientOffer {
            server_no_context_takeover: true,
            client_no_context_takeover: true,
            server_max_window_bits: 10,
        };
        assert_eq!(
            strict.header(),
            "permessage-deflate; server_no_context_takeover; client_no_context_takeover; \
             server_max_window_bits=10; client_max_window_bits"
        );
        // Each of these breaks what the offer asked for.
        for bad in [
            "permessage-deflate; server_max_window_bits=10",
            "permessage-deflate; server_no_context_takeover",
            "permessage-deflate; server_no_context_takeover; server_max_window_bits=11",
        ] {
            assert!(check(&strict, bad).is_err(), "{bad}");
        }
        let a = check(
            &strict,
            "permessage-deflate; server_no_context_takeover; server_max_window_bits=8",
        )
        .unwrap()
        .unwrap();
        assert_eq!(a.server_max_window_bits, 8);
        assert!(a.client_no_context_takeover);
        // What our server answers, our client takes, in every mode.
        for mode in [Mode::Shared, Mode::Dedicated] {
            let server = negotiate([strict.header().as_bytes()], &policy(mode)).unwrap();
            let client = check(&strict, &server.answer()).unwrap().unwrap();
            assert_eq!(client, server, "{mode:?}");
        }
    }
}
