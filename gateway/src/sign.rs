//! Every signature the Pusher Channels protocol uses, sans-IO: strings and
//! bytes in, strings and verdicts out; time arrives as an argument.
//!
//! | what | signed string | where it travels |
//! | --- | --- | --- |
//! | private/presence channel authorisation | `socket_id:channel[:channel_data]` | `auth` of `pusher:subscribe` |
//! | user sign-in | `socket_id::user::user_data` | `auth` of `pusher:signin` |
//! | HTTP API request | `METHOD\nPATH\nQUERY` | `auth_signature` query parameter |
//! | webhook | the raw body | `X-Pusher-Signature` header |
//!
//! All four are HMAC-SHA256 under the app secret, in lower-case hex. The auth
//! strings are `key:signature`. Sources: Pusher's "Authentication and
//! authorization signatures" and "HTTP API reference" pages, and the official
//! Node SDK (`pusher` 5.3.4: `lib/auth.js`, `lib/token.js`, `lib/requests.js`,
//! `lib/webhook.js`), whose real output the tests replay.
//!
//! # What the SDKs really send in an API query string
//!
//! The docs say the string to sign holds the parameters "sorted by key, with
//! keys converted to lowercase ... not URL-escaped". The SDKs go further: the
//! Node and Python SDKs do not escape the query they send at all; they join
//! `k=v` with `&` exactly as they signed it and leave the HTTP client's URL
//! parser to escape what it must (Node's turns a space into `%20` and keeps
//! `+` and `,` as they are). So [`verify_api_request`] percent-decodes
//! (RFC 3986) and reads `+` as a literal plus, which is what those SDKs mean by
//! it. A client that form-encodes (`application/x-www-form-urlencoded`,
//! space as `+`) would then fail; for it, and only after the first reading
//! failed on the signature, the query is read a second time with `+` as a
//! space. Pusher's docs do not say which reading their server uses. Values
//! the API defines (channel names, `info` lists) contain neither, so this only
//! matters for hand-written clients.

use std::fmt;

use hmac::{Hmac, Mac};
use md5::{Digest, Md5};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// The only `auth_version` Pusher has defined.
const AUTH_VERSION: &str = "1.0";

/// Query parameters the signature scheme owns. The Node SDK refuses them in
/// a caller's params (`RESERVED_QUERY_KEYS` in `lib/requests.js`); they are
/// never handed to the API's handlers.
const RESERVED: [&str; 5] = [
    "auth_key",
    "auth_timestamp",
    "auth_version",
    "auth_signature",
    "body_md5",
];

/// HMAC-SHA256 of `msg` under `secret`, lower-case hex.
pub fn hmac_hex(secret: &str, msg: &[u8]) -> String {
    let mut mac = mac(secret);
    mac.update(msg);
    to_hex(&mac.finalize().into_bytes())
}

/// Channel authorisation string `key:hex(hmac(secret, "socket_id:channel"))`,
/// or with `:channel_data` appended for a presence channel.
///
/// `channel_data` is signed byte for byte as the client will send it back, so
/// the caller passes the serialised JSON string, not a value to re-encode.
/// The fields are joined with `:` and nothing else, so the caller must have
/// checked the socket id (`\d+\.\d+`) and the channel name (Pusher's
/// `[-a-zA-Z0-9_=@,.;]`, no `:`) first: with a colon in either, one signed
/// string stands for another channel, and `"socket_id::user::user_data"` (a
/// [`user_auth`] signature) is the string for the channel `:user:`.
pub fn channel_auth(
    key: &str,
    secret: &str,
    socket_id: &str,
    channel: &str,
    channel_data: Option<&str>,
) -> String {
    let mut mac = mac(secret);
    channel_string(&mut mac, socket_id, channel, channel_data);
    format!("{key}:{}", to_hex(&mac.finalize().into_bytes()))
}

/// Checks the `auth` field of a `pusher:subscribe`: the part before the first
/// `:` must equal `key`, and the rest must be the hex HMAC of the channel
/// string (see [`channel_auth`]), compared in constant time.
pub fn verify_channel_auth(
    key: &str,
    secret: &str,
    socket_id: &str,
    channel: &str,
    channel_data: Option<&str>,
    auth: &str,
) -> bool {
    let Some(sig) = signature_for_key(key, auth) else {
        return false;
    };
    let mut mac = mac(secret);
    channel_string(&mut mac, socket_id, channel, channel_data);
    mac.verify_slice(&sig).is_ok()
}

