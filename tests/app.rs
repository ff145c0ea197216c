//! The application API, on 127.0.0.1:0, spoken to with raw bytes. Every
//! test runs on both backends.

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use ringws::app::{
    Accept, App, BackpressurePolicy, Closed, Echo, Handler, Message, Reject, Request, Route,
    SendStatus, Socket, SocketRef, Upgrade,
};
use ringws::{BackendKind, Config, ServerHandle};

mod common;
use common::{close_code, Client};

const GRACE: Duration = Duration::from_secs(2);

fn config(backend: BackendKind, threads: usize) -> Config {
    Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        threads,
        close_timeout: Duration::from_millis(300),
        handshake_timeout: Duration::from_millis(400),
        backend,
        ..Config::default()
    }
}

/// Runs `test` on each backend.
fn on_both(test: impl Fn(BackendKind)) {
    for b in [BackendKind::IoUring, BackendKind::Epoll] {
        test(b);
    }
}

/// User data that counts its drops.
struct Counted(Arc<AtomicUsize>);

impl Drop for Counted {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

/// A handler that records its callbacks.
#[derive(Default)]
struct Recorder {
    drops: Arc<AtomicUsize>,
    closes: Arc<Mutex<Vec<u16>>>,
    refs: Arc<Mutex<Vec<SocketRef>>>,
}

impl Handler for Recorder {
    type Data = Counted;

    fn upgrade(&self, req: &Request<'_>) -> Upgrade<Counted> {
        match req.query_param("say") {
            Some("no") => Reject::new(401, "no entry")
                .header("WWW-Authenticate", "Bearer")
                .into(),
            _ => {
                let mut a = Accept::new(Counted(self.drops.clone()));
                if req.protocols().any(|p| p == "chat") {
                    a = a.protocol("chat").header("X-Hello", "1");
                }
                a.into()
            }
        }
    }

    fn open(&self, ws: &mut Socket<'_, Counted>) {
        self.refs.lock().unwrap().push(ws.handle());
    }

    fn message(&self, ws: &mut Socket<'_, Counted>, msg: Message<'_>) {
        match msg {
            Message::Text("close") => ws.close(4000, "asked"),
            Message::Text("terminate") => ws.terminate(),
            // Keeps the worker busy, so that its mailbox fills.
            Message::Text("stall") => std::thread::sleep(Duration::from_millis(300)),
            Message::Text(t) if t.starts_with("sub ") => {
                ws.subscribe(&t[4..]);
                ws.send_text("subscribed");
            }
            Message::Text(t) if t.starts_with("pub ") => {
                let (topic, m) = t[4..].split_once(' ').unwrap();
                ws.publish(topic, m);
            }
            m => {
                ws.send(m);
            }
        }
    }

