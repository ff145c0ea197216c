//! The WebSocket side: a ringws [`Handler`] for `/app/{key}` that speaks
//! the Pusher Channels protocol 7. Channels are ringws topics named
//! `{app id}:{channel}`, so an event is one publish that ringws fans out
//! (and, with a broker, sends to the other nodes) without this code on
//! the path; this code runs for what each connection itself sends.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use ringws::app::{Closed, ConnId, Handler, Message, Request, ServerHandle, Socket, Upgrade};

use crate::protocol::{self, ClientMessage, Kind, ProtocolError};
use crate::sign;
use crate::state::{AppState, Gateway};
use crate::webhook::{Event, Kind as Hook};

/// Close codes and their reasons (Pusher's "Error codes").
pub mod codes {
    /// The app key is not known here (clients do not retry).
    pub const UNKNOWN_APP: u16 = 4001;
    /// The app has its maximum of connections (clients do not retry).
    pub const OVER_QUOTA: u16 = 4004;
    /// The protocol version is not supported.
    pub const BAD_PROTOCOL: u16 = 4007;
    /// The connection is not authorised (terminated by the app).
    pub const UNAUTHORIZED: u16 = 4009;
    /// The server is over capacity (clients retry after a while).
    pub const OVER_CAPACITY: u16 = 4100;
    /// Reconnect now (a node draining).
    pub const RECONNECT: u16 = 4200;
    /// No pong in time.
    pub const PONG_TIMEOUT: u16 = 4201;
    /// A client event past the rate limit.
    pub const CLIENT_EVENT_RATE: u16 = 4301;
}

/// The topic for `channel` of app `app_id`.
pub(crate) fn topic(app_id: &str, channel: &str) -> String {
    let mut t = String::with_capacity(app_id.len() + 1 + channel.len());
    t.push_str(app_id);
    t.push(':');
    t.push_str(channel);
    t
}

/// The `/app/{key}` handler.
pub struct PusherWs {
    gw: Arc<Gateway>,
}

impl PusherWs {
    /// A handler serving `gw`'s apps.
    pub fn new(gw: Arc<Gateway>) -> PusherWs {
        PusherWs { gw }
    }
}

/// A connection's socket id: its [`ConnId`] as `node.local`.
pub(crate) fn socket_id(c: ConnId) -> String {
    format!("{}.{}", c.node, c.local)
}

/// The connection a socket id names, if it is one of ours.
pub(crate) fn conn_id(socket_id: &str) -> Option<ConnId> {
    let (node, local) = socket_id.split_once('.')?;
    Some(ConnId {
        node: node.parse().ok()?,
        local: local.parse().ok()?,
    })
}

/// One connection's state.
pub struct Session {
    /// The app, or why the connection is refused (sent at open).
    app: Result<Arc<AppState>, (u16, String)>,
    socket_id: String,
    /// Subscribed channels, with the presence user id where there is one.
    subs: HashMap<String, Option<String>>,
    /// The signed-in user, if any.
    user: Option<String>,
    /// The signed-in user's `user_info` (raw JSON), for presence channels
    /// joined without `channel_data`.
    user_info: Option<String>,
    /// Counted in the app's connections (to give back at close).
    counted: bool,
    /// Client events in the current one-second window, and its start.
    window: (Instant, u32),
}

impl Handler for PusherWs {
    type Data = Session;

    fn upgrade(&self, req: &Request<'_>) -> Upgrade<Session> {
        // Refusals are told over the WebSocket (pusher:error, then a Close
        // with the code), as Pusher does: a browser shows the client no
        // HTTP status, only the close code it acts on.
        let key = req.path().strip_prefix("/app/").unwrap_or("");
        let app = match self.gw.app_by_key(key) {
            Some(a) => match req.query_param("protocol").map(str::parse::<u32>) {
                // pusher-js 8 speaks 7; 5 and 6 differ only in what this
                // server does not use.
                None | Some(Ok(5..=7)) => Ok(a.clone()),
                Some(_) => Err((
                    codes::BAD_PROTOCOL,
                    "Unsupported protocol version".to_owned(),
                )),
            },
            None => Err((
                codes::UNKNOWN_APP,
                format!(
                    "App key {key} not in this cluster. Did you forget to specify the cluster?"
                ),
            )),
        };
        Upgrade::accept(Session {
            app,
            // Named at open, from the connection's ConnId.
            socket_id: String::new(),
            subs: HashMap::new(),
            user: None,
            user_info: None,
            counted: false,
            window: (Instant::now(), 0),
        })
    }

