//! The Pusher Channels protocol, version 7, as pusher-js 8 speaks it: what
//! a client sends, parsed into a [`ClientMessage`], and everything the
//! server sends, encoded as the JSON text Pusher's own servers send.
//!
//! Sans-IO like ringws's `proto`: bytes in, values out, no socket, clock or
//! global state. The caller owns every decision that needs state (is this
//! connection subscribed, does this signature verify, is it signed in);
//! this module only says what a message *is* and how an answer is spelt.
//!
//! ```
//! use ringws_gateway::protocol::{self, ClientMessage, Limits};
//!
//! let msg = br#"{"event":"pusher:subscribe","data":{"auth":"","channel":"news"}}"#;
//! let Ok(ClientMessage::Subscribe { channel, .. }) = protocol::parse(msg, &Limits::default())
//! else { panic!() };
//! assert_eq!(
//!     protocol::subscription_succeeded(&channel),
//!     r#"{"event":"pusher_internal:subscription_succeeded","data":"{}","channel":"news"}"#
//! );
//! ```
//!
//! # Sources
//!
//! - The protocol reference: <https://pusher.com/docs/channels/library_auth_reference/pusher-websockets-protocol>
//!   (`docs/channels/library_auth_reference/pusher-websockets-protocol.md` in
//!   pusher/docs), and the channel naming rules in `using_channels/channels.md`
//!   and `cache-channels.md` there.
//! - pusher-js 8.6: `src/core/connection/protocol/protocol.ts` (how every
//!   message is decoded), `src/core/channels/channel.ts`,
//!   `presence_channel.ts`, `members.ts`, `channels.ts` and
//!   `src/core/user.ts` (what it sends, and what it reads out of each answer).
//! - Messages captured from Pusher's servers, for the field order and the
//!   cases the reference leaves open (`"data":"{}"` on pong and on a
//!   non-presence subscription_succeeded; `"code":null` in pusher:error).
//!
//! # Double encoding
//!
//! Pusher sends most `data` fields as a JSON *string* holding JSON
//! (`"data":"{\"socket_id\":\"1.2\"}"`): pusher:connection_established,
//! ping and pong, every `pusher_internal:` event, and channel events. The
//! rest, pusher:error, pusher:signin_success and pusher:subscription_error,
//! carry an object, as the reference shows them. Either is safe with
//! pusher-js: `decodeMessage` (protocol.ts lines 23-44) parses `data` once
//! more whenever it is a string and keeps the string if that fails, so a
//! channel event whose data is not JSON reaches the application as text.
//!
//! Clients send the other way round: pusher-js `JSON.stringify`s the whole
//! event (protocol.ts `encodeMessage`), so the `data` of pusher:subscribe,
//! pusher:unsubscribe and pusher:signin is an object; older clients sent a
//! string holding one, and [`parse`] takes both.
//!
//! # Limits
//!
//! [`Limits`] bounds a message before anything is parsed, and the event
//! and channel names in it. JSON nesting needs no limit of its own: every
//! field the parser looks into is flat, and the values it only carries
//! (`data`, `user_info`) are skipped by serde_json without recursion.

use std::fmt;

use serde::de::IgnoredAny;
use serde::Deserialize;
use serde_json::value::RawValue;

/// Pusher's longest channel name, prefix included: "Channel names may
/// contain a maximum of 164 characters" (docs, `using_channels/channels.md`).
pub const MAX_CHANNEL_LEN: usize = 164;

/// The longest event name by default. Pusher's docs state no limit for
/// event names; 200 is what soketi, the most used compatible server,
/// enforces, and what the brief for this module set.
pub const MAX_EVENT_NAME_LEN: usize = 200;

/// Pusher's limit on an event's data, 10 KiB ("The event data should not
/// be larger than 10KB", docs `library_auth_reference/rest-api.md`).
pub const MAX_EVENT_DATA: usize = 10 * 1024;

/// The prefix of the channel pusher-js subscribes to after a successful
/// sign-in, `#server-to-user-<user id>` (pusher-js `src/core/user.ts` line
/// 146), through which the HTTP API's messages to a user arrive. `#` is
/// otherwise reserved: "Applications can't create channel names containing
/// `#`" (docs, `channels.md`).
pub const SERVER_TO_USER_PREFIX: &str = "#server-to-user-";

