//! Two gateway nodes sharing one real redis-server (scripts/test.sh
//! installs it; without it the tests say so and pass): presence members,
//! channel queries, `socket_id` exclusion and terminating a user across
//! nodes, a user joining and leaving on two nodes at once announced once,
//! and a node killed without a goodbye losing its members within three
//! cluster intervals.

#[path = "../../tests/common/mod.rs"]
mod common;
#[path = "../../tests/common/redis.rs"]
mod redis_server;
mod support;

use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{close_code, Client};
use ringws::app::ServerHandle;
use ringws::broker::Redis;
use ringws::Config;
use ringws_gateway::{sign, AppConfig, Gateway, GatewayConfig};
use serde_json::{json, Value};
use support::{api_json as api, connect, next, next_but, send, KEY, SECRET};

fn node(redis: &str) -> ServerHandle {
    let mut g = GatewayConfig::new(vec![AppConfig::new("1", KEY, SECRET)]);
    g.cluster_interval = Duration::from_millis(200);
    let cfg = Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        threads: 2,
        ..Config::default()
    };
    let broker = Redis::new([redis]).unwrap();
    let s = ringws_gateway::app(Gateway::new(g).unwrap(), cfg, Some(broker))
        .unwrap()
        .start()
        .unwrap();
    wait("/readyz", || s.readyz().ok);
    s
}

