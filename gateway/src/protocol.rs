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
mod tests {
    use super::*;
    use serde_json::{json, Value};

    fn limits() -> Limits {
        Limits::default()
    }

    fn p(s: &str) -> Result<ClientMessage, ProtocolError> {
        parse(s.as_bytes(), &limits())
    }

    /// What pusher-js's `Protocol.decodeMessage` makes of a message
    /// (protocol.ts lines 23-44): the envelope parsed, and `data` parsed
    /// once more if it is a string, kept as the string if that fails.
    struct Decoded {
        event: String,
        channel: Option<String>,
        data: Option<Value>,
        user_id: Option<String>,
    }

    fn decode_like_pusher_js(text: &str) -> Decoded {
        let v: Value = serde_json::from_str(text).expect("server message is JSON");
        let obj = v.as_object().expect("server message is an object");
        let data = obj.get("data").map(|d| match d {
            Value::String(s) => serde_json::from_str(s).unwrap_or_else(|_| d.clone()),
            other => other.clone(),
        });
        Decoded {
            event: obj["event"].as_str().unwrap().to_owned(),
            channel: obj.get("channel").map(|c| c.as_str().unwrap().to_owned()),
            data,
            user_id: obj.get("user_id").map(|u| u.as_str().unwrap().to_owned()),
        }
    }

    /// Strings that need every kind of escaping, and some that need none.
    const AWKWARD: &[&str] = &[
        "",
        "plain",
        "quote\" backslash\\ slash/",
        "\u{0}\u{1}\u{8}\t\n\u{b}\u{c}\r\u{1f}\u{7f}",
        "é ü 漢字 \u{2028}\u{2029} 🎉",
        "{\"looks\":\"like json\"}",
        "\\u0041 is not A",
    ];

    // --- parse: each message pusher-js sends ---------------------------