/// The error codes of the protocol reference ("Error Codes"), for
/// pusher:error messages and WebSocket close codes. pusher-js acts on them
/// only as close codes (`Protocol.getCloseAction`: 4000-4099 refused,
/// 4100-4199 back off, 4200-4299 retry now, 4300 and up refused); in a
/// pusher:error on an open connection they only reach the application's
/// error handler.
pub mod code {
    /// 4001: no application with that key.
    pub const APP_DOES_NOT_EXIST: u16 = 4001;
    /// 4003: the application is disabled.
    pub const APP_DISABLED: u16 = 4003;
    /// 4004: the application is over its connection quota.
    pub const OVER_CONNECTION_QUOTA: u16 = 4004;
    /// 4005: path not found.
    pub const PATH_NOT_FOUND: u16 = 4005;
    /// 4006: invalid version string format.
    pub const INVALID_VERSION: u16 = 4006;
    /// 4007: unsupported protocol version.
    pub const UNSUPPORTED_PROTOCOL: u16 = 4007;
    /// 4008: no protocol version supplied.
    pub const NO_PROTOCOL: u16 = 4008;
    /// 4009: the connection is unauthorized (a sign-in or subscription
    /// authorization that does not verify).
    pub const UNAUTHORIZED: u16 = 4009;
    /// 4100: over capacity; reconnect after backing off.
    pub const OVER_CAPACITY: u16 = 4100;
    /// 4200: generic "reconnect immediately".
    pub const RECONNECT: u16 = 4200;
    /// 4201: a ping went unanswered.
    pub const PONG_NOT_RECEIVED: u16 = 4201;
    /// 4202: closed after inactivity.
    pub const INACTIVE: u16 = 4202;
    /// 4301: a client event was rejected ("due to rate limit" in the
    /// reference; soketi also uses it for client events that are too large
    /// or have too long a name).
    pub const CLIENT_EVENT_REJECTED: u16 = 4301;
    /// 4302: the sign-in's watchlist is over its limit.
    pub const WATCHLIST_LIMIT: u16 = 4302;
}

/// Bounds on what a client may send; past one, [`parse`] refuses the
/// message with the [`ProtocolError`] that names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Longest message, in bytes, whole (envelope and data). Default
    /// [`MAX_EVENT_DATA`] plus 1 KiB for the envelope: Pusher's 10 KiB
    /// limit on data, with room for a 200-character event name, a
    /// 164-character channel name and the keys around them. Checked before
    /// any parsing: stops a client making the server parse, copy and relay
    /// large messages (a client event is copied to every subscriber).
    pub max_event_bytes: usize,
    /// Longest channel name, in bytes (the same as characters for every
    /// name Pusher allows). Default [`MAX_CHANNEL_LEN`], 164. Bounds the
    /// names a client can make the server keep as subscriptions.
    pub max_channel_len: usize,
    /// Longest event name, in characters. Default [`MAX_EVENT_NAME_LEN`],
    /// 200. Bounds the names relayed with client events, and echoed in
    /// [`ProtocolError::UnknownEvent`].
    pub max_event_name_len: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_event_bytes: MAX_EVENT_DATA + 1024,
            max_channel_len: MAX_CHANNEL_LEN,
            max_event_name_len: MAX_EVENT_NAME_LEN,
        }
    }
}

/// A message from a client, checked against the protocol and the
/// [`Limits`], not against the connection's state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientMessage {
    /// `pusher:ping`: answer with [`pong`]. pusher-js sends it only when
    /// its transport cannot send a WebSocket ping (connection.ts `ping`).
    Ping,
    /// `pusher:pong`, the answer to a [`ping`].
    Pong,
    /// `pusher:subscribe`. `channel` is a valid name ([`channel`] accepts
    /// it); nothing is verified.
    Subscribe {
        /// The channel.
        channel: String,
        /// The authorization signature, `"<key>:<hex>"`, as sent. pusher-js
        /// sends `""` for public channels (channel.ts `authorize`); absent
        /// or `null` is `None`.
        auth: Option<String>,
        /// A presence channel's member, the JSON text the signature covers,
        /// exactly as sent; read it with [`presence_member`]. `None` when
        /// absent or `null`, as pusher-js leaves it for every other channel.
        channel_data: Option<String>,
    },
    /// `pusher:unsubscribe`; `channel` is a valid name.
    Unsubscribe {
        /// The channel.
        channel: String,
    },
    /// `pusher:signin`: both fields as sent, for the caller to verify;
    /// then [`user_id_of`] reads the user's id out of `user_data`.
    Signin {
        /// The signature, `"<key>:<hex>"`.
        auth: String,
        /// The JSON text the signature covers.
        user_data: String,
    },
    /// A `client-*` event. `channel` is a valid name; whether the
    /// connection may trigger on it (subscribed, private or presence,
    /// client events enabled) is the caller's to check.
    Client {
        /// The event name, `client-` included.
        event: String,
        /// The channel.
        channel: String,
        /// The raw JSON text of the data field exactly as sent (a string,
        /// an object or any other value; `null` when absent, as pusher-js
        /// sends `channel.trigger(name)` with no data), relayed as is with
        /// [`client_event`].
        data: String,
    },
}

/// What kind of channel a name is, from its prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// No prefix (or `cache-`): anyone may subscribe.
    Public,
    /// `private-`: subscribing needs a signature over socket id and channel.
    Private,
    /// `presence-`: a signature over socket id, channel and `channel_data`,
    /// which names the member.
    Presence,
    /// `private-encrypted-`: a private channel whose events the server
    /// cannot read (the auth endpoint hands the client the key).
    PrivateEncrypted,
    /// `#server-to-user-<id>`: the signed-in user `<id>`'s own channel.
    /// pusher-js subscribes with an empty `auth` after sign-in; the check
    /// is that the connection is signed in as exactly that id.
    ServerToUser,
}

