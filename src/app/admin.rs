//! The admin listener (`Config::admin_listen`): `/metrics`, `/livez` and
//! `/readyz` as plain HTTP on an address of their own, so they are never
//! public by accident.
//!
//! It runs on threads of its own, with blocking sockets, away from the
//! worker loops: a scrape never waits for a loop, and a stuck loop is what
//! `/livez` must still be able to report. One thread accepts; each
//! connection gets a thread (Prometheus keeps its connection open between
//! scrapes, which must not hold up a kubelet's probe), at most
//! [`MAX_ADMIN_CONNS`] at once; past that a connection gets 503 and is
//! closed. Every read has the handshake timeout, so a client that stops
//! sending ends its thread.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use super::ServerHandle;
use crate::proto::http::{parse_head, write_error, write_response, HttpLimits, ResponseOpts};

/// Admin connections served at once.
pub const MAX_ADMIN_CONNS: usize = 16;

/// The answer to an admin request for `path` (with its query): status,
/// content type and body; `None` for a path that is not one of the three.
pub(crate) fn answer(
    server: &ServerHandle,
    path: &str,
    query: Option<&str>,
) -> Option<(u16, &'static str, String)> {
    let verbose = query.is_some_and(|q| {
        q.split('&')
            .any(|kv| kv == "verbose" || kv.starts_with("verbose="))
    });
    let text = "text/plain; charset=utf-8";
    match path {
        "/metrics" => Some((
            200,
            "text/plain; version=0.0.4; charset=utf-8",
            server.metrics(),
        )),
        "/livez" => {
            let h = server.livez();
            Some((h.status(), text, h.body("livez", verbose)))
        }
        "/readyz" => {
            let h = server.readyz();
            Some((h.status(), text, h.body("readyz", verbose)))
        }
        _ => None,
    }
}

/// A running admin listener.
pub(crate) struct Admin {
    pub(crate) addr: SocketAddr,
    listener: Arc<TcpListener>,
    thread: Option<JoinHandle<()>>,
}

impl Admin {
    /// Binds `addr` and serves `server`'s admin endpoints until stopped.
    pub(crate) fn start(
        addr: SocketAddr,
        server: ServerHandle,
        timeout: Duration,
    ) -> std::io::Result<Admin> {
        let listener = Arc::new(TcpListener::bind(addr)?);
        let addr = listener.local_addr()?;
        let l = listener.clone();
        let thread = std::thread::Builder::new()
            .name("ringws-admin".into())
            .spawn(move || accept_loop(&l, &server, timeout))?;
        Ok(Admin {
            addr,
            listener,
            thread: Some(thread),
        })
    }

    /// Stops accepting (connections being served finish on their own).
    pub(crate) fn stop(&mut self) {
        // Shutting the listening socket down wakes the blocked accept
        // with an error, which ends the loop.
        let _ = socket2::SockRef::from(&*self.listener).shutdown(Shutdown::Both);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Admin {
    fn drop(&mut self) {
        self.stop();
    }
}

fn accept_loop(listener: &TcpListener, server: &ServerHandle, timeout: Duration) {
    let active = Arc::new(AtomicUsize::new(0));
    loop {
        let (mut s, peer) = match listener.accept() {
            Ok(c) => c,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) if matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE)) => {
                tracing::warn!("admin listener: accept failed: {e}");
                std::thread::sleep(Duration::from_millis(100));
                continue;
            }
            // The listener was shut down (stop), or is broken.
            Err(_) => return,
        };
        if active.fetch_add(1, Ordering::AcqRel) >= MAX_ADMIN_CONNS {
            active.fetch_sub(1, Ordering::AcqRel);
            tracing::warn!("admin listener: {peer}: refused, {MAX_ADMIN_CONNS} connections open");
            let _ = s.write_all(b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
            continue;
        }
        let (server, taken) = (server.clone(), active.clone());
        let spawned = std::thread::Builder::new()
            .name("ringws-admin-conn".into())
            .spawn(move || {
                serve(s, peer, &server, timeout);
                taken.fetch_sub(1, Ordering::AcqRel);
            });
        if let Err(e) = spawned {
            // The closure, and the connection with it, is dropped: give its
            // place back, or every failed start would shrink the limit.
            active.fetch_sub(1, Ordering::AcqRel);
            tracing::warn!("admin listener: cannot start a thread: {e}");
        }
    }
}

/// Serves one admin connection: requests in turn (keep-alive), each read
/// within `timeout`.
fn serve(mut s: TcpStream, peer: SocketAddr, server: &ServerHandle, timeout: Duration) {
    let _ = s.set_read_timeout(Some(timeout));
    let _ = s.set_write_timeout(Some(timeout));
    let _ = s.set_nodelay(true);
    let limits = HttpLimits {
        max_body: 0,
        ..HttpLimits::default()
    };
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 4096];
    loop {
        let mut out = Vec::new();
        let (head_len, keep) = match parse_head(&buf, &limits) {
            Ok(Some(req)) => {
                let opts = ResponseOpts::for_request(&req);
                let (status, ctype, body) = if req.method != "GET" && req.method != "HEAD" {
                    (
                        405,
                        "text/plain; charset=utf-8",
                        "method not allowed\n".to_owned(),
                    )
                } else {
                    answer(server, req.path, req.query).unwrap_or((
                        404,
                        "text/plain; charset=utf-8",
                        "not found\n".to_owned(),
                    ))
                };
                let mut headers = vec![("Content-Type".to_owned(), ctype.to_owned())];
                if status == 405 {
                    headers.push(("Allow".to_owned(), "GET, HEAD".to_owned()));
                }
                if write_response(status, &headers, body.as_bytes(), opts, &mut out).is_err() {
                    return;
                }
                (req.head_len, opts.keep_alive)
            }
            Ok(None) => {
                match s.read(&mut chunk) {
                    Ok(0) | Err(_) => return,
                    Ok(n) => buf.extend_from_slice(&chunk[..n]),
                }
                continue;
            }
            Err(e) => {
                tracing::info!("admin listener: {peer}: {e}");
                let _ = write_error(&e, &[], &mut out);
                let _ = s.write_all(&out);
                return;
            }
        };
        if s.write_all(&out).is_err() || !keep {
            return;
        }
        buf.drain(..head_len);
    }
}
