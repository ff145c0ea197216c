//! ringws: a WebSocket (RFC 6455) server for Linux on io_uring, one thread
//! per core, and a library to build WebSocket applications on.
//!
//! A room-less chat in a few lines: every text a client sends reaches
//! every client.
//!
//! ```no_run
//! use ringws::app::{App, Handler, Message, Request, Socket, Upgrade};
//! use ringws::Config;
//!
//! struct Chat;
//!
//! impl Handler for Chat {
//!     type Data = String; // each connection's nickname
//!
//!     fn upgrade(&self, req: &Request<'_>) -> Upgrade<String> {
//!         match req.query_param("nick") {
//!             Some(nick) => Upgrade::accept(nick.to_owned()),
//!             None => Upgrade::reject(400, "?nick= is required"),
//!         }
//!     }
//!
//!     fn open(&self, ws: &mut Socket<'_, String>) {
//!         ws.subscribe("chat");
//!     }
//!
//!     fn message(&self, ws: &mut Socket<'_, String>, msg: Message<'_>) {
//!         if let Message::Text(text) = msg {
//!             let line = format!("{}: {text}", ws.data());
//!             ws.publish("chat", line.as_str()); // to everyone else
//!             ws.send_text(&line); // and back to the sender
//!         }
//!     }
//! }
//!
//! fn main() -> Result<(), ringws::StartError> {
//!     App::new(Config::default()).route("/", Chat).run() // until Ctrl-C
//! }
//! ```
//!
//! Plain HTTP routes share the listener: a request that is not a WebSocket
//! upgrade goes to them, and one path may have both.
//!
//! ```
//! use std::io::{Read, Write};
//! use ringws::app::{App, Echo, HttpReply, HttpResponse};
//! use ringws::Config;
//!
//! let cfg = Config { listen: "127.0.0.1:0".parse().unwrap(), threads: 1, ..Config::default() };
//! let server = App::new(cfg)
//!     .route("/ws", Echo) // WebSocket upgrades to /ws
//!     .get("/health", |_req| HttpResponse::text(200, "ok\n"))
//!     .post("/publish", |req| {
//!         // Publish the request body to the WebSocket subscribers of "news".
//!         req.server().publish("news", req.body());
//!         HttpResponse::new(204)
//!     })
//!     .get("/slow", |_req| {
//!         // Answer from another thread; the connection's worker goes on.
//!         HttpReply::defer(|r| {
//!             std::thread::spawn(move || r.respond(HttpResponse::text(200, "done\n")));
//!         })
//!     })
//!     .start()?;
//!
//! let mut s = std::net::TcpStream::connect(server.local_addr()).unwrap();
//! s.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").unwrap();
//! let mut resp = String::new();
//! s.read_to_string(&mut resp).unwrap();
//! assert!(resp.starts_with("HTTP/1.1 200 OK\r\n") && resp.ends_with("\r\n\r\nok\n"));
//! server.shutdown(std::time::Duration::ZERO);
//! # Ok::<(), ringws::StartError>(())
//! ```
//!
//! [`app`] has the whole API (routes, deferred upgrades, backpressure,
//! topics, sends from other threads, shutdown); `examples/` has a chat with
//! rooms, a broadcast server and token authentication, each with a test.
//!
//! With the `tls` feature the same server speaks `wss://` (and `https://`
//! for its HTTP routes): certificates from PEM files, one more chosen by
//! server name, reloaded without a restart.
//!
//! ```no_run
//! # #[cfg(feature = "tls")]
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use ringws::app::{App, Echo};
//! use ringws::tls::{SniCert, Tls, TlsFiles};
//! use ringws::Config;
//!
//! let cfg = Config {
//!     listen: "0.0.0.0:443".parse()?,
//!     tls: Some(Tls::Files(TlsFiles {
//!         cert: "/etc/ringws/fullchain.pem".into(),
//!         key: "/etc/ringws/privkey.pem".into(),
//!         sni: vec![SniCert::parse("chat.example.com=/etc/ringws/chat.pem,/etc/ringws/chat.key")?],
//!     })),
//!     ..Config::default()
//! };
//! let server = App::new(cfg).route("/", Echo).start()?;
//! // Later, from any thread (App::run does it on SIGHUP): new connections
//! // get the files as they are now; open ones keep theirs.
//! server.reload_tls()?;
//! # Ok(())
//! # }
//! # #[cfg(not(feature = "tls"))]
//! # fn main() {}
//! ```
//!
//! Three layers, each knowing only the one below:
//!
//! * [`app`], the application API: [`App`], [`Handler`], [`Socket`],
//!   topics, plain HTTP routes. The `ringws` binary's echo is one handler on it
//!   ([`app::Echo`]).
//! * [`proto`], the protocol core, is sans-IO: it never touches a socket, a
//!   runtime or a clock. Bytes go in, events and bytes come out, and time is
//!   an argument, so the whole protocol is tested and fuzzed with byte
//!   literals alone.
//! * [`runtime`] is the only code that knows io_uring (or, where io_uring
//!   is blocked, epoll): one event loop per worker thread that accepts
//!   connections, moves bytes between the kernel and pooled buffers, and
//!   calls the application layer straight from each completion.
//!
//! # The data path of one echoed message
//!
//! ```text
//!            worker thread i (one per core, nothing shared on this path)
//!  kernel   +------------------------------------------------------------+
//!  ------   |                                                            |
//!  socket --+-> multishot RECV, buffer select -> ring buffer k, part of it|
//!  (SO_REUSEPORT|   (no buffer pinned while idle;      |                 |
//!   listener i, |    several reads share one buffer)   |                 |
//!   direct fd)  |                                      v                 |
//!           |   one CQE, one match (slot, generation, op) in io.rs       |
//!           |                                      |                     |
//!           |              proto::Connection::read(&mut part)            |
//!           |                unmask in place (SIMD), UTF-8 check         |
//!           |                (SIMD, streaming), close/ping logic         |
//!           |                                      |                     |
//!           |          Event::Message { Payload::Input(range) }          |
//!           |          (or Payload::Owned: fragments, copied once)       |
//!           |                                      v                     |
//!           |      app: Handler::message(ws, Message::Binary(&part[..])) |
//!           |      ws.send(msg): the slice is known by its address, so  |
//!           |      a range of the read buffer is queued, not a copy      |
//!           |                                      v                     |
//!           |          WriteBatch: [hdr over the client's hdr | payload] |
//!           |          (one piece: SEND; several: SENDMSG; at most one   |
//!           |           in flight per connection, the next one filling)  |
//!  socket <-+--------- SEND, no payload copy, all of a turn's sends in   |
//!           |          one submission                                  |
//!           |                                      |                     |
//!           |          part k dropped -> buffer k back on the ring       |
//!           |          once the kernel and every part are done with it   |
//!           +------------------------------------------------------------+
//! ```
//!
//! # Layout
//!
//! * [`proto::handshake`]: the HTTP/1.1 upgrade (4.2): 101, 400, 426, 431.
//! * [`proto::http`]: plain HTTP/1.1 requests beside the upgrade: heads,
//!   bodies (Content-Length, chunked) within limits, responses.
//! * [`proto::frame`]: frame headers: raw decode, validation, encode.
//! * [`proto::mask`]: (un)masking, AVX2/SSE2/NEON and a scalar reference.
//! * [`proto::utf8`]: streaming UTF-8 validation that fails fast.
//! * [`proto::message`]: reassembly of fragments within a size limit.
//! * [`proto::close`]: close codes, Close frames, the close state diagram.
//! * [`proto::deflate`]: permessage-deflate's negotiation (RFC 7692), both
//!   roles; [`proto::compress`]: its compressor and bounded decompressor.
//! * [`proto::conn`]: the connection state machine tying these together.
//! * [`proto::error`]: one error per violation, mapped to its close code or
//!   HTTP status.
//! * [`proto::resp`]: RESP2 and RESP3, the Redis protocol the broker
//!   speaks: commands out, replies and pub/sub pushes in, within limits.
//! * [`runtime`]: threads, listeners, the server handle; its module docs
//!   list the loop's files (the io_uring and epoll backends behind one
//!   seam, the loop, the timing wheel, buffers, the server's handler).
//! * [`tls`]: TLS certificates and keys, and (with the `tls` feature) the
//!   rustls glue the runtime calls where reads arrive and output is sealed.
//! * [`config`]: every limit, its default and what it guards against.
//! * `metrics`: the Prometheus text format and the process metrics
//!   (memory, descriptors, CPU time) that `/metrics` reports.
//! * [`app`]: routes, handlers, sockets, topics, the server handle; its
//!   module docs list its files.
//! * [`broker`]: topics across nodes through Redis Pub/Sub, on a thread
//!   with its own loop; its module docs draw the path of a publish.
//! * `main.rs`: command line to [`Config`] to [`App`] with [`app::Echo`],
//!   nothing else.

pub mod app;
pub mod broker;
pub mod config;
pub mod log;
pub mod metrics;
pub mod proto;
pub mod runtime;
pub mod tls;

pub use app::{
    App, Handler, Message, Request, SendStatus, ServerHandle, Socket, SocketRef, Upgrade,
};
pub use config::Config;
pub use runtime::{BackendKind, StartError};