impl Kind {
    /// Whether a subscription needs the caller's check before it is
    /// accepted: everything but [`Kind::Public`]. For Private, Presence and
    /// PrivateEncrypted the check is the `auth` signature; for
    /// [`Kind::ServerToUser`] it is the signed-in user's id, not a
    /// signature (pusher-js sends none), so a caller that only verifies
    /// signatures refuses it rather than letting anyone in.
    pub fn needs_auth(self) -> bool {
        !matches!(self, Kind::Public)
    }
}

/// A valid channel name, classified ([`channel`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Channel {
    /// The kind, from the prefix.
    pub kind: Kind,
    /// A cache channel (`cache-`, `private-cache-`, `presence-cache-`,
    /// `private-encrypted-cache-`): its last event is replayed to each new
    /// subscriber, or [`cache_miss`] sent when there is none.
    pub cache: bool,
}

/// A presence channel's member, from `channel_data` ([`presence_member`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    /// The user's id. A JSON integer is normalised to its decimal string,
    /// the key pusher-js files it under (members.ts keeps members in an
    /// object, whose keys are strings).
    pub user_id: String,
    /// The raw JSON text of `user_info`, exactly as the auth endpoint wrote
    /// it; `None` when absent or `null`.
    pub user_info: Option<String>,
}

/// A message that breaks the protocol or the [`Limits`]. Nothing here
/// closes the connection by itself: the caller answers with
/// [`error`]`(e.code(), &e.to_string())` and decides whether to go on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProtocolError {
    /// The message is longer than [`Limits::max_event_bytes`].
    TooLarge {
        /// The message's length in bytes.
        len: usize,
        /// The configured limit.
        max: usize,
    },
    /// Not JSON (or not UTF-8, or an object with a key twice).
    BadJson,
    /// JSON, but not an object.
    NotAnObject,
    /// A required field is absent or `null`; nested fields are named
    /// `data.<field>`.
    MissingField(&'static str),
    /// A field of the wrong type: `event` or `channel` not a string, the
    /// `data` of a pusher: event neither an object nor a string holding
    /// one, `data.channel_data` not a string.
    BadField(&'static str),
    /// An event name longer than [`Limits::max_event_name_len`].
    EventNameTooLong {
        /// The name's length in characters.
        len: usize,
        /// The configured limit.
        max: usize,
    },
    /// An event a client may not send: a `pusher:` event other than ping,
    /// pong, subscribe, unsubscribe and signin, any `pusher_internal:`
    /// event, or a name that starts with neither `pusher:` nor `client-`.
    UnknownEvent(String),
    /// A channel name that is empty, has nothing after its prefix, or has a
    /// character other than `A-Za-z0-9_-=@,.;` ("Channel names should only
    /// include lower and uppercase letters, numbers and the following
    /// punctuation `_ - = @ , . ;`", docs `channels.md`).
    BadChannelName,
    /// A channel name longer than [`Limits::max_channel_len`].
    ChannelTooLong {
        /// The name's length in bytes.
        len: usize,
        /// The configured limit.
        max: usize,
    },
    /// A presence subscription's `channel_data` that names no member; the
    /// reason.
    BadChannelData(&'static str),
    /// A sign-in's `user_data` without a non-empty string `id`; the reason.
    BadUserData(&'static str),
}

impl ProtocolError {
    /// The code of the pusher:error that answers this, `None` for
    /// `"code":null`: how Pusher reports a bad subscription or a bad
    /// command ("Existing subscription to channel ...", "Invalid signature
    /// ..." both come with a null code). The exceptions, in this one place:
    /// - a message too large or with too long an event name is 4301, the
    ///   code for a rejected client event (soketi's choice for both);
    /// - bad sign-in user data is 4009, "Connection is unauthorized", as
    ///   for a sign-in whose signature fails.
    pub fn code(&self) -> Option<u16> {
        use ProtocolError::*;
        match self {
            TooLarge { .. } | EventNameTooLong { .. } => Some(code::CLIENT_EVENT_REJECTED),
            BadUserData(_) => Some(code::UNAUTHORIZED),
            BadJson
            | NotAnObject
            | MissingField(_)
            | BadField(_)
            | UnknownEvent(_)
            | BadChannelName
            | ChannelTooLong { .. }
            | BadChannelData(_) => None,
        }
    }
}

impl fmt::Display for ProtocolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use ProtocolError::*;
        match self {
            TooLarge { len, max } => {
                write!(f, "message of {len} bytes is over the limit of {max}")
            }
            BadJson => f.write_str("message is not valid JSON"),
            NotAnObject => f.write_str("message is not a JSON object"),
            MissingField(name) => write!(f, "missing field `{name}`"),
            BadField(name) => write!(f, "field `{name}` has the wrong type"),
            EventNameTooLong { len, max } => {
                write!(
                    f,
                    "event name of {len} characters is over the limit of {max}"
                )
            }
            UnknownEvent(name) => write!(f, "unsupported event `{name}`"),
            BadChannelName => f.write_str(
                "invalid channel name: use A-Z, a-z, 0-9 and _-=@,.; with a name after any prefix",
            ),
            ChannelTooLong { len, max } => {
                write!(
                    f,
                    "channel name of {len} characters is over the limit of {max}"
                )
            }
            BadChannelData(why) => write!(f, "invalid channel_data: {why}"),
            BadUserData(why) => write!(f, "invalid user_data: {why}"),
        }
    }
}

impl std::error::Error for ProtocolError {}

/// The envelope of every message. Each field is borrowed raw and typed
/// afterwards, so a wrong type is reported as the field it is in rather
/// than as a JSON error, and `data` keeps its exact text.
#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(borrow)]
    event: Option<&'a RawValue>,
    #[serde(borrow)]
    channel: Option<&'a RawValue>,
    #[serde(borrow)]
    data: Option<&'a RawValue>,
}