    fn open(&self, ws: &mut Socket<'_, Session>) {
        let app = match &ws.data().app {
            Ok(a) => a.clone(),
            Err((code, msg)) => {
                let (code, msg) = (*code, msg.clone());
                let c = &self.gw.counts;
                let n = if code == codes::UNKNOWN_APP {
                    &c.unknown_app
                } else {
                    &c.bad_protocol
                };
                n.fetch_add(1, Ordering::Relaxed);
                tracing::info!(code, "refused: {msg}");
                ws.send_text(&protocol::error(Some(code), &msg));
                ws.close(code, &msg);
                return;
            }
        };
        let n = app.connections.fetch_add(1, Ordering::Relaxed) + 1;
        if app.cfg.max_connections != 0 && n > app.cfg.max_connections {
            app.connections.fetch_sub(1, Ordering::Relaxed);
            app.counts.over_quota.fetch_add(1, Ordering::Relaxed);
            tracing::info!(
                app = app.cfg.id,
                "refused: over the connection quota ({})",
                app.cfg.max_connections
            );
            let msg = "Over connection quota";
            ws.send_text(&protocol::error(Some(codes::OVER_QUOTA), msg));
            ws.close(codes::OVER_QUOTA, msg);
            return;
        }
        self.gw.cluster.attach(&ws.server());
        let handle = ws.handle();
        let id = ws.conn_id();
        let s = ws.data_mut();
        s.counted = true;
        // `node.local`, the protocol's `\d+\.\d+`: any node's HTTP API can
        // leave this connection out of an event without asking this one.
        s.socket_id = socket_id(id);
        app.add_socket(&s.socket_id, handle);
        let hello = protocol::connection_established(
            &s.socket_id,
            self.gw.cfg.activity_timeout.as_secs() as u32,
        );
        ws.send_text(&hello);
    }

    fn message(&self, ws: &mut Socket<'_, Session>, msg: Message<'_>) {
        let Ok(app) = ws.data().app.clone() else {
            return;
        };
        let Message::Text(text) = msg else {
            let e = "Binary messages are not part of the protocol";
            tracing::debug!(socket_id = ws.data().socket_id, "{e}");
            ws.send_text(&protocol::error(None, e));
            return;
        };
        let m = match protocol::parse(text.as_bytes(), &app.cfg.limits()) {
            Ok(m) => m,
            Err(e) => return refuse(ws, &e),
        };
        match m {
            ClientMessage::Ping => {
                ws.send_text(&protocol::pong());
            }
            ClientMessage::Pong => {}
            ClientMessage::Subscribe {
                channel,
                auth,
                channel_data,
            } => {
                self.subscribe(ws, &app, channel, auth, channel_data);
            }
            ClientMessage::Unsubscribe { channel } => {
                if let Some(member) = ws.data_mut().subs.remove(&channel) {
                    ws.unsubscribe(&topic(&app.cfg.id, &channel));
                    leave(&self.gw, &app, &channel, member.as_deref(), &ws.server());
                }
            }
            ClientMessage::Signin { auth, user_data } => self.signin(ws, &app, &auth, &user_data),
            ClientMessage::Client {
                event,
                channel,
                data,
            } => self.client_event(ws, &app, &event, &channel, &data),
        }
    }

    fn idle(&self, ws: &mut Socket<'_, Session>) {
        ws.send_text(&protocol::ping());
    }

    fn close(&self, s: Session, closed: &Closed<'_>) {
        let Ok(app) = s.app else { return };
        if !s.counted {
            return;
        }
        app.connections.fetch_sub(1, Ordering::Relaxed);
        app.remove_socket(&s.socket_id);
        if let Some(u) = &s.user {
            app.remove_user(u, &s.socket_id);
        }
        let server = closed.server();
        for (channel, member) in &s.subs {
            leave(&self.gw, &app, channel, member.as_deref(), &server);
        }
    }
}

/// Answers a message the protocol refuses: a `pusher:error` with its code,
/// and a log line. The connection stays (Pusher's servers keep it too).
fn refuse(ws: &mut Socket<'_, Session>, e: &ProtocolError) {
    if let Ok(a) = &ws.data().app {
        a.counts.refused_messages.fetch_add(1, Ordering::Relaxed);
    }
    tracing::debug!(socket_id = ws.data().socket_id, "refused a message: {e}");
    ws.send_text(&protocol::error(e.code(), &e.to_string()));
}