fn wait(what: &str, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !ok() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn join(c: &mut Client, id: &str, channel: &str, user: &str) -> Value {
    let data = format!(r#"{{"user_id":"{user}"}}"#);
    let auth = sign::channel_auth(KEY, SECRET, id, channel, Some(&data));
    send(
        c,
        json!({ "event": "pusher:subscribe", "data": { "channel": channel, "auth": auth, "channel_data": data } }),
    );
    next(c)
}

#[test]
fn presence_queries_exclusion_and_terminate_across_nodes() {
    let Some(r) = redis_server::start(None, &[]) else {
        return;
    };
    let (a, b) = (node(&r.url()), node(&r.url()));
    let (aa, ba) = (a.local_addr(), b.local_addr());
    // Presence: alice on a, bob on b; bob's list has both, alice hears of
    // bob once; bob's second connection (on a) announces nothing.
    let (mut alice, ida) = connect(aa);
    let ok = join(&mut alice, &ida, "presence-room", "alice");
    assert_eq!(ok["data"]["presence"]["count"], 1, "{ok}");
    let (mut bob, idb) = connect(ba);
    wait("a's state on b", || {
        let (_, v) = api(
            ba,
            "GET",
            "/apps/1/channels/presence-room",
            &[("info", "user_count")],
            "",
        );
        v["user_count"] == 1
    });
    let ok = join(&mut bob, &idb, "presence-room", "bob");
    assert_eq!(ok["data"]["presence"]["count"], 2, "{ok}");
    assert!(
        ok["data"]["presence"]["hash"].get("alice").is_some(),
        "{ok}"
    );
    let added = next(&mut alice);
    assert_eq!(
        (added["event"].as_str(), added["data"]["user_id"].as_str()),
        (Some("pusher_internal:member_added"), Some("bob"))
    );
    wait("b's state on a", || {
        let (_, v) = api(aa, "GET", "/apps/1/channels/presence-room/users", &[], "");
        v["users"].as_array().is_some_and(|u| u.len() == 2)
    });
    let (mut bob2, idb2) = connect(aa);
    let ok = join(&mut bob2, &idb2, "presence-room", "bob");
    assert_eq!(ok["data"]["presence"]["count"], 2, "{ok}");
    // Channel queries on either node count both nodes.
    wait("three subscriptions", || {
        let (_, v) = api(
            ba,
            "GET",
            "/apps/1/channels",
            &[("info", "subscription_count")],
            "",
        );
        v["channels"]["presence-room"]["subscription_count"] == 3
    });
    let (_, v) = api(
        aa,
        "GET",
        "/apps/1/channels",
        &[("filter_by_prefix", "presence-"), ("info", "user_count")],
        "",
    );
    assert_eq!(v["channels"]["presence-room"]["user_count"], 2, "{v}");
    // socket_id exclusion of a connection on the other node: events
    // through a's API leave bob's connection on b out, and keep their
    // order with a's other events (a publishes them all; the envelope
    // names the connection b leaves out).
    for i in 0..10 {
        let body = json!({ "name": format!("x{i}"), "channel": "presence-room", "data": "1", "socket_id": idb })
            .to_string();
        assert_eq!(api(aa, "POST", "/apps/1/events", &[], &body).0, 200);
        let body =
            json!({ "name": format!("e{i}"), "channel": "presence-room", "data": "2" }).to_string();
        assert_eq!(api(aa, "POST", "/apps/1/events", &[], &body).0, 200);
    }
    let all: Vec<String> = (0..10)
        .flat_map(|i| [format!("x{i}"), format!("e{i}")])
        .collect();
    let plain: Vec<String> = (0..10).map(|i| format!("e{i}")).collect();
    let events = |c: &mut Client, n: usize| -> Vec<String> {
        (0..n)
            .map(|_| {
                next_but(c, "pusher_internal:member_added")["event"]
                    .as_str()
                    .unwrap()
                    .to_owned()
            })
            .collect()
    };
    assert_eq!(events(&mut bob, 10), plain);
    assert_eq!(events(&mut alice, 20), all);
    assert_eq!(events(&mut bob2, 20), all);
    // Bob's connection on b leaves: he is still on a, nothing announced;
    // then the one on a: member_removed, once.
    drop(bob);
    wait("b's leave on a", || {
        let (_, v) = api(
            aa,
            "GET",
            "/apps/1/channels/presence-room",
            &[("info", "subscription_count")],
            "",
        );
        v["subscription_count"] == 2
    });
    drop(bob2);
    let removed = next(&mut alice);
    assert_eq!(
        (
            removed["event"].as_str(),
            removed["data"]["user_id"].as_str()
        ),
        (Some("pusher_internal:member_removed"), Some("bob")),
        "{removed}"
    );
    // Terminate a user signed in on b through a's API.
    let (mut carol, idc) = connect(ba);
    let user = r#"{"id":"carol"}"#;
    let auth = sign::user_auth(KEY, SECRET, &idc, user);
    send(
        &mut carol,
        json!({ "event": "pusher:signin", "data": { "auth": auth, "user_data": user } }),
    );
    assert_eq!(next(&mut carol)["event"], "pusher:signin_success");
    assert_eq!(
        api(
            aa,
            "POST",
            "/apps/1/users/carol/terminate_connections",
            &[],
            "{}"
        )
        .0,
        200
    );
    assert_eq!(next(&mut carol)["data"]["code"], 4009);
    let (b0, p) = carol.frame().unwrap();
    assert_eq!((b0, close_code(&p)), (0x88, 4009));
    // Nothing else reached alice in between.
    send(&mut alice, json!({ "event": "pusher:ping", "data": {} }));
    assert_eq!(next(&mut alice)["event"], "pusher:pong");
    a.shutdown(Duration::from_secs(1));
    b.shutdown(Duration::from_secs(1));
}

/// `presence-room` as `addr`'s API counts it (this node and the others
/// as last heard): subscriptions and users.
fn room(addr: SocketAddr) -> (Value, Value) {
    let (_, v) = api(
        addr,
        "GET",
        "/apps/1/channels/presence-room",
        &[("info", "subscription_count,user_count")],
        "",
    );
    (v["subscription_count"].clone(), v["user_count"].clone())
}

/// The next message is the answer to a ping: nothing else came first.
fn nothing_more(c: &mut Client) {
    send(c, json!({ "event": "pusher:ping", "data": {} }));
    let v = next(c);
    assert_eq!(v["event"], "pusher:pong", "{v}");
}

/// The next message `c` (`name`) gets is `event` for `user`, and nothing
/// follows it before the answer to a ping.
fn heard_once(c: &mut Client, name: &str, event: &str, user: &str) {
    let v = next(c);
    assert_eq!(
        (v["event"].as_str(), v["data"]["user_id"].as_str()),
        (Some(event), Some(user)),
        "{name}: {v}"
    );
    nothing_more(c);
}

/// One user joining on two nodes at once, then leaving both at once, is
/// announced once to every member on either node, never twice or not at
/// all: Redis is stopped (SIGSTOP) while the two changes are made, so
/// neither node has heard of the other's when it makes its own.
#[test]
fn a_user_on_two_nodes_at_once_is_announced_once() {
    let Some(r) = redis_server::start(None, &[]) else {
        return;
    };
    let (a, b) = (node(&r.url()), node(&r.url()));
    let (aa, ba) = (a.local_addr(), b.local_addr());
    let (mut alice, ida) = connect(aa);
    join(&mut alice, &ida, "presence-room", "alice");
    let (mut bob, idb) = connect(ba);
    wait("a's state on b", || room(ba).1 == 1);
    join(&mut bob, &idb, "presence-room", "bob");
    assert_eq!(next(&mut alice)["data"]["user_id"], "bob");
    wait("b's state on a", || room(aa).0 == 2);
    let (mut d1, id1) = connect(aa);
    let (mut d2, id2) = connect(ba);
    r.pause(true);
    let ok1 = join(&mut d1, &id1, "presence-room", "dave");
    let ok2 = join(&mut d2, &id2, "presence-room", "dave");
    r.pause(false);
    assert_eq!(ok1["data"]["presence"]["count"], 3, "{ok1}");
    assert_eq!(ok2["data"]["presence"]["count"], 3, "{ok2}");
    wait("both joins on both nodes", || {
        room(aa).0 == 4 && room(ba).0 == 4
    });
    // Anything either node published through Redis before it heard of
    // the other's join has arrived by now.
    std::thread::sleep(Duration::from_millis(200));
    heard_once(&mut alice, "alice", "pusher_internal:member_added", "dave");
    heard_once(&mut bob, "bob", "pusher_internal:member_added", "dave");
    r.pause(true);
    drop(d1);
    drop(d2);
    // Both leaves taken by their nodes while Redis is stopped.
    wait("both leaves, each on its own node", || {
        room(aa).0 == 3 && room(ba).0 == 3
    });
    r.pause(false);
    wait("both leaves on both nodes", || {
        room(aa) == (json!(2), json!(2)) && room(ba) == (json!(2), json!(2))
    });
    std::thread::sleep(Duration::from_millis(200));
    heard_once(
        &mut alice,
        "alice",
        "pusher_internal:member_removed",
        "dave",
    );
    heard_once(&mut bob, "bob", "pusher_internal:member_removed", "dave");
    a.shutdown(Duration::from_secs(1));
    b.shutdown(Duration::from_secs(1));
}

/// The gateway binary as another node, on `port`, killed when dropped.
struct Process(Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn a_dead_nodes_members_leave() {
    let Some(r) = redis_server::start(None, &[]) else {
        return;
    };
    let a = node(&r.url());
    let port = redis_server::free_port();
    let mut b = Process(
        Command::new(env!("CARGO_BIN_EXE_ringws-gateway"))
            .args(["--app-id", "1", "--app-key", KEY, "--app-secret", SECRET])
            .args(["--listen", &format!("127.0.0.1:{port}"), "--threads", "1"])
            .args([
                "--redis",
                &r.url(),
                "--cluster-interval",
                "0.2",
                "--log-level",
                "warn",
            ])
            .stdout(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let ba: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    wait("node b", || TcpStream::connect(ba).is_ok());
    let (mut alice, ida) = connect(a.local_addr());
    join(&mut alice, &ida, "presence-room", "alice");
    // b is up and subscribed once it answers the API.
    let (mut dave, idd) = connect(ba);
    wait("a's state on b", || {
        api(
            ba,
            "GET",
            "/apps/1/channels/presence-room",
            &[("info", "user_count")],
            "",
        )
        .1["user_count"]
            == 1
    });
    let ok = join(&mut dave, &idd, "presence-room", "dave");
    assert_eq!(ok["data"]["presence"]["count"], 2, "{ok}");
    assert_eq!(next(&mut alice)["data"]["user_id"], "dave");
    // b dies without a word: within three intervals (0.6 s) and a tick,
    // a takes dave for gone and tells the channel.
    b.0.kill().unwrap();
    let t = Instant::now();
    let removed = next(&mut alice);
    assert_eq!(
        (
            removed["event"].as_str(),
            removed["data"]["user_id"].as_str()
        ),
        (Some("pusher_internal:member_removed"), Some("dave")),
        "{removed}"
    );
    assert!(t.elapsed() < Duration::from_secs(3), "{:?}", t.elapsed());
    let (_, v) = api(
        a.local_addr(),
        "GET",
        "/apps/1/channels/presence-room/users",
        &[],
        "",
    );
    assert_eq!(v["users"], json!([{ "id": "alice" }]));
    drop(dave);
    a.shutdown(Duration::from_secs(1));
}
