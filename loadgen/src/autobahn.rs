//! The client for Autobahn|Testsuite's fuzzing server: ask for the number of
//! cases, run each one echoing every message back, then ask for the report.
//! The protocol work is ringws's own core in the client role; this only
//! moves bytes.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::Args;
use ringws::proto::client::ClientHandshake;
use ringws::proto::deflate::ClientOffer;
use ringws::proto::{Connection, Event, Limits, MessageKind, Payload};
use ringws::runtime::client::{run_loops, Gone, Handler, InputBuf, Io, LoopOptions, SockId};

use crate::target::Target;

/// `loadgen autobahn` options.
#[derive(Args, Debug)]
pub struct AutobahnArgs {
    /// The fuzzing server.
    #[arg(long, default_value = "ws://127.0.0.1:9001")]
    url: String,
    /// The agent name the results are filed under.
    #[arg(long, default_value = "ringws")]
    agent: String,
    /// Longest time one case may take.
    #[arg(long, default_value_t = 120)]
    case_timeout_secs: u64,
    /// Kernel interface: auto (io_uring where allowed, else epoll),
    /// io-uring or epoll.
    #[arg(long, default_value = "auto")]
    backend: ringws::BackendKind,
    /// Offer permessage-deflate (letting the server limit our window) and
    /// inflate what the server compresses; echoes go back uncompressed,
    /// which the extension allows.
    #[arg(long)]
    deflate: bool,
    /// Certificate checks of a wss:// URL.
    #[command(flatten)]
    tls: crate::target::TlsArgs,
}

/// Which session of the suite runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    Count,
    Case(usize),
    Update,
}

/// One WebSocket session: handshake, echo every message, close as the
/// protocol says, and wait for the server to close TCP (7.1.1).
struct Session {
    id: SockId,
    hs: ClientHandshake,
    /// The response head so far.
    head: Vec<u8>,
    ws: Option<Connection>,
    seed: u64,
    /// Text messages received, for getCaseCount.
    texts: Vec<String>,
    /// The case's time is up.
    deadline: Instant,
    /// Once the exchange is over, the server gets until then to close TCP.
    close_deadline: Option<Instant>,
    failed: Option<String>,
}

/// The whole suite, one session after another.
struct Suite {
    target: Target,
    deflate: bool,
    agent: String,
    timeout: Duration,
    stage: Stage,
    count: usize,
    session: Option<Session>,
    result: Option<Result<usize, String>>,
}

impl Suite {
    fn path(&self) -> String {
        match self.stage {
            Stage::Count => "/getCaseCount".into(),
            Stage::Case(n) => format!("/runCase?case={n}&agent={}", self.agent),
            Stage::Update => format!("/updateReports?agent={}", self.agent),
        }
    }

    fn start(&mut self, io: &mut Io) {
        match self.target.connect(io, None) {
            Ok(id) => {
                // A fresh random seed per session: its key and its masks must
                // not be predictable, nor repeat from one case to the next.
                let seed = crate::worker::random_seed();
                let offer = self.deflate.then(ClientOffer::default);
                let hs = ClientHandshake::with_deflate(
                    &self.target.host,
                    &self.path(),
                    crate::worker::nonce(seed),
                    offer,
                );
                self.session = Some(Session {
                    id,
                    hs,
                    head: Vec::new(),
                    ws: None,
                    seed,
                    texts: Vec::new(),
                    deadline: Instant::now() + self.timeout,
                    close_deadline: None,
                    failed: None,
                });
            }
            Err(e) => self.ended(io, Err(format!("connect to {}: {e}", self.target.addr))),
        }
    }

    /// The session ended: on to the next.
    fn ended(&mut self, io: &mut Io, res: Result<Vec<String>, String>) {
        match (self.stage, res) {
            (Stage::Count, Ok(texts)) => match texts.first().and_then(|t| t.trim().parse().ok()) {
                Some(n) => {
                    self.count = n;
                    self.stage = if n > 0 { Stage::Case(1) } else { Stage::Update };
                }
                None => {
                    self.result = Some(Err("getCaseCount did not answer with a number".into()));
                    return;
                }
            },
            (Stage::Case(n), res) => {
                if let Err(e) = res {
                    eprintln!("loadgen autobahn: case {n}: {e}");
                }
                self.stage = if n < self.count {
                    Stage::Case(n + 1)
                } else {
                    Stage::Update
                };
            }
            (Stage::Update, Ok(_)) => {
                self.result = Some(Ok(self.count));
                return;
            }
            (_, Err(e)) => {
                self.result = Some(Err(e));
                return;
            }
        }
        self.start(io);
    }

    fn session(&mut self, id: SockId) -> Option<&mut Session> {
        self.session.as_mut().filter(|s| s.id == id)
    }
}

impl Handler for Suite {
    fn connected(&mut self, io: &mut Io, id: SockId, res: std::io::Result<()>) {
        let addr = self.target.addr;
        let Some(s) = self.session(id) else { return };
        match res {
            Ok(()) => {
                io.send(id, s.hs.request());
            }
            Err(e) => {
                s.failed = Some(format!("connect to {addr}: {e}"));
                io.close(id);
            }
        }
    }

