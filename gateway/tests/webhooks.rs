//! The webhook sender against a hand-written HTTP server on 127.0.0.1:
//! the requests' shape, headers and signature, batching, retries, giving
//! up, bounded queues in front of dead and stalled endpoints, debouncing,
//! and the stop. `official_sdk_accepts_them` has the Node server SDK
//! (`tests/js/webhooks.js`) check the signatures too.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use hmac::{Hmac, Mac};
use ringws_gateway::webhook::{AppHooks, Event, Kind, WebhookConfig, WebhookCounts, Webhooks};
use serde_json::{json, Value};
use sha2::Sha256;

use support::{KEY, SECRET};

/// One request as the server read it.
#[derive(Clone, Debug)]
struct Request {
    method: String,
    target: String,
    /// Names lower-cased.
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Request {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("a JSON body")
    }

    fn events(&self) -> Vec<Value> {
        self.json()["events"].as_array().expect("events").clone()
    }
}

/// How the server answers.
#[derive(Clone, Copy)]
enum Mode {
    /// The next statuses from the script, then 200.
    Answer,
    /// Reads the request and never answers.
    Stall,
}

/// An HTTP/1.1 server with keep-alive, enough for the sender: it records
/// every request and answers with the scripted statuses.
struct Server {
    url: String,
    requests: Arc<Mutex<Vec<Request>>>,
}

impl Server {
    fn start(mode: Mode, script: &[u16]) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/hook?x=1", listener.local_addr().unwrap());
        let requests = Arc::new(Mutex::new(Vec::new()));
        let script = Arc::new(Mutex::new(script.iter().copied().collect::<VecDeque<_>>()));
        let r = requests.clone();
        thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { return };
                let (r, script) = (r.clone(), script.clone());
                thread::spawn(move || serve(conn, mode, &r, &script));
            }
        });
        Server { url, requests }
    }

    fn requests(&self) -> Vec<Request> {
        self.requests.lock().unwrap().clone()
    }

    /// Every event received, in order.
    fn events(&self) -> Vec<Value> {
        self.requests().iter().flat_map(Request::events).collect()
    }
}

fn serve(conn: TcpStream, mode: Mode, log: &Mutex<Vec<Request>>, script: &Mutex<VecDeque<u16>>) {
    let mut w = conn.try_clone().unwrap();
    let mut r = BufReader::new(conn);
    loop {
        let mut line = String::new();
        if r.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let mut parts = line.split_whitespace();
        let method = parts.next().unwrap_or_default().to_owned();
        let target = parts.next().unwrap_or_default().to_owned();
        let mut headers = Vec::new();
        loop {
            let mut h = String::new();
            if r.read_line(&mut h).unwrap_or(0) == 0 {
                return;
            }
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            let (n, v) = h.split_once(':').expect("a header line");
            headers.push((n.trim().to_ascii_lowercase(), v.trim().to_owned()));
        }
        let len: usize = headers
            .iter()
            .find(|(n, _)| n == "content-length")
            .map(|(_, v)| v.parse().unwrap())
            .expect("the sender gives a content-length");
        let mut body = vec![0; len];
        if r.read_exact(&mut body).is_err() {
            return;
        }
        log.lock().unwrap().push(Request {
            method,
            target,
            headers,
            body,
        });
        match mode {
            Mode::Stall => {
                // Hold the connection open, say nothing.
                let mut sink = [0; 1024];
                while r.read(&mut sink).unwrap_or(0) > 0 {}
                return;
            }
            Mode::Answer => {
                let status = script.lock().unwrap().pop_front().unwrap_or(200);
                let reply = format!("HTTP/1.1 {status} X\r\ncontent-length: 2\r\n\r\nok");
                if w.write_all(reply.as_bytes()).is_err() {
                    return;
                }
            }
        }
    }
}

/// A port nothing listens on: connections are refused.
fn dead_url() -> String {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    drop(l);
    format!("http://{addr}/hook")
}

