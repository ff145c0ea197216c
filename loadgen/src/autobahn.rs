//! The client for Autobahn|Testsuite's fuzzing server: ask for the number of
//! cases, run each one echoing every message back, then ask for the report.
//! The protocol work is ringws's own core in the client role; this only
//! moves bytes.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::Args;
use ringws::proto::client::ClientHandshake;
use ringws::proto::{Connection, Event, Limits, MessageKind, Payload};
use ringws::runtime::client::{self as rt, ClientStream};

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
}

/// How one WebSocket session ended.
struct Session {
    /// Text messages received, for getCaseCount.
    texts: Vec<String>,
}

/// Runs the whole suite; exits 0 when every case ran (the verdicts are in
/// the server's report).
pub fn run(a: AutobahnArgs) -> ExitCode {
    let target = match Target::parse(&a.url) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("loadgen autobahn: {e}");
            return ExitCode::from(2);
        }
    };
    let res = rt::run_workers(1, false, 256, move |_| {
        let (target, agent, timeout) = (
            target.clone(),
            a.agent.clone(),
            Duration::from_secs(a.case_timeout_secs),
        );
        async move { suite(&target, &agent, timeout).await }
    });
    match res {
        Ok(mut v) => match v.pop().expect("one worker") {
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

async fn suite(target: &Target, agent: &str, timeout: Duration) -> Result<usize, String> {
    let s = session(target, "/getCaseCount", timeout).await?;
    let count: usize = s
        .texts
        .first()
        .and_then(|t| t.trim().parse().ok())
        .ok_or("getCaseCount did not answer with a number")?;
    for case in 1..=count {
        let path = format!("/runCase?case={case}&agent={agent}");
        if let Err(e) = session(target, &path, timeout).await {
            eprintln!("loadgen autobahn: case {case}: {e}");
        }
    }
    session(target, &format!("/updateReports?agent={agent}"), timeout).await?;
    Ok(count)
}

/// One connection: handshake, echo every message, close as the protocol
/// says, and wait for the server to close TCP (7.1.1).
async fn session(target: &Target, path: &str, timeout: Duration) -> Result<Session, String> {
    let deadline = Instant::now() + timeout;
    let stream = ClientStream::connect(target.addr, None, deadline)
        .await
        .map_err(|e| format!("connect to {}: {e}", target.addr))?;
    // A fresh random seed per session: its key and its masks must not be
    // predictable, nor repeat from one case to the next.
    let seed = crate::worker::random_seed();
    let hs = ClientHandshake::new(&target.host, path, crate::worker::nonce(seed));
    let (res, _) = stream.write_all(hs.request().to_vec()).await;
    res.map_err(|e| format!("sending the handshake: {e}"))?;
    let mut rbuf = Vec::with_capacity(64 << 10);
    let head = loop {
        let (res, b) = stream.read_more_by(rbuf, deadline).await;
        rbuf = b;
        match res {
            Ok(0) => return Err("closed during the handshake".into()),
            Ok(_) => {}
            Err(e) => return Err(format!("handshake: {e}")),
        }
        if let Some(h) = hs
            .parse_response(&rbuf, 16 << 10)
            .map_err(|e| format!("handshake: {e}"))?
        {
            break h;
        }
    };
    rbuf.drain(..head);
    let limits = Limits {
        max_frame_size: 64 << 20,
        max_message_size: 64 << 20,
        close_timeout: Duration::from_secs(5),
    };
    let mut ws = Connection::client(limits, seed);
    let mut texts = Vec::new();
    let mut out = Vec::new();
    // Once the exchange is over, the server gets this long to close TCP.
    let mut close_deadline: Option<Instant> = None;
    loop {
        let now = Instant::now();
        let mut off = 0;
        while off < rbuf.len() {
            let (n, r) = ws.read(&mut rbuf[off..], now);
            if let Ok(Some(Event::Message { kind, payload })) = r {
                let data: &[u8] = match &payload {
                    Payload::Input(r) => &rbuf[off + r.start..off + r.end],
                    Payload::Owned(v) => v,
                };
                if kind == MessageKind::Text {
                    texts.push(String::from_utf8_lossy(data).into_owned());
                }
                // Not open (closing): nothing more to echo.
                let _ = ws.write_message(kind, data, &mut out);
            }
            if ws.has_control() {
                ws.take_control(&mut out);
            }
            off += n;
        }
        rbuf.clear();
        if !out.is_empty() {
            let (res, o) = stream.write_all(std::mem::take(&mut out)).await;
            out = o;
            out.clear();
            if res.is_err() {
                break;
            }
        }
        if ws.is_closed() && close_deadline.is_none() {
            close_deadline = Some(Instant::now() + Duration::from_secs(2));
        }
        let wait = close_deadline
            .unwrap_or(deadline)
            .min(ws.poll_timeout().unwrap_or(deadline));
        let (res, b) = stream.read_more_by(rbuf, wait).await;
        rbuf = b;
        match res {
            Ok(0) => {
                ws.handle_eof();
                break;
            }
            Ok(_) => {}
            Err(_) => {
                // The server did not close in time, or did not answer our
                // Close: give up on it.
                ws.handle_timeout(Instant::now());
                break;
            }
        }
    }
    Ok(Session { texts })
}