/// The fields of a pusher:subscribe, pusher:unsubscribe or pusher:signin
/// `data` object.
#[derive(Deserialize)]
struct DataFields<'a> {
    #[serde(borrow)]
    channel: Option<&'a RawValue>,
    #[serde(borrow)]
    auth: Option<&'a RawValue>,
    #[serde(borrow)]
    channel_data: Option<&'a RawValue>,
    #[serde(borrow)]
    user_data: Option<&'a RawValue>,
}

/// [`DataFields`], typed.
struct Fields {
    channel: Option<String>,
    auth: Option<String>,
    channel_data: Option<String>,
    user_data: Option<String>,
}

/// Parses one message from a client: the payload of one WebSocket text
/// message.
///
/// Checks, in order: the length against [`Limits::max_event_bytes`]; JSON,
/// an object, with a string `event` within [`Limits::max_event_name_len`];
/// then the event's own fields, and the syntax of any channel name
/// ([`channel`]). Unknown keys are ignored, as JavaScript would.
pub fn parse(bytes: &[u8], limits: &Limits) -> Result<ClientMessage, ProtocolError> {
    if bytes.len() > limits.max_event_bytes {
        return Err(ProtocolError::TooLarge {
            len: bytes.len(),
            max: limits.max_event_bytes,
        });
    }
    // serde's derived Deserialize also takes a struct from a JSON array,
    // positionally: `["pusher:ping"]` would pass. Only an object may.
    if first_non_space(bytes) != Some(b'{') {
        return Err(not_an_object_or_bad_json(bytes));
    }
    let env: Envelope<'_> = serde_json::from_slice(bytes).map_err(|_| ProtocolError::BadJson)?;
    let event = required_string(env.event, "event")?;
    // Characters, as the limit is stated; JavaScript clients count UTF-16
    // units, the same for every name short of the astral planes.
    let len = event.chars().count();
    if len > limits.max_event_name_len {
        return Err(ProtocolError::EventNameTooLong {
            len,
            max: limits.max_event_name_len,
        });
    }
    match event.as_str() {
        // pusher-js sends `"data":{}` with both; it carries nothing.
        "pusher:ping" => Ok(ClientMessage::Ping),
        "pusher:pong" => Ok(ClientMessage::Pong),
        "pusher:subscribe" => {
            let f = data_fields(env.data)?;
            let channel = required(f.channel, "data.channel")?;
            check_channel(&channel, limits)?;
            Ok(ClientMessage::Subscribe {
                channel,
                auth: f.auth,
                channel_data: f.channel_data,
            })
        }
        "pusher:unsubscribe" => {
            let channel = required(data_fields(env.data)?.channel, "data.channel")?;
            check_channel(&channel, limits)?;
            Ok(ClientMessage::Unsubscribe { channel })
        }
        "pusher:signin" => {
            let f = data_fields(env.data)?;
            Ok(ClientMessage::Signin {
                auth: required(f.auth, "data.auth")?,
                user_data: required(f.user_data, "data.user_data")?,
            })
        }
        // "Client events must be prefixed by `client-`. Events with any
        // other prefix will be rejected by the Channels server" (docs,
        // `using_channels/events.md`).
        name if name.starts_with("client-") => {
            let channel = required_string(env.channel, "channel")?;
            check_channel(&channel, limits)?;
            let data = env.data.map_or("null", RawValue::get).to_owned();
            Ok(ClientMessage::Client {
                event,
                channel,
                data,
            })
        }
        _ => Err(ProtocolError::UnknownEvent(event)),
    }
}

/// The channel prefixes, with kind and cache flag, longest first:
/// `private-encrypted-cache-x` also starts with `private-encrypted-` and
/// `private-`. pusher-js classifies the same way (channels.ts
/// `createChannel` tests `private-encrypted-` before `private-`).
const CHANNEL_PREFIXES: [(&str, Kind, bool); 7] = [
    ("private-encrypted-cache-", Kind::PrivateEncrypted, true),
    ("private-encrypted-", Kind::PrivateEncrypted, false),
    ("private-cache-", Kind::Private, true),
    ("private-", Kind::Private, false),
    ("presence-cache-", Kind::Presence, true),
    ("presence-", Kind::Presence, false),
    ("cache-", Kind::Public, true),
];

