//! Sequences of inputs to the connection state machine, in either role,
//! with or without permessage-deflate (then compressed messages go through
//! the inflater, and the size limit applies to what it produces).
//! Checks: no panic; every call makes progress; message ranges lie inside
//! the input; text is valid UTF-8; messages respect the size limit; nothing
//! is delivered once the connection is closed.
#![no_main]
use std::time::{Duration, Instant};

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use ringws::proto::{Connection, Event, Limits, MessageKind, Payload};

#[derive(Arbitrary, Debug)]
enum Op {
    Read(Vec<u8>),
    Advance(u16),
    Close(u16),
    Send(bool, u16),
    Eof,
}

#[derive(Arbitrary, Debug)]
struct Input {
    client: bool,
    max_message: u16,
    /// permessage-deflate agreed: the peer's window bits and takeover.
    inflate: Option<(u8, bool)>,
    ops: Vec<Op>,
}

fuzz_target!(|input: Input| {
    let limits = Limits {
        max_frame_size: u64::from(input.max_message),
        max_message_size: u64::from(input.max_message),
        close_timeout: Duration::from_millis(100),
    };
    let mut conn = if input.client {
        Connection::client(limits, 7)
    } else {
        Connection::server(limits)
    };
    if let Some((bits, takeover)) = input.inflate {
        conn.enable_inflate(8 + bits % 8, takeover);
    }
    let mut now = Instant::now();
    let mut out = Vec::new();
    for op in input.ops {
        match op {
            Op::Read(mut bytes) => {
                let mut off = 0;
                while off < bytes.len() {
                    let was_closed = conn.is_closed();
                    let (n, r) = conn.read(&mut bytes[off..], now);
                    assert!(off + n <= bytes.len());
                    if let Ok(Some(Event::Message { kind, payload })) = r {
                        assert!(!was_closed, "message after close");
                        let data: &[u8] = match &payload {
                            Payload::Input(r) => {
                                assert!(r.end <= n, "range {r:?} outside the {n} consumed bytes");
                                &bytes[off + r.start..off + r.end]
                            }
                            Payload::Owned(v) => v,
                        };
                        assert!(data.len() <= usize::from(input.max_message));
                        if kind == MessageKind::Text {
                            assert!(std::str::from_utf8(data).is_ok());
                        }
                    } else {
                        // The caller loops until all is consumed: a call that
                        // reports nothing must consume something.
                        assert!(n > 0 || !matches!(r, Ok(None)), "no progress");
                    }
                    conn.take_control(&mut out);
                    off += n;
                }
            }
            Op::Advance(ms) => {
                now += Duration::from_millis(u64::from(ms));
                conn.handle_timeout(now);
            }
            Op::Close(code) => {
                if ringws::proto::close::is_valid_code(code) {
                    conn.close(code, "bye", now);
                }
            }
            Op::Send(text, len) => {
                let kind = if text { MessageKind::Text } else { MessageKind::Binary };
                let _ = conn.send_message(kind, u64::from(len), &mut out);
            }
            Op::Eof => {
                conn.handle_eof();
            }
        }
        out.clear();
    }
});
