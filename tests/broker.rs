//! Topics across nodes through a real redis-server (and a Sentinel trio):
//! several servers in this process, each a node with its own broker
//! connection, and raw WebSocket clients. Every test runs on both
//! backends. Without redis-server installed (scripts/test.sh installs it)
//! the tests say so and pass.

mod common;
#[path = "common/redis.rs"]
mod redis_server;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::Client;
use redis_server::{sentinel_config, start, Redis};
use ringws::app::{App, Handler, Message, Request, ServerHandle, Socket, Upgrade};
use ringws::broker::{self, Gap};
use ringws::proto::resp::Frame;
use ringws::Config;

/// Subscribes each connection to the topic its path names (`/room`), and
/// publishes what it sends there (to everyone else on every node; a text
/// starting `here ` to everyone else on this node only). `id?` is answered
/// with the connection's `ConnId` as `node.local`.
struct Room;

impl Handler for Room {
    type Data = String;

    fn upgrade(&self, req: &Request<'_>) -> Upgrade<String> {
        Upgrade::accept(req.path().trim_start_matches('/').to_owned())
    }

    fn open(&self, ws: &mut Socket<'_, String>) {
        let topic = ws.data().clone();
        ws.subscribe(&topic);
    }

    fn message(&self, ws: &mut Socket<'_, String>, msg: Message<'_>) {
        let topic = ws.data().clone();
        if matches!(msg, Message::Text("id?")) {
            let c = ws.conn_id();
            ws.send_text(&format!("{}.{}", c.node, c.local));
        } else if matches!(msg, Message::Text(t) if t.starts_with("here ")) {
            ws.publish_local(&topic, msg);
        } else {
            ws.publish(&topic, msg);
        }
    }
}

fn node(redis: broker::Redis, threads: usize) -> ServerHandle {
    node_with(redis, threads, |app| app)
}

fn node_with(redis: broker::Redis, threads: usize, f: impl FnOnce(App) -> App) -> ServerHandle {
    let cfg = Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        threads,
        backend: common::backend(),
        ..Config::default()
    };
    f(App::new(cfg).broker(redis).route_prefix("/", Room))
        .start()
        .unwrap()
}

