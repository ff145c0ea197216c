//! permessage-deflate's compression (RFC 7692 section 7.2), over zlib-rs
//! (chosen by `benches/deflate`: as fast as zlib-ng on JSON-like messages,
//! memory-safe, no C build, and its configuration exposes the memory level).
//!
//! * [`Compressor`]: one message in, its payload out: raw deflate, sync
//!   flushed, with the final `00 00 ff ff` removed (7.2.1). Without
//!   context takeover it is reset before each message.
//! * [`Decompressor`]: a message's payload in, piece by piece as frames
//!   arrive, the trailer put back at the end (7.2.2). Its output is bounded
//!   while it inflates: a small message that would inflate to gigabytes
//!   stops at the limit, having cost at most the limit in memory and the
//!   time to inflate that much (the "deflate bomb").
//!
//! Neither keeps the caller's buffers.

use zlib_rs::{DeflateConfig, DeflateFlush, InflateFlush, Status};

/// What the sender appends to a message's deflate data and removes again
/// (7.2.1), and the receiver puts back before inflating (7.2.2).
const TRAILER: [u8; 4] = [0x00, 0x00, 0xff, 0xff];

/// The first output room a piece of compressed input is inflated into, and
/// the most added at a time.
const MIN_ROOM: usize = 256;
const MAX_ROOM: usize = 64 << 10;

/// Why inflating failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InflateError {
    /// The message inflates past the limit (1009).
    TooBig,
    /// Not valid deflate data, or a back-reference beyond the window (1007).
    Corrupt,
}

/// Compression settings of one direction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CompressorConfig {
    /// zlib's level, 0 (store) to 9 (smallest). Level 1 is the fastest that
    /// compresses.
    pub level: u8,
    /// The agreed window, 8 to 15 bits.
    pub window_bits: u8,
    /// zlib's memory level, 1 to 9: it sizes the compressor's symbol and
    /// output buffers, 7 x 2^(level + 6) bytes (112 KiB at 8, 896 bytes at
    /// 1). zlib-rs's hash table is 128 KiB at every level, and the window
    /// costs 4 x 2^window_bits bytes (with its chain links): a compressor
    /// takes about 133 KiB at 10 bits and level 1, 368 KiB at 15 and 8.
    pub mem_level: u8,
    /// Keep the window across messages (context takeover).
    pub takeover: bool,
}

/// A permessage-deflate compressor.
pub struct Compressor {
    z: zlib_rs::Deflate,
    takeover: bool,
}

impl std::fmt::Debug for Compressor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Compressor")
            .field("takeover", &self.takeover)
            .finish_non_exhaustive()
    }
}

impl Compressor {
    /// A compressor with `c`'s settings (each clamped to its range).
    ///
    /// An agreed window of 8 bits runs at 9, the least zlib compresses raw
    /// deflate with. That keeps within 256 bytes: zlib (and zlib-rs) never
    /// match further back than the window less 262 bytes of lookahead
    /// (`MAX_DIST`), which for 512 bytes is 250. The test
    /// `an_eight_bit_window_is_never_exceeded` holds it to that.
    pub fn new(c: CompressorConfig) -> Compressor {
        let bits = c.window_bits.clamp(9, 15);
        let z = zlib_rs::Deflate::new_with_config(DeflateConfig {
            level: i32::from(c.level.min(9)),
            // Negative: raw deflate, no zlib header.
            window_bits: -i32::from(bits),
            mem_level: i32::from(c.mem_level.clamp(1, 9)),
            ..DeflateConfig::default()
        });
        Compressor {
            z,
            takeover: c.takeover,
        }
    }

    /// Appends `msg` compressed to `out`: the payload of one
    /// permessage-deflate message (without the trailer).
    pub fn compress(&mut self, msg: &[u8], out: &mut Vec<u8>) {
        if !self.takeover {
            self.z.reset();
        }
        let start = out.len();
        self.run(msg, DeflateFlush::SyncFlush, out);
        if out[start..].ends_with(&TRAILER) {
            out.truncate(out.len() - TRAILER.len());
        } else {
            // Nothing to flush (an empty message right after another flush,
            // with context takeover): zlib writes nothing at all. The payload
            // of an empty message is then the one byte 0x00 (RFC 7692
            // 7.2.3.6), which the receiver's trailer makes an empty stored
            // block.
            debug_assert_eq!(out.len(), start, "output without a sync flush");
            out.push(0x00);
        }
    }