/// Classifies a channel name, or says why it is not one.
///
/// The prefixes are Pusher's (docs `channels.md` and `cache-channels.md`):
/// `private-`, `presence-`, `private-encrypted-`, and the cache forms
/// `cache-`, `private-cache-`, `presence-cache-`, `private-encrypted-cache-`
/// ("Cache channel is available in public, private, and private-encrypted
/// modes", and presence by the same page's table); plus
/// [`SERVER_TO_USER_PREFIX`]. Something must follow the prefix. The length
/// is checked first, in bytes, against `max_len`.
pub fn channel(name: &str, max_len: usize) -> Result<Channel, ProtocolError> {
    if name.len() > max_len {
        return Err(ProtocolError::ChannelTooLong {
            len: name.len(),
            max: max_len,
        });
    }
    if let Some(user_id) = name.strip_prefix(SERVER_TO_USER_PREFIX) {
        // The rest is a user id, which sign-in allows to be any non-empty
        // string: the caller compares it with the signed-in id, exactly.
        if user_id.is_empty() {
            return Err(ProtocolError::BadChannelName);
        }
        return Ok(Channel {
            kind: Kind::ServerToUser,
            cache: false,
        });
    }
    if name.is_empty() || !name.bytes().all(allowed_in_channel) {
        return Err(ProtocolError::BadChannelName);
    }
    for (prefix, kind, cache) in CHANNEL_PREFIXES {
        if let Some(rest) = name.strip_prefix(prefix) {
            if rest.is_empty() {
                return Err(ProtocolError::BadChannelName);
            }
            return Ok(Channel { kind, cache });
        }
    }
    Ok(Channel {
        kind: Kind::Public,
        cache: false,
    })
}

/// Reads a presence subscription's member out of its `channel_data`:
/// `{"user_id": "...", "user_info": {...}}` (docs, "pusher:subscribe").
///
/// `user_id` must be a non-empty string or an integer; an integer becomes
/// its decimal string, the key pusher-js looks the member up under
/// (presence_channel.ts `authorize` keeps the parsed number, members.ts
/// finds it in an object whose keys are strings). Past 2^53 JavaScript has
/// already rounded the number, so ids that large only work as strings, as
/// Pusher's docs warn. `user_info` may be any JSON value and is kept as
/// its raw text. Pusher's limits on both (128 characters, 1 KB) are left to
/// [`Limits::max_event_bytes`], which bounds the whole subscription.
pub fn presence_member(channel_data: &str) -> Result<Member, ProtocolError> {
    #[derive(Deserialize)]
    struct ChannelData<'a> {
        #[serde(borrow)]
        user_id: Option<&'a RawValue>,
        #[serde(borrow)]
        user_info: Option<&'a RawValue>,
    }
    if first_non_space(channel_data.as_bytes()) != Some(b'{') {
        return Err(ProtocolError::BadChannelData("not a JSON object"));
    }
    let cd: ChannelData<'_> = serde_json::from_str(channel_data)
        .map_err(|_| ProtocolError::BadChannelData("not a JSON object"))?;
    let raw = cd
        .user_id
        .ok_or(ProtocolError::BadChannelData("no user_id"))?;
    let user_id = user_id_text(raw).ok_or(ProtocolError::BadChannelData(
        "user_id is not a string or an integer",
    ))?;
    if user_id.is_empty() {
        return Err(ProtocolError::BadChannelData("user_id is empty"));
    }
    Ok(Member {
        user_id,
        user_info: cd.user_info.map(|r| r.get().to_owned()),
    })
}

/// Reads the user's id out of a sign-in's `user_data`: "It must contain at
/// least an `id` field as a `String`" (docs, "pusher:signin").
///
/// Stricter than for presence members, as pusher-js is: after
/// pusher:signin_success it drops a user whose `id` is not a non-empty
/// string (user.ts `_onSigninSuccess`, line 120), so a number is refused
/// here rather than accepted and then ignored by the client.
pub fn user_id_of(user_data: &str) -> Result<String, ProtocolError> {
    #[derive(Deserialize)]
    struct UserData<'a> {
        #[serde(borrow)]
        id: Option<&'a RawValue>,
    }
    if first_non_space(user_data.as_bytes()) != Some(b'{') {
        return Err(ProtocolError::BadUserData("not a JSON object"));
    }
    let ud: UserData<'_> = serde_json::from_str(user_data)
        .map_err(|_| ProtocolError::BadUserData("not a JSON object"))?;
    let raw = ud.id.ok_or(ProtocolError::BadUserData("no id"))?;
    let id: String = serde_json::from_str(raw.get())
        .map_err(|_| ProtocolError::BadUserData("id is not a string"))?;
    if id.is_empty() {
        return Err(ProtocolError::BadUserData("id is empty"));
    }
    Ok(id)
}

