//! Frame headers (RFC 6455 section 5.2): decoding with every check that needs
//! only the header, and encoding.
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-------+-+-------------+-------------------------------+
//! |F|R|R|R| opcode|M| Payload len |    Extended payload length    |
//! |I|S|S|S|  (4)  |A|     (7)     |             (16/64)           |
//! |N|V|V|V|       |S|             |   (if payload len==126/127)   |
//! | |1|2|3|       |K|             |                               |
//! +-+-+-+-+-------+-+-------------+ - - - - - - - - - - - - - - - +
//! |     Extended payload length continued, if payload len == 127  |
//! + - - - - - - - - - - - - - - - +-------------------------------+
//! |                               |Masking-key, if MASK set to 1  |
//! +-------------------------------+-------------------------------+
//! ```

use super::error::ProtocolError;

/// The longest possible header: 2 + 8 (64-bit length) + 4 (mask key).
pub const MAX_HEADER_LEN: usize = 14;

/// The longest payload of a control frame (5.5).
pub const MAX_CONTROL_PAYLOAD: usize = 125;

/// Frame opcodes defined by RFC 6455 (5.2). Reserved ones are rejected when
/// decoding, so they never become an `OpCode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum OpCode {
    /// 0x0: continues a fragmented message.
    Continuation = 0x0,
    /// 0x1: a text frame (UTF-8).
    Text = 0x1,
    /// 0x2: a binary frame.
    Binary = 0x2,
    /// 0x8: connection close.
    Close = 0x8,
    /// 0x9: ping.
    Ping = 0x9,
    /// 0xA: pong.
    Pong = 0xA,
}

impl OpCode {
    /// Close, Ping and Pong are control frames (opcodes with the high bit set).
    #[inline]
    pub fn is_control(self) -> bool {
        (self as u8) & 0x8 != 0
    }

    fn from_bits(bits: u8) -> Result<OpCode, ProtocolError> {
        Ok(match bits {
            0x0 => OpCode::Continuation,
            0x1 => OpCode::Text,
            0x2 => OpCode::Binary,
            0x8 => OpCode::Close,
            0x9 => OpCode::Ping,
            0xA => OpCode::Pong,
            other => return Err(ProtocolError::ReservedOpcode(other)),
        })
    }
}

/// A decoded frame header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHeader {
    /// FIN: this is the final fragment of a message.
    pub fin: bool,
    /// RSV1-3 as the low three bits (RSV1 = 0b100).
    pub rsv: u8,
    /// The frame's opcode.
    pub opcode: OpCode,
    /// The masking key, when the MASK bit is set.
    pub mask: Option<[u8; 4]>,
    /// The payload length.
    pub payload_len: u64,
}

/// A header whose fields are read but not yet judged. The connection keeps
/// it when [`RawHeader::validate`] fails: the lengths still say where the
/// rejected frame ends, so the peer's Close reply behind it can be found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RawHeader {
    /// First header byte: FIN, RSV1-3, opcode.
    pub b0: u8,
    /// The masking key, when the MASK bit is set.
    pub mask: Option<[u8; 4]>,
    /// The payload length.
    pub payload_len: u64,
    /// Length of the header itself (2 to 14).
    pub header_len: usize,
}

impl RawHeader {
    /// Reads a header's fields from the start of `buf`: `Ok(None)` until all
    /// of the header is there. The only error is a 64-bit length with its top
    /// bit set, after which the frame's end cannot be known.
    pub fn decode(buf: &[u8]) -> Result<Option<RawHeader>, ProtocolError> {
        if buf.len() < 2 {
            return Ok(None);
        }
        let (b0, b1) = (buf[0], buf[1]);
        let masked = b1 & 0x80 != 0;
        let len7 = b1 & 0x7F;
        let ext = match len7 {
            126 => 2,
            127 => 8,
            _ => 0,
        };
        let header_len = 2 + ext + if masked { 4 } else { 0 };
        if buf.len() < header_len {
            return Ok(None);
        }
        let payload_len = match ext {
            0 => u64::from(len7),
            2 => u64::from(u16::from_be_bytes([buf[2], buf[3]])),
            _ => {
                let v = u64::from_be_bytes(buf[2..10].try_into().expect("8 bytes"));
                // 5.2: "the most significant bit MUST be 0".
                if v >> 63 != 0 {
                    return Err(ProtocolError::LengthTopBitSet);
                }
                v
            }
        };
        let mask = masked.then(|| buf[header_len - 4..header_len].try_into().expect("4 bytes"));
        Ok(Some(RawHeader {
            b0,
            mask,
            payload_len,
            header_len,
        }))
    }

