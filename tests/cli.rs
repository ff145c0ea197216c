//! The `ringws` binary's command line, run as a process: settings from a
//! `--config` file, the environment and flags in that order of precedence,
//! refused files, `--listen` with a host name, and the log formats.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::time::{Duration, Instant};

mod common;
use common::Client;

/// Four header lines beyond the five of `Client::request`'s upgrade: nine,
/// one more than `max-headers = 8` lets through.
const FOUR_MORE: &str = "A: 1\r\nB: 1\r\nC: 1\r\nD: 1\r\n";

/// A running `ringws`; stopped with SIGINT when dropped, killed if it
/// does not stop.
struct Server {
    child: Child,
    /// Lines of its stderr, read by a thread so that the pipe never fills.
    lines: Receiver<String>,
    /// The line that said where it listens.
    listening: String,
    addr: SocketAddr,
}

impl Drop for Server {
    fn drop(&mut self) {
        let pid = i32::try_from(self.child.id()).unwrap();
        // SAFETY: kill(2) with the pid of our own child, not yet reaped.
        unsafe { libc::kill(pid, libc::SIGINT) };
        let t = Instant::now();
        while t.elapsed() < Duration::from_secs(3) {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The binary with no setting inherited from the environment of the test
/// run but the backend, so that the runs on io_uring and epoll both apply.
fn ringws(args: &[&str], env: &[(&str, &str)]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_ringws"));
    for (k, _) in std::env::vars_os() {
        let k = k.to_string_lossy();
        if (k.starts_with("RINGWS_") && k != "RINGWS_BACKEND") || k == "RUST_LOG" {
            c.env_remove(&*k);
        }
    }
    c.args(args)
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    c
}

/// Starts `ringws` and waits for the log line that says where it listens.
fn start(args: &[&str], env: &[(&str, &str)]) -> Server {
    let mut child = ringws(args, env).spawn().unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, lines) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut server = Server {
        child,
        lines,
        listening: String::new(),
        addr: SocketAddr::from(([0, 0, 0, 0], 0)),
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = server
            .lines
            .recv_timeout(left)
            .unwrap_or_else(|e| panic!("no listening line from ringws {args:?}: {e}"));
        if let Some(i) = line.find("listening on ws://") {
            let rest = &line[i + "listening on ws://".len()..];
            let end = rest.find([' ', '"']).unwrap_or(rest.len());
            server.addr = rest[..end].parse().unwrap();
            server.listening = line;
            return server;
        }
    }
}

/// Runs `ringws` expecting it to refuse to start: its exit code and
/// stderr. Killed if it has not exited within 5 s (it would be serving).
fn refused(args: &[&str]) -> (Option<i32>, String) {
    let mut child = ringws(args, &[]).spawn().unwrap();
    let t = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if t.elapsed() > Duration::from_secs(5) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("ringws {args:?} started instead of refusing");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let out = child.wait_with_output().unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

/// A port nothing listens on at the moment, at `host`'s first address.
fn free_port(host: &str) -> u16 {
    TcpListener::bind((host, 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A config file with `text`, removed when dropped.
struct ConfigFile(PathBuf);

impl ConfigFile {
    fn new(name: &str, text: &str) -> ConfigFile {
        let path =
            std::env::temp_dir().join(format!("ringws-cli-{}-{name}.toml", std::process::id()));
        std::fs::File::create(&path)
            .unwrap()
            .write_all(text.as_bytes())
            .unwrap();
        ConfigFile(path)
    }

    fn path(&self) -> &str {
        self.0.to_str().unwrap()
    }
}

impl Drop for ConfigFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn status(addr: SocketAddr, extra: &str) -> String {
    let (_, head) = Client::request(addr, "/", extra);
    head.lines().next().unwrap().to_owned()
}

#[test]
fn config_file_sets_listen_and_max_headers() {
    let port = free_port("127.0.0.1");
    let file = ConfigFile::new(
        "file",
        &format!("listen = \"127.0.0.1:{port}\"\nthreads = 1\nmax-headers = 8\n"),
    );
    let s = start(&["--config", file.path()], &[]);
    assert_eq!(s.addr.port(), port, "{}", s.listening);
    assert!(s.listening.contains("(1 threads"), "{}", s.listening);
    assert!(status(s.addr, "").starts_with("HTTP/1.1 101 "));
    assert!(status(s.addr, FOUR_MORE).starts_with("HTTP/1.1 431 "));
}

#[test]
fn environment_beats_file() {
    let (from_file, from_env) = (free_port("127.0.0.1"), free_port("127.0.0.1"));
    let file = ConfigFile::new(
        "env",
        &format!("listen = \"127.0.0.1:{from_file}\"\nthreads = 1\nmax-headers = 8\n"),
    );
    let s = start(
        &[],
        &[
            ("RINGWS_CONFIG", file.path()),
            ("RINGWS_LISTEN", &format!("127.0.0.1:{from_env}")),
            ("RINGWS_MAX_HEADERS", "64"),
        ],
    );
    assert_eq!(s.addr.port(), from_env, "{}", s.listening);
    assert!(status(s.addr, FOUR_MORE).starts_with("HTTP/1.1 101 "));
}

#[test]
fn flag_beats_environment() {
    let (from_file, from_env, from_flag) = (
        free_port("127.0.0.1"),
        free_port("127.0.0.1"),
        free_port("127.0.0.1"),
    );
    let file = ConfigFile::new(
        "flag",
        &format!("listen = \"127.0.0.1:{from_file}\"\nthreads = 1\n"),
    );
    let flag = format!("127.0.0.1:{from_flag}");
    let s = start(
        &["--config", file.path(), "--listen", &flag],
        &[
            ("RINGWS_LISTEN", &format!("127.0.0.1:{from_env}")),
            ("RINGWS_THREADS", "2"),
        ],
    );
    assert_eq!(s.addr.port(), from_flag, "{}", s.listening);
    // The environment's threads beat the file's.
    assert!(s.listening.contains("(2 threads"), "{}", s.listening);
}

#[test]
fn unknown_key_is_refused() {
    let file = ConfigFile::new("unknown", "threads = 1\nmax-mesage-size = \"1M\"\n");
    let (code, err) = refused(&["--config", file.path()]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("max-mesage-size"), "{err}");
    assert!(err.contains(file.path()), "{err}");
}

#[test]
fn bad_value_is_refused() {
    let file = ConfigFile::new("bad", "threads = 1\nmax-message-size = \"lots\"\n");
    let (code, err) = refused(&["--config", file.path()]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("max-message-size"), "{err}");
    assert!(err.contains("lots"), "{err}");
    assert!(err.contains(file.path()), "{err}");
    // Even when a flag sets the same key: the file is checked whole.
    let (code, err) = refused(&["--config", file.path(), "--max-message-size", "1M"]);
    assert_eq!(code, Some(2), "{err}");
}

#[test]
fn listen_takes_a_host_name() {
    let port = free_port("localhost");
    let s = start(
        &["--listen", &format!("localhost:{port}"), "--threads", "1"],
        &[],
    );
    // The server takes the first address localhost resolves to; so does
    // this client.
    let first = ("localhost", port)
        .to_socket_addrs()
        .unwrap()
        .next()
        .unwrap();
    assert_eq!(s.addr, first, "{}", s.listening);
    assert!(status(first, "").starts_with("HTTP/1.1 101 "));
}

#[test]
fn json_log_lines() {
    let s = start(
        &[
            "--listen",
            "127.0.0.1:0",
            "--threads",
            "1",
            "--log-format",
            "json",
        ],
        &[],
    );
    let v: serde_json::Value = serde_json::from_str(&s.listening)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", s.listening));
    assert_eq!(v["level"], "INFO", "{v}");
    let msg = v["message"].as_str().unwrap();
    assert!(msg.contains("listening on ws://"), "{v}");
    assert!(v["timestamp"].as_str().unwrap().starts_with("20"), "{v}");
}

/// `20\d\d-\d\d-\d\dT` at the start of a line.
fn starts_with_date(line: &str) -> bool {
    let b = line.as_bytes();
    let digits = |r: std::ops::Range<usize>| r.into_iter().all(|i| b[i].is_ascii_digit());
    b.len() > 11
        && b.starts_with(b"20")
        && digits(2..4)
        && b[4] == b'-'
        && digits(5..7)
        && b[7] == b'-'
        && digits(8..10)
        && b[10] == b'T'
}

#[test]
fn text_log_lines_carry_the_date() {
    let s = start(
        &["--listen", "127.0.0.1:0", "--threads", "1"],
        // RINGWS_LOG, the old name of RINGWS_LOG_LEVEL, still works.
        &[("RINGWS_LOG", "debug")],
    );
    assert!(starts_with_date(&s.listening), "{}", s.listening);
    assert!(s.listening.contains(" INFO "), "{}", s.listening);
    // A client gone halfway through its request head: a Debug line.
    let mut c = TcpStream::connect(s.addr).unwrap();
    c.write_all(b"GET / HTTP/1.1\r\n").unwrap();
    drop(c);
    loop {
        let line = s.lines.recv_timeout(Duration::from_secs(5)).unwrap();
        assert!(starts_with_date(&line), "{line}");
        if line.contains("closed during the handshake") {
            assert!(line.contains(" DEBUG "), "{line}");
            break;
        }
    }
}