/// A subscription ends (the connection is no longer subscribed to the
/// topic): the channel's counts, the other nodes told, and
/// `member_removed` to the channel when it was the user's last connection
/// on any node.
fn leave(gw: &Gateway, app: &AppState, channel: &str, member: Option<&str>, server: &ServerHandle) {
    let id = &app.cfg.id;
    let _decide = member.map(|_| gw.cluster.decide());
    // The other nodes' view first: the two locks are never held together.
    let elsewhere = member.is_some_and(|u| gw.cluster.has_member(id, channel, u));
    let occupied_elsewhere = gw.cluster.occupied_elsewhere(id, channel);
    let mut reg = app.channels();
    let left = reg.leave(channel, member);
    gw.cluster.announce(server, id, channel, reg.get(channel));
    let removed = left.member_removed && !elsewhere;
    // Webhooks queued under the lock: in the order of the changes (a
    // removal and a return within the debounce cancel out).
    if let (true, Some(user)) = (removed, member) {
        if gw.webhooks.wants(id, Hook::MemberRemoved) {
            let e = Event::MemberRemoved {
                channel: channel.to_owned(),
                user_id: user.to_owned(),
            };
            gw.webhooks.send(id, e);
        }
    }
    if left.vacated && !occupied_elsewhere && gw.webhooks.wants(id, Hook::ChannelVacated) {
        gw.webhooks.send(
            id,
            Event::ChannelVacated {
                channel: channel.to_owned(),
            },
        );
    }
    drop(reg);
    if let (true, Some(user)) = (removed, member) {
        // This node's subscribers only: the others hear of it from this
        // node's state and decide for themselves (see `cluster`).
        let m = protocol::member_removed(channel, user);
        server.publish_local(&topic(id, channel), m.as_str());
    }
}

impl PusherWs {
    fn subscribe(
        &self,
        ws: &mut Socket<'_, Session>,
        app: &Arc<AppState>,
        channel: String,
        auth: Option<String>,
        channel_data: Option<String>,
    ) {
        let kind = match protocol::channel(&channel, app.cfg.max_channel_name) {
            Ok(k) => k,
            Err(e) => return refuse(ws, &e),
        };
        if ws.data().subs.contains_key(&channel) {
            // Subscribed already: say so again, change nothing.
            if kind.kind != Kind::Presence {
                ws.send_text(&protocol::subscription_succeeded(&channel));
            }
            return;
        }
        if ws.data().subs.len() >= app.cfg.max_subscriptions {
            let msg = format!(
                "Subscription to {channel} refused: this connection has its maximum of {} channels",
                app.cfg.max_subscriptions
            );
            app.counts
                .refused_subscriptions
                .fetch_add(1, Ordering::Relaxed);
            tracing::info!(socket_id = ws.data().socket_id, "{msg}");
            ws.send_text(&protocol::error(None, &msg));
            return;
        }
        let socket_id = ws.data().socket_id.clone();
        // A refused subscription is answered with a connection-level
        // pusher:error, as Pusher's servers answer it (and no channel
        // field, which would hide it from apps bound to the connection):
        // pusher:subscription_error is what pusher-js itself emits when its
        // auth endpoint fails, never a server's answer.
        if kind.kind == Kind::ServerToUser {
            // pusher-js subscribes to its user's own channel after a
            // sign-in, with no signature: the sign-in is the check.
            let user = channel.strip_prefix(protocol::SERVER_TO_USER_PREFIX);
            if user.is_none() || ws.data().user.as_deref() != user {
                tracing::info!(
                    socket_id,
                    channel,
                    "subscription refused: not signed in as that user"
                );
                let msg = format!("Not signed in as the user of {channel}");
                app.counts
                    .refused_subscriptions
                    .fetch_add(1, Ordering::Relaxed);
                ws.send_text(&protocol::error(None, &msg));
                return;
            }
        } else if kind.kind.needs_auth() {
            let data = if kind.kind == Kind::Presence {
                channel_data.as_deref()
            } else {
                None
            };
            let ok = auth.as_deref().is_some_and(|a| {
                sign::verify_channel_auth(
                    &app.cfg.key,
                    &app.cfg.secret,
                    &socket_id,
                    &channel,
                    data,
                    a,
                )
            });
            if !ok {
                tracing::info!(
                    socket_id,
                    channel,
                    "subscription refused: invalid signature"
                );
                let msg = format!("Invalid signature for channel {channel}");
                app.counts
                    .refused_subscriptions
                    .fetch_add(1, Ordering::Relaxed);
                ws.send_text(&protocol::error(None, &msg));
                return;
            }
        }
        let member = if kind.kind == Kind::Presence {
            let Some(data) = channel_data.as_deref() else {
                // No channel_data: pusher-js then takes the member to be the
                // signed-in user (presence_channel.ts), and so does this.
                let s = ws.data();
                let Some(user) = s.user.clone() else {
                    let e = ProtocolError::MissingField("channel_data");
                    return refuse(ws, &e);
                };
                let info = s.user_info.clone();
                return self.join(
                    ws,
                    app,
                    channel,
                    kind,
                    Some(protocol::Member {
                        user_id: user,
                        user_info: info,
                    }),
                );
            };
            match protocol::presence_member(data) {
                Ok(m) => Some(m),
                Err(e) => return refuse(ws, &e),
            }
        } else {
            None
        };
        self.join(ws, app, channel, kind, member);
    }

