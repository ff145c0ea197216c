//! The sans-IO RFC 6455 core: no sockets, no runtime, no clock.
//!
//! Bytes go in, events and bytes come out; time arrives as `now` arguments.
//! Everything here can be tested and fuzzed with byte literals alone.

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
pub mod utf8;

pub use conn::{Connection, Event, Limits, Payload, Received, Role};
pub use error::{HandshakeError, HttpError, ProtocolError};
pub use message::MessageKind;
