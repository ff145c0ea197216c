//! ringws: a WebSocket server for Linux on io_uring (work in progress).

pub mod proto;