/// User sign-in string for `pusher:signin`:
/// `key:hex(hmac(secret, "socket_id::user::user_data"))`, `user_data` being
/// the JSON string exactly as the client sends it.
pub fn user_auth(key: &str, secret: &str, socket_id: &str, user_data: &str) -> String {
    let mut mac = mac(secret);
    user_string(&mut mac, socket_id, user_data);
    format!("{key}:{}", to_hex(&mac.finalize().into_bytes()))
}

/// Checks the `auth` field of a `pusher:signin` (see [`user_auth`]): key part
/// equal to `key`, signature compared in constant time.
pub fn verify_user_auth(
    key: &str,
    secret: &str,
    socket_id: &str,
    user_data: &str,
    auth: &str,
) -> bool {
    let Some(sig) = signature_for_key(key, auth) else {
        return false;
    };
    let mut mac = mac(secret);
    user_string(&mut mac, socket_id, user_data);
    mac.verify_slice(&sig).is_ok()
}

/// The `X-Pusher-Signature` header of a webhook: `hex(hmac(secret, body))`
/// over the exact bytes sent (the SDKs' `WebHook.isValid` checks this against
/// the raw body, with `X-Pusher-Key` naming the app).
pub fn webhook_signature(secret: &str, body: &[u8]) -> String {
    hmac_hex(secret, body)
}

/// Signs an HTTP API request the way the server SDKs do and returns the
/// query string to send (without the leading `?`): `params` plus `auth_key`,
/// `auth_timestamp`, `auth_version=1.0`, `body_md5` when `body` is non-empty,
/// sorted by lower-cased key, then `auth_signature` last, as the Node SDK
/// orders them.
///
/// The string signed is `METHOD\nPATH\nQUERY`, QUERY being those parameters
/// as `k=v` joined with `&`, keys lower-cased, nothing escaped. The query
/// returned escapes keys and values: the SDK sends them raw, which breaks on
/// `&`, `=`, `#` or `%`, so this escapes those and everything else outside
/// RFC 3986's unreserved set and the harmless `,:;@!$()*/`, in upper-case
/// `%XX`. For the values the API defines the bytes equal the SDK's.
///
/// `path` is signed as given and must be sent as given (e.g.
/// `/apps/42/events`). Keys of `params` must be distinct ignoring case (the
/// verifier rejects a repeated parameter); a key that names one of the
/// signature's own parameters is dropped, where the Node SDK throws.
pub fn sign_api_request(
    key: &str,
    secret: &str,
    method: &str,
    path: &str,
    params: &[(&str, &str)],
    body: &[u8],
    timestamp: u64,
) -> String {
    let timestamp = timestamp.to_string();
    let body_md5 = (!body.is_empty()).then(|| md5_hex(body));
    // (lower-cased key for sorting and signing, key as sent, value)
    let mut all: Vec<(String, &str, &str)> = params
        .iter()
        .map(|&(k, v)| (k.to_ascii_lowercase(), k, v))
        .filter(|(lower, _, _)| !RESERVED.contains(&lower.as_str()))
        .collect();
    all.push(("auth_key".into(), "auth_key", key));
    all.push(("auth_timestamp".into(), "auth_timestamp", &timestamp));
    all.push(("auth_version".into(), "auth_version", AUTH_VERSION));
    if let Some(md5) = &body_md5 {
        all.push(("body_md5".into(), "body_md5", md5));
    }
    all.sort_by(|a, b| a.0.cmp(&b.0));

    let mut mac = mac(secret);
    mac.update(method.to_ascii_uppercase().as_bytes());
    mac.update(b"\n");
    mac.update(path.as_bytes());
    mac.update(b"\n");
    let mut query = String::new();
    for (i, (lower, sent, value)) in all.iter().enumerate() {
        if i > 0 {
            mac.update(b"&");
            query.push('&');
        }
        mac.update(lower.as_bytes());
        mac.update(b"=");
        mac.update(value.as_bytes());
        percent_encode(sent, &mut query);
        query.push('=');
        percent_encode(value, &mut query);
    }
    query.push_str("&auth_signature=");
    query.push_str(&to_hex(&mac.finalize().into_bytes()));
    query
}

