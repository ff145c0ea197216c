//! The gateway as a ringws [`App`]: the WebSocket route, the HTTP API,
//! and the close codes Pusher clients act on.

use std::sync::Arc;

use ringws::app::{App, HttpRequest, Route};
use ringws::Config;

use crate::state::Gateway;
use crate::ws::{codes, PusherWs};

/// The ringws app that serves `gw` with the server settings `cfg`: the
/// protocol at `/app/{key}`, the HTTP API under `/apps/`.
///
/// The server's idle timeout for these connections is twice the activity
/// timeout: after one activity timeout of silence the server sends
/// `pusher:ping`, and a client that sends nothing back within another
/// one is closed with 4201. A shutdown closes them with 4200, which
/// pusher-js answers by reconnecting at once (to another node).
pub fn app(gw: Arc<Gateway>, cfg: Config) -> App {
    let ws = Route::prefix("/app", PusherWs::new(gw.clone()))
        .idle_timeout(gw.config().activity_timeout * 2)
        .idle_close(codes::PONG_TIMEOUT, "Pong reply not received")
        .shutdown_close(codes::RECONNECT, "Server shutting down, please reconnect");
    let (get, post, metrics) = (gw.clone(), gw.clone(), gw);
    App::new(cfg)
        .with_route(ws)
        .metrics(move |e| crate::metrics::render(&metrics, e))
        .http_prefix("GET", "/apps", move |req: &HttpRequest<'_>| {
            crate::api::handle(&get, req)
        })
        .http_prefix("POST", "/apps", move |req: &HttpRequest<'_>| {
            crate::api::handle(&post, req)
        })
}
