//! The RESP codec against a real redis-server, over plain blocking
//! sockets: what the broker's connections will do, in RESP3 (HELLO 3,
//! pushes) and RESP2 (arrays), with binary payloads that arrive over many
//! reads. Each test starts its own redis-server on a free port and kills it
//! at the end; without redis-server installed (scripts/test.sh installs
//! it) the tests say so and pass.

#[path = "common/redis.rs"]
mod redis_server;

use bytes::Bytes;
use redis_server::{start, Conn};
use ringws::proto::resp::{
    encode_auth, encode_client_setname, encode_command, encode_hello, encode_ping, encode_publish,
    encode_publish_parts, encode_sentinel_master_addr, encode_subscribe, encode_unsubscribe, Frame,
    PubSub,
};

const PASSWORD: &str = "s3cret";

/// The next frame, which must be a pub/sub event.
trait PubSubConn {
    fn pubsub(&mut self) -> PubSub;
}

impl PubSubConn for Conn {
    fn pubsub(&mut self) -> PubSub {
        let f = self.frame();
        PubSub::from_frame(f).unwrap_or_else(|f| panic!("not pub/sub: {f:?}"))
    }
}

fn b(s: &[u8]) -> Bytes {
    Bytes::copy_from_slice(s)
}

/// Bytes that look like RESP, and a NUL.
const SMALL: &[u8] = b"a\r\nb\0c\r\n$5\r\n*1\r\n\0";

/// 100 KiB of every byte value, CR, LF and NUL included.
fn large() -> Vec<u8> {
    (0..100 << 10).map(|i| (i % 251) as u8).collect()
}

/// The value of `key` in a map reply.
fn map_get<'a>(f: &'a Frame, key: &str) -> &'a Frame {
    let Frame::Map(pairs) = f else {
        panic!("not a map: {f:?}");
    };
    pairs
        .iter()
        .find(|(k, _)| *k == Frame::Bulk(b(key.as_bytes())))
        .map(|(_, v)| v)
        .unwrap_or_else(|| panic!("no {key} in {f:?}"))
}

fn is_error(f: &Frame, prefix: &str) -> bool {
    matches!(f, Frame::Error(e) if e.starts_with(prefix.as_bytes()))
}

/// Publishes SMALL to `a` and 100 KiB to `b` (in two parts, as the broker
/// sends its envelope and frame), pipelined with a PUBLISH nobody hears,
/// and reads the three subscriber counts.
fn publish_both(publisher: &mut Conn) {
    let big = large();
    publisher.send(|o| {
        encode_publish(o, b"a", SMALL);
        encode_publish_parts(o, b"b", &[&big[..10], &big[10..]]);
        encode_publish(o, b"nobody", b"x");
    });
    assert_eq!(publisher.frame(), Frame::Integer(1));
    assert_eq!(publisher.frame(), Frame::Integer(1));
    assert_eq!(publisher.frame(), Frame::Integer(0));
}

fn expect_messages(subscriber: &mut Conn) {
    assert_eq!(
        subscriber.pubsub(),
        PubSub::Message {
            channel: b(b"a"),
            payload: b(SMALL)
        }
    );
    assert_eq!(
        subscriber.pubsub(),
        PubSub::Message {
            channel: b(b"b"),
            payload: Bytes::from(large())
        }
    );
}

#[test]
fn resp3_pushes() {
    let Some(redis) = start(None, &["--requirepass", PASSWORD]) else {
        return;
    };
    let mut publisher = Conn::new(redis.port);
    // Not authenticated yet: an error reply, and the connection goes on.
    publisher.send(|o| encode_publish(o, b"a", b"x"));
    assert!(is_error(&publisher.frame(), "NOAUTH"));
    publisher.send(|o| encode_hello(o, Some((b"default", b"wrong")), None));
    assert!(is_error(&publisher.frame(), "WRONGPASS"));
    publisher.send(|o| encode_hello(o, Some((b"default", PASSWORD.as_bytes())), None));
    let hello = publisher.frame();
    assert_eq!(map_get(&hello, "proto"), &Frame::Integer(3));
    assert_eq!(map_get(&hello, "server"), &Frame::Bulk(b(b"redis")));

    let mut subscriber = Conn::new(redis.port);
    subscriber.send(|o| {
        encode_hello(
            o,
            Some((b"default", PASSWORD.as_bytes())),
            Some(b"ringws-sub"),
        )
    });
    assert_eq!(map_get(&subscriber.frame(), "proto"), &Frame::Integer(3));
    subscriber.send(|o| encode_subscribe(o, [&b"a"[..], b"b"]));
    assert_eq!(
        subscriber.pubsub(),
        PubSub::Subscribed {
            channel: b(b"a"),
            count: 1
        }
    );
    assert_eq!(
        subscriber.pubsub(),
        PubSub::Subscribed {
            channel: b(b"b"),
            count: 2
        }
    );

    publish_both(&mut publisher);
    expect_messages(&mut subscriber);

    // In RESP3 a subscribed connection still takes any command: a PING
    // is answered with +PONG, CLIENT GETNAME with the name HELLO gave.
    subscriber.send(|o| {
        encode_ping(o, None);
        encode_command(o, &[b"CLIENT", b"GETNAME"]);
    });
    assert_eq!(subscriber.pubsub(), PubSub::Pong(Bytes::new()));
    assert_eq!(subscriber.frame(), Frame::Bulk(b(b"ringws-sub")));
    // RESP3 types beyond RESP2's: a double, a null.
    publisher.send(|o| {
        encode_command(o, &[b"INCRBYFLOAT", b"f", b"1.5"]);
        encode_command(o, &[b"ZSCORE", b"f-zset", b"m"]);
    });
    assert_eq!(publisher.frame(), Frame::Bulk(b(b"1.5")));
    assert_eq!(publisher.frame(), Frame::Null);
    publisher.send(|o| {
        encode_command(o, &[b"ZADD", b"z", b"2.5", b"m"]);
        encode_command(o, &[b"ZSCORE", b"z", b"m"]);
        encode_command(o, &[b"EXISTS", b"z"]);
    });
    assert_eq!(publisher.frame(), Frame::Integer(1));
    assert_eq!(publisher.frame(), Frame::Double(2.5));
    assert_eq!(publisher.frame(), Frame::Integer(1));

    subscriber.send(|o| encode_unsubscribe(o, [&b"a"[..], b"b"]));
    assert_eq!(
        subscriber.pubsub(),
        PubSub::Unsubscribed {
            channel: Some(b(b"a")),
            count: 1
        }
    );
    assert_eq!(
        subscriber.pubsub(),
        PubSub::Unsubscribed {
            channel: Some(b(b"b")),
            count: 0
        }
    );
    // Nobody hears it now.
    publisher.send(|o| encode_publish(o, b"a", b"x"));
    assert_eq!(publisher.frame(), Frame::Integer(0));
}