/// An HTTP API request whose signature checked out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedRequest {
    /// The app key that signed it (`auth_key`).
    pub auth_key: String,
    /// The decoded query parameters other than the signature's own
    /// (`auth_key`, `auth_timestamp`, `auth_version`, `auth_signature`,
    /// `body_md5`), keys lower-cased (the signature ignores their case), in
    /// the order they came.
    pub params: Vec<(String, String)>,
}

/// Why an HTTP API request was refused. [`ApiAuthError::status`] maps each to
/// its HTTP status; the `Display` text is meant for the response body, for a
/// client to act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApiAuthError {
    /// A required query parameter is absent (`body_md5` counts as required
    /// when the body is non-empty).
    Missing(&'static str),
    /// `auth_key` names no app on this server.
    UnknownKey,
    /// `auth_version` is not `1.0`.
    BadVersion,
    /// `auth_timestamp` is too far from the server's clock: `skew` is the
    /// timestamp minus now, in seconds (negative: the request is old).
    Expired {
        /// Timestamp minus the server's clock, in seconds.
        skew: i64,
    },
    /// `body_md5` is not the MD5 of the body received.
    BodyMd5,
    /// `auth_signature` is malformed or does not match the request.
    BadSignature,
    /// The query string cannot be read: a stray `%`, a parameter without a
    /// name, a repeated parameter, invalid UTF-8 once decoded, or a
    /// non-numeric `auth_timestamp`.
    BadQuery,
}

impl ApiAuthError {
    /// The HTTP status to answer with: 400 for a query that cannot be read,
    /// 401 for every authentication failure, as Pusher's API does.
    pub fn status(&self) -> u16 {
        match self {
            ApiAuthError::BadQuery => 400,
            _ => 401,
        }
    }
}

impl fmt::Display for ApiAuthError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ApiAuthError::Missing(param) => write!(
                f,
                "missing query parameter {param}: every request needs auth_key, \
                 auth_timestamp, auth_version and auth_signature, and body_md5 \
                 when it has a body"
            ),
            ApiAuthError::UnknownKey => f.write_str("auth_key is not the key of any app here"),
            ApiAuthError::BadVersion => f.write_str("auth_version must be 1.0"),
            ApiAuthError::Expired { skew } => {
                let way = if *skew < 0 { "behind" } else { "ahead of" };
                write!(
                    f,
                    "auth_timestamp is {} s {way} the server's clock, outside the \
                     allowed window; check the client's clock",
                    skew.unsigned_abs()
                )
            }
            ApiAuthError::BodyMd5 => f.write_str(
                "body_md5 is not the MD5 of the body received: send the lower-case \
                 hex MD5 of the exact body bytes",
            ),
            ApiAuthError::BadSignature => f.write_str(
                "auth_signature does not match: sign \"METHOD\\nPATH\\nQUERY\" with the \
                 app secret, QUERY being every other parameter as key=value, keys \
                 lower-cased and sorted, joined with &, not URL-escaped",
            ),
            ApiAuthError::BadQuery => f.write_str(
                "malformed query string: a stray %, an unnamed or repeated parameter, \
                 invalid UTF-8, or a non-numeric auth_timestamp",
            ),
        }
    }
}

impl std::error::Error for ApiAuthError {}

/// Verifies an incoming HTTP API request.
///
/// `method` and `path` as in the request line (the path undecoded: the SDKs
/// sign the path they send); `query` is the raw query string after the `?`
/// (percent-encoded, may be empty); `secret_for` maps an `auth_key` to its
/// app's secret (`None`: unknown key). `now` is unix seconds and `window` the
/// skew allowed either way (Pusher allows 600 s; the server passes 600).
///
/// Checks, in this order: the query parses, the four `auth_*` parameters are
/// there, `auth_version` is `1.0`, the key is known, the timestamp is within
/// the window, `body_md5` is present when the body is non-empty and matches
/// the body whenever present (the Python SDK sends it even for an empty GET
/// body), and the signature matches, compared in constant time. See the
/// module docs for how `+` is read.
pub fn verify_api_request(
    method: &str,
    path: &str,
    query: &str,
    body: &[u8],
    secret_for: impl Fn(&str) -> Option<String>,
    now: u64,
    window: u64,
) -> Result<VerifiedRequest, ApiAuthError> {
    let pairs = parse_query(query, false)?;
    let first = check_api_request(method, path, pairs, body, &secret_for, now, window);
    if first != Err(ApiAuthError::BadSignature) || !query.contains('+') {
        return first;
    }
    // Everything but the signature passed; a form-encoding client may have
    // meant its `+` as a space. Any failure of this second reading reports
    // the first one's error.
    parse_query(query, true)
        .and_then(|pairs| check_api_request(method, path, pairs, body, &secret_for, now, window))
        .map_err(|_| ApiAuthError::BadSignature)
}

