//! The gateway spoken to with raw bytes: a hand-written WebSocket client
//! (ringws's test client) and hand-written HTTP requests, so that nothing
//! of the gateway's own encoding is on the client side. What pusher-js
//! and the server SDK do is in `pusher_js.rs`; this file holds what they
//! cannot send: bad JSON, unknown events, oversized messages, forged and
//! replayed signatures.

#[path = "../../tests/common/mod.rs"]
mod common;
mod support;

use std::net::SocketAddr;
use std::time::Duration;

use common::{close_code, Client};
use ringws::app::ServerHandle;
use ringws::Config;
use ringws_gateway::{sign, AppConfig, Gateway, GatewayConfig};
use serde_json::{json, Value};
use support::{api, connect, next, now, raw_http, send, KEY, SECRET};

fn gateway(f: impl FnOnce(&mut GatewayConfig)) -> ServerHandle {
    let mut app = AppConfig::new("1", KEY, SECRET);
    app.client_events = true;
    app.client_event_rate = 5;
    app.max_connections = 20;
    let mut g = GatewayConfig::new(vec![app]);
    f(&mut g);
    let cfg = Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        threads: 2,
        ..Config::default()
    };
    ringws_gateway::app(Gateway::new(g).unwrap(), cfg, None)
        .unwrap()
        .start()
        .unwrap()
}

fn subscribe(
    c: &mut Client,
    channel: &str,
    auth: Option<String>,
    channel_data: Option<&str>,
) -> Value {
    let mut data = json!({ "channel": channel });
    if let Some(a) = auth {
        data["auth"] = a.into();
    }
    if let Some(d) = channel_data {
        data["channel_data"] = d.into();
    }
    send(c, json!({ "event": "pusher:subscribe", "data": data }));
    next(c)
}

fn trigger(addr: SocketAddr, body: Value) -> (u16, String) {
    api(
        addr,
        "POST",
        "/apps/1/events",
        &[],
        &body.to_string(),
        now(),
    )
}

#[test]
fn connect_ping_subscribe_and_receive() {
    let s = gateway(|_| {});
    let (mut c, id) = connect(s.local_addr());
    assert!(
        id.split_once('.')
            .is_some_and(|(a, b)| a.parse::<u64>().is_ok() && b.parse::<u64>().is_ok()),
        "{id}"
    );
    send(&mut c, json!({ "event": "pusher:ping", "data": {} }));
    assert_eq!(next(&mut c)["event"], "pusher:pong");
    let ok = subscribe(&mut c, "my-channel", None, None);
    assert_eq!(
        ok["event"], "pusher_internal:subscription_succeeded",
        "{ok}"
    );
    assert_eq!(ok["channel"], "my-channel");
    let (st, body) = trigger(
        s.local_addr(),
        json!({ "name": "my-event", "channel": "my-channel", "data": "{\"message\":\"hello\"}" }),
    );
    assert_eq!((st, body.as_str()), (200, "{}"));
    let e = next(&mut c);
    assert_eq!(
        (e["event"].as_str(), e["channel"].as_str()),
        (Some("my-event"), Some("my-channel"))
    );
    assert_eq!(e["data"]["message"], "hello");
    // Unsubscribed: nothing more arrives (the ping's pong comes first).
    send(
        &mut c,
        json!({ "event": "pusher:unsubscribe", "data": { "channel": "my-channel" } }),
    );
    trigger(
        s.local_addr(),
        json!({ "name": "e", "channel": "my-channel", "data": "x" }),
    );
    send(&mut c, json!({ "event": "pusher:ping", "data": {} }));
    assert_eq!(next(&mut c)["event"], "pusher:pong");
    s.shutdown(Duration::from_secs(1));
}