    /// Subscribes, the checks passed: the registry, the answer (with the
    /// member list), `member_added` to the others, the cached event.
    fn join(
        &self,
        ws: &mut Socket<'_, Session>,
        app: &Arc<AppState>,
        channel: String,
        kind: protocol::Channel,
        member: Option<protocol::Member>,
    ) {
        if let Some(m) = &member {
            if m.user_info
                .as_ref()
                .is_some_and(|i| i.len() > app.cfg.max_presence_info)
            {
                let msg = format!("user_info is over {} bytes", app.cfg.max_presence_info);
                app.counts
                    .refused_subscriptions
                    .fetch_add(1, Ordering::Relaxed);
                ws.send_text(&protocol::error(None, &msg));
                return;
            }
        }
        let t = topic(&app.cfg.id, &channel);
        let cluster = &self.gw.cluster;
        let _decide = member.as_ref().map(|_| cluster.decide());
        // Other nodes' members, taken before this node's lock (the two are
        // never held together).
        let remote = match &member {
            Some(_) if cluster.on() => cluster.members(&app.cfg.id, &channel),
            _ => HashMap::new(),
        };
        let server = ws.server();
        let occupied_elsewhere = cluster.occupied_elsewhere(&app.cfg.id, &channel);
        let mut channels = app.channels();
        if let Some(m) = &member {
            let (local, c) = channels.members(&channel);
            let only_remote = remote
                .keys()
                .filter(|u| c.is_none_or(|c| !c.members.contains_key(*u)));
            let n = local + only_remote.count();
            let known = c.is_some_and(|c| c.members.contains_key(&m.user_id))
                || remote.contains_key(&m.user_id);
            if !known && n >= app.cfg.max_presence_members {
                drop(channels);
                let msg = format!("Presence channel {channel} has its maximum of {n} members");
                app.counts
                    .refused_subscriptions
                    .fetch_add(1, Ordering::Relaxed);
                ws.send_text(&protocol::error(None, &msg));
                return;
            }
        }
        let joined = channels.join(
            &channel,
            member
                .as_ref()
                .map(|m| (m.user_id.as_str(), m.user_info.as_deref())),
        );
        // The member list as it stands with this one in: sent to it, and
        // member_added to the others, under the lock, so that no other
        // join or leave falls between the list and the announcement.
        let answer = match &member {
            Some(_) => {
                let c = channels.get(&channel).expect("just joined");
                let here = c
                    .members
                    .iter()
                    .map(|(id, m)| (id.as_str(), m.info.as_deref()));
                let elsewhere = (remote.iter())
                    .filter(|(u, _)| !c.members.contains_key(*u))
                    .map(|(u, i)| (u.as_str(), i.as_deref()));
                protocol::presence_subscription_succeeded(&channel, here.chain(elsewhere))
            }
            None => protocol::subscription_succeeded(&channel),
        };
        cluster.announce(&server, &app.cfg.id, &channel, channels.get(&channel));
        ws.subscribe(&t);
        let new_user = member
            .as_ref()
            .is_some_and(|m| !remote.contains_key(&m.user_id));
        let hooks = &self.gw.webhooks;
        if joined.occupied && !occupied_elsewhere && hooks.wants(&app.cfg.id, Hook::ChannelOccupied)
        {
            hooks.send(
                &app.cfg.id,
                Event::ChannelOccupied {
                    channel: channel.clone(),
                },
            );
        }
        if let (true, true, Some(m)) = (joined.member_added, new_user, &member) {
            if hooks.wants(&app.cfg.id, Hook::MemberAdded) {
                let e = Event::MemberAdded {
                    channel: channel.clone(),
                    user_id: m.user_id.clone(),
                };
                hooks.send(&app.cfg.id, e);
            }
            // This node's subscribers only (see `cluster`).
            ws.publish_local(
                &t,
                protocol::member_added(&channel, &m.user_id, m.user_info.as_deref()).as_str(),
            );
        }
        let cached = kind
            .cache
            .then(|| channels.cached(&channel, Instant::now(), self.gw.cfg.cache_ttl));
        drop(channels);
        ws.send_text(&answer);
        match cached {
            Some(Some(m)) => {
                ws.send_text(&m);
            }
            Some(None) => {
                ws.send_text(&protocol::cache_miss(&channel));
            }
            None => {}
        }
        app.counts.subscriptions.fetch_add(1, Ordering::Relaxed);
        ws.data_mut()
            .subs
            .insert(channel, member.map(|m| m.user_id));
    }