    /// Deflates `input` with `flush` onto `out`, growing it as needed.
    fn run(&mut self, mut input: &[u8], flush: DeflateFlush, out: &mut Vec<u8>) {
        // A flush is done once the compressor returns with room to spare.
        let mut room = input.len() / 2 + 64;
        loop {
            let len = out.len();
            out.resize(len + room, 0);
            let (in0, out0) = (self.z.total_in(), self.z.total_out());
            let r = self.z.compress(input, &mut out[len..], flush);
            let used = (self.z.total_in() - in0) as usize;
            let wrote = (self.z.total_out() - out0) as usize;
            out.truncate(len + wrote);
            input = &input[used..];
            // Compressing into memory cannot fail but for misuse (a stream
            // error); no room (a buffer error) is what the loop gives.
            debug_assert!(r.is_ok(), "{r:?}");
            if input.is_empty() && wrote < room {
                return;
            }
            room = (room * 2).min(MAX_ROOM);
        }
    }
}

/// A permessage-deflate decompressor.
pub struct Decompressor {
    z: zlib_rs::Inflate,
    takeover: bool,
    /// The peer ended its deflate stream (a block with BFINAL set) inside
    /// this message: the rest of it may only be the trailer.
    ended: bool,
}

impl std::fmt::Debug for Decompressor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Decompressor")
            .field("takeover", &self.takeover)
            .finish_non_exhaustive()
    }
}

impl Decompressor {
    /// A decompressor for a peer compressing with `window_bits` (8 to 15),
    /// keeping its window across messages when `takeover`.
    pub fn new(window_bits: u8, takeover: bool) -> Decompressor {
        // A 9-bit window reads 8-bit streams too, and zlib-based peers
        // asked for 8 bits compress with 9 anyway.
        Decompressor {
            z: zlib_rs::Inflate::new(false, window_bits.clamp(9, 15)),
            takeover,
            ended: false,
        }
    }

    /// Inflates `input`, the next piece of one message's payload, onto
    /// `out`, which must not grow past `limit` bytes. After an error the
    /// decompressor is reset (the message is lost, and with it any window).
    pub fn feed(
        &mut self,
        input: &[u8],
        out: &mut Vec<u8>,
        limit: usize,
    ) -> Result<(), InflateError> {
        let r = self.inflate(input, out, limit);
        if r.is_err() {
            self.reset();
        }
        r
    }

    /// Ends the message: inflates the trailer (7.2.2: "Append 4 octets of
    /// 0x00 0x00 0xff 0xff to the tail end of the payload of the message"),
    /// and gets ready for the next one.
    pub fn finish(&mut self, out: &mut Vec<u8>, limit: usize) -> Result<(), InflateError> {
        let r = if self.ended {
            Ok(())
        } else {
            self.inflate(&TRAILER, out, limit)
        };
        if !self.takeover || self.ended || r.is_err() {
            self.reset();
        }
        r
    }

    /// Forgets the message in progress (after an error) and any window.
    pub fn reset(&mut self) {
        self.z.reset(false);
        self.ended = false;
    }