#[test]
fn unknown_app_and_protocol_get_their_codes() {
    let s = gateway(|_| {});
    for (target, code) in [
        ("/app/nope?protocol=7", 4001u16),
        (&*format!("/app/{KEY}?protocol=99"), 4007),
    ] {
        let mut c = Client::open(s.local_addr(), target);
        let e = next(&mut c);
        assert_eq!(
            (e["event"].as_str(), e["data"]["code"].as_u64()),
            (Some("pusher:error"), Some(code as u64)),
            "{e}"
        );
        let (b0, p) = c.frame().unwrap();
        assert_eq!((b0, close_code(&p)), (0x88, code));
    }
    s.shutdown(Duration::from_secs(1));
}

#[test]
fn bad_input_gets_an_error_and_the_connection_stays() {
    let s = gateway(|_| {});
    let (mut c, _) = connect(s.local_addr());
    for bad in [
        "not json",
        "[1,2]",
        "{\"event\":42}",
        "{\"event\":\"pusher:subscribe\"}",
        "{\"event\":\"pusher:subscribe\",\"data\":{\"channel\":\"bad channel!\"}}",
        "{\"event\":\"pusher:nonsense\",\"data\":{}}",
        "{\"event\":\"whatever\",\"data\":{}}",
    ] {
        c.text(bad);
        let e = next(&mut c);
        assert_eq!(e["event"], "pusher:error", "{bad}: {e}");
        assert!(
            e["data"]["message"].as_str().is_some_and(|m| !m.is_empty()),
            "{bad}: {e}"
        );
    }
    // Binary frames too.
    c.send(0x82, b"\x00\x01");
    assert_eq!(next(&mut c)["event"], "pusher:error");
    // An oversized message: an error, not a dropped connection.
    let huge = json!({ "event": "client-x", "channel": "private-a", "data": "x".repeat(20_000) });
    send(&mut c, huge);
    assert_eq!(next(&mut c)["event"], "pusher:error");
    send(&mut c, json!({ "event": "pusher:ping", "data": {} }));
    assert_eq!(next(&mut c)["event"], "pusher:pong");
    s.shutdown(Duration::from_secs(1));
}