    fn data(&mut self, io: &mut Io, id: SockId, mut buf: InputBuf) {
        let now = io.now();
        let Some(s) = self.session(id) else { return };
        let mut head_rest;
        let input: &mut [u8] = if s.ws.is_none() {
            s.head.extend_from_slice(buf.as_slice());
            match s.hs.parse_response_deflate(&s.head, 16 << 10) {
                Ok(None) => return,
                Ok(Some((h, agreed))) => {
                    head_rest = s.head.split_off(h);
                    let limits = Limits {
                        max_frame_size: 64 << 20,
                        max_message_size: 64 << 20,
                        close_timeout: Duration::from_secs(5),
                    };
                    let mut ws = Connection::client(limits, s.seed);
                    if let Some(a) = agreed {
                        ws.enable_inflate(a.server_max_window_bits, !a.server_no_context_takeover);
                    }
                    s.ws = Some(ws);
                    &mut head_rest
                }
                Err(e) => {
                    s.failed = Some(format!("handshake: {e}"));
                    io.close(id);
                    return;
                }
            }
        } else {
            buf.as_mut_slice()
        };
        let ws = s.ws.as_mut().expect("open");
        let texts = &mut s.texts;
        io.send_with(id, |out| {
            let mut off = 0;
            while off < input.len() {
                let (n, r) = ws.read(&mut input[off..], now);
                if let Ok(Some(Event::Message { kind, payload })) = r {
                    let data: &[u8] = match &payload {
                        Payload::Input(r) => &input[off + r.start..off + r.end],
                        Payload::Owned(v) => v,
                    };
                    if kind == MessageKind::Text {
                        texts.push(String::from_utf8_lossy(data).into_owned());
                    }
                    // Not open (closing): nothing more to echo.
                    let _ = ws.write_message(kind, data, out);
                }
                if ws.has_control() {
                    ws.take_control(out);
                }
                off += n;
            }
        });
        if ws.is_closed() && s.close_deadline.is_none() {
            s.close_deadline = Some(now + Duration::from_secs(2));
        }
    }

    fn eof(&mut self, io: &mut Io, id: SockId, _err: Option<std::io::Error>) {
        if let Some(s) = self.session(id) {
            match &mut s.ws {
                Some(ws) => {
                    ws.handle_eof();
                }
                None => s.failed = Some("closed during the handshake".into()),
            }
        }
        io.close(id);
    }

    fn gone(&mut self, io: &mut Io, id: SockId, _why: Gone) {
        if self.session.as_ref().is_some_and(|s| s.id == id) {
            let s = self.session.take().expect("checked");
            let res = match s.failed {
                Some(e) => Err(e),
                None => Ok(s.texts),
            };
            self.ended(io, res);
        }
    }

    fn turn(&mut self, io: &mut Io) {
        let now = Instant::now();
        let Some(s) = &mut self.session else { return };
        // The server did not close in time, or did not answer our Close:
        // give up on it.
        if now >= s.close_deadline.unwrap_or(s.deadline).min(s.deadline) {
            match &mut s.ws {
                Some(ws) => ws.handle_timeout(now),
                None => s.failed = Some("handshake: timed out".into()),
            }
            io.close(s.id);
        }
    }

    fn next_deadline(&self) -> Option<Instant> {
        self.session
            .as_ref()
            .map(|s| s.close_deadline.unwrap_or(s.deadline).min(s.deadline))
    }

    fn done(&self) -> bool {
        self.result.is_some()
    }
}

/// Runs the whole suite; exits 0 when every case ran (the verdicts are in
/// the server's report).
pub fn run(a: AutobahnArgs) -> ExitCode {
    let target = match Target::parse(&a.url, &a.tls) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("loadgen autobahn: {e}");
            return ExitCode::from(2);
        }
    };
    let opts = LoopOptions {
        backend: a.backend,
        ring_entries: 256,
        ..Default::default()
    };
    let (agent, timeout) = (a.agent.clone(), Duration::from_secs(a.case_timeout_secs));
    let deflate = a.deflate;
    let res = run_loops(
        1,
        opts,
        move |_, io| {
            let mut suite = Suite {
                target: target.clone(),
                deflate,
                agent: agent.clone(),
                timeout,
                stage: Stage::Count,
                count: 0,
                session: None,
                result: None,
            };
            suite.start(io);
            suite
        },
        |s| {
            s.result
                .unwrap_or_else(|| Err("the suite did not finish".into()))
        },
    );
    match res {
        Ok(mut v) => match v.pop().expect("one loop") {
            Ok(n) => {
                println!("loadgen autobahn: ran {n} cases; reports updated");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("loadgen autobahn: {e}");
                ExitCode::from(3)
            }
        },
        Err(e) => {
            eprintln!("loadgen autobahn: {e}");
            ExitCode::from(4)
        }
    }
}
