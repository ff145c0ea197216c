//! The sans-IO RFC 6455 core: no sockets, no runtime, no clock.
//!
//! Bytes go in, events and bytes come out; time arrives as `now` arguments.
//! Everything here can be tested and fuzzed with byte literals alone.
//!
//! [`resp`], the Redis protocol the broker speaks, lives here for the same
//! reason: it is a codec of bytes in, values out, with no socket.

pub mod client;
pub mod close;
pub mod compress;
pub mod conn;
pub mod deflate;
pub mod error;
pub mod frame;
pub mod handshake;
pub mod http;
pub mod mask;
pub mod message;
pub mod resp;
pub mod utf8;

pub use conn::{Connection, Event, Limits, Payload, Received, Role};
pub use error::{HandshakeError, HttpError, ProtocolError};
pub use message::MessageKind;