#[test]
fn private_and_presence_need_a_valid_signature() {
    let s = gateway(|_| {});
    let (mut a, ida) = connect(s.local_addr());
    let (mut b, idb) = connect(s.local_addr());
    // Forged: signed with another secret, or for another socket.
    let forged = sign::channel_auth(KEY, "wrong", &ida, "private-room", None);
    let e = subscribe(&mut a, "private-room", Some(forged), None);
    assert_eq!(e["event"], "pusher:error", "{e}");
    let other = sign::channel_auth(KEY, SECRET, &idb, "private-room", None);
    let e = subscribe(&mut a, "private-room", Some(other), None);
    assert_eq!(e["event"], "pusher:error", "{e}");
    let e = subscribe(&mut a, "private-room", None, None);
    assert_eq!(e["event"], "pusher:error", "{e}");
    let good = sign::channel_auth(KEY, SECRET, &ida, "private-room", None);
    assert_eq!(
        subscribe(&mut a, "private-room", Some(good), None)["event"],
        "pusher_internal:subscription_succeeded"
    );
    // Presence: members, one per user; member_added to the others.
    let alice = r#"{"user_id":"alice","user_info":{"name":"Alice"}}"#;
    let auth = sign::channel_auth(KEY, SECRET, &ida, "presence-room", Some(alice));
    let ok = subscribe(&mut a, "presence-room", Some(auth), Some(alice));
    assert_eq!(
        ok["event"], "pusher_internal:subscription_succeeded",
        "{ok}"
    );
    assert_eq!(ok["data"]["presence"]["count"], 1);
    assert_eq!(ok["data"]["presence"]["hash"]["alice"]["name"], "Alice");
    // The channel_data is part of what is signed.
    let bob = r#"{"user_id":"bob"}"#;
    let auth = sign::channel_auth(KEY, SECRET, &idb, "presence-room", Some(alice));
    assert_eq!(
        subscribe(&mut b, "presence-room", Some(auth), Some(bob))["event"],
        "pusher:error"
    );
    let auth = sign::channel_auth(KEY, SECRET, &idb, "presence-room", Some(bob));
    let ok = subscribe(&mut b, "presence-room", Some(auth), Some(bob));
    assert_eq!(ok["data"]["presence"]["count"], 2, "{ok}");
    let added = next(&mut a);
    assert_eq!(added["event"], "pusher_internal:member_added", "{added}");
    assert_eq!(added["data"]["user_id"], "bob");
    // Client events: to the others, not back; with the user id on
    // presence channels.
    send(
        &mut b,
        json!({ "event": "client-typing", "channel": "presence-room", "data": { "x": 1 } }),
    );
    let e = next(&mut a);
    assert_eq!(
        (e["event"].as_str(), e["data"]["x"].as_u64()),
        (Some("client-typing"), Some(1)),
        "{e}"
    );
    assert_eq!(e["user_id"], "bob");
    // Past the rate (5 per second here): 4301.
    let mut refused = 0;
    for _ in 0..8 {
        send(
            &mut b,
            json!({ "event": "client-typing", "channel": "presence-room", "data": {} }),
        );
    }
    send(&mut b, json!({ "event": "pusher:ping", "data": {} }));
    loop {
        let e = next(&mut b);
        match e["event"].as_str() {
            Some("pusher:pong") => break,
            Some("pusher:error") => {
                assert_eq!(e["data"]["code"], 4301, "{e}");
                refused += 1;
            }
            _ => panic!("{e}"),
        }
    }
    assert!(refused >= 3, "{refused} refused");
    // Bob leaves: member_removed.
    drop(b);
    let mut removed = None;
    for _ in 0..10 {
        let e = next(&mut a);
        if e["event"] == "pusher_internal:member_removed" {
            removed = Some(e);
            break;
        }
    }
    assert_eq!(removed.expect("member_removed")["data"]["user_id"], "bob");
    s.shutdown(Duration::from_secs(1));
}

#[test]
fn the_api_refuses_forged_replayed_and_oversized_requests() {
    let s = gateway(|_| {});
    let addr = s.local_addr();
    let body = json!({ "name": "e", "channel": "c", "data": "x" }).to_string();
    // Replayed: signed correctly, 700 s ago.
    let (st, msg) = api(addr, "POST", "/apps/1/events", &[], &body, now() - 700);
    assert_eq!(st, 401, "{msg}");
    // Forged: another secret.
    let q = sign::sign_api_request(
        KEY,
        "wrong",
        "POST",
        "/apps/1/events",
        &[],
        body.as_bytes(),
        now(),
    );
    assert_eq!(
        raw_http(addr, "POST", &format!("/apps/1/events?{q}"), &body).0,
        401
    );
    // The body changed after signing.
    let q = sign::sign_api_request(
        KEY,
        SECRET,
        "POST",
        "/apps/1/events",
        &[],
        body.as_bytes(),
        now(),
    );
    let other = body.replace("\"x\"", "\"y\"");
    assert_eq!(
        raw_http(addr, "POST", &format!("/apps/1/events?{q}"), &other).0,
        401
    );
    // Unsigned.
    assert_eq!(raw_http(addr, "POST", "/apps/1/events", &body).0, 401);
    // Too large: 413.
    let big = json!({ "name": "e", "channel": "c", "data": "x".repeat(11_000) });
    assert_eq!(trigger(addr, big).0, 413);
    // Too many channels, and a bad channel name: 400.
    let many: Vec<String> = (0..101).map(|i| format!("c{i}")).collect();
    assert_eq!(
        trigger(addr, json!({ "name": "e", "channels": many, "data": "x" })).0,
        400
    );
    assert_eq!(
        trigger(
            addr,
            json!({ "name": "e", "channel": "bad name", "data": "x" })
        )
        .0,
        400
    );
    assert_eq!(
        api(addr, "POST", "/apps/1/events", &[], "{not json", now()).0,
        400
    );
    // Unknown app and path.
    assert_eq!(
        api(addr, "POST", "/apps/2/events", &[], &body, now()).0,
        404
    );
    assert_eq!(api(addr, "GET", "/apps/1/nothing", &[], "", now()).0, 404);
    s.shutdown(Duration::from_secs(1));
}

