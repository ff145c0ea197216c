//! The gateway as a ringws [`App`]: the WebSocket route, the HTTP API,
//! the close codes Pusher clients act on, and the other nodes.

use std::sync::Arc;

use ringws::app::{App, HttpRequest, Route};
use ringws::broker::Redis;
use ringws::Config;

use crate::state::Gateway;
use crate::ws::{codes, PusherWs};

/// The ringws app that serves `gw` with the server settings `cfg`: the
/// protocol at `/app/{key}`, the HTTP API under `/apps/`, the gateway's
/// families in `/metrics`.
///
/// The server's idle timeout for these connections is twice the activity
/// timeout: after one activity timeout of silence the server sends
/// `pusher:ping`, and a client that sends nothing back within another
/// one is closed with 4201. A shutdown closes them with 4200, which
/// pusher-js answers by reconnecting at once (to another node).
///
/// With `broker`, events reach every node's subscribers, and the nodes
/// tell each other their channels' state ([`crate::cluster`]): presence
/// members, occupancy for the HTTP API, `socket_id` exclusion and
/// terminating a user's connections hold across nodes. Fails only if the
/// cluster's thread cannot start.
pub fn app(gw: Arc<Gateway>, cfg: Config, broker: Option<Redis>) -> std::io::Result<App> {
    let ws = Route::prefix("/app", PusherWs::new(gw.clone()))
        .idle_timeout(gw.config().activity_timeout * 2)
        .idle_close(codes::PONG_TIMEOUT, "Pong reply not received")
        .shutdown_close(codes::RECONNECT, "Server shutting down, please reconnect");
    let (get, post, metrics) = (gw.clone(), gw.clone(), gw.clone());
    let mut app = App::new(cfg);
    if let Some(b) = broker {
        gw.cluster.enable();
        crate::cluster::spawn_ticker(&gw)?;
        let node = gw.clone();
        app = app
            .broker(b)
            .on_remote_publish(crate::cluster::TOPIC, move |server, payload| {
                node.cluster.receive(&node, server, payload)
            });
    }
    Ok(app
        .with_route(ws)
        .metrics(move |e| crate::metrics::render(&metrics, e))
        .http_prefix("GET", "/apps", move |req: &HttpRequest<'_>| {
            crate::api::handle(&get, req)
        })
        .http_prefix("POST", "/apps", move |req: &HttpRequest<'_>| {
            crate::api::handle(&post, req)
        }))
}
