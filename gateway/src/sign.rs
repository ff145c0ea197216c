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
mod tests {
    use super::*;

    // The credentials of Pusher's worked examples, also used for the Node
    // SDK captures below.
    const KEY: &str = "278d425bdf160c739803";
    const SECRET: &str = "7ad3773142a6692b25b8";

    fn secret_for(key: &str) -> Option<String> {
        (key == KEY).then(|| SECRET.to_owned())
    }

    fn verify(
        method: &str,
        path: &str,
        query: &str,
        body: &[u8],
        now: u64,
    ) -> Result<VerifiedRequest, ApiAuthError> {
        verify_api_request(method, path, query, body, secret_for, now, 600)
    }

    fn params(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|&(k, v)| (k.to_owned(), v.to_owned()))
            .collect()
    }

    // --- Pusher's docs: "Authentication and authorization signatures" ---

    #[test]
    fn docs_private_channel() {
        let want =
            "278d425bdf160c739803:58df8b0c36d6982b82c3ecf6b4662e34fe8c25bba48f5369f135bf843651c3a4";
        assert_eq!(
            channel_auth(KEY, SECRET, "1234.1234", "private-foobar", None),
            want
        );
        assert!(verify_channel_auth(
            KEY,
            SECRET,
            "1234.1234",
            "private-foobar",
            None,
            want
        ));
    }

    #[test]
    fn docs_presence_channel() {
        // The page's text shows "Mr. Channels" in the user data, but the
        // signature it prints (afaed369...) is over "Mr. Pusher", the name an
        // earlier version of the page used: the text was renamed and the
        // output not recomputed. The Node SDK agrees with this reading
        // (`node_sdk_presence_*` below).
        let data = r#"{"user_id":10,"user_info":{"name":"Mr. Pusher"}}"#;
        let want =
            "278d425bdf160c739803:afaed3695da2ffd16931f457e338e6c9f2921fa133ce7dac49f529792be6304c";
        assert_eq!(
            channel_auth(KEY, SECRET, "1234.1234", "presence-foobar", Some(data)),
            want
        );
        assert!(verify_channel_auth(
            KEY,
            SECRET,
            "1234.1234",
            "presence-foobar",
            Some(data),
            want
        ));
        let docs_text = r#"{"user_id":10,"user_info":{"name":"Mr. Channels"}}"#;
        assert!(!verify_channel_auth(
            KEY,
            SECRET,
            "1234.1234",
            "presence-foobar",
            Some(docs_text),
            want
        ));
    }

    #[test]
    fn docs_user_authentication() {
        let want =
            "278d425bdf160c739803:4708d583dada6a56435fb8bc611c77c359a31eebde13337c16ab43aa6de336ba";
        assert_eq!(
            user_auth(KEY, SECRET, "1234.1234", r#"{"id":"12345"}"#),
            want
        );
        assert!(verify_user_auth(
            KEY,
            SECRET,
            "1234.1234",
            r#"{"id":"12345"}"#,
            want
        ));
    }

    // --- Pusher's docs: "HTTP API reference", worked authentication example ---

    const DOCS_BODY: &[u8] =
        br#"{"name":"foo","channels":["project-3"],"data":"{\"some\":\"data\"}"}"#;
    const DOCS_QUERY: &str = "auth_key=278d425bdf160c739803&auth_timestamp=1353088179\
        &auth_version=1.0&body_md5=ec365a775a4cd0599faeb73354201b6f\
        &auth_signature=da454824c97ba181a32ccc17a72625ba02771f50b50e1e7430e47a1f3f457e6c";

    #[test]
    fn docs_api_request_signed() {
        assert_eq!(md5_hex(DOCS_BODY), "ec365a775a4cd0599faeb73354201b6f");
        let query = sign_api_request(
            KEY,
            SECRET,
            "POST",
            "/apps/3/events",
            &[],
            DOCS_BODY,
            1353088179,
        );
        assert_eq!(query, DOCS_QUERY);
    }

    #[test]
    fn docs_api_request_verified() {
        let ok = verify("POST", "/apps/3/events", DOCS_QUERY, DOCS_BODY, 1353088179).unwrap();
        assert_eq!(ok.auth_key, KEY);
        assert!(ok.params.is_empty());
    }

    // --- The official Node SDK, pusher 5.3.4 (npm), captured on this machine ---
    //
    // new Pusher({ appId: "42", key: KEY, secret: SECRET, host: "127.0.0.1",
    // port, useTLS: false }); the requests were sent to a local Node http
    // server that printed method, URL and body.

    #[test]
    fn node_sdk_authorize_channel() {
        // pusher.authorizeChannel("1234.1234", "private-foobar")
        assert_eq!(
            channel_auth(KEY, SECRET, "1234.1234", "private-foobar", None),
            "278d425bdf160c739803:58df8b0c36d6982b82c3ecf6b4662e34fe8c25bba48f5369f135bf843651c3a4"
        );
    }

    #[test]
    fn node_sdk_presence_docs_data() {
        // authorizeChannel("1234.1234", "presence-foobar",
        //   { user_id: 10, user_info: { name: "Mr. Pusher" } })
        let data = r#"{"user_id":10,"user_info":{"name":"Mr. Pusher"}}"#;
        assert_eq!(
            channel_auth(KEY, SECRET, "1234.1234", "presence-foobar", Some(data)),
            "278d425bdf160c739803:afaed3695da2ffd16931f457e338e6c9f2921fa133ce7dac49f529792be6304c"
        );
        // ... and with the name the docs' text shows.
        let data = r#"{"user_id":10,"user_info":{"name":"Mr. Channels"}}"#;
        assert_eq!(
            channel_auth(KEY, SECRET, "1234.1234", "presence-foobar", Some(data)),
            "278d425bdf160c739803:31935e7d86dba64c2a90aed31fdc61869f9b22ba9d8863bba239c03ca481bc80"
        );
    }

    #[test]
    fn node_sdk_presence_non_ascii() {
        // authorizeChannel("98765.4321", "presence-room-1",
        //   { user_id: "u-7", user_info: { name: "Zoë" } }): UTF-8 signed as is.
        let data = "{\"user_id\":\"u-7\",\"user_info\":{\"name\":\"Zo\u{eb}\"}}";
        let want =
            "278d425bdf160c739803:f261d02891a69a9f225aae075c669f8cd54340d7c0e4b954fc22db600d66771f";
        assert_eq!(
            channel_auth(KEY, SECRET, "98765.4321", "presence-room-1", Some(data)),
            want
        );
        assert!(verify_channel_auth(
            KEY,
            SECRET,
            "98765.4321",
            "presence-room-1",
            Some(data),
            want
        ));
    }

    #[test]
    fn node_sdk_authenticate_user() {
        // pusher.authenticateUser("1234.1234", { id: "12345" })
        assert_eq!(
            user_auth(KEY, SECRET, "1234.1234", r#"{"id":"12345"}"#),
            "278d425bdf160c739803:4708d583dada6a56435fb8bc611c77c359a31eebde13337c16ab43aa6de336ba"
        );
        // authenticateUser("98765.4321",
        //   { id: "u-7", user_info: { name: "Zoë" }, watchlist: ["u-8"] })
        let data = "{\"id\":\"u-7\",\"user_info\":{\"name\":\"Zo\u{eb}\"},\"watchlist\":[\"u-8\"]}";
        let want =
            "278d425bdf160c739803:eab8a422b9e7bf1b4d83759cc1590d8ab802950a057f99f3a1c3b864aaf7e419";
        assert_eq!(user_auth(KEY, SECRET, "98765.4321", data), want);
        assert!(verify_user_auth(KEY, SECRET, "98765.4321", data, want));
    }

    #[test]
    fn node_sdk_webhook() {
        // pusher.config.token.sign(body), which pusher.webhook({...}).isValid()
        // accepted (true) with that X-Pusher-Signature.
        let body = br#"{"time_ms":1327078148132,"events":[{"name":"channel_occupied","channel":"test_channel"}]}"#;
        assert_eq!(
            webhook_signature(SECRET, body),
            "709fdb84c03664445f7698120b0edf0acc1ab1c8c6e93a0368c61841d6b998aa"
        );
    }

    /// The captures share one timestamp: the SDK stamps each request with
    /// the current second.
    const NODE_NOW: u64 = 1796527385;

    #[test]
    fn node_sdk_trigger() {
        // pusher.trigger("my-channel", "my-event", { message: "hello" })
        let body =
            br#"{"name":"my-event","data":"{\"message\":\"hello\"}","channels":["my-channel"]}"#;
        let query = "auth_key=278d425bdf160c739803&auth_timestamp=1796527385\
            &auth_version=1.0&body_md5=856d1e57b41639222010b714c81b17c2\
            &auth_signature=c5332e2a3a5952b3f121f7635b41f308429441cde8c340efe28380c8dd7f59c1";
        let ok = verify("POST", "/apps/42/events", query, body, NODE_NOW).unwrap();
        assert_eq!(ok.auth_key, KEY);
        assert!(ok.params.is_empty());
        // Signing the same request here gives the SDK's bytes.
        assert_eq!(
            sign_api_request(KEY, SECRET, "POST", "/apps/42/events", &[], body, NODE_NOW),
            query
        );
    }

    #[test]
    fn node_sdk_get_channels() {
        // pusher.get({ path: "/channels",
        //   params: { filter_by_prefix: "presence-", info: "user_count" } })
        let query = "auth_key=278d425bdf160c739803&auth_timestamp=1796527385\
            &auth_version=1.0&filter_by_prefix=presence-&info=user_count\
            &auth_signature=fa8817a54af0c54eb78793cced8ff2d32ceedf3ece1b35ebf52404ac34b2f8ae";
        let ok = verify("GET", "/apps/42/channels", query, b"", NODE_NOW).unwrap();
        assert_eq!(
            ok.params,
            params(&[("filter_by_prefix", "presence-"), ("info", "user_count")])
        );
        let ours = sign_api_request(
            KEY,
            SECRET,
            "GET",
            "/apps/42/channels",
            &[("info", "user_count"), ("filter_by_prefix", "presence-")],
            b"",
            NODE_NOW,
        );
        assert_eq!(ours, query);
    }

    #[test]
    fn node_sdk_plus_comma_space() {
        // pusher.get({ path: "/channels", params: { info:
        //   "user_count,subscription_count", filter_by_prefix: "a+b c" } }):
        // the SDK signed "a+b c" and its URL parser sent "a+b%20c", so `+` is
        // a literal plus here.
        let query = "auth_key=278d425bdf160c739803&auth_timestamp=1796527385\
            &auth_version=1.0&filter_by_prefix=a+b%20c&info=user_count,subscription_count\
            &auth_signature=7ee01ddccb13735cd269dc2b49bf283312f40949e2457f2ccf7ad042a591f15e";
        let ok = verify("GET", "/apps/42/channels", query, b"", NODE_NOW).unwrap();
        assert_eq!(
            ok.params,
            params(&[
                ("filter_by_prefix", "a+b c"),
                ("info", "user_count,subscription_count")
            ])
        );
    }

    // --- Round trips and the edges of the format ---

    #[test]
    fn round_trip_with_awkward_values() {
        let awkward = [
            ("info", "user_count,subscription_count"),
            ("Filter_By_Prefix", "a b+c&d=e#f%g/h?i"),
            ("unicode", "Zo\u{eb} \u{1f600}"),
            ("empty", ""),
        ];
        for method in ["GET", "post"] {
            for body in [&b""[..], DOCS_BODY] {
                let query = sign_api_request(
                    KEY,
                    SECRET,
                    method,
                    "/apps/3/channels",
                    &awkward,
                    body,
                    1_700_000_000,
                );
                let ok = verify(method, "/apps/3/channels", &query, body, 1_700_000_000).unwrap();
                assert_eq!(ok.auth_key, KEY);
                let mut got = ok.params;
                got.sort();
                let mut want: Vec<(String, String)> = awkward
                    .iter()
                    .map(|&(k, v)| (k.to_ascii_lowercase(), v.to_owned()))
                    .collect();
                want.sort();
                assert_eq!(got, want, "{method} {query}");
            }
        }
    }

    #[test]
    fn signed_query_escapes_only_what_it_must() {
        let query = sign_api_request(
            KEY,
            SECRET,
            "GET",
            "/apps/3/channels",
            &[("v", "a b+c&d=e,f;g:h@i/j")],
            b"",
            1,
        );
        assert!(
            query.contains("&v=a%20b%2Bc%26d%3De,f;g:h@i/j&auth_signature="),
            "{query}"
        );
    }

    #[test]
    fn reserved_params_are_dropped_when_signing() {
        let query = sign_api_request(
            KEY,
            SECRET,
            "GET",
            "/apps/3/channels",
            &[
                ("auth_key", "other"),
                ("AUTH_TIMESTAMP", "5"),
                ("body_md5", "x"),
            ],
            b"",
            1_700_000_000,
        );
        assert!(!query.contains("other") && !query.contains("body_md5"));
        let ok = verify("GET", "/apps/3/channels", &query, b"", 1_700_000_000).unwrap();
        assert!(ok.params.is_empty());
    }

    #[test]
    fn form_encoded_plus_is_read_as_space_on_second_reading() {
        // A client that signed "a b" and sent it form-encoded as "a+b".
        let signed = sign_api_request(
            KEY,
            SECRET,
            "GET",
            "/apps/3/channels",
            &[("filter_by_prefix", "a b")],
            b"",
            1_700_000_000,
        );
        let form = signed.replace("a%20b", "a+b");
        assert_ne!(form, signed);
        let ok = verify("GET", "/apps/3/channels", &form, b"", 1_700_000_000).unwrap();
        assert_eq!(ok.params, params(&[("filter_by_prefix", "a b")]));
        // Neither reading rescues a bad signature.
        let bad = form.replace("auth_signature=", "auth_signature=0");
        assert_eq!(
            verify("GET", "/apps/3/channels", &bad, b"", 1_700_000_000),
            Err(ApiAuthError::BadSignature)
        );
    }

    #[test]
    fn key_case_does_not_matter_to_the_signature() {
        // Upper-case keys are signed lower-cased (the docs' rule), so a
        // verifier that lower-cases accepts them either way.
        let query = sign_api_request(
            KEY,
            SECRET,
            "GET",
            "/apps/3/channels",
            &[("INFO", "user_count")],
            b"",
            1_700_000_000,
        );
        assert!(query.contains("INFO=user_count"));
        let ok = verify("GET", "/apps/3/channels", &query, b"", 1_700_000_000).unwrap();
        assert_eq!(ok.params, params(&[("info", "user_count")]));
    }

    #[test]
    fn empty_body_with_body_md5_is_accepted_when_it_matches() {
        // The Python SDK sends body_md5 (of the empty string) on GETs too.
        let signed = sign_api_request(
            KEY,
            SECRET,
            "GET",
            "/apps/3/channels",
            &[("body_md5", "ignored")],
            b"",
            1_700_000_000,
        );
        assert!(!signed.contains("body_md5"));
        let empty_md5 = "d41d8cd98f00b204e9800998ecf8427e";
        assert_eq!(md5_hex(b""), empty_md5);
        let string_to_sign = format!(
            "GET\n/apps/3/channels\nauth_key={KEY}&auth_timestamp=1700000000\
             &auth_version=1.0&body_md5={empty_md5}"
        );
        let sig = hmac_hex(SECRET, string_to_sign.as_bytes());
        let query = format!(
            "auth_key={KEY}&auth_timestamp=1700000000&auth_version=1.0\
             &body_md5={empty_md5}&auth_signature={sig}"
        );
        assert!(verify("GET", "/apps/3/channels", &query, b"", 1_700_000_000).is_ok());
        let wrong = query.replace(empty_md5, "ec365a775a4cd0599faeb73354201b6f");
        assert_eq!(
            verify("GET", "/apps/3/channels", &wrong, b"", 1_700_000_000),
            Err(ApiAuthError::BodyMd5)
        );
    }

    #[test]
    fn upper_case_hex() {
        let query = DOCS_QUERY
            .replace(
                "ec365a775a4cd0599faeb73354201b6f",
                "EC365A775A4CD0599FAEB73354201B6F",
            )
            .replace(
                "da454824c97ba181a32ccc17a72625ba02771f50b50e1e7430e47a1f3f457e6c",
                &"da454824c97ba181a32ccc17a72625ba02771f50b50e1e7430e47a1f3f457e6c"
                    .to_ascii_uppercase(),
            );
        // The upper-case body_md5 is part of the signed string, so this only
        // passes the MD5 check; the signature then fails as it must.
        assert_eq!(
            verify("POST", "/apps/3/events", &query, DOCS_BODY, 1353088179),
            Err(ApiAuthError::BadSignature)
        );
        let sig_only = DOCS_QUERY.replace(
            "da454824c97ba181a32ccc17a72625ba02771f50b50e1e7430e47a1f3f457e6c",
            "DA454824C97BA181A32CCC17A72625BA02771F50B50E1E7430E47A1F3F457E6C",
        );
        assert!(verify("POST", "/apps/3/events", &sig_only, DOCS_BODY, 1353088179).is_ok());
    }

    // --- Each error ---

    #[test]
    fn missing_each_parameter() {
        for name in [
            "auth_key",
            "auth_timestamp",
            "auth_version",
            "auth_signature",
        ] {
            let query: Vec<&str> = DOCS_QUERY
                .split('&')
                .filter(|p| !p.starts_with(&format!("{name}=")))
                .collect();
            assert_eq!(
                verify(
                    "POST",
                    "/apps/3/events",
                    &query.join("&"),
                    DOCS_BODY,
                    1353088179
                ),
                Err(ApiAuthError::Missing(name))
            );
        }
        let no_md5: Vec<&str> = DOCS_QUERY
            .split('&')
            .filter(|p| !p.starts_with("body_md5="))
            .collect();
        assert_eq!(
            verify(
                "POST",
                "/apps/3/events",
                &no_md5.join("&"),
                DOCS_BODY,
                1353088179
            ),
            Err(ApiAuthError::Missing("body_md5"))
        );
        assert_eq!(
            verify("GET", "/apps/3/channels", "", b"", 0),
            Err(ApiAuthError::Missing("auth_key"))
        );
    }

    #[test]
    fn unknown_key() {
        let query = sign_api_request(
            "someone-else",
            SECRET,
            "GET",
            "/apps/3/channels",
            &[],
            b"",
            1_700_000_000,
        );
        assert_eq!(
            verify("GET", "/apps/3/channels", &query, b"", 1_700_000_000),
            Err(ApiAuthError::UnknownKey)
        );
    }

    #[test]
    fn bad_version() {
        let query = DOCS_QUERY.replace("auth_version=1.0", "auth_version=2.0");
        assert_eq!(
            verify("POST", "/apps/3/events", &query, DOCS_BODY, 1353088179),
            Err(ApiAuthError::BadVersion)
        );
    }

    #[test]
    fn timestamp_window_both_ways() {
        let ts = 1353088179;
        let check = |now| verify("POST", "/apps/3/events", DOCS_QUERY, DOCS_BODY, now);
        assert!(check(ts + 600).is_ok());
        assert!(check(ts - 600).is_ok());
        assert_eq!(check(ts + 601), Err(ApiAuthError::Expired { skew: -601 }));
        assert_eq!(check(ts - 601), Err(ApiAuthError::Expired { skew: 601 }));
        // Far-off clocks saturate rather than overflow.
        let far = DOCS_QUERY.replace("1353088179", &u64::MAX.to_string());
        assert_eq!(
            verify("POST", "/apps/3/events", &far, DOCS_BODY, 0),
            Err(ApiAuthError::Expired { skew: i64::MAX })
        );
        assert_eq!(
            verify("POST", "/apps/3/events", DOCS_QUERY, DOCS_BODY, u64::MAX),
            Err(ApiAuthError::Expired { skew: i64::MIN })
        );
        // A window of u64::MAX accepts any timestamp.
        assert!(verify_api_request(
            "POST",
            "/apps/3/events",
            DOCS_QUERY,
            DOCS_BODY,
            secret_for,
            u64::MAX,
            u64::MAX
        )
        .is_ok());
    }

    #[test]
    fn tampered_body_and_wrong_md5() {
        let mut tampered = DOCS_BODY.to_vec();
        tampered[10] ^= 1;
        assert_eq!(
            verify("POST", "/apps/3/events", DOCS_QUERY, &tampered, 1353088179),
            Err(ApiAuthError::BodyMd5)
        );
        // A body_md5 that matches a different body: caught by the signature.
        let other = b"{}";
        let query = DOCS_QUERY.replace("ec365a775a4cd0599faeb73354201b6f", &md5_hex(other));
        assert_eq!(
            verify("POST", "/apps/3/events", &query, other, 1353088179),
            Err(ApiAuthError::BadSignature)
        );
    }

    #[test]
    fn bad_signature_on_any_change() {
        let ok = |m, p| verify(m, p, DOCS_QUERY, DOCS_BODY, 1353088179);
        assert!(ok("POST", "/apps/3/events").is_ok());
        assert!(ok("post", "/apps/3/events").is_ok());
        assert_eq!(ok("GET", "/apps/3/events"), Err(ApiAuthError::BadSignature));
        assert_eq!(
            ok("POST", "/apps/4/events"),
            Err(ApiAuthError::BadSignature)
        );
        let extra = format!("{DOCS_QUERY}&socket_id=1.1");
        assert_eq!(
            verify("POST", "/apps/3/events", &extra, DOCS_BODY, 1353088179),
            Err(ApiAuthError::BadSignature)
        );
        for sig in ["", "zz", "abc", &"0".repeat(64), &"0".repeat(62)] {
            let query = DOCS_QUERY.replace(
                "da454824c97ba181a32ccc17a72625ba02771f50b50e1e7430e47a1f3f457e6c",
                sig,
            );
            assert_eq!(
                verify("POST", "/apps/3/events", &query, DOCS_BODY, 1353088179),
                Err(ApiAuthError::BadSignature),
                "{sig}"
            );
        }
        let wrong_secret = verify_api_request(
            "POST",
            "/apps/3/events",
            DOCS_QUERY,
            DOCS_BODY,
            |_| Some("not-the-secret".into()),
            1353088179,
            600,
        );
        assert_eq!(wrong_secret, Err(ApiAuthError::BadSignature));
    }

    #[test]
    fn bad_query() {
        let bad = |q: &str| verify("GET", "/apps/3/channels", q, b"", 0);
        for q in [
            "a=%",
            "a=%4",
            "a=%zz",
            "a=%ff",     // invalid UTF-8 once decoded
            "a=%C3",     // truncated UTF-8
            "=v",        // a value without a name
            "a=1&a=2",   // repeated
            "a=1&A=2",   // repeated once lower-cased
            "a=1&%61=2", // repeated once decoded
            "auth_key=k&auth_key=k",
        ] {
            assert_eq!(bad(q), Err(ApiAuthError::BadQuery), "{q}");
        }
        for ts in ["", "+5", "-5", "1.5", "1e3", "99999999999999999999"] {
            let query = DOCS_QUERY.replace("1353088179", ts);
            assert_eq!(
                verify("POST", "/apps/3/events", &query, DOCS_BODY, 1353088179),
                Err(ApiAuthError::BadQuery),
                "{ts}"
            );
        }
        // Empty segments are not errors.
        let sloppy = format!("&&{}&", DOCS_QUERY.replace('&', "&&"));
        assert!(verify("POST", "/apps/3/events", &sloppy, DOCS_BODY, 1353088179).is_ok());
    }

    #[test]
    fn error_messages_and_statuses() {
        assert_eq!(
            ApiAuthError::Expired { skew: -700 }.to_string(),
            "auth_timestamp is 700 s behind the server's clock, outside the allowed \
             window; check the client's clock"
        );
        assert!(ApiAuthError::Expired { skew: 700 }
            .to_string()
            .contains("700 s ahead of"));
        assert!(ApiAuthError::Missing("body_md5")
            .to_string()
            .starts_with("missing query parameter body_md5"));
        assert_eq!(ApiAuthError::BadQuery.status(), 400);
        for e in [
            ApiAuthError::Missing("auth_key"),
            ApiAuthError::UnknownKey,
            ApiAuthError::BadVersion,
            ApiAuthError::Expired { skew: 1 },
            ApiAuthError::BodyMd5,
            ApiAuthError::BadSignature,
        ] {
            assert_eq!(e.status(), 401);
            assert!(!e.to_string().is_empty());
        }
        let _: &dyn std::error::Error = &ApiAuthError::BadQuery;
    }

    // --- Socket auth strings that must fail ---

    #[test]
    fn socket_auth_rejections() {
        let good = channel_auth(KEY, SECRET, "1.1", "private-a", None);
        let v = |auth: &str| verify_channel_auth(KEY, SECRET, "1.1", "private-a", None, auth);
        assert!(v(&good));
        assert!(v(&good.to_ascii_uppercase().replacen(
            &KEY.to_ascii_uppercase(),
            KEY,
            1
        )));
        let sig = good.split_once(':').unwrap().1;
        for auth in [
            String::new(),
            sig.to_owned(),                           // no key part
            format!(":{sig}"),                        // empty key
            format!("other:{sig}"),                   // another app's key
            format!("{KEY}:{}", &sig[..62]),          // short
            format!("{KEY}:{sig}00"),                 // long
            format!("{KEY}:{sig}:"),                  // trailing colon
            format!("{KEY}:{}g", &sig[..63]),         // not hex
            format!("{KEY}:{}", "\u{e9}".repeat(32)), // non-ASCII, 64 bytes
        ] {
            assert!(!v(&auth), "{auth}");
        }
        // The signature binds socket, channel and channel data.
        assert!(!verify_channel_auth(
            KEY,
            SECRET,
            "1.2",
            "private-a",
            None,
            &good
        ));
        assert!(!verify_channel_auth(
            KEY,
            SECRET,
            "1.1",
            "private-b",
            None,
            &good
        ));
        assert!(!verify_channel_auth(
            KEY,
            SECRET,
            "1.1",
            "private-a",
            Some(""),
            &good
        ));
        // The protocol gives the two strings no domain separation: a sign-in
        // for "{}" is byte for byte the authorisation of a channel named
        // ":user:" with channel_data "{}". Only the channel-name rule (no
        // `:` allowed) keeps them apart, so it must be checked before
        // verify_channel_auth is called.
        let user = user_auth(KEY, SECRET, "1.1", "{}");
        assert!(verify_channel_auth(
            KEY,
            SECRET,
            "1.1",
            ":user:",
            Some("{}"),
            &user
        ));
        assert!(verify_user_auth(KEY, SECRET, "1.1", "{}", &user));
        assert!(!verify_user_auth(KEY, SECRET, "1.1", "{ }", &user));
        assert!(!verify_user_auth(KEY, "other", "1.1", "{}", &user));
    }

    #[test]
    fn hex_helpers() {
        assert_eq!(to_hex(&[0x00, 0x0f, 0xa0, 0xff]), "000fa0ff");
        assert_eq!(decode_hex("000fA0fF"), Some(vec![0x00, 0x0f, 0xa0, 0xff]));
        assert_eq!(decode_hex(""), Some(vec![]));
        assert_eq!(decode_hex("0"), None);
        assert_eq!(decode_hex("0g"), None);
        assert_eq!(
            hmac_hex(SECRET, b"1234.1234:private-foobar"),
            "58df8b0c36d6982b82c3ecf6b4662e34fe8c25bba48f5369f135bf843651c3a4"
        );
    }

    // --- Never panics ---

    /// Numerical Recipes' 64-bit LCG; deterministic, no dependency.
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

    #[test]
    fn random_queries_never_panic() {
        // Pieces that reach every branch: the signature's own keys, escapes
        // good and broken, `+`, separators, multi-byte characters, digits.
        const PIECES: &[&str] = &[
            "auth_key",
            "auth_timestamp",
            "auth_version",
            "auth_signature",
            "body_md5",
            "AUTH_KEY",
            KEY,
            "1.0",
            "1353088179",
            "=",
            "&",
            "&&",
            "%",
            "%2",
            "%25",
            "%ff",
            "%C3%A9",
            "%c3",
            "+",
            " ",
            "a",
            "info",
            "\u{e9}",
            "\u{1f600}",
            "0",
            "f",
            "da454824c97ba181a32ccc17a72625ba02771f50b50e1e7430e47a1f3f457e6c",
            "ec365a775a4cd0599faeb73354201b6f",
            "-",
            "99999999999999999999999",
        ];
        let mut rng = Lcg(0x5eed);
        let mut accepted = 0;
        for i in 0..4000 {
            let mut query = String::new();
            if i % 4 == 0 {
                // Mutate a valid query: the nearest inputs to a success.
                query.push_str(DOCS_QUERY);
                let at = rng.below(query.len());
                let at = (0..=at)
                    .rev()
                    .find(|&j| query.is_char_boundary(j))
                    .unwrap_or(0);
                query.insert_str(at, PIECES[rng.below(PIECES.len())]);
            } else {
                for _ in 0..rng.below(24) {
                    query.push_str(PIECES[rng.below(PIECES.len())]);
                }
            }
            let now = [0, 1353088179, u64::MAX][rng.below(3)];
            let window = [0, 600, u64::MAX][rng.below(3)];
            let body: &[u8] = if rng.below(2) == 0 { DOCS_BODY } else { b"" };
            if verify_api_request(
                "POST",
                "/apps/3/events",
                &query,
                body,
                secret_for,
                now,
                window,
            )
            .is_ok()
            {
                accepted += 1;
            }
        }
        // Inserting "&" or an empty-segment piece keeps the docs query
        // valid; nothing else may pass, and most inputs must fail.
        assert!(accepted < 400, "{accepted}");
    }
}