    fn inflate(
        &mut self,
        mut input: &[u8],
        out: &mut Vec<u8>,
        limit: usize,
    ) -> Result<(), InflateError> {
        // Room grows with what the input turns into, so a small message is
        // not given (and zeroed) a large buffer, and never past the limit:
        // a bomb stops there.
        let mut room = (input.len() * 4).clamp(MIN_ROOM, MAX_ROOM);
        while !input.is_empty() {
            if self.ended {
                // A block with BFINAL set ended the peer's deflate stream;
                // nothing of the message may follow it but the trailer we
                // append ourselves (which `finish` then skips).
                return Err(InflateError::Corrupt);
            }
            let len = out.len();
            let room_now = room.min(limit.saturating_sub(len).saturating_add(1));
            out.resize(len + room_now, 0);
            let (in0, out0) = (self.z.total_in(), self.z.total_out());
            let r = self
                .z
                .decompress(input, &mut out[len..], InflateFlush::SyncFlush);
            let used = (self.z.total_in() - in0) as usize;
            let wrote = (self.z.total_out() - out0) as usize;
            out.truncate(len + wrote);
            input = &input[used..];
            if out.len() > limit {
                return Err(InflateError::TooBig);
            }
            match r {
                Ok(Status::StreamEnd) => self.ended = true,
                // A buffer error (no progress for want of room) gets more
                // room below.
                Ok(_) => {}
                Err(_) => return Err(InflateError::Corrupt),
            }
            if wrote == room_now {
                room = (room * 2).min(MAX_ROOM);
            } else if used == 0 && !input.is_empty() && !self.ended {
                // Neither input taken nor output room filled.
                return Err(InflateError::Corrupt);
            }
        }
        // Output may still be pending inside with the input all taken:
        // drain it while it fills the room it is given.
        loop {
            let len = out.len();
            let room_now = room.min(limit.saturating_sub(len).saturating_add(1));
            out.resize(len + room_now, 0);
            let out0 = self.z.total_out();
            let r = self
                .z
                .decompress(&[], &mut out[len..], InflateFlush::SyncFlush);
            let wrote = (self.z.total_out() - out0) as usize;
            out.truncate(len + wrote);
            if out.len() > limit {
                return Err(InflateError::TooBig);
            }
            match r {
                Ok(Status::StreamEnd) => self.ended = true,
                Ok(_) => {}
                Err(_) => return Err(InflateError::Corrupt),
            }
            if wrote < room_now {
                return Ok(());
            }
            room = (room * 2).min(MAX_ROOM);
        }
    }
}

/// Decompressors without context takeover kept for reuse on this thread:
/// a connection in shared mode holds one only while a compressed message
/// is coming in, so an idle one holds none.
const SPARE_DECOMPRESSORS: usize = 16;

thread_local! {
    #[expect(
        clippy::vec_box,
        reason = "lent boxed: a connection keeps 8 bytes for the one it holds"
    )]
    static SPARES: std::cell::RefCell<Vec<Box<Decompressor>>> =
        const { std::cell::RefCell::new(Vec::new()) };
}

/// A decompressor without context takeover (a 15-bit window: it reads
/// any peer's), from this thread's spares if there is one.
pub fn lend_decompressor() -> Box<Decompressor> {
    SPARES
        .with(|s| s.borrow_mut().pop())
        .unwrap_or_else(|| Box::new(Decompressor::new(15, false)))
}