    fn close(&self, _data: Counted, closed: &Closed<'_>) {
        self.closes.lock().unwrap().push(closed.code);
    }
}

fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
    let t = Instant::now();
    while !f() {
        assert!(
            t.elapsed() < Duration::from_secs(5),
            "timed out waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// A server with a [`Recorder`] on `/r` and an echo under `/echo`, and
/// what the recorder counts: drops, close codes, handles.
type Recorded = (
    ServerHandle,
    Arc<AtomicUsize>,
    Arc<Mutex<Vec<u16>>>,
    Arc<Mutex<Vec<SocketRef>>>,
);

fn recorder(backend: BackendKind, threads: usize) -> Recorded {
    let r = Recorder::default();
    let (d, c, refs) = (r.drops.clone(), r.closes.clone(), r.refs.clone());
    let s = App::new(config(backend, threads))
        .route("/r", r)
        .route_prefix("/echo", Echo)
        .start()
        .unwrap();
    (s, d, c, refs)
}

#[test]
fn routes_reject_and_subprotocols() {
    on_both(|b| {
        let (s, ..) = recorder(b, 1);
        let addr = s.local_addr();
        // No route: 404.
        let (mut c, head) = Client::request(addr, "/nowhere", "");
        assert!(head.starts_with("HTTP/1.1 404 Not Found\r\n"), "{head}");
        assert_eq!(c.rest(), b"no such path\n");
        // A prefix takes the paths below it, not beside it.
        Client::open(addr, "/echo/deeper?x=1");
        let (_, head) = Client::request(addr, "/echoes", "");
        assert!(head.starts_with("HTTP/1.1 404"), "{head}");
        // Rejected by the hook: its status, header and body.
        let (mut c, head) = Client::request(addr, "/r?say=no", "");
        assert!(head.starts_with("HTTP/1.1 401 Unauthorized\r\n"), "{head}");
        assert!(head.contains("\r\nWWW-Authenticate: Bearer\r\n"), "{head}");
        assert_eq!(c.rest(), b"no entry");
        // A subprotocol from the offer, and an extra header.
        let (_, head) = Client::request(addr, "/r", "Sec-WebSocket-Protocol: superchat, chat\r\n");
        assert!(
            head.contains("\r\nSec-WebSocket-Protocol: chat\r\n"),
            "{head}"
        );
        assert!(head.contains("\r\nX-Hello: 1\r\n"), "{head}");
        // None chosen: none in the response.
        let (_, head) = Client::request(addr, "/r", "Sec-WebSocket-Protocol: other\r\n");
        assert!(head.starts_with("HTTP/1.1 101"), "{head}");
        assert!(!head.contains("Sec-WebSocket-Protocol"), "{head}");
        s.shutdown(GRACE);
    });
}

#[test]
fn user_data_is_dropped_once_on_every_close_path() {
    on_both(|b| {
        let (s, drops, closes, _) = recorder(b, 1);
        let addr = s.local_addr();
        // The peer closes.
        let mut c = Client::open(addr, "/r");
        c.send(0x88, &[0x03, 0xe8]);
        let (b0, p) = c.frame().unwrap();
        assert_eq!((b0, close_code(&p)), (0x88, 1000));
        // The server closes, the peer answers.
        let mut c = Client::open(addr, "/r");
        c.text("close");
        let (b0, p) = c.frame().unwrap();
        assert_eq!((b0, close_code(&p)), (0x88, 4000));
        c.send(0x88, &p);
        assert!(c.frame().is_none());
        // Terminated, and a peer that vanishes.
        let mut c = Client::open(addr, "/r");
        c.text("terminate");
        assert!(c.frame().is_none());
        drop(Client::open(addr, "/r"));
        wait_for("four closes", || closes.lock().unwrap().len() == 4);
        // Open at shutdown: 1001, and the data goes too.
        let mut c = Client::open(addr, "/r");
        c.text("hi");
        assert_eq!(c.next_text(), "hi");
        let stopper = std::thread::spawn(move || s.shutdown(GRACE));
        let (b0, p) = c.frame().unwrap();
        assert_eq!((b0, close_code(&p)), (0x88, 1001));
        c.send(0x88, &p);
        stopper.join().unwrap();
        let mut got = closes.lock().unwrap().clone();
        got.sort();
        assert_eq!(got, vec![1000, 1001, 1006, 1006, 4000]);
        assert_eq!(drops.load(Ordering::SeqCst), 5);
    });
}

#[test]
fn socket_refs_send_from_other_threads_and_fail_once_gone() {
    on_both(|b| {
        let (s, _, closes, refs) = recorder(b, 2);
        let mut c = Client::open(s.local_addr(), "/r");
        wait_for("the handle", || refs.lock().unwrap().len() == 1);
        let r = refs.lock().unwrap()[0].clone();
        let senders: Vec<_> = (0..4)
            .map(|t| {
                let r = r.clone();
                std::thread::spawn(move || {
                    for i in 0..50 {
                        let st = r.send(format!("{t}:{i}").as_str()).unwrap();
                        assert_eq!(st, SendStatus::Sent);
                    }
                })
            })
            .collect();
        for t in senders {
            t.join().unwrap();
        }
        // Every message, each sender's in order.
        let mut next = [0; 4];
        for _ in 0..200 {
            let m = c.next_text();
            let (t, i) = m.split_once(':').unwrap();
            let (t, i): (usize, usize) = (t.parse().unwrap(), i.parse().unwrap());
            assert_eq!(i, next[t], "sender {t} out of order");
            next[t] += 1;
        }
        r.close(1000, "bye").unwrap();
        let (b0, p) = c.frame().unwrap();
        assert_eq!((b0, close_code(&p), &p[2..]), (0x88, 1000, &b"bye"[..]));
        c.send(0x88, &p);
        wait_for("the close", || closes.lock().unwrap().len() == 1);
        assert!(!r.is_open());
        assert!(r.send("late").is_err());
        s.shutdown(GRACE);
    });
}

#[test]
fn mailboxes_of_busy_workers_are_bounded() {
    on_both(|b| {
        let r = Recorder::default();
        let refs = r.refs.clone();
        let s = App::new(Config {
            max_mailbox_bytes: 4096,
            ..config(b, 1)
        })
        .route("/r", r)
        .start()
        .unwrap();
        let mut c = Client::open(s.local_addr(), "/r");
        wait_for("the handle", || refs.lock().unwrap().len() == 1);
        let r = refs.lock().unwrap()[0].clone();
        // While the worker sleeps in a callback, 100 frames of 102 bytes
        // come for it: about 4 KiB of them are kept, the rest dropped.
        c.text("stall");
        std::thread::sleep(Duration::from_millis(50));
        let payload = "x".repeat(100);
        let sent = (0..100)
            .filter(|_| r.send(payload.as_str()).unwrap() == SendStatus::Sent)
            .count();
        assert!((40..=41).contains(&sent), "{sent} kept");
        for _ in 0..sent {
            assert_eq!(c.next_text(), payload);
        }
        // Drained: sends are taken again.
        assert_eq!(r.send("after").unwrap(), SendStatus::Sent);
        assert_eq!(c.next_text(), "after");
        s.shutdown(GRACE);
    });
}

#[test]
fn publish_reaches_every_subscriber_once_in_order() {
    on_both(|b| {
        let (s, ..) = recorder(b, 2);
        let addr = s.local_addr();
        let mut subs: Vec<Client> = (0..6).map(|_| Client::open(addr, "/r")).collect();
        for c in &mut subs {
            c.text("sub news");
            assert_eq!(c.next_text(), "subscribed");
        }
        // From outside, to every thread; and from a subscriber, to all but
        // itself.
        for i in 0..300 {
            s.publish("news", format!("h{i}").as_str());
        }
        subs[0].text("pub news from-0");
        for (k, c) in subs.iter_mut().enumerate() {
            for i in 0..300 {
                assert_eq!(c.next_text(), format!("h{i}"));
            }
            if k != 0 {
                assert_eq!(c.next_text(), "from-0");
            }
        }
        // Unsubscribed (by closing) while publishing: the others still get
        // everything.
        subs.pop().unwrap().send(0x88, &[0x03, 0xe8]);
        for i in 0..100 {
            s.publish("news", format!("g{i}").as_str());
        }
        for c in &mut subs {
            for i in 0..100 {
                assert_eq!(c.next_text(), format!("g{i}"));
            }
        }
        s.shutdown(GRACE);
    });
}

/// Sends 64 KiB messages to a client that does not read until a send is
/// dropped, then says so once `drain` comes.
struct Flood {
    log: Arc<Mutex<Vec<SendStatus>>>,
    policy: BackpressurePolicy,
}

impl Handler for Flood {
    type Data = ();

    fn upgrade(&self, _: &Request<'_>) -> Upgrade<()> {
        Upgrade::accept(())
    }

    fn open(&self, ws: &mut Socket<'_, ()>) {
        let big = vec![b'x'; 64 << 10];
        for _ in 0..1000 {
            let st = ws.send_binary(&big);
            self.log.lock().unwrap().push(st);
            if st == SendStatus::Dropped {
                break;
            }
        }
    }

    fn drain(&self, ws: &mut Socket<'_, ()>) {
        ws.send_text("drained");
    }
}

#[test]
fn slow_consumers_get_backpressure_then_dropped_then_drain() {
    on_both(|b| {
        let log = Arc::new(Mutex::new(Vec::new()));
        let flood = Flood {
            log: log.clone(),
            policy: BackpressurePolicy::Drop,
        };
        let s = App::new(config(b, 1))
            .with_route(Route::exact("/", flood).max_backpressure(256 << 10))
            .start()
            .unwrap();
        let mut c = Client::open(s.local_addr(), "/");
        wait_for("a dropped send", || {
            log.lock().unwrap().last() == Some(&SendStatus::Dropped)
        });
        let got = log.lock().unwrap().clone();
        let first_bp = got
            .iter()
            .position(|s| *s == SendStatus::Backpressure)
            .unwrap();
        assert!(got[..first_bp].iter().all(|s| *s == SendStatus::Sent));
        assert_eq!(got.len(), first_bp + 2, "{got:?}");
        // Reading it all drains the queue: every queued message, then the
        // handler's word from `drain`.
        for _ in 0..got.len() - 1 {
            let (b0, p) = c.frame().unwrap();
            assert_eq!((b0, p.len()), (0x82, 64 << 10));
        }
        assert_eq!(c.next_text(), "drained");
        s.shutdown(GRACE);

        // Under the Close policy the connection is closed with 1008.
        let flood = Flood {
            log: Arc::new(Mutex::new(Vec::new())),
            policy: BackpressurePolicy::Close,
        };
        let policy = flood.policy;
        let s = App::new(config(b, 1))
            .with_route(
                Route::exact("/", flood)
                    .max_backpressure(256 << 10)
                    .on_backpressure(policy),
            )
            .start()
            .unwrap();
        let mut c = Client::open(s.local_addr(), "/");
        let code = loop {
            let (b0, p) = c.frame().unwrap();
            if b0 == 0x88 {
                break close_code(&p);
            }
        };
        assert_eq!(code, 1008);
        s.shutdown(GRACE);
    });
}

/// Echo with an idle timeout.
fn idle_server(b: BackendKind) -> ServerHandle {
    let cfg = Config {
        close_timeout: Duration::from_secs(5),
        ..config(b, 1)
    };
    App::new(cfg)
        .with_route(Route::prefix("/", Echo).idle_timeout(Duration::from_millis(400)))
        .start()
        .unwrap()
}

#[test]
fn idle_connections_are_pinged_then_closed() {
    on_both(|b| {
        let s = idle_server(b);
        // Silent and deaf: a Ping at half the timeout, then 1001.
        let mut c = Client::open(s.local_addr(), "/");
        let t = Instant::now();
        let (b0, _) = c.frame().unwrap();
        assert_eq!(b0, 0x89);
        let (b0, p) = c.frame().unwrap();
        assert_eq!((b0, close_code(&p)), (0x88, 1001));
        assert!(
            t.elapsed() >= Duration::from_millis(400),
            "{:?}",
            t.elapsed()
        );
        // It answered no Ping in the whole idle timeout: the connection is
        // cut right after the Close, not after the close timeout (5 s
        // here) spent waiting for a Close it will not send.
        let closed = Instant::now();
        assert_eq!(c.frame(), None);
        assert!(
            closed.elapsed() < Duration::from_millis(1000),
            "cut {:?} after the Close",
            closed.elapsed()
        );
        // Answering the Pings keeps it open.
        let mut c = Client::open(s.local_addr(), "/");
        let t = Instant::now();
        c.s.set_read_timeout(Some(Duration::from_millis(50)))
            .unwrap();
        while t.elapsed() < Duration::from_millis(1200) {
            let mut b = [0u8; 64];
            match c.s.read(&mut b) {
                Ok(0) => panic!("closed while answering pings"),
                Ok(n) => {
                    c.buf.extend_from_slice(&b[..n]);
                    while let Some((b0, p)) = {
                        if c.buf.len() >= 2 && c.buf.len() >= 2 + (c.buf[1] & 0x7f) as usize {
                            let n = (c.buf[1] & 0x7f) as usize;
                            let f = (c.buf[0], c.buf[2..2 + n].to_vec());
                            c.buf.drain(..2 + n);
                            Some(f)
                        } else {
                            None
                        }
                    } {
                        assert_eq!(b0, 0x89, "only pings while idle");
                        c.send(0x8a, &p);
                    }
                }
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                Err(e) => panic!("{e}"),
            }
        }
        c.s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        c.text("still here");
        assert_eq!(c.next_text(), "still here");
        s.shutdown(GRACE);
    });
}

/// An application-level ping at half the idle timeout ("ping?" as text),
/// echo otherwise, and its own code at the timeout.
struct AppPing;

impl Handler for AppPing {
    type Data = ();

    fn upgrade(&self, _req: &Request<'_>) -> Upgrade<()> {
        Upgrade::accept(())
    }

    fn message(&self, ws: &mut Socket<'_, ()>, msg: Message<'_>) {
        ws.send(msg);
    }

    fn idle(&self, ws: &mut Socket<'_, ()>) {
        ws.send_text("ping?");
    }
}

#[test]
fn idle_hook_and_close_code_are_the_routes() {
    on_both(|b| {
        let route = Route::prefix("/", AppPing)
            .idle_timeout(Duration::from_millis(400))
            .idle_close(4201, "Pong reply not received");
        let s = App::new(config(b, 1)).with_route(route).start().unwrap();
        // Silent: the handler's own ping (no WebSocket Ping), then its code.
        let mut c = Client::open(s.local_addr(), "/");
        let t = Instant::now();
        assert_eq!(c.next_text(), "ping?");
        let (b0, p) = c.frame().unwrap();
        assert_eq!((b0, close_code(&p)), (0x88, 4201));
        assert_eq!(&p[2..], b"Pong reply not received");
        assert!(
            t.elapsed() >= Duration::from_millis(400),
            "{:?}",
            t.elapsed()
        );
        // Answering at the application's level keeps it open.
        let mut c = Client::open(s.local_addr(), "/");
        let t = Instant::now();
        let mut asked = 0;
        while t.elapsed() < Duration::from_millis(1200) {
            assert_eq!(c.next_text(), "ping?");
            asked += 1;
            c.text("pong");
            assert_eq!(c.next_text(), "pong");
        }
        assert!(asked >= 2, "asked {asked} times");
        s.shutdown(GRACE);
    });
}

#[test]
fn the_shutdown_close_code_is_the_routes() {
    on_both(|b| {
        let route = Route::prefix("/", AppPing).shutdown_close(4200, "reconnect now");
        let s = App::new(config(b, 1)).with_route(route).start().unwrap();
        let mut c = Client::open(s.local_addr(), "/");
        c.text("hi");
        assert_eq!(c.next_text(), "hi");
        let s2 = s.clone();
        let t = std::thread::spawn(move || s2.shutdown(Duration::from_secs(2)));
        let (b0, p) = c.frame().unwrap();
        assert_eq!(
            (b0, close_code(&p), &p[2..]),
            (0x88, 4200, &b"reconnect now"[..])
        );
        c.send(0x88, &p);
        t.join().unwrap();
    });
}

#[test]
fn a_socket_ref_publishes_to_everyone_but_itself() {
    on_both(|b| {
        let (s, _, _, refs) = recorder(b, 2);
        let mut clients: Vec<Client> = (0..4).map(|_| Client::open(s.local_addr(), "/r")).collect();
        for c in &mut clients {
            c.text("sub t");
            assert_eq!(c.next_text(), "subscribed");
        }
        wait_for("the handles", || refs.lock().unwrap().len() == 4);
        // Each one publishes through its handle, from this thread: the
        // three others get it, the publisher does not (its next message is
        // the one published to all).
        let refs = refs.lock().unwrap().clone();
        for (k, r) in refs.iter().enumerate() {
            assert_eq!(
                r.publish("t", format!("from {k}").as_str()),
                SendStatus::Sent
            );
        }
        s.publish("t", "all");
        // Handles are in open order, clients in connect order: match them
        // by what each one misses.
        let mut missed = Vec::new();
        for c in &mut clients {
            let mut got: Vec<String> = (0..3).map(|_| c.next_text()).collect();
            assert_eq!(c.next_text(), "all");
            got.sort();
            let k = (0..4)
                .find(|k| !got.contains(&format!("from {k}")))
                .unwrap();
            assert_eq!(got.len(), 3);
            missed.push(k);
        }
        missed.sort();
        assert_eq!(missed, vec![0, 1, 2, 3], "each one missed only its own");
        s.shutdown(GRACE);
    });
}

/// Decides in another thread: `?token=good` is let in, others get 401,
/// `?token=slow` is never decided in time.
struct Auth {
    jobs: Mutex<mpsc::Sender<(String, ringws::app::Deferred<String>)>>,
}

impl Handler for Auth {
    type Data = String;

    fn upgrade(&self, req: &Request<'_>) -> Upgrade<String> {
        let token = req.query_param("token").unwrap_or("").to_owned();
        let jobs = self.jobs.lock().unwrap().clone();
        Upgrade::defer(move |d| jobs.send((token, d)).unwrap())
    }

    fn open(&self, ws: &mut Socket<'_, String>) {
        let hello = format!("hello {}", ws.data());
        ws.send_text(&hello);
    }
}

#[test]
fn deferred_upgrades_accept_reject_and_time_out() {
    on_both(|b| {
        let (tx, rx) = mpsc::channel::<(String, ringws::app::Deferred<String>)>();
        let decider = std::thread::spawn(move || {
            for (token, d) in rx {
                std::thread::sleep(Duration::from_millis(20));
                match token.as_str() {
                    "good" => d.accept("ann".to_owned()),
                    "slow" => {
                        // Decided after the handshake timeout: dropped.
                        std::thread::sleep(Duration::from_millis(700));
                        d.accept("late".to_owned());
                    }
                    _ => d.reject(Reject::new(401, "bad token")),
                }
            }
        });
        let s = App::new(config(b, 1))
            .route(
                "/",
                Auth {
                    jobs: Mutex::new(tx),
                },
            )
            .start()
            .unwrap();
        let addr = s.local_addr();
        let mut c = Client::open(addr, "/?token=good");
        assert_eq!(c.next_text(), "hello ann");
        let (mut c, head) = Client::request(addr, "/?token=bad", "");
        assert!(head.starts_with("HTTP/1.1 401 "), "{head}");
        assert_eq!(c.rest(), b"bad token");
        // The handshake timeout (400 ms) still runs.
        let t = Instant::now();
        let (mut c, _) = {
            let mut s = TcpStream::connect(addr).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            s.write_all(b"GET /?token=slow HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n").unwrap();
            (Client { s, buf: Vec::new() }, ())
        };
        assert!(c.rest().is_empty());
        assert!(
            t.elapsed() >= Duration::from_millis(350),
            "{:?}",
            t.elapsed()
        );
        s.shutdown(GRACE);
        drop(s);
        decider.join().unwrap();
    });
}

/// A handler that panics where it is told to.
struct Panicky;

impl Handler for Panicky {
    /// Panic in `open`?
    type Data = bool;

    fn upgrade(&self, req: &Request<'_>) -> Upgrade<bool> {
        match req.query_param("boom") {
            Some("upgrade") => panic!("boom in upgrade"),
            Some("defer") => Upgrade::defer(|_| panic!("boom deferring")),
            q => Accept::new(q == Some("open")).into(),
        }
    }

    fn open(&self, ws: &mut Socket<'_, bool>) {
        if *ws.data() {
            panic!("boom in open");
        }
    }

    fn message(&self, ws: &mut Socket<'_, bool>, msg: Message<'_>) {
        if msg == Message::Text("panic") {
            ws.send_text("before");
            panic!("boom in message");
        }
        ws.send(msg);
    }

    fn ping(&self, _ws: &mut Socket<'_, bool>, payload: &[u8]) {
        if payload == b"panic" {
            panic!("boom in ping");
        }
    }

    fn close(&self, _data: bool, closed: &Closed<'_>) {
        if closed.code == 1011 {
            panic!("boom in close");
        }
    }
}

#[test]
fn a_panicking_handler_closes_its_connection_with_1011_and_nothing_else() {
    on_both(|b| {
        // One thread: had a panic ended it, nothing would answer after.
        let s = App::new(config(b, 1))
            .route_prefix("/p", Panicky)
            .start()
            .unwrap();
        let addr = s.local_addr();
        let mut bystander = Client::open(addr, "/p");
        let check = |by: &mut Client, n: usize| {
            by.text(&format!("still here {n}"));
            assert_eq!(by.next_text(), format!("still here {n}"));
            let mut c = Client::open(addr, "/p");
            c.text("fresh");
            assert_eq!(c.next_text(), "fresh");
        };
        // In `message`: what it sent before the panic goes out, then 1011.
        let mut c = Client::open(addr, "/p");
        c.text("panic");
        assert_eq!(c.next_text(), "before");
        let (b0, p) = c.frame().unwrap();
        assert_eq!((b0, close_code(&p)), (0x88, 1011));
        c.send(0x88, &p);
        check(&mut bystander, 1);
        // In `ping`.
        let mut c = Client::open(addr, "/p");
        c.send(0x89, b"panic");
        let (b0, p) = c.frame().unwrap();
        assert_eq!(b0, 0x8A, "the Pong is queued before the callback");
        assert_eq!(p, b"panic");
        let (b0, p) = c.frame().unwrap();
        assert_eq!((b0, close_code(&p)), (0x88, 1011));
        check(&mut bystander, 2);
        // In `open`: the 101, then 1011.
        let mut c = Client::open(addr, "/p?boom=open");
        let (b0, p) = c.frame().unwrap();
        assert_eq!((b0, close_code(&p)), (0x88, 1011));
        check(&mut bystander, 3);
        // In `upgrade`, and in a deferred decision: 500.
        for q in ["upgrade", "defer"] {
            let (_, head) = Client::request(addr, &format!("/p?boom={q}"), "");
            assert!(head.starts_with("HTTP/1.1 500"), "{q}: {head}");
            check(&mut bystander, 4);
        }
        s.shutdown(GRACE);
    });
}