    /// Judges the fields: reserved opcodes, and 5.5: "All control frames MUST
    /// have a payload length of 125 bytes or less and MUST NOT be fragmented."
    pub fn validate(&self) -> Result<FrameHeader, ProtocolError> {
        let fin = self.b0 & 0x80 != 0;
        let opcode = OpCode::from_bits(self.b0 & 0x0F)?;
        if opcode.is_control() {
            if !fin {
                return Err(ProtocolError::FragmentedControlFrame);
            }
            if self.payload_len > MAX_CONTROL_PAYLOAD as u64 {
                return Err(ProtocolError::ControlFrameTooLong(self.payload_len));
            }
        }
        Ok(FrameHeader {
            fin,
            rsv: (self.b0 >> 4) & 0x7,
            opcode,
            mask: self.mask,
            payload_len: self.payload_len,
        })
    }
}

impl FrameHeader {
    /// Decodes a header from the start of `buf`.
    ///
    /// Returns `Ok(None)` when `buf` holds only part of a header ("need more
    /// bytes" is not an error). Otherwise returns the header and its length.
    /// Rejects what the header alone shows to be wrong: reserved opcodes,
    /// fragmented or long control frames, and 64-bit lengths with the top bit
    /// set. RSV bits and masking depend on the negotiated extensions and the
    /// role, so the connection checks them.
    pub fn decode(buf: &[u8]) -> Result<Option<(FrameHeader, usize)>, ProtocolError> {
        match RawHeader::decode(buf)? {
            None => Ok(None),
            Some(raw) => Ok(Some((raw.validate()?, raw.header_len))),
        }
    }

    /// Encodes the header into `out`, returning its length. Uses the shortest
    /// length encoding, as 5.2 requires.
    pub fn encode(&self, out: &mut [u8; MAX_HEADER_LEN]) -> usize {
        out[0] = (u8::from(self.fin) << 7) | ((self.rsv & 0x7) << 4) | self.opcode as u8;
        let mask_bit = if self.mask.is_some() { 0x80 } else { 0 };
        let mut n = match self.payload_len {
            l @ 0..=125 => {
                out[1] = mask_bit | l as u8;
                2
            }
            l @ 126..=0xFFFF => {
                out[1] = mask_bit | 126;
                out[2..4].copy_from_slice(&(l as u16).to_be_bytes());
                4
            }
            l => {
                out[1] = mask_bit | 127;
                out[2..10].copy_from_slice(&l.to_be_bytes());
                10
            }
        };
        if let Some(k) = self.mask {
            out[n..n + 4].copy_from_slice(&k);
            n += 4;
        }
        n
    }

    /// Appends the encoded header to `out`.
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        let mut h = [0u8; MAX_HEADER_LEN];
        let n = self.encode(&mut h);
        out.extend_from_slice(&h[..n]);
    }
}

