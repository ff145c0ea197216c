//! The HTTP API (Pusher's REST API), on the same listener as the
//! WebSockets: events and batches published as topics, channel queries
//! from the channel registry, and terminating a user's connections. Every
//! request is signed (auth_key, auth_timestamp within the window,
//! auth_version, body_md5, auth_signature) or answered 401.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use ringws::app::{HttpRequest, HttpResponse, ServerHandle};
use serde::Deserialize;
use serde_json::{json, Map, Value};

use crate::protocol::{self, Kind};
use crate::sign;
use crate::state::{AppState, Gateway};
use crate::ws::{conn_id, topic};

/// Answers one request under `/apps/`.
pub fn handle(gw: &Gateway, req: &HttpRequest<'_>) -> HttpResponse {
    let r = answer(gw, req);
    gw.counts
        .api_status(r.as_ref().map_or_else(|e| e.0, |_| 200));
    let (status, body) = match r {
        Ok(v) => (200, v.to_string()),
        Err((status, msg)) => {
            tracing::info!(
                status,
                method = req.method(),
                path = req.path(),
                "API request refused: {msg}"
            );
            return HttpResponse::text(status, format!("{msg}\n"));
        }
    };
    HttpResponse::json(status, body)
}

type Answer = Result<Value, (u16, String)>;