fn hooks(hooks: Vec<WebhookConfig>) -> Webhooks {
    Webhooks::start([AppHooks {
        id: "1".into(),
        key: KEY.into(),
        secret: SECRET.into(),
        hooks,
    }])
    .unwrap()
}

/// A quick endpoint: short batch window, no debounce, fast retries.
fn quick(url: &str) -> WebhookConfig {
    let mut c = WebhookConfig::new(url);
    c.batch_delay = Duration::from_millis(20);
    c.debounce = Duration::ZERO;
    c.backoff = (Duration::from_millis(5), Duration::from_millis(20));
    c.timeout = Duration::from_secs(2);
    c
}

/// Waits up to 10 s for `f` to hold.
fn wait_for(what: &str, f: impl Fn() -> bool) {
    let end = Instant::now() + Duration::from_secs(10);
    while !f() {
        assert!(Instant::now() < end, "timed out waiting for {what}");
        thread::sleep(Duration::from_millis(5));
    }
}

fn client_event(n: usize) -> Event {
    Event::ClientEvent {
        channel: "private-a".into(),
        event: "client-n".into(),
        data: format!("{{\"n\":{n}}}"),
        socket_id: "1.1".into(),
        user_id: None,
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

fn hmac_hex(secret: &str, body: &[u8]) -> String {
    let mut m = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    m.update(body);
    m.finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[test]
fn requests_are_signed_and_shaped_as_pushers() {
    let server = Server::start(Mode::Answer, &[]);
    let mut c = quick(&server.url);
    // Long enough that the five sends below make one batch.
    c.batch_delay = Duration::from_millis(300);
    let w = hooks(vec![c]);
    let before = now_ms();
    w.send(
        "1",
        Event::ChannelOccupied {
            channel: "presence-a".into(),
        },
    );
    w.send(
        "1",
        Event::MemberAdded {
            channel: "presence-a".into(),
            user_id: "u1".into(),
        },
    );
    w.send(
        "1",
        Event::ClientEvent {
            channel: "presence-a".into(),
            event: "client-typing".into(),
            data: r#"{"text":"h\u00e9"}"#.into(),
            socket_id: "123.456".into(),
            user_id: Some("u1".into()),
        },
    );
    w.send(
        "1",
        Event::MemberRemoved {
            channel: "presence-a".into(),
            user_id: "u1".into(),
        },
    );
    w.send(
        "1",
        Event::ChannelVacated {
            channel: "presence-a".into(),
        },
    );
    wait_for("5 events sent", || w.counts().events_sent == 5);
    let after = now_ms();
    let reqs = server.requests();
    assert_eq!(reqs.len(), 1, "one batch");
    let r = &reqs[0];
    assert_eq!(
        (r.method.as_str(), r.target.as_str()),
        ("POST", "/hook?x=1")
    );
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert_eq!(r.header("x-pusher-key"), Some(KEY));
    assert_eq!(
        r.header("x-pusher-signature"),
        Some(hmac_hex(SECRET, &r.body).as_str())
    );
    let body = r.json();
    let t = body["time_ms"].as_u64().unwrap();
    assert!(before <= t && t <= after, "{before} <= {t} <= {after}");
    assert_eq!(
        body["events"],
        json!([
            {"name": "channel_occupied", "channel": "presence-a"},
            {"name": "member_added", "channel": "presence-a", "user_id": "u1"},
            {"name": "client_event", "channel": "presence-a", "event": "client-typing",
             "data": "{\"text\":\"h\\u00e9\"}", "socket_id": "123.456", "user_id": "u1"},
            {"name": "member_removed", "channel": "presence-a", "user_id": "u1"},
            {"name": "channel_vacated", "channel": "presence-a"},
        ])
    );
    assert_eq!(
        w.counts(),
        WebhookCounts {
            requests_ok: 1,
            events_sent: 5,
            ..WebhookCounts::default()
        }
    );
    w.stop();
}

#[test]
fn many_events_make_few_requests() {
    let server = Server::start(Mode::Answer, &[]);
    let mut c = quick(&server.url);
    c.batch_max = 20;
    c.batch_delay = Duration::from_millis(200);
    let w = hooks(vec![c]);
    for n in 0..100 {
        w.send("1", client_event(n));
    }
    wait_for("100 events sent", || w.counts().events_sent == 100);
    let reqs = server.requests();
    assert!(reqs.len() <= 10, "{} requests for 100 events", reqs.len());
    for r in &reqs {
        let n = r.events().len();
        assert!((1..=20).contains(&n), "{n} events in a request");
        assert_eq!(
            r.header("x-pusher-signature"),
            Some(hmac_hex(SECRET, &r.body).as_str())
        );
    }
    // In order, each once.
    let data: Vec<String> = server
        .events()
        .iter()
        .map(|e| e["data"].as_str().unwrap().to_owned())
        .collect();
    let want: Vec<String> = (0..100).map(|n| format!("{{\"n\":{n}}}")).collect();
    assert_eq!(data, want);
    assert_eq!(w.counts().requests_ok, reqs.len() as u64);
    w.stop();
}

#[test]
fn a_failed_batch_is_retried_with_the_same_bytes() {
    let server = Server::start(Mode::Answer, &[500, 500]);
    let w = hooks(vec![quick(&server.url)]);
    w.send("1", client_event(7));
    wait_for("delivered", || w.counts().requests_ok == 1);
    let reqs = server.requests();
    assert_eq!(reqs.len(), 3);
    for r in &reqs[1..] {
        assert_eq!(r.body, reqs[0].body);
        assert_eq!(
            r.header("x-pusher-signature"),
            reqs[0].header("x-pusher-signature")
        );
    }
    assert_eq!(
        w.counts(),
        WebhookCounts {
            requests_ok: 1,
            attempts_failed: 2,
            events_sent: 1,
            ..WebhookCounts::default()
        }
    );
    w.stop();
}

#[test]
fn a_batch_is_given_up_after_max_retries_and_the_next_goes_on() {
    let server = Server::start(Mode::Answer, &[503; 6]);
    let mut c = quick(&server.url);
    c.max_retries = 2;
    let w = hooks(vec![c]);
    w.send("1", client_event(1));
    wait_for("given up", || w.counts().batches_failed == 1);
    assert_eq!(server.requests().len(), 3, "1 try and 2 retries");
    let c = w.counts();
    assert_eq!((c.attempts_failed, c.events_failed, c.queued), (3, 1, 0));
    // The endpoint is not stuck: the next batch is tried (and given up).
    w.send("1", client_event(2));
    wait_for("the second given up", || w.counts().batches_failed == 2);
    // The script is spent: the third is delivered.
    w.send("1", client_event(3));
    wait_for("the third delivered", || w.counts().requests_ok == 1);
    assert_eq!(server.requests().len(), 7);
    w.stop();
}

#[test]
fn a_dead_endpoint_holds_at_most_max_queue() {
    let mut c = quick(&dead_url());
    c.max_queue = 10;
    c.max_retries = 1000;
    c.backoff = (Duration::from_millis(20), Duration::from_millis(50));
    let w = hooks(vec![c]);
    for n in 0..1000 {
        w.send("1", client_event(n));
    }
    let c = w.counts();
    assert!(c.events_dropped >= 990, "{c:?}");
    assert!(c.queued <= 10, "{c:?}");
    assert_eq!(c.events_dropped + c.queued + c.events_failed, 1000, "{c:?}");
    wait_for("a refused attempt", || w.counts().attempts_failed >= 1);
    let probe = w.clone();
    w.stop_within(Duration::from_millis(100));
    // Stopped: nothing held, everything accounted for.
    let c = probe.counts();
    assert_eq!(c.queued, 0, "{c:?}");
    assert_eq!(c.events_sent, 0);
    assert_eq!(c.events_dropped + c.events_failed, 1000, "{c:?}");
    // After the stop, sends are dropped at the door.
    probe.send("1", client_event(0));
    assert_eq!(probe.counts().events_dropped, c.events_dropped + 1);
}

#[test]
fn send_never_waits_for_a_stalled_endpoint() {
    let server = Server::start(Mode::Stall, &[]);
    let mut c = quick(&server.url);
    c.max_queue = 100;
    c.timeout = Duration::from_millis(300);
    let w = hooks(vec![c]);
    for n in 0..100_000 {
        w.send("1", client_event(n));
    }
    let c = w.counts();
    assert!(c.events_dropped >= 99_900, "{c:?}");
    assert_eq!(
        c.events_dropped + c.queued + c.events_failed + c.events_sent,
        100_000
    );
    wait_for("the stalled request", || !server.requests().is_empty());
    let probe = w.clone();
    w.stop_within(Duration::from_millis(100));
    let c = probe.counts();
    assert_eq!(c.queued, 0, "{c:?}");
    assert_eq!(c.events_sent, 0, "{c:?}");
    assert_eq!(c.events_dropped + c.events_failed, 100_000, "{c:?}");
}

#[test]
fn a_dead_endpoint_does_not_hold_back_another() {
    let good = Server::start(Mode::Answer, &[]);
    let mut dead = quick(&dead_url());
    dead.max_retries = 1000;
    dead.backoff = (Duration::from_millis(1), Duration::from_millis(2));
    let w = hooks(vec![dead, quick(&good.url)]);
    for n in 0..50 {
        w.send("1", client_event(n));
    }
    wait_for("the good endpoint's 50 events", || {
        good.events().len() == 50
    });
    assert!(w.counts().attempts_failed >= 1);
    w.stop_within(Duration::from_millis(50));
}

#[test]
fn a_quick_return_is_debounced() {
    let server = Server::start(Mode::Answer, &[]);
    let mut c = quick(&server.url);
    c.debounce = Duration::from_millis(200);
    let w = hooks(vec![c]);
    let member = |user: &str, added: bool| {
        let (channel, user_id) = ("presence-a".to_owned(), user.to_owned());
        if added {
            Event::MemberAdded { channel, user_id }
        } else {
            Event::MemberRemoved { channel, user_id }
        }
    };
    // A reload: a leaves and comes back. b leaves for good.
    w.send("1", member("a", false));
    w.send("1", member("b", false));
    w.send("1", member("a", true));
    wait_for("b's removal", || w.counts().events_sent == 1);
    assert_eq!(
        server.events(),
        [json!({"name": "member_removed", "channel": "presence-a", "user_id": "b"})]
    );
    let c = w.counts();
    assert_eq!((c.events_debounced, c.queued), (2, 0));
    w.stop();
}

#[test]
fn kinds_pick_what_an_endpoint_gets() {
    let server = Server::start(Mode::Answer, &[]);
    let mut c = quick(&server.url);
    c.kinds = vec![Kind::ClientEvent];
    let w = Webhooks::start([
        AppHooks {
            id: "1".into(),
            key: KEY.into(),
            secret: SECRET.into(),
            hooks: vec![c],
        },
        AppHooks {
            id: "2".into(),
            key: "k2".into(),
            secret: "s2".into(),
            hooks: Vec::new(),
        },
    ])
    .unwrap();
    assert!(w.wants("1", Kind::ClientEvent));
    assert!(!w.wants("1", Kind::ChannelOccupied));
    assert!(!w.wants("2", Kind::ClientEvent));
    assert!(!w.wants("3", Kind::ClientEvent));
    w.send(
        "1",
        Event::ChannelOccupied {
            channel: "private-a".into(),
        },
    );
    w.send("2", client_event(0));
    w.send("3", client_event(0));
    w.send("1", client_event(1));
    wait_for("the client event", || w.counts().events_sent == 1);
    let events = server.events();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0]["name"], "client_event");
    assert_eq!(w.counts().events_dropped, 0, "not taken is not dropped");
    w.stop();
}

#[test]
fn stop_flushes_what_waits() {
    let server = Server::start(Mode::Answer, &[]);
    let mut c = quick(&server.url);
    c.batch_delay = Duration::from_secs(60);
    c.debounce = Duration::from_secs(60);
    let w = hooks(vec![c]);
    w.send(
        "1",
        Event::ChannelOccupied {
            channel: "private-b".into(),
        },
    );
    w.send(
        "1",
        Event::ChannelVacated {
            channel: "private-a".into(),
        },
    );
    let probe = w.clone();
    w.stop();
    assert_eq!(
        server.events(),
        [
            json!({"name": "channel_occupied", "channel": "private-b"}),
            json!({"name": "channel_vacated", "channel": "private-a"}),
        ]
    );
    assert_eq!(probe.counts().events_sent, 2);
}

#[test]
fn bad_configs_are_refused() {
    for url in ["ftp://127.0.0.1/x", "127.0.0.1:80", ""] {
        let e = Webhooks::start([AppHooks {
            id: "1".into(),
            key: KEY.into(),
            secret: SECRET.into(),
            hooks: vec![WebhookConfig::new(url)],
        }])
        .err()
        .unwrap_or_else(|| panic!("{url:?} accepted"));
        assert_eq!(e.kind(), std::io::ErrorKind::InvalidInput);
    }
    let mut c = WebhookConfig::new("http://127.0.0.1/x");
    c.batch_max = 0;
    assert!(Webhooks::start([AppHooks {
        id: "1".into(),
        key: KEY.into(),
        secret: SECRET.into(),
        hooks: vec![c],
    }])
    .is_err());
}

/// Whether node and the packages are there (or a failure when they must
/// be), as in tests/pusher_js.rs.
fn npm_ready(js: &Path) -> bool {
    let ok = js.join("node_modules/pusher").is_dir()
        && Command::new("node")
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success());
    if !ok {
        let msg = "node or the npm packages are missing (scripts/test.sh installs them)";
        assert!(std::env::var_os("RINGWS_REQUIRE_NPM").is_none(), "{msg}");
        eprintln!("skipped: {msg}");
    }
    ok
}