/// Gives back a decompressor from [`lend_decompressor`], reset.
pub fn return_decompressor(mut d: Box<Decompressor>) {
    d.reset();
    SPARES.with(|s| {
        let mut s = s.borrow_mut();
        if s.len() < SPARE_DECOMPRESSORS {
            s.push(d);
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(window_bits: u8, takeover: bool) -> CompressorConfig {
        CompressorConfig {
            level: 1,
            window_bits,
            mem_level: 8,
            takeover,
        }
    }

    fn inflate_all(
        d: &mut Decompressor,
        payload: &[u8],
        limit: usize,
    ) -> Result<Vec<u8>, InflateError> {
        let mut out = Vec::new();
        // In pieces, as frames and reads cut it.
        for piece in payload.chunks(7) {
            d.feed(piece, &mut out, limit)?;
        }
        d.finish(&mut out, limit)?;
        Ok(out)
    }

    fn json(n: usize, seed: u64) -> Vec<u8> {
        let mut s = String::new();
        let mut i = seed;
        while s.len() < n {
            i = i
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            s.push_str(&format!(
                "{{\"symbol\":\"BTC-USD\",\"price\":\"{}.{:02}\",\"seq\":{}}},",
                20_000 + (i >> 40) % 30_000,
                (i >> 20) % 100,
                i >> 48
            ));
        }
        s.truncate(n);
        s.into_bytes()
    }

    #[test]
    fn round_trips_in_both_modes_and_every_window() {
        for takeover in [false, true] {
            for bits in 8..=15 {
                let mut c = Compressor::new(config(bits, takeover));
                let mut d = Decompressor::new(bits, takeover);
                for (k, n) in [0usize, 1, 20, 512, 4096, 70_000].into_iter().enumerate() {
                    let m = json(n, k as u64);
                    let mut z = Vec::new();
                    c.compress(&m, &mut z);
                    assert!(
                        !z.ends_with(&TRAILER) || z.is_empty() || n == 0,
                        "trailer kept"
                    );
                    let back = inflate_all(&mut d, &z, 1 << 20).unwrap();
                    assert_eq!(back, m, "{n} bytes, {bits} bits, takeover {takeover}");
                }
            }
        }
    }

    #[test]
    fn no_limit_at_all_is_a_limit_too() {
        // A message limit of u64::MAX (usize::MAX here) once overflowed the
        // room computation: a panic in debug builds, and in release a room
        // of zero bytes that was doubled for ever.
        let mut z = Vec::new();
        Compressor::new(config(15, false)).compress(b"no limit", &mut z);
        let mut d = Decompressor::new(15, false);
        assert_eq!(inflate_all(&mut d, &z, usize::MAX).unwrap(), b"no limit");
    }

    #[test]
    fn empty_messages_in_a_row_with_takeover() {
        // Found by the inflate fuzz target: the second empty message made
        // no output at all, and the trailer was cut from nothing.
        for level in [0, 1, 6] {
            let mut c = Compressor::new(CompressorConfig {
                level,
                ..config(15, true)
            });
            let mut d = Decompressor::new(15, true);
            for m in [&b""[..], b"", b"x", b"", b""] {
                let mut z = Vec::new();
                c.compress(m, &mut z);
                assert!(!z.is_empty(), "level {level}");
                assert_eq!(inflate_all(&mut d, &z, 100).unwrap(), m, "level {level}");
            }
        }
    }

    #[test]
    fn context_takeover_makes_repeats_small_and_needs_the_window() {
        let m = json(400, 1);
        let (mut c, mut fresh) = (
            Compressor::new(config(15, true)),
            Compressor::new(config(15, false)),
        );
        let (mut first, mut second, mut alone) = (Vec::new(), Vec::new(), Vec::new());
        c.compress(&m, &mut first);
        c.compress(&m, &mut second);
        fresh.compress(&m, &mut alone);
        assert!(
            second.len() * 4 < first.len(),
            "{} vs {}",
            second.len(),
            first.len()
        );
        // The second message refers to the first: a decompressor without
        // the first one's window cannot read it.
        let mut keeps = Decompressor::new(15, true);
        assert_eq!(inflate_all(&mut keeps, &first, 1 << 20).unwrap(), m);
        assert_eq!(inflate_all(&mut keeps, &second, 1 << 20).unwrap(), m);
        let mut forgets = Decompressor::new(15, false);
        assert_eq!(inflate_all(&mut forgets, &alone, 1 << 20).unwrap(), m);
        assert_eq!(
            inflate_all(&mut forgets, &second, 1 << 20),
            Err(InflateError::Corrupt)
        );
    }

    #[test]
    fn an_eight_bit_window_is_never_exceeded() {
        // 300 random bytes, repeated: matches 300 bytes back, beyond a
        // 256-byte window; and 200-byte ones within it.
        let mut x = 0x9E37_79B9_7F4A_7C15u64;
        let mut random = |n: usize| -> Vec<u8> {
            (0..n)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    x as u8
                })
                .collect()
        };
        let far: Vec<u8> = random(300).iter().cycle().take(3000).copied().collect();
        let near: Vec<u8> = random(200).iter().cycle().take(3000).copied().collect();
        let compress = |bits: u8, m: &[u8]| {
            let mut z = Vec::new();
            Compressor::new(config(bits, false)).compress(m, &mut z);
            z
        };
        for m in [&far, &near] {
            let z = compress(8, m);
            let (len, reach) = deflate_reach(&z);
            assert_eq!(len, m.len(), "the referee decoded it all");
            assert!(reach <= 256, "a back-reference {reach} bytes long");
        }
        // It still compresses what lies within its reach (to 1,494 bytes
        // here; a 15-bit window makes 244).
        assert!(compress(8, &near).len() < 2000);
        // And the referee sees far references: a 10-bit stream has them.
        let z = compress(10, &far);
        assert!(z.len() < 1000);
        let (len, reach) = deflate_reach(&z);
        assert_eq!(len, far.len());
        assert!(reach > 256, "{reach}");
    }

    /// The canonical Huffman code (RFC 1951 3.2.2) of some code lengths:
    /// (length, code) to symbol.
    fn huffman(lengths: &[u8]) -> std::collections::HashMap<(u8, usize), usize> {
        let mut count = [0usize; 16];
        for &l in lengths {
            count[usize::from(l)] += 1;
        }
        count[0] = 0;
        let (mut next, mut code) = ([0usize; 16], 0);
        for l in 1..16 {
            code = (code + count[l - 1]) << 1;
            next[l] = code;
        }
        let mut t = std::collections::HashMap::new();
        for (sym, &l) in lengths.iter().enumerate() {
            if l > 0 {
                t.insert((l, next[usize::from(l)]), sym);
                next[usize::from(l)] += 1;
            }
        }
        t
    }

    /// A deflate stream's bits, least significant first.
    struct Bits<'a>(&'a [u8], usize);

    impl Bits<'_> {
        fn left(&self) -> usize {
            self.0.len() * 8 - self.1
        }
        fn take(&mut self, n: u32) -> usize {
            let mut v = 0;
            for i in 0..n {
                v |= usize::from((self.0[self.1 / 8] >> (self.1 % 8)) & 1) << i;
                self.1 += 1;
            }
            v
        }
        fn symbol(&mut self, t: &std::collections::HashMap<(u8, usize), usize>) -> usize {
            let mut code = 0;
            for len in 1..16u8 {
                code = (code << 1) | self.take(1);
                if let Some(&s) = t.get(&(len, code)) {
                    return s;
                }
            }
            panic!("no such code");
        }
    }

    /// Reads a raw deflate stream (RFC 1951) on its own, without zlib:
    /// the bytes it stands for and its longest back-reference. The referee
    /// of the window test, since an inflater's window cannot be trusted to
    /// refuse what lies further back (zlib-rs's, asked for 8 bits, reads a
    /// 10-bit stream).
    fn deflate_reach(z: &[u8]) -> (usize, usize) {
        const LEN_BASE: [usize; 29] = [
            3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 15, 17, 19, 23, 27, 31, 35, 43, 51, 59, 67, 83, 99,
            115, 131, 163, 195, 227, 258,
        ];
        const LEN_EXTRA: [u32; 29] = [
            0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 0,
        ];
        const DIST_BASE: [usize; 30] = [
            1, 2, 3, 4, 5, 7, 9, 13, 17, 25, 33, 49, 65, 97, 129, 193, 257, 385, 513, 769, 1025,
            1537, 2049, 3073, 4097, 6145, 8193, 12289, 16385, 24577,
        ];
        const DIST_EXTRA: [u32; 30] = [
            0, 0, 0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7, 8, 8, 9, 9, 10, 10, 11, 11, 12,
            12, 13, 13,
        ];
        const ORDER: [usize; 19] = [
            16, 17, 18, 0, 8, 7, 9, 6, 10, 5, 11, 4, 12, 3, 13, 2, 14, 1, 15,
        ];
        let mut data = z.to_vec();
        data.extend_from_slice(&TRAILER);
        let mut b = Bits(&data, 0);
        let (mut out, mut reach) = (0, 0);
        while b.left() >= 3 {
            let _last = b.take(1);
            let (lit, dist) = match b.take(2) {
                0 => {
                    b.1 = b.1.div_ceil(8) * 8;
                    let len = b.take(16);
                    let _nlen = b.take(16);
                    b.1 += len * 8;
                    out += len;
                    continue;
                }
                1 => {
                    let mut l = [8u8; 288];
                    l[144..256].fill(9);
                    l[256..280].fill(7);
                    (huffman(&l), huffman(&[5; 30]))
                }
                2 => {
                    let hlit = b.take(5) + 257;
                    let hdist = b.take(5) + 1;
                    let hclen = b.take(4) + 4;
                    let mut cl = [0u8; 19];
                    for &i in &ORDER[..hclen] {
                        cl[i] = b.take(3) as u8;
                    }
                    let clt = huffman(&cl);
                    let mut lengths: Vec<u8> = Vec::new();
                    while lengths.len() < hlit + hdist {
                        let (fill, n) = match b.symbol(&clt) {
                            s @ 0..=15 => (s as u8, 1),
                            16 => (*lengths.last().unwrap(), b.take(2) + 3),
                            17 => (0, b.take(3) + 3),
                            _ => (0, b.take(7) + 11),
                        };
                        lengths.extend(std::iter::repeat_n(fill, n));
                    }
                    (huffman(&lengths[..hlit]), huffman(&lengths[hlit..]))
                }
                _ => panic!("reserved block type"),
            };
            loop {
                match b.symbol(&lit) {
                    0..=255 => out += 1,
                    256 => break,
                    sym => {
                        let i = sym - 257;
                        out += LEN_BASE[i] + b.take(LEN_EXTRA[i]);
                        let d = b.symbol(&dist);
                        reach = reach.max(DIST_BASE[d] + b.take(DIST_EXTRA[d]));
                    }
                }
            }
        }
        (out, reach)
    }

    #[test]
    fn a_bomb_stops_at_the_limit() {
        // 64 MiB of zeros compress to about 1 % of that at level 1.
        let zeros = vec![0u8; 64 << 20];
        let mut z = Vec::new();
        Compressor::new(config(15, false)).compress(&zeros, &mut z);
        assert!(z.len() * 64 < zeros.len(), "{}", z.len());
        let limit = 1 << 20;
        let mut d = Decompressor::new(15, false);
        let mut out = Vec::new();
        let mut r = Ok(());
        for piece in z.chunks(4096) {
            r = d.feed(piece, &mut out, limit);
            if r.is_err() {
                break;
            }
        }
        assert_eq!(r, Err(InflateError::TooBig));
        assert!(out.len() <= limit + 1, "{} bytes inflated", out.len());
        assert!(out.capacity() <= 2 * limit, "{} bytes held", out.capacity());
        // Reset, the decompressor works again.
        d.reset();
        let mut small = Vec::new();
        Compressor::new(config(15, false)).compress(b"hello", &mut small);
        assert_eq!(inflate_all(&mut d, &small, 100).unwrap(), b"hello");
    }

    #[test]
    fn corrupt_data_and_data_after_the_end_are_refused() {
        let mut d = Decompressor::new(15, false);
        // BTYPE 11 is reserved.
        assert_eq!(
            inflate_all(&mut d, &[0xff, 0xff, 0xff], 1000),
            Err(InflateError::Corrupt)
        );
        // A whole stream with BFINAL set ("hello" stored as a final block),
        // then more bytes: the end must be the end.
        let fin = [0x01, 0x05, 0x00, 0xfa, 0xff, b'h', b'e', b'l', b'l', b'o'];
        assert_eq!(inflate_all(&mut d, &fin, 1000).unwrap(), b"hello");
        let mut more = fin.to_vec();
        more.extend_from_slice(&[0x01, 0x00]);
        assert_eq!(inflate_all(&mut d, &more, 1000), Err(InflateError::Corrupt));
        // Every cut of valid data still inflates (no piece is too small).
        let mut z = Vec::new();
        Compressor::new(config(15, false)).compress(&json(1000, 3), &mut z);
        for cut in 0..z.len() {
            let mut out = Vec::new();
            d.feed(&z[..cut], &mut out, 1 << 20).unwrap();
            d.feed(&z[cut..], &mut out, 1 << 20).unwrap();
            d.finish(&mut out, 1 << 20).unwrap();
            assert_eq!(out, json(1000, 3), "cut at {cut}");
        }
    }
}