fn answer(gw: &Gateway, req: &HttpRequest<'_>) -> Answer {
    let path = req.path();
    let rest = path.strip_prefix("/apps/").ok_or_else(|| not_found(path))?;
    let (id, rest) = rest.split_once('/').unwrap_or((rest, ""));
    let app = gw
        .app_by_id(id)
        .ok_or_else(|| (404, format!("Unknown app {id:?}")))?;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    let secret_for = |k: &str| (k == app.cfg.key).then(|| app.cfg.secret.clone());
    let window = gw.cfg.api_timestamp_window.as_secs();
    let query = req.query().unwrap_or("");
    let v = sign::verify_api_request(
        req.method(),
        path,
        query,
        req.body(),
        secret_for,
        now,
        window,
    )
    .map_err(|e| (401, e.to_string()))?;
    let param = |name: &str| {
        v.params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    let method = req.method();
    gw.cluster.attach(req.server());
    let segs: Vec<&str> = rest.split('/').collect();
    match (method, segs.as_slice()) {
        ("POST", ["events"]) => events(gw, app, req.server(), req.body()),
        ("POST", ["batch_events"]) => batch(gw, app, req.server(), req.body()),
        ("GET" | "HEAD", ["channels"]) => channels(
            gw,
            app,
            param("filter_by_prefix").unwrap_or(""),
            param("info"),
        ),
        ("GET" | "HEAD", ["channels", name]) => channel(gw, app, name, param("info")),
        ("GET" | "HEAD", ["channels", name, "users"]) => users(gw, app, name),
        ("POST", ["users", user, "terminate_connections"]) => {
            terminate(gw, app, req.server(), user)
        }
        (_, ["events" | "batch_events"] | ["users", _, "terminate_connections"]) => {
            Err((405, format!("{method} not allowed on {path}")))
        }
        (_, ["channels"] | ["channels", _] | ["channels", _, "users"]) => {
            Err((405, format!("{method} not allowed on {path}")))
        }
        _ => Err(not_found(path)),
    }
}

fn not_found(path: &str) -> (u16, String) {
    (404, format!("No such API path {path:?}"))
}

fn bad(msg: impl Into<String>) -> (u16, String) {
    (400, msg.into())
}

/// An event as the API takes it (`POST /events`, or one of a batch).
#[derive(Deserialize)]
struct Event {
    name: String,
    /// A string (the SDKs send JSON text); anything else is taken as its
    /// JSON text.
    data: Value,
    channel: Option<String>,
    channels: Option<Vec<String>>,
    socket_id: Option<String>,
    info: Option<String>,
}

fn parse<'a, T: Deserialize<'a>>(body: &'a [u8]) -> Result<T, (u16, String)> {
    serde_json::from_slice(body).map_err(|e| bad(format!("Bad JSON body: {e}")))
}

fn events(gw: &Gateway, app: &Arc<AppState>, server: &ServerHandle, body: &[u8]) -> Answer {
    let e: Event = parse(body)?;
    let channels = match (e.channels.clone(), e.channel.clone()) {
        (Some(c), None) => c,
        (None, Some(c)) => vec![c],
        _ => return Err(bad("Give exactly one of channel and channels")),
    };
    if channels.is_empty() || channels.len() > gw.cfg.max_event_channels {
        return Err(bad(format!(
            "An event goes to 1 to {} channels",
            gw.cfg.max_event_channels
        )));
    }
    check_event(app, &e, &channels)?;
    let info = publish(gw, app, server, &e, &channels)?;
    Ok(info.map_or_else(|| json!({}), |i| json!({ "channels": i })))
}

fn batch(gw: &Gateway, app: &Arc<AppState>, server: &ServerHandle, body: &[u8]) -> Answer {
    #[derive(Deserialize)]
    struct Batch {
        batch: Vec<Event>,
    }
    let b: Batch = parse(body)?;
    if b.batch.len() > gw.cfg.max_batch_events {
        return Err(bad(format!(
            "A batch holds at most {} events",
            gw.cfg.max_batch_events
        )));
    }
    // Checked whole before any is published: a bad batch publishes nothing.
    for e in &b.batch {
        match (&e.channel, &e.channels) {
            (Some(c), None) => check_event(app, e, std::slice::from_ref(c))?,
            _ => return Err(bad("Each batch event names one channel")),
        };
    }
    let mut infos = Vec::new();
    for e in &b.batch {
        let c = e.channel.clone().expect("checked");
        let info = publish(gw, app, server, e, std::slice::from_ref(&c))?;
        infos.push(
            info.and_then(|mut i| i.remove(&c))
                .unwrap_or_else(|| json!({})),
        );
    }
    if b.batch.iter().any(|e| e.info.is_some()) {
        Ok(json!({ "batch": infos }))
    } else {
        Ok(json!({}))
    }
}

fn data_text(e: &Event) -> String {
    match &e.data {
        Value::String(s) => s.clone(),
        v => v.to_string(),
    }
}

/// The checks every event passes before anything is published.
fn check_event(app: &AppState, e: &Event, channels: &[String]) -> Result<(), (u16, String)> {
    if e.name.is_empty() || e.name.len() > app.cfg.max_event_name {
        return Err(bad(format!(
            "An event name has 1 to {} bytes",
            app.cfg.max_event_name
        )));
    }
    let len = match &e.data {
        Value::String(s) => s.len(),
        v => v.to_string().len(),
    };
    if len > app.cfg.max_event_bytes {
        return Err((
            413,
            format!(
                "Event data is {len} bytes, over the limit of {}",
                app.cfg.max_event_bytes
            ),
        ));
    }
    for c in channels {
        protocol::channel(c, app.cfg.max_channel_name)
            .map_err(|err| bad(format!("Channel {c:?}: {err}")))?;
    }
    if let Some(s) = &e.socket_id {
        if !is_socket_id(s) {
            return Err(bad(format!("Bad socket_id {s:?}")));
        }
    }
    Ok(())
}

/// `\d+\.\d+`.
fn is_socket_id(s: &str) -> bool {
    s.split_once('.').is_some_and(|(a, b)| {
        !a.is_empty()
            && !b.is_empty()
            && a.bytes().all(|c| c.is_ascii_digit())
            && b.bytes().all(|c| c.is_ascii_digit())
    })
}

/// Publishes `e` (passed by [`check_event`]) to `channels`: each channel's
/// message encoded once and published as its topic, leaving out
/// `socket_id`'s connection. Returns the channels' info when asked.
fn publish(
    gw: &Gateway,
    app: &Arc<AppState>,
    server: &ServerHandle,
    e: &Event,
    channels: &[String],
) -> Result<Option<Map<String, Value>>, (u16, String)> {
    let data = data_text(e);
    // socket_id: its connection is left out by the node that holds it
    // (named in the broker's envelope when that is another node). One
    // that names no connection of ours leaves no one out.
    let except = e.socket_id.as_deref().and_then(conn_id);
    for c in channels {
        let m = protocol::event(&e.name, c, &data, None);
        let t = topic(&app.cfg.id, c);
        app.counts
            .api_events
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        match except {
            Some(id) => server.publish_except(&t, m.as_str(), id),
            None => server.publish(&t, m.as_str()),
        };
        if protocol::channel(c, app.cfg.max_channel_name).is_ok_and(|k| k.cache) {
            let kept = app.channels().cache(
                c,
                Arc::from(m),
                Instant::now(),
                gw.cfg.cache_ttl,
                gw.cfg.max_cached_channels,
            );
            if !kept {
                app.cache_refused
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                tracing::warn!(
                    app = app.cfg.id,
                    channel = c,
                    "cache full ({} channels): event not kept",
                    gw.cfg.max_cached_channels
                );
            }
        }
    }
    let Some(info) = &e.info else { return Ok(None) };
    let want = Info::parse(info)?;
    let mut out = Map::new();
    for c in channels {
        let mut o = Map::new();
        let ch = one(gw, app, c);
        if want.subscription_count {
            o.insert(
                "subscription_count".into(),
                json!(ch.as_ref().map_or(0, |c| c.0)),
            );
        }
        if want.user_count && c.starts_with("presence-") {
            o.insert(
                "user_count".into(),
                json!(ch.as_ref().map_or(0, |c| c.1.len())),
            );
        }
        out.insert(c.clone(), Value::Object(o));
    }
    Ok(Some(out))
}

/// The attributes an `info` parameter asks for.
struct Info {
    user_count: bool,
    subscription_count: bool,
}

impl Info {
    fn parse(s: &str) -> Result<Info, (u16, String)> {
        let mut i = Info {
            user_count: false,
            subscription_count: false,
        };
        for a in s.split(',').map(str::trim).filter(|a| !a.is_empty()) {
            match a {
                "user_count" => i.user_count = true,
                "subscription_count" => i.subscription_count = true,
                _ => return Err(bad(format!("Unknown info attribute {a:?}"))),
            }
        }
        Ok(i)
    }
}

/// Occupied channels of `app` whose names start with `prefix`, on every
/// node: subscriptions and presence users.
fn occupancy(
    gw: &Gateway,
    app: &AppState,
    prefix: &str,
) -> BTreeMap<String, (usize, BTreeSet<String>)> {
    let mut out: BTreeMap<String, (usize, BTreeSet<String>)> = BTreeMap::new();
    for (name, (subs, members)) in gw.cluster.channels(&app.cfg.id, prefix) {
        let e = out.entry(name).or_default();
        e.0 += subs;
        e.1.extend(members.into_keys());
    }
    let reg = app.channels();
    for (name, c) in reg.occupied(prefix) {
        let e = out.entry(name.clone()).or_default();
        e.0 += c.subscriptions;
        e.1.extend(c.members.keys().cloned());
    }
    out
}

/// One channel's subscriptions and presence users, on every node: by key,
/// not a scan of the app's channels.
fn one(gw: &Gateway, app: &AppState, name: &str) -> Option<(usize, BTreeSet<String>)> {
    let mut out = gw
        .cluster
        .channel(&app.cfg.id, name)
        .map(|(subs, members)| (subs, members.into_keys().collect::<BTreeSet<_>>()));
    if let Some(c) = app.channels().get(name) {
        let e = out.get_or_insert_with(Default::default);
        e.0 += c.subscriptions;
        e.1.extend(c.members.keys().cloned());
    }
    out
}

fn channels(gw: &Gateway, app: &AppState, prefix: &str, info: Option<&str>) -> Answer {
    let want = Info::parse(info.unwrap_or(""))?;
    if want.user_count && !prefix.starts_with("presence-") {
        return Err(bad("info=user_count needs filter_by_prefix=presence-"));
    }
    let mut out = Map::new();
    for (name, (subs, users)) in occupancy(gw, app, prefix) {
        let mut o = Map::new();
        if want.user_count {
            o.insert("user_count".into(), json!(users.len()));
        }
        if want.subscription_count {
            o.insert("subscription_count".into(), json!(subs));
        }
        out.insert(name, Value::Object(o));
    }
    Ok(json!({ "channels": out }))
}

fn channel(gw: &Gateway, app: &AppState, name: &str, info: Option<&str>) -> Answer {
    let kind = protocol::channel(name, app.cfg.max_channel_name)
        .map_err(|e| bad(format!("Channel {name:?}: {e}")))?;
    let want = Info::parse(info.unwrap_or(""))?;
    if want.user_count && kind.kind != Kind::Presence {
        return Err(bad("user_count is only for presence channels"));
    }
    let c = one(gw, app, name);
    let mut o = Map::new();
    o.insert("occupied".into(), json!(c.is_some()));
    if want.user_count {
        o.insert(
            "user_count".into(),
            json!(c.as_ref().map_or(0, |c| c.1.len())),
        );
    }
    if want.subscription_count {
        o.insert(
            "subscription_count".into(),
            json!(c.as_ref().map_or(0, |c| c.0)),
        );
    }
    Ok(Value::Object(o))
}

fn users(gw: &Gateway, app: &AppState, name: &str) -> Answer {
    let kind = protocol::channel(name, app.cfg.max_channel_name)
        .map_err(|e| bad(format!("Channel {name:?}: {e}")))?;
    if kind.kind != Kind::Presence {
        return Err(bad("Users are listed only for presence channels"));
    }
    let users: Vec<Value> = one(gw, app, name)
        .map(|c| c.1.into_iter().map(|id| json!({ "id": id })).collect())
        .unwrap_or_default();
    Ok(json!({ "users": users }))
}

fn terminate(gw: &Gateway, app: &AppState, server: &ServerHandle, user: &str) -> Answer {
    close_user(app, user);
    gw.cluster.terminate(server, &app.cfg.id, user);
    Ok(json!({}))
}

/// Closes `user`'s connections on this node (4009, as Pusher does).
pub(crate) fn close_user(app: &AppState, user: &str) {
    let sockets = app.user_sockets(user);
    let (code, reason) = crate::cluster::TERMINATED;
    tracing::info!(
        app = app.cfg.id,
        user,
        connections = sockets.len(),
        "terminating a user's connections"
    );
    let msg = protocol::error(Some(code), reason);
    for r in sockets {
        // Gone since: nothing to do.
        let _ = r.send(msg.as_str());
        let _ = r.close(code, reason);
    }
}

#[cfg(test)]
mod tests {
    use super::is_socket_id;

    #[test]
    fn socket_ids() {
        assert!(is_socket_id("123.456"));
        for bad in ["", ".", "1.", ".1", "1.2.3", "a.1", "1,2", "-1.2"] {
            assert!(!is_socket_id(bad), "{bad}");
        }
    }
}
