//! The envelope a published frame travels in between nodes: a fixed
//! 17-byte head in front of the WebSocket frame the publishing node built
//! for its own subscribers, so that no node encodes a message twice.
//!
//! ```text
//!  0        1                 9                 17
//!  +--------+-----------------+-----------------+---------------------+
//!  | format | origin node     | publish time    | WebSocket frame ... |
//!  | 1      | u64 LE          | ns since epoch  | (unmasked, FIN)     |
//!  +--------+-----------------+-----------------+---------------------+
//! ```
//!
//! A publish that leaves out a connection of another node
//! ([`ServerHandle::publish_except`](crate::app::ServerHandle::publish_except))
//! has format 2 and names it after the time: its node and its place there
//! (a [`ConnId`]), 16 more bytes. Only that node acts on it. A node of an
//! older build drops format 2 and counts it as malformed.
//!
//! ```text
//!  0        1        9        17                25                33
//!  +--------+--------+--------+-----------------+-----------------+----------
//!  | format | origin | time   | except: node    | except: local   | frame ...
//!  | 2      |        |        | u64 LE          | u64 LE          |
//!  +--------+--------+--------+-----------------+-----------------+----------
//! ```
//!
//! A receiving node checks the frame before it fans it out: anything in
//! the channel that is not one whole unmasked data frame (a stray PUBLISH
//! from another program, a newer format) would break every subscriber's
//! stream, so it is dropped and counted instead.

use bytes::Bytes;

use crate::app::ConnId;
use crate::proto::frame::{FrameHeader, OpCode};

/// The envelope format this build writes and reads.
pub(crate) const FORMAT: u8 = 1;

/// The format that names a connection to leave out.
pub(crate) const FORMAT_EXCEPT: u8 = 2;

/// Bytes in front of the frame.
pub(crate) const HEAD: usize = 17;

/// Bytes in front of the frame in format 2.
pub(crate) const HEAD_EXCEPT: usize = HEAD + 16;

/// The envelope's head for a frame published by `origin` at `at_ns`
/// (nanoseconds since the Unix epoch).
pub(crate) fn head(origin: u64, at_ns: u64) -> [u8; HEAD] {
    let mut h = [0u8; HEAD];
    h[0] = FORMAT;
    h[1..9].copy_from_slice(&origin.to_le_bytes());
    h[9..17].copy_from_slice(&at_ns.to_le_bytes());
    h
}

/// `head` with a connection to leave out (format 2).
pub(crate) fn head_except(origin: u64, at_ns: u64, except: ConnId) -> [u8; HEAD_EXCEPT] {
    let mut h = [0u8; HEAD_EXCEPT];
    h[..HEAD].copy_from_slice(&head(origin, at_ns));
    h[0] = FORMAT_EXCEPT;
    h[17..25].copy_from_slice(&except.node.to_le_bytes());
    h[25..33].copy_from_slice(&except.local.to_le_bytes());
    h
}

/// A received envelope: its frame is a slice of the payload Redis sent,
/// not a copy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Envelope {
    pub(crate) origin: u64,
    pub(crate) at_ns: u64,
    /// A connection its node leaves out (format 2).
    pub(crate) except: Option<ConnId>,
    pub(crate) frame: Bytes,
}

/// Why a payload was not fanned out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Malformed {
    /// Shorter than the head.
    Short,
    /// A format this build does not know (a newer node's).
    Format(u8),
    /// Not one whole unmasked, unfragmented text or binary frame without
    /// RSV bits, or a text frame that is not UTF-8.
    Frame,
}

impl std::fmt::Display for Malformed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Malformed::Short => f.write_str("shorter than the envelope's head"),
            Malformed::Format(v) => write!(f, "envelope format {v}, this node reads {FORMAT}"),
            Malformed::Frame => f.write_str("not one whole WebSocket data frame"),
        }
    }
}

/// Opens `payload`; the frame is a slice of it.
pub(crate) fn open(payload: Bytes) -> Result<Envelope, Malformed> {
    if payload.len() < HEAD {
        return Err(Malformed::Short);
    }
    let word = |a: usize| u64::from_le_bytes(payload[a..a + 8].try_into().expect("8 bytes"));
    let (head, except) = match payload[0] {
        FORMAT => (HEAD, None),
        FORMAT_EXCEPT if payload.len() >= HEAD_EXCEPT => {
            let c = ConnId {
                node: word(17),
                local: word(25),
            };
            (HEAD_EXCEPT, Some(c))
        }
        FORMAT_EXCEPT => return Err(Malformed::Short),
        f => return Err(Malformed::Format(f)),
    };
    let frame = payload.slice(head..);
    check_frame(&frame)?;
    Ok(Envelope {
        origin: word(1),
        at_ns: word(9),
        except,
        frame,
    })
}

