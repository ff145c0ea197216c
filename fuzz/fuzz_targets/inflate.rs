//! The permessage-deflate receiving path: arbitrary messages compressed by
//! our compressor (in either mode, any window), cut into arbitrary
//! fragments and reads, then flipped here and there, fed to a server
//! connection with the inflater on. Checks: no panic; while nothing was
//! flipped every message comes out exactly as it went in; a message over
//! the limit is refused, never delivered; with flips, whatever is delivered
//! is within the limit and text is UTF-8.
#![no_main]
use std::time::{Duration, Instant};

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use ringws::proto::compress::{Compressor, CompressorConfig};
use ringws::proto::mask::apply_mask;
use ringws::proto::{Connection, Event, Limits, MessageKind, Payload};

#[derive(Arbitrary, Debug)]
struct Input {
    takeover: bool,
    window_bits: u8,
    level: u8,
    max_message: u16,
    messages: Vec<(bool, Vec<u8>, u8)>,
    read_cut: u8,
    flips: Vec<(u16, u8)>,
}

fuzz_target!(|input: Input| {
    let bits = 8 + input.window_bits % 8;
    let mut c = Compressor::new(CompressorConfig {
        level: input.level % 10,
        window_bits: bits,
        mem_level: 8,
        takeover: input.takeover,
    });
    let max = usize::from(input.max_message);
    let mut wire = Vec::new();
    let mut sent = Vec::new();
    for (text, data, frags) in input.messages.iter().take(8) {
        let data = if *text {
            String::from_utf8_lossy(data).into_owned().into_bytes()
        } else {
            data.clone()
        };
        let mut z = Vec::new();
        c.compress(&data, &mut z);
        // Cut into fragments, RSV1 on the first only, masked.
        let parts = usize::from(*frags % 4) + 1;
        for p in 0..parts {
            let (a, b) = (z.len() * p / parts, z.len() * (p + 1) / parts);
            let opcode = if p > 0 { 0 } else if *text { 1 } else { 2 };
            let b0 = (u8::from(p + 1 == parts) << 7) | (u8::from(p == 0) << 6) | opcode;
            let len = b - a;
            wire.push(b0);
            if len < 126 {
                wire.push(0x80 | len as u8);
            } else {
                wire.push(0x80 | 126);
                wire.extend_from_slice(&(len as u16).to_be_bytes());
            }
            let key = [1, 2, 3, 4];
            wire.extend_from_slice(&key);
            let start = wire.len();
            wire.extend_from_slice(&z[a..b]);
            apply_mask(&mut wire[start..], key, 0);
        }
        sent.push((*text, data));
    }
    let flipped = !input.flips.is_empty();
    for &(at, x) in input.flips.iter().take(4) {
        if !wire.is_empty() {
            let i = usize::from(at) % wire.len();
            wire[i] ^= x | 1;
        }
    }
    let mut conn = Connection::server(Limits {
        max_frame_size: 1 << 20,
        max_message_size: max as u64,
        close_timeout: Duration::from_millis(100),
    });
    conn.enable_inflate(bits, input.takeover);
    let now = Instant::now();
    let mut got = Vec::new();
    let mut failed = false;
    let cut = usize::from(input.read_cut).max(1);
    for chunk in wire.chunks_mut(cut) {
        let mut off = 0;
        while off < chunk.len() {
            let (n, r) = conn.read(&mut chunk[off..], now);
            match r {
                Ok(Some(Event::Message { kind, payload })) => {
                    let data = match payload {
                        Payload::Input(r) => chunk[off + r.start..off + r.end].to_vec(),
                        Payload::Owned(v) => v,
                    };
                    assert!(data.len() <= max, "{} bytes past the {max} limit", data.len());
                    if kind == MessageKind::Text {
                        assert!(std::str::from_utf8(&data).is_ok());
                    }
                    got.push((kind == MessageKind::Text, data));
                }
                Err(_) => failed = true,
                Ok(_) => {}
            }
            off += n;
        }
    }
    if !flipped {
        // Every message up to the first too large one, exactly.
        let fit = sent.iter().take_while(|(_, d)| d.len() <= max).count();
        assert_eq!(got, sent[..fit].to_vec());
        assert_eq!(failed, fit < sent.len());
    }
});