fn wait_for(what: &str, timeout: Duration, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !ok() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn ready(nodes: &[&ServerHandle]) {
    for n in nodes {
        wait_for("/readyz", Duration::from_secs(10), || n.readyz().ok);
    }
}

/// A sample of `metrics` (no labels, or the labels given in `name`).
fn metric(server: &ServerHandle, name: &str) -> f64 {
    let text = server.metrics();
    text.lines()
        .find_map(|l| l.strip_prefix(name).and_then(|r| r.strip_prefix(' ')))
        .unwrap_or_else(|| panic!("no {name} in\n{text}"))
        .parse()
        .unwrap()
}

fn redis_broker(urls: &[String]) -> broker::Redis {
    broker::Redis::new(urls).unwrap()
}

fn delivery_across_three_nodes() {
    let Some(r) = start(None, &[]) else { return };
    let nodes: Vec<ServerHandle> = (0..3).map(|_| node(redis_broker(&[r.url()]), 2)).collect();
    ready(&nodes.iter().collect::<Vec<_>>());
    // Two clients per node, all in one room.
    let mut clients: Vec<Client> = (0..6)
        .map(|i| Client::open(nodes[i % 3].local_addr(), "/room"))
        .collect();
    // Each node subscribes once, however many local subscribers it has.
    wait_for("three subscriptions", Duration::from_secs(5), || {
        r.numsub("ringws:room") == 3
    });
    for i in 0..200 {
        clients[0].text(&format!("m{i}"));
    }
    // Everyone else gets every message once, in order; the publisher
    // none of its own (its node drops its own messages coming back). Once
    // client 1 (node b) has them all, Redis has had every one, so its
    // "end" comes after them everywhere: nothing repeated in between.
    for i in 0..200 {
        assert_eq!(clients[1].next_text(), format!("m{i}"), "client 1");
    }
    clients[1].text("end");
    for (k, c) in clients.iter_mut().enumerate() {
        if k != 0 && k != 1 {
            for i in 0..200 {
                assert_eq!(c.next_text(), format!("m{i}"), "client {k}");
            }
        }
        if k != 1 {
            assert_eq!(c.next_text(), "end", "client {k}");
        }
    }
    // One PUBLISH per message, never one per subscriber.
    let calls = r.info("commandstats", "cmdstat_publish").unwrap();
    assert!(calls.starts_with("calls=201,"), "{calls}");
    let sent: f64 = nodes
        .iter()
        .map(|n| metric(n, "ringws_broker_published_total"))
        .sum();
    let got: f64 = nodes
        .iter()
        .map(|n| metric(n, "ringws_broker_received_total"))
        .sum();
    // 201 messages, each received by the two other nodes.
    assert_eq!((sent, got), (201.0, 402.0));
    for n in &nodes {
        n.shutdown(Duration::from_secs(1));
    }
}

fn interest_follows_subscribers() {
    let Some(r) = start(None, &[]) else { return };
    let linger = Duration::from_millis(300);
    let a = node(redis_broker(&[r.url()]).linger(linger), 2);
    let b = node(redis_broker(&[r.url()]).linger(linger), 1);
    ready(&[&a, &b]);
    assert_eq!(r.numsub("ringws:t"), 0, "no subscriber, no subscription");
    let mut c1 = Client::open(a.local_addr(), "/t");
    wait_for("a subscription", Duration::from_secs(5), || {
        r.numsub("ringws:t") == 1
    });
    let mut c2 = Client::open(a.local_addr(), "/t");
    let c3 = Client::open(b.local_addr(), "/other");
    wait_for("b's subscription", Duration::from_secs(5), || {
        r.numsub("ringws:other") == 1
    });
    assert_eq!(r.numsub("ringws:t"), 1, "node b has no subscriber of t");
    b.publish("t", "hello");
    assert_eq!(c1.next_text(), "hello");
    assert_eq!(c2.next_text(), "hello");
    // The last one leaves: the topic lingers, then goes.
    drop((c1, c2));
    let left = Instant::now();
    wait_for("the unsubscribe", Duration::from_secs(5), || {
        r.numsub("ringws:t") == 0
    });
    assert!(
        left.elapsed() >= linger - Duration::from_millis(50),
        "{:?}",
        left.elapsed()
    );
    assert_eq!(metric(&a, "ringws_broker_subscribed_topics"), 0.0);
    assert_eq!(metric(&b, "ringws_broker_subscribed_topics"), 1.0);
    drop(c3);
    a.shutdown(Duration::from_secs(1));
    b.shutdown(Duration::from_secs(1));
}

fn churn_during_publishing() {
    let Some(r) = start(None, &[]) else { return };
    let a = node(
        redis_broker(&[r.url()]).linger(Duration::from_millis(20)),
        2,
    );
    let b = node(
        redis_broker(&[r.url()]).linger(Duration::from_millis(20)),
        2,
    );
    ready(&[&a, &b]);
    let mut steady = Client::open(a.local_addr(), "/t");
    wait_for("a subscription", Duration::from_secs(5), || {
        r.numsub("ringws:t") == 1
    });
    let stop = Arc::new(AtomicBool::new(false));
    // Subscribers come and go on both nodes, on the same topic and others.
    let churn = {
        let (stop, addrs) = (stop.clone(), [a.local_addr(), b.local_addr()]);
        std::thread::spawn(move || {
            let mut n = 0usize;
            while !stop.load(Ordering::Relaxed) {
                let path = if n % 2 == 0 { "/t" } else { "/u" };
                let c = Client::open(addrs[n % 2], &format!("{path}{}", n % 3));
                let c2 = Client::open(addrs[(n + 1) % 2], "/t");
                drop((c, c2));
                n += 1;
            }
            n
        })
    };
    for i in 0..2000 {
        b.publish("t", format!("p{i}").as_str());
        if i % 100 == 0 {
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    stop.store(true, Ordering::Relaxed);
    let rounds = churn.join().unwrap();
    assert!(rounds > 0);
    for i in 0..2000 {
        assert_eq!(steady.next_text(), format!("p{i}"));
    }
    a.shutdown(Duration::from_secs(1));
    b.shutdown(Duration::from_secs(1));
}

fn two_instances_share_the_topics() {
    let (Some(r1), Some(r2)) = (start(None, &[]), start(None, &[])) else {
        return;
    };
    let urls = [r1.url(), r2.url()];
    let a = node(redis_broker(&urls), 1);
    // The other node lists them the other way round: the same shards.
    let b = node(redis_broker(&[r2.url(), r1.url()]), 2);
    ready(&[&a, &b]);
    let mut clients: Vec<Client> = (0..20)
        .map(|i| Client::open(b.local_addr(), &format!("/t{i}")))
        .collect();
    let mut on = [0, 0];
    for i in 0..20 {
        let ch = format!("ringws:t{i}");
        wait_for("a subscription", Duration::from_secs(5), || {
            r1.numsub(&ch) + r2.numsub(&ch) == 1
        });
        on[usize::from(r2.numsub(&ch) == 1)] += 1;
    }
    assert!(
        on[0] > 0 && on[1] > 0,
        "both instances carry topics: {on:?}"
    );
    for i in 0..20 {
        a.publish(&format!("t{i}"), format!("to t{i}").as_str());
    }
    for (i, c) in clients.iter_mut().enumerate() {
        assert_eq!(c.next_text(), format!("to t{i}"));
    }
    assert_eq!(metric(&a, "ringws_broker_instances_up"), 2.0);
    a.shutdown(Duration::from_secs(1));
    b.shutdown(Duration::from_secs(1));
}

/// Publishes from `from` every 100 ms until `c` gets one of them (what
/// was published before may come first); returns its text.
fn until_delivered(from: &ServerHandle, c: &mut Client, tag: &str) -> String {
    until_delivered_on(from, "t", c, tag)
}

/// [`until_delivered`] on `topic`.
fn until_delivered_on(from: &ServerHandle, topic: &str, c: &mut Client, tag: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    c.s.set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let mut i = 0;
    loop {
        assert!(Instant::now() < deadline, "no delivery after {tag}");
        from.publish(topic, format!("{tag}{i}").as_str());
        i += 1;
        let mut b = [0u8; 65536];
        loop {
            match std::io::Read::read(&mut c.s, &mut b) {
                Ok(0) => panic!("closed"),
                Ok(n) => c.buf.extend_from_slice(&b[..n]),
                Err(_) => break,
            }
        }
        // Whole frames only: the rest waits for the next read.
        while let Some((text, len)) = whole_text(&c.buf) {
            c.buf.drain(..len);
            if text.starts_with(tag) {
                c.s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
                return text;
            }
        }
    }
}

/// The first frame in `buf` (an unmasked text frame) and its length, if
/// it is all there.
fn whole_text(buf: &[u8]) -> Option<(String, usize)> {
    let (h, len) = match *buf.get(1)? & 0x7f {
        126 => (
            4,
            u16::from_be_bytes(buf.get(2..4)?.try_into().unwrap()) as usize,
        ),
        127 => (
            10,
            u64::from_be_bytes(buf.get(2..10)?.try_into().unwrap()) as usize,
        ),
        n => (2, n as usize),
    };
    let p = buf.get(h..h + len)?;
    assert_eq!(buf[0], 0x81);
    Some((String::from_utf8(p.to_vec()).unwrap(), h + len))
}

fn redis_restart() {
    let Some(mut r) = start(None, &[]) else {
        return;
    };
    let gaps = Arc::new(AtomicUsize::new(0));
    let g = gaps.clone();
    let fast = |b: broker::Redis| b.backoff(Duration::from_millis(50), Duration::from_millis(200));
    let a = node(fast(redis_broker(&[r.url()])), 1);
    let b = node_with(fast(redis_broker(&[r.url()])), 2, move |app| {
        app.on_broker_gap(move |_server: &ServerHandle, gap: &Gap| {
            assert!(gap.instance.starts_with("redis://127.0.0.1:"));
            g.fetch_add(1, Ordering::Relaxed);
        })
    });
    ready(&[&a, &b]);
    let mut c = Client::open(b.local_addr(), "/t");
    wait_for("a subscription", Duration::from_secs(5), || {
        r.numsub("ringws:t") == 1
    });
    a.publish("t", "before");
    assert_eq!(c.next_text(), "before");
    r.kill();
    wait_for("/readyz to fail", Duration::from_secs(5), || {
        !a.readyz().ok && !b.readyz().ok
    });
    assert!(
        format!("{:?}", b.readyz()).contains("broker"),
        "{:?}",
        b.readyz()
    );
    a.publish("t", "while down");
    wait_for("a counted drop", Duration::from_secs(5), || {
        metric(&a, "ringws_broker_dropped_total{reason=\"disconnected\"}") >= 1.0
    });
    r.start_again();
    ready(&[&a, &b]);
    wait_for("the resubscription", Duration::from_secs(5), || {
        r.numsub("ringws:t") == 1
    });
    assert_eq!(until_delivered(&a, &mut c, "after").get(..5), Some("after"));
    assert!(gaps.load(Ordering::Relaxed) >= 1, "the gap callback ran");
    assert!(metric(&b, "ringws_broker_reconnects_total") >= 2.0);
    a.shutdown(Duration::from_secs(1));
    b.shutdown(Duration::from_secs(1));
}

fn resident_bytes() -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap();
    let kb: u64 = s
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .unwrap()
        .trim()
        .trim_end_matches(" kB")
        .parse()
        .unwrap();
    kb << 10
}

fn redis_stopped() {
    let Some(r) = start(None, &[]) else { return };
    let opts = |b: broker::Redis| {
        b.max_pending_bytes(1 << 20)
            .probe_interval(Duration::from_secs(60))
    };
    let a = node(opts(redis_broker(&[r.url()])), 1);
    let b = node(opts(redis_broker(&[r.url()])), 1);
    ready(&[&a, &b]);
    let mut c = Client::open(b.local_addr(), "/t");
    wait_for("a subscription", Duration::from_secs(5), || {
        r.numsub("ringws:t") == 1
    });
    r.pause(true);
    let before = resident_bytes();
    // Ten seconds of 64 KiB publishes into a Redis that reads nothing.
    let big = vec![b'x'; 64 << 10];
    let msg = String::from_utf8(big).unwrap();
    let t0 = Instant::now();
    let mut n = 0u64;
    while t0.elapsed() < Duration::from_secs(10) {
        a.publish("t", msg.as_str());
        n += 1;
        if n % 64 == 0 {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    let grown = resident_bytes().saturating_sub(before);
    let dropped = metric(&a, "ringws_broker_dropped_total{reason=\"backpressure\"}");
    assert!(dropped > 0.0, "drops counted ({n} published)");
    // The publishes (GBs of them) were dropped, not queued: what is held
    // is the pending limit, the kernel's socket buffers and the test's
    // other threads.
    assert!(grown < 256 << 20, "resident memory grew by {grown} bytes");
    r.pause(false);
    assert!(until_delivered(&a, &mut c, "resumed").starts_with("resumed"));
    a.shutdown(Duration::from_secs(1));
    b.shutdown(Duration::from_secs(1));
}

fn sentinel_failover() {
    let Some(master) = start(None, &[]) else {
        return;
    };
    let mport = master.port.to_string();
    let replica = start(None, &["--replicaof", "127.0.0.1", &mport]).unwrap();
    wait_for("the replica to sync", Duration::from_secs(10), || {
        replica.info("replication", "master_link_status").as_deref() == Some("up")
    });
    let sentinels: Vec<Redis> = (0..3)
        .map(|i| {
            let cfg = sentinel_config(&format!("s{i}"), master.port, 2);
            start(Some(cfg), &["--sentinel"]).unwrap()
        })
        .collect();
    let url = format!(
        "redis+sentinel://{}/mymaster",
        sentinels
            .iter()
            .map(|s| format!("127.0.0.1:{}", s.port))
            .collect::<Vec<_>>()
            .join(",")
    );
    let fast = |b: broker::Redis| b.backoff(Duration::from_millis(50), Duration::from_millis(500));
    let a = node(fast(broker::Redis::new([&url]).unwrap()), 1);
    let b = node(fast(broker::Redis::new([&url]).unwrap()), 1);
    ready(&[&a, &b]);
    let mut c = Client::open(b.local_addr(), "/t");
    wait_for("a subscription", Duration::from_secs(5), || {
        master.numsub("ringws:t") == 1
    });
    a.publish("t", "before");
    assert_eq!(c.next_text(), "before");
    // The Sentinels must know the replica before they can promote it.
    wait_for("a failover", Duration::from_secs(30), || {
        matches!(
            sentinels[0].command(&["SENTINEL", "FAILOVER", "mymaster"]),
            Frame::Simple(_)
        ) || {
            std::thread::sleep(Duration::from_millis(200));
            false
        }
    });
    wait_for("the replica to be master", Duration::from_secs(30), || {
        replica.info("replication", "role").as_deref() == Some("master")
    });
    let t0 = Instant::now();
    assert!(until_delivered(&a, &mut c, "after").starts_with("after"));
    println!("delivery resumed {:?} after the promotion", t0.elapsed());
    wait_for(
        "both nodes on the new master",
        Duration::from_secs(10),
        || replica.numsub("ringws:t") == 1,
    );
    a.shutdown(Duration::from_secs(1));
    b.shutdown(Duration::from_secs(1));
}

fn oversized_message_breaks_only_that_connection() {
    let Some(r) = start(None, &[]) else { return };
    let fast = |b: broker::Redis| b.backoff(Duration::from_millis(50), Duration::from_millis(200));
    let a = node(fast(redis_broker(&[r.url()])).max_message(1024), 1);
    let b = node(fast(redis_broker(&[r.url()])), 1);
    ready(&[&a, &b]);
    let mut c = Client::open(a.local_addr(), "/t");
    wait_for("a subscription", Duration::from_secs(5), || {
        r.numsub("ringws:t") == 1
    });
    // Past max_message: the connection is dropped, made again with a
    // fresh decoder, and delivery goes on.
    r.command(&["PUBLISH", "ringws:t", &"x".repeat(20_000)]);
    wait_for("/readyz to fail", Duration::from_secs(5), || !a.readyz().ok);
    ready(&[&a]);
    assert!(until_delivered(&b, &mut c, "after").starts_with("after"));
    a.shutdown(Duration::from_secs(1));
    b.shutdown(Duration::from_secs(1));
}

fn a_refusing_redis_is_not_hammered() {
    let Some(r) = start(None, &["--maxclients", "1"]) else {
        return;
    };
    // (After the start's readiness check has left.)
    std::thread::sleep(Duration::from_millis(300));
    let mut hold = redis_server::Conn::new(r.port);
    let slow = |b: broker::Redis| b.backoff(Duration::from_millis(500), Duration::from_secs(5));
    let a = node(slow(redis_broker(&[r.url()])), 1);
    std::thread::sleep(Duration::from_secs(2));
    assert!(!a.readyz().ok, "never up: Redis refuses every connection");
    // Backing off from 500 ms: a handful of attempts per connection.
    // Asked on the one connection Redis allows.
    let Frame::Bulk(info) = hold.command(&["INFO", "stats"]) else {
        panic!("INFO")
    };
    let attempts: u32 = String::from_utf8_lossy(&info)
        .lines()
        .find_map(|l| l.strip_prefix("total_connections_received:"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(attempts < 16, "{attempts} connections in 2 s");
    assert_eq!(metric(&a, "ringws_broker_reconnects_total"), 0.0);
    a.shutdown(Duration::from_secs(1));
}

fn a_refused_topic_costs_only_itself() {
    let Some(r) = start(None, &[]) else { return };
    // A user allowed only the channels of rooms (and the probes).
    let acl = r.command(&[
        "ACL",
        "SETUSER",
        "app",
        "on",
        ">pw",
        "resetchannels",
        "&ringws:room*",
        "&ringws:probe:*",
        "+@all",
        "~*",
    ]);
    assert_eq!(acl, Frame::Simple(bytes::Bytes::from_static(b"OK")));
    let url = format!("redis://app:pw@127.0.0.1:{}", r.port);
    let a = node(redis_broker(std::slice::from_ref(&url)), 1);
    let b = node(redis_broker(&[url]), 1);
    ready(&[&a, &b]);
    let mut bad = Client::open(b.local_addr(), "/secret");
    let mut good = Client::open(b.local_addr(), "/room1");
    wait_for("the refusal", Duration::from_secs(5), || {
        metric(&b, "ringws_broker_refused_topics") == 1.0
    });
    wait_for("the room", Duration::from_secs(5), || {
        r.numsub("ringws:room1") == 1
    });
    a.publish("room1", "hi");
    assert_eq!(good.next_text(), "hi");
    assert!(b.readyz().ok);
    assert_eq!(r.numsub("ringws:secret"), 0);
    // Local delivery of the refused topic still works.
    b.publish("secret", "local");
    assert_eq!(bad.next_text(), "local");
    a.shutdown(Duration::from_secs(1));
    b.shutdown(Duration::from_secs(1));
}

/// [`Room`], noting which worker thread holds each connection.
struct SpreadRoom(Arc<std::sync::Mutex<std::collections::HashSet<String>>>);

impl Handler for SpreadRoom {
    type Data = String;

    fn upgrade(&self, req: &Request<'_>) -> Upgrade<String> {
        Room.upgrade(req)
    }

    fn open(&self, ws: &mut Socket<'_, String>) {
        let thread = std::thread::current().name().unwrap_or("?").to_owned();
        self.0.lock().unwrap().insert(thread);
        Room.open(ws);
    }
}

fn compressed_once_per_receiving_node() {
    let Some(r) = start(None, &[]) else { return };
    // Node a publishes, uncompressed; node b's shared-mode subscribers are
    // on both its threads. b compresses each message once and shares the
    // frame between its threads.
    let a = node(redis_broker(&[r.url()]), 1);
    let threads = Arc::new(std::sync::Mutex::new(Default::default()));
    let route = ringws::app::Route::prefix("/", SpreadRoom(threads.clone()))
        .deflate(ringws::config::DeflateMode::Shared);
    let cfg = Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        threads: 2,
        backend: common::backend(),
        ..Config::default()
    };
    let b = App::new(cfg)
        .broker(redis_broker(&[r.url()]))
        .with_route(route)
        .start()
        .unwrap();
    ready(&[&a, &b]);
    let offer = "Sec-WebSocket-Extensions: permessage-deflate\r\n";
    let mut subs = Vec::new();
    while threads.lock().unwrap().len() < 2 {
        assert!(subs.len() < 64, "every connection on one thread");
        let (c, head) = Client::request(b.local_addr(), "/room", offer);
        assert!(head.contains("permessage-deflate"), "{head}");
        subs.push(c);
    }
    wait_for("b's subscription", Duration::from_secs(5), || {
        r.numsub("ringws:room") == 1
    });
    let mut publisher = Client::open(a.local_addr(), "/room");
    let text = "{\"price\":\"43000.00\",\"symbol\":\"BTC-USD\"} ".repeat(15);
    for _ in 0..20 {
        publisher.text(&text);
    }
    for (i, c) in subs.iter_mut().enumerate() {
        for k in 0..20 {
            let (b0, _) = c.frame().unwrap();
            assert_eq!(b0, 0xC1, "subscriber {i} message {k}: compressed");
        }
    }
    let zin = metric(&b, "ringws_deflate_input_bytes_total");
    assert_eq!(zin, 20.0 * text.len() as f64, "once per message on b");
    a.shutdown(Duration::from_secs(1));
    b.shutdown(Duration::from_secs(1));
}

fn remote_publishes_reach_the_application() {
    let Some(r) = start(None, &[]) else { return };
    // Node b listens to "ctl" with no WebSocket subscriber anywhere; node
    // a publishes to it. b's own publishes do not come back to it.
    let heard = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let h = heard.clone();
    let a = node(redis_broker(&[r.url()]), 1);
    let b = node_with(redis_broker(&[r.url()]), 2, |app| {
        app.on_remote_publish("ctl", move |_server, payload| {
            h.lock()
                .unwrap()
                .push(String::from_utf8_lossy(payload).into_owned());
        })
    });
    ready(&[&a, &b]);
    wait_for("b's subscription", Duration::from_secs(5), || {
        r.numsub("ringws:ctl") == 1
    });
    b.publish("ctl", "from b");
    for i in 0..3 {
        a.publish("ctl", format!("from a {i}").as_str());
    }
    wait_for("three messages", Duration::from_secs(5), || {
        heard.lock().unwrap().len() >= 3
    });
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(*heard.lock().unwrap(), ["from a 0", "from a 1", "from a 2"]);
    // A WebSocket subscriber of the topic on b still gets them, and stays
    // subscribed in Redis after it leaves (the listener holds it). The
    // subscriber's worker tells b's broker of it asynchronously: what is
    // published before that misses it (at most once), so a publishes until
    // one arrives.
    let mut c = Client::open(b.local_addr(), "/ctl");
    let got = until_delivered_on(&a, "ctl", &mut c, "both");
    wait_for("the listener", Duration::from_secs(5), || {
        heard.lock().unwrap().contains(&got)
    });
    drop(c);
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(r.numsub("ringws:ctl"), 1, "pinned past the linger");
    a.shutdown(Duration::from_secs(1));
    b.shutdown(Duration::from_secs(1));
}

/// `publish_local` from a connection and from the server reaches this
/// node's subscribers on every thread, and never the broker.
fn a_local_publish_stays_on_its_node() {
    let Some(r) = start(None, &[]) else { return };
    let a = node(redis_broker(&[r.url()]), 2);
    let b = node(redis_broker(&[r.url()]), 1);
    ready(&[&a, &b]);
    let mut on_a: Vec<Client> = (0..3).map(|_| Client::open(a.local_addr(), "/t")).collect();
    let mut on_b = Client::open(b.local_addr(), "/t");
    wait_for("both nodes' subscriptions", Duration::from_secs(5), || {
        r.numsub("ringws:t") == 2
    });
    on_a[0].text("here 1");
    for c in &mut on_a[1..] {
        assert_eq!(c.next_text(), "here 1");
    }
    a.publish_local("t", "here 2");
    for c in &mut on_a {
        assert_eq!(c.next_text(), "here 2");
    }
    // What reaches b first is the first thing a sent through Redis.
    a.publish("t", "everywhere");
    assert_eq!(on_b.next_text(), "everywhere");
    for c in &mut on_a {
        assert_eq!(c.next_text(), "everywhere");
    }
    assert_eq!(metric(&a, "ringws_broker_published_total"), 1.0);
    let calls = r.info("commandstats", "cmdstat_publish").unwrap();
    assert!(calls.starts_with("calls=1,"), "{calls}");
    a.shutdown(Duration::from_secs(1));
    b.shutdown(Duration::from_secs(1));
}

/// `publish_except` leaves one connection out wherever it is: on the
/// publishing node, or on another (named in the envelope), and the message
/// keeps its place among the publisher's others.
fn a_connection_is_left_out_on_any_node() {
    let Some(r) = start(None, &[]) else { return };
    let a = node(redis_broker(&[r.url()]), 2);
    let b = node(redis_broker(&[r.url()]), 2);
    ready(&[&a, &b]);
    let id = |c: &mut Client, node: &ServerHandle| {
        c.text("id?");
        let t = c.next_text();
        let (n, l) = t.split_once('.').unwrap();
        assert_eq!(n.parse::<u64>().unwrap(), node.node(), "{t}");
        ringws::app::ConnId {
            node: n.parse().unwrap(),
            local: l.parse().unwrap(),
        }
    };
    let mut on_b: Vec<Client> = (0..3).map(|_| Client::open(b.local_addr(), "/t")).collect();
    let mut on_a: Vec<Client> = (0..2).map(|_| Client::open(a.local_addr(), "/t")).collect();
    let x = id(&mut on_b[0], &b);
    let z = id(&mut on_a[0], &a);
    assert_ne!(a.node(), b.node());
    wait_for("both nodes' subscriptions", Duration::from_secs(5), || {
        r.numsub("ringws:t") == 2
    });
    // Once one of b's clients has a "first", every client gets up to that
    // one and nothing after it yet.
    let first = until_delivered(&a, &mut on_b[0], "first");
    for c in on_b[1..].iter_mut().chain(on_a.iter_mut()) {
        while c.next_text() != first {}
    }
    for i in 0..20 {
        a.publish_except("t", format!("m{i}").as_str(), x);
        a.publish("t", format!("n{i}").as_str());
    }
    a.publish_except("t", "local", z);
    a.publish("t", "end");
    let mut all = Vec::new();
    for i in 0..20 {
        all.push(format!("m{i}"));
        all.push(format!("n{i}"));
    }
    all.push("local".to_owned());
    all.push("end".to_owned());
    let without = |skip: &str| -> Vec<String> {
        all.iter()
            .filter(|m| !m.starts_with(skip))
            .cloned()
            .collect()
    };
    let got = |c: &mut Client| -> Vec<String> {
        let mut v = Vec::new();
        loop {
            let t = c.next_text();
            let end = t == "end";
            v.push(t);
            if end {
                return v;
            }
        }
    };
    assert_eq!(got(&mut on_b[0]), without("m"), "x, left out on its node");
    for (k, c) in on_b[1..].iter_mut().enumerate() {
        assert_eq!(got(c), all, "b's client {}, in order", k + 1);
    }
    assert_eq!(got(&mut on_a[0]), without("local"), "z, left out here");
    assert_eq!(got(&mut on_a[1]), all, "a's other client");
    a.shutdown(Duration::from_secs(1));
    b.shutdown(Duration::from_secs(1));
}

/// An instance named by a host name (`redis://localhost:PORT`, as in a
/// container: `redis://redis:6379`) is looked up off the broker's loop and
/// then used like an address.
fn a_named_instance_is_looked_up() {
    let Some(r) = start(None, &[]) else { return };
    // The test's Redis listens on 127.0.0.1 only: a machine whose
    // localhost is ::1 first cannot run this.
    use std::net::ToSocketAddrs;
    let first = ("localhost", r.port).to_socket_addrs().unwrap().next();
    if first.map(|a| a.ip()) != Some([127, 0, 0, 1].into()) {
        eprintln!("skipped: localhost is {first:?} here");
        return;
    }
    let url = format!("redis://localhost:{}", r.port);
    let (a, b) = (
        node(redis_broker(std::slice::from_ref(&url)), 1),
        node(redis_broker(&[url]), 1),
    );
    ready(&[&a, &b]);
    let mut ca = Client::open(a.local_addr(), "/named");
    let mut cb = Client::open(b.local_addr(), "/named");
    wait_for("two subscriptions", Duration::from_secs(5), || {
        r.numsub("ringws:named") == 2
    });
    ca.text("hello");
    assert_eq!(cb.next_text(), "hello");
    a.shutdown(Duration::from_secs(1));
    b.shutdown(Duration::from_secs(1));
}

/// Sentinels that require a password get it from the URL's
/// `sentinel_password`; without it the node is not ready, and says why.
fn a_sentinel_with_a_password() {
    let Some(master) = start(None, &[]) else {
        return;
    };
    let cfg = sentinel_config("auth", master.port, 1);
    let mut conf = std::fs::read_to_string(&cfg).unwrap();
    conf.push_str("requirepass s3ntinel\n");
    std::fs::write(&cfg, conf).unwrap();
    let sentinel = start(Some(cfg), &["--sentinel"]).unwrap();
    let url = |q: &str| format!("redis+sentinel://127.0.0.1:{}/mymaster{q}", sentinel.port);
    let fast = |b: broker::Redis| b.backoff(Duration::from_millis(50), Duration::from_millis(500));
    let a = node(
        fast(broker::Redis::new([url("?sentinel_password=s3ntinel")]).unwrap()),
        1,
    );
    let b = node(
        fast(broker::Redis::new([url("?sentinel_password=s3ntinel")]).unwrap()),
        1,
    );
    let without = node(fast(broker::Redis::new([url("")]).unwrap()), 1);
    let wrong = node(
        fast(broker::Redis::new([url("?sentinel_password=nope")]).unwrap()),
        1,
    );
    ready(&[&a, &b]);
    let mut c = Client::open(b.local_addr(), "/t");
    wait_for("a subscription", Duration::from_secs(5), || {
        master.numsub("ringws:t") == 1
    });
    assert!(until_delivered(&a, &mut c, "hello").starts_with("hello"));
    for (n, why) in [(&without, "NOAUTH"), (&wrong, "AUTH refused")] {
        wait_for(why, Duration::from_secs(5), || {
            n.readyz().checks.iter().any(|(_, _, d)| d.contains(why))
        });
        assert!(!n.readyz().ok);
    }
    for n in [a, b, without, wrong] {
        n.shutdown(Duration::from_secs(1));
    }
}

on_both_backends!(
    a_connection_is_left_out_on_any_node,
    a_local_publish_stays_on_its_node,
    a_sentinel_with_a_password,
    a_named_instance_is_looked_up,
    remote_publishes_reach_the_application,
    compressed_once_per_receiving_node,
    oversized_message_breaks_only_that_connection,
    a_refusing_redis_is_not_hammered,
    a_refused_topic_costs_only_itself,
    delivery_across_three_nodes,
    interest_follows_subscribers,
    churn_during_publishing,
    two_instances_share_the_topics,
    redis_restart,
    redis_stopped,
    sentinel_failover,
);
