//! Authentication in a deferred upgrade: the bearer token is checked by a
//! token service on another thread (standing in for a database or an
//! identity provider), and the connection opens only once it says yes.
//!
//! ```text
//! cargo run --release --example auth -- --listen 127.0.0.1:9001
//! ```
//!
//! The token comes as `Authorization: Bearer TOKEN`, or as `?token=TOKEN`
//! for browsers, which cannot set headers on a WebSocket. A missing or
//! unknown token gets 401. The demo tokens are `t0k3n-ann` and
//! `t0k3n-bob`. Once in, a client hears `welcome NAME`, and every message
//! it sends comes back.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{mpsc, Mutex};

use clap::Parser;
use ringws::app::{App, Deferred, Handler, Message, Reject, Request, Socket, Upgrade};
use ringws::Config;

/// A token to check, and the upgrade waiting on the answer.
type Check = (String, Deferred<String>);

struct Auth {
    service: Mutex<mpsc::Sender<Check>>,
}

fn unauthorized(why: &str) -> Reject {
    Reject::new(401, format!("{why}\n")).header("WWW-Authenticate", "Bearer")
}

impl Handler for Auth {
    /// The user's name.
    type Data = String;

    fn upgrade(&self, req: &Request<'_>) -> Upgrade<String> {
        let token = req
            .header_str("authorization")
            .and_then(|v| v.strip_prefix("Bearer "))
            .or_else(|| req.query_param("token"));
        let Some(token) = token.map(str::to_owned) else {
            return unauthorized("a bearer token is required").into();
        };
        let service = self.service.lock().expect("not poisoned").clone();
        // The request's bytes are gone once this returns: the token was
        // copied out above.
        Upgrade::defer(move |pending| {
            if let Err(mpsc::SendError((_, pending))) = service.send((token, pending)) {
                pending.reject(Reject::new(503, "the token service is down\n"));
            }
        })
    }

    fn open(&self, ws: &mut Socket<'_, String>) {
        let hello = format!("welcome {}", ws.data());
        ws.send_text(&hello);
    }

    fn message(&self, ws: &mut Socket<'_, String>, msg: Message<'_>) {
        ws.send(msg);
    }
}

/// The token service: answers each check on its own thread.
fn token_service() -> mpsc::Sender<Check> {
    let users: HashMap<&str, &str> = [("t0k3n-ann", "ann"), ("t0k3n-bob", "bob")].into();
    let (tx, rx) = mpsc::channel::<Check>();
    std::thread::spawn(move || {
        for (token, pending) in rx {
            match users.get(token.as_str()) {
                Some(user) => pending.accept(user.to_string()),
                None => pending.reject(unauthorized("unknown token")),
            }
        }
    });
    tx
}

#[derive(Parser)]
struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:9001")]
    listen: SocketAddr,
}

fn main() -> Result<(), ringws::StartError> {
    ringws::log::init_from_env(); // RINGWS_LOG_LEVEL=debug for more
    let cfg = Config {
        listen: Args::parse().listen,
        ..Config::default()
    };
    let auth = Auth {
        service: Mutex::new(token_service()),
    };
    App::new(cfg).route("/", auth).run()
}