/// Appends a whole unfragmented frame to `out`: its header, then `payload`,
/// masked with `mask` if there is one (a client's frame, 5.3).
pub fn encode_frame(opcode: OpCode, mask: Option<[u8; 4]>, payload: &[u8], out: &mut Vec<u8>) {
    FrameHeader {
        fin: true,
        rsv: 0,
        opcode,
        mask,
        payload_len: payload.len() as u64,
    }
    .encode_into(out);
    let start = out.len();
    out.extend_from_slice(payload);
    if let Some(k) = mask {
        super::mask::apply_mask(&mut out[start..], k, 0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hdr(fin: bool, opcode: OpCode, mask: Option<[u8; 4]>, len: u64) -> FrameHeader {
        FrameHeader {
            fin,
            rsv: 0,
            opcode,
            mask,
            payload_len: len,
        }
    }

    #[test]
    fn rfc_examples() {
        // 5.7: a single-frame unmasked text message "Hello".
        let (h, n) = FrameHeader::decode(b"\x81\x05Hello").unwrap().unwrap();
        assert_eq!((h, n), (hdr(true, OpCode::Text, None, 5), 2));
        // A masked one.
        let (h, n) = FrameHeader::decode(b"\x81\x85\x37\xfa\x21\x3d\x7f\x9f\x4d\x51\x58")
            .unwrap()
            .unwrap();
        assert_eq!(
            (h, n),
            (
                hdr(true, OpCode::Text, Some([0x37, 0xfa, 0x21, 0x3d]), 5),
                6
            )
        );
        // 256 bytes binary: 16-bit length.
        let (h, n) = FrameHeader::decode(b"\x82\x7E\x01\x00").unwrap().unwrap();
        assert_eq!((h, n), (hdr(true, OpCode::Binary, None, 256), 4));
        // 64 KiB: 64-bit length.
        let (h, n) = FrameHeader::decode(b"\x82\x7F\x00\x00\x00\x00\x00\x01\x00\x00")
            .unwrap()
            .unwrap();
        assert_eq!((h, n), (hdr(true, OpCode::Binary, None, 65536), 10));
    }

    #[test]
    fn partial_headers_need_more() {
        let full = b"\x82\xFF\x00\x00\x00\x00\x00\x01\x00\x00\x01\x02\x03\x04";
        for n in 0..full.len() {
            assert_eq!(FrameHeader::decode(&full[..n]), Ok(None), "prefix {n}");
        }
        assert!(FrameHeader::decode(full).unwrap().is_some());
    }

    #[test]
    fn violations() {
        for op in [3u8, 4, 5, 6, 7, 0xB, 0xC, 0xD, 0xE, 0xF] {
            assert_eq!(
                FrameHeader::decode(&[0x80 | op, 0]),
                Err(ProtocolError::ReservedOpcode(op))
            );
        }
        assert_eq!(
            FrameHeader::decode(b"\x09\x00"),
            Err(ProtocolError::FragmentedControlFrame)
        );
        assert_eq!(
            FrameHeader::decode(b"\x89\x7E\x00\x7E"),
            Err(ProtocolError::ControlFrameTooLong(126))
        );
        // The raw header still knows where the rejected frame ends.
        assert_eq!(
            RawHeader::decode(b"\x83\x7E\x01\x00\xFF")
                .unwrap()
                .unwrap()
                .payload_len,
            256
        );
        assert_eq!(
            FrameHeader::decode(b"\x82\x7F\x80\x00\x00\x00\x00\x00\x00\x00"),
            Err(ProtocolError::LengthTopBitSet)
        );
        // RSV bits are reported, not judged, here.
        let (h, _) = FrameHeader::decode(b"\xC1\x00").unwrap().unwrap();
        assert_eq!(h.rsv, 0b100);
    }

    #[test]
    fn encode_roundtrip_at_length_boundaries() {
        for len in [
            0u64,
            1,
            125,
            126,
            127,
            0xFFFF,
            0x1_0000,
            u32::MAX as u64 + 7,
        ] {
            for mask in [None, Some([9, 8, 7, 6])] {
                for op in [OpCode::Text, OpCode::Binary, OpCode::Continuation] {
                    let h = hdr(len % 2 == 0, op, mask, len);
                    let mut out = [0u8; MAX_HEADER_LEN];
                    let n = h.encode(&mut out);
                    assert_eq!(FrameHeader::decode(&out[..n]), Ok(Some((h, n))));
                }
            }
        }
        let mut out = [0u8; MAX_HEADER_LEN];
        assert_eq!(hdr(true, OpCode::Text, None, 125).encode(&mut out), 2);
        assert_eq!(hdr(true, OpCode::Text, None, 126).encode(&mut out), 4);
        assert_eq!(hdr(true, OpCode::Text, None, 65536).encode(&mut out), 10);
    }
}