#[test]
fn channel_queries_exclusion_cache_and_terminate() {
    let s = gateway(|_| {});
    let addr = s.local_addr();
    let (mut a, ida) = connect(addr);
    let (mut b, _) = connect(addr);
    for c in [&mut a, &mut b] {
        assert_eq!(
            subscribe(c, "news", None, None)["event"],
            "pusher_internal:subscription_succeeded"
        );
    }
    let (st, body) = api(
        addr,
        "GET",
        "/apps/1/channels",
        &[("info", "subscription_count")],
        "",
        now(),
    );
    assert_eq!(st, 200, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["channels"]["news"]["subscription_count"], 2, "{v}");
    let (st, body) = api(
        addr,
        "GET",
        "/apps/1/channels/news",
        &[("info", "subscription_count")],
        "",
        now(),
    );
    assert_eq!(st, 200, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        (v["occupied"].as_bool(), v["subscription_count"].as_u64()),
        (Some(true), Some(2))
    );
    let (_, body) = api(addr, "GET", "/apps/1/channels/empty", &[], "", now());
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap()["occupied"],
        false
    );
    // socket_id leaves that connection out.
    trigger(
        addr,
        json!({ "name": "e1", "channel": "news", "data": "1", "socket_id": ida }),
    );
    trigger(
        addr,
        json!({ "name": "e2", "channel": "news", "data": "2" }),
    );
    assert_eq!(next(&mut a)["event"], "e2");
    assert_eq!(next(&mut b)["event"], "e1");
    assert_eq!(next(&mut b)["event"], "e2");
    // A cache channel: a miss, then the last event on subscribing.
    let ok = subscribe(&mut a, "cache-prices", None, None);
    assert_eq!(ok["event"], "pusher_internal:subscription_succeeded");
    assert_eq!(next(&mut a)["event"], "pusher:cache_miss");
    trigger(
        addr,
        json!({ "name": "price", "channel": "cache-prices", "data": "42" }),
    );
    assert_eq!(next(&mut a)["event"], "price");
    subscribe(&mut b, "cache-prices", None, None);
    let e = next(&mut b);
    assert_eq!(
        (e["event"].as_str(), e["data"].as_u64()),
        (Some("price"), Some(42)),
        "{e}"
    );
    // Sign-in, then terminate the user's connections (not the others').
    let (mut c, idc) = connect(addr);
    let user = r#"{"id":"carol"}"#;
    let auth = sign::user_auth(KEY, SECRET, &idc, user);
    send(
        &mut c,
        json!({ "event": "pusher:signin", "data": { "auth": auth, "user_data": user } }),
    );
    assert_eq!(next(&mut c)["event"], "pusher:signin_success");
    let (st, _) = api(
        addr,
        "POST",
        "/apps/1/users/carol/terminate_connections",
        &[],
        "{}",
        now(),
    );
    assert_eq!(st, 200);
    let e = next(&mut c);
    assert_eq!(
        (e["event"].as_str(), e["data"]["code"].as_u64()),
        (Some("pusher:error"), Some(4009)),
        "{e}"
    );
    let (b0, p) = c.frame().unwrap();
    assert_eq!((b0, close_code(&p)), (0x88, 4009));
    send(&mut b, json!({ "event": "pusher:ping", "data": {} }));
    assert_eq!(next(&mut b)["event"], "pusher:pong");
    s.shutdown(Duration::from_secs(1));
}