#[test]
fn resp2_arrays() {
    let Some(redis) = start(None, &["--requirepass", PASSWORD]) else {
        return;
    };
    let mut publisher = Conn::new(redis.port);
    publisher.send(|o| encode_auth(o, None, PASSWORD.as_bytes()));
    assert_eq!(publisher.frame(), Frame::Simple(b(b"OK")));
    publisher.send(|o| encode_client_setname(o, b"ringws-pub"));
    assert_eq!(publisher.frame(), Frame::Simple(b(b"OK")));

    let mut subscriber = Conn::new(redis.port);
    subscriber.send(|o| {
        encode_auth(o, Some(b"default"), PASSWORD.as_bytes());
        encode_subscribe(o, [&b"a"[..], b"b"]);
    });
    assert_eq!(subscriber.frame(), Frame::Simple(b(b"OK")));
    let Frame::Array(_) = subscriber.frame() else {
        panic!("RESP2 confirms with arrays");
    };
    assert_eq!(
        subscriber.pubsub(),
        PubSub::Subscribed {
            channel: b(b"b"),
            count: 2
        }
    );

    publish_both(&mut publisher);
    expect_messages(&mut subscriber);

    // RESP2's subscribed mode answers PING with an array.
    subscriber.send(|o| {
        encode_ping(o, None);
        encode_ping(o, Some(b"probe"));
    });
    assert_eq!(subscriber.pubsub(), PubSub::Pong(Bytes::new()));
    assert_eq!(subscriber.pubsub(), PubSub::Pong(b(b"probe")));
    // Each channel left is confirmed in turn.
    subscriber.send(|o| encode_unsubscribe(o, [&b"a"[..], b"b"]));
    assert!(matches!(
        subscriber.pubsub(),
        PubSub::Unsubscribed { count: 1, .. }
    ));
    assert!(matches!(
        subscriber.pubsub(),
        PubSub::Unsubscribed { count: 0, .. }
    ));
    // UNSUBSCRIBE without channels leaves them all; with none left, its
    // one confirmation names no channel.
    subscriber.send(|o| encode_unsubscribe(o, std::iter::empty::<&[u8]>()));
    assert_eq!(
        subscriber.pubsub(),
        PubSub::Unsubscribed {
            channel: None,
            count: 0
        }
    );
    // Out of subscribed mode: an ordinary +PONG.
    subscriber.send(|o| encode_ping(o, None));
    assert_eq!(subscriber.frame(), Frame::Simple(b(b"PONG")));
}

#[test]
fn sentinel_names_the_master() {
    let Some(master) = start(None, &[]) else {
        return;
    };
    // A Sentinel rewrites its configuration file: one of its own.
    let config = std::env::temp_dir().join(format!(
        "ringws-sentinel-{}-{}.conf",
        std::process::id(),
        master.port
    ));
    std::fs::write(
        &config,
        format!("sentinel monitor mymaster 127.0.0.1 {} 1\n", master.port),
    )
    .unwrap();
    let Some(sentinel) = start(Some(config), &["--sentinel"]) else {
        return;
    };
    let mut conn = Conn::new(sentinel.port);
    conn.send(|o| {
        encode_sentinel_master_addr(o, b"mymaster");
        encode_sentinel_master_addr(o, b"nosuch");
    });
    assert_eq!(
        conn.frame(),
        Frame::Array(vec![
            Frame::Bulk(b(b"127.0.0.1")),
            Frame::Bulk(b(master.port.to_string().as_bytes())),
        ])
    );
    assert_eq!(conn.frame(), Frame::Null);
}
