//! Real redis-server (and redis-sentinel) processes for the tests, on free
//! ports, killed when dropped; and a blocking connection that speaks RESP
//! through the codec under test. Without redis-server installed
//! (scripts/test.sh installs it) `start` says so and returns `None`, and
//! the test passes without running.

#![allow(dead_code, reason = "each test crate uses part of it")]

use std::io::{ErrorKind, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use ringws::proto::resp::{encode_command, Decoder, Frame, RespLimits};

/// A redis-server child process, killed when dropped.
pub struct Redis {
    pub child: Child,
    pub port: u16,
    /// A Sentinel's configuration file, removed when dropped.
    pub config: Option<PathBuf>,
    args: Vec<String>,
}

impl Drop for Redis {
    fn drop(&mut self) {
        // A stopped process must be continued to die of SIGKILL's reaping.
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(c) = &self.config {
            let _ = std::fs::remove_file(c);
        }
    }
}

pub fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// Starts `redis-server [config] --port <free> ... extra`, waits until it
/// accepts connections; `None` (with a message) if it is not installed.
pub fn start(config: Option<PathBuf>, extra: &[&str]) -> Option<Redis> {
    start_on(free_port(), config, extra)
}

/// As [`start`], on `port`.
pub fn start_on(port: u16, config: Option<PathBuf>, extra: &[&str]) -> Option<Redis> {
    let mut args: Vec<String> = Vec::new();
    if let Some(c) = &config {
        args.push(c.display().to_string());
    }
    for a in ["--port", &port.to_string(), "--bind", "127.0.0.1"] {
        args.push(a.to_owned());
    }
    for a in ["--save", "", "--appendonly", "no"] {
        args.push(a.to_owned());
    }
    // A replica's full sync writes an RDB file to its directory even with
    // saving off: never into the checkout.
    args.push("--dir".to_owned());
    args.push(std::env::temp_dir().display().to_string());
    args.extend(extra.iter().map(|s| s.to_string()));
    let child = match Command::new("redis-server")
        .args(&args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
    {
        Ok(c) => c,
        Err(e) if e.kind() == ErrorKind::NotFound => {
            println!("skipped: redis-server is not installed (scripts/test.sh installs it)");
            return None;
        }
        Err(e) => panic!("redis-server: {e}"),
    };
    let mut redis = Redis {
        child,
        port,
        config,
        args,
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        if let Ok(Some(status)) = redis.child.try_wait() {
            panic!("redis-server exited: {status}");
        }
        assert!(Instant::now() < deadline, "redis-server did not listen");
        std::thread::sleep(Duration::from_millis(20));
    }
    Some(redis)
}

impl Redis {
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Kills it (see [`Redis::start_again`]).
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Starts it again after [`Redis::kill`], on the same port, with the
    /// same arguments.
    pub fn start_again(&mut self) {
        let args: Vec<&str> = self.args.iter().map(String::as_str).collect();
        let child = Command::new("redis-server")
            .args(&args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        self.child = child;
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "redis-server did not listen again"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Sends it SIGSTOP (`true`) or SIGCONT.
    pub fn pause(&self, stop: bool) {
        let sig = if stop { "-STOP" } else { "-CONT" };
        let ok = Command::new("kill")
            .args([sig, &self.child.id().to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill {sig}");
    }

    /// Runs one command on a new connection and returns the reply.
    pub fn command(&self, args: &[&str]) -> Frame {
        Conn::new(self.port).command(args)
    }

    /// `PUBSUB NUMSUB channel`: how many connections subscribe to it.
    pub fn numsub(&self, channel: &str) -> i64 {
        match self.command(&["PUBSUB", "NUMSUB", channel]) {
            Frame::Array(items) => match items.as_slice() {
                [_, Frame::Integer(n)] => *n,
                other => panic!("NUMSUB: {other:?}"),
            },
            other => panic!("NUMSUB: {other:?}"),
        }
    }

    /// A field of `INFO section`, as text. Tests poll it through a
    /// failover, during which a Sentinel reconfiguring this server kills
    /// its normal clients (`CLIENT KILL TYPE normal`): a connection cut
    /// that way is tried again on a new one, a few times.
    pub fn info(&self, section: &str, field: &str) -> Option<String> {
        let mut tries = 0;
        let reply = loop {
            let r = Conn::try_new(self.port).and_then(|mut c| c.try_command(&["INFO", section]));
            match r {
                Ok(f) => break f,
                Err(e) if tries < 5 => {
                    tries += 1;
                    println!("INFO {section}: {e}; again");
                    std::thread::sleep(Duration::from_millis(50));
                }
                Err(e) => panic!("INFO {section}: {e}"),
            }
        };
        let Frame::Bulk(text) = reply else {
            panic!("INFO");
        };
        let text = String::from_utf8_lossy(&text).into_owned();
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{field}:")))
            .map(|v| v.trim().to_owned())
    }
}

/// A Sentinel's configuration watching `master_port` as `mymaster`.
pub fn sentinel_config(name: &str, master_port: u16, quorum: u32) -> PathBuf {
    // A Sentinel rewrites its configuration file: one of its own.
    let config = std::env::temp_dir().join(format!(
        "ringws-sentinel-{}-{name}-{master_port}.conf",
        std::process::id(),
    ));
    std::fs::write(
        &config,
        format!(
            "sentinel monitor mymaster 127.0.0.1 {master_port} {quorum}\n\
             sentinel down-after-milliseconds mymaster 1000\n\
             sentinel failover-timeout mymaster 5000\n"
        ),
    )
    .unwrap();
    config
}

/// One blocking connection: commands written as the encoder makes them,
/// frames read through the decoder.
pub struct Conn {
    pub s: TcpStream,
    pub dec: Decoder,
    pub buf: BytesMut,
}

impl Conn {
    pub fn new(port: u16) -> Conn {
        Conn::try_new(port).unwrap()
    }

    pub fn try_new(port: u16) -> std::io::Result<Conn> {
        let s = TcpStream::connect(("127.0.0.1", port))?;
        s.set_read_timeout(Some(Duration::from_secs(10)))?;
        s.set_nodelay(true)?;
        Ok(Conn {
            s,
            dec: Decoder::new(RespLimits::default()),
            buf: BytesMut::new(),
        })
    }

    pub fn send(&mut self, encode: impl FnOnce(&mut Vec<u8>)) {
        let mut out = Vec::new();
        encode(&mut out);
        self.s.write_all(&out).unwrap();
    }

    pub fn frame(&mut self) -> Frame {
        self.try_frame().unwrap()
    }

    /// The next frame, or the I/O error (a closed connection included)
    /// that cut it; a malformed frame still panics.
    pub fn try_frame(&mut self) -> std::io::Result<Frame> {
        loop {
            if let Some(f) = self.dec.decode(&mut self.buf).unwrap() {
                return Ok(f);
            }
            // Reads of an odd size, so frames split at odd places.
            let mut tmp = [0u8; 7919];
            let n = self.s.read(&mut tmp)?;
            if n == 0 {
                return Err(std::io::Error::new(
                    ErrorKind::UnexpectedEof,
                    "redis-server closed the connection",
                ));
            }
            self.buf.extend_from_slice(&tmp[..n]);
        }
    }

    pub fn command(&mut self, args: &[&str]) -> Frame {
        self.try_command(args).unwrap()
    }

    pub fn try_command(&mut self, args: &[&str]) -> std::io::Result<Frame> {
        let args: Vec<&[u8]> = args.iter().map(|a| a.as_bytes()).collect();
        let mut out = Vec::new();
        encode_command(&mut out, &args);
        self.s.write_all(&out)?;
        self.try_frame()
    }
}
