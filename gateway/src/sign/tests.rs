//! `sign`'s tests.

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

const DOCS_BODY: &[u8] = br#"{"name":"foo","channels":["project-3"],"data":"{\"some\":\"data\"}"}"#;
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
    let body = br#"{"name":"my-event","data":"{\"message\":\"hello\"}","channels":["my-channel"]}"#;
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