/// The checks of [`verify_api_request`] for one reading of the query; `pairs`
/// holds decoded, lower-cased, distinct keys.
fn check_api_request(
    method: &str,
    path: &str,
    pairs: Vec<(String, String)>,
    body: &[u8],
    secret_for: &impl Fn(&str) -> Option<String>,
    now: u64,
    window: u64,
) -> Result<VerifiedRequest, ApiAuthError> {
    let get = |name: &'static str| {
        pairs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    let require = |name: &'static str| get(name).ok_or(ApiAuthError::Missing(name));
    let auth_key = require("auth_key")?;
    let timestamp = require("auth_timestamp")?;
    let version = require("auth_version")?;
    let signature = require("auth_signature")?;

    if version != AUTH_VERSION {
        return Err(ApiAuthError::BadVersion);
    }
    let secret = secret_for(auth_key).ok_or(ApiAuthError::UnknownKey)?;

    // Digits only: `u64::from_str` would also take a leading `+`, which no
    // SDK sends and which would make two spellings of one timestamp.
    if timestamp.is_empty() || !timestamp.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ApiAuthError::BadQuery);
    }
    let timestamp: u64 = timestamp.parse().map_err(|_| ApiAuthError::BadQuery)?;
    // Both are u64: the difference needs i128, then saturates into the
    // error's i64 (only a timestamp absurdly far off gets there).
    let skew = i128::from(timestamp) - i128::from(now);
    if skew.unsigned_abs() > u128::from(window) {
        let skew = i64::try_from(skew).unwrap_or(if skew < 0 { i64::MIN } else { i64::MAX });
        return Err(ApiAuthError::Expired { skew });
    }

    // "The following query parameters must be included for all requests
    // with a non-empty body ... body_md5: The hexadecimal MD5 hash of the
    // body" (HTTP API reference). Case is ignored: the signature covers the
    // string as sent, and the MD5 of a body is no secret.
    match get("body_md5") {
        None if !body.is_empty() => return Err(ApiAuthError::Missing("body_md5")),
        Some(md5) if !md5.eq_ignore_ascii_case(&md5_hex(body)) => {
            return Err(ApiAuthError::BodyMd5)
        }
        _ => {}
    }

    let signature = decode_hex(signature).ok_or(ApiAuthError::BadSignature)?;
    let mut sorted: Vec<&(String, String)> = pairs
        .iter()
        .filter(|(k, _)| k != "auth_signature")
        .collect();
    sorted.sort_by(|a, b| a.0.cmp(&b.0));
    let mut mac = mac(&secret);
    mac.update(method.to_ascii_uppercase().as_bytes());
    mac.update(b"\n");
    mac.update(path.as_bytes());
    mac.update(b"\n");
    for (i, (k, v)) in sorted.iter().enumerate() {
        if i > 0 {
            mac.update(b"&");
        }
        mac.update(k.as_bytes());
        mac.update(b"=");
        mac.update(v.as_bytes());
    }
    mac.verify_slice(&signature)
        .map_err(|_| ApiAuthError::BadSignature)?;

    let auth_key = auth_key.to_owned();
    let params = pairs
        .into_iter()
        .filter(|(k, _)| !RESERVED.contains(&k.as_str()))
        .collect();
    Ok(VerifiedRequest { auth_key, params })
}

