//! `protocol`'s tests.

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
        p(r##"{"event":"pusher:subscribe","data":{"auth":"","channel":"#server-to-user-42"}}"##),
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
        let msg = format!(r#"{{"event":"client-typing","data":{data},"channel":"private-chat"}}"#);
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

        let d = decode_like_pusher_js(&presence_subscription_succeeded(s, [(s, None)].into_iter()));
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
    const ALPHABET: &[u8] = b"{}[]\":,\\ -0123456789.eE+truefalsnu\0\x01\xff\xc3\xa9client-pusher:";
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