// What the server sends. Each function returns the whole message, the text
// of one WebSocket text message, with its fields in the order Pusher's
// servers send them (event, data, channel, user_id). Every string goes
// through serde_json's escaping; only the `_raw` arguments are copied as
// they are, and must be JSON text, as `parse` and `presence_member` return.

/// `pusher:connection_established`, the first message on a connection:
/// `data` is a JSON string of `{"socket_id", "activity_timeout"}`. pusher-js
/// refuses the handshake without a non-zero `activity_timeout`
/// (protocol.ts `processHandshake`, line 74) and pings after
/// `min(its own, this)` seconds of silence; Pusher sends 120.
pub fn connection_established(socket_id: &str, activity_timeout: u32) -> String {
    let mut inner = String::with_capacity(socket_id.len() + 48);
    inner.push_str("{\"socket_id\":");
    push_json_str(&mut inner, socket_id);
    inner.push_str(",\"activity_timeout\":");
    inner.push_str(&activity_timeout.to_string());
    inner.push('}');
    message(
        "pusher:connection_established",
        Data::Str(&inner),
        None,
        None,
    )
}

/// `pusher:error`: `data` is an object `{"code", "message"}`, `code` a
/// number or `null` (docs "pusher:error"; `{"code":null,"message":...}` is
/// how Pusher answers a bad subscription). pusher-js hands `data` to the
/// application's `error` handler (connection.ts line 105).
pub fn error(code: Option<u16>, message_text: &str) -> String {
    let mut data = String::with_capacity(message_text.len() + 32);
    data.push_str("{\"code\":");
    match code {
        Some(c) => data.push_str(&c.to_string()),
        None => data.push_str("null"),
    }
    data.push_str(",\"message\":");
    push_json_str(&mut data, message_text);
    data.push('}');
    message("pusher:error", Data::Raw(&data), None, None)
}

/// `pusher:ping`, for a client that has been silent: it must answer with
/// pusher:pong (connection_manager.ts line 274). Empty data, as a JSON
/// string, like Pusher's pong.
pub fn ping() -> String {
    message("pusher:ping", Data::Str("{}"), None, None)
}

/// `pusher:pong`, the answer to a [`ClientMessage::Ping`]:
/// `{"event":"pusher:pong","data":"{}"}`, as Pusher sends it.
pub fn pong() -> String {
    message("pusher:pong", Data::Str("{}"), None, None)
}

/// `pusher_internal:subscription_succeeded` for any channel but a presence
/// one: `data` is `"{}"`. pusher-js emits `pusher:subscription_succeeded`
/// with the parsed data (channel.ts `handleSubscriptionSucceededEvent`).
pub fn subscription_succeeded(channel: &str) -> String {
    message(
        "pusher_internal:subscription_succeeded",
        Data::Str("{}"),
        Some(channel),
        None,
    )
}

/// `pusher_internal:subscription_succeeded` for a presence channel: `data`
/// is a JSON string of `{"presence": {"ids", "hash", "count"}}` (docs,
/// "Presence Channel Events").
///
/// `members` must hold each user once (a user with several connections is
/// one member); `count` is how many it holds. pusher-js takes `hash` as
/// the member table and `count` as its size (members.ts `onSubscription`)
/// and finds its own member by looking its id up in `hash`, so every id is
/// a key there, with `null` for a member without `user_info`.
/// `user_info_raw` must be JSON text ([`Member::user_info`]).
pub fn presence_subscription_succeeded<'a>(
    channel: &str,
    members: impl Iterator<Item = (&'a str, Option<&'a str>)>,
) -> String {
    let mut ids = String::from("[");
    let mut hash = String::from("{");
    let mut count: usize = 0;
    for (user_id, user_info_raw) in members {
        if count > 0 {
            ids.push(',');
            hash.push(',');
        }
        count += 1;
        push_json_str(&mut ids, user_id);
        push_json_str(&mut hash, user_id);
        hash.push(':');
        let info = user_info_raw.unwrap_or("null");
        debug_assert!(is_json(info), "user_info must be JSON text");
        hash.push_str(info);
    }
    ids.push(']');
    hash.push('}');
    let mut inner = String::with_capacity(ids.len() + hash.len() + 64);
    inner.push_str("{\"presence\":{\"ids\":");
    inner.push_str(&ids);
    inner.push_str(",\"hash\":");
    inner.push_str(&hash);
    inner.push_str(",\"count\":");
    inner.push_str(&count.to_string());
    inner.push_str("}}");
    message(
        "pusher_internal:subscription_succeeded",
        Data::Str(&inner),
        Some(channel),
        None,
    )
}