/// Splits a raw query into decoded `(lower-cased key, value)` pairs.
///
/// Empty segments (`a=1&&b=2`, a trailing `&`) are skipped, as URL parsers
/// do; a segment without `=` is a key with an empty value. Keys are compared
/// after lower-casing because the signature lower-cases them: `Info` and
/// `info` would sign as two `info=` entries, so they count as a repeat.
fn parse_query(query: &str, plus_is_space: bool) -> Result<Vec<(String, String)>, ApiAuthError> {
    let mut pairs = Vec::new();
    for segment in query.split('&').filter(|s| !s.is_empty()) {
        let (key, value) = segment.split_once('=').unwrap_or((segment, ""));
        let mut key = percent_decode(key, plus_is_space)?;
        // ASCII only, as every SDK's keys are; Unicode lower-casing could
        // map two different keys to one.
        key.make_ascii_lowercase();
        if key.is_empty() {
            return Err(ApiAuthError::BadQuery);
        }
        pairs.push((key, percent_decode(value, plus_is_space)?));
    }
    // A repeated parameter is ambiguous (which value did the signer mean?),
    // so it is refused rather than resolved. Sorting keeps a long query
    // O(n log n).
    let mut keys: Vec<&str> = pairs.iter().map(|(k, _)| k.as_str()).collect();
    keys.sort_unstable();
    if keys.windows(2).any(|w| w[0] == w[1]) {
        return Err(ApiAuthError::BadQuery);
    }
    Ok(pairs)
}

/// RFC 3986 percent-decoding to UTF-8; `+` becomes a space only when asked.
fn percent_decode(s: &str, plus_is_space: bool) -> Result<String, ApiAuthError> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hi = bytes.get(i + 1).copied().and_then(hex_value);
                let lo = bytes.get(i + 2).copied().and_then(hex_value);
                let (Some(hi), Some(lo)) = (hi, lo) else {
                    return Err(ApiAuthError::BadQuery);
                };
                out.push(hi << 4 | lo);
                i += 3;
            }
            b'+' if plus_is_space => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).map_err(|_| ApiAuthError::BadQuery)
}

/// Appends `s` percent-encoded for a query component (see
/// [`sign_api_request`] for the set left as is).
fn percent_encode(s: &str, out: &mut String) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for &b in s.as_bytes() {
        if b.is_ascii_alphanumeric() || b"-._~,:;@!$()*/".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push('%');
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 0xf)]));
        }
    }
}

fn mac(secret: &str) -> HmacSha256 {
    // HMAC takes a key of any length (a long one is hashed first), so
    // `new_from_slice` cannot fail for it.
    HmacSha256::new_from_slice(secret.as_bytes()).expect("HMAC accepts keys of any length")
}

/// Feeds `socket_id:channel[:channel_data]` (Node SDK `getSocketSignature`).
fn channel_string(mac: &mut HmacSha256, socket_id: &str, channel: &str, data: Option<&str>) {
    mac.update(socket_id.as_bytes());
    mac.update(b":");
    mac.update(channel.as_bytes());
    if let Some(data) = data {
        mac.update(b":");
        mac.update(data.as_bytes());
    }
}

/// Feeds `socket_id::user::user_data` (Node SDK `getSocketSignatureForUser`).
fn user_string(mac: &mut HmacSha256, socket_id: &str, user_data: &str) {
    mac.update(socket_id.as_bytes());
    mac.update(b"::user::");
    mac.update(user_data.as_bytes());
}

/// The decoded signature of a `key:hex` auth string, if its key part is
/// `key`. The key is public, so comparing it in variable time leaks nothing;
/// the signature is compared by the caller with `verify_slice`.
fn signature_for_key(key: &str, auth: &str) -> Option<Vec<u8>> {
    let (got_key, sig) = auth.split_once(':')?;
    if got_key != key {
        return None;
    }
    decode_hex(sig)
}

fn md5_hex(body: &[u8]) -> String {
    to_hex(&Md5::digest(body))
}

// Hex by hand: two short functions, where the `hex` crate would be one more
// dependency for the same few lines.
fn to_hex(bytes: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for &b in bytes {
        s.push(char::from(HEX[usize::from(b >> 4)]));
        s.push(char::from(HEX[usize::from(b & 0xf)]));
    }
    s
}

/// Hex of either case to bytes; `None` for an odd length or a non-hex digit.
fn decode_hex(s: &str) -> Option<Vec<u8>> {
    let bytes = s.as_bytes();
    if bytes.len() % 2 != 0 {
        return None;
    }
    bytes
        .chunks_exact(2)
        .map(|pair| Some(hex_value(pair[0])? << 4 | hex_value(pair[1])?))
        .collect()
}

fn hex_value(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests;
