//! ringws-gateway: a real-time server that speaks the Pusher Channels
//! protocol 7 (what `pusher-js`, Laravel Echo and the mobile SDKs speak)
//! and its signed HTTP API (what every Pusher server SDK calls), built on
//! ringws's public API alone.
//!
//! ```text
//!  pusher-js ──ws──> /app/{key} ── ws::PusherWs (a ringws Handler) ──┐
//!                                   subscribe / client events / ping │ topics "{app}:{channel}"
//!  server SDK ─http─> /apps/{id}/… ── api (signed) ── publish ───────┤ (ringws fans out, and
//!                                                                    │  with --redis, to nodes)
//!                     state::Gateway: apps, channels, presence, cache┘
//! ```
//!
//! # Layout
//! - [`protocol`]: the protocol's messages, sans-IO: parse what clients
//!   send, encode what the server sends, channel names.
//! - [`sign`]: channel authorisation, user sign-in, HTTP API and webhook
//!   signatures.
//! - [`config`]: apps and their limits.
//! - [`state`]: what is shared across connections (channels, presence
//!   members, cached events, users).
//! - [`ws`]: the WebSocket handler; [`api`]: the HTTP API; [`server`]: the
//!   two as one ringws `App`; [`metrics`]: its `/metrics` families.
//! - [`cluster`]: several nodes as one, through the broker.
//! - [`webhook`]: Pusher's webhooks, batched, signed and retried from their
//!   own thread.

pub mod api;
pub mod cluster;
pub mod config;
pub mod metrics;
pub mod protocol;
pub mod server;
pub mod sign;
pub mod state;
pub mod webhook;
pub mod ws;

pub use config::{AppConfig, GatewayConfig};
pub use server::app;
pub use state::Gateway;
