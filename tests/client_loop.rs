//! The client side of the loop (what the load generator runs on), against
//! the real server, on both backends: connect, handshake, echo, close.

use std::time::{Duration, Instant};

use ringws::app::{App, Echo};
use ringws::proto::client::ClientHandshake;
use ringws::proto::{Connection, Event, Limits, MessageKind, Payload};
use ringws::runtime::client::{run_loops, Gone, Handler, InputBuf, Io, LoopOptions, SockId};
use ringws::{BackendKind, Config, ServerHandle};

/// A connection: its handshake, then its connection, and the bytes of a
/// response head that came in pieces.
type State = (ClientHandshake, Option<Connection>, Vec<u8>);

/// Opens `n` connections, sends each one message, checks each echo, closes.
struct Echoes {
    n: usize,
    conns: Vec<Option<State>>,
    echoed: usize,
    closed: usize,
    deadline: Instant,
    failed: Option<String>,
}

impl Echoes {
    fn state(&mut self, id: SockId) -> &mut Option<State> {
        if self.conns.len() <= id.index() {
            self.conns.resize_with(id.index() + 1, || None);
        }
        &mut self.conns[id.index()]
    }
}

impl Handler for Echoes {
    fn connected(&mut self, io: &mut Io, id: SockId, res: std::io::Result<()>) {
        if let Err(e) = res {
            self.failed = Some(format!("connect: {e}"));
            io.close(id);
            return;
        }
        let hs = ClientHandshake::new("localhost", "/", [id.index() as u8; 16]);
        io.send(id, hs.request());
        *self.state(id) = Some((hs, None, Vec::new()));
    }

    fn data(&mut self, io: &mut Io, id: SockId, mut buf: InputBuf) {
        let now = io.now();
        if self.conns.len() <= id.index() {
            self.conns.resize_with(id.index() + 1, || None);
        }
        let Some((hs, conn, acc)) = self.conns[id.index()].as_mut() else {
            return;
        };
        let mut start = 0;
        let input: &mut [u8] = if conn.is_none() {
            acc.extend_from_slice(buf.as_slice());
            match hs.parse_response(acc, 4096) {
                Ok(None) => return,
                Ok(Some(head)) => {
                    let mut c = Connection::client(Limits::default(), 7);
                    let mut out = Vec::new();
                    c.write_message(MessageKind::Text, b"hello through the loop", &mut out)
                        .unwrap();
                    io.send(id, &out);
                    *conn = Some(c);
                    start = head;
                    acc.as_mut_slice()
                }
                Err(e) => {
                    self.failed = Some(format!("handshake: {e}"));
                    io.close(id);
                    return;
                }
            }
        } else {
            buf.as_mut_slice()
        };
        let c = conn.as_mut().unwrap();
        let mut off = start;
        let mut out = Vec::new();
        while off < input.len() {
            let (n, ev) = c.read(&mut input[off..], now);
            match ev {
                Ok(Some(Event::Message { kind, payload })) => {
                    let data = match &payload {
                        Payload::Input(r) => input[off + r.start..off + r.end].to_vec(),
                        Payload::Owned(v) => v.clone(),
                    };
                    assert_eq!(
                        (kind, &data[..]),
                        (MessageKind::Text, &b"hello through the loop"[..])
                    );
                    self.echoed += 1;
                    c.close(1000, "", now);
                }
                Ok(_) => {}
                Err(e) => self.failed = Some(format!("protocol: {e}")),
            }
            off += n;
        }
        c.take_control(&mut out);
        io.send(id, &out);
        if c.is_closed() {
            io.close_after_flush(id);
        }
    }

    fn eof(&mut self, io: &mut Io, id: SockId, _err: Option<std::io::Error>) {
        io.close(id);
    }

    fn gone(&mut self, _io: &mut Io, id: SockId, _why: Gone) {
        *self.state(id) = None;
        self.closed += 1;
    }

    fn next_deadline(&self) -> Option<Instant> {
        Some(self.deadline)
    }

    fn done(&self) -> bool {
        self.closed == self.n || self.failed.is_some() || Instant::now() >= self.deadline
    }
}

fn run(backend: BackendKind) {
    let server = echo_server(Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        threads: 1,
        backend,
        ..Config::default()
    })
    .unwrap();
    let addr = server.local_addr();
    let opts = LoopOptions {
        backend,
        ..LoopOptions::default()
    };
    let results = run_loops(
        1,
        opts,
        move |_, io| {
            for _ in 0..20 {
                io.connect(addr, None).unwrap();
            }
            Echoes {
                n: 20,
                conns: Vec::new(),
                echoed: 0,
                closed: 0,
                deadline: Instant::now() + Duration::from_secs(10),
                failed: None,
            }
        },
        |h| (h.echoed, h.closed, h.failed),
    )
    .unwrap();
    assert_eq!(results, vec![(20, 20, None)]);
    server.shutdown(GRACE);
}

#[test]
fn connect_echo_close_on_io_uring() {
    run(BackendKind::IoUring);
}

#[test]
fn connect_echo_close_on_epoll() {
    run(BackendKind::Epoll);
}

/// How long a test's shutdown waits for closing handshakes.
const GRACE: std::time::Duration = std::time::Duration::from_secs(2);

/// The `ringws` binary's server: echo on every path.
fn echo_server(cfg: Config) -> Result<ServerHandle, ringws::StartError> {
    App::new(cfg).route_prefix("/", Echo).start()
}