/// `pusher:subscription_error`: `data` is an object `{"type", "error",
/// "status"}`, the shape pusher-js itself emits when its authorization
/// request fails (channel.ts lines 124-134) and that the docs document for
/// the event ("Category of error that occured, e.g. `AuthError`", a
/// description, and an HTTP status). pusher-js passes it to the channel's
/// `pusher:subscription_error` handlers unchanged. `type` is always
/// `"AuthError"`, the only type pusher-js produces for this event, so
/// handlers written against pusher-js's own errors (which branch on
/// `status`) read the server's the same way.
pub fn subscription_error(channel: &str, status: u16, error_text: &str) -> String {
    let mut data = String::with_capacity(error_text.len() + 48);
    data.push_str("{\"type\":\"AuthError\",\"error\":");
    push_json_str(&mut data, error_text);
    data.push_str(",\"status\":");
    data.push_str(&status.to_string());
    data.push('}');
    message(
        "pusher:subscription_error",
        Data::Raw(&data),
        Some(channel),
        None,
    )
}

/// `pusher_internal:member_added`: `data` is a JSON string of `{"user_id",
/// "user_info"}` (docs), `user_info` left out when `None`. pusher-js counts
/// the member only if its id is new (members.ts `addMember`).
/// `user_info_raw` must be JSON text.
pub fn member_added(channel: &str, user_id: &str, user_info_raw: Option<&str>) -> String {
    let mut inner = String::with_capacity(user_id.len() + user_info_raw.map_or(0, str::len) + 32);
    inner.push_str("{\"user_id\":");
    push_json_str(&mut inner, user_id);
    if let Some(info) = user_info_raw {
        debug_assert!(is_json(info), "user_info must be JSON text");
        inner.push_str(",\"user_info\":");
        inner.push_str(info);
    }
    inner.push('}');
    message(
        "pusher_internal:member_added",
        Data::Str(&inner),
        Some(channel),
        None,
    )
}

/// `pusher_internal:member_removed`: `data` is a JSON string of
/// `{"user_id"}` (docs). Send it when the user's last connection leaves.
pub fn member_removed(channel: &str, user_id: &str) -> String {
    let mut inner = String::with_capacity(user_id.len() + 16);
    inner.push_str("{\"user_id\":");
    push_json_str(&mut inner, user_id);
    inner.push('}');
    message(
        "pusher_internal:member_removed",
        Data::Str(&inner),
        Some(channel),
        None,
    )
}

/// `pusher_internal:subscription_count`: `data` is a JSON string of
/// `{"subscription_count"}`; pusher-js stores it on the channel and emits
/// `pusher:subscription_count` (channel.ts `handleSubscriptionCountEvent`).
/// Pusher sends it, when the app enables it, on every channel but presence
/// ones (docs, `events.md`).
pub fn subscription_count(channel: &str, count: u64) -> String {
    let inner = format!("{{\"subscription_count\":{count}}}");
    message(
        "pusher_internal:subscription_count",
        Data::Str(&inner),
        Some(channel),
        None,
    )
}

/// A channel event published through the HTTP API: `data` is the API's
/// `data` string, sent as a JSON string ("Channel Events" in the docs:
/// `"data": String`), which pusher-js parses as JSON if it can and hands
/// over as text if not. `user_id` is for events whose sender the server
/// knows (docs: present "if this is a client event on a presence channel").
pub fn event(event_name: &str, channel: &str, data: &str, user_id: Option<&str>) -> String {
    message(event_name, Data::Str(data), Some(channel), user_id)
}

/// A client event relayed to the channel's other subscribers: `data_raw`
/// is [`ClientMessage::Client`]'s `data`, copied as is, so receivers get
/// what the sender's library sent (pusher-js parses a string once more, as
/// for any event). `user_id` is the sender's on a presence channel, which
/// pusher-js passes to handlers as `metadata.user_id`
/// (presence_channel.ts `handleEvent`); `None` elsewhere.
pub fn client_event(
    event_name: &str,
    channel: &str,
    data_raw: &str,
    user_id: Option<&str>,
) -> String {
    debug_assert!(is_json(data_raw), "client event data must be JSON text");
    message(event_name, Data::Raw(data_raw), Some(channel), user_id)
}

/// `pusher:cache_miss`, after subscription_succeeded on a cache channel
/// with no event to replay: no data, only the channel, as Pusher-compatible
/// servers send it (pusher-js emits it on the channel with no data).
pub fn cache_miss(channel: &str) -> String {
    message("pusher:cache_miss", Data::None, Some(channel), None)
}

/// `pusher:signin_success`: `data` is an object `{"user_data"}` holding the
/// signed-in `user_data` text (docs, "pusher:signin_success"); pusher-js
/// parses `data.user_data` and subscribes to the user's
/// `#server-to-user-<id>` channel (user.ts `_onSigninSuccess`).
pub fn signin_success(user_data: &str) -> String {
    let mut data = String::with_capacity(user_data.len() + 24);
    data.push_str("{\"user_data\":");
    push_json_str(&mut data, user_data);
    data.push('}');
    message("pusher:signin_success", Data::Raw(&data), None, None)
}

