//! ringws: a WebSocket server for Linux on io_uring, thread-per-core.

pub mod config;
pub mod log;
pub mod proto;
pub mod runtime;

pub use config::Config;
pub use runtime::{Server, StartError};