    #[test]
    fn ping_and_pong_as_pusher_js_sends_them() {
        assert_eq!(
            p(r#"{"event":"pusher:ping","data":{}}"#),
            Ok(ClientMessage::Ping)
        );
        assert_eq!(
            p(r#"{"event":"pusher:pong","data":{}}"#),
            Ok(ClientMessage::Pong)
        );
        // Data is ignored, whatever it is.
        assert_eq!(p(r#"{"event":"pusher:ping"}"#), Ok(ClientMessage::Ping));
        assert_eq!(
            p(r#" {"data":[1,2],"event":"pusher:ping"} "#),
            Ok(ClientMessage::Ping)
        );
    }

    #[test]
    fn subscribe_to_a_public_channel_as_pusher_js_8_sends_it() {
        // channel.ts `subscribe`: auth "" from Channel.authorize, and
        // channel_data undefined, which JSON.stringify leaves out.
        assert_eq!(
            p(r#"{"event":"pusher:subscribe","data":{"auth":"","channel":"my-channel"}}"#),
            Ok(ClientMessage::Subscribe {
                channel: "my-channel".into(),
                auth: Some(String::new()),
                channel_data: None,
            })
        );
        // After sign-in (user.ts `_subscribeChannels`), the same way.
        assert_eq!(
            p(
                r##"{"event":"pusher:subscribe","data":{"auth":"","channel":"#server-to-user-42"}}"##
            ),
            Ok(ClientMessage::Subscribe {
                channel: "#server-to-user-42".into(),
                auth: Some(String::new()),
                channel_data: None,
            })
        );
        // Other clients leave auth out, or send null.
        for msg in [
            r#"{"event":"pusher:subscribe","data":{"channel":"my-channel"}}"#,
            r#"{"event":"pusher:subscribe","data":{"channel":"my-channel","auth":null,"channel_data":null}}"#,
        ] {
            assert_eq!(
                p(msg),
                Ok(ClientMessage::Subscribe {
                    channel: "my-channel".into(),
                    auth: None,
                    channel_data: None,
                })
            );
        }
    }

    #[test]
    fn subscribe_to_a_presence_channel_keeps_channel_data_exactly() {
        let cd = r#"{ "user_id": "7", "user_info": { "name": "Ann \"A\"" } }"#;
        let msg = json!({
            "event": "pusher:subscribe",
            "data": {"auth": "key:abc", "channel_data": cd, "channel": "presence-room"}
        })
        .to_string();
        let want = ClientMessage::Subscribe {
            channel: "presence-room".into(),
            auth: Some("key:abc".into()),
            channel_data: Some(cd.into()),
        };
        assert_eq!(p(&msg), Ok(want.clone()));
        // Older clients: the data object itself as a JSON string.
        let inner = json!({"auth": "key:abc", "channel_data": cd, "channel": "presence-room"});
        let msg = json!({"event": "pusher:subscribe", "data": inner.to_string()}).to_string();
        assert_eq!(p(&msg), Ok(want));
    }

    #[test]
    fn unsubscribe_as_object_and_as_string() {
        let want = Ok(ClientMessage::Unsubscribe {
            channel: "private-a".into(),
        });
        assert_eq!(
            p(r#"{"event":"pusher:unsubscribe","data":{"channel":"private-a"}}"#),
            want
        );
        assert_eq!(
            p(r#"{"event":"pusher:unsubscribe","data":"{\"channel\":\"private-a\"}"}"#),
            want
        );
    }

    #[test]
    fn signin_as_pusher_js_sends_it() {
        let user_data = r#"{"id":"42","user_info":{"name":"Phil"}}"#;
        let msg = json!({
            "event": "pusher:signin",
            "data": {"auth": "key::user::abc", "user_data": user_data}
        })
        .to_string();
        assert_eq!(
            p(&msg),
            Ok(ClientMessage::Signin {
                auth: "key::user::abc".into(),
                user_data: user_data.into(),
            })
        );
    }

    #[test]
    fn client_events_keep_their_data_exactly() {
        for data in [
            r#"{ "a" : [1, 2.50, "x\u0041"] ,"b":{}}"#,
            r#""just a string""#,
            r#""{\"double\":\"encoded\"}""#,
            "12.5e3",
            "[]",
            "true",
        ] {
            let msg =
                format!(r#"{{"event":"client-typing","data":{data},"channel":"private-chat"}}"#);
            assert_eq!(
                p(&msg),
                Ok(ClientMessage::Client {
                    event: "client-typing".into(),
                    channel: "private-chat".into(),
                    data: data.into(),
                }),
                "{msg}"
            );
        }
        // channel.trigger(name) with no data: JSON.stringify drops it.
        for msg in [
            r#"{"event":"client-x","channel":"presence-a"}"#,
            r#"{"event":"client-x","channel":"presence-a","data":null}"#,
        ] {
            assert_eq!(
                p(msg),
                Ok(ClientMessage::Client {
                    event: "client-x".into(),
                    channel: "presence-a".into(),
                    data: "null".into(),
                })
            );
        }
    }

    #[test]
    fn unknown_keys_are_ignored_and_escapes_decoded() {
        assert_eq!(
            p(
                r#"{"extra":{"deep":[[[]]]},"event":"pusher:unsubscribe","data":{"channel":"a\u002db","x":1}}"#
            ),
            Ok(ClientMessage::Unsubscribe {
                channel: "a-b".into()
            })
        );
    }

    // --- parse: every error --------------------------------------------

    #[test]
    fn too_large_is_refused_before_parsing() {
        let l = Limits {
            max_event_bytes: 40,
            ..limits()
        };
        let ping = r#"{"event":"pusher:ping","data":{}}"#;
        let padded = |n: usize| format!("{ping}{}", " ".repeat(n - ping.len()));
        assert_eq!(parse(padded(40).as_bytes(), &l), Ok(ClientMessage::Ping));
        assert_eq!(
            parse(padded(41).as_bytes(), &l),
            Err(ProtocolError::TooLarge { len: 41, max: 40 })
        );
        // Garbage too: the length is checked first.
        assert_eq!(
            parse(&[0xff; 41], &l),
            Err(ProtocolError::TooLarge { len: 41, max: 40 })
        );
    }

    #[test]
    fn not_json_and_not_an_object() {
        for bad in [
            &b""[..],
            b"   ",
            b"{",
            b"{\"event\":\"pusher:ping\"",
            b"{\"event\":\"pusher:ping\"}x",
            b"{\"event\":\"pusher:ping\",}",
            b"{'event':'pusher:ping'}",
            b"{\"event\":\"\xff\"}",
            b"{\"event\":\"pusher:ping\",\"event\":\"pusher:pong\"}",
            b"\x0c{\"event\":\"pusher:ping\"}",
            b"nul",
        ] {
            assert_eq!(
                parse(bad, &limits()),
                Err(ProtocolError::BadJson),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        for other in [
            "[\"pusher:ping\"]",
            "[{\"event\":\"pusher:ping\"}]",
            "\"pusher:ping\"",
            "42",
            "null",
            " true ",
        ] {
            assert_eq!(p(other), Err(ProtocolError::NotAnObject), "{other}");
        }
    }

    #[test]
    fn event_field_errors() {
        assert_eq!(p("{}"), Err(ProtocolError::MissingField("event")));
        assert_eq!(
            p(r#"{"event":null,"data":{}}"#),
            Err(ProtocolError::MissingField("event"))
        );
        for bad in [
            r#"{"event":1}"#,
            r#"{"event":["pusher:ping"]}"#,
            r#"{"event":{}}"#,
        ] {
            assert_eq!(p(bad), Err(ProtocolError::BadField("event")), "{bad}");
        }
    }

    #[test]
    fn event_name_length_is_counted_in_characters() {
        let l = Limits {
            max_event_name_len: 10,
            ..limits()
        };
        let msg = |name: &str| format!(r#"{{"event":"{name}","channel":"private-a","data":{{}}}}"#);
        // 10 characters, 13 bytes: within.
        assert!(matches!(
            parse(msg("client-ééé").as_bytes(), &l),
            Ok(ClientMessage::Client { .. })
        ));
        assert_eq!(
            parse(msg("client-abcd").as_bytes(), &l),
            Err(ProtocolError::EventNameTooLong { len: 11, max: 10 })
        );
        // Checked before the name is classified, so UnknownEvent is bounded.
        assert_eq!(
            parse(msg("something-else").as_bytes(), &l),
            Err(ProtocolError::EventNameTooLong { len: 14, max: 10 })
        );
    }

    #[test]
    fn events_a_client_may_not_send() {
        for name in [
            "pusher:error",
            "pusher:connection_established",
            "pusher:subscription_succeeded",
            "pusher:cache_miss",
            "pusher_internal:subscription_succeeded",
            "pusher_internal:member_added",
            "my-event",
            "Client-x",
            "",
            "client",
        ] {
            let msg = json!({"event": name, "channel": "private-a", "data": {}}).to_string();
            assert_eq!(
                p(&msg),
                Err(ProtocolError::UnknownEvent(name.into())),
                "{name}"
            );
        }
    }

    #[test]
    fn data_field_errors() {
        for event in ["pusher:subscribe", "pusher:unsubscribe", "pusher:signin"] {
            let msg = |data: &str| format!(r#"{{"event":"{event}","data":{data}}}"#);
            assert_eq!(
                p(&format!(r#"{{"event":"{event}"}}"#)),
                Err(ProtocolError::MissingField("data"))
            );
            assert_eq!(p(&msg("null")), Err(ProtocolError::MissingField("data")));
            for bad in [
                "1",
                "[]",
                "true",
                r#""not json""#,
                r#""[1]""#,
                r#""\"str\"""#,
            ] {
                assert_eq!(p(&msg(bad)), Err(ProtocolError::BadField("data")), "{bad}");
            }
            // A key twice inside data is as bad as JSON gets.
            assert_eq!(
                p(&msg(r#"{"channel":"a","channel":"b"}"#)),
                Err(ProtocolError::BadField("data"))
            );
        }
        let sub = |data: &str| p(&format!(r#"{{"event":"pusher:subscribe","data":{data}}}"#));
        assert_eq!(sub("{}"), Err(ProtocolError::MissingField("data.channel")));
        assert_eq!(
            sub(r#"{"channel":null}"#),
            Err(ProtocolError::MissingField("data.channel"))
        );
        assert_eq!(
            sub(r#"{"channel":7}"#),
            Err(ProtocolError::BadField("data.channel"))
        );
        assert_eq!(
            sub(r#"{"channel":"a","auth":7}"#),
            Err(ProtocolError::BadField("data.auth"))
        );
        // channel_data must be the signed text, not an object.
        assert_eq!(
            sub(r#"{"channel":"presence-a","channel_data":{"user_id":"1"}}"#),
            Err(ProtocolError::BadField("data.channel_data"))
        );
        assert_eq!(
            sub(r#"{"channel":"bad name"}"#),
            Err(ProtocolError::BadChannelName)
        );
        let long = "a".repeat(MAX_CHANNEL_LEN + 1);
        assert_eq!(
            sub(&format!(r#"{{"channel":"{long}"}}"#)),
            Err(ProtocolError::ChannelTooLong { len: 165, max: 164 })
        );
        assert_eq!(
            p(r##"{"event":"pusher:unsubscribe","data":{"channel":"#bad"}}"##),
            Err(ProtocolError::BadChannelName)
        );
        let signin = |data: &str| p(&format!(r#"{{"event":"pusher:signin","data":{data}}}"#));
        assert_eq!(
            signin(r#"{"user_data":"{}"}"#),
            Err(ProtocolError::MissingField("data.auth"))
        );
        assert_eq!(
            signin(r#"{"auth":"k:s"}"#),
            Err(ProtocolError::MissingField("data.user_data"))
        );
        assert_eq!(
            signin(r#"{"auth":"k:s","user_data":{"id":"1"}}"#),
            Err(ProtocolError::BadField("data.user_data"))
        );
    }

    #[test]
    fn client_event_channel_errors() {
        assert_eq!(
            p(r#"{"event":"client-a","data":{}}"#),
            Err(ProtocolError::MissingField("channel"))
        );
        assert_eq!(
            p(r#"{"event":"client-a","channel":["private-a"],"data":{}}"#),
            Err(ProtocolError::BadField("channel"))
        );
        assert_eq!(
            p(r#"{"event":"client-a","channel":"private-","data":{}}"#),
            Err(ProtocolError::BadChannelName)
        );
    }

    #[test]
    fn every_error_has_a_message_and_its_code() {
        use ProtocolError::*;
        let all = [
            (TooLarge { len: 2, max: 1 }, Some(4301)),
            (BadJson, None),
            (NotAnObject, None),
            (MissingField("event"), None),
            (BadField("data"), None),
            (EventNameTooLong { len: 2, max: 1 }, Some(4301)),
            (UnknownEvent("x".into()), None),
            (BadChannelName, None),
            (ChannelTooLong { len: 2, max: 1 }, None),
            (BadChannelData("no user_id"), None),
            (BadUserData("no id"), Some(4009)),
        ];
        for (e, code) in all {
            assert_eq!(e.code(), code, "{e:?}");
            let text = e.to_string();
            assert!(!text.is_empty());
            // The answer is a pusher:error pusher-js can read.
            let d = decode_like_pusher_js(&error(e.code(), &text));
            assert_eq!(d.event, "pusher:error");
            let data = d.data.unwrap();
            assert_eq!(data["message"], text.as_str());
            assert_eq!(data["code"], code.map_or(Value::Null, |c| json!(c)));
        }
    }

    // --- channel names -------------------------------------------------

    #[test]
    fn channel_prefixes() {
        use Kind::*;
        for (name, kind, cache) in [
            ("my-channel", Public, false),
            ("cache-x", Public, true),
            ("private-x", Private, false),
            ("private-cache-x", Private, true),
            ("presence-x", Presence, false),
            ("presence-cache-x", Presence, true),
            ("private-encrypted-x", PrivateEncrypted, false),
            ("private-encrypted-cache-x", PrivateEncrypted, true),
            ("#server-to-user-42", ServerToUser, false),
            ("#server-to-user-a b:c", ServerToUser, false),
            // Prefixes only count at the start, and whole.
            ("x-private-y", Public, false),
            ("privatex", Public, false),
            ("private-encrypted", Private, false),
            ("cache", Public, false),
            ("presence-private-x", Presence, false),
            ("Private-x", Public, false),
        ] {
            assert_eq!(
                channel(name, MAX_CHANNEL_LEN),
                Ok(Channel { kind, cache }),
                "{name}"
            );
        }
        assert!(!Public.needs_auth());
        for k in [Private, Presence, PrivateEncrypted, ServerToUser] {
            assert!(k.needs_auth(), "{k:?}");
        }
    }

    #[test]
    fn channel_names_refused() {
        for name in [
            "",
            "private-",
            "presence-",
            "cache-",
            "private-cache-",
            "presence-cache-",
            "private-encrypted-",
            "private-encrypted-cache-",
            "#server-to-user-",
            "#other",
            "a#b",
            "with space",
            "slash/",
            "colon:",
            "star*",
            "é",
            "nul\0",
            "new\nline",
            "quote\"",
        ] {
            assert_eq!(
                channel(name, MAX_CHANNEL_LEN),
                Err(ProtocolError::BadChannelName),
                "{name:?}"
            );
        }
        // Every character the docs allow.
        let all = "AZaz09_-=@,.;";
        assert_eq!(
            channel(all, MAX_CHANNEL_LEN).map(|c| c.kind),
            Ok(Kind::Public)
        );
        assert_eq!(
            channel("foo-bar_1234@=,.;", MAX_CHANNEL_LEN).map(|c| c.kind),
            Ok(Kind::Public)
        );
    }

    #[test]
    fn channel_length_boundary_includes_the_prefix() {
        let at = format!("presence-{}", "a".repeat(MAX_CHANNEL_LEN - 9));
        assert_eq!(at.len(), 164);
        assert_eq!(
            channel(&at, MAX_CHANNEL_LEN).map(|c| c.kind),
            Ok(Kind::Presence)
        );
        let over = format!("{at}a");
        assert_eq!(
            channel(&over, MAX_CHANNEL_LEN),
            Err(ProtocolError::ChannelTooLong { len: 165, max: 164 })
        );
        // The length is checked first, whatever the characters.
        assert_eq!(
            channel(&"#".repeat(200), MAX_CHANNEL_LEN),
            Err(ProtocolError::ChannelTooLong { len: 200, max: 164 })
        );
        assert_eq!(
            channel("a", 0),
            Err(ProtocolError::ChannelTooLong { len: 1, max: 0 })
        );
    }

    // --- presence channel_data and sign-in user_data -------------------

    #[test]
    fn presence_members() {
        let m = presence_member(r#"{"user_id":"u1","user_info":{ "name" : "Ann" }}"#).unwrap();
        assert_eq!(m.user_id, "u1");
        assert_eq!(m.user_info.as_deref(), Some(r#"{ "name" : "Ann" }"#));
        for (cd, id) in [
            (r#"{"user_id":42}"#, "42"),
            (r#"{"user_id":-7}"#, "-7"),
            (r#"{"user_id":0}"#, "0"),
            (
                r#"{"user_id":18446744073709551615}"#,
                "18446744073709551615",
            ),
            (r#"{"user_id":"\u00e9"}"#, "é"),
        ] {
            let m = presence_member(cd).unwrap();
            assert_eq!((m.user_id.as_str(), m.user_info), (id, None), "{cd}");
        }
        assert_eq!(
            presence_member(r#"{"user_id":"1","user_info":null}"#)
                .unwrap()
                .user_info,
            None
        );
        assert_eq!(
            presence_member(r#"{"user_id":"1","user_info":"text"}"#)
                .unwrap()
                .user_info
                .as_deref(),
            Some(r#""text""#)
        );
        use ProtocolError::BadChannelData;
        for (cd, why) in [
            ("", "not a JSON object"),
            ("[]", "not a JSON object"),
            (r#""{\"user_id\":\"1\"}""#, "not a JSON object"),
            ("{", "not a JSON object"),
            (r#"{"user_id":"1","user_id":"2"}"#, "not a JSON object"),
            ("{}", "no user_id"),
            (r#"{"user_id":null}"#, "no user_id"),
            (r#"{"user_id":""}"#, "user_id is empty"),
            (
                r#"{"user_id":1.5}"#,
                "user_id is not a string or an integer",
            ),
            (
                r#"{"user_id":1e3}"#,
                "user_id is not a string or an integer",
            ),
            (
                r#"{"user_id":18446744073709551616}"#,
                "user_id is not a string or an integer",
            ),
            (
                r#"{"user_id":true}"#,
                "user_id is not a string or an integer",
            ),
            (
                r#"{"user_id":{"id":1}}"#,
                "user_id is not a string or an integer",
            ),
        ] {
            assert_eq!(presence_member(cd), Err(BadChannelData(why)), "{cd}");
        }
    }

    #[test]
    fn signin_user_ids() {
        assert_eq!(
            user_id_of(r#"{"id":"42","user_info":{"name":"x"},"watchlist":["1"]}"#),
            Ok("42".into())
        );
        use ProtocolError::BadUserData;
        for (ud, why) in [
            ("", "not a JSON object"),
            ("null", "not a JSON object"),
            ("{\"id\":", "not a JSON object"),
            ("{}", "no id"),
            (r#"{"id":null}"#, "no id"),
            (r#"{"id":42}"#, "id is not a string"),
            (r#"{"id":""}"#, "id is empty"),
        ] {
            assert_eq!(user_id_of(ud), Err(BadUserData(why)), "{ud}");
        }
    }

    // --- encoders: exact text, and what pusher-js reads out of it -------

    #[test]
    fn connection_established_is_double_encoded() {
        let m = connection_established("123.456", 120);
        assert_eq!(
            m,
            r#"{"event":"pusher:connection_established","data":"{\"socket_id\":\"123.456\",\"activity_timeout\":120}"}"#
        );
        // processHandshake: data.activity_timeout truthy, data.socket_id.
        let d = decode_like_pusher_js(&m);
        assert_eq!(d.event, "pusher:connection_established");
        assert_eq!(
            d.data,
            Some(json!({"socket_id": "123.456", "activity_timeout": 120}))
        );
        assert_eq!((d.channel, d.user_id), (None, None));
    }

    #[test]
    fn error_data_is_an_object() {
        assert_eq!(
            error(None, "Existing subscription to channel presence-a"),
            r#"{"event":"pusher:error","data":{"code":null,"message":"Existing subscription to channel presence-a"}}"#
        );
        assert_eq!(
            error(Some(4009), "Connection is unauthorized"),
            r#"{"event":"pusher:error","data":{"code":4009,"message":"Connection is unauthorized"}}"#
        );
    }

    #[test]
    fn ping_pong_and_plain_subscription_succeeded() {
        assert_eq!(ping(), r#"{"event":"pusher:ping","data":"{}"}"#);
        assert_eq!(pong(), r#"{"event":"pusher:pong","data":"{}"}"#);
        assert_eq!(
            subscription_succeeded("my-channel"),
            r#"{"event":"pusher_internal:subscription_succeeded","data":"{}","channel":"my-channel"}"#
        );
        let d = decode_like_pusher_js(&subscription_succeeded("private-a"));
        assert_eq!(d.data, Some(json!({})));
        assert_eq!(d.channel.as_deref(), Some("private-a"));
    }

    #[test]
    fn presence_subscription_succeeded_as_members_ts_reads_it() {
        let members = [
            (
                "u1",
                Some(r#"{"name":"Phil Leggetter","twitter":"@leggetter"}"#),
            ),
            ("u2", None),
            ("we\"ird", Some("[1, 2]")),
        ];
        let m = presence_subscription_succeeded("presence-room", members.iter().copied());
        assert_eq!(
            m,
            r#"{"event":"pusher_internal:subscription_succeeded","data":"{\"presence\":{\"ids\":[\"u1\",\"u2\",\"we\\\"ird\"],\"hash\":{\"u1\":{\"name\":\"Phil Leggetter\",\"twitter\":\"@leggetter\"},\"u2\":null,\"we\\\"ird\":[1, 2]},\"count\":3}}","channel":"presence-room"}"#
        );
        let d = decode_like_pusher_js(&m);
        assert_eq!(d.event, "pusher_internal:subscription_succeeded");
        assert_eq!(d.channel.as_deref(), Some("presence-room"));
        let presence = &d.data.unwrap()["presence"];
        // members.ts onSubscription: members = hash, count = count; get(id)
        // is hasOwnProperty on hash.
        assert_eq!(presence["count"], 3);
        assert_eq!(presence["ids"], json!(["u1", "u2", "we\"ird"]));
        let hash = presence["hash"].as_object().unwrap();
        assert_eq!(hash.len(), 3);
        assert!(hash.contains_key("u2") && hash["u2"].is_null());
        assert_eq!(hash["u1"]["twitter"], "@leggetter");
        assert_eq!(hash["we\"ird"], json!([1, 2]));

        let empty = presence_subscription_succeeded("presence-room", std::iter::empty());
        assert_eq!(
            decode_like_pusher_js(&empty).data,
            Some(json!({"presence": {"ids": [], "hash": {}, "count": 0}}))
        );
    }

    #[test]
    fn members_added_and_removed() {
        let m = member_added("presence-a", "u1", Some(r#"{"name":"Ann"}"#));
        assert_eq!(
            m,
            r#"{"event":"pusher_internal:member_added","data":"{\"user_id\":\"u1\",\"user_info\":{\"name\":\"Ann\"}}","channel":"presence-a"}"#
        );
        let d = decode_like_pusher_js(&m);
        assert_eq!(
            d.data,
            Some(json!({"user_id": "u1", "user_info": {"name": "Ann"}}))
        );
        assert_eq!(
            decode_like_pusher_js(&member_added("presence-a", "u2", None)).data,
            Some(json!({"user_id": "u2"}))
        );
        let m = member_removed("presence-a", "u1");
        assert_eq!(
            m,
            r#"{"event":"pusher_internal:member_removed","data":"{\"user_id\":\"u1\"}","channel":"presence-a"}"#
        );
    }

    #[test]
    fn subscription_error_count_cache_miss_and_signin_success() {
        let m = subscription_error("private-a", 401, "Invalid signature");
        assert_eq!(
            m,
            r#"{"event":"pusher:subscription_error","data":{"type":"AuthError","error":"Invalid signature","status":401},"channel":"private-a"}"#
        );
        assert_eq!(
            subscription_count("my-channel", 3),
            r#"{"event":"pusher_internal:subscription_count","data":"{\"subscription_count\":3}","channel":"my-channel"}"#
        );
        assert_eq!(
            cache_miss("cache-x"),
            r#"{"event":"pusher:cache_miss","channel":"cache-x"}"#
        );
        let ud = r#"{"id":"42","user_info":{"name":"Phil"}}"#;
        let m = signin_success(ud);
        assert_eq!(
            m,
            r#"{"event":"pusher:signin_success","data":{"user_data":"{\"id\":\"42\",\"user_info\":{\"name\":\"Phil\"}}"}}"#
        );
        // user.ts _onSigninSuccess: JSON.parse(data.user_data).id.
        let d = decode_like_pusher_js(&m);
        let inner: Value =
            serde_json::from_str(d.data.unwrap()["user_data"].as_str().unwrap()).unwrap();
        assert_eq!(inner["id"], "42");
    }

    #[test]
    fn channel_events() {
        let m = event(
            "my-event",
            "my-channel",
            r#"{"message":"hello world"}"#,
            None,
        );
        assert_eq!(
            m,
            r#"{"event":"my-event","data":"{\"message\":\"hello world\"}","channel":"my-channel"}"#
        );
        assert_eq!(
            decode_like_pusher_js(&m).data,
            Some(json!({"message": "hello world"}))
        );
        // Data that is not JSON reaches the application as the text.
        let d = decode_like_pusher_js(&event("e", "c", "not json {", Some("u9")));
        assert_eq!(d.data, Some(json!("not json {")));
        assert_eq!(d.user_id.as_deref(), Some("u9"));
    }

    #[test]
    fn client_events_relay_what_was_parsed() {
        let sent = r#"{"event":"client-typing","data":{ "who" : "ann" },"channel":"presence-a"}"#;
        let Ok(ClientMessage::Client {
            event,
            channel,
            data,
        }) = p(sent)
        else {
            panic!()
        };
        let m = client_event(&event, &channel, &data, Some("u1"));
        assert_eq!(
            m,
            r#"{"event":"client-typing","data":{ "who" : "ann" },"channel":"presence-a","user_id":"u1"}"#
        );
        let d = decode_like_pusher_js(&m);
        assert_eq!(d.data, Some(json!({"who": "ann"})));
        assert_eq!(d.user_id.as_deref(), Some("u1"));
        // A relayed event parses as the same client event.
        assert_eq!(
            p(&m),
            Ok(ClientMessage::Client {
                event,
                channel,
                data
            })
        );
    }

    #[test]
    fn escaping_is_exact_for_awkward_text() {
        for &s in AWKWARD {
            let d = decode_like_pusher_js(&error(None, s));
            assert_eq!(d.data.unwrap()["message"], s);

            let d = decode_like_pusher_js(&connection_established(s, 1));
            assert_eq!(d.data.unwrap()["socket_id"], s);

            // Channel event data: pusher-js sees the text, or its parse.
            let d = decode_like_pusher_js(&event(s, s, s, Some(s)));
            assert_eq!(d.event, s);
            assert_eq!(d.channel.as_deref(), Some(s));
            assert_eq!(d.user_id.as_deref(), Some(s));
            let want = serde_json::from_str(s).unwrap_or_else(|_| json!(s));
            assert_eq!(d.data, Some(want));

            let d = decode_like_pusher_js(&member_added(s, s, Some(&json!(s).to_string())));
            assert_eq!(d.data, Some(json!({"user_id": s, "user_info": s})));
            let d = decode_like_pusher_js(&member_removed(s, s));
            assert_eq!(d.data, Some(json!({"user_id": s})));

            let d =
                decode_like_pusher_js(&presence_subscription_succeeded(s, [(s, None)].into_iter()));
            assert_eq!(d.data.unwrap()["presence"]["ids"], json!([s]));

            let d = decode_like_pusher_js(&subscription_error(s, 403, s));
            assert_eq!(
                d.data,
                Some(json!({"type": "AuthError", "error": s, "status": 403}))
            );
            let d = decode_like_pusher_js(&signin_success(s));
            assert_eq!(d.data.unwrap()["user_data"], s);
            assert_eq!(
                decode_like_pusher_js(&cache_miss(s)).channel.as_deref(),
                Some(s)
            );
        }
    }

    // --- never panics ----------------------------------------------------

    /// Knuth's MMIX LCG: deterministic, no dependency.
    struct Lcg(u64);

    impl Lcg {
        fn next(&mut self) -> u64 {
            self.0 = self
                .0
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            self.0 >> 33
        }
        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
    }

    /// Parses `bytes` and checks what comes back: accepted messages are
    /// well formed, and their answers are valid JSON.
    fn check(bytes: &[u8], l: &Limits) {
        match parse(bytes, l) {
            Ok(ClientMessage::Subscribe {
                channel: c,
                channel_data,
                ..
            }) => {
                assert!(channel(&c, l.max_channel_len).is_ok());
                if let Some(cd) = channel_data {
                    if let Ok(m) = presence_member(&cd) {
                        let out = member_added(&c, &m.user_id, m.user_info.as_deref());
                        decode_like_pusher_js(&out);
                    }
                }
            }
            Ok(ClientMessage::Unsubscribe { channel: c }) => {
                assert!(channel(&c, l.max_channel_len).is_ok());
            }
            Ok(ClientMessage::Signin { user_data, .. }) => {
                if let Ok(id) = user_id_of(&user_data) {
                    assert!(!id.is_empty());
                }
            }
            Ok(ClientMessage::Client {
                event: e,
                channel: c,
                data,
            }) => {
                assert!(e.starts_with("client-"));
                assert!(e.chars().count() <= l.max_event_name_len);
                assert!(is_json(&data));
                let out = client_event(&e, &c, &data, Some("u"));
                decode_like_pusher_js(&out);
                // Relayed, it parses as the same client event.
                let again = ClientMessage::Client {
                    event: e,
                    channel: c,
                    data,
                };
                assert_eq!(parse(out.as_bytes(), &ROOMY), Ok(again));
            }
            Ok(ClientMessage::Ping | ClientMessage::Pong) => {}
            Err(e) => {
                let out = error(e.code(), &e.to_string());
                decode_like_pusher_js(&out);
                // The parser reads what the server sends as JSON too (the
                // fuzz target, with no JSON library, relies on that).
                assert_eq!(
                    parse(out.as_bytes(), &ROOMY),
                    Err(ProtocolError::UnknownEvent("pusher:error".into()))
                );
            }
        }
        if bytes.len() > l.max_event_bytes {
            assert!(matches!(
                parse(bytes, l),
                Err(ProtocolError::TooLarge { .. })
            ));
        }
    }

    /// Room to parse back anything the server sends in these tests.
    const ROOMY: Limits = Limits {
        max_event_bytes: 1 << 20,
        max_channel_len: 1 << 20,
        max_event_name_len: 1 << 20,
    };

    #[test]
    fn pseudo_random_bytes_never_panic() {
        // Mostly JSON's own characters, so some inputs get deep.
        const ALPHABET: &[u8] =
            b"{}[]\":,\\ -0123456789.eE+truefalsnu\0\x01\xff\xc3\xa9client-pusher:";
        let l = Limits {
            max_event_bytes: 512,
            max_channel_len: 32,
            max_event_name_len: 24,
        };
        let mut rng = Lcg(0x5eed);
        for _ in 0..4000 {
            let len = rng.below(300);
            let bytes: Vec<u8> = (0..len)
                .map(|_| {
                    if rng.below(4) == 0 {
                        rng.next() as u8
                    } else {
                        ALPHABET[rng.below(ALPHABET.len())]
                    }
                })
                .collect();
            check(&bytes, &l);
            if let Ok(s) = std::str::from_utf8(&bytes) {
                let _ = presence_member(s);
                let _ = user_id_of(s);
                let _ = channel(s, 32);
                let out = event("e", s, s, Some(s));
                assert_eq!(
                    parse(out.as_bytes(), &ROOMY),
                    Err(ProtocolError::UnknownEvent("e".into()))
                );
            }
        }
    }

    #[test]
    fn mutated_valid_messages_never_panic() {
        let seeds = [
            r#"{"event":"pusher:ping","data":{}}"#.to_owned(),
            r#"{"event":"pusher:subscribe","data":{"auth":"","channel":"my-channel"}}"#.to_owned(),
            json!({
                "event": "pusher:subscribe",
                "data": {
                    "auth": "key:sig",
                    "channel": "presence-cache-room",
                    "channel_data": r#"{"user_id":12,"user_info":{"name":"Ann"}}"#
                }
            })
            .to_string(),
            r#"{"event":"pusher:unsubscribe","data":"{\"channel\":\"private-a\"}"}"#.to_owned(),
            json!({
                "event": "pusher:signin",
                "data": {"auth": "key:sig", "user_data": r#"{"id":"42"}"#}
            })
            .to_string(),
            r#"{"event":"client-move","channel":"private-encrypted-cache-g","data":{"x":[1,{"y":"z"}]}}"#
                .to_owned(),
        ];
        let l = limits();
        let mut rng = Lcg(42);
        for round in 0..6000 {
            let mut m = seeds[round % seeds.len()].clone().into_bytes();
            for _ in 0..1 + rng.below(4) {
                let at = rng.below(m.len() + 1);
                match rng.below(5) {
                    0 if at < m.len() => m[at] = rng.next() as u8,
                    1 if at < m.len() => {
                        m.remove(at);
                    }
                    2 => m.insert(at, b"{}[]\",:\\0n"[rng.below(10)]),
                    3 => m.truncate(at),
                    _ => {
                        // Duplicate a slice: repeats keys and brackets.
                        let from = rng.below(m.len() + 1);
                        let to = (from + rng.below(16)).min(m.len());
                        let piece = m[from..to].to_vec();
                        let at = at.min(m.len());
                        m.splice(at..at, piece);
                    }
                }
            }
            check(&m, &l);
        }
    }

    #[test]
    fn deep_nesting_is_refused_or_carried_without_recursion() {
        let deep = 100_000;
        let l = Limits {
            max_event_bytes: 8 * deep,
            ..limits()
        };
        // At the top: serde_json's recursion limit, not the stack.
        let arrays = format!("{}{}", "[".repeat(deep), "]".repeat(deep));
        assert_eq!(
            parse(arrays.as_bytes(), &l),
            Err(ProtocolError::NotAnObject)
        );
        let open = "[".repeat(deep);
        assert_eq!(parse(open.as_bytes(), &l), Err(ProtocolError::BadJson));
        // An unknown key's value is skipped without recursion too.
        let objects = format!("{}1{}", r#"{"a":"#.repeat(deep), "}".repeat(deep));
        assert_eq!(
            parse(objects.as_bytes(), &l),
            Err(ProtocolError::MissingField("event"))
        );
        let broken = format!("{}{}", r#"{"a":"#.repeat(deep), "}".repeat(deep));
        assert_eq!(parse(broken.as_bytes(), &l), Err(ProtocolError::BadJson));
        // In a client event's data, skipped whole: relayed as is.
        let data = format!("{}{}", "[".repeat(deep), "]".repeat(deep));
        let msg = format!(r#"{{"event":"client-x","channel":"private-a","data":{data}}}"#);
        match parse(msg.as_bytes(), &l) {
            Ok(ClientMessage::Client { data: got, .. }) => assert_eq!(got, data),
            other => panic!("{other:?}"),
        }
        let unclosed = format!(r#"{{"event":"client-x","channel":"private-a","data":{open}}}"#);
        assert_eq!(parse(unclosed.as_bytes(), &l), Err(ProtocolError::BadJson));
        // In channel_data and user_data: refused or read, never a crash.
        let cd = format!(r#"{{"user_id":"1","user_info":{data}}}"#);
        assert_eq!(
            presence_member(&cd).map(|m| m.user_info.map(|i| i.len())),
            Ok(Some(2 * deep))
        );
        assert!(user_id_of(&format!(r#"{{"x":{data},"id":"1"}}"#)).is_ok());
        assert!(user_id_of(&arrays).is_err());
    }
}
