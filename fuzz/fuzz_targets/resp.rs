//! The RESP decoder: never panics, keeps its limits, and decodes the same
//! frames (and error) whole, split at a fuzzer-chosen point, or a byte at a
//! time. PubSub::from_frame takes any frame.
#![no_main]
use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use ringws::proto::resp::{Decoder, Frame, PubSub, RespError, RespLimits};

const LIMITS: RespLimits = RespLimits {
    max_bulk: 64,
    max_elements: 32,
    max_depth: 4,
    max_frame: 512,
};

/// The frames, the error if any, and the bytes consumed, from `pieces` in
/// turn (after an error, the pieces not yet given do not count).
fn decode(pieces: &[&[u8]]) -> (Vec<Frame>, Option<RespError>, usize) {
    let mut dec = Decoder::new(LIMITS);
    let mut buf = BytesMut::new();
    let mut frames = Vec::new();
    let mut fed = 0;
    for p in pieces {
        buf.extend_from_slice(p);
        fed += p.len();
        loop {
            match dec.decode(&mut buf) {
                Ok(Some(f)) => {
                    check(&f, 0);
                    frames.push(f);
                }
                Ok(None) => break,
                Err(e) => return (frames, Some(e), fed - buf.len()),
            }
        }
    }
    (frames, None, fed - buf.len())
}

/// Within the limits: strings, depth and elements per aggregate.
fn check(f: &Frame, depth: usize) {
    let items: &[Frame] = match f {
        Frame::Simple(s) | Frame::Error(s) | Frame::Bulk(s) | Frame::BigNumber(s) => {
            assert!(s.len() <= LIMITS.max_bulk);
            return;
        }
        Frame::Verbatim { text, .. } => {
            assert!(text.len() + 4 <= LIMITS.max_bulk);
            return;
        }
        Frame::Map(pairs) => {
            // An empty aggregate opens no level.
            assert!(pairs.is_empty() || depth < LIMITS.max_depth);
            assert!(pairs.len() * 2 <= LIMITS.max_elements);
            for (k, v) in pairs {
                check(k, depth + 1);
                check(v, depth + 1);
            }
            return;
        }
        Frame::Array(items) | Frame::Set(items) | Frame::Push(items) => items,
        Frame::Integer(_) | Frame::Null | Frame::Boolean(_) | Frame::Double(_) => return,
    };
    assert!(items.is_empty() || depth < LIMITS.max_depth);
    assert!(items.len() <= LIMITS.max_elements);
    for i in items {
        check(i, depth + 1);
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&split, data)) = data.split_first() else {
        return;
    };
    let whole = decode(&[data]);
    let at = usize::from(split) * data.len() / 255;
    // Debug strings: a NaN double is not equal to itself.
    let want = format!("{whole:?}");
    assert_eq!(format!("{:?}", decode(&[&data[..at], &data[at..]])), want);
    let bytes: Vec<&[u8]> = data.chunks(1).collect();
    assert_eq!(format!("{:?}", decode(&bytes)), want);
    for f in whole.0 {
        let _ = PubSub::from_frame(f);
    }
});