/// How a message's `data` is written.
enum Data<'a> {
    /// No `data` field.
    None,
    /// JSON text, copied as is.
    Raw(&'a str),
    /// Text written as a JSON string: the double encoding.
    Str(&'a str),
}

/// One message: `{"event":..,"data":..,"channel":..,"user_id":..}`, the
/// optional fields left out when absent.
fn message(event: &str, data: Data<'_>, channel: Option<&str>, user_id: Option<&str>) -> String {
    let data_len = match data {
        Data::None => 0,
        // A string grows when escaped; a little room saves a copy in the
        // common case of JSON data with a few quotes.
        Data::Raw(d) | Data::Str(d) => d.len() + d.len() / 8,
    };
    let mut out = String::with_capacity(
        event.len() + data_len + channel.map_or(0, str::len) + user_id.map_or(0, str::len) + 48,
    );
    out.push_str("{\"event\":");
    push_json_str(&mut out, event);
    match data {
        Data::None => {}
        Data::Raw(d) => {
            out.push_str(",\"data\":");
            out.push_str(d);
        }
        Data::Str(d) => {
            out.push_str(",\"data\":");
            push_json_str(&mut out, d);
        }
    }
    if let Some(c) = channel {
        out.push_str(",\"channel\":");
        push_json_str(&mut out, c);
    }
    if let Some(u) = user_id {
        out.push_str(",\"user_id\":");
        push_json_str(&mut out, u);
    }
    out.push('}');
    out
}

/// Appends `s` as a JSON string literal, escaped by serde_json: exact for
/// any text (quotes, backslashes, control characters; everything else,
/// U+2028 and astral characters included, as UTF-8, which JSON.parse takes).
fn push_json_str(out: &mut String, s: &str) {
    // Serialising a str cannot fail: serde_json's only errors here would be
    // from the writer, and a String's never fails.
    let lit = serde_json::to_string(s).expect("serialising a str into a String cannot fail");
    out.push_str(&lit);
}

/// The first byte that is not JSON whitespace.
fn first_non_space(bytes: &[u8]) -> Option<u8> {
    bytes
        .iter()
        .copied()
        .find(|b| !matches!(b, b' ' | b'\t' | b'\n' | b'\r'))
}

/// For input that does not start with `{`: JSON of another type, or not
/// JSON at all.
fn not_an_object_or_bad_json(bytes: &[u8]) -> ProtocolError {
    match serde_json::from_slice::<IgnoredAny>(bytes) {
        Ok(_) => ProtocolError::NotAnObject,
        Err(_) => ProtocolError::BadJson,
    }
}

/// Whether `s` is one JSON value (for debug assertions on raw arguments).
fn is_json(s: &str) -> bool {
    serde_json::from_str::<IgnoredAny>(s).is_ok()
}

/// `A-Za-z0-9_-=@,.;` (docs, `channels.md`).
fn allowed_in_channel(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'=' | b'@' | b',' | b'.' | b';')
}

fn check_channel(name: &str, limits: &Limits) -> Result<(), ProtocolError> {
    channel(name, limits.max_channel_len).map(|_| ())
}

/// A field that must be present, not `null`, and a string.
fn required_string(raw: Option<&RawValue>, name: &'static str) -> Result<String, ProtocolError> {
    required(optional_string(raw, name)?, name)
}

fn required(value: Option<String>, name: &'static str) -> Result<String, ProtocolError> {
    value.ok_or(ProtocolError::MissingField(name))
}

/// A field that may be absent or `null`, and is otherwise a string.
fn optional_string(
    raw: Option<&RawValue>,
    name: &'static str,
) -> Result<Option<String>, ProtocolError> {
    raw.map(|r| serde_json::from_str(r.get()).map_err(|_| ProtocolError::BadField(name)))
        .transpose()
}

/// The fields of a pusher: event's `data`: an object, or a string holding
/// one.
fn data_fields(data: Option<&RawValue>) -> Result<Fields, ProtocolError> {
    let text = data.ok_or(ProtocolError::MissingField("data"))?.get();
    if text.starts_with('"') {
        let inner: String =
            serde_json::from_str(text).map_err(|_| ProtocolError::BadField("data"))?;
        return object_fields(&inner);
    }
    object_fields(text)
}

fn object_fields(text: &str) -> Result<Fields, ProtocolError> {
    if first_non_space(text.as_bytes()) != Some(b'{') {
        return Err(ProtocolError::BadField("data"));
    }
    let raw: DataFields<'_> =
        serde_json::from_str(text).map_err(|_| ProtocolError::BadField("data"))?;
    Ok(Fields {
        channel: optional_string(raw.channel, "data.channel")?,
        auth: optional_string(raw.auth, "data.auth")?,
        channel_data: optional_string(raw.channel_data, "data.channel_data")?,
        user_data: optional_string(raw.user_data, "data.user_data")?,
    })
}

/// A presence `user_id`: a string as is, an integer as its decimal string;
/// `None` for anything else (fractions and exponents included).
fn user_id_text(raw: &RawValue) -> Option<String> {
    let text = raw.get();
    if text.starts_with('"') {
        return serde_json::from_str::<String>(text).ok();
    }
    if let Ok(n) = serde_json::from_str::<u64>(text) {
        return Some(n.to_string());
    }
    serde_json::from_str::<i64>(text)
        .ok()
        .map(|n| n.to_string())
}

#[cfg(test)]
mod tests;
