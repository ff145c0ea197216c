//! Chat rooms: connect to `ws://127.0.0.1:9001/chat/ROOM?nick=NAME`.
//!
//! ```text
//! cargo run --release --example chat -- --listen 127.0.0.1:9001
//! ```
//!
//! Every room is a topic. A line a member sends reaches everyone in the
//! room as `NAME: line`, the sender included; joins and leaves are
//! announced as `* NAME joined` and `* NAME left`.
//!
//! Two nodes share their rooms through Redis (`--redis`, repeatable to
//! shard the rooms over several instances):
//!
//! ```text
//! cargo run --release --example chat -- --listen 127.0.0.1:9001 --redis redis://127.0.0.1:6379
//! cargo run --release --example chat -- --listen 127.0.0.1:9002 --redis redis://127.0.0.1:6379
//! ```
//!
//! A member on either node then hears everyone in the room on both, each
//! line once and in the order its sender sent them. What the broker does
//! not promise: lines sent while a node's connection to Redis is down do
//! not reach that node's members (it reconnects by itself, and this
//! example logs each such gap), and there is no history.
//!
//! permessage-deflate is on in shared mode (`--deflate`): browsers offer
//! it, chat text compresses well, and in shared mode an idle member costs
//! nothing more for it; each line is compressed once per thread for
//! everyone in the room.

use std::net::SocketAddr;

use clap::Parser;
use ringws::app::{App, Closed, Handler, Message, Request, Socket, Upgrade};
use ringws::broker::Redis;
use ringws::config::DeflateMode;
use ringws::Config;

/// One member of one room.
struct Member {
    nick: String,
    room: String,
}

struct Chat;

/// A nickname or room name: 1 to 32 letters, digits, `-` or `_`.
fn is_name(s: &str) -> bool {
    (1..=32).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

impl Handler for Chat {
    type Data = Member;

    fn upgrade(&self, req: &Request<'_>) -> Upgrade<Member> {
        let room = req.path().strip_prefix("/chat/").unwrap_or("");
        if !is_name(room) {
            return Upgrade::reject(404, "rooms are at /chat/NAME\n");
        }
        match req.query_param("nick") {
            Some(nick) if is_name(nick) => Upgrade::accept(Member {
                nick: nick.to_owned(),
                room: room.to_owned(),
            }),
            _ => Upgrade::reject(400, "?nick=NAME (1-32 letters, digits, - or _)\n"),
        }
    }

    fn open(&self, ws: &mut Socket<'_, Member>) {
        let room = ws.data().room.clone();
        ws.subscribe(&room);
        // To everyone in the room, this member included.
        ws.server()
            .publish(&room, format!("* {} joined", ws.data().nick).as_str());
    }

    fn message(&self, ws: &mut Socket<'_, Member>, msg: Message<'_>) {
        let Message::Text(text) = msg else {
            // 1003: "a type of data it cannot accept".
            return ws.close(1003, "text only");
        };
        let m = ws.data();
        let line = format!("{}: {text}", m.nick);
        let room = m.room.clone();
        ws.publish(&room, line.as_str());
        ws.send_text(&line);
    }

    fn close(&self, m: Member, closed: &Closed<'_>) {
        closed.publish(&m.room, format!("* {} left", m.nick).as_str());
    }
}

#[derive(Parser)]
struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:9001")]
    listen: SocketAddr,
    /// permessage-deflate: off, shared or dedicated.
    #[arg(long, default_value = "shared")]
    deflate: DeflateMode,
    /// Share the rooms with other nodes through this Redis
    /// (`redis://[[user]:password@]host:port`, or
    /// `redis+sentinel://host:26379,.../master`); repeat to shard the
    /// rooms over several instances (every node given the same list).
    #[arg(long)]
    redis: Vec<String>,
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    ringws::log::init_from_env(); // RINGWS_LOG_LEVEL=debug for more
    let a = Args::parse();
    let cfg = Config {
        listen: a.listen,
        deflate: a.deflate,
        ..Config::default()
    };
    let mut app = App::new(cfg).route_prefix("/chat", Chat);
    if !a.redis.is_empty() {
        app = app
            .broker(Redis::new(&a.redis)?)
            .on_broker_gap(|_server, gap| {
                tracing::warn!(
                    "lines sent on other nodes in the last {:?} did not reach this node's members ({})",
                    gap.down_for,
                    gap.instance
                );
            });
    }
    Ok(app.run()?)
}