/// Is `frame` one whole frame a server may send as a published message?
fn check_frame(frame: &[u8]) -> Result<(), Malformed> {
    let Ok(Some((h, n))) = FrameHeader::decode(frame) else {
        return Err(Malformed::Frame);
    };
    let whole = (frame.len() - n) as u64 == h.payload_len;
    let data = matches!(h.opcode, OpCode::Text | OpCode::Binary);
    if !whole || !data || !h.fin || h.rsv != 0 || h.mask.is_some() {
        return Err(Malformed::Frame);
    }
    if h.opcode == OpCode::Text && crate::proto::utf8::validate(&frame[n..]).is_err() {
        return Err(Malformed::Frame);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::frame::encode_frame;

    fn sealed(origin: u64, at: u64, frame: &[u8]) -> Bytes {
        let mut v = head(origin, at).to_vec();
        v.extend_from_slice(frame);
        Bytes::from(v)
    }

    fn frame(op: OpCode, payload: &[u8]) -> Vec<u8> {
        let mut f = Vec::new();
        encode_frame(op, None, payload, &mut f);
        f
    }

    #[test]
    fn round_trip_slices_without_copying() {
        for len in [0usize, 1, 125, 126, 65535, 65536, 100_000] {
            let f = frame(OpCode::Binary, &vec![7u8; len]);
            let p = sealed(42, 1_700_000_000_000_000_000, &f);
            let e = open(p.clone()).unwrap();
            assert_eq!((e.origin, e.at_ns), (42, 1_700_000_000_000_000_000));
            assert_eq!(&e.frame[..], &f[..]);
            // The frame points into the payload's memory.
            assert_eq!(e.frame.as_ptr(), p[HEAD..].as_ptr());
        }
    }

    #[test]
    fn format_2_names_the_connection_left_out() {
        let f = frame(OpCode::Text, b"hi");
        let c = ConnId {
            node: 0x0102_0304_0506_0708,
            local: 3 << 48 | 9 << 32 | 77,
        };
        let mut p = head_except(42, 7, c).to_vec();
        p.extend_from_slice(&f);
        let e = open(Bytes::from(p)).unwrap();
        assert_eq!((e.origin, e.at_ns, e.except), (42, 7, Some(c)));
        assert_eq!(&e.frame[..], &f[..]);
        assert_eq!(open(sealed(42, 7, &f)).unwrap().except, None);
    }

    #[test]
    fn refuses_what_would_break_a_stream() {
        let text = frame(OpCode::Text, "héllo".as_bytes());
        assert!(open(sealed(1, 2, &text)).is_ok());
        assert_eq!(open(Bytes::from_static(b"short")), Err(Malformed::Short));
        let mut v3 = sealed(1, 2, &text).to_vec();
        v3[0] = 3;
        assert_eq!(open(Bytes::from(v3)), Err(Malformed::Format(3)));
        // Format 2 needs its 16 more bytes.
        let mut v2 = sealed(1, 2, &text).to_vec();
        v2[0] = 2;
        v2.truncate(HEAD_EXCEPT - 1);
        assert_eq!(open(Bytes::from(v2)), Err(Malformed::Short));
        // Truncated, too long, a control frame, masked, RSV1, not FIN,
        // bad UTF-8, nothing at all, two frames.
        let mut cases: Vec<Vec<u8>> = vec![
            text[..text.len() - 1].to_vec(),
            [&text[..], b"x"].concat(),
            frame(OpCode::Ping, b"p"),
            {
                let mut m = Vec::new();
                encode_frame(OpCode::Text, Some([1, 2, 3, 4]), b"hi", &mut m);
                m
            },
            {
                let mut f = text.clone();
                f[0] |= 0x40;
                f
            },
            {
                let mut f = text.clone();
                f[0] &= 0x7f;
                f
            },
            frame(OpCode::Text, &[0xff, 0xfe]),
            Vec::new(),
        ];
        cases.push([&text[..], &text[..]].concat());
        for c in cases {
            assert_eq!(open(sealed(1, 2, &c)), Err(Malformed::Frame), "{c:?}");
        }
    }

    #[test]
    fn arbitrary_payloads_never_panic() {
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        for len in 0..300 {
            let v: Vec<u8> = (0..len)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    x as u8
                })
                .collect();
            let _ = open(Bytes::from(v.clone()));
            let mut with_head = head(1, 1).to_vec();
            with_head.extend_from_slice(&v);
            let _ = open(Bytes::from(with_head));
            let c = ConnId { node: 1, local: x };
            let mut with_head = head_except(1, 1, c).to_vec();
            with_head.extend_from_slice(&v);
            let _ = open(Bytes::from(with_head));
        }
    }
}