#[test]
fn official_sdk_accepts_them() {
    let js = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/js");
    if !npm_ready(&js) {
        return;
    }
    let mut child = Command::new("node")
        .arg("webhooks.js")
        .current_dir(&js)
        .env("PORT", "0")
        .env("APP_KEY", KEY)
        .env("APP_SECRET", SECRET)
        .stdout(Stdio::piped())
        .spawn()
        .expect("node runs");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let first: Value = serde_json::from_str(&lines.next().unwrap().unwrap()).unwrap();
    let url = first["listening"].as_str().expect("the listening line");
    let w = hooks(vec![quick(url)]);
    w.send(
        "1",
        Event::MemberAdded {
            channel: "presence-\u{e9}".into(),
            user_id: "\u{1f600}".into(),
        },
    );
    w.send(
        "1",
        Event::ClientEvent {
            channel: "private-a".into(),
            event: "client-x".into(),
            data: r#"{"s":"\u2028 \"q\" é"}"#.into(),
            socket_id: "1.2".into(),
            user_id: None,
        },
    );
    wait_for("delivered", || w.counts().events_sent == 2);
    w.stop();
    // Signed with another secret: refused (401), so given up at once.
    let mut c = quick(url);
    c.max_retries = 0;
    let forged = Webhooks::start([AppHooks {
        id: "1".into(),
        key: KEY.into(),
        secret: "not-the-secret".into(),
        hooks: vec![c],
    }])
    .unwrap();
    forged.send("1", client_event(0));
    wait_for("refused", || forged.counts().batches_failed == 1);
    forged.stop();
    let mut got = Vec::new();
    for line in lines.by_ref().take(3) {
        got.push(serde_json::from_str::<Value>(&line.unwrap()).unwrap());
    }
    let _ = child.kill();
    let _ = child.wait();
    assert!(got[..2].iter().all(|l| l["valid"] == true), "{got:?}");
    assert_eq!(got[0]["event"]["user_id"], "\u{1f600}");
    assert_eq!(got[1]["event"]["data"], r#"{"s":"\u2028 \"q\" é"}"#);
    assert_eq!(got[2]["valid"], false, "{got:?}");
}

#[test]
fn https_urls_go_through_tls() {
    // The local server speaks plain HTTP: the TLS handshake fails, and is
    // counted like any failure (the client has its crypto provider: no
    // panic on the webhook thread).
    let server = Server::start(Mode::Answer, &[]);
    let mut c = quick(&server.url.replace("http://", "https://"));
    c.max_retries = 0;
    let w = hooks(vec![c]);
    w.send("1", client_event(0));
    wait_for("the failed handshake", || w.counts().batches_failed == 1);
    assert_eq!(w.counts().events_failed, 1);
    assert!(server.requests().is_empty());
    w.stop();
}

#[path = "../../tests/common/mod.rs"]
mod common;
mod support;

/// The gateway itself: what its connections do reaches the endpoint as
/// Pusher's five kinds of events, in order.
#[test]
fn the_gateway_sends_what_happens() {
    use ringws_gateway::{sign, AppConfig, Gateway, GatewayConfig};
    let server = Server::start(Mode::Answer, &[]);
    let mut app = AppConfig::new("1", KEY, SECRET);
    app.client_events = true;
    app.webhooks = vec![quick(&server.url)];
    let cfg = ringws::Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        threads: 2,
        ..ringws::Config::default()
    };
    let gw = Gateway::new(GatewayConfig::new(vec![app])).unwrap();
    let s = ringws_gateway::app(gw, cfg, None).unwrap().start().unwrap();
    use support::next;
    let mut a = common::Client::open(s.local_addr(), &format!("/app/{KEY}?protocol=7"));
    let id = next(&mut a)["data"]["socket_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let data = r#"{"user_id":"alice"}"#;
    let auth = sign::channel_auth(KEY, SECRET, &id, "presence-room", Some(data));
    let sub = json!({ "event": "pusher:subscribe", "data": { "channel": "presence-room", "auth": auth, "channel_data": data } });
    a.text(&sub.to_string());
    assert_eq!(
        next(&mut a)["event"],
        "pusher_internal:subscription_succeeded"
    );
    let ev = json!({ "event": "client-typing", "channel": "presence-room", "data": { "x": 1 } });
    a.text(&ev.to_string());
    wait_for("three events", || server.events().len() >= 3);
    drop(a);
    wait_for("five events", || server.events().len() >= 5);
    let events = server.events();
    let names: Vec<&str> = events.iter().map(|e| e["name"].as_str().unwrap()).collect();
    assert_eq!(
        names,
        [
            "channel_occupied",
            "member_added",
            "client_event",
            "member_removed",
            "channel_vacated"
        ],
        "{events:?}"
    );
    assert_eq!(events[1]["user_id"], "alice");
    assert_eq!(
        (events[2]["event"].as_str(), events[2]["user_id"].as_str()),
        (Some("client-typing"), Some("alice"))
    );
    assert_eq!(events[2]["socket_id"], id.as_str());
    for r in server.requests() {
        assert_eq!(r.header("x-pusher-key"), Some(KEY));
        assert_eq!(
            r.header("x-pusher-signature"),
            Some(hmac_hex(SECRET, &r.body).as_str())
        );
    }
    s.shutdown(Duration::from_secs(1));
}