#[test]
fn subscriptions_per_connection_are_bounded() {
    let s = gateway(|g| g.apps[0].max_subscriptions = 3);
    let (mut c, _) = connect(s.local_addr());
    for ch in ["a", "b", "c"] {
        assert_eq!(
            subscribe(&mut c, ch, None, None)["event"],
            "pusher_internal:subscription_succeeded"
        );
    }
    let e = subscribe(&mut c, "d", None, None);
    assert_eq!(e["event"], "pusher:error", "{e}");
    // Leaving one makes room again; the connection stays.
    send(
        &mut c,
        json!({ "event": "pusher:unsubscribe", "data": { "channel": "a" } }),
    );
    assert_eq!(
        subscribe(&mut c, "d", None, None)["event"],
        "pusher_internal:subscription_succeeded"
    );
    s.shutdown(Duration::from_secs(1));
}

#[test]
fn over_quota_and_shutdown_codes() {
    let s = gateway(|g| g.apps[0].max_connections = 2);
    let addr = s.local_addr();
    let (mut a, _) = connect(addr);
    let (_b, _) = connect(addr);
    let mut c = Client::open(addr, &format!("/app/{KEY}?protocol=7"));
    let e = next(&mut c);
    assert_eq!(e["data"]["code"], 4004, "{e}");
    let (b0, p) = c.frame().unwrap();
    assert_eq!((b0, close_code(&p)), (0x88, 4004));
    // A shutdown tells clients to reconnect (elsewhere) now.
    let s2 = s.clone();
    let t = std::thread::spawn(move || s2.shutdown(Duration::from_secs(2)));
    let (b0, p) = a.frame().unwrap();
    assert_eq!((b0, close_code(&p)), (0x88, 4200));
    a.send(0x88, &p);
    t.join().unwrap();
}

#[test]
fn metrics_count_what_happened() {
    let s = gateway(|_| {});
    let addr = s.local_addr();
    let (mut a, _) = connect(addr);
    let (mut b, _) = connect(addr);
    for c in [&mut a, &mut b] {
        subscribe(c, "news", None, None);
    }
    for i in 0..3 {
        trigger(
            addr,
            json!({ "name": "e", "channel": "news", "data": i.to_string() }),
        );
    }
    a.text("not json");
    assert_eq!(next(&mut a)["event"], "e");
    assert_eq!(next(&mut a)["event"], "e");
    assert_eq!(next(&mut a)["event"], "e");
    assert_eq!(next(&mut a)["event"], "pusher:error");
    let mut c = Client::open(addr, "/app/nope");
    assert_eq!(next(&mut c)["event"], "pusher:error");
    assert_eq!(
        api(addr, "GET", "/apps/1/channels", &[], "", now() - 1000).0,
        401
    );
    let m = common::parse_metrics(&s.metrics());
    let app = |name: &str| m[&format!("{name}{{app=\"1\"}}")];
    assert_eq!(app("ringws_gateway_connections"), 2.0, "{m:?}");
    assert_eq!(app("ringws_gateway_channels"), 1.0);
    assert_eq!(app("ringws_gateway_subscriptions"), 2.0);
    assert_eq!(app("ringws_gateway_subscribes_total"), 2.0);
    assert_eq!(app("ringws_gateway_api_events_total"), 3.0);
    assert_eq!(app("ringws_gateway_refused_messages_total"), 1.0);
    assert_eq!(
        m["ringws_gateway_refused_connections_total{reason=\"unknown_app\"}"],
        1.0
    );
    assert_eq!(m["ringws_gateway_api_requests_total{status=\"200\"}"], 3.0);
    assert_eq!(m["ringws_gateway_api_requests_total{status=\"401\"}"], 1.0);
    // ringws's own families are there too.
    assert!(m.contains_key("ringws_connections"), "{m:?}");
    s.shutdown(Duration::from_secs(1));
}