    fn signin(
        &self,
        ws: &mut Socket<'_, Session>,
        app: &Arc<AppState>,
        auth: &str,
        user_data: &str,
    ) {
        let socket_id = ws.data().socket_id.clone();
        if !sign::verify_user_auth(&app.cfg.key, &app.cfg.secret, &socket_id, user_data, auth) {
            tracing::info!(socket_id, "sign-in refused: invalid signature");
            ws.send_text(&protocol::error(
                Some(codes::UNAUTHORIZED),
                "Invalid signature for the user data",
            ));
            ws.close(codes::UNAUTHORIZED, "Invalid signature");
            return;
        }
        let user = match protocol::user_id_of(user_data) {
            Ok(u) => u,
            Err(e) => return refuse(ws, &e),
        };
        if let Some(old) = ws.data_mut().user.take() {
            app.remove_user(&old, &socket_id);
        }
        let handle = ws.handle();
        app.add_user(&user, &socket_id, handle);
        let info = serde_json::from_str::<serde_json::Value>(user_data)
            .ok()
            .and_then(|v| {
                v.get("user_info")
                    .filter(|i| !i.is_null())
                    .map(|i| i.to_string())
            });
        let s = ws.data_mut();
        s.user = Some(user);
        s.user_info = info;
        ws.send_text(&protocol::signin_success(user_data));
    }

    fn client_event(
        &self,
        ws: &mut Socket<'_, Session>,
        app: &Arc<AppState>,
        event: &str,
        channel: &str,
        data: &str,
    ) {
        if !app.cfg.client_events {
            let msg = "To send client events, you must enable this feature in the app's settings";
            return send_error(ws, None, msg);
        }
        let Some(member) = ws.data().subs.get(channel) else {
            let msg = format!("Client event rejected: not subscribed to {channel}");
            return send_error(ws, None, &msg);
        };
        let member = member.clone();
        match protocol::channel(channel, app.cfg.max_channel_name) {
            Ok(c) if matches!(c.kind, Kind::Private | Kind::Presence) => {}
            _ => {
                let msg = "Client events are only for private and presence channels";
                return send_error(ws, None, msg);
            }
        }
        if data.len() > app.cfg.max_event_bytes {
            let msg = format!(
                "Client event rejected: data over {} bytes",
                app.cfg.max_event_bytes
            );
            return send_error(ws, None, &msg);
        }
        let now = Instant::now();
        let s = ws.data_mut();
        if now.duration_since(s.window.0).as_secs() >= 1 {
            s.window = (now, 0);
        }
        s.window.1 += 1;
        if s.window.1 > app.cfg.client_event_rate {
            let msg = format!(
                "Client event rejected - rate limit of {} per second exceeded",
                app.cfg.client_event_rate
            );
            app.counts
                .client_events_limited
                .fetch_add(1, Ordering::Relaxed);
            return send_error(ws, Some(codes::CLIENT_EVENT_RATE), &msg);
        }
        let m = protocol::client_event(event, channel, data, member.as_deref());
        app.counts.client_events.fetch_add(1, Ordering::Relaxed);
        ws.publish(&topic(&app.cfg.id, channel), m.as_str());
        let hooks = &self.gw.webhooks;
        if hooks.wants(&app.cfg.id, Hook::ClientEvent) {
            let e = Event::ClientEvent {
                channel: channel.to_owned(),
                event: event.to_owned(),
                data: data.to_owned(),
                socket_id: ws.data().socket_id.clone(),
                user_id: member,
            };
            hooks.send(&app.cfg.id, e);
        }
    }
}

fn send_error(ws: &mut Socket<'_, Session>, code: Option<u16>, msg: &str) {
    if let (Ok(a), None) = (&ws.data().app, code) {
        a.counts.refused_messages.fetch_add(1, Ordering::Relaxed);
    }
    tracing::debug!(socket_id = ws.data().socket_id, "{msg}");
    ws.send_text(&protocol::error(code, msg));
}
